//! The scheduler: runs a plan on the local machine. Stages become ready when
//! every task they need has finished; each task evaluates its `when`,
//! checks the cache, takes its resource class from the pool, runs with
//! retries, timeout and cancellation, then publishes outputs (blobs first,
//! manifests next, the cache entry last) and its record.

use crate::cache::{self, CacheEntry, ItemEntry, TaskFingerprint};
use crate::compile::{CompiledStage, Pipeline, when_name};
use crate::digest::Digest;
use crate::events::{Event, EventSink};
use crate::plan::Plan;
use crate::records::{
    self, InputRef, ItemCounts, Lineage, RunRecord, RunStatus, TaskRecord, TaskStatus,
};
use crate::resources::{Machine, Pool};
use crate::stage::{Input, ItemCtx, Log, MapStage, Stage, StageError, StageImpl, TaskCtx};
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
    pub executor: String,
    pub git_commit: Option<String>,
    /// Where task scratch folders go.
    pub scratch_root: PathBuf,
    /// First retry delay; doubles each retry, at most 10 s.
    pub retry_backoff: Duration,
    /// Run whole-task stages as Slurm jobs instead of in this process.
    pub slurm: Option<crate::slurm::SlurmConfig>,
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
            executor: "local".into(),
            git_commit: None,
            scratch_root: std::env::temp_dir(),
            retry_backoff: Duration::from_millis(200),
            slurm: None,
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
    manifests: Mutex<HashMap<Digest, Arc<Manifest>>>,
    /// This run's private scratch folder (random name, mode 0700), removed
    /// when the run ends; one left by a killed run is removed by the next.
    scratch: tempfile::TempDir,
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
        if let Some(m) = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(d)
        {
            return Ok(m.clone());
        }
        let m = Arc::new(self.store.get_manifest(d).await?);
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.clone(), m.clone());
        Ok(m)
    }
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
pub async fn run(
    pipeline: Arc<Pipeline>,
    plan: Arc<Plan>,
    store: Store,
    opts: RunOptions,
) -> Result<RunRecord, StoreError> {
    let pool = Pool::new(&pipeline.classes, opts.machine);
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
        executor: opts.executor.clone(),
        forced: opts.force.clone(),
        no_cache: opts.no_cache,
        verify: opts.verify,
        warnings: pool.clamped.clone(),
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
                }
            })
            .collect(),
    };
    let mut log = RecordLog::default();
    log.save_whole(&store, &mut record, &opts.events).await;
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
    });
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
    let mut join: JoinSet<(usize, TaskRecord, Option<Done>)> = JoinSet::new();
    let mut completed_stages = 0;

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
            let when_ctx = Value::Object(when_ctx);
            for t in range {
                log.touch(t);
                record.tasks[t].status = TaskStatus::Running;
                let sh = sh.clone();
                let inputs = inputs.clone();
                let when_ctx = when_ctx.clone();
                let rec = record.tasks[t].clone();
                join.spawn(async move {
                    use futures::FutureExt;
                    let fallback = rec.clone();
                    let ms = sh.ms();
                    match std::panic::AssertUnwindSafe(execute(
                        sh.clone(),
                        t,
                        rec,
                        inputs,
                        when_ctx,
                    ))
                    .catch_unwind()
                    .await
                    {
                        Ok((rec, d)) => {
                            let rec = publish_refs(&sh, t, rec).await;
                            (t, rec, d)
                        }
                        Err(p) => {
                            let what = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            let mut r = fallback;
                            r.status = TaskStatus::Failed;
                            r.finished_ms = Some(ms);
                            r.error = Some(format!(
                                "the stage panicked (a bug in stage `{}`): {what}",
                                r.kind
                            ));
                            (t, r, None)
                        }
                    }
                });
            }
        }
        if join.is_empty() {
            break;
        }
        // Tasks just started are in the record; so is a heartbeat while
        // long tasks run (how `engine runs` tells a live run from a dead one).
        if log.due() {
            log.checkpoint(&store, &mut record, &opts.events).await;
        }
        let joined = tokio::select! {
            j = join.join_next() => j,
            _ = tokio::time::sleep(log.until_heartbeat()) => {
                log.checkpoint(&store, &mut record, &opts.events).await;
                continue;
            }
        };
        let Some(joined) = joined else {
            break;
        };
        // Panics are caught inside the task; a join error means it was aborted.
        let Ok((t, rec, d)) = joined else { continue };
        let si = plan.tasks[t].stage;
        record.tasks[t] = rec;
        log.touch(t);
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
        if log.due() {
            log.checkpoint(&store, &mut record, &opts.events).await;
        }
    }
    let _ = (completed_stages, n_stages);
    for r in &mut record.tasks {
        if matches!(r.status, TaskStatus::Waiting | TaskStatus::Running) {
            r.status = TaskStatus::Skipped;
            r.reason = "run cancelled before it started".into();
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
    record.finished = Some(now_rfc3339());
    record.seconds = sh.t0.elapsed().as_secs_f64();
    log.save_whole(&store, &mut record, &opts.events).await;
    opts.events.emit(Event::RunFinished {
        run: record.id.clone(),
        status: record.status,
        seconds: record.seconds,
        counts: record.counts(),
    });
    Ok(record)
}

/// How a running run's record reaches the store: the whole document at
/// the start and the end, and in between a batch of the tasks that changed
/// every [`CHECKPOINT`] (with a heartbeat at least every
/// [`records::HEARTBEAT`]), as [`records::RunEvents`] objects. The
/// document is rewritten (compacted) only once the batches written since
/// hold as many bytes as it does (or a sixteenth of that past
/// [`MAX_BATCHES`] of them, or [`HARD_MAX_BATCHES`] of them): so
/// the bytes written stay proportional to the number of task events,
/// where saving the whole record every checkpoint grew with the square of
/// the number of tasks.
#[derive(Default)]
struct RecordLog {
    /// Tasks changed since the last batch.
    dirty: std::collections::BTreeSet<usize>,
    /// Number of the last batch written.
    seq: u64,
    /// Batches and their bytes since the document was last written.
    batches: u64,
    batch_bytes: usize,
    doc_bytes: usize,
    last: Option<Instant>,
}

/// How often the changed tasks of a running run are written, at most.
const CHECKPOINT: Duration = Duration::from_secs(2);
/// Batches after which the document is compacted once they hold a
/// sixteenth of its bytes: a bound on what a reader lists and reads that
/// keeps the bytes written linear (a long run of N tasks makes many
/// batches, and compacting every 64 whatever their size rewrote the
/// N-task document once per 64 batches, a cost growing with N x time).
const MAX_BATCHES: u64 = 64;
/// Batches after which the document is compacted whatever their size (the
/// heartbeats of a long run whose tasks rarely change).
const HARD_MAX_BATCHES: u64 = 1024;

impl RecordLog {
    fn touch(&mut self, t: usize) {
        self.dirty.insert(t);
    }
    fn due(&self) -> bool {
        self.last.is_none_or(|l| l.elapsed() > CHECKPOINT) && !self.dirty.is_empty()
    }
    fn until_heartbeat(&self) -> Duration {
        records::HEARTBEAT.saturating_sub(self.last.map_or(Duration::ZERO, |l| l.elapsed()))
    }

    /// Writes the changed tasks as one batch, or the document when the
    /// batches are due for compaction (or a batch cannot be written).
    async fn checkpoint(&mut self, store: &Store, record: &mut RunRecord, events: &EventSink) {
        self.last = Some(Instant::now());
        if self.batch_bytes > self.doc_bytes
            || (self.batches >= MAX_BATCHES && self.batch_bytes * 16 > self.doc_bytes)
            || self.batches >= HARD_MAX_BATCHES
        {
            self.save_whole(store, record, events).await;
            return;
        }
        let heartbeat = now_rfc3339();
        let batch = records::RunEvents {
            seq: self.seq + 1,
            heartbeat: heartbeat.clone(),
            tasks: self
                .dirty
                .iter()
                .map(|&t| (t, record.tasks[t].clone()))
                .collect(),
        };
        let bytes = serde_json::to_vec(&batch).expect("run events serialise");
        let n = bytes.len();
        match store
            .write(&records::events_path(&record.id, batch.seq), bytes)
            .await
        {
            Ok(()) => {
                self.seq = batch.seq;
                self.batches += 1;
                self.batch_bytes += n;
                self.dirty.clear();
                record.heartbeat = Some(heartbeat);
                record.events = self.seq;
            }
            // The document carries everything: readers need no batch.
            Err(_) => self.save_whole(store, record, events).await,
        }
    }

    /// Writes the whole document, retrying a failed save, then deletes the
    /// batches it took in. A record that still cannot be saved is a
    /// warning, not a failure: the run's outputs and cache entries are in
    /// the store, and the record is saved again at the next checkpoint.
    /// Each distinct failure is warned about once.
    async fn save_whole(&mut self, store: &Store, record: &mut RunRecord, events: &EventSink) {
        self.last = Some(Instant::now());
        record.heartbeat = Some(now_rfc3339());
        record.events = self.seq;
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 1..=3 {
            match records::save_run(store, record).await {
                Ok(n) => {
                    self.doc_bytes = n;
                    self.dirty.clear();
                    if self.batches > 0 {
                        for seq in (self.seq + 1 - self.batches)..=self.seq {
                            let _ = store.delete(&records::events_path(&record.id, seq)).await;
                        }
                    }
                    self.batches = 0;
                    self.batch_bytes = 0;
                    return;
                }
                Err(e) => last = Some(e),
            }
            if attempt < 3 {
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
        let Some(e) = last else { return };
        let w = format!(
            "Failed to save the run record `{}` (3 tries): {e}; the run goes on, but `engine runs` and `engine show` may not show it",
            records::run_path(&record.id)
        );
        if !record.warnings.contains(&w) {
            events.emit(Event::Log {
                task: String::new(),
                line: format!("warning: {w}"),
            });
            record.warnings.push(w);
        }
    }
}

/// Why a stage cannot run: an upstream task failed, was cancelled or skipped.
fn upstream_problem(
    p: &Pipeline,
    plan: &Plan,
    rec: &RunRecord,
    stage: &CompiledStage,
) -> Option<String> {
    for &n in &stage.needs {
        for t in plan.stage_tasks[n].clone() {
            let r = &rec.tasks[t];
            match r.status {
                TaskStatus::Failed => return Some(format!("upstream `{}` failed", r.task)),
                TaskStatus::Cancelled => {
                    return Some(format!("upstream `{}` was cancelled", r.task));
                }
                TaskStatus::Skipped => {
                    return Some(format!("upstream `{}` was skipped", p.stages[n].name));
                }
                _ => {}
            }
        }
    }
    None
}

fn finish(
    sh: &Shared,
    mut rec: TaskRecord,
    status: TaskStatus,
    reason: Option<String>,
    error: Option<String>,
) -> TaskRecord {
    rec.status = status;
    if let Some(r) = reason {
        rec.reason = r;
    }
    // A driver error can print the URL it was given, password included.
    rec.error = error.map(|e| crate::secrets::redact(&e).into_owned());
    rec.finished_ms = Some(sh.ms());
    if rec.started_ms.is_none() {
        rec.started_ms = rec.finished_ms;
    }
    sh.opts.events.emit(Event::TaskFinished {
        task: rec.task.clone(),
        status,
        seconds: rec.seconds(),
        reason: rec.reason.clone(),
        error: rec.error.clone(),
    });
    rec
}

/// Moves the stage's `publish:` refs to the outputs of a task that
/// succeeded (ran or came from the cache). A ref that cannot be moved fails
/// the task: a deploy that did not happen must not look done.
async fn publish_refs(sh: &Shared, t: usize, mut rec: TaskRecord) -> TaskRecord {
    let stage = &sh.pipeline.stages[sh.plan.tasks[t].stage];
    if stage.publish.is_empty() || !matches!(rec.status, TaskStatus::Done | TaskStatus::Cached) {
        return rec;
    }
    for (output, name) in &stage.publish {
        let Some(d) = rec.outputs.get(output) else {
            continue;
        };
        // A stage that checked an evaluation (`model.deploy`) names it in
        // its values; the ref history keeps it with the move.
        let why = crate::store::RefMove {
            note: format!("run {} task {}", sh.opts.run_id, rec.task),
            run: Some(sh.opts.run_id.clone()),
            evaluation: rec
                .values
                .get("evaluation")
                .and_then(Value::as_str)
                .and_then(crate::digest::Digest::parse),
        };
        match sh.store.move_ref(&name.replace('@', "/"), d, &why).await {
            Ok(_) => {
                let published = rec
                    .values
                    .entry("published".to_string())
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(m) = published {
                    m.insert(output.clone(), Value::String(name.clone()));
                }
            }
            Err(e) => {
                rec.status = TaskStatus::Failed;
                rec.error = Some(format!(
                    "Failed to move ref `{name}` to output `{output}` ({}): {e}",
                    d.short()
                ));
            }
        }
    }
    rec
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

async fn execute(
    sh: Arc<Shared>,
    t: usize,
    mut rec: TaskRecord,
    input_specs: Vec<InputSpec>,
    when_ctx: Value,
) -> (TaskRecord, Option<Done>) {
    let task = &sh.plan.tasks[t];
    let stage = &sh.pipeline.stages[task.stage];
    rec.started_ms = Some(sh.ms());
    rec.inputs = input_specs
        .iter()
        .map(|i| InputRef {
            name: format!("{}/{}/{}", i.stage, i.task, i.output),
            digest: i.digest.clone(),
        })
        .collect();

    if let Some(expr) = &stage.when {
        let env = crate::compile::when_env();
        let verdict = env
            .compile_expression(expr)
            .and_then(|e| e.eval(minijinja::Value::from(minijinja::value::Serde(&when_ctx))))
            .map(|v| v.is_true());
        match verdict {
            Ok(true) => {}
            Ok(false) => {
                let r = finish(
                    &sh,
                    rec,
                    TaskStatus::Skipped,
                    Some(format!("condition `{expr}` is false")),
                    None,
                );
                return (r, None);
            }
            Err(e) => {
                let msg = format!(
                    "Failed to evaluate `when: {expr}` of stage `{}`: {e}",
                    stage.name
                );
                return (
                    finish(
                        &sh,
                        rec,
                        TaskStatus::Failed,
                        Some("condition error".into()),
                        Some(msg),
                    ),
                    None,
                );
            }
        }
    }

    let mut inputs = Vec::with_capacity(input_specs.len());
    for i in &input_specs {
        match sh.manifest(&i.digest).await {
            Ok(m) => inputs.push(Input {
                stage: i.stage.clone(),
                task: i.task.clone(),
                output: i.output.clone(),
                digest: i.digest.clone(),
                manifest: m,
            }),
            Err(e) => {
                let msg = format!(
                    "Failed to load input `{}.{}` of task `{}`: {e}",
                    i.stage, i.output, rec.task
                );
                return (
                    finish(
                        &sh,
                        rec,
                        TaskStatus::Failed,
                        Some("input missing".into()),
                        Some(msg),
                    ),
                    None,
                );
            }
        }
    }

    let params = stage.params_for(&task.combo);
    let imp = if task.combo.is_empty() {
        stage.imp.clone()
    } else {
        match crate::secrets::build_stage(stage.build, &params) {
            Ok(i) => i,
            Err(m) => {
                let msg = format!(
                    "invalid params for `{}` in task `{}`: {m}",
                    stage.kind, rec.task
                );
                return (
                    finish(
                        &sh,
                        rec,
                        TaskStatus::Failed,
                        Some("invalid params".into()),
                        Some(msg),
                    ),
                    None,
                );
            }
        }
    };
    let fp = match TaskFingerprint::of_task(
        stage,
        imp.version(),
        &params,
        rec.inputs
            .iter()
            .map(|i| (i.name.clone(), i.digest.clone()))
            .collect(),
    ) {
        Ok(fp) => fp,
        Err(msg) => {
            return (
                finish(
                    &sh,
                    rec,
                    TaskStatus::Failed,
                    Some("deps not hashed".into()),
                    Some(msg),
                ),
                None,
            );
        }
    };
    let fpd = fp.digest();
    rec.fingerprint = Some(fpd.clone());
    let forced = sh.forced(&stage.name);
    let use_cache = stage.cache && !sh.opts.no_cache && !forced;
    let mut damaged = None;
    if use_cache {
        match cache::lookup(&sh.store, &fpd, sh.verify()).await {
            Ok(cache::Lookup::Hit(entry)) => {
                rec.outputs = entry.outputs.clone();
                rec.values = entry.values.clone();
                let d = Done {
                    outputs: entry.outputs,
                    values: entry.values,
                };
                let r = finish(
                    &sh,
                    rec,
                    TaskStatus::Cached,
                    Some(format!("cached from run {}", entry.run)),
                    None,
                );
                return (r, Some(d));
            }
            Ok(cache::Lookup::Miss) => {}
            Ok(cache::Lookup::Damaged(why)) => damaged = Some(why),
            Err(e) => {
                let msg = format!("Failed to read the cache for task `{}`: {e}", rec.task);
                return (
                    finish(
                        &sh,
                        rec,
                        TaskStatus::Failed,
                        Some("cache unreadable".into()),
                        Some(msg),
                    ),
                    None,
                );
            }
        }
    }
    let last_path = cache::last_path(&sh.pipeline.name, &rec.task);
    rec.reason = if forced {
        "forced".into()
    } else if sh.opts.no_cache {
        "cache disabled (--no-cache)".into()
    } else if let Some(why) = damaged {
        format!("cached outputs are damaged, running again: {why}")
    } else if !stage.cache {
        if stage.imp.always_run() {
            "runs every time (reads outside state)".into()
        } else {
            "cache: false".into()
        }
    } else {
        match sh.store.get_json::<TaskFingerprint>(&last_path).await {
            Ok(Some(before)) => fp.why_changed(&before),
            _ => "no cache entry".into(),
        }
    };

    let log = Log::new(&rec.task, sh.opts.events.clone());
    let label = rec.task.clone();
    let outcome = match &imp {
        StageImpl::Task(s) => {
            run_task(
                &sh,
                stage,
                &label,
                s.clone(),
                &inputs,
                &task_matrix(stage, &task.combo),
                &log,
                &mut rec,
            )
            .await
        }
        StageImpl::Map(m) => {
            run_map(
                &sh,
                task.stage,
                &label,
                m.clone(),
                &params,
                &inputs,
                &log,
                &mut rec,
                use_cache,
            )
            .await
        }
    };
    let log_text = log.text();
    if !log_text.is_empty()
        && let Ok(b) = sh.store.put_blob(log_text.into_bytes()).await
    {
        rec.log = Some(b.digest);
    }
    let (outputs, values) = match outcome {
        Ok(x) => x,
        Err(StageError::Cancelled) => {
            return (
                finish(
                    &sh,
                    rec,
                    TaskStatus::Cancelled,
                    None,
                    Some("cancelled".into()),
                ),
                None,
            );
        }
        Err(e) => {
            let msg = e.to_string();
            return (finish(&sh, rec, TaskStatus::Failed, None, Some(msg)), None);
        }
    };
    match publish(&sh, stage, &rec, &fpd, outputs, &values).await {
        Ok(digests) => {
            let _ = sh.store.put_json(&last_path, &fp).await;
            rec.outputs = digests.clone();
            rec.values = values.clone();
            let d = Done {
                outputs: digests,
                values,
            };
            (finish(&sh, rec, TaskStatus::Done, None, None), Some(d))
        }
        Err(e) => {
            let msg = format!("Failed to publish outputs of task `{}`: {e}", rec.task);
            (finish(&sh, rec, TaskStatus::Failed, None, Some(msg)), None)
        }
    }
}

fn task_matrix(stage: &CompiledStage, combo: &[usize]) -> BTreeMap<String, Value> {
    stage
        .matrix
        .iter()
        .zip(combo)
        .map(|((k, v), &i)| (k.clone(), v[i].clone()))
        .collect()
}

/// Manifests after blobs, lineage, then the cache entry last.
async fn publish(
    sh: &Shared,
    stage: &CompiledStage,
    rec: &TaskRecord,
    fp: &Digest,
    mut outputs: BTreeMap<String, Manifest>,
    values: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Digest>, String> {
    let mut digests = BTreeMap::new();
    for decl in &stage.outputs {
        let m = match outputs.remove(&decl.name) {
            Some(m) => m,
            None if decl.kind == ArtifactKind::Collection => Manifest {
                kind: ArtifactKind::Collection,
                ..Default::default()
            },
            None => {
                return Err(format!(
                    "the stage did not write its declared output `{}`",
                    decl.name
                ));
            }
        };
        let d = sh.store.put_manifest(&m).await.map_err(|e| e.to_string())?;
        let lpath = records::lineage_path(&d);
        if !sh.store.exists(&lpath).await.map_err(|e| e.to_string())? {
            let l = Lineage {
                artifact: d.clone(),
                output: decl.name.clone(),
                run: sh.opts.run_id.clone(),
                task: rec.task.clone(),
                stage: stage.name.clone(),
                kind: stage.kind.clone(),
                fingerprint: Some(fp.clone()),
                inputs: rec.inputs.clone(),
                at: now_rfc3339(),
            };
            sh.store
                .put_json(&lpath, &l)
                .await
                .map_err(|e| e.to_string())?;
        }
        digests.insert(decl.name.clone(), d);
    }
    if stage.cache {
        let entry = CacheEntry {
            outputs: digests.clone(),
            values: values.clone(),
            run: sh.opts.run_id.clone(),
            task: rec.task.clone(),
            at: now_rfc3339(),
        };
        sh.store
            .put_json(&cache::task_path(fp), &entry)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(digests)
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    (base * 2u32.saturating_pow(attempt.saturating_sub(1).min(16))).min(Duration::from_secs(10))
}

/// Runs `fut` under the stage's timeout and the run's cancellation.
async fn guarded<F: std::future::Future<Output = Result<(), StageError>>>(
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    fut: F,
) -> Result<(), StageError> {
    let timed = async {
        match timeout {
            Some(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
                Err(StageError::msg(format!(
                    "timed out after {}",
                    humantime::format_duration(d)
                )))
            }),
            None => fut.await,
        }
    };
    tokio::select! {
        r = timed => r,
        _ = cancel.cancelled() => Err(StageError::Cancelled),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_task(
    sh: &Arc<Shared>,
    stage: &CompiledStage,
    label: &str,
    s: Arc<dyn Stage>,
    inputs: &[Input],
    matrix: &BTreeMap<String, Value>,
    log: &Log,
    rec: &mut TaskRecord,
) -> Result<(BTreeMap<String, Manifest>, BTreeMap<String, Value>), StageError> {
    let cancel = sh.opts.cancel.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        rec.attempts = attempt;
        let grant = tokio::select! {
            g = sh.pool.acquire(stage.class) => g,
            _ = cancel.cancelled() => return Err(StageError::Cancelled),
        };
        if attempt == 1 {
            rec.started_ms = Some(sh.ms());
        }
        sh.opts.events.emit(Event::TaskStarted {
            task: label.into(),
            attempt,
        });
        let scratch = sh
            .scratch
            .path()
            .join(sanitize(label))
            .join(format!("attempt-{attempt}"));
        let mut ctx = TaskCtx {
            store: sh.writer(&stage.name),
            task: label.into(),
            inputs: inputs.to_vec(),
            matrix: matrix.clone(),
            declared: stage.outputs.clone(),
            outputs: BTreeMap::new(),
            values: BTreeMap::new(),
            log: log.clone(),
            cancel: cancel.child_token(),
            scratch: scratch.clone(),
            threads: grant.threads(),
            attempt,
        };
        let held_from = sh.ms();
        let res = match &sh.opts.slurm {
            Some(cfg) => {
                let class = sh.pool.class(stage.class).clone();
                let remote = async {
                    let (o, v) = crate::slurm::run_attempt(
                        cfg,
                        &sh.store,
                        &class,
                        &sh.opts.run_id,
                        label,
                        attempt,
                        inputs,
                        log,
                    )
                    .await?;
                    ctx.outputs = o;
                    ctx.values = v;
                    Ok(())
                };
                guarded(stage.timeout, &cancel, remote).await
            }
            None => guarded(stage.timeout, &cancel, s.run(&mut ctx)).await,
        };
        ctx.cancel.cancel();
        rec.held_ms.push([held_from, sh.ms()]);
        drop(grant);
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        match res {
            Ok(()) => return Ok((ctx.outputs, ctx.values)),
            Err(StageError::Cancelled) => return Err(StageError::Cancelled),
            Err(e) if attempt <= stage.retries => {
                let delay = backoff(sh.opts.retry_backoff, attempt);
                log.line(&format!(
                    "attempt {attempt} failed: {e}; retrying in {}",
                    humantime::format_duration(delay)
                ));
                sh.opts.events.emit(Event::TaskRetry {
                    task: label.into(),
                    attempt,
                    error: crate::secrets::redact(&e.to_string()).into_owned(),
                    delay_ms: delay.as_millis() as u64,
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Err(StageError::Cancelled),
                }
            }
            Err(e) => {
                log.line(&format!("attempt {attempt} failed: {e}"));
                return Err(e);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_map(
    sh: &Arc<Shared>,
    stage_idx: usize,
    label: &str,
    m: Arc<dyn MapStage>,
    params: &Value,
    inputs: &[Input],
    log: &Log,
    rec: &mut TaskRecord,
    use_cache: bool,
) -> Result<(BTreeMap<String, Manifest>, BTreeMap<String, Value>), StageError> {
    let stage = &sh.pipeline.stages[stage_idx];
    let over = stage
        .map
        .as_ref()
        .ok_or_else(|| StageError::msg(format!("stage `{}` has no `map`", stage.name)))?;
    let up = &sh.pipeline.stages[over.stage].name;
    let mut items: Vec<Item> = vec![];
    let mut keys = HashSet::new();
    for i in inputs
        .iter()
        .filter(|i| &i.stage == up && i.output == over.output)
    {
        for it in &i.manifest.items {
            if !keys.insert(it.key.clone()) {
                return Err(StageError::msg(format!(
                    "collection `{up}.{}` has two items with key `{}`",
                    over.output, it.key
                )));
            }
            items.push(it.clone());
        }
    }
    let items = Arc::new(items);
    let total = items.len();
    let version = m.version();
    // Inputs from stages other than the mapped one (a model, a config) are
    // part of every item's fingerprint and visible to every item.
    let side: Arc<Vec<Input>> =
        Arc::new(inputs.iter().filter(|i| &i.stage != up).cloned().collect());
    let params = &cache::item_params(
        params,
        side.iter()
            .map(|i| (i.task.as_str(), i.output.as_str(), &i.digest)),
        // Checked by the task's fingerprint before the map started.
        &stage.dep_digests().unwrap_or_default(),
    );
    let cancel = sh.opts.cancel.child_token();
    // Each batch returns (item index, output item, came from cache) and
    // when it held its grant.
    type BatchResult = Result<(Vec<(usize, Item, bool)>, Option<[f64; 2]>), StageError>;
    let mut join: JoinSet<BatchResult> = JoinSet::new();
    rec.started_ms = Some(sh.ms());
    sh.opts.events.emit(Event::TaskStarted {
        task: label.into(),
        attempt: 1,
    });
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    log.progress(0, total as u64);
    let batch = over.batch.max(1);
    for start in (0..total).step_by(batch) {
        let end = (start + batch).min(total);
        let (sh, m, items, cancel, log, label, params, progress, side) = (
            sh.clone(),
            m.clone(),
            items.clone(),
            cancel.clone(),
            log.clone(),
            label.to_string(),
            params.clone(),
            progress.clone(),
            side.clone(),
        );
        join.spawn(async move {
            let stage = &sh.pipeline.stages[stage_idx];
            let mut out = Vec::with_capacity(end - start);
            let mut grant = None;
            let mut held_from = None;
            for i in start..end {
                let item = &items[i];
                let fp = cache::item_fingerprint(&stage.kind, version, &params, item);
                let hit = if use_cache {
                    cache::lookup_item(&sh.store, &fp, sh.verify()).await?
                } else {
                    cache::Lookup::Miss
                };
                if let cache::Lookup::Hit(e) = hit {
                    let mut it = e.item;
                    it.key = item.key.clone();
                    out.push((i, it, true));
                } else {
                    if grant.is_none() {
                        grant = Some(tokio::select! {
                            g = sh.pool.acquire(stage.class) => g,
                            _ = cancel.cancelled() => return Err(StageError::Cancelled),
                        });
                        held_from = Some(sh.ms());
                    }
                    let threads = grant.as_ref().map(|g| g.threads()).unwrap_or(1);
                    let it = run_item(
                        &sh, stage, &label, &m, item, i, threads, &cancel, &log, &side,
                    )
                    .await?;
                    if stage.cache {
                        let entry = ItemEntry {
                            item: it.clone(),
                            run: sh.opts.run_id.clone(),
                        };
                        sh.store.put_json(&cache::item_path(&fp), &entry).await?;
                    }
                    out.push((i, it, false));
                }
                let n = progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                log.progress(n, total as u64);
            }
            Ok((out, held_from.map(|a| [a, sh.ms()])))
        });
    }
    let mut results: Vec<Option<Item>> = vec![None; total];
    let mut counts = ItemCounts {
        total,
        run: 0,
        cached: 0,
    };
    let mut first_err = None;
    while let Some(j) = join.join_next().await {
        match j {
            Ok(Ok((v, held))) => {
                rec.held_ms.extend(held);
                for (i, it, cached) in v {
                    if cached {
                        counts.cached += 1
                    } else {
                        counts.run += 1
                    }
                    results[i] = Some(it);
                }
            }
            Ok(Err(e)) => {
                if first_err.is_none() {
                    cancel.cancel();
                    first_err = Some(e);
                }
            }
            Err(e) => {
                if first_err.is_none() {
                    cancel.cancel();
                    first_err = Some(StageError::msg(format!("an item worker panicked: {e}")));
                }
            }
        }
    }
    rec.items = Some(counts);
    rec.held_ms.sort_by(|a, b| a[0].total_cmp(&b[0]));
    rec.attempts = 1;
    if let Some(e) = first_err {
        if sh.opts.cancel.is_cancelled() {
            return Err(StageError::Cancelled);
        }
        return Err(e);
    }
    let manifest = Manifest {
        kind: ArtifactKind::Collection,
        items: results.into_iter().flatten().collect(),
        files: BTreeMap::new(),
        meta: Value::Null,
    };
    let mut outputs = BTreeMap::new();
    outputs.insert(m.output(), manifest);
    let mut values = BTreeMap::new();
    values.insert("items".to_string(), Value::from(counts.total));
    values.insert("items_run".to_string(), Value::from(counts.run));
    values.insert("items_cached".to_string(), Value::from(counts.cached));
    Ok((outputs, values))
}

#[allow(clippy::too_many_arguments)]
async fn run_item(
    sh: &Arc<Shared>,
    stage: &CompiledStage,
    label: &str,
    m: &Arc<dyn MapStage>,
    item: &Item,
    index: usize,
    threads: usize,
    cancel: &CancellationToken,
    log: &Log,
    side: &Arc<Vec<Input>>,
) -> Result<Item, StageError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let scratch = sh
            .scratch
            .path()
            .join(sanitize(label))
            .join(format!("item-{index}-{attempt}"));
        let mut ctx = ItemCtx {
            store: sh.writer(&stage.name),
            task: label.into(),
            files: BTreeMap::new(),
            meta: Value::Null,
            log: log.clone(),
            cancel: cancel.child_token(),
            scratch: scratch.clone(),
            threads,
            inputs: side.clone(),
        };
        let res = guarded(stage.timeout, cancel, m.run_item(item, &mut ctx)).await;
        // A timed-out item's future is dropped, but work it handed to a
        // worker thread goes on until told: tell it, before any retry starts.
        ctx.cancel.cancel();
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        match res {
            Ok(()) => {
                return Ok(Item {
                    key: item.key.clone(),
                    files: ctx.files,
                    meta: ctx.meta,
                });
            }
            Err(StageError::Cancelled) => return Err(StageError::Cancelled),
            Err(e) if attempt <= stage.retries => {
                let delay = backoff(sh.opts.retry_backoff, attempt);
                log.line(&format!(
                    "item `{}` attempt {attempt} failed: {e}; retrying",
                    item.key
                ));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Err(StageError::Cancelled),
                }
            }
            Err(e) => return Err(StageError::msg(format!("item `{}`: {e}", item.key))),
        }
    }
}

/// What `engine plan` says about one task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub task: String,
    pub stage: String,
    pub kind: String,
    /// `run`, `cached` or `unknown` (depends on upstream results).
    pub action: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemCounts>,
}

/// Decides, without running anything, what a run would do.
pub async fn explain(
    pipeline: &Pipeline,
    plan: &Plan,
    store: &Store,
    force: &[String],
    no_cache: bool,
) -> Result<Vec<Decision>, StoreError> {
    let mut known: Vec<Option<BTreeMap<String, Digest>>> = vec![None; plan.tasks.len()];
    let mut out = Vec::with_capacity(plan.tasks.len());
    for (t, task) in plan.tasks.iter().enumerate() {
        let stage = &pipeline.stages[task.stage];
        let mut d = Decision {
            task: task.label.clone(),
            stage: stage.name.clone(),
            kind: stage.kind.clone(),
            action: "run".into(),
            reason: String::new(),
            items: None,
        };
        let mut inputs = BTreeMap::new();
        let mut upstream_unknown = None;
        for &n in &stage.needs {
            for u in plan.stage_tasks[n].clone() {
                match &known[u] {
                    Some(outs) => {
                        for (o, dig) in outs {
                            inputs.insert(
                                format!(
                                    "{}/{}/{}",
                                    pipeline.stages[n].name, plan.tasks[u].label, o
                                ),
                                dig.clone(),
                            );
                        }
                    }
                    None => upstream_unknown = Some(pipeline.stages[n].name.clone()),
                }
            }
        }
        let forced = force.iter().any(|f| f == &stage.name);
        if let Some(up) = upstream_unknown {
            d.action = "run".into();
            d.reason = format!("upstream `{up}` will run");
            out.push(d);
            continue;
        }
        let params = stage.params_for(&task.combo);
        let version = if task.combo.is_empty() {
            stage.imp.version()
        } else {
            crate::secrets::build_stage(stage.build, &params)
                .map(|i| i.version())
                .unwrap_or(0)
        };
        let fp = match TaskFingerprint::of_task(stage, version, &params, inputs.clone()) {
            Ok(fp) => fp,
            Err(why) => {
                d.reason = why;
                out.push(d);
                continue;
            }
        };
        let fpd = fp.digest();
        let use_cache = stage.cache && !no_cache && !forced;
        let mut damaged = None;
        if use_cache {
            match cache::lookup(store, &fpd, Verify::Size).await? {
                cache::Lookup::Hit(entry) => {
                    d.action = "cached".into();
                    d.reason = format!("cached from run {}", entry.run);
                    known[t] = Some(entry.outputs);
                    out.push(d);
                    continue;
                }
                cache::Lookup::Miss => {}
                cache::Lookup::Damaged(why) => damaged = Some(why),
            }
        }
        d.reason = if forced {
            "forced".into()
        } else if no_cache {
            "cache disabled (--no-cache)".into()
        } else if let Some(why) = damaged {
            format!("cached outputs are damaged, running again: {why}")
        } else if !stage.cache {
            "cache: false".into()
        } else {
            match store
                .get_json::<TaskFingerprint>(&cache::last_path(&pipeline.name, &task.label))
                .await?
            {
                Some(before) => fp.why_changed(&before),
                None => "no cache entry".into(),
            }
        };
        if let StageImpl::Task(s) = &stage.imp
            && stage.imp.always_run()
            && let Some(outputs) = s.foresee(store).await
        {
            d.reason = "runs every time (reads outside state)".into();
            known[t] = Some(outputs);
        }
        if let (Some(over), StageImpl::Map(m)) = (&stage.map, &stage.imp) {
            let mut side = vec![];
            for &n in stage.needs.iter().filter(|&&n| n != over.stage) {
                for u in plan.stage_tasks[n].clone() {
                    for (o, dig) in known[u].iter().flatten() {
                        side.push((plan.tasks[u].label.as_str(), o.as_str(), dig));
                    }
                }
            }
            let params = cache::item_params(&params, side.into_iter(), &fp.files);
            let mut counts = ItemCounts::default();
            for u in plan.stage_tasks[over.stage].clone() {
                if let Some(dig) = known[u].as_ref().and_then(|o| o.get(&over.output)) {
                    let man = store.get_manifest(dig).await?;
                    for it in &man.items {
                        counts.total += 1;
                        let ifp = cache::item_fingerprint(&stage.kind, m.version(), &params, it);
                        if use_cache
                            && matches!(
                                cache::lookup_item(store, &ifp, Verify::Size).await?,
                                cache::Lookup::Hit(_)
                            )
                        {
                            counts.cached += 1;
                        } else {
                            counts.run += 1;
                        }
                    }
                }
            }
            d.items = Some(counts);
        }
        out.push(d);
    }
    Ok(out)
}

/// A scratch folder only this run can use: a new folder with a random name
/// and mode 0700 under `root` (never one someone else created first), with
/// an `owner` file naming host and pid. Folders of runs whose process is
/// gone (killed with SIGKILL) are removed first.
fn private_scratch(root: &std::path::Path, run_id: &str) -> std::io::Result<tempfile::TempDir> {
    std::fs::create_dir_all(root)?;
    remove_dead_scratch(root);
    let dir = tempfile::Builder::new()
        .prefix(&format!("engine-run-{run_id}-"))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(root)?;
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::write(
        dir.path().join("owner"),
        format!("{host} {}\n", std::process::id()),
    )?;
    Ok(dir)
}

/// Removes `engine-run-*` folders under `root` that belong to this user and
/// to a process on this host that no longer exists.
fn remove_dead_scratch(root: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("engine-run-") {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(path.join("owner")) else {
            continue;
        };
        let mut it = owner.split_whitespace();
        let (Some(h), Some(pid)) = (it.next(), it.next().and_then(|p| p.parse::<i32>().ok()))
        else {
            continue;
        };
        // SAFETY: signal 0 sends nothing; it only checks that the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if h == host && !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
