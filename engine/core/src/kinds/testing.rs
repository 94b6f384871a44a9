//! `builtin.*`: tiny in-process stages that exist only so the engine is
//! tested, benchmarked and shown (`examples/hello.yaml`) without ML or
//! subprocesses. No production pipeline should use them; they stay
//! registered because tests, examples and benchmarks name them in YAML.

use crate::stage::{
    ItemCtx, MapStage, OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx,
};
use crate::store::Item;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

// Params of `builtin.concat`: none.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Empty")]
pub struct ConcatConfig {}

/// Params of `builtin.items`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsConfig {
    /// How many items.
    pub count: usize,
    /// Key prefix; keys are `PREFIX-0000`, `PREFIX-0001`, ...
    #[serde(default = "item_prefix")]
    pub prefix: String,
    /// Extra text in every item's content, to change all items at once.
    #[serde(default)]
    pub salt: String,
    /// Explicit keys instead of generated ones.
    #[serde(default)]
    pub keys: Vec<String>,
}

fn item_prefix() -> String {
    "item".into()
}

struct Items(ItemsConfig);

impl StageConfig for ItemsConfig {
    const KIND: &'static str = "builtin.items";
    const SUMMARY: &'static str = "produce a collection of N small items";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Items(self)))
    }
}

#[async_trait]
impl Stage for Items {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::collection("items")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        // Made one at a time: a million keys up front were 56 MB more.
        let keys: Box<dyn Iterator<Item = String> + Send> = if self.0.keys.is_empty() {
            Box::new((0..self.0.count).map(|i| format!("{}-{i:04}", self.0.prefix)))
        } else {
            Box::new(self.0.keys.iter().cloned())
        };
        for key in keys {
            let blob = ctx
                .put_blob(format!("{key}{}\n", self.0.salt).into_bytes())
                .await?;
            let mut files = crate::store::Files::new();
            files.insert("data.txt".to_string(), blob);
            ctx.add_item(
                "items",
                Item {
                    key,
                    files,
                    meta: Value::Null,
                },
            )?;
        }
        Ok(())
    }
}

/// Params of `builtin.upper`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpperConfig {
    /// Fail on the item with this key (for failure tests).
    #[serde(default)]
    pub fail_key: Option<String>,
    /// Sleep this long per item.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Work this long per item on a worker thread, stopping early when the
    /// item is cancelled; `busy_marker` gets `begin KEY` and `end KEY` lines
    /// (for timeout tests: an attempt's work must end before the next begins).
    #[serde(default)]
    pub busy_ms: u64,
    #[serde(default)]
    pub busy_marker: Option<std::path::PathBuf>,
}

struct Upper(UpperConfig);

impl StageConfig for UpperConfig {
    const KIND: &'static str = "builtin.upper";
    const SUMMARY: &'static str = "per item: upper-case each file (a map stage)";
    fn build(self) -> StageImpl {
        StageImpl::Map(Arc::new(Upper(self)))
    }
}

#[async_trait]
impl MapStage for Upper {
    fn version(&self) -> u32 {
        1
    }
    fn output(&self) -> String {
        "items".into()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError> {
        if self.0.fail_key.as_deref() == Some(item.key.as_str()) {
            return Err(StageError::msg(format!(
                "refusing item `{}` (fail_key)",
                item.key
            )));
        }
        if self.0.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.0.sleep_ms)).await;
        }
        if self.0.busy_ms > 0 {
            let cancel = ctx.cancel_token();
            let (ms, marker, key) = (self.0.busy_ms, self.0.busy_marker.clone(), item.key.clone());
            ctx.blocking(move || {
                let note = |what: &str| -> Result<(), StageError> {
                    let Some(m) = &marker else { return Ok(()) };
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(m)
                        .map_err(|e| StageError::io("open", m, e))?;
                    writeln!(f, "{what} {key}").map_err(|e| StageError::io("write", m, e))
                };
                note("begin")?;
                let end = std::time::Instant::now() + Duration::from_millis(ms);
                while std::time::Instant::now() < end && !cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                note("end")?;
                if cancel.is_cancelled() {
                    return Err(StageError::Cancelled);
                }
                Ok(())
            })
            .await?;
        }
        for (name, blob) in &item.files {
            let text = String::from_utf8_lossy(&ctx.read(blob).await?).to_uppercase();
            ctx.put_file(name, text.into_bytes()).await?;
        }
        ctx.set_meta(serde_json::json!({ "source": item.key }));
        Ok(())
    }
}

struct Concat;

impl StageConfig for ConcatConfig {
    const KIND: &'static str = "builtin.concat";
    const SUMMARY: &'static str = "concatenate every input file and item into one file";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Concat))
    }
}

