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
//! shell is started without a fork of the engine (the engine's own
//! `clone3` into the task's cgroup, see `spawn.rs`, or `posix_spawn`)
//! straight into its own group, and the reaper, started once, holds the
//! only thing that outlives the engine: the read end of a pipe. The engine writes `+PGID` after it starts a
//! task and `-PGID` after it has killed the task's group (only for a task
//! not born in its own cgroup: one that was holds all its processes there,
//! found by name as below, so it needs no message); when the engine
//! dies the pipe reaches end-of-file and the reaper kills every group
//! still listed, and every task cgroup of the engine (found by name,
//! `ROOT/engine-task-PID-*`, see `cgroup.rs`: no message per cgroup, which
//! bash would read a byte per system call). The write end is
//! close-on-exec, so no task keeps it open.
//!
//! The reaper is a bash script in its own process group (a Ctrl-C in the
//! terminal does not reach it) that ignores the usual termination signals.
//! Where bash is missing or the reaper cannot start or has died, [`watch`]
//! says so and the shell stage falls back to the old way: a pre-exec
//! `PR_SET_PDEATHSIG` on a supervising shell (see `shell.rs`). Setting
//! `ENGINE_NO_REAPER` forces that fallback (how the tests reach it).
//!
//! One window is left open: the engine killed with SIGKILL between
//! the spawn returning and its `+PGID` line (a few microseconds); a
//! task's cgroup closes it where the machine has them (the reaper kills
//! those by name).

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Reads `+PGID` / `-PGID` lines; at end of input, kills the groups left
/// and the engine's task cgroups (`$ENGINE_CGROUPS`, the engine's pid
/// `$ENGINE_PID`), then removes those cgroups.
const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT PIPE
declare -A live
while read -r line; do
  case $line in
    +*) live[${line#+}]=1 ;;
    -*) unset "live[${line#-}]" ;;
  esac
done
for pg in "${!live[@]}"; do kill -KILL -- "-$pg" 2>/dev/null; done
[ -n "$ENGINE_CGROUPS" ] || exit 0
shopt -s nullglob
cgs=("$ENGINE_CGROUPS/engine-task-$ENGINE_PID-"*)
for c in "${cgs[@]}"; do echo 1 > "$c/cgroup.kill"; done 2>/dev/null
sleep 0.2
for c in "${cgs[@]}"; do rmdir "$c"; done 2>/dev/null
exit 0"#;

struct Reaper {
    pid: libc::pid_t,
    pipe: Mutex<Option<ChildStdin>>,
}

impl Reaper {
    /// Whether the reaper process has exited (killed by hand or by the
    /// OOM killer: it ignores the usual signals). One `waitid` that leaves
    /// it unreaped; a task born in its cgroup sends no message, so this is
    /// how such a task learns that nobody would kill it with the engine.
    fn exited(&self) -> bool {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`; WNOWAIT leaves the child
        // as it is, WNOHANG returns at once.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (or left it zeroed: no child changed).
        r == 0 && unsafe { info.si_pid() } != 0
    }
}

static REAPER: OnceLock<Result<Reaper, String>> = OnceLock::new();

fn start() -> Result<Reaper, String> {
    start_for(std::process::id())
}

/// A reaper for the tasks of the process `pid` (this one, except in tests).
fn start_for(pid: u32) -> Result<Reaper, String> {
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
        .env("ENGINE_PID", pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    if let Some(root) = crate::cgroup::root() {
        cmd.env("ENGINE_CGROUPS", root);
    }
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
    let pid = child.id() as libc::pid_t;
    std::mem::forget(child);
    Ok(Reaper {
        pid,
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
/// the reason when it cannot run or has exited.
pub fn ready() -> Result<(), String> {
    let r = REAPER.get_or_init(start).as_ref().map_err(String::clone)?;
    if r.exited() {
        return Err("the reaper has exited".into());
    }
    Ok(())
}

/// The process group `pgid` dies with this process from now on.
pub fn watch(pgid: i32) -> Result<(), String> {
    send(&format!("+{pgid}\n"))
}

/// The process group `pgid` is gone (its task ended and it was killed).
pub fn forget(pgid: i32) {
    let _ = send(&format!("-{pgid}\n"));
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

    /// A task born in its cgroup tells the reaper nothing, so it asks
    /// whether the reaper still runs: it does until its input ends, and an
    /// exited one is seen as exited (not reaped, as a zombie is alive to
    /// `kill(pid, 0)`).
    #[test]
    fn an_exited_reaper_is_seen_as_exited() {
        let r = start().expect("reaper starts");
        assert!(!r.exited(), "a running reaper was taken for exited");
        drop(r.pipe.lock().unwrap().take());
        let t0 = Instant::now();
        while !r.exited() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            r.exited(),
            "a reaper whose input ended was not seen as exited"
        );
        assert!(r.exited(), "asking twice reaped it");
        // SAFETY: reaps the test's own child, which has exited.
        unsafe { libc::waitpid(r.pid, std::ptr::null_mut(), 0) };
    }

    /// The engine's task cgroups are found by their names, with no message
    /// per task: at the end of input their processes die and the cgroups
    /// go. (A made-up engine pid, so that no cgroup of this test process's
    /// own tasks is touched.)
    #[test]
    fn end_of_input_kills_the_task_cgroups_of_the_engine() {
        let Some(root) = crate::cgroup::root() else {
            eprintln!("no writable cgroup v2 tree with cgroup.kill here: nothing to test");
            return;
        };
        let fake = 4_000_000_000u32 - std::process::id();
        let mine = root.join(format!("engine-task-{fake}-7"));
        let other = root.join(format!("engine-task-{}-7", fake - 1));
        std::fs::create_dir(&mine).unwrap();
        std::fs::create_dir(&other).unwrap();
        let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = sleeper.id() as i32;
        std::fs::write(mine.join("cgroup.procs"), pid.to_string()).unwrap();
        let r = start_for(fake).expect("reaper starts");
        drop(r.pipe.lock().unwrap().take());
        let t0 = Instant::now();
        while (alive(pid) || mine.exists()) && t0.elapsed() < Duration::from_secs(5) {
            let _ = sleeper.try_wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = sleeper.try_wait();
        let (killed, removed, spared) = (!alive(pid), !mine.exists(), other.exists());
        let _ = std::fs::remove_dir(&other);
        if !killed {
            let _ = sleeper.kill();
        }
        assert!(
            killed,
            "a process in the engine's task cgroup outlived the end of input"
        );
        assert!(
            removed,
            "the engine's task cgroup {} was left",
            mine.display()
        );
        assert!(spared, "another engine's task cgroup was removed");
    }
}
