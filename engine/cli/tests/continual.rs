//! The continual-learning story (examples/continual/story.sh) end to end on
//! the generator's small preset, with real libtorch, ffmpeg and a SQLite
//! catalog: cycle 0 deploys v1; drifted broadcasts go through production;
//! simulated verdicts; the monitor flags the leagues and triggers cycle 1,
//! which extracts features only for new videos, reuses production's golden
//! detections from the cache and deploys v2. Gates are relaxed here (small
//! videos, few of them): the gate logic has its own tests in
//! stages/tests/evaluate.rs; the quality figures come from the demo preset
//! (see README).
#![cfg(feature = "torch")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn engine(work: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(repo())
        .env("ENGINE_STORE", format!("fs://{}/store", work.display()))
        .env("ENGINE_CATALOG", work.join("catalog.db"))
        .env("CI", "true")
        .args(args)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// "extract ran 22 of 40 videos" -> (22, 40), from the summary line of `label`.
fn ran_of(out: &str, label: &str, stage: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{label}: run ")))
        .unwrap_or_else(|| panic!("no summary line for {label} in:\n{out}"));
    let part = line
        .split("; ")
        .find(|p| p.starts_with(&format!("{stage} ran ")))
        .unwrap_or_else(|| panic!("no `{stage}` in {line}"));
    let w: Vec<&str> = part.split_whitespace().collect();
    (w[2].parse().unwrap(), w[4].parse().unwrap())
}

#[test]
fn the_continual_learning_story_runs_on_the_small_preset() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let o = Command::new("bash")
        .arg(repo().join("examples/continual/story.sh"))
        .env("ENGINE", env!("CARGO_BIN_EXE_engine"))
        .env("PRESET", "small")
        .env("WORK", &work)
        .env(
            "EXTRA",
            "gate_floor=0.0 gate_overall=0.0 max_drop=1.0 problem_leagues=[]",
        )
        .env_remove("ENGINE_STORE")
        .env_remove("ENGINE_CATALOG")
        .env("CI", "true")
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "story failed:\n{out}");

    // The review is labelled as simulated, never passed off as a person's.
    assert!(out.contains("SIMULATED review"), "{out}");
    // The league without replay graphics is counted by the monitor (recall
    // 0 from `missed` verdicts), which triggers the next cycle.
    assert!(
        out.contains("FAILING:") && out.contains("street-league"),
        "{out}"
    );
    assert!(
        out.contains("triggering: engine run pipelines/continual.yaml.j2"),
        "{out}"
    );
    let prom = std::fs::read_to_string(work.join("metrics.prom")).unwrap();
    assert!(
        prom.contains("engine_monitor_recall{sport=\"basketball\",league=\"street-league\"} 0"),
        "{prom}"
    );

    // Cycle 1 extracts only what it has not seen, and production's golden
    // detections come from cycle 0's candidate runs.
    let (ran0, total0) = ran_of(&out, "cycle 0", "extract");
    assert_eq!(ran0, total0, "{out}");
    let (ran1, total1) = ran_of(&out, "cycle 1", "extract");
    assert!(
        ran1 > 0 && ran1 < total1,
        "cycle 1 extract ran {ran1} of {total1}:\n{out}"
    );
    assert!(total1 > total0);
    let (prod_ran, prod_total) = ran_of(&out, "cycle 1", "detect_production");
    assert_eq!(
        prod_total - prod_ran,
        12,
        "the 12 golden videos of cycle 0 are cached:\n{out}"
    );
    // The backbone's features of a golden video are made once: cycle 1
    // extracts them for the new golden videos only, and both detections
    // (candidate and production, one backbone) read them.
    let (gf_ran, gf_total) = ran_of(&out, "cycle 1", "golden_features");
    assert_eq!((gf_ran, gf_total), (prod_ran, prod_total), "{out}");

    // Two deploys, each with its evaluation, and the evaluation of cycle 1
    // compares v2 with v1 over every league.
    let log = engine(&work, &["ref", "log", "models/basketball@production"]);
    let moves: Vec<&str> = log.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(moves.len(), 2, "{log}");
    assert!(moves.iter().all(|l| l.contains("evaluation ")), "{log}");
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("evaluation/evaluation.json")).unwrap())
            .unwrap();
    let v1 = engine(&work, &["ref", "get", "models/basketball@production"]);
    assert_eq!(
        eval["models"]["candidate"]["digest"].as_str(),
        Some(v1.trim())
    );
    assert!(eval["models"]["production"]["digest"].is_string());
    let leagues = eval["groups"]["leagues"]
        .as_object()
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(leagues, 6, "{}", eval["groups"]);
    assert!(work.join("evaluation/evaluation.html").is_file());

    // The doubtful videos of the late batch waited for review, and the
    // simulated review labelled them for the next cycle.
    assert!(
        out.contains("human replay segment(s) recorded by simulated-from-truth"),
        "{out}"
    );

    // A rollback returns production to v1, recorded as a third move.
    let rb = engine(&work, &["ref", "rollback", "models/basketball@production"]);
    assert!(rb.contains("rolled back"), "{rb}");
    let log = engine(&work, &["ref", "log", "models/basketball@production"]);
    assert!(
        log.contains("#3") && log.contains("rollback to #1"),
        "{log}"
    );
}

#[test]
fn an_empty_golden_set_stops_the_cycle_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    std::fs::create_dir_all(&work).unwrap();
    let videos = work.join("videos");
    let o = engine(
        &work,
        &[
            "synth",
            "--sport",
            "basketball",
            "--league",
            "hoops-pro",
            "--count",
            "7",
            "--seed",
            "5",
            "--out",
            videos.to_str().unwrap(),
        ],
    );
    assert!(o.contains("wrote 7 videos"), "{o}");
    engine(&work, &["catalog", "import", videos.to_str().unwrap()]);
    let catalog = format!("catalog={}", work.join("catalog.db").display());
    let out = engine(
        &work,
        &[
            "run",
            "pipelines/continual.yaml.j2",
            "-f",
            "pipelines/sports/basketball.yaml",
            "--set",
            "bootstrap=true",
            "--set",
            &catalog,
            "--set",
            "epochs=3",
            "--set",
            "backbone_epochs=1",
            "--set",
            "hidden=[8]",
        ],
    );
    assert!(out.contains("the golden set is empty"), "{out}");
    assert!(out.contains("engine catalog golden add"), "{out}");
    let refs = engine(&work, &["ref", "get", "models/basketball@production"]);
    assert!(refs.contains("no ref"), "nothing deployed: {refs}");
}
