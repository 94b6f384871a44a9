//! How fast the picture moves, measured at the source's full frame rate and
//! summarised per sampled frame.
//!
//! A model that sees a video at a few frames per second cannot tell slow
//! motion from a live camera that happens to show little movement: a
//! replay without graphics and a live cut to a tight shot after play stops
//! look alike frame by frame. At the source rate they differ. Slow motion
//! either repeats frames (a run of identical pictures, then a jump) or
//! interpolates them (small, even changes), where live play changes every
//! frame by the real amount. [`frame_motion`] decodes the video at its own
//! rate, small and grey, and gives each frame of an `fps` sampling three
//! numbers about the source frames it stands for (see [`MOTION_CHANNELS`]).

use crate::{DecodeOptions, FrameReader, Resize, Result};
use std::path::Path;

/// Numbers per sampled frame, in this order:
/// 1. `ln(1 + mean change)`: the mean absolute grey-level change between
///    consecutive source frames (0-255 scale), averaged over the sample's
///    source frames;
/// 2. the fraction of those changes that are repeats (below
///    [`REPEAT_BELOW`]): near 0 in live play, 0.5-0.75 in repeated-frame
///    slow motion;
/// 3. `ln(1 + largest change)`: a hard cut shows as one spike;
/// 4. the video's slow-motion style, the same for every sample: the highest
///    share of repeats over any second of the video. A broadcaster either
///    repeats frames in its slow motion (this is high) or interpolates them
///    (this is near 0), so a stretch without repeats means live play in the
///    first kind of video and says nothing in the second.
pub const MOTION_CHANNELS: usize = 4;

/// A change below this (mean absolute grey level, 0-255) counts as a
/// repeated frame: what an encoder leaves of an identical source frame.
pub const REPEAT_BELOW: f64 = 0.35;

/// Side of the square, grey picture the changes are measured on.
const SIDE: u32 = 48;

/// Motion statistics of `path` per frame of a sampling at `fps`:
/// `out[i]` describes the source frames whose time rounds to sample `i`
/// (`round(t * fps) == i`, as ffmpeg's `fps` filter picks them). Samples
/// with no measured change (the first) are zero but for the video's
/// slow-motion style. `stop` is polled every
/// source frame; when it returns true, decoding stops and what was
/// measured so far is returned.
pub fn frame_motion(
    path: &Path,
    fps: f64,
    stop: impl Fn() -> bool,
) -> Result<Vec<[f32; MOTION_CHANNELS]>> {
    frame_motion_of(
        FrameReader::open(path, &motion_decode_options())?,
        fps,
        stop,
    )
}

/// How [`frame_motion`] decodes a video: every source frame, small and
/// grey-ready. Pass it with other options to [`FrameReader::open_pair`] to
/// measure motion from the decode another consumer already pays for.
pub fn motion_decode_options() -> DecodeOptions {
    DecodeOptions {
        width: Some(SIDE),
        height: Some(SIDE),
        resize: Resize::Stretch,
        ..Default::default()
    }
}

/// [`frame_motion`] over the frames of a reader opened with
/// [`motion_decode_options`]; the reader is dropped (its ffmpeg stopped)
/// on return.
pub fn frame_motion_of(
    mut reader: FrameReader,
    fps: f64,
    stop: impl Fn() -> bool,
) -> Result<Vec<[f32; MOTION_CHANNELS]>> {
    let mut frame = crate::Frame::default();
    let mut prev: Vec<u8> = Vec::new();
    let mut grey = Vec::with_capacity((SIDE * SIDE) as usize);
    let mut acc = Acc::default();
    let mut out: Vec<[f32; MOTION_CHANNELS]> = Vec::new();
    let mut current: Option<usize> = None;
    while !stop() && reader.read_frame(&mut frame)? {
        grey.clear();
        grey.extend(
            frame
                .data
                .chunks_exact(3)
                .map(|p| ((p[0] as u16 * 77 + p[1] as u16 * 150 + p[2] as u16 * 29) >> 8) as u8),
        );
        let sample = (frame.pts_seconds * fps).round().max(0.0) as usize;
        if current != Some(sample) {
            if let Some(c) = current {
                put(&mut out, c, acc.finish());
            }
            acc = Acc::default();
            current = Some(sample);
        }
        if prev.len() == grey.len() {
            let sum: u64 = prev
                .iter()
                .zip(&grey)
                .map(|(a, b)| a.abs_diff(*b) as u64)
                .sum();
            acc.add(sum as f64 / grey.len() as f64);
        }
        std::mem::swap(&mut prev, &mut grey);
    }
    if let Some(c) = current {
        put(&mut out, c, acc.finish());
    }
    let style = repeat_style(&out, (fps.round() as usize).max(1));
    for v in &mut out {
        v[3] = style;
    }
    Ok(out)
}

/// The highest mean repeat share over `window` consecutive samples.
fn repeat_style(m: &[[f32; MOTION_CHANNELS]], window: usize) -> f32 {
    if m.is_empty() {
        return 0.0;
    }
    let w = window.min(m.len());
    let mut sum: f32 = m[..w].iter().map(|v| v[1]).sum();
    let mut best = sum;
    for i in w..m.len() {
        sum += m[i][1] - m[i - w][1];
        best = best.max(sum);
    }
    (best / w as f32).clamp(0.0, 1.0)
}

fn put(out: &mut Vec<[f32; MOTION_CHANNELS]>, i: usize, v: [f32; MOTION_CHANNELS]) {
    if out.len() <= i {
        out.resize(i + 1, [0.0; MOTION_CHANNELS]);
    }
    out[i] = v;
}

#[derive(Default)]
struct Acc {
    n: u32,
    sum: f64,
    repeats: u32,
    max: f64,
}

impl Acc {
    fn add(&mut self, change: f64) {
        self.n += 1;
        self.sum += change;
        self.max = self.max.max(change);
        if change < REPEAT_BELOW {
            self.repeats += 1;
        }
    }
    fn finish(&self) -> [f32; MOTION_CHANNELS] {
        if self.n == 0 {
            return [0.0; MOTION_CHANNELS];
        }
        let n = self.n as f64;
        [
            (self.sum / n).ln_1p() as f32,
            (self.repeats as f64 / n) as f32,
            self.max.ln_1p() as f32,
            0.0,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_of_no_changes_is_zero_and_repeats_count_below_the_threshold() {
        assert_eq!(Acc::default().finish(), [0.0; MOTION_CHANNELS]);
        let mut a = Acc::default();
        for c in [0.0, 4.0, 0.2, 7.8] {
            a.add(c);
        }
        let [mean, repeats, max, _] = a.finish();
        assert!((mean as f64 - 3.0f64.ln_1p()).abs() < 1e-6);
        assert_eq!(repeats, 0.5);
        assert!((max as f64 - 7.8f64.ln_1p()).abs() < 1e-6);
    }

    #[test]
    fn the_style_is_the_busiest_second_of_repeats() {
        let v = |r: f32| [0.0, r, 0.0, 0.0];
        assert_eq!(repeat_style(&[], 5), 0.0);
        let m = [v(0.0), v(0.0), v(0.6), v(0.8), v(0.0), v(0.0)];
        assert!((repeat_style(&m, 2) - 0.7).abs() < 1e-6);
        // A window longer than the video averages all of it.
        assert!((repeat_style(&m, 10) - 1.4 / 6.0).abs() < 1e-6);
    }
}
