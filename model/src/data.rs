//! The dataset as the model stages see it: videos with their split, group
//! (league, broadcaster), replay segments and clip spans; and the JSON that
//! `features.extract` attaches to each video's features.

use engine_core::stage::{StageEnv, StageError};
use engine_core::store::Item;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stages::formats::{ClipSet, has_clip_set, read_clip_set};
use std::path::Path;
use tch::Tensor;

/// The file `features.extract` writes per video: the whole sequence
/// (`video`, `[frames, dim]`) and one tensor per clip.
pub const FEATURES_FILE: &str = "features.safetensors";

/// Reads the whole-video tensor of a [`FEATURES_FILE`].
pub fn read_video_features(path: &Path, key: &str) -> Result<Tensor, StageError> {
    Tensor::read_safetensors(path)
        .map_err(crate::torch_err(format!(
            "Failed to read the features of video `{key}`"
        )))?
        .into_iter()
        .find(|(n, _)| n == "video")
        .map(|(_, t)| t.to_kind(tch::Kind::Float))
        .ok_or_else(|| {
            StageError::msg(format!(
                "the features of video `{key}` have no `video` tensor; rerun `features.extract`"
            ))
        })
}

/// One video of the dataset.
#[derive(Clone, Debug)]
pub struct DatasetVideo {
    pub item: Item,
    pub split: String,
    pub league: String,
    pub broadcaster: String,
    pub set: ClipSet,
}

fn meta_str(item: &Item, key: &str) -> String {
    item.meta
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string()
}

/// The videos of the input collections that carry `clips.json` (the
/// output of `dataset.split`), sorted by key.
pub async fn dataset_videos(
    ctx: &StageEnv,
    from: Option<&str>,
) -> Result<Vec<DatasetVideo>, StageError> {
    let mut items: Vec<Item> = ctx
        .input_items(from)
        .filter(|i| has_clip_set(i))
        .cloned()
        .collect();
    items.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = vec![];
    for item in items {
        let set = read_clip_set(ctx, &item).await?;
        out.push(DatasetVideo {
            split: meta_str(&item, "split"),
            league: meta_str(&item, "league"),
            broadcaster: meta_str(&item, "broadcaster"),
            item,
            set,
        });
    }
    Ok(out)
}

/// A clip as a span of frames of its video's feature sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipFrames {
    pub id: String,
    pub kind: String,
    pub label: u8,
    pub first: i64,
}

/// What `features.extract` records about a video's features (item meta
/// `features`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureInfo {
    /// Digest of the backbone artifact that produced them.
    pub backbone: String,
    pub dim: i64,
    pub fps: f64,
    /// Frames in the video at `fps` (rows of the `video` tensor).
    pub frames: i64,
    /// Frames per clip.
    pub window: i64,
    pub split: String,
    pub league: String,
    pub broadcaster: String,
    /// Replay segments (seconds) the targets come from.
    pub segments: Vec<(f64, f64)>,
    /// Where the labels came from: `human`, `teacher` or `truth`.
    pub source: String,
    pub clips: Vec<ClipFrames>,
}

impl FeatureInfo {
    pub fn of(item: &Item) -> Result<FeatureInfo, StageError> {
        let v = item.meta.get("features").ok_or_else(|| {
            StageError::msg(format!(
                "item `{}` has no `features` meta; the input must come from `features.extract`",
                item.key
            ))
        })?;
        serde_json::from_value(v.clone()).map_err(|e| {
            StageError::msg(format!(
                "item `{}`: its `features` meta is not from this version of `features.extract` ({e}); rerun it",
                item.key
            ))
        })
    }
}

/// First frame of a clip starting at `start` seconds, kept inside the video.
pub fn clip_first(start: f64, fps: f64, window: i64, frames: i64) -> i64 {
    ((start * fps).round() as i64).clamp(0, (frames - window).max(0))
}
