//! `engine serve` under load (issue 14): a run of 10,000 tasks and a store
//! of 1,000 runs, served by the real server in this process over real
//! HTTP on loopback.
//!
//! `serve_load live [TASKS]` (default 10,000): really runs a pipeline
//! whose one stage expands to TASKS matrix tasks (`builtin.sleep`, 0 ms,
//! plus a `join` stage), on an fs store, while a client follows the run
//! page's server-sent events from the moment the record exists until the
//! stream ends; then times the finished run's page. Then the same for a
//! map stage of TASKS items (`builtin.items` -> `builtin.upper`, batches
//! of 100), which is one task record with item counts. The client reads
//! the run page first and opens the event stream it names, as a browser
//! does (the page's time is not counted in the stream's). Prints, per run:
//! the SSE bytes, events and seconds, the mean rate and the busiest
//! second; the page's median time to the last byte over 5 GETs, and its
//! size. Targets: page < 1 s, live updates < 50 KB/s.
//!
//! `serve_load rss [RUNS]` (default 1,000): runs a small real pipeline
//! once, stores its record under RUNS ids, starts the server and reads
//! the runs list (200 and all), the JSON list, the compare page and 50
//! run pages; prints the process's resident memory before the server
//! started, after, and its peak. Target: < 200 MB.
//!
//! The server polls records every 500 ms, as `engine serve` does.

use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{self, RunStatus};
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::Store;
use engine_serve::{Options, Server};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |default: usize| args.get(1).and_then(|a| a.parse().ok()).unwrap_or(default);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.first().map(String::as_str) {
        Some("live") => rt.block_on(live(n(10_000))),
        Some("rss") => rt.block_on(rss(n(1_000))),
        _ => {
            eprintln!("usage: serve_load live [TASKS] | serve_load rss [RUNS]");
            std::process::exit(2);
        }
    }
}

fn options() -> Options {
    Options {
        listen: "127.0.0.1:0".parse().expect("an address"),
        ..Options::default()
    }
}

async fn start(store: &Store) -> SocketAddr {
    let server = Server::bind(store.clone(), &options())
        .await
        .expect("the server binds");
    let addr = server.addr();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

fn run_options(dir: &std::path::Path, id: &str) -> RunOptions {
    RunOptions {
        scratch_root: dir.to_path_buf(),
        run_id: id.into(),
        ..RunOptions::default()
    }
}

fn compiled(
    yaml: &str,
) -> (
    Arc<engine_core::compile::Pipeline>,
    Arc<engine_core::plan::Plan>,
) {
    let p = compile("bench.yaml", yaml, &Registry::with_builtins())
        .unwrap_or_else(|d| panic!("{}", d.render()));
    let pl = plan(&p);
    (Arc::new(p), Arc::new(pl))
}

/// What a client following a run's events received.
struct Followed {
    bytes: usize,
    events: usize,
    secs: f64,
    /// The most bytes received within one second (1 s buckets from the
    /// connection).
    peak: usize,
}

/// Waits for the run's record, then reads its event stream to the end.
async fn follow(addr: SocketAddr, id: String) -> Followed {
    let http = reqwest::Client::new();
    let api = format!("http://{addr}/api/runs/{id}");
    loop {
        if let Ok(r) = http.get(&api).send().await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // As a browser does: the page, then the event stream it names (from
    // the snapshot the page was drawn from, where the server has one).
    let page = http
        .get(format!("http://{addr}/runs/{id}"))
        .send()
        .await
        .expect("the run page")
        .text()
        .await
        .expect("the run page's text");
    let events = page
        .split_once("data-live=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        // The attribute as the browser decodes it (minijinja escapes `/`).
        .map(|u| u.replace("&#x2f;", "/").replace("&amp;", "&"))
        .unwrap_or_else(|| format!("/runs/{id}/events"));
    let t = Instant::now();
    let mut res = http
        .get(format!("http://{addr}{events}"))
        .send()
        .await
        .expect("the events stream opens");
    assert!(res.status().is_success(), "events: {}", res.status());
    let (mut bytes, mut events) = (0usize, 0usize);
    let mut per_second: Vec<usize> = vec![];
    while let Some(chunk) = res.chunk().await.expect("the events stream reads") {
        bytes += chunk.len();
        events += chunk.windows(7).filter(|w| w == b"event: ").count();
        let s = t.elapsed().as_secs() as usize;
        if per_second.len() <= s {
            per_second.resize(s + 1, 0);
        }
        per_second[s] += chunk.len();
    }
    Followed {
        bytes,
        events,
        secs: t.elapsed().as_secs_f64(),
        peak: per_second.into_iter().max().unwrap_or(0),
    }
}

/// Median seconds to the last byte of `url` over 5 GETs, and its size.
async fn time_get(url: &str) -> (f64, usize) {
    let http = reqwest::Client::new();
    let mut times = vec![];
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let res = http.get(url).send().await.expect("GET");
        assert!(res.status().is_success(), "{url}: {}", res.status());
        size = res.bytes().await.expect("body").len();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], size)
}

async fn live(tasks: usize) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open("fs://store", dir.path()).expect("an fs store");
    let addr = start(&store).await;
    let map = format!(
        "name: wide-map\nstages:\n  make:\n    uses: builtin.items\n    with: {{ count: {tasks} }}\n  shout:\n    uses: builtin.upper\n    map: {{ over: make.items, batch: 100 }}\n"
    );
    for (what, yaml) in [
        (
            format!("{tasks} matrix tasks"),
            bench::matrix_pipeline(tasks),
        ),
        (format!("map of {tasks} items"), map),
    ] {
        let (p, pl) = compiled(&yaml);
        let id = records::new_run_id();
        let watcher = tokio::spawn(follow(addr, id.clone()));
        let t = Instant::now();
        let r = scheduler::run(p, pl, store.clone(), run_options(dir.path(), &id))
            .await
            .expect("the run");
        let run_secs = t.elapsed().as_secs_f64();
        assert_eq!(r.status, RunStatus::Succeeded, "{what}");
        let f = watcher.await.expect("the follower");
        let (page, size) = time_get(&format!("http://{addr}/runs/{id}")).await;
        let (json, jsize) = time_get(&format!("http://{addr}/api/runs/{id}")).await;
        println!(
            "{what:<22} {} task records, run {run_secs:.1} s | SSE {} B in {} events over {:.1} s = {:.1} KB/s mean, {:.1} KB in the busiest second | page {:.0} ms ({:.0} KB), JSON {:.0} ms ({:.0} KB)",
            r.tasks.len(),
            f.bytes,
            f.events,
            f.secs,
            f.bytes as f64 / f.secs / 1000.0,
            f.peak as f64 / 1000.0,
            page * 1000.0,
            size as f64 / 1000.0,
            json * 1000.0,
            jsize as f64 / 1000.0,
        );
    }
}

