//! `teacher.calibrate` on the generator's small preset, with real ffmpeg:
//! from a badly tuned base detector it finds per-league settings that
//! recover the teacher's boundary recall (baltic-bl: 0 -> 1 at +-0.5 s), `teacher.tag` applies them per
//! league, and a league without replay graphics is left uncalibrated.

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{RunRecord, TaskStatus};
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use serde_json::Value;
use stages::teacher::calibrate::Calibration;
use std::sync::Arc;

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    stages::register(&mut r);
    r
}

async fn run(yaml: &str, store: &Store) -> RunRecord {
    let p =
        compile("t.yaml", yaml, &registry()).unwrap_or_else(|d| panic!("{}\n{yaml}", d.render()));
    let pl = plan(&p);
    let r = scheduler::run(
        Arc::new(p),
        Arc::new(pl),
        store.clone(),
        RunOptions::default(),
    )
    .await
    .unwrap();
    let bad: Vec<_> = r
        .tasks
        .iter()
        .filter(|t| !matches!(t.status, TaskStatus::Done | TaskStatus::Cached))
        .map(|t| (&t.task, &t.error))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    r
}

/// A base detector whose threshold is far too high for these leagues.
const BAD_BASE: &str = "{ threshold: 0.7, strong: 0.9 }";

/// Boundary recall per league from `teacher.tag`'s truth checks.
async fn recall(store: &Store, r: &RunRecord, task: &str) -> Vec<(String, f64, Option<String>)> {
    let m = store
        .get_manifest(&r.task(task).unwrap().outputs["tagged"])
        .await
        .unwrap();
    let mut per: std::collections::BTreeMap<String, (u64, u64, Option<String>)> =
        Default::default();
    for it in &m.items {
        let Some(c) = it.meta.pointer("/teacher/truth_check") else {
            continue;
        };
        let e = per
            .entry(it.meta["league"].as_str().unwrap().to_string())
            .or_default();
        e.0 += c["true"].as_u64().unwrap();
        e.1 += c["matched"].as_u64().unwrap();
        e.2 = it
            .meta
            .pointer("/teacher/calibrated_for")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    per.into_iter()
        .map(|(l, (t, m, c))| (l, m as f64 / t as f64, c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_recovers_recall_per_league_and_skips_leagues_without_graphics() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let yaml = format!(
        r#"
name: calibrate
stages:
  videos:
    uses: synth.broadcast
    matrix: {{ league: [baltic-bl, hoops-pro] }}
    with: {{ sport: basketball, preset: small, count: 2, seed: 21 }}
  bare:
    uses: synth.broadcast
    with: {{ sport: ice-hockey, league: bare-league, preset: small, count: 1, seed: 22 }}
  calibrate:
    uses: teacher.calibrate
    needs: [videos, bare]
    with: {{ detector: {BAD_BASE} }}
  tag:
    uses: teacher.tag
    map: {{ over: videos.videos }}
    needs: [calibrate]
    with: {{ detector: {BAD_BASE} }}
  tag_base:
    uses: teacher.tag
    map: {{ over: videos.videos }}
    with: {{ detector: {BAD_BASE} }}
"#
    );
    let r = run(&yaml, &store).await;
    let m = store
        .get_manifest(&r.task("calibrate").unwrap().outputs["calibration"])
        .await
        .unwrap();
    let cal: Calibration = serde_json::from_slice(
        &store
            .get_blob(&m.files["calibration.json"].digest)
            .await
            .unwrap(),
    )
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&cal).unwrap());
    for league in ["baltic-bl", "hoops-pro"] {
        let c = &cal.leagues[league];
        assert!(
            c.calibrated && c.videos == 2 && c.boundaries > 0,
            "{league}: {c:?}"
        );
        assert!(c.recall >= 0.95, "{league}: calibrated recall {}", c.recall);
        assert!(c.precision.unwrap() >= cal.min_precision, "{league}: {c:?}");
        assert!(c.recall >= c.base_recall, "{league}: {c:?}");
    }
    // Diagonal wipes are faint at the bad base's threshold; logo zooms are not.
    let baltic = &cal.leagues["baltic-bl"];
    assert!(
        baltic.base_recall < 0.5 && baltic.threshold < 0.7,
        "{baltic:?}"
    );
    let bare = &cal.leagues["bare-league"];
    assert!(!bare.calibrated && bare.boundaries == 0, "{bare:?}");
    assert!(
        bare.note
            .as_deref()
            .unwrap()
            .contains("no graphic boundaries"),
        "{bare:?}"
    );

    // teacher.tag applies each league's settings; without them recall stays low.
    let (tuned, base) = (
        recall(&store, &r, "tag").await,
        recall(&store, &r, "tag_base").await,
    );
    eprintln!("tag recall per league: calibrated {tuned:?}, base {base:?}");
    for ((league, after, used), (_, before, none)) in tuned.iter().zip(&base) {
        assert_eq!((used.as_deref(), none), (Some(league.as_str()), &None));
        assert!(
            *after >= 0.95 && after >= before,
            "{league}: {before} -> {after}"
        );
    }
    let baltic =
        |v: &[(String, f64, Option<String>)]| v.iter().find(|x| x.0 == "baltic-bl").unwrap().1;
    assert!(baltic(&tuned) > baltic(&base), "{tuned:?} vs {base:?}");

    // Recalibrating with the same inputs is cached; tags stay cached too.
    let again = run(&yaml, &store).await;
    assert!(matches!(
        again.task("calibrate").unwrap().status,
        TaskStatus::Cached
    ));
    let tag = again.task("tag").unwrap();
    assert!(
        matches!(tag.status, TaskStatus::Cached) || tag.values["items_cached"] == 4,
        "{:?}",
        tag.values
    );
}

#[test]
fn bad_calibration_params_are_reported_at_validation() {
    for (with, want) in [
        (
            "{ thresholds: [] }",
            "`thresholds` and `rare_shares` need at least one value each",
        ),
        (
            "{ min_precision: 2 }",
            "`min_precision` must be between 0 and 1, got 2",
        ),
        (
            "{ tolerance: -1 }",
            "`tolerance` must be a positive number of seconds",
        ),
        (
            "{ thresholds: [-0.1] }",
            "`thresholds` value -0.1: `threshold` must be a positive number",
        ),
    ] {
        let yaml =
            format!("name: x\nstages:\n  c:\n    uses: teacher.calibrate\n    with: {with}\n");
        let e = compile("t.yaml", &yaml, &registry())
            .err()
            .expect("invalid params")
            .render();
        assert!(e.contains(want), "{with}: {e}");
    }
}
