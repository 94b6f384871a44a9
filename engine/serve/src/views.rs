//! What each page shows, as serializable structs read from the store: the
//! same struct feeds the HTML template and the `/api/...` JSON.

use crate::error::{Result, ServeError};
use crate::graph::{self, Graph, Timeline};
use engine_core::digest::Digest;
use engine_core::records::{self, RunRecord, TaskRecord, TaskStatus};
use engine_core::store::{Manifest, Store};
use serde::Serialize;
use serde_json::Value;

/// Every state a task or stage is drawn in, in legend order.
pub const STATES: [&str; 8] = [
    "waiting",
    "running",
    "done",
    "cached",
    "failed",
    "skipped",
    "cancelled",
    "interrupted",
];

/// Percent-encodes one URL path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn run_url(id: &str) -> String {
    format!("/runs/{}", enc(id))
}

pub fn task_url(run: &str, task: &str) -> String {
    format!("/runs/{}/tasks/{}", enc(run), enc(task))
}

pub fn artifact_url(d: &Digest) -> String {
    format!("/artifacts/{}", d.as_str())
}

/// A task's state as drawn: `interrupted` for a task still `running` in a
/// run whose engine is gone.
pub fn task_state(t: &TaskRecord, run_interrupted: bool) -> &'static str {
    if run_interrupted && t.status == TaskStatus::Running {
        "interrupted"
    } else {
        t.status.as_str()
    }
}

