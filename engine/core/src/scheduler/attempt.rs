//! One attempt of a whole task, with retries, backoff, timeout and
//! cancellation.

use super::*;

pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    (base * 2u32.saturating_pow(attempt.saturating_sub(1).min(16))).min(Duration::from_secs(10))
}

/// Runs `fut` under the stage's timeout and the run's cancellation.
pub(super) async fn guarded<F: std::future::Future<Output = Result<(), StageError>>>(
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    fut: F,
) -> Result<(), StageError> {
    let timed = async {
        match timeout {
            Some(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
                Err(StageError::msg(format!(
                    "timed out after {}",
                    humantime::format_duration(d)
                )))
            }),
            None => fut.await,
        }
    };
    tokio::select! {
        r = timed => r,
        _ = cancel.cancelled() => Err(StageError::Cancelled),
    }
}

/// After attempt `attempt` of a task or a map item failed with `e`: whether
/// to try again. When yes, `on_retry(delay)` is told and the backoff waited
/// first. A cancelled attempt, or the last one allowed, is not retried;
/// cancellation during the wait is an error. Shared by [`run_task`] and
/// `map::run_item`, so both retry alike.
pub(super) async fn wait_to_retry(
    base: Duration,
    retries: u32,
    attempt: u32,
    e: &StageError,
    cancel: &CancellationToken,
    on_retry: impl FnOnce(Duration),
) -> Result<bool, StageError> {
    if matches!(e, StageError::Cancelled) || attempt > retries {
        return Ok(false);
    }
    let delay = backoff(base, attempt);
    on_retry(delay);
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(true),
        _ = cancel.cancelled() => Err(StageError::Cancelled),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_task(
    sh: &Arc<Shared>,
    stage: &CompiledStage,
    label: &str,
    s: Arc<dyn Stage>,
    inputs: &[Input],
    matrix: &BTreeMap<String, Value>,
    log: &Log,
    rec: &mut TaskRecord,
) -> Result<(BTreeMap<String, Manifest>, BTreeMap<String, Value>), StageError> {
    let cancel = sh.opts.cancel.clone();
    let inputs = Arc::new(inputs.to_vec());
    let mut attempt = 0;
    loop {
        attempt += 1;
        rec.attempts = attempt;
        let grant = tokio::select! {
            g = sh.pool.acquire(stage.class) => g,
            _ = cancel.cancelled() => return Err(StageError::Cancelled),
        };
        if attempt == 1 {
            rec.started_ms = Some(sh.ms());
        }
        sh.opts.events.emit(Event::TaskStarted {
            task: label.into(),
            attempt,
        });
        // One folder per attempt, made only when the stage asks for it.
        let scratch = sh
            .scratch
            .path()
            .join(format!("{}.{attempt}", sanitize(label)));
        let env = StageEnv::new(
            sh.writer(&stage.name),
            label,
            inputs.clone(),
            log.clone(),
            cancel.child_token(),
            scratch.clone(),
            grant.threads(),
        )
        .with_scratch_pool(sh.scratch_pool.clone());
        let mut ctx = TaskCtx::new(env, matrix.clone(), stage.outputs.clone(), attempt);
        let held_from = sh.ms();
        let class = sh.pool.class(stage.class).clone();
        let run = sh.opts.executor.run_attempt(
            s.as_ref(),
            &class,
            &sh.opts.run_id,
            &mut ctx,
            &mut rec.jobs,
        );
        let res = guarded(stage.timeout, &cancel, run).await;
        ctx.cancel.cancel();
        rec.held_ms.push([held_from, sh.ms()]);
        drop(grant);
        // The release woke the next task waiting for these resources, and
        // the runtime runs a task it wakes next on this worker, but only
        // after this one gives the thread up: without the yield the next
        // command waited for this task's bookkeeping (its scratch folder,
        // outputs, cache entry, record), and on 501 shell tasks on two
        // cores the cores sat idle 14% of the run, 7% with the yield
        // (bench/README.md, "The next command first").
        tokio::task::yield_now().await;
        sh.scratch_pool.release(&scratch).await;
        let e = match res {
            Ok(()) => return Ok((ctx.outputs, ctx.values)),
            Err(e) => e,
        };
        let retry = |delay: Duration| {
            log.line(&format!(
                "attempt {attempt} failed: {e}; retrying in {}",
                humantime::format_duration(delay)
            ));
            sh.opts.events.emit(Event::TaskRetry {
                task: label.into(),
                attempt,
                error: crate::secrets::redact(&e.to_string()).into_owned(),
                delay_ms: delay.as_millis() as u64,
            });
        };
        let base = sh.opts.retry_backoff;
        if !wait_to_retry(base, stage.retries, attempt, &e, &cancel, retry).await? {
            if !matches!(e, StageError::Cancelled) {
                log.line(&format!("attempt {attempt} failed: {e}"));
            }
            return Err(e);
        }
    }
}
