//! `engine monitor`, `engine catalog golden` and the prediction verdicts of
//! `engine review` with the real binary on SQLite catalogs made through the
//! catalog API (no video files needed).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use catalog::{Catalog, NewLabel, NewPrediction, NewVideo, PredictionVerdict};

fn engine(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.current_dir(dir)
        .env_remove("ENGINE_STORE")
        .env_remove("ENGINE_CATALOG")
        .env("USER", "tester");
    c
}

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o: Output = engine(dir).args(args).output().unwrap();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(!err.contains("panicked"), "engine {args:?}: {err}");
    (o.status.code(), out, err)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, Some(0), "engine {args:?}: {out}{err}");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn video(cat: &Catalog, name: &str, sport: &str, league: &str, broadcaster: &str) -> i64 {
    cat.upsert_video(&NewVideo {
        uri: format!("/videos/{name}.mp4"),
        sport: Some(sport.into()),
        league: Some(league.into()),
        broadcaster: Some(broadcaster.into()),
        season: None,
        duration_s: 100.0,
        fps: 25.0,
        width: 64,
        height: 64,
    })
    .await
    .unwrap()
    .0
}

async fn verdict(cat: &Catalog, video_id: i64, at: f64, v: PredictionVerdict) -> i64 {
    let p = cat
        .add_prediction(&NewPrediction {
            video_id,
            model_version: "m1".into(),
            start_s: at,
            end_s: at + 5.0,
            score: 0.9,
        })
        .await
        .unwrap();
    cat.record_prediction_verdict(p, v, "ana").await.unwrap()
}

/// Basketball: `hoops` all correct (3), `ink` 1 correct, 2 false alarms, 1
/// missed (P 1/3, R 1/2), `old-league` failing but 30 days ago.
fn monitor_catalog(dir: &Path) {
    block_on(async {
        let cat = Catalog::open(dir.join("cat.db").to_str().unwrap())
            .await
            .unwrap();
        let a = video(&cat, "a", "basketball", "hoops", "tv1").await;
        let b = video(&cat, "b", "basketball", "ink", "tv2").await;
        let c = video(&cat, "c", "basketball", "old-league", "tv1").await;
        for i in 0..3 {
            verdict(&cat, a, 10.0 * i as f64, PredictionVerdict::Correct).await;
        }
        verdict(&cat, b, 0.0, PredictionVerdict::Correct).await;
        verdict(&cat, b, 10.0, PredictionVerdict::FalseAlarm).await;
        verdict(&cat, b, 20.0, PredictionVerdict::FalseAlarm).await;
        cat.record_missed(
            b,
            &[NewLabel {
                start_s: 50.0,
                end_s: 55.0,
                confidence: None,
            }],
            "ana",
        )
        .await
        .unwrap();
        for i in 0..4 {
            let id = verdict(&cat, c, 10.0 * i as f64, PredictionVerdict::FalseAlarm).await;
            let old = time_ago(30);
            cat.set_review_time(id, &old).await.unwrap();
        }
        cat.close().await;
    });
    std::fs::write(
        dir.join("basketball.yaml"),
        "sport: basketball\nleagues: [hoops, ink]\nmonitor:\n  window: 14d\n  precision: 0.8\n  recall: 0.8\n  min_verdicts: 3\n  leagues:\n    hoops: { recall: 0.5 }\n",
    )
    .unwrap();
    std::fs::write(dir.join("soccer.yaml"), "sport: soccer\n").unwrap();
}

fn time_ago(days: u64) -> String {
    catalog::monitor::since(std::time::Duration::from_secs(days * 86400))
}

