//! `engine catalog`: import videos, list them, run SELECTs on the catalog.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use catalog::{Catalog, VideoFilter};
use clap::Subcommand;
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
}

pub async fn run(cmd: CatalogCmd) -> anyhow::Result<u8> {
    match cmd {
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
