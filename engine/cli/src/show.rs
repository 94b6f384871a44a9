//! Reading the store back: plans, runs, tasks, artifacts, refs.

use anyhow::{Result, anyhow};
use engine_core::compile::Pipeline;
use engine_core::digest::Digest;
use engine_core::records::{self, RunRecord, TaskStatus};
use engine_core::scheduler::Decision;
use engine_core::store::Store;

pub fn print_plan(p: &Pipeline, decisions: &[Decision], store: &str) {
    println!(
        "pipeline `{}`: {} tasks (store {store})",
        p.name,
        decisions.len()
    );
    let width = decisions
        .iter()
        .map(|d| d.task.len())
        .max()
        .unwrap_or(4)
        .min(60);
    let mut run = 0;
    for d in decisions {
        if d.action == "run" {
            run += 1;
        }
        let items = d
            .items
            .map(|c| {
                format!(
                    " [{} of {} items to run, {} cached]",
                    c.run, c.total, c.cached
                )
            })
            .unwrap_or_default();
        println!(
            "  {:<6} {:<width$}  {:<18} {}{items}",
            d.action, d.task, d.kind, d.reason
        );
    }
    println!("{run} to run, {} cached", decisions.len() - run);
}

pub fn print_summary(r: &RunRecord) {
    let counts: Vec<String> = r.counts().iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "run {} {} in {:.2}s: {}",
        r.id,
        r.status.as_str(),
        r.seconds,
        counts.join(", ")
    );
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    // What a continual-learning run decided, in one place: leagues left out
    // of training, the evaluation's verdict, refs moved.
    for t in &r.tasks {
        if let Some(d) = t.values.get("dropped_leagues").and_then(|v| v.as_array())
            && !d.is_empty()
        {
            let names: Vec<String> = d
                .iter()
                .filter_map(|v| v.as_str())
                .map(|l| format!("`{l}`"))
                .collect();
            eprintln!(
                "warning: {}: league{} {} left out of training: every video waits for review (`engine review ls`)",
                t.task,
                if names.len() > 1 { "s" } else { "" },
                names.join(", ")
            );
        }
        if let Some(p) = t.values.get("passed").and_then(|v| v.as_bool()) {
            let failures = t
                .values
                .get("failures")
                .and_then(|v| v.as_array())
                .map(Vec::len)
                .unwrap_or(0);
            if p {
                eprintln!(
                    "{}: every gate passed (`engine show {}/{}`)",
                    t.task, r.id, t.task
                );
            } else {
                eprintln!(
                    "{}: {failures} gate(s) FAILED (`engine show {}/{}`)",
                    t.task, r.id, t.task
                );
            }
        }
        if let Some(m) = t.values.get("published").and_then(|v| v.as_object()) {
            for (output, name) in m {
                if let (Some(name), Some(d)) = (name.as_str(), t.outputs.get(output)) {
                    eprintln!("{}: {name} -> {}", t.task, d.short());
                }
            }
        }
    }
    for t in r.tasks.iter().filter(|t| t.status == TaskStatus::Failed) {
        eprintln!(
            "failed: {}: {}",
            t.task,
            t.error.as_deref().unwrap_or("(no message)")
        );
        eprintln!("  see its log: engine show {}/{}", r.id, t.task);
    }
}

/// `engine fsck`: what was checked, then each problem with what was done.
pub fn print_fsck(r: &engine_core::fsck::FsckReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let checked: Vec<String> = r.checked.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "checked store `{}`: {}",
        r.store,
        if checked.is_empty() {
            "it is empty".to_string()
        } else {
            checked.join(", ")
        }
    );
    for p in &r.problems {
        let done = if p.removed { " (removed)" } else { "" };
        println!("problem: `{}`: {}{done}", p.path, p.what);
        if let Some(h) = &p.hint {
            println!("  hint: {h}");
        }
    }
    let removed = r.problems.iter().filter(|p| p.removed).count();
    match (r.problems.len(), removed) {
        (0, _) => println!("no problems found"),
        (n, 0) => println!(
            "{n} problem{}; `engine fsck --repair` removes broken objects so the next `engine run` rebuilds them",
            if n == 1 { "" } else { "s" }
        ),
        (n, k) => println!(
            "{n} problem{}, {k} removed; the next `engine run` of the pipelines that made them rebuilds them",
            if n == 1 { "" } else { "s" }
        ),
    }
    Ok(())
}

