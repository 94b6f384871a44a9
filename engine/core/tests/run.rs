//! End-to-end runs of the engine, in process, on `memory://` and `fs://`
//! stores (and `s3://` when `ENGINE_TEST_S3_ENDPOINT` is set).

mod common;
use common::{mem_store, opts, run_with, status};
use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{RunRecord, RunStatus, TaskStatus};
use engine_core::scheduler::{self};
use engine_core::stage::Registry;
use engine_core::store::{Store, StoreError};
use std::time::{Duration, Instant};

async fn run(yaml: &str, store: &Store) -> RunRecord {
    run_with(yaml, store, opts(4)).await
}

/// Most intervals open at once, from the resource-holding intervals.
fn max_overlap(r: &RunRecord, stage: &str) -> usize {
    let mut ev: Vec<(f64, i32)> = vec![];
    for t in r.tasks.iter().filter(|t| t.stage == stage) {
        for [a, b] in &t.held_ms {
            ev.push((*a, 1));
            ev.push((*b, -1));
        }
    }
    ev.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut cur, mut max) = (0, 0);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

const SLEEPERS: &str = r#"
name: sleepers
resources:
  two: { cpus: 1, slots: 2 }
  wide: { cpus: 2 }
  one: { cpus: 1 }
stages:
  slotted:
    uses: builtin.sleep
    resources: two
    with: { ms: 120 }
    matrix: { tag: [1, 2, 3, 4, 5, 6] }
  wide:
    uses: builtin.sleep
    needs: [slotted]
    resources: wide
    with: { ms: 120 }
    matrix: { tag: [1, 2, 3, 4] }
  narrow:
    uses: builtin.sleep
    needs: [wide]
    resources: one
    with: { ms: 120 }
    matrix: { tag: [1, 2, 3, 4, 5, 6] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resource_classes_limit_concurrency() {
    let store = mem_store("classes");
    let r = run_with(SLEEPERS, &store, opts(4)).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    // slots: 2 caps the class although 4 cpus are free.
    assert_eq!(max_overlap(&r, "slotted"), 2);
    // cpus: 2 on a 4-cpu machine: two at once.
    assert_eq!(max_overlap(&r, "wide"), 2);
    // cpus: 1, no slots: the machine's 4 cpus are the limit, and are used.
    assert_eq!(max_overlap(&r, "narrow"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn independent_tasks_run_in_parallel_and_classes_bigger_than_the_machine_run_alone() {
    let yaml = r#"
name: par
resources:
  huge: { cpus: 64 }
stages:
  a: { uses: builtin.sleep, with: { ms: 150, tag: a } }
  b: { uses: builtin.sleep, with: { ms: 150, tag: b } }
  c: { uses: builtin.sleep, with: { ms: 150, tag: c } }
  big:
    uses: builtin.sleep
    resources: huge
    with: { ms: 50 }
    matrix: { tag: [1, 2, 3] }
"#;
    let store = mem_store("par");
    let r = run_with(yaml, &store, opts(4)).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert!(
        r.warnings.iter().any(|w| w.contains("`huge`")),
        "{:?}",
        r.warnings
    );
    assert_eq!(max_overlap(&r, "big"), 1);
    let starts: Vec<f64> = ["a", "b", "c"]
        .iter()
        .map(|t| r.task(t).unwrap().held_ms[0][0])
        .collect();
    let ends: Vec<f64> = ["a", "b", "c"]
        .iter()
        .map(|t| r.task(t).unwrap().held_ms[0][1])
        .collect();
    let latest_start = starts.iter().cloned().fold(0.0, f64::max);
    let earliest_end = ends.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        latest_start < earliest_end,
        "a, b and c should overlap: {starts:?} {ends:?}"
    );
}

const HELLO: &str = r#"
name: hello
stages:
  make:
    uses: builtin.items
    with: { count: COUNT }
  shout:
    uses: builtin.upper
    map: { over: make.items, batch: 4 }
  gather:
    uses: builtin.concat
    needs: [shout]
"#;

#[tokio::test]
async fn rerun_hits_the_cache_and_reuses_outputs() {
    let store = mem_store("rerun");
    let yaml = HELLO.replace("COUNT", "6");
    let first = run(&yaml, &store).await;
    assert_eq!(first.status, RunStatus::Succeeded);
    assert!(first.tasks.iter().all(|t| t.status == TaskStatus::Done));
    let second = run(&yaml, &store).await;
    assert!(
        second.tasks.iter().all(|t| t.status == TaskStatus::Cached),
        "{:?}",
        second.counts()
    );
    assert_eq!(
        first.task("gather").unwrap().outputs,
        second.task("gather").unwrap().outputs
    );
    let d = &second.task("gather").unwrap().outputs["out"];
    let m = store.get_manifest(d).await.unwrap();
    let text =
        String::from_utf8(store.get_blob(&m.files["concat.txt"].digest).await.unwrap()).unwrap();
    assert!(text.starts_with("ITEM-0000\nITEM-0001\n"), "{text}");
}

#[tokio::test]
async fn map_stages_cache_per_item() {
    let store = mem_store("per-item");
    let r = run(&HELLO.replace("COUNT", "20"), &store).await;
    let shout = r.task("shout").unwrap();
    let c = shout.items.unwrap();
    assert_eq!((c.total, c.run, c.cached), (20, 20, 0));
    // Each batch that ran held a grant, inside the task's own span.
    assert!(!shout.held_ms.is_empty());
    let (a, b) = (shout.started_ms.unwrap(), shout.finished_ms.unwrap());
    assert!(
        shout
            .held_ms
            .iter()
            .all(|[x, y]| a <= *x && x <= y && *y <= b),
        "{:?}",
        shout.held_ms
    );
    let r = run(&HELLO.replace("COUNT", "25"), &store).await;
    assert_eq!(status(&r, "make"), TaskStatus::Done);
    let c = r.task("shout").unwrap().items.unwrap();
    assert_eq!((c.total, c.run, c.cached), (25, 5, 20));
    assert_eq!(status(&r, "gather"), TaskStatus::Done);
}

#[tokio::test]
async fn a_map_stage_reruns_every_item_when_a_side_input_changes() {
    let store = mem_store("side");
    let yaml = r#"
name: side
stages:
  make: { uses: builtin.items, with: { count: 6 } }
  model: { uses: builtin.echo, with: { text: TEXT } }
  shout: { uses: builtin.upper, needs: [model], map: { over: make.items, batch: 2 } }
"#;
    let items = |r: &RunRecord| {
        let c = r.task("shout").unwrap().items.unwrap();
        (c.run, c.cached)
    };
    assert_eq!(
        items(&run(&yaml.replace("TEXT", "v1"), &store).await),
        (6, 0)
    );
    let again = run(&yaml.replace("TEXT", "v1"), &store).await;
    assert_eq!(status(&again, "shout"), TaskStatus::Cached);
    // A new model (the side input) invalidates every item, not only new ones.
    assert_eq!(
        items(&run(&yaml.replace("TEXT", "v2"), &store).await),
        (6, 0)
    );
}

#[tokio::test]
async fn a_params_change_reruns_only_the_task_and_its_dependants() {
    let store = mem_store("params");
    let yaml = r#"
name: params
stages:
  a: { uses: builtin.echo, with: { text: TEXT } }
  b: { uses: builtin.concat, needs: [a] }
  c: { uses: builtin.echo, with: { text: constant } }
"#;
    run(&yaml.replace("TEXT", "one"), &store).await;
    let r = run(&yaml.replace("TEXT", "two"), &store).await;
    assert_eq!(status(&r, "a"), TaskStatus::Done);
    assert_eq!(r.task("a").unwrap().reason, "params changed: text");
    assert_eq!(status(&r, "b"), TaskStatus::Done);
    assert!(
        r.task("b")
            .unwrap()
            .reason
            .starts_with("input changed: a/a/out"),
        "{}",
        r.task("b").unwrap().reason
    );
    assert_eq!(status(&r, "c"), TaskStatus::Cached);
}

#[tokio::test]
async fn retries_then_success_and_failure_skips_dependants_only() {
    let store = mem_store("retry");
    let yaml = r#"
name: retry
stages:
  flaky: { uses: builtin.flaky, with: { fail_attempts: 2 }, retries: 2 }
  broken: { uses: builtin.flaky, with: { fail_attempts: 3 }, retries: 1 }
  after_broken: { uses: builtin.concat, needs: [broken] }
  after_flaky: { uses: builtin.concat, needs: [flaky] }
"#;
    let r = run(yaml, &store).await;
    assert_eq!(r.status, RunStatus::Failed);
    let f = r.task("flaky").unwrap();
    assert_eq!((f.status, f.attempts), (TaskStatus::Done, 3));
    let b = r.task("broken").unwrap();
    assert_eq!((b.status, b.attempts), (TaskStatus::Failed, 2));
    assert!(
        b.error
            .as_deref()
            .unwrap()
            .contains("flaky failure on attempt 2")
    );
    assert_eq!(status(&r, "after_broken"), TaskStatus::Skipped);
    assert_eq!(
        r.task("after_broken").unwrap().reason,
        "upstream `broken` failed"
    );
    assert_eq!(status(&r, "after_flaky"), TaskStatus::Done);
    // The log of a failed task is stored and names each attempt.
    let log = store.get_blob(b.log.as_ref().unwrap()).await.unwrap();
    assert!(String::from_utf8_lossy(&log).contains("attempt 1 failed"));
}

#[tokio::test]
async fn a_stage_timeout_fails_the_task_quickly() {
    let store = mem_store("timeout");
    let yaml = r#"
name: timeout
stages:
  slow: { uses: builtin.sleep, with: { ms: 20000 }, timeout: 200ms }
"#;
    let t0 = Instant::now();
    let r = run(yaml, &store).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(status(&r, "slow"), TaskStatus::Failed);
    assert!(
        r.task("slow")
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("timed out after 200ms")
    );
}

#[tokio::test]
async fn when_conditions_gate_stages() {
    let store = mem_store("when");
    let yaml = r#"
name: gates
stages:
  evaluate: { uses: builtin.value, with: { values: { passed: PASSED, f1: 0.93 } } }
  deploy:
    uses: builtin.echo
    needs: [evaluate]
    when: evaluate.passed and evaluate.f1 > 0.9
    with: { text: deployed }
  announce: { uses: builtin.concat, needs: [deploy] }
"#;
    let r = run(&yaml.replace("PASSED", "true"), &store).await;
    assert_eq!(status(&r, "deploy"), TaskStatus::Done);
    assert_eq!(status(&r, "announce"), TaskStatus::Done);
    let r = run(&yaml.replace("PASSED", "false"), &store).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(status(&r, "deploy"), TaskStatus::Skipped);
    assert_eq!(
        r.task("deploy").unwrap().reason,
        "condition `evaluate.passed and evaluate.f1 > 0.9` is false"
    );
    assert_eq!(status(&r, "announce"), TaskStatus::Skipped);
}

#[tokio::test]
async fn a_corrupted_blob_is_detected_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let yaml = r#"
name: corrupt
stages:
  a: { uses: builtin.echo, with: { text: precious } }
  b: { uses: builtin.concat, needs: [a] }
"#;
    let r = run(yaml, &store).await;
    let m = store
        .get_manifest(&r.task("a").unwrap().outputs["out"])
        .await
        .unwrap();
    let blob = &m.files["text.txt"].digest;
    let path = dir.path().join("store").join(Store::blob_path(blob));
    std::fs::write(&path, b"tampered").unwrap();
    match store.get_blob(blob).await {
        Err(StoreError::Corrupt { path, .. }) => assert!(path.contains(blob.as_str())),
        other => panic!("expected a corruption error, got {other:?}"),
    }
    let mut o = opts(2);
    o.force = vec!["b".into()];
    let r = run_with(yaml, &store, o).await;
    assert_eq!(status(&r, "b"), TaskStatus::Failed);
    let err = r.task("b").unwrap().error.clone().unwrap();
    assert!(
        err.contains("is corrupt") && err.contains(blob.as_str()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runs_at_once_do_not_corrupt_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let yaml = HELLO.replace("COUNT", "40");
    let (a, b) = tokio::join!(run(&yaml, &store), run(&yaml, &store));
    assert_eq!(a.status, RunStatus::Succeeded);
    assert_eq!(b.status, RunStatus::Succeeded);
    assert_eq!(
        a.task("gather").unwrap().outputs,
        b.task("gather").unwrap().outputs
    );
    // Every manifest and every blob it lists reads back and verifies.
    let mut checked = 0;
    for shard in store.list("artifacts").await.unwrap() {
        for name in store.list(&format!("artifacts/{shard}")).await.unwrap() {
            let d = engine_core::digest::Digest::parse(name.trim_end_matches(".json")).unwrap();
            let m = store.get_manifest(&d).await.unwrap();
            for b in m
                .files
                .values()
                .chain(m.items.iter().flat_map(|i| i.files.values()))
            {
                store.get_blob(&b.digest).await.unwrap();
                checked += 1;
            }
        }
    }
    assert!(checked >= 80, "checked {checked} blobs");
}

#[tokio::test]
async fn output_and_item_names_cannot_escape() {
    let store = mem_store("escape");
    for (yaml, needle) in [
        (
            "name: e1\nstages:\n  w: { uses: builtin.write, with: { files: { '../evil.txt': x } } }\n",
            "contains `..`",
        ),
        (
            "name: e2\nstages:\n  w: { uses: builtin.write, with: { files: { /etc/evil: x } } }\n",
            "absolute path",
        ),
        (
            "name: e3\nstages:\n  w: { uses: builtin.items, with: { count: 0, keys: ['ok', '../../x'] } }\n",
            "contains `..`",
        ),
    ] {
        let r = run(yaml, &store).await;
        let t = &r.tasks[0];
        assert_eq!(t.status, TaskStatus::Failed, "{yaml}");
        assert!(
            t.error.as_deref().unwrap().contains(needle),
            "{:?}",
            t.error
        );
    }
}

#[tokio::test]
async fn a_failing_item_fails_its_map_task_with_the_item_named() {
    let store = mem_store("item-fail");
    let yaml = r#"
name: itemfail
stages:
  make: { uses: builtin.items, with: { count: 5 } }
  up: { uses: builtin.upper, map: { over: make.items }, with: { fail_key: item-0003 } }
"#;
    let r = run(yaml, &store).await;
    assert_eq!(status(&r, "up"), TaskStatus::Failed);
    assert!(
        r.task("up")
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("item `item-0003`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_tasks_publishes_nothing_and_a_rerun_resumes() {
    let store = mem_store("cancel");
    let yaml = r#"
name: cancel
stages:
  quick: { uses: builtin.echo, with: { text: fast } }
  slow: { uses: builtin.sleep, needs: [quick], with: { ms: MS } }
  after: { uses: builtin.concat, needs: [slow] }
"#;
    let o = opts(2);
    let cancel = o.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let t0 = Instant::now();
    let r = run_with(&yaml.replace("MS", "30000"), &store, o).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(r.status, RunStatus::Cancelled);
    assert_eq!(status(&r, "quick"), TaskStatus::Done);
    assert_eq!(status(&r, "slow"), TaskStatus::Cancelled);
    assert_eq!(status(&r, "after"), TaskStatus::Skipped);
    // Nothing of the cancelled task was published as a result.
    let fp = r.task("slow").unwrap().fingerprint.clone().unwrap();
    assert!(
        !store
            .exists(&engine_core::cache::task_path(&fp))
            .await
            .unwrap()
    );
    // The rerun resumes: `quick` comes from the cache.
    let r2 = run(&yaml.replace("MS", "10"), &store).await;
    assert_eq!(status(&r2, "quick"), TaskStatus::Cached);
    assert_eq!(status(&r2, "slow"), TaskStatus::Done);
}

#[tokio::test]
async fn shell_stage_materialises_inputs_and_collects_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let yaml = r#"
name: shell
stages:
  make:
    uses: shell
    matrix: { env.N: [2, 3] }
    with:
      run: |
        mkdir -p out/clips
        for i in $(seq 1 $N); do echo "clip $i of $MATRIX_ENV_N" > out/clips/c$i.txt; done
        echo "made $N clips"
      collections: { clips: out/clips }
  count:
    uses: shell
    needs: [make]
    with:
      run: |
        mkdir -p out
        cat inputs/make/*/clips/*/*.txt | wc -l | tr -d ' ' > out/total.txt
      outputs: { total: out/total.txt }
  bad:
    uses: shell
    with:
      run: |
        echo "about to fail"
        exit 3
      outputs: { x: out/x.txt }
"#;
    let r = run(yaml, &store).await;
    assert_eq!(status(&r, "make[env.N=2]"), TaskStatus::Done);
    let clips = store
        .get_manifest(&r.task("make[env.N=3]").unwrap().outputs["clips"])
        .await
        .unwrap();
    let keys: Vec<&str> = clips.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["c1.txt", "c2.txt", "c3.txt"]);
    let m = store
        .get_manifest(&r.task("count").unwrap().outputs["total"])
        .await
        .unwrap();
    assert_eq!(
        store.get_blob(&m.files["total.txt"].digest).await.unwrap(),
        b"5\n"
    );
    let bad = r.task("bad").unwrap();
    assert_eq!(bad.status, TaskStatus::Failed);
    let err = bad.error.as_deref().unwrap();
    assert!(
        err.contains("exited with status 3") && err.contains("about to fail"),
        "{err}"
    );
    let log = store
        .get_blob(r.task("make[env.N=3]").unwrap().log.as_ref().unwrap())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&log).contains("made 3 clips"));
}

#[tokio::test]
async fn lineage_and_refs() {
    let store = mem_store("lineage");
    let r = run(&HELLO.replace("COUNT", "3"), &store).await;
    let out = r.task("gather").unwrap().outputs["out"].clone();
    let l = engine_core::records::load_lineage(&store, &out)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((l.run.as_str(), l.task.as_str()), (r.id.as_str(), "gather"));
    assert_eq!(
        l.inputs[0].digest,
        r.task("shout").unwrap().outputs["items"]
    );
    store
        .set_ref("models/demo/production", &out, "first")
        .await
        .unwrap();
    let other = r.task("make").unwrap().outputs["items"].clone();
    let doc = store
        .set_ref("models/demo/production", &other, "second")
        .await
        .unwrap();
    assert_eq!(doc.current(), Some(&other));
    assert_eq!(doc.history.len(), 2);
    assert_eq!(doc.history[1].previous.as_ref(), Some(&out));
    assert_eq!(
        store.resolve("models/demo@production").await.unwrap(),
        other
    );
    assert_eq!(store.resolve(&out.as_str()[..10]).await.unwrap(), out);
    assert!(matches!(
        store.set_ref("../etc", &out, "").await,
        Err(StoreError::BadName { .. })
    ));
}

#[tokio::test]
async fn plan_explains_what_would_run_and_why() {
    let store = mem_store("explain");
    let yaml = HELLO.replace("COUNT", "8");
    let reg = Registry::with_builtins();
    let p = compile("t.yaml", &yaml, &reg).unwrap();
    let pl = plan(&p);
    let d = scheduler::explain(&p, &pl, &store, &[], false)
        .await
        .unwrap();
    assert_eq!(d[0].reason, "no cache entry");
    assert_eq!(d[1].reason, "upstream `make` will run");
    run(&yaml, &store).await;
    let d = scheduler::explain(&p, &pl, &store, &["gather".into()], false)
        .await
        .unwrap();
    assert_eq!(d[0].action, "cached");
    assert_eq!(d[2].action, "run");
    assert_eq!(d[2].reason, "forced");
    let yaml12 = HELLO.replace("COUNT", "12");
    let p12 = compile("t.yaml", &yaml12, &reg).unwrap();
    let d = scheduler::explain(&p12, &plan(&p12), &store, &[], false)
        .await
        .unwrap();
    assert_eq!(d[0].reason, "params changed: count");
    // `make` would rerun, so the map's item counts are not known yet.
    assert_eq!(d[1].reason, "upstream `make` will run");
}

/// `engine plan` and `engine run` decide through one function: for every
/// task whose inputs are known, the plan's reason is the run's reason.
#[tokio::test]
async fn plan_and_run_give_the_same_reason_for_every_task() {
    let store = mem_store("agree");
    let yaml = r#"
name: agree
stages:
  model:
    uses: artifact.ref
    with: { name: "models/none@production", optional: true }
  required:
    uses: artifact.ref
    with: { name: "models/none@production" }
  always:
    uses: shell
    cache: false
    with: { run: "true" }
  hello:
    uses: builtin.echo
    with: { text: hi }
"#;
    let reg = Registry::with_builtins();
    let p = compile("t.yaml", yaml, &reg).unwrap();
    let pl = plan(&p);
    for round in 0..2 {
        let d = scheduler::explain(&p, &pl, &store, &[], false)
            .await
            .unwrap();
        let r = run(yaml, &store).await;
        for d in &d {
            let t = r.task(&d.task).unwrap();
            let ran = if t.status == TaskStatus::Cached {
                "cached"
            } else {
                "run"
            };
            assert_eq!(
                (d.action.as_str(), d.reason.as_str()),
                (ran, t.reason.as_str()),
                "round {round}, task `{}`",
                d.task
            );
        }
    }
}

#[tokio::test]
async fn s3_store_runs_and_caches() {
    let Ok(endpoint) = std::env::var("ENGINE_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide ENGINE_TEST_S3_ENDPOINT (an S3 server)"
        );
        eprintln!("skipped: set ENGINE_TEST_S3_ENDPOINT to test s3://");
        return;
    };
    let bucket = std::env::var("ENGINE_TEST_S3_BUCKET").unwrap_or_else(|_| "engine-test".into());
    let prefix = format!("run-{}", std::process::id());
    let store = Store::open(
        &format!("s3://{bucket}/{prefix}?endpoint={endpoint}"),
        std::path::Path::new("."),
    )
    .unwrap();
    let yaml = HELLO.replace("COUNT", "5");
    let a = run(&yaml, &store).await;
    assert_eq!(
        a.status,
        RunStatus::Succeeded,
        "{:?}",
        a.tasks.iter().map(|t| &t.error).collect::<Vec<_>>()
    );
    let b = run(&yaml, &store).await;
    assert!(b.tasks.iter().all(|t| t.status == TaskStatus::Cached));
    let runs = engine_core::records::list_runs(&store).await.unwrap();
    assert_eq!(runs.len(), 2);
}

#[tokio::test]
async fn plan_sees_through_a_ref_stage_and_publish_moves_the_ref() {
    let store = mem_store("plan-ref");
    let yaml = r#"
name: refs
stages:
  prev: { uses: artifact.ref, with: { name: "things/x@latest", optional: true } }
  use: { uses: builtin.concat, needs: [prev], publish: { out: "things/x@latest" } }
"#;
    let explain = || async {
        let p = compile("test.yaml", yaml, &Registry::with_builtins()).unwrap();
        let pl = plan(&p);
        scheduler::explain(&p, &pl, &store, &[], false)
            .await
            .unwrap()
    };
    // First run: the ref does not exist; the optional stage yields an empty artifact.
    let r = run(yaml, &store).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let out = r.task("use").unwrap().outputs["out"].clone();
    assert_eq!(store.resolve("things/x@latest").await.unwrap(), out);
    // Now the ref points at `use`'s output, so `prev` will yield it and `use`
    // has a new input: the plan knows that without running.
    let d = explain().await;
    assert_eq!(
        (d[0].action.as_str(), d[1].action.as_str()),
        ("run", "run"),
        "{d:?}"
    );
    assert!(d[1].reason.starts_with("input changed"), "{d:?}");
    let r = run(yaml, &store).await;
    assert_eq!(status(&r, "use"), TaskStatus::Done);
    // A ref nothing moves: after one run, the plan resolves it and knows
    // the stage after it is cached.
    let pinned = r#"
name: pinned
stages:
  prev: { uses: artifact.ref, with: { name: "things/x@latest" } }
  use: { uses: builtin.concat, needs: [prev] }
"#;
    run(pinned, &store).await;
    let p = compile("test.yaml", pinned, &Registry::with_builtins()).unwrap();
    let pl = plan(&p);
    let d = scheduler::explain(&p, &pl, &store, &[], false)
        .await
        .unwrap();
    assert_eq!(d[0].reason, "runs every time (reads outside state)");
    assert_eq!(d[1].action, "cached", "{d:?}");
}

#[tokio::test]
async fn binary_output_and_a_huge_line_neither_stop_nor_bloat_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    // Before: reading stopped at the first non-UTF-8 byte and the command
    // died of SIGPIPE once the pipe filled; a 200 MB line was held whole.
    let yaml = r#"
name: noisy
stages:
  noisy:
    uses: shell
    with:
      run: |
        printf 'bin \377\376 bytes\n'
        head -c 20000000 /dev/zero | tr '\0' x
        echo
        for i in $(seq 1 20000); do echo "line $i of the noisy command"; done
        mkdir -p out && echo ok > out/ok.txt
      outputs: { ok: out/ok.txt }
"#;
    let r = run(yaml, &store).await;
    let t = r.task("noisy").unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    let log = store.get_blob(t.log.as_ref().unwrap()).await.unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(
        log.contains("bin \u{fffd}\u{fffd} bytes"),
        "{}",
        &log[..200.min(log.len())]
    );
    assert!(log.contains("more bytes of this line cut]"));
    assert!(log.contains("line 20000 of the noisy command"));
    assert!(log.len() < 2 << 20, "log of {} bytes", log.len());
}

