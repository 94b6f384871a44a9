//! Shared fixtures: a folder of small synthetic videos with every kind of
//! label file, and the catalog scenario both backends must pass.

#![allow(dead_code)]

pub mod verdicts;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use catalog::*;
use media::synth::{self, GroundTruth, Preset, Sport, SynthSpec};
use serde_json::{Value, json};

/// The generated videos and their ground truth, made once per test binary.
pub struct Generated {
    pub dir: PathBuf,
    pub truths: Vec<GroundTruth>,
}

/// The synthetic set is deterministic, so it is made once into the target
/// folder's tmp and reused by every test process (nextest runs each test in
/// its own): made in a private folder, then renamed into place.
pub fn generated() -> &'static Generated {
    static GEN: OnceLock<Generated> = OnceLock::new();
    GEN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("catalog-synth-v1");
        if !dir.join("truths.json").is_file() {
            let tmp = tempfile::Builder::new()
                .prefix(".catalog-synth-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap();
            let mut truths = vec![];
            for (sport, league, seed) in [
                (Sport::Soccer, "liga-sur", 1),
                (Sport::Soccer, "premier-north", 2),
                (Sport::IceHockey, "puck-cup", 3),
            ] {
                let spec = SynthSpec {
                    sport,
                    league: Some(league.into()),
                    broadcaster: None,
                    season: None,
                    preset: Preset::Small,
                    width: None,
                    height: None,
                    fps: None,
                    duration: None,
                    seed,
                    count: 1,
                };
                truths.extend(synth::generate_set(&spec, tmp.path(), &mut |_, _| {}).unwrap());
            }
            std::fs::write(
                tmp.path().join("truths.json"),
                serde_json::to_vec(&truths).unwrap(),
            )
            .unwrap();
            // Another process may have won the race; its files are the same.
            let kept = tmp.keep();
            if std::fs::rename(&kept, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&kept);
            }
        }
        let truths =
            serde_json::from_slice(&std::fs::read(dir.join("truths.json")).unwrap()).unwrap();
        Generated { dir, truths }
    })
}

/// A fresh folder to import: the three generated videos with their ground
/// truth, a copy with a user JSON label file, one with a CSV, one without
/// labels (`.mkv`), and a file that is not a video.
pub fn video_dir() -> tempfile::TempDir {
    let g = generated();
    let tmp = tempfile::Builder::new()
        .prefix("catalog-videos-")
        .tempdir()
        .unwrap();
    let d = tmp.path();
    for t in &g.truths {
        for ext in ["mp4", "json"] {
            let name = format!("{}.{ext}", t.video.name);
            std::fs::copy(g.dir.join(&name), d.join(&name)).unwrap();
        }
    }
    let src = g.dir.join(format!("{}.mp4", g.truths[0].video.name));
    std::fs::create_dir(d.join("user")).unwrap();
    std::fs::copy(&src, d.join("user/match-01.mp4")).unwrap();
    std::fs::write(
        d.join("user/match-01.json"),
        r#"{"video": "match-01.mp4", "league": "user-league", "broadcaster": "home-tv", "segments": [{"start": 1.0, "end": 3.5}, {"start": 9, "end": 12}]}"#,
    )
    .unwrap();
    std::fs::copy(&src, d.join("user/match-02.mp4")).unwrap();
    std::fs::write(
        d.join("user/match-02.csv"),
        "video,start,end\nmatch-02.mp4,2.0,4.0\n",
    )
    .unwrap();
    std::fs::copy(&src, d.join("unlabelled.mkv")).unwrap();
    std::fs::write(d.join("broken.mp4"), b"this is not a video").unwrap();
    // Hidden files (half-written encoder output) are skipped.
    std::fs::write(d.join(".x.partial-1.mp4"), b"partial").unwrap();
    tmp
}

pub fn uri(dir: &Path, name: &str) -> String {
    dir.canonicalize()
        .unwrap()
        .join(name)
        .to_string_lossy()
        .into_owned()
}

async fn count(cat: &Catalog, table: &str) -> i64 {
    let rows = cat
        .query(&format!("SELECT COUNT(*) AS n FROM {table}"), &[])
        .await
        .unwrap();
    rows[0]["n"].as_i64().unwrap()
}

