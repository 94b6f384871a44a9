//! The review queue of `engine serve --catalog` over HTTP, against a real
//! SQLite catalog file and a real video made by ffmpeg: the queue, the
//! video with range requests, and verdicts read back from the catalog as
//! `engine review` reads them.

mod common;
mod web;

use common::{PROPOSED, local, review_fixture, start, verdict_of};
use engine_serve::Options;
use reqwest::StatusCode;
use web::{client, get, get_json};

async fn post(base: &str, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
    let r = client()
        .post(format!("{base}{path}"))
        .form(form)
        .send()
        .await
        .unwrap();
    let s = r.status();
    let to = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (s, to, r.text().await.unwrap())
}

fn with_catalog(catalog: &str, allow_write: bool) -> Options {
    Options {
        catalog: Some(catalog.to_string()),
        allow_write,
        ..local()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_lists_the_pending_video_and_says_when_there_is_no_catalog() {
    let f = review_fixture().await;
    let (addr, _) = start(&f.store, with_catalog(&f.catalog, false)).await;
    let base = format!("http://{addr}");
    let (s, page) = get(&base, "/review").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    for want in [
        "href=\"/review\">Review</a>",
        &format!("href=\"/review/{}\"", f.video),
        "match-01.mp4",
        "ice-hockey",
        "no-graphics-league",
        "home-tv",
        "0.31",
        "1-2.5",
        "4-5",
        "teacher confidence 0.31 &lt; 0.50",
    ] {
        assert!(page.contains(want), "`{want}` not in {page}");
    }
    let r = client()
        .get(format!("{base}/api/review"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["videos"][0]["video_id"], f.video, "{j}");
    assert_eq!(j["videos"][0]["league"], "no-graphics-league");
    assert_eq!(j["videos"][0]["confidence"], 0.31);
    assert_eq!(j["videos"][0]["proposals"][1]["start_s"], 4.0);
    assert_eq!(j["videos"][0]["proposals"][1]["text"], "4-5");

    // No catalog: the pages say how to give one; nothing crashes.
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (s, page) = get(&base, "/review").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("No catalog: start with <code>engine serve --catalog URL</code>"),
        "{page}"
    );
    let j: serde_json::Value = get_json(&base, "/api/review").await;
    assert!(
        j["catalog"].is_null() && j["videos"] == serde_json::json!([]),
        "{j}"
    );
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("engine serve --catalog URL")
    );
    for path in [
        format!("/review/{}", f.video),
        format!("/review/{}/video", f.video),
    ] {
        let (s, body) = get(&base, &path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(
            body.contains("engine serve --catalog URL"),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_video_is_served_with_range_requests_and_only_by_catalog_id() {
    let f = review_fixture().await;
    let (addr, _) = start(&f.store, with_catalog(&f.catalog, false)).await;
    let base = format!("http://{addr}");
    let bytes = std::fs::read(&f.path).unwrap();
    let len = bytes.len();
    let url = format!("{base}/review/{}/video", f.video);

    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["content-type"], "video/mp4");
    assert_eq!(r.bytes().await.unwrap(), bytes);

    for (range, first, last) in [
        ("bytes=10-99", 10, 99),
        ("bytes=100-", 100, len - 1),
        ("bytes=-16", len - 16, len - 1),
        (&format!("bytes=5-{}", len + 1000) as &str, 5, len - 1),
    ] {
        let r = client()
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {first}-{last}/{len}").as_str(),
            "{range}"
        );
        assert_eq!(
            r.headers()["content-length"],
            (last - first + 1).to_string().as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), &bytes[first..=last], "{range}");
    }
    for range in [format!("bytes={len}-"), "bytes=-0".to_string()] {
        let r = client()
            .get(&url)
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{len}").as_str()
        );
        assert!(r.text().await.unwrap().contains(&format!("{len} bytes")));
    }

    // Only catalog ids: an unknown one is 404, anything else 400, and a
    // path in the request is never a file.
    let (s, body) = get(&base, "/review/9999/video").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("no video with id 9999"), "{body}");
    for path in ["/review/abc/video", "/review/..%2F..%2Fetc%2Fpasswd/video"] {
        let (s, body) = get(&base, path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.contains("is not a video id"), "{body}");
    }
    let (s, _) = get(&base, "/review/9999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The file gone from disk: 404 naming the uri, and the page says so.
    std::fs::remove_file(&f.path).unwrap();
    let (s, body) = get(&base, &format!("/review/{}/video", f.video)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains(&f.path.display().to_string()), "{body}");
    let (s, page) = get(&base, &format!("/review/{}", f.video)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("id=\"missing-file\"") && !page.contains("<video"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_video_page_draws_the_proposals_and_read_only_refuses_verdicts() {
    let f = review_fixture().await;
    let (addr, ctx) = start(&f.store, with_catalog(&f.catalog, false)).await;
    let base = format!("http://{addr}");
    let (s, page) = get(&base, &format!("/review/{}", f.video)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains(&format!(
            "<video id=\"player\" controls preload=\"auto\" src=\"/review/{}/video\"",
            f.video
        )),
        "{page}"
    );
    assert!(page.contains("data-duration=\"6.0\""), "{page}");
    for (a, b) in PROPOSED {
        assert!(
            page.contains(&format!(
                "class=\"seg proposed\" data-start=\"{a:?}\" data-end=\"{b:?}\""
            )),
            "{a}-{b} not drawn: {page}"
        );
    }
    // A browser posts the verdict form with its real Origin only under a
    // policy that lets same-origin requests carry it (`no-referrer` makes
    // it `null`, which the origin check refuses).
    let r = client()
        .get(format!("{base}/review/{}", f.video))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    // Read-only: no buttons, and a POST is refused before it reaches the catalog.
    assert!(
        page.contains("id=\"read-only\"") && !page.contains("<form"),
        "{page}"
    );
    let (s, _, body) = post(
        &base,
        &format!("/review/{}/accept", f.video),
        &[("csrf", ctx.csrf.as_str())],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("--allow-write"), "{body}");
    let (_, entry) = verdict_of(&f.catalog, f.video).await;
    assert_eq!(entry.status, "pending");

    let (addr, ctx) = start(&f.store, with_catalog(&f.catalog, true)).await;
    let base = format!("http://{addr}");
    let (_, page) = get(&base, &format!("/review/{}", f.video)).await;
    assert!(
        page.contains("id=\"verdict\"")
            && page.contains(&ctx.csrf)
            && page.contains("name=\"segment\" value=\"1-2.5\"")
            && page.contains("name=\"reviewer\" value=\"web\""),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_records_the_proposals_once_and_a_second_verdict_is_409() {
    let f = review_fixture().await;
    let (addr, ctx) = start(&f.store, with_catalog(&f.catalog, true)).await;
    let base = format!("http://{addr}");
    let accept = format!("/review/{}/accept", f.video);
    let (s, _, body) = post(&base, &accept, &[("reviewer", "ana")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no CSRF token: {body}");
    let (s, _, body) = post(
        &base,
        &accept,
        &[("csrf", "0".repeat(64).as_str()), ("reviewer", "ana")],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(verdict_of(&f.catalog, f.video).await.1.status, "pending");

    let (s, to, body) = post(
        &base,
        &accept,
        &[("csrf", ctx.csrf.as_str()), ("reviewer", "ana")],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(to, format!("/review/{}", f.video));
    let (human, entry) = verdict_of(&f.catalog, f.video).await;
    assert_eq!(human, PROPOSED);
    assert_eq!(
        (
            entry.status.as_str(),
            entry.verdict.as_deref(),
            entry.reviewer.as_deref()
        ),
        ("done", Some("accepted"), Some("ana"))
    );
    let cat = catalog::Catalog::open(&f.catalog).await.unwrap();
    assert!(cat.review_queue(true).await.unwrap().is_empty());
    cat.close().await;
    let (_, page) = get(&base, "/review").await;
    assert!(!page.contains("match-01.mp4"), "{page}");
    let (s, page) = get(&base, &to).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("id=\"reviewed\"")
            && page.contains("by ana")
            && !page.contains("id=\"verdict\""),
        "{page}"
    );

    // Again, or a fix after it: 409 saying who and when; nothing changes.
    let when = entry.done_at.clone().unwrap();
    for (path, form) in [
        (accept.clone(), vec![("csrf", ctx.csrf.as_str())]),
        (
            format!("/review/{}/fix", f.video),
            vec![("csrf", ctx.csrf.as_str()), ("segment", "0-1")],
        ),
    ] {
        let (s, _, body) = post(&base, &path, &form).await;
        assert_eq!(s, StatusCode::CONFLICT, "{path}: {body}");
        assert!(
            body.contains(&format!("already reviewed: accepted by ana at {when}")),
            "{body}"
        );
    }
    assert_eq!(verdict_of(&f.catalog, f.video).await.0, PROPOSED);

    // Unknown ids: 404 (a POST too), not a verdict on something else.
    let (s, _, body) = post(&base, "/review/9999/accept", &[("csrf", ctx.csrf.as_str())]).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("no video with id 9999"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fix_records_the_typed_segments_and_bad_ones_are_400() {
    let f = review_fixture().await;
    let (addr, ctx) = start(&f.store, with_catalog(&f.catalog, true)).await;
    let base = format!("http://{addr}");
    let fix = format!("/review/{}/fix", f.video);
    let csrf = ctx.csrf.as_str();
    for (rows, want) in [
        (vec!["3-2"], "segment `3-2` ends (2) before it starts (3)"),
        (vec!["3-3"], "ends (3) before it starts (3)"),
        (vec!["-1-2"], "segment `-1-2` has no start"),
        (
            vec!["abc-2"],
            "the start `abc` of segment `abc-2` is not a number",
        ),
        (vec!["1-2", "5"], "segment `5` has no `-`"),
        (vec!["1-4", "3-6"], "segments `1-4` and `3-6` overlap"),
        (vec!["1-2,3-4"], "one segment per row"),
    ] {
        let mut form = vec![("csrf", csrf)];
        form.extend(rows.iter().map(|r| ("segment", *r)));
        let (s, _, body) = post(&base, &fix, &form).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{rows:?}: {body}");
        assert!(
            body.contains(want) && body.contains("START-END"),
            "{rows:?}: {body}"
        );
    }
    assert_eq!(verdict_of(&f.catalog, f.video).await.1.status, "pending");

    // Blank rows are ignored, rows are sorted, an empty reviewer is `web`.
    let (s, to, body) = post(
        &base,
        &fix,
        &[
            ("csrf", csrf),
            ("segment", " 3.25-4.5 "),
            ("segment", ""),
            ("segment", "0.5-1"),
            ("reviewer", " "),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(to, format!("/review/{}", f.video));
    let (human, entry) = verdict_of(&f.catalog, f.video).await;
    assert_eq!(human, [(0.5, 1.0), (3.25, 4.5)]);
    assert_eq!(
        (
            entry.status.as_str(),
            entry.verdict.as_deref(),
            entry.reviewer.as_deref()
        ),
        ("done", Some("fixed"), Some("web"))
    );
    let (_, page) = get(&base, &to).await;
    assert!(
        page.contains("0.5-1") && page.contains("3.25-4.5") && page.contains("by web"),
        "{page}"
    );
}

/// Reviewers submitting the same page at once: exactly one verdict is
/// recorded (303), every other gets 409 naming the winner, and the
/// labels are the winner's. The page's entry id keys the verdict: a form
/// for another video's entry, or a malformed one, is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_reviewers_one_wins_the_others_get_409() {
    const REVIEWERS: usize = 6;
    let f = review_fixture().await;
    let (addr, ctx) = start(&f.store, with_catalog(&f.catalog, true)).await;
    let base = format!("http://{addr}");
    let page = get_json(&base, &format!("/api/review/{}", f.video)).await;
    let entry = page["video"]["entry"].as_i64().unwrap().to_string();
    let fix = format!("/review/{}/fix", f.video);
    for (bad, want) in [
        ("x1", "is not a review entry id"),
        ("999999", "is not an entry of video"),
    ] {
        let (s, _, body) = post(
            &base,
            &fix,
            &[
                ("csrf", ctx.csrf.as_str()),
                ("entry", bad),
                ("segment", "0-1"),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains(want), "{bad}: {body}");
    }
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(REVIEWERS));
    let racers: Vec<_> = (0..REVIEWERS)
        .map(|i| {
            let (base, fix, entry, csrf, gate) = (
                base.clone(),
                fix.clone(),
                entry.clone(),
                ctx.csrf.clone(),
                gate.clone(),
            );
            tokio::spawn(async move {
                let seg = format!("{i}-{}.5", i);
                let who = format!("r{i}");
                gate.wait().await;
                let form = [
                    ("csrf", csrf.as_str()),
                    ("entry", entry.as_str()),
                    ("segment", seg.as_str()),
                    ("reviewer", who.as_str()),
                ];
                let (s, _, body) = post(&base, &fix, &form).await;
                (i, s, body)
            })
        })
        .collect();
    let mut won = vec![];
    for r in racers {
        let (i, s, body) = r.await.unwrap();
        match s {
            StatusCode::SEE_OTHER => won.push(i),
            StatusCode::CONFLICT => {
                assert!(body.contains("already reviewed: fixed by r"), "{body}")
            }
            s => panic!("reviewer {i}: {s} {body}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one verdict: {won:?}");
    let w = won[0] as f64;
    let (human, entry_now) = verdict_of(&f.catalog, f.video).await;
    assert_eq!(human, [(w, w + 0.5)], "the winner's labels only");
    assert_eq!(entry_now.reviewer, Some(format!("r{}", won[0])));
}
