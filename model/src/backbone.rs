//! `backbone.train` (the small frame CNN, trained on frame classes from the
//! labels) and `backbone.import` (a user's TorchScript or ResNet-18
//! safetensors file). Either output is a frozen backbone artifact.

use crate::data::{DatasetVideo, dataset_videos};
use crate::frames::{Sampling, decode_all};
use crate::net::{Arch, BACKBONE_KIND, Backbone, BackboneInfo, SmallCnn};
use crate::train::{accuracy, fit};
use crate::{device, torch_err};
use async_trait::async_trait;
use engine_core::stage::{OutputDecl, Stage, StageEnv, StageError, StageImpl, TaskCtx};
use serde_json::json;
pub use stages::model::params::backbone::{ImportConfig, TrainConfig};
use stages::replay::targets::{FRAME_CLASSES, frame_classes};
use stages::video::local_video;
use std::sync::Arc;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// How `backbone.train` samples frames.
pub fn sampling(c: &TrainConfig) -> Sampling {
    Sampling {
        fps: c.fps,
        width: c.size,
        height: c.size,
        threads: None,
    }
}

/// Frames inside the clips of `videos` (each frame once) with their class.
pub async fn clip_frames(
    ctx: &TaskCtx,
    videos: &[DatasetVideo],
    s: Sampling,
    transition: f64,
) -> Result<(Tensor, Tensor), StageError> {
    let mut xs = vec![];
    let mut ys = vec![];
    for v in videos {
        let path = local_video(&v.item, ctx).await?;
        let set = v.set.clone();
        let (x, y) = ctx
            .blocking(move || {
                let frames = decode_all(&path, s)?;
                let n = frames.size()[0] as usize;
                let classes = frame_classes(n, s.fps, &set.segments, transition);
                let mut keep = vec![false; n];
                for c in &set.clips {
                    let a = ((c.start * s.fps).floor() as usize).min(n);
                    let b = ((c.end * s.fps).ceil() as usize).min(n);
                    keep[a..b].iter_mut().for_each(|k| *k = true);
                }
                let idx: Vec<i64> = (0..n as i64).filter(|&i| keep[i as usize]).collect();
                let idx_t = Tensor::from_slice(&idx);
                let y: Vec<i64> = idx.iter().map(|&i| classes[i as usize]).collect();
                Ok((frames.index_select(0, &idx_t), Tensor::from_slice(&y)))
            })
            .await?;
        xs.push(x);
        ys.push(y);
    }
    if xs.is_empty() {
        return Ok((
            Tensor::zeros(
                [0, s.height as i64, s.width as i64, 3],
                (Kind::Uint8, Device::Cpu),
            ),
            Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
        ));
    }
    Ok((Tensor::cat(&xs, 0), Tensor::cat(&ys, 0)))
}

pub(crate) struct TrainBackbone(TrainConfig);

impl crate::ModelStage for TrainBackbone {
    type Config = TrainConfig;
    const KIND: &'static str = "backbone.train";
    fn build(c: TrainConfig) -> StageImpl {
        StageImpl::Task(Arc::new(TrainBackbone(c)))
    }
}

