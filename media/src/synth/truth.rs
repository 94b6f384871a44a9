//! Ground truth written next to each generated video.

use serde::{Deserialize, Serialize};

use super::style::Sport;
use crate::segments::{Segment, Segments};

/// Version of the ground-truth JSON layout.
pub const GROUND_TRUTH_VERSION: u32 = 1;

/// A span of frames, `start_frame` inclusive to `end_frame` exclusive, with
/// the same span in seconds (`frame / fps`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// First frame.
    pub start_frame: u64,
    /// One past the last frame.
    pub end_frame: u64,
    /// `start_frame / fps`.
    pub start: f64,
    /// `end_frame / fps`.
    pub end: f64,
}

impl Span {
    pub(crate) fn new(start_frame: u64, end_frame: u64, fps: f64) -> Span {
        Span {
            start_frame,
            end_frame,
            start: start_frame as f64 / fps,
            end: end_frame as f64 / fps,
        }
    }

    /// Number of frames.
    pub fn frames(&self) -> u64 {
        self.end_frame - self.start_frame
    }

    /// Whether frame `f` lies inside.
    pub fn contains(&self, f: u64) -> bool {
        (self.start_frame..self.end_frame).contains(&f)
    }
}

/// Metadata of a generated video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoMeta {
    /// Base name of the files (`<name>.mp4`, `<name>.json`).
    pub name: String,
    /// Sport.
    pub sport: Sport,
    /// League.
    pub league: String,
    /// Broadcaster.
    pub broadcaster: String,
    /// Season.
    pub season: String,
    /// Catalog style name.
    pub style: String,
    /// Frames per second.
    pub fps: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of frames.
    pub frames: u64,
    /// Duration in seconds (`frames / fps`).
    pub duration: f64,
    /// Generator seed.
    pub seed: u64,
}

/// What happened in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The ball ends in the goal; the score changes.
    Goal,
    /// The ball goes just wide.
    Chance,
}

/// A non-replay graphic or cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistractorKind {
    /// A sponsor banner slides in along the bottom.
    AdBanner,
    /// A name bar slides in at the lower left.
    LowerThird,
    /// A score / statistics box pops up under the score box.
    ScorePopup,
    /// A hard cut to a tight second live camera (normal speed).
    LiveCut,
}

impl DistractorKind {
    /// All kinds.
    pub const ALL: [DistractorKind; 4] = [
        DistractorKind::AdBanner,
        DistractorKind::LowerThird,
        DistractorKind::ScorePopup,
        DistractorKind::LiveCut,
    ];
}

/// Something that happened in live play and may be replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTruth {
    /// 0-based id within the video.
    pub id: u32,
    /// Goal or chance.
    pub kind: EventKind,
    /// Where the event is shown live.
    pub live: Span,
}

/// One replay, from the first frame of its opening transition to the last
/// frame of its closing transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayTruth {
    /// 0-based id within the video.
    pub id: u32,
    /// The event it repeats.
    pub event_id: u32,
    /// Whole replay including transitions.
    pub span: Span,
    /// Opening transition (`None` when the league has no graphics: the replay starts with a hard cut).
    pub opening: Option<Span>,
    /// Closing transition.
    pub closing: Option<Span>,
    /// Slow-motion footage between the transitions.
    pub content: Span,
    /// The live span it repeats (same as the event's).
    pub live: Span,
    /// The live frames the slow motion actually re-shows: all of `live`, or
    /// its beginning when the replay was shortened to fit the video.
    pub shown: Span,
    /// Playback speed (0.25..0.5).
    pub speed: f64,
    /// Replay camera zoom relative to the live camera.
    pub zoom: f64,
    /// Shown from the reverse angle (mirrored).
    pub reverse_angle: bool,
    /// Slow motion repeats source frames instead of interpolating.
    pub repeated_frames: bool,
    /// A pundit draws a circle and an arrow on it.
    pub drawings: bool,
}

/// A non-replay graphic or cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistractorTruth {
    /// What it is.
    pub kind: DistractorKind,
    /// Where it is on screen.
    pub span: Span,
}

/// Exact ground truth of one generated video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundTruth {
    /// Layout version ([`GROUND_TRUTH_VERSION`]).
    pub version: u32,
    /// Video metadata.
    pub video: VideoMeta,
    /// Replays in order.
    pub replays: Vec<ReplayTruth>,
    /// Live events in order.
    pub events: Vec<EventTruth>,
    /// Distractors in order of start.
    pub distractors: Vec<DistractorTruth>,
}

impl GroundTruth {
    /// The replays as [`Segments`] (whole replay spans, transitions included),
    /// with `video` set to `<name>.mp4`.
    pub fn segments(&self) -> Segments {
        Segments {
            video: format!("{}.mp4", self.video.name),
            fps: Some(self.video.fps),
            league: Some(self.video.league.clone()),
            broadcaster: Some(self.video.broadcaster.clone()),
            segments: self
                .replays
                .iter()
                .map(|r| Segment {
                    start: r.span.start,
                    end: r.span.end,
                })
                .collect(),
        }
    }
}
