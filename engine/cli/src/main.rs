//! `engine`: the command line. Parsing and printing only; the work is in
//! engine-core.

/// `println!` and `print!` for commands that keep SIGPIPE ignored (they
/// run, trigger or serve): a reader that went away (`engine monitor |
/// head -1`) is not a panic; the command goes on, and its exit code and
/// outputs (metrics file, run record) say how it went.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout();
        let _ = write!(o, $($t)*).and_then(|()| o.flush());
    }};
}

/// mimalloc: a no-op rerun of 5,001 cached tasks spent a fifth of its CPU
/// in glibc's allocator (`_int_free`, `malloc_consolidate`,
/// `unlink_chunk`); with mimalloc alone the whole command took 0.88x the
/// time (bench/README.md, "The whole command under 100 ms"). Only the
/// engine's own allocations go through it (no `override`): C libraries and
/// the processes it starts keep the system's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How mimalloc commits its arenas, chosen before the first allocation
/// from the command line (an ELF constructor: after mimalloc's own, at
/// priority 101, before Rust's runtime allocates; glibc hands constructors
/// `argc` and `argv`, as the standard library's own argument reading relies
/// on).
///
/// Committed whole (mimalloc's default), arenas are backed by transparent
/// huge pages where the kernel gives them unasked (`always`, Debian's
/// default): each thread's first allocation faults in 2 MiB. That costs
/// `engine --version` 14 MB of RSS instead of 7-9, and `validate` of the
/// replay pipeline 25 MB instead of 17-19 (issue 11 asks under 20), while
/// a command that does work faults far less and runs faster (the 5,001-task
/// no-op rerun in 0.92x the time). So the commands that run, plan, serve or
/// watch keep the default; every other command commits as it uses. Turning
/// huge pages off for the process instead (mimalloc's `allow_thp`) would be
/// inherited by every process the engine starts.
#[used]
#[unsafe(link_section = ".init_array.00200")]
static MIMALLOC_OPTIONS: CommitPolicy = commit_policy;

type CommitPolicy =
    extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char);

extern "C" fn commit_policy(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _env: *const *const libc::c_char,
) {
    /// `mi_option_arena_eager_commit` in mimalloc.h (v2 and v3);
    /// libmimalloc-sys does not name it.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const WORKS: [&[u8]; 5] = [b"run", b"plan", b"task", b"serve", b"monitor"];
    // Any word, not only the subcommand's place: a wrong guess (`engine
    // validate run`) only changes how memory is committed.
    let works = cfg!(all(target_os = "linux", target_env = "gnu"))
        && !argv.is_null()
        && (1..argc.max(0) as usize).any(|i| {
            // SAFETY: glibc passes `argc` valid, NUL-terminated strings in
            // `argv`; only read here.
            let a = unsafe { *argv.add(i) };
            !a.is_null() && WORKS.contains(&unsafe { std::ffi::CStr::from_ptr(a) }.to_bytes())
        });
    if !works {
        // SAFETY: sets one option's value; nothing has allocated yet.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) }
    }
}

mod args;
mod catalog_cmd;
mod detect_cmd;
mod diff_cmd;
mod monitor_cmd;
mod profile;
mod progress;
mod ref_cmd;
mod report;
mod review_cmd;
mod run_cmd;
mod show;
mod timeline;

use anyhow::{Context, Result, anyhow, bail};
use args::{
    Cli, Cmd, DagFormat, Executor, PipelineArgs, RefCmd, ReportFormat, StoreArgs, TaskAt, TaskCmd,
};
use clap::Parser;
use engine_core::compile::{self, Pipeline};
use engine_core::deps;
use engine_core::diag::Diagnostics;
use engine_core::plan;
use engine_core::scheduler;
use engine_core::stage::Registry;
use engine_core::store::Store;
use engine_core::template::{self, RenderRequest};
use run_cmd::{RunFlags, cap_jobs, pipeline_dir, run, slurm_config};
use std::path::Path;
use std::process::ExitCode;

const DEFAULT_STORE: &str = "fs://.engine/store";

