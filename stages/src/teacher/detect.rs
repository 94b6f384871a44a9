//! The graphic-detection teacher: frame-level cues only, no temporal model.
//!
//! A replay wipe paints a large share of the picture in the league's
//! graphic colours, which live play almost never shows. Per video we take
//! the median colour histogram over all frames (live play is the majority,
//! so the median is the live look), call a colour bin *rare* when its median
//! share is tiny, and score each frame by the share of its pixels in rare
//! bins. A burst of frames above `threshold` is one boundary. The teacher
//! cannot tell an opening wipe from a closing one: consecutive boundaries
//! are paired into proposed replay segments.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Colour levels per channel (3 bits): 512 histogram bins.
const LEVELS: usize = 8;
const BINS: usize = LEVELS * LEVELS * LEVELS;

/// Tunable knobs of the teacher (also the `with:` params of `teacher.tag`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectParams {
    /// Frames per second the video is decoded at for analysis.
    #[serde(default = "d_fps")]
    pub fps: f64,
    /// Side of the square the frames are scaled to (pixels).
    #[serde(default = "d_size")]
    pub size: u32,
    /// A colour bin is rare when its median share over the video is below this.
    #[serde(default = "d_rare")]
    pub rare_share: f64,
    /// A frame whose most common colour exceeds its median share by more
    /// than this is a full-frame graphic (scored by the excess above it).
    #[serde(default = "d_uniform_floor")]
    pub uniform_floor: f64,
    /// A frame is a graphic frame when its rare-colour share exceeds this.
    #[serde(default = "d_threshold")]
    pub threshold: f64,
    /// Rare-colour share at which a boundary gets full confidence.
    #[serde(default = "d_strong")]
    pub strong: f64,
    /// A boundary's extent is the part of its burst above this share of
    /// the burst's peak (its time is the middle of that part).
    #[serde(default = "d_core")]
    pub core: f64,
    /// Bursts closer than this (seconds) merge into one.
    #[serde(default = "d_merge_gap")]
    pub merge_gap: f64,
    /// Bursts shorter than this (seconds) are dropped.
    #[serde(default = "d_min_burst")]
    pub min_burst: f64,
    /// Bursts longer than this (seconds) are not wipes (e.g. a graphic studio
    /// shot) and are dropped.
    #[serde(default = "d_max_burst")]
    pub max_burst: f64,
    /// A frame difference (0..1) above this, and `cut_ratio` times its
    /// neighbours', outside graphics, is a hard cut.
    #[serde(default = "d_cut_diff")]
    pub cut_diff: f64,
    /// How far a cut's difference must stand above its neighbours'.
    #[serde(default = "d_cut_ratio")]
    pub cut_ratio: f64,
    /// Shortest replay (seconds between two paired boundaries).
    #[serde(default = "d_min_replay")]
    pub min_replay: f64,
    /// Longest replay; boundaries farther apart are not paired.
    #[serde(default = "d_max_replay")]
    pub max_replay: f64,
    /// A stretch whose rare-colour share stands this far above the video's
    /// median share (too little for a wipe: a score pop-up, a lower third,
    /// an ad banner) is a non-replay graphic, reported as a hard negative
    /// for training. 0 turns it off. (On generated demo videos, where live
    /// play sits near 0.04, 0.03 found about two graphics in three with no
    /// false ones outside replays.)
    #[serde(default = "d_overlay")]
    pub overlay: f64,
    /// Shortest non-replay graphic (seconds): wipes are shorter, overlays
    /// stay on screen for seconds.
    #[serde(default = "d_min_overlay")]
    pub min_overlay: f64,
}

