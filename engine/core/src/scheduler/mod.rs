//! The scheduler: runs a plan on the local machine. Stages become ready when
//! every task they need has finished; each task evaluates its `when`,
//! checks the cache, takes its resource class from the pool, runs with
//! retries, timeout and cancellation, then publishes outputs (blobs first,
//! manifests next, the cache entry last) and its record.
//!
//! The steps, one file each, in the order a task meets them:
//! - this file: [`RunOptions`], the shared run state and the loop that
//!   decides ready tasks in batches, spawns those that run and collects
//!   finished ones;
//! - `decide`: whether a task runs and why, the same for run and plan;
//! - `execute`: one task from ready to record: upstream failures,
//!   `decide_task` (`when`, fingerprint and cache), then `work` (a whole
//!   task or a map, its outputs published);
//! - `attempt`: one attempt of a whole task with retries, timeout, cancel;
//! - `map`: map stages, items in batches, each cached on its own, run here
//!   or handed to the executor (a Slurm job array);
//! - `publish`: outputs, cache entries, lineage and refs;
//! - `record_log`: the run record written as event batches while it runs;
//! - `scratch`: private scratch folders, and those of dead runs removed;
//! - `explain`: `engine plan`'s decisions, without running anything.

mod attempt;
mod decide;
mod execute;
mod explain;
mod map;
mod publish;
mod record_log;
pub(crate) mod scratch;

use attempt::*;
use decide::*;
use execute::*;
pub use explain::{Decision, explain};
use map::*;
pub(crate) use map::{ItemRunner, run_item};
use publish::*;
use record_log::*;
use scratch::*;

use crate::cache::{self, CacheEntry, ItemEntry, TaskFingerprint};
use crate::compile::{CompiledStage, Pipeline, when_name};
use crate::digest::Digest;
use crate::events::{Event, EventSink};
use crate::plan::Plan;
use crate::records::{
    self, InputRef, ItemCounts, Lineage, RunRecord, RunStatus, TaskRecord, TaskStatus,
};
use crate::resources::{Machine, Pool};
use crate::stage::{
    Input, ItemCtx, Log, MapStage, Stage, StageEnv, StageError, StageImpl, TaskCtx,
};
use crate::store::{ArtifactKind, Item, Manifest, Store, StoreError, Verify, now_rfc3339};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Stages to run even when cached.
    pub force: Vec<String>,
    /// Ignore the cache for every stage (results are still stored).
    pub no_cache: bool,
    /// A cache hit hashes every blob of its outputs instead of checking
    /// their sizes, and writes hash what they find already stored, so a
    /// damaged object of the right size is found and rebuilt.
    pub verify: bool,
    pub cancel: CancellationToken,
    pub events: EventSink,
    /// Template values, recorded in the run.
    pub values: Value,
    pub machine: Machine,
    pub run_id: String,
    /// Where whole-task attempts run: [`crate::executor::Local`] or a
    /// [`crate::slurm::SlurmExecutor`]. Map items run here unless the
    /// executor [`runs_items`](crate::executor::Executor::runs_items).
    pub executor: Arc<dyn crate::executor::Executor>,
    pub git_commit: Option<String>,
    /// Where task scratch folders go.
    pub scratch_root: PathBuf,
    /// First retry delay; doubles each retry, at most 10 s.
    pub retry_backoff: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            force: vec![],
            no_cache: false,
            verify: false,
            cancel: CancellationToken::new(),
            events: EventSink::none(),
            values: Value::Object(Default::default()),
            machine: Machine::detect(),
            run_id: records::new_run_id(),
            executor: Arc::new(crate::executor::Local),
            git_commit: None,
            scratch_root: std::env::temp_dir(),
            retry_backoff: Duration::from_millis(200),
        }
    }
}

/// What a finished task hands to its dependants.
#[derive(Debug, Clone, Default)]
struct Done {
    outputs: BTreeMap<String, Digest>,
    values: BTreeMap<String, Value>,
}

