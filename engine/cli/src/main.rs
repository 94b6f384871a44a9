//! `engine`: the command line. Parsing and printing only; the work is in
//! engine-core.

mod catalog_cmd;
mod detect_cmd;
mod diff_cmd;
mod monitor_cmd;
mod profile;
mod progress;
mod report;
mod review_cmd;
mod show;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use engine_core::compile::{self, Pipeline};
use engine_core::deps;
use engine_core::diag::Diagnostics;
use engine_core::plan::{self, Plan};
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use engine_core::template::{self, RenderRequest};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

const DEFAULT_STORE: &str = "fs://.engine/store";

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "Declarative pipelines for continual learning of video models"
)]
struct Cli {
    /// The profile of `engine.toml` to use (executor, store, catalog, Slurm
    /// settings); default: the profile named `default`, if any.
    #[arg(long, global = true, value_name = "NAME", env = "ENGINE_PROFILE")]
    profile: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the rendered YAML of a pipeline template.
    Render(PipelineArgs),
    /// Check a pipeline and report every problem at once.
    #[command(after_help = "Exit codes: 0 valid; 1 invalid (or unreadable).")]
    Validate {
        #[command(flatten)]
        p: PipelineArgs,
        /// How to report problems.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Same as `--format json`.
        #[arg(long)]
        json: bool,
    },
    /// Show the tasks in order, what would run and why, what is cached.
    #[command(
        after_help = "Exit codes: 0 done (with `--exit-code`: nothing would run); 2 with `--exit-code`, some task would run; 1 an error."
    )]
    Plan {
        #[command(flatten)]
        p: PipelineArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Exit with code 2 when some task would run (0 when everything is
        /// cached), so a cron job can use `plan` as a cheap sensor.
        #[arg(long)]
        exit_code: bool,
    },
    /// Draw the task graph (DOT or Mermaid), coloured by state with `--run`.
    Dag {
        #[command(flatten)]
        p: PipelineArgs,
        #[arg(long, value_enum, default_value = "dot")]
        format: DagFormat,
        /// Colour tasks by their state in this run (id, prefix or `latest`).
        #[arg(long)]
        run: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Run a pipeline.
    Run {
        #[command(flatten)]
        p: PipelineArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// Where tasks run.
        #[arg(long, value_enum, default_value = "local", env = "ENGINE_EXECUTOR")]
        executor: Executor,
        /// Print events and the summary as JSON lines (for CI).
        #[arg(long)]
        json: bool,
        /// Print every task's log lines as they come.
        #[arg(short, long)]
        verbose: bool,
        /// Check cache hits by hashing every blob of their outputs (by
        /// default a hit checks that each blob is there with its size), and
        /// rewrite stored objects whose bytes do not match.
        #[arg(long)]
        verify: bool,
    },
    /// Serve a live web view of runs, tasks, artifacts and refs from the
    /// store: `engine serve`, then open http://127.0.0.1:8080.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on; anything but loopback needs a token.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Required on every request: `Authorization: Bearer TOKEN`, or
        /// open a page once with `?token=TOKEN` (sets a cookie).
        #[arg(long, env = "ENGINE_SERVE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Allow writes (rolling back a ref, review verdicts); read-only otherwise.
        #[arg(long)]
        allow_write: bool,
        /// The catalog whose review queue `/review` shows: a SQLite path,
        /// `sqlite://PATH` or `postgres://...` (as `engine review` takes it).
        #[arg(long, value_name = "URL")]
        catalog: Option<String>,
    },
    /// Show the profile in effect (`engine.toml`): its file, its settings,
    /// and the store, catalog and executor they give.
    Profile {
        #[arg(long)]
        json: bool,
    },
    /// List runs, newest first.
    Runs {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show a run (`RUN`), one task (`RUN/TASK`, with its log), or an
    /// artifact (digest, prefix or ref) with its lineage.
    Show {
        what: String,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
        /// Write a run's timeline (a Gantt chart of its tasks) as HTML.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Copy an artifact's files into a folder: `RUN/TASK[/OUTPUT]`, a ref,
    /// or a digest (prefix). Items of a collection go under `KEY/`.
    Get {
        what: String,
        dest: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Find the replays in a video with a stored detector: `--model` is a
    /// ref (`models/basketball@production`), a digest, or `RUN/TASK`.
    Detect {
        video: PathBuf,
        #[arg(long)]
        model: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write the segments as JSON to this file.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Record the segments as production predictions of this video in
        /// the catalog (SQLite path or `postgres://...`), with the model's
        /// digest as its version, for review (`engine review predictions`).
        #[arg(long, value_name = "URL")]
        catalog: Option<String>,
        /// The video's sport, checked against the model's (read from the
        /// catalog with `--catalog`).
        #[arg(long)]
        sport: Option<String>,
        /// Also write the model's per-frame signals (start, end, content
        /// probabilities before post-processing) as CSV to this file, to see
        /// why a replay was split, missed or invented.
        #[arg(long, value_name = "FILE")]
        signals: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Generate synthetic broadcasts (mp4 + ground-truth JSON) into a folder.
    Synth {
        /// `soccer`, `basketball` or `ice-hockey`; `--styles` lists them.
        #[arg(long, required_unless_present = "styles")]
        sport: Option<String>,
        #[arg(long)]
        league: Option<String>,
        #[arg(long)]
        broadcaster: Option<String>,
        #[arg(long)]
        season: Option<String>,
        #[arg(long, value_enum, default_value = "small")]
        preset: SynthPreset,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Length of each video in seconds (overrides the preset).
        #[arg(long)]
        duration: Option<f64>,
        #[arg(long, default_value = "synth")]
        out: PathBuf,
        /// List the built-in styles and exit.
        #[arg(long)]
        styles: bool,
    },
    /// The video catalog: import, list and query videos; the golden set.
    Catalog {
        #[command(subcommand)]
        cmd: catalog_cmd::CatalogCmd,
    },
    /// Review: the manual-review queue (videos the teacher was unsure
    /// about) and verdicts on production predictions.
    Review {
        #[command(subcommand)]
        cmd: review_cmd::ReviewCmd,
    },
    /// Per-league precision and recall of production predictions from
    /// review verdicts over a window, against the `monitor:` thresholds of
    /// the sport's values file; Prometheus text (`--metrics`, `--listen`);
    /// `--trigger exit` exits 3 when a league fails, `--trigger run` runs
    /// the sport's pipeline for the failing leagues.
    #[command(
        after_help = "Exit codes: 0 nothing failing, nothing to judge, or `--trigger none`; 3 a league fails with `--trigger exit` (under `--watch`, at the first failing round); 1 an error; `--trigger run`: the run's code (under `--watch`, it runs once per distinct set of failing leagues and watches on)."
    )]
    Monitor(monitor_cmd::MonitorArgs),
    /// Check every object and ref of the store: blobs hash to their
    /// names, manifests parse and list blobs that are there, cache entries
    /// and refs point at whole artifacts. Exits 1 when anything is wrong.
    Fsck {
        /// Remove broken objects (never refs), so the next run rebuilds them.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete what nothing needs any more: keeps every artifact a ref ever
    /// pointed at, the last runs with everything they reference, the cache
    /// entries of kept artifacts and anything younger than the grace
    /// period; prints what it frees. Safe while runs write to the store.
    #[command(
        after_help = "Exit codes: 0 done (or nothing to do); 1 an object could not be deleted (the rest were), or an error."
    )]
    Gc {
        /// Keep the newest N runs with everything they reference.
        #[arg(long, default_value_t = 10, value_name = "N")]
        keep_runs: usize,
        /// Also keep every run saved in the last D days (0: off).
        #[arg(long, default_value_t = 0, value_name = "D")]
        keep_days: u64,
        /// Never delete an object written less than this long ago (`1h`,
        /// `30m`, `0s`); what a run writes meanwhile is this young.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Print what would be freed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: StoreArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Named pointers to artifacts, with history (the model registry).
    Ref {
        #[command(subcommand)]
        cmd: RefCmd,
    },
    /// What differs between two runs, or between the runs that made two
    /// artifacts (refs such as `models/basketball@production`, digests,
    /// `RUN/TASK`): template values and stage params by key, task values
    /// and metrics, output digests.
    #[command(
        after_help = "Exit codes: 0 no differences; 1 an error; 2 differences found (like `diff`)."
    )]
    Diff {
        a: String,
        b: String,
        /// Print JSON.
        #[arg(long, conflicts_with = "md")]
        json: bool,
        /// Print Markdown for a pull-request comment.
        #[arg(long)]
        md: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a shell completion script: `engine completions bash >
    /// /etc/bash_completion.d/engine`, or `source <(engine completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print or check the JSON Schema of pipeline files.
    Schema {
        /// Fail if this file differs from the generated schema.
        #[arg(long)]
        check: Option<PathBuf>,
        /// Write the schema to this file.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// List the stage kinds `uses:` accepts.
    Stages {
        /// Print each kind's name, summary and the JSON Schema of its
        /// `with:` params.
        #[arg(long)]
        json: bool,
    },
    /// What executors run on worker machines.
    #[command(hide = true)]
    Task {
        #[command(subcommand)]
        cmd: TaskCmd,
    },
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Run one task attempt of a run from the store (what a Slurm job runs).
    Exec {
        /// The store; a Slurm job gets it from `ENGINE_STORE`, never on its
        /// command line (which every cluster user can read).
        #[arg(long, env = "ENGINE_STORE")]
        store: String,
        #[arg(long)]
        run: String,
        #[arg(long)]
        task: String,
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// Run one batch of a map task's items from the store (what an element
    /// of a Slurm job array runs); publishes each item and its cache entry.
    ExecBatch {
        /// The store, from `ENGINE_STORE` as for `exec`.
        #[arg(long, env = "ENGINE_STORE")]
        store: String,
        #[arg(long)]
        run: String,
        #[arg(long)]
        task: String,
        /// The round of submission (lost batches are resubmitted in the next).
        #[arg(long, default_value_t = 1)]
        round: u32,
        /// Which batch, counted from `--offset`; an array element gets it
        /// from `SLURM_ARRAY_TASK_ID`.
        #[arg(long, env = "SLURM_ARRAY_TASK_ID")]
        index: usize,
        /// The first batch of this array (a stage with more batches than the
        /// cluster's `MaxArraySize` goes as several arrays).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
}

#[derive(Subcommand)]
enum RefCmd {
    /// Point NAME (e.g. `models/basketball@production`) at an artifact.
    Set {
        name: String,
        /// Digest, unique digest prefix, another ref, or `RUN/TASK[/OUTPUT]`.
        target: String,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the digest NAME points at.
    Get {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List refs (those under PREFIX, e.g. `models`), with target, moves
    /// and the last move's time.
    Ls {
        prefix: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove NAME and its history; the artifacts it pointed at stay in the
    /// store until `engine gc` finds nothing else keeps them.
    Rm {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print NAME's history, newest first.
    Log {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Move NAME back to a former target (default: the one before the
    /// current move); recorded as a new move, so it can itself be undone.
    Rollback {
        name: String,
        /// A history entry (`3` or `#3`, as `engine ref log` numbers them) or
        /// a digest (prefix) from the history.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where `engine run` runs tasks.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Executor {
    /// On this machine, in parallel within the resource classes.
    Local,
    /// Each task an `sbatch` job; the store must be reachable from the nodes.
    Slurm,
}

/// The synthetic broadcast presets of `engine synth`.
#[derive(Copy, Clone, ValueEnum)]
enum SynthPreset {
    /// Seconds long, 112x112 at 10 fps: for tests.
    Small,
    /// Minutes long, 224x224 at 25 fps: for demos and benchmarks.
    Demo,
}

impl SynthPreset {
    fn name(self) -> &'static str {
        match self {
            SynthPreset::Small => "small",
            SynthPreset::Demo => "demo",
        }
    }
}

