//! Planning speed and memory: compile + plan a pipeline that expands to N
//! tasks. `cargo run --release -p bench --bin plan -- 10000 100000`
//! (each size in its own process, so peak memory is per size).

use engine_core::{compile::compile, plan::plan, stage::Registry};
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.len() > 1 {
        for n in sizes {
            let exe = std::env::current_exe().expect("own path");
            let out = std::process::Command::new(exe)
                .arg(n.to_string())
                .output()
                .expect("child runs");
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        return;
    }
    let n = sizes.first().copied().unwrap_or(10_000);
    let yaml = bench::matrix_pipeline(n);
    let reg = Registry::with_builtins();
    let base = bench::peak_rss_mib();
    let t = Instant::now();
    let p = compile("bench.yaml", &yaml, &reg).expect("valid");
    let pl = plan(&p);
    let secs = t.elapsed().as_secs_f64();
    assert!(pl.tasks.len() >= n);
    println!(
        "plan {:>7} tasks: {:>8.1} ms   peak RSS {:>6.1} MiB (process baseline {:.1} MiB)",
        pl.tasks.len(),
        secs * 1000.0,
        bench::peak_rss_mib(),
        base
    );
}
