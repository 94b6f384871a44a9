//! Verdicts on production predictions: a person (or, for the demo, a
//! simulation from generator ground truth) says of each prediction whether
//! it is `correct`, has `wrong_boundaries` (with the true span) or is a
//! `false_alarm`, and gives the replays no prediction found (`missed`).
//!
//! Every verdict write rebuilds the video's `human` labels in the same
//! transaction, from all of the video's verdicts (any model): spans of
//! predictions reviewed `correct`, corrected spans of `wrong_boundaries`,
//! and `missed` spans, overlaps merged. The rebuild runs on every write
//! (not only once all predictions have a verdict), so a half-reviewed video
//! already carries what was confirmed; it replaces human labels given
//! through the review queue for that video. A new verdict on a prediction
//! replaces its earlier one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{Catalog, check_span, now};
use crate::error::{CatalogError, Result};
use crate::model::*;

/// The reviewer name [`Catalog::simulate_verdicts`] records.
pub const SIMULATED_REVIEWER: &str = "simulated-from-truth";

/// Which predictions [`Catalog::predictions`] lists; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PredictionFilter {
    pub sport: Option<String>,
    pub model_version: Option<String>,
    pub video: Option<VideoKey>,
    /// Only predictions without a verdict.
    pub pending: bool,
}

/// A prediction with its video and its latest verdict, if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    pub id: i64,
    pub video_id: i64,
    pub uri: String,
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    pub model_version: String,
    pub start_s: f64,
    pub end_s: f64,
    pub score: f64,
    pub created_at: String,
    /// `correct`, `wrong_boundaries`, `false_alarm` (or legacy `false_positive`).
    pub verdict: Option<String>,
    /// The corrected span of a `wrong_boundaries` verdict.
    pub corrected_start_s: Option<f64>,
    pub corrected_end_s: Option<f64>,
    pub reviewer: Option<String>,
    pub reviewed_at: Option<String>,
}

/// A verdict on one prediction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum PredictionVerdict {
    Correct,
    FalseAlarm,
    /// A replay, but at `start_s..end_s`.
    WrongBoundaries {
        start_s: f64,
        end_s: f64,
    },
}

/// What [`simulate`] decides for one prediction or truth span.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum SimVerdict {
    Correct {
        prediction_id: i64,
    },
    WrongBoundaries {
        prediction_id: i64,
        start_s: f64,
        end_s: f64,
    },
    FalseAlarm {
        prediction_id: i64,
    },
    Missed {
        start_s: f64,
        end_s: f64,
    },
}

/// What [`Catalog::simulate_verdicts`] recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationReport {
    /// Videos whose predictions were judged.
    pub videos: usize,
    pub correct: usize,
    pub wrong_boundaries: usize,
    pub false_alarm: usize,
    pub missed: usize,
    /// Videos left alone because some prediction there already has a verdict.
    pub already_reviewed: usize,
    /// Videos with predictions but no `truth` labels to judge them by.
    pub without_truth: usize,
}

/// One review row to write.
struct Write {
    prediction_id: Option<i64>,
    verdict: Verdict,
    span: Option<(f64, f64)>,
}

