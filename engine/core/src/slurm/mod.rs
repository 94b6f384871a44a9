//! The Slurm executor: each whole-task stage attempt becomes an `sbatch`
//! job running `engine task exec`, which rebuilds the task from the run
//! record in the shared store, runs it on the node, publishes its outputs
//! and writes a result document the scheduler waits for. A resource class
//! maps to `--cpus-per-task`, `--mem`, `--gres=gpu:N` and `--partition`;
//! a profile adds the cluster's own settings per class (partition,
//! account, qos, time limit, a cap on jobs, extra arguments: see
//! [`SlurmClassSettings`]).
//!
//! One poller per run ([`poller`]) follows every job with a batched
//! `squeue` and wakes the attempt waiting on it; each job's id, node, state,
//! exit code and output file go into the task's record. A job lost to the
//! cluster (`NODE_FAIL`, `BOOT_FAIL`, `PREEMPTED`, gone without a result)
//! fails its attempt like any other failure, so the stage's `retries`
//! resubmit it. Map stages run as job arrays ([`mod@array`]): one job per item
//! would drown a cluster's scheduler in tiny jobs, one element per batch
//! of items does not.

pub mod array;
pub mod poller;

pub use poller::{JobEnd, Poller};

use crate::compile::{Pipeline, ResourceClass};
use crate::digest::Digest;
use crate::plan::Plan;
use crate::records::{self, ExecutorStats, JobRecord};
use crate::stage::{Input, Log, StageEnv, StageError, StageImpl, TaskCtx};
use crate::store::{Manifest, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How to reach Slurm.
#[derive(Debug, Clone)]
pub struct SlurmConfig {
    /// The `engine` binary the jobs run (must be reachable on the nodes).
    pub engine_bin: PathBuf,
    /// The store URL as the nodes see it (an absolute `fs://` path on a
    /// shared disk, or `s3://`).
    pub store_url: String,
    /// Where job output files (`slurm-JOBID.out`) go.
    pub log_dir: PathBuf,
    /// How often to look for results.
    pub poll: Duration,
    /// The cluster's `MaxArraySize` (element indices must stay below it):
    /// from the profile, else asked of `scontrol show config` once.
    pub max_array_size: Option<u32>,
    /// `sbatch` settings for every class (a profile's `[profiles.P.slurm]`).
    pub defaults: SlurmClassSettings,
    /// Per resource class, over `defaults` (`[profiles.P.slurm.classes.C]`).
    pub classes: BTreeMap<String, SlurmClassSettings>,
}

/// How a resource class's jobs are submitted on one cluster: what a
/// profile (`engine.toml`) says, since partitions, accounts and limits
/// belong to the cluster, not to the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmClassSettings {
    /// `--partition`; replaces the class's `partition:` from the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// `--time`, the job's time limit, e.g. `02:00:00` or `1-00:00:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// At most this many jobs of the class queued or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    /// At most this many elements of one map stage's job array running at
    /// once (`--array=0-N%CAP`). Default: `max_jobs`, else 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_cap: Option<u32>,
    /// More `sbatch` arguments, added last, e.g. `["--exclusive"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
}

impl SlurmClassSettings {
    /// These settings with whatever `over` sets put over them.
    pub fn under(&self, over: &SlurmClassSettings) -> SlurmClassSettings {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        SlurmClassSettings {
            partition: pick(&self.partition, &over.partition),
            account: pick(&self.account, &over.account),
            qos: pick(&self.qos, &over.qos),
            time: pick(&self.time, &over.time),
            max_jobs: over.max_jobs.or(self.max_jobs),
            array_cap: over.array_cap.or(self.array_cap),
            extra_args: self
                .extra_args
                .iter()
                .chain(&over.extra_args)
                .cloned()
                .collect(),
        }
    }
}

impl SlurmConfig {
    /// The settings of class `name`: its own over the defaults.
    pub fn class_settings(&self, name: &str) -> SlurmClassSettings {
        match self.classes.get(name) {
            Some(c) => self.defaults.under(c),
            None => self.defaults.clone(),
        }
    }

