//! Run records: what ran, why, from which inputs, producing what; plus the
//! lineage index from artifact to the run and task that produced it.

use crate::digest::Digest;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Waiting,
    Running,
    Done,
    Cached,
    Failed,
    Skipped,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Waiting => "waiting",
            TaskStatus::Running => "running",
            TaskStatus::Done => "done",
            TaskStatus::Cached => "cached",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
        }
    }
    /// Outputs exist and dependants may use them.
    pub fn succeeded(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Cached)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// An input of a task, by digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputRef {
    /// `stage/task/output`.
    pub name: String,
    pub digest: Digest,
}

/// Item counts of a map task.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ItemCounts {
    pub total: usize,
    pub run: usize,
    pub cached: usize,
}

/// Every field is written, empty or not: templates (`engine show
/// --timeline`) and `engine show --json` readers use them by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: String,
    pub stage: String,
    pub kind: String,
    pub status: TaskStatus,
    /// Why it ran, or why not: `no cache entry`, `params changed`, `forced`,
    /// `cached from run X`, `upstream failed`, ...
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matrix: BTreeMap<String, Value>,
    /// Milliseconds since the run started.
    #[serde(default)]
    pub started_ms: Option<f64>,
    #[serde(default)]
    pub finished_ms: Option<f64>,
    /// When the task held its resource grant, per attempt (ms since the
    /// run started): what concurrency is measured from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_ms: Vec<[f64; 2]>,
    #[serde(default)]
    pub fingerprint: Option<Digest>,
    #[serde(default)]
    pub inputs: Vec<InputRef>,
    #[serde(default)]
    pub outputs: BTreeMap<String, Digest>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemCounts>,
    /// Digest of the task's log blob.
    #[serde(default)]
    pub log: Option<Digest>,
    #[serde(default)]
    pub error: Option<String>,
    /// The batch jobs that ran it (Slurm: one per attempt of a whole task,
    /// one per array element of a map task).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobRecord>,
    /// Where the work ran when not in the engine's process, e.g. `items
    /// ran on Slurm as job array(s) 12; none ran on the submitting machine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

/// One batch job (or array element) of a task, as the cluster last showed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// The task's attempt (a map task: the round of submission).
    pub attempt: u32,
    /// Slurm job id: `123`, or `123_4` for element 4 of array job 123.
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `COMPLETED`, `FAILED`, `NODE_FAIL`, ...; `VANISHED` when the
    /// controller lost it.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The job's output file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// A map task's element: how many items it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
}

/// What a batch executor did in a run: how hard it worked the cluster's
/// controller (a benchmark divides the calls by `seconds`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutorStats {
    /// `sbatch` calls (one per whole-task attempt, one per job array).
    pub sbatch_calls: u64,
    /// Jobs and array elements followed.
    pub jobs: u64,
    /// `squeue` calls, all made by the run's one poller.
    pub squeue_calls: u64,
    /// `scancel` calls (a cancelled run makes one).
    pub scancel_calls: u64,
    /// The polling interval, in milliseconds.
    pub poll_ms: u64,
    /// How long the poller ran, in seconds.
    pub seconds: f64,
}

