//! The user JSON label format (the serde form of [`Segments`]).

use std::path::Path;

use serde::Deserialize;

use super::{LabelError, check_segment, read_text, sort_and_check_overlaps};
use crate::segments::Segments;

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Segments>),
    One(Segments),
}

/// Reads a JSON label file: one [`Segments`] object or an array of them.
pub fn read_json(path: impl AsRef<Path>) -> Result<Vec<Segments>, LabelError> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| syntax(path, &e))?;
    // Parse from text (not the Value) so shape errors keep their line numbers.
    let parsed = match value {
        serde_json::Value::Array(_) => {
            serde_json::from_str::<Vec<Segments>>(&text).map(OneOrMany::Many)
        }
        _ => serde_json::from_str::<Segments>(&text).map(OneOrMany::One),
    }
    .map_err(|e| syntax(path, &e))?;
    let (list, many) = match parsed {
        OneOrMany::Many(v) => (v, true),
        OneOrMany::One(s) => (vec![s], false),
    };
    let mut out = Vec::with_capacity(list.len());
    for (vi, mut s) in list.into_iter().enumerate() {
        let prefix = if many {
            format!("[{vi}].")
        } else {
            String::new()
        };
        if s.video.trim().is_empty() {
            return Err(LabelError::Invalid {
                path: path.to_path_buf(),
                location: format!("{prefix}video"),
                message: "the video name is empty; give the video file name".into(),
            });
        }
        if let Some(fps) = s.fps
            && !(fps.is_finite() && fps > 0.0)
        {
            return Err(LabelError::Invalid {
                path: path.to_path_buf(),
                location: format!("{prefix}fps"),
                message: format!("fps {fps} must be a positive number"),
            });
        }
        let mut segs = Vec::with_capacity(s.segments.len());
        for (i, seg) in s.segments.iter().enumerate() {
            let at = format!("{prefix}segments[{i}]");
            check_segment(path, &at, seg)?;
            segs.push((*seg, at));
        }
        sort_and_check_overlaps(path, &mut segs)?;
        s.segments = segs.into_iter().map(|(s, _)| s).collect();
        out.push(s);
    }
    Ok(out)
}

/// Writes segments in the JSON label format (an array of objects).
pub fn write_json(path: impl AsRef<Path>, segments: &[Segments]) -> Result<(), LabelError> {
    let path = path.as_ref();
    let text = serde_json::to_string_pretty(segments).expect("segments serialize");
    std::fs::write(path, text + "\n").map_err(|source| LabelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn syntax(path: &Path, e: &serde_json::Error) -> LabelError {
    // serde_json appends " at line L column C"; we report those separately.
    let msg = e.to_string();
    let message = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    LabelError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message,
    }
}
