//! `engine run`: one run of a pipeline on the local or Slurm executor,
//! with live progress, a summary, and clean cancellation on Ctrl-C.

use crate::args::CacheArgs;
use crate::{profile, progress, show};
use anyhow::{Context, Result, anyhow};
use engine_core::compile::Pipeline;
use engine_core::plan::Plan;
use engine_core::scheduler::{self, RunOptions};
use engine_core::store::Store;
use engine_core::template;
use std::path::Path;
use std::sync::Arc;

pub(crate) fn slurm_config(store: &Store) -> Result<engine_core::slurm::SlurmConfig> {
    let store_url = store.worker_url().map(str::to_string).ok_or_else(|| {
        anyhow!("the slurm executor needs a store the nodes can reach (`fs://` on a shared disk, or `s3://`), not `{}`", store.url())
    })?;
    let cwd = std::env::current_dir().context("Failed to read the current folder")?;
    let p = profile::active().profile.slurm.clone().unwrap_or_default();
    let engine_bin = match p.engine_bin.clone() {
        Some(b) => b,
        None => std::env::current_exe().context("Failed to find the engine binary")?,
    };
    Ok(engine_core::slurm::SlurmConfig {
        engine_bin,
        store_url,
        log_dir: cwd.join(p.log_dir.clone().unwrap_or_else(|| ".engine/slurm".into())),
        poll: std::time::Duration::from_millis(p.poll_ms.unwrap_or(200)),
        max_array_size: p.max_array_size,
        defaults: p.defaults(),
        classes: p.classes.clone(),
    })
}

/// A profile's `max_jobs` per class becomes the class's slot limit: at
/// most that many of its jobs are in the cluster's queue at once.
pub(crate) fn cap_jobs(pipeline: &mut Pipeline, cfg: &engine_core::slurm::SlurmConfig) {
    for class in &mut pipeline.classes {
        if let Some(cap) = cfg.class_settings(&class.name).max_jobs {
            class.slots = Some(class.slots.map_or(cap, |s| s.min(cap)).max(1));
        }
    }
}

/// The flags of `engine run` that shape how it runs and prints.
pub(crate) struct RunFlags {
    pub(crate) cache: CacheArgs,
    pub(crate) json: bool,
    pub(crate) verbose: bool,
    pub(crate) verify: bool,
    /// The pipeline repository's commit (`-dirty` when changed), if any.
    pub(crate) git_commit: Option<String>,
}

pub(crate) async fn run(
    pipeline: Pipeline,
    plan: Plan,
    store: Store,
    rendered: template::Rendered,
    flags: RunFlags,
    slurm: Option<engine_core::slurm::SlurmConfig>,
) -> Result<u8> {
    let RunFlags {
        cache,
        json,
        verbose,
        verify,
        git_commit,
    } = flags;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut opts = RunOptions {
        force: cache.force.clone(),
        no_cache: cache.no_cache,
        verify,
        events: engine_core::events::EventSink::new(tx),
        values: rendered.values.clone(),
        git_commit,
        ..RunOptions::default()
    };
    if let Some(cfg) = slurm {
        opts.executor = Arc::new(engine_core::slurm::SlurmExecutor::new(cfg));
    }
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        watch_signals(cancel).await;
    });
    let display = progress::Display::new(json, verbose, plan.tasks.len());
    let printer = tokio::spawn(display.consume(rx));
    let pipeline = Arc::new(pipeline);
    let plan = Arc::new(plan);
    let record = scheduler::run(pipeline, plan, store.clone(), opts).await?;
    let _ = printer.await;
    if json {
        // Not `println!`: a reader that went away (`engine run --json |
        // head -1`) made it panic after the whole run; the run's outcome is
        // its exit code and record, whoever still reads.
        use std::io::Write;
        let summary = serde_json::json!({"event": "summary", "run": record.id, "status": record.status, "counts": record.counts(), "seconds": record.seconds, "store": record.store});
        let _ = writeln!(std::io::stdout(), "{summary}");
    } else {
        show::print_summary(&record);
    }
    Ok(match record.status {
        engine_core::records::RunStatus::Succeeded => 0,
        engine_core::records::RunStatus::Cancelled => 130,
        _ => 1,
    })
}

pub(crate) fn pipeline_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// First Ctrl-C or SIGTERM cancels cleanly; a second one exits at once.
pub(crate) async fn watch_signals(cancel: tokio_util_cancel::Token) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!(
        "\ncancelling: stopping running tasks; finished tasks are kept and a rerun resumes from them (press Ctrl-C again to quit now)"
    );
    cancel.cancel();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    std::process::exit(130);
}

pub(crate) mod tokio_util_cancel {
    pub type Token = tokio_util::sync::CancellationToken;
}
