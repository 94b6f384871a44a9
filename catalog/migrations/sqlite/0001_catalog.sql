-- The video catalog (SQLite). Keep in step with ../postgres/0001_catalog.sql:
-- same tables, columns and indexes; only the id and float types differ.
-- Times are RFC 3339 UTC text (`2026-01-31T12:00:00Z`), which sorts in time order.

CREATE TABLE videos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    uri         TEXT NOT NULL UNIQUE,
    sport       TEXT,
    league      TEXT,
    broadcaster TEXT,
    season      TEXT,
    duration_s  REAL NOT NULL,
    fps         REAL NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    added_at    TEXT NOT NULL
);
CREATE INDEX videos_sport_league ON videos (sport, league);
CREATE INDEX videos_league ON videos (league);

CREATE TABLE labels (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id    INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    start_s     REAL NOT NULL,
    end_s       REAL NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('human', 'teacher')),
    confidence  REAL,
    created_at  TEXT NOT NULL,
    CHECK (start_s >= 0 AND end_s > start_s)
);
CREATE INDEX labels_video ON labels (video_id, source);

CREATE TABLE predictions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id      INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    start_s       REAL NOT NULL,
    end_s         REAL NOT NULL,
    score         REAL NOT NULL,
    created_at    TEXT NOT NULL,
    CHECK (start_s >= 0 AND end_s > start_s)
);
CREATE INDEX predictions_video ON predictions (video_id);
CREATE INDEX predictions_model ON predictions (model_version);

CREATE TABLE reviews (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id INTEGER REFERENCES predictions (id) ON DELETE SET NULL,
    video_id      INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    verdict       TEXT NOT NULL CHECK (verdict IN ('correct', 'false_positive', 'missed')),
    start_s       REAL,
    end_s         REAL,
    reviewer      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    CHECK (verdict <> 'missed' OR (start_s IS NOT NULL AND end_s IS NOT NULL AND end_s > start_s))
);
CREATE INDEX reviews_video ON reviews (video_id, verdict);
CREATE INDEX reviews_prediction ON reviews (prediction_id);
