//! `engine catalog`: import videos, list them, run SELECTs on the catalog,
//! and keep the golden set (videos held out for evaluation).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use catalog::{Catalog, GoldenSelect, VideoFilter};
use clap::{ArgGroup, Subcommand};
use serde_json::Value;

#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Import a folder of videos (`*.mp4`, `*.mkv`, `*.webm`) with their
    /// sibling label files (`NAME.json` ground truth or labels, `NAME.csv`);
    /// re-importing updates.
    Import {
        /// The folder (sub-folders included).
        dir: PathBuf,
        /// The catalog: a SQLite path, `sqlite://PATH` or `postgres://...`.
        #[arg(long, env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
    },
    /// List catalogued videos.
    Ls {
        #[arg(long, env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
        /// Only this sport (`soccer`, `basketball`, `ice-hockey`).
        #[arg(long)]
        sport: Option<String>,
        /// Only this league.
        #[arg(long)]
        league: Option<String>,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a read-only SELECT; `:name` placeholders take `--param name=VALUE`.
    Query {
        /// The SELECT, e.g. `SELECT league, COUNT(*) AS n FROM videos GROUP BY league`.
        sql: String,
        #[arg(long, env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
        /// A placeholder value, `NAME=VALUE`; VALUE is a number, `true`,
        /// `false`, `null` or else text. Repeatable.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Print JSON (one array of objects) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The golden set: videos held out for evaluation, never split or
    /// trained on, covering every league x broadcaster of a sport.
    Golden {
        #[command(subcommand)]
        cmd: GoldenCmd,
    },
}

#[derive(Subcommand)]
pub enum GoldenCmd {
    /// Mark videos golden: by id or uri, or every video matching the
    /// filters, or with `--per-cell N` the lowest-id videos of each league x
    /// broadcaster until it has N golden (running it again adds nothing).
    #[command(group(ArgGroup::new("what").required(true).multiple(true)
        .args(["videos", "sport", "league", "broadcaster", "where_sql"])))]
    Add {
        /// Videos: catalog ids or uris (a path to the file works too).
        videos: Vec<String>,
        /// Only videos of this sport (`soccer`, `basketball`, `ice-hockey`).
        #[arg(long)]
        sport: Option<String>,
        /// Only videos of this league.
        #[arg(long)]
        league: Option<String>,
        /// Only videos of this broadcaster.
        #[arg(long)]
        broadcaster: Option<String>,
        /// Only videos matching this SQL condition on `videos`, e.g. `season = '2024'`.
        #[arg(long = "where", value_name = "SQL")]
        where_sql: Option<String>,
        /// Top every league x broadcaster cell up to N golden videos.
        #[arg(long, value_name = "N")]
        per_cell: Option<usize>,
        /// Why these videos are golden (stored with each).
        #[arg(long)]
        note: Option<String>,
        #[arg(long, env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
    },
    /// Un-mark videos (ids or uris) or every golden video of `--league`.
    #[command(group(ArgGroup::new("what").required(true).multiple(true).args(["videos", "league"])))]
    Rm {
        videos: Vec<String>,
        #[arg(long)]
        league: Option<String>,
        #[arg(long, env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
    },
    /// List a sport's golden videos and its coverage per league x
    /// broadcaster; warns about each cell without a golden video.
    Ls {
        #[arg(long)]
        sport: String,
        /// Print JSON (`{videos, coverage}`) instead of tables.
        #[arg(long)]
        json: bool,
        #[arg(long, env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
    },
}

