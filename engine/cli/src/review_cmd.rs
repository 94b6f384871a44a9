//! `engine review`: the manual-review queue in the catalog. `ls` lists the
//! videos the teacher was unsure about; `accept` and `fix` record a
//! person's verdict as the video's human labels, which the next run's
//! `teacher.tag` uses instead of its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use catalog::{Catalog, NewLabel, QueueEntry, QueueVerdict, VideoKey};
use clap::{ArgGroup, Subcommand};

#[derive(Subcommand)]
pub enum ReviewCmd {
    /// List the videos waiting for review: league, teacher confidence and
    /// the teacher's proposed replay segments.
    Ls {
        /// The catalog: a SQLite path, `sqlite://PATH` or `postgres://...`.
        #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
        /// Also list reviewed entries, with their verdicts.
        #[arg(long)]
        all: bool,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Accept the teacher's proposed segments of VIDEO as its human labels.
    Accept {
        /// The video: its catalog id or uri (a path to the file works too).
        video: String,
        #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
        /// Who decided (default: `$USER`).
        #[arg(long)]
        reviewer: Option<String>,
    },
    /// Record the replay segments of VIDEO: `--segments 12.0-18.5,40-47.2`
    /// (seconds; an empty list means "no replays") or `--labels FILE` (JSON
    /// or CSV labels, as `engine catalog import` reads them).
    #[command(group(ArgGroup::new("spans").required(true).args(["segments", "labels"])))]
    Fix {
        /// The video: its catalog id or uri (a path to the file works too).
        video: String,
        /// Replay segments, `START-END` in seconds, comma-separated.
        #[arg(long, value_name = "START-END,...")]
        segments: Option<String>,
        /// A labels file (`.json` or `.csv`); its entry for the video is used.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
        /// Who decided (default: `$USER`).
        #[arg(long)]
        reviewer: Option<String>,
    },
}

pub async fn run(cmd: ReviewCmd) -> anyhow::Result<u8> {
    match cmd {
        ReviewCmd::Ls { db, all, json } => {
            let cat = open(&db).await?;
            let entries = cat.review_queue(!all).await;
            cat.close().await;
            let entries = entries?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(0);
            }
            if entries.is_empty() {
                println!("no videos waiting for review in `{db}`");
                return Ok(0);
            }
            print!("{}", table(&entries, all));
            let pending = entries.iter().filter(|e| e.status == "pending").count();
            println!(
                "{pending} video(s) waiting; record a verdict with `engine review accept VIDEO` or `engine review fix VIDEO --segments START-END,...`"
            );
            Ok(0)
        }
        ReviewCmd::Accept {
            video,
            db,
            reviewer,
        } => {
            let cat = open(&db).await?;
            let key = video_key(&video);
            let done = cat
                .record_verdict(key, QueueVerdict::Accepted, &[], &reviewer_name(reviewer))
                .await;
            cat.close().await;
            let done = done?;
            report(&done, done.proposals.len());
            Ok(0)
        }
        ReviewCmd::Fix {
            video,
            segments,
            labels,
            db,
            reviewer,
        } => {
            let spans = match (&segments, &labels) {
                (Some(s), _) => parse_segments(s)?,
                (None, Some(file)) => {
                    let cat = open(&db).await?;
                    let uri = video_uri(&cat, video_key(&video)).await;
                    cat.close().await;
                    spans_from_file(file, &uri?)?
                }
                (None, None) => bail!(
                    "give the replay segments with `--segments START-END,...` or `--labels FILE`"
                ),
            };
            let cat = open(&db).await?;
            let done = cat
                .record_verdict(
                    video_key(&video),
                    QueueVerdict::Fixed,
                    &spans,
                    &reviewer_name(reviewer),
                )
                .await;
            cat.close().await;
            report(&done?, spans.len());
            Ok(0)
        }
    }
}

async fn open(db: &str) -> anyhow::Result<Catalog> {
    catalog::prepare_default(db)?;
    Ok(Catalog::open(db).await?)
}

/// An id, a path to an existing file (made absolute, as the catalog stores
/// uris), or a uri as written.
fn video_key(video: &str) -> VideoKey {
    if let Ok(id) = video.parse::<i64>() {
        return VideoKey::Id(id);
    }
    match Path::new(video).canonicalize() {
        Ok(p) if p.is_file() => VideoKey::Uri(p.to_string_lossy().into_owned()),
        _ => VideoKey::Uri(video.to_string()),
    }
}

