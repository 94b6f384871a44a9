//! `engine serve` over HTTP: every endpoint's status codes and content,
//! served in-process on 127.0.0.1:0 from a temporary fs store holding a
//! real run.

mod common;
mod web;

use common::{fixture, live_copy, local, start};
use engine_core::records::{self, RunStatus, TaskStatus};
use engine_serve::Options;
use reqwest::StatusCode;
use web::{client, get, get_json};

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_listed_newest_first_and_filtered() {
    let f = fixture().await;
    let second = common::run_pipeline(
        &f.store,
        &common::PIPELINE.replace("name: web", "name: other"),
    )
    .await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (s, body) = get(&base, "/").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let (s, body) = get(&base, "/runs").await;
    assert_eq!(s, StatusCode::OK);
    let (a, b) = (
        body.find(&second.id).unwrap(),
        body.find(&f.run.id).unwrap(),
    );
    assert!(a < b, "newest first");
    assert!(body.contains("st-failed"), "status shown: {body}");
    assert!(body.contains("0123456789ab"), "git commit shown");
    let (_, only) = get(&base, "/runs?pipeline=web").await;
    assert!(only.contains(&f.run.id) && !only.contains(&second.id));
    let (_, none) = get(&base, "/runs?status=succeeded").await;
    assert!(!none.contains(&f.run.id) && none.contains("No runs"));
    let j: serde_json::Value = get_json(&base, "/api/runs?status=failed").await;
    assert_eq!(j["runs"].as_array().unwrap().len(), 2);
    assert_eq!(j["runs"][0]["id"], second.id.as_str());
    assert!(
        j["runs"][0]["tasks"].as_str().unwrap().contains("1 failed"),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_engine_died_is_interrupted() {
    let f = fixture().await;
    let mut r = live_copy(&f.store, &f.run, "20990101-000000-000-dead", "report").await;
    r.pid = Some(u32::MAX - 1); // no such process
    records::save_run(&f.store, &r).await.unwrap();
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (_, body) = get(&base, "/runs?status=interrupted").await;
    assert!(body.contains(&r.id) && !body.contains(&f.run.id), "{body}");
    let (_, page) = get(&base, &format!("/runs/{}", r.id)).await;
    assert!(
        page.contains(r#"data-stage="report" data-state="interrupted""#),
        "{page}"
    );
    assert!(!page.contains("data-live="), "a dead run is not live");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_page_draws_every_stage_in_its_state() {
    let f = fixture().await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (s, page) = get(&base, &format!("/runs/{}", f.run.id)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    for (stage, state) in [
        ("make", "done"),
        ("shout", "done"),
        ("gather", "done"),
        ("report", "done"),
        ("sweep", "done"),
        ("broken", "failed"),
    ] {
        let want = format!(r#"<g class="stage st-{state}" data-stage="{stage}""#);
        assert!(page.contains(&want), "{want} in\n{page}");
    }
    // The map stage's items and the matrix's trials.
    assert!(page.contains("5/5 items"), "{page}");
    assert_eq!(page.matches(r#"<rect class="trial st-done""#).count(), 3);
    assert!(page.contains("3 done trials"));
    // A legend with every state, the timeline, the tasks.
    for s in engine_serve::views::STATES {
        assert!(page.contains(&format!(r#"<span class="swatch st-{s}">"#)));
    }
    assert!(page.contains(r#"<svg class="gantt""#));
    assert!(page.contains("/tasks/sweep%5Benv.X%3D2%5D"));
    // No script or style from anywhere else.
    for from_elsewhere in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(!page.contains(from_elsewhere), "{from_elsewhere}");
    }
    let j: serde_json::Value = client()
        .get(format!("{base}/api/runs/{}", f.run.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nodes = j["graph"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    let x = |name: &str| {
        nodes.iter().find(|n| n["name"] == name).unwrap()["x"]
            .as_f64()
            .unwrap()
    };
    assert!(x("make") < x("shout") && x("shout") < x("gather") && x("gather") < x("report"));
    assert_eq!(x("sweep"), x("shout"), "same rank, same column");
    assert_eq!(j["graph"]["edges"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_are_404_and_bad_ones_400() {
    let f = fixture().await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let id = &f.run.id;
    let d = f.run.task("report").unwrap().outputs["report"].to_string();
    for (path, want) in [
        ("/runs/20200101-000000-000-0000".to_string(), 404),
        ("/api/runs/nope".into(), 404),
        ("/runs/nope/events".into(), 404),
        (format!("/runs/{id}/tasks/nope"), 404),
        (format!("/api/runs/{id}/tasks/nope"), 404),
        (format!("/runs/{id}/tasks/nope/log"), 404),
        (format!("/artifacts/{}", "0".repeat(64)), 404),
        ("/artifacts/xyz".into(), 400),
        ("/artifacts/XYZ/files/a".into(), 400),
        (format!("/artifacts/{d}/files/missing.txt"), 404),
        ("/no/such/page".into(), 404),
        // Traversal: out of the runs folder, out of an artifact.
        ("/runs/..%2F..%2Fetc%2Fpasswd".into(), 400),
        ("/runs/..%2Frefs%2Fmodels/tasks/x".into(), 400),
        (
            format!("/artifacts/{d}/files/..%2F..%2F..%2Fetc%2Fpasswd"),
            400,
        ),
        (format!("/artifacts/{d}/files/%2Fetc%2Fpasswd"), 400),
        (
            format!("/artifacts/{d}/files/sub/..%2F..%2Findex.html"),
            400,
        ),
    ] {
        let (s, body) = get(&base, &path).await;
        assert_eq!(s.as_u16(), want, "{path}: {body}");
        assert!(!body.contains("root:"), "{path} leaked a file");
        assert!(body.len() > 10, "{path}: a message says what failed");
    }
    // Methods other than GET and POST.
    let r = client()
        .delete(format!("{base}/runs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A task that ran on Slurm lists its jobs (id, attempt, state, node, exit
/// code, items, output file) and says where its items ran.
#[tokio::test(flavor = "multi_thread")]
async fn a_slurm_tasks_jobs_are_listed() {
    let f = fixture().await;
    let mut r = f.run.clone();
    r.id = "20990101-000000-000-slurm".into();
    r.executor = "slurm".into();
    let t = r.tasks.iter_mut().find(|t| t.task == "report").unwrap();
    t.placement =
        Some("items ran on Slurm as job array(s) 7; none ran on the submitting machine".into());
    t.jobs = vec![records::JobRecord {
        attempt: 1,
        job: "7_0".into(),
        node: Some("node2".into()),
        state: "NODE_FAIL".into(),
        exit_code: None,
        log: Some("/logs/slurm-7_0.out".into()),
        items: Some(3),
    }];
    records::save_run(&f.store, &r).await.unwrap();
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (s, page) = get(&base, &format!("/runs/{}/tasks/report", r.id)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains(
            r#"<td class="mono">7_0</td><td>1</td><td>NODE_FAIL</td><td>node2</td><td>-</td><td>3</td>"#
        ),
        "{page}"
    );
    assert!(
        page.contains("none ran on the submitting machine"),
        "{page}"
    );
    // A local run's task has no jobs table.
    let (_, page) = get(&base, &format!("/runs/{}/tasks/report", f.run.id)).await;
    assert!(!page.contains("Slurm jobs"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_shows_params_reason_lineage_and_log() {
    let f = fixture().await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let id = &f.run.id;
    let (s, page) = get(&base, &format!("/runs/{id}/tasks/report")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let fp = f.run.task("report").unwrap().fingerprint.clone().unwrap();
    assert!(page.contains(fp.as_str()), "fingerprint");
    assert!(
        page.contains("no cache entry") || page.contains(&f.run.task("report").unwrap().reason)
    );
    assert!(page.contains("report log line"), "the log: {page}");
    assert!(page.contains("mkdir -p out"), "params from the spec");
    // The input links to the task that made it.
    assert!(
        page.contains(&format!(r#"href="/runs/{id}/tasks/gather""#)),
        "{page}"
    );
    let (s, log) = get(&base, &format!("/runs/{id}/tasks/report/log")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(log.contains("report log line"));
    let (s, page) = get(&base, &format!("/runs/{id}/tasks/broken")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("about to fail") && page.contains("st-failed"));
    let (s, page) = get(&base, &format!("/runs/{id}/tasks/sweep%5Benv.X%3D2%5D")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("trial 2"), "{page}");
    let j: serde_json::Value = get_json(&base, &format!("/api/runs/{id}/tasks/report")).await;
    assert_eq!(j["fingerprint"], fp.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_show_reports_sandboxed_json_pretty_and_download() {
    let f = fixture().await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let d = f.run.task("report").unwrap().outputs["report"].to_string();
    let (s, page) = get(&base, &format!("/artifacts/{d}")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains(&format!(r#"<iframe class="report" sandbox="allow-scripts" src="/artifacts/{d}/files/index.html""#)), "{page}");
    assert!(
        page.contains("&quot;f1&quot;: 0.9"),
        "pretty JSON, escaped: {page}"
    );
    assert!(
        page.contains(&format!(r#"href="/runs/{}/tasks/report""#, f.run.id)),
        "made by"
    );
    let r = client()
        .get(format!("{base}/artifacts/{d}/files/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert!(r.text().await.unwrap().contains("The report"));
    let r = client()
        .get(format!(
            "{base}/artifacts/{d}/files/metrics.json?download=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"metrics.json\""
    );
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_escape_what_records_hold() {
    let f = fixture().await;
    let mut r = f.run.clone();
    r.id = "20990101-000000-000-evil".into();
    r.pipeline = "<script>alert(1)</script>".into();
    r.tasks[0].reason = "\"><img src=x onerror=alert(2)>".into();
    r.values = serde_json::json!({"db": {"password": "hunter2"}, "lr": 0.1});
    records::save_run(&f.store, &r).await.unwrap();
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    for path in ["/runs".to_string(), format!("/runs/{}", r.id)] {
        let (s, page) = get(&base, &path).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            !page.contains("<script>alert") && !page.contains("<img src=x"),
            "{path}: {page}"
        );
        assert!(page.contains("&lt;script&gt;"), "{path}");
        assert!(
            !page.contains("hunter2"),
            "{path}: a secret-named value is redacted"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_needed_on_every_request_when_set() {
    let f = fixture().await;
    let token = "t0ken-t0ken-t0ken-t0ken";
    let (addr, _) = start(
        &f.store,
        Options {
            token: Some(token.into()),
            ..local()
        },
    )
    .await;
    let base = format!("http://{addr}");
    for path in ["/runs", "/assets/style.css", "/api/refs", "/nothing"] {
        let (s, body) = get(&base, path).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert!(body.contains("token"), "{body}");
    }
    let (s, _) = get(&base, "/runs?token=wrong-wrong-wrong-wrong").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let r = client()
        .get(format!("{base}/runs"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client()
        .get(format!("{base}/runs"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // `?token=` once sets a cookie the next requests carry.
    let r = client()
        .get(format!("{base}/runs?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    let r = client()
        .get(format!("{base}/runs/{}", f.run.id))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn listening_beyond_loopback_needs_a_token() {
    let o = Options {
        listen: "0.0.0.0:8080".parse().unwrap(),
        ..Options::default()
    };
    let e = engine_serve::check_listen(&o).unwrap_err();
    assert!(
        e.contains("--token") && e.contains("ENGINE_SERVE_TOKEN"),
        "{e}"
    );
    assert!(
        engine_serve::check_listen(&Options {
            token: Some("short".into()),
            ..o.clone()
        })
        .is_err()
    );
    assert!(
        engine_serve::check_listen(&Options {
            token: Some("a-long-enough-token-1".into()),
            ..o
        })
        .is_ok()
    );
    assert!(engine_serve::check_listen(&Options::default()).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_is_a_post_with_csrf_only_when_writes_are_allowed() {
    let f = fixture().await;
    let name = "models/web@production";
    // Read-only: the models page shows history but no button, and a POST is refused.
    let (addr, ctx) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (s, page) = get(&base, "/refs").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains(name) && page.contains("#2") && page.contains("second"),
        "{page}"
    );
    assert!(!page.contains("Roll back to"));
    // A deploy links the evaluation that justified it.
    let eval = f.run.task("report").unwrap().outputs["report"]
        .as_str()
        .to_string();
    assert!(
        page.contains(&format!("<a class=\"mono\" href=\"/artifacts/{eval}\"")),
        "no evaluation link in {page}"
    );
    let form = [("csrf", ctx.csrf.as_str()), ("name", name), ("to", "1")];
    let r = client()
        .post(format!("{base}/refs/rollback"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("--allow-write"));
    // Writable.
    let (addr, ctx) = start(
        &f.store,
        Options {
            allow_write: true,
            ..local()
        },
    )
    .await;
    let base = format!("http://{addr}");
    let (_, page) = get(&base, "/refs").await;
    assert!(
        page.contains("Roll back to #1") && page.contains(&ctx.csrf),
        "{page}"
    );
    let post = |form: Vec<(&'static str, String)>, origin: Option<&str>| {
        let mut rq = client().post(format!("{base}/refs/rollback")).form(&form);
        if let Some(o) = origin {
            rq = rq.header("origin", o);
        }
        rq.send()
    };
    let good = vec![
        ("csrf", ctx.csrf.clone()),
        ("name", name.to_string()),
        ("to", "1".to_string()),
    ];
    let no_csrf = vec![("name", name.to_string()), ("to", "1".to_string())];
    let bad_csrf = vec![
        ("csrf", "x".repeat(64)),
        ("name", name.to_string()),
        ("to", "1".to_string()),
    ];
    assert_eq!(
        post(no_csrf, None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(bad_csrf, None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(good.clone(), Some("http://evil.example"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let bad_index = vec![
        ("csrf", ctx.csrf.clone()),
        ("name", name.to_string()),
        ("to", "9".to_string()),
    ];
    assert_eq!(
        post(bad_index, None).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let unknown = vec![
        ("csrf", ctx.csrf.clone()),
        ("name", "models/none@x".to_string()),
        ("to", "1".to_string()),
    ];
    assert_eq!(
        post(unknown, None).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let doc = f
        .store
        .get_ref("models/web/production")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.history.len(), 2, "nothing moved yet");
    let r = post(good.clone(), Some(&base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let doc = f
        .store
        .get_ref("models/web/production")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.history.len(), 3);
    assert_eq!(doc.current(), Some(&doc.history[0].digest));
    assert!(
        doc.history[2].note.starts_with("rollback to #1"),
        "{:?}",
        doc.history[2]
    );
    // Again: already there.
    assert_eq!(
        post(good, None).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

/// Reads server-sent events until one named `name` arrives; its data.
async fn next_event(resp: &mut reqwest::Response, buf: &mut String, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line
                    .strip_prefix("event: ")
                    .or_else(|| line.strip_prefix("event:"))
                {
                    ev = if v == name { name } else { "other" };
                } else if let Some(v) = line
                    .strip_prefix("data: ")
                    .or_else(|| line.strip_prefix("data:"))
                {
                    data.push_str(v);
                }
            }
            if ev == name {
                return data;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `{name}` event within 10 s; got {buf}"))
            .unwrap();
        match chunk {
            Some(c) => buf.push_str(&String::from_utf8_lossy(&c)),
            None => panic!("the stream ended before a `{name}` event"),
        }
    }
}

/// The next `update` that carries `key`: a live header's duration ticks
/// between the updates a test waits for.
async fn next_update_with(
    resp: &mut reqwest::Response,
    buf: &mut String,
    key: &str,
) -> serde_json::Value {
    loop {
        let u: serde_json::Value =
            serde_json::from_str(&next_event(resp, buf, "update").await).unwrap();
        if u.get(key).is_some() {
            return u;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_streams_updates_until_it_ends() {
    let f = fixture().await;
    let mut r = live_copy(&f.store, &f.run, "20990101-000000-000-live", "gather").await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (_, page) = get(&base, &format!("/runs/{}", r.id)).await;
    let marker = format!(r#"data-live="/runs/{}/events?since="#, r.id);
    let at = page.find(&marker).unwrap_or_else(|| panic!("{page}"));
    let since_url = page[at + 11..].split('"').next().unwrap().to_string();
    // From the page's snapshot: nothing is sent until something changes,
    // then only the changed task's row, as data, and the stage graph.
    let mut diffs = client()
        .get(format!("{base}{since_url}"))
        .send()
        .await
        .unwrap();
    assert_eq!(diffs.status(), StatusCode::OK);
    let mut dbuf = String::new();
    // Several polls (100 ms each) with no task changed: at most the
    // header, whose duration ticks; no graph, no rows, no table.
    if let Ok(chunk) =
        tokio::time::timeout(std::time::Duration::from_millis(600), diffs.chunk()).await
    {
        let text = String::from_utf8_lossy(&chunk.unwrap().unwrap_or_default()).into_owned();
        for key in ["\"dag\"", "\"rows\"", "\"tasks\"", "\"timeline\""] {
            assert!(
                !text.contains(key),
                "{key} sent with no task changed: {text}"
            );
        }
    }
    let mut resp = client()
        .get(format!("{base}/runs/{}/events", r.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let first: serde_json::Value =
        serde_json::from_str(&next_event(&mut resp, &mut buf, "update").await).unwrap();
    assert!(
        first["dag"]
            .as_str()
            .unwrap()
            .contains(r#"<g class="stage st-running" data-stage="gather""#)
    );
    assert_eq!(first["status"], "running");
    // The task finishes: a new update says so.
    let i = r.tasks.iter().position(|t| t.task == "gather").unwrap();
    r.tasks[i].status = TaskStatus::Done;
    records::save_run(&f.store, &r).await.unwrap();
    let second = next_update_with(&mut resp, &mut buf, "rows").await;
    assert!(
        second["dag"]
            .as_str()
            .unwrap()
            .contains(r#"<g class="stage st-done" data-stage="gather""#)
    );
    assert!(second.get("tasks").is_none(), "not the whole table again");
    let row = serde_json::json!([[
        i,
        "done",
        second["rows"][0][2],
        second["rows"][0][3],
        null,
        null
    ]]);
    assert_eq!(second["rows"], row, "{second}");
    let diff = next_update_with(&mut diffs, &mut dbuf, "rows").await;
    assert_eq!(diff["rows"], row, "{diff}");
    assert!(
        diff.get("tasks").is_none() && diff.get("runhead").is_some(),
        "{diff}"
    );
    // The run ends: a last update, then `end`.
    r.status = RunStatus::Succeeded;
    r.finished = Some(engine_core::store::now_rfc3339());
    records::save_run(&f.store, &r).await.unwrap();
    let last = loop {
        let u = next_update_with(&mut resp, &mut buf, "status").await;
        if u["status"] == "succeeded" {
            break u;
        }
    };
    assert!(
        last["runhead"].as_str().unwrap().contains("succeeded"),
        "{last}"
    );
    next_event(&mut resp, &mut buf, "end").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_compare_side_by_side() {
    let f = fixture().await;
    let other = common::run_pipeline(
        &f.store,
        &common::PIPELINE
            .replace("count: 5", "count: 6")
            .replace("exit 3", "exit 0"),
    )
    .await;
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let (s, page) = get(&base, "/compare").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains(&format!(r#"<option value="{}">"#, f.run.id)),
        "{page}"
    );
    let (s, page) = get(&base, &format!("/compare?a={}&b={}", f.run.id, other.id)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains(r#"data-section="params""#), "{page}");
    assert!(page.contains("make.with.count"), "{page}");
    assert!(page.contains(r#"data-section="outputs""#), "{page}");
    assert!(
        page.contains("+1.0000") || page.contains(">+1<") || page.contains("+1"),
        "{page}"
    );
    let (s, page) = get(&base, &format!("/compare?a={}&b={}", f.run.id, f.run.id)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("No differences"), "{page}");
    let (s, _) = get(
        &base,
        &format!("/compare?a={}&b=20200101-000000-000-none", f.run.id),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A record of 10,000 tasks: 100 stages in a chain, each a matrix of 100.
fn big_run(template: &engine_core::records::RunRecord) -> engine_core::records::RunRecord {
    let mut r = template.clone();
    r.id = "20990101-000000-000-big0".into();
    let mut spec = String::from("name: big\nstages:\n");
    let mut tasks = vec![];
    let t0 = template.tasks[0].clone();
    for s in 0..100 {
        spec.push_str(&format!("  s{s}:\n    uses: builtin.echo\n"));
        if s > 0 {
            spec.push_str(&format!("    needs: [s{}]\n", s - 1));
        }
        for i in 0..100 {
            let mut t = t0.clone();
            t.stage = format!("s{s}");
            t.task = format!("s{s}[i={i}]");
            t.status = [TaskStatus::Done, TaskStatus::Cached, TaskStatus::Failed][(s + i) % 3];
            t.started_ms = Some((s * 100 + i) as f64);
            t.finished_ms = Some((s * 100 + i + 50) as f64);
            t.held_ms = vec![];
            t.items = None;
            tasks.push(t);
        }
    }
    r.spec = spec;
    r.tasks = tasks;
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_ten_thousand_tasks_renders_quickly() {
    let f = fixture().await;
    let big = big_run(&f.run);
    records::save_run(&f.store, &big).await.unwrap();
    let (addr, _) = start(&f.store, local()).await;
    let base = format!("http://{addr}");
    let mut best = std::time::Duration::MAX;
    let mut size = 0;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (s, page) = get(&base, &format!("/runs/{}", big.id)).await;
        assert_eq!(s, StatusCode::OK);
        best = best.min(t.elapsed());
        size = page.len();
        assert_eq!(page.matches("<g class=\"stage ").count(), 100);
        assert_eq!(page.matches("<tr data-task=").count(), 10_000);
    }
    eprintln!(
        "run page of 10,000 tasks: {best:?} (best of 3), {} KiB",
        size / 1024
    );
    // Debug builds are several times slower than release; the bound is for
    // release (`cargo test --release`), a looser one for debug.
    let bound = if cfg!(debug_assertions) { 5.0 } else { 1.0 };
    assert!(best.as_secs_f64() < bound, "{best:?}");
}

/// A running task's page follows its log: the engine puts the log's tail in
/// the record while the task runs, the page marks the log to follow, and
/// its JSON (what the page polls) has the lines printed so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tasks_log_is_followed_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = engine_core::store::Store::open("fs://store", dir.path()).unwrap();
    let yaml = "name: live-log\nstages:\n  long:\n    uses: shell\n    with:\n      run: |\n        echo first line\n        sleep 5\n        echo last line\n";
    let running = {
        let store = store.clone();
        tokio::spawn(async move { common::run_pipeline(&store, yaml).await })
    };
    let (addr, _) = start(&store, local()).await;
    let base = format!("http://{addr}");
    let t0 = std::time::Instant::now();
    let mut followed = None;
    while t0.elapsed() < std::time::Duration::from_secs(20) && !running.is_finished() {
        let runs: serde_json::Value = get_json(&base, "/api/runs").await;
        if let Some(id) = runs["runs"][0]["id"].as_str() {
            let j: serde_json::Value = get_json(&base, &format!("/api/runs/{id}/tasks/long")).await;
            // The params show the command too: look at the log itself.
            if j["live"] == true && j["log"].as_str().is_some_and(|l| l.contains("first line")) {
                let (_, page) = get(&base, &format!("/runs/{id}/tasks/long")).await;
                followed = Some((id.to_string(), j, page));
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (id, live, page) = followed.expect("the log of the running task was shown while it ran");
    assert!(
        page.contains(&format!("data-follow=\"/api/runs/{id}/tasks/long\"")),
        "{page}"
    );
    assert!(
        !live["log"].as_str().unwrap().contains("last line"),
        "{live}"
    );
    let r = running.await.unwrap();
    assert_eq!(r.task("long").unwrap().status, TaskStatus::Done);
    let j: serde_json::Value = get_json(&base, &format!("/api/runs/{id}/tasks/long")).await;
    assert_eq!(j["live"], false);
    assert!(j["log"].as_str().unwrap().contains("last line"), "{j}");
}
