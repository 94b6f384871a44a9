//! From per-frame signals to replay segments: the one rule used by
//! evaluation and by production inference (`engine detect`, `detect`).
//!
//! The rule, in order:
//! 1. Smooth the content probability with a centred moving average of
//!    `smooth` frames.
//! 2. Candidates are the maximal runs of frames whose smoothed content
//!    probability is at least `threshold`.
//! 3. Runs separated by a gap shorter than `merge_gap` seconds are merged
//!    (a replay briefly cut by a pundit drawing stays one replay). Runs
//!    separated by a gap shorter than `bridge_gap` seconds are merged too
//!    when neither inner edge is confirmed: no end peak (at least
//!    `boundary_threshold`) within `snap` of the first run's end and no start
//!    peak within `snap` of the second run's start. A replay whose content
//!    signal dips for a few seconds (heavy zoom, repeated frames) has no
//!    boundary events inside it; two real replays in a row have an end and a
//!    start between them, and broadcasts show live play between replays.
//! 4. Each run's start is snapped to the frame with the highest start
//!    probability within `snap` seconds of it, when that peak is at least
//!    `boundary_threshold` (pairing the run with its start event); the end
//!    likewise with the end probability.
//! 5. Segments shorter than `min_length` seconds are dropped.
//! 6. A segment's score is its mean content probability times the mean of
//!    its two boundary peaks (a replay without crisp boundaries scores lower).
//!    An edge at the first or last frame of the video cannot be seen (the
//!    recording began or ended inside the replay), so it does not count:
//!    the other edge's peak stands for both.
//! 7. Segments scoring below `min_score` are dropped: a hard cut to a tight
//!    live camera looks like replay content frame by frame, but the model
//!    sees no replay start or end around it.
//!
//! A frame `i` is the instant `i / fps`; a run of frames `a..b` is the
//! segment `[a / fps, b / fps)`.

use serde::{Deserialize, Serialize};

/// Params of the post-processing rule (stored in every model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostProcess {
    /// Content probability at or above which a frame is inside a replay.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Moving-average window of the content probability, in frames.
    #[serde(default = "default_smooth")]
    pub smooth: usize,
    /// Runs closer than this (seconds) are merged.
    #[serde(default = "default_merge_gap")]
    pub merge_gap: f64,
    /// Runs closer than this (seconds) are merged when no end event closes
    /// the first and no start event opens the second.
    #[serde(default = "default_bridge_gap")]
    pub bridge_gap: f64,
    /// Runs closer than this (seconds) are merged when, as for
    /// `bridge_gap`, neither inner edge is confirmed, and the first run
    /// opens on a start event and the second closes on an end event.
    #[serde(default = "default_pair_gap")]
    pub pair_gap: f64,
    /// Shorter segments are dropped (seconds).
    #[serde(default = "default_min_length")]
    pub min_length: f64,
    /// A boundary peak at or above this snaps the segment's edge to it.
    #[serde(default = "default_boundary_threshold")]
    pub boundary_threshold: f64,
    /// How far (seconds) an edge may move to its boundary peak.
    #[serde(default = "default_snap")]
    pub snap: f64,
    /// Segments scoring lower are dropped.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
}

fn default_threshold() -> f64 {
    0.5
}
fn default_smooth() -> usize {
    3
}
fn default_merge_gap() -> f64 {
    1.0
}
fn default_bridge_gap() -> f64 {
    4.0
}
fn default_pair_gap() -> f64 {
    8.0
}
fn default_min_length() -> f64 {
    1.0
}
fn default_boundary_threshold() -> f64 {
    0.3
}
fn default_snap() -> f64 {
    1.0
}
fn default_min_score() -> f64 {
    0.3
}

impl Default for PostProcess {
    fn default() -> Self {
        PostProcess {
            threshold: default_threshold(),
            smooth: default_smooth(),
            merge_gap: default_merge_gap(),
            bridge_gap: default_bridge_gap(),
            pair_gap: default_pair_gap(),
            min_length: default_min_length(),
            boundary_threshold: default_boundary_threshold(),
            snap: default_snap(),
            min_score: default_min_score(),
        }
    }
}

/// A detected replay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// Confidence in [0, 1].
    pub score: f64,
}

impl PostProcess {
    pub fn check(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let unit = |v: f64| ok(v) && v <= 1.0;
        if !(unit(self.threshold) && unit(self.boundary_threshold) && unit(self.min_score)) {
            return Err("post-processing thresholds must lie in [0, 1]".into());
        }
        if !(ok(self.merge_gap)
            && ok(self.bridge_gap)
            && ok(self.pair_gap)
            && ok(self.min_length)
            && ok(self.snap))
        {
            return Err(
                "`merge_gap`, `bridge_gap`, `pair_gap`, `min_length` and `snap` must be 0 or more seconds"
                    .into(),
            );
        }
        Ok(())
    }

