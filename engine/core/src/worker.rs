//! Stages that run in a separate worker executable.
//!
//! Some stage kinds need a heavy native library (the replay model needs
//! libtorch: 118 MB resident and 0.2 s to load). The `engine` binary must
//! not pay that on every `validate`, `plan` or `runs`, so such kinds are
//! registered in it as *proxies* ([`WorkerTask`], [`WorkerMap`]): they
//! parse and check their params, have the real stage's version and
//! outputs (so fingerprints and plans are the same), and when a task or
//! item runs they hand it to a worker process (`engine-worker serve`, built
//! with the library) that runs the real stage against the same store.
//!
//! The protocol is one JSON document per line: the engine writes a
//! [`Request`] to the worker's stdin; the worker answers with any number of
//! [`Reply::Log`] and [`Reply::Progress`] lines and one [`Reply::Done`] or
//! [`Reply::Failed`]. Blobs never cross the pipe: the worker writes them to
//! the store and the answer carries only manifests and items. A worker
//! serves one request at a time and is kept for the next one (a map stage
//! with 1,000 items loads libtorch once per concurrent slot, not 1,000
//! times). Cancellation and timeouts kill the worker; a worker exits when
//! its stdin closes or the engine that started it dies.

use crate::digest::Digest;
use crate::events::{Event, EventSink};
use crate::stage::{
    Input, ItemCtx, Log, MapStage, OutputDecl, Registry, Stage, StageEnv, StageError, StageImpl,
    TaskCtx,
};
use crate::store::{BlobRef, Item, Manifest, Store};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

/// Environment variable naming the worker executable; default:
/// `engine-worker` beside the running executable.
pub const WORKER_ENV: &str = "ENGINE_WORKER";
/// The worker executable's file name.
pub const WORKER_BIN: &str = "engine-worker";

/// An upstream output as it crosses the pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireInput {
    pub stage: String,
    pub task: String,
    pub output: String,
    pub digest: Digest,
    pub manifest: Manifest,
}

/// One task or one item for the worker to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The stage kind (`uses:`).
    pub kind: String,
    /// The stage's `with:`, as written.
    pub params: Value,
    /// The store URL as another process opens it.
    pub store: String,
    /// Writes replace objects whose bytes do not match (`--force`, ...).
    #[serde(default)]
    pub rewriting: bool,
    pub task: String,
    #[serde(default = "one")]
    pub attempt: u32,
    pub threads: usize,
    /// The attempt's private scratch folder, made by the engine.
    pub scratch: PathBuf,
    #[serde(default)]
    pub matrix: BTreeMap<String, Value>,
    #[serde(default)]
    pub inputs: Vec<WireInput>,
    /// Set for an item of a map stage.
    #[serde(default)]
    pub item: Option<Item>,
}

fn one() -> u32 {
    1
}

/// What the worker writes back, one per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Log(String),
    Progress(u64, u64),
    Done(Done),
    Failed(String),
}

/// A finished task's outputs and values, or a finished item's files and meta.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Done {
    #[serde(default)]
    pub outputs: BTreeMap<String, Manifest>,
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    #[serde(default)]
    pub files: BTreeMap<String, BlobRef>,
    #[serde(default)]
    pub meta: Value,
}

// ---------------------------------------------------------------------------
// The engine's side: proxies and the pool of worker processes.

/// What a proxy knows about the real stage.
#[derive(Debug, Clone)]
pub struct Remote {
    pub kind: &'static str,
    pub version: u32,
    pub params: Value,
}

/// A whole-task stage that runs in the worker.
pub struct WorkerTask {
    pub remote: Remote,
    pub outputs: Vec<OutputDecl>,
    /// The real stage runs on every run (see [`Stage::always_run`]).
    pub always_run: bool,
}

/// A map stage whose items run in the worker.
pub struct WorkerMap {
    pub remote: Remote,
    pub output: String,
}

