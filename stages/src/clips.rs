//! `clips.cut`: cuts each tagged video into training samples around its
//! replay segments (a map stage: cached per video).
//!
//! One output item per video holds ALL its clips as `clips.json` (a list of
//! spans with kind and label) next to the video it points into; the clip
//! mp4 files are written only with `write_video: true`. Why: the next stage
//! (frame features) decodes the source video at the clip spans anyway, so
//! re-encoding thousands of small mp4s would only cost time and storage;
//! and a map stage emits exactly one item per input item.

use crate::formats::{CLIPS_FILE, Clip, ClipKind, ClipSet, NegativeKind, stable_hash};
use async_trait::async_trait;
use engine_core::stage::ParamsError;
use engine_core::stage::{ItemCtx, MapStage, StageConfig, StageEnv, StageError, StageImpl};
use engine_core::store::Item;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the replay segments come from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// `tags.json` from `teacher.tag`: human labels when the video had them,
    /// else the teacher's proposed segments.
    #[default]
    Auto,
    /// The generator's exact `truth.json` (to evaluate on synthetic data only).
    Truth,
}

/// Params of `clips.cut`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CutConfig {
    /// Clip length in seconds.
    #[serde(default = "default_window")]
    pub window: f64,
    /// Step between replay-content clips and between live candidates (seconds).
    #[serde(default = "default_stride")]
    pub stride: f64,
    /// Negatives per positive clip (hard negatives first, then live play).
    #[serde(default = "default_ratio")]
    pub negative_ratio: f64,
    /// Seed of the negative sampling (mixed with the video key).
    #[serde(default)]
    pub seed: u64,
    /// Where the replay segments come from: `auto` or `truth`.
    #[serde(default)]
    pub labels: LabelSource,
    /// Also cut every clip into `clips/<id>.mp4` (slow; off by default).
    #[serde(default)]
    pub write_video: bool,
}

fn default_window() -> f64 {
    2.0
}
fn default_stride() -> f64 {
    1.0
}
fn default_ratio() -> f64 {
    1.0
}

