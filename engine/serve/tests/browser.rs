//! `engine serve` in a real headless browser: Debian's `chromium` driven
//! through `chromedriver` by fantoccini. Opens the runs page, clicks into
//! a run, checks each stage's colour class, then watches a live run's page
//! change without a reload as a task finishes. On the review page: the video
//! loads and seeks, the timeline shows the segments, rows are typed, two
//! boundaries are dragged with the mouse, and the fix is recorded.
//!
//! Without `chromedriver` the test says so and passes, except under
//! `CI` (set and not `false`), where a missing browser is a failure:
//! `scripts/lib.sh` `need_chromium` installs both packages.

mod common;

use common::{fixture, live_copy, local, start};
use engine_core::records::{self, TaskStatus};
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
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
    // The live page replaces its graph when the run changes: an element
    // found just before an update is stale when it is read. Look again.
    for _ in 0..40 {
        let el = c
            .find(Locator::Css(&format!("g.stage[data-stage='{stage}']")))
            .await
            .unwrap_or_else(|e| panic!("no stage `{stage}` on the page: {e}"));
        match el.attr("class").await {
            Ok(v) => return v.unwrap_or_default(),
            Err(e) if e.to_string().contains("stale element") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("Failed to read the class of stage `{stage}`: {e}"),
        }
    }
    panic!("stage `{stage}` was replaced every time it was read (2 s)");
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

