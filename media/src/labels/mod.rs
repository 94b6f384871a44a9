//! Replay labels from files, all converted to [`Segments`]:
//!
//! - user JSON: one object or an array of objects
//!   `{"video": "...", "fps": 25, "league": "...", "broadcaster": "...", "segments": [{"start": 1.5, "end": 9.0}]}`
//!   (`fps`, `league`, `broadcaster` optional; times in seconds) — [`read_json`];
//! - CSV: `video,start,end[,league,broadcaster]`, an optional header row
//!   naming the columns (any order), `#` comments — [`read_csv`];
//! - SoccerNet-v2 `Labels-cameras.json` camera-change annotations — [`read_soccernet_cameras`].
//!
//! Every reader validates what it reads (finite, `0 <= start < end`, no
//! overlaps within a video) and errors name the file and the line or field.

mod csv;
mod json;
mod soccernet;

use std::path::{Path, PathBuf};

pub use csv::read_csv;
pub use json::{read_json, write_json};
pub use soccernet::read_soccernet_cameras;

use crate::segments::{Segment, Segments};

/// Errors of the label readers.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// The file could not be read.
    #[error("Failed to read labels `{}`: {source}", path.display())]
    Io {
        /// The label file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON or does not have the expected shape.
    #[error("Failed to parse labels `{}` at line {line}, column {column}: {message}", path.display())]
    Syntax {
        /// The label file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("Invalid labels in `{}` at {location}: {message}", path.display())]
    Invalid {
        /// The label file.
        path: PathBuf,
        /// Where: `line 4`, `segments[2].end`, `annotations[17].position`.
        location: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The file's kind could not be told from its name.
    #[error(
        "Failed to read labels `{}`: unknown label format; use a `.json` file, a `.csv` file or SoccerNet's `Labels-cameras.json`",
        path.display()
    )]
    UnknownFormat {
        /// The label file.
        path: PathBuf,
    },
}

/// Reads any supported label file, chosen by name: `Labels-cameras.json`
/// (SoccerNet, videos `1_224p.mkv` / `2_224p.mkv` beside it), `*.json`, `*.csv`.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<Segments>, LabelError> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name == "labels-cameras.json" {
        read_soccernet_cameras(path, "_224p.mkv")
    } else if name.ends_with(".json") {
        read_json(path)
    } else if name.ends_with(".csv") {
        read_csv(path)
    } else {
        Err(LabelError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, LabelError> {
    std::fs::read_to_string(path).map_err(|source| LabelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks one segment; `at` names where it came from.
pub(crate) fn check_segment(path: &Path, at: &str, s: &Segment) -> Result<(), LabelError> {
    let bad = |message: String| {
        Err(LabelError::Invalid {
            path: path.to_path_buf(),
            location: at.to_string(),
            message,
        })
    };
    if !s.start.is_finite() || !s.end.is_finite() {
        return bad("start and end must be finite numbers of seconds".into());
    }
    if s.start < 0.0 {
        return bad(format!(
            "start {} is negative; times are seconds from the video start",
            s.start
        ));
    }
    if s.end <= s.start {
        return bad(format!(
            "end {} is not after start {}; a segment needs end > start",
            s.end, s.start
        ));
    }
    Ok(())
}

/// Sorts segments and rejects overlaps; `name(i)` names the i-th input segment.
pub(crate) fn sort_and_check_overlaps(
    path: &Path,
    segs: &mut [(Segment, String)],
) -> Result<(), LabelError> {
    segs.sort_by(|a, b| a.0.start.total_cmp(&b.0.start));
    for w in segs.windows(2) {
        if w[1].0.start < w[0].0.end {
            return Err(LabelError::Invalid {
                path: path.to_path_buf(),
                location: w[1].1.clone(),
                message: format!(
                    "segment {:.3}..{:.3} overlaps {:.3}..{:.3} (at {}); merge or fix them",
                    w[1].0.start, w[1].0.end, w[0].0.start, w[0].0.end, w[0].1
                ),
            });
        }
    }
    Ok(())
}
