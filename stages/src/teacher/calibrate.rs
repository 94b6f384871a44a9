//! `teacher.calibrate`: tunes the teacher per league from a few labelled
//! videos. For each league it tries every (`threshold`, `rare_share`) of a
//! small grid on the videos' frame cues (decoded once per video) and keeps
//! the pair with the best boundary recall at +-`tolerance` s among those
//! whose precision is at least `min_precision` (ties: higher precision, then
//! the pair nearest the base detector). The result, `calibration.json`, is
//! an artifact `teacher.tag` takes through `needs:`; leagues it does not
//! name keep the base detector.
//!
//! Labels per video, best first: the generator's `truth.json` (the middle
//! of each wipe), else catalog labels in the item meta (`human`, else
//! `truth`): each span's start and end, matched by a boundary whose extent
//! +-`tolerance` covers it.

use super::detect::{self, DetectParams, VideoCues};
use async_trait::async_trait;
use engine_core::stage::ParamsError;
use engine_core::stage::{OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx};
use engine_core::store::Item;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Params of `teacher.calibrate`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalibrateConfig {
    /// The labelled videos, as `stage.output`; default: every input collection.
    #[serde(default)]
    pub from: Option<String>,
    /// A detected boundary matches a true one within this many seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Least boundary precision a setting must reach to be chosen.
    #[serde(default = "default_min_precision")]
    pub min_precision: f64,
    /// Candidate values of the detector's `threshold`.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<f64>,
    /// Candidate values of the detector's `rare_share`.
    #[serde(default = "default_rare_shares")]
    pub rare_shares: Vec<f64>,
    /// The base detector: its other knobs are kept, and leagues that cannot
    /// be calibrated use it as it is.
    #[serde(default)]
    pub detector: DetectParams,
}

fn default_tolerance() -> f64 {
    0.5
}
fn default_min_precision() -> f64 {
    0.7
}
fn default_thresholds() -> Vec<f64> {
    vec![0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5]
}
fn default_rare_shares() -> Vec<f64> {
    vec![0.001, 0.002, 0.004]
}

impl StageConfig for CalibrateConfig {
    const KIND: &'static str = "teacher.calibrate";
    const SUMMARY: &'static str = "per league: the detector threshold with the best boundary recall on labelled videos (calibration.json, for teacher.tag)";
    fn check(&self) -> Result<(), ParamsError> {
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(format!(
                "`tolerance` must be a positive number of seconds, got {}",
                self.tolerance
            )
            .into());
        }
        if !(0.0..=1.0).contains(&self.min_precision) {
            return Err(format!(
                "`min_precision` must be between 0 and 1, got {}",
                self.min_precision
            )
            .into());
        }
        if self.thresholds.is_empty() || self.rare_shares.is_empty() {
            return Err("`thresholds` and `rare_shares` need at least one value each".into());
        }
        for &t in &self.thresholds {
            let mut p = self.detector.clone();
            let r = p.rare_share;
            apply(&mut p, t, r);
            p.check()
                .map_err(|e| format!("`thresholds` value {t}: {e}"))?;
        }
        for &r in &self.rare_shares {
            let mut p = self.detector.clone();
            p.rare_share = r;
            p.check()
                .map_err(|e| format!("`rare_shares` value {r}: {e}"))?;
        }
        self.detector
            .check()
            .map_err(|e| format!("`detector`: {e}").into())
    }
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Calibrate(self)))
    }
}

/// Sets a threshold and rare share, keeping `strong` as far above the
/// threshold as in `p` (so confidences keep their scale).
fn apply(p: &mut DetectParams, threshold: f64, rare_share: f64) {
    let gap = (p.strong - p.threshold).max(0.05);
    p.threshold = threshold;
    p.strong = threshold + gap;
    p.rare_share = rare_share;
}

pub const CALIBRATION_FILE: &str = "calibration.json";
pub const CALIBRATION_VERSION: u32 = 1;

/// The `calibration.json` artifact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub version: u32,
    pub tolerance: f64,
    pub min_precision: f64,
    /// By league name.
    pub leagues: BTreeMap<String, LeagueCalibration>,
}

/// The chosen detector settings of one league and how they scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeagueCalibration {
    /// `false`: no setting found a labelled boundary (e.g. a league without
    /// replay graphics); `teacher.tag` keeps its own detector.
    pub calibrated: bool,
    pub threshold: f64,
    pub rare_share: f64,
    /// Labelled videos and true boundaries it was tuned on.
    pub videos: usize,
    pub boundaries: usize,
    /// With the chosen settings.
    pub recall: f64,
    pub precision: Option<f64>,
    /// With the base detector, for comparison.
    pub base_recall: f64,
    pub base_precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Calibration {
    /// The detector for a league: `base` with the league's settings, when calibrated.
    pub fn params_for(&self, league: Option<&str>, base: &DetectParams) -> Option<DetectParams> {
        let c = self.leagues.get(league?)?;
        if !c.calibrated {
            return None;
        }
        let mut p = base.clone();
        apply(&mut p, c.threshold, c.rare_share);
        p.check().ok().map(|_| p)
    }
}

