//! The video stages end to end with real ffmpeg: generate, probe (cached
//! per video), report; and a file that is not a video.

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{RunRecord, TaskStatus};
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use std::sync::Arc;

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    stages::register(&mut r);
    r
}

async fn run(yaml: &str, store: &Store) -> RunRecord {
    let p = compile("t.yaml", yaml, &registry()).unwrap_or_else(|d| panic!("{}", d.render()));
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

const PIPELINE: &str = r#"
name: broadcasts
stages:
  generate:
    uses: synth.broadcast
    matrix: { league: LEAGUES }
    with: { sport: basketball, preset: small, count: 1, seed: 3, duration: 6 }
  probe:
    uses: video.probe
    map: { over: generate.videos }
  report:
    uses: dataset.report
    needs: [probe]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_probe_report_and_cache_per_video() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let r = run(
        &PIPELINE.replace("LEAGUES", "[hoops-pro, ink-league]"),
        &store,
    )
    .await;
    assert!(
        r.tasks.iter().all(|t| t.status == TaskStatus::Done),
        "{:?}",
        r.tasks
            .iter()
            .map(|t| (&t.task, &t.error))
            .collect::<Vec<_>>()
    );
    let probe = r.task("probe").unwrap();
    assert_eq!(probe.items.unwrap().run, 2);
    let m = store.get_manifest(&probe.outputs["videos"]).await.unwrap();
    for item in &m.items {
        let d = item.meta["probe"]["duration"].as_f64().unwrap();
        assert!((d - 6.0).abs() < 0.5, "duration {d}");
        assert_eq!(item.meta["probe"]["codec"], "h264");
        assert!(item.files.contains_key("video.mp4") && item.files.contains_key("truth.json"));
    }
    let report = store
        .get_manifest(&r.task("report").unwrap().outputs["report"])
        .await
        .unwrap();
    let html = String::from_utf8(
        store
            .get_blob(&report.files["report.html"].digest)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(html.contains("<svg") && html.contains("ink-league") && html.contains("hoops-pro"));

    // A third league: only its video is generated and probed.
    let r = run(
        &PIPELINE.replace("LEAGUES", "[hoops-pro, ink-league, baltic-bl]"),
        &store,
    )
    .await;
    assert_eq!(
        r.task("generate[league=hoops-pro]").unwrap().status,
        TaskStatus::Cached
    );
    assert_eq!(
        r.task("generate[league=baltic-bl]").unwrap().status,
        TaskStatus::Done
    );
    let c = r.task("probe").unwrap().items.unwrap();
    assert_eq!((c.total, c.run, c.cached), (3, 1, 2));
}

#[tokio::test]
async fn a_file_that_is_not_a_video_fails_its_item_with_a_clear_error() {
    let store = Store::open("memory://not-video", std::path::Path::new(".")).unwrap();
    let yaml = r#"
name: notvideo
stages:
  files:
    uses: shell
    with:
      run: mkdir -p out/v/clip && echo "not a video" > out/v/clip/video.mp4
      collections: { videos: out/v }
  probe:
    uses: video.probe
    map: { over: files.videos }
"#;
    let r = run(yaml, &store).await;
    let t = r.task("probe").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    let e = t.error.as_deref().unwrap();
    assert!(e.contains("item `clip`") && e.contains("video.mp4"), "{e}");
}

#[test]
fn bad_synth_params_are_reported_at_validation() {
    let yaml = "name: x\nstages:\n  g:\n    uses: synth.broadcast\n    with: { sport: curling, count: 1, seed: 1 }\n";
    let err = compile("t.yaml", yaml, &registry()).err().unwrap();
    assert!(err.items[0].message.contains("curling"), "{}", err.render());
}