#[async_trait]
impl Stage for TrainBackbone {
    fn version(&self) -> u32 {
        stages::model::params::kind("backbone.train").version
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("backbone")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = self.0.clone();
        let videos = dataset_videos(ctx, c.from.as_deref()).await?;
        let of = |split: &str| {
            videos
                .iter()
                .filter(|v| v.split == split)
                .cloned()
                .collect::<Vec<_>>()
        };
        let (train, val) = (of("train"), of("validation"));
        if train.is_empty() || val.is_empty() {
            return Err(StageError::msg(format!(
                "backbone.train needs videos in the train and validation splits, got {} and {} (of {} videos); add videos or change the split fractions",
                train.len(),
                val.len(),
                videos.len()
            )));
        }
        let s = sampling(&c);
        let (xt, yt) = clip_frames(ctx, &train, s, c.transition).await?;
        let (xv, yv) = clip_frames(ctx, &val, s, c.transition).await?;
        ctx.log(format!(
            "backbone.train: {} train frames, {} validation frames",
            xt.size()[0],
            xv.size()[0]
        ));
        let dir = ctx.scratch_dir()?.join("backbone");
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io("create", &dir, e))?;
        let threads = ctx.threads();
        let cancel = ctx.cancel_token();
        let log = ctx_log(ctx);
        let out = dir.join("backbone.safetensors");
        let out2 = out.clone();
        let (acc, curves, counts) = ctx
            .blocking(move || {
                tch::set_num_threads(threads as i32);
                tch::manual_seed(c.seed as i64);
                let dev = device();
                let vs = nn::VarStore::new(dev);
                let net = SmallCnn::new(&vs.root(), c.dim, FRAME_CLASSES.len() as i64);
                let counts: Vec<i64> = (0..3)
                    .map(|k| yt.eq(k).sum(Kind::Int64).int64_value(&[]))
                    .collect();
                let total: i64 = counts.iter().sum();
                // Inverse-frequency class weights: transitions are rare.
                let w: Vec<f32> = counts
                    .iter()
                    .map(|&n| total as f32 / (3.0 * n.max(1) as f32))
                    .collect();
                let w = Tensor::from_slice(&w).to_device(dev);
                let to_x = |x: &Tensor| {
                    x.permute([0, 3, 1, 2]).to_kind(Kind::Float).to_device(dev) / 255.0
                };
                let logits = |x: &Tensor| net.head.forward(&net.features(&to_x(x)));
                let loss_of = |x: &Tensor, y: &Tensor| {
                    logits(x).cross_entropy_loss::<&Tensor>(
                        &y.to_device(dev),
                        Some(&w),
                        tch::Reduction::Mean,
                        -100,
                        0.0,
                    )
                };
                let curves = fit(
                    &vs,
                    xt.size()[0] as usize,
                    &c.fit(),
                    "backbone",
                    |idx| {
                        let i = Tensor::from_slice(idx);
                        loss_of(&xt.index_select(0, &i), &yt.index_select(0, &i))
                    },
                    || loss_of(&xv, &yv).double_value(&[]),
                    &cancel,
                    &log,
                )?;
                let acc = tch::no_grad(|| accuracy(&logits(&xv), &yv.to_device(dev)));
                vs.save(&out2)
                    .map_err(torch_err(format!("Failed to save `{}`", out2.display())))?;
                Ok((acc, curves, counts))
            })
            .await?;
        let info = BackboneInfo {
            kind: BACKBONE_KIND.into(),
            arch: Arch::SmallCnn,
            width: self.0.size,
            height: self.0.size,
            dim: self.0.dim,
            fps: self.0.fps,
            frame_motion: self.0.frame_motion,
            weights: "backbone.safetensors".into(),
            origin: json!({
                "stage": "backbone.train",
                "train_videos": train.len(), "validation_videos": val.len(),
                "frames_per_class": { "live": counts[0], "transition": counts[1], "replay": counts[2] },
                "validation_accuracy": acc, "epochs": curves.train_loss.len(), "best_epoch": curves.best_epoch,
                "train_loss": curves.train_loss, "validation_loss": curves.val_loss,
            }),
        };
        ctx.put_file_from("backbone", "backbone.safetensors", &out)
            .await?;
        ctx.put_file("backbone", "backbone.json", to_json(&info)?)
            .await?;
        ctx.set_meta(
            "backbone",
            json!({ "arch": "small-cnn", "dim": info.dim, "frame_motion": info.frame_motion, "validation_accuracy": acc }),
        )?;
        ctx.set_value("validation_accuracy", json!(acc));
        ctx.set_value("seconds", json!(curves.seconds));
        ctx.log(format!(
            "backbone.train: validation frame accuracy {acc:.3} in {:.1} s",
            curves.seconds
        ));
        Ok(())
    }
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StageError> {
    serde_json::to_vec_pretty(v).map_err(|e| StageError::msg(e.to_string()))
}

/// A logger for blocking code (the task log is shared and thread-safe).
pub fn ctx_log(ctx: &StageEnv) -> impl Fn(String) + Send + 'static {
    let log = ctx.log_handle();
    move |line: String| log.line(&line)
}

pub(crate) struct Import(ImportConfig);

impl crate::ModelStage for Import {
    type Config = ImportConfig;
    const KIND: &'static str = "backbone.import";
    fn build(c: ImportConfig) -> StageImpl {
        StageImpl::Task(Arc::new(Import(c)))
    }
}

