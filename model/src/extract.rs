//! `features.extract`: the frozen backbone over every sampled frame of each
//! video of the dataset (a map stage: one item per video, cached per item,
//! keyed by the video's clips and bytes, the backbone's digest and the
//! params). One safetensors file per video holds the whole sequence
//! (`video`, `[frames, dim]`) and one tensor per clip (`clip.<id>`), so
//! training reads clips and evaluation reads whole videos from one file.

use crate::data::{ClipFrames, FEATURES_FILE, FeatureInfo, clip_first};
use crate::frames::{Sampling, video_features};
use crate::net::{Backbone, BackboneInfo};
use crate::{device, read_json, torch_err};
use async_trait::async_trait;
use engine_core::stage::{Input, ItemCtx, MapStage, StageError, StageImpl};
use engine_core::store::Item;
use serde_json::{Value, json};
use stages::formats::{CLIPS_FILE, ClipSet, parse_clip_set};
pub use stages::model::params::extract::ExtractConfig;
use stages::video::local_video;
use std::sync::Arc;
use tch::Tensor;

pub(crate) struct Extract(ExtractConfig);

impl crate::ModelStage for Extract {
    type Config = ExtractConfig;
    const KIND: &'static str = "features.extract";
    fn build(c: ExtractConfig) -> StageImpl {
        StageImpl::Map(Arc::new(Extract(c)))
    }
}

/// The one input artifact holding `file`; `what` names it in errors and
/// `hint` says which stages make one.
pub fn find_one<'a>(
    inputs: &'a [Input],
    file: &str,
    stage: &str,
    what: &str,
    hint: &str,
) -> Result<&'a Input, StageError> {
    let all: Vec<&Input> = inputs
        .iter()
        .filter(|i| i.manifest.files.contains_key(file))
        .collect();
    match all.as_slice() {
        [one] => Ok(one),
        [] => Err(StageError::msg(format!(
            "{stage} needs a {what}: add {hint} to its `needs`"
        ))),
        many => Err(StageError::msg(format!(
            "{stage} got {} {what}s (from {}); keep one in its `needs`",
            many.len(),
            many.iter()
                .map(|i| i.task.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The one backbone artifact among a stage's inputs.
pub fn find_backbone<'a>(inputs: &'a [Input], stage: &str) -> Result<&'a Input, StageError> {
    find_one(
        inputs,
        "backbone.json",
        stage,
        "backbone",
        "the `backbone.train` or `backbone.import` stage",
    )
}

#[async_trait]
impl MapStage for Extract {
    fn version(&self) -> u32 {
        stages::model::params::kind("features.extract").version
    }
    fn output(&self) -> String {
        "features".into()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError> {
        let bb = find_backbone(ctx.inputs(), "features.extract")?.clone();
        let clips_blob = item.files.get(CLIPS_FILE);
        let set = match clips_blob {
            Some(b) => parse_clip_set(&item.key, &ctx.read(b).await?)?,
            None if self.0.whole_videos => ClipSet::whole(&item.key),
            None => {
                return Err(StageError::msg(format!(
                    "video `{}` has no `clips.json`; map `features.extract` over `dataset.split`'s `clips` (or set `whole_videos: true` for videos without clips)",
                    item.key
                )));
            }
        };
        let bdir = ctx.scratch_dir()?.join("backbone");
        ctx.export(&bb, &bdir).await?;
        let info: BackboneInfo = read_json(&bdir.join("backbone.json"), "backbone description")?;
        let video = local_video(item, ctx).await?;
        let s = Sampling {
            fps: self.0.fps.unwrap_or(info.fps),
            width: info.width,
            height: info.height,
            threads: Some(ctx.threads()),
        };
        let window = ((set.window * s.fps).round() as i64).max(1);
        let out = ctx.scratch_dir()?.join(FEATURES_FILE);
        let (threads, batch, cancel) = (ctx.threads(), self.0.batch, ctx.cancel_token());
        let (out2, key) = (out.clone(), item.key.clone());
        let clips = set.clips.clone();
        let (frames, dim, refs) = ctx
            .blocking(move || {
                tch::set_num_threads(threads as i32);
                let dev = device();
                let backbone = Backbone::load(&info, &bdir, dev)?;
                let f = video_features(
                    &backbone,
                    &video,
                    s,
                    info.frame_motion,
                    batch,
                    dev,
                    |_| {},
                    || cancel.is_cancelled(),
                )?;
                let (n, d) = (f.size()[0], f.size()[1]);
                let mut named: Vec<(String, Tensor)> = vec![("video".into(), f.shallow_clone())];
                let mut refs = vec![];
                for c in &clips {
                    let first = clip_first(c.start, s.fps, window, n);
                    let len = window.min(n - first);
                    named.push((
                        format!("clip.{}", c.id),
                        f.narrow(0, first, len).contiguous(),
                    ));
                    refs.push(ClipFrames {
                        id: c.id.clone(),
                        kind: c.kind.as_str().into(),
                        label: c.label,
                        first,
                    });
                }
                Tensor::write_safetensors(&named, &out2).map_err(torch_err(format!(
                    "Failed to write the features of `{key}`"
                )))?;
                Ok((n, d, refs))
            })
            .await?;
        let str_of = |k: &str| {
            item.meta
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string()
        };
        let fi = FeatureInfo {
            backbone: bb.digest.to_string(),
            dim,
            fps: s.fps,
            frames,
            window,
            split: str_of("split"),
            league: str_of("league"),
            broadcaster: str_of("broadcaster"),
            segments: set.segments.clone(),
            source: set.source.clone(),
            clips: refs,
        };
        ctx.put_file_from(FEATURES_FILE, &out).await?;
        if let Some(b) = clips_blob {
            ctx.attach_file(CLIPS_FILE, b.clone())?;
        }
        let mut meta = if item.meta.is_object() {
            item.meta.clone()
        } else {
            json!({})
        };
        meta["features"] = serde_json::to_value(&fi).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.set_meta(meta);
        Ok(())
    }
}
