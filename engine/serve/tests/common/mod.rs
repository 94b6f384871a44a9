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
    store
        .set_ref("models/web/production", report, "second")
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
