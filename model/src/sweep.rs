//! `train.sweep`: the LSTM over cached features (one trial per task; the
//! grid is the stage's `matrix:`, so trials run in parallel under the
//! stage's resource class), and `model.select`: the best trial on the test
//! split becomes the model.

use crate::backbone::{ctx_log, to_json};
use crate::data::{FEATURES_FILE, FeatureInfo, read_video_features};
use crate::detector::{DETECTOR_KIND, DetectorInfo, EvalReport, TrainedOn, segments_of};
use crate::extract::find_backbone;
use crate::net::{BackboneInfo, Temporal, TemporalConfig};
use crate::train::{fit, frame_loss};
use crate::{device, read_json, torch_err};
use async_trait::async_trait;
use engine_core::stage::{Input, OutputDecl, Stage, StageEnv, StageError, StageImpl, TaskCtx};
use engine_core::store::Item;
use serde_json::{Value, json};
pub use stages::model::params::sweep::{SelectConfig, SweepConfig};
use stages::replay::targets::temporal_targets;
use std::sync::Arc;
use tch::{Device, Kind, Tensor, nn};

/// The temporal model's shape from a sweep's params.
pub fn temporal(c: &SweepConfig, dim: i64, window: i64) -> TemporalConfig {
    TemporalConfig {
        dim,
        hidden: c.hidden,
        layers: c.layers,
        bidirectional: c.bidirectional,
        window,
        motion: c.motion,
    }
}

/// One video's features, loaded.
struct Loaded {
    key: String,
    info: FeatureInfo,
    feats: Tensor,
}

/// Clip windows of `videos`: inputs `[N, W, D]` and targets `[N, W, 3]`.
fn windows(videos: &[&Loaded], window: i64, tolerance: f64) -> (Tensor, Tensor) {
    let mut xs = vec![];
    let mut ys = vec![];
    for v in videos {
        let n = v.info.frames;
        let y: Vec<f32> =
            temporal_targets(n as usize, v.info.fps, &v.info.segments, tolerance).concat();
        let y = Tensor::from_slice(&y).view([n, 3]);
        for c in &v.info.clips {
            if c.first + window <= n {
                xs.push(v.feats.narrow(0, c.first, window));
                ys.push(y.narrow(0, c.first, window));
            }
        }
    }
    if xs.is_empty() {
        return (
            Tensor::zeros([0], (Kind::Float, Device::Cpu)),
            Tensor::zeros([0], (Kind::Float, Device::Cpu)),
        );
    }
    (Tensor::stack(&xs, 0), Tensor::stack(&ys, 0))
}

pub(crate) struct Sweep(SweepConfig);

impl crate::ModelStage for Sweep {
    type Config = SweepConfig;
    const KIND: &'static str = "train.sweep";
    fn build(c: SweepConfig) -> StageImpl {
        StageImpl::Task(Arc::new(Sweep(c)))
    }
}

