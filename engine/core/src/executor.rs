//! Executors: where one attempt of a whole task runs. The scheduler decides
//! what runs, when, with which resource grant, retries and timeout; an
//! executor only runs the attempt and leaves the outputs and values in the
//! task's context. `local` runs the stage in this process; `slurm`
//! ([`crate::slurm::SlurmConfig`]) submits it as a job that runs `engine
//! task exec` on a node and reads the results back from the shared store.

use crate::compile::ResourceClass;
use crate::resources::Machine;
use crate::stage::{Stage, StageError, TaskCtx};
use async_trait::async_trait;

#[async_trait]
pub trait Executor: Send + Sync {
    /// The name in the run record (`local`, `slurm`).
    fn name(&self) -> &'static str;
    /// The totals the resource classes are admitted against, given this
    /// machine's: the machine itself, or the cluster for a batch system.
    fn capacity(&self, here: Machine) -> Machine;
    /// Runs one attempt of `stage` with `ctx` (outputs and values end up in
    /// it), under `class`, as part of run `run_id`.
    async fn run_attempt(
        &self,
        stage: &dyn Stage,
        class: &ResourceClass,
        run_id: &str,
        ctx: &mut TaskCtx,
    ) -> Result<(), StageError>;
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
    ) -> Result<(), StageError> {
        stage.run(ctx).await
    }
}
