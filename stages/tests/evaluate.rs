//! The `evaluate` stage through the engine, on hand-made predictions with
//! known answers: figures per league, every gate's failure message, the
//! report files, a missing production model, unlabelled golden videos and
//! the compile-time errors of bad gates.
//!
//! A test-only stage, `test.predictions`, stands in for `detect`: it writes
//! the same `predictions` collection (one `predictions.json` per video,
//! the catalog meta copied onto the item) from its params.

use async_trait::async_trait;
use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{RunRecord, TaskStatus};
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::{
    OutputDecl, Registry, Stage, StageError, StageImpl, TaskCtx, parse_params,
};
use engine_core::store::{Item, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeDetect {
    model: Option<String>,
    videos: Vec<FakeVideo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeVideo {
    key: String,
    meta: Value,
    segments: Vec<(f64, f64)>,
}

#[async_trait]
impl Stage for FakeDetect {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::collection("predictions")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        for v in &self.videos {
            let segments: Vec<Value> = v
                .segments
                .iter()
                .map(|(s, e)| json!({"start": s, "end": e, "score": 0.9}))
                .collect();
            let doc = json!({"video": v.key, "model": self.model, "fps": FPS, "frames": FRAMES, "segments": segments});
            let blob = ctx.put_blob(serde_json::to_vec(&doc).unwrap()).await?;
            ctx.add_item(
                "predictions",
                Item {
                    key: v.key.clone(),
                    files: [("predictions.json".to_string(), blob)]
                        .into_iter()
                        .collect(),
                    meta: v.meta.clone(),
                },
            )?;
        }
        Ok(())
    }
}

const FPS: f64 = 10.0;
const FRAMES: usize = 600;
/// Every golden video has these two replays.
const TRUTH: [(f64, f64); 2] = [(10.0, 16.0), (40.0, 47.0)];

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    stages::register(&mut r);
    r.add("test.predictions", "hand-made detect output", |v| {
        Ok(StageImpl::Task(Arc::new(parse_params::<FakeDetect>(v)?)))
    });
    r
}

/// The golden set: (key, league, broadcaster).
const GOLDEN: [(&str, &str, &str); 4] = [
    ("hp-1", "hoops-pro", "dunk-tv"),
    ("hp-2", "hoops-pro", "net-one"),
    ("bb-1", "baltic-bl", "net-one"),
    ("ink-1", "ink-league", "net-one"),
];

fn meta(league: &str, broadcaster: &str) -> Value {
    let labels: Vec<Value> = TRUTH
        .iter()
        .map(|(s, e)| json!({"start_s": s, "end_s": e, "source": "truth", "confidence": null}))
        .chain([json!({"start_s": 1.0, "end_s": 2.0, "source": "teacher", "confidence": 0.5})])
        .collect();
    json!({"uri": format!("/golden/{league}.mp4"), "sport": "basketball", "league": league, "broadcaster": broadcaster, "labels": labels})
}

/// Predictions for `videos`: all of TRUTH, except the first replay is
/// missed in the videos listed in `miss`.
fn detect(model: Option<&str>, videos: &[(&str, &str, &str)], miss: &[&str]) -> Value {
    let vs: Vec<Value> = videos
        .iter()
        .map(|(k, l, b)| {
            let segs: Vec<(f64, f64)> = if miss.contains(k) {
                TRUTH[1..].to_vec()
            } else {
                TRUTH.to_vec()
            };
            json!({"key": k, "meta": meta(l, b), "segments": if model.is_some() { json!(segs) } else { json!([]) }})
        })
        .collect();
    json!({"model": model, "videos": vs})
}

fn pipeline(candidate: &Value, production: Option<&Value>, eval: &str) -> String {
    let mut y = format!(
        "name: eval\nstages:\n  detect_candidate:\n    uses: test.predictions\n    with: {candidate}\n"
    );
    let mut needs = "[detect_candidate]".to_string();
    if let Some(p) = production {
        y.push_str(&format!(
            "  detect_production:\n    uses: test.predictions\n    with: {p}\n"
        ));
        needs = "[detect_candidate, detect_production]".into();
    }
    y.push_str(&format!(
        "  evaluate:\n    uses: evaluate\n    needs: {needs}\n    with:\n{eval}"
    ));
    y
}