#[async_trait]
impl Stage for WorkerTask {
    fn version(&self) -> u32 {
        self.remote.version
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        self.outputs.clone()
    }
    fn always_run(&self) -> bool {
        self.always_run
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let req = Request {
            kind: self.remote.kind.into(),
            params: self.remote.params.clone(),
            store: worker_store_url(&ctx.store, self.remote.kind)?,
            rewriting: ctx.store.is_rewriting(),
            task: ctx.task.clone(),
            attempt: ctx.attempt,
            threads: ctx.threads,
            scratch: ctx.scratch.clone(),
            matrix: ctx.matrix.clone(),
            inputs: wire_inputs(&ctx.inputs),
            item: None,
        };
        let done = call(&req, &ctx.log, &ctx.cancel).await?;
        for (name, m) in done.outputs {
            if !ctx.declared.iter().any(|d| d.name == name) {
                return Err(StageError::msg(format!(
                    "the worker returned output `{name}`, which stage kind `{}` does not declare; are `engine` and `engine-worker` from the same build?",
                    self.remote.kind
                )));
            }
            ctx.set_output(&name, m);
        }
        for (k, v) in done.values {
            ctx.set_value(&k, v);
        }
        Ok(())
    }
}

#[async_trait]
impl MapStage for WorkerMap {
    fn version(&self) -> u32 {
        self.remote.version
    }
    fn output(&self) -> String {
        self.output.clone()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError> {
        let req = Request {
            kind: self.remote.kind.into(),
            params: self.remote.params.clone(),
            store: worker_store_url(&ctx.store, self.remote.kind)?,
            rewriting: ctx.store.is_rewriting(),
            task: ctx.task.clone(),
            attempt: 1,
            threads: ctx.threads,
            scratch: ctx.scratch.clone(),
            matrix: BTreeMap::new(),
            inputs: wire_inputs(&ctx.inputs),
            item: Some(item.clone()),
        };
        let done = call(&req, &ctx.log, &ctx.cancel).await?;
        for (name, blob) in done.files {
            ctx.attach_file(&name, blob)?;
        }
        ctx.set_meta(done.meta);
        Ok(())
    }
}

fn worker_store_url(store: &Store, kind: &str) -> Result<String, StageError> {
    store.worker_url().map(str::to_string).ok_or_else(|| {
        StageError::msg(format!(
            "stage kind `{kind}` runs in the `{WORKER_BIN}` process, which cannot reach the in-memory store `{}`; use an `fs://` or `s3://` store",
            store.url()
        ))
    })
}

fn wire_inputs(inputs: &[Input]) -> Vec<WireInput> {
    inputs
        .iter()
        .map(|i| WireInput {
            stage: i.stage.clone(),
            task: i.task.clone(),
            output: i.output.clone(),
            digest: i.digest.clone(),
            manifest: (*i.manifest).clone(),
        })
        .collect()
}

/// The worker executable: `$ENGINE_WORKER`, else `engine-worker` beside
/// this executable (or one folder up, for test binaries in `deps/`).
pub fn worker_path() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os(WORKER_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(StageError::msg(format!(
                "`{WORKER_ENV}` names `{}`, which is not a file; point it at the `{WORKER_BIN}` executable or unset it",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe().ok();
    let dirs: Vec<&Path> = exe
        .as_deref()
        .and_then(Path::parent)
        .into_iter()
        .flat_map(|d| [Some(d), d.parent()])
        .flatten()
        .collect();
    for d in &dirs {
        let p = d.join(WORKER_BIN);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(StageError::msg(format!(
        "the model stages run in `{WORKER_BIN}` (the engine built with libtorch), which was not found beside `{}`; build it with `source scripts/lib.sh && need_torch && cargo build --release -p engine-worker` (it lands beside `engine`), or set `{WORKER_ENV}` to its path",
        exe.as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "engine".into())
    )))
}

/// A running worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The log its stderr goes to while it serves a request.
    current: Arc<Mutex<Option<Log>>>,
    /// The last lines of its stderr, for when it dies.
    tail: Arc<Mutex<Vec<String>>>,
    /// Copies its stderr; ends when the worker exits.
    stderr_copier: Option<tokio::task::JoinHandle<()>>,
}

/// Idle workers, kept for the next request.
fn pool() -> &'static Mutex<Vec<Worker>> {
    static POOL: OnceLock<Mutex<Vec<Worker>>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// More idle workers than this are stopped rather than kept.
const MAX_IDLE: usize = 8;

fn spawn_worker() -> Result<Worker, StageError> {
    let bin = worker_path()?;
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        StageError::msg(format!(
            "Failed to start the worker `{}`: {e}",
            bin.display()
        ))
    })?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let stderr = child.stderr.take().expect("piped stderr");
    let current: Arc<Mutex<Option<Log>>> = Default::default();
    let tail: Arc<Mutex<Vec<String>>> = Default::default();
    let (cur, t) = (current.clone(), tail.clone());
    let stderr_copier = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(log) = cur.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                log.line(&line);
            }
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == 20 {
                t.remove(0);
            }
            t.push(line);
        }
    });
    Ok(Worker {
        child,
        stdin,
        stdout,
        current,
        tail,
        stderr_copier: Some(stderr_copier),
    })
}