/// Temporal IoU of two spans.
pub fn tiou(a: (f64, f64), b: (f64, f64)) -> f64 {
    let inter = (a.1.min(b.1) - a.0.max(b.0)).max(0.0);
    let union = (a.1 - a.0) + (b.1 - b.0) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Judges predictions `(id, start_s, end_s)` against truth spans, greedy
/// one-to-one by highest tIoU first: tIoU >= `min_iou` is `correct`; a
/// prediction left over that overlaps a truth span gets `wrong_boundaries`
/// with that span (an unmatched one first, then the best overlap, highest
/// tIoU first); one overlapping nothing is a `false_alarm`; every truth
/// span still unmatched is `missed`. Output: predictions by id, then misses.
pub fn simulate(preds: &[(i64, f64, f64)], truth: &[(f64, f64)], min_iou: f64) -> Vec<SimVerdict> {
    let mut pairs: Vec<(f64, usize, usize)> = vec![];
    for (i, p) in preds.iter().enumerate() {
        for (j, t) in truth.iter().enumerate() {
            let iou = tiou((p.1, p.2), *t);
            if iou > 0.0 {
                pairs.push((iou, i, j));
            }
        }
    }
    // Highest IoU first; ties by prediction then truth order (deterministic).
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut pred_of: Vec<Option<SimVerdict>> = vec![None; preds.len()];
    let mut truth_used = vec![false; truth.len()];
    for &(iou, i, j) in &pairs {
        if iou >= min_iou && pred_of[i].is_none() && !truth_used[j] {
            pred_of[i] = Some(SimVerdict::Correct {
                prediction_id: preds[i].0,
            });
            truth_used[j] = true;
        }
    }
    let wrong = |i: usize, j: usize| SimVerdict::WrongBoundaries {
        prediction_id: preds[i].0,
        start_s: truth[j].0,
        end_s: truth[j].1,
    };
    for &(_, i, j) in &pairs {
        if pred_of[i].is_none() && !truth_used[j] {
            pred_of[i] = Some(wrong(i, j));
            truth_used[j] = true;
        }
    }
    for &(_, i, j) in &pairs {
        if pred_of[i].is_none() {
            pred_of[i] = Some(wrong(i, j));
        }
    }
    let mut out: Vec<SimVerdict> = pred_of
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.unwrap_or(SimVerdict::FalseAlarm {
                prediction_id: preds[i].0,
            })
        })
        .collect();
    out.sort_by_key(|v| match v {
        SimVerdict::Correct { prediction_id }
        | SimVerdict::WrongBoundaries { prediction_id, .. }
        | SimVerdict::FalseAlarm { prediction_id } => *prediction_id,
        SimVerdict::Missed { .. } => i64::MAX,
    });
    out.extend(
        truth
            .iter()
            .zip(&truth_used)
            .filter(|(_, used)| !**used)
            .map(|(t, _)| SimVerdict::Missed {
                start_s: t.0,
                end_s: t.1,
            }),
    );
    out
}

/// Sorted spans with overlapping ones merged.
fn merge(mut spans: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut out: Vec<(f64, f64)> = vec![];
    for s in spans {
        match out.last_mut() {
            Some(last) if s.0 < last.1 => last.1 = last.1.max(s.1),
            _ => out.push(s),
        }
    }
    out
}

