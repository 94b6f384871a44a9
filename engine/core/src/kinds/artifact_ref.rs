//! `artifact.ref`: brings an artifact that is already in the store into a
//! pipeline, by ref or digest.

use crate::digest::Digest;
use crate::stage::{OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx};
use crate::store::{Manifest, Store};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Params of `artifact.ref`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefConfig {
    /// A ref (`models/basketball@production`) or an artifact digest (prefix).
    pub name: String,
    /// A missing ref is not an error: the output is an empty artifact whose
    /// meta says `missing` (e.g. the previous dataset on a first run).
    #[serde(default)]
    pub optional: bool,
}

/// Brings a stored artifact into a pipeline (a model at its production
/// alias, a pinned backbone): the output is that very manifest, so
/// downstream caches key on its digest; it runs every time because a ref
/// can move.
struct RefArtifact(RefConfig);

impl StageConfig for RefConfig {
    const KIND: &'static str = "artifact.ref";
    const SUMMARY: &'static str =
        "an artifact already in the store, by ref or digest, resolved on every run";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(RefArtifact(self)))
    }
}

impl RefArtifact {
    /// The output when an optional ref does not exist.
    fn missing(&self) -> Manifest {
        Manifest {
            meta: serde_json::json!({ "missing": self.0.name }),
            ..Default::default()
        }
    }
}

#[async_trait]
impl Stage for RefArtifact {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("artifact")]
    }
    fn always_run(&self) -> bool {
        true
    }
    async fn foresee(&self, store: &Store) -> Option<BTreeMap<String, Digest>> {
        let digest = match store.resolve(&self.0.name).await {
            Ok(d) => d,
            Err(e) if self.0.optional && e.is_not_found() => self.missing().digest(),
            Err(_) => return None,
        };
        Some(BTreeMap::from([("artifact".to_string(), digest)]))
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let name = &self.0.name;
        // Only "not found" is a missing ref: a store that cannot be read or
        // a ref file that does not parse fails the task, or a first-run
        // fallback would silently replace the real artifact.
        let digest = match ctx.store().resolve(name).await {
            Ok(d) => d,
            Err(e) if self.0.optional && e.is_not_found() => {
                ctx.log(format!(
                    "artifact.ref: `{name}` does not exist yet (optional)"
                ));
                ctx.set_output("artifact", self.missing());
                return Ok(());
            }
            Err(e) if e.is_not_found() => {
                return Err(StageError::msg(format!(
                    "`{name}` is not a ref or artifact digest in store {}: {e}; set it with `engine ref set {name} DIGEST`",
                    ctx.store().url()
                )));
            }
            Err(e) => {
                return Err(StageError::msg(format!(
                    "Failed to resolve `{name}` in store {}: {e}",
                    ctx.store().url()
                )));
            }
        };
        let m = ctx.store().get_manifest(&digest).await?;
        ctx.log(format!("artifact.ref: `{name}` = {}", digest.short()));
        ctx.set_value("digest", Value::String(digest.to_string()));
        ctx.set_output("artifact", m);
        Ok(())
    }
}
