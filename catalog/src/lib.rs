//! The video catalog: videos, replay labels, model predictions and human
//! reviews in one SQL database, through sqlx.
//!
//! - [`Catalog::open`]: a SQLite file (the default, [`DEFAULT_DB`], created
//!   and migrated on first use) or PostgreSQL (`postgres://...`), same schema
//!   (`migrations/sqlite`, `migrations/postgres`).
//! - [`Catalog::import_dir`]: a folder of videos and their label files ([`import`]).
//! - [`Catalog::list`], [`Catalog::labels_for`], [`Catalog::add_prediction`],
//!   [`Catalog::add_review`], [`Catalog::set_labels`]: typed reads and writes ([`db`]).
//! - [`Catalog::enqueue_review`], [`Catalog::review_queue`], [`Catalog::record_verdict`]:
//!   the manual-review queue ([`review`]); [`parse_spans`] reads a person's
//!   `START-END` segments ([`spans`]).
//! - [`Catalog::golden_add`], [`Catalog::golden_list`], [`Catalog::golden_coverage`]:
//!   the golden set, held out for evaluation ([`golden`]).
//! - [`Catalog::predictions`], [`Catalog::record_prediction_verdict`],
//!   [`Catalog::record_missed`], [`Catalog::simulate_verdicts`]: verdicts on
//!   production predictions, which rebuild human labels ([`verdicts`]).
//! - [`Catalog::verdict_rows`], [`monitor::judge`], [`monitor::prometheus`]:
//!   per-league precision and recall from verdicts ([`monitor`]).
//! - [`Catalog::query`], [`Catalog::query_named`]: any read-only SELECT, rows as JSON ([`query`]).
//! - [`item_key`], [`content_identity`]: for pipeline items that point at videos ([`identity`]).
//! - [`CatalogError`]: every failure, naming the database, file or SQL.

#[macro_use]
pub mod db;
pub mod error;
pub mod golden;
pub mod identity;
pub mod import;
pub mod model;
pub mod monitor;
pub mod query;
pub mod review;
pub mod spans;
pub mod verdicts;

pub use db::{Catalog, DEFAULT_DB, prepare_default};
pub use error::{CatalogError, Result};
pub use golden::{Coverage, CoverageCell, GoldenRow, GoldenSelect};
pub use identity::{ContentIdentity, content_identity, item_key, unique_item_key};
pub use import::{FoundLabels, read_label_file};
pub use model::*;
pub use query::{Table, bind_named};
pub use spans::parse_spans;
pub use verdicts::{
    PredictionFilter, PredictionRow, PredictionVerdict, SIMULATED_REVIEWER, SimVerdict,
    SimulationReport,
};
