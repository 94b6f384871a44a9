//! The replay model end to end on the generator's small preset, with real
//! libtorch and ffmpeg: train, select, detect, pin the backbone, add videos
//! and extract features only for them; and the bad inputs.
#![cfg(feature = "torch")]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn engine(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.current_dir(dir)
        .env_remove("ENGINE_STORE")
        .env("CI", "true");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn ok(o: Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status.code()
    );
    out.into_owned()
}

fn run_pipeline(dir: &Path, extra: &[&str]) -> String {
    let r = repo();
    let mut args = vec![
        "run".to_string(),
        r.join("pipelines/replay.yaml.j2").display().to_string(),
        "-f".into(),
        r.join("pipelines/sports/basketball.yaml")
            .display()
            .to_string(),
    ];
    for (k, v) in [
        ("clip_window", "4"),
        ("hidden", "[16, 32]"),
        ("epochs", "40"),
        ("backbone_epochs", "8"),
    ] {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(engine(dir).args(&args).output().unwrap())
}

/// A task of the latest run, as `engine show RUN/TASK --json` prints it.
fn task(dir: &Path, name: &str) -> Value {
    let out = ok(engine(dir)
        .args(["show", &format!("latest/{name}"), "--json"])
        .output()
        .unwrap());
    serde_json::from_str(&out).unwrap()
}

#[test]
fn trains_selects_detects_and_extracts_only_new_videos() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run_pipeline(
        dir,
        &["--set", "videos_per_league=5", "--set", "joint=true"],
    );

    // The best trial on the test split is the model; its figures are recorded.
    let select = task(dir, "select");
    let f1 = select["task"]["values"]["segment_f1"]
        .as_f64()
        .expect("segment_f1 recorded");
    assert!(f1 >= 0.6, "test segment F1 {f1} on the small preset");
    let chosen = select["task"]["values"]["chosen"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(chosen.starts_with("train[hidden="), "{chosen}");

    // The pipeline's backbone measures motion at the source rate, and the
    // model reads those numbers after the backbone's features.
    let got = dir.join("got");
    ok(engine(dir)
        .args(["get", "latest/backbone"])
        .arg(got.join("backbone"))
        .output()
        .unwrap());
    ok(engine(dir)
        .args(["get", "latest/select"])
        .arg(got.join("model"))
        .output()
        .unwrap());
    let read =
        |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap() };
    let backbone = read(got.join("backbone/backbone.json"));
    assert_eq!(backbone["frame_motion"], true, "{backbone}");
    let model = read(got.join("model/model.json"));
    assert_eq!(
        model["temporal"]["dim"].as_i64().unwrap(),
        backbone["dim"].as_i64().unwrap() + media::MOTION_CHANNELS as i64,
        "{model}"
    );

    // `engine detect` on a new video of a seen league, against its truth.
    let videos = dir.join("new");
    ok(engine(dir)
        .args([
            "synth",
            "--sport",
            "basketball",
            "--league",
            "hoops-pro",
            "--count",
            "1",
            "--seed",
            "99",
        ])
        .arg("--out")
        .arg(&videos)
        .output()
        .unwrap());
    let mp4 = std::fs::read_dir(&videos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mp4"))
        .unwrap();
    let truth: Value =
        serde_json::from_slice(&std::fs::read(mp4.with_extension("json")).unwrap()).unwrap();
    let out = ok(engine(dir)
        .arg("detect")
        .arg(&mp4)
        .args(["--model", "latest/select", "--json"])
        .output()
        .unwrap());
    let found: Value = serde_json::from_str(&out).unwrap();
    let segs = found["segments"].as_array().unwrap();
    let want = truth["replays"].as_array().unwrap();
    assert!(!want.is_empty());
    // Every true replay is found with tIoU >= 0.5.
    for r in want {
        let (s, e) = (
            r["span"]["start"].as_f64().unwrap(),
            r["span"]["end"].as_f64().unwrap(),
        );
        let hit = segs.iter().any(|p| {
            let (ps, pe) = (p["start"].as_f64().unwrap(), p["end"].as_f64().unwrap());
            let inter = (e.min(pe) - s.max(ps)).max(0.0);
            inter / ((e - s) + (pe - ps) - inter) >= 0.5
        });
        assert!(hit, "replay {s}-{e} not found in {segs:?}");
    }
    let signals = dir.join("signals.csv");
    let table = ok(engine(dir)
        .arg("detect")
        .arg(&mp4)
        .args(["--model", "latest/select", "--signals"])
        .arg(&signals)
        .output()
        .unwrap());
    assert!(table.contains("replays in"), "{table}");
    // One CSV line per sampled frame, probabilities in [0, 1].
    let csv = std::fs::read_to_string(&signals).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("frame,time,start,end,content"));
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len() as u64, found["frames"].as_u64().unwrap());
    assert!(
        rows.iter()
            .all(|r| r.len() == 5 && r[2..].iter().all(|p| (0.0..=1.0).contains(p)))
    );
    assert!(
        rows.iter().any(|r| r[4] > 0.5),
        "no replay content in {csv}"
    );
    // The model knows its sport: a soccer video is refused, naming both.
    let o = engine(dir)
        .arg("detect")
        .arg(&mp4)
        .args(["--model", "latest/select", "--sport", "soccer"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("trained on basketball") && err.contains("is soccer"),
        "{err}"
    );

    // An ensemble of the two trials (only `select` reruns): its per-frame
    // probabilities are the mean of its members'.
    let extra = ["--set", "videos_per_league=5", "--set", "joint=true"];
    run_pipeline(dir, &[&extra[..], &["--set", "ensemble=2"]].concat());
    let select = task(dir, "select");
    let members: Vec<String> = select["task"]["values"]["ensemble"]
        .as_array()
        .expect("ensemble recorded")
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    assert_eq!(members.len(), 2, "{select}");
    assert_eq!(members[0], chosen, "the best trial leads the ensemble");
    let probs = |model: &str| -> Vec<Vec<f64>> {
        let csv = dir.join("member.csv");
        ok(engine(dir)
            .arg("detect")
            .arg(&mp4)
            .args(["--model", model, "--signals"])
            .arg(&csv)
            .output()
            .unwrap());
        std::fs::read_to_string(&csv)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').skip(2).map(|v| v.parse().unwrap()).collect())
            .collect()
    };
    let both = probs("latest/select");
    let a = probs(&format!("latest/{}", members[0]));
    let b = probs(&format!("latest/{}", members[1]));
    assert_eq!(both.len(), a.len());
    for ((e, x), y) in both.iter().zip(&a).zip(&b) {
        for k in 0..3 {
            assert!(
                (e[k] - (x[k] + y[k]) / 2.0).abs() < 2e-4,
                "ensemble {e:?} is not the mean of {x:?} and {y:?}"
            );
        }
    }
    assert!(
        a.iter().zip(&b).any(|(x, y)| (x[2] - y[2]).abs() > 1e-3),
        "the two trials should differ, or the test proves nothing"
    );

    // The joint CNN+LSTM baseline is a detector of the same format, evaluated the same way.
    let joint = task(dir, "joint");
    assert!(
        joint["task"]["values"]["segment_f1"].as_f64().is_some(),
        "{joint}"
    );
    assert!(joint["task"]["values"]["train_seconds"].as_f64().unwrap() > 0.0);
    let out = ok(engine(dir)
        .arg("detect")
        .arg(&mp4)
        .args(["--model", "latest/joint", "--json"])
        .output()
        .unwrap());
    let j: Value = serde_json::from_str(&out).unwrap();
    assert!(j["segments"].is_array());

    // Production inference as a stage: the model at its alias over catalog
    // videos, predictions recorded in the catalog.
    ok(engine(dir)
        .args([
            "ref",
            "set",
            "models/basketball@production",
            "latest/select",
        ])
        .output()
        .unwrap());
    ok(engine(dir)
        .args([
            "ref",
            "set",
            "backbones/basketball@production",
            "latest/backbone",
        ])
        .output()
        .unwrap());
    ok(engine(dir)
        .args(["catalog", "import", "new", "--db", "cat.db"])
        .output()
        .unwrap());
    std::fs::write(
        dir.join("detect.yaml"),
        "name: detect-basketball\nstages:\n  videos:\n    uses: catalog.query\n    with: { db: cat.db, sql: SELECT * FROM videos ORDER BY uri }\n  model:\n    uses: artifact.ref\n    with: { name: models/basketball@production }\n  detect:\n    uses: detect\n    needs: [model]\n    map: { over: videos.videos }\n    with: { catalog: cat.db }\n",
    )
    .unwrap();
    ok(engine(dir).args(["run", "detect.yaml"]).output().unwrap());
    let out = ok(engine(dir)
        .args([
            "catalog",
            "query",
            "SELECT COUNT(*) AS n, MIN(model_version) AS model FROM predictions",
            "--db",
            "cat.db",
            "--json",
        ])
        .output()
        .unwrap());
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["n"].as_u64(), Some(segs.len() as u64), "{rows}");
    let detect = task(dir, "detect");
    assert_eq!(
        detect["task"]["values"]["items"].as_u64(),
        Some(1),
        "{detect}"
    );

    // `detect` over the features of the model's own backbone (how the
    // continual pipeline evaluates the golden set) skips the decode and
    // finds the same segments.
    std::fs::write(
        dir.join("detect-features.yaml"),
        "name: detect-features\nstages:\n  videos:\n    uses: catalog.query\n    with: { db: cat.db, sql: SELECT * FROM videos ORDER BY uri }\n  backbone:\n    uses: backbone.import\n    with: { artifact: backbones/basketball@production }\n  features:\n    uses: features.extract\n    needs: [videos, backbone]\n    map: { over: videos.videos }\n    with: { whole_videos: true }\n  model:\n    uses: artifact.ref\n    with: { name: models/basketball@production }\n  detect:\n    uses: detect\n    needs: [features, model]\n    map: { over: features.features }\n",
    )
    .unwrap();
    ok(engine(dir)
        .args(["run", "detect-features.yaml"])
        .output()
        .unwrap());
    let predictions_of = |run: &str, to: &str| -> Vec<Value> {
        let out = got.join(to);
        ok(engine(dir)
            .args(["get", &format!("{run}/detect")])
            .arg(&out)
            .output()
            .unwrap());
        let mut all = vec![];
        for e in std::fs::read_dir(&out).unwrap() {
            let p = e.unwrap().path().join("predictions.json");
            if p.exists() {
                all.push(read(p));
            }
        }
        all
    };
    let from_features = predictions_of("latest", "from-features");
    assert_eq!(from_features.len(), 1, "{from_features:?}");
    assert_eq!(from_features[0]["input"], "features", "{from_features:?}");
    let runs = ok(engine(dir).args(["runs", "--json"]).output().unwrap());
    let runs: Value = serde_json::from_str(&runs).unwrap();
    let video_run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pipeline"] == "detect-basketball")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .expect("the detect-basketball run is listed");
    let from_video = predictions_of(&video_run, "from-video");
    assert_eq!(from_video[0]["input"], "video", "{from_video:?}");
    assert_eq!(from_video[0]["segments"], from_features[0]["segments"]);

    // With the backbone pinned, add one video per league: only those are extracted.
    run_pipeline(
        dir,
        &[
            "--set",
            "videos_per_league=5",
            "--set",
            "backbone=backbones/basketball@production",
        ],
    );
    let first = task(dir, "extract");
    assert_eq!(
        first["task"]["values"]["items_cached"].as_u64(),
        Some(0),
        "{first}"
    );
    run_pipeline(
        dir,
        &[
            "--set",
            "videos_per_league=6",
            "--set",
            "backbone=backbones/basketball@production",
        ],
    );
    let second = task(dir, "extract");
    let (run, cached) = (
        second["task"]["values"]["items_run"].as_u64().unwrap(),
        second["task"]["values"]["items_cached"].as_u64().unwrap(),
    );
    assert!((1..=4).contains(&run), "new videos extracted: {run}");
    assert_eq!(
        cached,
        first["task"]["values"]["items"].as_u64().unwrap(),
        "every old video's features are reused"
    );

    // A backbone is not a detector: a clear error naming what it is.
    let o = engine(dir)
        .arg("detect")
        .arg(&mp4)
        .args(["--model", "backbones/basketball@production"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is a backbone, not a replay detector"),
        "{err}"
    );
    // The message names what the user typed, not a temporary folder.
    assert!(
        err.contains("`backbones/basketball@production` is a backbone") && !err.contains("/tmp"),
        "{err}"
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A missing video.
    let o = engine(dir)
        .args(["detect", "nope.mp4", "--model", "models/x@production"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("video `nope.mp4` does not exist"));
    // A model ref that does not exist.
    std::fs::write(dir.join("bad.mp4"), b"this is not a video").unwrap();
    let o = engine(dir)
        .args(["detect", "bad.mp4", "--model", "models/x@production"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.mp4") || err.contains("models/x@production"),
        "{err}"
    );
    // Every video in train: the trainer says which split is empty and what to do.
    let r = repo();
    let o = engine(dir)
        .arg("run")
        .arg(r.join("pipelines/replay.yaml.j2"))
        .arg("-f")
        .arg(r.join("pipelines/sports/basketball.yaml"))
        .args([
            "--set",
            "train_share=1.0",
            "--set",
            "test_share=0.0",
            "--set",
            "validation_share=0.0",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        err.contains("needs videos in the train and validation splits"),
        "{err}"
    );
}

#[test]
fn features_from_another_backbone_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("mismatch.yaml"),
        r#"name: mismatch
stages:
  videos:
    uses: synth.broadcast
    matrix: { league: [hoops-pro, court-league] }
    with: { sport: basketball, preset: small, count: 5, seed: 7 }
  tag: { uses: teacher.tag, map: { over: videos.videos } }
  route: { uses: review.route, needs: [tag] }
  cut: { uses: clips.cut, map: { over: route.tagged }, with: { window: 4, labels: truth } }
  split: { uses: dataset.split, needs: [cut], with: { seed: 1, train: 0.5, test: 0.25, validation: 0.25 } }
  backbone: { uses: backbone.train, needs: [split], with: { epochs: 1 } }
  other: { uses: backbone.train, needs: [split], with: { epochs: 1, seed: 8 } }
  extract: { uses: features.extract, needs: [split, backbone], map: { over: split.clips } }
  train: { uses: train.sweep, needs: [extract, other], with: { epochs: 2 } }
"#,
    )
    .unwrap();
    let o = engine(dir).args(["run", "mismatch.yaml"]).output().unwrap();
    assert!(!o.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        err.contains("come from backbone")
            && err.contains("rerun `features.extract` with the same backbone"),
        "{err}"
    );
    // The rest of the run went through: only the trainer failed.
    let extract = task(dir, "extract");
    assert_eq!(
        extract["task"]["status"].as_str(),
        Some("done"),
        "{extract}"
    );
}
