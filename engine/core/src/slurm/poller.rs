//! One poller per run: a single tokio task follows every job the run
//! submitted with one batched `squeue` call per interval, and wakes the
//! attempt waiting on each job when the job ends. Before it, each task ran
//! its own `squeue` every 200 ms, so a run of 1,000 running tasks asked the
//! controller 5,000 times a second; now it asks 5 times a second, whatever
//! the number of jobs (`squeue -j` takes the whole list, array jobs by
//! their base id, `-r` gives one line per array element).
//!
//! `squeue -t all` still lists a job for `MinJobAge` (300 s by default)
//! after it ended, with its final state, node and exit status: that is how
//! the poller tells a finished job from one lost to `NODE_FAIL`,
//! `BOOT_FAIL` or `PREEMPTED`. A job that is no longer listed at all has
//! vanished; its waiter hears so and looks for its result document.
//! So does the waiter of a job left `COMPLETING` for longer than
//! [`COMPLETING_GRACE`]: its script has ended, and a node that died during
//! the cleanup keeps the job completing until the node comes back, which
//! may be never (seen when a test marked a node down while its slurmd was
//! still shutting down: the run waited for ever).
//!
//! Cancelling: a job whose attempt is dropped (a timeout) is queued for
//! `scancel` and cancelled with the others queued in the same interval;
//! when the run itself is cancelled (Ctrl-C), every job it still follows is
//! cancelled at once by a single `scancel` with the whole list.

use crate::records::ExecutorStats;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

/// How a job (or one array element) ended, as `squeue` last showed it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    /// `123`, or `123_4` for element 4 of array job 123.
    pub id: String,
    /// Slurm's state (`COMPLETED`, `FAILED`, `NODE_FAIL`, ...), or
    /// `VANISHED` when the controller no longer knows the job, or
    /// `STUCK_COMPLETING` when it stayed `COMPLETING` past
    /// [`COMPLETING_GRACE`].
    pub state: String,
    /// The node it ran on, when it got one.
    pub node: Option<String>,
    /// The exit status of the job's script; `None` when killed by a signal
    /// or never run.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
}

impl JobEnd {
    /// The job was lost to the cluster (a node failure, preemption, a node
    /// that never booted) or disappeared: the work did not fail by itself
    /// and another attempt may well succeed.
    pub fn lost(&self) -> bool {
        matches!(
            self.state.as_str(),
            "NODE_FAIL" | "BOOT_FAIL" | "PREEMPTED" | "VANISHED" | "REVOKED" | "STUCK_COMPLETING"
        )
    }
}

/// Slurm job states after which a job never runs again.
fn terminal(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "PREEMPTED"
            | "OUT_OF_MEMORY"
            | "DEADLINE"
            | "REVOKED"
            | "SPECIAL_EXIT"
    )
}

struct Inner {
    interval: Duration,
    /// Waiters by job id (`123` or `123_4`).
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<JobEnd, String>>>>,
    /// Jobs whose attempt gave up on them, to `scancel` in the next round.
    to_cancel: Mutex<Vec<String>>,
    wake: Notify,
    stop: CancellationToken,
    started: AtomicBool,
    /// The run's cancellation, once started.
    run_cancel: std::sync::OnceLock<CancellationToken>,
    /// Set once the whole run's jobs were cancelled.
    cancelled_all: AtomicBool,
    /// The (base) ids that call cancelled: later requests for them are moot.
    covered: Mutex<std::collections::HashSet<String>>,
    sbatch_calls: AtomicU64,
    jobs: AtomicU64,
    squeue_calls: AtomicU64,
    scancel_calls: AtomicU64,
    t0: Mutex<Option<Instant>>,
}

/// The run's poller; cheap to clone.
#[derive(Clone)]
pub struct Poller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("interval", &self.inner.interval)
            .finish()
    }
}

/// How long a job may stay `COMPLETING` (its script ended, Slurm cleans
/// up) before its waiter is told it ended and looks for its result
/// document. Cleanup takes moments on a live node; on a dead one it never
/// ends.
pub const COMPLETING_GRACE: Duration = Duration::from_secs(120);

/// Whether job `id`, seen `COMPLETING` now, has been so for `grace`;
/// `since` remembers when each job was first seen completing.
fn stuck_completing(
    since: &mut HashMap<String, Instant>,
    id: &str,
    now: Instant,
    grace: Duration,
) -> bool {
    let first = *since.entry(id.to_string()).or_insert(now);
    now.duration_since(first) >= grace
}