#[tokio::test]
async fn an_output_behind_a_symlinked_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let yaml = r#"
name: escape
stages:
  sneaky:
    uses: shell
    with:
      run: ln -s /etc root
      outputs: { host: root/hostname }
"#;
    let r = run(yaml, &store).await;
    let t = r.task("sneaky").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    let err = t.error.as_deref().unwrap();
    assert!(err.contains("outside the task's work folder"), "{err}");
    assert!(t.outputs.is_empty());
}

#[tokio::test]
async fn a_task_ends_when_its_command_does_and_takes_its_background_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("fs://store", dir.path()).unwrap();
    let pidfile = dir.path().join("bg.pid");
    let setsid_pid = dir.path().join("setsid.pid");
    // Before: the background `sleep` held the output pipe, so the task ran
    // as long as it did, and it outlived the task. A `setsid` one leaves
    // the process group: only a cgroup holds it.
    let yaml = format!(
        r#"
name: bg
stages:
  leaves:
    uses: shell
    with:
      run: |
        sleep 30 &
        echo $! > {}
        setsid sleep 30 &
        echo $! > {}
        echo started
"#,
        pidfile.display(),
        setsid_pid.display()
    );
    let t0 = std::time::Instant::now();
    let r = run(&yaml, &store).await;
    assert_eq!(status(&r, "leaves"), TaskStatus::Done);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Gone, or a zombie waiting for whoever inherited it to reap it.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'));
    assert!(
        !running,
        "the background sleep {pid} outlived its task: {state}"
    );
    let pid: i32 = std::fs::read_to_string(&setsid_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'));
    if engine_core::cgroup::available() {
        let t = r.task("leaves").unwrap();
        let log = store.get_blob(t.log.as_ref().unwrap()).await.unwrap();
        assert!(
            !running,
            "the setsid sleep {pid} left the process group and outlived its task: {state}\nlog:\n{}",
            String::from_utf8_lossy(&log)
        );
    } else {
        // SAFETY: kill only sends a signal.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        eprintln!(
            "no writable cgroup v2 tree here: a setsid process outlives its task (tested where cgroups are available)"
        );
    }
}

