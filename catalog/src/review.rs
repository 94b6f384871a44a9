//! The manual-review queue: videos the teacher was not sure about wait here
//! (`review_queue`, with the teacher's proposals) until a person accepts the
//! proposals or gives the replay spans; the verdict becomes the video's
//! `human` labels, which win over the teacher on the next run.

use sqlx::Row;

use crate::db::{Catalog, check_span, now};
use crate::error::{CatalogError, Result};
use crate::model::*;

const ENTRY_COLUMNS: &str = "q.id, q.video_id, v.uri, v.sport, v.league, v.broadcaster, q.status, q.confidence, \
    q.proposals, q.reason, q.queued_by, q.queued_at, q.verdict, q.reviewer, q.done_at \
    FROM review_queue q JOIN videos v ON v.id = q.video_id";

/// A row of [`ENTRY_COLUMNS`] before its proposals are parsed.
type RawEntry = (QueueEntry, String);

macro_rules! raw_entry {
    ($r:expr) => {{
        let r = $r;
        (
            QueueEntry {
                id: r.get(0),
                video_id: r.get(1),
                uri: r.get(2),
                sport: r.get(3),
                league: r.get(4),
                broadcaster: r.get(5),
                status: r.get(6),
                confidence: r.get(7),
                proposals: vec![],
                reason: r.get(9),
                queued_by: r.get(10),
                queued_at: r.get(11),
                verdict: r.get(12),
                reviewer: r.get(13),
                done_at: r.get(14),
            },
            r.get::<String, _>(8),
        )
    }};
}

impl Catalog {
    fn parse_entry(&self, (mut e, proposals): RawEntry) -> Result<QueueEntry> {
        e.proposals = serde_json::from_str(&proposals).map_err(|err| {
            CatalogError::Invalid(format!(
                "Failed to read the proposals of review entry {} (video `{}`) in `{}`: {err}; \
                 record a verdict with `engine review fix` to replace them",
                e.id, e.uri, self.url
            ))
        })?;
        Ok(e)
    }

