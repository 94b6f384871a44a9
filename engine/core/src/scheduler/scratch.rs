//! Scratch folders: private to one run, removed when their run's process
//! is gone.

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