impl StageConfig for CutConfig {
    const KIND: &'static str = "clips.cut";
    const SUMMARY: &'static str =
        "per video: replay start/end/content clips and negatives (clips.json)";
    fn check(&self) -> Result<(), ParamsError> {
        for (n, v) in [("window", self.window), ("stride", self.stride)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{n}` must be a positive number of seconds, got {v}").into());
            }
        }
        if !(self.negative_ratio.is_finite() && self.negative_ratio >= 0.0) {
            return Err(format!(
                "`negative_ratio` must be 0 or more, got {}",
                self.negative_ratio
            )
            .into());
        }
        Ok(())
    }
    fn build(self) -> StageImpl {
        StageImpl::Map(Arc::new(Cut(self)))
    }
}

/// What the cutter knows about one video.
pub struct VideoLabels {
    pub duration: f64,
    pub segments: Vec<(f64, f64)>,
    /// Times of non-replay graphics (hard negatives).
    pub graphics: Vec<f64>,
    /// Times of hard cuts.
    pub cuts: Vec<f64>,
    pub source: String,
}

/// The clip plan of one video. Deterministic from (config, key, labels).
pub fn plan_clips(c: &CutConfig, key: &str, v: &VideoLabels) -> Vec<Clip> {
    let w = c.window.min(v.duration);
    if w <= 0.0 {
        return vec![];
    }
    // A window of length `w` around `t`, kept inside the video.
    let around = |t: f64| {
        let s = (t - w / 2.0).clamp(0.0, (v.duration - w).max(0.0));
        (s, s + w)
    };
    let mut out: Vec<(f64, f64, ClipKind, Option<NegativeKind>)> = vec![];
    for &(s, e) in &v.segments {
        let (a, b) = around(s);
        out.push((a, b, ClipKind::ReplayStart, None));
        let (a, b) = around(e);
        out.push((a, b, ClipKind::ReplayEnd, None));
        let mut t = s + w / 2.0;
        let mut any = false;
        while t + w <= e - w / 2.0 + 1e-9 {
            out.push((t, t + w, ClipKind::ReplayContent, None));
            any = true;
            t += c.stride;
        }
        if !any && e - s >= w {
            let (a, b) = around((s + e) / 2.0);
            out.push((a, b, ClipKind::ReplayContent, None));
        }
    }
    let positives = out.len();
    let wanted = (positives as f64 * c.negative_ratio).round() as usize;
    // Negatives keep half a window away from every replay.
    let clear = |a: f64, b: f64| {
        v.segments
            .iter()
            .all(|&(s, e)| b <= s - w / 2.0 || a >= e + w / 2.0)
    };
    let mut hard: Vec<(f64, f64, ClipKind, Option<NegativeKind>)> = vec![];
    for (times, kind) in [
        (&v.graphics, NegativeKind::DistractorGraphic),
        (&v.cuts, NegativeKind::HardCut),
    ] {
        for &t in times {
            let (a, b) = around(t);
            if clear(a, b) && !hard.iter().any(|h| (h.0 - a).abs() < w / 2.0) {
                hard.push((a, b, ClipKind::Negative, Some(kind)));
            }
            // The shot a hard cut opens (a tight live camera) looks like
            // replay content frame by frame; the window around the cut
            // shows only its first half.
            if kind == NegativeKind::HardCut && t + w <= v.duration {
                let (a, b) = (t, t + w);
                if clear(a, b) && !hard.iter().any(|h| (h.0 - a).abs() < w / 2.0) {
                    hard.push((a, b, ClipKind::Negative, Some(kind)));
                }
            }
        }
    }
    let mut live = vec![];
    let mut t = 0.0;
    while t + w <= v.duration + 1e-9 {
        if clear(t, t + w) && !hard.iter().any(|h| (h.0 - t).abs() < w) {
            live.push((t, t + w, ClipKind::Negative, Some(NegativeKind::Live)));
        }
        t += c.stride;
    }
    let salt = stable_hash(c.seed, key);
    let order = |list: &mut Vec<(f64, f64, ClipKind, Option<NegativeKind>)>| {
        list.sort_by_key(|x| stable_hash(salt, &format!("{:.3}", x.0)));
    };
    order(&mut hard);
    order(&mut live);
    out.extend(hard.into_iter().chain(live).take(wanted));
    out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
    out.into_iter()
        .enumerate()
        .map(|(i, (start, end, kind, negative))| Clip {
            id: format!("{i:04}"),
            start,
            end,
            kind,
            negative,
            label: u8::from(kind != ClipKind::Negative),
            source: v.source.clone(),
        })
        .collect()
}

struct Cut(CutConfig);

async fn read_json<T: serde::de::DeserializeOwned>(
    ctx: &StageEnv,
    item: &Item,
    name: &str,
) -> Result<Option<T>, StageError> {
    let Some(blob) = item.files.get(name) else {
        return Ok(None);
    };
    let bytes = ctx.read(blob).await?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        StageError::msg(format!(
            "Failed to parse `{name}` of video `{}`: {e}",
            item.key
        ))
    })
}

/// A catalogued generated video: its `truth` labels from `catalog.query`'s
/// meta (replay spans only; the catalog keeps no distractor times).
fn catalog_truth(item: &Item, duration: Option<f64>) -> Result<VideoLabels, StageError> {
    let labels = item.meta.get("labels").and_then(Value::as_array);
    let truth: Vec<(f64, f64)> = labels
        .into_iter()
        .flatten()
        .filter(|l| l.get("source").and_then(Value::as_str) == Some("truth"))
        .filter_map(|l| Some((l.get("start_s")?.as_f64()?, l.get("end_s")?.as_f64()?)))
        .collect();
    if truth.is_empty() {
        return Err(StageError::msg(format!(
            "video `{}` has no `truth.json` and no `truth` labels in the catalog; `labels: truth` is for generated videos (from the generator, or imported into the catalog with their ground truth); use `labels: auto` for other videos",
            item.key
        )));
    }
    let duration = duration
        .or_else(|| item.meta.get("duration_s").and_then(Value::as_f64))
        .unwrap_or_else(|| truth.iter().map(|s| s.1).fold(0.0, f64::max));
    Ok(VideoLabels {
        duration,
        segments: truth,
        graphics: vec![],
        cuts: vec![],
        source: "truth".into(),
    })
}

impl Cut {
    async fn labels(&self, item: &Item, ctx: &StageEnv) -> Result<VideoLabels, StageError> {
        let meta_duration = item
            .meta
            .get("duration")
            .or_else(|| item.meta.pointer("/probe/duration"))
            .and_then(Value::as_f64);
        match self.0.labels {
            LabelSource::Truth => {
                let Some(t) =
                    read_json::<media::synth::GroundTruth>(ctx, item, "truth.json").await?
                else {
                    return catalog_truth(item, meta_duration);
                };
                use media::synth::DistractorKind as D;
                let at = |k: &[D]| -> Vec<f64> {
                    t.distractors
                        .iter()
                        .filter(|d| k.contains(&d.kind))
                        .map(|d| d.span.start)
                        .collect()
                };
                Ok(VideoLabels {
                    duration: t.video.duration,
                    segments: t
                        .replays
                        .iter()
                        .map(|r| (r.span.start, r.span.end))
                        .collect(),
                    graphics: at(&[D::AdBanner, D::LowerThird, D::ScorePopup]),
                    cuts: at(&[D::LiveCut]),
                    source: "truth".into(),
                })
            }
            LabelSource::Auto => {
                let tags: crate::teacher::Tags = read_json(ctx, item, "tags.json").await?.ok_or_else(|| {
                    StageError::msg(format!("video `{}` has no `tags.json`; put `teacher.tag` (and `review.route`) before `clips.cut`", item.key))
                })?;
                Ok(teacher_labels(tags, meta_duration))
            }
        }
    }
}

/// What the teacher's (or a person's) `tags.json` says: the replays, and as
/// hard negatives the hard cuts, the boundaries outside every replay (graphics
/// that are not replay wipes) and the overlays the teacher saw.
fn teacher_labels(tags: crate::teacher::Tags, meta_duration: Option<f64>) -> VideoLabels {
    let segments: Vec<(f64, f64)> = tags.segments.iter().map(|s| (s.start, s.end)).collect();
    let outside = |t: &f64| segments.iter().all(|&(s, e)| *t < s || *t > e);
    let mut graphics: Vec<f64> = tags
        .boundaries
        .iter()
        .map(|b| b.time)
        .chain(tags.overlays.iter().copied())
        .filter(outside)
        .collect();
    graphics.sort_by(f64::total_cmp);
    let duration = tags
        .duration
        .or(meta_duration)
        .unwrap_or_else(|| segments.last().map(|s| s.1).unwrap_or(0.0));
    VideoLabels {
        duration,
        segments,
        graphics,
        cuts: tags.cuts,
        source: tags.source,
    }
}

#[async_trait]
impl MapStage for Cut {
    fn version(&self) -> u32 {
        // 2: the shot after a hard cut is a hard negative too.
        // 3: the teacher's overlays are hard negatives.
        3
    }
    fn output(&self) -> String {
        "clips".into()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError> {
        let labels = self.labels(item, ctx).await?;
        let clips = plan_clips(&self.0, &item.key, &labels);
        for (n, b) in &item.files {
            ctx.attach_file(n, b.clone())?;
        }
        if self.0.write_video && !clips.is_empty() {
            let (name, blob) = item
                .files
                .iter()
                .find(|(n, _)| n.ends_with(".mp4") || n.ends_with(".mkv") || n.ends_with(".webm"))
                .ok_or_else(|| {
                    StageError::msg(format!("video `{}` has no video file to cut", item.key))
                })?;
            let dir = ctx.scratch_dir()?.to_path_buf();
            let src = dir.join(name);
            ctx.fetch(blob, &src).await?;
            let spans: Vec<(String, f64, f64)> = clips
                .iter()
                .map(|c| (c.id.clone(), c.start, c.end))
                .collect();
            let out = dir.clone();
            let cancel = ctx.cancel_token();
            ctx.blocking(move || {
                for (id, s, e) in spans {
                    if cancel.is_cancelled() {
                        return Err(StageError::Cancelled);
                    }
                    media::cut(&src, s, e - s, out.join(format!("clip-{id}.mp4")))
                        .map_err(|e| StageError::msg(e.to_string()))?;
                }
                Ok(())
            })
            .await?;
            for c in &clips {
                ctx.put_file_from(
                    &format!("clips/{}.mp4", c.id),
                    &dir.join(format!("clip-{}.mp4", c.id)),
                )
                .await?;
            }
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &clips {
            *counts.entry(c.kind.as_str()).or_default() += 1;
        }
        let set = ClipSet {
            version: 1,
            video: item.key.clone(),
            duration: labels.duration,
            window: self.0.window,
            source: labels.source.clone(),
            segments: labels.segments.clone(),
            clips,
        };
        let bytes = serde_json::to_vec_pretty(&set).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.put_file(CLIPS_FILE, bytes).await?;
        let mut meta = if item.meta.is_object() {
            item.meta.clone()
        } else {
            json!({})
        };
        meta["clips"] =
            json!({ "total": set.clips.len(), "kinds": counts, "source": labels.source });
        ctx.set_meta(meta);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CutConfig {
        serde_json::from_value(json!({})).unwrap()
    }

    #[test]
    fn the_teachers_overlays_outside_replays_are_hard_negatives() {
        let tags: crate::teacher::Tags = serde_json::from_value(json!({
            "version": 1, "video": "v", "source": "teacher", "route": "auto",
            "confidence": 0.9, "duration": 60.0,
            "boundaries": [
                {"time": 10.0, "start": 9.8, "end": 10.2, "peak": 0.5, "confidence": 1.0},
                {"time": 20.0, "start": 19.8, "end": 20.2, "peak": 0.5, "confidence": 1.0},
                {"time": 50.0, "start": 49.8, "end": 50.2, "peak": 0.3, "confidence": 0.6}
            ],
            "segments": [{"start": 9.8, "end": 20.2, "confidence": 1.0}],
            "cuts": [30.0],
            "overlays": [40.0, 15.0]
        }))
        .unwrap();
        let v = teacher_labels(tags, None);
        // The overlay inside the replay (zoomed content) is not a negative.
        assert_eq!(v.graphics, vec![40.0, 50.0]);
        assert_eq!((&v.cuts, v.duration), (&vec![30.0], 60.0));
        let clips = plan_clips(&cfg(), "v", &v);
        let hard = |k| {
            clips
                .iter()
                .filter(|c| c.negative == Some(k))
                .map(|c| (c.start + c.end) / 2.0)
                .collect::<Vec<_>>()
        };
        assert!(
            hard(NegativeKind::DistractorGraphic).contains(&40.0),
            "{clips:?}"
        );
    }

    #[test]
    fn clips_cover_start_end_content_and_balanced_negatives() {
        let v = VideoLabels {
            duration: 30.0,
            segments: vec![(10.0, 18.0)],
            graphics: vec![25.0],
            cuts: vec![],
            source: "truth".into(),
        };
        let clips = plan_clips(&cfg(), "k", &v);
        let n = |k: ClipKind| clips.iter().filter(|c| c.kind == k).count();
        assert_eq!(n(ClipKind::ReplayStart), 1);
        assert_eq!(n(ClipKind::ReplayEnd), 1);
        assert!(n(ClipKind::ReplayContent) >= 4);
        let pos = clips.len() - n(ClipKind::Negative);
        assert_eq!(n(ClipKind::Negative), pos);
        assert!(
            clips
                .iter()
                .any(|c| c.negative == Some(NegativeKind::DistractorGraphic))
        );
        for c in clips.iter().filter(|c| c.kind == ClipKind::Negative) {
            assert!(c.end <= 9.0 || c.start >= 19.0, "{c:?}");
        }
        assert_eq!(clips, plan_clips(&cfg(), "k", &v), "deterministic");
    }

    #[test]
    fn a_hard_cut_gives_the_window_around_it_and_the_shot_it_opens() {
        let v = VideoLabels {
            duration: 60.0,
            segments: vec![(10.0, 18.0)],
            graphics: vec![],
            cuts: vec![40.0],
            source: "truth".into(),
        };
        let clips = plan_clips(&cfg(), "k", &v);
        let w = cfg().window;
        let hard: Vec<(f64, f64)> = clips
            .iter()
            .filter(|c| c.negative == Some(NegativeKind::HardCut))
            .map(|c| (c.start, c.end))
            .collect();
        assert!(hard.contains(&(40.0 - w / 2.0, 40.0 + w / 2.0)), "{hard:?}");
        assert!(hard.contains(&(40.0, 40.0 + w)), "{hard:?}");
        // A cut at a replay's edge gives neither.
        let edge = VideoLabels {
            cuts: vec![18.0],
            ..v
        };
        assert!(
            !plan_clips(&cfg(), "k", &edge)
                .iter()
                .any(|c| c.negative == Some(NegativeKind::HardCut))
        );
    }
}
