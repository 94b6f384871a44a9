-- The manual-review queue, and `truth` labels (exact synthetic ground truth,
-- kept apart from `human` verdicts). Keep in step with
-- ../postgres/0002_review_queue.sql.

-- SQLite cannot alter a CHECK: rebuild `labels` (nothing references it).
CREATE TABLE labels_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id    INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    start_s     REAL NOT NULL,
    end_s       REAL NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('human', 'teacher', 'truth')),
    confidence  REAL,
    created_at  TEXT NOT NULL,
    CHECK (start_s >= 0 AND end_s > start_s)
);
INSERT INTO labels_v2 (id, video_id, start_s, end_s, source, confidence, created_at)
    SELECT id, video_id, start_s, end_s, source, confidence, created_at FROM labels;
DROP TABLE labels;
ALTER TABLE labels_v2 RENAME TO labels;
CREATE INDEX labels_video ON labels (video_id, source);

-- One row per time a video was sent to review. `proposals` is the teacher's
-- JSON list of `{start_s, end_s, confidence}`; a verdict (`accepted`: the
-- proposals are right; `fixed`: a person gave the spans) closes the entry
-- and writes `human` labels. At most one pending entry per video.
CREATE TABLE review_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id    INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'done')),
    confidence  REAL,
    proposals   TEXT NOT NULL,
    reason      TEXT,
    queued_by   TEXT,
    queued_at   TEXT NOT NULL,
    verdict     TEXT CHECK (verdict IN ('accepted', 'fixed')),
    reviewer    TEXT,
    done_at     TEXT,
    CHECK ((status = 'pending' AND verdict IS NULL) OR (status = 'done' AND verdict IS NOT NULL))
);
CREATE UNIQUE INDEX review_queue_one_pending ON review_queue (video_id) WHERE status = 'pending';
CREATE INDEX review_queue_status ON review_queue (status, queued_at);
