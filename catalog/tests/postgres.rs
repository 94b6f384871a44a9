//! The catalog on PostgreSQL, for real: set `ENGINE_TEST_PG_URL` (a
//! database the test may wipe, e.g.
//! `postgres://engine:engine@127.0.0.1:5432/engine_test`). Without it the
//! test is skipped locally and fails under CI (`CI` set), so CI cannot skip
//! it silently.

mod common;

use catalog::Catalog;
use serde_json::json;
use sqlx::Connection;

fn pg_url() -> Option<String> {
    match std::env::var("ENGINE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "ENGINE_TEST_PG_URL is not set but CI is: start PostgreSQL and set it, e.g. postgres://engine:engine@127.0.0.1:5432/engine_test"
            )
        }
        _ => {
            eprintln!("skipped: set ENGINE_TEST_PG_URL to test the catalog on PostgreSQL");
            None
        }
    }
}

/// Drops the catalog's tables so the scenario starts empty.
async fn wipe(url: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("DROP TABLE IF EXISTS detections, golden, review_queue, reviews, predictions, labels, videos, _sqlx_migrations CASCADE")
        .execute(&mut c)
        .await
        .unwrap();
    // A table a new migration adds must be dropped here too, or the next
    // run's migrations fail on it ("relation ... already exists").
    let left: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert!(
        left.is_empty(),
        "wipe() left tables {left:?}: add them to its DROP TABLE"
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scenario_and_types() {
    let Some(url) = pg_url() else { return };
    wipe(&url).await;
    common::scenario(&url).await;

    let cat = Catalog::open(&url).await.unwrap();
    assert_eq!(cat.backend(), "postgres");
    let rows = cat
        .query(
            "SELECT 1.25::numeric AS num, 3::numeric AS whole, now() AS ts, DATE '2024-02-29' AS d, true AS b, \
             '{\"a\": 1}'::jsonb AS j, 2::int4 AS i4, $1::text AS p",
            &[json!("x")],
        )
        .await
        .unwrap();
    let r = &rows[0];
    assert_eq!(
        (
            &r["num"],
            &r["whole"],
            &r["d"],
            &r["b"],
            &r["j"],
            &r["i4"],
            &r["p"]
        ),
        (
            &json!(1.25),
            &json!(3),
            &json!("2024-02-29"),
            &json!(true),
            &json!({"a": 1}),
            &json!(2),
            &json!("x")
        )
    );
    assert!(r["ts"].as_str().unwrap().ends_with('Z'), "{r:?}");
    let e = cat
        .query("SELECT '1 day'::interval AS span", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column `span` of type `INTERVAL`") && e.contains("::text"),
        "{e}"
    );
    cat.close().await;

    // A wrong password: PostgreSQL's message, the password hidden.
    let bad = url.replacen("://engine:engine@", "://engine:wrong@", 1);
    if bad != url {
        let e = Catalog::open(&bad).await.err().unwrap().to_string();
        assert!(
            e.contains("password authentication failed") && !e.contains("wrong"),
            "{e}"
        );
    }
    // TLS is built in: `sslmode=require` on a server without TLS is refused clearly.
    let sep = if url.contains('?') { '&' } else { '?' };
    match Catalog::open(&format!("{url}{sep}sslmode=require")).await {
        Ok(c) => c.close().await, // the server has TLS
        Err(e) => assert!(e.to_string().contains("Failed to open the catalog"), "{e}"),
    }
}

/// A new, empty database `NAME` next to the test database (the role may
/// create databases), so scenarios run in parallel without wiping each other.
async fn fresh_db(name: &str) -> Option<String> {
    let url = pg_url()?;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url.as_str(), String::new()),
    };
    let (server, _) = base.rsplit_once('/').unwrap();
    Some(format!("{server}/{name}{query}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_golden_set() {
    let Some(url) = fresh_db("engine_test_golden").await else {
        return;
    };
    common::verdicts::golden(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verdicts_rebuild_human_labels() {
    let Some(url) = fresh_db("engine_test_verdicts").await else {
        return;
    };
    common::verdicts::verdicts(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_simulated_review() {
    let Some(url) = fresh_db("engine_test_simulate").await else {
        return;
    };
    common::verdicts::simulate(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_monitor_rows() {
    let Some(url) = fresh_db("engine_test_monitor").await else {
        return;
    };
    common::verdicts::monitor(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_reviewers_one_wins() {
    let Some(url) = fresh_db("engine_test_verdict_race").await else {
        return;
    };
    common::verdicts::verdict_race(&url).await;
}
