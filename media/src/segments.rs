//! `Segments`: replay spans of one video, the common currency of the label
//! readers and the synthetic ground truth.

use serde::{Deserialize, Serialize};

/// One replay, `start` inclusive to `end` exclusive, in seconds from the video start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds (greater than `start`).
    pub end: f64,
}

impl Segment {
    /// Length in seconds.
    pub fn duration(&self) -> f64 {
        self.end - self.start
    }
}

/// The replay segments of one video, with what is known about it.
///
/// This is also the user JSON label format (see the crate README).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segments {
    /// The video file, as given in the labels (relative paths are relative to the label file's folder).
    pub video: String,
    /// Frame rate, when the label source knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// League, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub league: Option<String>,
    /// Broadcaster, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcaster: Option<String>,
    /// Replay spans, sorted by start.
    pub segments: Vec<Segment>,
}
