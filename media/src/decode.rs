//! Streaming RGB24 decode through `ffmpeg -f rawvideo`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::probe::{VideoInfo, probe};
use crate::process::{self, StderrTail, Tool, Watchdog};

/// How a frame is fitted into a requested output size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resize {
    /// Keep the aspect ratio, pad with black bars.
    #[default]
    Letterbox,
    /// Keep the aspect ratio, scale to cover and crop the centre.
    CenterCrop,
    /// Scale to the exact size, distorting the aspect ratio.
    Stretch,
}

/// What [`FrameReader::open`] should produce.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeOptions {
    /// Output frame rate; `None` keeps the source's average rate. Frames are
    /// always resampled to a constant rate (ffmpeg's `fps` filter), so a
    /// variable-frame-rate source yields evenly spaced frames (best effort:
    /// frames are duplicated or dropped to fill the grid).
    pub fps: Option<f64>,
    /// Output width; `None` (with `height` also `None`) keeps the source size.
    pub width: Option<u32>,
    /// Output height; must be given together with `width`.
    pub height: Option<u32>,
    /// How to fit the source into `width` x `height`.
    pub resize: Resize,
    /// Start time in seconds (frame accurate).
    pub start: Option<f64>,
    /// How many seconds to decode from `start`.
    pub duration: Option<f64>,
    /// A read blocked longer than this kills ffmpeg (default 60 s).
    pub stall_timeout: Option<Duration>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            fps: None,
            width: None,
            height: None,
            resize: Resize::Letterbox,
            start: None,
            duration: None,
            stall_timeout: None,
        }
    }
}

/// One decoded RGB24 frame (`width * height * 3` bytes, rows top to bottom).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    /// 0-based index in the decoded sequence.
    pub index: u64,
    /// Presentation time in seconds in the source (`start + index / fps`).
    pub pts_seconds: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels, RGB24, row-major.
    pub data: Vec<u8>,
}

impl Frame {
    /// The RGB value at `(x, y)`.
    ///
    /// # Panics
    /// When `(x, y)` lies outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Decodes a video one frame at a time; memory does not grow with its length.
///
/// The ffmpeg child is killed when the reader is dropped.
pub struct FrameReader {
    path: PathBuf,
    info: VideoInfo,
    width: u32,
    height: u32,
    fps: f64,
    start: f64,
    child: Arc<Mutex<Child>>,
    stdout: Option<ChildStdout>,
    stderr: StderrTail,
    watchdog: Watchdog,
    stall: Duration,
    next_index: u64,
    done: bool,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("next_index", &self.next_index)
            .finish()
    }
}

impl FrameReader {
    /// Probes `path`, then starts ffmpeg to decode it as `opts` asks.
    pub fn open(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<FrameReader> {
        let path = path.as_ref().to_path_buf();
        let invalid = |reason: String| Error::InvalidArgument {
            path: path.clone(),
            reason,
        };
        let info = probe(&path)?;
        let (width, height) = match (opts.width, opts.height) {
            (None, None) => (info.width, info.height),
            (Some(w), Some(h)) if w > 0 && h > 0 && w <= 16384 && h <= 16384 => (w, h),
            (Some(w), Some(h)) => {
                return Err(invalid(format!(
                    "output size {w}x{h} is out of range; pass a width and height between 1 and 16384"
                )));
            }
            _ => {
                return Err(invalid(
                    "only one of width and height was given; pass both or neither".into(),
                ));
            }
        };
        let fps = opts.fps.unwrap_or(info.fps.as_f64());
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(invalid(format!(
                "frame rate {fps} is out of range; pass a rate in (0, 1000]"
            )));
        }
        let start = opts.start.unwrap_or(0.0);
        if !(start.is_finite() && start >= 0.0) {
            return Err(invalid(format!(
                "start {start} must be a finite number of seconds >= 0"
            )));
        }
        if start >= info.duration {
            return Err(invalid(format!(
                "start {start:.3} s is past the end of the video ({:.3} s); pass an earlier start",
                info.duration
            )));
        }
        if let Some(d) = opts.duration
            && !(d.is_finite() && d > 0.0)
        {
            return Err(invalid(format!(
                "duration {d} must be a positive number of seconds"
            )));
        }

        // The probed rate stays an exact fraction (30000/1001), not a rounded float.
        let rate = match opts.fps {
            Some(f) => format!("{f}"),
            None => info.fps.to_string(),
        };
        let mut filters = vec![format!("fps={rate}")];
        if (width, height) != (info.width, info.height) {
            match opts.resize {
                Resize::Letterbox => {
                    filters.push(format!(
                        "scale={width}:{height}:force_original_aspect_ratio=decrease"
                    ));
                    filters.push("format=rgb24".into());
                    filters.push(format!("pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:black"));
                }
                Resize::CenterCrop => {
                    filters.push(format!(
                        "scale={width}:{height}:force_original_aspect_ratio=increase"
                    ));
                    filters.push("format=rgb24".into());
                    filters.push(format!("crop={width}:{height}"));
                }
                Resize::Stretch => filters.push(format!("scale={width}:{height}")),
            }
        }
        filters.push("format=rgb24".into());

        let mut cmd = Tool::Ffmpeg.command();
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"]);
        if start > 0.0 {
            cmd.arg("-ss").arg(format!("{start}"));
        }
        cmd.arg("-i").arg(&path);
        if let Some(d) = opts.duration {
            cmd.arg("-t").arg(format!("{d}"));
        }
        cmd.args(["-an", "-sn", "-dn", "-vf"])
            .arg(filters.join(","))
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = Tool::Ffmpeg.spawn(&mut cmd, &path)?;
        let stdout = child.stdout.take();
        let stderr = StderrTail::start(child.stderr.take().expect("stderr is piped"));
        let child = Arc::new(Mutex::new(child));
        let stall = opts.stall_timeout.unwrap_or(Duration::from_secs(60));
        let watchdog = Watchdog::start(Arc::clone(&child), stall);
        Ok(FrameReader {
            path,
            info,
            width,
            height,
            fps,
            start,
            child,
            stdout,
            stderr,
            watchdog,
            stall,
            next_index: 0,
            done: false,
        })
    }