/// Bytes for people: `512 B`, `3.4 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `engine gc`: kept and freed per kind, then the totals and any failure.
pub fn print_gc(r: &engine_core::gc::GcReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let freed_word = if r.dry_run { "would free" } else { "freed" };
    println!(
        "gc of store `{}`{}",
        r.store,
        if r.dry_run {
            " (dry run: nothing deleted)"
        } else {
            ""
        }
    );
    println!(
        "runs kept: {}{}",
        r.runs_kept.len(),
        if r.running.is_empty() {
            String::new()
        } else {
            format!(
                " ({} running: {}; every cache entry kept while a run is going)",
                r.running.len(),
                r.running.join(", ")
            )
        }
    );
    let kinds: std::collections::BTreeSet<&String> = r.kept.keys().chain(r.freed.keys()).collect();
    let zero = engine_core::gc::Tally::default();
    if kinds.is_empty() {
        println!("the store holds nothing gc collects");
        return Ok(());
    }
    println!("{:<20} {:>22} {:>22}", "", "kept", freed_word);
    for k in kinds {
        let (kept, freed) = (
            r.kept.get(k).unwrap_or(&zero),
            r.freed.get(k).unwrap_or(&zero),
        );
        println!(
            "{k:<20} {:>22} {:>22}",
            format!("{} ({})", kept.objects, bytes(kept.bytes)),
            format!("{} ({})", freed.objects, bytes(freed.bytes)),
        );
    }
    let total = r.total_freed();
    println!(
        "{freed_word} {} object{}, {}",
        total.objects,
        if total.objects == 1 { "" } else { "s" },
        bytes(total.bytes)
    );
    if let Some(why) = &r.stopped {
        println!("stopped early: {why}");
    }
    for f in &r.failures {
        println!("failed to delete `{}`: {}", f.path, f.error);
    }
    if !r.failures.is_empty() {
        println!(
            "{} object{} could not be deleted; run `engine gc` again",
            r.failures.len(),
            if r.failures.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

pub async fn print_runs(store: &Store, limit: usize, json: bool) -> Result<()> {
    let ids = records::list_runs(store).await?;
    // A record that cannot be read (0 bytes, cut short, unknown format) is
    // listed as such: one bad file must not hide every other run.
    let mut rows: Vec<std::result::Result<RunRecord, (String, String)>> = vec![];
    for id in ids.iter().take(limit) {
        match records::load_run(store, id).await {
            Ok(Some(r)) => rows.push(Ok(r)),
            Ok(None) => {}
            Err(e) => rows.push(Err((id.clone(), e.to_string()))),
        }
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|row| match row {
                Ok(r) => serde_json::json!({"id": r.id, "pipeline": r.pipeline, "status": r.shown_status(), "started": r.started, "seconds": r.seconds, "counts": r.counts()}),
                Err((id, e)) => serde_json::json!({"id": id, "status": "unreadable", "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no runs in store {}", store.url());
        return Ok(());
    }
    println!(
        "{:<24} {:<20} {:<11} {:>8}  tasks",
        "RUN", "PIPELINE", "STATUS", "SECONDS"
    );
    for row in rows {
        match row {
            Ok(r) => {
                let counts: Vec<String> =
                    r.counts().iter().map(|(k, v)| format!("{v} {k}")).collect();
                println!(
                    "{:<24} {:<20} {:<11} {:>8.2}  {}",
                    r.id,
                    r.pipeline,
                    r.shown_status(),
                    r.seconds,
                    counts.join(", ")
                );
            }
            Err((id, e)) => println!("{id:<24} {:<20} {:<11} {:>8}  {e}", "?", "unreadable", "-"),
        }
    }
    Ok(())
}

pub async fn show(store: &Store, what: &str, json: bool) -> Result<()> {
    let (run_part, task_part) = match what.split_once('/') {
        Some((r, t)) => (r, Some(t)),
        None => (what, None),
    };
    if let Some(run) = records::find_run(store, run_part).await? {
        return match task_part {
            None => show_run(&run, json),
            Some(t) => show_task(store, &run, t, json).await,
        };
    }
    let digest = store.resolve(what).await.map_err(|_| {
        anyhow!("`{what}` is neither a run, a ref nor an artifact digest in store {}; list runs with `engine runs`", store.url())
    })?;
    show_artifact(store, &digest, json).await
}

fn show_run(r: &RunRecord, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!("run       {}", r.id);
    println!("pipeline  {} ({})", r.pipeline, r.file);
    println!("status    {} in {:.2}s", r.shown_status(), r.seconds);
    println!("started   {}", r.started);
    println!("engine    {} on {}", r.engine_version, r.host);
    println!(
        "git       {}",
        r.git_commit
            .as_deref()
            .unwrap_or("(not in a git repository)")
    );
    println!("spec      {}", r.pipeline_digest.short());
    println!("store     {}", r.store);
    if r.values.as_object().is_some_and(|m| !m.is_empty()) {
        println!("values    {}", r.values);
    }
    if let Some(x) = &r.executor_stats {
        println!(
            "executor  {}: {} sbatch, {} job(s) followed, {} squeue ({:.1}/s, every {} ms), {} scancel",
            r.executor,
            x.sbatch_calls,
            x.jobs,
            x.squeue_calls,
            x.squeue_calls as f64 / x.seconds.max(1e-3),
            x.poll_ms,
            x.scancel_calls
        );
    }
    println!();
    let width = r
        .tasks
        .iter()
        .map(|t| t.task.len())
        .max()
        .unwrap_or(4)
        .min(60);
    for t in &r.tasks {
        let outs: Vec<String> = t
            .outputs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.short()))
            .collect();
        let items = t
            .items
            .map(|c| format!(" items {}/{} run, {} cached", c.run, c.total, c.cached))
            .unwrap_or_default();
        println!(
            "  {:<9} {:<width$} {:>7.2}s  {}{items}  {}",
            t.status.as_str(),
            t.task,
            t.seconds(),
            t.reason,
            outs.join(" ")
        );
        if let Some(e) = &t.error {
            println!("            error: {e}");
        }
    }
    Ok(())
}

async fn show_task(store: &Store, r: &RunRecord, label: &str, json: bool) -> Result<()> {
    let t = r.task(label).ok_or_else(|| {
        let names: Vec<&str> = r.tasks.iter().map(|t| t.task.as_str()).collect();
        let hint = engine_core::diag::suggest(label, names.iter().copied()).unwrap_or_default();
        anyhow!("run {} has no task `{label}` {hint}", r.id)
    })?;
    let log = match &t.log {
        Some(d) => String::from_utf8_lossy(&store.get_blob(d).await?).into_owned(),
        None => String::new(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"task": t, "log_text": log}))?
        );
        return Ok(());
    }
    println!(
        "task      {} (stage `{}`, kind `{}`) in run {}",
        t.task, t.stage, t.kind, r.id
    );
    println!(
        "status    {} after {} attempt(s), {:.2}s: {}",
        t.status.as_str(),
        t.attempts,
        t.seconds(),
        t.reason
    );
    if let Some(fp) = &t.fingerprint {
        println!("fingerprint {}", fp);
    }
    if let Some(e) = &t.error {
        println!("error     {e}");
    }
    if let Some(c) = t.items {
        println!(
            "items     {} total, {} run, {} cached",
            c.total, c.run, c.cached
        );
    }
    if let Some(p) = &t.placement {
        println!("placement {p}");
    }
    if !t.jobs.is_empty() {
        println!("jobs:");
        for j in &t.jobs {
            println!(
                "  {:<10} attempt {}  {:<10} node {:<12} exit {:<4}{}  log {}",
                j.job,
                j.attempt,
                j.state,
                j.node.as_deref().unwrap_or("-"),
                j.exit_code.map_or("-".to_string(), |c| c.to_string()),
                j.items
                    .map(|n| format!("  {n} item(s)"))
                    .unwrap_or_default(),
                j.log.as_deref().unwrap_or("-")
            );
        }
    }
    println!("inputs:");
    for i in &t.inputs {
        let from = match records::load_lineage(store, &i.digest).await? {
            Some(l) => format!("from run {} task {}", l.run, l.task),
            None => "origin unknown".into(),
        };
        println!("  {}  {}  ({from})", i.digest.short(), i.name);
    }
    println!("outputs:");
    for (k, v) in &t.outputs {
        println!("  {}  {k}", v.short());
    }
    if !t.values.is_empty() {
        println!("values    {}", serde_json::to_string(&t.values)?);
    }
    print_evaluation(store, t).await?;
    println!("log:");
    for line in log.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// An `evaluate` task's report (any output with `evaluation.md`), so
/// `engine show RUN/evaluate` prints the verdict and the tables.
async fn print_evaluation(store: &Store, t: &records::TaskRecord) -> Result<()> {
    for d in t.outputs.values() {
        let m = store.get_manifest(d).await?;
        if let Some(b) = m.files.get("evaluation.md") {
            println!();
            println!(
                "{}",
                String::from_utf8_lossy(&store.get_blob(&b.digest).await?).trim_end()
            );
            println!();
        }
    }
    Ok(())
}

async fn show_artifact(store: &Store, d: &Digest, json: bool) -> Result<()> {
    let m = store.get_manifest(d).await?;
    let lineage = records::load_lineage(store, d).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"digest": d, "manifest": m, "lineage": lineage})
            )?
        );
        return Ok(());
    }
    println!("artifact  {d} ({:?})", m.kind);
    for (name, b) in &m.files {
        println!("  file  {name}  {} bytes  {}", b.size, b.digest.short());
    }
    if !m.items.is_empty() {
        println!(
            "  {} items: {}{}",
            m.items.len(),
            m.items
                .iter()
                .take(5)
                .map(|i| i.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if m.items.len() > 5 { ", ..." } else { "" }
        );
    }
    if !m.meta.is_null() {
        println!("  meta  {}", m.meta);
    }
    println!("lineage:");
    let mut frontier = vec![(d.clone(), 0usize)];
    let mut seen = std::collections::HashSet::new();
    while let Some((dig, depth)) = frontier.pop() {
        if depth > 12 || !seen.insert(dig.clone()) {
            continue;
        }
        let pad = "  ".repeat(depth + 1);
        match records::load_lineage(store, &dig).await? {
            Some(l) => {
                println!(
                    "{pad}{} <- {} `{}` ({}) in run {}",
                    dig.short(),
                    l.output,
                    l.task,
                    l.kind,
                    l.run
                );
                for i in l.inputs.iter().rev() {
                    frontier.push((i.digest.clone(), depth + 1));
                }
            }
            None => println!("{pad}{} (no lineage recorded)", dig.short()),
        }
    }
    Ok(())
}