#[async_trait]
impl Stage for Concat {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("out")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let mut all = Vec::new();
        let inputs = ctx.inputs().to_vec();
        for input in &inputs {
            for blob in input.manifest.files.values() {
                all.extend(ctx.read(blob).await?);
            }
            for item in &input.manifest.items {
                for blob in item.files.values() {
                    all.extend(ctx.read(blob).await?);
                }
            }
        }
        let n = all.len();
        ctx.put_file("out", "concat.txt", all).await?;
        ctx.set_value("bytes", Value::from(n));
        Ok(())
    }
}

/// Params of `builtin.echo`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {
    /// The text to write.
    pub text: String,
}

struct Echo(EchoConfig);

impl StageConfig for EchoConfig {
    const KIND: &'static str = "builtin.echo";
    const SUMMARY: &'static str = "write `text` to file `text.txt` of output `out`";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Echo(self)))
    }
}

#[async_trait]
impl Stage for Echo {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("out")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let mut text = self.0.text.clone();
        for input in ctx.inputs().to_vec() {
            for blob in input.manifest.files.values() {
                text.push_str(&String::from_utf8_lossy(&ctx.read(blob).await?));
            }
        }
        ctx.put_file("out", "text.txt", text.into_bytes()).await?;
        Ok(())
    }
}

/// Params of `builtin.value`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueConfig {
    /// Values to set, readable downstream as `STAGE.KEY`.
    pub values: BTreeMap<String, Value>,
}

struct SetValues(ValueConfig);

impl StageConfig for ValueConfig {
    const KIND: &'static str = "builtin.value";
    const SUMMARY: &'static str = "set values for downstream `when:` expressions";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(SetValues(self)))
    }
}

#[async_trait]
impl Stage for SetValues {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        for (k, v) in &self.0.values {
            ctx.set_value(k, v.clone());
        }
        Ok(())
    }
}

/// Params of `builtin.sleep`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepConfig {
    /// Milliseconds to sleep.
    pub ms: u64,
    /// Distinguishes otherwise identical tasks (so they do not share a cache entry).
    #[serde(default)]
    pub tag: Value,
}

struct Sleep(SleepConfig);

impl StageConfig for SleepConfig {
    const KIND: &'static str = "builtin.sleep";
    const SUMMARY: &'static str = "sleep, then write a marker (for scheduling tests)";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Sleep(self)))
    }
}

#[async_trait]
impl Stage for Sleep {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("out")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        tokio::time::sleep(Duration::from_millis(self.0.ms)).await;
        let body = format!("slept {} ms ({})\n", self.0.ms, self.0.tag);
        ctx.put_file("out", "sleep.txt", body.into_bytes()).await?;
        Ok(())
    }
}

/// Params of `builtin.flaky`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakyConfig {
    /// Attempts that fail before one succeeds.
    pub fail_attempts: u32,
}

struct Flaky(FlakyConfig);

impl StageConfig for FlakyConfig {
    const KIND: &'static str = "builtin.flaky";
    const SUMMARY: &'static str = "fail the first N attempts, then succeed";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Flaky(self)))
    }
}

#[async_trait]
impl Stage for Flaky {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("out")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        if ctx.attempt() <= self.0.fail_attempts {
            return Err(StageError::msg(format!(
                "flaky failure on attempt {}",
                ctx.attempt()
            )));
        }
        ctx.put_file(
            "out",
            "ok.txt",
            format!("succeeded on attempt {}\n", ctx.attempt()).into_bytes(),
        )
        .await?;
        Ok(())
    }
}

/// Params of `builtin.fail`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailConfig {
    #[serde(default = "fail_message")]
    pub message: String,
}

fn fail_message() -> String {
    "failed on purpose".into()
}

struct Fail(FailConfig);

impl StageConfig for FailConfig {
    const KIND: &'static str = "builtin.fail";
    const SUMMARY: &'static str = "always fail with `message`";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Fail(self)))
    }
}

#[async_trait]
impl Stage for Fail {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("out")]
    }
    async fn run(&self, _ctx: &mut TaskCtx) -> Result<(), StageError> {
        Err(StageError::msg(self.0.message.clone()))
    }
}

/// Params of `builtin.write`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteConfig {
    /// File name -> content.
    pub files: BTreeMap<String, String>,
}

struct Write(WriteConfig);

impl StageConfig for WriteConfig {
    const KIND: &'static str = "builtin.write";
    const SUMMARY: &'static str = "write the given files to output `out` (names are checked)";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Write(self)))
    }
}

#[async_trait]
impl Stage for Write {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("out")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        for (name, content) in &self.0.files {
            ctx.put_file("out", name, content.clone().into_bytes())
                .await?;
        }
        Ok(())
    }
}
