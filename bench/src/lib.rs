//! Helpers shared by the benchmark binaries in `src/bin/`.

use std::time::Instant;

/// Peak resident memory of this process so far, in MiB (VmHWM).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Runs `f` `n` times and returns the median seconds.
pub fn median_secs(n: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A pipeline whose one stage expands to `tasks` tasks through a matrix,
/// plus a downstream stage that needs them all.
pub fn matrix_pipeline(tasks: usize) -> String {
    let a = 100.min(tasks);
    let b = tasks.div_ceil(a);
    let av: Vec<String> = (0..a).map(|i| i.to_string()).collect();
    let bv: Vec<String> = (0..b).map(|i| i.to_string()).collect();
    format!(
        "name: wide\nstages:\n  fan:\n    uses: builtin.sleep\n    with: {{ ms: 0, tag: {{}} }}\n    matrix: {{ tag.a: [{}], tag.b: [{}] }}\n  join:\n    uses: builtin.concat\n    needs: [fan]\n",
        av.join(", "),
        bv.join(", ")
    )
}

/// Bytes this process has handed to `write` calls so far (`wchar` of
/// /proc/self/io), whatever the device; 0 where that file is missing.
pub fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used so far, all its
/// threads, not its children: a spawned command's own work is not in it,
/// the spawning is.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(libc::RUSAGE_SELF)
}

/// The CPU time (user + system) of this process's children that have
/// ended and been waited for: the commands a benchmark spawned.
pub fn children_cpu_seconds() -> f64 {
    cpu_seconds(libc::RUSAGE_CHILDREN)
}

fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes only into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}
