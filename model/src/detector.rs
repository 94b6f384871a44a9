//! The replay detector: a frozen backbone, the temporal model and the
//! post-processing rule, stored together as one artifact. Evaluation,
//! `engine detect` and the `detect` stage all run it through
//! [`Detector::detect_video`] or [`Detector::segments_of`], so what is
//! measured is what runs in production.

use crate::data::{FEATURES_FILE, read_video_features};
use crate::extract::find_one;
use crate::frames::{Sampling, video_features};
use crate::net::{Backbone, BackboneInfo, Temporal, TemporalConfig};
use crate::{device, read_json, torch_err};
use async_trait::async_trait;
use engine_core::stage::{Input, ItemCtx, MapStage, StageError, StageImpl};
use engine_core::store::Item;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
pub use stages::model::params::detect::DetectConfig;
use stages::replay::metrics::Evaluation;
pub use stages::replay::postprocess::VideoDetections;
use stages::replay::postprocess::{Detection, PostProcess};
pub use stages::replay::predictions::record_predictions;
use stages::video::local_video;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Tensor, nn};

pub const DETECTOR_KIND: &str = "replay-detector";

/// `model.json`: everything needed to run a detector.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorInfo {
    /// Always `replay-detector`.
    pub kind: String,
    pub backbone: BackboneInfo,
    /// Digest of the backbone artifact the features came from.
    pub backbone_digest: String,
    pub temporal: TemporalConfig,
    pub postprocess: PostProcess,
    /// `train.sweep` or `train.joint`.
    pub trainer: String,
    /// The trainer's params.
    #[serde(default)]
    pub params: Value,
    /// Test-split figures and curves.
    #[serde(default)]
    pub metrics: Value,
    /// What it was trained on, so `detect` and `model.deploy` can refuse a
    /// model of another sport. Absent in models made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_on: Option<TrainedOn>,
    /// More temporal models whose probabilities are averaged with the
    /// first one's (`model.select` with `ensemble:` above 1). Empty for a
    /// single model, and in models made before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<EnsembleMember>,
}

/// One more temporal model of an ensemble, over the same backbone.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleMember {
    /// The sweep trial it came from.
    pub trial: String,
    pub temporal: TemporalConfig,
    /// Its weights file in the artifact (`temporal-1.safetensors`, ...).
    pub weights: String,
}

/// The training data of a detector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainedOn {
    /// The sport of every training video (`basketball`).
    pub sport: String,
    /// Leagues with training videos, sorted.
    pub leagues: Vec<String>,
    /// blake3 over the sorted (video, features digest) pairs: equal data,
    /// equal digest.
    pub data: String,
}