#[tokio::test]
async fn scratch_folders_are_private_and_a_dead_runs_folder_is_removed() {
    let root = tempfile::tempdir().unwrap();
    // A folder left by a run killed with SIGKILL (its pid no longer exists).
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    let left = root.path().join("engine-run-old-abc123");
    std::fs::create_dir_all(left.join("task/attempt-1")).unwrap();
    std::fs::write(left.join("owner"), format!("{host} {dead}\n")).unwrap();
    let store = mem_store("scratch");
    let yaml = r#"
name: where
stages:
  look:
    uses: shell
    with:
      run: |
        mkdir -p out
        stat -c %a "$(dirname "$PWD")" > out/mode.txt
      outputs: { mode: out/mode.txt }
"#;
    // A shell task works in `RUN-FOLDER/TASK.ATTEMPT`; the run's folder is
    // the one that must be private.
    let mut o = opts(2);
    o.scratch_root = root.path().to_path_buf();
    let r = run_with(yaml, &store, o).await;
    let t = r.task("look").unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    let m = store.get_manifest(&t.outputs["mode"]).await.unwrap();
    let mode = store.get_blob(&m.files["mode.txt"].digest).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&mode).trim(), "700");
    assert!(!left.exists(), "the dead run's folder is still there");
    // And this run's own folder is gone once it ended.
    let rest: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().collect();
    assert!(
        rest.is_empty(),
        "{:?}",
        rest.iter().map(|e| e.path()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_timed_out_item_stops_its_work_before_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("busy.txt");
    let store = mem_store("item-timeout");
    // Before: the timed-out attempt's worker thread went on beside its
    // retry (begin, begin, end, end).
    let yaml = format!(
        r#"
name: slow-items
stages:
  make:
    uses: builtin.items
    with: {{ count: 1 }}
  work:
    uses: builtin.upper
    map: {{ over: make.items }}
    timeout: 300ms
    retries: 1
    with: {{ busy_ms: 3000, busy_marker: "{}" }}
"#,
        marker.display()
    );
    let r = run(&yaml, &store).await;
    let t = r.task("work").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(
        t.error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        t.error
    );
    std::thread::sleep(Duration::from_millis(300));
    let lines: Vec<String> = std::fs::read_to_string(&marker)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(
        lines,
        ["begin", "end", "begin", "end"],
        "attempts overlapped"
    );
}

#[tokio::test]
async fn a_command_sees_only_allowed_and_passed_variables_and_passed_values_are_redacted() {
    // SAFETY: set before the run starts its tasks; no other test reads these.
    unsafe {
        std::env::set_var("ENGINE_TEST_SECRET_TOKEN", "s3cr3t-value-42");
        std::env::set_var("ENGINE_TEST_NOT_PASSED", "leaky");
    }
    let store = mem_store("env");
    let yaml = r#"
name: env
stages:
  look:
    uses: shell
    with:
      pass_env: [ENGINE_TEST_SECRET_TOKEN]
      run: |
        mkdir -p out
        echo "token is $ENGINE_TEST_SECRET_TOKEN"
        echo "other is ${ENGINE_TEST_NOT_PASSED:-unset}" > out/seen.txt
        test -n "$PATH" && echo "path set" >> out/seen.txt
        test "${#ENGINE_TEST_SECRET_TOKEN}" = 15 && echo "token ok" >> out/seen.txt
      outputs: { seen: out/seen.txt }
  missing:
    uses: shell
    with:
      pass_env: [ENGINE_TEST_NEVER_SET_ANYWHERE]
      run: "true"
"#;
    let r = run(yaml, &store).await;
    let t = r.task("look").unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    let m = store.get_manifest(&t.outputs["seen"]).await.unwrap();
    let seen =
        String::from_utf8(store.get_blob(&m.files["seen.txt"].digest).await.unwrap()).unwrap();
    assert_eq!(seen, "other is unset\npath set\ntoken ok\n");
    let log = String::from_utf8(store.get_blob(t.log.as_ref().unwrap()).await.unwrap()).unwrap();
    assert!(
        log.contains("token is [redacted]") && !log.contains("s3cr3t"),
        "{log}"
    );
    // The value is not a param: nothing of it in the record.
    let record = serde_json::to_string(&r).unwrap();
    assert!(
        !record.contains("s3cr3t"),
        "{}",
        &record[record.find("s3cr3t").unwrap_or(0).saturating_sub(300)..]
    );
    let m = r.task("missing").unwrap();
    assert_eq!(m.status, TaskStatus::Failed);
    assert!(
        m.error
            .as_deref()
            .unwrap()
            .contains("`ENGINE_TEST_NEVER_SET_ANYWHERE`"),
        "{:?}",
        m.error
    );
}

/// `${env:NAME}` in params: the reference is what the record and the
/// fingerprint see; the value reaches the command, and task logs and errors
/// print `[redacted]` in its place. A new value does not rerun the task.
#[tokio::test]
async fn env_references_reach_the_command_but_not_the_record_log_or_cache_key() {
    // SAFETY: set before the run starts its tasks; no other test reads these.
    unsafe {
        std::env::set_var("ENGINE_TEST_REF_PASSWORD", "pa55word-one");
    }
    let store = mem_store("env-ref");
    let yaml = r#"
name: env-ref
stages:
  use:
    uses: shell
    with:
      env: { DB: "postgres://engine:${env:ENGINE_TEST_REF_PASSWORD}@db/catalog" }
      run: |
        mkdir -p out
        echo "connecting to $DB"
        test "${#DB}" = 41 && echo resolved > out/ok.txt
      outputs: { ok: out/ok.txt }
  fail:
    uses: shell
    with:
      env: { DB: "${env:ENGINE_TEST_REF_PASSWORD}" }
      run: echo "cannot log in with $DB" >&2; exit 3
"#;
    let r = run(yaml, &store).await;
    let t = r.task("use").unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    let log = String::from_utf8(store.get_blob(t.log.as_ref().unwrap()).await.unwrap()).unwrap();
    assert!(
        log.contains("connecting to postgres://engine:[redacted]@db/catalog"),
        "{log}"
    );
    let f = r.task("fail").unwrap();
    assert_eq!(f.status, TaskStatus::Failed);
    let flog = String::from_utf8(store.get_blob(f.log.as_ref().unwrap()).await.unwrap()).unwrap();
    assert!(flog.contains("cannot log in with [redacted]"), "{flog}");
    let record = serde_json::to_string(&r).unwrap();
    assert!(!record.contains("pa55word"), "{record}");
    assert!(
        record.contains("${env:ENGINE_TEST_REF_PASSWORD}"),
        "{record}"
    );
    // A rotated password is not a change of the task.
    unsafe {
        std::env::set_var("ENGINE_TEST_REF_PASSWORD", "pa55word-two");
    }
    let again = run(yaml, &store).await;
    assert_eq!(again.task("use").unwrap().status, TaskStatus::Cached);
    // An unset variable is a compile error naming it.
    let bad = yaml.replace("ENGINE_TEST_REF_PASSWORD", "ENGINE_TEST_REF_NEVER_SET");
    let e = compile("t.yaml", &bad, &Registry::with_builtins())
        .err()
        .expect("an unset variable is an error")
        .render();
    assert!(
        e.contains("`${env:ENGINE_TEST_REF_NEVER_SET}`")
            && e.contains("export `ENGINE_TEST_REF_NEVER_SET`"),
        "{e}"
    );
}

/// The first record of run `id` that a reader sees matching `want` while
/// `running` goes on (polled every 50 ms, for up to 20 s).
async fn record_while_running<T>(
    store: &Store,
    id: &str,
    running: &tokio::task::JoinHandle<T>,
    want: impl Fn(&RunRecord) -> bool,
) -> Option<RunRecord> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) && !running.is_finished() {
        if let Ok(Some(r)) = engine_core::records::load_run(store, id).await
            && want(&r)
        {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// While a run goes, what changed reaches the store as small event
/// batches, not as the whole record again: a reader folds them into the
/// document, and the run leaves none behind when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_read_from_its_document_and_event_batches() {
    let s = common::fs_store();
    let yaml = "name: batches\nstages:\n  slow:\n    uses: builtin.sleep\n    with: { ms: 2300 }\n  after:\n    uses: builtin.sleep\n    needs: [slow]\n    with: { ms: 3000, tag: after }\n";
    let o = opts(4);
    let id = o.run_id.clone();
    let store = s.store.clone();
    let running = tokio::spawn(async move { run_with(yaml, &store, o).await });
    // `slow` finishes after 2.3 s, past the first checkpoint: its record
    // goes out in a batch while `after` runs (within 2 s of the last
    // checkpoint, which its live log may have moved to 2 s), and the
    // document still says it is running.
    let r = record_while_running(&s.store, &id, &running, |r| {
        r.status == RunStatus::Running && status(r, "slow") == TaskStatus::Done
    })
    .await
    .expect("a reader saw `slow` done while the run went on");
    assert!(r.events >= 1, "read from a batch: {}", r.events);
    let doc: RunRecord = s
        .store
        .get_json(&engine_core::records::run_path(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.events, 0, "the document was not rewritten for one task");
    assert_ne!(status(&doc, "slow"), TaskStatus::Done);
    let done = running.await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    let left = std::fs::read_dir(s.root.join(format!("runs/{id}/events")))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "the run left event batches behind");
    let r = engine_core::records::load_run(&s.store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&r, "after"), TaskStatus::Done);
}

