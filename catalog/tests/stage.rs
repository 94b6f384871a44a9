//! The `catalog.query` stage (stages/src/catalog.rs, compiled in here so
//! the catalog's tests cover it without a dependency cycle) run end to end
//! by the engine on a `memory://` store.

#[path = "../../stages/src/catalog.rs"]
mod stage;

mod common;

use std::sync::Arc;
use std::time::Duration;

use catalog::Catalog;
use engine_core::compile::compile;
use engine_core::plan::plan;
use engine_core::records::{RunRecord, RunStatus, TaskStatus};
use engine_core::resources::Machine;
use engine_core::scheduler::{self, RunOptions};
use engine_core::stage::Registry;
use engine_core::store::{Manifest, Store};
use serde_json::json;

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register::<stage::CatalogQueryConfig>();
    r
}

async fn run(yaml: &str, store: &Store) -> RunRecord {
    let p = compile("catalog.yaml", yaml, &registry()).unwrap_or_else(|d| panic!("{}", d.render()));
    let pl = plan(&p);
    // Removed when the run is over (a folder named by pid was left behind
    // in the temporary folder by every test run).
    let scratch = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        machine: Machine {
            cpus: 2,
            memory: 4 << 30,
            gpus: 0,
        },
        retry_backoff: Duration::from_millis(5),
        scratch_root: scratch.path().to_path_buf(),
        ..RunOptions::default()
    };
    scheduler::run(Arc::new(p), Arc::new(pl), store.clone(), opts)
        .await
        .unwrap()
}

async fn videos(r: &RunRecord, store: &Store) -> Manifest {
    let t = r.task("videos").unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{:?}", t.error);
    store.get_manifest(&t.outputs["videos"]).await.unwrap()
}

async fn log(r: &RunRecord, store: &Store) -> String {
    let d = r.task("videos").unwrap().log.clone().unwrap();
    String::from_utf8(store.get_blob(&d).await.unwrap()).unwrap()
}