    /// Segments from per-frame probabilities `[start, end, content]`.
    pub fn segments(&self, probs: &[[f32; 3]], fps: f64) -> Vec<Detection> {
        let n = probs.len();
        if n == 0 || fps <= 0.0 {
            return vec![];
        }
        let content: Vec<f64> = probs.iter().map(|p| p[2] as f64).collect();
        let smooth = moving_average(&content, self.smooth.max(1));
        // 2. runs
        let mut runs: Vec<(usize, usize)> = vec![];
        let mut i = 0;
        while i < n {
            if smooth[i] >= self.threshold {
                let a = i;
                while i < n && smooth[i] >= self.threshold {
                    i += 1;
                }
                runs.push((a, i));
            } else {
                i += 1;
            }
        }
        let reach = (self.snap * fps).round() as usize;
        let peak = |centre: usize, signal: usize| -> Option<(usize, f64)> {
            let lo = centre.saturating_sub(reach);
            let hi = (centre + reach).min(n - 1);
            (lo..=hi)
                .map(|j| (j, probs[j][signal] as f64))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        };
        let confirmed = |centre: usize, signal: usize| {
            peak(centre, signal).is_some_and(|(_, p)| p >= self.boundary_threshold)
        };
        // 3. merge short gaps, and bridge longer ones without boundary events
        let gap = ((self.merge_gap * fps).round() as usize).max(1);
        let bridge = (self.bridge_gap * fps).round() as usize;
        let pair = (self.pair_gap * fps).round() as usize;
        let mut merged: Vec<(usize, usize)> = vec![];
        for r in runs {
            match merged.last_mut() {
                Some(last) if r.0 - last.1 < gap => last.1 = r.1,
                Some(last) if !confirmed(last.1 - 1, 1) && !confirmed(r.0, 0) => {
                    let d = r.0 - last.1;
                    if d < bridge || (d < pair && confirmed(last.0, 0) && confirmed(r.1 - 1, 1)) {
                        last.1 = r.1
                    } else {
                        merged.push(r)
                    }
                }
                _ => merged.push(r),
            }
        }
        // 4. snap to boundary peaks, 5. drop short, 6. score
        let mut out = vec![];
        for (a, b) in merged {
            let (mut s, mut e) = (a, b);
            let mut ps = 0.0;
            let mut pe = 0.0;
            if let Some((j, p)) = peak(a, 0) {
                ps = p;
                if p >= self.boundary_threshold {
                    s = j;
                }
            }
            if let Some((j, p)) = peak(b.saturating_sub(1), 1) {
                pe = p;
                if p >= self.boundary_threshold {
                    e = j + 1;
                }
            }
            if e <= s {
                continue;
            }
            let (start, end) = (s as f64 / fps, e as f64 / fps);
            if end - start < self.min_length {
                continue;
            }
            let mean = content[s..e].iter().sum::<f64>() / (e - s) as f64;
            let edges = match (s == 0, e >= n) {
                (false, false) => (ps + pe) / 2.0,
                (true, false) => pe,
                (false, true) => ps,
                (true, true) => 1.0,
            };
            let score = (mean * edges).clamp(0.0, 1.0);
            if score < self.min_score {
                continue;
            }
            out.push(Detection { start, end, score });
        }
        out
    }
}

