//! `deps:` through the `engine` binary: a stage reruns when a declared
//! file changes, `plan` names the file, a missing file is a located error
//! from `validate`, `plan` and `run` before anything runs, and the stat
//! cache in `.engine/` survives being corrupted.

use std::path::Path;
use std::process::{Command, Output};

fn engine(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engine"))
        .env_remove("ENGINE_STORE")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes a file with an mtime a minute ago, out of the window in which
/// the stat cache does not trust a file (as files of a checkout are).
fn write(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(past).unwrap();
}

/// A repository folder with a pipeline whose shell stage runs a script
/// over a data file, both declared; the engine runs from `repo/`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    write(&repo.join("data/in.txt"), "hello\n");
    write(&repo.join("scripts/count.sh"), "wc -l < \"$1\"\n");
    let yaml = format!(
        r#"name: deps-cli
stages:
  count:
    uses: shell
    deps:
      - data/in.txt
      - "scripts/*.sh"
    with:
      run: bash "$REPO/scripts/count.sh" "$REPO/data/in.txt" > n.txt
      env: {{ REPO: "{}" }}
      outputs: {{ n: n.txt }}
"#,
        repo.display()
    );
    write(&repo.join("pipeline.yaml"), &yaml);
    dir
}

fn plan_json(dir: &Path) -> serde_json::Value {
    let o = engine(dir, &["plan", "pipeline.yaml", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_changed_declared_file_reruns_the_stage_and_plan_names_it() {
    let dir = setup();
    let repo = dir.path();
    let o = engine(repo, &["run", "pipeline.yaml"]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(repo.join(".engine/stat-cache.json").is_file());

    let o = engine(repo, &["plan", "pipeline.yaml", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));

    write(&repo.join("scripts/count.sh"), "wc -c < \"$1\"\n");
    let d = plan_json(repo);
    assert_eq!(d[0]["action"], "run");
    assert_eq!(d[0]["reason"], "input changed: scripts/count.sh");
    let o = engine(repo, &["run", "pipeline.yaml"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("1 done"), "{}", text(&o.stderr));

    // Touched, same content: still cached.
    write(&repo.join("scripts/count.sh"), "wc -c < \"$1\"\n");
    let d = plan_json(repo);
    assert_eq!(d[0]["action"], "cached", "{d}");

    // A corrupt stat cache is a warning, and rebuilt.
    std::fs::write(repo.join(".engine/stat-cache.json"), "garbage").unwrap();
    let o = engine(repo, &["plan", "pipeline.yaml", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("stat cache"),
        "{}",
        text(&o.stderr)
    );
    let o = engine(repo, &["plan", "pipeline.yaml"]);
    assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
}

#[test]
fn a_missing_declared_file_is_a_located_error_before_anything_runs() {
    let dir = setup();
    let repo = dir.path();
    std::fs::remove_file(repo.join("data/in.txt")).unwrap();
    for cmd in ["validate", "plan", "run"] {
        let o = engine(repo, &[cmd, "pipeline.yaml"]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", text(&o.stdout));
        let err = text(&o.stderr);
        assert!(
            err.contains(
                "pipeline.yaml:6:9: stage `count` depends on `data/in.txt`, which does not exist"
            ),
            "{cmd}: {err}"
        );
    }
    assert!(!repo.join(".engine/store").exists(), "nothing ran");
    let o = engine(repo, &["validate", "pipeline.yaml", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"][0]["line"], 6);
}

#[test]
fn deps_from_git_uses_blob_ids_of_clean_files() {
    let dir = setup();
    let repo = dir.path();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .current_dir(repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "data", "scripts", "pipeline.yaml"]);
    git(&["commit", "-q", "-m", "init"]);
    let o = engine(repo, &["run", "pipeline.yaml", "--deps-from-git"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = engine(
        repo,
        &["plan", "pipeline.yaml", "--deps-from-git", "--exit-code"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    // An edit makes the file dirty: hashed, so it no longer matches.
    write(&repo.join("data/in.txt"), "hello\nworld\n");
    let o = engine(
        repo,
        &["plan", "pipeline.yaml", "--deps-from-git", "--json"],
    );
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d[0]["reason"], "input changed: data/in.txt");
}