async fn run(yaml: &str, store: &Store) -> RunRecord {
    let p =
        compile("t.yaml", yaml, &registry()).unwrap_or_else(|d| panic!("{}\n{yaml}", d.render()));
    let pl = plan(&p);
    scheduler::run(
        Arc::new(p),
        Arc::new(pl),
        store.clone(),
        RunOptions::default(),
    )
    .await
    .unwrap()
}

async fn file(store: &Store, r: &RunRecord, name: &str) -> Vec<u8> {
    let t = r.task("evaluate").unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    let m = store.get_manifest(&t.outputs["evaluation"]).await.unwrap();
    store.get_blob(&m.files[name].digest).await.unwrap()
}

async fn evaluation(store: &Store, r: &RunRecord) -> Value {
    serde_json::from_slice(&file(store, r, "evaluation.json").await).unwrap()
}

const GATES: &str = "      candidate: detect_candidate
      production: detect_production
      leagues: [hoops-pro, court-league, baltic-bl, ink-league]
      gates:
        floors: { segment_f1: 0.9, start_f1_1s: 0.8 }
        overall: { segment_f1: 0.95 }
        improve: { leagues: [IMPROVE], metric: segment_f1, by: 0.05 }
        no_regression: { metric: segment_f1, max_drop: 0.01 }
";

#[tokio::test]
async fn a_perfect_candidate_passes_and_the_figures_are_per_league() {
    let store = Store::open("memory://evaluate-1", std::path::Path::new(".")).unwrap();
    // Production misses one of the two replays of the baltic-bl video.
    let yaml = pipeline(
        &detect(Some("cand0000digest"), &GOLDEN, &[]),
        Some(&detect(Some("prod0000digest"), &GOLDEN, &["bb-1"])),
        &GATES.replace("IMPROVE", "baltic-bl"),
    );
    let r = run(&yaml, &store).await;
    let ev = evaluation(&store, &r).await;
    let leagues = &ev["groups"]["leagues"];
    for l in ["hoops-pro", "baltic-bl", "ink-league"] {
        assert_eq!(leagues[l]["candidate"]["segment_f1"], json!(1.0), "{l}");
        assert_eq!(leagues[l]["candidate"]["start_f1_1s"], json!(1.0), "{l}");
    }
    assert_eq!(leagues["hoops-pro"]["videos"], json!(2));
    // One of two replays, no false positive: P 1, R 0.5, F1 2/3.
    assert_eq!(
        leagues["baltic-bl"]["production"]["segment_f1"],
        json!(0.6667)
    );
    assert_eq!(
        leagues["baltic-bl"]["production"]["segment_recall"],
        json!(0.5)
    );
    assert_eq!(
        leagues["baltic-bl"]["production"]["start_precision_1s"],
        json!(1.0)
    );
    assert_eq!(leagues["baltic-bl"]["delta"]["segment_f1"], json!(0.3333));
    assert_eq!(leagues["ink-league"]["delta"]["segment_f1"], json!(0.0));
    let groups = &ev["groups"];
    assert_eq!(groups["overall"]["sport"], json!("basketball"));
    assert_eq!(groups["broadcasters"]["net-one"]["videos"], json!(3));
    assert_eq!(
        groups["league_broadcasters"]["hoops-pro / dunk-tv"]["videos"],
        json!(1)
    );
    assert_eq!(ev["models"]["candidate"]["digest"], json!("cand0000digest"));
    assert_eq!(
        ev["models"]["production"]["digest"],
        json!("prod0000digest")
    );
    // Per video: truth (teacher labels ignored) and both models' segment F1.
    let bb = ev["videos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["video"] == "bb-1")
        .unwrap();
    assert_eq!(bb["truth"], json!([[10.0, 16.0], [40.0, 47.0]]));
    assert_eq!(bb["truth_source"], json!("truth"));
    assert_eq!(bb["production"]["segment_f1"], json!(0.6667));
    assert_eq!(bb["candidate"]["segments"][0]["start"], json!(10.0));

    let t = r.task("evaluate").unwrap();
    assert_eq!(t.values["passed"], json!(true));
    assert_eq!(t.values["failures"], json!([]));
    assert_eq!(t.values["overall"]["segment_f1"], json!(1.0));
    let gates = t.values["gates"].as_array().unwrap();
    // floors: 2 metrics x (overall + 3 leagues); overall 1; improve 1; no_regression 2.
    assert_eq!(gates.len(), 8 + 1 + 1 + 2);
    let imp = gates.iter().find(|g| g["gate"] == "improve").unwrap();
    assert_eq!(
        (
            &imp["league"],
            &imp["candidate"],
            &imp["production"],
            &imp["threshold"],
            &imp["pass"]
        ),
        (
            &json!("baltic-bl"),
            &json!(1.0),
            &json!(0.6667),
            &json!(0.05),
            &json!(true)
        )
    );

    let md = String::from_utf8(file(&store, &r, "evaluation.md").await).unwrap();
    assert!(
        md.starts_with("## Evaluation of basketball: PASSED\n"),
        "{md}"
    );
    assert!(
        md.contains("| improve | baltic-bl | segment_f1 | 1.000 | 0.667 | 0.050 | pass |"),
        "{md}"
    );
    assert!(
        md.contains("| baltic-bl | 1 | 1.000 / 0.667 (+0.333) |"),
        "{md}"
    );
    // A tie goes to the first league by name.
    assert!(
        md.contains("Weakest league: `baltic-bl` (segment_f1 1.000)."),
        "{md}"
    );
    let html = String::from_utf8(file(&store, &r, "evaluation.html").await).unwrap();
    for l in ["hoops-pro", "baltic-bl", "ink-league"] {
        assert!(md.contains(&format!("| {l} |")), "md lacks {l}");
        assert!(
            html.contains(&format!("<td class=\"name\">{l}</td>")),
            "html lacks {l}"
        );
    }
    // minijinja escapes `/` too.
    for b in ["net-one", "dunk-tv", "hoops-pro &#x2f; dunk-tv"] {
        assert!(
            html.contains(&format!("<td class=\"name\">{b}</td>")),
            "html lacks {b}"
        );
    }
    assert!(html.contains("<svg") && html.contains("Start F1 (±1 s)"));
    // Self-contained: no script, stylesheet or image from elsewhere.
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));

    // The same inputs give the same artifact (nothing from the clock or host).
    let again = Store::open("memory://evaluate-2", std::path::Path::new(".")).unwrap();
    let r2 = run(&yaml, &again).await;
    assert_eq!(
        r.task("evaluate").unwrap().outputs["evaluation"],
        r2.task("evaluate").unwrap().outputs["evaluation"]
    );
}