/// After this many `squeue` failures in a row (the controller is down),
/// the waiting attempts are told, rather than waiting for ever.
const SQUEUE_FAILURES: u32 = 150;

impl Poller {
    pub fn new(interval: Duration) -> Self {
        Poller {
            inner: Arc::new(Inner {
                interval: interval.max(Duration::from_millis(10)),
                waiting: Mutex::new(HashMap::new()),
                to_cancel: Mutex::new(vec![]),
                wake: Notify::new(),
                stop: CancellationToken::new(),
                started: AtomicBool::new(false),
                run_cancel: std::sync::OnceLock::new(),
                cancelled_all: AtomicBool::new(false),
                covered: Mutex::new(Default::default()),
                sbatch_calls: AtomicU64::new(0),
                jobs: AtomicU64::new(0),
                squeue_calls: AtomicU64::new(0),
                scancel_calls: AtomicU64::new(0),
                t0: Mutex::new(None),
            }),
        }
    }

    /// Starts the polling task (once) and ties it to the run's
    /// cancellation: when `run_cancel` fires, every job still followed is
    /// cancelled with one `scancel`.
    pub fn start(&self, run_cancel: &CancellationToken) {
        if self.inner.started.swap(true, Ordering::SeqCst) {
            return;
        }
        *lock(&self.inner.t0) = Some(Instant::now());
        let _ = self.inner.run_cancel.set(run_cancel.clone());
        let inner = self.inner.clone();
        let run_cancel = run_cancel.clone();
        tokio::spawn(async move { poll_loop(inner, run_cancel).await });
    }

    /// Counts an `sbatch` call (for the stats).
    pub fn submitted(&self) {
        self.inner.sbatch_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Follows job `id` (`123`, or `123_4` for an array element) until it
    /// ends. The receiver gets its end, or an error when the poller stopped
    /// or `squeue` kept failing.
    pub fn watch(&self, id: &str) -> oneshot::Receiver<Result<JobEnd, String>> {
        if !self.inner.started.load(Ordering::SeqCst) {
            // A poller not tied to a run (tests, `engine task` tools).
            self.start(&CancellationToken::new());
        }
        let (tx, rx) = oneshot::channel();
        self.inner.jobs.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.waiting).insert(id.to_string(), tx);
        rx
    }

    /// Stops following `ids` and cancels them in the next round (their
    /// attempt gave up: a timeout, a failed sibling). Callable from `Drop`.
    pub fn cancel(&self, ids: &[String]) {
        let mut waiting = lock(&self.inner.waiting);
        // A cancelled run's jobs are all cancelled by one call, including
        // these, unless that call was made already (checked under the same
        // lock `cancel_all` takes, so no job falls between the two).
        if self.run_cancelled() && !self.inner.cancelled_all.load(Ordering::SeqCst) {
            return;
        }
        let covered = lock(&self.inner.covered);
        let mut q = lock(&self.inner.to_cancel);
        for id in ids {
            waiting.remove(id);
            if !covered.contains(&base_id(id)) {
                q.push(id.clone());
            }
        }
        drop(covered);
        let queued = !q.is_empty();
        drop((waiting, q));
        if queued {
            self.inner.wake.notify_one();
        }
    }

    /// A job whose attempt went away while `sbatch` was still submitting
    /// it (Ctrl-C, a timeout): nobody waits for it, so it is cancelled.
    pub fn orphan(&self, id: &str) {
        lock(&self.inner.waiting).insert(id.to_string(), oneshot::channel().0);
        self.cancel(&[id.to_string()]);
    }

    fn run_cancelled(&self) -> bool {
        self.inner
            .run_cancel
            .get()
            .is_some_and(|c| c.is_cancelled())
    }

    /// Cancels what is queued (all of a cancelled run's jobs), stops
    /// polling and returns the stats.
    pub async fn close(&self) -> ExecutorStats {
        let inner = &self.inner;
        if self.run_cancelled() {
            cancel_all(inner).await;
        }
        let pending = std::mem::take(&mut *lock(&inner.to_cancel));
        if !pending.is_empty() {
            scancel(inner, &pending).await;
        }
        inner.stop.cancel();
        self.stats()
    }

