//! Importing a folder of videos with their labels.
//!
//! For each `*.mp4`, `*.mkv` or `*.webm` (sub-folders included, hidden
//! files skipped) the file is probed, and labels are read from a sibling
//! `NAME.json` (a synthetic ground truth, or a user label file) or
//! `NAME.csv`. The uri is the file's absolute path. A generator ground
//! truth is stored as `truth` labels (exact, for evaluation, not a human
//! verdict), a user label file as `human` labels. Re-importing updates the
//! video and replaces its labels of the file's source only, so review
//! verdicts survive re-importing generated videos; a video without a label
//! file keeps the labels it has.

use std::path::{Path, PathBuf};

use media::labels::read_labels;
use media::synth::GroundTruth;

use crate::db::Catalog;
use crate::error::{CatalogError, Result};
use crate::model::*;

/// The video file extensions the importer picks up.
pub const VIDEO_EXTENSIONS: [&str; 3] = ["mp4", "mkv", "webm"];

/// What a label file says about a video.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundLabels {
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    pub season: Option<String>,
    /// `Truth` for a generator ground truth, `Human` for a user label file.
    pub source: LabelSource,
    pub spans: Vec<NewLabel>,
}

impl Catalog {
    /// Imports every video under `dir`; see the module docs. Per-video
    /// problems are collected in the report; database errors stop the import.
    pub async fn import_dir(&self, dir: &Path) -> Result<ImportReport> {
        let dir = dir.canonicalize().map_err(|source| CatalogError::Io {
            op: "open the folder",
            path: dir.into(),
            source,
        })?;
        let files = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || find_videos(&dir)
        })
        .await
        .map_err(|e| CatalogError::Invalid(format!("Failed to list `{}`: {e}", dir.display())))??;
        let mut report = ImportReport {
            found: files.len(),
            ..Default::default()
        };
        for path in files {
            let probed = tokio::task::spawn_blocking({
                let path = path.clone();
                move || media::probe(&path)
            })
            .await
            .map_err(|e| {
                CatalogError::Invalid(format!("Failed to probe `{}`: {e}", path.display()))
            })?;
            let info = match probed {
                Ok(info) => info,
                Err(e) => {
                    report.failed.push(ImportFailure {
                        path: path.display().to_string(),
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            let labels = match read_sibling_labels(&path) {
                Ok(l) => l,
                Err(w) => {
                    report.warnings.push(w);
                    None
                }
            };
            let meta = labels.as_ref();
            let video = NewVideo {
                uri: path.to_string_lossy().into_owned(),
                sport: meta.and_then(|m| m.sport.clone()),
                league: meta.and_then(|m| m.league.clone()),
                broadcaster: meta.and_then(|m| m.broadcaster.clone()),
                season: meta.and_then(|m| m.season.clone()),
                duration_s: info.duration,
                fps: info.fps_f64(),
                width: info.width as i64,
                height: info.height as i64,
            };
            let (id, added) = self.upsert_video(&video).await?;
            if added {
                report.added += 1;
            } else {
                report.updated += 1;
            }
            if let Some(found) = labels {
                self.set_labels(id, found.source, &found.spans).await?;
                report.labelled += 1;
                report.labels += found.spans.len();
            }
        }
        Ok(report)
    }
}

fn find_videos(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| CatalogError::Io {
            op: "list",
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| CatalogError::Io {
                op: "list",
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|v| e.eq_ignore_ascii_case(v)))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `Ok(None)`: no label file. `Err`: a label file that could not be used,
/// as a warning naming it.
fn read_sibling_labels(video: &Path) -> std::result::Result<Option<FoundLabels>, String> {
    let json = video.with_extension("json");
    let csv = video.with_extension("csv");
    let file = if json.is_file() {
        json
    } else if csv.is_file() {
        csv
    } else {
        return Ok(None);
    };
    let name = video
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    read_label_file(&file, &name).map(Some)
}

/// Reads the labels of the video named `video_name` (a file name) from a
/// label file, as `engine catalog import` does: a generator ground truth
/// (`NAME.json` with `version`, `video`, `replays`), or a user label file
/// (JSON or CSV, `media::labels`) whose entry for the video is taken by file
/// name (or its only entry). `Err`: what is wrong, naming the file.
pub fn read_label_file(file: &Path, video_name: &str) -> std::result::Result<FoundLabels, String> {
    if file.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("Failed to read labels `{}`: {e}", file.display()))?;
        if looks_like_ground_truth(&text) {
            let truth: GroundTruth = serde_json::from_str(&text)
                .map_err(|e| format!("Failed to read ground truth `{}`: {e}", file.display()))?;
            return Ok(from_ground_truth(&truth));
        }
    }
    let all = read_labels(file).map_err(|e| e.to_string())?;
    let name = video_name;
    let mine = all
        .iter()
        .find(|s| {
            Path::new(&s.video)
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == name)
        })
        .or(if all.len() == 1 { all.first() } else { None });
    let Some(seg) = mine else {
        return Err(format!(
            "Labels `{}` have no entry for `{name}` (videos named there: {}); the video was imported without labels",
            file.display(),
            all.iter()
                .map(|s| format!("`{}`", s.video))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    Ok(FoundLabels {
        sport: None,
        league: seg.league.clone(),
        broadcaster: seg.broadcaster.clone(),
        season: None,
        source: LabelSource::Human,
        spans: seg
            .segments
            .iter()
            .map(|s| NewLabel {
                start_s: s.start,
                end_s: s.end,
                confidence: None,
            })
            .collect(),
    })
}

/// A synthetic ground truth is an object with `version`, a `video` object and `replays`.
fn looks_like_ground_truth(text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => {
            o.contains_key("version")
                && o.get("video").is_some_and(|v| v.is_object())
                && o.contains_key("replays")
        }
        _ => false,
    }
}

fn from_ground_truth(truth: &GroundTruth) -> FoundLabels {
    FoundLabels {
        sport: Some(truth.video.sport.as_str().to_string()),
        league: Some(truth.video.league.clone()),
        broadcaster: Some(truth.video.broadcaster.clone()),
        season: Some(truth.video.season.clone()),
        source: LabelSource::Truth,
        spans: truth
            .segments()
            .segments
            .iter()
            .map(|s| NewLabel {
                start_s: s.start,
                end_s: s.end,
                confidence: None,
            })
            .collect(),
    }
}