/// Runs one request on a pooled worker, forwarding its log and progress.
async fn call(req: &Request, log: &Log, cancel: &CancellationToken) -> Result<Done, StageError> {
    let pooled = pool().lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut w = match pooled {
        // An idle worker that died meanwhile is replaced, not reported.
        Some(mut w) => match w.child.try_wait() {
            Ok(None) => w,
            _ => spawn_worker()?,
        },
        None => spawn_worker()?,
    };
    *w.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(log.clone());
    let mut line = serde_json::to_string(req).expect("requests serialise");
    line.push('\n');
    let res = tokio::select! {
        r = exchange(&mut w, &line, log) => r,
        _ = cancel.cancelled() => Err(StageError::Cancelled),
    };
    *w.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    match res {
        Ok(reply) => {
            let mut idle = pool().lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(w);
            }
            reply
        }
        // The worker is in an unknown state (cancelled mid-request, or
        // dead): dropping it kills it.
        Err(e) => Err(e),
    }
}

/// Writes the request and reads replies until the answer. The outer
/// error means the worker is unusable; the inner one is the stage's.
async fn exchange(
    w: &mut Worker,
    line: &str,
    log: &Log,
) -> Result<Result<Done, StageError>, StageError> {
    if let Err(e) = w.stdin.write_all(line.as_bytes()).await {
        return Err(died(w, format!("did not take the request: {e}")).await);
    }
    if let Err(e) = w.stdin.flush().await {
        return Err(died(w, format!("did not take the request: {e}")).await);
    }
    loop {
        let next = match w.stdout.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => return Err(died(w, "exited before answering".into()).await),
            Err(e) => return Err(died(w, format!("could not be read: {e}")).await),
        };
        match serde_json::from_str::<Reply>(&next) {
            Ok(Reply::Log(l)) => log.line(&l),
            Ok(Reply::Progress(d, t)) => log.progress(d, t),
            Ok(Reply::Done(d)) => return Ok(Ok(d)),
            Ok(Reply::Failed(m)) => return Ok(Err(StageError::msg(m))),
            // Anything else on stdout is a library printing: keep it in the log.
            Err(_) => log.line(&next),
        }
    }
}

/// The error for a worker that failed mid-request, quoting the end of its
/// stderr: a worker that cannot load libtorch dies before reading anything,
/// and what the dynamic loader said is the useful part.
async fn died(w: &mut Worker, what: String) -> StageError {
    // Let it exit and the stderr copier reach the end before quoting it.
    let two = std::time::Duration::from_secs(2);
    let _ = tokio::time::timeout(two, w.child.wait()).await;
    if let Some(h) = w.stderr_copier.take() {
        let _ = tokio::time::timeout(two, h).await;
    }
    let status = w
        .child
        .try_wait()
        .ok()
        .flatten()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    let tail = w.tail.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
    StageError::msg(format!(
        "the worker process `{WORKER_BIN}` {what}{status}{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its last output:\n{tail}")
        }
    ))
}

// ---------------------------------------------------------------------------
// The worker's side.