    /// The `%CAP` of class `name`'s job arrays.
    pub fn array_cap(&self, name: &str) -> u32 {
        let set = self.class_settings(name);
        set.array_cap
            .or(set.max_jobs)
            .unwrap_or(array::DEFAULT_ARRAY_CAP)
            .max(1)
    }

    /// The `sbatch` arguments a class's jobs get (besides the job's name,
    /// output file and command).
    pub fn sbatch_args(&self, class: &ResourceClass) -> Vec<String> {
        let set = self.class_settings(&class.name);
        let mut a = vec![format!("--cpus-per-task={}", class.cpus.max(1))];
        if class.memory > 0 {
            a.push(format!("--mem={}M", class.memory.div_ceil(1 << 20)));
        }
        if class.gpus > 0 {
            a.push(format!("--gres=gpu:{}", class.gpus));
        }
        if let Some(p) = set.partition.as_ref().or(class.partition.as_ref()) {
            a.push(format!("--partition={p}"));
        }
        for (flag, v) in [
            ("account", &set.account),
            ("qos", &set.qos),
            ("time", &set.time),
        ] {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        }
        a.extend(set.extra_args.iter().cloned());
        a
    }
}

/// An input as the job receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputDoc {
    pub stage: String,
    pub task: String,
    pub output: String,
    pub digest: Digest,
}

impl InputDoc {
    /// The inputs a job was sent, with their manifests read from `store`.
    pub async fn load_all(docs: &[InputDoc], store: &Store) -> Result<Vec<Input>, String> {
        let mut out = Vec::with_capacity(docs.len());
        for i in docs {
            let m = store
                .get_manifest(&i.digest)
                .await
                .map_err(|e| e.to_string())?;
            out.push(Input {
                stage: i.stage.clone(),
                task: i.task.clone(),
                output: i.output.clone(),
                digest: i.digest.clone(),
                manifest: Arc::new(m),
            });
        }
        Ok(out)
    }
}

/// What the scheduler asks of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRequest {
    pub run: String,
    pub task: String,
    pub attempt: u32,
    pub threads: usize,
    pub inputs: Vec<InputDoc>,
}

/// What a job reports back, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub ok: bool,
    #[serde(default)]
    pub outputs: BTreeMap<String, Digest>,
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    #[serde(default)]
    pub log: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub host: String,
}

pub(crate) fn task_key(task: &str) -> String {
    Digest::of(task.as_bytes()).short().to_string()
}

pub fn request_path(run: &str, task: &str, attempt: u32) -> String {
    format!("runs/{run}/tasks/{}-{attempt}.request.json", task_key(task))
}

pub fn result_path(run: &str, task: &str, attempt: u32) -> String {
    format!("runs/{run}/tasks/{}-{attempt}.result.json", task_key(task))
}

/// Cancels, through the run's poller, the jobs that have not ended when
/// it is dropped (an attempt timed out, the run was cancelled, a sibling
/// batch failed).
pub(crate) struct JobGuard {
    poller: Poller,
    // A set: an array of 10,000 elements ends one element at a time.
    ids: std::collections::HashSet<String>,
}

impl JobGuard {
    pub(crate) fn new(poller: &Poller, ids: Vec<String>) -> Self {
        JobGuard {
            poller: poller.clone(),
            ids: ids.into_iter().collect(),
        }
    }
    /// Follow these jobs too (cancelled with the others when dropped).
    pub(crate) fn follow(&mut self, ids: impl IntoIterator<Item = String>) {
        self.ids.extend(ids);
    }
    /// Job `id` ended by itself: nothing to cancel.
    pub(crate) fn ended(&mut self, id: &str) {
        self.ids.remove(id);
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            let mut ids: Vec<String> = self.ids.drain().collect();
            ids.sort();
            self.poller.cancel(&ids);
        }
    }
}

pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The last `n` lines of a job's output file (empty when unreadable).
pub(crate) fn tail(path: &std::path::Path, n: usize) -> Vec<String> {
    let out = std::fs::read_to_string(path).unwrap_or_default();
    let mut v: Vec<String> = out.lines().rev().take(n).map(str::to_string).collect();
    v.reverse();
    v
}

/// The Slurm executor of one run: the cluster's settings and the run's
/// poller.
#[derive(Debug)]
pub struct SlurmExecutor {
    pub cfg: SlurmConfig,
    poller: Poller,
    max_array_size: tokio::sync::OnceCell<u32>,
}

impl SlurmExecutor {
    pub fn new(cfg: SlurmConfig) -> Self {
        let poller = Poller::new(cfg.poll);
        SlurmExecutor {
            cfg,
            poller,
            max_array_size: tokio::sync::OnceCell::new(),
        }
    }

    /// The cluster's `MaxArraySize`: the profile's, else `scontrol show
    /// config`'s (asked once per run), else Slurm's default, 1001.
    async fn max_array_size(&self) -> u32 {
        *self
            .max_array_size
            .get_or_init(|| async {
                if let Some(n) = self.cfg.max_array_size {
                    return n.max(2);
                }
                let out = tokio::process::Command::new("scontrol")
                    .args(["show", "config"])
                    .output()
                    .await;
                out.ok()
                    .and_then(|o| parse_max_array_size(&String::from_utf8_lossy(&o.stdout)))
                    .unwrap_or(DEFAULT_MAX_ARRAY_SIZE)
                    .max(2)
            })
            .await
    }

    /// Submits a job running `wrap`; returns its id.
    async fn sbatch(
        &self,
        task: &str,
        args: &[String],
        output: &str,
        wrap: &str,
    ) -> Result<String, StageError> {
        // The store URL may hold credentials (`?access_key=`): it reaches the
        // job through its environment (sbatch exports the submitter's), not the
        // job's command line, which `squeue`/`scontrol` show to every user.
        let mut cmd = tokio::process::Command::new("sbatch");
        cmd.env("ENGINE_STORE", &self.cfg.store_url)
            .arg("--export=ALL")
            .arg("--parsable")
            .arg(format!("--job-name=engine:{task}"))
            .arg(format!("--output={output}"))
            .args(args);
        cmd.arg("--wrap").arg(wrap);
        self.poller.submitted();
        // Submitted apart from the attempt: if the attempt is dropped while
        // `sbatch` runs (Ctrl-C, a timeout), the job it makes is cancelled
        // rather than left in the queue.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (poller, task) = (self.poller.clone(), task.to_string());
        tokio::spawn(async move {
            let res = submitted_id(&task, cmd.output().await);
            if let Err(Ok(id)) = tx.send(res) {
                poller.orphan(&id);
            }
        });
        rx.await
            .map_err(|_| StageError::msg("the `sbatch` call was lost".to_string()))?
    }
}

