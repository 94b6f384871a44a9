//! The catalog on SQLite files (always runs; needs ffmpeg for the videos).

mod common;

use catalog::{Catalog, CatalogError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("catalog.db");
    common::scenario(db.to_str().unwrap()).await;
    assert!(db.is_file());
}

#[tokio::test]
async fn sqlite_url_form_and_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("c.db").display());
    let cat = Catalog::open(&url).await.unwrap();
    assert_eq!(cat.backend(), "sqlite");
    cat.close().await;
    assert!(tmp.path().join("c.db").is_file());
    let mem = Catalog::open("sqlite::memory:").await.unwrap();
    assert!(
        mem.query("SELECT * FROM videos", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn missing_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not/there");
    for url in [
        dir.join("c.db").display().to_string(),
        format!("sqlite://{}", dir.join("c.db").display()),
    ] {
        let e = Catalog::open(&url)
            .await
            .err()
            .expect("no folder, no catalog");
        assert!(matches!(e, CatalogError::MissingFolder { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("the folder `{}` does not exist", dir.display()))
                && msg.contains("mkdir -p"),
            "{msg}"
        );
    }
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_folder_or_a_non_database_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Catalog::open(tmp.path().to_str().unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("Failed to open the catalog") && e.contains("not a folder"),
        "{e}"
    );
    let junk = tmp.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let e = Catalog::open(junk.to_str().unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("junk.db") && e.contains("not a database"), "{e}");
}

#[tokio::test]
async fn unsupported_urls_and_unreachable_postgres() {
    let e = Catalog::open("mysql://u:p@h/db")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unsupported URL") && !e.contains(":p@"), "{e}");
    // Nothing listens on port 1: refused at once, password hidden.
    let e = Catalog::open("postgres://engine:secret@127.0.0.1:1/x")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("postgres://engine:***@127.0.0.1:1/x") && !e.contains("secret"),
        "{e}"
    );
    assert!(e.contains("check that PostgreSQL is running"), "{e}");
}

#[tokio::test]
async fn import_of_a_missing_folder_names_it() {
    let cat = Catalog::open("sqlite::memory:").await.unwrap();
    let e = cat
        .import_dir(std::path::Path::new("/no/such/videos"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such/videos"), "{e}");
}

#[tokio::test]
async fn labels_for_another_video_are_a_warning() {
    let tmp = common::video_dir();
    let d = tmp.path();
    std::fs::write(
        d.join("user/match-01.json"),
        r#"[{"video": "a.mp4", "segments": []}, {"video": "b.mp4", "segments": []}]"#,
    )
    .unwrap();
    std::fs::write(
        d.join("user/match-02.csv"),
        "video,start,end\nmatch-02.mp4,5,4\n",
    )
    .unwrap();
    let cat = Catalog::open("sqlite::memory:").await.unwrap();
    let r = cat.import_dir(d).await.unwrap();
    assert_eq!((r.added, r.labelled, r.warnings.len()), (6, 3, 2), "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("no entry for `match-01.mp4`")),
        "{r:?}"
    );
    assert!(
        r.warnings.iter().any(|w| w.contains("match-02.csv")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_of_one_file_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("c.db").display().to_string();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn({
                let db = db.clone();
                async move { Catalog::open(&db).await.map(|c| c.backend()) }
            })
        })
        .collect();
    for o in opens {
        assert_eq!(o.await.unwrap().unwrap(), "sqlite");
    }
}

/// A fresh catalog file for one scenario.
fn fresh() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    let url = tmp.path().join("c.db").display().to_string();
    (tmp, url)
}

#[tokio::test]
async fn sqlite_golden_set() {
    let (_tmp, url) = fresh();
    common::verdicts::golden(&url).await;
}

#[tokio::test]
async fn sqlite_verdicts_rebuild_human_labels() {
    let (_tmp, url) = fresh();
    common::verdicts::verdicts(&url).await;
}

#[tokio::test]
async fn sqlite_simulated_review() {
    let (_tmp, url) = fresh();
    common::verdicts::simulate(&url).await;
}

#[tokio::test]
async fn sqlite_monitor_rows() {
    let (_tmp, url) = fresh();
    common::verdicts::monitor(&url).await;
}

/// Migration 0003 on a catalog made before it (with a legacy
/// `false_positive` review): the rows stay, the new verdicts are accepted,
/// and `wrong_boundaries` needs its span.
#[tokio::test]
async fn sqlite_migration_0003_keeps_legacy_reviews() {
    use sqlx::Connection;
    let (_tmp, url) = fresh();
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{url}?mode=rwc"))
        .await
        .unwrap();
    let script = |f: &str| {
        std::fs::read_to_string(format!(
            "{}/migrations/sqlite/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    for f in ["0001_catalog.sql", "0002_review_queue.sql"] {
        sqlx::raw_sql(&script(f)).execute(&mut c).await.unwrap();
    }
    sqlx::raw_sql(
        "INSERT INTO videos (uri, sport, duration_s, fps, width, height, added_at) VALUES ('/v.mp4', 'soccer', 10, 25, 64, 64, 'x');
         INSERT INTO predictions (video_id, model_version, start_s, end_s, score, created_at) VALUES (1, 'm', 1, 2, 0.5, 'x');
         INSERT INTO reviews (prediction_id, video_id, verdict, reviewer, created_at) VALUES (1, 1, 'false_positive', 'old', 'x');",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::raw_sql(&script("0003_golden_verdicts.sql"))
        .execute(&mut c)
        .await
        .unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM reviews WHERE verdict = 'false_positive'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(n, 1);
    sqlx::raw_sql("INSERT INTO reviews (prediction_id, video_id, verdict, start_s, end_s, reviewer, created_at) VALUES (1, 1, 'wrong_boundaries', 1, 3, 'new', 'y')")
        .execute(&mut c)
        .await
        .unwrap();
    let e = sqlx::raw_sql("INSERT INTO reviews (prediction_id, video_id, verdict, reviewer, created_at) VALUES (1, 1, 'wrong_boundaries', 'new', 'y')")
        .execute(&mut c)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("CHECK"), "{e}");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racing_reviewers_one_wins() {
    let (_tmp, url) = fresh();
    common::verdicts::verdict_race(&url).await;
}
