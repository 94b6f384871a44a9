//! A cgroup per shell task, where the machine offers a writable cgroup v2
//! tree with `cgroup.kill` (Linux 5.14+; as root, or under a delegated
//! subtree).
//!
//! Why: a task's processes are killed as a process group, and `setsid` (or
//! a daemonising tool) leaves the group, so such a process outlived its
//! task and even the engine. A cgroup cannot be left: every process forked
//! inside stays a member, and writing `1` to `cgroup.kill` kills them all at
//! once. The task's shell is started inside its cgroup (`clone3` with
//! `CLONE_INTO_CGROUP`, see `spawn.rs`), or, where the machine cannot do
//! that, moves itself in before it runs anything of the command (see
//! `shell.rs`); the reaper kills the cgroups
//! of tasks still running when the engine dies (see `reaper.rs`: it finds
//! them by name, `engine-task-PID-N`, so no per-task message is needed).
//! Where no such tree is writable, tasks fall back to their process group
//! alone; `ENGINE_NO_CGROUP` forces that.
//!
//! A cgroup emptied at a task's end is kept for the next task (up to
//! [`MAX_IDLE`] of them) instead of being removed: making and removing one
//! costs the kernel more than the task's own spawn on a machine with many
//! small tasks. The idle ones are removed by the reaper when the engine
//! exits, or by the next engine (`remove_dead`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The folder task cgroups are made in (this process's own cgroup), if
/// usable.
static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);
/// Emptied task cgroups, ready for the next task.
static IDLE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// The most emptied cgroups kept for reuse; more are removed.
const MAX_IDLE: usize = 64;

const PREFIX: &str = "engine-task-";

/// The folder this process makes its task cgroups in, if it can (the
/// reaper kills `ROOT/engine-task-PID-*` when the process dies).
pub(crate) fn root() -> Option<&'static Path> {
    ROOT.get_or_init(find_root).as_deref()
}

