//! What the serve tests share: a temporary fs store holding a real run of
//! a small pipeline (a map stage, a matrix, a shell report with HTML and
//! JSON, a failing stage, a published ref), and a server on 127.0.0.1:0.
#![allow(dead_code)] // each test crate uses its own part

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{self, RunRecord, RunStatus, TaskStatus};
use engine_core::resources::Machine;
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use engine_serve::{Options, Server};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const PIPELINE: &str = r#"
name: web
resources:
  cpu: { cpus: 1 }
stages:
  make:
    uses: builtin.items
    with: { count: 5 }
  shout:
    uses: builtin.upper
    resources: cpu
    map: { over: make.items, batch: 2 }
  gather:
    uses: builtin.concat
    needs: [shout]
  report:
    uses: shell
    needs: [gather]
    with:
      run: |
        mkdir -p out
        echo '<html><body><h1>The report</h1></body></html>' > out/index.html
        echo '{"f1": 0.9, "league": "nba"}' > out/metrics.json
        echo 'report log line'
      outputs: { report: out }
  sweep:
    uses: shell
    needs: [make]
    matrix: { env.X: [1, 2, 3] }
    with: { run: "echo trial $X" }
  broken:
    uses: shell
    needs: [make]
    with: { run: "echo about to fail; exit 3" }
"#;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub run: RunRecord,
}

pub async fn run_pipeline(store: &Store, yaml: &str) -> RunRecord {
    let p = compile("web.yaml", yaml, &Registry::with_builtins())
        .unwrap_or_else(|d| panic!("{}", d.render()));
    let pl = plan(&p);
    let o = RunOptions {
        machine: Machine {
            cpus: 2,
            memory: 8 << 30,
            gpus: 0,
        },
        retry_backoff: Duration::from_millis(5),
        git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        ..RunOptions::default()
    };
    scheduler::run(Arc::new(p), Arc::new(pl), store.clone(), o)
        .await
        .unwrap()
}

/// A store with one finished run (failed: `broken` fails) and a ref
/// `models/web@production` moved twice.
pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let run = run_pipeline(&store, PIPELINE).await;
    assert_eq!(run.status, RunStatus::Failed, "{:?}", run.tasks);
    let report = &run.task("report").unwrap().outputs["report"];
    let gather = &run
        .task("gather")
        .unwrap()
        .outputs
        .values()
        .next()
        .unwrap()
        .clone();
    store
        .set_ref("models/web/production", gather, "first")
        .await
        .unwrap();
    // The second move is a deploy: its run and the evaluation behind it.
    let deploy = engine_core::store::RefMove {
        note: "second".into(),
        run: Some(run.id.clone()),
        evaluation: Some(report.clone()),
    };
    store
        .move_ref("models/web/production", report, &deploy)
        .await
        .unwrap();
    Fixture { dir, store, run }
}

pub async fn start(store: &Store, o: Options) -> (SocketAddr, Arc<engine_serve::Ctx>) {
    let server = Server::bind(store.clone(), &o).await.unwrap();
    let addr = server.addr();
    let ctx = server.ctx.clone();
    tokio::spawn(server.run(std::future::pending()));
    (addr, ctx)
}

pub fn local() -> Options {
    Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        poll: Duration::from_millis(100),
        ..Options::default()
    }
}

/// A copy of `run` saved under a new id as still running in this process,
/// with `running` as its running task and every later task waiting.
pub async fn live_copy(store: &Store, run: &RunRecord, id: &str, running: &str) -> RunRecord {
    let mut r = run.clone();
    r.id = id.into();
    r.status = RunStatus::Running;
    r.finished = None;
    r.seconds = 0.0;
    r.pid = Some(std::process::id());
    r.host = hostname();
    r.heartbeat = Some(engine_core::store::now_rfc3339());
    let at = r.tasks.iter().position(|t| t.task == running).unwrap();
    for (i, t) in r.tasks.iter_mut().enumerate() {
        if i == at {
            t.status = TaskStatus::Running;
            t.finished_ms = None;
        } else if i > at {
            t.status = TaskStatus::Waiting;
            t.started_ms = None;
            t.finished_ms = None;
        }
    }
    records::save_run(store, &r).await.unwrap();
    r
}

pub fn hostname() -> String {
    ::hostname::get().unwrap().to_string_lossy().into_owned()
}

/// A SQLite catalog file holding one real video, made by ffmpeg (6 s of
/// test pattern, H.264 in MP4 as a browser plays it), queued for review
/// with two proposed segments; an empty store beside it.
pub struct ReviewFixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    /// The catalog's URL: the file's path, as `engine serve --catalog` takes it.
    pub catalog: String,
    pub video: i64,
    pub path: std::path::PathBuf,
}

pub const PROPOSED: [(f64, f64); 2] = [(1.0, 2.5), (4.0, 5.0)];

pub fn make_video(path: &std::path::Path) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc=duration=6:size=160x90:rate=10"])
        // testsrc is RGB: without this x264 writes 4:4:4, which browsers do not decode.
        .args(["-pix_fmt", "yuv420p"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("Failed to run `ffmpeg` (the review tests make a real video; apt-get install ffmpeg): {e}")
        });
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub async fn review_fixture() -> ReviewFixture {
    use catalog::{Catalog, NewLabel, NewQueueEntry, NewVideo};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let path = dir.path().canonicalize().unwrap().join("match-01.mp4");
    make_video(&path);
    let url = dir.path().join("catalog.db").display().to_string();
    let cat = Catalog::open(&url).await.unwrap();
    let (video, _) = cat
        .upsert_video(&NewVideo {
            uri: path.display().to_string(),
            sport: Some("ice-hockey".into()),
            league: Some("no-graphics-league".into()),
            broadcaster: Some("home-tv".into()),
            duration_s: 6.0,
            fps: 10.0,
            width: 160,
            height: 90,
            ..NewVideo::default()
        })
        .await
        .unwrap();
    cat.enqueue_review(
        video,
        &NewQueueEntry {
            confidence: Some(0.31),
            proposals: PROPOSED
                .iter()
                .map(|&(start_s, end_s)| NewLabel {
                    start_s,
                    end_s,
                    confidence: Some(0.6),
                })
                .collect(),
            reason: Some("teacher confidence 0.31 < 0.50".into()),
            queued_by: Some("route".into()),
        },
    )
    .await
    .unwrap();
    cat.close().await;
    ReviewFixture {
        dir,
        store,
        catalog: url,
        video,
        path,
    }
}

/// The video's `human` labels and its newest review entry, read from the
/// catalog file as `engine review` would.
pub async fn verdict_of(catalog: &str, video: i64) -> (Vec<(f64, f64)>, catalog::QueueEntry) {
    let cat = catalog::Catalog::open(catalog).await.unwrap();
    let human = cat
        .labels_for(video)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.source == "human")
        .map(|l| (l.start_s, l.end_s))
        .collect();
    let entry = cat.reviews_of(video).await.unwrap().remove(0);
    cat.close().await;
    (human, entry)
}