#[tokio::test]
async fn failed_gates_name_league_metric_values_and_threshold() {
    let store = Store::open("memory://evaluate-3", std::path::Path::new(".")).unwrap();
    // The candidate misses a replay in baltic-bl and brings a new league
    // production never saw.
    let mut cand_videos = GOLDEN.to_vec();
    cand_videos.push(("cl-1", "court-league", "dunk-tv"));
    let yaml = pipeline(
        &detect(Some("cand"), &cand_videos, &["bb-1"]),
        Some(&detect(Some("prod"), &GOLDEN, &[])),
        &GATES.replace("IMPROVE", "ink-league"),
    );
    let r = run(&yaml, &store).await;
    let t = r.task("evaluate").unwrap();
    // The stage succeeds: the report is the product; deploy reads `passed`.
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    assert_eq!(t.values["passed"], json!(false));
    // Overall: 9 of 10 replays, no false positive: F1 18/19.
    assert_eq!(
        t.values["failures"],
        json!([
            "gate floors: league `baltic-bl` segment_f1 is 0.667, below the floor 0.900 (production 1.000)",
            "gate floors: league `baltic-bl` start_f1_1s is 0.667, below the floor 0.800 (production 1.000)",
            "gate overall: overall segment_f1 is 0.947, below the floor 0.950 (production 1.000)",
            "gate improve: league `ink-league` segment_f1 went 1.000 -> 1.000 (gain 0.000 < by 0.050)",
            "gate no_regression: league `baltic-bl` segment_f1 fell 1.000 -> 0.667 (drop 0.333 > max_drop 0.010)",
        ])
    );
    let gates = t.values["gates"].as_array().unwrap();
    let new = gates
        .iter()
        .find(|g| g["gate"] == "no_regression" && g["league"] == "court-league")
        .unwrap();
    assert_eq!(
        (&new["pass"], &new["skipped"]),
        (&json!(true), &json!(true))
    );
    // A new league is not exempt from floors.
    assert!(
        gates
            .iter()
            .any(|g| g["gate"] == "floors" && g["league"] == "court-league" && g["pass"] == true)
    );
    let md = String::from_utf8(file(&store, &r, "evaluation.md").await).unwrap();
    assert!(
        md.starts_with("## Evaluation of basketball: FAILED\n"),
        "{md}"
    );
    assert!(md.contains("FAILED: 5 of "), "{md}");
    assert!(
        md.contains(
            "| no_regression | baltic-bl | segment_f1 | 0.667 | 1.000 | 0.010 | **FAIL** |"
        ),
        "{md}"
    );
    assert!(
        md.contains("- gate no_regression: league `baltic-bl` segment_f1 fell 1.000 -> 0.667"),
        "{md}"
    );
    assert!(
        md.contains("Weakest league: `baltic-bl` (segment_f1 0.667)."),
        "{md}"
    );
    assert!(md.contains("| court-league | 1 | 1.000 |"), "{md}");
    let html = String::from_utf8(file(&store, &r, "evaluation.html").await).unwrap();
    if let Some(out) = std::env::var_os("EVALUATION_HTML_OUT") {
        // For looking at the page: `EVALUATION_HTML_OUT=/tmp/eval.html`.
        std::fs::write(out, &html).unwrap();
    }
    assert!(html.contains("<tr class=\"fail\"><td class=\"name\">no_regression</td><td class=\"name\">baltic-bl</td>"), "{html}");
    let log = String::from_utf8(store.get_blob(t.log.as_ref().unwrap()).await.unwrap()).unwrap();
    assert!(log.contains("evaluate: FAILED: 5 of"), "{log}");
    assert!(log.contains("gate improve: league `ink-league`"), "{log}");
}