/// How `engine validate` reports.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    /// Errors with the source line and a caret.
    Text,
    /// One JSON document: `{"ok": bool, "errors": [...]}`.
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...::`), so
    /// errors show as annotations on the pull request.
    Github,
}

#[derive(Copy, Clone, ValueEnum)]
enum DagFormat {
    Dot,
    Mermaid,
}

#[derive(Args, Clone)]
struct PipelineArgs {
    /// The pipeline file (`*.yaml`, or a `*.yaml.j2` template).
    pipeline: PathBuf,
    /// Values files for the template, merged in order.
    #[arg(long = "values", short = 'f')]
    values: Vec<PathBuf>,
    /// Override one value: `--set sport=hockey`, `--set train.epochs=5`.
    #[arg(long = "set")]
    sets: Vec<String>,
}

#[derive(Args, Clone)]
struct CacheArgs {
    /// Run this stage even when cached (repeatable).
    #[arg(long)]
    force: Vec<String>,
    /// Run every task; results are still stored for later runs.
    #[arg(long)]
    no_cache: bool,
    /// Key `deps:` files that git has clean (tracked, unmodified, not
    /// staged) by their git blob ids instead of hashing them; the others
    /// are hashed. Switching this on or off reruns stages with `deps`.
    #[arg(long)]
    deps_from_git: bool,
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// Store URL: `fs://DIR`, `memory://`, `s3://BUCKET/PREFIX`. Default:
    /// the pipeline's `store:`, else `fs://.engine/store`.
    #[arg(long, env = "ENGINE_STORE")]
    store: Option<String>,
}

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

