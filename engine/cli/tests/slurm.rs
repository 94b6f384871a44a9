//! The Slurm executor against a real slurmctld + slurmd (started by
//! `scripts/test.sh`, which sets `ENGINE_TEST_SLURM=1` and `SLURM_CONF`).

use std::path::Path;
use std::process::Command;

fn slurm_ready() -> bool {
    if std::env::var_os("ENGINE_TEST_SLURM").is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must start Slurm (scripts/test.sh start_slurm)"
    );
    eprintln!(
        "skipped: run scripts/test.sh (or set ENGINE_TEST_SLURM=1 with SLURM_CONF) to test Slurm"
    );
    false
}

fn engine(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.current_dir(dir)
        .env_remove("ENGINE_STORE")
        .env_remove("ENGINE_PROFILE")
        .env_remove("ENGINE_EXECUTOR")
        .env("XDG_CONFIG_HOME", "/nonexistent/engine-test-config");
    c
}

const PIPELINE: &str = r#"
name: onslurm
resources:
  small: { cpus: 1, memory: 64MiB }
stages:
  where:
    uses: shell
    resources: small
    matrix: { env.N: [1, 2] }
    with:
      run: mkdir -p out && echo "job=$SLURM_JOB_ID n=$N" > out/where.txt
      outputs: { where: out/where.txt }
  gather:
    uses: builtin.concat
    needs: [where]
  broken:
    uses: shell
    with:
      run: echo "giving up on the node" && exit 3
      outputs: { x: out/x.txt }
"#;

#[test]
fn tasks_run_as_slurm_jobs() {
    if !slurm_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).unwrap();
    let o = engine(dir.path())
        .args(["run", "p.yaml", "--executor", "slurm"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("done     gather"), "{err}");
    assert!(
        err.contains("exited with status 3") && err.contains("giving up on the node"),
        "{err}"
    );
    let g = engine(dir.path())
        .args(["get", "latest/gather", "out"])
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let text = std::fs::read_to_string(dir.path().join("out/concat.txt")).unwrap();
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("job=") && !l.starts_with("job= "))
        .collect();
    assert_eq!(jobs.len(), 2, "each task ran inside a Slurm job: {text}");
    let show = engine(dir.path())
        .args(["show", "latest/where[env.N=1]"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("submitted Slurm job"));
    // Rerun: cached tasks are not submitted again.
    let o = engine(dir.path())
        .args(["run", "p.yaml", "--executor", "slurm"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("cached   where[env.N=2]"));
}

#[test]
fn a_memory_store_is_refused_for_slurm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).unwrap();
    let o = engine(dir.path())
        .args([
            "run",
            "p.yaml",
            "--executor",
            "slurm",
            "--store",
            "memory://x",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs a store the nodes can reach"));
}

/// A profile in `engine.toml` picks the executor, the store and the
/// cluster's settings per class, with no flag but `--profile`: the jobs get
/// the class's partition, time limit and extra arguments, job logs go where
/// it says, and `max_jobs = 1` keeps the class's jobs one at a time.
#[test]
fn a_profile_sets_executor_store_and_per_class_sbatch_settings() {
    if !slurm_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("shared-store");
    std::fs::write(
        dir.path().join("engine.toml"),
        format!(
            r#"
[profiles.cluster]
executor = "slurm"
store = "fs://{}"

[profiles.cluster.slurm]
log_dir = "job-logs"  # relative to this file
time = "00:07:00"

[profiles.cluster.slurm.classes.small]
partition = "main"
max_jobs = 1
extra_args = ["--comment=from-profile"]
"#,
            store.display()
        ),
    )
    .unwrap();
    let pipeline = r#"
name: profiled
resources:
  small: { cpus: 1, memory: 64MiB }
stages:
  where:
    uses: shell
    resources: small
    matrix: { env.N: [1, 2] }
    with:
      run: mkdir -p out && echo "job=$SLURM_JOB_ID n=$N" > out/where.txt && sleep 1
      outputs: { where: out/where.txt }
"#;
    std::fs::write(dir.path().join("p.yaml"), pipeline).unwrap();
    let o = engine(dir.path())
        .args(["--profile", "cluster", "run", "p.yaml", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(
        store.join("runs").is_dir(),
        "the profile's store was not used"
    );
    assert!(
        !dir.path().join(".engine/store").exists(),
        "the default store was used"
    );
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("job-logs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(logs.len(), 2, "job logs belong in the profile's log_dir");
    let show = engine(dir.path())
        .args(["--profile", "cluster", "show", "latest/where[env.N=1]"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout).into_owned();
    for arg in [
        "--partition=main",
        "--time=00:07:00",
        "--comment=from-profile",
    ] {
        assert!(text.contains(arg), "no `{arg}` in the submission: {text}");
    }
    // Slurm took them: the job's time limit is the profile's.
    let job = text
        .split("submitted Slurm job ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("job id in the task log")
        .to_string();
    let sc = Command::new("scontrol")
        .args(["show", "job", &job])
        .output()
        .unwrap();
    let sc = String::from_utf8_lossy(&sc.stdout);
    if !sc.is_empty() {
        assert!(sc.contains("TimeLimit=00:07:00"), "{sc}");
    }
    // One job of the class at a time: the two tasks' held spans do not overlap.
    let rec = engine(dir.path())
        .args(["--profile", "cluster", "show", "latest", "--json"])
        .output()
        .unwrap();
    let rec: serde_json::Value = serde_json::from_slice(&rec.stdout).unwrap();
    let spans: Vec<[f64; 2]> = rec["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::from_value::<Vec<[f64; 2]>>(t["held_ms"].clone()).unwrap()[0])
        .collect();
    assert_eq!(spans.len(), 2);
    let (a, b) = (spans[0], spans[1]);
    assert!(a[1] <= b[0] || b[1] <= a[0], "ran at once: {spans:?}");
}