/// What a labelled video says the boundaries are.
pub enum Truth {
    /// Wipe middles of a generated video.
    Points(Vec<f64>),
    /// Replay span edges from labels.
    Edges(Vec<f64>),
}

impl Truth {
    fn len(&self) -> usize {
        match self {
            Truth::Points(v) | Truth::Edges(v) => v.len(),
        }
    }
    /// True boundaries found by `d`, one to one.
    fn matched(&self, d: &detect::Detection, tol: f64) -> usize {
        match self {
            Truth::Points(want) => {
                let found: Vec<f64> = d.boundaries.iter().map(|b| b.time).collect();
                detect::matched(&found, want, tol)
            }
            Truth::Edges(want) => {
                let mut pairs: Vec<(f64, usize, usize)> = vec![];
                for (i, b) in d.boundaries.iter().enumerate() {
                    for (j, &e) in want.iter().enumerate() {
                        if e >= b.start - tol && e <= b.end + tol {
                            pairs.push(((b.time - e).abs(), i, j));
                        }
                    }
                }
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (mut ud, mut ut) = (vec![false; d.boundaries.len()], vec![false; want.len()]);
                let mut n = 0;
                for (_, i, j) in pairs {
                    if !ud[i] && !ut[j] {
                        (ud[i], ut[j]) = (true, true);
                        n += 1;
                    }
                }
                n
            }
        }
    }
}

/// Catalog labels in an item's meta: `human` spans, else `truth` spans.
fn meta_edges(meta: &Value) -> Option<Vec<f64>> {
    let labels = meta.get("labels")?.as_array()?;
    let spans = |source: &str| -> Vec<(f64, f64)> {
        labels
            .iter()
            .filter(|l| l.get("source").and_then(Value::as_str) == Some(source))
            .filter_map(|l| Some((l.get("start_s")?.as_f64()?, l.get("end_s")?.as_f64()?)))
            .collect()
    };
    let human = spans("human");
    let chosen = if human.is_empty() && meta.get("review").is_none() {
        spans("truth")
    } else {
        human
    };
    if chosen.is_empty() && meta.get("review").is_none() {
        return None;
    }
    let mut edges: Vec<f64> = chosen.into_iter().flat_map(|(s, e)| [s, e]).collect();
    edges.sort_by(f64::total_cmp);
    Some(edges)
}

/// Recall and precision of `p` over a league's videos.
fn score(videos: &[(VideoCues, Truth)], p: &DetectParams, tol: f64) -> (f64, Option<f64>, usize) {
    let (mut want, mut found, mut hit) = (0usize, 0usize, 0usize);
    for (cues, truth) in videos {
        let d = detect::detect(cues, p);
        want += truth.len();
        found += d.boundaries.len();
        hit += truth.matched(&d, tol);
    }
    let recall = if want == 0 {
        0.0
    } else {
        hit as f64 / want as f64
    };
    let precision = (found > 0).then(|| hit as f64 / found as f64);
    (recall, precision, want)
}

/// Picks a league's settings from its videos' cues (pure: the stage's core).
pub fn calibrate_league(videos: &[(VideoCues, Truth)], c: &CalibrateConfig) -> LeagueCalibration {
    let base = &c.detector;
    let (base_recall, base_precision, boundaries) = score(videos, base, c.tolerance);
    // (recall, precision or 0, distance to the base, precision)
    let mut best: Option<(f64, f64, f64, Option<f64>)> = None;
    let mut best_setting = (base.threshold, base.rare_share);
    for &t in &c.thresholds {
        for &r in &c.rare_shares {
            let mut p = base.clone();
            apply(&mut p, t, r);
            let (recall, precision, _) = score(videos, &p, c.tolerance);
            let prec = precision.unwrap_or(0.0);
            if recall == 0.0 || prec + 1e-12 < c.min_precision {
                continue;
            }
            let dist = ((t - base.threshold) / base.threshold).abs()
                + ((r - base.rare_share) / base.rare_share).abs();
            let better = match &best {
                None => true,
                Some((br, bp, bd, _)) => {
                    recall > br + 1e-12
                        || ((recall - br).abs() <= 1e-12
                            && (prec > bp + 1e-12 || ((prec - bp).abs() <= 1e-12 && dist < *bd)))
                }
            };
            if better {
                best = Some((recall, prec, dist, precision));
                best_setting = (t, r);
            }
        }
    }
    let n = videos.len();
    match best {
        Some((recall, _, _, precision)) => LeagueCalibration {
            calibrated: true,
            threshold: best_setting.0,
            rare_share: best_setting.1,
            videos: n,
            boundaries,
            recall,
            precision,
            base_recall,
            base_precision,
            note: None,
        },
        None => LeagueCalibration {
            calibrated: false,
            threshold: base.threshold,
            rare_share: base.rare_share,
            videos: n,
            boundaries,
            recall: base_recall,
            precision: base_precision,
            base_recall,
            base_precision,
            note: Some(if boundaries == 0 {
                "the labels have no graphic boundaries (no replays, or a league without replay graphics); the teacher keeps its detector and low-confidence videos go to review".into()
            } else {
                format!(
                    "no setting found a labelled boundary with precision >= {}; the teacher keeps its detector and low-confidence videos go to review",
                    c.min_precision
                )
            }),
        },
    }
}

