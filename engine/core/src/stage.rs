//! The Stage API: how built-in and plugin stages plug into the engine.
//!
//! A stage kind is a config struct (deserialised from `with:`), a runtime
//! value and a trait impl. The engine caches, fans out, retries and records
//! any stage without knowing what it does; a stage never touches the store
//! directly, only through its context.

use crate::digest::Digest;
use crate::events::{Event, EventSink};
use crate::store::{ArtifactKind, BlobRef, Item, Manifest, Store, StoreError, check_rel_path};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// An output a stage declares: a single artifact or a collection of items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputDecl {
    pub name: String,
    pub kind: ArtifactKind,
}

impl OutputDecl {
    pub fn artifact(name: &str) -> Self {
        OutputDecl {
            name: name.into(),
            kind: ArtifactKind::Artifact,
        }
    }
    pub fn collection(name: &str) -> Self {
        OutputDecl {
            name: name.into(),
            kind: ArtifactKind::Collection,
        }
    }
}

/// Why a stage failed. Messages say what failed, on what, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("Failed to {op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        StageError::Store(Box::new(e))
    }
}

impl StageError {
    pub fn msg(m: impl Into<String>) -> Self {
        StageError::Failed(m.into())
    }
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StageError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// A whole-task stage.
#[async_trait]
pub trait Stage: Send + Sync {
    /// Bumped when behaviour changes; old cache entries stop matching.
    fn version(&self) -> u32;
    /// Declared outputs, by name.
    fn outputs(&self) -> Vec<OutputDecl>;
    /// Stages that read the outside world (a database, a clock) return true:
    /// their result is not decided by params and inputs, so the engine runs
    /// them every time, as if `cache: false` were set.
    fn always_run(&self) -> bool {
        false
    }
    /// What an always-run stage would output, when it can tell cheaply
    /// without running (a ref's current target), so `engine plan` can say
    /// whether the stages after it are cached. `None`: unknown until run.
    async fn foresee(&self, _store: &Store) -> Option<BTreeMap<String, crate::digest::Digest>> {
        None
    }
    /// The work. CPU-heavy code goes through [`TaskCtx::blocking`].
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError>;
}

/// A stage that runs once per item of an upstream collection; the engine
/// caches per item, batches, runs batches in parallel under the stage's
/// resource class and merges the results into one collection.
#[async_trait]
pub trait MapStage: Send + Sync {
    fn version(&self) -> u32;
    /// The name of the collection the stage produces.
    fn output(&self) -> String {
        "items".into()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError>;
}

/// A built stage, ready to run.
#[derive(Clone)]
pub enum StageImpl {
    Task(Arc<dyn Stage>),
    Map(Arc<dyn MapStage>),
}

impl StageImpl {
    pub fn version(&self) -> u32 {
        match self {
            StageImpl::Task(s) => s.version(),
            StageImpl::Map(s) => s.version(),
        }
    }
    pub fn outputs(&self) -> Vec<OutputDecl> {
        match self {
            StageImpl::Task(s) => s.outputs(),
            StageImpl::Map(s) => vec![OutputDecl::collection(&s.output())],
        }
    }
    pub fn always_run(&self) -> bool {
        matches!(self, StageImpl::Task(s) if s.always_run())
    }
    pub fn is_map(&self) -> bool {
        matches!(self, StageImpl::Map(_))
    }
}

/// Builds a stage from its `with:` params; the error says which param.
pub type BuildFn = fn(&Value) -> Result<StageImpl, String>;

/// The JSON Schema of a kind's `with:` params, added to `generator`'s
/// definitions (what [`Registry::add_typed`] records).
pub type ParamsSchema = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// One stage kind in the registry.
#[derive(Clone)]
pub struct KindInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub build: BuildFn,
    /// The schema of `with:`; `None` leaves it untyped in the pipeline schema.
    pub params: Option<ParamsSchema>,
}

fn params_schema<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// The table of stage kinds a pipeline may `uses:`.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, KindInfo>,
}

impl Registry {
    /// The kinds that ship with the core: `shell` and `builtin.*`.
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        crate::shell::register(&mut r);
        crate::builtin::register(&mut r);
        r
    }
    /// Adds a kind whose `with:` is untyped (prefer [`Registry::add_typed`]).
    pub fn add(&mut self, name: &'static str, summary: &'static str, build: BuildFn) {
        self.insert(KindInfo {
            name,
            summary,
            build,
            params: None,
        });
    }
    /// Adds (or replaces) a kind.
    pub fn insert(&mut self, kind: KindInfo) {
        self.kinds.insert(kind.name, kind);
    }
    /// Adds a kind whose `with:` deserialises into `P`: the pipeline schema
    /// and `engine stages --json` describe its params from `P`'s doc comments.
    pub fn add_typed<P: schemars::JsonSchema>(
        &mut self,
        name: &'static str,
        summary: &'static str,
        build: BuildFn,
    ) {
        self.insert(KindInfo {
            name,
            summary,
            build,
            params: Some(params_schema::<P>),
        });
    }
    pub fn get(&self, name: &str) -> Option<&KindInfo> {
        self.kinds.get(name)
    }
    pub fn names(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.kinds.keys().copied()
    }
    pub fn kinds(&self) -> impl Iterator<Item = &KindInfo> {
        self.kinds.values()
    }
}

