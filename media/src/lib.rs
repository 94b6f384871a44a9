//! `media`: everything the pipeline needs to touch video, without torch and
//! without the engine.
//!
//! - Video I/O through the `ffmpeg` / `ffprobe` command-line tools over pipes:
//!   [`probe`], [`FrameReader`] (streaming RGB24 decode), [`Encoder`]
//!   (RGB24 -> H.264 mp4), [`cut`] and [`frame_motion`] (how fast the
//!   picture moves at the source rate: slow motion against live play).
//! - [`synth`]: a deterministic synthetic broadcast generator with exact
//!   replay ground truth.
//! - [`labels`]: replay labels from user JSON / CSV files and SoccerNet-v2
//!   camera annotations, all converted to [`Segments`].
//!
//! Errors of the video I/O are [`Error`]; every message names the file and
//! says what to do next.

#![warn(missing_docs)]

mod cut;
mod decode;
mod encode;
mod error;
mod motion;
mod probe;
mod process;
mod segments;

pub mod labels;
pub mod synth;

pub use cut::cut;
pub use decode::{DecodeOptions, Frame, FrameReader, Resize};
pub use encode::Encoder;
pub use error::{Error, Result};
pub use motion::{
    MOTION_CHANNELS, REPEAT_BELOW, frame_motion, frame_motion_of, motion_decode_options,
};
pub use probe::{Rational, VideoInfo, probe};
pub use process::{FFMPEG_ENV, FFPROBE_ENV};
pub use segments::{Segment, Segments};