fn d_fps() -> f64 {
    10.0
}
fn d_size() -> u32 {
    64
}
fn d_rare() -> f64 {
    0.002
}
fn d_uniform_floor() -> f64 {
    0.4
}
fn d_threshold() -> f64 {
    0.2
}
fn d_strong() -> f64 {
    0.4
}
fn d_core() -> f64 {
    0.8
}
fn d_merge_gap() -> f64 {
    0.45
}
fn d_min_burst() -> f64 {
    0.15
}
fn d_max_burst() -> f64 {
    6.0
}
fn d_cut_diff() -> f64 {
    0.08
}
fn d_cut_ratio() -> f64 {
    2.5
}
fn d_min_replay() -> f64 {
    1.0
}
fn d_max_replay() -> f64 {
    90.0
}
fn d_overlay() -> f64 {
    0.03
}
fn d_min_overlay() -> f64 {
    1.0
}

impl Default for DetectParams {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("defaults deserialise")
    }
}

impl DetectParams {
    pub fn check(&self) -> Result<(), String> {
        let pos = |n: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("`{n}` must be a positive number, got {v}"))
            }
        };
        pos("fps", self.fps)?;
        pos("threshold", self.threshold)?;
        pos("strong", self.strong)?;
        pos("max_burst", self.max_burst)?;
        pos("max_replay", self.max_replay)?;
        if !(8..=512).contains(&self.size) {
            return Err(format!(
                "`size` must be between 8 and 512, got {}",
                self.size
            ));
        }
        if !(0.0..1.0).contains(&self.rare_share) {
            return Err(format!(
                "`rare_share` must be in [0, 1), got {}",
                self.rare_share
            ));
        }
        if self.strong <= self.threshold {
            return Err(format!(
                "`strong` ({}) must be above `threshold` ({})",
                self.strong, self.threshold
            ));
        }
        Ok(())
    }
}

/// Per-frame cues.
#[derive(Clone, Debug)]
pub struct FrameCues {
    /// Pixel counts per colour bin.
    pub hist: Vec<u16>,
    /// Mean absolute difference to the previous frame, 0..1.
    pub diff: f32,
}

/// The frame cues of a whole video, at `fps`.
#[derive(Clone, Debug)]
pub struct VideoCues {
    pub fps: f64,
    pub pixels: u32,
    pub frames: Vec<FrameCues>,
}

/// One candidate graphic boundary: a burst of graphic frames.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Boundary {
    /// Middle of the burst (seconds): the boundary's time.
    pub time: f64,
    /// First graphic frame (seconds).
    pub start: f64,
    /// End of the last graphic frame (seconds).
    pub end: f64,
    /// Highest rare-colour share in the burst.
    pub peak: f64,
    /// 0..1.
    pub confidence: f64,
}

/// A proposed replay: two consecutive boundaries, open and close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub start: f64,
    pub end: f64,
    pub confidence: f64,
}

/// What the teacher says about one video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub boundaries: Vec<Boundary>,
    pub segments: Vec<Proposal>,
    /// Hard cuts (seconds): abrupt changes that are not graphics.
    #[serde(default)]
    pub cuts: Vec<f64>,
    /// Non-replay graphics (seconds they appear): stretches of rare colour
    /// too weak for a wipe and too long for one, away from every boundary.
    #[serde(default)]
    pub overlays: Vec<f64>,
    /// Boundaries no partner could be found for.
    pub unpaired: usize,
    /// 0..1: how much the teacher trusts its own tags for this video.
    pub confidence: f64,
    /// Analysed frames and rate.
    pub frames: usize,
    pub fps: f64,
}

/// Decodes `path` at the analysis rate and size with ffmpeg on `threads`
/// (the task's CPU grant; `None`: one per core) and computes the cues,
/// streaming (memory grows with frames x 1 KiB, not with pixels).
pub fn cues_from_video(
    path: &Path,
    p: &DetectParams,
    threads: Option<usize>,
    cancel: &dyn Fn() -> bool,
) -> Result<VideoCues, String> {
    let opts = media::DecodeOptions {
        fps: Some(p.fps),
        width: Some(p.size),
        height: Some(p.size),
        resize: media::Resize::Stretch,
        threads,
        ..Default::default()
    };
    let mut reader = media::FrameReader::open(path, &opts).map_err(|e| e.to_string())?;
    let fps = reader.fps();
    let mut frame = media::Frame::default();
    let mut prev: Vec<u8> = vec![];
    let mut frames = vec![];
    while reader.read_frame(&mut frame).map_err(|e| e.to_string())? {
        if cancel() {
            return Err("cancelled".into());
        }
        frames.push(cues_of_frame(&frame.data, &prev));
        std::mem::swap(&mut prev, &mut frame.data);
    }
    Ok(VideoCues {
        fps,
        pixels: p.size * p.size,
        frames,
    })
}