/// Serves requests from `input` (the worker's stdin) until it closes, writing replies to `out`;
/// `registry` holds the real stages.
pub async fn serve(
    registry: &Registry,
    input: impl tokio::io::AsyncRead + Unpin,
    mut out: impl tokio::io::AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut stdin = BufReader::new(input).lines();
    let cwd = std::env::current_dir()?;
    let mut stores: HashMap<(String, bool), Store> = HashMap::new();
    while let Some(line) = stdin.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let req: Result<Request, _> = serde_json::from_str(&line);
        let fut = async {
            let req = req.map_err(|e| StageError::msg(format!("malformed worker request: {e}")))?;
            let key = (req.store.clone(), req.rewriting);
            let store = match stores.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let s = Store::open(&req.store, &cwd)?;
                    let s = if req.rewriting { s.rewriting() } else { s };
                    stores.insert(key, s.clone());
                    s
                }
            };
            run_request(registry, store, req, EventSink::new(tx)).await
        };
        tokio::pin!(fut);
        // Forward log and progress while the stage runs.
        let result = loop {
            tokio::select! {
                r = &mut fut => break r,
                Some(e) = rx.recv() => write_event(&mut out, e).await?,
            }
        };
        while let Ok(e) = rx.try_recv() {
            write_event(&mut out, e).await?;
        }
        let reply = match result {
            Ok(d) => Reply::Done(d),
            Err(e) => Reply::Failed(e.to_string()),
        };
        write_reply(&mut out, &reply).await?;
    }
    Ok(())
}

async fn write_event(
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    e: Event,
) -> std::io::Result<()> {
    match e {
        Event::Log { line, .. } => write_reply(out, &Reply::Log(line)).await,
        Event::Progress { done, total, .. } => {
            write_reply(out, &Reply::Progress(done, total)).await
        }
        _ => Ok(()),
    }
}

async fn write_reply(
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    r: &Reply,
) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).expect("replies serialise");
    line.push('\n');
    out.write_all(line.as_bytes()).await?;
    out.flush().await
}

async fn run_request(
    registry: &Registry,
    store: Store,
    req: Request,
    events: EventSink,
) -> Result<Done, StageError> {
    let kind = registry.get(&req.kind).ok_or_else(|| {
        StageError::msg(format!(
            "this `{WORKER_BIN}` has no stage kind `{}`; are `engine` and `engine-worker` from the same build?",
            req.kind
        ))
    })?;
    let stage = crate::secrets::build_stage(kind.build, &req.params)
        .map_err(|e| StageError::msg(format!("stage kind `{}`: {e}", req.kind)))?;
    let log = Log::new(&req.task, events);
    let inputs: Arc<Vec<Input>> = Arc::new(
        req.inputs
            .into_iter()
            .map(|i| Input {
                stage: i.stage,
                task: i.task,
                output: i.output,
                digest: i.digest,
                manifest: Arc::new(i.manifest),
            })
            .collect(),
    );
    let env = StageEnv::new(
        store,
        &req.task,
        inputs,
        log,
        CancellationToken::new(),
        req.scratch,
        req.threads.max(1),
    );
    match (stage, req.item) {
        (StageImpl::Task(s), None) => {
            let mut ctx = TaskCtx::new(env, req.matrix, s.outputs(), req.attempt);
            s.run(&mut ctx).await?;
            Ok(Done {
                outputs: ctx.outputs,
                values: ctx.values,
                ..Default::default()
            })
        }
        (StageImpl::Map(m), Some(item)) => {
            let mut ctx = ItemCtx::new(env);
            m.run_item(&item, &mut ctx).await?;
            Ok(Done {
                files: ctx.files.into(),
                meta: ctx.meta,
                ..Default::default()
            })
        }
        (StageImpl::Task(_), Some(_)) => Err(StageError::msg(format!(
            "stage kind `{}` is a task stage but the request is for an item",
            req.kind
        ))),
        (StageImpl::Map(_), None) => Err(StageError::msg(format!(
            "stage kind `{}` is a map stage but the request has no item",
            req.kind
        ))),
    }
}

