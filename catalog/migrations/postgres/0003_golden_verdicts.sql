-- The golden set, and verdicts on production predictions. Keep in step with
-- ../sqlite/0003_golden_verdicts.sql.

-- Videos held out for evaluation: never split or trained on.
CREATE TABLE golden (
    video_id    BIGINT PRIMARY KEY REFERENCES videos (id) ON DELETE CASCADE,
    added_at    TEXT NOT NULL,
    note        TEXT
);

-- Verdicts: `correct`; `wrong_boundaries` (a replay, but start_s/end_s give
-- its true span); `false_alarm` (no replay; legacy `false_positive` rows mean
-- the same); `missed` (no prediction; start_s/end_s give the replay).
ALTER TABLE reviews DROP CONSTRAINT reviews_verdict_check;
ALTER TABLE reviews ADD CONSTRAINT reviews_verdict_check
    CHECK (verdict IN ('correct', 'wrong_boundaries', 'false_alarm', 'false_positive', 'missed'));
ALTER TABLE reviews DROP CONSTRAINT reviews_check;
ALTER TABLE reviews ADD CONSTRAINT reviews_check
    CHECK (verdict NOT IN ('missed', 'wrong_boundaries') OR (start_s IS NOT NULL AND end_s IS NOT NULL AND end_s > start_s));
CREATE INDEX reviews_created ON reviews (created_at);
