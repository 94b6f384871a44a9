//! Scenarios for the golden set, verdicts on predictions, the simulated
//! review and the monitor's figures, run on both backends. They insert
//! videos directly (no files needed) and expect an empty database.

use catalog::monitor::{self, MonitorSettings, Status};
use catalog::*;

async fn video(cat: &Catalog, name: &str, sport: &str, league: &str, broadcaster: &str) -> i64 {
    cat.upsert_video(&NewVideo {
        uri: format!("/videos/{name}.mp4"),
        sport: Some(sport.into()),
        league: Some(league.into()),
        broadcaster: Some(broadcaster.into()),
        season: Some("2024".into()),
        duration_s: 120.0,
        fps: 25.0,
        width: 224,
        height: 224,
    })
    .await
    .unwrap()
    .0
}

async fn predict(cat: &Catalog, video_id: i64, model: &str, span: (f64, f64)) -> i64 {
    cat.add_prediction(&NewPrediction {
        video_id,
        model_version: model.into(),
        start_s: span.0,
        end_s: span.1,
        score: 0.8,
    })
    .await
    .unwrap()
}

fn human(labels: &[LabelRow]) -> Vec<(f64, f64)> {
    labels
        .iter()
        .filter(|l| l.source == "human")
        .map(|l| (l.start_s, l.end_s))
        .collect()
}

fn key(cells: &Coverage) -> Vec<(String, String, i64, i64)> {
    cells
        .cells
        .iter()
        .map(|c| {
            (
                c.league.clone().unwrap_or_default(),
                c.broadcaster.clone().unwrap_or_default(),
                c.videos,
                c.golden,
            )
        })
        .collect()
}