impl Catalog {
    /// Predictions matching `f`, by video uri then start, each with its
    /// latest verdict.
    pub async fn predictions(&self, f: &PredictionFilter) -> Result<Vec<PredictionRow>> {
        let video_id = match &f.video {
            Some(v) => Some(self.video_id(v.clone()).await?),
            None => None,
        };
        let mut sql = String::from(
            "SELECT p.id, p.video_id, v.uri, v.sport, v.league, v.broadcaster, p.model_version, p.start_s, p.end_s, \
             p.score, p.created_at, r.verdict, r.start_s, r.end_s, r.reviewer, r.created_at \
             FROM predictions p JOIN videos v ON v.id = p.video_id \
             LEFT JOIN reviews r ON r.id = (SELECT MAX(r2.id) FROM reviews r2 WHERE r2.prediction_id = p.id) WHERE 1 = 1",
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if f.sport.is_some() {
            sql.push_str(&format!(" AND v.sport = ${}", next()));
        }
        if f.model_version.is_some() {
            sql.push_str(&format!(" AND p.model_version = ${}", next()));
        }
        if video_id.is_some() {
            sql.push_str(&format!(" AND p.video_id = ${}", next()));
        }
        if f.pending {
            sql.push_str(" AND r.id IS NULL");
        }
        sql.push_str(" ORDER BY v.uri, p.start_s, p.id");
        with_pool!(self, p => {
            let mut q = sqlx::query(&sql);
            if let Some(s) = &f.sport { q = q.bind(s); }
            if let Some(m) = &f.model_version { q = q.bind(m); }
            if let Some(v) = video_id { q = q.bind(v); }
            q.fetch_all(p).await.map(|rows| rows.iter().map(|r| PredictionRow {
                id: r.get(0), video_id: r.get(1), uri: r.get(2), sport: r.get(3), league: r.get(4),
                broadcaster: r.get(5), model_version: r.get(6), start_s: r.get(7), end_s: r.get(8),
                score: r.get(9), created_at: r.get(10), verdict: r.get(11), corrected_start_s: r.get(12),
                corrected_end_s: r.get(13), reviewer: r.get(14), reviewed_at: r.get(15),
            }).collect::<Vec<_>>())
        })
        .map_err(|e| self.sql_err(&sql, e))
    }

    /// Records a verdict on a prediction (replacing an earlier one) and
    /// rebuilds its video's human labels, in one transaction. Returns the
    /// review id.
    pub async fn record_prediction_verdict(
        &self,
        prediction_id: i64,
        verdict: PredictionVerdict,
        reviewer: &str,
    ) -> Result<i64> {
        const SQL: &str = "SELECT video_id FROM predictions WHERE id = $1";
        let video_id = with_pool!(self, p => sqlx::query(SQL).bind(prediction_id).fetch_optional(p).await
            .map(|r| r.map(|r| r.get::<i64, _>(0))))
        .map_err(|e| self.sql_err(SQL, e))?
        .ok_or_else(|| {
            CatalogError::Invalid(format!(
                "No prediction {prediction_id} in the catalog `{}`; `engine review predictions` lists them with their ids",
                self.url
            ))
        })?;
        let (verdict, span) = match verdict {
            PredictionVerdict::Correct => (Verdict::Correct, None),
            PredictionVerdict::FalseAlarm => (Verdict::FalseAlarm, None),
            PredictionVerdict::WrongBoundaries { start_s, end_s } => {
                check_span(start_s, end_s)?;
                (Verdict::WrongBoundaries, Some((start_s, end_s)))
            }
        };
        let ids = self
            .write_verdicts(
                video_id,
                &[Write {
                    prediction_id: Some(prediction_id),
                    verdict,
                    span,
                }],
                reviewer,
            )
            .await?;
        Ok(ids[0])
    }

    /// Records replays of a video that no prediction found (`missed`) and
    /// rebuilds its human labels, in one transaction. Returns how many.
    pub async fn record_missed(
        &self,
        video: impl Into<VideoKey>,
        spans: &[NewLabel],
        reviewer: &str,
    ) -> Result<usize> {
        let video_id = self.video_id(video).await?;
        if spans.is_empty() {
            return Err(CatalogError::Invalid(
                "Failed to record missed replays: no spans given; pass the replays' `START-END` spans".into(),
            ));
        }
        let writes: Vec<Write> = spans
            .iter()
            .map(|s| {
                check_span(s.start_s, s.end_s)?;
                Ok(Write {
                    prediction_id: None,
                    verdict: Verdict::Missed,
                    span: Some((s.start_s, s.end_s)),
                })
            })
            .collect::<Result<_>>()?;
        Ok(self
            .write_verdicts(video_id, &writes, reviewer)
            .await?
            .len())
    }

    /// A simulated review for demos and tests, from generator ground truth:
    /// on every video of `sport` with `truth` labels where `model_version`
    /// has predictions and none has a verdict yet, [`simulate`] judges the
    /// predictions and the misses, recorded as by `reviewer` (use
    /// [`SIMULATED_REVIEWER`]) with human labels rebuilt. Videos where the
    /// model ran (a `detections` row) and predicted nothing get a `missed`
    /// verdict per true replay.
    pub async fn simulate_verdicts(
        &self,
        sport: &str,
        model_version: &str,
        reviewer: &str,
        min_iou: f64,
    ) -> Result<SimulationReport> {
        let preds = self
            .predictions(&PredictionFilter {
                sport: Some(sport.into()),
                model_version: Some(model_version.into()),
                ..Default::default()
            })
            .await?;
        let mut by_video: BTreeMap<i64, Vec<&PredictionRow>> = BTreeMap::new();
        for p in &preds {
            by_video.entry(p.video_id).or_default().push(p);
        }
        let mut report = SimulationReport::default();
        for (video_id, preds) in by_video {
            if preds.iter().any(|p| p.verdict.is_some()) {
                report.already_reviewed += 1;
                continue;
            }
            let truth = self.truth_spans(video_id).await?;
            if truth.is_empty() {
                report.without_truth += 1;
                continue;
            }
            let spans: Vec<(i64, f64, f64)> =
                preds.iter().map(|p| (p.id, p.start_s, p.end_s)).collect();
            let writes: Vec<Write> = simulate(&spans, &truth, min_iou)
                .into_iter()
                .map(|v| match v {
                    SimVerdict::Correct { prediction_id } => {
                        report.correct += 1;
                        // A reviewer who confirms a detection also sets its
                        // boundaries right when they are visibly off: the
                        // verdict keeps the exact span (the truth span it
                        // overlaps most), which becomes the human label.
                        let p = spans.iter().find(|p| p.0 == prediction_id);
                        let span = p.and_then(|p| {
                            truth.iter().copied().max_by(|a, b| {
                                tiou((p.1, p.2), *a).total_cmp(&tiou((p.1, p.2), *b))
                            })
                        });
                        Write {
                            prediction_id: Some(prediction_id),
                            verdict: Verdict::Correct,
                            span,
                        }
                    }
                    SimVerdict::WrongBoundaries {
                        prediction_id,
                        start_s,
                        end_s,
                    } => {
                        report.wrong_boundaries += 1;
                        Write {
                            prediction_id: Some(prediction_id),
                            verdict: Verdict::WrongBoundaries,
                            span: Some((start_s, end_s)),
                        }
                    }
                    SimVerdict::FalseAlarm { prediction_id } => {
                        report.false_alarm += 1;
                        Write {
                            prediction_id: Some(prediction_id),
                            verdict: Verdict::FalseAlarm,
                            span: None,
                        }
                    }
                    SimVerdict::Missed { start_s, end_s } => {
                        report.missed += 1;
                        Write {
                            prediction_id: None,
                            verdict: Verdict::Missed,
                            span: Some((start_s, end_s)),
                        }
                    }
                })
                .collect();
            self.write_verdicts(video_id, &writes, reviewer).await?;
            report.videos += 1;
        }
        // Videos production ran over and found nothing in: every true
        // replay there was missed (a league without replay graphics looks
        // exactly like this, and must not vanish from the monitor).
        const SEEN_EMPTY: &str = "SELECT DISTINCT d.video_id FROM detections d JOIN videos v ON v.id = d.video_id \
            WHERE v.sport = $1 AND d.model_version = $2 \
            AND d.video_id NOT IN (SELECT video_id FROM predictions WHERE model_version = $2) \
            ORDER BY d.video_id";
        const REVIEWED: &str = "SELECT COUNT(*) FROM reviews WHERE video_id = $1";
        let empty: Vec<i64> = with_pool!(self, pool => sqlx::query(SEEN_EMPTY)
            .bind(sport).bind(model_version)
            .fetch_all(pool).await.map(|rows| rows.iter().map(|r| r.get::<i64, _>(0)).collect()))
        .map_err(|e| self.sql_err(SEEN_EMPTY, e))?;
        for video_id in empty {
            let reviewed: i64 = with_pool!(self, pool => sqlx::query(REVIEWED)
                .bind(video_id).fetch_one(pool).await.map(|r| r.get::<i64, _>(0)))
            .map_err(|e| self.sql_err(REVIEWED, e))?;
            if reviewed > 0 {
                report.already_reviewed += 1;
                continue;
            }
            let truth = self.truth_spans(video_id).await?;
            if truth.is_empty() {
                // Nothing predicted, nothing there: nothing to judge.
                continue;
            }
            let writes: Vec<Write> = truth
                .iter()
                .map(|&(start_s, end_s)| Write {
                    prediction_id: None,
                    verdict: Verdict::Missed,
                    span: Some((start_s, end_s)),
                })
                .collect();
            report.missed += writes.len();
            self.write_verdicts(video_id, &writes, reviewer).await?;
            report.videos += 1;
        }
        Ok(report)
    }

    /// The `truth` label spans of a video (generator ground truth).
    async fn truth_spans(&self, video_id: i64) -> Result<Vec<(f64, f64)>> {
        Ok(self
            .labels_for(video_id)
            .await?
            .into_iter()
            .filter(|l| l.source == LabelSource::Truth.as_str())
            .map(|l| (l.start_s, l.end_s))
            .collect())
    }

    /// Writes review rows of one video (a verdict on a prediction replaces
    /// its earlier ones) and rebuilds the video's human labels from all its
    /// verdicts, in one transaction. Returns the review ids.
    async fn write_verdicts(
        &self,
        video_id: i64,
        writes: &[Write],
        reviewer: &str,
    ) -> Result<Vec<i64>> {
        const DROP_OLD: &str = "DELETE FROM reviews WHERE prediction_id = $1";
        const INSERT: &str = "INSERT INTO reviews (prediction_id, video_id, verdict, start_s, end_s, reviewer, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
        const CONFIRMED: &str = "SELECT r.verdict, r.start_s, r.end_s, p.start_s, p.end_s FROM reviews r \
            LEFT JOIN predictions p ON p.id = r.prediction_id \
            WHERE r.video_id = $1 AND r.verdict IN ('correct', 'wrong_boundaries', 'missed')";
        const DELETE: &str = "DELETE FROM labels WHERE video_id = $1 AND source = 'human'";
        const LABEL: &str = "INSERT INTO labels (video_id, start_s, end_s, source, confidence, created_at) \
            VALUES ($1, $2, $3, 'human', NULL, $4)";
        let at = now();
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| self.sql_err("BEGIN", e))?;
            let mut ids = vec![];
            for w in writes {
                if let Some(pid) = w.prediction_id {
                    sqlx::query(DROP_OLD).bind(pid).execute(&mut *tx).await.map_err(|e| self.sql_err(DROP_OLD, e))?;
                }
                let id = sqlx::query(INSERT)
                    .bind(w.prediction_id).bind(video_id).bind(w.verdict.as_str())
                    .bind(w.span.map(|s| s.0)).bind(w.span.map(|s| s.1)).bind(reviewer).bind(&at)
                    .fetch_one(&mut *tx).await.map_err(|e| self.sql_err(INSERT, e))?
                    .get::<i64, _>(0);
                ids.push(id);
            }
            let rows = sqlx::query(CONFIRMED).bind(video_id).fetch_all(&mut *tx).await
                .map_err(|e| self.sql_err(CONFIRMED, e))?;
            let spans: Vec<(f64, f64)> = rows.iter().filter_map(|r| {
                let verdict: String = r.get(0);
                // `correct` keeps the prediction's span unless the reviewer
                // adjusted its boundaries (a span on the verdict).
                let adjusted = (r.get::<Option<f64>, _>(1), r.get::<Option<f64>, _>(2));
                let span = if verdict == "correct" && adjusted.0.is_none() {
                    (r.get::<Option<f64>, _>(3), r.get::<Option<f64>, _>(4))
                } else {
                    (r.get::<Option<f64>, _>(1), r.get::<Option<f64>, _>(2))
                };
                Some((span.0?, span.1?))
            }).collect();
            sqlx::query(DELETE).bind(video_id).execute(&mut *tx).await.map_err(|e| self.sql_err(DELETE, e))?;
            for (s, e) in merge(spans) {
                sqlx::query(LABEL).bind(video_id).bind(s).bind(e).bind(&at)
                    .execute(&mut *tx).await.map_err(|err| self.sql_err(LABEL, err))?;
            }
            tx.commit().await.map_err(|e| self.sql_err("COMMIT", e))?;
            Ok(ids)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulate_maps_the_four_cases() {
        let truth = [(10.0, 20.0), (40.0, 50.0), (70.0, 80.0)];
        let preds = [
            (1, 11.0, 20.0),   // IoU 0.9 with the first: correct
            (2, 44.0, 47.0),   // IoU 0.3 with the second: wrong boundaries
            (3, 100.0, 110.0), // nothing: false alarm
            (4, 12.0, 19.0),   // the first is taken: wrong boundaries with it
        ];
        assert_eq!(
            simulate(&preds, &truth, 0.5),
            [
                SimVerdict::Correct { prediction_id: 1 },
                SimVerdict::WrongBoundaries {
                    prediction_id: 2,
                    start_s: 40.0,
                    end_s: 50.0
                },
                SimVerdict::FalseAlarm { prediction_id: 3 },
                SimVerdict::WrongBoundaries {
                    prediction_id: 4,
                    start_s: 10.0,
                    end_s: 20.0
                },
                SimVerdict::Missed {
                    start_s: 70.0,
                    end_s: 80.0
                },
            ]
        );
        // Greedy by IoU: the better prediction wins the span.
        let v = simulate(&[(1, 10.0, 16.0), (2, 10.0, 19.0)], &[(10.0, 20.0)], 0.5);
        assert_eq!(v[1], SimVerdict::Correct { prediction_id: 2 });
        assert!(matches!(
            v[0],
            SimVerdict::WrongBoundaries {
                prediction_id: 1,
                ..
            }
        ));
        assert_eq!(
            simulate(&[], &[(1.0, 2.0)], 0.5),
            [SimVerdict::Missed {
                start_s: 1.0,
                end_s: 2.0
            }]
        );
    }

    #[test]
    fn spans_merge() {
        assert_eq!(
            merge(vec![(5.0, 8.0), (1.0, 3.0), (2.0, 4.0)]),
            [(1.0, 4.0), (5.0, 8.0)]
        );
    }
}
