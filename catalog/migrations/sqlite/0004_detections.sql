-- One row each time production ran a model over a video, even when it found
-- no replay: a video without predictions was still seen, so its replays
-- count as missed (review verdicts `missed`) and the monitor counts them.
-- Keep in step with ../postgres/0004_detections.sql.
CREATE TABLE detections (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id      INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    segments      INTEGER NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX detections_video ON detections (video_id, model_version);
CREATE INDEX detections_model ON detections (model_version);
