//! The `engine` binary, end to end: exit codes, messages, snapshots of the
//! DAG and reports, a killed run resumed, Ctrl-C, and every example.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn engine() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.env_remove("ENGINE_STORE")
        .env_remove("ENGINE_PROFILE")
        .env_remove("ENGINE_EXECUTOR")
        // No user's `~/.config/engine/engine.toml` in these tests.
        .env("XDG_CONFIG_HOME", "/nonexistent/engine-test-config")
        .env("CI", "true");
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
    // The record still says `running`; its process is gone, so it shows as
    // interrupted. A 0-byte record beside it is listed, not fatal.
    let runs_dir = dir.path().join(".engine/store/runs");
    std::fs::write(runs_dir.join("20000101-000000-000-0000.json"), b"").unwrap();
    let o = engine()
        .current_dir(dir.path())
        .args(["runs", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["interrupted", "unreadable"], "{runs}");
    let table = text(&run_in(dir.path(), &["runs"]).stdout);
    assert!(
        table.contains("interrupted") && table.contains("unreadable"),
        "{table}"
    );
    std::fs::remove_file(runs_dir.join("20000101-000000-000-0000.json")).unwrap();
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
fn a_run_whose_json_reader_goes_away_runs_to_its_end_without_a_panic() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("nap-started");
    let mut child = engine()
        .current_dir(dir.path())
        .arg("run")
        .arg(fixture("napping.yaml.j2"))
        .args(["--json", "--set", "nap=0.3", "--set"])
        .arg(format!("marker={}", marker.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the first event, then go away (`engine run --json | head -1`):
    // every later event and the summary meet a closed pipe.
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    assert!(first.contains("run_started"), "{first}");
    drop(out);
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    // The run went on to its end: both tasks are done in its record.
    let runs = run_in(dir.path(), &["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    assert!(marker.exists(), "the napping task ran");
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

#[test]
fn validate_speaks_json_and_github_annotations() {
    let bad = fixture("invalid.yaml");
    let o = engine()
        .args(["validate", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let errors = doc["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "{doc}");
    for e in errors {
        assert!(
            e["line"].as_u64().unwrap() > 0 && e["message"].is_string(),
            "{e}"
        );
    }
    let o = engine()
        .args(["validate", "--format", "github"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), errors.len(), "{out}");
    assert!(
        out.lines()
            .all(|l| l.starts_with("::error file=") && l.contains(",line=")),
        "{out}"
    );
    // A valid pipeline: ok, with its size; nothing to annotate.
    let hello = repo().join("examples/hello.yaml");
    let o = engine()
        .args(["validate", "--json"])
        .arg(&hello)
        .output()
        .unwrap();
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (doc["ok"].as_bool(), doc["stages"].as_u64()),
        (Some(true), Some(4))
    );
    // A missing file is one problem without a position.
    let o = engine()
        .args(["validate", "--format", "github", "/nonexistent/p.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).starts_with("::error file=/nonexistent/p.yaml,title=engine validate::"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn plan_exit_code_says_whether_anything_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let hello = repo().join("examples/hello.yaml");
    let h = hello.to_str().unwrap();
    let cold = run_in(dir.path(), &["plan", h, "--exit-code"]);
    assert_eq!(cold.status.code(), Some(2), "{}", text(&cold.stderr));
    assert!(run_in(dir.path(), &["run", h]).status.success());
    let warm = run_in(dir.path(), &["plan", h, "--exit-code"]);
    assert_eq!(warm.status.code(), Some(0), "{}", text(&warm.stdout));
    let forced = run_in(dir.path(), &["plan", h, "--exit-code", "--force", "shout"]);
    assert_eq!(forced.status.code(), Some(2));
    // Without the flag, a plan with work to do still exits 0.
    let plain = run_in(dir.path(), &["plan", h, "--force", "shout"]);
    assert_eq!(plain.status.code(), Some(0));
}

#[test]
fn completions_and_enumerated_options() {
    for shell in ["bash", "zsh", "fish"] {
        let o = engine().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}: {}", text(&o.stderr));
        let s = text(&o.stdout);
        assert!(
            s.contains("engine") && s.contains("validate") && s.contains("monitor"),
            "{shell}"
        );
    }
    let o = engine()
        .args(["run", "examples/hello.yaml", "--executor", "k8s"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("invalid value 'k8s'") && err.contains("local, slurm"),
        "{err}"
    );
    let o = engine()
        .args(["synth", "--preset", "huge"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(err.contains("[possible values: small, demo]"), "{err}");
}

#[test]
fn diff_names_changed_values_params_and_outputs_and_ref_ls_lists_refs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml.j2");
    std::fs::write(
        &p,
        "name: d\nstages:\n  a: { uses: builtin.echo, with: { text: \"{{ word }}\" } }\n  b: { uses: builtin.echo, with: { text: same } }\n",
    )
    .unwrap();
    let p = p.to_str().unwrap();
    let mut ids = vec![];
    for word in ["one", "two"] {
        let o = run_in(
            dir.path(),
            &["run", p, "--set", &format!("word={word}"), "--json"],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        let last: serde_json::Value =
            serde_json::from_str(text(&o.stdout).lines().last().unwrap()).unwrap();
        ids.push(last["run"].as_str().unwrap().to_string());
    }
    // `plan` names the changed param key.
    let plan = run_in(dir.path(), &["plan", p, "--set", "word=three"]);
    assert!(
        text(&plan.stdout).contains("params changed: text"),
        "{}",
        text(&plan.stdout)
    );

    let o = run_in(dir.path(), &["diff", &ids[0], &ids[1], "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys = |section: &str| -> Vec<String> {
        d[section]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys("values"), ["word"]);
    assert_eq!(keys("params"), ["a.with.text"]);
    assert_eq!(d["params"][0]["a"], "one");
    assert_eq!(d["params"][0]["b"], "two");
    assert!(keys("outputs").iter().all(|k| k.starts_with("a.")), "{d}");
    assert!(!keys("outputs").is_empty());
    let md = text(&run_in(dir.path(), &["diff", &ids[0], &ids[1], "--md"]).stdout);
    assert!(md.contains("| `a.with.text` | one | two |"), "{md}");
    let same = run_in(dir.path(), &["diff", &ids[1], &ids[1]]);
    assert_eq!(same.status.code(), Some(0));
    assert!(text(&same.stdout).contains("no differences"));

    // Refs: listed with their target; a diff of two refs compares the runs
    // that made them.
    for (r, id) in [("words/a@one", &ids[0]), ("words/a@two", &ids[1])] {
        let o = run_in(dir.path(), &["ref", "set", r, &format!("{id}/a")]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let ls = text(&run_in(dir.path(), &["ref", "ls"]).stdout);
    assert!(
        ls.contains("words/a@one") && ls.contains("words/a@two"),
        "{ls}"
    );
    let ls = run_in(dir.path(), &["ref", "ls", "words", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["moves"], 1);
    let rm = run_in(dir.path(), &["ref", "rm", "words/a@one"]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    let ls = text(&run_in(dir.path(), &["ref", "ls", "words"]).stdout);
    assert!(
        !ls.contains("words/a@one") && ls.contains("words/a@two"),
        "{ls}"
    );
    let again = run_in(dir.path(), &["ref", "rm", "words/a@one"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("no ref `words/a@one`"));
    let o = run_in(
        dir.path(),
        &["ref", "set", "words/a@one", &format!("{}/a", ids[0])],
    );
    assert!(o.status.success());
    let o = run_in(dir.path(), &["diff", "words/a@one", "words/a@two"]);
    assert_eq!(o.status.code(), Some(2));
    let t = text(&o.stdout);
    assert!(
        t.contains(&format!("made by {}/a", ids[0])) && t.contains("a.with.text"),
        "{t}"
    );
    let bad = run_in(dir.path(), &["diff", "nothing", &ids[0]]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("`nothing` is neither a run"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn killing_the_engine_kills_every_process_of_its_tasks() {
    kill_engine_and_check_its_tasks_die(false);
}

/// The same through the fallback: a supervising shell with a parent-death
/// signal, where the reaper cannot run.
#[test]
fn without_the_reaper_killing_the_engine_still_kills_its_tasks() {
    kill_engine_and_check_its_tasks_die(true);
}

fn kill_engine_and_check_its_tasks_die(no_reaper: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let p = dir.path().join("p.yaml");
    // Before: only the shell died with the engine; its children (here a
    // background sleep and a foreground one) ran on. A `setsid` one leaves
    // the process group: the reaper kills it through the task's cgroup,
    // where the machine has them.
    let setsid = !no_reaper && engine_core::cgroup::available();
    std::fs::write(
        &p,
        format!(
            "name: orphans\nstages:\n  nap:\n    uses: shell\n    with:\n      run: |\n        sleep 120 &\n        echo $! > {pids}.tmp\n        sh -c 'echo $$ >> {pids}.tmp; exec sleep 120' &\n{extra}        sleep 0.3\n        mv {pids}.tmp {pids}\n        wait\n",
            pids = pids.display(),
            extra = if setsid {
                format!("        setsid sleep 120 &\n        echo $! >> {}.tmp\n", pids.display())
            } else {
                String::new()
            }
        ),
    )
    .unwrap();
    let mut cmd = engine();
    if no_reaper {
        cmd.env("ENGINE_NO_REAPER", "1");
    }
    let mut child = cmd
        .current_dir(dir.path())
        .arg("run")
        .arg(&p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&pids, Duration::from_secs(30));
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), if setsid { 3 } else { 2 });
    child.kill().unwrap(); // SIGKILL: the engine cannot clean up
    child.wait().unwrap();
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
            .unwrap_or(false)
    };
    let t0 = std::time::Instant::now();
    while pids.iter().any(|&p| running(p)) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<i32> = pids.into_iter().filter(|&p| running(p)).collect();
    assert!(
        alive.is_empty(),
        "processes of the task outlived the engine: {alive:?}"
    );
}

/// A pipeline with one model stage (run by `engine-worker`).
const MODEL_STAGE: &str = "name: m
stages:
  bb:
    uses: backbone.import
    with: { path: missing.pt, arch: torchscript }
";

#[test]
fn engine_does_not_link_libtorch() {
    let o = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_engine"))
        .output()
        .expect("ldd runs");
    let libs = text(&o.stdout);
    assert!(o.status.success(), "{libs}{}", text(&o.stderr));
    for lib in ["libtorch", "libc10"] {
        assert!(!libs.contains(lib), "`engine` links {lib}:\n{libs}");
    }
    // ... and still knows the model stages.
    let o = engine().args(["stages"]).output().unwrap();
    let out = text(&o.stdout);
    for kind in [
        "backbone.train",
        "features.extract",
        "train.sweep",
        "detect",
    ] {
        assert!(out.contains(kind), "{out}");
    }
}

#[test]
fn a_model_stage_without_the_worker_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), MODEL_STAGE).unwrap();
    // An `engine` with no `engine-worker` beside it.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("engine");
    std::fs::hard_link(env!("CARGO_BIN_EXE_engine"), &exe)
        .or_else(|_| std::fs::copy(env!("CARGO_BIN_EXE_engine"), &exe).map(|_| ()))
        .unwrap();
    let o = Command::new(&exe)
        .current_dir(dir.path())
        .env_remove("ENGINE_WORKER")
        .env_remove("ENGINE_STORE")
        .args(["validate", "m.yaml"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "validation needs no worker: {}",
        text(&o.stderr)
    );
    let o = Command::new(&exe)
        .current_dir(dir.path())
        .env_remove("ENGINE_WORKER")
        .env_remove("ENGINE_STORE")
        .args(["run", "m.yaml"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`engine-worker`") && err.contains("cargo build --release -p engine-worker"),
        "{err}"
    );
    // A wrong ENGINE_WORKER is named.
    let o = Command::new(&exe)
        .current_dir(dir.path())
        .env("ENGINE_WORKER", dir.path().join("nope"))
        .env_remove("ENGINE_STORE")
        .args(["run", "m.yaml"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(
        err.contains("`ENGINE_WORKER` names") && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn a_worker_that_dies_is_reported_with_its_last_words() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), MODEL_STAGE).unwrap();
    let fake = dir.path().join("worker.sh");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'error while loading shared libraries: libtorch_cpu.so' >&2\nexit 127\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = engine()
        .current_dir(dir.path())
        .env("ENGINE_WORKER", &fake)
        .args(["run", "m.yaml"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // Depending on timing it dies before or after reading the request.
    assert!(
        err.contains("exited before answering") || err.contains("did not take the request"),
        "{err}"
    );
    assert!(err.contains("libtorch_cpu.so"), "{err}");
    assert!(err.contains("127"), "{err}");
}

#[test]
fn the_schema_checks_with_against_each_kinds_params() {
    let o = engine().arg("schema").output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let v = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let doc = |stage: &str| -> serde_json::Value {
        serde_saphyr::from_str(&format!("name: x\nstages:\n  s:\n{stage}")).unwrap()
    };
    let errors =
        |d: &serde_json::Value| -> String { v.iter_errors(d).map(|e| format!("{e}; ")).collect() };
    for good in [
        "    uses: train.sweep\n    with: { hidden: 32, lr: 0.001, postprocess: { bridge_gap: 3.0 } }\n",
        "    uses: shell\n    with: { run: echo hi }\n",
        "    uses: synth.broadcast\n    with: { sport: basketball, seed: 1 }\n",
        "    uses: builtin.items\n    matrix: { count: [1, 2] }\n",
    ] {
        let d = doc(good);
        assert!(v.is_valid(&d), "{good}: {}", errors(&d));
    }
    for (bad, needle) in [
        ("    uses: train.sweep\n    with: { hiden: 32 }\n", "hiden"),
        ("    uses: train.sweep\n    with: { hidden: big }\n", "big"),
        ("    uses: shell\n    with: { rn: echo hi }\n", "rn"),
        (
            "    uses: synth.broadcast\n    with: { sport: cricket, seed: 1 }\n",
            "cricket",
        ),
        ("    uses: train.swep\n", "train.swep"),
    ] {
        let d = doc(bad);
        let e = errors(&d);
        assert!(!e.is_empty(), "{bad} passed the schema");
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn stages_json_gives_each_kinds_params_schema() {
    let o = engine().args(["stages", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let kinds: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let find = |n: &str| {
        kinds
            .iter()
            .find(|k| k["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let sweep = find("train.sweep");
    assert_eq!(
        sweep["params"]["properties"]["hidden"]["description"],
        "LSTM hidden size."
    );
    assert_eq!(sweep["params"]["additionalProperties"], false);
    assert!(find("shell")["params"]["properties"]["run"].is_object());
    // Every kind has typed params.
    for k in &kinds {
        assert!(
            k["params"].is_object(),
            "{} has no params schema",
            k["name"]
        );
    }
}

/// A profile's store applies where neither `--store` nor `ENGINE_STORE`
/// says otherwise, and over the pipeline's own `store:`; a profile that no
/// file defines is an error naming the ones that exist.
#[test]
fn profile_store_sits_between_the_environment_and_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p\nstore: fs://from-pipeline\nstages:\n  a: { uses: builtin.echo, with: { text: hi } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("engine.toml"),
        "[profiles.default]\nstore = \"fs://from-default\"\n\n[profiles.other]\nstore = \"fs://from-other\"\n",
    )
    .unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let runs = |store: &str| dir.path().join(store).join("runs").is_dir();
    // From a subfolder, the repository's file is found; `default` applies.
    let o = engine()
        .current_dir(&sub)
        .args(["run", "../p.yaml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(runs("from-default") && !runs("from-pipeline"));
    let o = run_in(dir.path(), &["--profile", "other", "run", "p.yaml"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(runs("from-other"));
    let o = engine()
        .current_dir(dir.path())
        .env("ENGINE_STORE", "fs://from-env")
        .args(["--profile", "other", "run", "p.yaml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(runs("from-env"));
    let o = run_in(dir.path(), &["run", "p.yaml", "--store", "fs://from-flag"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(runs("from-flag"));
    let o = run_in(dir.path(), &["profile", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["active"]["name"], "default");
    let want = format!("fs://{}", dir.path().join("from-default").display());
    assert_eq!(doc["effective"]["store"], want.as_str());
    let o = run_in(dir.path(), &["--profile", "gpu", "runs"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("profile `gpu` is not defined") && err.contains("default, other"),
        "{err}"
    );
}

/// A pipeline of `n` shell stages in a chain, long enough for the parse
/// cache; the last stage needs `last_needs`.
fn long_pipeline(n: usize, last_needs: &str) -> String {
    let mut t =
        String::from("name: long\nstages:\n  s0:\n    uses: shell\n    with: { run: \"true\" }\n");
    for i in 1..n {
        let needs = if i == n - 1 {
            last_needs.to_string()
        } else {
            format!("s{}", i - 1)
        };
        t.push_str(&format!(
            "  s{i}:\n    uses: shell\n    needs: [{needs}]\n    with: {{ run: \"echo {i} > o.txt\", outputs: {{ o: o.txt }} }}\n"
        ));
    }
    t
}

#[test]
fn a_long_pipeline_is_parsed_once_and_its_errors_read_the_same_from_the_parse_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cached = |d: &Path| -> usize {
        std::fs::read_dir(d.join(".engine/parse-cache"))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    // Outside a project (no `.engine/` folder), nothing is written.
    let good = long_pipeline(600, "s598");
    assert!(good.len() > 40_000);
    std::fs::write(dir.path().join("p.yaml"), &good).unwrap();
    let o = run_in(dir.path(), &["validate", "p.yaml"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!dir.path().join(".engine").exists());

    std::fs::create_dir(dir.path().join(".engine")).unwrap();
    let first = run_in(dir.path(), &["validate", "p.yaml"]);
    assert_eq!(cached(dir.path()), 1, "the parse is kept");
    let second = run_in(dir.path(), &["validate", "p.yaml"]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(text(&first.stdout), text(&second.stdout));
    assert_eq!(cached(dir.path()), 1, "read back, not written again");

    // An error the checks find (not the parser) points at the same place
    // whether the spec came from the YAML or from the cache.
    let bad = long_pipeline(600, "s598, nosuch");
    let line = bad.lines().position(|l| l.contains("nosuch")).unwrap() + 1;
    std::fs::write(dir.path().join("p.yaml"), &bad).unwrap();
    let parsed = run_in(dir.path(), &["validate", "p.yaml"]);
    let from_cache = run_in(dir.path(), &["validate", "p.yaml"]);
    assert_eq!(cached(dir.path()), 2);
    assert_eq!(parsed.status.code(), Some(1));
    assert_eq!(from_cache.status.code(), Some(1));
    let err = text(&from_cache.stderr);
    assert_eq!(text(&parsed.stderr), err);
    assert!(
        err.contains(&format!("p.yaml:{line}:19: stage `s599` needs `nosuch`")),
        "{err}"
    );
    assert!(
        err.contains("needs: [s598, nosuch]"),
        "the source line: {err}"
    );
}

/// A run records the commit of the pipeline's repository (read while the
/// pipeline loads), with `-dirty` once a tracked file has changed.
#[test]
fn a_run_records_the_commit_of_the_pipelines_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| -> String {
        let o = Command::new("git")
            .current_dir(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
        text(&o.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    let pipeline = "name: g\nstages:\n  a:\n    uses: builtin.echo\n    with: { text: x }\n";
    std::fs::write(repo.join("p.yaml"), pipeline).unwrap();
    git(&["add", "p.yaml"]);
    git(&["commit", "-q", "-m", "pipeline"]);
    let head = git(&["rev-parse", "HEAD"]);
    // Run from outside the repository: the commit is the pipeline's.
    let commit_of_a_run = || -> String {
        let o = run_in(dir.path(), &["run", "repo/p.yaml", "--json"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        let run = summary["run"].as_str().unwrap().to_string();
        let show = run_in(dir.path(), &["show", &run, "--json"]);
        assert!(show.status.success(), "{}", text(&show.stderr));
        let record: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        record["git_commit"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(commit_of_a_run(), head);
    std::fs::write(repo.join("p.yaml"), format!("{pipeline}# edited\n")).unwrap();
    assert_eq!(commit_of_a_run(), format!("{head}-dirty"));
}

/// On a terminal (a pty from `script`, with `CI` unset) the bar display
/// prints a line for every task above the bars, the lines of several
/// events in one go, then the summary; a rerun says every task is cached.
#[test]
fn the_bar_display_on_a_terminal_prints_every_task_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let hello = repo().join("examples/hello.yaml");
    let on_a_terminal = || -> String {
        let cmd = format!("{} run {}", env!("CARGO_BIN_EXE_engine"), hello.display());
        let o = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(dir.path())
            .env_remove("CI")
            .env_remove("ENGINE_STORE")
            .env("XDG_CONFIG_HOME", "/nonexistent/engine-test-config")
            .env("COLUMNS", "200")
            .output()
            .unwrap();
        let out = text(&o.stdout);
        assert!(o.status.success(), "{out}{}", text(&o.stderr));
        assert!(!out.contains("panicked"), "{out}");
        out
    };
    let tasks = ["make", "shout", "gather", "report"];
    let cold = on_a_terminal();
    assert!(cold.contains("/4 tasks"), "the bars were not drawn: {cold}");
    for t in tasks {
        assert!(cold.contains(&format!("done     {t} (")), "{t}: {cold}");
    }
    assert!(cold.contains("succeeded"), "{cold}");
    let rerun = on_a_terminal();
    for t in tasks {
        assert!(
            rerun.contains(&format!("cached   {t}: cached from run")),
            "{t}: {rerun}"
        );
    }
    assert!(rerun.contains("4 cached"), "{rerun}");
}