/// VmRSS of this process now, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn rss(runs: usize) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open("fs://store", dir.path()).expect("an fs store");
    // A small real pipeline: a map stage, a matrix of 3 and a join.
    let yaml = "name: small\nstages:\n  make:\n    uses: builtin.items\n    with: { count: 20 }\n  shout:\n    uses: builtin.upper\n    map: { over: make.items, batch: 4 }\n  sweep:\n    uses: builtin.sleep\n    needs: [make]\n    with: { ms: 0, tag: {} }\n    matrix: { tag.a: [1, 2, 3] }\n  join:\n    uses: builtin.concat\n    needs: [shout]\n";
    let (p, pl) = compiled(yaml);
    let first = scheduler::run(
        p,
        pl,
        store.clone(),
        run_options(dir.path(), &records::new_run_id()),
    )
    .await
    .expect("the run");
    let record_bytes = serde_json::to_vec_pretty(&first)
        .map(|b| b.len())
        .unwrap_or(0);
    // The same record under RUNS ids that sort by time, as real ones do.
    for i in 1..runs {
        let mut r = first.clone();
        r.id = format!(
            "20261127-{:02}{:02}{:02}-000-{i:04x}",
            i / 3600 % 24,
            i / 60 % 60,
            i % 60
        );
        records::save_run(&store, &r).await.expect("a record");
    }
    let before = rss_mib();
    let addr = start(&store).await;
    let base = format!("http://{addr}");
    let (list, list_size) = time_get(&format!("{base}/runs")).await;
    let (all, all_size) = time_get(&format!("{base}/runs?limit={runs}")).await;
    let (api, _) = time_get(&format!("{base}/api/runs")).await;
    let (cmp, _) = time_get(&format!("{base}/compare")).await;
    let ids = records::list_runs(&store).await.expect("the runs");
    let t = Instant::now();
    for id in ids.iter().step_by((runs / 50).max(1)) {
        let res = reqwest::get(format!("{base}/runs/{id}"))
            .await
            .expect("GET");
        assert!(res.status().is_success());
        res.bytes().await.expect("body");
    }
    let pages = t.elapsed().as_secs_f64();
    let after = rss_mib();
    println!(
        "{} runs ({record_bytes} B record each) | /runs {:.0} ms ({:.0} KB), /runs?limit={runs} {:.0} ms ({:.0} KB), /api/runs {:.0} ms, /compare {:.0} ms, 50 run pages {:.0} ms | RSS before the server {before:.1} MiB, after {after:.1} MiB, peak {:.1} MiB",
        ids.len(),
        list * 1000.0,
        list_size as f64 / 1000.0,
        all * 1000.0,
        all_size as f64 / 1000.0,
        api * 1000.0,
        cmp * 1000.0,
        pages * 1000.0,
        bench::peak_rss_mib(),
    );
}