/// Centred moving average; the window shrinks at the edges.
fn moving_average(x: &[f64], w: usize) -> Vec<f64> {
    let h = w / 2;
    let mut prefix = vec![0.0; x.len() + 1];
    for (i, v) in x.iter().enumerate() {
        prefix[i + 1] = prefix[i] + v;
    }
    (0..x.len())
        .map(|i| {
            let a = i.saturating_sub(h);
            let b = (i + h + 1).min(x.len());
            (prefix[b] - prefix[a]) / (b - a) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize, segs: &[(usize, usize)]) -> Vec<[f32; 3]> {
        let mut p = vec![[0.0f32; 3]; n];
        for &(a, b) in segs {
            for q in p.iter_mut().take(b).skip(a) {
                q[2] = 0.9;
            }
            p[a][0] = 0.8;
            p[b - 1][1] = 0.8;
        }
        p
    }

    #[test]
    fn a_replay_cut_by_the_end_of_the_video_is_scored_on_its_start() {
        // Starts with a clear start event; the video ends before its end.
        let mut p = signal(100, &[(80, 100)]);
        p[99][1] = 0.0;
        let d = PostProcess::default().segments(&p, 5.0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].start, d[0].end), (16.0, 20.0));
        assert!(d[0].score > 0.6, "{d:?}");
        // The same shape inside the video, without an end event, scores
        // half as much: there the missing end is evidence.
        let mut q = signal(120, &[(80, 100)]);
        q[99][1] = 0.0;
        let inner = PostProcess::default().segments(&q, 5.0);
        assert!(
            inner.is_empty() || inner[0].score < d[0].score * 0.6,
            "{inner:?}"
        );
        // A live stretch at the end with no start event stays dropped.
        let mut r = vec![[0.0f32; 3]; 100];
        for x in r.iter_mut().skip(80) {
            x[2] = 0.9;
        }
        assert!(PostProcess::default().segments(&r, 5.0).is_empty());
    }

    #[test]
    fn finds_each_replay_with_its_edges() {
        let p = signal(100, &[(10, 30), (60, 80)]);
        let d = PostProcess::default().segments(&p, 5.0);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].start, d[0].end), (2.0, 6.0));
        assert_eq!((d[1].start, d[1].end), (12.0, 16.0));
        assert!(d[0].score > 0.6 && d[0].score <= 1.0);
    }

    #[test]
    fn merges_short_gaps_and_drops_short_runs() {
        let mut p = signal(100, &[(10, 30)]);
        for q in p.iter_mut().take(22).skip(19) {
            q[2] = 0.0; // a 3-frame dip at 5 fps = 0.6 s < merge_gap
        }
        for q in p.iter_mut().take(53).skip(50) {
            q[2] = 0.9; // 0.6 s blip < min_length
        }
        let pp = PostProcess {
            smooth: 1,
            ..PostProcess::default()
        };
        let d = pp.segments(&p, 5.0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].start, d[0].end), (2.0, 6.0));
    }

    #[test]
    fn bridges_a_dip_without_boundary_events_but_not_two_replays() {
        // One replay 10..60 whose content dips for 3 s (15 frames at 5 fps)
        // in the middle: no end event before the dip, no start after it.
        let mut p = signal(100, &[(10, 60)]);
        for q in p.iter_mut().take(40).skip(25) {
            q[2] = 0.05;
        }
        let d = PostProcess::default().segments(&p, 5.0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].start, d[0].end), (2.0, 12.0));
        // Two replays with the same 3 s between them, each with its events.
        let two = signal(100, &[(10, 25), (40, 60)]);
        let d = PostProcess::default().segments(&two, 5.0);
        assert_eq!(d.len(), 2, "{d:?}");
        // Bridging off: the dip splits the replay.
        let no_bridge = PostProcess {
            bridge_gap: 0.0,
            pair_gap: 0.0,
            ..PostProcess::default()
        };
        assert_eq!(no_bridge.segments(&p, 5.0).len(), 2);
    }

    #[test]
    fn pairs_a_start_with_an_end_across_a_long_dip() {
        // One replay 10..80 whose content is lost for 6 s (30 frames at
        // 5 fps), longer than `bridge_gap`: its start and end events still
        // frame it, so it stays one replay.
        let mut p = signal(120, &[(10, 80)]);
        for q in p.iter_mut().take(50).skip(20) {
            q[2] = 0.02;
        }
        let d = PostProcess::default().segments(&p, 5.0);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].start, d[0].end), (2.0, 16.0));
        // Without the end event the second run is content with no edge of
        // its own (a tight live camera after a replay): not paired.
        let mut open = p.clone();
        open[79][1] = 0.0;
        let d = PostProcess::default().segments(&open, 5.0);
        assert!(d.iter().all(|s| s.end <= 4.0 + 1e-9), "{d:?}");
        // Without the start event the first run is not a replay's opening.
        let mut headless = p.clone();
        headless[10][0] = 0.0;
        let d = PostProcess::default().segments(&headless, 5.0);
        assert!(d.iter().all(|s| s.start >= 10.0 - 1e-9), "{d:?}");
        // A dip longer than `pair_gap` splits it.
        let short = PostProcess {
            pair_gap: 5.0,
            ..PostProcess::default()
        };
        assert_ne!(short.segments(&p, 5.0).len(), 1);
    }

    #[test]
    fn content_without_boundaries_scores_low_and_is_dropped() {
        let mut p = signal(100, &[(10, 30)]);
        for q in p.iter_mut().take(80).skip(60) {
            q[2] = 0.9; // a hard cut to a tight live camera: no start, no end
        }
        let d = PostProcess::default().segments(&p, 5.0);
        assert_eq!(d.len(), 1, "{d:?}");
        let keep_all = PostProcess {
            min_score: 0.0,
            ..PostProcess::default()
        };
        assert_eq!(keep_all.segments(&p, 5.0).len(), 2);
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(PostProcess::default().segments(&[], 5.0).is_empty());
        assert!(
            PostProcess::default()
                .segments(&[[0.0; 3]; 50], 5.0)
                .is_empty()
        );
    }
}

/// What a detector found in one video.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VideoDetections {
    pub frames: usize,
    pub fps: f64,
    pub segments: Vec<Detection>,
    /// Per-frame `[start, end, content]` probabilities the segments came from.
    pub signals: Vec<[f32; 3]>,
}