/// A long task's log reaches its record while it runs (its tail, every
/// checkpoint), so a reader (`engine serve`, `engine show`) can follow it;
/// the whole log replaces it when the task ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tasks_log_is_in_its_record_while_it_runs() {
    let s = common::fs_store();
    let yaml = "name: live-log\nstages:\n  long:\n    uses: shell\n    with:\n      run: |\n        echo first line\n        sleep 4\n        echo last line\n";
    let o = opts(2);
    let id = o.run_id.clone();
    let store = s.store.clone();
    let running = tokio::spawn(async move { run_with(yaml, &store, o).await });
    let r = record_while_running(&s.store, &id, &running, |r| {
        status(r, "long") == TaskStatus::Running && r.task("long").unwrap().log.is_some()
    })
    .await
    .expect("the running task's log was in its record");
    let live = r.task("long").unwrap().log.as_ref().unwrap();
    let live = String::from_utf8(s.store.get_blob(live).await.unwrap()).unwrap();
    assert!(
        live.contains("first line") && !live.contains("last line"),
        "{live}"
    );
    let done = running.await.unwrap();
    let t = done.task("long").unwrap();
    assert_eq!(t.status, TaskStatus::Done);
    let whole =
        String::from_utf8(s.store.get_blob(t.log.as_ref().unwrap()).await.unwrap()).unwrap();
    assert!(
        whole.contains("first line") && whole.contains("last line"),
        "{whole}"
    );
}

