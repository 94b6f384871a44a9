//! `engine detect VIDEO --model REF`: replay segments of one video, streamed
//! through a stored detector (the same code path as evaluation).

use anyhow::{Context, Result, anyhow};
use engine_core::worker::Reply;
use stages::replay::postprocess::VideoDetections;
use std::path::{Path, PathBuf};
use tokio::io::AsyncBufReadExt;

/// What `engine detect` prints.
pub struct DetectArgs<'a> {
    pub video: &'a Path,
    pub model: &'a str,
    pub json: bool,
    pub out: Option<&'a PathBuf>,
    /// Record the segments as production predictions of this catalog video.
    pub catalog: Option<&'a str>,
    /// The video's sport, checked against the model's (taken from the
    /// catalog with `catalog`).
    pub sport: Option<&'a str>,
    /// Write the per-frame signals as CSV here.
    pub signals: Option<&'a PathBuf>,
}

/// `frame,time,start,end,content`: one line per sampled frame.
fn write_signals(path: &Path, probs: &[[f32; 3]], fps: f64) -> Result<()> {
    use std::fmt::Write as _;
    let mut csv = String::from("frame,time,start,end,content\n");
    for (i, p) in probs.iter().enumerate() {
        let _ = writeln!(
            csv,
            "{i},{:.3},{:.4},{:.4},{:.4}",
            i as f64 / fps,
            p[0],
            p[1],
            p[2]
        );
    }
    std::fs::write(path, csv)
        .map_err(|e| anyhow::anyhow!("Failed to write the signals to `{}`: {e}", path.display()))
}

pub async fn run(store: &engine_core::store::Store, a: DetectArgs<'_>) -> Result<u8> {
    if !a.video.is_file() {
        return Err(anyhow!("video `{}` does not exist", a.video.display()));
    }
    let dir = tempfile::tempdir().context("Failed to create a temporary folder for the model")?;
    let (digest, _) = crate::show::fetch(store, a.model, dir.path())
        .await
        .with_context(|| format!("Failed to fetch model `{}` from {}", a.model, store.url()))?;
    // The catalog row first: a video that is not in the catalog, or of
    // another sport, fails before minutes of inference.
    let mut sport = a.sport.map(str::to_string);
    let catalog_video = match a.catalog {
        Some(url) => {
            let cat = catalog::Catalog::open(url)
                .await
                .with_context(|| format!("Failed to open the catalog `{url}`"))?;
            let uri = a
                .video
                .canonicalize()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| a.video.display().to_string());
            let id = cat.video_id(uri.as_str()).await.with_context(|| {
                format!(
                    "video `{}` is not in the catalog `{url}`; import it first with `engine catalog import`",
                    a.video.display()
                )
            })?;
            if sport.is_none() {
                let rows = cat
                    .query(
                        "SELECT sport FROM videos WHERE id = $1",
                        &[serde_json::json!(id)],
                    )
                    .await?;
                sport = rows
                    .first()
                    .and_then(|r| r.get("sport"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
            }
            cat.close().await;
            Some((url.to_string(), uri))
        }
        None => None,
    };
    let video = a.video.to_path_buf();
    let model_dir = dir.path().to_path_buf();
    // An unreadable video fails before the model loads.
    media::probe(&video).map_err(|e| anyhow!("Failed to read video `{}`: {e}", video.display()))?;
    let show_bar = !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Messages name what the user typed, not the temporary folder.
    let tmp_shown = format!("`{}`", model_dir.display());
    let user_shown = format!("`{}`", a.model);
    let named = move |e: String| anyhow!("{}", e.replace(&tmp_shown, &user_shown));
    let found = infer(&model_dir, &video, sport.as_deref(), show_bar)
        .await
        .map_err(named)?;
    if let Some((url, uri)) = &catalog_video {
        stages::replay::predictions::record_predictions(
            url,
            uri,
            &digest.to_string(),
            &found.segments,
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
        if !a.json {
            eprintln!(
                "recorded {} predictions of model {} in the catalog `{url}` (review them with `engine review predictions`)",
                found.segments.len(),
                digest.short()
            );
        }
    }
    let doc = serde_json::json!({
        "video": a.video.display().to_string(), "model": a.model,
        "fps": found.fps, "frames": found.frames, "segments": found.segments,
    });
    if let Some(path) = a.signals {
        write_signals(path, &found.signals, found.fps)?;
    }
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
fn clock(t: f64) -> String {
    format!("{}:{:04.1}", (t / 60.0).floor() as u64, t % 60.0)
}

/// Runs the detector in `engine-worker` (libtorch lives there), drawing
/// its progress; the error is the worker's message.
async fn infer(
    model_dir: &Path,
    video: &Path,
    sport: Option<&str>,
    show_bar: bool,
) -> Result<VideoDetections, String> {
    let bin = engine_core::worker::worker_path().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("detect")
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--video")
        .arg(video)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(s) = sport {
        cmd.arg("--sport").arg(s);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("Failed to start `{}`: {e}", bin.display()))?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let bar = indicatif::ProgressBar::new(0);
    if !show_bar {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut answer = None;
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Progress(n, total)) => {
                bar.set_length(total);
                bar.set_position(n);
            }
            Ok(Reply::Done(d)) => answer = Some(Ok(d.meta)),
            Ok(Reply::Failed(m)) => answer = Some(Err(m)),
            _ => {}
        }
    }
    bar.finish_and_clear();
    let status = child.wait().await.map_err(|e| e.to_string())?;
    match answer {
        Some(Ok(meta)) => serde_json::from_value(meta).map_err(|e| {
            format!(
                "`{}` answered with unreadable detections: {e}",
                bin.display()
            )
        }),
        Some(Err(m)) => Err(m),
        None => Err(format!(
            "`{}` exited ({status}) without an answer; its messages are above",
            bin.display()
        )),
    }
}