/// Copies an artifact's files into `dest`: `RUN/TASK[/OUTPUT]`, a ref or
/// a digest (prefix).
pub async fn get(store: &Store, what: &str, dest: &std::path::Path) -> Result<()> {
    let (digest, n) = fetch(store, what, dest).await?;
    println!("{n} files of {} into {}", digest.short(), dest.display());
    Ok(())
}

/// Copies an artifact's files into `dest`, quietly; returns its digest and
/// the number of files.
pub async fn fetch(
    store: &Store,
    what: &str,
    dest: &std::path::Path,
) -> Result<(engine_core::digest::Digest, usize)> {
    let digest = resolve_artifact(store, what).await?;
    let m = store.get_manifest(&digest).await?;
    let n = store.export(&m, dest).await?.len();
    Ok((digest, n))
}

/// The artifact `what` names: `RUN/TASK[/OUTPUT]`, a ref, or a digest (prefix).
pub async fn resolve_artifact(store: &Store, what: &str) -> Result<engine_core::digest::Digest> {
    let parts: Vec<&str> = what.split('/').collect();
    let mut digest = None;
    if parts.len() >= 2
        && let Some(run) = records::find_run(store, parts[0]).await?
    {
        let t = run
            .task(parts[1])
            .ok_or_else(|| anyhow!("run {} has no task `{}`", run.id, parts[1]))?;
        let d = match parts.get(2) {
            Some(o) => t
                .outputs
                .get(*o)
                .ok_or_else(|| anyhow!("task `{}` has no output `{o}`", t.task))?,
            None if t.outputs.len() == 1 => t.outputs.values().next().expect("one output"),
            None => {
                let names: Vec<&str> = t.outputs.keys().map(String::as_str).collect();
                return Err(anyhow!(
                    "task `{}` has outputs {}; name one: `{what}/OUTPUT`",
                    t.task,
                    names.join(", ")
                ));
            }
        };
        digest = Some(d.clone());
    }
    let digest = match digest {
        Some(d) => d,
        None => store.resolve(what).await.map_err(|_| {
            anyhow!(
                "`{what}` is neither RUN/TASK[/OUTPUT], a ref nor an artifact digest in store {}",
                store.url()
            )
        })?,
    };
    Ok(digest)
}
