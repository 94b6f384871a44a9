//! engine-core: the declarative pipeline engine.
//!
//! Data flows one way, one module per arrow:
//!
//! YAML text -> [`template`] (minijinja) -> [`spec`] (typed, located;
//! kept by [`spec_cache`] for the next command) ->
//! [`compile`] (every error at once) -> [`deps`] (declared files, hashed)
//! -> [`plan`] (tasks in dependency order) ->
//! [`scheduler`] (tokio, [`resources`]) -> [`executor`] (here, or
//! [`slurm`]: jobs, job arrays, one poller per run) -> [`store`]
//! (content-addressed artifacts, refs) -> [`records`] (run records with
//! lineage).
//!
//! Stages plug in through the [`stage`] API; [`kinds`] holds the ones that
//! ship with the engine (`shell`, `artifact.ref`, the test-only
//! `builtin.*`); [`worker`] runs stages that need a
//! heavy library (libtorch) in a separate process. A shell task's command
//! starts inside its own cgroup ([`spawn`], [`cgroup`]) and dies with the
//! engine however the engine dies ([`reaper`]).

pub mod cache;
pub mod cgroup;
pub mod compile;
pub mod dag;
pub mod deps;
pub mod diag;
pub mod diff;
pub mod digest;
pub mod events;
pub mod executor;
pub mod fsck;
pub mod gc;
pub mod html;
pub mod kinds;
pub mod plan;
pub mod reaper;
pub mod records;
pub mod resources;
pub mod scheduler;
pub mod schema;
pub mod secrets;
pub mod slurm;
pub mod spawn;
pub mod spec;
pub mod spec_cache;
pub mod stage;
pub mod store;
pub mod template;
pub mod worker;

/// The engine's version, recorded in every run record.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bumped when the cache key layout changes, so old entries stop matching.
pub const CACHE_VERSION: u32 = 1;