pub async fn run(cmd: CatalogCmd) -> anyhow::Result<u8> {
    match cmd {
        CatalogCmd::Golden { cmd } => golden(cmd).await,
        CatalogCmd::Import { dir, db } => {
            let cat = open(&db).await?;
            let report = cat.import_dir(&dir).await?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            for f in &report.failed {
                eprintln!("error: {} (`{}` skipped)", f.error, f.path);
            }
            println!("{report} into `{}`", cat.url());
            cat.close().await;
            Ok(if report.failed.is_empty() { 0 } else { 1 })
        }
        CatalogCmd::Ls {
            db,
            sport,
            league,
            json,
        } => {
            let cat = open(&db).await?;
            let filtered = sport.is_some() || league.is_some();
            let videos = cat
                .list(&VideoFilter {
                    sport,
                    league,
                    ..Default::default()
                })
                .await?;
            cat.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&videos)?);
                return Ok(0);
            }
            if videos.is_empty() {
                if filtered {
                    println!("no videos match; `engine catalog ls` lists them all");
                } else {
                    println!("no videos; add some with `engine catalog import DIR`");
                }
                return Ok(0);
            }
            let head = [
                "id",
                "sport",
                "league",
                "broadcaster",
                "season",
                "duration",
                "fps",
                "size",
                "labels",
                "uri",
            ];
            let rows = videos
                .iter()
                .map(|v| {
                    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
                    vec![
                        v.id.to_string(),
                        opt(&v.sport),
                        opt(&v.league),
                        opt(&v.broadcaster),
                        opt(&v.season),
                        format!("{:.1}s", v.duration_s),
                        format!("{:.3}", v.fps)
                            .trim_end_matches('0')
                            .trim_end_matches('.')
                            .to_string(),
                        format!("{}x{}", v.width, v.height),
                        v.labels.to_string(),
                        v.uri.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            print!("{}", table(&head.map(String::from), &rows));
            println!("{} video(s)", videos.len());
            Ok(0)
        }
        CatalogCmd::Query {
            sql,
            db,
            params,
            json,
        } => {
            let params = parse_params(&params)?;
            let cat = open(&db).await?;
            let result = cat.query_named(&sql, &params).await;
            cat.close().await;
            let t = result?;
            if json {
                let rows: Vec<Value> = t.rows.into_iter().map(Value::Object).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            if t.rows.is_empty() {
                println!("(no rows)");
                return Ok(0);
            }
            let rows = t
                .rows
                .iter()
                .map(|r| {
                    t.columns
                        .iter()
                        .map(|c| cell(r.get(c).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect::<Vec<Vec<String>>>();
            print!("{}", table(&t.columns, &rows));
            println!(
                "({} row{})",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
            Ok(0)
        }
    }
}

async fn golden(cmd: GoldenCmd) -> anyhow::Result<u8> {
    match cmd {
        GoldenCmd::Add {
            videos,
            sport,
            league,
            broadcaster,
            where_sql,
            per_cell,
            note,
            db,
        } => {
            let cat = open(&db).await?;
            let sel = GoldenSelect {
                videos: videos
                    .iter()
                    .map(|v| crate::review_cmd::video_key(v))
                    .collect(),
                sport: sport.clone(),
                league,
                broadcaster,
                where_sql,
                per_cell,
                note,
            };
            let added = cat.golden_add(&sel).await;
            let coverage = match &sport {
                Some(s) => Some(cat.golden_coverage(s).await),
                None => None,
            };
            cat.close().await;
            let added = added?;
            println!("{added} video(s) added to the golden set");
            if let Some(c) = coverage {
                let c = c?;
                println!(
                    "{}: {} golden video(s) in {} league x broadcaster cell(s)",
                    c.sport,
                    c.golden(),
                    c.cells.len()
                );
                warn_empty(&c);
            }
            Ok(0)
        }
        GoldenCmd::Rm { videos, league, db } => {
            let cat = open(&db).await?;
            let keys: Vec<_> = videos
                .iter()
                .map(|v| crate::review_cmd::video_key(v))
                .collect();
            let removed = cat.golden_rm(&keys, league.as_deref()).await;
            cat.close().await;
            println!("{} video(s) removed from the golden set", removed?);
            Ok(0)
        }
        GoldenCmd::Ls { sport, json, db } => {
            let cat = open(&db).await?;
            let list = cat.golden_list(Some(&sport)).await;
            let coverage = cat.golden_coverage(&sport).await;
            cat.close().await;
            let (list, coverage) = (list?, coverage?);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "videos": list, "coverage": coverage })
                    )?
                );
                return Ok(0);
            }
            if coverage.cells.is_empty() {
                println!(
                    "no videos of sport `{sport}` in `{db}`; import some with `engine catalog import DIR` (`engine catalog ls` shows the sports)"
                );
                return Ok(0);
            }
            let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
            if list.is_empty() {
                println!(
                    "the golden set of `{sport}` is empty; add videos with `engine catalog golden add VIDEO...` or `engine catalog golden add --sport {sport} --per-cell 1`"
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|g| {
                        vec![
                            g.video_id.to_string(),
                            opt(&g.league),
                            opt(&g.broadcaster),
                            opt(&g.season),
                            opt(&g.note),
                            g.uri.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["id", "league", "broadcaster", "season", "note", "uri"].map(String::from),
                        &rows
                    )
                );
                println!("{} golden video(s)\n", list.len());
            }
            let rows: Vec<Vec<String>> = coverage
                .cells
                .iter()
                .map(|c| {
                    vec![
                        opt(&c.league),
                        opt(&c.broadcaster),
                        c.videos.to_string(),
                        c.golden.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["league", "broadcaster", "videos", "golden"].map(String::from),
                    &rows
                )
            );
            warn_empty(&coverage);
            Ok(0)
        }
    }
}

fn warn_empty(c: &catalog::Coverage) {
    let empty = c.empty_cells();
    if !empty.is_empty() {
        println!(
            "warning: {} league x broadcaster cell(s) of `{}` have no golden video, so evaluation cannot see them: {}; add one with `engine catalog golden add --sport {} --per-cell 1`",
            empty.len(),
            c.sport,
            empty
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            c.sport
        );
    }
}

async fn open(db: &str) -> anyhow::Result<Catalog> {
    catalog::prepare_default(db)?;
    Ok(Catalog::open(db).await?)
}

fn parse_params(raw: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for p in raw {
        let (name, value) = p
            .split_once('=')
            .with_context(|| format!("Failed to read `--param {p}`: expected `NAME=VALUE`, e.g. `--param league=liga-sur`"))?;
        let value = match serde_json::from_str::<Value>(value) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null | Value::String(_))) => v,
            _ => Value::String(value.to_string()),
        };
        out.insert(name.trim_start_matches(':').to_string(), value);
    }
    Ok(out)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(head: &[String], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_parse_as_json_scalars_or_text() {
        let p = parse_params(&[
            "n=10".into(),
            "x=1.5".into(),
            ":league=liga-sur".into(),
            "s=\"10\"".into(),
            "b=true".into(),
            "o={}".into(),
        ])
        .unwrap();
        assert_eq!(p["n"], json!(10));
        assert_eq!(p["x"], json!(1.5));
        assert_eq!(p["league"], json!("liga-sur"));
        assert_eq!(p["s"], json!("10"));
        assert_eq!(p["b"], json!(true));
        assert_eq!(p["o"], json!("{}"));
        let e = parse_params(&["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("expected `NAME=VALUE`"), "{e}");
    }

    #[test]
    fn tables_align_all_but_the_last_column() {
        let head = ["id".to_string(), "league".into(), "uri".into()];
        let rows = vec![
            vec!["1".to_string(), "liga-sur".into(), "/a.mp4".into()],
            vec!["10".into(), "-".into(), "/b.mp4".into()],
        ];
        assert_eq!(
            table(&head, &rows),
            "id  league    uri\n1   liga-sur  /a.mp4\n10  -         /b.mp4\n"
        );
    }
}
