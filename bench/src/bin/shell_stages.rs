//! 500 trivial `shell` stages, cold, on an fs store: the engine's cost of a
//! subprocess stage. (For scale: DVC took about 290 s for 501 such stages on
//! this kind of machine.) `cargo run --release -p bench --bin shell_stages -- 500`

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
        .unwrap_or(500);
    let mut yaml = String::from("name: shells\nstages:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  s{i}:\n    uses: shell\n    with: {{ run: \"echo {i} > out.txt\", outputs: {{ out: out.txt }} }}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open("fs://store", dir.path()).expect("store");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let p = Arc::new(compile("bench.yaml", &yaml, &Registry::with_builtins()).expect("valid"));
    let pl = Arc::new(plan(&p));
    // Baseline: the same number of bare `bash -c` spawns, one at a time.
    let t = Instant::now();
    for i in 0..n {
        let ok = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("echo {i} > /dev/null"))
            .status()
            .expect("bash");
        assert!(ok.success());
    }
    let bare = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let r = rt
        .block_on(scheduler::run(p, pl, store, RunOptions::default()))
        .expect("run");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r.counts().get("done"), Some(&n));
    println!(
        "{n} shell stages cold: {secs:.2} s wall ({:.1} ms/stage); {n} bare sequential bash spawns: {bare:.2} s; ratio {:.2}",
        secs * 1000.0 / n as f64,
        secs / bare
    );
}