/// A run's document is written before its first task runs, not only at the
/// first checkpoint (2 s): a reader (`engine runs`) sees a run that does
/// work from its start. A rerun whose every task is cached writes it at its
/// end, complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_recorded_when_its_first_task_starts_and_a_cached_rerun_at_its_end() {
    let s = common::fs_store();
    let yaml =
        "name: first-write\nstages:\n  nap:\n    uses: builtin.sleep\n    with: { ms: 1500 }\n";
    let o = opts(2);
    let id = o.run_id.clone();
    let store = s.store.clone();
    let t0 = Instant::now();
    let running = tokio::spawn(async move { run_with(yaml, &store, o).await });
    let r = record_while_running(&s.store, &id, &running, |r| {
        r.status == RunStatus::Running && status(r, "nap") == TaskStatus::Running
    })
    .await
    .expect("the record was there while `nap` ran");
    assert!(
        t0.elapsed() < engine_core::records::HEARTBEAT,
        "seen only after {:?}",
        t0.elapsed()
    );
    assert_eq!(r.events, 0, "read from the document, not from a batch");
    assert_eq!(running.await.unwrap().status, RunStatus::Succeeded);

    let o = opts(2);
    let id = o.run_id.clone();
    let again = run_with(yaml, &s.store, o).await;
    assert_eq!(status(&again, "nap"), TaskStatus::Cached);
    let doc = engine_core::records::load_run(&s.store, &id)
        .await
        .unwrap()
        .expect("the cached rerun's record is in the store");
    assert_eq!(doc.status, RunStatus::Succeeded);
    assert_eq!(status(&doc, "nap"), TaskStatus::Cached);
    assert!(doc.finished.is_some());
    assert!(
        !s.root.join(format!("runs/{id}/events")).exists(),
        "a rerun that ran nothing wrote no event batches"
    );
}