/// Values whose key names a secret are shown as `[redacted]`. Secrets
/// should never reach a record (the shell stage's `pass_env` keeps them
/// out), but a `with:` or `--set` value named `password` would: the page
/// must not be where it leaks.
pub fn redact(v: &Value) -> Value {
    const SECRET: [&str; 6] = [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private_key",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let low = k.to_ascii_lowercase();
                    if SECRET.iter().any(|s| low.contains(s)) && !v.is_object() {
                        (k.clone(), Value::String("[redacted]".into()))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        v => v.clone(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(&redact(v)).unwrap_or_default()
}

fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.2} s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{}h {:02}m",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

/// One line of the runs page.
#[derive(Debug, Serialize)]
pub struct RunRow {
    pub id: String,
    pub url: String,
    pub pipeline: String,
    pub status: String,
    pub started: String,
    pub duration: String,
    pub seconds: f64,
    /// `3 done, 2 cached`.
    pub tasks: String,
    pub git_commit: Option<String>,
    /// Why the record could not be read, for a damaged one.
    pub error: Option<String>,
}

impl RunRow {
    fn of(r: &RunRecord) -> RunRow {
        RunRow {
            id: r.id.clone(),
            url: run_url(&r.id),
            pipeline: r.pipeline.clone(),
            status: r.shown_status().into(),
            started: r.started.clone(),
            duration: duration(run_seconds(r)),
            seconds: run_seconds(r),
            tasks: r
                .counts()
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            git_commit: r.git_commit.clone(),
            error: None,
        }
    }
}

/// A running run's record has no `seconds` yet: its time so far, or up
/// to its last heartbeat when its engine is gone.
fn run_seconds(r: &RunRecord) -> f64 {
    if r.finished.is_some() || r.seconds > 0.0 {
        return r.seconds;
    }
    let parse = |s: &str| humantime::parse_rfc3339(s).ok();
    let Some(start) = parse(&r.started) else {
        return 0.0;
    };
    let end = if r.interrupted() {
        r.heartbeat.as_deref().and_then(parse).unwrap_or(start)
    } else {
        std::time::SystemTime::now()
    };
    end.duration_since(start)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Debug, Serialize)]
pub struct RunsPage {
    pub runs: Vec<RunRow>,
    pub pipelines: Vec<String>,
    pub statuses: [&'static str; 5],
    pub pipeline: String,
    pub status: String,
    /// Runs left out by `limit`.
    pub more: usize,
}

/// Runs, newest first, filtered by pipeline and shown status.
pub async fn runs(store: &Store, pipeline: &str, status: &str, limit: usize) -> Result<RunsPage> {
    let ids = records::list_runs(store).await?;
    let mut rows = vec![];
    let mut pipelines = std::collections::BTreeSet::new();
    let mut more = 0;
    for id in &ids {
        let row = match records::load_run(store, id).await {
            Ok(Some(r)) => RunRow::of(&r),
            Ok(None) => continue,
            // One damaged record must not hide every other run.
            Err(e) => RunRow {
                id: id.clone(),
                url: run_url(id),
                pipeline: "?".into(),
                status: "unreadable".into(),
                started: String::new(),
                duration: String::new(),
                seconds: 0.0,
                tasks: String::new(),
                git_commit: None,
                error: Some(e.to_string()),
            },
        };
        pipelines.insert(row.pipeline.clone());
        if (!pipeline.is_empty() && row.pipeline != pipeline)
            || (!status.is_empty() && row.status != status)
        {
            continue;
        }
        if rows.len() >= limit {
            more += 1;
            continue;
        }
        rows.push(row);
    }
    Ok(RunsPage {
        runs: rows,
        pipelines: pipelines.into_iter().collect(),
        statuses: ["running", "succeeded", "failed", "cancelled", "interrupted"],
        pipeline: pipeline.into(),
        status: status.into(),
        more,
    })
}

pub async fn load_run(store: &Store, id: &str) -> Result<RunRecord> {
    if id.is_empty() || id.contains(['/', '\\']) || id.contains("..") {
        return Err(ServeError::BadRequest(format!(
            "`{id}` is not a run id; run ids look like `20261128-001500-123-abcd` (see /runs)"
        )));
    }
    records::load_run(store, id).await?.ok_or_else(|| {
        ServeError::NotFound(format!(
            "no run `{id}` in store `{}`; see /runs",
            store.url()
        ))
    })
}

#[derive(Debug, Serialize)]
pub struct TaskRow {
    pub task: String,
    pub url: String,
    pub stage: String,
    pub kind: String,
    pub state: &'static str,
    pub seconds: String,
    pub reason: String,
    pub items: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunView {
    pub run: RunRow,
    /// This run on the compare page, waiting for a second.
    pub compare_url: String,
    pub file: String,
    pub host: String,
    pub engine_version: String,
    pub store: String,
    pub executor: String,
    pub values: String,
    pub warnings: Vec<String>,
    pub live: bool,
    /// A live page's event stream, from the snapshot it was drawn from
    /// (set by the page's route; [`crate::live`]).
    pub events_url: Option<String>,
    pub legend: [&'static str; 8],
    pub graph: Graph,
    pub timeline: Timeline,
    pub tasks: Vec<TaskRow>,
}

pub fn run_view(r: &RunRecord) -> RunView {
    let interrupted = r.interrupted();
    RunView {
        run: RunRow::of(r),
        compare_url: format!("/compare?a={}", enc(&r.id)),
        file: r.file.clone(),
        host: r.host.clone(),
        engine_version: r.engine_version.clone(),
        store: r.store.clone(),
        executor: r.executor.clone(),
        values: pretty(&r.values),
        warnings: r.warnings.clone(),
        live: r.status == records::RunStatus::Running && !interrupted,
        events_url: None,
        legend: STATES,
        graph: graph::stage_graph(r),
        timeline: graph::timeline(r),
        tasks: r
            .tasks
            .iter()
            .map(|t| TaskRow {
                task: t.task.clone(),
                url: task_url(&r.id, &t.task),
                stage: t.stage.clone(),
                kind: t.kind.clone(),
                state: task_state(t, interrupted),
                seconds: format!("{:.2}", t.seconds()),
                reason: t.reason.clone(),
                items: t
                    .items
                    .map(|c| format!("{} items: {} run, {} cached", c.total, c.run, c.cached)),
                error: t.error.clone(),
            })
            .collect(),
    }
}

/// An input of a task with the run and task that produced it.
#[derive(Debug, Serialize)]
pub struct InputView {
    pub name: String,
    pub digest: String,
    pub short: String,
    pub url: String,
    pub from_run: Option<String>,
    pub from_task: Option<String>,
    pub from_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OutputView {
    pub name: String,
    pub digest: String,
    pub short: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct TaskView {
    pub run_id: String,
    pub run_url: String,
    pub task: String,
    pub stage: String,
    pub kind: String,
    pub state: &'static str,
    pub attempts: u32,
    pub seconds: String,
    pub reason: String,
    pub fingerprint: Option<String>,
    pub error: Option<String>,
    pub params: String,
    pub values: String,
    pub items: Option<String>,
    /// Where the work ran when not in the engine's process (Slurm).
    pub placement: Option<String>,
    /// The batch jobs that ran it: id, node, state, exit code, output file.
    pub jobs: Vec<records::JobRecord>,
    pub inputs: Vec<InputView>,
    pub outputs: Vec<OutputView>,
    /// The end of the log (the whole log is at `log_url`).
    pub log: String,
    pub log_cut: bool,
    pub log_url: String,
    /// This page as JSON: what a live page polls for its log's tail.
    pub api_url: String,
    pub live: bool,
}

/// The last bytes of a log shown on a task page.
pub const LOG_TAIL: usize = 64 * 1024;

pub async fn task_view(store: &Store, r: &RunRecord, label: &str) -> Result<TaskView> {
    let t = r
        .task(label)
        .ok_or_else(|| ServeError::NotFound(format!("run `{}` has no task `{label}`", r.id)))?;
    let interrupted = r.interrupted();
    let mut inputs = vec![];
    for i in &t.inputs {
        let lin = records::load_lineage(store, &i.digest).await.ok().flatten();
        inputs.push(InputView {
            name: i.name.clone(),
            digest: i.digest.to_string(),
            short: i.digest.short().into(),
            url: artifact_url(&i.digest),
            from_url: lin.as_ref().map(|l| task_url(&l.run, &l.task)),
            from_run: lin.as_ref().map(|l| l.run.clone()),
            from_task: lin.map(|l| l.task),
        });
    }
    let (log, log_cut) = match &t.log {
        Some(d) => {
            let bytes = store.get_blob(d).await?;
            let cut = bytes.len() > LOG_TAIL;
            let tail = &bytes[bytes.len().saturating_sub(LOG_TAIL)..];
            (String::from_utf8_lossy(tail).into_owned(), cut)
        }
        None => (String::new(), false),
    };
    Ok(TaskView {
        run_id: r.id.clone(),
        run_url: run_url(&r.id),
        task: t.task.clone(),
        stage: t.stage.clone(),
        kind: t.kind.clone(),
        state: task_state(t, interrupted),
        attempts: t.attempts,
        seconds: format!("{:.2}", t.seconds()),
        reason: t.reason.clone(),
        fingerprint: t.fingerprint.as_ref().map(|d| d.to_string()),
        error: t.error.clone(),
        params: pretty(&stage_params(&r.spec, &t.stage, &t.matrix)),
        values: if t.values.is_empty() {
            String::new()
        } else {
            pretty(&serde_json::to_value(&t.values).unwrap_or_default())
        },
        items: t
            .items
            .map(|c| format!("{} items: {} run, {} cached", c.total, c.run, c.cached)),
        placement: t.placement.clone(),
        jobs: t.jobs.clone(),
        inputs,
        outputs: t
            .outputs
            .iter()
            .map(|(k, d)| OutputView {
                name: k.clone(),
                digest: d.to_string(),
                short: d.short().into(),
                url: artifact_url(d),
            })
            .collect(),
        log,
        log_cut,
        log_url: format!("{}/log", task_url(&r.id, &t.task)),
        api_url: format!("/api{}", task_url(&r.id, &t.task)),
        live: t.status == TaskStatus::Running && !interrupted,
    })
}

/// A stage's entry in the rendered spec, with the task's matrix values.
fn stage_params(
    spec: &str,
    stage: &str,
    matrix: &std::collections::BTreeMap<String, Value>,
) -> Value {
    let doc: Value = serde_saphyr::from_str(spec).unwrap_or(Value::Null);
    let mut v = doc
        .get("stages")
        .and_then(|s| s.get(stage))
        .cloned()
        .unwrap_or(Value::Null);
    if !matrix.is_empty()
        && let Value::Object(m) = &mut v
    {
        m.insert(
            "matrix (this task)".into(),
            serde_json::to_value(matrix).unwrap_or_default(),
        );
    }
    v
}

pub async fn task_log(store: &Store, r: &RunRecord, label: &str) -> Result<Vec<u8>> {
    let t = r
        .task(label)
        .ok_or_else(|| ServeError::NotFound(format!("run `{}` has no task `{label}`", r.id)))?;
    match &t.log {
        Some(d) => Ok(store.get_blob(d).await?),
        None => Ok(vec![]),
    }
}

/// A file of an artifact, and how the page shows it.
#[derive(Debug, Serialize)]
pub struct FileView {
    pub name: String,
    pub size: u64,
    pub url: String,
    /// `html` (sandboxed iframe), `json`, `image`, `text` or `binary`.
    pub show: &'static str,
    /// Pretty JSON or text, for small files.
    pub text: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ArtifactView {
    pub digest: String,
    pub kind: String,
    pub files: Vec<FileView>,
    pub items: Vec<String>,
    pub item_count: usize,
    pub meta: String,
    pub made_by: Option<InputView>,
}

/// Files up to this size are shown in the page.
const INLINE_MAX: u64 = 256 * 1024;

pub fn show_as(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "html",
        "json" => "json",
        "png" | "jpg" | "jpeg" | "gif" | "svg" | "webp" => "image",
        "txt" | "md" | "csv" | "log" | "yaml" | "yml" | "tsv" | "prom" => "text",
        _ => "binary",
    }
}

pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "txt" | "md" | "csv" | "log" | "yaml" | "yml" | "tsv" | "prom" => {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

pub fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).ok_or_else(|| {
        ServeError::BadRequest(format!(
            "`{s}` is not an artifact digest (64 lowercase hex characters)"
        ))
    })
}

async fn manifest(store: &Store, d: &Digest) -> Result<Manifest> {
    match store.get_manifest(d).await {
        Ok(m) => Ok(m),
        Err(e) if e.is_not_found() => Err(ServeError::NotFound(format!(
            "no artifact {} in store `{}`",
            d.short(),
            store.url()
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn artifact_view(store: &Store, d: &Digest) -> Result<ArtifactView> {
    let m = manifest(store, d).await?;
    let mut files = vec![];
    for (name, b) in &m.files {
        let show = show_as(name);
        let text = if matches!(show, "json" | "text") && b.size <= INLINE_MAX {
            let bytes = store.get_blob(&b.digest).await?;
            Some(if show == "json" {
                serde_json::from_slice::<Value>(&bytes)
                    .map(|v| pretty(&v))
                    .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned())
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            })
        } else {
            None
        };
        files.push(FileView {
            name: name.clone(),
            size: b.size,
            url: format!("{}/files/{}", artifact_url(d), enc(name)),
            show,
            text,
        });
    }
    let lin = records::load_lineage(store, d).await.ok().flatten();
    Ok(ArtifactView {
        digest: d.to_string(),
        kind: format!("{:?}", m.kind).to_lowercase(),
        files,
        items: m.items.iter().take(200).map(|i| i.key.clone()).collect(),
        item_count: m.items.len(),
        meta: if m.meta.is_null() {
            String::new()
        } else {
            pretty(&m.meta)
        },
        made_by: lin.map(|l| InputView {
            name: l.output.clone(),
            digest: d.to_string(),
            short: d.short().into(),
            url: artifact_url(d),
            from_url: Some(task_url(&l.run, &l.task)),
            from_run: Some(l.run),
            from_task: Some(l.task),
        }),
    })
}

/// The bytes of one file of an artifact, by its name in the manifest (or
/// `ITEM/NAME` for a collection): nothing outside the manifest can be named.
pub async fn artifact_file(store: &Store, d: &Digest, name: &str) -> Result<Vec<u8>> {
    engine_core::store::check_rel_path(name).map_err(|e| ServeError::BadRequest(e.to_string()))?;
    let m = manifest(store, d).await?;
    let blob = match m.files.get(name) {
        Some(b) => Some(b),
        None => name.split_once('/').and_then(|(key, file)| {
            m.items
                .iter()
                .find(|i| i.key == key)
                .and_then(|i| i.files.get(file))
        }),
    };
    let blob = blob.ok_or_else(|| {
        ServeError::NotFound(format!("artifact {} has no file `{name}`", d.short()))
    })?;
    Ok(store.get_blob(&blob.digest).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_by_key() {
        let v = redact(&json!({"db": {"password": "pw", "host": "h"}, "api_token": 3, "lr": 0.1}));
        assert_eq!(
            v,
            json!({"db": {"password": "[redacted]", "host": "h"}, "api_token": "[redacted]", "lr": 0.1})
        );
    }

    #[test]
    fn urls_encode_every_reserved_character() {
        assert_eq!(
            task_url("r1", "train[lr=0.1,x=a/b]"),
            "/runs/r1/tasks/train%5Blr%3D0.1%2Cx%3Da%2Fb%5D"
        );
    }
}

/// One move in a ref's history, newest first on the page.
#[derive(Debug, Serialize)]
pub struct MoveView {
    /// `#N` as `engine ref log` numbers it.
    pub index: usize,
    pub digest: String,
    pub short: String,
    pub url: String,
    pub at: String,
    pub by: String,
    pub note: String,
    pub run: Option<String>,
    pub run_url: Option<String>,
    /// The evaluation that justified a deploy (candidate and the production
    /// it replaced, side by side, in its `evaluation.html`).
    pub evaluation: Option<String>,
    pub evaluation_url: Option<String>,
    /// This move's run beside the run of the move before it.
    pub compare_url: Option<String>,
    pub current: bool,
}

#[derive(Debug, Serialize)]
pub struct RefView {
    pub name: String,
    pub anchor: String,
    pub current: Option<String>,
    pub moves: Vec<MoveView>,
}

#[derive(Debug, Serialize)]
pub struct RefsPage {
    pub refs: Vec<RefView>,
}

pub async fn refs(store: &Store) -> Result<RefsPage> {
    let docs = store.list_refs(None).await?;
    Ok(RefsPage {
        refs: docs
            .into_iter()
            .map(|(name, doc)| {
                let n = doc.history.len();
                RefView {
                    anchor: enc(&name),
                    current: doc.current().map(|d| d.short().to_string()),
                    moves: doc
                        .history
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(i, e)| MoveView {
                            index: i + 1,
                            digest: e.digest.to_string(),
                            short: e.digest.short().into(),
                            url: artifact_url(&e.digest),
                            at: e.at.clone(),
                            by: e.by.clone().unwrap_or_default(),
                            note: e.note.clone(),
                            run_url: e.run.as_deref().map(run_url),
                            run: e.run.clone(),
                            evaluation: e.evaluation.as_ref().map(|d| d.short().to_string()),
                            evaluation_url: e.evaluation.as_ref().map(artifact_url),
                            compare_url: doc.history[..i]
                                .iter()
                                .rev()
                                .find_map(|p| p.run.as_deref())
                                .zip(e.run.as_deref())
                                .filter(|(a, b)| a != b)
                                .map(|(a, b)| format!("/compare?a={}&b={}", enc(a), enc(b))),
                            current: i + 1 == n,
                        })
                        .collect(),
                    name,
                }
            })
            .collect(),
    })
}

/// Points ref `name` (as users type it, `models/x@production`) back at
/// history entry `#index`, recorded as a rollback like `engine ref
/// rollback NAME --to #index` does.
pub async fn rollback(store: &Store, name: &str, index: usize) -> Result<Digest> {
    let stored = name.replace('@', "/");
    let doc = store.get_ref(&stored).await?.ok_or_else(|| {
        ServeError::NotFound(format!("no ref `{name}` in store `{}`", store.url()))
    })?;
    let n = doc.history.len();
    let current = doc
        .current()
        .cloned()
        .ok_or_else(|| ServeError::BadRequest(format!("ref `{name}` has no target")))?;
    if index == 0 || index > n {
        return Err(ServeError::BadRequest(format!(
            "`{name}` has history entries #1 to #{n}; there is no #{index}"
        )));
    }
    let target = doc.history[index - 1].digest.clone();
    if target == current {
        return Err(ServeError::BadRequest(format!(
            "`{name}` already points at {} (#{index}); nothing changed",
            current.short()
        )));
    }
    let why = engine_core::store::RefMove {
        note: format!(
            "rollback to #{index} (from {}) from engine serve",
            current.short()
        ),
        ..Default::default()
    };
    store.move_ref(&stored, &target, &why).await?;
    Ok(target)
}

/// One differing key of two runs, ready to show.
#[derive(Debug, Serialize)]
pub struct DiffRow {
    pub key: String,
    pub a: String,
    pub b: String,
    /// `B - A` for numbers.
    pub delta: String,
}

#[derive(Debug, Serialize)]
pub struct DiffSection {
    pub name: &'static str,
    pub rows: Vec<DiffRow>,
}

#[derive(Debug, Serialize)]
pub struct ComparePage {
    /// Runs to pick from: id and `pipeline · status`.
    pub choices: Vec<(String, String)>,
    pub a: String,
    pub b: String,
    pub a_url: String,
    pub b_url: String,
    pub compared: bool,
    pub sections: Vec<DiffSection>,
}

fn shown(v: &Option<Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::String(s)) if Digest::parse(s).is_some() => s[..12].to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(0.0)),
        Some(v) => v.to_string(),
    }
}

/// Two runs side by side: values, params, metrics and output digests that
/// differ (the same comparison as `engine diff A B`).
pub async fn compare(store: &Store, a: &str, b: &str) -> Result<ComparePage> {
    let ids = records::list_runs(store).await?;
    let mut choices = vec![];
    for id in ids.iter().take(200) {
        if let Ok(Some(r)) = records::load_run(store, id).await {
            choices.push((
                r.id.clone(),
                format!("{} · {}", r.pipeline, r.shown_status()),
            ));
        }
    }
    let mut page = ComparePage {
        choices,
        a: a.into(),
        b: b.into(),
        a_url: run_url(a),
        b_url: run_url(b),
        compared: false,
        sections: vec![],
    };
    if a.is_empty() || b.is_empty() {
        return Ok(page);
    }
    let (ra, rb) = (load_run(store, a).await?, load_run(store, b).await?);
    let d = engine_core::diff::compare(
        engine_core::diff::Side::run(a, &ra),
        &ra,
        engine_core::diff::Side::run(b, &rb),
        &rb,
    );
    let rows = |list: &[engine_core::diff::Change]| {
        list.iter()
            .map(|c| {
                let redacted = |v: &Option<Value>| {
                    v.as_ref().map(|v| {
                        redact(&serde_json::json!({ c.key.rsplit('.').next().unwrap_or(""): v }))
                            .as_object()
                            .and_then(|m| m.values().next().cloned())
                            .unwrap_or(Value::Null)
                    })
                };
                let (va, vb) = (redacted(&c.a), redacted(&c.b));
                DiffRow {
                    key: c.key.clone(),
                    delta: match (
                        va.as_ref().and_then(Value::as_f64),
                        vb.as_ref().and_then(Value::as_f64),
                    ) {
                        (Some(x), Some(y)) => format!("{:+.4}", y - x),
                        _ => String::new(),
                    },
                    a: shown(&va),
                    b: shown(&vb),
                }
            })
            .collect()
    };
    page.sections = vec![
        DiffSection {
            name: "values",
            rows: rows(&d.values),
        },
        DiffSection {
            name: "params",
            rows: rows(&d.params),
        },
        DiffSection {
            name: "metrics",
            rows: rows(&d.metrics),
        },
        DiffSection {
            name: "outputs",
            rows: rows(&d.outputs),
        },
    ];
    page.compared = true;
    Ok(page)
}