#[async_trait]
impl Stage for Import {
    fn version(&self) -> u32 {
        stages::model::params::kind("backbone.import").version
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("backbone")]
    }
    fn always_run(&self) -> bool {
        // A ref may have moved since the last run.
        self.0.artifact.is_some()
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = self.0.clone();
        if let Some(name) = &c.artifact {
            let digest = ctx.store().resolve(name).await.map_err(|e| {
                StageError::msg(format!(
                    "backbone `{name}` is not a ref or digest in store {}: {e}",
                    ctx.store().url()
                ))
            })?;
            let m = ctx.store().get_manifest(&digest).await?;
            let Some(json_blob) = m.files.get("backbone.json") else {
                return Err(StageError::msg(format!(
                    "`{name}` ({}) is not a backbone (no `backbone.json`); point it at the `backbone` output of `backbone.train` or `backbone.import`",
                    &digest.to_string()[..12]
                )));
            };
            let info: BackboneInfo =
                serde_json::from_slice(&ctx.read(json_blob).await?).map_err(|e| {
                    StageError::msg(format!("`{name}`: its backbone.json is not readable: {e}"))
                })?;
            for (file, blob) in &m.files {
                ctx.attach_file("backbone", file, blob.clone())?;
            }
            // The very same manifest (files and meta), so the same digest:
            // features extracted with the backbone before it was pinned
            // stay valid, and a cycle extracts only videos it has not seen.
            ctx.set_meta("backbone", m.meta.clone())?;
            let _ = info;
            ctx.log(format!(
                "backbone.import: `{name}` = {}",
                &digest.to_string()[..12]
            ));
            return Ok(());
        }
        let (Some(path), Some(arch)) = (c.path.clone(), c.arch) else {
            return Err(StageError::msg(
                "backbone.import needs `artifact`, or `path` with `arch`",
            ));
        };
        if !path.is_file() {
            return Err(StageError::msg(format!(
                "backbone file `{}` does not exist",
                path.display()
            )));
        }
        let weights = match arch {
            Arch::Torchscript => "backbone.pt",
            _ => "backbone.safetensors",
        };
        let dir = ctx.scratch_dir()?.join("import");
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io("create", &dir, e))?;
        std::fs::copy(&path, dir.join(weights)).map_err(|e| StageError::io("copy", &path, e))?;
        let mut info = BackboneInfo {
            kind: BACKBONE_KIND.into(),
            arch,
            width: c.size,
            height: c.size,
            dim: 0,
            fps: c.fps,
            frame_motion: c.frame_motion,
            weights: weights.into(),
            origin: json!({ "stage": "backbone.import", "file": path.display().to_string() }),
        };
        let (probe_info, d, path2) = (info.clone(), dir.clone(), path.clone());
        let dim = ctx
            .blocking(move || {
                let path = path2;
                let b = Backbone::load(&probe_info, &d, Device::Cpu).map_err(|e| {
                    StageError::msg(format!(
                        "backbone file `{}` is not a loadable {:?} model ({e}); check `arch` and the file",
                        path.display(),
                        probe_info.arch
                    ))
                })?;
                let x = Tensor::zeros([2, probe_info.height as i64, probe_info.width as i64, 3], (Kind::Uint8, Device::Cpu));
                let f = b.features(&x).map_err(|e| StageError::msg(format!("backbone `{}` failed on a test batch: {e}", path.display())))?;
                match f.size().as_slice() {
                    [2, d] => Ok(*d),
                    s => Err(StageError::msg(format!(
                        "backbone `{}` returned shape {s:?} for 2 frames; it must return [batch, features]",
                        path.display()
                    ))),
                }
            })
            .await?;
        info.dim = dim;
        ctx.put_file_from("backbone", weights, &dir.join(weights))
            .await?;
        ctx.put_file("backbone", "backbone.json", to_json(&info)?)
            .await?;
        ctx.set_meta("backbone", json!({ "arch": info.arch, "dim": dim }))?;
        ctx.log(format!(
            "backbone.import: `{}` ({arch:?}, {dim} features)",
            path.display()
        ));
        Ok(())
    }
}
