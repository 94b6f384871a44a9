//! Streaming RGB24 decode through `ffmpeg -f rawvideo`.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    /// Threads ffmpeg decodes and filters with; `None` lets it choose (one
    /// per core). Pass the task's CPU grant when several decodes share the
    /// machine: frame threads beyond it only add synchronisation (measured:
    /// two parallel decodes on 2 cores took 20% less wall time with one
    /// thread each). The frames are the same either way.
    pub threads: Option<usize>,
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
            threads: None,
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
    source: Arc<Source>,
    /// ffmpeg's stdout, or the second pipe of [`FrameReader::open_pair`].
    out: Option<Box<dyn Read + Send>>,
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

/// One output of a decode: its size, rate and ffmpeg filter chain, checked
/// against the probed source.
struct Plan {
    width: u32,
    height: u32,
    fps: f64,
    start: f64,
    filters: String,
}

impl Plan {
    fn new(path: &Path, info: &VideoInfo, opts: &DecodeOptions) -> Result<Plan> {
        let invalid = |reason: String| Error::InvalidArgument {
            path: path.to_path_buf(),
            reason,
        };
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
        Ok(Plan {
            width,
            height,
            fps,
            start,
            filters: filters.join(","),
        })
    }
}

/// `ffmpeg` reading `path` from `start` for `duration` with `threads`
/// (decoder and filters: `-threads` and `filter_option`), quiet, output
/// options to follow.
fn input_command(
    path: &Path,
    start: f64,
    duration: Option<f64>,
    threads: Option<usize>,
    filter_option: &str,
) -> Command {
    let mut cmd = Tool::Ffmpeg.command();
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"]);
    if let Some(n) = threads {
        let n = n.max(1).to_string();
        cmd.args([filter_option, &n, "-threads", &n]);
    }
    if start > 0.0 {
        cmd.arg("-ss").arg(format!("{start}"));
    }
    cmd.arg("-i").arg(path);
    if let Some(d) = duration {
        cmd.arg("-t").arg(format!("{d}"));
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// The file descriptor the second output of [`FrameReader::open_pair`] is
/// written to in the ffmpeg child (`pipe:3`).
const SECOND_OUTPUT_FD: i32 = 3;

/// What the readers of one ffmpeg child share.
struct Source {
    child: Arc<Mutex<Child>>,
    stderr: Mutex<StderrTail>,
}

impl Source {
    fn start(mut child: Child) -> Arc<Source> {
        let stderr = StderrTail::start(child.stderr.take().expect("stderr is piped"));
        Arc::new(Source {
            child: Arc::new(Mutex::new(child)),
            stderr: Mutex::new(stderr),
        })
    }

    /// Waits for ffmpeg's stderr to close; its last lines.
    fn stderr_finish(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish()
    }

    fn stderr_message(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .message()
    }
}

impl FrameReader {
    /// Probes `path`, then starts ffmpeg to decode it as `opts` asks.
    pub fn open(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<FrameReader> {
        let path = path.as_ref().to_path_buf();
        let info = probe(&path)?;
        let plan = Plan::new(&path, &info, opts)?;
        let mut cmd = input_command(
            &path,
            plan.start,
            opts.duration,
            opts.threads,
            "-filter_threads",
        );
        cmd.args(["-an", "-sn", "-dn", "-vf"])
            .arg(&plan.filters)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
        let mut child = Tool::Ffmpeg.spawn(&mut cmd, &path)?;
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout is piped"));
        let source = Source::start(child);
        Ok(FrameReader::new(path, info, plan, opts, source, stdout))
    }

    /// Decodes `path` once for two outputs: the frames of `first` and of
    /// `second` are exactly those two [`FrameReader::open`] calls would
    /// give (one ffmpeg, its filter graph split after the decoder), for the
    /// cost of one decode. Both must cover the same span (`start`,
    /// `duration`); `first`'s `threads` (or else `second`'s) is used.
    ///
    /// ffmpeg writes the two outputs in step, so both readers must be read
    /// at the same time (from two threads): one left unread stalls the
    /// other once its pipe is full. Dropping either stops the decode.
    pub fn open_pair(
        path: impl AsRef<Path>,
        first: &DecodeOptions,
        second: &DecodeOptions,
    ) -> Result<(FrameReader, FrameReader)> {
        let path = path.as_ref().to_path_buf();
        if (first.start, first.duration) != (second.start, second.duration) {
            return Err(Error::InvalidArgument {
                path,
                reason: "the two outputs of one decode must cover the same span; pass the same `start` and `duration` to both".into(),
            });
        }
        let info = probe(&path)?;
        let a = Plan::new(&path, &info, first)?;
        let b = Plan::new(&path, &info, second)?;
        let io = |action, source| Error::Io {
            action,
            path: path.clone(),
            source,
        };
        let (second_out, second_in) =
            std::io::pipe().map_err(|e| io("open a pipe to decode", e))?;
        let mut cmd = input_command(
            &path,
            a.start,
            first.duration,
            first.threads.or(second.threads),
            "-filter_complex_threads",
        );
        cmd.args(["-filter_complex"])
            .arg(format!(
                "[0:v]split=2[a][b];[a]{}[x];[b]{}[y]",
                a.filters, b.filters
            ))
            .args([
                "-map", "[x]", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
            ])
            .args(["-map", "[y]", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .arg(format!("pipe:{SECOND_OUTPUT_FD}"));
        let fd = second_in.as_raw_fd();
        // SAFETY: between fork and exec the hook only calls the
        // async-signal-safe dup2 and fcntl on descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                if fd == SECOND_OUTPUT_FD {
                    // dup2 onto itself keeps close-on-exec set: clear it.
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, SECOND_OUTPUT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = Tool::Ffmpeg.spawn(&mut cmd, &path);
        // Only the child may hold the write end, or the second reader would
        // never see the end of the stream.
        drop(second_in);
        drop(cmd);
        let mut child = spawned?;
        let first_out: Box<dyn Read + Send> =
            Box::new(child.stdout.take().expect("stdout is piped"));
        let source = Source::start(child);
        let one = FrameReader::new(
            path.clone(),
            info.clone(),
            a,
            first,
            Arc::clone(&source),
            first_out,
        );
        let two = FrameReader::new(path, info, b, second, source, Box::new(second_out));
        Ok((one, two))
    }

    fn new(
        path: PathBuf,
        info: VideoInfo,
        plan: Plan,
        opts: &DecodeOptions,
        source: Arc<Source>,
        out: Box<dyn Read + Send>,
    ) -> FrameReader {
        let stall = opts.stall_timeout.unwrap_or(Duration::from_secs(60));
        let watchdog = Watchdog::start(Arc::clone(&source.child), stall);
        FrameReader {
            path,
            info,
            width: plan.width,
            height: plan.height,
            fps: plan.fps,
            start: plan.start,
            source,
            out: Some(out),
            watchdog,
            stall,
            next_index: 0,
            done: false,
        }
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
        let out = self.out.as_mut().expect("output present until done");
        let filled = self.watchdog.busy(|| read_full(out, &mut frame.data));
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
        self.out = None;
        if self.watchdog.fired() {
            return Err(self.timeout());
        }
        let status =
            process::wait_timeout(&self.source.child, self.stall).map_err(|source| Error::Io {
                action: "wait for ffmpeg on",
                path: self.path.clone(),
                source,
            })?;
        let message = self.source.stderr_finish();
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
        let _ = self.source.child.lock().map(|mut c| c.kill());
        Error::Decode {
            path: self.path.clone(),
            message: format!("{what}; {}", self.source.stderr_message()),
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
        self.out = None;
        let mut c = self.source.child.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(c.try_wait(), Ok(Some(_))) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}
