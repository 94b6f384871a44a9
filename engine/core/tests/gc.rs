//! `gc` frees what only unreferenced old runs made, keeps every artifact a
//! ref ever pointed at (byte for byte) and the last runs fully cached,
//! deletes nothing on a dry run, and leaves a run that writes meanwhile
//! whole. On the real `fs://` store (and `s3://` when
//! `ENGINE_TEST_S3_ENDPOINT` names an S3 server, as `scripts/test.sh`
//! starts one).

mod common;
use common::{errors, fs_store, opts, run_with};
use engine_core::cache;
use engine_core::digest::Digest;
use engine_core::gc::{self, GcOptions, GcReport};
use engine_core::records::{self, RunRecord, RunStatus, TaskStatus};
use engine_core::store::Store;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

async fn run(yaml: &str, store: &Store) -> RunRecord {
    let r = run_with(yaml, store, opts(2)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    r
}

/// Two tasks; `b` is made from `a`, so a new `text` changes both.
fn pipeline(text: &str) -> String {
    format!(
        r#"
name: grow
stages:
  a: {{ uses: builtin.echo, with: {{ text: {text} }} }}
  b: {{ uses: builtin.echo, with: {{ text: "more-" }}, needs: [a] }}
"#
    )
}

fn no_grace(keep_runs: usize) -> GcOptions {
    GcOptions {
        keep_runs,
        grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

fn freed(r: &GcReport, kind: &str) -> usize {
    r.freed.get(kind).map_or(0, |t| t.objects)
}

/// Every path in the store and its size.
async fn everything(store: &Store) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for dir in ["blobs", "artifacts", "cache", "lineage", "refs", "runs"] {
        for l in store.list_all_with_meta(dir).await.unwrap() {
            out.insert(l.path, l.size);
        }
    }
    out
}

/// The manifest and every blob of an artifact read back, verified.
async fn read_back(store: &Store, d: &Digest) -> Vec<Vec<u8>> {
    let m = store
        .get_manifest(d)
        .await
        .unwrap_or_else(|e| panic!("manifest {d}: {e}"));
    let mut out = vec![];
    for b in m.blobs() {
        out.push(
            store
                .get_blob(&b.digest)
                .await
                .unwrap_or_else(|e| panic!("blob {} of {d}: {e}", b.digest)),
        );
    }
    out
}

/// What the scenario leaves: the first run's `a` is published as a ref
/// (then the ref moves on, so only its history holds it), and nothing
/// references the first run's `b`.
struct Grown {
    first: RunRecord,
    second: RunRecord,
}

async fn grow(store: &Store) -> Grown {
    let first = run(&pipeline("first"), store).await;
    let second = run(&pipeline("second"), store).await;
    let a1 = first.task("a").unwrap().outputs["out"].clone();
    let b2 = second.task("b").unwrap().outputs["out"].clone();
    store.set_ref("demo/model", &a1, "first").await.unwrap();
    store.set_ref("demo/model", &b2, "second").await.unwrap();
    Grown { first, second }
}

/// The core scenario, on any store.
async fn frees_the_old_run_and_keeps_what_refs_and_the_last_run_need(store: &Store) {
    let g = grow(store).await;
    let b1 = g.first.task("b").unwrap();
    let b1_out = b1.outputs["out"].clone();
    let b1_blob = store.get_manifest(&b1_out).await.unwrap().files["text.txt"]
        .digest
        .clone();
    assert_eq!(store.get_blob(&b1_blob).await.unwrap(), b"more-first");
    let b1_entry = cache::task_path(b1.fingerprint.as_ref().unwrap());
    assert!(store.exists(&b1_entry).await.unwrap());

    let report = gc::gc(store, &no_grace(1)).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.runs_kept, vec![g.second.id.clone()]);
    // Only the first run's `b` goes: its manifest, blob, lineage, cache
    // entry; and the first run's record.
    assert_eq!(freed(&report, gc::MANIFESTS), 1, "{report:?}");
    assert_eq!(freed(&report, gc::BLOBS), 1, "{report:?}");
    assert_eq!(freed(&report, gc::TASK_ENTRIES), 1, "{report:?}");
    assert_eq!(freed(&report, gc::LINEAGE), 1, "{report:?}");
    assert_eq!(freed(&report, gc::RUNS), 1, "{report:?}");
    assert!(report.total_freed().bytes > 0);
    assert!(!store.exists(&Store::manifest_path(&b1_out)).await.unwrap());
    assert!(!store.exists(&Store::blob_path(&b1_blob)).await.unwrap());
    assert!(!store.exists(&b1_entry).await.unwrap());
    assert!(!store.exists(&records::lineage_path(&b1_out)).await.unwrap());
    assert!(
        records::load_run(store, &g.first.id)
            .await
            .unwrap()
            .is_none()
    );

    // Everything the ref ever pointed at reads back byte for byte.
    let doc = store.get_ref("demo/model").await.unwrap().unwrap();
    assert_eq!(doc.history.len(), 2);
    assert_eq!(
        read_back(store, &doc.history[0].digest).await,
        vec![b"first".to_vec()]
    );
    assert_eq!(
        read_back(store, &doc.history[1].digest).await,
        vec![b"more-second".to_vec()]
    );
    let report = engine_core::fsck::fsck(store, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    // The kept run is fully cached.
    let again = run(&pipeline("second"), store).await;
    for t in &again.tasks {
        assert_eq!(t.status, TaskStatus::Cached, "{}: {}", t.task, t.reason);
    }
    // The first pipeline: `a` is still cached (the ref keeps it); `b`'s
    // entry went with its outputs, so it is simply missed, not damaged.
    let first = run(&pipeline("first"), store).await;
    assert_eq!(first.task("a").unwrap().status, TaskStatus::Cached);
    let b = first.task("b").unwrap();
    assert_eq!(b.status, TaskStatus::Done);
    assert!(!b.reason.contains("damaged"), "{}", b.reason);
    assert_eq!(
        read_back(store, &b.outputs["out"]).await,
        vec![b"more-first".to_vec()]
    );

    // A second gc right away finds nothing more of the first run to free.
    let report = gc::gc(store, &no_grace(2)).await.unwrap();
    assert_eq!(report.total_freed().objects, freed(&report, gc::RUNS));
}

#[tokio::test]
async fn gc_frees_an_unreferenced_old_run_and_keeps_ref_history_and_the_last_run() {
    let s = fs_store();
    frees_the_old_run_and_keeps_what_refs_and_the_last_run_need(&s.store).await;
}

#[tokio::test]
async fn a_dry_run_deletes_nothing_and_reports_what_gc_then_frees() {
    let s = fs_store();
    grow(&s.store).await;
    let before = everything(&s.store).await;
    let dry = gc::gc(
        &s.store,
        &GcOptions {
            dry_run: true,
            ..no_grace(1)
        },
    )
    .await
    .unwrap();
    assert!(dry.dry_run);
    assert!(dry.total_freed().objects >= 5, "{dry:?}");
    assert_eq!(everything(&s.store).await, before);
    let real = gc::gc(&s.store, &no_grace(1)).await.unwrap();
    assert_eq!(real.freed, dry.freed);
    assert_eq!(
        everything(&s.store).await.len(),
        before.len() - real.total_freed().objects
    );
}

#[tokio::test]
async fn the_grace_period_keeps_young_objects() {
    let s = fs_store();
    grow(&s.store).await;
    let before = everything(&s.store).await;
    let report = gc::gc(
        &s.store,
        &GcOptions {
            keep_runs: 1,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.total_freed().objects, 0, "{report:?}");
    assert_eq!(everything(&s.store).await, before);
}

/// Makes every file of an fs store two hours old.
fn age(root: &Path) {
    let then = SystemTime::now() - Duration::from_secs(2 * 3600);
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(then)
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_write_that_finds_an_old_object_makes_it_young_so_gc_keeps_it() {
    let s = fs_store();
    let kept = s.store.put_blob(b"made again".to_vec()).await.unwrap();
    let gone = s.store.put_blob(b"made once".to_vec()).await.unwrap();
    age(&s.root);
    // A run makes the same bytes again while gc decides: the write finds
    // the blob whole and does not write it, so only its age can save it.
    s.store.put_blob(b"made again".to_vec()).await.unwrap();
    let report = gc::gc(&s.store, &GcOptions::default()).await.unwrap();
    assert_eq!(freed(&report, gc::BLOBS), 1, "{report:?}");
    assert_eq!(s.store.get_blob(&kept.digest).await.unwrap(), b"made again");
    assert!(
        !s.store
            .exists(&Store::blob_path(&gone.digest))
            .await
            .unwrap()
    );
}

/// `a` is the old run's cached work; `c` reads it only after `s` sleeps,
/// while gc runs.
const OLD: &str = r#"
name: old
stages:
  a: { uses: builtin.echo, with: { text: shared } }
  x: { uses: builtin.echo, with: { text: only-old } }
"#;

const CONCURRENT: &str = r#"
name: concurrent
stages:
  a: { uses: builtin.echo, with: { text: shared } }
  s: { uses: builtin.sleep, with: { ms: 1500 } }
  c: { uses: builtin.concat, needs: [a, s] }
"#;

/// An old run, then a run that hits its cache entry and reads what it
/// names only after gc (with `grace`) has run; `age` makes the old run's
/// objects older than the grace period.
async fn a_run_during_gc_stays_whole(store: &Store, grace: Duration, age: impl FnOnce()) {
    let old = run(OLD, store).await;
    age();
    let gc_opts = GcOptions {
        keep_runs: 1,
        grace,
        ..GcOptions::default()
    };
    let s = store;
    let store = s.clone();
    let running = tokio::spawn(async move { run_with(CONCURRENT, &store, opts(2)).await });
    // Wait until the run has saved its record and hit the old entry of `a`.
    let t0 = std::time::Instant::now();
    let id = loop {
        let ids = records::list_runs(s).await.unwrap();
        if let Some(id) = ids.iter().find(|i| **i != old.id) {
            break id.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished(), "the run ended before gc began");

    let report = gc::gc(s, &gc_opts).await.unwrap();
    assert!(!running.is_finished(), "the run ended before gc did");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.running, vec![id.clone()]);
    assert_eq!(report.runs_kept, vec![id.clone()]);
    // The old run's record went while the run was writing.
    assert_eq!(freed(&report, gc::RUNS), 1, "{report:?}");

    let r = running.await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", errors(&r));
    assert_eq!(r.task("a").unwrap().status, TaskStatus::Cached);
    for t in &r.tasks {
        for d in t.outputs.values() {
            read_back(s, d).await;
        }
    }
    let c = read_back(s, &r.task("c").unwrap().outputs["out"]).await;
    assert!(
        c[0].starts_with(b"shared"),
        "{:?}",
        String::from_utf8_lossy(&c[0])
    );
    // With the run over, a later gc frees what only the old run made.
    let report = gc::gc(s, &no_grace(1)).await.unwrap();
    assert!(freed(&report, gc::MANIFESTS) >= 1, "{report:?}");
    for t in &r.tasks {
        for d in t.outputs.values() {
            read_back(s, d).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writing_during_gc_succeeds_and_reads_everything_back() {
    let s = fs_store();
    a_run_during_gc_stays_whole(&s.store, GcOptions::default().grace, || age(&s.root)).await;
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
        Digest::of(format!("{:?}", SystemTime::now()).as_bytes()).short()
    );
    Some(Store::open(&url, Path::new(".")).unwrap())
}

#[tokio::test]
async fn gc_on_s3_frees_the_old_run_and_keeps_ref_history_and_the_last_run() {
    let Some(store) = s3_store("gc") else {
        return;
    };
    frees_the_old_run_and_keeps_what_refs_and_the_last_run_need(&store).await;
}

#[tokio::test]
async fn a_dry_run_on_s3_deletes_nothing() {
    let Some(store) = s3_store("gc-dry") else {
        return;
    };
    grow(&store).await;
    let before = everything(&store).await;
    let dry = gc::gc(
        &store,
        &GcOptions {
            dry_run: true,
            ..no_grace(1)
        },
    )
    .await
    .unwrap();
    assert!(dry.total_freed().objects >= 5, "{dry:?}");
    assert_eq!(everything(&store).await, before);
}

/// S3 object times cannot be set back, so gc runs with no grace at all:
/// only the running run's record protects what it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writing_during_gc_on_s3_succeeds_and_reads_everything_back() {
    let Some(store) = s3_store("gc-concurrent") else {
        return;
    };
    a_run_during_gc_stays_whole(&store, Duration::ZERO, || {}).await;
}

#[tokio::test]
async fn keep_days_keeps_every_recent_run() {
    let s = fs_store();
    grow(&s.store).await;
    let report = gc::gc(
        &s.store,
        &GcOptions {
            keep_for: Some(Duration::from_secs(24 * 3600)),
            ..no_grace(1)
        },
    )
    .await
    .unwrap();
    assert_eq!(report.runs_kept.len(), 2, "{report:?}");
    assert_eq!(report.total_freed().objects, 0, "{report:?}");
}

fn map_pipeline(salt: &str) -> String {
    format!(
        r#"
name: items
stages:
  make: {{ uses: builtin.items, with: {{ count: 4, salt: "{salt}" }} }}
  shout: {{ uses: builtin.upper, map: {{ over: make.items, batch: 2 }} }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_cache_entries_go_with_their_blobs_and_the_kept_run_stays_cached() {
    let s = fs_store();
    run(&map_pipeline("old"), &s.store).await;
    let before = s.store.list_all("cache/items").await.unwrap().len();
    assert_eq!(before, 4);
    run(&map_pipeline("new"), &s.store).await;
    let report = gc::gc(&s.store, &no_grace(1)).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    // The old run's four items: entries, and their blobs in and out.
    assert_eq!(freed(&report, gc::ITEM_ENTRIES), 4, "{report:?}");
    assert_eq!(freed(&report, gc::BLOBS), 8, "{report:?}");
    assert_eq!(s.store.list_all("cache/items").await.unwrap().len(), 4);
    let again = run(&map_pipeline("new"), &s.store).await;
    for t in &again.tasks {
        assert_eq!(t.status, TaskStatus::Cached, "{}: {}", t.task, t.reason);
    }
    let shout = again.task("shout").unwrap();
    for blob in read_back(&s.store, &shout.outputs["items"]).await {
        assert!(String::from_utf8_lossy(&blob).ends_with("NEW\n"));
    }
    // The old pipeline runs its items again, from scratch, not damaged.
    let old = run(&map_pipeline("old"), &s.store).await;
    let counts = old.task("shout").unwrap().items.unwrap();
    assert_eq!((counts.run, counts.cached), (4, 0));
    assert!(!old.task("shout").unwrap().reason.contains("damaged"));
}

/// A record left saying `running` by an engine that died (its process is
/// gone) is kept, but does not keep the whole cache alive.
#[tokio::test]
async fn a_dead_runs_record_is_kept_but_does_not_protect_the_cache() {
    let s = fs_store();
    run(OLD, &s.store).await;
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let id = "29991231-235959-999-dead";
    let host = hostname();
    let rec = serde_json::json!({
        "id": id, "pipeline": "p", "file": "p.yaml", "status": "running",
        "started": "2026-01-01T00:00:00Z", "engine_version": "0", "host": host,
        "pid": dead, "pipeline_digest": Digest::of(b"p"), "spec": "", "values": {},
        "store": "fs://store", "executor": "local", "tasks": [],
    });
    s.store
        .put_json(&records::run_path(id), &rec)
        .await
        .unwrap();
    let report = gc::gc(&s.store, &no_grace(1)).await.unwrap();
    assert!(report.running.is_empty(), "{report:?}");
    assert_eq!(report.runs_kept, vec![id.to_string()]);
    // The old run's two tasks: entries, manifests, blobs, lineage; its record.
    assert_eq!(freed(&report, gc::TASK_ENTRIES), 2, "{report:?}");
    assert_eq!(freed(&report, gc::RUNS), 1, "{report:?}");
    assert!(records::load_run(&s.store, id).await.unwrap().is_some());
}

fn hostname() -> String {
    std::process::Command::new("hostname")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