/// A run saves a `running` record before its first cache lookup, even one
/// whose every task ends at the cache: `engine gc` keeps every cache entry
/// while a run is going, and learns that a run started during its sweep
/// from that record (see `gc.rs`). Hashing a 200 MB cached output
/// (`verify`) holds the lookup open long enough to look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_is_recorded_as_running_before_its_first_cache_lookup() {
    let s = common::fs_store();
    let yaml = "name: head\nstages:\n  big:\n    uses: shell\n    with: { run: \"head -c 200000000 /dev/zero > big.bin\", outputs: { out: big.bin } }\n";
    let first = run_with(yaml, &s.store, opts(2)).await;
    assert_eq!(status(&first, "big"), TaskStatus::Done, "{first:?}");
    let mut o = opts(2);
    o.verify = true;
    let id = o.run_id.clone();
    let store = s.store.clone();
    let running = tokio::spawn(async move { run_with(yaml, &store, o).await });
    let mut seen = None;
    while !running.is_finished() {
        if let Ok(Some(r)) = engine_core::records::load_run(&s.store, &id).await {
            seen = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = seen.expect("no record was saved while the run went on");
    assert_eq!(r.status, RunStatus::Running, "first seen: {r:?}");
    let done = running.await.unwrap();
    assert_eq!(status(&done, "big"), TaskStatus::Cached);
    let r = engine_core::records::load_run(&s.store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.tasks.len(), 1, "the whole document replaced the head");
    assert!(!r.spec.is_empty());
}

/// The scheduling loop runs on a worker of the runtime: a caller that stops
/// waiting for the run (a timeout, a dropped future) stops the run too, as
/// when the loop ran in the caller's own future; it must not go on alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_future_stops_the_run() {
    let store = mem_store("dropped");
    let yaml = "name: dropped\nstages:\n  nap:\n    uses: builtin.sleep\n    with: { ms: 400 }\n";
    let p = compile("test.yaml", yaml, &Registry::with_builtins())
        .unwrap_or_else(|d| panic!("{}", d.render()));
    let pl = plan(&p);
    let run = scheduler::run(
        std::sync::Arc::new(p),
        std::sync::Arc::new(pl),
        store.clone(),
        opts(2),
    );
    let waited = tokio::time::timeout(Duration::from_millis(100), run).await;
    assert!(waited.is_err(), "a 400 ms stage ended within 100 ms");
    // Long enough for an orphaned run to finish its task and cache it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let again = run_with(yaml, &store, opts(2)).await;
    assert_eq!(
        status(&again, "nap"),
        TaskStatus::Done,
        "the dropped run went on and cached its task"
    );
}

