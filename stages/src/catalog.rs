//! `catalog.query`: videos chosen by a SELECT on the catalog, as the
//! collection `videos`. Items carry no bytes: their meta holds the row (with
//! the `uri`), the video's labels (`labels`: `start_s`, `end_s`, `source`
//! `human | teacher | truth`, `confidence`), the latest review verdict
//! (`review`, when a person reviewed it), `golden` (true for videos of the
//! golden set, which `dataset.split` refuses) and a content identity, so
//! per-item caching downstream notices a changed file or a new verdict.
//!
//! The stage reads a database that changes between runs: give it
//! `cache: false` so every run sees the current catalog.

use engine_core::stage::ParamsError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use ::catalog::{Catalog, CatalogError};
use async_trait::async_trait;
use engine_core::stage::{OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx};
use engine_core::store::Item;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// Params of `catalog.query`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogQueryConfig {
    /// The catalog: a SQLite file path or `sqlite://PATH` (relative to the
    /// engine's working directory), or `postgres://USER:PASSWORD@HOST/DB`.
    #[serde(default = "default_db")]
    pub db: String,
    /// A read-only SELECT that returns a `uri` column, e.g.
    /// `SELECT * FROM videos WHERE league = :league`. `:name` placeholders
    /// take their values from `params`.
    #[serde(default = "default_sql")]
    pub sql: String,
    /// Values of the `:name` placeholders in `sql`: strings, numbers,
    /// booleans or null. Every placeholder needs a value and every value a
    /// placeholder.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
}

fn default_db() -> String {
    ::catalog::DEFAULT_DB.into()
}

fn default_sql() -> String {
    "SELECT * FROM videos ORDER BY uri".into()
}

struct CatalogQuery(CatalogQueryConfig);

impl StageConfig for CatalogQueryConfig {
    const KIND: &'static str = "catalog.query";
    const SUMMARY: &'static str = "videos from the catalog chosen by a SELECT, as collection `videos` (uri, metadata, labels; no bytes)";
    /// Placeholder typos fail when the pipeline is compiled, not at run time.
    fn check(&self) -> Result<(), ParamsError> {
        ::catalog::bind_named(&self.sql, &self.params).map_err(|e| match e {
            CatalogError::Params { message, .. } => format!("`sql` / `params`: {message}"),
            other => other.to_string(),
        })?;
        Ok(())
    }
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(CatalogQuery(self)))
    }
}

#[async_trait]
impl Stage for CatalogQuery {
    fn version(&self) -> u32 {
        1
    }
    /// The database changes under the same params: query it every run.
    /// Downstream stages stay cached per item when the rows are the same.
    fn always_run(&self) -> bool {
        true
    }

    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::collection("videos")]
    }

    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = &self.0;
        let fail = |e: CatalogError| StageError::msg(e.to_string());
        ::catalog::prepare_default(&c.db).map_err(fail)?;
        let db = Catalog::open(&c.db).await.map_err(fail)?;
        let result = self.collect(&db, ctx).await;
        db.close().await;
        result
    }
}

impl CatalogQuery {
    async fn collect(&self, db: &Catalog, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = &self.0;
        let table = db
            .query_named(&c.sql, &c.params)
            .await
            .map_err(|e| StageError::msg(e.to_string()))?;
        ctx.set_meta(
            "videos",
            json!({ "db": db.url(), "sql": c.sql, "params": c.params, "count": table.rows.len() }),
        )?;
        if table.rows.is_empty() {
            ctx.log(format!("catalog.query: the query returned no videos from `{}`; collection `videos` is empty", db.url()));
            return Ok(());
        }
        if !table.columns.iter().any(|col| col == "uri") {
            return Err(StageError::msg(format!(
                "catalog.query: the SQL returns no `uri` column (columns: {}); select it, e.g. `SELECT * FROM videos ...`",
                table.columns.join(", ")
            )));
        }
        let golden = db
            .golden_uris()
            .await
            .map_err(|e| StageError::msg(e.to_string()))?;
        let total = table.rows.len() as u64;
        let mut taken = BTreeSet::new();
        for (n, mut row) in table.rows.into_iter().enumerate() {
            if ctx.cancel_token().is_cancelled() {
                return Err(StageError::Cancelled);
            }
            let Some(uri) = row.get("uri").and_then(Value::as_str).map(str::to_string) else {
                return Err(StageError::msg(format!(
                    "catalog.query: row {} has no text `uri`: {}",
                    n + 1,
                    Value::Object(row)
                )));
            };
            let labels = match db.labels_for(uri.as_str()).await {
                Ok(labels) => labels
                    .into_iter()
                    .map(|l| json!({ "start_s": l.start_s, "end_s": l.end_s, "source": l.source, "confidence": l.confidence }))
                    .collect(),
                // A uri the query made up (not a catalogued video) has no labels.
                Err(CatalogError::Invalid(_)) => vec![],
                Err(e) => return Err(StageError::msg(e.to_string())),
            };
            // The latest verdict: a reviewed video is human-labelled even
            // when the person found no replays (no `human` label rows).
            let review = match db.reviews_of(uri.as_str()).await {
                Ok(entries) => entries.into_iter().find(|e| e.status == "done").map(|e| {
                    json!({ "verdict": e.verdict, "reviewer": e.reviewer, "done_at": e.done_at })
                }),
                Err(CatalogError::Invalid(_)) => None,
                Err(e) => return Err(StageError::msg(e.to_string())),
            };
            let path = PathBuf::from(uri.strip_prefix("file://").unwrap_or(&uri));
            let content = ctx
                .blocking({
                    let path = path.clone();
                    move || {
                        ::catalog::content_identity(&path).map_err(|e| {
                            StageError::msg(format!(
                                "catalog.query: Failed to read video `{}` listed in the catalog: {e}; re-import its folder (`engine catalog import DIR`) or remove it from the catalog",
                                path.display()
                            ))
                        })
                    }
                })
                .await?;
            row.insert("labels".into(), Value::Array(labels));
            row.insert("golden".into(), Value::Bool(golden.contains(&uri)));
            if let Some(r) = review {
                row.insert("review".into(), r);
            }
            row.insert(
                "content".into(),
                serde_json::to_value(content).unwrap_or(Value::Null),
            );
            let key = ::catalog::unique_item_key(&uri, &taken);
            taken.insert(key.clone());
            ctx.add_item(
                "videos",
                Item {
                    key,
                    files: Default::default(),
                    meta: Value::Object(row),
                },
            )?;
            ctx.progress(n as u64 + 1, total);
        }
        ctx.log(format!(
            "catalog.query: {total} video(s) from `{}`",
            db.url()
        ));
        Ok(())
    }
}