/// Everything the catalog promises, on whichever backend `url` names. The
/// database must be empty.
pub async fn scenario(url: &str) {
    let g = generated();
    let videos = video_dir();
    let dir = videos.path();
    let cat = Catalog::open(url).await.unwrap();

    // Import: 6 videos, 1 failure naming the file, 5 with labels.
    let r = cat.import_dir(dir).await.unwrap();
    assert_eq!(
        (r.found, r.added, r.updated, r.labelled),
        (7, 6, 0, 5),
        "{r:?}"
    );
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(
        r.failed[0].path.ends_with("broken.mp4") && r.failed[0].error.contains("broken.mp4"),
        "{r:?}"
    );
    assert!(r.warnings.is_empty(), "{r:?}");
    let truth_spans: usize = g.truths.iter().map(|t| t.replays.len()).sum();
    assert_eq!(r.labels, truth_spans + 2 + 1);
    let labels_before = count(&cat, "labels").await;
    assert_eq!(labels_before as usize, r.labels);

    // Re-import is idempotent: same rows, same ids, same labels.
    let before = cat.list(&VideoFilter::default()).await.unwrap();
    let r2 = cat.import_dir(dir).await.unwrap();
    assert_eq!(
        (r2.found, r2.added, r2.updated, r2.labelled),
        (7, 0, 6, 5),
        "{r2:?}"
    );
    let after = cat.list(&VideoFilter::default()).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(count(&cat, "videos").await, 6);
    assert_eq!(count(&cat, "labels").await, labels_before);

    // Metadata from ground truth and from user labels; probe data from the file.
    let t0 = &g.truths[0];
    let gt = after
        .iter()
        .find(|v| v.uri == uri(dir, &format!("{}.mp4", t0.video.name)))
        .unwrap();
    assert_eq!(gt.sport.as_deref(), Some("soccer"));
    assert_eq!(gt.league.as_deref(), Some("liga-sur"));
    assert_eq!(
        gt.broadcaster.as_deref(),
        Some(t0.video.broadcaster.as_str())
    );
    assert_eq!(gt.season.as_deref(), Some("2024"));
    assert_eq!((gt.width, gt.height), (112, 112));
    assert!(
        (gt.fps - 10.0).abs() < 1e-9 && (gt.duration_s - 16.0).abs() < 0.2,
        "{gt:?}"
    );
    let user = after
        .iter()
        .find(|v| v.uri == uri(dir, "user/match-01.mp4"))
        .unwrap();
    assert_eq!(
        (user.sport.as_deref(), user.league.as_deref(), user.labels),
        (None, Some("user-league"), 2)
    );
    let bare = after
        .iter()
        .find(|v| v.uri == uri(dir, "unlabelled.mkv"))
        .unwrap();
    assert_eq!((bare.league.as_deref(), bare.labels), (None, 0));

    // labels_for: the ground truth's replay spans (source `truth`, not a
    // human verdict), by uri or by id.
    let labels = cat.labels_for(gt.uri.as_str()).await.unwrap();
    let want: Vec<(f64, f64)> = t0
        .segments()
        .segments
        .iter()
        .map(|s| (s.start, s.end))
        .collect();
    assert_eq!(
        labels
            .iter()
            .map(|l| (l.start_s, l.end_s))
            .collect::<Vec<_>>(),
        want
    );
    assert!(
        labels
            .iter()
            .all(|l| l.source == "truth" && l.confidence.is_none())
    );
    let user_labels = cat.labels_for(user.id).await.unwrap();
    assert!(
        user_labels.iter().all(|l| l.source == "human"),
        "{user_labels:?}"
    );
    assert_eq!(cat.labels_for(gt.id).await.unwrap(), labels);
    let e = cat
        .labels_for("/no/such.mp4")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("No video `/no/such.mp4`") && e.contains("engine catalog import"),
        "{e}"
    );

    // Teacher labels sit beside human ones and survive a re-import.
    let teacher = [NewLabel {
        start_s: 0.5,
        end_s: 2.0,
        confidence: Some(0.9),
    }];
    cat.set_labels(bare.id, LabelSource::Teacher, &teacher)
        .await
        .unwrap();
    cat.import_dir(dir).await.unwrap();
    let l = cat.labels_for(bare.id).await.unwrap();
    assert_eq!(
        (l.len(), l[0].source.as_str(), l[0].confidence),
        (1, "teacher", Some(0.9))
    );

    // ls filters.
    let f = |sport: Option<&str>, league: Option<&str>| VideoFilter {
        sport: sport.map(Into::into),
        league: league.map(Into::into),
        ..Default::default()
    };
    assert_eq!(cat.list(&f(Some("soccer"), None)).await.unwrap().len(), 2);
    assert_eq!(
        cat.list(&f(Some("ice-hockey"), None)).await.unwrap().len(),
        1
    );
    assert_eq!(
        cat.list(&f(Some("soccer"), Some("liga-sur")))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        cat.list(&f(None, Some("user-league"))).await.unwrap().len(),
        1
    );
    assert_eq!(cat.list(&f(Some("curling"), None)).await.unwrap().len(), 0);

    // Query with positional and named parameters; JSON value types.
    let rows = cat
        .query(
            "SELECT uri, duration_s, width, sport, season FROM videos WHERE league = $1 AND duration_s > $2",
            &[json!("liga-sur"), json!(10)],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["uri"], json!(gt.uri));
    assert!(
        rows[0]["duration_s"].is_f64() && rows[0]["width"] == json!(112),
        "{rows:?}"
    );
    let named = cat
        .query_named(
            "SELECT league, COUNT(*) AS n FROM videos WHERE sport = :sport OR league = :league GROUP BY league ORDER BY league",
            &[("sport".to_string(), json!("soccer")), ("league".to_string(), json!("user-league"))].into(),
        )
        .await
        .unwrap();
    assert_eq!(named.columns, ["league", "n"]);
    let got: Vec<(Value, Value)> = named
        .rows
        .iter()
        .map(|r| (r["league"].clone(), r["n"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!("liga-sur"), json!(1)),
            (json!("premier-north"), json!(1)),
            (json!("user-league"), json!(1))
        ]
    );
    let none = cat
        .query("SELECT uri FROM videos WHERE sport = $1", &[Value::Null])
        .await
        .unwrap();
    assert!(none.is_empty());
    let nulls = cat
        .query(
            "SELECT uri, sport FROM videos WHERE sport IS NULL ORDER BY uri",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(nulls.len(), 3);
    assert_eq!(nulls[0]["sport"], Value::Null);

    // Bad SQL: the database's message, the SQL and the URL.
    let e = cat
        .query("SELEC uri FROM videos", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("syntax error")
            && e.contains("SQL: SELEC uri FROM videos")
            && e.contains(cat.url()),
        "{e}"
    );
    let e = cat
        .query("SELECT nope FROM videos", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nope") && e.contains("SQL: SELECT nope FROM videos"),
        "{e}"
    );
    let e = cat
        .query_named("SELECT :a", &Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("`:a` has no value"), "{e}");

    // `query` is read-only.
    let e = cat
        .query("DELETE FROM videos", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("DELETE FROM videos"), "{e}");
    assert_eq!(count(&cat, "videos").await, 6);
    // Exactly one statement: a second could switch read-only off first.
    let e = cat
        .query(
            "SELECT 1; PRAGMA query_only=OFF; CREATE TABLE sneaky(x INTEGER)",
            &[],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("the query has 3 statements"), "{e}");
    let e = cat
        .query("SELECT 1 FROM sneaky", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("sneaky"), "{e}");
    let e = cat
        .query("CREATE TABLE sneaky(x INTEGER)", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("CREATE TABLE sneaky"), "{e}");
    assert!(cat.query("SELECT 1 FROM sneaky", &[]).await.is_err());

    // Predictions, reviews, and the misdetection query.
    let by_uri = |name: &str| after.iter().find(|v| v.uri == uri(dir, name)).unwrap().id;
    let (v0, v1, v2) = (
        gt.id,
        by_uri("user/match-01.mp4"),
        by_uri("user/match-02.mp4"),
    );
    let p = |video_id, start_s, end_s, score| NewPrediction {
        video_id,
        model_version: "m1".into(),
        start_s,
        end_s,
        score,
    };
    let p0 = cat.add_prediction(&p(v0, 1.0, 4.0, 0.9)).await.unwrap();
    let p1 = cat.add_prediction(&p(v1, 5.0, 6.0, 0.6)).await.unwrap();
    let review = |prediction_id, video_id, verdict, span: Option<(f64, f64)>| NewReview {
        prediction_id,
        video_id,
        verdict,
        start_s: span.map(|s| s.0),
        end_s: span.map(|s| s.1),
        reviewer: "ana".into(),
    };
    cat.add_review(&review(Some(p0), v0, Verdict::Correct, None))
        .await
        .unwrap();
    cat.add_review(&review(Some(p1), v1, Verdict::FalsePositive, None))
        .await
        .unwrap();
    cat.add_review(&review(None, v2, Verdict::Missed, Some((2.0, 4.0))))
        .await
        .unwrap();
    let e = cat
        .add_review(&review(None, v2, Verdict::Missed, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`missed` review needs `start_s` and `end_s`"),
        "{e}"
    );
    let e = cat
        .add_review(&review(Some(p0), v1, Verdict::Correct, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("Prediction {p0} belongs to video {v0}")),
        "{e}"
    );
    let e = cat
        .add_review(&review(None, v1, Verdict::FalsePositive, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs `prediction_id`"), "{e}");
    let e = cat
        .add_prediction(&p(v0, 4.0, 1.0, 0.5))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Invalid span"), "{e}");
    let e = cat
        .add_prediction(&p(999_999, 1.0, 2.0, 0.5))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("No video id 999999"), "{e}");
    let misdetected = cat
        .query_named(
            "SELECT DISTINCT v.uri FROM videos v JOIN reviews r ON r.video_id = v.id \
             WHERE r.verdict IN ('false_positive', 'missed') AND v.id IN (SELECT video_id FROM predictions WHERE model_version = :model) \
             OR r.verdict = 'missed' ORDER BY v.uri",
            &[("model".to_string(), json!("m1"))].into(),
        )
        .await
        .unwrap();
    let uris: Vec<&str> = misdetected
        .rows
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        [uri(dir, "user/match-01.mp4"), uri(dir, "user/match-02.mp4")]
    );

    // A join with a repeated column name keeps both.
    let t = cat
        .query_table("SELECT v.id, r.id, r.verdict FROM videos v JOIN reviews r ON r.video_id = v.id ORDER BY r.id", &[])
        .await
        .unwrap();
    assert_eq!(t.columns, ["id", "id_2", "verdict"]);
    assert_eq!(t.rows[2]["verdict"], json!("missed"));

    review_queue(&cat, dir, gt, bare).await;
    cat.close().await;

    // Opening again migrates nothing and sees the same data.
    let again = Catalog::open(url).await.unwrap();
    assert_eq!(again.list(&VideoFilter::default()).await.unwrap().len(), 6);
    again.close().await;
}

fn spans(labels: &[LabelRow], source: &str) -> Vec<(f64, f64)> {
    labels
        .iter()
        .filter(|l| l.source == source)
        .map(|l| (l.start_s, l.end_s))
        .collect()
}

/// The review queue: enqueue and refresh, list, accept, fix, bad input.
async fn review_queue(cat: &Catalog, dir: &Path, gt: &VideoRow, bare: &VideoRow) {
    let proposal = NewLabel {
        start_s: 1.0,
        end_s: 4.0,
        confidence: Some(0.6),
    };
    let low = NewQueueEntry {
        confidence: Some(0.2),
        proposals: vec![proposal],
        reason: Some("teacher confidence 0.20 < 0.50".into()),
        queued_by: Some("route".into()),
    };
    let (q1, new) = cat.enqueue_review(bare.id, &low).await.unwrap();
    assert!(new);
    // Queued again by a later run: the same entry, refreshed.
    let again = NewQueueEntry {
        confidence: Some(0.3),
        ..low.clone()
    };
    assert_eq!(
        cat.enqueue_review(bare.uri.as_str(), &again).await.unwrap(),
        (q1, false)
    );
    let failed = NewQueueEntry {
        confidence: None,
        proposals: vec![],
        reason: Some("Failed to decode".into()),
        queued_by: None,
    };
    cat.enqueue_review(gt.id, &failed).await.unwrap();
    let e = cat
        .enqueue_review("/no/such.mp4", &low)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("No video `/no/such.mp4`"), "{e}");
    let bad = NewQueueEntry {
        proposals: vec![NewLabel {
            start_s: 5.0,
            end_s: 4.0,
            confidence: None,
        }],
        ..low.clone()
    };
    assert!(
        cat.enqueue_review(bare.id, &bad)
            .await
            .unwrap_err()
            .to_string()
            .contains("Invalid span")
    );

    let pending = cat.review_queue(true).await.unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let b = &pending[0];
    assert_eq!(
        (b.video_id, b.uri.as_str(), b.status.as_str(), b.confidence),
        (bare.id, bare.uri.as_str(), "pending", Some(0.3))
    );
    assert_eq!(
        (
            b.proposals.as_slice(),
            b.verdict.as_deref(),
            b.league.as_deref()
        ),
        (&[proposal][..], None, None)
    );
    assert_eq!(
        (
            pending[1].video_id,
            pending[1].confidence,
            pending[1].league.as_deref()
        ),
        (gt.id, None, Some("liga-sur"))
    );

    // Accept: the proposals become human labels; teacher labels stay.
    let done = cat
        .record_verdict(bare.id, QueueVerdict::Accepted, &[], "ana")
        .await
        .unwrap();
    assert_eq!(
        (
            done.id,
            done.status.as_str(),
            done.verdict.as_deref(),
            done.reviewer.as_deref()
        ),
        (q1, "done", Some("accepted"), Some("ana"))
    );
    assert!(done.done_at.is_some());
    let l = cat.labels_for(bare.id).await.unwrap();
    assert_eq!(
        (spans(&l, "human"), spans(&l, "teacher")),
        (vec![(1.0, 4.0)], vec![(0.5, 2.0)])
    );
    let e = cat
        .record_verdict(bare.id, QueueVerdict::Accepted, &[], "ana")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no pending review") && e.contains("engine review fix"),
        "{e}"
    );

    // Fix: the person's spans; the ground truth stays `truth` and survives a re-import.
    let truth_before = spans(&cat.labels_for(gt.id).await.unwrap(), "truth");
    let bad_span = [NewLabel {
        start_s: 3.0,
        end_s: f64::NAN,
        confidence: None,
    }];
    assert!(
        cat.record_verdict(gt.id, QueueVerdict::Fixed, &bad_span, "bo")
            .await
            .unwrap_err()
            .to_string()
            .contains("Invalid span")
    );
    assert_eq!(
        cat.review_queue(true).await.unwrap().len(),
        1,
        "a rejected verdict changes nothing"
    );
    let fixed = [
        NewLabel {
            start_s: 2.0,
            end_s: 5.5,
            confidence: None,
        },
        NewLabel {
            start_s: 9.0,
            end_s: 11.0,
            confidence: None,
        },
    ];
    let done = cat
        .record_verdict(gt.uri.as_str(), QueueVerdict::Fixed, &fixed, "bo")
        .await
        .unwrap();
    assert_eq!(done.verdict.as_deref(), Some("fixed"));
    cat.import_dir(dir).await.unwrap();
    let l = cat.labels_for(gt.id).await.unwrap();
    assert_eq!(
        (spans(&l, "human"), spans(&l, "truth")),
        (vec![(2.0, 5.5), (9.0, 11.0)], truth_before)
    );
    assert!(cat.review_queue(true).await.unwrap().is_empty());

    // Fix on a video never queued: a closed entry; "no replays" is an empty fix.
    let m2 = uri(dir, "user/match-02.mp4");
    let done = cat
        .record_verdict(m2.as_str(), QueueVerdict::Fixed, &[], "cy")
        .await
        .unwrap();
    assert_eq!((done.status.as_str(), done.proposals.len()), ("done", 0));
    assert!(spans(&cat.labels_for(m2.as_str()).await.unwrap(), "human").is_empty());
    let e = cat
        .record_verdict(999_999, QueueVerdict::Fixed, &[], "cy")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("No video id 999999"), "{e}");

    // A reviewed video can be queued again; history is kept, newest first.
    let (q3, new) = cat.enqueue_review(bare.id, &low).await.unwrap();
    assert!(new && q3 != q1);
    let history = cat.reviews_of(bare.id).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| e.status.as_str())
            .collect::<Vec<_>>(),
        ["pending", "done"]
    );
    assert_eq!(cat.review_queue(false).await.unwrap().len(), 4);
}
