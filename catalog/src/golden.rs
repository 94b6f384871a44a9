//! The golden set: videos held out for evaluation (`golden` table), never
//! split or trained on. It should cover every league x broadcaster of a
//! sport; [`Catalog::golden_coverage`] says which cells have no golden
//! video. `catalog.query` marks items `golden: true`, and `dataset.split`
//! refuses them, so a query that forgets to exclude them fails loudly.
//!
//! A pipeline's training query excludes them with
//! `... AND id NOT IN (SELECT video_id FROM golden)`; an evaluation query
//! selects them with `SELECT v.* FROM videos v JOIN golden g ON g.video_id = v.id
//! WHERE v.sport = :sport ORDER BY v.uri`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{Catalog, now};
use crate::error::{CatalogError, Result};
use crate::model::*;

/// Which videos [`Catalog::golden_add`] marks golden. Explicit `videos` are
/// added as they are; otherwise every video matching the filters (all of
/// them `None` matches nothing, to avoid marking the whole catalog by
/// mistake), or with `per_cell`, a few per league x broadcaster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoldenSelect {
    /// Videos by id or uri; an unknown one is an error naming it.
    pub videos: Vec<VideoKey>,
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    /// A read-only SQL condition on `videos` (e.g. `season = '2024'`),
    /// used as `SELECT id FROM videos WHERE (...)`.
    pub where_sql: Option<String>,
    /// Tops every league x broadcaster cell of the matching videos up to
    /// this many golden videos, taking the lowest ids not golden yet
    /// (deterministic; running it again adds nothing).
    pub per_cell: Option<usize>,
    /// Why these videos are golden (stored with each).
    pub note: Option<String>,
}

/// A golden video with its metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoldenRow {
    pub video_id: i64,
    pub uri: String,
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    pub season: Option<String>,
    /// RFC 3339 UTC.
    pub added_at: String,
    pub note: Option<String>,
}

/// One league x broadcaster pair of a sport's videos.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageCell {
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    /// Videos of the sport in this cell.
    pub videos: i64,
    /// Golden ones among them.
    pub golden: i64,
}

/// How well a sport's golden set covers its league x broadcaster cells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub sport: String,
    /// Every distinct league x broadcaster pair among the sport's videos.
    pub cells: Vec<CoverageCell>,
}

impl Coverage {
    /// Cells without a golden video: evaluation cannot see them.
    pub fn empty_cells(&self) -> Vec<&CoverageCell> {
        self.cells.iter().filter(|c| c.golden == 0).collect()
    }
    /// Golden videos of the sport.
    pub fn golden(&self) -> i64 {
        self.cells.iter().map(|c| c.golden).sum()
    }
}

impl std::fmt::Display for CoverageCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} x {}",
            self.league.as_deref().unwrap_or("(no league)"),
            self.broadcaster.as_deref().unwrap_or("(no broadcaster)")
        )
    }
}