struct Shared {
    pipeline: Arc<Pipeline>,
    plan: Arc<Plan>,
    store: Store,
    pool: Arc<Pool>,
    opts: RunOptions,
    t0: Instant,
    /// Manifests read this run, by digest, for the tasks that read them.
    manifests: Mutex<HashMap<Digest, CachedManifest>>,
    /// This run's private scratch folder (random name, mode 0700), removed
    /// when the run ends; one left by a killed run is removed by the next.
    scratch: tempfile::TempDir,
    /// Emptied attempt folders in `scratch`, for the next attempts.
    scratch_pool: Arc<ScratchPool>,
    /// Logs of running tasks, by task index: their tails reach the record
    /// while they run ([`live_logs`]), so `engine serve` and `engine show`
    /// can follow a long task.
    live: Mutex<HashMap<usize, Log>>,
}

impl Shared {
    fn ms(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1000.0
    }
    fn forced(&self, stage: &str) -> bool {
        self.opts.force.iter().any(|f| f == stage)
    }
    /// How closely a cache hit is checked.
    fn verify(&self) -> Verify {
        if self.opts.verify {
            Verify::Hash
        } else {
            Verify::Size
        }
    }
    /// The store a stage writes its outputs through: under `--force`,
    /// `--no-cache` and `--verify` it hashes what it finds already stored
    /// and replaces it when it does not match.
    fn writer(&self, stage: &str) -> Store {
        if self.forced(stage) || self.opts.no_cache || self.opts.verify {
            self.store.rewriting()
        } else {
            self.store.clone()
        }
    }
    async fn manifest(&self, d: &Digest) -> Result<Arc<Manifest>, StoreError> {
        let cached = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(d)
            .and_then(|c| match c {
                CachedManifest::Kept(m) => Some(m.clone()),
                CachedManifest::Lent(m) => m.upgrade(),
            });
        if let Some(m) = cached {
            return Ok(m);
        }
        let m = Arc::new(self.store.get_manifest(d).await?);
        let c = if m.items.len() + m.files.len() > KEEP_MANIFESTS_UP_TO {
            CachedManifest::Lent(Arc::downgrade(&m))
        } else {
            CachedManifest::Kept(m.clone())
        };
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.clone(), c);
        Ok(m)
    }
}

/// Manifests with more entries than this stay in memory only while a task
/// holds them: a million-item collection is about 300 MB, and kept for the
/// whole run it doubled a map stage's peak (its input, then its output).
/// Smaller ones are kept, as many tasks read the same few.
const KEEP_MANIFESTS_UP_TO: usize = 10_000;

enum CachedManifest {
    Kept(Arc<Manifest>),
    Lent(std::sync::Weak<Manifest>),
}

/// An upstream output handed to a task, before its manifest is loaded.
#[derive(Clone)]
struct InputSpec {
    stage: String,
    task: String,
    output: String,
    digest: Digest,
}

/// Runs the plan to the end (or to cancellation) and returns its record,
/// which is also saved in the store.
///
/// On a multi-threaded runtime the scheduling loop runs on one of its
/// workers, not on the thread that awaits this (often `block_on`'s, outside
/// the pool): the tasks it spawns then start from that worker's own queue
/// and wake it when they end, where from the outside every task cost two
/// hand-offs between threads. A 5,001-stage no-op rerun went from
/// 128-152 ms to 97-126 ms (`bench/src/bin/shell_stages.rs`, bench/README).
/// Dropping the returned future stops the run, as it did before.
pub async fn run(
    pipeline: Arc<Pipeline>,
    plan: Arc<Plan>,
    store: Store,
    opts: RunOptions,
) -> Result<RunRecord, StoreError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let pooled =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if !pooled {
        return run_loop(pipeline, plan, store, opts).await;
    }
    /// Aborts the spawned loop when the caller stops waiting for it.
    struct AbortOnDrop(tokio::task::JoinHandle<Result<RunRecord, StoreError>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let id = opts.run_id.clone();
    let mut task = AbortOnDrop(tokio::spawn(run_loop(pipeline, plan, store, opts)));
    match (&mut task.0).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Local {
            op: "finish the run",
            path: records::run_path(&id),
            source: std::io::Error::other(format!("the runtime stopped before the run ended: {e}")),
        }),
    }
}

