//! The evaluation protocol: event P/R/F1 for starts and ends at a time
//! tolerance, frame-level content P/R, segment P/R/F1 at a temporal IoU and
//! the mean F1 over IoU 0.5:0.05:0.95. Matching is one-to-one and greedy:
//! closest pairs (or highest IoU) first. Counts add up over videos, so a
//! league's figure is computed from the summed counts of its videos.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// True positives, predictions, truths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub tp: u64,
    pub predicted: u64,
    pub truth: u64,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.predicted += o.predicted;
        self.truth += o.truth;
    }
    /// Precision; 1 when nothing was predicted and nothing was there.
    pub fn precision(&self) -> f64 {
        if self.predicted == 0 {
            if self.truth == 0 { 1.0 } else { 0.0 }
        } else {
            self.tp as f64 / self.predicted as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.truth == 0 {
            1.0
        } else {
            self.tp as f64 / self.truth as f64
        }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// One-to-one matches of events within `tol` seconds.
pub fn match_events(pred: &[f64], truth: &[f64], tol: f64) -> Counts {
    let mut pairs: Vec<(f64, usize, usize)> = vec![];
    for (i, p) in pred.iter().enumerate() {
        for (j, t) in truth.iter().enumerate() {
            let d = (p - t).abs();
            if d <= tol {
                pairs.push((d, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    Counts {
        tp: greedy(pairs, pred.len(), truth.len()),
        predicted: pred.len() as u64,
        truth: truth.len() as u64,
    }
}

/// Temporal IoU of two spans.
pub fn tiou(a: (f64, f64), b: (f64, f64)) -> f64 {
    let inter = (a.1.min(b.1) - a.0.max(b.0)).max(0.0);
    let union = (a.1 - a.0) + (b.1 - b.0) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// One-to-one matches of segments with tIoU at least `min_iou`.
pub fn match_segments(pred: &[(f64, f64)], truth: &[(f64, f64)], min_iou: f64) -> Counts {
    let mut pairs: Vec<(f64, usize, usize)> = vec![];
    for (i, p) in pred.iter().enumerate() {
        for (j, t) in truth.iter().enumerate() {
            let iou = tiou(*p, *t);
            if iou >= min_iou {
                pairs.push((-iou, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    Counts {
        tp: greedy(pairs, pred.len(), truth.len()),
        predicted: pred.len() as u64,
        truth: truth.len() as u64,
    }
}

fn greedy(pairs: Vec<(f64, usize, usize)>, np: usize, nt: usize) -> u64 {
    let (mut up, mut ut) = (vec![false; np], vec![false; nt]);
    let mut tp = 0;
    for (_, i, j) in pairs {
        if !up[i] && !ut[j] {
            up[i] = true;
            ut[j] = true;
            tp += 1;
        }
    }
    tp
}

/// Frame-level content counts on a grid of `frames` frames at `fps`.
pub fn content_frames(
    pred: &[(f64, f64)],
    truth: &[(f64, f64)],
    frames: usize,
    fps: f64,
) -> Counts {
    let inside = |segs: &[(f64, f64)], t: f64| segs.iter().any(|&(s, e)| t >= s && t < e);
    let mut c = Counts::default();
    for i in 0..frames {
        let t = i as f64 / fps;
        let (p, g) = (inside(pred, t), inside(truth, t));
        c.predicted += p as u64;
        c.truth += g as u64;
        c.tp += (p && g) as u64;
    }
    c
}

/// The IoU thresholds of the ActivityNet convention: 0.5, 0.55, ..., 0.95.
pub fn iou_thresholds() -> impl Iterator<Item = f64> {
    (0..10).map(|k| 0.5 + 0.05 * k as f64)
}

/// Every count of one video, or of a group of videos once added up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub videos: u64,
    pub start_1s: Counts,
    pub start_2s: Counts,
    pub end_1s: Counts,
    pub end_2s: Counts,
    pub content: Counts,
    /// Segment counts at each IoU threshold of [`iou_thresholds`].
    pub segments: Vec<Counts>,
}

impl Evaluation {
    /// Evaluates one video's predicted segments against its truth.
    pub fn of_video(pred: &[(f64, f64)], truth: &[(f64, f64)], frames: usize, fps: f64) -> Self {
        let starts = |s: &[(f64, f64)]| s.iter().map(|x| x.0).collect::<Vec<_>>();
        let ends = |s: &[(f64, f64)]| s.iter().map(|x| x.1).collect::<Vec<_>>();
        Evaluation {
            videos: 1,
            start_1s: match_events(&starts(pred), &starts(truth), 1.0),
            start_2s: match_events(&starts(pred), &starts(truth), 2.0),
            end_1s: match_events(&ends(pred), &ends(truth), 1.0),
            end_2s: match_events(&ends(pred), &ends(truth), 2.0),
            content: content_frames(pred, truth, frames, fps),
            segments: iou_thresholds()
                .map(|t| match_segments(pred, truth, t))
                .collect(),
        }
    }

    pub fn add(&mut self, o: &Evaluation) {
        self.videos += o.videos;
        self.start_1s.add(o.start_1s);
        self.start_2s.add(o.start_2s);
        self.end_1s.add(o.end_1s);
        self.end_2s.add(o.end_2s);
        self.content.add(o.content);
        if self.segments.is_empty() {
            self.segments = vec![Counts::default(); o.segments.len()];
        }
        for (a, b) in self.segments.iter_mut().zip(&o.segments) {
            a.add(*b);
        }
    }

    /// Segment F1 at tIoU >= 0.5.
    pub fn segment_f1(&self) -> f64 {
        self.segments.first().map(Counts::f1).unwrap_or(0.0)
    }

    /// The headline figures, as the JSON a record or report shows.
    pub fn summary(&self) -> BTreeMap<String, f64> {
        let mean_f1 = if self.segments.is_empty() {
            0.0
        } else {
            self.segments.iter().map(Counts::f1).sum::<f64>() / self.segments.len() as f64
        };
        let s = self.segments.first().copied().unwrap_or_default();
        let r = |v: f64| (v * 10_000.0).round() / 10_000.0;
        let events = [
            ("start", "1s", self.start_1s),
            ("start", "2s", self.start_2s),
            ("end", "1s", self.end_1s),
            ("end", "2s", self.end_2s),
        ];
        let mut out: BTreeMap<String, f64> = [
            ("videos", self.videos as f64),
            ("segment_f1", s.f1()),
            ("segment_precision", s.precision()),
            ("segment_recall", s.recall()),
            ("segment_mean_f1", mean_f1),
            ("content_precision", self.content.precision()),
            ("content_recall", self.content.recall()),
            ("content_f1", self.content.f1()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), r(v)))
        .collect();
        for (signal, tol, c) in events {
            out.insert(format!("{signal}_f1_{tol}"), r(c.f1()));
            out.insert(format!("{signal}_precision_{tol}"), r(c.precision()));
            out.insert(format!("{signal}_recall_{tol}"), r(c.recall()));
        }
        out
    }
}

/// Every figure name [`Evaluation::summary`] gives besides `videos`: the
/// names gates and reports may use.
pub const METRICS: [&str; 19] = [
    "segment_f1",
    "segment_precision",
    "segment_recall",
    "segment_mean_f1",
    "start_f1_1s",
    "start_precision_1s",
    "start_recall_1s",
    "start_f1_2s",
    "start_precision_2s",
    "start_recall_2s",
    "end_f1_1s",
    "end_precision_1s",
    "end_recall_1s",
    "end_f1_2s",
    "end_precision_2s",
    "end_recall_2s",
    "content_precision",
    "content_recall",
    "content_f1",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_match_one_to_one_within_tolerance() {
        let c = match_events(&[1.0, 1.2, 5.0], &[1.1, 9.0], 1.0);
        assert_eq!((c.tp, c.predicted, c.truth), (1, 3, 2));
        assert!((c.precision() - 1.0 / 3.0).abs() < 1e-9);
        assert!((c.recall() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn segments_need_the_iou() {
        assert!((tiou((0.0, 10.0), (5.0, 15.0)) - 1.0 / 3.0).abs() < 1e-9);
        let c = match_segments(
            &[(0.0, 10.0), (20.0, 30.0)],
            &[(1.0, 10.0), (25.0, 40.0)],
            0.5,
        );
        assert_eq!(c.tp, 1);
        let e = Evaluation::of_video(&[(0.0, 10.0)], &[(0.0, 10.0)], 100, 5.0);
        assert_eq!(e.segment_f1(), 1.0);
        assert_eq!(e.summary()["segment_mean_f1"], 1.0);
        assert_eq!(e.summary()["content_precision"], 1.0);
    }

    #[test]
    fn the_summary_has_every_metric_name_and_nothing_else() {
        let e = Evaluation::of_video(&[(1.0, 5.0)], &[(1.5, 5.0)], 50, 5.0);
        let s = e.summary();
        let mut names: Vec<&str> = s
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "videos")
            .collect();
        let mut want = METRICS.to_vec();
        names.sort();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(s["start_precision_1s"], 1.0);
        assert_eq!(s["start_recall_2s"], 1.0);
        // 5.0 - 1.5 s of truth at 5 fps, all predicted, plus 2.5 frames more.
        assert_eq!(s["content_recall"], 1.0);
        assert!(s["content_f1"] > 0.9 && s["content_f1"] < 1.0);
    }

    #[test]
    fn an_empty_prediction_on_replays_scores_zero() {
        let e = Evaluation::of_video(&[], &[(3.0, 9.0)], 100, 5.0);
        assert_eq!(e.segment_f1(), 0.0);
        assert_eq!(e.summary()["start_f1_1s"], 0.0);
    }
}