/// The cues of one RGB24 frame, given the previous one (empty for the first).
pub fn cues_of_frame(rgb: &[u8], prev: &[u8]) -> FrameCues {
    let mut hist = vec![0u16; BINS];
    for px in rgb.chunks_exact(3) {
        let b = (px[0] as usize >> 5) * LEVELS * LEVELS
            + (px[1] as usize >> 5) * LEVELS
            + (px[2] as usize >> 5);
        hist[b] = hist[b].saturating_add(1);
    }
    let diff = if prev.len() == rgb.len() && !rgb.is_empty() {
        let s: u64 = rgb
            .iter()
            .zip(prev)
            .map(|(a, b)| a.abs_diff(*b) as u64)
            .sum();
        s as f32 / (rgb.len() as f32 * 255.0)
    } else {
        0.0
    };
    FrameCues { hist, diff }
}

/// Rare-colour share per frame.
pub fn graphic_signal(c: &VideoCues, p: &DetectParams) -> Vec<f64> {
    let n = c.frames.len();
    if n == 0 {
        return vec![];
    }
    let px = c.pixels.max(1) as f64;
    // Median count of the rare bins (`None`: one of the live look's colours).
    let mut base: Vec<Option<f64>> = vec![None; BINS];
    let mut meds = vec![0.0; BINS];
    let mut col = vec![0u16; n];
    for (b, r) in base.iter_mut().enumerate() {
        for (t, f) in c.frames.iter().enumerate() {
            col[t] = f.hist[b];
        }
        let mid = n / 2;
        let (_, med, _) = col.select_nth_unstable(mid);
        let med = *med as f64;
        meds[b] = med;
        *r = (med / px < p.rare_share).then_some(med);
    }
    c.frames
        .iter()
        .map(|f| {
            let excess: f64 = f
                .hist
                .iter()
                .zip(&base)
                .filter_map(|(h, m)| m.map(|m| (*h as f64 - m).max(0.0)))
                .sum();
            // A full-frame graphic in a colour live play also shows (an
            // iris wipe at full cover): one bin far above its median.
            let uniform = f
                .hist
                .iter()
                .zip(&meds)
                .map(|(h, m)| *h as f64 - m)
                .fold(0.0, f64::max);
            (excess / px).max(uniform / px - p.uniform_floor)
        })
        .collect()
}

/// Runs the teacher on a video's cues.
pub fn detect(c: &VideoCues, p: &DetectParams) -> Detection {
    let s = graphic_signal(c, p);
    let fps = c.fps;
    let dt = 1.0 / fps;
    // Runs of graphic frames, merged across short gaps.
    let mut runs: Vec<(usize, usize)> = vec![];
    for (t, v) in s.iter().enumerate() {
        if *v <= p.threshold {
            continue;
        }
        match runs.last_mut() {
            Some((_, e)) if (t - *e) as f64 * dt <= p.merge_gap + 1e-9 => *e = t + 1,
            _ => runs.push((t, t + 1)),
        }
    }
    let boundaries: Vec<Boundary> = runs
        .into_iter()
        .filter_map(|(a, b)| {
            let len = (b - a) as f64 * dt;
            if len + 1e-9 < p.min_burst || len > p.max_burst {
                return None;
            }
            let peak = s[a..b].iter().cloned().fold(0.0, f64::max);
            let strength = ((peak - p.threshold) / (p.strong - p.threshold)).clamp(0.0, 1.0);
            let confidence = 0.5 + 0.5 * strength;
            // The wipe is the part of the run near its peak: a run can
            // start early on a plateau of rare colour (a zoomed replay shot).
            let half = peak * p.core;
            let first = (a..b).find(|&t| s[t] >= half).unwrap_or(a);
            let last = (a..b).rev().find(|&t| s[t] >= half).unwrap_or(b - 1);
            let (start, end) = (first as f64 * dt, (last + 1) as f64 * dt);
            Some(Boundary {
                time: (start + end) / 2.0,
                start,
                end,
                peak,
                confidence,
            })
        })
        .collect();
    let cuts = hard_cuts(c, &s, &boundaries, p);
    let overlays = overlays(&s, fps, &boundaries, p);
    let (segments, left) = pair(&boundaries, p);
    let confidence = video_confidence(&boundaries, &segments, &left);
    let unpaired = left.len();
    Detection {
        boundaries,
        cuts,
        overlays,
        segments,
        unpaired,
        confidence,
        frames: s.len(),
        fps,
    }
}