/// `test.panic`: a stage with a bug, registered by the test below only.
mod panicking {
    use async_trait::async_trait;
    use engine_core::stage::{OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx};
    use std::sync::Arc;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct PanicConfig {}

    struct Panic;

    impl StageConfig for PanicConfig {
        const KIND: &'static str = "test.panic";
        const SUMMARY: &'static str = "panic (a stage with a bug)";
        fn build(self) -> StageImpl {
            StageImpl::Task(Arc::new(Panic))
        }
    }

    #[async_trait]
    impl Stage for Panic {
        fn version(&self) -> u32 {
            1
        }
        fn outputs(&self) -> Vec<OutputDecl> {
            vec![OutputDecl::artifact("out")]
        }
        async fn run(&self, _ctx: &mut TaskCtx) -> Result<(), StageError> {
            panic!("index out of bounds in the stage");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_stage_fails_its_task_and_the_rest_of_the_run_goes_on() {
    let store = mem_store("panic");
    let yaml = r#"
name: panic
stages:
  buggy: { uses: test.panic }
  after_buggy: { uses: builtin.concat, needs: [buggy] }
  fine: { uses: builtin.echo, with: { text: "hello" } }
  after_fine: { uses: builtin.concat, needs: [fine] }
"#;
    let mut reg = Registry::with_builtins();
    reg.register::<panicking::PanicConfig>();
    let p = std::sync::Arc::new(compile("panic.yaml", yaml, &reg).unwrap());
    let pl = std::sync::Arc::new(plan(&p));
    for round in ["first run", "rerun"] {
        let r = scheduler::run(p.clone(), pl.clone(), store.clone(), opts(2))
            .await
            .unwrap();
        assert_eq!(r.status, RunStatus::Failed, "{round}");
        let b = r.task("buggy").unwrap();
        assert_eq!(b.status, TaskStatus::Failed, "{round}");
        let err = b.error.as_deref().unwrap_or_default();
        assert!(
            err.contains("the stage panicked (a bug in stage `test.panic`)")
                && err.contains("index out of bounds in the stage"),
            "{round}: {err}"
        );
        assert!(
            b.finished_ms.is_some(),
            "{round}: a panicked task has ended"
        );
        assert_eq!(status(&r, "after_buggy"), TaskStatus::Skipped, "{round}");
        // The rest of the run went on: done the first time, cached after.
        let want = if round == "rerun" {
            TaskStatus::Cached
        } else {
            TaskStatus::Done
        };
        assert_eq!(status(&r, "fine"), want, "{round}");
        assert_eq!(status(&r, "after_fine"), want, "{round}");
    }
}

/// When a task gives its resources back, the task waiting for them starts
/// before the first one's bookkeeping (its outputs, cache entry, record):
/// one slot, so each next task can only start once the previous one has
/// released it, and it does so before that one is finished. On one thread,
/// where nothing else could run it sooner; without the yield after the
/// release, each task started after the previous one had finished.
#[tokio::test(flavor = "current_thread")]
async fn the_next_task_gets_the_slot_before_the_previous_ones_bookkeeping() {
    let yaml = r#"
name: handover
resources:
  one: { cpus: 1, slots: 1 }
stages:
  s:
    uses: builtin.sleep
    resources: one
    with: { ms: 1 }
    matrix: { tag: [1, 2, 3, 4, 5] }
"#;
    let fs = common::fs_store();
    let r = run_with(yaml, &fs.store, opts(4)).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let mut tasks: Vec<_> = r.tasks.iter().collect();
    tasks.sort_by(|a, b| a.held_ms[0][0].total_cmp(&b.held_ms[0][0]));
    assert_eq!(max_overlap(&r, "s"), 1, "one slot was held twice at once");
    for w in tasks.windows(2) {
        let (prev, next) = (w[0], w[1]);
        let finished = prev.finished_ms.expect("finished");
        assert!(
            next.held_ms[0][0] < finished,
            "`{}` got the slot at {:.3} ms, after `{}` had finished at {:.3} ms (released at {:.3} ms)",
            next.task,
            next.held_ms[0][0],
            prev.task,
            finished,
            prev.held_ms[0][1]
        );
    }
}
