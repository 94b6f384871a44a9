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
    pub tasks: Vec<TaskRecord>,
}

impl RunRecord {
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

pub async fn save_run(store: &Store, r: &RunRecord) -> Result<(), StoreError> {
    store.put_json(&run_path(&r.id), r).await
}

pub async fn load_run(store: &Store, id: &str) -> Result<Option<RunRecord>, StoreError> {
    if id.contains('/') || id.contains("..") {
        return Err(StoreError::BadName {
            name: id.into(),
            why: "run ids have no `/`".into(),
        });
    }
    store.get_json(&run_path(id)).await
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