/// Isolated spikes of frame difference away from any graphic burst.
pub fn hard_cuts(c: &VideoCues, s: &[f64], boundaries: &[Boundary], p: &DetectParams) -> Vec<f64> {
    let d: Vec<f64> = c.frames.iter().map(|f| f.diff as f64).collect();
    let dt = 1.0 / c.fps;
    let mut out = vec![];
    for t in 1..d.len() {
        if d[t] <= p.cut_diff || s[t] > p.threshold {
            continue;
        }
        let lo = t.saturating_sub(5);
        let hi = (t + 6).min(d.len());
        // Repeated frames (slow motion) differ by ~0: leave them out, or
        // every moving frame between two repeats looks like a cut; with
        // too few moving neighbours there is nothing to compare with.
        let mut around: Vec<f64> = (lo..hi)
            .filter(|&u| u != t && d[u] > 0.005)
            .map(|u| d[u])
            .collect();
        if around.len() < 4 {
            continue;
        }
        around.sort_by(f64::total_cmp);
        let med = around[around.len() / 2];
        let time = t as f64 * dt;
        let near_graphic = boundaries
            .iter()
            .any(|b| time >= b.start - 0.5 && time <= b.end + 0.5);
        if d[t] >= p.cut_ratio * med.max(0.01) && !near_graphic {
            out.push(time);
        }
    }
    out
}

/// Stretches of at least `min_overlay` seconds where the rare-colour share
/// stays `overlay` above the video's median (live play: noise, crowd and
/// kit colours), more than half a second from every boundary: a
/// graphic that is not a replay wipe. Their start times: a model that fires
/// on "a graphic appeared" must see these as negatives, and the generator's
/// truth gives the same time for its distractors.
pub fn overlays(s: &[f64], fps: f64, boundaries: &[Boundary], p: &DetectParams) -> Vec<f64> {
    if p.overlay <= 0.0 || s.is_empty() {
        return vec![];
    }
    let dt = 1.0 / fps;
    let mut sorted = s.to_vec();
    sorted.sort_by(f64::total_cmp);
    let level = sorted[sorted.len() / 2] + p.overlay;
    let mut runs: Vec<(usize, usize)> = vec![];
    for (t, v) in s.iter().enumerate() {
        if *v <= level {
            continue;
        }
        match runs.last_mut() {
            Some((_, e)) if (t - *e) as f64 * dt <= p.merge_gap + 1e-9 => *e = t + 1,
            _ => runs.push((t, t + 1)),
        }
    }
    runs.into_iter()
        .map(|(a, b)| (a as f64 * dt, b as f64 * dt))
        .filter(|(a, b)| b - a + 1e-9 >= p.min_overlay)
        .filter(|&(a, b)| {
            boundaries
                .iter()
                .all(|w| b < w.start - 0.5 || a > w.end + 0.5)
        })
        .map(|(a, _)| a)
        .collect()
}

