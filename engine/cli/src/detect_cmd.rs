//! `engine detect VIDEO --model REF`: replay segments of one video, streamed
//! through a stored detector (the same code path as evaluation).

use anyhow::Result;
use std::path::{Path, PathBuf};

/// What `engine detect` prints.
pub struct DetectArgs<'a> {
    pub video: &'a Path,
    pub model: &'a str,
    pub json: bool,
    pub out: Option<&'a PathBuf>,
}

#[cfg(not(feature = "torch"))]
pub async fn run(_store: &engine_core::store::Store, _a: DetectArgs<'_>) -> Result<u8> {
    anyhow::bail!(
        "this `engine` was built without the `torch` feature; rebuild with `cargo build --release --features engine-cli/torch` after `source scripts/lib.sh && need_torch`"
    )
}

#[cfg(feature = "torch")]
pub async fn run(store: &engine_core::store::Store, a: DetectArgs<'_>) -> Result<u8> {
    use anyhow::{Context, anyhow};
    use stages::model::detector::Detector;
    if !a.video.is_file() {
        return Err(anyhow!("video `{}` does not exist", a.video.display()));
    }
    let dir = tempfile::tempdir().context("Failed to create a temporary folder for the model")?;
    crate::show::fetch(store, a.model, dir.path())
        .await
        .with_context(|| format!("Failed to fetch model `{}` from {}", a.model, store.url()))?;
    let video = a.video.to_path_buf();
    let model_dir = dir.path().to_path_buf();
    let total = media::probe(&video)
        .map(|i| i.duration)
        .map_err(|e| anyhow!("Failed to read video `{}`: {e}", video.display()))?;
    let show_bar = !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let found = tokio::task::spawn_blocking(move || -> Result<_> {
        let d = Detector::load(&model_dir).map_err(|e| anyhow!("{e}"))?;
        let fps = d.sampling().fps;
        let bar = indicatif::ProgressBar::new((total * fps).ceil() as u64);
        if !show_bar {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let r = d
            .detect_video(&video, |n| bar.set_position(n), || false)
            .map_err(|e| anyhow!("{e}"))?;
        bar.finish_and_clear();
        Ok(r)
    })
    .await??;
    let doc = serde_json::json!({
        "video": a.video.display().to_string(), "model": a.model,
        "fps": found.fps, "frames": found.frames, "segments": found.segments,
    });
    if let Some(path) = a.out {
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("Failed to write `{}`", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    println!(
        "{} replays in `{}` ({:.1} s at {} fps, model {})",
        found.segments.len(),
        a.video.display(),
        found.frames as f64 / found.fps,
        found.fps,
        a.model
    );
    if !found.segments.is_empty() {
        println!(
            "{:>3}  {:>9}  {:>9}  {:>8}  {:>5}",
            "#", "start", "end", "length", "score"
        );
        for (i, s) in found.segments.iter().enumerate() {
            println!(
                "{:>3}  {:>9}  {:>9}  {:>7.1}s  {:>5.2}",
                i + 1,
                clock(s.start),
                clock(s.end),
                s.end - s.start,
                s.score
            );
        }
    }
    Ok(0)
}

/// `m:ss.s`.
#[cfg_attr(not(feature = "torch"), allow(dead_code))]
fn clock(t: f64) -> String {
    format!("{}:{:04.1}", (t / 60.0).floor() as u64, t % 60.0)
}