#[test]
fn monitor_reports_figures_writes_prometheus_and_triggers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    monitor_catalog(d);

    let out = ok(
        d,
        &[
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--metrics",
            "m.prom",
        ],
    );
    assert!(
        out.contains("basketball: 7 verdict(s) in the last 14d"),
        "{out}"
    );
    let ink = out
        .lines()
        .find(|l| l.starts_with("ink "))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = ink.split_whitespace().collect();
    assert_eq!(
        &cells[..7],
        ["ink", "4", "1", "2", "1", "0.333", "0.500"],
        "{out}"
    );
    assert!(ink.ends_with("failing"), "{out}");
    let hoops = out.lines().find(|l| l.starts_with("hoops ")).unwrap();
    assert!(hoops.contains("R>=0.5") && hoops.ends_with("ok"), "{out}");
    assert!(
        !out.contains("old-league"),
        "the window excludes old verdicts: {out}"
    );
    assert!(out.contains("FAILING: ink"), "{out}");
    assert!(
        out.contains("run: engine run pipelines/continual.yaml.j2 -f basketball.yaml --set problem_leagues=[ink]"),
        "{out}"
    );
    let prom = std::fs::read_to_string(d.join("m.prom")).unwrap();
    assert!(
        prom.contains("# TYPE engine_monitor_precision gauge\n"),
        "{prom}"
    );
    assert!(
        prom.contains("engine_monitor_recall{sport=\"basketball\",league=\"ink\"} 0.5\n"),
        "{prom}"
    );
    assert!(
        prom.contains("engine_monitor_failing{sport=\"basketball\",league=\"ink\"} 1\n"),
        "{prom}"
    );
    assert!(
        prom.contains("engine_monitor_failing{sport=\"basketball\",league=\"hoops\"} 0\n"),
        "{prom}"
    );
    assert!(
        prom.contains("engine_monitor_verdicts{sport=\"basketball\",league=\"hoops\"} 3\n"),
        "{prom}"
    );
    assert!(
        !d.read_dir()
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp"))
    );

    // A wider window sees the old league too.
    let out = ok(
        d,
        &[
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--window",
            "60d",
        ],
    );
    assert!(out.contains("FAILING: ink, old-league"), "{out}");

    // --trigger exit: code 3 and the command.
    let (code, out, _) = run(
        d,
        &[
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--trigger",
            "exit",
        ],
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("failing league(s): ink; run: engine run"),
        "{out}"
    );

    // --trigger run: the pipeline runs (here a missing file, so it fails
    // with its own message and code, which the monitor returns).
    let (code, out, err) = run(
        d,
        &[
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--trigger",
            "run",
            "--pipeline",
            "missing.yaml",
        ],
    );
    assert!(
        out.contains(
            "triggering: engine run missing.yaml -f basketball.yaml --set problem_leagues=[ink]"
        ),
        "{out}"
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("missing.yaml"), "{err}");

    // No verdicts: nothing to judge, nothing triggered.
    let (code, out, _) = run(
        d,
        &[
            "monitor",
            "-f",
            "soccer.yaml",
            "--db",
            "cat.db",
            "--trigger",
            "exit",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("no review verdicts for soccer in the last 14d; nothing to judge"),
        "{out}"
    );
    assert!(!out.contains("run:"), "{out}");

    // Clear errors.
    let (code, _, err) = run(
        d,
        &[
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--sport",
            "soccer",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("`--sport soccer` does not match the values file `basketball.yaml`"),
        "{err}"
    );
    let (code, _, err) = run(
        d,
        &[
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--window",
            "fortnight",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Failed to read the window `fortnight`"),
        "{err}"
    );
    std::fs::write(
        d.join("bad.yaml"),
        "sport: basketball\nmonitor: { recal: 0.5 }\n",
    )
    .unwrap();
    let (code, _, err) = run(d, &["monitor", "-f", "bad.yaml", "--db", "cat.db"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Failed to read `monitor:` in `bad.yaml`") && err.contains("recal"),
        "{err}"
    );
}

/// `engine monitor | head -1`: the reader is gone before the report is
/// printed. The monitor still writes its metrics and exits as it would,
/// where `println!` panicked (SIGPIPE stays ignored in `monitor`: it can
/// trigger runs and serve metrics).
#[test]
fn a_monitor_whose_reader_goes_away_writes_its_metrics_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    monitor_catalog(d);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = engine(d)
        .args([
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--metrics",
            "m.prom",
        ])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
    let prom = std::fs::read_to_string(d.join("m.prom")).unwrap();
    assert!(
        prom.contains("# TYPE engine_monitor_precision gauge\n"),
        "{prom}"
    );
}

#[test]
fn monitor_serves_metrics_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    monitor_catalog(d);
    let mut child = engine(d)
        .args([
            "monitor",
            "-f",
            "basketball.yaml",
            "--db",
            "cat.db",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("serving Prometheus metrics at http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    // Wait for the first round's table, so the metrics are computed.
    for l in lines.by_ref() {
        if l.unwrap().starts_with("FAILING") {
            break;
        }
    }
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let body = get("/metrics");
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4"),
        "{body}"
    );
    assert!(
        body.contains("engine_monitor_precision{sport=\"basketball\",league=\"hoops\"} 1\n"),
        "{body}"
    );
}

#[test]
fn golden_set_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    block_on(async {
        let cat = Catalog::open(d.join("cat.db").to_str().unwrap())
            .await
            .unwrap();
        video(&cat, "a1", "basketball", "hoops", "tv1").await;
        video(&cat, "a2", "basketball", "hoops", "tv1").await;
        video(&cat, "b1", "basketball", "ink", "tv2").await;
        cat.close().await;
    });
    let out = ok(
        d,
        &[
            "catalog",
            "golden",
            "ls",
            "--sport",
            "basketball",
            "--db",
            "cat.db",
        ],
    );
    assert!(
        out.contains(
            "the golden set of `basketball` is empty; add videos with `engine catalog golden add"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "warning: 2 league x broadcaster cell(s) of `basketball` have no golden video"
        ),
        "{out}"
    );

    let out = ok(
        d,
        &[
            "catalog",
            "golden",
            "add",
            "--sport",
            "basketball",
            "--per-cell",
            "1",
            "--db",
            "cat.db",
        ],
    );
    assert!(out.contains("2 video(s) added to the golden set"), "{out}");
    let out = ok(
        d,
        &[
            "catalog",
            "golden",
            "ls",
            "--sport",
            "basketball",
            "--db",
            "cat.db",
        ],
    );
    assert!(
        out.contains("/videos/a1.mp4")
            && out.contains("/videos/b1.mp4")
            && !out.contains("/videos/a2.mp4"),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");
    let hoops = out
        .lines()
        .find(|l| l.starts_with("hoops") && l.contains("tv1") && !l.contains("/videos"))
        .unwrap();
    assert_eq!(
        hoops.split_whitespace().collect::<Vec<_>>(),
        ["hoops", "tv1", "2", "1"],
        "{out}"
    );

    let out = ok(
        d,
        &[
            "catalog", "golden", "rm", "--league", "ink", "--db", "cat.db",
        ],
    );
    assert!(out.contains("1 video(s) removed"), "{out}");
    let out = ok(
        d,
        &[
            "catalog",
            "golden",
            "ls",
            "--sport",
            "basketball",
            "--db",
            "cat.db",
        ],
    );
    assert!(out.contains("warning: 1 league x broadcaster cell(s) of `basketball` have no golden video, so evaluation cannot see them: ink x tv2"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "catalog",
            "golden",
            "ls",
            "--sport",
            "basketball",
            "--json",
            "--db",
            "cat.db",
        ],
    ))
    .unwrap();
    assert_eq!(json["videos"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(
        json["coverage"]["cells"].as_array().unwrap().len(),
        2,
        "{json}"
    );

    let (code, _, err) = run(
        d,
        &[
            "catalog",
            "golden",
            "add",
            "/videos/nope.mp4",
            "--db",
            "cat.db",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("No video `/videos/nope.mp4`"), "{err}");
}

#[test]
fn prediction_verdicts_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (p1, p2) = block_on(async {
        let cat = Catalog::open(d.join("cat.db").to_str().unwrap())
            .await
            .unwrap();
        let v = video(&cat, "v", "soccer", "liga", "tv1").await;
        cat.set_labels(
            v,
            catalog::LabelSource::Truth,
            &[
                NewLabel {
                    start_s: 10.0,
                    end_s: 20.0,
                    confidence: None,
                },
                NewLabel {
                    start_s: 60.0,
                    end_s: 70.0,
                    confidence: None,
                },
            ],
        )
        .await
        .unwrap();
        let mut ids = vec![];
        for (s, e) in [(10.0, 19.0), (40.0, 45.0)] {
            ids.push(
                cat.add_prediction(&NewPrediction {
                    video_id: v,
                    model_version: "m1".into(),
                    start_s: s,
                    end_s: e,
                    score: 0.7,
                })
                .await
                .unwrap(),
            );
        }
        let w = video(&cat, "w", "soccer", "liga", "tv1").await;
        cat.add_prediction(&NewPrediction {
            video_id: w,
            model_version: "m1".into(),
            start_s: 1.0,
            end_s: 3.0,
            score: 0.7,
        })
        .await
        .unwrap();
        cat.close().await;
        (ids[0], ids[1])
    });
    let out = ok(
        d,
        &[
            "review",
            "predictions",
            "--sport",
            "soccer",
            "--pending",
            "--db",
            "cat.db",
        ],
    );
    assert!(
        out.contains("3 prediction(s), 3 without a verdict"),
        "{out}"
    );

    let out = ok(
        d,
        &[
            "review",
            "verdict",
            &p2.to_string(),
            "wrong-boundaries",
            "--segments",
            "39-47",
            "--db",
            "cat.db",
        ],
    );
    assert!(
        out.contains(&format!("prediction {p2}: `wrong-boundaries` recorded")),
        "{out}"
    );
    ok(
        d,
        &[
            "review",
            "verdict",
            &p1.to_string(),
            "correct",
            "--db",
            "cat.db",
        ],
    );
    ok(
        d,
        &[
            "review",
            "missed",
            "/videos/v.mp4",
            "--segments",
            "60-70",
            "--db",
            "cat.db",
        ],
    );
    let labels = ok(
        d,
        &[
            "catalog",
            "query",
            "SELECT start_s, end_s FROM labels WHERE source = 'human' ORDER BY start_s",
            "--json",
            "--db",
            "cat.db",
        ],
    );
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(
        labels,
        serde_json::json!([{"start_s": 10.0, "end_s": 19.0}, {"start_s": 39.0, "end_s": 47.0}, {"start_s": 60.0, "end_s": 70.0}])
    );
    let (code, _, err) = run(
        d,
        &[
            "review",
            "verdict",
            &p1.to_string(),
            "wrong-boundaries",
            "--db",
            "cat.db",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("`wrong-boundaries` needs the true span: add `--segments START-END`"),
        "{err}"
    );
    let (code, _, err) = run(
        d,
        &[
            "review",
            "verdict",
            &p1.to_string(),
            "maybe",
            "--db",
            "cat.db",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown verdict `maybe`"), "{err}");
    let (code, _, err) = run(
        d,
        &["review", "verdict", "999", "correct", "--db", "cat.db"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("No prediction 999"), "{err}");

    // The simulated review judges the unreviewed video only, and says it is simulated.
    let out = ok(
        d,
        &[
            "review", "simulate", "--sport", "soccer", "--model", "m1", "--db", "cat.db",
        ],
    );
    assert!(
        out.contains("SIMULATED review") && out.contains("`simulated-from-truth`"),
        "{out}"
    );
    assert!(
        out.contains("0 video(s) judged")
            && out.contains("1 video(s) skipped: some of their predictions already have a verdict"),
        "{out}"
    );
    assert!(out.contains("1 video(s) skipped: no ground-truth"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "review",
            "predictions",
            "--model",
            "m1",
            "--json",
            "--db",
            "cat.db",
        ],
    ))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["verdict"], "correct", "{json}");
}

/// `engine review fix --labels` takes the generator's ground truth, as
/// `engine catalog import` does.
#[test]
fn review_fix_reads_a_generator_truth_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(
        d,
        &[
            "synth", "--sport", "soccer", "--count", "1", "--seed", "5", "--out", "videos",
        ],
    );
    let mp4 = std::fs::read_dir(d.join("videos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mp4"))
        .unwrap();
    let truth_file = mp4.with_extension("json");
    ok(d, &["catalog", "import", "videos", "--db", "cat.db"]);
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&truth_file).unwrap()).unwrap();
    let replays = truth["replays"].as_array().unwrap().len();
    let out = ok(
        d,
        &[
            "review",
            "fix",
            mp4.to_str().unwrap(),
            "--labels",
            truth_file.to_str().unwrap(),
            "--db",
            "cat.db",
        ],
    );
    assert!(
        out.contains(&format!("{replays} human replay segment(s) recorded")),
        "{out}"
    );
    let q = ok(
        d,
        &[
            "catalog",
            "query",
            "SELECT COUNT(*) AS n FROM labels WHERE source = 'human'",
            "--json",
            "--db",
            "cat.db",
        ],
    );
    let q: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(q[0]["n"], replays as u64);
}
