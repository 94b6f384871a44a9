//! `engine review`: the manual-review queue in the catalog. `ls` lists the
//! videos the teacher was unsure about; `accept` and `fix` record a
//! person's verdict as the video's human labels, which the next run's
//! `teacher.tag` uses instead of its own.
//!
//! Verdicts on production predictions: `predictions` lists them, `verdict`
//! and `missed` record a person's verdicts (rebuilding the video's human
//! labels), `simulate` fills them in from generator ground truth for demos.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use catalog::{
    Catalog, NewLabel, PredictionFilter, PredictionRow, PredictionVerdict, QueueEntry,
    QueueVerdict, VideoKey,
};
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
    /// or CSV labels, or a generator's ground truth, as `engine catalog
    /// import` reads them).
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
    /// List production predictions with their verdicts.
    Predictions {
        /// Only videos of this sport.
        #[arg(long)]
        sport: Option<String>,
        /// Only this model version.
        #[arg(long)]
        model: Option<String>,
        /// Only predictions without a verdict.
        #[arg(long)]
        pending: bool,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
    },
    /// Judge a prediction: `correct`, `false-alarm`, or `wrong-boundaries
    /// --segments START-END` (the true span). Rebuilds the video's human labels.
    Verdict {
        /// The prediction's id (`engine review predictions` lists them).
        prediction: i64,
        /// `correct`, `false-alarm` or `wrong-boundaries`.
        verdict: String,
        /// The true span, for `wrong-boundaries`: `START-END` in seconds.
        #[arg(long, value_name = "START-END")]
        segments: Option<String>,
        #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
        /// Who decided (default: `$USER`).
        #[arg(long)]
        reviewer: Option<String>,
    },
    /// Record replays of VIDEO that no prediction found. Rebuilds its human labels.
    Missed {
        /// The video: its catalog id or uri (a path to the file works too).
        video: String,
        /// The missed replays, `START-END` in seconds, comma-separated.
        #[arg(long, value_name = "START-END,...")]
        segments: String,
        #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
        /// Who decided (default: `$USER`).
        #[arg(long)]
        reviewer: Option<String>,
    },
    /// SIMULATED review for demos: judge a model's unreviewed predictions
    /// against the generator's ground truth (`truth` labels), recorded as
    /// reviewer `simulated-from-truth`. tIoU >= --iou: correct; overlapping:
    /// wrong boundaries; no overlap: false alarm; unmatched truth: missed.
    Simulate {
        #[arg(long)]
        sport: String,
        /// The model version whose predictions to judge.
        #[arg(long)]
        model: String,
        /// The tIoU from which a prediction is `correct`.
        #[arg(long, default_value_t = 0.5)]
        iou: f64,
        #[arg(long, visible_alias = "catalog", env = "ENGINE_CATALOG", default_value = catalog::DEFAULT_DB)]
        db: String,
    },
}