/// A number a script returned (`null` and the like read as NaN).
fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_plays_the_video_and_fixes_its_segments() {
    let Some(bin) = chromedriver() else {
        if in_ci() {
            panic!(
                "`chromedriver` is not installed and CI is set: install it with `source scripts/lib.sh && need_chromium`"
            );
        }
        eprintln!(
            "SKIPPED a_reviewer_plays_the_video_and_fixes_its_segments: `chromedriver` is not installed (Debian: apt-get install chromium chromium-driver)"
        );
        return;
    };
    let f = common::review_fixture().await;
    let o = engine_serve::Options {
        catalog: Some(f.catalog.clone()),
        allow_write: true,
        ..local()
    };
    let (addr, _) = start(&f.store, o).await;
    let base = format!("http://{addr}");
    let (_driver, url) = start_driver(&bin).await;
    let c = browser(&url).await;
    let mut dragged = vec![];
    let result = async {
        // The queue, then a click into the video.
        c.goto(&format!("{base}/review")).await?;
        assert_eq!(c.title().await?, "Review · engine serve");
        c.find(Locator::Css(&format!("tr[data-video='{}'] a.review-link", f.video)))
            .await?
            .click()
            .await?;
        c.wait().for_element(Locator::Css("video#player")).await?;
        // The player reads the file through range requests: its duration is known.
        let t0 = std::time::Instant::now();
        let duration = loop {
            let d = c
                .execute(
                    "const v = document.getElementById('player'); return v.error ? -v.error.code : v.duration;",
                    vec![],
                )
                .await?;
            let d = num(&d);
            assert!(d.is_nan() || d >= 0.0, "the video failed to load: MediaError code {}", -d);
            if d > 0.0 {
                break d;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "the video did not load within 15 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!((duration - 6.0).abs() < 0.3, "duration {duration}");
        // The teacher's two segments, placed over the duration.
        let segs = c.find_all(Locator::Css("#track-proposed .seg.proposed")).await?;
        assert_eq!(segs.len(), 2);
        let left = c
            .execute(
                "return [...document.querySelectorAll('#track-proposed .seg')].map(e => [parseFloat(e.style.left), parseFloat(e.style.width), e.offsetWidth]);",
                vec![],
            )
            .await?;
        let left: Vec<Vec<f64>> = serde_json::from_value(left).unwrap();
        let pct = |s: f64| 100.0 * s / duration;
        assert!((left[0][0] - pct(1.0)).abs() < 0.5 && (left[0][1] - pct(1.5)).abs() < 0.5, "{left:?}");
        assert!((left[1][0] - pct(4.0)).abs() < 0.5 && left[1][2] > 10.0, "{left:?}");
        // A click on a segment seeks the video to its start.
        segs[1].click().await?;
        let t0 = std::time::Instant::now();
        loop {
            let at = num(&c.execute("return document.getElementById('player').currentTime;", vec![]).await?);
            if (at - 4.0).abs() < 0.2 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "the click did not seek: at {at}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Fix: drop the first row, move the second, add one.
        c.find(Locator::Css("#rows li:first-child button.remove")).await?.click().await?;
        let row = c.find(Locator::Css("#rows li:first-child input")).await?;
        row.clear().await?;
        row.send_keys("4.2-5.5").await?;
        c.find(Locator::Id("add-row")).await?.click().await?;
        c.find(Locator::Css("#rows li:last-child input")).await?.send_keys("0.5-1.5").await?;
        let reviewer = c.find(Locator::Css("input[name=reviewer]")).await?;
        reviewer.clear().await?;
        reviewer.send_keys("chromium").await?;
        let edited = c.find_all(Locator::Css("#track-edited .seg.edited")).await?;
        assert_eq!(edited.len(), 2, "the 'yours' lane shows the typed rows");
        // Drag: the end of row 2 (0.5-1.5) to 2.5 s, the start of row 1
        // (4.2-5.5) to 3.6 s, with the mouse on the lane's handles.
        for (row, side, to) in [(1, "end", 2.5), (0, "start", 3.6)] {
            let sel = format!("#track-edited .seg[data-row='{row}'] .handle.{side}");
            let handle = c.find(Locator::Css(&sel)).await?;
            let dx = c
                .execute(
                    "const h = document.querySelector(arguments[0]).getBoundingClientRect(); \
                     const t = document.getElementById('track-edited').getBoundingClientRect(); \
                     return t.left + arguments[1] * t.width / arguments[2] - (h.left + h.width / 2);",
                    vec![serde_json::json!(sel), serde_json::json!(to), serde_json::json!(duration)],
                )
                .await?;
            let drag = MouseActions::new("mouse".into())
                .then(PointerAction::MoveToElement { element: handle, duration: None, x: 0.0, y: 0.0 })
                .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
                .then(PointerAction::MoveBy { duration: Some(Duration::from_millis(200)), x: num(&dx).round(), y: 0.0 })
                .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
            c.perform_actions(drag).await?;
            c.release_actions().await?;
        }
        let typed: Vec<String> = serde_json::from_value(
            c.execute("return [...document.querySelectorAll('#rows input[name=segment]')].map(i => i.value);", vec![])
                .await?,
        )
        .unwrap();
        let spans: Vec<(f64, f64)> = typed
            .iter()
            .map(|t| {
                let (a, b) = t.split_once('-').unwrap_or_else(|| panic!("row `{t}`"));
                (a.parse().unwrap(), b.parse().unwrap())
            })
            .collect();
        assert_eq!(spans[0].1, 5.5, "the other end stays: {typed:?}");
        assert!((spans[0].0 - 3.6).abs() < 0.15, "start dragged to 3.6: {typed:?}");
        assert_eq!(spans[1].0, 0.5, "the other end stays: {typed:?}");
        assert!((spans[1].1 - 2.5).abs() < 0.15, "end dragged to 2.5: {typed:?}");
        let lane = c
            .execute(
                "return [...document.querySelectorAll('#track-edited .seg')].map(e => [Number(e.dataset.start), Number(e.dataset.end)]);",
                vec![],
            )
            .await?;
        let lane: Vec<(f64, f64)> = serde_json::from_value(lane).unwrap();
        assert_eq!(lane, spans, "the lane redrawn from the rows");
        dragged = spans;
        // `SERVE_REVIEW_SCREENSHOT=F.png`: a picture of the page for the README.
        if let Some(path) = std::env::var_os("SERVE_REVIEW_SCREENSHOT") {
            c.set_window_size(1280, 1120).await?;
            // The frame at the seek point, not the player's loading spinner.
            for _ in 0..50 {
                let ready = c
                    .execute("const v = document.getElementById('player'); return !v.seeking && v.readyState >= 3;", vec![])
                    .await?;
                if ready == serde_json::json!(true) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::fs::write(&path, c.screenshot().await?).unwrap();
        }
        c.find(Locator::Id("fix")).await?.click().await?;
        if c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("reviewed")).await.is_err() {
            panic!("no verdict shown after submitting the fix; the page: {}", c.source().await?);
        }
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = c.close().await;
    result.unwrap();
    let (human, entry) = common::verdict_of(&f.catalog, f.video).await;
    // The dragged boundaries, exactly as the rows showed them.
    assert_eq!(human, [dragged[1], dragged[0]]);
    assert_eq!(
        (entry.verdict.as_deref(), entry.reviewer.as_deref()),
        (Some("fixed"), Some("chromium"))
    );
}
