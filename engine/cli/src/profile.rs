//! Profiles: where `engine` runs (executor, store, catalog, a cluster's
//! Slurm settings), kept out of the pipelines, which say what runs.
//!
//! A profile file is `engine.toml` in the current folder or the nearest
//! folder above it (the repository's), and `~/.config/engine/engine.toml`
//! (or `$XDG_CONFIG_HOME/engine/engine.toml`) for the user. A profile named
//! in the repository's file is used from there, else from the user's.
//! `--profile NAME` (or `ENGINE_PROFILE`) picks one; without it the
//! profile named `default` applies when a file defines one. Relative paths
//! in a profile are relative to its file's folder.
//!
//! Precedence, highest first: a command-line flag, an `ENGINE_*`
//! environment variable (`ENGINE_STORE`, `ENGINE_CATALOG`,
//! `ENGINE_EXECUTOR`), the profile, the pipeline's own `store:`, the
//! built-in default. The profile reaches the commands through those same
//! environment variables, set for this process only where the user did not
//! set them, so every command that takes `--store` or `--catalog` honours
//! it without knowing about profiles.

use anyhow::{Context, Result, anyhow, bail};
use engine_core::slurm::SlurmClassSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const FILE: &str = "engine.toml";

/// One `engine.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// `[profiles.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `local` or `slurm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// Store URL: `fs://DIR`, `s3://BUCKET/PREFIX?...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Catalog: a SQLite path or `postgres://...`; also the pipelines'
    /// `catalog` value unless a values file or `--set` gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmProfile>,
}

/// `[profiles.NAME.slurm]`: the cluster, and `sbatch` settings for every
/// class, with `[profiles.NAME.slurm.classes.CLASS]` over them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmProfile {
    /// The `engine` binary as the nodes see it. Default: this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_bin: Option<PathBuf>,
    /// Where job output files go (a folder the nodes can write). Default:
    /// `.engine/slurm` in the current folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    /// How often a running job's result is looked for, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_ms: Option<u64>,
    /// The cluster's `MaxArraySize`: a map stage with more batches goes as
    /// several arrays. Default: what `scontrol show config` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_array_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    /// A map stage's job array runs at most this many elements at once
    /// (`--array=0-N%CAP`); default `max_jobs`, else 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_cap: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, SlurmClassSettings>,
}

impl SlurmProfile {
    /// The settings every class starts from.
    pub fn defaults(&self) -> SlurmClassSettings {
        SlurmClassSettings {
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            time: self.time.clone(),
            max_jobs: self.max_jobs,
            array_cap: self.array_cap,
            extra_args: self.extra_args.clone(),
        }
    }
}

/// The profile in effect, and where it came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Active {
    pub name: Option<String>,
    pub file: Option<PathBuf>,
    pub profile: Profile,
    /// The profile files found, repository's first.
    pub files: Vec<PathBuf>,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// The profile this process runs under (none before [`init`]).
pub fn active() -> &'static Active {
    ACTIVE.get_or_init(Active::default)
}

/// The profile name given on the command line (`--profile NAME`,
/// `--profile=NAME`) or in `ENGINE_PROFILE`. Read before the command line
/// is parsed, because the profile feeds the defaults of its flags.
pub fn requested(args: &[OsString]) -> Option<String> {
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--profile" {
            return it.next().map(|s| s.into_owned());
        }
        if let Some(v) = a.strip_prefix("--profile=") {
            return Some(v.to_string());
        }
    }
    std::env::var("ENGINE_PROFILE")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The profile files that exist: the nearest `engine.toml` from `cwd`
/// upwards, then the user's.
fn files(cwd: &Path) -> Vec<PathBuf> {
    let mut found = vec![];
    if let Some(f) = cwd.ancestors().map(|d| d.join(FILE)).find(|f| f.is_file()) {
        found.push(f);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(f) = config.map(|c| c.join("engine").join(FILE))
        && f.is_file()
        && !found.contains(&f)
    {
        found.push(f);
    }
    found
}

fn read(file: &Path) -> Result<ProfileFile> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("Failed to read profile file `{}`", file.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow!(
            "Failed to parse profile file `{}`: {}",
            file.display(),
            e.to_string().trim_end()
        )
    })
}

