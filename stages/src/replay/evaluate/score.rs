//! Scoring the golden videos: each model's predictions against the truth,
//! added up per sport, league, broadcaster and league x broadcaster.
//!
//! The video set is the candidate's. Production is scored on the videos it
//! has predictions for, so a league production never saw has no production
//! figures (a new league). Counts add up over videos (see `metrics`), so a
//! group's figure is computed from its videos' summed counts.

use crate::replay::metrics::{Evaluation, METRICS};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A predicted replay, as `predictions.json` lists it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    #[serde(default)]
    pub score: f64,
}

/// One model's predictions for one video.
#[derive(Clone, Debug, Serialize)]
pub struct Pred {
    pub segments: Vec<Segment>,
    pub frames: usize,
    pub fps: f64,
}

/// A golden video: where it comes from, its truth and both predictions.
#[derive(Clone, Debug)]
pub struct Video {
    pub key: String,
    pub sport: String,
    pub league: String,
    pub broadcaster: String,
    pub truth: Vec<(f64, f64)>,
    /// `human` or `truth`.
    pub truth_source: String,
    pub candidate: Pred,
    pub production: Option<Pred>,
}

/// The figures of one group of videos for both models.
#[derive(Clone, Debug, Default)]
pub struct GroupFigures {
    pub candidate: Evaluation,
    /// `None` when production has no predictions for any video of the group.
    pub production: Option<Evaluation>,
}

impl GroupFigures {
    fn add(&mut self, c: &Evaluation, p: Option<&Evaluation>) {
        self.candidate.add(c);
        if let Some(p) = p {
            self.production.get_or_insert_with(Default::default).add(p);
        }
    }

    /// The candidate's figure `metric` (rounded as in the summary).
    pub fn candidate(&self, metric: &str) -> f64 {
        self.candidate.summary().get(metric).copied().unwrap_or(0.0)
    }

    pub fn production(&self, metric: &str) -> Option<f64> {
        self.production
            .as_ref()
            .map(|p| p.summary().get(metric).copied().unwrap_or(0.0))
    }

    pub fn to_json(&self) -> Value {
        let c = self.candidate.summary();
        let p = self.production.as_ref().map(Evaluation::summary);
        let delta = p.as_ref().map(|p| {
            METRICS
                .iter()
                .map(|m| (m.to_string(), json!(round4(c[*m] - p[*m]))))
                .collect::<Map<_, _>>()
        });
        json!({
            "videos": self.candidate.videos,
            "candidate": c,
            "production": p,
            "delta": delta,
        })
    }
}

/// Every group's figures, and one row per video.
#[derive(Clone, Debug, Default)]
pub struct Scores {
    /// The sport (or sports, comma-separated) of the videos.
    pub sport: String,
    pub overall: GroupFigures,
    pub leagues: BTreeMap<String, GroupFigures>,
    pub broadcasters: BTreeMap<String, GroupFigures>,
    pub league_broadcasters: BTreeMap<(String, String), GroupFigures>,
    pub videos: Vec<Value>,
}

impl Scores {
    pub fn of(videos: &[Video]) -> Scores {
        let mut s = Scores::default();
        let mut sports: Vec<&str> = videos.iter().map(|v| v.sport.as_str()).collect();
        sports.sort();
        sports.dedup();
        s.sport = if sports.is_empty() {
            "overall".into()
        } else {
            sports.join(", ")
        };
        for v in videos {
            let score = |p: &Pred| {
                let segs: Vec<(f64, f64)> = p.segments.iter().map(|x| (x.start, x.end)).collect();
                Evaluation::of_video(&segs, &v.truth, p.frames, p.fps)
            };
            let c = score(&v.candidate);
            let p = v.production.as_ref().map(score);
            s.overall.add(&c, p.as_ref());
            for g in [
                s.leagues.entry(v.league.clone()).or_default(),
                s.broadcasters.entry(v.broadcaster.clone()).or_default(),
            ] {
                g.add(&c, p.as_ref());
            }
            s.league_broadcasters
                .entry((v.league.clone(), v.broadcaster.clone()))
                .or_default()
                .add(&c, p.as_ref());
            let side = |pred: &Pred, e: &Evaluation| {
                json!({
                    "segments": pred.segments, "frames": pred.frames, "fps": pred.fps,
                    "segment_f1": round4(e.segment_f1()),
                })
            };
            s.videos.push(json!({
                "video": v.key,
                "league": v.league,
                "broadcaster": v.broadcaster,
                "truth": v.truth,
                "truth_source": v.truth_source,
                "candidate": side(&v.candidate, &c),
                "production": v.production.as_ref().zip(p.as_ref()).map(|(pred, e)| side(pred, e)),
            }));
        }
        s
    }

    pub fn groups_json(&self) -> Value {
        let named = |m: &BTreeMap<String, GroupFigures>| -> Value {
            m.iter()
                .map(|(k, g)| (k.clone(), g.to_json()))
                .collect::<Map<_, _>>()
                .into()
        };
        let lb: Map<String, Value> = self
            .league_broadcasters
            .iter()
            .map(|((l, b), g)| {
                let mut v = g.to_json();
                v["league"] = json!(l);
                v["broadcaster"] = json!(b);
                (format!("{l} / {b}"), v)
            })
            .collect();
        let mut overall = self.overall.to_json();
        overall["sport"] = json!(self.sport);
        json!({
            "overall": overall,
            "leagues": named(&self.leagues),
            "broadcasters": named(&self.broadcasters),
            "league_broadcasters": lb,
        })
    }
}

/// Figures are kept to four decimals, as in [`Evaluation::summary`].
pub fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(key: &str, league: &str, cand: &[(f64, f64)], prod: Option<&[(f64, f64)]>) -> Video {
        let pred = |s: &[(f64, f64)]| Pred {
            segments: s
                .iter()
                .map(|&(start, end)| Segment {
                    start,
                    end,
                    score: 1.0,
                })
                .collect(),
            frames: 300,
            fps: 10.0,
        };
        Video {
            key: key.into(),
            sport: "basketball".into(),
            league: league.into(),
            broadcaster: "net-one".into(),
            truth: vec![(2.0, 6.0), (12.0, 18.0)],
            truth_source: "truth".into(),
            candidate: pred(cand),
            production: prod.map(pred),
        }
    }

    #[test]
    fn groups_add_up_and_production_is_absent_for_a_new_league() {
        let all = [(2.0, 6.0), (12.0, 18.0)];
        let s = Scores::of(&[
            video("a", "old", &all, Some(&all[..1])),
            video("b", "new", &all, None),
        ]);
        assert_eq!(s.sport, "basketball");
        assert_eq!(s.leagues["old"].candidate("segment_f1"), 1.0);
        // One of two replays found, no false positive: P 1, R 0.5.
        assert_eq!(s.leagues["old"].production("segment_recall"), Some(0.5));
        assert_eq!(s.leagues["new"].production, None);
        assert_eq!(s.overall.candidate.videos, 2);
        assert_eq!(s.overall.production.as_ref().unwrap().videos, 1);
        let g = s.groups_json();
        assert_eq!(g["leagues"]["old"]["delta"]["segment_recall"], json!(0.5));
        assert_eq!(g["leagues"]["new"]["production"], Value::Null);
        assert_eq!(
            g["league_broadcasters"]["old / net-one"]["videos"],
            json!(1)
        );
    }
}