/// Pairs consecutive boundaries (open, close) whose distance is a plausible
/// replay length. When not every boundary can be paired, the pairing that
/// leaves out the least confidence wins (dynamic programming: each boundary
/// is left out or closes with one of the next three, leaving out those in
/// between), so a weak false boundary is the one dropped. Returns the
/// proposals and the indices left out.
pub fn pair(b: &[Boundary], p: &DetectParams) -> (Vec<Proposal>, Vec<usize>) {
    let n = b.len();
    let fits =
        |i: usize, j: usize| (p.min_replay..=p.max_replay).contains(&(b[j].time - b[i].time));
    // cost[i]: least confidence left out among b[i..]; partner[i]: the
    // boundary b[i] closes with (up to two left out in between).
    let mut cost = vec![0.0; n + 1];
    let mut partner: Vec<Option<usize>> = vec![None; n];
    for i in (0..n).rev() {
        cost[i] = cost[i + 1] + b[i].confidence;
        let mut between = 0.0;
        for j in (i + 1)..n.min(i + 4) {
            if fits(i, j) && cost[j + 1] + between <= cost[i] + 1e-12 {
                cost[i] = cost[j + 1] + between;
                partner[i] = Some(j);
            }
            between += b[j].confidence;
        }
    }
    let (mut out, mut left) = (vec![], vec![]);
    let mut i = 0;
    while i < n {
        match partner[i] {
            Some(j) => {
                out.push(Proposal {
                    start: b[i].start,
                    end: b[j].end,
                    confidence: b[i].confidence.min(b[j].confidence),
                });
                left.extend(i + 1..j);
                i = j + 1;
            }
            None => {
                left.push(i);
                i += 1;
            }
        }
    }
    (out, left)
}

/// No boundary at all: the video may have no replays or no graphics (a
/// human decides). Otherwise the weakest paired boundary, lowered by every
/// boundary left without a partner (more for a confident one: a real wipe
/// without its partner means a missed wipe).
pub fn video_confidence(b: &[Boundary], segments: &[Proposal], left: &[usize]) -> f64 {
    if b.is_empty() {
        return 0.0;
    }
    let base = if segments.is_empty() {
        0.5 * b.iter().map(|x| x.confidence).fold(1.0, f64::min)
    } else {
        segments.iter().map(|s| s.confidence).fold(1.0, f64::min)
    };
    left.iter()
        .fold(base, |c, &i| c * (1.0 - 0.5 * b[i].confidence))
}

