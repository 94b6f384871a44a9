//! Engine overhead per task: N trivial in-process tasks (`builtin.echo`,
//! each writes one small blob and manifest) cold, then the no-op rerun
//! (everything cached), on `memory://` and `fs://` stores.
//!
//! `cargo run --release -p bench --bin run_overhead -- 500 5000 50000`
//! (`--fs` or `--memory` to measure one store only)
//!
//! One line per store and N, with the cost per task in parentheses: the
//! engine is linear in N when that cost stays flat as N grows 100-fold
//! (issue 11 §3). `written` is what the cold run wrote through `write`
//! calls (`wchar` of /proc/self/io: blobs, manifests, cache entries, the
//! run record and its log), in bytes per task; records saved whole again
//! and again show as this figure growing with N.

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let ns = if ns.is_empty() { vec![1000] } else { ns };
    let urls: Vec<&str> = if args.iter().any(|a| a == "--fs") {
        vec!["fs://store"]
    } else if args.iter().any(|a| a == "--memory") {
        vec!["memory://bench"]
    } else {
        vec!["memory://bench", "fs://store"]
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for url in urls {
        for &n in &ns {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(url, dir.path()).expect("store");
            // Independent stages of at most 5,000 matrix tasks each (a
            // stage may expand to 10,000 at most).
            let mut yaml = String::from("name: overhead\nstages:\n");
            for (k, start) in (0..n).step_by(5000).enumerate() {
                yaml.push_str(&format!(
                    "  t{k}:\n    uses: builtin.echo\n    matrix: {{ text: [{}] }}\n",
                    (start..n.min(start + 5000))
                        .map(|i| format!("\"t{i}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let p =
                Arc::new(compile("bench.yaml", &yaml, &Registry::with_builtins()).expect("valid"));
            let pl = Arc::new(plan(&p));
            let opts = || RunOptions {
                scratch_root: dir.path().to_path_buf(),
                ..RunOptions::default()
            };
            let w0 = bench::written_bytes();
            let t = Instant::now();
            let r = rt
                .block_on(scheduler::run(p.clone(), pl.clone(), store.clone(), opts()))
                .expect("run");
            let cold = t.elapsed().as_secs_f64();
            let written = bench::written_bytes().saturating_sub(w0);
            assert_eq!(r.counts().get("done"), Some(&n));
            let t = Instant::now();
            let r = rt
                .block_on(scheduler::run(p.clone(), pl.clone(), store.clone(), opts()))
                .expect("run");
            let warm = t.elapsed().as_secs_f64();
            assert_eq!(r.counts().get("cached"), Some(&n));
            let per = |s: f64| s * 1000.0 / n as f64;
            println!(
                "{url:<14} {n:>6} tasks  cold {:>9.1} ms ({:.3} ms/task)  no-op {:>8.1} ms ({:.3} ms/task)  written {:>6.0} B/task",
                cold * 1000.0,
                per(cold),
                warm * 1000.0,
                per(warm),
                written as f64 / n as f64
            );
        }
    }
}
