//! `train.joint`: the baseline the frozen-feature design replaced. The same
//! small CNN and LSTM are trained end to end on the frames of the same
//! clips, with the same targets, optimiser, early stopping and evaluation,
//! so the speed-up of training on cached features is measured, not claimed.

use crate::backbone::{ctx_log, to_json};
use crate::data::{DatasetVideo, clip_first, dataset_videos};
use crate::detector::{DETECTOR_KIND, DetectorInfo, EvalReport, segments_of};
use crate::frames::{Sampling, decode_all};
use crate::net::{Arch, BACKBONE_KIND, BackboneInfo, SmallCnn, Temporal, joint_forward};
use crate::train::{fit, frame_loss};
use crate::{device, torch_err};
use async_trait::async_trait;
use engine_core::stage::{OutputDecl, Stage, StageError, StageImpl, TaskCtx};
use serde_json::{Value, json};
pub use stages::model::params::joint::JointConfig;
use stages::replay::targets::temporal_targets;
use stages::video::local_video;
use std::sync::Arc;
use tch::{Kind, Tensor, nn};

pub(crate) struct Joint(JointConfig);

impl crate::ModelStage for Joint {
    type Config = JointConfig;
    const KIND: &'static str = "train.joint";
    fn build(c: JointConfig) -> StageImpl {
        StageImpl::Task(Arc::new(Joint(c)))
    }
}

/// A video's frames and its group, decoded once.
struct Frames {
    key: String,
    league: String,
    broadcaster: String,
    segments: Vec<(f64, f64)>,
    firsts: Vec<i64>,
    frames: Tensor,
}