async fn run_loop(
    pipeline: Arc<Pipeline>,
    plan: Arc<Plan>,
    store: Store,
    opts: RunOptions,
) -> Result<RunRecord, StoreError> {
    let pool = Pool::new(&pipeline.classes, opts.executor.capacity(opts.machine));
    let mut record = RunRecord {
        id: opts.run_id.clone(),
        pipeline: pipeline.name.clone(),
        file: pipeline.file.clone(),
        status: RunStatus::Running,
        started: now_rfc3339(),
        finished: None,
        seconds: 0.0,
        engine_version: crate::ENGINE_VERSION.into(),
        host: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pid: Some(std::process::id()),
        heartbeat: None,
        git_commit: opts.git_commit.clone(),
        pipeline_digest: pipeline.digest.clone(),
        spec: pipeline.text.clone(),
        values: opts.values.clone(),
        store: store.url().into(),
        executor: opts.executor.name().into(),
        forced: opts.force.clone(),
        no_cache: opts.no_cache,
        verify: opts.verify,
        warnings: pool.clamped.clone(),
        executor_stats: None,
        events: 0,
        tasks: plan
            .tasks
            .iter()
            .map(|t| {
                let s = &pipeline.stages[t.stage];
                TaskRecord {
                    task: t.label.clone(),
                    stage: s.name.clone(),
                    kind: s.kind.clone(),
                    status: TaskStatus::Waiting,
                    reason: String::new(),
                    attempts: 0,
                    matrix: s
                        .matrix
                        .iter()
                        .zip(&t.combo)
                        .map(|((k, v), &i)| (k.clone(), v[i].clone()))
                        .collect(),
                    started_ms: None,
                    finished_ms: None,
                    held_ms: vec![],
                    fingerprint: None,
                    inputs: vec![],
                    outputs: BTreeMap::new(),
                    values: BTreeMap::new(),
                    items: None,
                    log: None,
                    error: None,
                    jobs: vec![],
                    placement: None,
                }
            })
            .collect(),
    };
    let mut log = RecordLog::begin(&store, &mut record, &opts.events).await;
    let scratch =
        private_scratch(&opts.scratch_root, &record.id).map_err(|e| StoreError::Local {
            op: "create a scratch folder in",
            path: opts.scratch_root.display().to_string(),
            source: e,
        })?;
    let sh = Arc::new(Shared {
        pipeline: pipeline.clone(),
        plan: plan.clone(),
        store: store.clone(),
        pool,
        opts: opts.clone(),
        t0: Instant::now(),
        manifests: Mutex::new(HashMap::new()),
        scratch,
        scratch_pool: Arc::default(),
        live: Mutex::new(HashMap::new()),
    });
    opts.executor.begin(&opts.cancel);
    let mut logs_saved: HashMap<usize, usize> = HashMap::new();
    let mut logs_at = Instant::now();
    opts.events.emit(Event::RunStarted {
        run: record.id.clone(),
        pipeline: pipeline.name.clone(),
        tasks: plan.tasks.len(),
        store: store.url().into(),
    });

    let n_stages = pipeline.stages.len();
    let mut stage_left: Vec<usize> = plan.stage_tasks.iter().map(|r| r.len()).collect();
    let mut needs_left: Vec<usize> = pipeline.stages.iter().map(|s| s.needs.len()).collect();
    let mut done: Vec<Option<Done>> = vec![None; plan.tasks.len()];
    let mut ready: VecDeque<usize> = plan
        .stage_order
        .iter()
        .copied()
        .filter(|&s| needs_left[s] == 0)
        .collect();
    let mut join: JoinSet<Joined> = JoinSet::new();
    let mut completed_stages = 0;

    let mut pending: Vec<Pending> = vec![];
    loop {
        while let Some(si) = ready.pop_front() {
            let stage = &pipeline.stages[si];
            let range = plan.stage_tasks[si].clone();
            let blocked = if opts.cancel.is_cancelled() {
                Some("run cancelled before it started".to_string())
            } else {
                upstream_problem(&pipeline, &plan, &record, stage)
            };
            if let Some(reason) = blocked {
                for t in range {
                    log.touch(t);
                    let r = &mut record.tasks[t];
                    r.status = TaskStatus::Skipped;
                    r.reason = reason.clone();
                    opts.events.emit(Event::TaskFinished {
                        task: r.task.clone(),
                        status: r.status,
                        seconds: 0.0,
                        reason: reason.clone(),
                        error: None,
                    });
                }
                stage_left[si] = 0;
                completed_stages += 1;
                for &d in &plan.dependants[si] {
                    needs_left[d] -= 1;
                    if needs_left[d] == 0 {
                        ready.push_back(d);
                    }
                }
                continue;
            }
            let mut inputs = vec![];
            let mut when_ctx = serde_json::Map::new();
            for &n in &stage.needs {
                let up = &pipeline.stages[n];
                let mut vals = vec![];
                for u in plan.stage_tasks[n].clone() {
                    let Some(d) = &done[u] else { continue };
                    for (out, dig) in &d.outputs {
                        inputs.push(InputSpec {
                            stage: up.name.clone(),
                            task: plan.tasks[u].label.clone(),
                            output: out.clone(),
                            digest: dig.clone(),
                        });
                    }
                    vals.push(Value::Object(d.values.clone().into_iter().collect()));
                }
                let v = if vals.len() == 1 {
                    vals.pop().unwrap_or(Value::Null)
                } else {
                    Value::Array(vals)
                };
                when_ctx.insert(when_name(&up.name), v);
            }
            if stage.when.is_some() {
                // `when` may read any ancestor, not only direct needs.
                for a in crate::compile::ancestors(&pipeline.stages, si) {
                    let key = when_name(&pipeline.stages[a].name);
                    if when_ctx.contains_key(&key) {
                        continue;
                    }
                    let vals: Vec<Value> = plan.stage_tasks[a]
                        .clone()
                        .filter_map(|u| {
                            done[u]
                                .as_ref()
                                .map(|d| Value::Object(d.values.clone().into_iter().collect()))
                        })
                        .collect();
                    let v = if vals.len() == 1 {
                        vals[0].clone()
                    } else {
                        Value::Array(vals)
                    };
                    when_ctx.insert(key, v);
                }
            }
            let when_ctx = Arc::new(Value::Object(when_ctx));
            for t in range {
                log.touch(t);
                record.tasks[t].status = TaskStatus::Running;
                pending.push(Pending {
                    t,
                    rec: record.tasks[t].clone(),
                    inputs: inputs.clone(),
                    when_ctx: when_ctx.clone(),
                });
            }
        }
        // The ready tasks are decided in batches, each batch one task of the
        // runtime, and a task of its own is spawned only for each task that
        // runs: most of a rerun's tasks end at the cache, and a task of the
        // runtime each cost them more than the lookup (see `decide_batch`).
        if !pending.is_empty() {
            let per = pending
                .len()
                .div_ceil(4 * sh.opts.machine.cpus.max(1) as usize)
                .clamp(1, DECIDE_BATCH);
            while !pending.is_empty() {
                let batch: Vec<Pending> = pending.drain(..per.min(pending.len())).collect();
                join.spawn(decide_batch(sh.clone(), batch));
            }
        }
        if join.is_empty() {
            break;
        }
        // Tasks just started are in the record; so is a heartbeat while
        // long tasks run (how `engine runs` tells a live run from a dead one),
        // and the tail of each running task's log.
        if logs_at.elapsed() >= CHECKPOINT {
            logs_at = Instant::now();
            live_logs(&sh, &mut record, &mut log, &mut logs_saved).await;
        }
        if log.due() {
            log.checkpoint(&store, &mut record, &opts.events).await;
        }
        let wake = log
            .until_heartbeat()
            .min(CHECKPOINT.saturating_sub(logs_at.elapsed()));
        let joined = tokio::select! {
            j = join.join_next() => j,
            _ = tokio::time::sleep(wake) => {
                if log.until_heartbeat().is_zero() {
                    log.checkpoint(&store, &mut record, &opts.events).await;
                }
                continue;
            }
        };
        let Some(joined) = joined else {
            break;
        };
        // Panics are caught inside the task; a join error means it was aborted.
        let Ok(joined) = joined else {
            continue;
        };
        let ended = match joined {
            Joined::Decided(steps) => {
                let mut ended = Vec::with_capacity(steps.len());
                for (t, step) in steps {
                    match step {
                        Outcome::Ended(f) => ended.push((t, f)),
                        Outcome::Runs(runs) => {
                            log.before_work(&store, &mut record, &opts.events).await;
                            join.spawn(run_one(sh.clone(), t, runs));
                        }
                    }
                }
                ended
            }
            Joined::Ran(t, f) => vec![(t, f)],
        };
        for (t, f) in ended {
            let (rec, d, json) = f.unwrap_or_else(|what| {
                let mut r = record.tasks[t].clone();
                r.status = TaskStatus::Failed;
                r.finished_ms = Some(sh.ms());
                r.error = Some(format!(
                    "the stage panicked (a bug in stage `{}`): {what}",
                    r.kind
                ));
                let json = sealed(&r);
                (r, None, json)
            });
            let si = plan.tasks[t].stage;
            record.tasks[t] = rec;
            log.ended(t, json);
            done[t] = d;
            stage_left[si] -= 1;
            if stage_left[si] == 0 {
                completed_stages += 1;
                for &dep in &plan.dependants[si] {
                    needs_left[dep] -= 1;
                    if needs_left[dep] == 0 {
                        ready.push_back(dep);
                    }
                }
            }
        }
        if log.due() {
            log.checkpoint(&store, &mut record, &opts.events).await;
        }
    }
    let _ = (completed_stages, n_stages);
    // The run's folder goes now; what else only the tasks needed is
    // dropped on the blocking pool, beside the record's final save: the
    // compiled stages of a 5,001-stage pipeline took this thread about
    // 4 ms to free at the end of a no-op rerun.
    let t0 = sh.t0;
    match Arc::try_unwrap(sh) {
        Ok(Shared {
            pipeline: p,
            plan: pl,
            manifests,
            scratch,
            live,
            ..
        }) => {
            drop(scratch);
            let rest = (p, pl, manifests, live, done, pipeline, plan);
            drop(tokio::task::spawn_blocking(move || drop(rest)));
        }
        Err(sh) => drop(sh),
    }
    for (t, r) in record.tasks.iter_mut().enumerate() {
        if matches!(r.status, TaskStatus::Waiting | TaskStatus::Running) {
            r.status = TaskStatus::Skipped;
            r.reason = "run cancelled before it started".into();
            log.touch(t);
        }
    }
    record.status = if record.tasks.iter().any(|t| t.status == TaskStatus::Failed) {
        RunStatus::Failed
    } else if opts.cancel.is_cancelled()
        || record
            .tasks
            .iter()
            .any(|t| t.status == TaskStatus::Cancelled)
    {
        RunStatus::Cancelled
    } else {
        RunStatus::Succeeded
    };
    // Cancels what the executor still has in flight (one `scancel` for a
    // cancelled run's Slurm jobs) and says what it did.
    record.executor_stats = opts.executor.end().await;
    record.finished = Some(now_rfc3339());
    record.seconds = t0.elapsed().as_secs_f64();
    // The final record names this run's outputs, which were written as
    // deferred writes: make them durable first, all at once.
    if let Err(e) = store.flush().await {
        let w = format!(
            "Failed to flush the store to disk at the end of the run: {e}; a power cut now could damage its outputs (a rerun would redo them)"
        );
        opts.events.emit(Event::Log {
            task: String::new(),
            line: format!("warning: {w}"),
        });
        record.warnings.push(w);
    }
    log.save_whole(&store, &mut record, &opts.events).await;
    opts.events.emit(Event::RunFinished {
        run: record.id.clone(),
        status: record.status,
        seconds: record.seconds,
        counts: record.counts(),
    });
    Ok(record)
}

