//! What every stage call gets, whole task or map item: its inputs, the
//! store, the log, cancellation, scratch space and its thread grant. One
//! type, so code that reads inputs or fetches files takes `&StageEnv` and
//! serves both contexts ([`TaskCtx`](super::TaskCtx) and
//! [`ItemCtx`](super::ItemCtx) deref to it).

use super::{Log, StageError};
use crate::digest::Digest;
use crate::store::{BlobRef, Item, Manifest, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// An upstream output a task reads.
#[derive(Debug, Clone)]
pub struct Input {
    /// The upstream stage's name.
    pub stage: String,
    /// The upstream task's label (differs from `stage` under a matrix).
    pub task: String,
    /// The output's name.
    pub output: String,
    pub digest: Digest,
    pub manifest: Arc<Manifest>,
}

/// The environment of one attempt of a task or of one map item.
pub struct StageEnv {
    pub(crate) store: Store,
    pub(crate) task: String,
    /// A map stage's items share its inputs other than the mapped one.
    pub(crate) inputs: Arc<Vec<Input>>,
    pub(crate) log: Log,
    pub(crate) cancel: CancellationToken,
    pub(crate) scratch: PathBuf,
    /// Where `scratch` comes from when it is first asked for: an emptied
    /// folder of an earlier attempt, renamed, or a new one.
    scratch_pool: Option<Arc<crate::scheduler::scratch::ScratchPool>>,
    scratch_made: std::sync::atomic::AtomicBool,
    pub(crate) threads: usize,
}

impl StageEnv {
    /// `scratch` is created on first use.
    pub(crate) fn new(
        store: Store,
        task: &str,
        inputs: Arc<Vec<Input>>,
        log: Log,
        cancel: CancellationToken,
        scratch: PathBuf,
        threads: usize,
    ) -> Self {
        StageEnv {
            store,
            task: task.into(),
            inputs,
            log,
            cancel,
            scratch,
            scratch_pool: None,
            scratch_made: Default::default(),
            threads,
        }
    }

    /// `scratch` is made from this run's emptied folders where it can be.
    pub(crate) fn with_scratch_pool(
        mut self,
        pool: Arc<crate::scheduler::scratch::ScratchPool>,
    ) -> Self {
        self.scratch_pool = Some(pool);
        self
    }

    /// The task's label, e.g. `train[hidden=64]`.
    pub fn task(&self) -> &str {
        &self.task
    }
    /// The upstream outputs this call reads; for a map item, those other
    /// than the mapped collection (a model, a config): the same for every
    /// item, and part of each item's fingerprint.
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }
    /// Every output of every task of an upstream stage.
    pub fn inputs_of(&self, stage: &str) -> Vec<&Input> {
        self.inputs.iter().filter(|i| i.stage == stage).collect()
    }
    /// Every item of every input collection, in input order; with `from`
    /// (`STAGE.OUTPUT`), only that output's items.
    pub fn input_items<'a>(&'a self, from: Option<&'a str>) -> impl Iterator<Item = &'a Item> + 'a {
        self.inputs
            .iter()
            .filter(move |i| {
                from.is_none_or(|f| {
                    f.split_once('.') == Some((i.stage.as_str(), i.output.as_str()))
                })
            })
            .flat_map(|i| i.manifest.items.iter())
    }
    /// The one output `output` of upstream stage `stage`.
    pub fn input(&self, stage: &str, output: &str) -> Result<&Input, StageError> {
        let found: Vec<&Input> = self
            .inputs
            .iter()
            .filter(|i| i.stage == stage && i.output == output)
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(StageError::msg(format!(
                "task `{}` has no input `{stage}.{output}`; add `{stage}` to its `needs`",
                self.task
            ))),
            _ => Err(StageError::msg(format!(
                "input `{stage}.{output}` has {} versions (the stage has a matrix); use `inputs_of`",
                found.len()
            ))),
        }
    }

    /// Threads this call may use: its resource class's cpus.
    pub fn threads(&self) -> usize {
        self.threads
    }
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
    pub fn log(&self, line: impl AsRef<str>) {
        self.log.line(line.as_ref())
    }
    /// The task log, for blocking code that logs from another thread.
    pub fn log_handle(&self) -> Log {
        self.log.clone()
    }
    pub fn progress(&self, done: u64, total: u64) {
        self.log.progress(done, total)
    }
    /// A private folder for this attempt, removed afterwards.
    pub fn scratch_dir(&self) -> Result<&Path, StageError> {
        use std::sync::atomic::Ordering;
        let dir = &self.scratch;
        let made = match &self.scratch_pool {
            Some(pool) if !self.scratch_made.load(Ordering::Acquire) => pool.make(dir),
            _ => std::fs::create_dir_all(dir),
        };
        made.map_err(|e| StageError::io("create", dir, e))?;
        self.scratch_made.store(true, Ordering::Release);
        Ok(dir)
    }
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn read(&self, blob: &BlobRef) -> Result<Vec<u8>, StageError> {
        Ok(self.store.get_blob(&blob.digest).await?)
    }
    pub async fn fetch(&self, blob: &BlobRef, dest: &Path) -> Result<(), StageError> {
        Ok(self.store.get_blob_to_file(&blob.digest, dest).await?)
    }
    /// Writes an input's files (or its items' files under `KEY/`) into
    /// `dir`; see [`Store::export`].
    pub async fn export(&self, input: &Input, dir: &Path) -> Result<Vec<PathBuf>, StageError> {
        Ok(self.store.export(&input.manifest, dir).await?)
    }

    /// Stores bytes as a blob without attaching it to an output.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobRef, StageError> {
        Ok(self.store.put_blob(bytes).await?)
    }
    pub async fn put_blob_file(&self, path: &Path) -> Result<BlobRef, StageError> {
        Ok(self.store.put_blob_file(path).await?)
    }

    /// Runs CPU-heavy work on the blocking pool; a panic there becomes an
    /// error naming the task.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StageError> + Send + 'static,
    ) -> Result<T, StageError> {
        let task = &self.task;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StageError::msg(format!("worker thread of task `{task}` panicked: {e}")))?
    }
}
