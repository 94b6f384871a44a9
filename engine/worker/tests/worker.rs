//! `engine-worker` as `engine` starts it. (This test also makes
//! `cargo test --workspace` build the worker, which `engine`'s model tests
//! run through.)

use std::io::Write;
use std::process::{Command, Stdio};

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_engine-worker"))
}

#[test]
fn run_by_hand_it_says_what_it_is_for() {
    let o = worker().output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("runs the model stages") && e.contains("engine-worker serve"),
        "{e}"
    );
    let o = worker().arg("--version").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("engine-worker "));
}

#[test]
fn serve_answers_each_request_on_its_own_line_until_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = worker()
        .arg("serve")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = format!("fs://{}", dir.path().join("store").display());
    let scratch = dir.path().join("scratch");
    let req = |kind: &str, params: serde_json::Value| {
        serde_json::json!({
            "kind": kind, "params": params, "store": store, "task": "t",
            "threads": 1, "scratch": scratch,
        })
        .to_string()
    };
    let mut stdin = child.stdin.take().unwrap();
    // A model kind with bad params, then a built-in kind that works: the
    // worker has the real model stages and the engine's own kinds.
    writeln!(
        stdin,
        "{}",
        req("train.sweep", serde_json::json!({"hidden": 0}))
    )
    .unwrap();
    writeln!(
        stdin,
        "{}",
        req("builtin.echo", serde_json::json!({"text": "hi"}))
    )
    .unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let replies: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    let failed = replies[0]["failed"].as_str().expect("a failure");
    assert!(failed.contains("`hidden`"), "{failed}");
    assert!(
        replies[1]["done"]["outputs"]["out"]["files"]["text.txt"].is_object(),
        "{replies:?}"
    );
}
