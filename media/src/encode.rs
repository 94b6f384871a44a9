//! RGB24 frames -> H.264 mp4 through `ffmpeg -c:v libx264`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::probe::Rational;
use crate::process::{self, StderrTail, Tool, Watchdog};

/// A write blocked longer than this kills the encoder.
const STALL: Duration = Duration::from_secs(60);
/// How long `finish` waits for ffmpeg to flush and write the index.
const FINISH: Duration = Duration::from_secs(300);

/// Writes RGB24 frames to an H.264 (`libx264`, `yuv420p`) mp4.
///
/// The video is written under a hidden temporary name in the same directory
/// and renamed by [`Encoder::finish`]; dropping an unfinished encoder kills
/// ffmpeg and deletes the temporary file, so the final name never holds half
/// a video.
pub struct Encoder {
    path: PathBuf,
    temp: PathBuf,
    width: u32,
    height: u32,
    child: Arc<Mutex<Child>>,
    stdin: Option<ChildStdin>,
    stderr: StderrTail,
    watchdog: Watchdog,
    frames: u64,
    finished: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("frames", &self.frames)
            .finish()
    }
}

impl Encoder {
    /// Starts an encoder for `width` x `height` frames at `fps`.
    ///
    /// Width and height must be even (yuv420p); pass even sizes or crop first.
    pub fn create(path: impl AsRef<Path>, width: u32, height: u32, fps: f64) -> Result<Encoder> {
        let path = path.as_ref().to_path_buf();
        let invalid = |reason: String| Error::InvalidArgument {
            path: path.clone(),
            reason,
        };
        if width == 0
            || height == 0
            || !width.is_multiple_of(2)
            || !height.is_multiple_of(2)
            || width > 16384
            || height > 16384
        {
            return Err(invalid(format!(
                "frame size {width}x{height} cannot be encoded as H.264 yuv420p; pass an even width and height (e.g. {}x{})",
                (width.max(2) / 2) * 2,
                (height.max(2) / 2) * 2
            )));
        }
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(invalid(format!(
                "frame rate {fps} is out of range; pass a rate in (0, 1000]"
            )));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(invalid(format!(
                "directory `{}` does not exist; create it first",
                dir.display()
            )));
        }
        let file_name = path.file_name().ok_or_else(|| {
            invalid("the path has no file name; pass a path like `out/clip.mp4`".into())
        })?;
        let temp = process::temp_path(&dir, file_name);
        let rate = Rational::from_f64(fps);
        let mut cmd = Tool::Ffmpeg.command();
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg("-s")
            .arg(format!("{width}x{height}"))
            .arg("-r")
            .arg(rate.to_string())
            .args(["-i", "-", "-an"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18"])
            .args(["-pix_fmt", "yuv420p", "-f", "mp4"])
            .arg(&temp)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Tool::Ffmpeg.spawn(&mut cmd, &path)?;
        let stdin = child.stdin.take();
        let stderr = StderrTail::start(child.stderr.take().expect("stderr is piped"));
        let child = Arc::new(Mutex::new(child));
        let watchdog = Watchdog::start(Arc::clone(&child), STALL);
        Ok(Encoder {
            path,
            temp,
            width,
            height,
            child,
            stdin,
            stderr,
            watchdog,
            frames: 0,
            finished: false,
        })
    }

    /// Bytes one frame must have: `width * height * 3`.
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Appends one RGB24 frame of exactly [`Encoder::frame_len`] bytes.
    pub fn write_frame(&mut self, rgb: &[u8]) -> Result<()> {
        if rgb.len() != self.frame_len() {
            return Err(Error::InvalidArgument {
                path: self.path.clone(),
                reason: format!(
                    "a frame has {} bytes but {}x{} RGB24 needs {}; pass whole frames of the size given to `Encoder::create`",
                    rgb.len(),
                    self.width,
                    self.height,
                    self.frame_len()
                ),
            });
        }
        let stdin = self.stdin.as_mut().ok_or_else(|| Error::Encode {
            path: self.path.clone(),
            message: "the encoder already failed or finished".into(),
        })?;
        let res = self.watchdog.busy(|| stdin.write_all(rgb));
        if let Err(e) = res {
            self.stdin = None;
            return Err(self.failure(format!("writing a frame failed ({e})")));
        }
        self.frames += 1;
        Ok(())
    }

    /// Flushes the encoder, waits for ffmpeg, and moves the video to its final name.
    /// Returns the number of frames written.
    pub fn finish(mut self) -> Result<u64> {
        self.stdin = None; // EOF tells ffmpeg to flush
        if self.frames == 0 {
            return Err(Error::InvalidArgument {
                path: self.path.clone(),
                reason: "no frame was written; write at least one frame before `finish`".into(),
            });
        }
        let status = process::wait_timeout(&self.child, FINISH).map_err(|source| Error::Io {
            action: "wait for ffmpeg on",
            path: self.path.clone(),
            source,
        })?;
        let message = self.stderr.finish();
        match status {
            None => {
                return Err(Error::Timeout {
                    program: "ffmpeg".into(),
                    path: self.path.clone(),
                    seconds: FINISH.as_secs_f64(),
                });
            }
            Some(s) if !s.success() => {
                return Err(Error::Encode {
                    path: self.path.clone(),
                    message,
                });
            }
            Some(_) => {}
        }
        std::fs::rename(&self.temp, &self.path).map_err(|source| Error::Io {
            action: "move the finished video to",
            path: self.path.clone(),
            source,
        })?;
        self.finished = true;
        Ok(self.frames)
    }

    fn failure(&mut self, what: String) -> Error {
        if self.watchdog.fired() {
            return Error::Timeout {
                program: "ffmpeg".into(),
                path: self.path.clone(),
                seconds: STALL.as_secs_f64(),
            };
        }
        let _ = process::wait_timeout(&self.child, Duration::from_secs(10));
        Error::Encode {
            path: self.path.clone(),
            message: format!("{what}; {}", self.stderr.finish()),
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.stdin = None;
        {
            let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.temp);
    }
}