/// Deserialises typed params, naming the offending field.
pub fn parse_params<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    };
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let top_level = path == "."
            || path.is_empty()
            || (inner.starts_with("unknown field") && !path.contains('.'));
        let mut msg = if top_level {
            inner.clone()
        } else {
            format!("`{path}`: {inner}")
        };
        if let Some(rest) = inner.strip_prefix("unknown field `")
            && let Some((name, expected)) = rest.split_once('`')
        {
            let cands: Vec<&str> = expected
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            if let Some(c) = crate::diag::closest(name, cands.iter().copied()) {
                msg.push_str(&format!("; did you mean `{c}`?"));
            }
        }
        msg
    })
}

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

/// The task log, shared between a task's attempts and its items.
#[derive(Clone)]
pub struct Log {
    task: String,
    buf: Arc<Mutex<LogBuf>>,
    events: EventSink,
}

/// The stored log: its first [`LOG_HEAD`] bytes and its last [`LOG_TAIL`]
/// bytes, with a line saying what was cut between them (the end of a log
/// is where a failure shows).
#[derive(Default)]
struct LogBuf {
    head: String,
    tail: std::collections::VecDeque<String>,
    tail_bytes: usize,
    cut_lines: usize,
    cut_bytes: usize,
}

const LOG_HEAD: usize = 1 << 20;
const LOG_TAIL: usize = 7 << 20;

impl LogBuf {
    fn push(&mut self, line: &str) {
        if self.tail.is_empty() && self.head.len() + line.len() < LOG_HEAD {
            self.head.push_str(line);
            self.head.push('\n');
            return;
        }
        self.tail_bytes += line.len() + 1;
        self.tail.push_back(line.to_string());
        while self.tail_bytes > LOG_TAIL
            && let Some(old) = self.tail.pop_front()
        {
            self.tail_bytes -= old.len() + 1;
            self.cut_lines += 1;
            self.cut_bytes += old.len() + 1;
        }
    }