impl TrainedOn {
    /// From the feature items a model was trained on. Every item must name
    /// the same sport (`sport` in its meta, from the catalog or generator).
    pub fn of(items: &[Item]) -> Result<TrainedOn, StageError> {
        let mut sports = std::collections::BTreeSet::new();
        let mut leagues = std::collections::BTreeSet::new();
        let mut keyed: Vec<(&str, String)> = items
            .iter()
            .map(|i| (i.key.as_str(), i.digest().to_string()))
            .collect();
        keyed.sort();
        let listing: String = keyed.iter().map(|(k, d)| format!("{k}\t{d}\n")).collect();
        for i in items {
            if let Some(s) = i.meta.get("sport").and_then(Value::as_str) {
                sports.insert(s.to_string());
            }
            if let Some(l) = i.meta.get("league").and_then(Value::as_str) {
                leagues.insert(l.to_string());
            }
        }
        if sports.len() > 1 {
            return Err(StageError::msg(format!(
                "the training videos mix sports ({}); a replay detector is trained per sport: select one sport in the data query",
                sports.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(TrainedOn {
            sport: sports.into_iter().next().unwrap_or_default(),
            leagues: leagues.into_iter().collect(),
            data: engine_core::digest::Digest::of(listing.as_bytes()).to_string(),
        })
    }
}

/// Same sport, modulo the generator's `ice-hockey` vs the values files' `hockey`.
pub fn same_sport(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        if s == "ice-hockey" {
            "hockey".to_string()
        } else {
            s.to_ascii_lowercase()
        }
    };
    norm(a) == norm(b)
}

/// Refuses to run a model of one sport on a video of another.
pub fn check_sport(
    info: &DetectorInfo,
    video_sport: Option<&str>,
    video: &str,
) -> Result<(), StageError> {
    if let (Some(t), Some(v)) = (&info.trained_on, video_sport)
        && !t.sport.is_empty()
        && !same_sport(&t.sport, v)
    {
        return Err(StageError::msg(format!(
            "the model was trained on {} but video `{video}` is {v}; use a {v} model (e.g. `models/{v}@production`)",
            t.sport
        )));
    }
    Ok(())
}

/// A loaded detector (one per worker thread: tensors are not Sync).
pub struct Detector {
    pub info: DetectorInfo,
    backbone: Backbone,
    /// The temporal model, then the ensemble's other members (each with
    /// the store its weights live in).
    temporal: Vec<(nn::VarStore, Temporal)>,
    device: Device,
}

/// Loads one temporal model's weights from `path`.
fn load_temporal(
    cfg: &TemporalConfig,
    path: &Path,
    dev: Device,
    json: &Path,
    dim: i64,
) -> Result<(nn::VarStore, Temporal), StageError> {
    if cfg.dim != dim {
        return Err(StageError::msg(format!(
            "`{}`: the temporal model `{}` takes {} features but the backbone gives {dim}",
            json.display(),
            path.display(),
            cfg.dim,
        )));
    }
    let mut vs = nn::VarStore::new(dev);
    let temporal = Temporal::new(&vs.root(), cfg.clone());
    vs.load(path).map_err(torch_err(format!(
        "Failed to load the temporal model `{}` (does it match the sizes in `{}`?)",
        path.display(),
        json.display()
    )))?;
    Ok((vs, temporal))
}

impl Detector {
    /// Loads a detector artifact's files from `dir`.
    pub fn load(dir: &Path) -> Result<Detector, StageError> {
        let json = dir.join("model.json");
        if !json.exists() {
            let what = if dir.join("backbone.json").exists() {
                "a backbone, not a replay detector (use the output of `train.sweep`, `train.joint` or `model.select`)"
            } else {
                "not a model artifact (no `model.json`)"
            };
            return Err(StageError::msg(format!("`{}` is {what}", dir.display())));
        }
        let info: DetectorInfo = read_json(&json, "model description")?;
        if info.kind != DETECTOR_KIND {
            return Err(StageError::msg(format!(
                "`{}` is a `{}` model, not a `{DETECTOR_KIND}`",
                json.display(),
                info.kind
            )));
        }
        info.postprocess
            .check()
            .map_err(|e| StageError::msg(format!("`{}`: {e}", json.display())))?;
        let dev = device();
        let backbone = Backbone::load(&info.backbone, dir, dev)?;
        let dim = info.backbone.feature_dim();
        let mut temporal = vec![load_temporal(
            &info.temporal,
            &dir.join("temporal.safetensors"),
            dev,
            &json,
            dim,
        )?];
        for m in &info.ensemble {
            if m.weights.contains(['/', '\\']) || m.weights.starts_with('.') {
                return Err(StageError::msg(format!(
                    "`{}`: ensemble weights `{}` must be a file name inside the model",
                    json.display(),
                    m.weights
                )));
            }
            temporal.push(load_temporal(
                &m.temporal,
                &dir.join(&m.weights),
                dev,
                &json,
                dim,
            )?);
        }
        Ok(Detector {
            info,
            backbone,
            temporal,
            device: dev,
        })
    }

    pub fn sampling(&self) -> Sampling {
        Sampling {
            fps: self.info.backbone.fps,
            width: self.info.backbone.width,
            height: self.info.backbone.height,
            threads: None,
        }
    }

    /// Per-frame (start, end, content) probabilities of a feature sequence
    /// `[frames, dim]`: the mean over the ensemble's members.
    pub fn probs(&self, feats: &Tensor) -> Result<Vec<[f32; 3]>, StageError> {
        let feats = feats.to_device(self.device);
        let mut sum: Vec<[f32; 3]> = vec![];
        for (_, t) in &self.temporal {
            let p = t.probs(&feats)?;
            if sum.is_empty() {
                sum = p;
            } else {
                for (s, q) in sum.iter_mut().zip(&p) {
                    for k in 0..3 {
                        s[k] += q[k];
                    }
                }
            }
        }
        let n = self.temporal.len() as f32;
        if n > 1.0 {
            for s in &mut sum {
                for v in s.iter_mut() {
                    *v /= n;
                }
            }
        }
        Ok(sum)
    }

    /// Segments from a video's feature sequence `[frames, dim]`.
    pub fn segments_of(&self, feats: &Tensor) -> Result<Vec<Detection>, StageError> {
        let probs = self.probs(feats)?;
        Ok(self
            .info
            .postprocess
            .segments(&probs, self.info.backbone.fps))
    }

    /// Streams a video through backbone, temporal model and post-processing.
    pub fn detect_video(
        &self,
        path: &Path,
        progress: impl FnMut(u64),
        stop: impl Fn() -> bool + Sync,
    ) -> Result<VideoDetections, StageError> {
        let s = self.sampling();
        let motion = self.info.backbone.frame_motion;
        let f = video_features(
            &self.backbone,
            path,
            s,
            motion,
            64,
            self.device,
            progress,
            stop,
        )?;
        self.detect_features(&f)
    }

    /// The rest of the path from a video's features `[frames, dim]`, made
    /// by this detector's backbone at its sampling rate.
    pub fn detect_features(&self, f: &Tensor) -> Result<VideoDetections, StageError> {
        let fps = self.sampling().fps;
        let signals = self.probs(f)?;
        Ok(VideoDetections {
            frames: f.size()[0] as usize,
            fps,
            segments: self.info.postprocess.segments(&signals, fps),
            signals,
        })
    }
}

/// The features `features.extract` made of this video with the detector's
/// own backbone and sampling rate, if the item carries them: the backbone
/// is the costly half of detection, and a golden set evaluated by every
/// candidate of one backbone needs it once per video.
fn reusable_features<'a>(
    item: &'a Item,
    info: &DetectorInfo,
) -> Option<&'a engine_core::store::BlobRef> {
    let blob = item.files.get(FEATURES_FILE)?;
    let made = item.meta.get("features")?;
    let same_backbone = made.get("backbone")?.as_str()? == info.backbone_digest;
    let same_rate = (made.get("fps")?.as_f64()? - info.backbone.fps).abs() < 1e-9;
    (same_backbone && same_rate).then_some(blob)
}

/// The shared inference path: temporal model over `feats`, then the rule.
pub fn segments_of(
    t: &Temporal,
    pp: &PostProcess,
    feats: &Tensor,
    fps: f64,
    dev: Device,
) -> Result<Vec<Detection>, StageError> {
    let probs = t.probs(&feats.to_device(dev))?;
    Ok(pp.segments(&probs, fps))
}

/// Figures per video, league, broadcaster and overall.
#[derive(Default)]
pub struct EvalReport {
    pub overall: Evaluation,
    pub leagues: BTreeMap<String, Evaluation>,
    pub broadcasters: BTreeMap<String, Evaluation>,
    pub videos: Vec<Value>,
}

impl EvalReport {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        video: &str,
        league: &str,
        broadcaster: &str,
        pred: &[Detection],
        truth: &[(f64, f64)],
        frames: usize,
        fps: f64,
    ) {
        let p: Vec<(f64, f64)> = pred.iter().map(|d| (d.start, d.end)).collect();
        let e = Evaluation::of_video(&p, truth, frames, fps);
        self.overall.add(&e);
        self.leagues.entry(league.into()).or_default().add(&e);
        self.broadcasters
            .entry(broadcaster.into())
            .or_default()
            .add(&e);
        self.videos.push(json!({
            "video": video, "league": league, "broadcaster": broadcaster,
            "truth": truth, "predicted": pred, "segment_f1": e.segment_f1(),
        }));
    }

