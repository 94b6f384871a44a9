//! The store from the command line: `engine fsck` finds and repairs damage,
//! `engine run --verify` rebuilds what a size check cannot see, twenty
//! `engine ref set` at once keep all twenty moves, and `engine gc --dry-run`
//! says what `engine gc` then frees.

use engine_core::digest::Digest;
use engine_core::store::{Manifest, Store};
use std::path::Path;
use std::process::{Command, Output};

fn engine(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_engine"));
    c.env_remove("ENGINE_STORE")
        .env("CI", "true")
        .current_dir(dir);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const PIPELINE: &str = r#"
name: two
store: fs://store
stages:
  a: { uses: builtin.echo, with: { text: precious } }
  b: { uses: builtin.concat, needs: [a] }
"#;

/// The blob `builtin.echo` wrote.
fn precious(dir: &Path) -> std::path::PathBuf {
    dir.join("store")
        .join(Store::blob_path(&Digest::of(b"precious")))
}

#[test]
fn fsck_finds_a_corrupt_blob_repair_removes_it_and_the_next_run_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), PIPELINE).unwrap();
    let o = engine(d).args(["run", "p.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = engine(d)
        .args(["fsck", "--store", "fs://store"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no problems found"), "{}", text(&o));

    let blob = precious(d);
    std::fs::write(&blob, b"PRECIOUS").unwrap();
    let o = engine(d)
        .args(["fsck", "--store", "fs://store"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&Store::blob_path(&Digest::of(b"precious")))
            && out.contains("corrupt")
            && out.contains("engine fsck --repair"),
        "{out}"
    );
    assert!(blob.exists());

    let o = engine(d)
        .args(["fsck", "--repair", "--store", "fs://store"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("(removed)"), "{}", text(&o));
    assert!(!blob.exists());

    let o = engine(d).args(["run", "p.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read(&blob).unwrap(), b"precious");
    let o = engine(d)
        .args(["fsck", "--store", "fs://store"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn run_verify_rebuilds_a_blob_a_size_check_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), PIPELINE).unwrap();
    let o = engine(d).args(["run", "p.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let blob = precious(d);
    std::fs::write(&blob, b"PRECIOUS").unwrap();
    let o = engine(d)
        .args(["run", "p.yaml", "--verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("damaged"), "{}", text(&o));
    assert_eq!(std::fs::read(&blob).unwrap(), b"precious");
}

#[test]
fn twenty_concurrent_ref_sets_keep_twenty_history_entries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open("fs://store", d).unwrap();
    let targets: Vec<Digest> = (0..20)
        .map(|i| {
            let m = Manifest {
                meta: serde_json::json!({ "n": i }),
                ..Default::default()
            };
            rt.block_on(store.put_manifest(&m)).unwrap()
        })
        .collect();
    let children: Vec<_> = targets
        .iter()
        .map(|t| {
            engine(d)
                .args([
                    "ref",
                    "set",
                    "models/demo@production",
                    t.as_str(),
                    "--store",
                    "fs://store",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let doc = rt
        .block_on(store.get_ref("models/demo/production"))
        .unwrap()
        .unwrap();
    assert_eq!(doc.history.len(), 20, "moves were lost");
    for t in &targets {
        assert!(doc.history.iter().any(|e| &e.digest == t));
    }
}

/// Every file under a folder, at any depth.
fn files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn gc_dry_run_reports_what_gc_then_frees_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), PIPELINE).unwrap();
    std::fs::write(d.join("q.yaml"), PIPELINE.replace("precious", "newer")).unwrap();
    for p in ["p.yaml", "q.yaml"] {
        let o = engine(d).args(["run", p]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let gc = [
        "gc",
        "--keep-runs",
        "1",
        "--grace",
        "0s",
        "--store",
        "fs://store",
    ];
    let before = files(&d.join("store"));
    let o = engine(d).args(gc).arg("--dry-run").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("dry run: nothing deleted"), "{out}");
    // The first run's record, its two manifests, their one blob (`b`
    // concatenates `a`), two lineage records and two cache entries.
    assert!(out.contains("would free 8 objects"), "{out}");
    assert_eq!(files(&d.join("store")), before);

    let o = engine(d).args(gc).arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["freed"]["run records"]["objects"], 1, "{report}");
    assert_eq!(report["freed"]["blobs"]["objects"], 1, "{report}");
    assert_eq!(files(&d.join("store")).len(), before.len() - 8);
    assert!(!precious(d).exists());

    let o = engine(d)
        .args(["gc", "--store", "fs://store"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("freed 0 objects"), "{}", text(&o));
}
