//! `engine serve` in a real headless browser: Debian's `chromium` driven
//! through `chromedriver` by fantoccini. Opens the runs page, clicks into
//! a run, checks each stage's colour class, then watches a live run's page
//! change without a reload as a task finishes.
//!
//! Without `chromedriver` the test says so and passes, except under
//! `CI` (set and not `false`), where a missing browser is a failure:
//! `scripts/lib.sh` `need_chromium` installs both packages.

mod common;

use common::{fixture, live_copy, local, start};
use engine_core::records::{self, TaskStatus};
use fantoccini::{ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn chromedriver() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromedriver"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Stops chromedriver (and so its browser) when the test ends, even on a panic.
struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver(bin: &str) -> (Driver, String) {
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("Failed to start `{bin}`: {e}"));
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (driver, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on port {port} within 10 s");
}

async fn browser(driver: &str) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .unwrap_or_else(|e| {
            panic!("Failed to start chromium through chromedriver at {driver}: {e}")
        })
}

async fn class_of(c: &fantoccini::Client, stage: &str) -> String {
    c.find(Locator::Css(&format!("g.stage[data-stage='{stage}']")))
        .await
        .unwrap_or_else(|e| panic!("no stage `{stage}` on the page: {e}"))
        .attr("class")
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_sees_the_dag_coloured_and_updating_live() {
    let Some(bin) = chromedriver() else {
        if in_ci() {
            panic!(
                "`chromedriver` is not installed and CI is set: install it with `source scripts/lib.sh && need_chromium`"
            );
        }
        eprintln!(
            "SKIPPED a_browser_sees_the_dag_coloured_and_updating_live: `chromedriver` is not installed (Debian: apt-get install chromium chromium-driver)"
        );
        return;
    };
    let f = fixture().await;
    let mut live = live_copy(&f.store, &f.run, "20990101-000000-000-live", "gather").await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (_driver, url) = start_driver(&bin).await;
    let c = browser(&url).await;
    let result = async {
        // The runs page, then a click into the finished run.
        c.goto(&format!("{base}/runs")).await?;
        assert_eq!(c.title().await?, "Runs · engine serve");
        c.find(Locator::Css(&format!("tr[data-run='{}'] a.run-link", f.run.id)))
            .await?
            .click()
            .await?;
        c.wait().for_element(Locator::Css("svg.dag")).await?;
        assert!(c.current_url().await?.path().ends_with(&f.run.id));
        for (stage, state) in [("make", "done"), ("shout", "done"), ("report", "done"), ("sweep", "done"), ("broken", "failed")] {
            let class = class_of(&c, stage).await;
            assert!(class.split(' ').any(|k| k == format!("st-{state}")), "{stage}: `{class}`");
        }
        // The colour is the state's: computed style of the box.
        let fill = c
            .execute(
                "return getComputedStyle(document.querySelector(\"g.stage[data-stage='broken'] rect.box\")).fill",
                vec![],
            )
            .await?;
        assert_eq!(fill, serde_json::json!("rgb(242, 139, 130)"), "failed is red");
        // A live run: the page changes when its task finishes, without a reload.
        c.goto(&format!("{base}/runs/{}", live.id)).await?;
        c.wait().for_element(Locator::Css("svg.dag")).await?;
        assert!(class_of(&c, "gather").await.contains("st-running"));
        c.execute("window.__same_page = 42; return null;", vec![]).await?;
        let i = live.tasks.iter().position(|t| t.task == "gather").unwrap();
        live.tasks[i].status = TaskStatus::Done;
        records::save_run(&f.store, &live).await.unwrap();
        let t0 = std::time::Instant::now();
        loop {
            if class_of(&c, "gather").await.contains("st-done") {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "the page did not update within 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let same = c.execute("return window.__same_page === 42;", vec![]).await?;
        assert_eq!(same, serde_json::json!(true), "the page was reloaded");
        eprintln!("the live page updated in {:?}", t0.elapsed());
        // `SERVE_SCREENSHOT=F.png`: a picture of the run page for the README.
        if let Some(path) = std::env::var_os("SERVE_SCREENSHOT") {
            c.goto(&format!("{base}/runs/{}", f.run.id)).await?;
            c.wait().for_element(Locator::Css("svg.dag")).await?;
            std::fs::write(&path, c.screenshot().await?).unwrap();
        }
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = c.close().await;
    result.unwrap();
}