/// A failure already printed for the user.
#[derive(Debug)]
struct Reported(u8);
impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Reported {}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // SAFETY: first thing in main, before any other thread exists.
    if let Err(e) = unsafe { profile::init(&args) } {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse_from(args);
    // Commands that only print (`show`, `runs`, `ref log`, ...) end quietly
    // when their reader goes away (`engine show RUN | head`), as Unix tools
    // do, instead of panicking on a broken pipe. Commands that run stages
    // keep SIGPIPE ignored: a shell stage that closes its stdin early must
    // not kill the engine.
    if !matches!(
        cli.cmd,
        Cmd::Run { .. } | Cmd::Task { .. } | Cmd::Monitor(_) | Cmd::Serve { .. }
    ) {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: Failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(Reported(code)) = e.downcast_ref::<Reported>() {
                return ExitCode::from(*code);
            }
            if let Some(d) = e.downcast_ref::<Diagnostics>() {
                eprintln!("{}", d.render());
                return ExitCode::from(1);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    stages::register(&mut r);
    r
}

fn render(p: &PipelineArgs) -> Result<template::Rendered> {
    let req = RenderRequest {
        path: p.pipeline.clone(),
        values_files: p.values.clone(),
        sets: p.sets.clone(),
        defaults: profile::template_defaults(),
    };
    template::render(&req).map_err(anyhow::Error::new)
}

/// Renders and compiles a pipeline; the parse comes from the current
/// folder's `.engine/parse-cache` when this text was parsed before.
fn load(p: &PipelineArgs) -> Result<(Pipeline, template::Rendered)> {
    let r = render(p)?;
    let cache = std::env::current_dir()
        .ok()
        .and_then(|cwd| engine_core::spec_cache::SpecCache::in_project(&cwd));
    let pipeline = compile::compile_cached(&r.file, &r.text, &registry(), cache.as_ref())
        .map_err(anyhow::Error::new)?;
    Ok((pipeline, r))
}

/// `load`, then expand every stage's `deps:` against the pipeline's
/// folder: a declared file that is not there is a located error, reported
/// before anything else happens.
fn load_checked(p: &PipelineArgs) -> Result<(Pipeline, template::Rendered, deps::Resolved)> {
    let (pipeline, rendered) = load(p)?;
    let resolved = deps::resolve(&pipeline, pipeline_dir(Path::new(&pipeline.file)))
        .map_err(anyhow::Error::new)?;
    Ok((pipeline, rendered, resolved))
}

/// Hashes the files of every stage's `deps:` into the pipeline (through
/// the stat cache `.engine/stat-cache.json` in the current folder, or
/// git's blob ids with `--deps-from-git`), so task fingerprints hold them.
fn hash_deps(pipeline: &mut Pipeline, resolved: &deps::Resolved, from_git: bool) -> Result<()> {
    if resolved.file_count() == 0 {
        return Ok(());
    }
    let cwd = std::env::current_dir().context("Failed to read the current folder")?;
    let mut cache = deps::StatCache::load(&deps::StatCache::default_path(&cwd));
    if let Some(w) = &cache.warning {
        eprintln!("warning: {w}");
    }
    let git = if from_git {
        match deps::GitBlobs::load(&resolved.base) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("warning: `--deps-from-git`: {e}; hashing the files instead");
                None
            }
        }
    } else {
        None
    };
    deps::hash(pipeline, resolved, &mut cache, git.as_ref())?;
    if let Some(w) = cache.save() {
        eprintln!("warning: {w}");
    }
    Ok(())
}

fn open_store(flag: &StoreArgs, pipeline: Option<&Pipeline>) -> Result<Store> {
    let url = flag
        .store
        .clone()
        .or_else(|| pipeline.and_then(|p| p.store.clone()))
        .unwrap_or_else(|| DEFAULT_STORE.to_string());
    let cwd = std::env::current_dir().context("Failed to read the current folder")?;
    Store::open(&url, &cwd).map_err(|e| anyhow!(e))
}