impl TaskRecord {
    pub fn seconds(&self) -> f64 {
        match (self.started_ms, self.finished_ms) {
            (Some(a), Some(b)) => (b - a) / 1000.0,
            _ => 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    pub file: String,
    pub status: RunStatus,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    #[serde(default)]
    pub seconds: f64,
    pub engine_version: String,
    pub host: String,
    /// The engine process running it, on `host`: a run whose process is
    /// gone shows as `interrupted`, not `running`.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Last sign of life (RFC 3339), saved at least every [`HEARTBEAT`]
    /// while the run goes on; how a run on another host is judged.
    #[serde(default)]
    pub heartbeat: Option<String>,
    #[serde(default)]
    pub git_commit: Option<String>,
    pub pipeline_digest: Digest,
    /// The rendered pipeline text.
    pub spec: String,
    pub values: Value,
    pub store: String,
    pub executor: String,
    #[serde(default)]
    pub forced: Vec<String>,
    #[serde(default)]
    pub no_cache: bool,
    /// `--verify`: cache hits were hashed, and writes hash what they find.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify: bool,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What the executor did (Slurm: its `sbatch`, `squeue`, `scancel` calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_stats: Option<ExecutorStats>,
    /// The event batches folded into this document: those numbered up to
    /// this one (see [`RunEvents`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub events: u64,
    /// Last: [`run_json`] relies on it, writing the rest of the document
    /// and then each task's record (most already made by the task).
    pub tasks: Vec<TaskRecord>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What changed in a running run since the last batch: the records of
/// the tasks that started or finished, and a heartbeat. While a run goes,
/// its record document is written whole only now and then (compaction);
/// in between, each batch is a new object `runs/<id>/events/<seq>.json`,
/// so the bytes a run writes grow with its number of tasks, not with its
/// square. [`load_run`] folds the batches newer than the document in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEvents {
    pub seq: u64,
    pub heartbeat: String,
    /// Index in [`RunRecord::tasks`] and the task's record now.
    #[serde(default)]
    pub tasks: Vec<(usize, TaskRecord)>,
}

impl RunEvents {
    /// Applies this batch to the document it follows.
    pub fn apply(self, r: &mut RunRecord) {
        for (i, t) in self.tasks {
            if let Some(slot) = r.tasks.get_mut(i) {
                *slot = t;
            }
        }
        if r.heartbeat
            .as_deref()
            .is_none_or(|h| h < self.heartbeat.as_str())
        {
            r.heartbeat = Some(self.heartbeat);
        }
        r.events = r.events.max(self.seq);
    }
}

pub fn events_dir(id: &str) -> String {
    format!("runs/{id}/events")
}

pub fn events_path(id: &str, seq: u64) -> String {
    format!("runs/{id}/events/{seq:010}.json")
}

/// The numbers of the event batches stored for a run, in order.
pub async fn list_events(store: &Store, id: &str) -> Result<Vec<u64>, StoreError> {
    let mut seqs: Vec<u64> = store
        .list(&events_dir(id))
        .await?
        .iter()
        .filter_map(|n| n.strip_suffix(".json")?.parse().ok())
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Folds the event batches newer than the document into a running run's
/// record. A compaction may run meanwhile (the document rewritten, the
/// batches it took in deleted): a gap or a batch gone means the document
/// read is stale, so it is read again.
pub async fn apply_events(store: &Store, r: &mut RunRecord) -> Result<(), StoreError> {
    for _ in 0..5 {
        if r.status != RunStatus::Running {
            return Ok(());
        }
        let seqs: Vec<u64> = list_events(store, &r.id)
            .await?
            .into_iter()
            .filter(|&s| s > r.events)
            .collect();
        let mut folded = r.clone();
        let mut stale = false;
        for (next, seq) in (r.events + 1..).zip(seqs) {
            if seq != next {
                stale = true;
                break;
            }
            match store
                .get_json::<RunEvents>(&events_path(&r.id, seq))
                .await?
            {
                Some(ev) => ev.apply(&mut folded),
                None => {
                    stale = true;
                    break;
                }
            }
        }
        if !stale {
            *r = folded;
            return Ok(());
        }
        match store.get_json::<RunRecord>(&run_path(&r.id)).await? {
            Some(fresh) => *r = fresh,
            None => return Ok(()),
        }
    }
    Ok(())
}

/// How often a running run saves its record, at the least.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

impl RunRecord {
    /// A run whose record says `running` but whose engine is gone (killed,
    /// machine lost): on this host its process no longer exists; elsewhere
    /// its heartbeat is more than three beats old.
    pub fn interrupted(&self) -> bool {
        if self.status != RunStatus::Running {
            return false;
        }
        let here = hostname::get()
            .map(|h| h.to_string_lossy() == self.host.as_str())
            .unwrap_or(false);
        if here && let Some(pid) = self.pid {
            return !process_alive(pid);
        }
        let beat = self.heartbeat.as_deref().unwrap_or(self.started.as_str());
        match humantime::parse_rfc3339(beat) {
            Ok(t) => std::time::SystemTime::now()
                .duration_since(t)
                .is_ok_and(|age| age > 3 * HEARTBEAT),
            Err(_) => false,
        }
    }

    /// The status to show: `interrupted` for a run whose engine is gone.
    pub fn shown_status(&self) -> &'static str {
        if self.interrupted() {
            "interrupted"
        } else {
            self.status.as_str()
        }
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in &self.tasks {
            *m.entry(t.status.as_str().to_string()).or_insert(0) += 1;
        }
        m
    }
    pub fn task(&self, label: &str) -> Option<&TaskRecord> {
        self.tasks.iter().find(|t| t.task == label)
    }
}

/// Who first produced an artifact, from what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lineage {
    pub artifact: Digest,
    pub output: String,
    pub run: String,
    pub task: String,
    pub stage: String,
    pub kind: String,
    pub fingerprint: Option<Digest>,
    pub inputs: Vec<InputRef>,
    pub at: String,
}

pub fn run_path(id: &str) -> String {
    format!("runs/{id}.json")
}

pub fn lineage_path(d: &Digest) -> String {
    format!("lineage/{}/{}.json", &d.as_str()[..2], d.as_str())
}

/// Writes a run's record document whole; returns its size in bytes.
/// Compact JSON: a record holds every task of a run and is written at
/// least twice per run, so indentation would be a third of its bytes.
pub async fn save_run(store: &Store, r: &RunRecord) -> Result<usize, StoreError> {
    put_run(
        store,
        &r.id,
        serde_json::to_vec(r).expect("run records serialise"),
    )
    .await
}

/// Writes a run's document; returns its size in bytes.
async fn put_run(store: &Store, id: &str, bytes: Vec<u8>) -> Result<usize, StoreError> {
    let n = bytes.len();
    store.write(&run_path(id), bytes).await?;
    Ok(n)
}

/// [`save_run`], with the JSON of some tasks' records already made:
/// `sealed[t]`, when there, is `tasks[t]` as JSON (see [`run_json`]).
pub async fn save_run_sealed(
    store: &Store,
    r: &mut RunRecord,
    sealed: &[Option<Box<[u8]>>],
) -> Result<usize, StoreError> {
    let bytes = run_json(r, sealed);
    put_run(store, &r.id, bytes).await
}

/// A run record as JSON, the same bytes as `serde_json::to_vec(r)`, made
/// from the document without its tasks (which end it) and then each task:
/// `sealed[t]` when there (the task's record as JSON, made by the task on
/// its own thread when it ended, and dropped by the scheduler whenever it
/// changes the record again), else serialised here. At the end of a
/// 5,001-task run, serialising every task here took 6-10 ms of the
/// scheduling loop's thread, alone, after all the work.
pub fn run_json(r: &mut RunRecord, sealed: &[Option<Box<[u8]>>]) -> Vec<u8> {
    const END: &[u8] = b"\"tasks\":[]}";
    let tasks = std::mem::take(&mut r.tasks);
    let mut out = serde_json::to_vec(&*r).expect("run records serialise");
    r.tasks = tasks;
    if !out.ends_with(END) {
        // A field after `tasks`: not this file's layout; the plain way.
        return serde_json::to_vec(&*r).expect("run records serialise");
    }
    out.truncate(out.len() - 2);
    let known: usize = sealed.iter().flatten().map(|j| j.len() + 1).sum();
    out.reserve(known + 2);
    for (t, task) in r.tasks.iter().enumerate() {
        if t > 0 {
            out.push(b',');
        }
        match sealed.get(t).and_then(Option::as_ref) {
            Some(json) => {
                debug_assert_eq!(
                    **json,
                    *serde_json::to_vec(task).expect("task records serialise"),
                    "the sealed JSON of task {t} is stale"
                );
                out.extend_from_slice(json);
            }
            None => serde_json::to_writer(&mut out, task).expect("task records serialise"),
        }
    }
    out.extend_from_slice(b"]}");
    out
}

/// A run's record as it stands: the document, plus the event batches not
/// yet folded into it while the run goes on.
pub async fn load_run(store: &Store, id: &str) -> Result<Option<RunRecord>, StoreError> {
    if id.contains('/') || id.contains("..") {
        return Err(StoreError::BadName {
            name: id.into(),
            why: "run ids have no `/`".into(),
        });
    }
    let Some(mut r) = store.get_json::<RunRecord>(&run_path(id)).await? else {
        return Ok(None);
    };
    apply_events(store, &mut r).await?;
    Ok(Some(r))
}

/// Run ids, newest first (ids start with a UTC timestamp).
pub async fn list_runs(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut ids: Vec<String> = store
        .list("runs")
        .await?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    ids.sort();
    ids.reverse();
    Ok(ids)
}

/// Finds a run by id or unique prefix; `latest` is the newest.
pub async fn find_run(store: &Store, what: &str) -> Result<Option<RunRecord>, StoreError> {
    let ids = list_runs(store).await?;
    let id = if what == "latest" {
        ids.first().cloned()
    } else {
        let m: Vec<&String> = ids.iter().filter(|i| i.starts_with(what)).collect();
        if m.len() == 1 {
            Some(m[0].clone())
        } else {
            ids.iter().find(|i| *i == what).cloned()
        }
    };
    match id {
        Some(id) => load_run(store, &id).await,
        None => Ok(None),
    }
}

pub async fn load_lineage(store: &Store, d: &Digest) -> Result<Option<Lineage>, StoreError> {
    store.get_json(&lineage_path(d)).await
}

/// A new run id: UTC time to the millisecond, then 4 hex digits, so ids
/// sort by start time.
pub fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year][month][day]-[hour][minute][second]-[subsecond digits:3]"
    );
    let stamp = now.format(&fmt).unwrap_or_default();
    let seed = format!(
        "{}-{}-{:?}",
        now.unix_timestamp_nanos(),
        std::process::id(),
        std::thread::current().id()
    );
    format!("{stamp}-{}", &Digest::of(seed.as_bytes()).as_str()[..4])
}

