//! A damaged store repairs itself: a cache hit checks what it hands on, a
//! write replaces a damaged object, `fsck` finds and removes what is broken,
//! ref moves are never lost, and a run survives a record it cannot save.
//! On the real `fs://` store (and `s3://` when `ENGINE_TEST_S3_ENDPOINT`
//! names an S3 server, as `scripts/test.sh` starts one).

mod common;
use common::{FsStore, errors, fs_store, opts, run_with, status};
use engine_core::digest::Digest;
use engine_core::records::{RunRecord, RunStatus, TaskStatus};
use engine_core::store::{Manifest, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

async fn run(yaml: &str, store: &Store) -> RunRecord {
    run_with(yaml, store, opts(2)).await
}

const TWO: &str = r#"
name: two
stages:
  a: { uses: builtin.echo, with: { text: precious } }
  b: { uses: builtin.concat, needs: [a] }
"#;

const MAP: &str = r#"
name: map
stages:
  make: { uses: builtin.items, with: { count: 6 } }
  shout: { uses: builtin.upper, map: { over: make.items, batch: 2 } }
  gather: { uses: builtin.concat, needs: [shout] }
"#;

impl FsStore {
    fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// The blob of `a`'s `text.txt` after a first run.
async fn precious_blob(s: &FsStore, r: &RunRecord) -> (Digest, PathBuf) {
    let m = s
        .store
        .get_manifest(&r.task("a").unwrap().outputs["out"])
        .await
        .unwrap();
    let d = m.files["text.txt"].digest.clone();
    let path = s.file(&Store::blob_path(&d));
    (d, path)
}

#[tokio::test]
async fn a_rerun_rebuilds_a_deleted_blob_instead_of_serving_the_cache() {
    let s = fs_store();
    let r = run(TWO, &s.store).await;
    let (d, path) = precious_blob(&s, &r).await;
    // What the old "corrupt blob" advice said to do: delete it and rerun.
    std::fs::remove_file(&path).unwrap();
    let r = run(TWO, &s.store).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    assert_eq!(status(&r, "a"), TaskStatus::Done);
    let reason = &r.task("a").unwrap().reason;
    assert!(
        reason.contains("damaged") && reason.contains(d.as_str()),
        "{reason}"
    );
    assert_eq!(s.store.get_blob(&d).await.unwrap(), b"precious");
}

#[tokio::test]
async fn a_truncated_blob_is_replaced_by_the_next_write() {
    let s = fs_store();
    let r = run(TWO, &s.store).await;
    let (d, path) = precious_blob(&s, &r).await;
    std::fs::write(&path, b"").unwrap();
    let r = run(TWO, &s.store).await;
    assert_eq!(status(&r, "a"), TaskStatus::Done, "{:?}", errors(&r));
    assert_eq!(s.store.get_blob(&d).await.unwrap(), b"precious");
    // Straight through the store API too: a put of the same bytes repairs.
    std::fs::write(&path, b"pre").unwrap();
    s.store.put_blob(b"precious".to_vec()).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test]
async fn a_zero_byte_manifest_is_rebuilt_by_the_next_run() {
    let s = fs_store();
    let r = run(TWO, &s.store).await;
    let out = r.task("a").unwrap().outputs["out"].clone();
    std::fs::write(s.file(&Store::manifest_path(&out)), b"").unwrap();
    let r = run(TWO, &s.store).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    assert_eq!(status(&r, "a"), TaskStatus::Done);
    assert_eq!(r.task("a").unwrap().outputs["out"], out);
    s.store.get_manifest(&out).await.unwrap();
}

/// Objects and cache documents are written without an fsync each and made
/// durable together at the end of a run (`Store::flush`): a power cut in
/// between can leave them empty. That must cost a rerun, never a failure
/// or a wrong result.
#[tokio::test]
async fn what_a_power_cut_leaves_of_deferred_writes_costs_only_a_rerun() {
    let s = fs_store();
    let r = run(TWO, &s.store).await;
    let a = r.task("a").unwrap();
    let out = a.outputs["out"].clone();
    let fp = a.fingerprint.clone().unwrap();
    let lineage = s.file(&engine_core::records::lineage_path(&out));
    for rel in [
        engine_core::cache::task_path(&fp),
        engine_core::cache::last_path("two", "a"),
    ] {
        let f = s.file(&rel);
        assert!(f.exists(), "{rel} was not written");
        std::fs::write(&f, b"").unwrap();
    }
    std::fs::write(&lineage, b"").unwrap();
    let r = run(TWO, &s.store).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    assert_eq!(status(&r, "a"), TaskStatus::Done);
    assert!(
        r.task("a").unwrap().reason.contains("damaged"),
        "{}",
        r.task("a").unwrap().reason
    );
    assert_eq!(r.task("a").unwrap().outputs["out"], out);
    let l: engine_core::records::Lineage =
        serde_json::from_slice(&std::fs::read(&lineage).unwrap()).unwrap();
    assert_eq!(l.artifact, out);
    // And the rerun's own entries are whole again: a third run is cached.
    let r = run(TWO, &s.store).await;
    assert_eq!(status(&r, "a"), TaskStatus::Cached, "{:?}", errors(&r));
}

#[tokio::test]
async fn a_same_size_corruption_is_found_by_verify_and_rewritten_by_force() {
    let s = fs_store();
    let r = run(TWO, &s.store).await;
    let (d, path) = precious_blob(&s, &r).await;
    std::fs::write(&path, b"PRECIOUS").unwrap();
    // A size check cannot see it; `--verify` hashes and rebuilds.
    let mut o = opts(2);
    o.verify = true;
    let r = run_with(TWO, &s.store, o).await;
    assert_eq!(status(&r, "a"), TaskStatus::Done, "{:?}", errors(&r));
    assert_eq!(s.store.get_blob(&d).await.unwrap(), b"precious");
    // `--force a` rewrites what does not match, too.
    std::fs::write(&path, b"PRECIOUS").unwrap();
    let mut o = opts(2);
    o.force = vec!["a".into()];
    let r = run_with(TWO, &s.store, o).await;
    assert_eq!(status(&r, "a"), TaskStatus::Done, "{:?}", errors(&r));
    assert_eq!(s.store.get_blob(&d).await.unwrap(), b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_item_whose_blob_is_gone_runs_again_alone() {
    let s = fs_store();
    let r = run(MAP, &s.store).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    let items = s
        .store
        .get_manifest(&r.task("shout").unwrap().outputs["items"])
        .await
        .unwrap();
    let victim = items.items[3].files.values().next().unwrap().digest.clone();
    std::fs::remove_file(s.file(&Store::blob_path(&victim))).unwrap();
    let r = run(MAP, &s.store).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    assert_eq!(status(&r, "make"), TaskStatus::Cached);
    assert_eq!(status(&r, "shout"), TaskStatus::Done);
    let counts = r.task("shout").unwrap().items.unwrap();
    assert_eq!((counts.run, counts.cached), (1, 5));
    s.store.get_blob(&victim).await.unwrap();
}

#[tokio::test]
async fn fsck_reports_broken_objects_and_repair_lets_the_next_run_rebuild_them() {
    let s = fs_store();
    let r = run(TWO, &s.store).await;
    let out = r.task("a").unwrap().outputs["out"].clone();
    s.store.set_ref("things/a", &out, "").await.unwrap();
    let clean = engine_core::fsck::fsck(&s.store, false).await.unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert!(clean.checked["blobs"] >= 1, "{clean:?}");

    let (d, path) = precious_blob(&s, &r).await;
    std::fs::write(&path, b"PRECIOUS").unwrap();
    let found = engine_core::fsck::fsck(&s.store, false).await.unwrap();
    let paths: Vec<&str> = found.problems.iter().map(|p| p.path.as_str()).collect();
    // The blob, the manifest listing it, the cache entry naming that, the ref.
    assert!(paths.contains(&Store::blob_path(&d).as_str()), "{found:?}");
    assert!(
        paths.contains(&Store::manifest_path(&out).as_str()),
        "{found:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("cache/tasks/")),
        "{found:?}"
    );
    assert!(paths.contains(&"refs/things/a.json"), "{found:?}");
    assert!(found.problems.iter().all(|p| !p.removed));
    assert!(path.exists(), "fsck without repair removed something");

    let repaired = engine_core::fsck::fsck(&s.store, true).await.unwrap();
    assert_eq!(repaired.problems.len(), found.problems.len());
    assert!(!path.exists());
    assert!(
        s.file("refs/things/a.json").exists(),
        "refs are never removed"
    );
    let r = run(TWO, &s.store).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    assert_eq!(status(&r, "a"), TaskStatus::Done);
    assert_eq!(s.store.get_blob(&d).await.unwrap(), b"precious");
    let after = engine_core::fsck::fsck(&s.store, false).await.unwrap();
    assert!(after.is_clean(), "{after:?}");
}

/// Twenty artifacts to point a ref at.
async fn twenty_artifacts(store: &Store) -> Vec<Digest> {
    let mut out = vec![];
    for i in 0..20 {
        let m = Manifest {
            meta: serde_json::json!({ "n": i }),
            ..Default::default()
        };
        out.push(store.put_manifest(&m).await.unwrap());
    }
    out
}

fn assert_history_whole(doc: &engine_core::store::RefDoc, targets: &[Digest]) {
    assert_eq!(
        doc.history.len(),
        targets.len(),
        "moves were lost: {} of {} in the history",
        doc.history.len(),
        targets.len()
    );
    for t in targets {
        assert!(doc.history.iter().any(|e| &e.digest == t), "{t} is missing");
    }
    for w in doc.history.windows(2) {
        assert_eq!(w[1].previous.as_ref(), Some(&w[0].digest));
    }
}

#[test]
fn twenty_concurrent_ref_moves_on_fs_keep_twenty_history_entries() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let targets = rt.block_on(twenty_artifacts(&store));
    let start = Arc::new(std::sync::Barrier::new(targets.len()));
    // One thread, runtime and store handle each: as twenty processes.
    let threads: Vec<_> = targets
        .iter()
        .cloned()
        .map(|d| {
            let (base, start) = (dir.path().to_path_buf(), start.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let store = Store::open("fs://store", &base).unwrap();
                start.wait();
                rt.block_on(store.set_ref("models/x/production", &d, "race"))
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let doc = rt
        .block_on(store.get_ref("models/x/production"))
        .unwrap()
        .unwrap();
    assert_history_whole(&doc, &targets);
    assert!(
        !dir.path()
            .join("store/locks/refs/models/x/production.lock")
            .exists(),
        "the lock was left behind"
    );
    // A move to where the ref points records nothing.
    let current = doc.current().unwrap().clone();
    let again = rt
        .block_on(store.set_ref("models/x/production", &current, "again"))
        .unwrap();
    assert_eq!(again.history.len(), 20);
}

#[tokio::test]
async fn a_stale_ref_lock_is_broken_and_a_fresh_one_waited_for() {
    let s = fs_store();
    let targets = twenty_artifacts(&s.store).await;
    let lock = s.file("locks/refs/models/y.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "someone@gone pid 1").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let doc = tokio::time::timeout(
        Duration::from_secs(10),
        s.store.set_ref("models/y", &targets[0], ""),
    )
    .await
    .expect("a stale lock blocked the move")
    .unwrap();
    assert_eq!(doc.history.len(), 1);
    assert!(!lock.exists());
}

fn s3_store(tag: &str) -> Option<Store> {
    let Ok(endpoint) = std::env::var("ENGINE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide ENGINE_TEST_S3_ENDPOINT (an S3 server)"
        );
        eprintln!("skipped: set ENGINE_TEST_S3_ENDPOINT to test s3://");
        return None;
    };
    let bucket = std::env::var("ENGINE_TEST_S3_BUCKET").unwrap_or_else(|_| "engine-test".into());
    let url = format!(
        "s3://{bucket}/{tag}-{}-{}?endpoint={endpoint}",
        std::process::id(),
        Digest::of(format!("{:?}", std::time::SystemTime::now()).as_bytes()).short()
    );
    Some(Store::open(&url, Path::new(".")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ref_moves_on_s3_keep_every_history_entry() {
    let Some(store) = s3_store("refs") else {
        return;
    };
    let targets = twenty_artifacts(&store).await;
    let mut join = tokio::task::JoinSet::new();
    for d in targets.clone() {
        let store = store.clone();
        join.spawn(async move { store.set_ref("models/s3/production", &d, "race").await });
    }
    while let Some(r) = join.join_next().await {
        r.unwrap().unwrap();
    }
    let doc = store
        .get_ref("models/s3/production")
        .await
        .unwrap()
        .unwrap();
    assert_history_whole(&doc, &targets);
}

#[tokio::test]
async fn a_rerun_on_s3_rebuilds_a_deleted_blob_and_fsck_sees_it() {
    let Some(store) = s3_store("repair") else {
        return;
    };
    let r = run(TWO, &store).await;
    let m = store
        .get_manifest(&r.task("a").unwrap().outputs["out"])
        .await
        .unwrap();
    let d = m.files["text.txt"].digest.clone();
    store.delete(&Store::blob_path(&d)).await.unwrap();
    let report = engine_core::fsck::fsck(&store, false).await.unwrap();
    assert!(!report.is_clean(), "{report:?}");
    let r = run(TWO, &store).await;
    assert_eq!(status(&r, "a"), TaskStatus::Done, "{:?}", errors(&r));
    assert_eq!(store.get_blob(&d).await.unwrap(), b"precious");
    let report = engine_core::fsck::fsck(&store, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn a_run_record_that_cannot_be_saved_warns_and_the_run_goes_on() {
    let s = fs_store();
    let o = opts(2);
    // A folder where the record goes: every save of it fails.
    std::fs::create_dir_all(s.file(&format!("runs/{}.json", o.run_id))).unwrap();
    let r = run_with(TWO, &s.store, o).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("Failed to save the run record")),
        "{:?}",
        r.warnings
    );
    // Its outputs are stored and cached all the same.
    let o = opts(2);
    let again = run_with(TWO, &s.store, o).await;
    assert!(again.tasks.iter().all(|t| t.status == TaskStatus::Cached));
}

#[tokio::test]
async fn an_optional_ref_that_cannot_be_read_fails_the_task() {
    let s = fs_store();
    let yaml = r#"
name: optional
stages:
  prev: { uses: artifact.ref, with: { name: "things/x@latest", optional: true } }
  use: { uses: builtin.concat, needs: [prev] }
"#;
    // Missing: the optional ref yields its empty stand-in.
    let r = run(yaml, &s.store).await;
    assert_eq!(status(&r, "prev"), TaskStatus::Done, "{:?}", errors(&r));
    // There but unreadable: that is an error, not "missing".
    std::fs::create_dir_all(s.file("refs/things/x")).unwrap();
    std::fs::write(s.file("refs/things/x/latest.json"), b"{ not json").unwrap();
    let r = run(yaml, &s.store).await;
    assert_eq!(status(&r, "prev"), TaskStatus::Failed);
    let err = r.task("prev").unwrap().error.clone().unwrap();
    assert!(
        err.contains("Failed to resolve") && err.contains("latest.json"),
        "{err}"
    );
}

/// A proxy in front of the S3 server that answers `503 Slow Down` to the
/// first request of every other connection, as a busy S3 does; four times
/// in all, fewer than the retries one request gets, however requests and
/// connections interleave.
async fn flaky_proxy(upstream: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0usize.. {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if n % 2 == 1 || n >= 8 {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                    }
                    return;
                }
                // Read the whole request (headers, then the body), then refuse it.
                let mut buf = vec![];
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let Ok(k) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let Ok(k) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                let body = "<Error><Code>SlowDown</Code><Message>busy</Message></Error>";
                let _ = conn
                    .write_all(
                        format!(
                            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_store_retries_a_server_that_is_busy_now_and_then() {
    let Ok(endpoint) = std::env::var("ENGINE_TEST_S3_ENDPOINT") else {
        eprintln!("skipped: set ENGINE_TEST_S3_ENDPOINT to test s3://");
        return;
    };
    let proxy = flaky_proxy(endpoint.trim_start_matches("http://").to_string()).await;
    let bucket = std::env::var("ENGINE_TEST_S3_BUCKET").unwrap_or_else(|_| "engine-test".into());
    let url = format!(
        "s3://{bucket}/flaky-{}?endpoint={proxy}",
        std::process::id()
    );
    let store = Store::open(&url, Path::new(".")).unwrap();
    for i in 0..6 {
        let b = store
            .put_blob(format!("blob {i}").into_bytes())
            .await
            .unwrap();
        assert_eq!(
            store.get_blob(&b.digest).await.unwrap(),
            format!("blob {i}").as_bytes()
        );
    }
    let r = run(TWO, &store).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
}