/// A task's record as it ended, what it hands to its dependants, and the
/// record as JSON ([`sealed`]); `Err` with its message when it panicked.
type Finished = Result<(TaskRecord, Option<Done>, Box<[u8]>), String>;

/// A ready task handed to [`decide_batch`]: its record as it starts, its
/// inputs and what its `when` may read (one per stage, shared).
struct Pending {
    t: usize,
    rec: TaskRecord,
    inputs: Vec<InputSpec>,
    when_ctx: Arc<Value>,
}

/// The most tasks decided in one task of the runtime. Fewer when fewer are
/// ready, so that each worker thread gets a few batches.
const DECIDE_BATCH: usize = 64;

/// What a task of the run's [`JoinSet`] hands back.
// A task's output shares its cell with its future, which is larger than
// `Ran` either way: boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Joined {
    /// A batch decided: each task ended, or runs.
    Decided(Vec<(usize, Outcome)>),
    /// A task that ran.
    Ran(usize, Finished),
}

/// One task of a decided batch: ended (refs moved, record sealed), or runs.
// `Ended` is the larger variant and the common one: see [`Step`].
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Ended(Finished),
    Runs(Box<Runs>),
}

/// Decides a batch of ready tasks ([`decide_task`]) and finishes those that
/// end there (refs, the sealed record).
///
/// A task of the runtime for each ready task cost a 5,001-stage no-op
/// rerun more than its cache lookups: spawning, joining and waking the
/// loop for each, and a future the size of the largest state a task can
/// reach, moved several times on its way into the runtime. On a local
/// file system a lookup answers at once, and the batch's tasks are
/// decided one after another; elsewhere (S3) a few at a time, so that
/// their round trips overlap.
async fn decide_batch(sh: Arc<Shared>, batch: Vec<Pending>) -> Joined {
    use futures::{FutureExt, StreamExt};
    let one = |p: Pending| {
        let sh = &sh;
        async move {
            let t = p.t;
            let step = std::panic::AssertUnwindSafe(async {
                match decide_task(sh, t, p.rec, p.inputs, &p.when_ctx).await {
                    Step::Ended(rec, d) => {
                        let rec = publish_refs(sh, t, rec).await;
                        let json = sealed(&rec);
                        Outcome::Ended(Ok((rec, d, json)))
                    }
                    Step::Runs(runs) => Outcome::Runs(runs),
                }
            })
            .catch_unwind()
            .await
            .unwrap_or_else(|p| Outcome::Ended(Err(panic_message(&*p))));
            (t, step)
        }
    };
    let steps = if sh.store.answers_at_once() {
        let mut steps = Vec::with_capacity(batch.len());
        for p in batch {
            steps.push(one(p).await);
        }
        steps
    } else {
        futures::stream::iter(batch)
            .map(one)
            .buffer_unordered(16)
            .collect()
            .await
    };
    Joined::Decided(steps)
}