    pub fn to_json(&self) -> Value {
        let group = |m: &BTreeMap<String, Evaluation>| -> Value {
            m.iter()
                .map(|(k, e)| (k.clone(), json!(e.summary())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "overall": self.overall.summary(),
            "leagues": group(&self.leagues),
            "broadcasters": group(&self.broadcasters),
            "videos": self.videos,
        })
    }
}

/// The one replay-detector artifact among a stage's inputs.
pub fn find_model<'a>(inputs: &'a [Input], stage: &str) -> Result<&'a Input, StageError> {
    find_one(
        inputs,
        "model.json",
        stage,
        "replay detector",
        "`model.select` (or `train.sweep`, `train.joint`)",
    )
}

pub(crate) struct Detect(DetectConfig);

/// What `detect` runs the detector on.
enum Source {
    /// A `features.safetensors` made with the detector's backbone.
    Features(std::path::PathBuf),
    /// A local video file.
    Video(std::path::PathBuf),
}

impl crate::ModelStage for Detect {
    type Config = DetectConfig;
    const KIND: &'static str = "detect";
    fn build(c: DetectConfig) -> StageImpl {
        StageImpl::Map(Arc::new(Detect(c)))
    }
}

/// True when the inputs hold an `artifact.ref` placeholder for a missing ref.
fn missing_model(inputs: &[Input]) -> Option<String> {
    inputs.iter().find_map(|i| {
        i.manifest
            .meta
            .get("missing")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

#[async_trait]
impl MapStage for Detect {
    fn version(&self) -> u32 {
        stages::model::params::kind("detect").version
    }
    fn output(&self) -> String {
        "predictions".into()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError> {
        let mut meta = if item.meta.is_object() {
            item.meta.clone()
        } else {
            json!({})
        };
        if self.0.optional
            && !ctx
                .inputs()
                .iter()
                .any(|i| i.manifest.files.contains_key("model.json"))
            && let Some(name) = missing_model(ctx.inputs())
        {
            let doc = json!({ "video": item.key, "model": null, "missing": name, "segments": [] });
            let bytes =
                serde_json::to_vec_pretty(&doc).map_err(|e| StageError::msg(e.to_string()))?;
            ctx.put_file("predictions.json", bytes).await?;
            meta["replays"] = json!(null);
            ctx.set_meta(meta);
            return Ok(());
        }
        let model = find_model(ctx.inputs(), "detect")?.clone();
        let dir = ctx.scratch_dir()?.join("model");
        ctx.export(&model, &dir).await?;
        let info: DetectorInfo = read_json(&dir.join("model.json"), "model description")?;
        // Features of the same backbone (a `features.extract` item) skip
        // the decode and the backbone; anything else decodes the video.
        let source = match reusable_features(item, &info) {
            Some(blob) => {
                let path = ctx.scratch_dir()?.join(FEATURES_FILE);
                ctx.fetch(blob, &path).await?;
                Source::Features(path)
            }
            None => Source::Video(local_video(item, ctx).await?),
        };
        let input = match source {
            Source::Features(_) => "features",
            Source::Video(_) => "video",
        };
        let (threads, cancel) = (ctx.threads(), ctx.cancel_token());
        let sport = item
            .meta
            .get("sport")
            .and_then(Value::as_str)
            .map(str::to_string);
        let key = item.key.clone();
        let found = ctx
            .blocking(move || {
                tch::set_num_threads(threads as i32);
                let d = Detector::load(&dir)?;
                check_sport(&d.info, sport.as_deref(), &key)?;
                match source {
                    Source::Features(path) => d.detect_features(&read_video_features(&path, &key)?),
                    Source::Video(video) => {
                        d.detect_video(&video, |_| {}, || cancel.is_cancelled())
                    }
                }
            })
            .await?;
        let doc = json!({
            "video": item.key, "model": model.digest.to_string(), "input": input,
            "fps": found.fps, "frames": found.frames, "segments": found.segments,
        });
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.put_file("predictions.json", bytes).await?;
        if let Some(url) = &self.0.catalog {
            let uri = item.meta.get("uri").and_then(Value::as_str).ok_or_else(|| {
                StageError::msg(format!(
                    "video `{}` has no catalog `uri`; `catalog:` needs videos from `catalog.query`",
                    item.key
                ))
            })?;
            record_predictions(url, uri, &model.digest.to_string(), &found.segments).await?;
        }
        meta["replays"] = json!(found.segments.len());
        ctx.set_meta(meta);
        Ok(())
    }
}
