//! `probe`: what ffprobe knows about a video file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::{self, Tool};

/// How long ffprobe may take on one file.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A frame rate as a fraction, e.g. `30000/1001`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rational {
    /// Numerator.
    pub num: u32,
    /// Denominator (never 0 in a value this crate returns).
    pub den: u32,
}

impl Rational {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// The nearest simple fraction for a frame rate: integers stay integers,
    /// NTSC rates become `N*1000/1001`, anything else is rounded to 1/1000.
    pub fn from_f64(fps: f64) -> Rational {
        if (fps - fps.round()).abs() < 1e-6 {
            return Rational {
                num: fps.round() as u32,
                den: 1,
            };
        }
        let ntsc = fps * 1001.0 / 1000.0;
        if (ntsc - ntsc.round()).abs() < 1e-3 {
            return Rational {
                num: ntsc.round() as u32 * 1000,
                den: 1001,
            };
        }
        Rational {
            num: (fps * 1000.0).round() as u32,
            den: 1000,
        }
    }

    fn parse(s: &str) -> Option<Rational> {
        let (n, d) = s.split_once('/').unwrap_or((s, "1"));
        let num: u32 = n.trim().parse().ok()?;
        let den: u32 = d.trim().parse().ok()?;
        (num > 0 && den > 0).then_some(Rational { num, den })
    }
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// What [`probe`] found out about a video's first video stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// The probed file.
    pub path: PathBuf,
    /// Duration in seconds (stream duration, else container duration).
    pub duration: f64,
    /// Average frame rate (falls back to the stream's base rate).
    pub fps: Rational,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Codec name as ffprobe spells it, e.g. `h264`.
    pub codec: String,
    /// Frame count when the container records it (mp4 does, mkv usually not).
    pub frames: Option<u64>,
}

impl VideoInfo {
    /// Frame rate as a float.
    pub fn fps_f64(&self) -> f64 {
        self.fps.as_f64()
    }
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Deserialize)]
struct StreamJson {
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    nb_frames: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct FormatJson {
    duration: Option<String>,
}

/// Probes `path` with `ffprobe` (JSON output): duration, frame rate, size,
/// codec and frame count of the first video stream.
///
/// Fails with a clear [`Error`] for a missing or empty file, a file that is
/// not a video, or a truncated one ffprobe cannot open.
pub fn probe(path: impl AsRef<Path>) -> Result<VideoInfo> {
    let path = path.as_ref();
    process::check_input(path)?;
    let mut cmd = Tool::Ffprobe.command();
    cmd.args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,width,height,r_frame_rate,avg_frame_rate,nb_frames,duration:format=duration")
        .args(["-of", "json"])
        .arg(path);
    let out = process::run(Tool::Ffprobe, cmd, path, PROBE_TIMEOUT)?;
    if !out.status.success() {
        return Err(Error::Probe {
            path: path.to_path_buf(),
            message: out.stderr,
        });
    }
    let parsed: ProbeJson = serde_json::from_slice(&out.stdout).map_err(|e| Error::Probe {
        path: path.to_path_buf(),
        message: format!("unreadable JSON from ffprobe ({e})"),
    })?;
    let not_video = |reason: &str| Error::NotAVideo {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let stream = parsed
        .streams
        .into_iter()
        .next()
        .ok_or_else(|| not_video("ffprobe found no video stream in it"))?;
    let (width, height) = match (stream.width, stream.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(not_video("its video stream has no frame size")),
    };
    let fps = stream
        .avg_frame_rate
        .as_deref()
        .and_then(Rational::parse)
        .or_else(|| stream.r_frame_rate.as_deref().and_then(Rational::parse))
        .ok_or_else(|| not_video("its video stream has no frame rate"))?;
    let parse_f = |s: Option<&str>| {
        s.and_then(|s| s.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0)
    };
    let duration = parse_f(stream.duration.as_deref())
        .or_else(|| parse_f(parsed.format.as_ref().and_then(|f| f.duration.as_deref())))
        .ok_or_else(|| {
            not_video("ffprobe reports no duration (a single image or a raw stream?)")
        })?;
    let frames = stream
        .nb_frames
        .as_deref()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n > 0);
    Ok(VideoInfo {
        path: path.to_path_buf(),
        duration,
        fps,
        width,
        height,
        codec: stream.codec_name.unwrap_or_else(|| "unknown".into()),
        frames,
    })
}
