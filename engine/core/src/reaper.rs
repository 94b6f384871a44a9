//! The reaper: one small helper process per engine that kills the process
//! groups of running tasks when the engine dies, however it dies (SIGKILL
//! included).
//!
//! Why a helper: a task's command runs in its own process group, and
//! everything it starts (`sleep 600 &`) must die with the engine. The
//! kernel offers only `PR_SET_PDEATHSIG`, which reaches one process, and
//! setting it needs a pre-exec hook, which makes the standard library fork
//! the whole engine (with libtorch: hundreds of MB of page tables to copy
//! and tear down at exec) instead of using `posix_spawn`. Measured on a
//! 501-stage run that was 40-50% of the CPU. With the reaper, a task's
//! shell is started by `posix_spawn` straight into its own group, and the
//! reaper, started once, holds the only thing that outlives the engine:
//! the read end of a pipe. The engine writes `+PGID` after it starts a
//! task and `-PGID` after it has killed the task's group; when the engine
//! dies the pipe reaches end-of-file and the reaper kills every group
//! still listed. The write end is close-on-exec, so no task keeps it open.
//!
//! The reaper is a bash script in its own process group (a Ctrl-C in the
//! terminal does not reach it) that ignores the usual termination signals.
//! Where bash is missing or the reaper cannot start or has died, [`watch`]
//! says so and the shell stage falls back to the old way: a pre-exec
//! `PR_SET_PDEATHSIG` on a supervising shell (see `shell.rs`). Setting
//! `ENGINE_NO_REAPER` forces that fallback (how the tests reach it).
//!
//! One window is left open: the engine killed with SIGKILL between
//! `posix_spawn` returning and its `+PGID` line (a few microseconds).

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Reads `+PGID` / `-PGID` lines (and `+PATH` / `-PATH` for a task's
/// cgroup folder); at end of input, kills the groups and cgroups left.
const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT PIPE
declare -A live cg
while read -r line; do
  case $line in
    +/*) cg[${line#+}]=1 ;;
    -/*) unset "cg[${line#-}]" ;;
    +*) live[${line#+}]=1 ;;
    -*) unset "live[${line#-}]" ;;
  esac
done
for pg in "${!live[@]}"; do kill -KILL -- "-$pg" 2>/dev/null; done
for c in "${!cg[@]}"; do echo 1 > "$c/cgroup.kill"; done 2>/dev/null
sleep 0.2
for c in "${!cg[@]}"; do rmdir "$c"; done 2>/dev/null
exit 0"#;

struct Reaper {
    pipe: Mutex<Option<ChildStdin>>,
}

static REAPER: OnceLock<Result<Reaper, String>> = OnceLock::new();

fn start() -> Result<Reaper, String> {
    if std::env::var_os("ENGINE_NO_REAPER").is_some() {
        return Err("`ENGINE_NO_REAPER` is set".into());
    }
    let bash = "/bin/bash";
    if !std::path::Path::new(bash).exists() {
        return Err(format!("`{bash}` is missing"));
    }
    let mut cmd = Command::new(bash);
    cmd.arg("-c")
        .arg(SCRIPT)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("Failed to start `{bash}`: {e}"))?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| "no pipe to the reaper".to_string())?;
    // Never waited for: it exits when this process does (end of its input)
    // and is then reaped by init.
    std::mem::forget(child);
    Ok(Reaper {
        pipe: Mutex::new(Some(pipe)),
    })
}

fn send(line: &str) -> Result<(), String> {
    let r = REAPER.get_or_init(start).as_ref().map_err(String::clone)?;
    let mut pipe = r.pipe.lock().unwrap_or_else(|p| p.into_inner());
    let Some(w) = pipe.as_mut() else {
        return Err("the reaper has exited".into());
    };
    if let Err(e) = w.write_all(line.as_bytes()) {
        *pipe = None;
        return Err(format!("the reaper has exited ({e})"));
    }
    Ok(())
}

/// Starts the reaper now (it is otherwise started by the first [`watch`]);
/// the reason when it cannot run.
pub fn ready() -> Result<(), String> {
    REAPER
        .get_or_init(start)
        .as_ref()
        .map(|_| ())
        .map_err(String::clone)
}

/// The process group `pgid` dies with this process from now on.
pub fn watch(pgid: i32) -> Result<(), String> {
    send(&format!("+{pgid}\n"))
}

/// The process group `pgid` is gone (its task ended and it was killed).
pub fn forget(pgid: i32) {
    let _ = send(&format!("-{pgid}\n"));
}

/// The task cgroup at `path` (see `cgroup.rs`) is killed if this process
/// dies. A path with a newline cannot be listed (the engine makes none).
pub fn watch_cgroup(path: &std::path::Path) -> Result<(), String> {
    let p = path.to_string_lossy();
    if !p.starts_with('/') || p.contains('\n') {
        return Err(format!("cannot watch cgroup `{p}`"));
    }
    send(&format!("+{p}\n"))
}

/// The task cgroup at `path` was killed and removed.
pub fn forget_cgroup(path: &std::path::Path) {
    let _ = send(&format!("-{}\n", path.to_string_lossy()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
            .unwrap_or(false)
    }

    /// A reaper of our own (not the process-wide one), closed by the test
    /// as the engine's death would close it.
    #[test]
    fn end_of_input_kills_the_groups_still_listed() {
        use std::os::unix::process::CommandExt;
        let r = start().expect("reaper starts");
        let spawn = || {
            let mut c = Command::new("sleep");
            c.arg("60").process_group(0);
            c.spawn().unwrap()
        };
        let (mut kept, mut released) = (spawn(), spawn());
        let mut w = r.pipe.lock().unwrap().take().unwrap();
        let (k, f) = (kept.id() as i32, released.id() as i32);
        w.write_all(format!("+{k}\n+{f}\n-{f}\n").as_bytes())
            .unwrap();
        drop(w);
        let t0 = Instant::now();
        while alive(k) && t0.elapsed() < Duration::from_secs(5) {
            let _ = kept.try_wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kept.try_wait();
        assert!(!alive(k), "a listed group outlived the end of input");
        assert!(alive(f), "a forgotten group was killed");
        released.kill().unwrap();
        released.wait().unwrap();
    }
}