/// Finds the profile `requested` names (or `default`) in the files seen
/// from `cwd`. A named profile that no file defines is an error naming the
/// files and the profiles they have.
pub fn load(requested: Option<&str>, cwd: &Path) -> Result<Active> {
    let files = files(cwd);
    let mut parsed = vec![];
    for f in &files {
        parsed.push((f.clone(), read(f)?));
    }
    let name = requested.unwrap_or("default");
    for (file, pf) in &parsed {
        if let Some(p) = pf.profiles.get(name) {
            check(p, name, file)?;
            return Ok(Active {
                name: Some(name.to_string()),
                file: Some(file.clone()),
                profile: anchored(p.clone(), file.parent().unwrap_or(Path::new("."))),
                files,
            });
        }
    }
    if let Some(name) = requested {
        let have: Vec<String> = parsed
            .iter()
            .flat_map(|(_, pf)| pf.profiles.keys().cloned())
            .collect();
        if files.is_empty() {
            bail!(
                "profile `{name}` is not defined: no `{FILE}` was found in this folder, the folders above it, or `~/.config/engine/`; create one with a `[profiles.{name}]` table"
            );
        }
        let where_ = files
            .iter()
            .map(|f| format!("`{}`", f.display()))
            .collect::<Vec<_>>()
            .join(" or ");
        let hint = if have.is_empty() {
            "it defines no profiles".to_string()
        } else {
            format!("profiles there: {}", have.join(", "))
        };
        bail!("profile `{name}` is not defined in {where_} ({hint})");
    }
    Ok(Active {
        files,
        ..Active::default()
    })
}

/// Relative paths in a profile (an `fs://` store, a SQLite catalog, the
/// Slurm log folder) are relative to the file's folder, as in DVC's config,
/// so a command run from a subfolder uses the same store.
fn anchored(mut p: Profile, base: &Path) -> Profile {
    let abs = |rel: &str| base.join(rel).display().to_string();
    if let Some(s) = &p.store
        && let Some(rel) = s.strip_prefix("fs://")
        && !rel.starts_with('/')
    {
        p.store = Some(format!("fs://{}", abs(rel)));
    }
    if let Some(c) = &p.catalog
        && !c.contains("://")
        && !c.starts_with('/')
    {
        p.catalog = Some(abs(c));
    } else if let Some(c) = &p.catalog
        && let Some(rel) = c.strip_prefix("sqlite://")
        && !rel.starts_with('/')
    {
        p.catalog = Some(format!("sqlite://{}", abs(rel)));
    }
    if let Some(sl) = &mut p.slurm
        && let Some(d) = &sl.log_dir
        && d.is_relative()
    {
        sl.log_dir = Some(base.join(d));
    }
    p
}

fn check(p: &Profile, name: &str, file: &Path) -> Result<()> {
    if let Some(e) = &p.executor
        && e != "local"
        && e != "slurm"
    {
        bail!(
            "profile `{name}` in `{}`: `executor = \"{e}\"` is not an executor; use `local` or `slurm`",
            file.display()
        );
    }
    Ok(())
}

/// Loads the profile and makes it this process's: its executor, store
/// and catalog become `ENGINE_EXECUTOR`, `ENGINE_STORE` and
/// `ENGINE_CATALOG` where those are not set.
///
/// # Safety
/// Sets environment variables: call it before any other thread exists.
pub unsafe fn init(args: &[OsString]) -> Result<()> {
    let cwd = std::env::current_dir().context("Failed to read the current folder")?;
    let active = load(requested(args).as_deref(), &cwd)?;
    let p = &active.profile;
    for (var, value) in [
        ("ENGINE_EXECUTOR", &p.executor),
        ("ENGINE_STORE", &p.store),
        ("ENGINE_CATALOG", &p.catalog),
    ] {
        if let Some(v) = value
            && std::env::var_os(var).is_none()
        {
            // SAFETY: the caller guarantees no other thread runs yet.
            unsafe { std::env::set_var(var, v) };
        }
    }
    let _ = ACTIVE.set(active);
    Ok(())
}

/// The template values a profile puts under the pipeline's own.
pub fn template_defaults() -> serde_json::Value {
    let mut m = serde_json::Map::new();
    if let Some(c) = &active().profile.catalog {
        m.insert("catalog".into(), serde_json::Value::String(c.clone()));
    }
    serde_json::Value::Object(m)
}

