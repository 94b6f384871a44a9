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
    c.current_dir(dir).env_remove("ENGINE_STORE");
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
