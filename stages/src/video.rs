//! Video stages: the synthetic broadcast generator and probing, on top of
//! the `media` crate (ffmpeg CLI).

use async_trait::async_trait;
use engine_core::stage::ParamsError;
use engine_core::stage::{
    ItemCtx, MapStage, OutputDecl, Stage, StageConfig, StageEnv, StageError, StageImpl, TaskCtx,
};
use engine_core::store::Item;
use media::synth::SynthSpec;
use serde_json::json;
use std::sync::Arc;

// Params of `synth.broadcast`: a `SynthSpec` (a media type, so the stage
// traits are implemented on this wrapper), with its videos listed when the
// pipeline is compiled, so a filter that matches no style fails there
// rather than at run time.
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct SynthConfig(pub SynthSpec);

/// Exactly `SynthSpec`'s schema, under its name, so the pipeline schema
/// does not gain a definition for the wrapper.
impl schemars::JsonSchema for SynthConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <SynthSpec as schemars::JsonSchema>::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        <SynthSpec as schemars::JsonSchema>::schema_id()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <SynthSpec as schemars::JsonSchema>::json_schema(g)
    }
}

impl StageConfig for SynthConfig {
    const KIND: &'static str = "synth.broadcast";
    const SUMMARY: &'static str = "generate synthetic broadcasts with exact replay ground truth";
    fn check(&self) -> Result<(), ParamsError> {
        self.0
            .videos()
            .map(|_| ())
            .map_err(|e| e.to_string().into())
    }
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(SynthBroadcast(self.0)))
    }
}

/// No params.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Empty")]
pub struct ProbeConfig {}

impl StageConfig for ProbeConfig {
    const KIND: &'static str = "video.probe";
    const SUMMARY: &'static str = "per video: duration, fps, size and codec (ffprobe)";
    fn build(self) -> StageImpl {
        StageImpl::Map(Arc::new(Probe))
    }
}

/// `synth.broadcast`: params are a `media::synth::SynthSpec` (sport,
/// league, broadcaster, season, preset, count, seed, size overrides).
/// Output: collection `videos`, one item per video with `video.mp4` and
/// `truth.json`, and the video's metadata as item meta.
struct SynthBroadcast(SynthSpec);

#[async_trait]
impl Stage for SynthBroadcast {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::collection("videos")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let dir = ctx.scratch_dir()?.join("videos");
        let spec = self.0.clone();
        let out = dir.clone();
        let cancel = ctx.cancel_token();
        let truths = ctx
            .blocking(move || {
                std::fs::create_dir_all(&out).map_err(|e| StageError::io("create", &out, e))?;
                let mut progress = |_: u64, _: u64| {};
                let mut all = vec![];
                // One video at a time, so a cancel stops between videos.
                for (i, v) in spec
                    .videos()
                    .map_err(|e| StageError::msg(e.to_string()))?
                    .into_iter()
                    .enumerate()
                {
                    if cancel.is_cancelled() {
                        return Err(StageError::Cancelled);
                    }
                    let name = v.name.clone();
                    let t = media::synth::generate_video(
                        &v,
                        &out.join(format!("{name}.mp4")),
                        &out.join(format!("{name}.json")),
                        &mut progress,
                    )
                    .map_err(|e| {
                        StageError::msg(format!("Failed to generate video {i} (`{name}`): {e}"))
                    })?;
                    all.push(t);
                }
                Ok(all)
            })
            .await?;
        let total = truths.len() as u64;
        for (i, t) in truths.iter().enumerate() {
            let name = &t.video.name;
            let video = ctx.put_blob_file(&dir.join(format!("{name}.mp4"))).await?;
            let truth = ctx.put_blob_file(&dir.join(format!("{name}.json"))).await?;
            let mut files = engine_core::store::Files::new();
            files.insert("video.mp4".to_string(), video);
            files.insert("truth.json".to_string(), truth);
            let meta = json!({
                "sport": t.video.sport,
                "league": t.video.league,
                "broadcaster": t.video.broadcaster,
                "season": t.video.season,
                "style": t.video.style,
                "duration": t.video.duration,
                "fps": t.video.fps,
                "replays": t.replays.len(),
                "replay_seconds": t.replays.iter().map(|r| r.span.end - r.span.start).sum::<f64>(),
            });
            ctx.add_item(
                "videos",
                Item {
                    key: name.clone(),
                    files,
                    meta,
                },
            )?;
            ctx.progress(i as u64 + 1, total);
        }
        ctx.log(format!("generated {total} videos"));
        Ok(())
    }
}

/// `video.probe`: keeps the item's files, adds `probe` (duration, fps,
/// size, codec) to its meta. A video ffprobe cannot read fails the item with
/// ffprobe's message.
struct Probe;

#[async_trait]
impl MapStage for Probe {
    fn version(&self) -> u32 {
        1
    }
    fn output(&self) -> String {
        "videos".into()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError> {
        let path = local_video(item, ctx).await?;
        let info = ctx
            .blocking(move || media::probe(&path).map_err(|e| StageError::msg(e.to_string())))
            .await?;
        for (n, b) in &item.files {
            ctx.attach_file(n, b.clone())?;
        }
        let mut meta = item.meta.clone();
        if !meta.is_object() {
            meta = json!({});
        }
        meta["probe"] = json!({
            "duration": info.duration,
            "fps": info.fps_f64(),
            "width": info.width,
            "height": info.height,
            "codec": info.codec,
            "frames": info.frames,
        });
        ctx.set_meta(meta);
        Ok(())
    }
}

/// A local path to an item's video: its attached `.mp4`/`.mkv`/`.webm`
/// file (fetched into scratch space), or the local file its `uri` names
/// (catalog rows carry a uri instead of the bytes).
pub async fn local_video(item: &Item, env: &StageEnv) -> Result<std::path::PathBuf, StageError> {
    let attached = item
        .files
        .iter()
        .find(|(n, _)| n.ends_with(".mp4") || n.ends_with(".mkv") || n.ends_with(".webm"));
    match (attached, item.meta.get("uri").and_then(|u| u.as_str())) {
        (Some((name, blob)), _) => {
            let path = env.scratch_dir()?.join(&item.key).join(name);
            env.fetch(blob, &path).await?;
            Ok(path)
        }
        (None, Some(uri)) => {
            let p = std::path::PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
            if !p.exists() {
                return Err(StageError::msg(format!(
                    "video `{uri}` does not exist; re-import the catalog or fix the uri"
                )));
            }
            Ok(p)
        }
        (None, None) => Err(StageError::msg(
            "no video file (.mp4, .mkv or .webm) and no `uri` in the item".to_string(),
        )),
    }
}
