//! `cut`: a frame-accurate clip of a video, re-encoded to H.264.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::probe::probe;
use crate::process::{self, Tool};

/// Cuts `duration` seconds starting at `start` out of `input` into `output`
/// (mp4, H.264 `yuv420p`, video only, sizes rounded down to even).
///
/// Re-encodes so the clip starts exactly at `start` rather than at the
/// previous keyframe. The clip is written under a temporary name and renamed
/// on success. A span running past the end is clipped to the end.
pub fn cut(
    input: impl AsRef<Path>,
    start: f64,
    duration: f64,
    output: impl AsRef<Path>,
) -> Result<()> {
    let input = input.as_ref();
    let output = output.as_ref();
    let info = probe(input)?;
    let invalid = |reason: String| Error::InvalidArgument {
        path: input.to_path_buf(),
        reason,
    };
    if !(start.is_finite() && start >= 0.0 && start < info.duration) {
        return Err(invalid(format!(
            "start {start} s is outside the video (0 to {:.3} s); pass a start inside it",
            info.duration
        )));
    }
    if !(duration.is_finite() && duration > 0.0) {
        return Err(invalid(format!(
            "duration {duration} must be a positive number of seconds"
        )));
    }
    let file_name = output
        .file_name()
        .ok_or_else(|| invalid(format!("output `{}` has no file name", output.display())))?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = process::temp_path(&dir, file_name);
    let mut cmd = Tool::Ffmpeg.command();
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .arg("-ss")
        .arg(format!("{start}"))
        .arg("-i")
        .arg(input)
        .arg("-t")
        .arg(format!("{duration}"))
        .args(["-map", "0:v:0", "-an", "-sn", "-dn"])
        .args(["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
        ])
        .args(["-f", "mp4"])
        .arg(&temp);
    // Generous: re-encoding runs far faster than real time on any machine we target.
    let limit = Duration::from_secs_f64(60.0 + 10.0 * duration.min(info.duration));
    let out = process::run(Tool::Ffmpeg, cmd, input, limit);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    if !out.status.success() {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::Cut {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            message: out.stderr,
        });
    }
    std::fs::rename(&temp, output).map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        Error::Io {
            action: "move the finished clip to",
            path: output.to_path_buf(),
            source,
        }
    })
}
