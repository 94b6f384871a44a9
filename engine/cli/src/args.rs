//! The command line's grammar: every command and flag as clap types, with
//! the help text users read. `main.rs` dispatches them.

use crate::{catalog_cmd, monitor_cmd, review_cmd};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "Declarative pipelines for continual learning of video models"
)]
pub(crate) struct Cli {
    /// The profile of `engine.toml` to use (executor, store, catalog, Slurm
    /// settings); default: the profile named `default`, if any.
    #[arg(long, global = true, value_name = "NAME", env = "ENGINE_PROFILE")]
    pub(crate) profile: Option<String>,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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

/// Which task of which run, from which store: what `engine task exec`
/// and `engine task exec-batch` both take.
#[derive(clap::Args)]
pub(crate) struct TaskAt {
    /// The store; a Slurm job gets it from `ENGINE_STORE`, never on its
    /// command line (which every cluster user can read).
    #[arg(long, env = "ENGINE_STORE")]
    pub store: String,
    #[arg(long)]
    pub run: String,
    #[arg(long)]
    pub task: String,
}

#[derive(Subcommand)]
pub(crate) enum TaskCmd {
    /// Run one task attempt of a run from the store (what a Slurm job runs).
    Exec {
        #[command(flatten)]
        at: TaskAt,
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// Run one batch of a map task's items from the store (what an element
    /// of a Slurm job array runs); publishes each item and its cache entry.
    ExecBatch {
        #[command(flatten)]
        at: TaskAt,
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
pub(crate) enum RefCmd {
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
pub(crate) enum Executor {
    /// On this machine, in parallel within the resource classes.
    Local,
    /// Each task an `sbatch` job; the store must be reachable from the nodes.
    Slurm,
}

/// The synthetic broadcast presets of `engine synth`.
#[derive(Copy, Clone, ValueEnum)]
pub(crate) enum SynthPreset {
    /// Seconds long, 112x112 at 10 fps: for tests.
    Small,
    /// Minutes long, 224x224 at 25 fps: for demos and benchmarks.
    Demo,
}

impl SynthPreset {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SynthPreset::Small => "small",
            SynthPreset::Demo => "demo",
        }
    }
}

/// How `engine validate` reports.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// Errors with the source line and a caret.
    Text,
    /// One JSON document: `{"ok": bool, "errors": [...]}`.
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...::`), so
    /// errors show as annotations on the pull request.
    Github,
}

#[derive(Copy, Clone, ValueEnum)]
pub(crate) enum DagFormat {
    Dot,
    Mermaid,
}

#[derive(Args, Clone)]
pub(crate) struct PipelineArgs {
    /// The pipeline file (`*.yaml`, or a `*.yaml.j2` template).
    pub(crate) pipeline: PathBuf,
    /// Values files for the template, merged in order.
    #[arg(long = "values", short = 'f')]
    pub(crate) values: Vec<PathBuf>,
    /// Override one value: `--set sport=hockey`, `--set train.epochs=5`.
    #[arg(long = "set")]
    pub(crate) sets: Vec<String>,
}

#[derive(Args, Clone)]
pub(crate) struct CacheArgs {
    /// Run this stage even when cached (repeatable).
    #[arg(long)]
    pub(crate) force: Vec<String>,
    /// Run every task; results are still stored for later runs.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Key `deps:` files that git has clean (tracked, unmodified, not
    /// staged) by their git blob ids instead of hashing them; the others
    /// are hashed. Switching this on or off reruns stages with `deps`.
    #[arg(long)]
    pub(crate) deps_from_git: bool,
}

#[derive(Args, Clone)]
pub(crate) struct StoreArgs {
    /// Store URL: `fs://DIR`, `memory://`, `s3://BUCKET/PREFIX`. Default:
    /// the pipeline's `store:`, else `fs://.engine/store`.
    #[arg(long, env = "ENGINE_STORE")]
    pub(crate) store: Option<String>,
}
