//! Opening the database (SQLite or PostgreSQL), migrating it, and the
//! catalog's typed reads and writes.
//!
//! Both backends get the same SQL: `$1`-style placeholders work in SQLite
//! too, and the two migration folders create the same tables.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Row};

use crate::error::{CatalogError, Result, redact};
use crate::model::*;

/// Where the catalog lives when no URL is given (relative to the working directory).
pub const DEFAULT_DB: &str = ".engine/catalog.db";

const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the catalog has; the
/// body is written once and type-checked for both backends.
macro_rules! with_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.pool {
            $crate::db::Pool::Sqlite($pool) => $body,
            $crate::db::Pool::Postgres($pool) => $body,
        }
    };
}

/// A connection pool to the catalog database.
pub struct Catalog {
    pub(crate) pool: Pool,
    /// Connections opened read-only (SQLite `mode=ro`) for `query`, so an
    /// ad-hoc statement cannot write whatever it does; `None` for
    /// `sqlite::memory:`, which one connection holds (`query` then relies on
    /// `PRAGMA query_only` and its one-statement rule).
    pub(crate) readonly: Option<SqlitePool>,
    /// The URL with the password hidden, for messages.
    pub(crate) url: String,
}

/// Which backend a URL names.
enum Target {
    Sqlite { path: PathBuf, memory: bool },
    Postgres,
}

fn parse_url(url: &str) -> Result<Target> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres);
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(CatalogError::BadUrl { url: redact(url) });
    }
    let memory = path == ":memory:";
    Ok(Target::Sqlite {
        path: PathBuf::from(path),
        memory,
    })
}

/// Creates the folder of the default catalog (`.engine/`) when `url` is the
/// default; any other missing folder stays an error at [`Catalog::open`].
pub fn prepare_default(url: &str) -> Result<()> {
    if url == DEFAULT_DB
        && let Some(dir) = Path::new(DEFAULT_DB).parent()
    {
        std::fs::create_dir_all(dir).map_err(|source| CatalogError::Io {
            op: "create",
            path: dir.into(),
            source,
        })?;
    }
    Ok(())
}

pub(crate) fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    rfc3339(t)
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Applies pending migrations. Two processes opening a new SQLite file at
/// once can both see it unmigrated; the loser's attempt fails, and a later
/// attempt sees the winner's tables. (PostgreSQL takes a lock instead.)
async fn migrate<'a, A>(m: &sqlx::migrate::Migrator, pool: A, url: &str) -> Result<()>
where
    A: sqlx::Acquire<'a> + Copy,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let mut tries = 0;
    loop {
        match m.run(pool).await {
            Ok(()) => return Ok(()),
            Err(_) if tries < 3 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
            Err(source) => {
                return Err(CatalogError::Migrate {
                    url: url.into(),
                    source,
                });
            }
        }
    }
}

