//! A cgroup per shell task, where the machine offers a writable cgroup v2
//! tree with `cgroup.kill` (Linux 5.14+; as root, or under a delegated
//! subtree).
//!
//! Why: a task's processes are killed as a process group, and `setsid` (or
//! a daemonising tool) leaves the group, so such a process outlived its
//! task and even the engine. A cgroup cannot be left: every process forked
//! inside stays a member, and writing `1` to `cgroup.kill` kills them all at
//! once. The task's shell is moved into a fresh cgroup right after it
//! starts (a few microseconds in which it could fork, before it has read
//! its command); the reaper kills the cgroups of tasks still running when
//! the engine dies (see `reaper.rs`). Where no such tree is writable,
//! tasks fall back to their process group alone; `ENGINE_NO_CGROUP` forces
//! that.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The folder task cgroups are made in (this process's own cgroup), if
/// usable.
static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

const PREFIX: &str = "engine-task-";

fn root() -> Option<&'static Path> {
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
    /// Its processes were killed and it was removed now.
    Removed,
    /// It had been removed before.
    AlreadyGone,
    /// Its processes outlived the wait; left for the next engine.
    Left,
}

impl TaskCgroup {
    /// A new, empty cgroup for a task about to start; `None` where cgroups
    /// are unavailable. Made before the task starts, so that moving its
    /// first process in ([`TaskCgroup::join`]) is one write.
    pub fn new() -> Option<TaskCgroup> {
        let root = root()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("{PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir(&path).ok()?;
        Some(TaskCgroup {
            path,
            removed: AtomicBool::new(false),
        })
    }

    /// Moves process `pid` (just started) into the cgroup. Its children
    /// forked from then on are members too.
    pub fn join(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kills every process in the cgroup and removes it once empty (up to
    /// a second; a cgroup whose processes take longer is left for the next
    /// engine to remove). Calling it again returns at once.
    pub fn kill(&self) -> Killed {
        if self.removed.load(Ordering::Acquire) {
            return Killed::AlreadyGone;
        }
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(1) {
            let empty = std::fs::read_to_string(self.path.join("cgroup.procs"))
                .map(|s| s.trim().is_empty())
                .unwrap_or(true);
            if empty {
                match std::fs::remove_dir(&self.path) {
                    Ok(()) => {
                        self.removed.store(true, Ordering::Release);
                        return Killed::Removed;
                    }
                    // Before, a missing folder was retried for the whole
                    // second: every shell task paid it on its drop.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.removed.store(true, Ordering::Release);
                        return Killed::AlreadyGone;
                    }
                    Err(_) => {}
                }
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
        assert_eq!(cg.kill(), Killed::Removed);
        assert!(!cg.path().exists());
        assert_eq!(cg.kill(), Killed::AlreadyGone);
        // Removed behind its back (another engine's clean-up): no wait either.
        let other = TaskCgroup::new().unwrap();
        std::fs::remove_dir(other.path()).unwrap();
        assert_eq!(other.kill(), Killed::AlreadyGone);
    }
}

/// Whether task cgroups are in use on this machine (for tests and notes).
pub fn available() -> bool {
    root().is_some()
}
