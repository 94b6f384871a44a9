//! The Stage API: how built-in and plugin stages plug into the engine.
//!
//! A stage kind is a config struct (a [`StageConfig`], deserialised from
//! `with:` and registered in one line), a runtime value and a trait impl
//! ([`Stage`] or [`MapStage`]). The engine caches, fans out, retries and
//! records any stage without knowing what it does; a stage never touches
//! the store directly, only through its context ([`TaskCtx`] or
//! [`ItemCtx`], both a [`StageEnv`] underneath).
//!
//! Here: the traits and errors; `registry` (the table of kinds), `env`
//! and `ctx` (what a stage call gets), `log` (the task log).

mod ctx;
mod env;
mod log;
mod registry;

pub use ctx::{ItemCtx, TaskCtx};
pub use env::{Input, StageEnv};
pub use log::Log;
pub use registry::{
    BuildFn, KindInfo, ParamsError, ParamsSchema, Registry, StageConfig, parse_params,
};

use crate::store::{ArtifactKind, Item, Store, StoreError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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
    /// The work. CPU-heavy code goes through [`StageEnv::blocking`].
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