/// True boundaries of a generated video: the middle of every opening and
/// closing wipe (leagues without graphics have none).
pub fn truth_boundaries(t: &media::synth::GroundTruth) -> Vec<f64> {
    let mut v: Vec<f64> = t
        .replays
        .iter()
        .flat_map(|r| [r.opening, r.closing])
        .flatten()
        .map(|s| (s.start + s.end) / 2.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// One-to-one matches between detected and true times within `tol` seconds
/// (greedy by distance): the number of true times found.
pub fn matched(detected: &[f64], truth: &[f64], tol: f64) -> usize {
    let mut pairs: Vec<(f64, usize, usize)> = vec![];
    for (i, d) in detected.iter().enumerate() {
        for (j, t) in truth.iter().enumerate() {
            let e = (d - t).abs();
            if e <= tol + 1e-9 {
                pairs.push((e, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut ud, mut ut) = (vec![false; detected.len()], vec![false; truth.len()]);
    let mut n = 0;
    for (_, i, j) in pairs {
        if !ud[i] && !ut[j] {
            ud[i] = true;
            ut[j] = true;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(t: f64, c: f64) -> Boundary {
        Boundary {
            time: t,
            start: t - 0.5,
            end: t + 0.5,
            peak: 0.5,
            confidence: c,
        }
    }

    #[test]
    fn pairs_consecutive_boundaries_and_leaves_out_the_weakest() {
        let p = DetectParams::default();
        let bs = [b(2.0, 1.0), b(8.0, 0.8), b(200.0, 1.0)];
        let (s, left) = pair(&bs, &p);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].start, s[0].end, s[0].confidence), (1.5, 8.5, 0.8));
        assert_eq!(left, vec![2]);
        assert!((video_confidence(&bs, &s, &left) - 0.4).abs() < 1e-9);
        // A weak false boundary between two strong wipes is the one left out.
        let bs = [b(2.0, 1.0), b(5.0, 0.5), b(8.0, 1.0)];
        let (s, left) = pair(&bs, &p);
        assert_eq!((s.len(), left.as_slice()), (1, &[1usize][..]));
        assert_eq!((s[0].start, s[0].end), (1.5, 8.5));
        assert!((video_confidence(&bs, &s, &left) - 0.75).abs() < 1e-9);
        assert_eq!(video_confidence(&[], &[], &[]), 0.0);
    }

    #[test]
    fn matching_is_one_to_one() {
        assert_eq!(matched(&[1.0, 1.1], &[1.05], 0.5), 1);
        assert_eq!(matched(&[1.0, 5.0], &[1.4, 4.0], 0.5), 1);
    }

    /// Cues of `n` frames at 10 fps of a green field where `paint(t)` gives
    /// how many of the 256 pixels show a rare red.
    fn painted(n: usize, paint: impl Fn(usize) -> usize) -> VideoCues {
        let px = 16 * 16;
        let mut prev = vec![];
        let mut frames = vec![];
        for t in 0..n {
            let red = paint(t);
            let f: Vec<u8> = (0..px)
                .flat_map(|i| {
                    if i < red {
                        [230u8, 60, 20]
                    } else {
                        [20u8, 140, 30]
                    }
                })
                .collect();
            frames.push(cues_of_frame(&f, &prev));
            prev = f;
        }
        VideoCues {
            fps: 10.0,
            pixels: px as u32,
            frames,
        }
    }

    #[test]
    fn a_long_small_graphic_is_an_overlay_not_a_boundary() {
        // A pop-up on 10% of the picture for 2 s from 6.0 s, and a wipe
        // (60%) at 15 s with a faint 3 s tail that belongs to it.
        let c = painted(300, |t| match t {
            60..80 => 26,
            150..155 => 154,
            155..185 => 26,
            _ => 0,
        });
        let d = detect(&c, &DetectParams::default());
        assert_eq!(d.boundaries.len(), 1, "{:?}", d.boundaries);
        assert_eq!(d.overlays, vec![6.0]);
        // Too short to be an overlay (a wipe-length blip), or switched off.
        let c = painted(300, |t| if (60..65).contains(&t) { 26 } else { 0 });
        assert!(detect(&c, &DetectParams::default()).overlays.is_empty());
        let c = painted(300, |t| if (60..80).contains(&t) { 26 } else { 0 });
        let off = DetectParams {
            overlay: 0.0,
            ..DetectParams::default()
        };
        assert!(detect(&c, &off).overlays.is_empty());
    }

    #[test]
    fn a_burst_of_rare_colour_is_one_boundary() {
        let px = 16 * 16;
        let live = |_: usize| -> Vec<u8> { [20u8, 140, 30].repeat(px) };
        let wipe = |_: usize| -> Vec<u8> { [230u8, 60, 20].repeat(px) };
        let frames: Vec<Vec<u8>> = (0..100)
            .map(|t| {
                if (40..50).contains(&t) {
                    wipe(t)
                } else {
                    live(t)
                }
            })
            .collect();
        let mut prev = vec![];
        let mut cues = vec![];
        for f in &frames {
            cues.push(cues_of_frame(f, &prev));
            prev = f.clone();
        }
        let c = VideoCues {
            fps: 10.0,
            pixels: px as u32,
            frames: cues,
        };
        let d = detect(&c, &DetectParams::default());
        assert_eq!(d.boundaries.len(), 1);
        assert!((d.boundaries[0].time - 4.5).abs() < 1e-9);
        assert_eq!(d.unpaired, 1);
    }
}