#[tokio::test]
async fn without_a_production_model_improve_is_skipped_and_only_the_candidate_shows() {
    let store = Store::open("memory://evaluate-4", std::path::Path::new(".")).unwrap();
    // The lead's `detect` over a missing optional model ref: `model: null`.
    let yaml = pipeline(
        &detect(Some("cand"), &GOLDEN, &[]),
        Some(&detect(None, &GOLDEN, &[])),
        &GATES.replace("IMPROVE", "baltic-bl"),
    );
    let r = run(&yaml, &store).await;
    let t = r.task("evaluate").unwrap();
    assert_eq!(
        t.values["passed"],
        json!(true),
        "{:?}",
        t.values["failures"]
    );
    let gates = t.values["gates"].as_array().unwrap();
    let imp = gates.iter().find(|g| g["gate"] == "improve").unwrap();
    assert_eq!(imp["skipped"], json!(true));
    assert_eq!(
        imp["note"],
        json!(
            "gate improve: league `baltic-bl` segment_f1 is 1.000; skipped: no production model to improve on"
        )
    );
    assert!(gates.iter().all(|g| g["production"].is_null()));
    let ev = evaluation(&store, &r).await;
    assert_eq!(ev["models"]["production"], Value::Null);
    assert_eq!(
        ev["groups"]["leagues"]["baltic-bl"]["production"],
        Value::Null
    );
    assert_eq!(ev["groups"]["leagues"]["baltic-bl"]["delta"], Value::Null);
    let md = String::from_utf8(file(&store, &r, "evaluation.md").await).unwrap();
    assert!(md.contains("no production model yet"), "{md}");
    assert!(md.contains("### Per league (candidate)"), "{md}");
    assert!(
        md.contains("| baltic-bl | 1 | 1.000 | 1.000 | 1.000 | 1.000 |"),
        "{md}"
    );
    let html = String::from_utf8(file(&store, &r, "evaluation.html").await).unwrap();
    assert!(html.contains("no production model yet"));
    assert!(!html.contains("fill=\"#f0a050\">"), "no production bars");
}

#[tokio::test]
async fn a_listed_league_without_golden_videos_fails_improve() {
    let store = Store::open("memory://evaluate-5", std::path::Path::new(".")).unwrap();
    // No `production:` at all, and no ink-league video in the golden set.
    let eval = "      candidate: detect_candidate
      gates:
        improve: { leagues: [ink-league], metric: segment_f1, by: 0.05 }
";
    let yaml = pipeline(&detect(Some("cand"), &GOLDEN[..3], &[]), None, eval);
    let r = run(&yaml, &store).await;
    let t = r.task("evaluate").unwrap();
    assert_eq!(t.values["passed"], json!(false));
    assert_eq!(
        t.values["failures"],
        json!([
            "gate improve: league `ink-league` has no golden videos, so its segment_f1 cannot be shown to improve by 0.050"
        ])
    );
}