    fn text(&self) -> String {
        let mut s = String::with_capacity(self.head.len() + self.tail_bytes + 100);
        s.push_str(&self.head);
        if self.cut_lines > 0 {
            s.push_str(&format!(
                "[... {} lines ({} bytes) cut: a log keeps its first {} MiB and its last {} MiB ...]\n",
                self.cut_lines,
                self.cut_bytes,
                LOG_HEAD >> 20,
                LOG_TAIL >> 20
            ));
        }
        for l in &self.tail {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

impl Log {
    pub fn new(task: &str, events: EventSink) -> Self {
        Log {
            task: task.into(),
            buf: Default::default(),
            events,
        }
    }
    pub fn line(&self, line: &str) {
        let line = &*crate::secrets::redact(line);
        self.buf
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        self.events.emit(Event::Log {
            task: self.task.clone(),
            line: line.into(),
        });
    }
    pub fn text(&self) -> String {
        self.buf.lock().unwrap_or_else(|p| p.into_inner()).text()
    }
    /// Bytes written so far (cut ones included): grows with every line.
    pub fn written(&self) -> usize {
        let b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        b.head.len() + b.tail_bytes + b.cut_bytes
    }
    /// The last `max` bytes of the log (at a character boundary), for the
    /// log of a task still running.
    pub fn tail(&self, max: usize) -> String {
        let text = self.text();
        let mut at = text.len().saturating_sub(max);
        while !text.is_char_boundary(at) {
            at += 1;
        }
        text[at..].to_string()
    }
    pub fn progress(&self, done: u64, total: u64) {
        self.events.emit(Event::Progress {
            task: self.task.clone(),
            done,
            total,
        });
    }
}

/// What a task gets: inputs, outputs, params, log, cancellation, scratch
/// space and its resource grant.
pub struct TaskCtx {
    pub(crate) store: Store,
    pub(crate) task: String,
    pub(crate) inputs: Vec<Input>,
    pub(crate) matrix: BTreeMap<String, Value>,
    pub(crate) declared: Vec<OutputDecl>,
    pub(crate) outputs: BTreeMap<String, Manifest>,
    pub(crate) values: BTreeMap<String, Value>,
    pub(crate) log: Log,
    pub(crate) cancel: CancellationToken,
    pub(crate) scratch: PathBuf,
    pub(crate) threads: usize,
    pub(crate) attempt: u32,
}

impl TaskCtx {
    /// The task's label, e.g. `train[hidden=64]`.
    pub fn task(&self) -> &str {
        &self.task
    }
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
    /// Matrix values of this task (empty without a matrix).
    pub fn matrix(&self) -> &BTreeMap<String, Value> {
        &self.matrix
    }
    /// Threads this task may use: its resource class's cpus.
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// 1 for the first attempt, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
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
        ensure_dir(&self.scratch)
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

    /// Writes an input's files (or its items' files under `KEY/`) into `dir`.
    pub async fn materialize(&self, input: &Input, dir: &Path) -> Result<Vec<PathBuf>, StageError> {
        let mut written = vec![];
        for (name, blob) in &input.manifest.files {
            check_rel_path(name).map_err(StageError::msg)?;
            let p = dir.join(name);
            self.fetch(blob, &p).await?;
            written.push(p);
        }
        for item in &input.manifest.items {
            check_rel_path(&item.key).map_err(StageError::msg)?;
            for (name, blob) in &item.files {
                check_rel_path(name).map_err(StageError::msg)?;
                let p = dir.join(&item.key).join(name);
                self.fetch(blob, &p).await?;
                written.push(p);
            }
        }
        Ok(written)
    }

    fn output_mut(
        &mut self,
        output: &str,
        kind: ArtifactKind,
    ) -> Result<&mut Manifest, StageError> {
        let Some(decl) = self.declared.iter().find(|d| d.name == output) else {
            let names: Vec<&str> = self.declared.iter().map(|d| d.name.as_str()).collect();
            return Err(StageError::msg(format!(
                "task `{}` wrote output `{output}`, which the stage does not declare (declared: {})",
                self.task,
                names.join(", ")
            )));
        };
        if decl.kind != kind {
            return Err(StageError::msg(format!(
                "output `{output}` of task `{}` is a {:?}, not a {kind:?}",
                self.task, decl.kind
            )));
        }
        Ok(self
            .outputs
            .entry(output.into())
            .or_insert_with(|| Manifest {
                kind,
                ..Default::default()
            }))
    }

    /// Stores bytes as file `name` of artifact output `output`.
    pub async fn put_file(
        &mut self,
        output: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.store.put_blob(bytes).await?;
        self.output_mut(output, ArtifactKind::Artifact)?
            .files
            .insert(name.into(), blob.clone());
        Ok(blob)
    }

    /// Stores a local file as file `name` of artifact output `output`.
    pub async fn put_file_from(
        &mut self,
        output: &str,
        name: &str,
        path: &Path,
    ) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.store.put_blob_file(path).await?;
        self.output_mut(output, ArtifactKind::Artifact)?
            .files
            .insert(name.into(), blob.clone());
        Ok(blob)
    }

    /// Adds a blob already in the store (an input's file) as file `name` of
    /// artifact output `output`, without reading or writing its bytes.
    pub fn attach_file(
        &mut self,
        output: &str,
        name: &str,
        blob: BlobRef,
    ) -> Result<(), StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        self.output_mut(output, ArtifactKind::Artifact)?
            .files
            .insert(name.into(), blob);
        Ok(())
    }

    /// Stores bytes as a blob without attaching it (for items).
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobRef, StageError> {
        Ok(self.store.put_blob(bytes).await?)
    }
    pub async fn put_blob_file(&self, path: &Path) -> Result<BlobRef, StageError> {
        Ok(self.store.put_blob_file(path).await?)
    }

    /// Appends an item to collection output `output`.
    pub fn add_item(&mut self, output: &str, item: Item) -> Result<(), StageError> {
        check_rel_path(&item.key).map_err(|m| StageError::msg(format!("item key: {m}")))?;
        for name in item.files.keys() {
            check_rel_path(name).map_err(StageError::msg)?;
        }
        let m = self.output_mut(output, ArtifactKind::Collection)?;
        if m.items.iter().any(|i| i.key == item.key) {
            return Err(StageError::msg(format!(
                "collection `{output}` already has an item `{}`",
                item.key
            )));
        }
        m.items.push(item);
        Ok(())
    }

    /// Sets an output to an existing manifest (e.g. one read from the store
    /// by ref); its digest stays the same.
    pub fn set_output(&mut self, output: &str, manifest: Manifest) {
        self.outputs.insert(output.into(), manifest);
    }

    /// Sets the small JSON metadata of an output (metrics, counts).
    pub fn set_meta(&mut self, output: &str, meta: Value) -> Result<(), StageError> {
        let kind = self
            .declared
            .iter()
            .find(|d| d.name == output)
            .map(|d| d.kind)
            .unwrap_or_default();
        self.output_mut(output, kind)?.meta = meta;
        Ok(())
    }

    /// Sets a value downstream `when:` expressions can read as `stage.key`.
    pub fn set_value(&mut self, key: &str, value: Value) {
        self.values.insert(key.into(), value);
    }

    /// Runs CPU-heavy work on the blocking pool, with cancellation.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StageError> + Send + 'static,
    ) -> Result<T, StageError> {
        on_blocking_pool(&self.task, f).await
    }
}

