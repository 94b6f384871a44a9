//! Executors: where one attempt of a whole task runs. The scheduler decides
//! what runs, when, with which resource grant, retries and timeout; an
//! executor only runs the attempt and leaves the outputs and values in the
//! task's context. `local` runs the stage in this process; `slurm`
//! ([`crate::slurm::SlurmExecutor`]) submits it as a job that runs `engine
//! task exec` on a node and reads the results back from the shared store.
//!
//! Map stages: the scheduler looks each item up in the cache itself, then
//! asks [`Executor::run_items`] for the rest when the executor
//! [`Executor::runs_items`] (Slurm: one job array per map task); otherwise
//! it runs the items in this process.

use crate::compile::ResourceClass;
use crate::records::{ExecutorStats, JobRecord};
use crate::resources::Machine;
use crate::stage::{Input, Log, Stage, StageError, TaskCtx};
use crate::store::Item;
use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A map task's items that missed the cache, in batches, for an executor
/// that runs items away from this process.
pub struct ItemBatches<'a> {
    pub run_id: &'a str,
    pub task: &'a str,
    /// The run's store (the nodes reach the same one).
    pub store: &'a crate::store::Store,
    pub class: &'a ResourceClass,
    /// (index in the mapped collection, item), `map.batch` per batch.
    pub batches: Vec<Vec<(usize, Item)>>,
    /// Inputs other than the mapped collection.
    pub side: &'a [Input],
    /// What item fingerprints hash besides the item.
    pub item_params: &'a Value,
    /// Whether items may be served from the cache (a resubmitted batch
    /// skips what it finished before).
    pub use_cache: bool,
    /// How many times lost batches are resubmitted (the stage's `retries`).
    pub retries: u32,
    pub log: &'a Log,
    pub cancel: &'a CancellationToken,
    /// The jobs that ran the items, for the task's record.
    pub jobs: &'a mut Vec<JobRecord>,
    /// Told how many items are done so far.
    pub progress: &'a (dyn Fn(usize) + Send + Sync),
}

/// What [`Executor::run_items`] gives back.
#[derive(Debug, Default)]
pub struct ItemsDone {
    /// (index, output item), in no particular order.
    pub items: Vec<(usize, Item)>,
    pub run: usize,
    /// Items a resubmitted batch found finished already.
    pub cached: usize,
    /// Rounds of submission (1 unless lost batches were resubmitted).
    pub rounds: u32,
    /// Where the items ran, for the task's record.
    pub note: String,
}

#[async_trait]
pub trait Executor: Send + Sync {
    /// The name in the run record (`local`, `slurm`).
    fn name(&self) -> &'static str;
    /// The totals the resource classes are admitted against, given this
    /// machine's: the machine itself, or the cluster for a batch system.
    fn capacity(&self, here: Machine) -> Machine;
    /// Runs one attempt of `stage` with `ctx` (outputs and values end up in
    /// it), under `class`, as part of run `run_id`. A batch executor adds
    /// the job it submitted to `jobs` (also when the attempt fails).
    async fn run_attempt(
        &self,
        stage: &dyn Stage,
        class: &ResourceClass,
        run_id: &str,
        ctx: &mut TaskCtx,
        jobs: &mut Vec<JobRecord>,
    ) -> Result<(), StageError>;
    /// Called once as the run starts, with its cancellation.
    fn begin(&self, _cancel: &CancellationToken) {}
    /// Called once as the run ends: what the executor did, for the record.
    async fn end(&self) -> Option<ExecutorStats> {
        None
    }
    /// Whether map items run through [`Executor::run_items`] instead of in
    /// this process.
    fn runs_items(&self) -> bool {
        false
    }
    /// Runs a map task's uncached items elsewhere (only called when
    /// [`Executor::runs_items`]).
    async fn run_items(&self, job: ItemBatches<'_>) -> Result<ItemsDone, StageError> {
        Err(StageError::msg(format!(
            "the `{}` executor runs map items in this process; task `{}` should not have reached it",
            self.name(),
            job.task
        )))
    }
}

/// Runs tasks in this process, on this machine's cpus, memory and gpus.
pub struct Local;

#[async_trait]
impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn capacity(&self, here: Machine) -> Machine {
        here
    }
    async fn run_attempt(
        &self,
        stage: &dyn Stage,
        _class: &ResourceClass,
        _run_id: &str,
        ctx: &mut TaskCtx,
        _jobs: &mut Vec<JobRecord>,
    ) -> Result<(), StageError> {
        stage.run(ctx).await
    }
}