pub async fn run(cmd: ReviewCmd) -> anyhow::Result<u8> {
    match cmd {
        ReviewCmd::Predictions {
            sport,
            model,
            pending,
            json,
            db,
        } => {
            let cat = open(&db).await?;
            let rows = cat
                .predictions(&PredictionFilter {
                    sport,
                    model_version: model,
                    video: None,
                    pending,
                })
                .await;
            cat.close().await;
            let rows = rows?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            if rows.is_empty() {
                println!(
                    "no {}predictions match in `{db}`",
                    if pending { "unreviewed " } else { "" }
                );
                return Ok(0);
            }
            print!("{}", predictions_table(&rows));
            let open = rows.iter().filter(|r| r.verdict.is_none()).count();
            println!(
                "{} prediction(s), {open} without a verdict; judge one with `engine review verdict ID correct|false-alarm|wrong-boundaries`",
                rows.len()
            );
            Ok(0)
        }
        ReviewCmd::Verdict {
            prediction,
            verdict,
            segments,
            db,
            reviewer,
        } => {
            let v = prediction_verdict(&verdict, segments.as_deref())?;
            let cat = open(&db).await?;
            let done = cat
                .record_prediction_verdict(prediction, v, &reviewer_name(reviewer))
                .await;
            cat.close().await;
            done?;
            println!(
                "prediction {prediction}: `{}` recorded; the video's human labels were rebuilt from its verdicts",
                verdict.replace('_', "-")
            );
            Ok(0)
        }
        ReviewCmd::Missed {
            video,
            segments,
            db,
            reviewer,
        } => {
            let spans = parse_segments(&segments)?;
            if spans.is_empty() {
                bail!(
                    "Failed to read `--segments {segments}`: no spans; give the missed replays as START-END pairs, e.g. `--segments 12.0-18.5`"
                );
            }
            let cat = open(&db).await?;
            let n = cat
                .record_missed(video_key(&video), &spans, &reviewer_name(reviewer))
                .await;
            cat.close().await;
            println!(
                "{} missed replay(s) recorded for `{video}`; its human labels were rebuilt from its verdicts",
                n?
            );
            Ok(0)
        }
        ReviewCmd::Simulate {
            sport,
            model,
            iou,
            db,
        } => {
            if !(iou > 0.0 && iou <= 1.0) {
                bail!(
                    "Failed to read `--iou {iou}`: expected a number in (0, 1], e.g. `--iou 0.5`"
                );
            }
            let cat = open(&db).await?;
            let r = cat
                .simulate_verdicts(&sport, &model, catalog::SIMULATED_REVIEWER, iou)
                .await;
            cat.close().await;
            let r = r?;
            println!(
                "SIMULATED review (not a person's): verdicts derived from the generator's ground truth, recorded as reviewer `{}`",
                catalog::SIMULATED_REVIEWER
            );
            println!(
                "{sport} / {model}: {} video(s) judged: {} correct, {} wrong boundaries, {} false alarm(s), {} missed (tIoU >= {iou} is correct)",
                r.videos, r.correct, r.wrong_boundaries, r.false_alarm, r.missed
            );
            if r.already_reviewed > 0 {
                println!(
                    "{} video(s) skipped: some of their predictions already have a verdict",
                    r.already_reviewed
                );
            }
            if r.without_truth > 0 {
                println!(
                    "{} video(s) skipped: no ground-truth (`truth`) labels to judge by",
                    r.without_truth
                );
            }
            if r.videos + r.already_reviewed + r.without_truth == 0 {
                println!(
                    "no predictions of model `{model}` on `{sport}` videos; record predictions first (`engine review predictions` lists them)"
                );
            }
            Ok(0)
        }
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
pub fn video_key(video: &str) -> VideoKey {
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
/// The rules are [`catalog::parse_spans`]'s, shared with `engine serve`.
pub fn parse_segments(text: &str) -> anyhow::Result<Vec<NewLabel>> {
    catalog::parse_spans(text).map_err(|what| {
        anyhow::anyhow!(
            "Failed to read `--segments {text}`: {what}; write START-END pairs in seconds, comma-separated, e.g. `--segments 12.0-18.5,40-47.2`"
        )
    })
}

/// The spans a labels file gives for the video at `uri`, read exactly as
/// `engine catalog import` reads it: a generator ground truth, or a user
/// label file's entry by file name (or its only entry).
fn spans_from_file(file: &Path, uri: &str) -> anyhow::Result<Vec<NewLabel>> {
    if !file.is_file() {
        bail!(
            "Failed to read labels `{}`: no such file; give a `.json` or `.csv` labels file (`video,start,end` rows, `{{\"video\": ..., \"segments\": [{{\"start\": ..., \"end\": ...}}]}}`, or a generator's ground truth)",
            file.display()
        );
    }
    let name = Path::new(uri)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let found = catalog::read_label_file(file, &name)
        .map_err(|e| anyhow::anyhow!("{e}; fix the file or pass `--segments`"))?;
    Ok(found.spans)
}

/// `correct`, `false-alarm` or `wrong-boundaries` (with its span).
fn prediction_verdict(verdict: &str, segments: Option<&str>) -> anyhow::Result<PredictionVerdict> {
    let span = |what: &str| -> anyhow::Result<Option<(f64, f64)>> {
        match segments {
            None => Ok(None),
            Some(s) => {
                let spans = parse_segments(s)?;
                match spans.as_slice() {
                    [one] => Ok(Some((one.start_s, one.end_s))),
                    _ => bail!(
                        "Failed to read `--segments {s}`: `{what}` takes exactly one START-END span, e.g. `--segments 12.0-18.5`"
                    ),
                }
            }
        }
    };
    match verdict.replace('_', "-").as_str() {
        v @ ("correct" | "false-alarm") => {
            if segments.is_some() {
                bail!(
                    "`{v}` takes no `--segments`; for a replay with other boundaries use `wrong-boundaries --segments START-END`"
                );
            }
            Ok(if v == "correct" {
                PredictionVerdict::Correct
            } else {
                PredictionVerdict::FalseAlarm
            })
        }
        "wrong-boundaries" => match span("wrong-boundaries")? {
            Some((start_s, end_s)) => Ok(PredictionVerdict::WrongBoundaries { start_s, end_s }),
            None => bail!(
                "`wrong-boundaries` needs the true span: add `--segments START-END`, e.g. `--segments 12.0-18.5`"
            ),
        },
        _ => bail!(
            "unknown verdict `{verdict}`; expected `correct`, `false-alarm` or `wrong-boundaries` (replays no prediction found: `engine review missed VIDEO --segments ...`)"
        ),
    }
}

fn predictions_table(rows: &[PredictionRow]) -> String {
    let head = [
        "id",
        "league",
        "broadcaster",
        "model",
        "span",
        "score",
        "verdict",
        "corrected",
        "reviewer",
        "uri",
    ];
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                opt(&r.league),
                opt(&r.broadcaster),
                r.model_version.clone(),
                format!("{:.1}-{:.1}", r.start_s, r.end_s),
                format!("{:.2}", r.score),
                r.verdict
                    .as_deref()
                    .map(|v| v.replace('_', "-"))
                    .unwrap_or_else(|| "pending".into()),
                match (r.corrected_start_s, r.corrected_end_s) {
                    (Some(a), Some(b)) => format!("{a:.1}-{b:.1}"),
                    _ => "-".into(),
                },
                opt(&r.reviewer),
                r.uri.clone(),
            ]
        })
        .collect();
    render_table(&head, cells)
}

/// A plain-text table: every column but the last padded to its widest cell
/// (shared by `engine review` and `engine monitor`).
pub(crate) fn render_table(head: &[&str], rows: Vec<Vec<String>>) -> String {
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