impl Catalog {
    /// Marks videos golden (see [`GoldenSelect`]); returns how many were
    /// not golden before.
    pub async fn golden_add(&self, sel: &GoldenSelect) -> Result<usize> {
        let mut ids: Vec<i64> = vec![];
        for v in &sel.videos {
            ids.push(self.video_id(v.clone()).await?);
        }
        let filtered = sel.sport.is_some()
            || sel.league.is_some()
            || sel.broadcaster.is_some()
            || sel.where_sql.is_some();
        if filtered || sel.per_cell.is_some() {
            let mut matching = self
                .list(&VideoFilter {
                    sport: sel.sport.clone(),
                    league: sel.league.clone(),
                    broadcaster: sel.broadcaster.clone(),
                    season: None,
                })
                .await?;
            if let Some(w) = &sel.where_sql {
                let rows = self
                    .query(&format!("SELECT id FROM videos WHERE ({w})"), &[])
                    .await?;
                let keep: BTreeSet<i64> =
                    rows.iter().filter_map(|r| r.get("id")?.as_i64()).collect();
                matching.retain(|v| keep.contains(&v.id));
            }
            match sel.per_cell {
                None => ids.extend(matching.iter().map(|v| v.id)),
                Some(n) => {
                    let golden = self.golden_ids().await?;
                    let mut cells: BTreeMap<(Option<String>, Option<String>), Vec<i64>> =
                        BTreeMap::new();
                    for v in &matching {
                        cells
                            .entry((v.league.clone(), v.broadcaster.clone()))
                            .or_default()
                            .push(v.id);
                    }
                    for mut cell in cells.into_values() {
                        cell.sort_unstable();
                        let have = cell.iter().filter(|id| golden.contains(id)).count();
                        ids.extend(
                            cell.iter()
                                .filter(|id| !golden.contains(id))
                                .take(n.saturating_sub(have)),
                        );
                    }
                }
            }
        } else if sel.videos.is_empty() {
            return Err(CatalogError::Invalid(
                "Failed to add golden videos: nothing selected; name videos (ids or uris), or filter with a sport, league, broadcaster or condition (`engine catalog golden add --sport basketball --per-cell 1`)".into(),
            ));
        }
        ids.sort_unstable();
        ids.dedup();
        const SQL: &str = "INSERT INTO golden (video_id, added_at, note) VALUES ($1, $2, $3) ON CONFLICT (video_id) DO NOTHING";
        let at = now();
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| self.sql_err("BEGIN", e))?;
            let mut added = 0;
            for id in &ids {
                added += sqlx::query(SQL).bind(id).bind(&at).bind(&sel.note).execute(&mut *tx).await
                    .map_err(|e| self.sql_err(SQL, e))?.rows_affected() as usize;
            }
            tx.commit().await.map_err(|e| self.sql_err("COMMIT", e))?;
            Ok(added)
        })
    }

    /// Un-marks videos (by id or uri; an unknown one is an error) and every
    /// golden video of `league`; returns how many were golden.
    pub async fn golden_rm(&self, videos: &[VideoKey], league: Option<&str>) -> Result<usize> {
        let mut ids = vec![];
        for v in videos {
            ids.push(self.video_id(v.clone()).await?);
        }
        if let Some(l) = league {
            ids.extend(
                self.golden_list(None)
                    .await?
                    .into_iter()
                    .filter(|g| g.league.as_deref() == Some(l))
                    .map(|g| g.video_id),
            );
        }
        const SQL: &str = "DELETE FROM golden WHERE video_id = $1";
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(|e| self.sql_err("BEGIN", e))?;
            let mut removed = 0;
            for id in &ids {
                removed += sqlx::query(SQL).bind(id).execute(&mut *tx).await
                    .map_err(|e| self.sql_err(SQL, e))?.rows_affected() as usize;
            }
            tx.commit().await.map_err(|e| self.sql_err("COMMIT", e))?;
            Ok(removed)
        })
    }

    /// Golden videos (of `sport`, or all), by league, broadcaster and uri.
    pub async fn golden_list(&self, sport: Option<&str>) -> Result<Vec<GoldenRow>> {
        let sql = format!(
            "SELECT g.video_id, v.uri, v.sport, v.league, v.broadcaster, v.season, g.added_at, g.note \
             FROM golden g JOIN videos v ON v.id = g.video_id{} ORDER BY v.league, v.broadcaster, v.uri",
            if sport.is_some() {
                " WHERE v.sport = $1"
            } else {
                ""
            }
        );
        with_pool!(self, p => {
            let mut q = sqlx::query(&sql);
            if let Some(s) = sport {
                q = q.bind(s);
            }
            q.fetch_all(p).await.map(|rows| rows.iter().map(|r| GoldenRow {
                video_id: r.get(0),
                uri: r.get(1),
                sport: r.get(2),
                league: r.get(3),
                broadcaster: r.get(4),
                season: r.get(5),
                added_at: r.get(6),
                note: r.get(7),
            }).collect::<Vec<_>>())
        })
        .map_err(|e| self.sql_err(&sql, e))
    }

    /// Golden videos per league x broadcaster of `sport` (every cell that
    /// has videos of the sport, golden or not).
    pub async fn golden_coverage(&self, sport: &str) -> Result<Coverage> {
        const SQL: &str = "SELECT v.league, v.broadcaster, COUNT(*) AS videos, COUNT(g.video_id) AS golden \
            FROM videos v LEFT JOIN golden g ON g.video_id = v.id WHERE v.sport = $1 \
            GROUP BY v.league, v.broadcaster ORDER BY v.league, v.broadcaster";
        let cells =
            with_pool!(self, p => sqlx::query(SQL).bind(sport).fetch_all(p).await.map(|rows| {
                rows.iter().map(|r| CoverageCell {
                    league: r.get(0),
                    broadcaster: r.get(1),
                    videos: r.get(2),
                    golden: r.get(3),
                }).collect::<Vec<_>>()
            }))
            .map_err(|e| self.sql_err(SQL, e))?;
        Ok(Coverage {
            sport: sport.into(),
            cells,
        })
    }

    /// The uris of every golden video (one query; the golden set is small).
    pub async fn golden_uris(&self) -> Result<BTreeSet<String>> {
        const SQL: &str = "SELECT v.uri FROM golden g JOIN videos v ON v.id = g.video_id";
        with_pool!(self, p => sqlx::query(SQL).fetch_all(p).await
            .map(|rows| rows.iter().map(|r| r.get::<String, _>(0)).collect()))
        .map_err(|e| self.sql_err(SQL, e))
    }

    async fn golden_ids(&self) -> Result<BTreeSet<i64>> {
        const SQL: &str = "SELECT video_id FROM golden";
        with_pool!(self, p => sqlx::query(SQL).fetch_all(p).await
            .map(|rows| rows.iter().map(|r| r.get::<i64, _>(0)).collect()))
        .map_err(|e| self.sql_err(SQL, e))
    }
}