    pub fn stats(&self) -> ExecutorStats {
        let i = &self.inner;
        ExecutorStats {
            sbatch_calls: i.sbatch_calls.load(Ordering::Relaxed),
            jobs: i.jobs.load(Ordering::Relaxed),
            squeue_calls: i.squeue_calls.load(Ordering::Relaxed),
            scancel_calls: i.scancel_calls.load(Ordering::Relaxed),
            poll_ms: i.interval.as_millis() as u64,
            seconds: lock(&i.t0)
                .map(|t| t.elapsed().as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn poll_loop(inner: Arc<Inner>, run_cancel: CancellationToken) {
    let mut failures = 0u32;
    let mut completing: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            _ = inner.stop.cancelled() => return,
            _ = run_cancel.cancelled(), if !inner.cancelled_all.load(Ordering::SeqCst) => {
                cancel_all(&inner).await;
                continue;
            }
            _ = inner.wake.notified() => {
                // Attempts dropped together (a failed map cancelling its
                // siblings) queue within moments of each other: one call.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if run_cancel.is_cancelled() {
                    cancel_all(&inner).await;
                    continue;
                }
                let q = std::mem::take(&mut *lock(&inner.to_cancel));
                if !q.is_empty() {
                    scancel(&inner, &q).await;
                }
                continue;
            }
            _ = tokio::time::sleep(inner.interval) => {}
        }
        let ids: Vec<String> = lock(&inner.waiting).keys().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        match squeue(&inner, &ids).await {
            Ok(seen) => {
                failures = 0;
                let mut waiting = lock(&inner.waiting);
                let now = Instant::now();
                completing.retain(|id, _| waiting.contains_key(id));
                for id in &ids {
                    let end = match seen.get(id) {
                        Some(e) if terminal(&e.state) => e.clone(),
                        Some(e)
                            if e.state == "COMPLETING"
                                && stuck_completing(&mut completing, id, now, COMPLETING_GRACE) =>
                        {
                            JobEnd {
                                state: "STUCK_COMPLETING".into(),
                                ..e.clone()
                            }
                        }
                        Some(_) => continue,
                        None => JobEnd {
                            id: id.clone(),
                            state: "VANISHED".into(),
                            node: None,
                            exit_code: None,
                            signal: None,
                        },
                    };
                    if let Some(tx) = waiting.remove(id) {
                        let _ = tx.send(Ok(end));
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= SQUEUE_FAILURES {
                    let msg = format!(
                        "`squeue` failed {failures} times in a row ({e}); is slurmctld up? the run's jobs are being cancelled; check with `squeue --me`"
                    );
                    for (_, tx) in lock(&inner.waiting).drain() {
                        let _ = tx.send(Err(msg.clone()));
                    }
                    failures = 0;
                }
            }
        }
    }
}

async fn cancel_all(inner: &Inner) {
    let mut ids: BTreeSet<String> = {
        let waiting = lock(&inner.waiting);
        if inner.cancelled_all.swap(true, Ordering::SeqCst) {
            return;
        }
        let ids: BTreeSet<String> = waiting.keys().map(|i| base_id(i)).collect();
        lock(&inner.covered).extend(ids.iter().cloned());
        ids
    };
    ids.extend(std::mem::take(&mut *lock(&inner.to_cancel)));
    if !ids.is_empty() {
        scancel(inner, &ids.into_iter().collect::<Vec<_>>()).await;
    }
}

/// `123_4` -> `123`.
fn base_id(id: &str) -> String {
    id.split('_').next().unwrap_or(id).to_string()
}

async fn scancel(inner: &Inner, ids: &[String]) {
    inner.scancel_calls.fetch_add(1, Ordering::Relaxed);
    let _ = tokio::process::Command::new("scancel")
        .args(ids)
        .output()
        .await;
}

/// One `squeue` for all `ids`: what it says of each job and array element.
async fn squeue(inner: &Inner, ids: &[String]) -> Result<HashMap<String, JobEnd>, String> {
    let bases: BTreeSet<String> = ids.iter().map(|i| base_id(i)).collect();
    let list = bases.into_iter().collect::<Vec<_>>().join(",");
    inner.squeue_calls.fetch_add(1, Ordering::Relaxed);
    let out = tokio::process::Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-j", &list])
        .args(["-O", "JobArrayID:|,State:|,NodeList:|,exit_code:|"])
        .output()
        .await
        .map_err(|e| format!("Failed to run `squeue`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // All the listed jobs are gone from the controller.
        if err.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        return Err(format!("`squeue` failed: {}", err.trim()));
    }
    Ok(parse_squeue(&stdout))
}

/// Lines of `JobArrayID|State|NodeList|exit_code|`.
fn parse_squeue(text: &str) -> HashMap<String, JobEnd> {
    let mut seen = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        if f.len() < 4 || f[0].is_empty() {
            continue;
        }
        let raw: Option<i32> = f[3].parse().ok();
        // `exit_code` is the raw wait status: exit code in the high byte,
        // the killing signal in the low bits.
        let (exit_code, signal) = match raw {
            Some(r) if r & 0x7f != 0 => (None, Some(r & 0x7f)),
            Some(r) => (Some(r >> 8), None),
            None => (None, None),
        };
        seen.insert(
            f[0].to_string(),
            JobEnd {
                id: f[0].to_string(),
                state: f[1].split_whitespace().next().unwrap_or("").to_string(),
                node: (!f[2].is_empty() && f[2] != "(null)").then(|| f[2].to_string()),
                exit_code,
                signal,
            },
        );
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_give_state_node_and_exit_code() {
        let seen = parse_squeue(
            "1_0|COMPLETED|vm|0|\n1_2|FAILED|vm|512|\n1_3|PENDING||0|\n7|NODE_FAIL|n2|0|\n8|CANCELLED|n1|15|\n",
        );
        assert_eq!(seen["1_0"].state, "COMPLETED");
        assert_eq!(seen["1_0"].node.as_deref(), Some("vm"));
        assert_eq!(seen["1_2"].exit_code, Some(2));
        assert_eq!(seen["1_3"].node, None);
        assert!(!terminal(&seen["1_3"].state));
        assert!(seen["7"].lost() && terminal(&seen["7"].state));
        assert_eq!(seen["8"].signal, Some(15));
        assert!(!seen["1_2"].lost());
    }

    #[test]
    fn a_job_completing_past_the_grace_counts_as_lost() {
        let (mut since, t0, grace) = (HashMap::new(), Instant::now(), Duration::from_secs(120));
        assert!(!stuck_completing(&mut since, "7", t0, grace));
        assert!(!stuck_completing(
            &mut since,
            "7",
            t0 + Duration::from_secs(119),
            grace
        ));
        // Another job's clock starts when it is first seen.
        assert!(!stuck_completing(
            &mut since,
            "8",
            t0 + Duration::from_secs(119),
            grace
        ));
        assert!(stuck_completing(&mut since, "7", t0 + grace, grace));
        assert!(!stuck_completing(&mut since, "8", t0 + grace, grace));
        let end = JobEnd {
            id: "7".into(),
            state: "STUCK_COMPLETING".into(),
            node: Some("node2".into()),
            exit_code: Some(0),
            signal: None,
        };
        assert!(
            end.lost(),
            "its waiter checks the result document, then retries"
        );
    }

    #[test]
    fn array_elements_are_asked_for_by_their_base_id() {
        assert_eq!(base_id("12_3"), "12");
        assert_eq!(base_id("12"), "12");
    }

    /// Against the real Slurm of `scripts/test.sh` (`ENGINE_TEST_SLURM=1`):
    /// three jobs, one squeue per round for all of them.
    #[tokio::test]
    async fn the_poller_follows_real_jobs_with_one_squeue_per_round() {
        if std::env::var_os("ENGINE_TEST_SLURM").is_none() {
            eprintln!("skipped: set ENGINE_TEST_SLURM=1 and SLURM_CONF (scripts/test.sh does)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let submit = |code: i32| {
            let o = std::process::Command::new("sbatch")
                .arg("--parsable")
                .arg(format!("--output={}/%j.out", dir.path().display()))
                .args(["--job-name=engine:poller-test", "--wrap"])
                .arg(format!("sleep 1; exit {code}"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let p = Poller::new(Duration::from_millis(100));
        p.start(&CancellationToken::new());
        let (a, b) = (submit(0), submit(3));
        let (ra, rb, rc) = (p.watch(&a), p.watch(&b), p.watch("67000000"));
        let ended = |r: oneshot::Receiver<Result<JobEnd, String>>| async move {
            tokio::time::timeout(Duration::from_secs(120), r)
                .await
                .expect("the poller never saw the job end")
                .unwrap()
                .unwrap()
        };
        let (ea, eb, ec) = (ended(ra).await, ended(rb).await, ended(rc).await);
        assert_eq!((ea.state.as_str(), ea.exit_code), ("COMPLETED", Some(0)));
        assert_eq!((eb.state.as_str(), eb.exit_code), ("FAILED", Some(3)));
        assert!(eb.node.is_some() && !eb.lost());
        assert_eq!(ec.state, "VANISHED");
        assert!(ec.lost());
        let s = p.close().await;
        assert_eq!(s.jobs, 3);
        let rounds = s.seconds * 10.0 + 2.0;
        assert!(
            (s.squeue_calls as f64) <= rounds,
            "{} squeue calls in {:.1}s: more than one per round",
            s.squeue_calls,
            s.seconds
        );
    }
}
