//! Deploy and rollback through the `engine` binary: `model.deploy` moves
//! `models/SPORT@production` only for a model of that sport with a passed
//! evaluation of that very model; the ref history records run, evaluation
//! and who; `engine ref rollback` moves it back and is itself recorded.
//! Models and evaluations are written by shell stages, so this runs
//! without libtorch.

use std::path::Path;
use std::process::{Command, Output};

fn engine(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.env_remove("ENGINE_STORE")
        .env("CI", "true")
        .env("USER", "tester")
        .current_dir(dir);
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    engine(dir).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const PIPELINE: &str = r#"
name: deploy-test
stages:
  select:
    uses: shell
    with:
      run: |
        mkdir -p out
        printf '{"kind":"replay-detector","trained_on":{"sport":"{{ model_sport }}","leagues":["a"],"data":"{{ data }}"}}' > out/model.json
      outputs: { model: out }
  evaluate:
    uses: shell
    with:
      run: |
        mkdir -p out
        printf '{"passed": {{ passed | tojson }}, "failures": {{ failures | tojson }}, "models": {"candidate": "{{ candidate }}"}}' > out/evaluation.json
      outputs: { evaluation: out }
  deploy:
    uses: model.deploy
    needs: [select, evaluate]
    with: { sport: basketball }
    publish: { model: "models/basketball@production" }
"#;

/// Runs the pipeline; returns (output, digest of `select`'s model).
fn cycle(dir: &Path, sport: &str, data: &str, passed: bool, candidate: Option<&str>) -> Output {
    let sets = [
        format!("model_sport={sport}"),
        format!("data={data}"),
        format!("passed={passed}"),
        format!("candidate={}", candidate.unwrap_or("none")),
        "failures=[\"gate floors: league `a` segment_f1 0.500 < 0.900\"]".to_string(),
    ];
    let mut args = vec!["run", "p.yaml.j2"];
    for s in &sets {
        args.push("--set");
        args.push(s);
    }
    run(dir, &args)
}

fn model_digest(dir: &Path) -> String {
    let o = run(dir, &["show", "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("show --json");
    let t = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "select")
        .unwrap();
    t["outputs"]["model"].as_str().unwrap().to_string()
}

fn production(dir: &Path) -> Option<String> {
    let o = run(dir, &["ref", "get", "models/basketball@production"]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn deploy_needs_a_passed_evaluation_of_the_same_model_and_sport() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.yaml.j2"), PIPELINE).unwrap();

    // An evaluation of another model: refused, nothing moves.
    let o = cycle(dir, "basketball", "v1", true, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("without a passed evaluation of it"),
        "{}",
        text(&o)
    );
    assert_eq!(production(dir), None);
    let v1 = model_digest(dir);

    // A failed evaluation of this model: refused, naming the failed gate.
    let o = cycle(dir, "basketball", "v1", false, Some(&v1));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("gate floors: league `a` segment_f1 0.500 < 0.900"),
        "{}",
        text(&o)
    );
    assert_eq!(production(dir), None);

    // Passed: production moves to the model, history names run, who, evaluation.
    let o = cycle(dir, "basketball", "v1", true, Some(&v1));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(production(dir).as_deref(), Some(v1.as_str()));
    let log = text(&run(dir, &["ref", "log", "models/basketball@production"]));
    assert!(log.contains("by tester@"), "{log}");
    assert!(log.contains("evaluation "), "{log}");
    assert!(log.contains("task deploy"), "{log}");

    // A model of another sport is refused even with a passed evaluation.
    let o = cycle(dir, "soccer", "v2", true, None);
    let soccer = model_digest(dir);
    let o2 = cycle(dir, "soccer", "v2", true, Some(&soccer));
    assert!(!o2.status.success(), "{}", text(&o));
    assert!(text(&o2).contains("was trained on soccer"), "{}", text(&o2));
    assert_eq!(production(dir).as_deref(), Some(v1.as_str()));

    // v2 deploys; rollback returns to v1, and is recorded.
    let _ = cycle(dir, "basketball", "v2", true, None);
    let v2 = model_digest(dir);
    let o = cycle(dir, "basketball", "v2", true, Some(&v2));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(production(dir).as_deref(), Some(v2.as_str()));
    let o = run(dir, &["ref", "rollback", "models/basketball@production"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(production(dir).as_deref(), Some(v1.as_str()));
    let log = text(&run(dir, &["ref", "log", "models/basketball@production"]));
    assert!(log.contains("#3"), "{log}");
    assert!(log.contains("rollback to #1"), "{log}");

    // Past the first entry, to itself, and to a stranger: clear errors, no move.
    let o = run(
        dir,
        &[
            "ref",
            "rollback",
            "models/basketball@production",
            "--to",
            "9",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("history entries #1 to #3"),
        "{}",
        text(&o)
    );
    let o = run(
        dir,
        &[
            "ref",
            "rollback",
            "models/basketball@production",
            "--to",
            "1",
        ],
    );
    assert!(text(&o).contains("already points at"), "{}", text(&o));
    let o = run(
        dir,
        &[
            "ref",
            "rollback",
            "models/basketball@production",
            "--to",
            "deadbeefdeadbeef",
        ],
    );
    assert!(text(&o).contains("is not in the history"), "{}", text(&o));
    // `ref set` refuses a soccer model on the basketball ref.
    let o = run(
        dir,
        &["ref", "set", "models/basketball@production", &soccer],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("is a soccer model"), "{}", text(&o));
    assert_eq!(production(dir).as_deref(), Some(v1.as_str()));
    let entries = text(&run(dir, &["ref", "log", "models/basketball@production"]))
        .lines()
        .filter(|l| l.starts_with('#'))
        .count();
    assert_eq!(entries, 3);
}

#[test]
fn rollback_of_a_single_entry_ref_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.yaml.j2"), PIPELINE).unwrap();
    let _ = cycle(dir, "basketball", "v1", true, None);
    let v1 = model_digest(dir);
    assert!(
        cycle(dir, "basketball", "v1", true, Some(&v1))
            .status
            .success()
    );
    let o = run(dir, &["ref", "rollback", "models/basketball@production"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("has only its first move"), "{}", text(&o));
    assert_eq!(production(dir).as_deref(), Some(v1.as_str()));
    let o = run(dir, &["ref", "rollback", "models/nothing@production"]);
    assert!(text(&o).contains("no ref"), "{}", text(&o));
}