fn check_forced(pipeline: &Pipeline, force: &[String]) -> Result<()> {
    for f in force {
        if pipeline.stage_index(f).is_none() {
            let hint =
                engine_core::diag::suggest(f, pipeline.stages.iter().map(|s| s.name.as_str()))
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
            bail!("`--force {f}`: the pipeline has no stage `{f}`{hint}");
        }
    }
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Diff {
            a,
            b,
            json,
            md,
            store,
        } => {
            let store = open_store(&store, None)?;
            let d = diff_cmd::diff(&store, &a, &b).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else if md {
                print!("{}", diff_cmd::markdown(&d));
            } else {
                print!("{}", diff_cmd::text(&d));
            }
            Ok(if d.is_empty() { 0 } else { 2 })
        }
        Cmd::Profile { json } => {
            profile::print(json, DEFAULT_STORE)?;
            Ok(0)
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "engine", &mut std::io::stdout());
            Ok(0)
        }
        Cmd::Render(p) => {
            print!("{}", render(&p)?.text);
            Ok(0)
        }
        Cmd::Validate { p, format, json } => {
            let format = if json { ReportFormat::Json } else { format };
            if format == ReportFormat::Text {
                let (pipeline, _, _) = load_checked(&p)?;
                let plan = plan::plan(&pipeline);
                println!(
                    "{}: ok ({} stages, {} tasks after matrix expansion)",
                    pipeline.file,
                    pipeline.stages.len(),
                    plan.tasks.len()
                );
                return Ok(0);
            }
            let found = load_checked(&p).map(|(pipeline, _, _)| {
                let tasks = plan::plan(&pipeline).tasks.len();
                (pipeline, tasks)
            });
            let problems = match &found {
                Ok(_) => vec![],
                Err(e) => report::problems(e, &p.pipeline.display().to_string()),
            };
            match format {
                ReportFormat::Json => {
                    let mut doc = serde_json::json!({
                        "file": p.pipeline.display().to_string(),
                        "ok": problems.is_empty(),
                        "errors": problems,
                    });
                    if let Ok((pipeline, tasks)) = &found {
                        doc["stages"] = pipeline.stages.len().into();
                        doc["tasks"] = (*tasks).into();
                    }
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                }
                _ => {
                    for d in &problems {
                        println!("{}", report::github_annotation(d));
                    }
                    if let Ok((pipeline, tasks)) = &found {
                        println!(
                            "{}: ok ({} stages, {tasks} tasks after matrix expansion)",
                            pipeline.file,
                            pipeline.stages.len()
                        );
                    }
                }
            }
            Ok(if problems.is_empty() { 0 } else { 1 })
        }
        Cmd::Plan {
            p,
            cache,
            store,
            json,
            exit_code,
        } => {
            let (mut pipeline, _, resolved) = load_checked(&p)?;
            check_forced(&pipeline, &cache.force)?;
            hash_deps(&mut pipeline, &resolved, cache.deps_from_git)?;
            let plan = plan::plan(&pipeline);
            let store = open_store(&store, Some(&pipeline))?;
            let decisions =
                scheduler::explain(&pipeline, &plan, &store, &cache.force, cache.no_cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&decisions)?);
            } else {
                show::print_plan(&pipeline, &decisions, store.url());
            }
            let would_run = decisions
                .iter()
                .any(|d| d.action != "cached" || d.items.as_ref().is_some_and(|i| i.run > 0));
            Ok(if exit_code && would_run { 2 } else { 0 })
        }
        Cmd::Dag {
            p,
            format,
            run,
            store,
        } => {
            let (pipeline, _) = load(&p)?;
            let plan = plan::plan(&pipeline);
            let record = match run {
                Some(r) => {
                    let store = open_store(&store, Some(&pipeline))?;
                    Some(
                        engine_core::records::find_run(&store, &r)
                            .await?
                            .ok_or_else(|| {
                                anyhow!(
                                    "no run `{r}` in store `{}`; list runs with `engine runs`",
                                    store.url()
                                )
                            })?,
                    )
                }
                None => None,
            };
            let out = match format {
                DagFormat::Dot => engine_core::dag::dot(&pipeline, &plan, record.as_ref()),
                DagFormat::Mermaid => engine_core::dag::mermaid(&pipeline, &plan, record.as_ref()),
            };
            print!("{out}");
            Ok(0)
        }
        Cmd::Run {
            p,
            cache,
            store,
            executor,
            json,
            verbose,
            verify,
        } => {
            // The commit (two `git` processes, longer in a large checkout)
            // is read while the pipeline loads and its files are hashed.
            let git = {
                let dir = pipeline_dir(&p.pipeline).to_path_buf();
                std::thread::spawn(move || engine_core::records::git_commit(&dir))
            };
            let (mut pipeline, rendered, resolved) = load_checked(&p)?;
            check_forced(&pipeline, &cache.force)?;
            hash_deps(&mut pipeline, &resolved, cache.deps_from_git)?;
            let plan = plan::plan(&pipeline);
            let store = open_store(&store, Some(&pipeline))?;
            let slurm = if executor == Executor::Slurm {
                let cfg = slurm_config(&store)?;
                cap_jobs(&mut pipeline, &cfg);
                Some(cfg)
            } else {
                None
            };
            let flags = RunFlags {
                cache,
                json,
                verbose,
                verify,
                git_commit: git.join().ok().flatten(),
            };
            run(pipeline, plan, store, rendered, flags, slurm).await
        }
        Cmd::Fsck {
            repair,
            store,
            json,
        } => {
            let store = open_store(&store, None)?;
            let report = engine_core::fsck::fsck(&store, repair).await?;
            show::print_fsck(&report, json)?;
            Ok(if report.is_clean() { 0 } else { 1 })
        }
        Cmd::Gc {
            keep_runs,
            keep_days,
            grace,
            dry_run,
            store,
            json,
        } => {
            let store = open_store(&store, None)?;
            let opts = engine_core::gc::GcOptions {
                keep_runs,
                keep_for: (keep_days > 0)
                    .then(|| std::time::Duration::from_secs(keep_days * 24 * 3600)),
                grace,
                dry_run,
            };
            let report = engine_core::gc::gc(&store, &opts).await?;
            show::print_gc(&report, json)?;
            Ok(if report.is_ok() { 0 } else { 1 })
        }
        Cmd::Serve {
            store,
            listen,
            token,
            allow_write,
            catalog,
        } => {
            let store = open_store(&store, None)?;
            let o = engine_serve::Options {
                listen,
                token,
                allow_write,
                catalog,
                ..Default::default()
            };
            engine_serve::serve(store, &o)
                .await
                .map_err(|e| anyhow!(e))?;
            Ok(0)
        }
        Cmd::Runs { store, limit, json } => {
            let store = open_store(&store, None)?;
            show::print_runs(&store, limit, json).await?;
            Ok(0)
        }
        Cmd::Show {
            what,
            store,
            json,
            html,
        } => {
            let store = open_store(&store, None)?;
            match html {
                Some(path) => {
                    let run = engine_core::records::find_run(&store, &what)
                        .await?
                        .ok_or_else(|| {
                            anyhow!(
                                "no run `{what}` in store {}; list runs with `engine runs`",
                                store.url()
                            )
                        })?;
                    std::fs::write(&path, timeline::timeline_html(&run)?)
                        .with_context(|| format!("Failed to write `{}`", path.display()))?;
                    println!("wrote {}", path.display());
                }
                None => show::show(&store, &what, json).await?,
            }
            Ok(0)
        }
        Cmd::Catalog { cmd } => catalog_cmd::run(cmd).await,
        Cmd::Review { cmd } => review_cmd::run(cmd).await,
        Cmd::Monitor(args) => monitor_cmd::run(args).await,
        Cmd::Ref { cmd } => ref_cmd::refs(cmd_to_ref(cmd)?).await.map(|_| 0),
        Cmd::Detect {
            video,
            model,
            json,
            out,
            catalog,
            sport,
            signals,
            store,
        } => {
            let store = open_store(&store, None)?;
            let args = detect_cmd::DetectArgs {
                video: &video,
                model: &model,
                json,
                out: out.as_ref(),
                catalog: catalog.as_deref(),
                sport: sport.as_deref(),
                signals: signals.as_ref(),
            };
            detect_cmd::run(&store, args).await
        }
        Cmd::Get { what, dest, store } => {
            let store = open_store(&store, None)?;
            show::get(&store, &what, &dest).await?;
            Ok(0)
        }
        Cmd::Synth {
            sport,
            league,
            broadcaster,
            season,
            preset,
            count,
            seed,
            duration,
            out,
            styles,
        } => {
            if styles {
                for s in media::synth::styles() {
                    println!("{:<44} {}", s.name, s.note);
                }
                return Ok(0);
            }
            let spec = serde_json::json!({
                "sport": sport, "league": league, "broadcaster": broadcaster, "season": season,
                "preset": preset.name(), "count": count, "seed": seed, "duration": duration,
            });
            let spec: media::synth::SynthSpec =
                serde_json::from_value(spec).context("Failed to read the synth options")?;
            let n = spec.videos().map_err(|e| anyhow!("{e}"))?.len();
            eprintln!("generating {n} videos into `{}`", out.display());
            let bar = progress::bar(n as u64);
            let t0 = std::time::Instant::now();
            let mut done = 0u64;
            let truths = media::synth::generate_set(&spec, &out, &mut |frame, frames| {
                if frame == frames {
                    done += 1;
                    bar.set_position(done);
                }
            })
            .map_err(|e| anyhow!("{e}"))?;
            bar.finish_and_clear();
            let replays: usize = truths.iter().map(|t| t.replays.len()).sum();
            eprintln!(
                "wrote {} videos with {replays} replays in {:.1}s",
                truths.len(),
                t0.elapsed().as_secs_f64()
            );
            Ok(0)
        }
        Cmd::Schema { check, write } => {
            let schema = engine_core::schema::pipeline_schema(&registry());
            if let Some(path) = check {
                let current = std::fs::read_to_string(&path)
                    .with_context(|| format!("Failed to read `{}`", path.display()))?;
                if current != schema {
                    eprintln!(
                        "error: `{}` is stale: it differs from the schema the spec types generate; run `engine schema --write {}` and commit it",
                        path.display(),
                        path.display()
                    );
                    return Ok(1);
                }
                println!("{}: up to date", path.display());
            } else if let Some(path) = write {
                std::fs::write(&path, &schema)
                    .with_context(|| format!("Failed to write `{}`", path.display()))?;
                println!("wrote {}", path.display());
            } else {
                print!("{schema}");
            }
            Ok(0)
        }
        Cmd::Task {
            cmd:
                TaskCmd::Exec {
                    at: TaskAt { store, run, task },
                    attempt,
                },
        } => {
            let cwd = std::env::current_dir().context("Failed to read the current folder")?;
            let store = Store::open(&store, &cwd).map_err(|e| anyhow!(e))?;
            let r = engine_core::slurm::exec_task(&store, &registry(), &run, &task, attempt)
                .await
                .map_err(|e| anyhow!(e))?;
            eprint!("{}", r.log);
            match r.error {
                None => Ok(0),
                Some(e) => {
                    eprintln!("error: task `{task}` failed: {e}");
                    Ok(1)
                }
            }
        }
        Cmd::Task {
            cmd:
                TaskCmd::ExecBatch {
                    at: TaskAt { store, run, task },
                    round,
                    index,
                    offset,
                },
        } => {
            let cwd = std::env::current_dir().context("Failed to read the current folder")?;
            let store = Store::open(&store, &cwd).map_err(|e| anyhow!(e))?;
            let r = engine_core::slurm::array::exec_batch(
                &store,
                &registry(),
                &run,
                &task,
                round,
                offset + index,
            )
            .await
            .map_err(|e| anyhow!(e))?;
            eprint!("{}", r.log);
            eprintln!(
                "batch {index} of task `{task}`: {} item(s) on `{}`",
                r.items.len(),
                r.host
            );
            match r.error {
                None => Ok(0),
                Some(e) => {
                    eprintln!("error: batch {index} of task `{task}` failed: {e}");
                    Ok(1)
                }
            }
        }
        Cmd::Stages { json: true } => {
            let kinds = engine_core::schema::kinds_json(&registry());
            println!("{}", serde_json::to_string_pretty(&kinds)?);
            Ok(0)
        }
        Cmd::Stages { json: false } => {
            for k in registry().kinds() {
                println!("{:<20} {}", k.name, k.summary);
            }
            Ok(0)
        }
    }
}

fn cmd_to_ref(cmd: RefCmd) -> Result<ref_cmd::RefAction> {
    Ok(match cmd {
        RefCmd::Set {
            name,
            target,
            note,
            store,
        } => ref_cmd::RefAction::Set {
            store: open_store(&store, None)?,
            name,
            target,
            note,
        },
        RefCmd::Get { name, store } => ref_cmd::RefAction::Get {
            store: open_store(&store, None)?,
            name,
        },
        RefCmd::Ls {
            prefix,
            json,
            store,
        } => ref_cmd::RefAction::Ls {
            store: open_store(&store, None)?,
            prefix,
            json,
        },
        RefCmd::Rm { name, store } => ref_cmd::RefAction::Rm {
            store: open_store(&store, None)?,
            name,
        },
        RefCmd::Log { name, store } => ref_cmd::RefAction::Log {
            store: open_store(&store, None)?,
            name,
        },
        RefCmd::Rollback {
            name,
            to,
            note,
            store,
        } => ref_cmd::RefAction::Rollback {
            store: open_store(&store, None)?,
            name,
            to,
            note,
        },
    })
}
