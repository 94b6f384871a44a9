//! Map stages as Slurm job arrays. The submitting machine looks every item
//! up in the cache first; only the items that must run are grouped into
//! the stage's batches (`map.batch`) and submitted as ONE
//! `sbatch --array=0-N%CAP` job. Element `i` runs `engine task exec-batch`,
//! which runs batch `i`'s items on its node exactly as a local run would
//! (the same per-item fingerprint, retries and timeout), writes each item's
//! cache entry to the shared store as it finishes, and writes the batch's
//! result document last. The submitter merges the items into the stage's
//! collection; it does no item work itself.
//!
//! An element lost to the cluster (`NODE_FAIL`, `BOOT_FAIL`, `PREEMPTED`,
//! or a job that ended without a result) is a retryable failure: its batch
//! goes into a new, smaller array, up to the stage's `retries`; items it
//! finished before it was lost are served from their cache entries, never
//! run again. (With Slurm's default `JobRequeue=1` the controller requeues
//! a batch job whose node failed by itself; the poller then sees the
//! element pending again and simply keeps waiting. The engine's own
//! resubmission covers `--no-requeue` jobs, clusters with requeue off,
//! preemption with `PreemptMode=CANCEL`, and jobs that vanish.) An item
//! that fails by itself (after its own retries on the node) fails the
//! stage, as it does locally.
//!
//! Store layout, per round `R` of task key `K` (a digest of the label):
//! `runs/RUN/tasks/K-R.array.json` (what every element shares),
//! `K-R-I.batch.json` (element `I`'s items), `K-R-I.result.json` (its result).

use super::{InputDoc, JobGuard, NodeTask, SlurmExecutor, quote, task_key};
use crate::cache::{self, ItemEntry, Lookup};
use crate::executor::{ItemBatches, ItemsDone};
use crate::records::JobRecord;
use crate::stage::{Log, StageError, StageImpl};
use crate::store::{Item, Store, Verify};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The array cap when the profile sets neither `array_cap` nor `max_jobs`
/// for the class: enough to fill a few nodes, few enough that one stage
/// does not take a shared partition.
pub const DEFAULT_ARRAY_CAP: u32 = 32;

/// What every element of one array shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArrayRequest {
    pub run: String,
    pub task: String,
    pub round: u32,
    pub threads: usize,
    /// Inputs other than the mapped collection (a model, a config).
    pub side: Vec<InputDoc>,
    /// What item fingerprints hash besides the item (params, side input
    /// and `deps:` digests), computed by the submitter, which hashed the
    /// stage's declared files.
    pub item_params: Value,
    /// Whether an item may be served from its cache entry.
    pub use_cache: bool,
    pub batches: usize,
}

/// One element's items: (index in the mapped collection, item).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchDoc {
    pub items: Vec<(usize, Item)>,
}

/// [`BatchDoc`] as written, borrowing the items.
#[derive(Serialize)]
struct BatchDocRef<'a> {
    items: &'a [(usize, Item)],
}

/// What one element reports, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResult {
    pub ok: bool,
    /// (index, output item, served from the cache).
    #[serde(default)]
    pub items: Vec<(usize, Item, bool)>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub log: String,
}

fn prefix(run: &str, task: &str, round: u32) -> String {
    format!("runs/{run}/tasks/{}-{round}", task_key(task))
}

pub fn array_path(run: &str, task: &str, round: u32) -> String {
    format!("{}.array.json", prefix(run, task, round))
}

pub fn batch_path(run: &str, task: &str, round: u32, i: usize) -> String {
    format!("{}-{i}.batch.json", prefix(run, task, round))
}

pub fn batch_result_path(run: &str, task: &str, round: u32, i: usize) -> String {
    format!("{}-{i}.result.json", prefix(run, task, round))
}

/// `n` batches as arrays of at most `max` elements: (first batch, count).
fn chunks(n: usize, max: usize) -> Vec<(usize, usize)> {
    let max = max.max(1);
    (0..n)
        .step_by(max)
        .map(|start| (start, max.min(n - start)))
        .collect()
}

