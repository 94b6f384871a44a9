//! Synthetic sports broadcasts with exact replay ground truth.
//!
//! A video is live play (a textured field in the sport's colours, a slowly
//! panning camera, moving players, a persistent score box) with events; after
//! some events comes a replay: the league's opening transition graphic, the
//! event again in slow motion from a tighter (and possibly reversed) angle,
//! sometimes with pundit drawings, then a closing transition. Leagues without
//! graphics mark replays only by slow motion and the angle change. Ad banners,
//! lower thirds, score pop-ups and hard cuts to a second live camera act as
//! distractors.
//!
//! Everything is decided by the seed: the same [`VideoSpec`] gives
//! byte-identical frames.

mod draw;
mod plan;
mod render;
mod rng;
mod scene;
mod style;
mod truth;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use render::{Renderer, scoreboard_rect};
pub use style::{
    DistractorStyle, FieldStyle, GraphicStyle, LogoShape, ReplayStyle, Rgb, ScoreboardStyle, Sport,
    Style, WipeShape, find_style, style_by_name, styles,
};
pub use truth::{
    DistractorKind, DistractorTruth, EventKind, EventTruth, GROUND_TRUTH_VERSION, GroundTruth,
    ReplayTruth, Span, VideoMeta,
};

use crate::encode::Encoder;

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// No catalog style matches the request.
    #[error("No style matches {wanted}; available styles: {available}")]
    UnknownStyle {
        /// What was asked for.
        wanted: String,
        /// Style names that exist for the sport.
        available: String,
    },
    /// The size, rate or duration cannot work.
    #[error("Invalid synth spec for `{name}`: {reason}")]
    InvalidSpec {
        /// Video name.
        name: String,
        /// What is wrong and what to pass instead.
        reason: String,
    },
    /// Encoding failed.
    #[error(transparent)]
    Media(#[from] crate::Error),
    /// Writing the ground truth or creating the folder failed.
    #[error("Failed to write `{}`: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Size, rate and length presets.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// 112x112 at 10 fps, 16 s: for tests (one replay guaranteed).
    #[default]
    Small,
    /// 224x224 at 25 fps, 2 minutes: for demos and benchmarks.
    Demo,
}

impl Preset {
    /// `(width, height, fps, duration seconds)`.
    pub fn dimensions(self) -> (u32, u32, f64, f64) {
        match self {
            Preset::Small => (112, 112, 10.0, 16.0),
            Preset::Demo => (224, 224, 25.0, 120.0),
        }
    }
}

