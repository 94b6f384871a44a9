//! The `shell` stage: runs a command in a work folder with its inputs
//! materialised as files, streams its output to the task log and collects
//! the outputs it declares.
//!
//! Inputs appear under `inputs/STAGE/OUTPUT/` (for a matrix upstream,
//! `inputs/STAGE/TASK/OUTPUT/`), items of a collection under their key.

use crate::spawn;
use crate::stage::{OutputDecl, ParamsError, Stage, StageConfig, StageError, StageImpl, TaskCtx};
use crate::store::{Item, check_rel_path};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Params of `shell`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    /// The command, run by `bash -c` in the task's work folder. Environment:
    /// `ENGINE_TASK`, `ENGINE_THREADS`, `ENGINE_ATTEMPT`, `ENGINE_INPUTS`,
    /// and `MATRIX_KEY` for each matrix key (dots become `_`).
    pub run: String,
    /// Extra environment variables (strings, numbers or booleans). They
    /// are params: stored in the run record and part of the cache key, so
    /// never put a secret here as text: reference it as `${env:NAME}`
    /// (resolved when the task runs, redacted in its log), or use
    /// `pass_env`.
    #[serde(default)]
    pub env: BTreeMap<String, Value>,
    /// Names of the engine's environment variables to pass to the command
    /// (`AWS_SECRET_ACCESS_KEY`, `DATABASE_URL`). Their values are read when
    /// the task runs: only the names are params (a new token does not rerun
    /// the task), and the values are replaced by `[redacted]` in the task's
    /// log. Besides these, a command sees only `PATH`, `HOME`, `USER`,
    /// `LOGNAME`, `SHELL`, `LANG`, `LC_*`, `TZ`, `TERM`, `TMPDIR`,
    /// `LD_LIBRARY_PATH`, `VIRTUAL_ENV`, `CONDA_PREFIX`, `PYTHONPATH`,
    /// `SLURM_*`, the visible-GPU variables and the `ENGINE_*` variables:
    /// not the engine's whole environment.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Artifact outputs: name -> a file or folder the command writes,
    /// relative to the work folder.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Collection outputs: name -> a folder; each file or sub-folder in it
    /// becomes one item, keyed by its name.
    #[serde(default)]
    pub collections: BTreeMap<String, String>,
}

impl StageConfig for ShellConfig {
    const KIND: &'static str = "shell";
    const SUMMARY: &'static str = "run a command; inputs as files, declared outputs collected";
    fn check(&self) -> Result<(), ParamsError> {
        if self.run.trim().is_empty() {
            return Err("`run` is empty; give the command to run".into());
        }
        for (name, path) in self.outputs.iter().chain(&self.collections) {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(
                    format!("output name `{name}` must use letters, digits, `_` and `-`").into(),
                );
            }
            check_rel_path(path).map_err(|e| format!("output `{name}`: {e}"))?;
        }
        if let Some((k, _)) = self
            .env
            .iter()
            .find(|(_, v)| v.is_object() || v.is_array() || v.is_null())
        {
            return Err(format!("`env.{k}` must be a string, number or boolean").into());
        }
        if let Some(bad) = self
            .pass_env
            .iter()
            .find(|n| n.is_empty() || n.contains('=') || n.contains('\0'))
        {
            return Err(format!("`pass_env` entry `{bad}` is not a variable name").into());
        }
        if let Some(dup) = self
            .outputs
            .keys()
            .find(|k| self.collections.contains_key(*k))
        {
            return Err(format!("`{dup}` is both in `outputs` and in `collections`").into());
        }
        Ok(())
    }
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Shell(self)))
    }
}

struct Shell(ShellConfig);

/// Kills the command's whole process group when the task ends, however it
/// ends (a timeout or Ctrl-C drops it), so nothing is left running; then
/// takes the group off the reaper's list.
struct KillGroup {
    pgid: Option<i32>,
    /// The reaper knows the group.
    watched: bool,
    /// The task's cgroup, where the machine has them: it also holds the
    /// processes that left the group (`setsid`).
    cgroup: Option<crate::cgroup::TaskCgroup>,
}

impl KillGroup {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: killpg only sends a signal; a stale pgid fails harmlessly.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
            if self.watched {
                crate::reaper::forget(pgid);
            }
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill();
        }
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a task's command is started with, besides its params.
struct TaskEnv<'a> {
    shell: &'static str,
    work: &'a Path,
    inputs_dir: &'a Path,
    passed: Vec<(String, String)>,
}

