//! SoccerNet-v2 camera labels (`Labels-cameras.json`).
//!
//! Each annotation marks a camera change: `gameTime` `"H - MM:SS"` (half
//! H), `position` in milliseconds from the start of that half's video,
//! `label` the new camera, and `replay` `"replay"` or `"real-time"` for the
//! shot that starts there. A replay segment runs from the first change
//! flagged `replay` after a real-time shot to the next change flagged
//! real-time; consecutive replay shots (several angles) merge into one
//! segment. A replay still open at the last annotation of a half has no
//! known end and is left out.

use std::path::Path;

use serde::Deserialize;

use super::{LabelError, read_text};
use crate::segments::{Segment, Segments};

#[derive(Deserialize)]
struct File {
    annotations: Option<Vec<serde_json::Value>>,
}

struct Change {
    half: u32,
    ms: f64,
    replay: bool,
}

/// Reads SoccerNet-v2 camera annotations into one [`Segments`] per half
/// that has annotations, with `video` = the label file's folder joined with
/// `"{half}{video_suffix}"` (e.g. `_224p.mkv` gives `1_224p.mkv`). The league
/// is taken from the SoccerNet folder layout `league/season/game/` when present.
pub fn read_soccernet_cameras(
    path: impl AsRef<Path>,
    video_suffix: &str,
) -> Result<Vec<Segments>, LabelError> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let file: File = serde_json::from_str(&text).map_err(|e| LabelError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string(),
    })?;
    let annotations = file.annotations.ok_or_else(|| LabelError::Invalid {
        path: path.to_path_buf(),
        location: "annotations".into(),
        message: "missing field `annotations`; is this a SoccerNet `Labels-cameras.json`?".into(),
    })?;
    let mut changes = Vec::with_capacity(annotations.len());
    for (i, a) in annotations.iter().enumerate() {
        changes.push(parse_change(path, i, a)?);
    }
    changes.sort_by(|a, b| (a.half, a.ms).partial_cmp(&(b.half, b.ms)).expect("finite"));

    let dir = path.parent().unwrap_or(Path::new(""));
    let league = dir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n != "." && n != "..");
    let mut out: Vec<Segments> = Vec::new();
    let mut open: Option<f64> = None;
    let mut half = None;
    for c in &changes {
        if half != Some(c.half) {
            half = Some(c.half);
            open = None;
            out.push(Segments {
                video: dir
                    .join(format!("{}{video_suffix}", c.half))
                    .to_string_lossy()
                    .into_owned(),
                fps: None,
                league: league.clone(),
                broadcaster: None,
                segments: Vec::new(),
            });
        }
        let secs = c.ms / 1000.0;
        match (c.replay, open) {
            (true, None) => open = Some(secs),
            (false, Some(start)) => {
                if secs > start {
                    out.last_mut()
                        .expect("pushed above")
                        .segments
                        .push(Segment { start, end: secs });
                }
                open = None;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn parse_change(path: &Path, i: usize, a: &serde_json::Value) -> Result<Change, LabelError> {
    let bad = |field: &str, message: String| LabelError::Invalid {
        path: path.to_path_buf(),
        location: format!("annotations[{i}].{field}"),
        message,
    };
    let game_time = a.get("gameTime").and_then(|v| v.as_str()).ok_or_else(|| {
        bad(
            "gameTime",
            "missing or not a string; expected e.g. \"1 - 05:23\"".into(),
        )
    })?;
    let half: u32 = game_time
        .split_once('-')
        .and_then(|(h, _)| h.trim().parse().ok())
        .filter(|h| *h >= 1)
        .ok_or_else(|| {
            bad(
                "gameTime",
                format!(
                    "`{game_time}` does not start with a half number; expected e.g. \"1 - 05:23\""
                ),
            )
        })?;
    let ms = match a.get("position") {
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        _ => None,
    }
    .filter(|v| v.is_finite() && *v >= 0.0)
    .ok_or_else(|| {
        bad(
            "position",
            "missing or not a non-negative number of milliseconds".into(),
        )
    })?;
    let replay = match a
        .get("replay")
        .and_then(|v| v.as_str())
        .map(str::to_lowercase)
        .as_deref()
    {
        Some("replay") => true,
        Some("real-time" | "realtime" | "live") => false,
        Some(other) => {
            return Err(bad(
                "replay",
                format!("`{other}` is neither \"replay\" nor \"real-time\""),
            ));
        }
        None => {
            return Err(bad(
                "replay",
                "missing; expected \"replay\" or \"real-time\"".into(),
            ));
        }
    };
    Ok(Change { half, ms, replay })
}