#[tokio::test]
async fn a_golden_video_without_human_or_truth_labels_is_an_error_naming_it() {
    let store = Store::open("memory://evaluate-6", std::path::Path::new(".")).unwrap();
    let mut cand = detect(Some("cand"), &GOLDEN, &[]);
    // Teacher labels only: not a truth to score against.
    cand["videos"][2]["meta"]["labels"] =
        json!([{"start_s": 10.0, "end_s": 16.0, "source": "teacher", "confidence": 0.9}]);
    let yaml = pipeline(&cand, None, "      candidate: detect_candidate\n");
    let r = run(&yaml, &store).await;
    let t = r.task("evaluate").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    let e = t.error.as_deref().unwrap();
    assert!(
        e.contains("golden video(s) without `human` or `truth` labels cannot be scored: bb-1;"),
        "{e}"
    );
    // A reviewed video is human-labelled even when the person found none.
    let mut cand = detect(Some("cand"), &GOLDEN, &[]);
    cand["videos"][2]["meta"]["labels"] = json!([]);
    cand["videos"][2]["meta"]["review"] = json!({"verdict": "fixed", "reviewer": "ana"});
    let yaml = pipeline(&cand, None, "      candidate: detect_candidate\n");
    let r = run(&yaml, &store).await;
    let ev = evaluation(&store, &r).await;
    let bb = ev["videos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["video"] == "bb-1")
        .unwrap();
    assert_eq!(
        (&bb["truth"], &bb["truth_source"]),
        (&json!([]), &json!("human"))
    );
}

/// `engine validate` errors, at the line and column of `with:`.
fn errors(eval: &str) -> Vec<String> {
    let yaml = pipeline(&detect(Some("c"), &GOLDEN[..1], &[]), None, eval);
    let d = compile("t.yaml", &yaml, &registry())
        .err()
        .expect("invalid params");
    d.items
        .iter()
        .map(|i| {
            let mut s = format!("{}:{}: {}", i.line, i.column, i.message);
            if let Some(h) = &i.hint {
                s.push_str(&format!(" (help: {h})"));
            }
            s
        })
        .collect()
}

#[test]
fn bad_gates_are_reported_at_validation_with_the_valid_choices() {
    let metrics = "segment_f1, segment_precision, segment_recall, segment_mean_f1, start_f1_1s, start_precision_1s, start_recall_1s, start_f1_2s, start_precision_2s, start_recall_2s, end_f1_1s, end_precision_1s, end_recall_1s, end_f1_2s, end_precision_2s, end_recall_2s, content_precision, content_recall, content_f1";
    assert_eq!(
        errors(
            "      candidate: detect_candidate
      gates:
        floors: { segment_f1: 0.9, start_f1: 0.8 }
"
        ),
        [format!(
            "10:7: invalid params for `evaluate` in stage `evaluate`: `gates.floors.start_f1`: unknown metric `start_f1`; the metrics are: {metrics}"
        )]
    );
    assert_eq!(
        errors(
            "      candidate: detect_candidate
      leagues: [hoops-pro, court-league, baltic-bl, ink-league]
      gates:
        improve: { leagues: [ink-leage], metric: segment_f1, by: 0.05 }
"
        ),
        [
            "10:7: invalid params for `evaluate` in stage `evaluate`: `gates.improve.leagues`: unknown league `ink-leage`; the leagues are: hoops-pro, court-league, baltic-bl, ink-league"
        ]
    );
    assert_eq!(
        errors(
            "      candidate: detect_candidate
      gates:
        no_regression: { metric: segment_f1, max_drop: 0.01, by: 1 }
"
        ),
        [
            "10:7: invalid params for `evaluate` in stage `evaluate`: `gates.no_regression.by`: unknown field `by`, expected `metric` or `max_drop`"
        ]
    );
    // An empty list of leagues to improve is fine.
    let yaml = pipeline(
        &detect(Some("c"), &GOLDEN[..1], &[]),
        None,
        "      candidate: detect_candidate\n      gates:\n        improve: { leagues: [], metric: segment_f1, by: 0.05 }\n",
    );
    compile("t.yaml", &yaml, &registry()).unwrap_or_else(|d| panic!("{}", d.render()));
}