    /// What ffprobe said about the source.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Output frame width.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Output frame height.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Output frame rate.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// Bytes in one output frame.
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Reads the next frame into a new buffer; `Ok(None)` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let mut frame = Frame::default();
        Ok(self.read_frame(&mut frame)?.then_some(frame))
    }

    /// Reads the next frame into `frame`, reusing its buffer; `Ok(false)` at the end.
    pub fn read_frame(&mut self, frame: &mut Frame) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let len = self.frame_len();
        frame.data.resize(len, 0);
        let stdout = self.stdout.as_mut().expect("stdout present until done");
        let filled = self.watchdog.busy(|| read_full(stdout, &mut frame.data));
        let filled = match filled {
            Ok(n) => n,
            Err(e) => {
                self.done = true;
                return Err(self.failure(format!("reading its output failed ({e})")));
            }
        };
        if filled == len {
            frame.index = self.next_index;
            frame.pts_seconds = self.start + self.next_index as f64 / self.fps;
            frame.width = self.width;
            frame.height = self.height;
            self.next_index += 1;
            return Ok(true);
        }
        self.done = true;
        self.stdout = None;
        if self.watchdog.fired() {
            return Err(self.timeout());
        }
        let status =
            process::wait_timeout(&self.child, self.stall).map_err(|source| Error::Io {
                action: "wait for ffmpeg on",
                path: self.path.clone(),
                source,
            })?;
        let message = self.stderr.finish();
        match status {
            None => Err(self.timeout()),
            Some(s) if !s.success() => Err(Error::Decode {
                path: self.path.clone(),
                message,
            }),
            Some(_) if filled != 0 => Err(Error::Decode {
                path: self.path.clone(),
                message: format!(
                    "the output ended inside a frame ({filled} of {len} bytes); {message}"
                ),
            }),
            Some(_) if self.next_index == 0 => Err(Error::Decode {
                path: self.path.clone(),
                message: format!("no frame could be decoded ({message})"),
            }),
            // ffmpeg exits 0 on a truncated file with the index at the front;
            // its demuxer still says so.
            Some(_) if message.contains("partial file") => Err(Error::Decode {
                path: self.path.clone(),
                message: format!(
                    "the file is truncated after frame {} ({message})",
                    self.next_index
                ),
            }),
            Some(_) => Ok(false),
        }
    }

    fn failure(&mut self, what: String) -> Error {
        if self.watchdog.fired() {
            return self.timeout();
        }
        let _ = self.child.lock().map(|mut c| c.kill());
        Error::Decode {
            path: self.path.clone(),
            message: format!("{what}; {}", self.stderr.message()),
        }
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            program: "ffmpeg".into(),
            path: self.path.clone(),
            seconds: self.stall.as_secs_f64(),
        }
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Iterator for FrameReader {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.stdout = None;
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(c.try_wait(), Ok(Some(_))) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}