    /// Puts a video in the review queue, or refreshes its pending entry
    /// (confidence, proposals, reason) when it is already there. Returns the
    /// entry id and whether it is new.
    pub async fn enqueue_review(
        &self,
        video: impl Into<VideoKey>,
        entry: &NewQueueEntry,
    ) -> Result<(i64, bool)> {
        let video_id = self.video_id(video).await?;
        for p in &entry.proposals {
            check_span(p.start_s, p.end_s)?;
        }
        let confidence = entry.confidence.filter(|c| c.is_finite());
        let proposals = serde_json::to_string(&entry.proposals)
            .map_err(|e| CatalogError::Invalid(format!("Failed to encode proposals: {e}")))?;
        const UPDATE: &str = "UPDATE review_queue SET confidence = $2, proposals = $3, reason = $4, queued_by = $5 \
            WHERE video_id = $1 AND status = 'pending' RETURNING id";
        const INSERT: &str = "INSERT INTO review_queue (video_id, status, confidence, proposals, reason, queued_by, queued_at) \
            VALUES ($1, 'pending', $2, $3, $4, $5, $6) RETURNING id";
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| self.sql_err("BEGIN", e))?;
            let updated = sqlx::query(UPDATE)
                .bind(video_id).bind(confidence).bind(&proposals).bind(&entry.reason).bind(&entry.queued_by)
                .fetch_optional(&mut *tx).await.map_err(|e| self.sql_err(UPDATE, e))?
                .map(|r| r.get::<i64, _>(0));
            let out = match updated {
                Some(id) => (id, false),
                None => {
                    let id = sqlx::query(INSERT)
                        .bind(video_id).bind(confidence).bind(&proposals).bind(&entry.reason).bind(&entry.queued_by).bind(now())
                        .fetch_one(&mut *tx).await.map_err(|e| self.sql_err(INSERT, e))?
                        .get::<i64, _>(0);
                    (id, true)
                }
            };
            tx.commit().await.map_err(|e| self.sql_err("COMMIT", e))?;
            Ok(out)
        })
    }

    /// Queue entries, oldest first: only the pending ones, or all.
    pub async fn review_queue(&self, pending_only: bool) -> Result<Vec<QueueEntry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS}{} ORDER BY q.queued_at, q.id",
            if pending_only {
                " WHERE q.status = 'pending'"
            } else {
                ""
            }
        );
        let raw = with_pool!(self, p => sqlx::query(&sql).fetch_all(p).await
            .map(|rows| rows.iter().map(|r| raw_entry!(r)).collect::<Vec<_>>()))
        .map_err(|e| self.sql_err(&sql, e))?;
        raw.into_iter().map(|r| self.parse_entry(r)).collect()
    }

    /// The entries of one video, newest first.
    pub async fn reviews_of(&self, video: impl Into<VideoKey>) -> Result<Vec<QueueEntry>> {
        let video_id = self.video_id(video).await?;
        let sql = format!("SELECT {ENTRY_COLUMNS} WHERE q.video_id = $1 ORDER BY q.id DESC");
        let raw = with_pool!(self, p => sqlx::query(&sql).bind(video_id).fetch_all(p).await
            .map(|rows| rows.iter().map(|r| raw_entry!(r)).collect::<Vec<_>>()))
        .map_err(|e| self.sql_err(&sql, e))?;
        raw.into_iter().map(|r| self.parse_entry(r)).collect()
    }

    /// Records a person's verdict on a video, in one transaction: its
    /// `human` labels become the pending entry's proposals (`Accepted`) or
    /// `labels` (`Fixed`; empty means "no replays"), and the pending entry
    /// is closed. `Fixed` on a video that was never queued records a closed
    /// entry. Returns the closed entry.
    pub async fn record_verdict(
        &self,
        video: impl Into<VideoKey>,
        verdict: QueueVerdict,
        labels: &[NewLabel],
        reviewer: &str,
    ) -> Result<QueueEntry> {
        let key = video.into();
        let video_id = self.video_id(key.clone()).await?;
        let pending = self
            .reviews_of(video_id)
            .await?
            .into_iter()
            .find(|e| e.status == "pending");
        // A pending entry is closed only if it still is when the verdict
        // is written: a second reviewer at the same moment gets a conflict
        // instead of overwriting the first one's labels.
        if let Some(e) = pending {
            return self
                .record_verdict_if_pending(e.id, verdict, labels, reviewer)
                .await;
        }
        // No pending entry: a fix replaces any earlier verdict and is
        // recorded as a closed entry of its own.
        if verdict == QueueVerdict::Accepted {
            return Err(CatalogError::Invalid(format!(
                "Video {key} has no pending review in `{}`, so there are no proposals to accept; \
                 `engine review ls` lists the queue, `engine review fix` records spans for any video",
                self.url
            )));
        }
        for l in labels {
            check_span(l.start_s, l.end_s)?;
        }
        const DELETE: &str = "DELETE FROM labels WHERE video_id = $1 AND source = 'human'";
        const LABEL: &str = "INSERT INTO labels (video_id, start_s, end_s, source, confidence, created_at) \
            VALUES ($1, $2, $3, 'human', NULL, $4)";
        const DONE: &str = "INSERT INTO review_queue (video_id, status, confidence, proposals, reason, queued_at, verdict, reviewer, done_at) \
            VALUES ($1, 'done', NULL, '[]', 'reviewed without a queue entry', $2, $3, $4, $2) RETURNING id";
        let at = now();
        let id = with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| self.sql_err("BEGIN", e))?;
            sqlx::query(DELETE).bind(video_id).execute(&mut *tx).await.map_err(|e| self.sql_err(DELETE, e))?;
            for l in labels {
                sqlx::query(LABEL).bind(video_id).bind(l.start_s).bind(l.end_s).bind(&at)
                    .execute(&mut *tx).await.map_err(|e| self.sql_err(LABEL, e))?;
            }
            let id = sqlx::query(DONE).bind(video_id).bind(&at).bind(verdict.as_str()).bind(reviewer)
                .fetch_one(&mut *tx).await.map_err(|e| self.sql_err(DONE, e))?
                .get::<i64, _>(0);
            tx.commit().await.map_err(|e| self.sql_err("COMMIT", e))?;
            Ok::<i64, CatalogError>(id)
        })?;
        self.reviews_of(video_id)
            .await?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| {
                CatalogError::Invalid(format!("Review entry {id} vanished from `{}`", self.url))
            })
    }

    /// Records a verdict on review entry `entry` only if that entry is
    /// still pending, atomically: the entry is closed by a conditional
    /// `UPDATE ... WHERE status = 'pending'` as the transaction's first
    /// statement, which takes the write lock (SQLite) or the row lock
    /// (PostgreSQL) before anything else is written; the video's `human`
    /// labels are replaced in the same transaction. Of several reviewers
    /// recording at once exactly one succeeds; the others get
    /// [`CatalogError::Conflict`] naming who reviewed it, and nothing of
    /// theirs is written. `Accepted` records the entry's proposals,
    /// `Fixed` records `labels` (empty: no replays). Returns the closed
    /// entry.
    pub async fn record_verdict_if_pending(
        &self,
        entry: i64,
        verdict: QueueVerdict,
        labels: &[NewLabel],
        reviewer: &str,
    ) -> Result<QueueEntry> {
        for l in labels {
            check_span(l.start_s, l.end_s)?;
        }
        const CLOSE: &str = "UPDATE review_queue SET status = 'done', verdict = $2, reviewer = $3, done_at = $4 \
            WHERE id = $1 AND status = 'pending' RETURNING video_id, proposals";
        const DELETE: &str = "DELETE FROM labels WHERE video_id = $1 AND source = 'human'";
        const LABEL: &str = "INSERT INTO labels (video_id, start_s, end_s, source, confidence, created_at) \
            VALUES ($1, $2, $3, 'human', NULL, $4)";
        let at = now();
        let closed = with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| self.sql_err("BEGIN", e))?;
            let row = sqlx::query(CLOSE)
                .bind(entry).bind(verdict.as_str()).bind(reviewer).bind(&at)
                .fetch_optional(&mut *tx).await.map_err(|e| self.sql_err(CLOSE, e))?
                .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)));
            let Some((video_id, proposals)) = row else {
                // Rolled back (nothing was written) before asking why, so
                // a one-connection pool is free for the question.
                tx.rollback().await.map_err(|e| self.sql_err("ROLLBACK", e))?;
                return Err(self.lost(entry).await);
            };
            let spans: Vec<NewLabel> = match verdict {
                QueueVerdict::Fixed => labels.to_vec(),
                _ => serde_json::from_str(&proposals).map_err(|err| {
                    CatalogError::Invalid(format!(
                        "Failed to read the proposals of review entry {entry} in `{}`: {err}; \
                         record a verdict with `engine review fix` to replace them",
                        self.url
                    ))
                })?,
            };
            sqlx::query(DELETE).bind(video_id).execute(&mut *tx).await.map_err(|e| self.sql_err(DELETE, e))?;
            for l in &spans {
                sqlx::query(LABEL).bind(video_id).bind(l.start_s).bind(l.end_s).bind(&at)
                    .execute(&mut *tx).await.map_err(|e| self.sql_err(LABEL, e))?;
            }
            tx.commit().await.map_err(|e| self.sql_err("COMMIT", e))?;
            Ok::<i64, CatalogError>(video_id)
        })?;
        self.reviews_of(closed)
            .await?
            .into_iter()
            .find(|e| e.id == entry)
            .ok_or_else(|| {
                CatalogError::Invalid(format!("Review entry {entry} vanished from `{}`", self.url))
            })
    }

    /// Why a verdict on `entry` was not recorded: it is closed (a
    /// conflict, naming who closed it) or does not exist.
    async fn lost(&self, entry: i64) -> CatalogError {
        let sql = format!("SELECT {ENTRY_COLUMNS} WHERE q.id = $1");
        let raw = with_pool!(self, p => sqlx::query(&sql).bind(entry).fetch_optional(p).await
            .map(|r| r.map(|r| raw_entry!(r))));
        match raw {
            Err(e) => self.sql_err(&sql, e),
            Ok(None) => CatalogError::Invalid(format!(
                "No review entry {entry} in `{}`; `engine review ls --all` lists the entries",
                self.url
            )),
            Ok(Some((e, _))) => CatalogError::Conflict(format!(
                "Review entry {entry} of video {} (`{}`) was already reviewed: {} by {} at {}; \
                 `engine review ls` lists the videos still waiting (`engine review fix {} --segments ...` replaces a verdict)",
                e.video_id,
                e.uri,
                e.verdict.as_deref().unwrap_or("closed"),
                e.reviewer.as_deref().unwrap_or("an unknown reviewer"),
                e.done_at.as_deref().unwrap_or("an unknown time"),
                e.video_id,
            )),
        }
    }
}