/// Exits this process when the process that started it goes away: a
/// worker must not outlive its engine (`kill -9` of the engine included).
pub fn exit_with_parent() {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            // SAFETY: as above.
            if unsafe { libc::getppid() } != parent {
                std::process::exit(3);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Runs `requests` through [`serve`] with the built-in kinds and
    /// returns every reply.
    async fn exchange_all(requests: &[Request]) -> Vec<Reply> {
        let r = Registry::with_builtins();
        let (mut to_worker, worker_in) = tokio::io::duplex(1 << 20);
        let (worker_out, mut from_worker) = tokio::io::duplex(1 << 20);
        let mut text = String::new();
        for q in requests {
            text.push_str(&serde_json::to_string(q).unwrap());
            text.push('\n');
        }
        text.push_str("this is not a request\n");
        to_worker.write_all(text.as_bytes()).await.unwrap();
        drop(to_worker);
        serve(&r, worker_in, worker_out).await.unwrap();
        let mut out = String::new();
        from_worker.read_to_string(&mut out).await.unwrap();
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn request(dir: &Path, kind: &str, params: Value, item: Option<Item>) -> Request {
        Request {
            kind: kind.into(),
            params,
            store: format!("fs://{}", dir.join("store").display()),
            rewriting: false,
            task: "t".into(),
            attempt: 1,
            threads: 1,
            scratch: dir.join("scratch"),
            matrix: BTreeMap::new(),
            inputs: vec![],
            item,
        }
    }

    #[tokio::test]
    async fn the_worker_runs_tasks_and_items_against_the_store_and_answers_each_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &format!("fs://{}", dir.path().join("store").display()),
            dir.path(),
        )
        .unwrap();
        let blob = store.put_blob(b"abc".to_vec()).await.unwrap();
        let item = Item {
            key: "k".into(),
            files: [("f.txt".to_string(), blob)].into(),
            meta: Value::Null,
        };
        let replies = exchange_all(&[
            request(
                dir.path(),
                "builtin.echo",
                serde_json::json!({"text": "hello"}),
                None,
            ),
            request(dir.path(), "builtin.upper", Value::Null, Some(item)),
            request(
                dir.path(),
                "builtin.fail",
                serde_json::json!({"message": "boom"}),
                None,
            ),
            request(dir.path(), "no.such.kind", Value::Null, None),
        ])
        .await;
        let answers: Vec<&Reply> = replies
            .iter()
            .filter(|r| matches!(r, Reply::Done(_) | Reply::Failed(_)))
            .collect();
        assert_eq!(
            answers.len(),
            5,
            "one answer per line, the malformed one too: {replies:?}"
        );
        // The task's output is in the store, named by content.
        let Reply::Done(d) = answers[0] else {
            panic!("{:?}", answers[0])
        };
        let out = &d.outputs["out"];
        let b = &out.files["text.txt"];
        assert_eq!(store.get_blob(&b.digest).await.unwrap(), b"hello");
        // The item's file too.
        let Reply::Done(d) = answers[1] else {
            panic!("{:?}", answers[1])
        };
        assert_eq!(
            store.get_blob(&d.files["f.txt"].digest).await.unwrap(),
            b"ABC"
        );
        let Reply::Failed(m) = answers[2] else {
            panic!("{:?}", answers[2])
        };
        assert!(m.contains("boom"), "{m}");
        let Reply::Failed(m) = answers[3] else {
            panic!("{:?}", answers[3])
        };
        assert!(m.contains("no stage kind `no.such.kind`"), "{m}");
        let Reply::Failed(m) = answers[4] else {
            panic!("{:?}", answers[4])
        };
        assert!(m.contains("malformed worker request"), "{m}");
    }

    #[tokio::test]
    async fn a_proxy_refuses_an_in_memory_store_and_names_the_fix() {
        let store = Store::open("memory://", Path::new("/")).unwrap();
        let e = worker_store_url(&store, "train.sweep")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`train.sweep`") && e.contains("fs://"), "{e}");
    }
}
