//! What the engine-core integration tests share: run options, running a
//! pipeline text, and stores to run it on.
#![allow(dead_code)] // each test crate uses its own part

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{RunRecord, TaskStatus};
use engine_core::resources::Machine;
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A machine of `cpus` cores and fast retries; each run makes its own
/// private scratch folder under the system's temporary folder.
pub fn opts(cpus: u32) -> RunOptions {
    RunOptions {
        machine: Machine {
            cpus,
            memory: 8 << 30,
            gpus: 0,
        },
        retry_backoff: Duration::from_millis(5),
        ..RunOptions::default()
    }
}

/// Compiles `yaml` with the built-in kinds and runs it to the end.
pub async fn run_with(yaml: &str, store: &Store, o: RunOptions) -> RunRecord {
    let p = compile("test.yaml", yaml, &Registry::with_builtins())
        .unwrap_or_else(|d| panic!("{}", d.render()));
    let pl = plan(&p);
    scheduler::run(Arc::new(p), Arc::new(pl), store.clone(), o)
        .await
        .unwrap()
}

pub fn status(r: &RunRecord, task: &str) -> TaskStatus {
    r.task(task)
        .unwrap_or_else(|| panic!("no task {task}"))
        .status
}

/// Each task with its error, for assertion messages.
pub fn errors(r: &RunRecord) -> Vec<(String, Option<String>)> {
    r.tasks
        .iter()
        .map(|t| (t.task.clone(), t.error.clone()))
        .collect()
}

pub fn mem_store(name: &str) -> Store {
    Store::open(&format!("memory://{name}"), std::path::Path::new(".")).unwrap()
}

/// An fs store in a temporary folder, with the folder's path.
pub struct FsStore {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub store: Store,
}

pub fn fs_store() -> FsStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    FsStore {
        root: dir.path().join("store"),
        _dir: dir,
        store,
    }
}
