#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use super::*;
use std::path::PathBuf;
use tokio::io::AsyncReadExt;

fn bash() -> PathBuf {
    PathBuf::from("/bin/bash")
}

async fn run(
    script: &str,
    env: &[(&str, &str)],
    cwd: &Path,
    cgroup: Option<RawFd>,
) -> (ExitStatus, String, String, u32) {
    let env: BTreeMap<OsString, OsString> = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    let program = bash();
    let args = [OsStr::new("-c"), OsStr::new(script)];
    let launch = Launch {
        program: &program,
        args: &args,
        env: &env,
        cwd,
    };
    let mut child = match spawn(&launch, cgroup) {
        Ok(c) => c,
        Err(e) => panic!("spawn failed: {e:?}"),
    };
    let (mut out, mut err) = (String::new(), String::new());
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let (a, b) = tokio::join!(so.read_to_string(&mut out), se.read_to_string(&mut err));
    a.expect("read stdout");
    b.expect("read stderr");
    let status = child.wait().await.expect("wait");
    (status, out, err, child.id())
}

#[tokio::test]
async fn a_command_gets_exactly_its_environment_folder_group_and_pipes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, out, err, pid) = run(
        "echo \"foo=$FOO home=${HOME-unset}\"; pwd; echo $$; cut -d' ' -f5 /proc/$$/stat; if read -r x; then echo \"stdin=$x\"; else echo stdin=eof; fi; echo oops >&2; exit 3",
        &[("FOO", "bar baz"), ("PATH", "/usr/bin:/bin")],
        dir.path(),
        None,
    )
    .await;
    assert_eq!(status.code(), Some(3), "stdout: {out} stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "foo=bar baz home=unset");
    assert_eq!(
        Path::new(lines[1]).canonicalize().expect("pwd"),
        dir.path().canonicalize().expect("dir")
    );
    assert_eq!(lines[2], pid.to_string(), "the shell is the child itself");
    assert_eq!(
        lines[3],
        pid.to_string(),
        "the child leads its own process group"
    );
    assert_eq!(lines[4], "stdin=eof", "stdin is /dev/null");
    assert_eq!(err, "oops\n");
}

#[tokio::test]
async fn sigpipe_is_back_to_its_default_in_the_child() {
    // The Rust runtime ignores SIGPIPE; `yes` must die of it (141), not
    // fail on EPIPE (1).
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, out, _, _) = run(
        "yes | head -n 1 > /dev/null; echo \"${PIPESTATUS[0]}\"",
        &[("PATH", "/usr/bin:/bin")],
        dir.path(),
        None,
    )
    .await;
    assert!(status.success());
    assert_eq!(out.trim(), "141");
}

#[tokio::test]
async fn a_missing_program_or_folder_is_an_error_not_a_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-program");
    let launch = Launch {
        program: &missing,
        args: &[],
        env: &BTreeMap::new(),
        cwd: dir.path(),
    };
    match spawn(&launch, None) {
        Err(SpawnError::Failed(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
        Err(SpawnError::Unsupported(e)) => panic!("unsupported: {e}"),
        Ok(_) => panic!("a missing program started"),
    }
    let gone = dir.path().join("gone");
    let program = bash();
    let launch = Launch {
        program: &program,
        args: &[],
        env: &BTreeMap::new(),
        cwd: &gone,
    };
    match spawn(&launch, None) {
        Err(SpawnError::Failed(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
        Err(SpawnError::Unsupported(e)) => panic!("unsupported: {e}"),
        Ok(_) => panic!("a command started in a missing folder"),
    }
}

#[tokio::test]
async fn a_dropped_child_is_killed_and_reaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = bash();
    let args = [OsStr::new("-c"), OsStr::new("exec sleep 30")];
    let env = BTreeMap::from([(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))]);
    let launch = Launch {
        program: &program,
        args: &args,
        env: &env,
        cwd: dir.path(),
    };
    let child = spawn(&launch, None)
        .map_err(|e| format!("{e:?}"))
        .expect("spawn");
    let pid = child.id() as i32;
    drop(child);
    // Reaped at the drop or at the next spawn.
    let t0 = std::time::Instant::now();
    loop {
        let (s, ..) = run("true", &[], dir.path(), None).await;
        assert!(s.success());
        // SAFETY: signal 0 only checks whether the pid exists.
        let exists = unsafe { libc::kill(pid, 0) } == 0;
        if !exists {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "pid {pid} still exists (running or a zombie) 10 s after its drop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_child_starts_inside_its_cgroup() {
    let Some(cg) = crate::cgroup::TaskCgroup::new() else {
        eprintln!("no writable cgroup v2 tree here: nothing to check");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let held = std::fs::File::open(cg.path()).expect("open the cgroup's folder");
    let (status, out, err, _) = run(
        "cat /proc/self/cgroup",
        &[],
        dir.path(),
        Some(held.as_raw_fd()),
    )
    .await;
    assert!(status.success(), "{err}");
    let name = cg
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let unified = out
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default();
    assert!(
        unified.ends_with(&format!("/{name}")),
        "the child's cgroup is `{unified}`, not `{name}`"
    );
}