/// This process's cgroup v2 folder, when a child cgroup can be made in it
/// and killed; cgroups left by dead engines are removed on the way.
fn find_root() -> Option<PathBuf> {
    if std::env::var_os("ENGINE_NO_CGROUP").is_some() {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mountpoint options... - fstype ...
    let dir = info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if !post.starts_with("cgroup2 ") {
            return None;
        }
        let f: Vec<&str> = pre.split(' ').collect();
        let (mroot, mpoint) = (*f.get(3)?, *f.get(4)?);
        let inside = rel.strip_prefix(mroot)?.trim_start_matches('/');
        Some(Path::new(mpoint).join(inside))
    })?;
    remove_dead(&dir);
    let probe = dir.join(format!("{PREFIX}probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let ok = probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    ok.then_some(dir)
}

/// Removes the empty task cgroups of engines that no longer run (killed
/// with SIGKILL before they could clean up; the reaper killed their
/// processes).
fn remove_dead(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 sends nothing; it only checks that the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// One task's cgroup: its processes are killed, and the cgroup removed,
/// when it is dropped.
pub struct TaskCgroup {
    path: PathBuf,
    /// Removed already: a second [`TaskCgroup::kill`] (the explicit one,
    /// then the drop) has nothing to wait for.
    removed: AtomicBool,
}

/// What [`TaskCgroup::kill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// It is empty now (its processes, if any, were killed) and was kept
    /// for the next task or removed.
    Released,
    /// It had been removed before.
    AlreadyGone,
    /// Its processes outlived the wait; left for the next engine.
    Left,
}

impl TaskCgroup {
    /// An empty cgroup for a task about to start (one a finished task
    /// emptied, or a new one); `None` where cgroups are unavailable. Made
    /// before the task starts, so that moving its first process in is one
    /// write.
    pub fn new() -> Option<TaskCgroup> {
        let root = root()?;
        loop {
            let Some(path) = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                break;
            };
            // Removed behind this process's back (by hand): make another.
            if path.join("cgroup.procs").exists() {
                return Some(TaskCgroup {
                    path,
                    removed: AtomicBool::new(false),
                });
            }
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("{PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir(&path).ok()?;
        Some(TaskCgroup {
            path,
            removed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kills every process in the cgroup and, once it is empty, keeps it
    /// for the next task or removes it (waiting up to a second; a cgroup
    /// whose processes take longer is left for the next engine to remove).
    /// Calling it again returns at once.
    pub fn kill(&self) -> Killed {
        if self.removed.load(Ordering::Acquire) {
            return Killed::AlreadyGone;
        }
        let procs = self.path.join("cgroup.procs");
        let t0 = Instant::now();
        let mut killed = false;
        loop {
            match std::fs::read_to_string(&procs) {
                // Removed behind this process's back (another engine's
                // clean-up): nothing to wait for.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.removed.store(true, Ordering::Release);
                    return Killed::AlreadyGone;
                }
                Ok(listed) if listed.trim().is_empty() => {
                    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
                    if idle.len() < MAX_IDLE {
                        idle.push(self.path.clone());
                        self.removed.store(true, Ordering::Release);
                        return Killed::Released;
                    }
                    drop(idle);
                    match std::fs::remove_dir(&self.path) {
                        Ok(()) => {
                            self.removed.store(true, Ordering::Release);
                            return Killed::Released;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            self.removed.store(true, Ordering::Release);
                            return Killed::AlreadyGone;
                        }
                        Err(_) => {}
                    }
                }
                // Most tasks leave nothing behind: the kill is written
                // only when something is.
                _ if !killed => {
                    let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
                    killed = true;
                    continue;
                }
                _ => {}
            }
            if t0.elapsed() >= Duration::from_secs(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Killed::Left
    }
}

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_kill_finds_the_cgroup_gone_and_does_not_wait() {
        let Some(cg) = TaskCgroup::new() else {
            eprintln!("no writable cgroup v2 tree with cgroup.kill here: nothing to test");
            return;
        };
        assert!(cg.path().exists());
        assert_eq!(cg.kill(), Killed::Released);
        assert_eq!(cg.kill(), Killed::AlreadyGone);
        // Removed behind its back (another engine's clean-up): no wait either.
        let other = TaskCgroup::new().unwrap();
        std::fs::remove_dir(other.path()).unwrap();
        assert_eq!(other.kill(), Killed::AlreadyGone);
    }

    /// A cgroup whose processes are still running is killed, then serves
    /// the next task, empty.
    #[test]
    fn an_emptied_cgroup_is_used_again_after_its_processes_are_killed() {
        let Some(cg) = TaskCgroup::new() else {
            eprintln!("no writable cgroup v2 tree with cgroup.kill here: nothing to test");
            return;
        };
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(cg.path().join("cgroup.procs"), sleeper.id().to_string()).unwrap();
        let path = cg.path().to_path_buf();
        // Reaped by another thread, as the engine's own child would be.
        let reaper = std::thread::spawn(move || sleeper.wait().unwrap());
        assert_eq!(cg.kill(), Killed::Released);
        let status = reaper.join().unwrap();
        assert!(!status.success(), "the sleep was not killed: {status}");
        // Other tests in this process share the pool: look for ours.
        let mut taken = vec![];
        let reused = loop {
            let Some(next) = TaskCgroup::new() else {
                break false;
            };
            if next.path() == path {
                break true;
            }
            if !IDLE.lock().unwrap().contains(&path) {
                taken.push(next);
                break false;
            }
            taken.push(next);
        };
        assert!(
            reused,
            "the emptied cgroup {} was not used again",
            path.display()
        );
        assert!(
            std::fs::read_to_string(path.join("cgroup.procs"))
                .unwrap()
                .trim()
                .is_empty()
        );
    }
}

/// Whether task cgroups are in use on this machine (for tests and notes).
pub fn available() -> bool {
    root().is_some()
}