/// One video to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoSpec {
    /// Base name of the output files and `video.name` in the ground truth.
    pub name: String,
    /// The look and behaviour.
    pub style: Style,
    /// Width in pixels (even, 32..=4096).
    pub width: u32,
    /// Height in pixels (even, 32..=4096).
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
    /// Length in seconds.
    pub duration: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl VideoSpec {
    /// A spec from a preset.
    pub fn from_preset(
        name: impl Into<String>,
        style: Style,
        preset: Preset,
        seed: u64,
    ) -> VideoSpec {
        let (width, height, fps, duration) = preset.dimensions();
        VideoSpec {
            name: name.into(),
            style,
            width,
            height,
            fps,
            duration,
            seed,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SynthError> {
        let bad = |reason: String| {
            Err(SynthError::InvalidSpec {
                name: self.name.clone(),
                reason,
            })
        };
        if !(32..=4096).contains(&self.width)
            || !(32..=4096).contains(&self.height)
            || self.width % 2 == 1
            || self.height % 2 == 1
        {
            return bad(format!(
                "size {}x{} must be even and between 32 and 4096",
                self.width, self.height
            ));
        }
        if !(self.fps.is_finite() && (1.0..=120.0).contains(&self.fps)) {
            return bad(format!("fps {} must be between 1 and 120", self.fps));
        }
        if !(self.duration.is_finite() && self.duration >= 1.0 && self.duration <= 6.0 * 3600.0) {
            return bad(format!(
                "duration {} s must be between 1 s and 6 h",
                self.duration
            ));
        }
        Ok(())
    }
}

/// A set of videos to generate: styles filtered by sport / league /
/// broadcaster / season, cycled through for `count` videos.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    /// Sport.
    pub sport: Sport,
    /// League; `None` = every league of the sport.
    #[serde(default)]
    pub league: Option<String>,
    /// Broadcaster; `None` = every broadcaster.
    #[serde(default)]
    pub broadcaster: Option<String>,
    /// Season; `None` = every season.
    #[serde(default)]
    pub season: Option<String>,
    /// Size / rate / length preset.
    #[serde(default)]
    pub preset: Preset,
    /// Overrides the preset's width.
    #[serde(default)]
    pub width: Option<u32>,
    /// Overrides the preset's height.
    #[serde(default)]
    pub height: Option<u32>,
    /// Overrides the preset's frame rate.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Overrides the preset's duration in seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Base seed; video `i` uses a seed derived from it, its style and `i`.
    pub seed: u64,
    /// Number of videos.
    pub count: usize,
}

impl SynthSpec {
    /// The catalog styles this spec selects, in catalog order.
    pub fn matching_styles(&self) -> Result<Vec<Style>, SynthError> {
        let all: Vec<Style> = styles()
            .into_iter()
            .filter(|s| s.sport == self.sport)
            .collect();
        let matched: Vec<Style> = all
            .iter()
            .filter(|s| self.league.as_ref().is_none_or(|l| &s.league == l))
            .filter(|s| {
                self.broadcaster
                    .as_ref()
                    .is_none_or(|b| &s.broadcaster == b)
            })
            .filter(|s| self.season.as_ref().is_none_or(|y| &s.season == y))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(SynthError::UnknownStyle {
                wanted: format!(
                    "sport `{}`, league `{}`, broadcaster `{}`, season `{}`",
                    self.sport,
                    self.league.as_deref().unwrap_or("*"),
                    self.broadcaster.as_deref().unwrap_or("*"),
                    self.season.as_deref().unwrap_or("*")
                ),
                available: all
                    .iter()
                    .map(|s| format!("`{}`", s.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(matched)
    }

    /// The per-video specs, named `<league>-<broadcaster>-<season>-<seed>-<i>`.
    pub fn videos(&self) -> Result<Vec<VideoSpec>, SynthError> {
        let matched = self.matching_styles()?;
        let (w, h, fps, duration) = self.preset.dimensions();
        Ok((0..self.count)
            .map(|i| {
                let style = matched[i % matched.len()].clone();
                // Each style (sport, league, broadcaster, season) draws its
                // own videos. Before, the stream depended on `seed` and `i`
                // only, so video `i` of every league had the same events at
                // nearly the same times: a golden set of six leagues held
                // one timeline six times, and training data repeated itself
                // across leagues.
                let stream = rng::Rng::fork(self.seed, rng::Rng::name(&style.name)).next_u64();
                let seed = rng::Rng::fork(stream, 1000 + i as u64).next_u64();
                VideoSpec {
                    name: format!(
                        "{}-{}-{}-{}-{:04}",
                        style.league, style.broadcaster, style.season, self.seed, i
                    ),
                    style,
                    width: self.width.unwrap_or(w),
                    height: self.height.unwrap_or(h),
                    fps: self.fps.unwrap_or(fps),
                    duration: self.duration.unwrap_or(duration),
                    seed,
                }
            })
            .collect())
    }
}

/// The exact ground truth `spec` will produce, computed without rendering
/// (cheap: no pixels, no ffmpeg).
pub fn ground_truth(spec: &VideoSpec) -> Result<GroundTruth, SynthError> {
    render::plan_with_truth(spec).map(|(_, truth)| truth)
}

/// Renders `spec` into `out_mp4` (H.264) and writes its ground truth to
/// `out_json`. `progress(done, total)` is called after every frame.
pub fn generate_video(
    spec: &VideoSpec,
    out_mp4: &Path,
    out_json: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<GroundTruth, SynthError> {
    let mut renderer = Renderer::new(spec)?;
    let total = renderer.frame_count();
    let mut frame = vec![0u8; renderer.frame_len()];
    let mut enc = Encoder::create(out_mp4, spec.width, spec.height, spec.fps)?;
    for f in 0..total {
        renderer.render(f, &mut frame);
        enc.write_frame(&frame)?;
        progress(f + 1, total);
    }
    enc.finish()?;
    let truth = renderer.ground_truth().clone();
    write_json(out_json, &truth)?;
    Ok(truth)
}

/// Generates every video of `spec` into `out_dir` as `<name>.mp4` +
/// `<name>.json`. `progress(done, total)` counts frames over the whole set.
pub fn generate_set(
    spec: &SynthSpec,
    out_dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<GroundTruth>, SynthError> {
    let videos = spec.videos()?;
    std::fs::create_dir_all(out_dir).map_err(|source| SynthError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let total: u64 = videos
        .iter()
        .map(|v| (v.duration * v.fps).round() as u64)
        .sum();
    let mut base = 0;
    let mut out = Vec::with_capacity(videos.len());
    for v in &videos {
        let mp4 = out_dir.join(format!("{}.mp4", v.name));
        let json = out_dir.join(format!("{}.json", v.name));
        let truth = generate_video(v, &mp4, &json, &mut |done, _| progress(base + done, total))?;
        base += truth.video.frames;
        out.push(truth);
    }
    Ok(out)
}

fn write_json(path: &Path, truth: &GroundTruth) -> Result<(), SynthError> {
    let io = |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(truth).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.partial");
    std::fs::write(&tmp, text + "\n").map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
