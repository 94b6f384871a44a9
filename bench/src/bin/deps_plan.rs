//! `engine plan` with declared file dependencies: a pipeline whose stage
//! declares N files (`deps: ["data/*.txt"]`, default 10,000), already run
//! once, planned again with nothing changed. Times the steps `engine plan`
//! takes (compile, expand `deps`, hash them, plan, look the cache up):
//! cold (no stat cache: every file is read) and no-op (warm stat cache:
//! only stats), then once more after one file changed.
//!
//! `cargo run --release -p bench --bin deps_plan -- 10000 [FILE_BYTES]`
//! (`DEPS_PLAN_LAPS=1` prints the time of each step). Measured 2026-11-28
//! on a 2-core machine at load 7, engine-core and bench at opt-level 3
//! (`--config 'profile.dev.package.engine-core.opt-level=3'`, the same for
//! `bench`; dependencies at the dev profile's 1): cold 220 ms, no-op
//! 115 ms (stat cache load 21, expand 28, stat 48, plan 32).

use engine_core::compile::{Pipeline, compile};
use engine_core::deps::{self, HashStats, StatCache};
use engine_core::plan::plan;
use engine_core::scheduler::{self, Decision, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const REPEATS: usize = 7;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let bytes = args.get(1).copied().unwrap_or(1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path();
    std::fs::create_dir_all(repo.join("data")).expect("data dir");
    let past = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..n {
        let path = repo.join(format!("data/in_{i:04}.txt"));
        let mut body = format!("file {i}\n").into_bytes();
        body.resize(bytes.max(body.len()), b'x');
        std::fs::write(&path, &body).expect("write");
        // Out of the racy window, as files of a checkout are.
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(past).unwrap();
    }
    let yaml = "name: deps-bench\nstages:\n  train:\n    uses: builtin.echo\n    with: { text: trained }\n    deps: [\"data/*.txt\"]\n";
    let file = repo.join("pipeline.yaml").display().to_string();
    let store = Store::open("fs://store", repo).expect("store");
    let cache_file = repo.join(".engine/stat-cache.json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // One run, so the plan finds a cache entry.
    let (p, _, _) = prepare(&file, yaml, repo, &cache_file);
    let pl = plan(&p);
    let rec = rt
        .block_on(scheduler::run(
            Arc::new(p),
            Arc::new(pl),
            store.clone(),
            RunOptions::default(),
        ))
        .expect("run");
    assert_eq!(rec.counts().get("done"), Some(&1), "{:?}", rec.counts());

    let mut cold = vec![];
    let mut warm = vec![];
    for _ in 0..REPEATS {
        let _ = std::fs::remove_file(&cache_file);
        let (ms, stats, d) = plan_once(&rt, &file, yaml, repo, &cache_file, &store);
        assert_eq!((stats.files, stats.hashed), (n, n));
        assert_eq!(d[0].action, "cached", "{d:?}");
        cold.push(ms);
        let (ms, stats, d) = plan_once(&rt, &file, yaml, repo, &cache_file, &store);
        assert_eq!((stats.files, stats.from_stat_cache), (n, n));
        assert_eq!(d[0].action, "cached", "{d:?}");
        warm.push(ms);
    }
    let changed = repo.join("data/in_0000.txt");
    std::fs::write(&changed, b"changed").expect("write");
    let (one, stats, d) = plan_once(&rt, &file, yaml, repo, &cache_file, &store);
    assert_eq!(stats.hashed, 1);
    assert_eq!(d[0].reason, "input changed: data/in_0000.txt");
    println!(
        "deps plan, {n} files of {bytes} B: cold (no stat cache) {:.1} ms, no-op (warm stat cache) {:.1} ms, one file changed {one:.1} ms  (median of {REPEATS}; reason: {})",
        median(&mut cold),
        median(&mut warm),
        d[0].reason
    );
}

/// Compile, expand and hash `deps` through the stat cache at `cache_file`.
fn prepare(
    file: &str,
    yaml: &str,
    repo: &Path,
    cache_file: &Path,
) -> (Pipeline, HashStats, StatCache) {
    let mut p = compile(file, yaml, &Registry::with_builtins()).expect("valid");
    let r = deps::resolve(&p, repo).unwrap_or_else(|d| panic!("{}", d.render()));
    let mut cache = StatCache::load(cache_file);
    let stats = deps::hash(&mut p, &r, &mut cache, None).expect("hash");
    (p, stats, cache)
}

/// What `engine plan` does, timed: load the stat cache, compile, resolve
/// and hash `deps`, save the stat cache, plan, and decide every task.
fn plan_once(
    rt: &tokio::runtime::Runtime,
    file: &str,
    yaml: &str,
    repo: &Path,
    cache_file: &Path,
    store: &Store,
) -> (f64, HashStats, Vec<Decision>) {
    let t = Instant::now();
    let mut lap = Laps(t, vec![]);
    let mut cache = StatCache::load(cache_file);
    lap.lap("load stat cache");
    let mut p = compile(file, yaml, &Registry::with_builtins()).expect("valid");
    lap.lap("compile");
    let r = deps::resolve(&p, repo).unwrap_or_else(|d| panic!("{}", d.render()));
    lap.lap("resolve");
    let stats = deps::hash(&mut p, &r, &mut cache, None).expect("hash");
    lap.lap("hash");
    if let Some(w) = cache.save() {
        panic!("{w}");
    }
    lap.lap("save stat cache");
    let pl = plan(&p);
    let d = rt
        .block_on(scheduler::explain(&p, &pl, store, &[], false))
        .expect("explain");
    lap.lap("plan + cache lookup");
    if std::env::var_os("DEPS_PLAN_LAPS").is_some() {
        eprintln!("{}", lap.1.join(", "));
    }
    (t.elapsed().as_secs_f64() * 1000.0, stats, d)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Time per phase, with `DEPS_PLAN_LAPS=1`.
struct Laps(Instant, Vec<String>);

impl Laps {
    fn lap(&mut self, what: &str) {
        let now = Instant::now();
        self.1.push(format!(
            "{what} {:.1} ms",
            (now - self.0).as_secs_f64() * 1000.0
        ));
        self.0 = now;
    }
}