/// The submitting side: runs `job.batches` as arrays until every batch has
/// a result, or an item failed, or lost elements used up the retries.
pub(super) async fn run_items(
    ex: &SlurmExecutor,
    mut job: ItemBatches<'_>,
) -> Result<ItemsDone, StageError> {
    let cfg = &ex.cfg;
    let store = job.store;
    let task = job.task;
    let run = job.run_id;
    let cap = cfg.array_cap(&job.class.name);
    std::fs::create_dir_all(&cfg.log_dir).map_err(|e| StageError::io("create", &cfg.log_dir, e))?;
    let mut pending = std::mem::take(&mut job.batches);
    let mut done = ItemsDone::default();
    let mut arrays = vec![];
    let mut round = 0;
    while !pending.is_empty() {
        round += 1;
        let n = pending.len();
        let req = ArrayRequest {
            run: run.into(),
            task: task.into(),
            round,
            threads: job.class.cpus.max(1) as usize,
            side: job
                .side
                .iter()
                .map(|i| InputDoc {
                    stage: i.stage.clone(),
                    task: i.task.clone(),
                    output: i.output.clone(),
                    digest: i.digest.clone(),
                })
                .collect(),
            item_params: job.item_params.clone(),
            use_cache: job.use_cache,
            batches: n,
        };
        // Batch documents first, the shared request last: an element that
        // starts finds everything it reads.
        let writes: Vec<_> = pending
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let path = batch_path(run, task, round, i);
                async move { store.put_json(&path, &BatchDocRef { items: b }).await }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(writes)
            .buffer_unordered(16)
            .collect()
            .await;
        for r in results {
            r?;
        }
        store.put_json(&array_path(run, task, round), &req).await?;
        // Element indices must stay below the cluster's `MaxArraySize`
        // (1001 by default): more batches go as several arrays, element `j`
        // of the array at `offset` running batch `offset + j`. The cap is
        // shared out so that the arrays together run about `cap` at once.
        let parts = chunks(n, ex.max_array_size().await as usize - 1);
        let part_cap = (cap as usize / parts.len()).max(1);
        // Guarded from the first submission: if a later `sbatch` fails, the
        // arrays already queued are cancelled, not left running.
        let mut guard = JobGuard::new(&ex.poller, vec![]);
        let mut ids: Vec<String> = Vec::with_capacity(n);
        let mut logs: Vec<std::path::PathBuf> = Vec::with_capacity(n);
        for &(offset, len) in &parts {
            let wrap = format!(
                "exec {} task exec-batch --run {} --task {} --round {round} --offset {offset}",
                quote(&cfg.engine_bin.to_string_lossy()),
                quote(run),
                quote(task)
            );
            let mut args = cfg.sbatch_args(job.class);
            args.push(format!("--array=0-{}%{part_cap}", len - 1));
            job.log.line(&format!("sbatch {}", args.join(" ")));
            let out = format!("{}/slurm-%A_%a.out", cfg.log_dir.display());
            let id = ex.sbatch(task, &args, &out, &wrap).await?;
            arrays.push(id.clone());
            let most = pending[offset..offset + len]
                .iter()
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            job.log.line(&format!(
                "submitted Slurm job array {id}: {len} element(s) of at most {most} item(s), batches {offset}..{}, at most {part_cap} at once (round {round})",
                offset + len
            ));
            let first = ids.len();
            for j in 0..len {
                ids.push(format!("{id}_{j}"));
                logs.push(cfg.log_dir.join(format!("slurm-{id}_{j}.out")));
            }
            guard.follow(ids[first..].iter().cloned());
        }
        let mut waits: futures::stream::FuturesUnordered<_> = ids
            .iter()
            .enumerate()
            .map(|(i, eid)| {
                let rx = ex.poller.watch(eid);
                async move { (i, rx.await) }
            })
            .collect();
        let mut lost: Vec<(usize, String)> = vec![];
        let mut failed: Option<String> = None;
        loop {
            let next = tokio::select! {
                n = waits.next() => n,
                _ = job.cancel.cancelled() => return Err(StageError::Cancelled),
            };
            let Some((i, end)) = next else { break };
            let eid = &ids[i];
            let end = match end {
                Ok(Ok(e)) => {
                    guard.ended(eid);
                    e
                }
                Ok(Err(msg)) => return Err(StageError::msg(msg)),
                Err(_) => {
                    return Err(StageError::msg(format!(
                        "the Slurm poller stopped while job {eid} of task `{task}` ran"
                    )));
                }
            };
            let log_file = &logs[i];
            let result: Option<BatchResult> = store
                .get_json(&batch_result_path(run, task, round, i))
                .await?;
            job.jobs.push(JobRecord {
                attempt: round,
                job: eid.clone(),
                node: end
                    .node
                    .clone()
                    .or_else(|| result.as_ref().map(|r| r.host.clone())),
                state: end.state.clone(),
                exit_code: end.exit_code,
                log: Some(log_file.display().to_string()),
                items: Some(pending[i].len()),
            });
            match result {
                Some(r) if r.ok => {
                    for line in r.log.lines() {
                        job.log.line(line);
                    }
                    job.log.line(&format!(
                        "Slurm job {eid} finished {} item(s) on `{}`",
                        r.items.len(),
                        r.host
                    ));
                    for (idx, item, cached) in r.items {
                        if cached {
                            done.cached += 1;
                        } else {
                            done.run += 1;
                        }
                        done.items.push((idx, item));
                    }
                    (job.progress)(done.items.len());
                }
                Some(r) => {
                    for line in r.log.lines() {
                        job.log.line(line);
                    }
                    failed = Some(r.error.unwrap_or_else(|| {
                        format!("Slurm job {eid} of task `{task}` failed on `{}`", r.host)
                    }));
                    break;
                }
                None => {
                    let why = if end.lost() {
                        format!(
                            "Slurm job {eid} was lost ({}{})",
                            end.state,
                            end.node
                                .as_ref()
                                .map(|n| format!(" on node `{n}`"))
                                .unwrap_or_default()
                        )
                    } else {
                        format!(
                            "Slurm job {eid} ended {}{} without a result; its last output:\n  {}",
                            end.state,
                            end.exit_code
                                .map(|c| format!(" with exit code {c}"))
                                .unwrap_or_default(),
                            super::tail(log_file, 5).join("\n  ")
                        )
                    };
                    job.log.line(&why);
                    lost.push((i, why));
                }
            }
        }
        // Elements still queued or running are cancelled (a failed item).
        drop(waits);
        drop(guard);
        if let Some(e) = failed {
            return Err(StageError::msg(e));
        }
        if lost.is_empty() {
            break;
        }
        if round > job.retries {
            let whys: Vec<&str> = lost.iter().map(|(_, w)| w.as_str()).collect();
            return Err(StageError::msg(format!(
                "{} of {n} batch(es) of task `{task}` did not finish after {round} array(s): {}; raise the stage's `retries` to resubmit lost batches, or check the nodes with `sinfo -R`",
                lost.len(),
                whys.join("; ")
            )));
        }
        job.log.line(&format!(
            "resubmitting {} lost batch(es); items they finished are served from the cache",
            lost.len()
        ));
        let mut again = vec![];
        for (i, _) in lost {
            again.push(std::mem::take(&mut pending[i]));
        }
        pending = again;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = job.cancel.cancelled() => return Err(StageError::Cancelled),
        }
    }
    // In the record by round, array, then element, not in the order they
    // ended.
    job.jobs.sort_by_key(|j| {
        let (array, element) = j.job.rsplit_once('_').unwrap_or((&j.job, ""));
        (
            j.attempt,
            array.parse::<u64>().ok(),
            element.parse::<usize>().ok(),
        )
    });
    done.rounds = round;
    done.note = format!(
        "items ran on Slurm as job array(s) {} (at most {cap} element(s) at once); none ran on the submitting machine",
        if arrays.is_empty() {
            "(none: every item was cached)".to_string()
        } else {
            arrays.join(", ")
        }
    );
    Ok(done)
}