/// The job id from `sbatch --parsable`'s output.
fn submitted_id(
    task: &str,
    out: std::io::Result<std::process::Output>,
) -> Result<String, StageError> {
    let out = out.map_err(|e| {
        StageError::msg(format!("Failed to run `sbatch` for task `{task}`: {e}; is Slurm installed and `SLURM_CONF` set?"))
    })?;
    if !out.status.success() {
        return Err(StageError::msg(format!(
            "`sbatch` refused task `{task}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let job = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    if job.is_empty() {
        return Err(StageError::msg(format!(
            "`sbatch` gave no job id for task `{task}`; is `SLURM_CONF` the cluster's?"
        )));
    }
    Ok(job)
}

/// The cluster schedules cpus, memory and gpus; the engine keeps only the
/// classes' `slots` (how many of a class run at once).
#[async_trait::async_trait]
impl crate::executor::Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }
    fn capacity(&self, _here: crate::resources::Machine) -> crate::resources::Machine {
        crate::resources::Machine {
            cpus: u32::MAX / 4,
            memory: u64::MAX / 4,
            gpus: u32::MAX / 4,
        }
    }
    fn begin(&self, cancel: &CancellationToken) {
        self.poller.start(cancel);
    }
    async fn end(&self) -> Option<ExecutorStats> {
        Some(self.poller.close().await)
    }
    fn runs_items(&self) -> bool {
        true
    }
    async fn run_items(
        &self,
        job: crate::executor::ItemBatches<'_>,
    ) -> Result<crate::executor::ItemsDone, StageError> {
        array::run_items(self, job).await
    }
    async fn run_attempt(
        &self,
        _stage: &dyn crate::stage::Stage,
        class: &ResourceClass,
        run_id: &str,
        ctx: &mut TaskCtx,
        jobs: &mut Vec<JobRecord>,
    ) -> Result<(), StageError> {
        let (outputs, values) = run_attempt(self, class, run_id, ctx, jobs).await?;
        ctx.outputs = outputs;
        ctx.values = values;
        Ok(())
    }
}

/// Submits one attempt of a task and waits for the poller to see its job
/// end, then reads its result. Dropping the future (timeout, Ctrl-C)
/// cancels the job.
async fn run_attempt(
    ex: &SlurmExecutor,
    class: &ResourceClass,
    run: &str,
    ctx: &TaskCtx,
    jobs: &mut Vec<JobRecord>,
) -> Result<(BTreeMap<String, Manifest>, BTreeMap<String, Value>), StageError> {
    let cfg = &ex.cfg;
    let (store, task, attempt, log) = (&ctx.store, ctx.task.as_str(), ctx.attempt, &ctx.log);
    let req = TaskRequest {
        run: run.into(),
        task: task.into(),
        attempt,
        threads: class.cpus as usize,
        inputs: ctx
            .inputs
            .iter()
            .map(|i| InputDoc {
                stage: i.stage.clone(),
                task: i.task.clone(),
                output: i.output.clone(),
                digest: i.digest.clone(),
            })
            .collect(),
    };
    store
        .put_json(&request_path(run, task, attempt), &req)
        .await?;
    std::fs::create_dir_all(&cfg.log_dir).map_err(|e| StageError::io("create", &cfg.log_dir, e))?;
    let wrap = format!(
        "exec {} task exec --run {} --task {} --attempt {attempt}",
        quote(&cfg.engine_bin.to_string_lossy()),
        quote(run),
        quote(task)
    );
    let args = cfg.sbatch_args(class);
    log.line(&format!("sbatch {}", args.join(" ")));
    let out = format!("{}/slurm-%j.out", cfg.log_dir.display());
    let job = ex.sbatch(task, &args, &out, &wrap).await?;
    log.line(&format!("submitted Slurm job {job} (attempt {attempt})"));
    let mut guard = JobGuard::new(&ex.poller, vec![job.clone()]);
    let end = ex.poller.watch(&job).await;
    // Not followed any more (the poller gave up on `squeue`): cancelled.
    let end = match end {
        Ok(Ok(e)) => {
            guard.ended(&job);
            e
        }
        Ok(Err(msg)) => return Err(StageError::msg(msg)),
        Err(_) => {
            return Err(StageError::msg(format!(
                "the Slurm poller stopped while job {job} of task `{task}` ran"
            )));
        }
    };
    let log_file = cfg.log_dir.join(format!("slurm-{job}.out"));
    let result = store
        .get_json::<TaskResult>(&result_path(run, task, attempt))
        .await?;
    jobs.push(JobRecord {
        attempt,
        job: job.clone(),
        node: end
            .node
            .clone()
            .or_else(|| result.as_ref().map(|r| r.host.clone())),
        state: end.state.clone(),
        exit_code: end.exit_code,
        log: Some(log_file.display().to_string()),
        items: None,
    });
    if let Some(r) = result {
        return finish(store, task, &job, r, log).await;
    }
    if end.lost() {
        return Err(StageError::msg(format!(
            "Slurm job {job} of task `{task}` was lost ({}{}); the stage's `retries` resubmit it",
            end.state,
            end.node
                .as_ref()
                .map(|n| format!(" on node `{n}`"))
                .unwrap_or_default()
        )));
    }
    Err(StageError::msg(format!(
        "Slurm job {job} of task `{task}` ended {}{} without a result; its last output:\n  {}",
        end.state,
        end.exit_code
            .map(|c| format!(" with exit code {c}"))
            .unwrap_or_default(),
        tail(&log_file, 5).join("\n  ")
    )))
}

async fn finish(
    store: &Store,
    task: &str,
    job: &str,
    r: TaskResult,
    log: &Log,
) -> Result<(BTreeMap<String, Manifest>, BTreeMap<String, Value>), StageError> {
    for line in r.log.lines() {
        log.line(line);
    }
    log.line(&format!("Slurm job {job} finished on `{}`", r.host));
    if !r.ok {
        return Err(StageError::msg(r.error.unwrap_or_else(|| {
            format!("task `{task}` failed in Slurm job {job}")
        })));
    }
    let mut outputs = BTreeMap::new();
    for (name, d) in r.outputs {
        outputs.insert(name, store.get_manifest(&d).await?);
    }
    Ok((outputs, r.values))
}

/// A task of a run as a node rebuilds it: the run record, its pipeline and
/// plan compiled again from the record, and which task this is. Shared by
/// `engine task exec` (a whole task) and `engine task exec-batch` (one
/// batch of a map task's items).
pub(crate) struct NodeTask {
    pub rec: records::RunRecord,
    pub pipeline: Pipeline,
    pub plan: Plan,
    index: usize,
}

impl NodeTask {
    pub async fn load(
        store: &Store,
        registry: &crate::stage::Registry,
        run: &str,
        task: &str,
    ) -> Result<NodeTask, String> {
        let rec = records::load_run(store, run)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("run `{run}` is not in store {}", store.url()))?;
        let pipeline =
            crate::compile::compile(&rec.file, &rec.spec, registry).map_err(|d| d.render())?;
        let plan = crate::plan::plan(&pipeline);
        let index = plan
            .task_index(task)
            .ok_or_else(|| format!("run `{run}` has no task `{task}`"))?;
        Ok(NodeTask {
            rec,
            pipeline,
            plan,
            index,
        })
    }

    pub fn task(&self) -> &crate::plan::Task {
        &self.plan.tasks[self.index]
    }

    pub fn stage(&self) -> &crate::compile::CompiledStage {
        &self.pipeline.stages[self.task().stage]
    }

    /// The stage built with this task's params (its matrix values applied).
    pub fn build(&self) -> Result<StageImpl, String> {
        let params = self.stage().params_for(&self.task().combo);
        crate::secrets::build_stage(self.stage().build, &params).map_err(|e| e.to_string())
    }

    /// As on the submitting machine: a forced, uncached or verifying run
    /// replaces stored objects whose bytes do not match what it writes.
    pub fn writer(&self, store: &Store) -> Store {
        let rec = &self.rec;
        if rec.forced.contains(&self.stage().name) || rec.no_cache || rec.verify {
            store.rewriting()
        } else {
            store.clone()
        }
    }
}

