//! Scratch folders: private to one run, removed when their run's process
//! is gone; an attempt's own folder is made in the run's, and an emptied
//! one serves a later attempt.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A scratch folder only this run can use: a new folder with a random name
/// and mode 0700 under `root` (never one someone else created first), with
/// an `owner` file naming host and pid. Folders of runs whose process is
/// gone (killed with SIGKILL) are removed first.
pub(super) fn private_scratch(
    root: &std::path::Path,
    run_id: &str,
) -> std::io::Result<tempfile::TempDir> {
    std::fs::create_dir_all(root)?;
    remove_dead_scratch(root);
    let dir = tempfile::Builder::new()
        .prefix(&format!("engine-run-{run_id}-"))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(root)?;
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::write(
        dir.path().join("owner"),
        format!("{host} {}\n", std::process::id()),
    )?;
    Ok(dir)
}

/// Removes `engine-run-*` folders under `root` that belong to this user and
/// to a process on this host that no longer exists.
pub(super) fn remove_dead_scratch(root: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("engine-run-") {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(path.join("owner")) else {
            continue;
        };
        let mut it = owner.split_whitespace();
        let (Some(h), Some(pid)) = (it.next(), it.next().and_then(|p| p.parse::<i32>().ok()))
        else {
            continue;
        };
        // SAFETY: signal 0 sends nothing; it only checks that the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if h == host && !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Emptied scratch folders of this run's finished attempts, each handed to
/// a later attempt under that attempt's name (one `rename`) instead of
/// being removed and another made: on ext4, `mkdir` and `rmdir` of a folder
/// took 150 µs together, a rename in the same folder 3 µs (bench/README.md,
/// "The next command first").
#[derive(Default)]
pub(crate) struct ScratchPool {
    idle: Mutex<Vec<PathBuf>>,
}

/// The most emptied folders a run keeps (about its parallel tasks); more
/// are removed.
const MAX_IDLE: usize = 64;

impl ScratchPool {
    /// Makes the folder `dir`: an idle one renamed to it, or a new one.
    pub(crate) fn make(&self, dir: &Path) -> std::io::Result<()> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(idle) = idle {
            if std::fs::rename(&idle, dir).is_ok() {
                return Ok(());
            }
            // Gone or blocked (removed by hand, `dir` made meanwhile): the
            // ordinary way, and the idle one is forgotten (the run's folder
            // is removed at its end).
        }
        std::fs::create_dir_all(dir)
    }

    /// After an attempt: its folder is kept for the next attempt if it is
    /// a plain, empty folder its owner can use (a command may have emptied,
    /// replaced or `chmod`ed it), otherwise removed. Most are empty by now
    /// (a shell task's outputs moved into the store), and checking that is
    /// two cheap calls; a full one is removed on the blocking pool.
    pub(crate) async fn release(&self, dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return;
        };
        let usable = meta.is_dir() && meta.permissions().mode() & 0o700 == 0o700;
        let empty = usable
            && std::fs::read_dir(dir)
                .map(|mut entries| entries.next().is_none())
                .unwrap_or(false);
        if empty {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(dir.to_path_buf());
                return;
            }
        }
        remove_scratch(dir).await;
    }
}

/// Removes a scratch folder: one `rmdir` on this thread when it is empty,
/// the whole tree on the blocking pool when it is not.
pub(super) async fn remove_scratch(scratch: &Path) {
    match std::fs::remove_dir(scratch) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => {
            let _ = tokio::fs::remove_dir_all(scratch).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn pooled(pool: &ScratchPool) -> usize {
        pool.idle.lock().unwrap().len()
    }

    #[tokio::test]
    async fn an_emptied_folder_serves_the_next_attempt_under_its_name() {
        let run = tempfile::tempdir().unwrap();
        let pool = ScratchPool::default();
        let (a, b) = (run.path().join("a.1"), run.path().join("b.1"));
        pool.make(&a).unwrap();
        assert!(a.is_dir());
        pool.release(&a).await;
        assert_eq!(pooled(&pool), 1, "an empty folder was not kept");
        assert!(a.is_dir(), "a kept folder was removed");
        pool.make(&b).unwrap();
        assert!(b.is_dir() && !a.exists(), "the kept folder was not renamed");
        assert_eq!(pooled(&pool), 0);
        // A folder never made (a stage that wanted none) is nothing to keep.
        pool.release(&run.path().join("never.1")).await;
        assert_eq!(pooled(&pool), 0);
    }

    #[tokio::test]
    async fn a_folder_left_full_or_unusable_is_removed_not_kept() {
        let run = tempfile::tempdir().unwrap();
        let pool = ScratchPool::default();
        let full = run.path().join("full.1");
        pool.make(&full).unwrap();
        std::fs::create_dir(full.join("sub")).unwrap();
        std::fs::write(full.join("sub/left.txt"), "x").unwrap();
        pool.release(&full).await;
        assert!(!full.exists(), "a folder with files in it was left");
        let locked = run.path().join("locked.1");
        pool.make(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        pool.release(&locked).await;
        assert!(
            !locked.exists(),
            "a folder its owner cannot write to was left"
        );
        let linked = run.path().join("linked.1");
        std::os::unix::fs::symlink(run.path(), &linked).unwrap();
        pool.release(&linked).await;
        assert_eq!(pooled(&pool), 0, "a full, locked or linked folder was kept");
        assert!(run.path().is_dir(), "a symlink's target was removed");
    }

    #[tokio::test]
    async fn an_idle_folder_removed_behind_the_pools_back_is_replaced_by_a_new_one() {
        let run = tempfile::tempdir().unwrap();
        let pool = ScratchPool::default();
        let (a, b) = (run.path().join("a.1"), run.path().join("b.1"));
        pool.make(&a).unwrap();
        pool.release(&a).await;
        std::fs::remove_dir(&a).unwrap();
        pool.make(&b).unwrap();
        assert!(b.is_dir());
    }
}