/// The commit of the git repository holding `dir`, with `-dirty` when the
/// work tree has changes; `None` outside a repository.
pub fn git_commit(dir: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}

/// Whether a process with this pid exists on this machine (signal 0).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, pid: Option<u32>, heartbeat: &str) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "id": "r", "pipeline": "p", "file": "p.yaml", "status": "running",
            "started": "2026-01-01T00:00:00Z", "engine_version": "0", "host": host,
            "pid": pid, "heartbeat": heartbeat,
            "pipeline_digest": "0".repeat(64), "spec": "", "values": {}, "store": "memory://",
            "executor": "local", "tasks": [],
        }))
        .unwrap()
    }

    #[test]
    fn a_run_is_interrupted_when_its_process_or_heartbeat_is_gone() {
        let here = hostname::get().unwrap().to_string_lossy().into_owned();
        let now = crate::store::now_rfc3339();
        // This very process is alive.
        assert!(!record(&here, Some(std::process::id()), &now).interrupted());
        // A process that has exited.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        assert!(record(&here, Some(dead), &now).interrupted());
        assert_eq!(
            record(&here, Some(dead), &now).shown_status(),
            "interrupted"
        );
        // Another host: judged by the heartbeat.
        assert!(!record("elsewhere", Some(1), &now).interrupted());
        assert!(record("elsewhere", Some(1), "2026-01-01T00:00:00Z").interrupted());
    }

    fn task(name: &str, status: &str) -> TaskRecord {
        serde_json::from_value(serde_json::json!({
            "task": name, "stage": name, "kind": "builtin.echo", "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_record_made_of_sealed_task_json_is_the_same_document() {
        let mut doc = record("elsewhere", None, "2026-01-01T00:00:00Z");
        doc.events = 7;
        doc.tasks = vec![task("a", "done"), task("b", "waiting"), task("c", "cached")];
        doc.tasks[2].reason = "cached from run \"x\"".into();
        let plain = serde_json::to_vec(&doc).unwrap();
        let seal = |t: &TaskRecord| Some(serde_json::to_vec(t).unwrap().into_boxed_slice());
        for sealed in [
            vec![],
            vec![seal(&doc.tasks[0]), None, seal(&doc.tasks[2])],
            doc.tasks.iter().map(seal).collect(),
        ] {
            assert_eq!(
                String::from_utf8(run_json(&mut doc, &sealed)).unwrap(),
                String::from_utf8(plain.clone()).unwrap()
            );
        }
        assert_eq!(doc.tasks.len(), 3, "the tasks are put back");
        doc.tasks.clear();
        assert_eq!(run_json(&mut doc, &[]), serde_json::to_vec(&doc).unwrap());
    }

    #[tokio::test]
    async fn a_running_record_is_its_document_plus_the_batches_after_it() {
        let store = Store::open("memory://events", std::path::Path::new(".")).unwrap();
        let mut doc = record("elsewhere", None, "2026-01-01T00:00:00Z");
        doc.tasks = vec![task("a", "waiting"), task("b", "waiting")];
        save_run(&store, &doc).await.unwrap();
        let batch = |seq: u64, beat: &str, tasks: Vec<(usize, TaskRecord)>| RunEvents {
            seq,
            heartbeat: beat.into(),
            tasks,
        };
        for b in [
            batch(1, "2026-01-01T00:00:02Z", vec![(0, task("a", "running"))]),
            batch(
                2,
                "2026-01-01T00:00:04Z",
                vec![(0, task("a", "done")), (1, task("b", "running"))],
            ),
            // A task index the document does not have is ignored.
            batch(3, "2026-01-01T00:00:06Z", vec![(9, task("z", "done"))]),
        ] {
            store
                .write(&events_path("r", b.seq), serde_json::to_vec(&b).unwrap())
                .await
                .unwrap();
        }
        let r = load_run(&store, "r").await.unwrap().unwrap();
        let states: Vec<_> = r.tasks.iter().map(|t| t.status).collect();
        assert_eq!(states, [TaskStatus::Done, TaskStatus::Running]);
        assert_eq!(r.heartbeat.as_deref(), Some("2026-01-01T00:00:06Z"));
        assert_eq!(r.events, 3);

        // A compaction took batches 1-2 in and deleted them: a reader that
        // saw the old document and now finds a gap reads it again.
        doc.tasks = vec![task("a", "done"), task("b", "running")];
        doc.events = 2;
        save_run(&store, &doc).await.unwrap();
        store.delete(&events_path("r", 1)).await.unwrap();
        store.delete(&events_path("r", 2)).await.unwrap();
        let mut stale = record("elsewhere", None, "2026-01-01T00:00:00Z");
        stale.tasks = vec![task("a", "waiting"), task("b", "waiting")];
        apply_events(&store, &mut stale).await.unwrap();
        assert_eq!(stale.events, 3);
        assert_eq!(stale.tasks[0].status, TaskStatus::Done);

        // A finished run's document is the whole truth: batches a crash
        // left behind are not applied.
        doc.status = RunStatus::Succeeded;
        doc.tasks = vec![task("a", "done"), task("b", "done")];
        save_run(&store, &doc).await.unwrap();
        store
            .write(
                &events_path("r", 4),
                serde_json::to_vec(&batch(
                    4,
                    "2026-01-01T00:00:08Z",
                    vec![(1, task("b", "failed"))],
                ))
                .unwrap(),
            )
            .await
            .unwrap();
        let r = load_run(&store, "r").await.unwrap().unwrap();
        assert_eq!(r.tasks[1].status, TaskStatus::Done);
    }
}
