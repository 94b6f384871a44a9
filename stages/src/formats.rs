//! The files that several stages (and the model crate) read and write:
//! `clips.json` from `clips.cut`, and `dataset.json` from `dataset.split`.
//! One definition each, so the writer and every reader agree, and a
//! change of format is made, and versioned, in one place.

use engine_core::stage::{StageEnv, StageError};
use engine_core::store::Item;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The per-video file of `clips.cut`, carried along by `dataset.split`.
pub const CLIPS_FILE: &str = "clips.json";
/// The file of `dataset.split`'s `dataset` output.
pub const DATASET_FILE: &str = "dataset.json";

/// The splits of `dataset.json`, in the order reports show them.
pub const SPLITS: [&str; 3] = ["train", "test", "validation"];

/// A stable 64-bit hash of (seed, text): FNV-1a then the SplitMix64
/// finaliser. Same on every platform and release, unlike `DefaultHasher`.
pub fn stable_hash(seed: u64, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in text.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a clip shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipKind {
    ReplayStart,
    ReplayEnd,
    ReplayContent,
    Negative,
}

impl ClipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClipKind::ReplayStart => "replay_start",
            ClipKind::ReplayEnd => "replay_end",
            ClipKind::ReplayContent => "replay_content",
            ClipKind::Negative => "negative",
        }
    }
}

/// Which kind of negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeKind {
    /// Plain live play.
    Live,
    /// A non-replay graphic (ad banner, lower third, score pop-up, or an
    /// unpaired teacher boundary).
    DistractorGraphic,
    /// A hard cut to another live camera.
    HardCut,
}

/// One sample: a span of the source video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    /// Unique within the video, in time order.
    pub id: String,
    pub start: f64,
    pub end: f64,
    pub kind: ClipKind,
    /// For negatives: which kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative: Option<NegativeKind>,
    /// 1 for the replay kinds, 0 for negatives.
    pub label: u8,
    /// `human`, `teacher` or `truth`.
    pub source: String,
}

/// The `clips.json` file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClipSet {
    pub version: u32,
    pub video: String,
    pub duration: f64,
    pub window: f64,
    pub source: String,
    pub segments: Vec<(f64, f64)>,
    pub clips: Vec<Clip>,
}

impl ClipSet {
    /// No clips: a whole video whose features are wanted for inference only.
    pub fn whole(video: &str) -> ClipSet {
        ClipSet {
            version: 1,
            video: video.into(),
            duration: 0.0,
            window: 0.0,
            source: "none".into(),
            segments: vec![],
            clips: vec![],
        }
    }
}

/// Whether `item` carries a `clips.json` (a video that `clips.cut` handled).
pub fn has_clip_set(item: &Item) -> bool {
    item.files.contains_key(CLIPS_FILE)
}

/// Reads the `clips.json` of `item`, which must have one ([`has_clip_set`]).
pub async fn read_clip_set(ctx: &StageEnv, item: &Item) -> Result<ClipSet, StageError> {
    parse_clip_set(&item.key, &ctx.read(&item.files[CLIPS_FILE]).await?)
}

/// Parses the `clips.json` of video `key`.
pub fn parse_clip_set(key: &str, bytes: &[u8]) -> Result<ClipSet, StageError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StageError::msg(format!(
            "Failed to parse `{CLIPS_FILE}` of video `{key}`: {e}"
        ))
    })
}

/// video -> split, as recorded in a `dataset.json`. Entries without both
/// fields are skipped: only what a later split can anchor on matters.
pub fn dataset_splits(bytes: &[u8]) -> Result<BTreeMap<String, String>, serde_json::Error> {
    let d: Value = serde_json::from_slice(bytes)?;
    Ok(d["videos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["video"].as_str()?.to_string(),
                v["split"].as_str()?.to_string(),
            ))
        })
        .collect())
}