#[async_trait]
impl Stage for Sweep {
    fn version(&self) -> u32 {
        stages::model::params::kind("train.sweep").version
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("model")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = self.0.clone();
        let bb = find_backbone(ctx.inputs(), "train.sweep")?.clone();
        let mut items: Vec<Item> = ctx
            .input_items(c.from.as_deref())
            .filter(|i| i.files.contains_key(FEATURES_FILE))
            .cloned()
            .collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        if items.is_empty() {
            return Err(StageError::msg(
                "train.sweep found no features among its inputs; put `features.extract` in its `needs`",
            ));
        }
        let trained_on = TrainedOn::of(&items)?;
        let scratch = ctx.scratch_dir()?.to_path_buf();
        let bdir = scratch.join("backbone");
        ctx.export(&bb, &bdir).await?;
        let binfo: BackboneInfo = read_json(&bdir.join("backbone.json"), "backbone description")?;
        let mut files = vec![];
        for (i, item) in items.iter().enumerate() {
            let info = FeatureInfo::of(item)?;
            if info.backbone != bb.digest.to_string() {
                return Err(StageError::msg(format!(
                    "the features of video `{}` come from backbone {}, but this sweep's backbone is {}; rerun `features.extract` with the same backbone",
                    item.key,
                    &info.backbone[..12.min(info.backbone.len())],
                    &bb.digest.to_string()[..12]
                )));
            }
            if info.dim != binfo.feature_dim() {
                return Err(StageError::msg(format!(
                    "the features of video `{}` have {} dimensions, the backbone gives {}; rerun `features.extract` with this backbone",
                    item.key,
                    info.dim,
                    binfo.feature_dim()
                )));
            }
            let path = scratch.join(format!("features-{i}.safetensors"));
            ctx.fetch(&item.files[FEATURES_FILE], &path).await?;
            files.push((item.key.clone(), info, path));
        }
        let (threads, cancel, log, task) = (
            ctx.threads(),
            ctx.cancel_token(),
            ctx_log(ctx),
            ctx.task().to_string(),
        );
        let out = scratch.join("temporal.safetensors");
        let out2 = out.clone();
        let cc = c.clone();
        let feature_dim = binfo.feature_dim();
        let (temporal_cfg, curves, report, counts) = ctx
            .blocking(move || {
                tch::set_num_threads(threads as i32);
                let mut loaded = vec![];
                for (key, info, path) in files {
                    let feats = read_video_features(&path, &key)?;
                    if feats.size() != [info.frames, info.dim] {
                        return Err(StageError::msg(format!(
                            "the features of video `{key}` have shape {:?}, their meta says [{}, {}]",
                            feats.size(),
                            info.frames,
                            info.dim
                        )));
                    }
                    if feats.isnan().any().int64_value(&[]) != 0 {
                        return Err(StageError::msg(format!("the features of video `{key}` contain NaNs; rerun `features.extract`")));
                    }
                    loaded.push(Loaded { key, info, feats });
                }
                let of = |s: &str| loaded.iter().filter(|v| v.info.split == s).collect::<Vec<_>>();
                let (train, val, test) = (of("train"), of("validation"), of("test"));
                for (name, set) in [("train", &train), ("validation", &val), ("test", &test)] {
                    if set.is_empty() {
                        return Err(StageError::msg(format!(
                            "the {name} split has no videos ({} videos in all); add videos or change `dataset.split`'s fractions",
                            loaded.len()
                        )));
                    }
                }
                let window = loaded[0].info.window;
                let (xt, yt) = windows(&train, window, cc.tolerance);
                let (xv, yv) = windows(&val, window, cc.tolerance);
                if xt.numel() == 0 || xv.numel() == 0 {
                    return Err(StageError::msg("no clips in the train or validation split; check `clips.cut`"));
                }
                tch::manual_seed(cc.seed as i64);
                let dev = device();
                let vs = nn::VarStore::new(dev);
                let tcfg = temporal(&cc, feature_dim, window);
                let mut temporal = Temporal::new(&vs.root(), tcfg.clone());
                temporal.set_norm(&Tensor::cat(&train.iter().map(|v| v.feats.shallow_clone()).collect::<Vec<_>>(), 0).to_device(dev));
                let (xt, yt, xv, yv) = (xt.to_device(dev), yt.to_device(dev), xv.to_device(dev), yv.to_device(dev));
                let curves = fit(
                    &vs,
                    xt.size()[0] as usize,
                    &cc.fit(),
                    &format!("trial {task}"),
                    |idx| {
                        let i = Tensor::from_slice(idx).to_device(dev);
                        frame_loss(&temporal.forward(&xt.index_select(0, &i)), &yt.index_select(0, &i), cc.pos_weight)
                    },
                    || frame_loss(&temporal.forward(&xv), &yv, cc.pos_weight).double_value(&[]),
                    &cancel,
                    &log,
                )?;
                let mut report = EvalReport::default();
                for v in &test {
                    let segs = segments_of(&temporal, &cc.postprocess, &v.feats, v.info.fps, dev)?;
                    report.add(&v.key, &v.info.league, &v.info.broadcaster, &segs, &v.info.segments, v.info.frames as usize, v.info.fps);
                }
                vs.save(&out2).map_err(torch_err(format!("Failed to save `{}`", out2.display())))?;
                let counts = json!({
                    "videos": { "train": train.len(), "validation": val.len(), "test": test.len() },
                    "clips": { "train": xt.size()[0], "validation": xv.size()[0] },
                });
                Ok((tcfg, curves, report, counts))
            })
            .await?;
        let summary = report.overall.summary();
        let report_json = report.to_json();
        let metrics = json!({
            "test": summary, "leagues": report_json["leagues"], "broadcasters": report_json["broadcasters"],
            "curves": curves, "data": counts,
        });
        let info = DetectorInfo {
            kind: DETECTOR_KIND.into(),
            backbone: binfo.clone(),
            backbone_digest: bb.digest.to_string(),
            temporal: temporal_cfg,
            postprocess: c.postprocess.clone(),
            trainer: "train.sweep".into(),
            params: serde_json::to_value(&c).unwrap_or(Value::Null),
            metrics: metrics.clone(),
            trained_on: Some(trained_on),
            ensemble: vec![],
        };
        ctx.put_file_from("model", &binfo.weights, &bdir.join(&binfo.weights))
            .await?;
        ctx.put_file_from("model", "temporal.safetensors", &out)
            .await?;
        ctx.put_file("model", "model.json", to_json(&info)?).await?;
        ctx.put_file("model", "report.json", to_json(&report_json)?)
            .await?;
        let best_val = curves
            .val_loss
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        ctx.set_meta("model", json!({ "trial": ctx.task(), "params": info.params, "test": summary, "best_epoch": curves.best_epoch, "validation_loss": best_val }))?;
        for k in ["segment_f1", "start_f1_1s", "end_f1_1s", "segment_mean_f1"] {
            ctx.set_value(k, json!(summary.get(k)));
        }
        ctx.set_value("train_seconds", json!(curves.seconds));
        ctx.set_value("best_epoch", json!(curves.best_epoch));
        ctx.log(format!(
            "{}: test segment F1 {:.3}, start F1 {:.3}, end F1 {:.3} ({} test videos), trained in {:.1} s",
            ctx.task(),
            summary["segment_f1"],
            summary["start_f1_1s"],
            summary["end_f1_1s"],
            report.overall.videos,
            curves.seconds
        ));
        Ok(())
    }
}