/// `engine profile`: the profile in effect, its file, and the executor,
/// store and catalog it gives (secrets in URLs scrubbed).
pub fn print(json: bool, default_store: &str) -> Result<()> {
    let a = active();
    let env = |k: &str| std::env::var(k).ok();
    let effective = serde_json::json!({
        "executor": env("ENGINE_EXECUTOR").unwrap_or_else(|| "local".into()),
        "store": env("ENGINE_STORE"),
        "catalog": env("ENGINE_CATALOG").unwrap_or_else(|| catalog::DEFAULT_DB.into()),
    });
    if json {
        let doc = serde_json::json!({ "active": a, "effective": effective });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    match (&a.name, &a.file) {
        (Some(n), Some(f)) => println!("profile `{n}` from `{}`", f.display()),
        _ if a.files.is_empty() => println!(
            "no profile: no `{}` here, above, or in ~/.config/engine/",
            FILE
        ),
        _ => println!("no profile named `default` in the files found"),
    }
    for f in &a.files {
        println!("  file: {}", f.display());
    }
    let store = env("ENGINE_STORE")
        .unwrap_or_else(|| format!("the pipeline's `store:`, else {default_store}"));
    println!(
        "executor: {}",
        effective["executor"].as_str().unwrap_or("local")
    );
    println!("store:    {}", engine_core::secrets::scrub(&store));
    println!(
        "catalog:  {}",
        engine_core::secrets::scrub(effective["catalog"].as_str().unwrap_or_default())
    );
    if let Some(sl) = &a.profile.slurm {
        println!(
            "slurm, every class: {}",
            serde_json::to_string(&sl.defaults())?
        );
        for (name, c) in &sl.classes {
            let set = sl.defaults().under(c);
            println!("slurm, class `{name}`: {}", serde_json::to_string(&set)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = r#"
[profiles.default]
store = "fs://.engine/store"

[profiles.cluster]
executor = "slurm"
store = "s3://models/engine?endpoint=http://s3.lab:9000&region=us-east-1"
catalog = "postgres://engine:${env:PGPASSWORD}@db.lab/videos"

[profiles.cluster.slurm]
engine_bin = "/shared/bin/engine"
log_dir = "/shared/engine/slurm"
account = "vision"
time = "04:00:00"
array_cap = 16

[profiles.cluster.slurm.classes.cpu]
partition = "cpu"
max_jobs = 64
array_cap = 100

[profiles.cluster.slurm.classes.gpu]
partition = "gpu"
qos = "high"
time = "12:00:00"
extra_args = ["--exclusive"]
"#;

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE), REPO).unwrap();
        std::fs::create_dir_all(d.path().join("pipelines/sub")).unwrap();
        d
    }

    #[test]
    fn a_named_profile_is_found_from_a_subfolder_with_its_slurm_classes() {
        let d = repo();
        let a = load(Some("cluster"), &d.path().join("pipelines/sub")).unwrap();
        assert_eq!(a.name.as_deref(), Some("cluster"));
        assert_eq!(a.file.as_deref(), Some(d.path().join(FILE).as_path()));
        let p = a.profile;
        assert_eq!(p.executor.as_deref(), Some("slurm"));
        let s = p.slurm.unwrap();
        let gpu = s.defaults().under(&s.classes["gpu"]);
        assert_eq!(gpu.partition.as_deref(), Some("gpu"));
        assert_eq!(gpu.account.as_deref(), Some("vision"));
        assert_eq!(gpu.time.as_deref(), Some("12:00:00"));
        assert_eq!(gpu.extra_args, vec!["--exclusive"]);
        let cpu = s.defaults().under(&s.classes["cpu"]);
        assert_eq!(
            (cpu.time.as_deref(), cpu.max_jobs, cpu.array_cap),
            (Some("04:00:00"), Some(64), Some(100))
        );
        // A class without its own cap takes the profile's.
        assert_eq!(gpu.array_cap, Some(16));
    }

    #[test]
    fn without_a_name_the_default_profile_applies_and_none_is_fine() {
        let d = repo();
        let a = load(None, &d.path().join("pipelines")).unwrap();
        assert_eq!(a.name.as_deref(), Some("default"));
        // Relative to the file's folder, not to where the command runs.
        let want = format!("fs://{}", d.path().join(".engine/store").display());
        assert_eq!(a.profile.store.as_deref(), Some(want.as_str()));
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join(FILE), "").unwrap();
        let a = load(None, empty.path()).unwrap();
        assert_eq!((a.name, a.profile), (None, Profile::default()));
    }

    #[test]
    fn an_unknown_profile_or_key_or_executor_is_an_error_that_names_it() {
        let d = repo();
        let e = load(Some("clustr"), d.path()).unwrap_err().to_string();
        assert!(
            e.contains("`clustr` is not defined") && e.contains("cluster, default"),
            "{e}"
        );
        std::fs::write(d.path().join(FILE), "[profiles.x]\nstor = \"fs://a\"\n").unwrap();
        let e = load(Some("x"), d.path()).unwrap_err().to_string();
        assert!(e.contains("engine.toml") && e.contains("stor"), "{e}");
        std::fs::write(d.path().join(FILE), "[profiles.x]\nexecutor = \"k8s\"\n").unwrap();
        let e = load(Some("x"), d.path()).unwrap_err().to_string();
        assert!(
            e.contains("\"k8s\"") && e.contains("`local` or `slurm`"),
            "{e}"
        );
    }

    #[test]
    fn the_profile_name_comes_from_the_command_line_before_it_is_parsed() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            requested(&args(&["engine", "run", "--profile", "cluster", "p.yaml"])).as_deref(),
            Some("cluster")
        );
        assert_eq!(
            requested(&args(&["engine", "--profile=gpu", "runs"])).as_deref(),
            Some("gpu")
        );
        // After `--` it is a stage's argument, not ours.
        if std::env::var_os("ENGINE_PROFILE").is_none() {
            assert_eq!(
                requested(&args(&["engine", "x", "--", "--profile", "y"])),
                None
            );
        }
    }
}