/// Golden add (ids, uris, filters, per cell), rm, list and coverage.
pub async fn golden(url: &str) {
    let cat = Catalog::open(url).await.unwrap();
    let a1 = video(&cat, "a1", "basketball", "hoops", "tv1").await;
    let a2 = video(&cat, "a2", "basketball", "hoops", "tv1").await;
    let a3 = video(&cat, "a3", "basketball", "hoops", "tv2").await;
    let b1 = video(&cat, "b1", "basketball", "ink", "tv1").await;
    let s1 = video(&cat, "s1", "soccer", "liga", "tv1").await;

    let cov = cat.golden_coverage("basketball").await.unwrap();
    assert_eq!(cov.golden(), 0);
    assert_eq!(cov.empty_cells().len(), 3);

    // One per cell, lowest id first; again adds nothing.
    let per_cell = GoldenSelect {
        sport: Some("basketball".into()),
        per_cell: Some(1),
        note: Some("demo".into()),
        ..Default::default()
    };
    assert_eq!(cat.golden_add(&per_cell).await.unwrap(), 3);
    assert_eq!(cat.golden_add(&per_cell).await.unwrap(), 0);
    let list = cat.golden_list(Some("basketball")).await.unwrap();
    let mut ids: Vec<i64> = list.iter().map(|g| g.video_id).collect();
    ids.sort();
    assert_eq!(ids, [a1, a3, b1]);
    assert_eq!(list[0].note.as_deref(), Some("demo"));
    let cov = cat.golden_coverage("basketball").await.unwrap();
    assert_eq!(
        key(&cov),
        [
            ("hoops".into(), "tv1".into(), 2, 1),
            ("hoops".into(), "tv2".into(), 1, 1),
            ("ink".into(), "tv1".into(), 1, 1)
        ]
    );
    assert!(cov.empty_cells().is_empty());

    // By uri and id; an unknown video names itself.
    assert_eq!(
        cat.golden_add(&GoldenSelect {
            videos: vec!["/videos/a2.mp4".into(), VideoKey::Id(a1)],
            ..Default::default()
        })
        .await
        .unwrap(),
        1
    );
    let e = cat
        .golden_add(&GoldenSelect {
            videos: vec!["/videos/nope.mp4".into()],
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`/videos/nope.mp4`") && e.contains("engine catalog import"),
        "{e}"
    );
    let e = cat
        .golden_add(&GoldenSelect::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nothing selected") && e.contains("--per-cell"),
        "{e}"
    );

    // rm by league leaves that cell empty; a filter with a condition.
    assert_eq!(cat.golden_rm(&[], Some("ink")).await.unwrap(), 1);
    assert_eq!(cat.golden_rm(&[VideoKey::Id(a2)], None).await.unwrap(), 1);
    let cov = cat.golden_coverage("basketball").await.unwrap();
    let empty: Vec<String> = cov.empty_cells().iter().map(|c| c.to_string()).collect();
    assert_eq!(empty, ["ink x tv1"]);
    assert_eq!(
        cat.golden_add(&GoldenSelect {
            where_sql: Some("league = 'liga'".into()),
            ..Default::default()
        })
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        cat.golden_list(Some("soccer")).await.unwrap()[0].video_id,
        s1
    );
    assert_eq!(cat.golden_list(None).await.unwrap().len(), 3);
    let uris = cat.golden_uris().await.unwrap();
    assert!(uris.contains("/videos/s1.mp4") && !uris.contains("/videos/b1.mp4"));
    // The query pipelines use to exclude golden videos.
    let rows = cat
        .query(
            "SELECT uri FROM videos WHERE sport = $1 AND id NOT IN (SELECT video_id FROM golden) ORDER BY uri",
            &[serde_json::json!("basketball")],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    cat.close().await;
}

/// Verdicts on predictions rebuild the video's human labels.
pub async fn verdicts(url: &str) {
    let cat = Catalog::open(url).await.unwrap();
    let v = video(&cat, "v1", "soccer", "liga", "tv1").await;
    let p1 = predict(&cat, v, "m1", (10.0, 20.0)).await;
    let p2 = predict(&cat, v, "m1", (40.0, 44.0)).await;
    let p3 = predict(&cat, v, "m1", (90.0, 95.0)).await;

    cat.record_prediction_verdict(p1, PredictionVerdict::Correct, "ana")
        .await
        .unwrap();
    assert_eq!(human(&cat.labels_for(v).await.unwrap()), [(10.0, 20.0)]);
    cat.record_prediction_verdict(
        p2,
        PredictionVerdict::WrongBoundaries {
            start_s: 39.0,
            end_s: 47.0,
        },
        "ana",
    )
    .await
    .unwrap();
    cat.record_prediction_verdict(p3, PredictionVerdict::FalseAlarm, "ana")
        .await
        .unwrap();
    assert_eq!(
        cat.record_missed(
            v,
            &[NewLabel {
                start_s: 60.0,
                end_s: 66.0,
                confidence: None
            }],
            "ana"
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        human(&cat.labels_for(v).await.unwrap()),
        [(10.0, 20.0), (39.0, 47.0), (60.0, 66.0)]
    );

    // A new verdict replaces the old one.
    cat.record_prediction_verdict(p1, PredictionVerdict::FalseAlarm, "bo")
        .await
        .unwrap();
    assert_eq!(
        human(&cat.labels_for(v).await.unwrap()),
        [(39.0, 47.0), (60.0, 66.0)]
    );
    let rows = cat
        .predictions(&PredictionFilter {
            model_version: Some("m1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<(i64, Option<&str>, Option<f64>, Option<&str>)> = rows
        .iter()
        .map(|r| {
            (
                r.id,
                r.verdict.as_deref(),
                r.corrected_start_s,
                r.reviewer.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (p1, Some("false_alarm"), None, Some("bo")),
            (p2, Some("wrong_boundaries"), Some(39.0), Some("ana")),
            (p3, Some("false_alarm"), None, Some("ana"))
        ]
    );
    let p4 = predict(&cat, v, "m1", (100.0, 104.0)).await;
    let pending = cat
        .predictions(&PredictionFilter {
            pending: true,
            sport: Some("soccer".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), [p4]);

    // Clear errors; legacy `false_positive` rows are still accepted.
    let e = cat
        .record_prediction_verdict(9999, PredictionVerdict::Correct, "ana")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("No prediction 9999") && e.contains("engine review predictions"),
        "{e}"
    );
    let e = cat
        .record_prediction_verdict(
            p4,
            PredictionVerdict::WrongBoundaries {
                start_s: 5.0,
                end_s: 2.0,
            },
            "ana",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Invalid span 5..2"), "{e}");
    cat.add_review(&NewReview {
        prediction_id: Some(p4),
        video_id: v,
        verdict: Verdict::FalsePositive,
        start_s: None,
        end_s: None,
        reviewer: "legacy".into(),
    })
    .await
    .unwrap();
    let e = cat
        .add_review(&NewReview {
            prediction_id: Some(p4),
            video_id: v,
            verdict: Verdict::WrongBoundaries,
            start_s: None,
            end_s: None,
            reviewer: "x".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`wrong_boundaries` review needs `start_s` and `end_s`"),
        "{e}"
    );
    cat.close().await;
}

/// The simulated review maps the four cases and skips reviewed videos.
pub async fn simulate(url: &str) {
    let cat = Catalog::open(url).await.unwrap();
    let v = video(&cat, "sim", "basketball", "hoops", "tv1").await;
    let bare = video(&cat, "no-truth", "basketball", "hoops", "tv1").await;
    let truth = [(10.0, 20.0), (40.0, 50.0), (70.0, 80.0)];
    let labels: Vec<NewLabel> = truth
        .iter()
        .map(|t| NewLabel {
            start_s: t.0,
            end_s: t.1,
            confidence: None,
        })
        .collect();
    cat.set_labels(v, LabelSource::Truth, &labels)
        .await
        .unwrap();
    let correct = predict(&cat, v, "m2", (11.0, 20.0)).await;
    let wrong = predict(&cat, v, "m2", (44.0, 47.0)).await;
    let alarm = predict(&cat, v, "m2", (100.0, 110.0)).await;
    predict(&cat, v, "other-model", (70.0, 80.0)).await;
    predict(&cat, bare, "m2", (1.0, 2.0)).await;

    let r = cat
        .simulate_verdicts("basketball", "m2", SIMULATED_REVIEWER, 0.5)
        .await
        .unwrap();
    assert_eq!(
        (
            r.videos,
            r.correct,
            r.wrong_boundaries,
            r.false_alarm,
            r.missed,
            r.without_truth
        ),
        (1, 1, 1, 1, 1, 1),
        "{r:?}"
    );
    let rows = cat
        .predictions(&PredictionFilter {
            model_version: Some("m2".into()),
            video: Some(VideoKey::Id(v)),
            ..Default::default()
        })
        .await
        .unwrap();
    let verdict = |id: i64| {
        rows.iter()
            .find(|r| r.id == id)
            .unwrap()
            .verdict
            .clone()
            .unwrap()
    };
    assert_eq!(
        (verdict(correct), verdict(wrong), verdict(alarm)),
        (
            "correct".into(),
            "wrong_boundaries".into(),
            "false_alarm".into()
        )
    );
    assert!(
        rows.iter()
            .all(|r| r.reviewer.as_deref() == Some("simulated-from-truth"))
    );
    // Human labels: the confirmed detection with its boundaries set right
    // by the (simulated) reviewer, the corrected and the missed truth.
    assert_eq!(
        human(&cat.labels_for(v).await.unwrap()),
        [(10.0, 20.0), (40.0, 50.0), (70.0, 80.0)]
    );
    let again = cat
        .simulate_verdicts("basketball", "m2", SIMULATED_REVIEWER, 0.5)
        .await
        .unwrap();
    assert_eq!((again.videos, again.already_reviewed), (0, 1), "{again:?}");
    cat.close().await;
}

/// The monitor's rows: the window and the model filter.
pub async fn monitor(url: &str) {
    let cat = Catalog::open(url).await.unwrap();
    let a = video(&cat, "ma", "basketball", "hoops", "tv1").await;
    let b = video(&cat, "mb", "basketball", "ink", "tv2").await;
    let c = video(&cat, "mc", "basketball", "old-league", "tv1").await;
    for i in 0..3 {
        let p = predict(&cat, a, "m1", (10.0 * i as f64, 10.0 * i as f64 + 5.0)).await;
        cat.record_prediction_verdict(p, PredictionVerdict::Correct, "ana")
            .await
            .unwrap();
    }
    let p = predict(&cat, b, "m1", (1.0, 5.0)).await;
    cat.record_prediction_verdict(p, PredictionVerdict::Correct, "ana")
        .await
        .unwrap();
    for i in 0..2 {
        let p = predict(
            &cat,
            b,
            "m1",
            (10.0 + 10.0 * i as f64, 15.0 + 10.0 * i as f64),
        )
        .await;
        cat.record_prediction_verdict(p, PredictionVerdict::FalseAlarm, "ana")
            .await
            .unwrap();
    }
    cat.record_missed(
        b,
        &[NewLabel {
            start_s: 50.0,
            end_s: 55.0,
            confidence: None,
        }],
        "ana",
    )
    .await
    .unwrap();
    let other = predict(&cat, b, "m0", (70.0, 75.0)).await;
    cat.record_prediction_verdict(other, PredictionVerdict::Correct, "ana")
        .await
        .unwrap();
    // An old verdict, outside a 14-day window.
    let old = predict(&cat, c, "m1", (1.0, 5.0)).await;
    let id = cat
        .record_prediction_verdict(old, PredictionVerdict::FalseAlarm, "ana")
        .await
        .unwrap();
    cat.set_review_time(id, "2020-01-01T00:00:00.000Z")
        .await
        .unwrap();

    let since = monitor::since(std::time::Duration::from_secs(14 * 86400));
    let rows = cat
        .verdict_rows("basketball", &since, Some("m1"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 7, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.league.as_deref() != Some("old-league"))
    );
    assert_eq!(
        cat.verdict_rows("basketball", &since, None)
            .await
            .unwrap()
            .len(),
        8
    );
    assert_eq!(
        cat.verdict_rows("basketball", "2000-01-01T00:00:00.000Z", None)
            .await
            .unwrap()
            .len(),
        9
    );
    assert!(
        cat.verdict_rows("soccer", &since, None)
            .await
            .unwrap()
            .is_empty()
    );

    let settings = MonitorSettings {
        precision: 0.8,
        recall: 0.8,
        ..Default::default()
    };
    let r = monitor::judge("basketball", &rows, &settings);
    let ink = r.leagues.iter().find(|l| l.league == "ink").unwrap();
    assert_eq!((ink.figures.tp, ink.figures.fp, ink.figures.fn_), (1, 2, 1));
    assert_eq!(ink.status, Status::Failing);
    assert_eq!(r.failing(), ["ink"]);
    cat.close().await;
}

/// Reviewers racing on one queue entry: `record_verdict_if_pending`
/// lets exactly one of them record; the others get a conflict naming
/// the winner, and the video's human labels are the winner's alone.
pub async fn verdict_race(url: &str) {
    const WRITERS: usize = 8;
    let cat = Catalog::open(url).await.unwrap();
    let id = video(&cat, "race", "soccer", "l1", "b1").await;
    let queued = NewQueueEntry {
        confidence: Some(0.2),
        proposals: vec![NewLabel {
            start_s: 1.0,
            end_s: 2.0,
            confidence: None,
        }],
        reason: Some("low confidence".into()),
        queued_by: Some("test".into()),
    };
    let (entry, _) = cat.enqueue_review(id, &queued).await.unwrap();
    // Each writer on its own connection pool, as separate servers or CLI
    // processes would be, all released at once.
    let mut writers = vec![];
    for _ in 0..WRITERS {
        writers.push(Catalog::open(url).await.unwrap());
    }
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let span = [NewLabel {
                    start_s: 10.0 + i as f64,
                    end_s: 11.0 + i as f64,
                    confidence: None,
                }];
                gate.wait().await;
                let r = c
                    .record_verdict_if_pending(
                        entry,
                        QueueVerdict::Fixed,
                        &span,
                        &format!("reviewer-{i}"),
                    )
                    .await;
                c.close().await;
                (i, r)
            })
        })
        .collect();
    let mut won = vec![];
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(e) => {
                assert_eq!(e.id, entry);
                assert_eq!(e.status, "done");
                assert_eq!(
                    e.reviewer.as_deref(),
                    Some(format!("reviewer-{i}").as_str())
                );
                won.push(i);
            }
            Err(CatalogError::Conflict(m)) => {
                assert!(m.contains("already reviewed"), "{m}");
                assert!(m.contains(&format!("entry {entry}")), "{m}");
            }
            Err(e) => panic!("writer {i}: neither a verdict nor a conflict: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one writer wins, not {won:?}");
    let w = won[0] as f64;
    let labels = cat.labels_for(id).await.unwrap();
    assert_eq!(
        human(&labels),
        [(10.0 + w, 11.0 + w)],
        "the winner's labels only"
    );
    let entries = cat.reviews_of(id).await.unwrap();
    assert_eq!(entries.len(), 1, "no second entry: {entries:?}");

    // Later, one by one: the closed entry refuses, and says who closed it.
    let e = cat
        .record_verdict_if_pending(entry, QueueVerdict::Accepted, &[], "late")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CatalogError::Conflict(m) if m.contains(&format!("reviewer-{}", won[0]))),
        "{e}"
    );
    assert_eq!(
        human(&cat.labels_for(id).await.unwrap()),
        [(10.0 + w, 11.0 + w)]
    );
    // An entry that does not exist is not a conflict.
    let e = cat
        .record_verdict_if_pending(entry + 1000, QueueVerdict::Accepted, &[], "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CatalogError::Invalid(m) if m.contains("No review entry")),
        "{e}"
    );
    // Accept records the entry's proposals; `record_verdict` (the CLI's)
    // goes through the same conditional close.
    let (again, new) = cat.enqueue_review(id, &queued).await.unwrap();
    assert!(new);
    let done = cat
        .record_verdict(id, QueueVerdict::Accepted, &[], "ana")
        .await
        .unwrap();
    assert_eq!(
        (done.id, done.verdict.as_deref()),
        (again, Some("accepted"))
    );
    assert_eq!(human(&cat.labels_for(id).await.unwrap()), [(1.0, 2.0)]);
    cat.close().await;
}