fn load(p: &PipelineArgs) -> Result<(Pipeline, template::Rendered)> {
    let r = render(p)?;
    let pipeline = compile::compile(&r.file, &r.text, &registry()).map_err(anyhow::Error::new)?;
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
                    std::fs::write(&path, show::timeline_html(&run)?)
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
        Cmd::Ref { cmd } => show::refs(cmd_to_ref(cmd)?).await.map(|_| 0),
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
                    store,
                    run,
                    task,
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
                    store,
                    run,
                    task,
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

fn cmd_to_ref(cmd: RefCmd) -> Result<show::RefAction> {
    Ok(match cmd {
        RefCmd::Set {
            name,
            target,
            note,
            store,
        } => show::RefAction::Set {
            store: open_store(&store, None)?,
            name,
            target,
            note,
        },
        RefCmd::Get { name, store } => show::RefAction::Get {
            store: open_store(&store, None)?,
            name,
        },
        RefCmd::Ls {
            prefix,
            json,
            store,
        } => show::RefAction::Ls {
            store: open_store(&store, None)?,
            prefix,
            json,
        },
        RefCmd::Rm { name, store } => show::RefAction::Rm {
            store: open_store(&store, None)?,
            name,
        },
        RefCmd::Log { name, store } => show::RefAction::Log {
            store: open_store(&store, None)?,
            name,
        },
        RefCmd::Rollback {
            name,
            to,
            note,
            store,
        } => show::RefAction::Rollback {
            store: open_store(&store, None)?,
            name,
            to,
            note,
        },
    })
}

fn slurm_config(store: &Store) -> Result<engine_core::slurm::SlurmConfig> {
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
fn cap_jobs(pipeline: &mut Pipeline, cfg: &engine_core::slurm::SlurmConfig) {
    for class in &mut pipeline.classes {
        if let Some(cap) = cfg.class_settings(&class.name).max_jobs {
            class.slots = Some(class.slots.map_or(cap, |s| s.min(cap)).max(1));
        }
    }
}

/// The flags of `engine run` that shape how it runs and prints.
struct RunFlags {
    cache: CacheArgs,
    json: bool,
    verbose: bool,
    verify: bool,
}

async fn run(
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
    } = flags;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut opts = RunOptions {
        force: cache.force.clone(),
        no_cache: cache.no_cache,
        verify,
        events: engine_core::events::EventSink::new(tx),
        values: rendered.values.clone(),
        git_commit: engine_core::records::git_commit(pipeline_dir(Path::new(&pipeline.file))),
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
        println!(
            "{}",
            serde_json::json!({"event": "summary", "run": record.id, "status": record.status, "counts": record.counts(), "seconds": record.seconds, "store": record.store})
        );
    } else {
        show::print_summary(&record);
    }
    Ok(match record.status {
        engine_core::records::RunStatus::Succeeded => 0,
        engine_core::records::RunStatus::Cancelled => 130,
        _ => 1,
    })
}

fn pipeline_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// First Ctrl-C or SIGTERM cancels cleanly; a second one exits at once.
async fn watch_signals(cancel: tokio_util_cancel::Token) {
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

mod tokio_util_cancel {
    pub type Token = tokio_util::sync::CancellationToken;
}