fn reviewer_name(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

async fn video_uri(cat: &Catalog, key: VideoKey) -> anyhow::Result<String> {
    let id = cat.video_id(key).await?;
    let rows = cat
        .query(
            "SELECT uri FROM videos WHERE id = $1",
            &[serde_json::json!(id)],
        )
        .await?;
    rows.first()
        .and_then(|r| r.get("uri"))
        .and_then(|u| u.as_str())
        .map(str::to_string)
        .with_context(|| {
            format!(
                "Failed to read the uri of video id {id} from `{}`",
                cat.url()
            )
        })
}

fn report(e: &QueueEntry, spans: usize) {
    println!(
        "{} `{}`: {spans} human replay segment(s) recorded{}; the next run uses them instead of the teacher",
        e.verdict.as_deref().unwrap_or("reviewed"),
        e.uri,
        e.reviewer
            .as_deref()
            .map(|r| format!(" by {r}"))
            .unwrap_or_default(),
    );
}

/// `12.0-18.5,40-47.2` -> spans; an empty (or blank) list is no replays.
pub fn parse_segments(text: &str) -> anyhow::Result<Vec<NewLabel>> {
    let fail = |what: String| {
        anyhow::anyhow!(
            "Failed to read `--segments {text}`: {what}; write START-END pairs in seconds, comma-separated, e.g. `--segments 12.0-18.5,40-47.2`"
        )
    };
    let mut out: Vec<NewLabel> = vec![];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((a, b)) = part.split_once('-') else {
            return Err(fail(format!(
                "segment `{part}` has no `-` between start and end"
            )));
        };
        let num = |s: &str, which: &str| -> anyhow::Result<f64> {
            let s = s.trim();
            if s.is_empty() {
                return Err(fail(format!("segment `{part}` has no {which}")));
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(fail(format!(
                    "the {which} `{s}` of segment `{part}` is not a number of seconds >= 0"
                ))),
            }
        };
        let (start, end) = (num(a, "start")?, num(b, "end")?);
        if end <= start {
            return Err(fail(format!(
                "segment `{part}` ends ({end}) before it starts ({start})"
            )));
        }
        out.push(NewLabel {
            start_s: start,
            end_s: end,
            confidence: None,
        });
    }
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    for w in out.windows(2) {
        if w[1].start_s < w[0].end_s {
            return Err(fail(format!(
                "segments `{}-{}` and `{}-{}` overlap",
                w[0].start_s, w[0].end_s, w[1].start_s, w[1].end_s
            )));
        }
    }
    Ok(out)
}

/// The spans a labels file gives for the video at `uri`: its entry by file
/// name, or the only entry.
fn spans_from_file(file: &Path, uri: &str) -> anyhow::Result<Vec<NewLabel>> {
    if !file.is_file() {
        bail!(
            "Failed to read labels `{}`: no such file; give a `.json` or `.csv` labels file (`video,start,end` rows, or `{{\"video\": ..., \"segments\": [{{\"start\": ..., \"end\": ...}}]}}`)",
            file.display()
        );
    }
    let all = media::labels::read_labels(file)?;
    let name = Path::new(uri)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mine = all
        .iter()
        .find(|s| Path::new(&s.video).file_name().is_some_and(|n| n.to_string_lossy() == name))
        .or(if all.len() == 1 { all.first() } else { None })
        .with_context(|| {
            format!(
                "Labels `{}` have no entry for `{name}` (videos named there: {}); add one or pass `--segments`",
                file.display(),
                all.iter().map(|s| format!("`{}`", s.video)).collect::<Vec<_>>().join(", ")
            )
        })?;
    Ok(mine
        .segments
        .iter()
        .map(|s| NewLabel {
            start_s: s.start,
            end_s: s.end,
            confidence: None,
        })
        .collect())
}

fn spans_text(spans: &[NewLabel]) -> String {
    if spans.is_empty() {
        return "-".into();
    }
    spans
        .iter()
        .map(|s| format!("{:.1}-{:.1}", s.start_s, s.end_s))
        .collect::<Vec<_>>()
        .join(",")
}

fn table(entries: &[QueueEntry], all: bool) -> String {
    let mut head = vec![
        "id",
        "sport",
        "league",
        "broadcaster",
        "confidence",
        "proposed",
        "reason",
    ];
    if all {
        head.extend(["status", "verdict"]);
    }
    head.push("uri");
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let mut r = vec![
                e.video_id.to_string(),
                opt(&e.sport),
                opt(&e.league),
                opt(&e.broadcaster),
                e.confidence
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_else(|| "-".into()),
                spans_text(&e.proposals),
                opt(&e.reason),
            ];
            if all {
                r.extend([e.status.clone(), opt(&e.verdict)]);
            }
            r.push(e.uri.clone());
            r
        })
        .collect();
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_or_say_what_is_wrong() {
        let s = parse_segments("40-47.2, 12.0-18.5").unwrap();
        assert_eq!(
            s.iter().map(|l| (l.start_s, l.end_s)).collect::<Vec<_>>(),
            [(12.0, 18.5), (40.0, 47.2)]
        );
        assert!(parse_segments("").unwrap().is_empty());
        for (bad, want) in [
            ("12-", "segment `12-` has no end"),
            ("-5", "segment `-5` has no start"),
            ("18-12", "segment `18-12` ends (12) before it starts (18)"),
            (
                "NaN-4",
                "the start `NaN` of segment `NaN-4` is not a number",
            ),
            ("1-inf", "the end `inf` of segment `1-inf` is not a number"),
            ("12", "segment `12` has no `-`"),
            ("1-5,4-8", "segments `1-5` and `4-8` overlap"),
        ] {
            let e = parse_segments(bad).unwrap_err().to_string();
            assert!(
                e.contains(want)
                    && e.contains(&format!("`--segments {bad}`"))
                    && e.contains("e.g. `--segments"),
                "{bad}: {e}"
            );
        }
    }
}
