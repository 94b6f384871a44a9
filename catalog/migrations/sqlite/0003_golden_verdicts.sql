-- The golden set, and verdicts on production predictions. Keep in step with
-- ../postgres/0003_golden_verdicts.sql.

-- Videos held out for evaluation: never split or trained on.
CREATE TABLE golden (
    video_id    INTEGER PRIMARY KEY REFERENCES videos (id) ON DELETE CASCADE,
    added_at    TEXT NOT NULL,
    note        TEXT
);

-- Verdicts: `correct`; `wrong_boundaries` (a replay, but start_s/end_s give
-- its true span); `false_alarm` (no replay; legacy `false_positive` rows mean
-- the same); `missed` (no prediction; start_s/end_s give the replay).
-- SQLite cannot alter a CHECK: rebuild `reviews` (nothing references it).
CREATE TABLE reviews_v3 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id INTEGER REFERENCES predictions (id) ON DELETE SET NULL,
    video_id      INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    verdict       TEXT NOT NULL CHECK (verdict IN ('correct', 'wrong_boundaries', 'false_alarm', 'false_positive', 'missed')),
    start_s       REAL,
    end_s         REAL,
    reviewer      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    CHECK (verdict NOT IN ('missed', 'wrong_boundaries') OR (start_s IS NOT NULL AND end_s IS NOT NULL AND end_s > start_s))
);
INSERT INTO reviews_v3 (id, prediction_id, video_id, verdict, start_s, end_s, reviewer, created_at)
    SELECT id, prediction_id, video_id, verdict, start_s, end_s, reviewer, created_at FROM reviews;
DROP TABLE reviews;
ALTER TABLE reviews_v3 RENAME TO reviews;
CREATE INDEX reviews_video ON reviews (video_id, verdict);
CREATE INDEX reviews_prediction ON reviews (prediction_id);
CREATE INDEX reviews_created ON reviews (created_at);
