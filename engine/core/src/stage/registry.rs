//! The table of stage kinds a pipeline may `uses:`, and how `with:`
//! params become a built stage.

use super::StageImpl;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;

/// Builds a stage from its `with:` params; the error says which param.
pub type BuildFn = fn(&Value) -> Result<StageImpl, ParamsError>;

/// Why a kind refused its `with:` params: what is wrong, and a suggestion
/// that `engine validate` shows as the diagnostic's hint. As text (a
/// worker's reply, a run's error), the hint follows the message after `; `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", .hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct ParamsError {
    pub message: String,
    pub hint: Option<String>,
}

impl From<String> for ParamsError {
    fn from(message: String) -> Self {
        ParamsError {
            message,
            hint: None,
        }
    }
}

impl From<&str> for ParamsError {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// The JSON Schema of a kind's `with:` params, added to `generator`'s
/// definitions (what [`Registry::register`] records).
pub type ParamsSchema = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// A stage kind's `with:` params, and how they become a stage: a kind is
/// registered in one line, `r.register::<ItsConfig>()`.
pub trait StageConfig: DeserializeOwned + schemars::JsonSchema {
    /// The name pipelines `uses:`.
    const KIND: &'static str;
    /// One line for `engine stages` and the schema.
    const SUMMARY: &'static str;
    /// What serde cannot check (ranges, params that go together), when the
    /// pipeline is compiled rather than when the task runs; the error names
    /// the param (and may say, as the hint, what to do).
    fn check(&self) -> Result<(), ParamsError> {
        Ok(())
    }
    fn build(self) -> StageImpl;
}

fn build_config<C: StageConfig>(v: &Value) -> Result<StageImpl, ParamsError> {
    let c: C = parse_params(v)?;
    c.check()?;
    Ok(c.build())
}

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
    /// The kinds that ship with the engine ([`crate::kinds`]).
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        crate::kinds::register(&mut r);
        r
    }
    /// Adds a kind whose `with:` is untyped (prefer [`Registry::register`]).
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
    /// Adds kind `C::KIND`: its `with:` parses into `C`, passes
    /// [`StageConfig::check`] and builds with [`StageConfig::build`]; the
    /// pipeline schema and `engine stages --json` describe its params from
    /// `C`'s doc comments.
    pub fn register<C: StageConfig>(&mut self) {
        self.insert(KindInfo {
            name: C::KIND,
            summary: C::SUMMARY,
            build: build_config::<C>,
            params: Some(params_schema::<C>),
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
pub fn parse_params<T: DeserializeOwned>(v: &Value) -> Result<T, ParamsError> {
    let empty = Value::Object(Default::default());
    let v = if v.is_null() { &empty } else { v };
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let top_level = path == "."
            || path.is_empty()
            || (inner.starts_with("unknown field") && !path.contains('.'));
        let message = if top_level {
            inner.clone()
        } else {
            format!("`{path}`: {inner}")
        };
        let mut hint = None;
        if let Some(rest) = inner.strip_prefix("unknown field `")
            && let Some((name, expected)) = rest.split_once('`')
        {
            let cands: Vec<&str> = expected
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            hint = crate::diag::closest(name, cands.iter().copied())
                .map(|c| format!("did you mean `{c}`?"));
        }
        ParamsError { message, hint }
    })
}
