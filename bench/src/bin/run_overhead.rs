//! Engine overhead per task: run 1,000 trivial in-process tasks cold, then
//! the no-op rerun (everything cached), on `memory://` and `fs://` stores.
//! `cargo run --release -p bench --bin run_overhead -- 1000`

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    for url in ["memory://bench", "fs://store"] {
        let store = Store::open(url, dir.path()).expect("store");
        // Independent trivial tasks: each writes one small blob and manifest.
        let yaml = format!(
            "name: overhead\nstages:\n  t:\n    uses: builtin.echo\n    matrix: {{ text: [{}] }}\n",
            (0..n)
                .map(|i| format!("\"t{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let p = Arc::new(compile("bench.yaml", &yaml, &Registry::with_builtins()).expect("valid"));
        let pl = Arc::new(plan(&p));
        let t = Instant::now();
        let r = rt
            .block_on(scheduler::run(
                p.clone(),
                pl.clone(),
                store.clone(),
                RunOptions::default(),
            ))
            .expect("run");
        let cold = t.elapsed().as_secs_f64();
        assert_eq!(r.counts().get("done"), Some(&n));
        let t = Instant::now();
        let r = rt
            .block_on(scheduler::run(
                p.clone(),
                pl.clone(),
                store.clone(),
                RunOptions::default(),
            ))
            .expect("run");
        let warm = t.elapsed().as_secs_f64();
        assert_eq!(r.counts().get("cached"), Some(&n));
        println!(
            "{url:<14} {n} tasks cold {:>7.1} ms ({:.3} ms/task)   no-op rerun {:>7.1} ms ({:.3} ms/task)",
            cold * 1000.0,
            cold * 1000.0 / n as f64,
            warm * 1000.0,
            warm * 1000.0 / n as f64
        );
    }
}