impl Catalog {
    /// Opens (creating and migrating on first use) the catalog at `url`: a
    /// file path, `sqlite://PATH`, `sqlite::memory:` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Catalog> {
        let shown = redact(url);
        let mut readonly = None;
        let pool = match parse_url(url)? {
            Target::Postgres => {
                let connect_err = |source| CatalogError::Connect {
                    url: shown.clone(),
                    hint: "check that PostgreSQL is running and reachable at that host and port, and that the user, password and database exist",
                    source,
                };
                let opts = PgConnectOptions::from_str(url).map_err(connect_err)?;
                // One plain connection first: the pool would retry a refused
                // connection until its timeout; this fails at once.
                match tokio::time::timeout(PG_CONNECT_TIMEOUT, PgConnection::connect_with(&opts))
                    .await
                {
                    Ok(Ok(c)) => {
                        let _ = c.close().await;
                    }
                    Ok(Err(e)) => return Err(connect_err(e)),
                    Err(_) => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {PG_CONNECT_TIMEOUT:?}"),
                        );
                        return Err(connect_err(sqlx::Error::Io(e)));
                    }
                }
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(PG_CONNECT_TIMEOUT)
                    .connect_with(opts)
                    .await
                    .map_err(connect_err)?;
                migrate(&sqlx::migrate!("migrations/postgres"), &pool, &shown).await?;
                Pool::Postgres(pool)
            }
            Target::Sqlite { path, memory } => {
                if !memory
                    && let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                    && !dir.is_dir()
                {
                    return Err(CatalogError::MissingFolder {
                        url: shown,
                        dir: dir.into(),
                    });
                }
                let opts = if memory {
                    SqliteConnectOptions::from_str("sqlite::memory:").expect("a valid URL")
                } else {
                    SqliteConnectOptions::new()
                        .filename(&path)
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                }
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
                // Every connection to `:memory:` is its own database: keep one.
                let max = if memory { 1 } else { 4 };
                let pool_options = || {
                    SqlitePoolOptions::new()
                        .max_connections(max)
                        // `query` turns `query_only` on and off around a SELECT;
                        // a cancelled query must not leave a read-only connection behind.
                        .before_acquire(|conn, _| {
                            Box::pin(async move {
                                sqlx::query("PRAGMA query_only = OFF")
                                    .execute(&mut *conn)
                                    .await?;
                                Ok(true)
                            })
                        })
                        .idle_timeout(None)
                        .max_lifetime(None)
                };
                // Opening a new file switches it to WAL, which needs a lock the
                // busy timeout does not wait for: another process (or task)
                // creating the same file at that moment makes the switch fail
                // with "database is locked". Seen under load with 6 parallel
                // first opens; a short retry lets the creator finish.
                let mut tries = 0;
                let pool = loop {
                    match pool_options().connect_with(opts.clone()).await {
                        Ok(pool) => break pool,
                        Err(sqlx::Error::Database(e))
                            if e.code().as_deref() == Some("5") && tries < 5 =>
                        {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                        }
                        Err(source) => {
                            return Err(CatalogError::Connect {
                                url: shown.clone(),
                                hint: "check that the path is a file (not a folder) that you may write, and that it is a SQLite database",
                                source,
                            });
                        }
                    }
                };
                migrate(&sqlx::migrate!("migrations/sqlite"), &pool, &shown).await?;
                if !memory {
                    let ro = SqliteConnectOptions::new()
                        .filename(&path)
                        .read_only(true)
                        .busy_timeout(Duration::from_secs(30));
                    readonly = Some(
                        SqlitePoolOptions::new()
                            .max_connections(2)
                            .min_connections(0)
                            .connect_lazy_with(ro),
                    );
                }
                Pool::Sqlite(pool)
            }
        };
        Ok(Catalog {
            pool,
            readonly,
            url: shown,
        })
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (waits for running queries).
    pub async fn close(self) {
        with_pool!(self, p => p.close().await)
    }

    pub(crate) fn sql_err(&self, sql: &str, e: sqlx::Error) -> CatalogError {
        let message = match e.as_database_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        CatalogError::Sql {
            url: self.url.clone(),
            sql: sql.trim().to_string(),
            message,
        }
    }

    /// The row id of a video; an unknown video is an error that says how to add it.
    pub async fn video_id(&self, video: impl Into<VideoKey>) -> Result<i64> {
        let key = video.into();
        let id = match &key {
            VideoKey::Id(id) => {
                const SQL: &str = "SELECT id FROM videos WHERE id = $1";
                with_pool!(self, p => sqlx::query(SQL).bind(*id).fetch_optional(p).await.map(|r| r.map(|r| r.get::<i64, _>(0))))
                    .map_err(|e| self.sql_err(SQL, e))?
            }
            VideoKey::Uri(uri) => {
                const SQL: &str = "SELECT id FROM videos WHERE uri = $1";
                with_pool!(self, p => sqlx::query(SQL).bind(uri).fetch_optional(p).await.map(|r| r.map(|r| r.get::<i64, _>(0))))
                    .map_err(|e| self.sql_err(SQL, e))?
            }
        };
        match id {
            Some(id) => Ok(id),
            None => Err(CatalogError::Invalid(format!(
                "No video {key} in the catalog `{}`; import it first (`engine catalog import DIR`)",
                self.url
            ))),
        }
    }

    /// Inserts a video or updates the one with the same `uri` (metadata
    /// given as `None` keeps the stored value). Returns the id and whether it
    /// was new.
    pub async fn upsert_video(&self, v: &NewVideo) -> Result<(i64, bool)> {
        const FIND: &str = "SELECT id FROM videos WHERE uri = $1";
        const UPDATE: &str = "UPDATE videos SET sport = COALESCE($2, sport), league = COALESCE($3, league), \
            broadcaster = COALESCE($4, broadcaster), season = COALESCE($5, season), duration_s = $6, fps = $7, \
            width = $8, height = $9 WHERE id = $1";
        const INSERT: &str = "INSERT INTO videos (uri, sport, league, broadcaster, season, duration_s, fps, width, height, added_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (uri) DO NOTHING RETURNING id";
        // Two importers racing on one uri: the loser's insert returns no row,
        // and the second round finds the winner's row.
        for _ in 0..2 {
            let found = with_pool!(self, p => sqlx::query(FIND).bind(&v.uri).fetch_optional(p).await.map(|r| r.map(|r| r.get::<i64, _>(0))))
                .map_err(|e| self.sql_err(FIND, e))?;
            if let Some(id) = found {
                with_pool!(self, p => sqlx::query(UPDATE)
                    .bind(id).bind(&v.sport).bind(&v.league).bind(&v.broadcaster).bind(&v.season)
                    .bind(v.duration_s).bind(v.fps).bind(v.width).bind(v.height)
                    .execute(p).await.map(|_| ()))
                .map_err(|e| self.sql_err(UPDATE, e))?;
                return Ok((id, false));
            }
            let inserted = with_pool!(self, p => sqlx::query(INSERT)
                .bind(&v.uri).bind(&v.sport).bind(&v.league).bind(&v.broadcaster).bind(&v.season)
                .bind(v.duration_s).bind(v.fps).bind(v.width).bind(v.height).bind(now())
                .fetch_optional(p).await.map(|r| r.map(|r| r.get::<i64, _>(0))))
            .map_err(|e| self.sql_err(INSERT, e))?;
            if let Some(id) = inserted {
                return Ok((id, true));
            }
        }
        Err(CatalogError::Invalid(format!(
            "Failed to insert video `{}` into `{}`: it keeps disappearing",
            v.uri, self.url
        )))
    }

    /// Replaces the labels of `source` of a video with `labels` (one transaction).
    pub async fn set_labels(
        &self,
        video: impl Into<VideoKey>,
        source: LabelSource,
        labels: &[NewLabel],
    ) -> Result<()> {
        let video_id = self.video_id(video).await?;
        for l in labels {
            check_span(l.start_s, l.end_s)?;
        }
        const DELETE: &str = "DELETE FROM labels WHERE video_id = $1 AND source = $2";
        const INSERT: &str = "INSERT INTO labels (video_id, start_s, end_s, source, confidence, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
        let created = now();
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| self.sql_err("BEGIN", e))?;
            sqlx::query(DELETE).bind(video_id).bind(source.as_str()).execute(&mut *tx).await
                .map_err(|e| self.sql_err(DELETE, e))?;
            for l in labels {
                sqlx::query(INSERT).bind(video_id).bind(l.start_s).bind(l.end_s).bind(source.as_str())
                    .bind(l.confidence).bind(&created).execute(&mut *tx).await
                    .map_err(|e| self.sql_err(INSERT, e))?;
            }
            tx.commit().await.map_err(|e| self.sql_err("COMMIT", e))
        })
    }

    /// Every label of a video, human first, by start.
    pub async fn labels_for(&self, video: impl Into<VideoKey>) -> Result<Vec<LabelRow>> {
        let video_id = self.video_id(video).await?;
        const SQL: &str = "SELECT id, video_id, start_s, end_s, source, confidence, created_at FROM labels \
            WHERE video_id = $1 ORDER BY source, start_s, id";
        let rows =
            with_pool!(self, p => sqlx::query(SQL).bind(video_id).fetch_all(p).await.map(|rows| {
                rows.iter()
                    .map(|r| LabelRow {
                        id: r.get(0),
                        video_id: r.get(1),
                        start_s: r.get(2),
                        end_s: r.get(3),
                        source: r.get(4),
                        confidence: r.get(5),
                        created_at: r.get(6),
                    })
                    .collect::<Vec<_>>()
            }))
            .map_err(|e| self.sql_err(SQL, e))?;
        Ok(rows)
    }

    /// Videos matching `filter`, by uri.
    pub async fn list(&self, filter: &VideoFilter) -> Result<Vec<VideoRow>> {
        let mut sql = String::from(
            "SELECT v.id, v.uri, v.sport, v.league, v.broadcaster, v.season, v.duration_s, v.fps, v.width, v.height, \
             v.added_at, (SELECT COUNT(*) FROM labels l WHERE l.video_id = v.id) AS labels FROM videos v",
        );
        let conds: Vec<(&str, &String)> = [
            ("sport", &filter.sport),
            ("league", &filter.league),
            ("broadcaster", &filter.broadcaster),
            ("season", &filter.season),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.as_ref().map(|v| (c, v)))
        .collect();
        for (i, (col, _)) in conds.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.push_str(&format!("v.{col} = ${}", i + 1));
        }
        sql.push_str(" ORDER BY v.uri");
        let rows = with_pool!(self, p => {
            let mut q = sqlx::query(&sql);
            for (_, v) in &conds {
                q = q.bind(v.as_str());
            }
            q.fetch_all(p).await.map(|rows| {
                rows.iter()
                    .map(|r| VideoRow {
                        id: r.get(0),
                        uri: r.get(1),
                        sport: r.get(2),
                        league: r.get(3),
                        broadcaster: r.get(4),
                        season: r.get(5),
                        duration_s: r.get(6),
                        fps: r.get(7),
                        width: r.get(8),
                        height: r.get(9),
                        added_at: r.get(10),
                        labels: r.get(11),
                    })
                    .collect::<Vec<_>>()
            })
        })
        .map_err(|e| self.sql_err(&sql, e))?;
        Ok(rows)
    }

    /// Records a model's prediction; returns its id.
    /// Records that production ran `model_version` over a video and found
    /// `segments` replays (its predictions are added apart), so a video
    /// where it found nothing still counts as seen.
    pub async fn add_detection(
        &self,
        video: impl Into<VideoKey>,
        model_version: &str,
        segments: usize,
    ) -> Result<i64> {
        let video_id = self.video_id(video).await?;
        const SQL: &str = "INSERT INTO detections (video_id, model_version, segments, created_at) \
            VALUES ($1, $2, $3, $4) RETURNING id";
        with_pool!(self, pool => sqlx::query(SQL)
            .bind(video_id).bind(model_version).bind(segments as i64).bind(now())
            .fetch_one(pool).await.map(|r| r.get::<i64, _>(0)))
        .map_err(|e| self.sql_err(SQL, e))
    }

    pub async fn add_prediction(&self, p: &NewPrediction) -> Result<i64> {
        let video_id = self.video_id(p.video_id).await?;
        check_span(p.start_s, p.end_s)?;
        if !p.score.is_finite() {
            return Err(CatalogError::Invalid(format!(
                "prediction score {} is not a finite number",
                p.score
            )));
        }
        const SQL: &str = "INSERT INTO predictions (video_id, model_version, start_s, end_s, score, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
        let row = with_pool!(self, pool => sqlx::query(SQL)
            .bind(video_id).bind(&p.model_version).bind(p.start_s).bind(p.end_s).bind(p.score).bind(now())
            .fetch_one(pool).await.map(|r| r.get::<i64, _>(0)))
        .map_err(|e| self.sql_err(SQL, e))?;
        Ok(row)
    }

    /// Records a review row as given (no label rebuild: see
    /// [`Catalog::record_prediction_verdict`] for that); returns its id.
    /// Every verdict but `missed` needs a prediction of the same video;
    /// `missed` and `wrong_boundaries` need the replay's span.
    pub async fn add_review(&self, r: &NewReview) -> Result<i64> {
        let video_id = self.video_id(r.video_id).await?;
        if r.verdict.needs_span() {
            match (r.start_s, r.end_s) {
                (Some(s), Some(e)) => check_span(s, e)?,
                _ => {
                    return Err(CatalogError::Invalid(format!(
                        "A `{}` review needs `start_s` and `end_s`: the span of the replay {}",
                        r.verdict.as_str(),
                        if r.verdict == Verdict::Missed {
                            "the model missed"
                        } else {
                            "the prediction should have given"
                        }
                    )));
                }
            }
        }
        if r.verdict.judges_a_prediction() && r.prediction_id.is_none() {
            return Err(CatalogError::Invalid(format!(
                "A `{}` review needs `prediction_id`: the prediction it judges",
                r.verdict.as_str()
            )));
        }
        if let Some(pid) = r.prediction_id {
            const SQL: &str = "SELECT video_id FROM predictions WHERE id = $1";
            let row = with_pool!(self, p => sqlx::query(SQL).bind(pid).fetch_optional(p).await.map(|r| r.map(|r| r.get::<i64, _>(0))))
                .map_err(|e| self.sql_err(SQL, e))?;
            match row {
                None => {
                    return Err(CatalogError::Invalid(format!(
                        "No prediction {pid} in the catalog `{}`",
                        self.url
                    )));
                }
                Some(v) if v != video_id => {
                    return Err(CatalogError::Invalid(format!(
                        "Prediction {pid} belongs to video {v}, not to video {video_id}"
                    )));
                }
                Some(_) => {}
            }
        }
        const SQL: &str = "INSERT INTO reviews (prediction_id, video_id, verdict, start_s, end_s, reviewer, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
        let row = with_pool!(self, p => sqlx::query(SQL)
            .bind(r.prediction_id).bind(video_id).bind(r.verdict.as_str()).bind(r.start_s).bind(r.end_s)
            .bind(&r.reviewer).bind(now())
            .fetch_one(p).await.map(|r| r.get::<i64, _>(0)))
        .map_err(|e| self.sql_err(SQL, e))?;
        Ok(row)
    }
}

pub(crate) fn check_span(start: f64, end: f64) -> Result<()> {
    if start.is_finite() && end.is_finite() && start >= 0.0 && end > start {
        Ok(())
    } else {
        Err(CatalogError::Invalid(format!(
            "Invalid span {start}..{end}: expected finite seconds with 0 <= start < end"
        )))
    }
}