fn env_key(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// How a task's command is started: program, arguments, the whole
/// environment and folder; the same for both ways of starting it.
struct Start {
    program: &'static str,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    cwd: PathBuf,
}

impl Start {
    /// The standard library's way (`posix_spawn`, or a fork where a
    /// pre-exec hook is needed), in its own process group.
    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Straight into the cgroup whose folder `cgroup` holds open (see
    /// `spawn.rs`).
    fn spawn_into(&self, cgroup: &std::fs::File) -> Result<spawn::Child, spawn::SpawnError> {
        use std::os::fd::AsRawFd;
        let args: Vec<&std::ffi::OsStr> = self.args.iter().map(|a| a.as_os_str()).collect();
        spawn::spawn(
            &spawn::Launch {
                program: Path::new(self.program),
                args: &args,
                env: &self.env,
                cwd: &self.cwd,
            },
            Some(cgroup.as_raw_fd()),
        )
    }
}

/// A started command, whichever way it was started.
enum Running {
    Std(tokio::process::Child),
    Own(spawn::Child),
}

type Stream = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

impl Running {
    fn id(&self) -> Option<u32> {
        match self {
            Running::Std(c) => c.id(),
            Running::Own(c) => Some(c.id()),
        }
    }

    fn take_pipes(&mut self) -> (Option<Stream>, Option<Stream>) {
        match self {
            Running::Std(c) => (
                c.stdout.take().map(|s| Box::new(s) as Stream),
                c.stderr.take().map(|s| Box::new(s) as Stream),
            ),
            Running::Own(c) => (
                c.stdout.take().map(|s| Box::new(s) as Stream),
                c.stderr.take().map(|s| Box::new(s) as Stream),
            ),
        }
    }

    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match self {
            Running::Std(c) => c.wait().await,
            Running::Own(c) => c.wait().await,
        }
    }
}

impl Shell {
    /// The command of a task: `bash -c RUN`, or (`direct` false) the same
    /// under the [`SUPERVISE`] shell, which [`Shell::supervised`] gives a
    /// parent-death signal. With `join`, the shell first moves itself into
    /// that cgroup (when it was not started inside it).
    fn start(&self, ctx: &TaskCtx, env: &TaskEnv, direct: bool, join: Option<&Path>) -> Start {
        let shell = env.shell;
        // Only an allow-list of the engine's environment, plus what the
        // stage names in `pass_env`: the engine's own credentials (store,
        // catalog, cloud) must not reach every command and its stored log.
        let mut vars: BTreeMap<OsString, OsString> = allowed_vars().clone();
        let mut set = |k: &str, v: String| {
            vars.insert(k.into(), v.into());
        };
        for (k, v) in &env.passed {
            set(k, v.clone());
        }
        // The shell joins the task's cgroup itself, before anything of the
        // command runs: a command that forks and exits at once would
        // otherwise be gone, its children outside, before the engine could
        // move it (and the engine's own move would be a second migration,
        // which costs the kernel as much as the join). On the command's
        // first line, so bash's line numbers are unchanged.
        let run = match join {
            Some(cg) => {
                set("ENGINE_CGROUP", cg.to_string_lossy().into_owned());
                format!(
                    "echo 0 > \"$ENGINE_CGROUP/cgroup.procs\" 2>/dev/null; {}",
                    self.0.run
                )
            }
            None => self.0.run.clone(),
        };
        let args: Vec<OsString> = if direct {
            vec!["-c".into(), run.into()]
        } else {
            set("ENGINE_RUN", run);
            vec!["-c".into(), SUPERVISE.into(), shell.into()]
        };
        set("ENGINE_TASK", ctx.task().to_string());
        set("ENGINE_THREADS", ctx.threads().to_string());
        set("OMP_NUM_THREADS", ctx.threads().to_string());
        set("ENGINE_ATTEMPT", ctx.attempt().to_string());
        set(
            "ENGINE_INPUTS",
            env.inputs_dir.to_string_lossy().into_owned(),
        );
        for (k, v) in ctx.matrix() {
            set(&format!("MATRIX_{}", env_key(k)), scalar(v));
        }
        for (k, v) in &self.0.env {
            set(k, scalar(v));
        }
        Start {
            program: shell,
            args,
            env: vars,
            cwd: env.work.to_path_buf(),
        }
    }

    /// The standard way for `start`: with `direct` false, a parent-death
    /// signal on the supervising shell: if the engine itself is killed
    /// (even with SIGKILL), that shell gets SIGTERM and kills the task's
    /// whole process group, the command's own children included (see
    /// [`SUPERVISE`]). That needs a pre-exec hook, and so a fork of the
    /// whole engine.
    fn supervised(start: &Start, direct: bool) -> tokio::process::Command {
        #[allow(unused_mut)]
        let mut cmd = start.command();
        // SAFETY: prctl is async-signal-safe and touches no Rust state.
        #[cfg(target_os = "linux")]
        if !direct {
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        cmd
    }
}

#[async_trait]
impl Stage for Shell {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        let mut v: Vec<OutputDecl> = self
            .0
            .outputs
            .keys()
            .map(|k| OutputDecl::artifact(k))
            .collect();
        v.extend(self.0.collections.keys().map(|k| OutputDecl::collection(k)));
        v
    }

    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        // The task's own scratch folder is its working folder: each folder
        // made and removed per task costs inode work that showed in
        // profiles of many small tasks.
        let work = ctx.scratch_dir()?.to_path_buf();
        let inputs_dir = work.join("inputs");
        for input in ctx.inputs().to_vec() {
            let mut dir = inputs_dir.join(&input.stage);
            if input.task != input.stage {
                dir = dir.join(sanitize(&input.task));
            }
            ctx.export(&input, &dir.join(&input.output)).await?;
        }
        static SHELL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
        let shell = *SHELL.get_or_init(|| {
            if Path::new("/bin/bash").exists() {
                "/bin/bash"
            } else {
                "/bin/sh"
            }
        });
        let mut secrets: Vec<String> = vec![];
        let mut passed: Vec<(String, String)> = vec![];
        for name in &self.0.pass_env {
            match std::env::var(name) {
                Ok(v) => {
                    crate::secrets::remember(&v);
                    if v.len() >= 4 {
                        secrets.push(v.clone());
                    }
                    passed.push((name.clone(), v));
                }
                Err(_) => {
                    return Err(StageError::msg(format!(
                        "`pass_env` names `{name}`, which is not set in the engine's environment; set it before `engine run`"
                    )));
                }
            }
        }
        let env = TaskEnv {
            shell,
            work: &work,
            inputs_dir: &inputs_dir,
            passed,
        };
        // The fast way: no fork of the engine, straight into the task's
        // own process group, which the reaper kills if the engine dies (see
        // `reaper.rs`). Where the reaper cannot run, the old way: a forked
        // supervising shell with a parent-death signal.
        let mut direct = match crate::reaper::ready() {
            Ok(()) => true,
            Err(why) => {
                ctx.log(format!(
                    "note: the helper that kills this task's processes if the engine dies is unavailable ({why}); starting the command through a supervising shell instead"
                ));
                false
            }
        };
        let (mut child, mut guard) = loop {
            let cgroup = crate::cgroup::TaskCgroup::new();
            let failed = |e: std::io::Error| {
                StageError::msg(format!(
                    "Failed to start `{shell}` for task `{}`: {e}",
                    ctx.task()
                ))
            };
            // The quickest way: cloned straight into the task's cgroup (see
            // `spawn.rs`); where the machine cannot, the standard spawn and
            // the shell's own move into it.
            let mut own = None;
            if direct && let Some(cg) = &cgroup {
                // A cgroup folder that cannot be opened goes the standard way.
                if let Ok(held) = std::fs::File::open(cg.path()) {
                    match self.start(ctx, &env, true, None).spawn_into(&held) {
                        Ok(c) => own = Some(c),
                        Err(spawn::SpawnError::Failed(e)) => return Err(failed(e)),
                        Err(spawn::SpawnError::Unsupported(_)) => {}
                    }
                }
            }
            let mut child = match own {
                Some(c) => Running::Own(c),
                None => {
                    let start = self.start(ctx, &env, direct, cgroup.as_ref().map(|c| c.path()));
                    Running::Std(Self::supervised(&start, direct).spawn().map_err(failed)?)
                }
            };
            let mut guard = KillGroup {
                pgid: child.id().map(|p| p as i32),
                watched: false,
                cgroup,
            };
            // A command cloned into its cgroup has every process of its
            // task in there for good, and the reaper kills the engine's
            // task cgroups by their names: nothing to tell it (two pipe
            // writes per task, and bash reading them).
            if !direct || matches!(child, Running::Own(_)) {
                break (child, guard);
            }
            // The reaper finds the task's cgroup by its name; the process
            // group it must be told.
            match guard.pgid.map(crate::reaper::watch) {
                Some(Ok(())) | None => {
                    guard.watched = guard.pgid.is_some();
                    break (child, guard);
                }
                Some(Err(why)) => {
                    // The reaper died since: this command would outlive a
                    // killed engine. Start it again the old way.
                    guard.kill();
                    let _ = child.wait().await;
                    ctx.log(format!(
                        "note: {why}; starting the command through a supervising shell instead"
                    ));
                    direct = false;
                }
            }
        };
        let tail = Arc::new(std::sync::Mutex::new(VecDeque::<String>::new()));
        let secrets = Arc::new(secrets);
        let pump = |stream: Option<Stream>, prefix: &'static str| {
            let log = ctx.log.clone();
            let tail = tail.clone();
            let secrets = secrets.clone();
            async move {
                let Some(s) = stream else { return };
                read_lines(s, |mut line| {
                    for v in secrets.iter() {
                        if line.contains(v.as_str()) {
                            line = line.replace(v.as_str(), "[redacted]");
                        }
                    }
                    log.line(&format!("{prefix}{line}"));
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.push_back(line);
                    if t.len() > 5 {
                        t.pop_front();
                    }
                })
                .await;
            }
        };
        let (out, err) = child.take_pipes();
        let (read_out, read_err) = (pump(out, ""), pump(err, "stderr: "));
        // Read in this task, not one of its own: a task per command and the
        // wake-up that joins it cost more than the reading (output is a few
        // lines for most commands).
        let mut pumps = std::pin::pin!(async move {
            tokio::join!(read_out, read_err);
        });
        let mut read_all = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                () = &mut pumps, if !read_all => read_all = true,
            }
        }
        .map_err(|e| {
            StageError::msg(format!(
                "Failed to wait for the command of task `{}`: {e}",
                ctx.task()
            ))
        })?;
        // The task ends when its command does: whatever it left running in
        // the background (`sleep 600 &`) dies with the process group, which
        // also closes the pipes it held, so reading ends. A process that left
        // the group (setsid) dies with the task's cgroup where the machine
        // has them; elsewhere it lives on, and its pipe is not waited for.
        guard.kill();
        if !read_all
            && tokio::time::timeout(Duration::from_secs(5), &mut pumps)
                .await
                .is_err()
        {
            ctx.log(
                "the command exited but something it started still holds its output open; stopped reading",
            );
        }
        if !status.success() {
            let code = status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "a signal".into());
            let last: Vec<String> = tail
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            let mut msg = format!("command exited with status {code}");
            if !last.is_empty() {
                msg.push_str(&format!("; its last output:\n  {}", last.join("\n  ")));
            }
            return Err(StageError::msg(msg));
        }
        // Every output is found before any is stored, so a missing one
        // fails the task before its files move.
        let mut singles = vec![];
        for (name, rel) in &self.0.outputs {
            singles.push((name, collect_files(&work, &work.join(rel), name, rel)?));
        }
        let mut collections = vec![];
        for (name, rel) in &self.0.collections {
            let dir = work.join(rel);
            let meta = tokio::fs::symlink_metadata(&dir).await.map_err(|_| {
                StageError::msg(format!(
                    "the command did not write collection `{name}`: folder `{rel}` is missing"
                ))
            })?;
            if !meta.is_dir() {
                return Err(StageError::msg(format!(
                    "collection `{name}`: `{rel}` is not a folder"
                )));
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| StageError::io("list", &dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let mut items = vec![];
            for entry in entries {
                items.push((file_name(&entry), collect_files(&work, &entry, name, rel)?));
            }
            collections.push((name, items));
        }
        // The task is over and its processes are dead: a file that one
        // output names moves into the store instead of being copied (no
        // second file written, none deleted); one that several outputs
        // name is copied.
        let mut claims: HashMap<PathBuf, usize> = HashMap::new();
        let all = singles.iter().flat_map(|(_, f)| f).chain(
            collections
                .iter()
                .flat_map(|(_, i)| i.iter().flat_map(|(_, f)| f)),
        );
        for (_, abs) in all {
            *claims.entry(abs.clone()).or_default() += 1;
        }
        let store = ctx.store().clone();
        let put = |abs: PathBuf| {
            let (store, shared) = (store.clone(), claims[&abs] > 1);
            async move {
                if shared {
                    store.put_blob_file(&abs).await
                } else {
                    store.put_blob_file_moving(&abs).await
                }
            }
        };
        for (name, files) in singles {
            if files.is_empty() {
                // An empty folder is a valid, empty artifact.
                ctx.set_meta(name, serde_json::json!({ "empty": true }))?;
            }
            for (relname, abs) in files {
                let blob = put(abs).await?;
                ctx.attach_file(name, &relname, blob)?;
            }
        }
        for (name, items) in collections {
            for (key, found) in items {
                let mut files = crate::store::Files::new();
                for (relname, abs) in found {
                    files.insert(relname, put(abs).await?);
                }
                ctx.add_item(
                    name,
                    Item {
                        key,
                        files,
                        meta: Value::Null,
                    },
                )?;
            }
        }
        Ok(())
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Files under `path`, relative to it (a file is its own name). Symlinks
/// are refused: an output must not point outside the work folder.
fn collect_files(
    work: &Path,
    path: &Path,
    name: &str,
    rel: &str,
) -> Result<Vec<(String, PathBuf)>, StageError> {
    let meta = std::fs::symlink_metadata(path).map_err(|_| {
        StageError::msg(format!(
            "the command did not write output `{name}`: `{rel}` is missing"
        ))
    })?;
    // A symlinked folder on the way (`root -> /etc`, output `root/hostname`)
    // would collect a file from outside the task: where a folder between
    // the work folder and the output is a symlink, resolve, then compare.
    // (Resolving every output costs a `readlink` per component of both
    // paths, which showed in profiles of many small tasks.)
    if symlink_on_the_way(work, path) {
        let real = path
            .canonicalize()
            .map_err(|e| StageError::io("resolve", path, e))?;
        let base = work
            .canonicalize()
            .map_err(|e| StageError::io("resolve", work, e))?;
        if !real.starts_with(&base) {
            return Err(StageError::msg(format!(
                "output `{name}`: `{rel}` resolves to `{}`, outside the task's work folder (through a symlink); write real files inside it",
                real.display()
            )));
        }
    }
    if meta.file_type().is_symlink() {
        return Err(StageError::msg(format!(
            "output `{name}`: `{}` is a symlink; write real files",
            path.display()
        )));
    }
    if meta.is_file() {
        return Ok(vec![(file_name(path), path.to_path_buf())]);
    }
    let mut out = vec![];
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| StageError::io("list", &dir, e))? {
            let e = e.map_err(|e| StageError::io("list", &dir, e))?;
            let p = e.path();
            let ft = e.file_type().map_err(|e| StageError::io("stat", &p, e))?;
            if ft.is_symlink() {
                return Err(StageError::msg(format!(
                    "output `{name}`: `{}` is a symlink; write real files",
                    p.display()
                )));
            } else if ft.is_dir() {
                stack.push(p);
            } else {
                let r = p
                    .strip_prefix(path)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.push((r, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a folder between `work` and `path` (below `work`) is a symlink,
/// or `path` is not below `work` as written: then only resolving both
/// tells whether `path` is inside.
fn symlink_on_the_way(work: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(work) else {
        return true;
    };
    let mut at = work.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(c) = parts.next() {
        if parts.peek().is_none() {
            break;
        }
        match c {
            std::path::Component::Normal(n) => at.push(n),
            std::path::Component::CurDir => continue,
            _ => return true,
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if !m.file_type().is_symlink() => {}
            _ => return true,
        }
    }
    false
}

/// The shell that runs a task's command (`$ENGINE_RUN`, with the shell's
/// path as `$0`) in the background and waits for it. The parent-death
/// signal reaches only this shell, not what the command starts; so on
/// SIGTERM (the engine died) it kills its process group, which is the
/// task's: every process the command started, unless one left the group.
/// `wait` returns early when a trapped signal arrives, so the trap runs at
/// once even while the command runs; its exit status is the command's.
const SUPERVISE: &str = r#"trap 'kill -KILL 0' TERM HUP
cmd=$ENGINE_RUN
unset ENGINE_RUN
"$0" -c "$cmd" &
pid=$!
while :; do
  wait "$pid"
  code=$?
  kill -0 "$pid" 2>/dev/null || exit "$code"
done"#;

/// The longest line kept from a command's output; the rest of a longer line
/// is counted, not stored.
const MAX_LINE: usize = 64 << 10;

/// Calls `on_line` for each line of `r` until it ends, reading bytes, not
/// text: invalid UTF-8 is replaced (a binary byte must not stop the reading,
/// or the command would die of SIGPIPE on a full pipe), and a line longer
/// than [`MAX_LINE`] is cut, saying how much, so one huge line costs no
/// more memory than a short one. The pipe is read to its end.
pub(crate) async fn read_lines<R: AsyncRead + Unpin>(r: R, mut on_line: impl FnMut(String)) {
    // 8 KiB, as std's default: each task reads two pipes, and a larger
    // buffer is allocated and zeroed for each (two of 64 KiB were 8% of
    // the engine's profile samples on 501 trivial tasks: allocation,
    // zeroing and page faults). A long line costs more reads, not more
    // memory.
    let mut reader = BufReader::with_capacity(8 << 10, r);
    let mut cur: Vec<u8> = Vec::new();
    let mut cut = 0usize;
    let mut emit = |cur: &mut Vec<u8>, cut: &mut usize| {
        if cur.last() == Some(&b'\r') {
            cur.pop();
        }
        let mut line = String::from_utf8_lossy(cur).into_owned();
        if *cut > 0 {
            line.push_str(&format!(" [... {} more bytes of this line cut]", *cut));
        }
        on_line(line);
        cur.clear();
        *cut = 0;
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if buf.is_empty() {
            if !cur.is_empty() || cut > 0 {
                emit(&mut cur, &mut cut);
            }
            break;
        }
        let (chunk, used, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(cur.len());
        let keep = chunk.len().min(room);
        cur.extend_from_slice(&chunk[..keep]);
        cut += chunk.len() - keep;
        reader.consume(used);
        if newline {
            emit(&mut cur, &mut cut);
        }
    }
}

/// The allowed part of the engine's environment, read once: the
/// environment does not change while the engine runs tasks (a profile's
/// variables are set before), and reading and filtering it was a
/// thirtieth of the engine's own work per shell task.
fn allowed_vars() -> &'static BTreeMap<OsString, OsString> {
    static VARS: std::sync::OnceLock<BTreeMap<OsString, OsString>> = std::sync::OnceLock::new();
    VARS.get_or_init(|| {
        std::env::vars_os()
            .filter(|(k, _)| k.to_str().is_some_and(allowed_env))
            .collect()
    })
}

/// The engine's environment variables every command sees: the basics of
/// a login, where libraries and the Python environment are, and what the
/// cluster scheduler assigned to the job (`SLURM_*`, the visible GPUs).
fn allowed_env(name: &str) -> bool {
    matches!(
        name,
        "PATH"
            | "HOME"
            | "USER"
            | "LOGNAME"
            | "SHELL"
            | "LANG"
            | "LANGUAGE"
            | "TZ"
            | "TERM"
            | "TMPDIR"
            | "LD_LIBRARY_PATH"
            | "VIRTUAL_ENV"
            | "CONDA_PREFIX"
            | "PYTHONPATH"
            | "CUDA_VISIBLE_DEVICES"
            | "ROCR_VISIBLE_DEVICES"
            | "GPU_DEVICE_ORDINAL"
    ) || name.starts_with("LC_")
        || name.starts_with("SLURM_")
}

#[cfg(test)]
mod read_lines_tests {
    use super::*;

    async fn lines_of(bytes: &[u8]) -> Vec<String> {
        let mut out = vec![];
        read_lines(bytes, |l| out.push(l)).await;
        out
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced_and_reading_goes_on() {
        let l = lines_of(b"a\xffb\nsecond\r\nlast").await;
        assert_eq!(l, ["a\u{fffd}b", "second", "last"]);
    }

    #[tokio::test]
    async fn a_huge_line_is_cut_and_says_so() {
        let mut big = vec![b'x'; MAX_LINE + 1000];
        big.extend_from_slice(b"\nafter\n");
        let l = lines_of(&big).await;
        assert_eq!(l.len(), 2);
        assert!(
            l[0].starts_with("xxx") && l[0].ends_with("[... 1000 more bytes of this line cut]")
        );
        assert_eq!(
            l[0].len(),
            MAX_LINE + " [... 1000 more bytes of this line cut]".len()
        );
        assert_eq!(l[1], "after");
    }
}