#[async_trait]
impl Stage for Joint {
    fn version(&self) -> u32 {
        stages::model::params::kind("train.joint").version
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("model")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = self.0.clone();
        let t = c.temporal.clone();
        let s = Sampling {
            fps: c.fps,
            width: c.size,
            height: c.size,
            threads: None,
        };
        let videos = dataset_videos(ctx, t.from.as_deref()).await?;
        let t0 = std::time::Instant::now();
        let mut by_split: [Vec<Frames>; 3] = [vec![], vec![], vec![]];
        let mut window = 0;
        for v in videos {
            let DatasetVideo {
                item,
                split,
                league,
                broadcaster,
                set,
            } = v;
            let slot = match split.as_str() {
                "train" => 0,
                "validation" => 1,
                "test" => 2,
                _ => continue,
            };
            let path = local_video(&item, ctx).await?;
            let frames = ctx.blocking(move || decode_all(&path, s)).await?;
            let n = frames.size()[0];
            window = ((set.window * s.fps).round() as i64).max(1);
            let firsts = set
                .clips
                .iter()
                .map(|c| clip_first(c.start, s.fps, window, n))
                .filter(|f| f + window <= n)
                .collect();
            by_split[slot].push(Frames {
                key: item.key,
                league,
                broadcaster,
                segments: set.segments,
                firsts,
                frames,
            });
        }
        for (i, name) in ["train", "validation", "test"].iter().enumerate() {
            if by_split[i].is_empty() {
                return Err(StageError::msg(format!(
                    "train.joint: the {name} split has no videos; add videos or change `dataset.split`'s fractions"
                )));
            }
        }
        let decode_seconds = t0.elapsed().as_secs_f64();
        let scratch = ctx.scratch_dir()?.to_path_buf();
        let (bout, tout) = (
            scratch.join("backbone.safetensors"),
            scratch.join("temporal.safetensors"),
        );
        let (b2, t2) = (bout.clone(), tout.clone());
        let (threads, cancel, log) = (ctx.threads(), ctx.cancel_token(), ctx_log(ctx));
        let cc = c.clone();
        let (tcfg, curves, report, clips) = ctx
            .blocking(move || {
                tch::set_num_threads(threads as i32);
                let [train, val, test] = by_split;
                let stack = |vs: &[Frames]| -> (Tensor, Tensor) {
                    let mut xs = vec![];
                    let mut ys = vec![];
                    for v in vs {
                        let n = v.frames.size()[0];
                        let y: Vec<f32> =
                            temporal_targets(n as usize, s.fps, &v.segments, t.tolerance).concat();
                        let y = Tensor::from_slice(&y).view([n, 3]);
                        for &f in &v.firsts {
                            xs.push(v.frames.narrow(0, f, window));
                            ys.push(y.narrow(0, f, window));
                        }
                    }
                    (Tensor::stack(&xs, 0), Tensor::stack(&ys, 0))
                };
                let (xt, yt) = stack(&train);
                let (xv, yv) = stack(&val);
                tch::manual_seed(t.seed as i64);
                let dev = device();
                let vs = nn::VarStore::new(dev);
                let cnn = SmallCnn::new(&(vs.root() / "backbone"), cc.dim, 3);
                let tcfg = crate::sweep::temporal(&t, cc.dim, window);
                let temporal = Temporal::new(&(vs.root() / "temporal"), tcfg.clone());
                let loss = |x: &Tensor, y: &Tensor| {
                    frame_loss(
                        &joint_forward(&cnn, &temporal, &x.to_device(dev)),
                        &y.to_device(dev),
                        t.pos_weight,
                    )
                };
                let curves = fit(
                    &vs,
                    xt.size()[0] as usize,
                    &t.fit(),
                    "joint CNN+LSTM",
                    |idx| {
                        let i = Tensor::from_slice(idx);
                        loss(&xt.index_select(0, &i), &yt.index_select(0, &i))
                    },
                    || {
                        // Validation in chunks: the whole set at once would hold every frame's activations.
                        let n = xv.size()[0];
                        let mut sum = 0.0;
                        for a in (0..n).step_by(64) {
                            let k = 64.min(n - a);
                            sum += loss(&xv.narrow(0, a, k), &yv.narrow(0, a, k)).double_value(&[])
                                * k as f64;
                        }
                        sum / n.max(1) as f64
                    },
                    &cancel,
                    &log,
                )?;
                let mut report = EvalReport::default();
                tch::no_grad(|| -> Result<(), StageError> {
                    for v in &test {
                        let n = v.frames.size()[0];
                        let mut parts = vec![];
                        for a in (0..n).step_by(128) {
                            let x = v
                                .frames
                                .narrow(0, a, 128.min(n - a))
                                .to_device(dev)
                                .permute([0, 3, 1, 2])
                                .to_kind(Kind::Float)
                                / 255.0;
                            parts.push(cnn.features(&x));
                        }
                        let f = Tensor::cat(&parts, 0);
                        let segs = segments_of(&temporal, &t.postprocess, &f, s.fps, dev)?;
                        report.add(
                            &v.key,
                            &v.league,
                            &v.broadcaster,
                            &segs,
                            &v.segments,
                            n as usize,
                            s.fps,
                        );
                    }
                    Ok(())
                })?;
                for (prefix, path) in [("backbone.", &b2), ("temporal.", &t2)] {
                    let named: Vec<(String, Tensor)> = vs
                        .variables()
                        .into_iter()
                        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v)))
                        .collect();
                    Tensor::write_safetensors(&named, path)
                        .map_err(torch_err(format!("Failed to save `{}`", path.display())))?;
                }
                let clips = json!({ "train": xt.size()[0], "validation": xv.size()[0] });
                Ok((tcfg, curves, report, clips))
            })
            .await?;
        let summary = report.overall.summary();
        let report_json = report.to_json();
        let backbone = BackboneInfo {
            kind: BACKBONE_KIND.into(),
            arch: Arch::SmallCnn,
            width: c.size,
            height: c.size,
            dim: c.dim,
            fps: c.fps,
            frame_motion: false,
            weights: "backbone.safetensors".into(),
            origin: json!({ "stage": "train.joint" }),
        };
        let seconds = curves.seconds;
        let info = DetectorInfo {
            kind: DETECTOR_KIND.into(),
            backbone,
            backbone_digest: "trained jointly".into(),
            temporal: tcfg,
            postprocess: c.temporal.postprocess.clone(),
            trainer: "train.joint".into(),
            params: serde_json::to_value(&c).unwrap_or(Value::Null),
            metrics: json!({ "test": summary, "leagues": report_json["leagues"], "curves": curves, "clips": clips}),
            trained_on: None,
            ensemble: vec![],
        };
        ctx.put_file_from("model", "backbone.safetensors", &bout)
            .await?;
        ctx.put_file_from("model", "temporal.safetensors", &tout)
            .await?;
        ctx.put_file("model", "model.json", to_json(&info)?).await?;
        ctx.put_file("model", "report.json", to_json(&report_json)?)
            .await?;
        ctx.set_meta(
            "model",
            json!({ "trial": ctx.task(), "params": info.params, "test": summary }),
        )?;
        for k in ["segment_f1", "start_f1_1s", "end_f1_1s", "segment_mean_f1"] {
            ctx.set_value(k, json!(summary.get(k)));
        }
        ctx.set_value("train_seconds", json!(seconds));
        ctx.set_value("decode_seconds", json!(decode_seconds));
        ctx.log(format!(
            "train.joint: test segment F1 {:.3}, start F1 {:.3}, end F1 {:.3}; trained in {seconds:.1} s (+{decode_seconds:.1} s decoding)",
            summary["segment_f1"], summary["start_f1_1s"], summary["end_f1_1s"]
        ));
        Ok(())
    }
}