pub(crate) struct Select(SelectConfig);

impl crate::ModelStage for Select {
    type Config = SelectConfig;
    const KIND: &'static str = "model.select";
    fn build(c: SelectConfig) -> StageImpl {
        StageImpl::Task(Arc::new(Select(c)))
    }
}

/// The `model.json` of a trial's model.
async fn read_info(ctx: &StageEnv, trial: &Input) -> Result<DetectorInfo, StageError> {
    let blob = trial.manifest.files.get("model.json").ok_or_else(|| {
        StageError::msg(format!("the output of `{}` has no model.json", trial.task))
    })?;
    serde_json::from_slice(&ctx.read(blob).await?).map_err(|e| {
        StageError::msg(format!(
            "the model of `{}` has a bad model.json: {e}",
            trial.task
        ))
    })
}

#[async_trait]
impl Stage for Select {
    fn version(&self) -> u32 {
        stages::model::params::kind("model.select").version
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("model")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let metric = &self.0.metric;
        let mut trials = vec![];
        for i in ctx
            .inputs()
            .iter()
            .filter(|i| i.manifest.files.contains_key("model.json"))
        {
            let v = i.manifest.meta.get("test").and_then(|t| t.get(metric)).and_then(Value::as_f64).ok_or_else(|| {
                StageError::msg(format!(
                    "model of `{}` has no test figure `{metric}`; known: segment_f1, segment_mean_f1, start_f1_1s, end_f1_1s, content_recall",
                    i.task
                ))
            })?;
            trials.push((i.clone(), v));
        }
        if trials.is_empty() {
            return Err(StageError::msg(
                "model.select found no models among its inputs; put `train.sweep` in its `needs`",
            ));
        }
        // Highest figure wins. The test split is small (a video or two per
        // league), so trials often tie on it: the lower validation loss
        // breaks ties, then the task label (stable).
        let val = |i: &Input| {
            i.manifest
                .meta
                .get("validation_loss")
                .and_then(Value::as_f64)
                .unwrap_or(f64::INFINITY)
        };
        trials.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(val(&a.0).total_cmp(&val(&b.0)))
                .then(a.0.task.cmp(&b.0.task))
        });
        let (best, value) = trials[0].clone();
        let members = &trials[..self.0.ensemble.min(trials.len())];
        let mut info = read_info(ctx, &best).await?;
        for (name, blob) in &best.manifest.files {
            if members.len() == 1 || name != "model.json" {
                ctx.attach_file("model", name, blob.clone())?;
            }
        }
        for (i, (m, _)) in members.iter().enumerate().skip(1) {
            let other = read_info(ctx, m).await?;
            if other.backbone_digest != info.backbone_digest {
                return Err(StageError::msg(format!(
                    "trials `{}` and `{}` were trained on different backbones; an ensemble shares one",
                    best.task, m.task
                )));
            }
            let Some(w) = m.manifest.files.get("temporal.safetensors") else {
                return Err(StageError::msg(format!(
                    "the model of `{}` has no temporal.safetensors",
                    m.task
                )));
            };
            let weights = format!("temporal-{i}.safetensors");
            ctx.attach_file("model", &weights, w.clone())?;
            info.ensemble.push(crate::detector::EnsembleMember {
                trial: m.task.clone(),
                temporal: other.temporal,
                weights,
            });
        }
        if members.len() > 1 {
            ctx.put_file("model", "model.json", to_json(&info)?).await?;
        }
        let table: Vec<Value> = trials
            .iter()
            .map(|(i, v)| json!({ "trial": i.task, metric.as_str(): v, "params": i.manifest.meta.get("params") }))
            .collect();
        // The page: every trial, the chosen one's curves and groups.
        let rows: Vec<Value> = trials
            .iter()
            .map(|(i, _)| {
                let m = &i.manifest.meta;
                json!({ "trial": i.task, "params": m.get("params"), "test": m.get("test"), "best_epoch": m.get("best_epoch") })
            })
            .collect();
        let info = serde_json::to_value(&info).unwrap_or(Value::Null);
        let title = format!("Replay model: {}", best.task);
        let html = stages::replay::html::model_report(
            &title,
            &best.task,
            metric,
            &rows,
            &info["metrics"],
        )?;
        ctx.put_file("model", "report.html", html.into_bytes())
            .await?;
        let ensemble: Vec<&str> = members.iter().map(|(m, _)| m.task.as_str()).collect();
        ctx.set_meta("model", json!({ "chosen": best.task, "ensemble": ensemble, "metric": metric, "value": value, "trials": table, "test": best.manifest.meta.get("test") }))?;
        ctx.set_value("chosen", json!(best.task));
        ctx.set_value("ensemble", json!(ensemble));
        ctx.set_value(metric, json!(value));
        ctx.log(format!(
            "model.select: {} wins with {metric} {value:.3} of {} trials{}",
            best.task,
            trials.len(),
            if members.len() > 1 {
                format!(
                    "; the model averages the best {}: {}",
                    members.len(),
                    ensemble.join(", ")
                )
            } else {
                String::new()
            }
        ));
        Ok(())
    }
}