/// `engine task exec`: runs one task attempt on this machine from the run
/// record and request in the store, and writes its result document.
pub async fn exec_task(
    store: &Store,
    registry: &crate::stage::Registry,
    run: &str,
    task: &str,
    attempt: u32,
) -> Result<TaskResult, String> {
    let node = NodeTask::load(store, registry, run, task).await?;
    let (t, stage) = (node.task(), node.stage());
    let req: TaskRequest = store
        .get_json(&request_path(run, task, attempt))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no request for task `{task}` attempt {attempt} in run `{run}`"))?;
    let inputs = InputDoc::load_all(&req.inputs, store).await?;
    let StageImpl::Task(s) = node.build()? else {
        return Err(format!(
            "stage `{}` is a map stage; its items run with `engine task exec-batch`",
            stage.name
        ));
    };
    let log = Log::new(task, crate::events::EventSink::none());
    // A new folder with a random name and mode 0700, never one that
    // someone else on the node created first.
    let scratch_dir = tempfile::Builder::new()
        .prefix(&format!("engine-job-{}-", task_key(task)))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| format!("Failed to create a scratch folder for task `{task}`: {e}"))?;
    let scratch = scratch_dir.path().join("task");
    let writer = node.writer(store);
    let matrix = stage
        .matrix
        .iter()
        .zip(&t.combo)
        .map(|((k, v), &i)| (k.clone(), v[i].clone()))
        .collect();
    let env = StageEnv::new(
        writer,
        task,
        Arc::new(inputs),
        log.clone(),
        CancellationToken::new(),
        scratch.clone(),
        req.threads.max(1),
    );
    let mut ctx = TaskCtx::new(env, matrix, stage.outputs.clone(), attempt);
    let res = s.run(&mut ctx).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut result = TaskResult {
        ok: false,
        outputs: BTreeMap::new(),
        values: BTreeMap::new(),
        log: String::new(),
        error: None,
        host,
    };
    match res {
        Ok(()) => {
            let mut failed = None;
            for decl in &stage.outputs {
                let m = match ctx.outputs.remove(&decl.name) {
                    Some(m) => m,
                    None if decl.kind == crate::store::ArtifactKind::Collection => Manifest {
                        kind: decl.kind,
                        ..Default::default()
                    },
                    None => {
                        failed = Some(format!(
                            "the stage did not write its declared output `{}`",
                            decl.name
                        ));
                        break;
                    }
                };
                match store.put_manifest(&m).await {
                    Ok(d) => {
                        result.outputs.insert(decl.name.clone(), d);
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            result.ok = failed.is_none();
            result.error = failed;
            result.values = ctx.values;
        }
        Err(e) => result.error = Some(e.to_string()),
    }
    result.log = log.text();
    // The submitter trusts the result: the outputs it names must be on disk.
    store.flush().await.map_err(|e| e.to_string())?;
    store
        .put_json(&result_path(run, task, attempt), &result)
        .await
        .map_err(|e| e.to_string())?;
    Ok(result)
}

/// Slurm's own default `MaxArraySize`.
pub const DEFAULT_MAX_ARRAY_SIZE: u32 = 1001;

/// `MaxArraySize = 1001` from `scontrol show config`.
fn parse_max_array_size(config: &str) -> Option<u32> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "MaxArraySize")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_array_size_is_read_from_scontrol_show_config() {
        let config = "Configuration data as of 2026-11-28T10:00:00\nMaxArraySize            = 1001\nMaxJobCount             = 10000\n";
        assert_eq!(parse_max_array_size(config), Some(1001));
        assert_eq!(parse_max_array_size("MaxJobCount = 10000\n"), None);
        assert_eq!(parse_max_array_size("MaxArraySize = lots\n"), None);
    }

    fn cfg(defaults: SlurmClassSettings, classes: &[(&str, SlurmClassSettings)]) -> SlurmConfig {
        SlurmConfig {
            engine_bin: "engine".into(),
            store_url: "fs:///shared/store".into(),
            log_dir: "/shared/logs".into(),
            poll: Duration::from_millis(200),
            max_array_size: None,
            defaults,
            classes: classes
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
        }
    }

    #[test]
    fn the_array_cap_is_the_class_cap_then_max_jobs_then_the_default() {
        let set = |array_cap, max_jobs| SlurmClassSettings {
            array_cap,
            max_jobs,
            ..Default::default()
        };
        let c = cfg(
            set(None, Some(50)),
            &[
                ("capped", set(Some(7), Some(3))),
                ("queued", set(None, Some(4))),
                ("zero", set(Some(0), None)),
            ],
        );
        assert_eq!(c.array_cap("capped"), 7);
        assert_eq!(c.array_cap("queued"), 4);
        assert_eq!(c.array_cap("other"), 50);
        // A cap of 0 would stop the array: at least one element runs.
        assert_eq!(c.array_cap("zero"), 1);
        assert_eq!(
            cfg(SlurmClassSettings::default(), &[]).array_cap("any"),
            array::DEFAULT_ARRAY_CAP
        );
    }
}
