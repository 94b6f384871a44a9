//! The `engine` binary, end to end: exit codes, messages, snapshots of the
//! DAG and reports, a killed run resumed, Ctrl-C, and every example.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn engine() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.env_remove("ENGINE_STORE").env("CI", "true");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    engine().current_dir(dir).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn filters(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_string();
        // Run ids, digests and timings vary between runs.
        for word in
            line.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',' || c == '=')
        {
            let is_run =
                word.len() == 24 && word.chars().nth(8) == Some('-') && word.starts_with("20");
            let is_hex = word.len() >= 12 && word.chars().all(|c| c.is_ascii_hexdigit());
            if is_run {
                l = l.replace(word, "[RUN]");
            } else if is_hex {
                l = l.replace(word, "[DIGEST]");
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out.replace(&repo().display().to_string(), "[REPO]")
}

#[test]
fn validate_reports_every_error_with_locations() {
    let o = engine()
        .arg("validate")
        .arg(fixture("invalid.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!(filters(&text(&o.stderr)));
}

#[test]
fn render_and_validate_a_template_variant() {
    let dir = repo().join("examples/templated");
    let o = engine()
        .current_dir(&dir)
        .args([
            "render",
            "pipeline.yaml.j2",
            "-f",
            "values/hockey.yaml",
            "--set",
            "batch=3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("name: clips-hockey"));
    assert!(out.contains("batch: 3"));
    assert!(out.contains("matrix: { env.HIDDEN: [32, 64, 128] }"));
    let o = engine()
        .current_dir(&dir)
        .args(["validate", "pipeline.yaml.j2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!(text(&o.stderr));
}

#[test]
fn dag_snapshots() {
    let hello = repo().join("examples/hello.yaml");
    let dot = engine().arg("dag").arg(&hello).output().unwrap();
    insta::assert_snapshot!("dag_dot", text(&dot.stdout));
    let t = repo().join("examples/templated/pipeline.yaml.j2");
    let vals = repo().join("examples/templated/values/basketball.yaml");
    let mm = engine()
        .arg("dag")
        .arg(&t)
        .arg("-f")
        .arg(&vals)
        .args(["--format", "mermaid"])
        .output()
        .unwrap();
    insta::assert_snapshot!("dag_mermaid", text(&mm.stdout));
}

#[test]
fn run_plan_show_runs_and_refs() {
    let dir = tempfile::tempdir().unwrap();
    let hello = repo().join("examples/hello.yaml");
    let h = hello.to_str().unwrap();
    let plan = run_in(dir.path(), &["plan", h]);
    assert!(plan.status.success());
    insta::assert_snapshot!("plan_cold", filters(&text(&plan.stdout)));

    let o = run_in(dir.path(), &["run", h, "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let events: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["counts"]["done"], 4);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "task_finished" && e["task"] == "shout")
    );
    let run_id = summary["run"].as_str().unwrap().to_string();

    let plan = run_in(dir.path(), &["plan", h]);
    insta::assert_snapshot!("plan_warm", filters(&text(&plan.stdout)));

    let o = run_in(dir.path(), &["run", h]);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("4 cached"), "{}", text(&o.stderr));

    let runs = run_in(dir.path(), &["runs"]);
    assert_eq!(text(&runs.stdout).lines().count(), 3);
    let show = run_in(dir.path(), &["show", &run_id]);
    let s = text(&show.stdout);
    assert!(
        s.contains("status    succeeded")
            && s.contains("shout")
            && s.contains("items 5/5 run, 0 cached"),
        "{s}"
    );
    let task = run_in(dir.path(), &["show", &format!("{run_id}/report")]);
    let t = text(&task.stdout);
    assert!(
        t.contains("from run") && t.contains("5 inputs/gather/out/concat.txt"),
        "{t}"
    );

    // An artifact by digest prefix shows its lineage back to the first stage.
    let json = run_in(dir.path(), &["show", &format!("{run_id}/gather"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let digest = v["task"]["outputs"]["out"].as_str().unwrap().to_string();
    let art = run_in(dir.path(), &["show", &digest[..12]]);
    let a = text(&art.stdout);
    assert!(
        a.contains("<- out `gather`") && a.contains("<- items `make`"),
        "{a}"
    );

    let set = run_in(
        dir.path(),
        &[
            "ref",
            "set",
            "models/hello@production",
            &digest[..12],
            "--note",
            "first",
        ],
    );
    assert!(set.status.success(), "{}", text(&set.stderr));
    let get = run_in(dir.path(), &["ref", "get", "models/hello@production"]);
    assert_eq!(text(&get.stdout).trim(), digest);
    let log = run_in(dir.path(), &["ref", "log", "models/hello@production"]);
    assert!(text(&log.stdout).contains("first"));
    let bad = run_in(dir.path(), &["ref", "get", "models/none"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("no ref `models/none`"));
}

#[test]
fn a_failed_run_exits_1_and_names_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &["run", fixture("failing.yaml").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("failed: broken: the model file `weights.pt` is missing"),
        "{e}"
    );
    assert!(
        e.contains("skipped  after: upstream `broken` failed"),
        "{e}"
    );
    assert!(e.contains("see its log: engine show"), "{e}");
}

fn wait_for(path: &Path, limit: Duration) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_run_resumes_from_finished_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("nap-started");
    let p = fixture("napping.yaml.j2");
    let mut child = engine()
        .current_dir(dir.path())
        .arg("run")
        .arg(&p)
        .args(["--set", "nap=60", "--set"])
        .arg(format!("marker={}", marker.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&marker, Duration::from_secs(30));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let o = engine()
        .current_dir(dir.path())
        .arg("run")
        .arg(&p)
        .args(["--set", "nap=0", "--set"])
        .arg(format!("marker={}", marker.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("cached   first"), "{e}");
    assert!(e.contains("done     nap"), "{e}");
}

#[test]
fn ctrl_c_cancels_cleanly_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("nap-started");
    let p = fixture("napping.yaml.j2");
    let child = engine()
        .current_dir(dir.path())
        .arg("run")
        .arg(&p)
        .args(["--set", "nap=61", "--set"])
        .arg(format!("marker={}", marker.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&marker, Duration::from_secs(30));
    let t0 = Instant::now();
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let o = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("cancelled nap") || e.contains("cancelled"),
        "{e}"
    );
    let runs = run_in(dir.path(), &["runs"]);
    assert!(
        text(&runs.stdout).contains("cancelled"),
        "{}",
        text(&runs.stdout)
    );
    // No sleeping process was left behind.
    let ps = Command::new("pgrep")
        .args(["-f", "sleep 61"])
        .output()
        .unwrap();
    assert!(
        text(&ps.stdout).trim().is_empty(),
        "left running: {}",
        text(&ps.stdout)
    );
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn every_example_runs() {
    let examples = repo().join("examples");
    let mut ran = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let mut args: Vec<String> = vec!["run".into(), p.display().to_string()];
        if p.is_dir() {
            let t = p.join("pipeline.yaml.j2");
            if !t.exists() {
                continue;
            }
            for v in std::fs::read_dir(p.join("values")).unwrap() {
                let v = v.unwrap().path();
                let dir = tempfile::tempdir().unwrap();
                let o = engine()
                    .current_dir(dir.path())
                    .arg("run")
                    .arg(&t)
                    .arg("-f")
                    .arg(&v)
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "{name} with {}: {}",
                    v.display(),
                    text(&o.stderr)
                );
                ran += 1;
            }
            continue;
        }
        if !name.ends_with(".yaml") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        args.push("--store".into());
        args.push("fs://store".into());
        let o = engine()
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        ran += 1;
    }
    assert!(ran >= 3, "ran {ran} examples");
}

#[test]
fn the_committed_schema_is_current() {
    let o = engine()
        .arg("schema")
        .arg("--check")
        .arg(repo().join("schemas/pipeline.schema.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn bad_command_line_input_is_a_clear_error() {
    let o = engine()
        .args(["validate", "/nonexistent/pipeline.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("/nonexistent/pipeline.yaml: Failed to read pipeline file"));
    let o = engine()
        .args([
            "run",
            fixture("failing.yaml").to_str().unwrap(),
            "--force",
            "brokn",
        ])
        .output()
        .unwrap();
    assert!(
        text(&o.stderr).contains("the pipeline has no stage `brokn` (did you mean `broken`?)"),
        "{}",
        text(&o.stderr)
    );
    let o = engine()
        .args(["runs", "--store", "ftp://x"])
        .output()
        .unwrap();
    assert!(
        text(&o.stderr).contains("unknown store scheme `ftp://`"),
        "{}",
        text(&o.stderr)
    );
    let o = engine()
        .args([
            "render",
            fixture("napping.yaml.j2").to_str().unwrap(),
            "--set",
            "novalue",
        ])
        .output()
        .unwrap();
    assert!(
        text(&o.stderr).contains("`novalue` is not `key=value`"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn every_pipeline_template_validates_for_every_sport() {
    let dir = repo().join("pipelines");
    let mut checked = 0;
    for t in std::fs::read_dir(&dir).unwrap() {
        let t = t.unwrap().path();
        if !t.to_string_lossy().ends_with(".yaml.j2") {
            continue;
        }
        // The model stages exist only in a build with libtorch.
        if cfg!(not(feature = "torch")) && t.ends_with("replay.yaml.j2") {
            continue;
        }
        for v in std::fs::read_dir(dir.join("sports")).unwrap() {
            let v = v.unwrap().path();
            let o = engine()
                .arg("validate")
                .arg(&t)
                .arg("-f")
                .arg(&v)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{} with {}: {}",
                t.display(),
                v.display(),
                text(&o.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "checked {checked}");
}

#[test]
fn show_task_prints_an_evaluation_report() {
    let dir = tempfile::tempdir().unwrap();
    // Any output with `evaluation.md` (what `evaluate` writes) is printed.
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: e\nstages:\n  evaluate:\n    uses: builtin.write\n    with:\n      files:\n        evaluation.md: \"## Evaluation of basketball: PASSED\\n\\n| gate | league |\\n\"\n        other.txt: not shown\n",
    )
    .unwrap();
    let o = run_in(dir.path(), &["run", "p.yaml"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&run_in(dir.path(), &["show", "latest/evaluate"]).stdout);
    let at = s.find("## Evaluation of basketball: PASSED").expect(&s);
    assert!(
        at > s.find("outputs:").unwrap() && at < s.find("log:").unwrap(),
        "{s}"
    );
    assert!(
        s.contains("| gate | league |") && !s.contains("not shown"),
        "{s}"
    );
}