fn pipeline(db: &str, sql: &str, params: &str) -> String {
    format!(
        "name: catalog\nstages:\n  videos:\n    uses: catalog.query\n    cache: false\n    with:\n      db: '{db}'\n      sql: \"{sql}\"\n      params: {params}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_query_stage_end_to_end() {
    let g = common::generated();
    let tmp = common::video_dir();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("other")).unwrap();
    std::fs::copy(
        dir.join("user/match-01.mp4"),
        dir.join("other/match-01.mp4"),
    )
    .unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("catalog.db").display().to_string();
    let cat = Catalog::open(&db).await.unwrap();
    cat.import_dir(dir).await.unwrap();
    cat.close().await;

    let store = Store::open("memory://catalog-stage", std::path::Path::new(".")).unwrap();
    let yaml = pipeline(
        &db,
        "SELECT * FROM videos WHERE sport = :sport ORDER BY uri",
        "{ sport: soccer }",
    );
    let r = run(&yaml, &store).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    let m = videos(&r, &store).await;
    let keys: Vec<&str> = m.items.iter().map(|i| i.key.as_str()).collect();
    let want: Vec<String> = g
        .truths
        .iter()
        .filter(|t| t.video.sport.as_str() == "soccer")
        .map(|t| t.video.name.clone())
        .collect();
    assert_eq!(keys, want);
    assert_eq!(m.meta["count"], json!(2));
    let item = &m.items[0];
    assert!(item.files.is_empty(), "no video bytes in the store");
    let meta = &item.meta;
    assert_eq!(
        meta["uri"],
        json!(common::uri(dir, &format!("{}.mp4", g.truths[0].video.name)))
    );
    assert_eq!(
        (&meta["sport"], &meta["league"], &meta["season"]),
        (&json!("soccer"), &json!("liga-sur"), &json!("2024"))
    );
    let labels = meta["labels"].as_array().unwrap();
    assert_eq!(labels.len(), g.truths[0].replays.len());
    assert_eq!(
        labels[0]["start_s"],
        json!(g.truths[0].replays[0].span.start)
    );
    assert_eq!(labels[0]["source"], json!("truth"));
    let size = std::fs::metadata(meta["uri"].as_str().unwrap())
        .unwrap()
        .len();
    assert_eq!(meta["content"]["size"], json!(size));
    assert_eq!(meta["content"]["blake3"].as_str().unwrap().len(), 64);

    // A changed file changes its item (and only its item).
    let before = m.items.clone();
    let path = meta["uri"].as_str().unwrap().to_string();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"trailing bytes");
    std::fs::write(&path, bytes).unwrap();
    let m2 = videos(&run(&yaml, &store).await, &store).await;
    assert_ne!(m2.items[0].meta["content"], before[0].meta["content"]);
    assert_eq!(m2.items[1], before[1]);

    // Golden videos are marked, so `dataset.split` can refuse them.
    assert_eq!(before[0].meta["golden"], json!(false));
    let cat = Catalog::open(&db).await.unwrap();
    cat.golden_add(&catalog::GoldenSelect {
        videos: vec![path.as_str().into()],
        ..Default::default()
    })
    .await
    .unwrap();
    cat.close().await;
    let m3 = videos(&run(&yaml, &store).await, &store).await;
    assert_eq!(
        (&m3.items[0].meta["golden"], &m3.items[1].meta["golden"]),
        (&json!(true), &json!(false))
    );

    // Same file names in two folders: keys stay unique and safe.
    let r = run(
        &pipeline(
            &db,
            "SELECT * FROM videos WHERE uri LIKE :pat ORDER BY uri",
            "{ pat: '%match-01%' }",
        ),
        &store,
    )
    .await;
    let keys: Vec<String> = videos(&r, &store)
        .await
        .items
        .iter()
        .map(|i| i.key.clone())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], "match-01");
    assert!(
        keys[1].starts_with("match-01-") && !keys[1].contains('/'),
        "{keys:?}"
    );

    // An empty result is a clean stop with an empty collection and a log line.
    let r = run(
        &pipeline(
            &db,
            "SELECT * FROM videos WHERE league = :l",
            "{ l: nowhere }",
        ),
        &store,
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert!(videos(&r, &store).await.items.is_empty());
    assert!(
        log(&r, &store)
            .await
            .contains("the query returned no videos"),
        "{}",
        log(&r, &store).await
    );

    // Bad SQL fails the task with the database's message and the SQL.
    let r = run(&pipeline(&db, "SELECT * FROM vidoes", "{}"), &store).await;
    assert_eq!(r.status, RunStatus::Failed);
    let e = r.task("videos").unwrap().error.clone().unwrap();
    assert!(
        e.contains("no such table: vidoes") && e.contains("SQL: SELECT * FROM vidoes"),
        "{e}"
    );

    // No `uri` column.
    let r = run(&pipeline(&db, "SELECT league FROM videos", "{}"), &store).await;
    let e = r.task("videos").unwrap().error.clone().unwrap();
    assert!(e.contains("no `uri` column (columns: league)"), "{e}");

    // A catalogued file that has gone away.
    std::fs::remove_file(dir.join("unlabelled.mkv")).unwrap();
    let r = run(
        &pipeline(
            &db,
            "SELECT * FROM videos WHERE uri LIKE :p",
            "{ p: '%unlabelled%' }",
        ),
        &store,
    )
    .await;
    let e = r.task("videos").unwrap().error.clone().unwrap();
    assert!(
        e.contains("unlabelled.mkv") && e.contains("re-import"),
        "{e}"
    );
}

#[test]
fn config_errors_show_at_compile_time() {
    let cases = [
        (
            pipeline(
                "x.db",
                "SELECT * FROM videos WHERE league = :league",
                "{ leage: a }",
            ),
            "`:league` has no value",
        ),
        (
            pipeline("x.db", "SELECT * FROM videos", "{ extra: 1 }"),
            "param `extra` is not used",
        ),
        (
            "name: c\nstages:\n  videos:\n    uses: catalog.query\n    with: { sq: x }\n"
                .to_string(),
            "unknown field `sq`",
        ),
    ];
    for (yaml, want) in cases {
        let d = compile("catalog.yaml", &yaml, &registry())
            .err()
            .expect("a config error");
        let text = d.render();
        assert!(text.contains(want), "{text}");
    }
}

#[tokio::test]
async fn missing_database_folder_fails_the_task_clearly() {
    let store = Store::open("memory://catalog-missing", std::path::Path::new(".")).unwrap();
    let r = run(
        &pipeline("/no/such/folder/catalog.db", "SELECT * FROM videos", "{}"),
        &store,
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    let e = r.task("videos").unwrap().error.clone().unwrap();
    assert!(
        e.contains("the folder `/no/such/folder` does not exist"),
        "{e}"
    );
}