/// What one item of a map stage gets.
pub struct ItemCtx {
    pub(crate) store: Store,
    pub(crate) task: String,
    pub(crate) files: BTreeMap<String, BlobRef>,
    pub(crate) meta: Value,
    pub(crate) log: Log,
    pub(crate) cancel: CancellationToken,
    pub(crate) scratch: PathBuf,
    pub(crate) threads: usize,
    /// Inputs from stages other than the mapped one (e.g. a model).
    pub(crate) inputs: Arc<Vec<Input>>,
}

impl ItemCtx {
    /// The stage's inputs other than the mapped collection (a model, a
    /// config): the same for every item, and part of each item's fingerprint.
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }
    pub fn task(&self) -> &str {
        &self.task
    }
    pub fn threads(&self) -> usize {
        self.threads
    }
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
    pub fn log(&self, line: impl AsRef<str>) {
        self.log.line(line.as_ref())
    }
    pub fn scratch_dir(&self) -> Result<&Path, StageError> {
        ensure_dir(&self.scratch)
    }
    pub async fn read(&self, blob: &BlobRef) -> Result<Vec<u8>, StageError> {
        Ok(self.store.get_blob(&blob.digest).await?)
    }
    pub async fn fetch(&self, blob: &BlobRef, dest: &Path) -> Result<(), StageError> {
        Ok(self.store.get_blob_to_file(&blob.digest, dest).await?)
    }
    /// Stores bytes as file `name` of this item's output.
    pub async fn put_file(&mut self, name: &str, bytes: Vec<u8>) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.store.put_blob(bytes).await?;
        self.files.insert(name.into(), blob.clone());
        Ok(blob)
    }
    pub async fn put_file_from(&mut self, name: &str, path: &Path) -> Result<BlobRef, StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        let blob = self.store.put_blob_file(path).await?;
        self.files.insert(name.into(), blob.clone());
        Ok(blob)
    }
    /// Keeps an existing blob (e.g. an input file) as file `name` of this
    /// item's output, without copying it.
    pub fn attach(&mut self, name: &str, blob: BlobRef) -> Result<(), StageError> {
        check_rel_path(name).map_err(StageError::msg)?;
        self.files.insert(name.into(), blob);
        Ok(())
    }
    pub fn progress_log(&self) -> &Log {
        &self.log
    }
    /// Sets this item's output metadata.
    pub fn set_meta(&mut self, meta: Value) {
        self.meta = meta;
    }
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StageError> + Send + 'static,
    ) -> Result<T, StageError> {
        on_blocking_pool(&self.task, f).await
    }
}

fn ensure_dir(dir: &Path) -> Result<&Path, StageError> {
    std::fs::create_dir_all(dir).map_err(|e| StageError::io("create", dir, e))?;
    Ok(dir)
}

/// Runs `f` on tokio's blocking pool; a panic there becomes an error
/// naming the task.
async fn on_blocking_pool<T: Send + 'static>(
    task: &str,
    f: impl FnOnce() -> Result<T, StageError> + Send + 'static,
) -> Result<T, StageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StageError::msg(format!("worker thread of task `{task}` panicked: {e}")))?
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_head_and_its_tail_and_says_what_was_cut() {
        let mut b = LogBuf::default();
        let line = "y".repeat(1023);
        let n = 10 * 1024; // 10 MiB of 1 KiB lines
        b.push("first line");
        for i in 0..n {
            b.push(&format!("{i:06} {line}"));
        }
        b.push("last line");
        let t = b.text();
        assert!(t.starts_with("first line\n"));
        assert!(t.ends_with("last line\n"));
        assert!(t.len() <= LOG_HEAD + LOG_TAIL + 200, "{}", t.len());
        let marker = t
            .lines()
            .find(|l| l.starts_with("[... "))
            .expect("a cut marker");
        assert!(
            marker.contains("lines (") && marker.contains("bytes) cut"),
            "{marker}"
        );
        // Nothing is lost silently: kept + cut lines add up.
        let kept = t.lines().count() - 1;
        let cut: usize = marker[5..].split(' ').next().unwrap().parse().unwrap();
        assert_eq!(kept + cut, n + 2);
    }
}