/// `engine task exec-batch`: runs batch `index` of round `round` of a map
/// task's array(s) on this node, from the run record and documents in the
/// store, and writes its result document.
pub async fn exec_batch(
    store: &Store,
    registry: &crate::stage::Registry,
    run: &str,
    task: &str,
    round: u32,
    index: usize,
) -> Result<BatchResult, String> {
    let node = NodeTask::load(store, registry, run, task).await?;
    let (rec, stage) = (&node.rec, node.stage());
    let req: ArrayRequest = store
        .get_json(&array_path(run, task, round))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("no array request for task `{task}` round {round} in run `{run}`")
        })?;
    let batch: BatchDoc = store
        .get_json(&batch_path(run, task, round, index))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("no batch {index} for task `{task}` round {round} in run `{run}`; is `SLURM_ARRAY_TASK_ID` right?")
        })?;
    let StageImpl::Map(m) = node.build()? else {
        return Err(format!(
            "stage `{}` is not a map stage; its tasks run with `engine task exec`",
            stage.name
        ));
    };
    let side = InputDoc::load_all(&req.side, store).await?;
    let writer = node.writer(store);
    let verify = if rec.verify {
        Verify::Hash
    } else {
        Verify::Size
    };
    let log = Log::new(task, crate::events::EventSink::none());
    let scratch = tempfile::Builder::new()
        .prefix(&format!("engine-batch-{}-", task_key(task)))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| format!("Failed to create a scratch folder for task `{task}`: {e}"))?;
    let runner = crate::scheduler::ItemRunner {
        writer,
        label: task.to_string(),
        scratch: scratch.path().to_path_buf(),
        timeout: stage.timeout,
        retries: stage.retries,
        backoff: Duration::from_millis(200),
        log: log.clone(),
        side: Arc::new(side),
    };
    let cancel = CancellationToken::new();
    let version = m.version();
    let mut result = BatchResult {
        ok: true,
        items: vec![],
        error: None,
        host: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        log: String::new(),
    };
    for (i, item) in &batch.items {
        let fp = cache::item_fingerprint(&stage.kind, version, &req.item_params, item);
        // A resubmitted batch skips what its lost element already finished.
        if req.use_cache
            && let Lookup::Hit(e) = cache::lookup_item(store, &fp, verify)
                .await
                .map_err(|e| e.to_string())?
        {
            let mut it = e.item;
            it.key = item.key.clone();
            result.items.push((*i, it, true));
            continue;
        }
        match crate::scheduler::run_item(&runner, &m, item, *i, req.threads, &cancel).await {
            Ok(it) => {
                if stage.cache {
                    let entry = ItemEntry {
                        item: it.clone(),
                        run: run.to_string(),
                    };
                    store
                        .put_json_deferred(&cache::item_path(&fp), &entry)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                result.items.push((*i, it, false));
            }
            Err(e) => {
                result.ok = false;
                result.error = Some(e.to_string());
                break;
            }
        }
    }
    result.log = log.text();
    // The submitter trusts the result: the items it names must be on disk.
    store.flush().await.map_err(|e| e.to_string())?;
    store
        .put_json(&batch_result_path(run, task, round, index), &result)
        .await
        .map_err(|e| e.to_string())?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn batches_beyond_max_array_size_go_as_several_arrays() {
        assert_eq!(chunks(5, 1000), vec![(0, 5)]);
        assert_eq!(chunks(1000, 1000), vec![(0, 1000)]);
        assert_eq!(
            chunks(2500, 1000),
            vec![(0, 1000), (1000, 1000), (2000, 500)]
        );
        assert_eq!(chunks(0, 1000), vec![]);
        assert_eq!(chunks(3, 0), vec![(0, 1), (1, 1), (2, 1)]);
    }
}
