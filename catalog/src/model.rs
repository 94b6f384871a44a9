//! Rows and inputs of the catalog's tables.

use serde::{Deserialize, Serialize};

/// One catalogued video (`videos` table) and how many labels it has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoRow {
    pub id: i64,
    /// Absolute path of the file.
    pub uri: String,
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    pub season: Option<String>,
    pub duration_s: f64,
    pub fps: f64,
    pub width: i64,
    pub height: i64,
    /// RFC 3339 UTC.
    pub added_at: String,
    /// Label rows of any source.
    pub labels: i64,
}

/// A video to insert or update, keyed by `uri`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewVideo {
    pub uri: String,
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    pub season: Option<String>,
    pub duration_s: f64,
    pub fps: f64,
    pub width: i64,
    pub height: i64,
}

/// Which videos [`crate::Catalog::list`] returns; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VideoFilter {
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    pub season: Option<String>,
}

/// A video by row id or by uri.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoKey {
    Id(i64),
    Uri(String),
}

impl From<i64> for VideoKey {
    fn from(id: i64) -> Self {
        VideoKey::Id(id)
    }
}
impl From<&str> for VideoKey {
    fn from(uri: &str) -> Self {
        VideoKey::Uri(uri.to_string())
    }
}
impl From<String> for VideoKey {
    fn from(uri: String) -> Self {
        VideoKey::Uri(uri)
    }
}
impl From<&VideoRow> for VideoKey {
    fn from(v: &VideoRow) -> Self {
        VideoKey::Id(v.id)
    }
}

impl std::fmt::Display for VideoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VideoKey::Id(id) => write!(f, "id {id}"),
            VideoKey::Uri(uri) => write!(f, "`{uri}`"),
        }
    }
}

/// Where a label came from: a person (a label file or a review verdict), a
/// teacher model, or the exact ground truth of a generated video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    Human,
    Teacher,
    /// A synthetic broadcast's ground truth: for evaluation, not a human
    /// verdict, so the teacher still runs on such videos.
    Truth,
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Human => "human",
            LabelSource::Teacher => "teacher",
            LabelSource::Truth => "truth",
        }
    }
}

/// One replay span to store as a label.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewLabel {
    pub start_s: f64,
    pub end_s: f64,
    /// A teacher's confidence; `None` for human labels.
    pub confidence: Option<f64>,
}

/// One row of `labels`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelRow {
    pub id: i64,
    pub video_id: i64,
    pub start_s: f64,
    pub end_s: f64,
    /// `human`, `teacher` or `truth`.
    pub source: String,
    pub confidence: Option<f64>,
    pub created_at: String,
}

/// A model's predicted replay span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewPrediction {
    pub video_id: i64,
    pub model_version: String,
    pub start_s: f64,
    pub end_s: f64,
    pub score: f64,
}

/// A reviewer's verdict on a prediction, or a replay the model missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The prediction is a replay, with the right boundaries.
    Correct,
    /// The prediction is a replay but its boundaries are off; the review's
    /// `start_s` / `end_s` give the true span.
    WrongBoundaries,
    /// The prediction is not a replay.
    FalseAlarm,
    /// Legacy name of [`Verdict::FalseAlarm`] (rows before migration 0003).
    FalsePositive,
    /// A replay no prediction covers (needs `start_s` / `end_s`).
    Missed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::WrongBoundaries => "wrong_boundaries",
            Verdict::FalseAlarm => "false_alarm",
            Verdict::FalsePositive => "false_positive",
            Verdict::Missed => "missed",
        }
    }

    /// Whether the verdict judges a prediction (and so needs `prediction_id`).
    pub fn judges_a_prediction(self) -> bool {
        !matches!(self, Verdict::Missed)
    }

    /// Whether the verdict carries a span (`start_s` / `end_s`).
    pub fn needs_span(self) -> bool {
        matches!(self, Verdict::Missed | Verdict::WrongBoundaries)
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    /// Snake case as stored, or with dashes as typed (`false-alarm`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.replace('-', "_").as_str() {
            "correct" => Ok(Verdict::Correct),
            "wrong_boundaries" => Ok(Verdict::WrongBoundaries),
            "false_alarm" => Ok(Verdict::FalseAlarm),
            "false_positive" => Ok(Verdict::FalsePositive),
            "missed" => Ok(Verdict::Missed),
            _ => Err(format!(
                "unknown verdict `{s}`; expected `correct`, `wrong-boundaries`, `false-alarm` or `missed`"
            )),
        }
    }
}

/// A review to record. Every verdict but `missed` names a prediction;
/// `missed` and `wrong_boundaries` give the replay's (true) span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewReview {
    pub prediction_id: Option<i64>,
    pub video_id: i64,
    pub verdict: Verdict,
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    pub reviewer: String,
}

/// What [`crate::Catalog::import_dir`] did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Video files found.
    pub found: usize,
    /// Videos new to the catalog.
    pub added: usize,
    /// Videos already there (uri seen before), updated.
    pub updated: usize,
    /// Videos whose labels came from a label file.
    pub labelled: usize,
    /// Label spans written.
    pub labels: usize,
    /// Videos that could not be imported, with why.
    pub failed: Vec<ImportFailure>,
    /// Problems that did not stop a video's import (an unreadable label file, ...).
    pub warnings: Vec<String>,
}

/// A video file that was not imported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportFailure {
    pub path: String,
    pub error: String,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} video file(s): {} added, {} updated, {} failed; {} with labels ({} spans)",
            self.found,
            self.added,
            self.updated,
            self.failed.len(),
            self.labelled,
            self.labels
        )
    }
}

/// Why a video goes to the review queue: the teacher's confidence and its
/// proposed replay spans (confidence per span).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewQueueEntry {
    /// The teacher's video-level confidence (`None` when it could not tag).
    pub confidence: Option<f64>,
    pub proposals: Vec<NewLabel>,
    /// Why, in words (low confidence, a decode error, ...).
    pub reason: Option<String>,
    /// Who queued it (e.g. the pipeline task).
    pub queued_by: Option<String>,
}

/// A person's verdict on a queued video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueVerdict {
    /// The teacher's proposals are right.
    Accepted,
    /// The person gave the replay spans.
    Fixed,
}

impl QueueVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueVerdict::Accepted => "accepted",
            QueueVerdict::Fixed => "fixed",
        }
    }
}

/// One row of `review_queue`, with its video's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: i64,
    pub video_id: i64,
    pub uri: String,
    pub sport: Option<String>,
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    /// `pending` or `done`.
    pub status: String,
    pub confidence: Option<f64>,
    pub proposals: Vec<NewLabel>,
    pub reason: Option<String>,
    pub queued_by: Option<String>,
    pub queued_at: String,
    /// `accepted` or `fixed` once done.
    pub verdict: Option<String>,
    pub reviewer: Option<String>,
    pub done_at: Option<String>,
}