pub struct Calibrate(pub CalibrateConfig);

#[async_trait]
impl Stage for Calibrate {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("calibration")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = &self.0;
        let items: Vec<Item> = ctx.input_items(c.from.as_deref()).cloned().collect();
        let mut by_league: BTreeMap<String, Vec<(VideoCues, Truth)>> = BTreeMap::new();
        let total = items.len() as u64;
        for (n, item) in items.iter().enumerate() {
            ctx.progress(n as u64, total);
            let league = item
                .meta
                .get("league")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            let truth = match item.files.get("truth.json") {
                Some(blob) => {
                    let bytes = ctx.read(blob).await?;
                    let t: media::synth::GroundTruth =
                        serde_json::from_slice(&bytes).map_err(|e| {
                            StageError::msg(format!(
                                "Failed to parse `truth.json` of video `{}`: {e}",
                                item.key
                            ))
                        })?;
                    Truth::Points(detect::truth_boundaries(&t))
                }
                None => match meta_edges(&item.meta) {
                    Some(edges) => Truth::Edges(edges),
                    None => {
                        ctx.log(format!("video `{}` has no labels (`truth.json`, or human or truth labels in the catalog); skipped", item.key));
                        continue;
                    }
                },
            };
            let path = match crate::video::local_video(item, ctx).await {
                Ok(p) => p,
                Err(e) => {
                    ctx.log(format!("video `{}` skipped: {e}", item.key));
                    continue;
                }
            };
            let p = c.detector.clone();
            let (cancel, threads) = (ctx.cancel_token(), Some(ctx.threads()));
            let cues = ctx
                .blocking(move || {
                    Ok(detect::cues_from_video(&path, &p, threads, &|| {
                        cancel.is_cancelled()
                    }))
                })
                .await?;
            if ctx.cancel_token().is_cancelled() {
                return Err(StageError::Cancelled);
            }
            match cues {
                Ok(cues) => by_league.entry(league).or_default().push((cues, truth)),
                Err(e) => ctx.log(format!(
                    "video `{}` skipped: Failed to decode: {e}",
                    item.key
                )),
            }
        }
        ctx.progress(total, total);
        let mut out = Calibration {
            version: CALIBRATION_VERSION,
            tolerance: c.tolerance,
            min_precision: c.min_precision,
            leagues: BTreeMap::new(),
        };
        let mut values = serde_json::Map::new();
        for (league, videos) in by_league {
            let cfg = c.clone();
            let l = ctx
                .blocking(move || Ok(calibrate_league(&videos, &cfg)))
                .await?;
            let pct = |x: f64| format!("{:.0}%", 100.0 * x);
            let prec = |x: Option<f64>| x.map(pct).unwrap_or_else(|| "-".into());
            ctx.log(format!(
                "league `{league}` ({} videos, {} boundaries): {} threshold {} rare_share {}: recall {} precision {} (base detector: recall {} precision {}){}",
                l.videos,
                l.boundaries,
                if l.calibrated { "calibrated" } else { "not calibrated," },
                l.threshold,
                l.rare_share,
                pct(l.recall),
                prec(l.precision),
                pct(l.base_recall),
                prec(l.base_precision),
                l.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default(),
            ));
            values.insert(league.clone(), json!({ "recall": l.recall, "base_recall": l.base_recall, "calibrated": l.calibrated }));
            out.leagues.insert(league, l);
        }
        if out.leagues.is_empty() {
            ctx.log("teacher.calibrate: no labelled videos in the inputs; the calibration is empty and the teacher keeps its detector");
        }
        ctx.set_value("leagues", Value::Object(values));
        let bytes = serde_json::to_vec_pretty(&out).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.put_file("calibration", CALIBRATION_FILE, bytes).await?;
        ctx.set_meta("calibration", json!({ "leagues": out.leagues.len() }))?;
        Ok(())
    }
}
