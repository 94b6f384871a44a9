//! The review queue end to end with the real binary, ffmpeg and a SQLite
//! catalog: replay-data on the catalog sends the no-graphics league to
//! review, `engine review ls|fix|accept` record verdicts, and the next run
//! tags those videos from the human labels.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn engine(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.current_dir(dir)
        .env_remove("ENGINE_STORE")
        .env_remove("ENGINE_CATALOG")
        .env("USER", "tester");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = engine(dir).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "engine {args:?}: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let o: Output = engine(dir).args(args).output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "engine {args:?} should fail cleanly: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs replay-data on the catalog; returns the `route` task's values.
fn run_pipeline(dir: &Path) -> Value {
    let t = repo().join("pipelines/replay-data.yaml.j2");
    let out = ok(
        dir,
        &[
            "run",
            t.to_str().unwrap(),
            "--set",
            "sport=ice-hockey",
            "--set",
            "source=catalog",
            "--set",
            "catalog=cat.db",
            "--store",
            "fs://store",
            "--json",
        ],
    );
    let summary: Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {out}"));
    assert_eq!(summary["status"], "succeeded", "{out}");
    let run = summary["run"].as_str().unwrap();
    let record: Value =
        serde_json::from_str(&ok(dir, &["show", run, "--json", "--store", "fs://store"])).unwrap();
    record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "route")
        .unwrap()["values"]
        .clone()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

#[test]
fn review_queue_verdicts_become_human_labels_on_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(
        d,
        &[
            "synth",
            "--sport",
            "ice-hockey",
            "--league",
            "bare-league",
            "--count",
            "2",
            "--seed",
            "3",
            "--out",
            "videos",
        ],
    );
    ok(
        d,
        &[
            "synth",
            "--sport",
            "ice-hockey",
            "--league",
            "puck-cup",
            "--count",
            "1",
            "--seed",
            "4",
            "--out",
            "videos",
        ],
    );
    ok(d, &["catalog", "import", "videos", "--db", "cat.db"]);

    let first = run_pipeline(d);
    assert_eq!(
        count(&first, "auto_tagged") + count(&first, "to_review"),
        3,
        "{first}"
    );
    assert!(
        count(&first, "to_review") >= 2,
        "no-graphics videos go to review: {first}"
    );
    assert_eq!(
        count(&first, "queued"),
        count(&first, "to_review"),
        "{first}"
    );

    // `ls` lists the no-graphics league with its teacher confidence.
    let ls: Value =
        serde_json::from_str(&ok(d, &["review", "ls", "--catalog", "cat.db", "--json"])).unwrap();
    let queued: Vec<&Value> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["league"] == "bare-league")
        .collect();
    assert_eq!(queued.len(), 2, "{ls}");
    assert!(
        queued
            .iter()
            .all(|e| e["status"] == "pending" && e["confidence"].as_f64().unwrap() < 0.5),
        "{ls}"
    );
    let table = ok(d, &["review", "ls", "--db", "cat.db"]);
    assert!(
        table.contains("bare-league") && table.contains("confidence") && table.contains("proposed"),
        "{table}"
    );
    let uri = |i: usize| queued[i]["uri"].as_str().unwrap().to_string();
    let (fixed_uri, accepted_id) = (uri(0), queued[1]["video_id"].as_i64().unwrap().to_string());

    // Bad input: clear errors naming the value, nothing recorded.
    let e = fails(
        d,
        &[
            "review",
            "fix",
            "/no/such.mp4",
            "--segments",
            "1-2",
            "--db",
            "cat.db",
        ],
    );
    assert!(e.contains("No video `/no/such.mp4`"), "{e}");
    for (bad, want) in [
        ("12-", "segment `12-` has no end"),
        ("18-12", "ends (12) before it starts (18)"),
        ("NaN-4", "`NaN`"),
    ] {
        let e = fails(
            d,
            &[
                "review",
                "fix",
                &fixed_uri,
                "--segments",
                bad,
                "--db",
                "cat.db",
            ],
        );
        assert!(
            e.contains(&format!("`--segments {bad}`")) && e.contains(want) && e.contains("e.g."),
            "{e}"
        );
    }
    let e = fails(
        d,
        &[
            "review",
            "fix",
            &fixed_uri,
            "--labels",
            "missing.json",
            "--db",
            "cat.db",
        ],
    );
    assert!(e.contains("`missing.json`: no such file"), "{e}");
    let e = fails(d, &["review", "accept", "999", "--db", "cat.db"]);
    assert!(e.contains("No video id 999"), "{e}");

    // Verdicts: one fixed from a labels file (its real replays), one accepted.
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&fixed_uri).with_extension("json")).unwrap(),
    )
    .unwrap();
    let rows: Vec<String> = truth["replays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{},{},{}",
                Path::new(&fixed_uri).file_name().unwrap().to_string_lossy(),
                r["span"]["start"],
                r["span"]["end"]
            )
        })
        .collect();
    std::fs::write(
        d.join("verdict.csv"),
        format!("video,start,end\n{}\n", rows.join("\n")),
    )
    .unwrap();
    let out = ok(
        d,
        &[
            "review",
            "fix",
            &fixed_uri,
            "--labels",
            "verdict.csv",
            "--db",
            "cat.db",
        ],
    );
    assert!(
        out.contains(&format!(
            "{} human replay segment(s) recorded by tester",
            rows.len()
        )),
        "{out}"
    );
    let out = ok(d, &["review", "accept", &accepted_id, "--db", "cat.db"]);
    assert!(out.starts_with("accepted"), "{out}");
    let e = fails(d, &["review", "accept", &accepted_id, "--db", "cat.db"]);
    assert!(e.contains("has no pending review"), "{e}");
    let ls: Value =
        serde_json::from_str(&ok(d, &["review", "ls", "--db", "cat.db", "--json"])).unwrap();
    assert!(
        ls.as_array()
            .unwrap()
            .iter()
            .all(|e| e["league"] != "bare-league"),
        "{ls}"
    );
    let labels: Value = serde_json::from_str(&ok(
        d,
        &[
            "catalog",
            "query",
            "SELECT source, COUNT(*) AS n FROM labels WHERE source = 'human' GROUP BY source",
            "--db",
            "cat.db",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(
        labels[0]["n"].as_u64().unwrap() as usize,
        rows.len(),
        "{labels}"
    );

    // The next run tags both reviewed videos from their human labels.
    let second = run_pipeline(d);
    assert_eq!(
        count(&second, "auto_tagged"),
        count(&first, "auto_tagged") + 2,
        "{first} -> {second}"
    );
    assert_eq!(
        count(&second, "to_review"),
        count(&first, "to_review") - 2,
        "{first} -> {second}"
    );
}