/// Runs a task that the cache did not answer ([`work`]), then its refs.
async fn run_one(sh: Arc<Shared>, t: usize, runs: Box<Runs>) -> Joined {
    use futures::FutureExt;
    let ran = std::panic::AssertUnwindSafe(async {
        let (rec, d) = work(sh.clone(), t, runs).await;
        let rec = publish_refs(&sh, t, rec).await;
        let json = sealed(&rec);
        (rec, d, json)
    })
    .catch_unwind()
    .await;
    Joined::Ran(t, ran.map_err(|p| panic_message(&*p)))
}

/// What a panic said, when it said it with a string.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A task's record as JSON, made on the task's own thread as it ends, so
/// that the run's document is mostly copied (see [`records::run_json`]).
fn sealed(rec: &TaskRecord) -> Box<[u8]> {
    serde_json::to_vec(rec)
        .expect("task records serialise")
        .into_boxed_slice()
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The last bytes of a running task's log kept in its record.
const LIVE_LOG_TAIL: usize = 64 << 10;

/// Puts the tail of every running task's log that grew since it was last
/// saved into the store, and its digest into the task's record (replaced by
/// the whole log when the task ends).
async fn live_logs(
    sh: &Shared,
    record: &mut RunRecord,
    log: &mut RecordLog,
    saved: &mut HashMap<usize, usize>,
) {
    let grown: Vec<(usize, Log)> = {
        let live = sh.live.lock().unwrap_or_else(|p| p.into_inner());
        saved.retain(|t, _| live.contains_key(t));
        live.iter()
            .filter(|(t, l)| saved.get(t).copied().unwrap_or(0) != l.written())
            .map(|(t, l)| (*t, l.clone()))
            .collect()
    };
    for (t, l) in grown {
        let written = l.written();
        if let Ok(b) = sh.store.put_blob(l.tail(LIVE_LOG_TAIL).into_bytes()).await
            && record.tasks[t].status == TaskStatus::Running
        {
            record.tasks[t].log = Some(b.digest);
            log.touch(t);
            saved.insert(t, written);
        }
    }
}
