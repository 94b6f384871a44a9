//! Child processes for `ffmpeg` / `ffprobe`: locating the tools, a bounded
//! stderr tail, and a watchdog that kills a child blocked for too long.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Environment variable that overrides the `ffmpeg` executable (default: `ffmpeg` on PATH).
pub const FFMPEG_ENV: &str = "MEDIA_FFMPEG";
/// Environment variable that overrides the `ffprobe` executable (default: `ffprobe` on PATH).
pub const FFPROBE_ENV: &str = "MEDIA_FFPROBE";

/// How much of a child's stderr we keep (the end of it).
const STDERR_TAIL_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Tool {
    Ffmpeg,
    Ffprobe,
}

impl Tool {
    fn env(self) -> &'static str {
        match self {
            Tool::Ffmpeg => FFMPEG_ENV,
            Tool::Ffprobe => FFPROBE_ENV,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::Ffmpeg => "ffmpeg",
            Tool::Ffprobe => "ffprobe",
        }
    }

    fn program(self) -> OsString {
        std::env::var_os(self.env())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| OsString::from(self.name()))
    }

    pub(crate) fn command(self) -> Command {
        let mut cmd = Command::new(self.program());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Spawns `cmd`, turning "not found" into [`Error::ToolNotFound`].
    pub(crate) fn spawn(self, cmd: &mut Command, path: &Path) -> Result<Child> {
        cmd.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                Error::ToolNotFound {
                    program: self.program().to_string_lossy().into_owned(),
                    env: self.env(),
                }
            }
            _ => Error::Io {
                action: "start ffmpeg for",
                path: path.to_path_buf(),
                source,
            },
        })
    }
}

/// Collects the last [`STDERR_TAIL_BYTES`] of a child's stderr on a thread.
pub(crate) struct StderrTail {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrTail {
    pub(crate) fn start(mut stderr: ChildStderr) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut b = sink.lock().unwrap_or_else(|e| e.into_inner());
                        b.extend_from_slice(&chunk[..n]);
                        if b.len() > STDERR_TAIL_BYTES {
                            let cut = b.len() - STDERR_TAIL_BYTES;
                            b.drain(..cut);
                        }
                    }
                }
            }
        });
        StderrTail {
            buf,
            thread: Some(thread),
        }
    }

    /// Waits for the child's stderr to close, then returns a short message.
    pub(crate) fn finish(&mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.message()
    }

    /// The tail so far, trimmed to its last few non-empty lines.
    pub(crate) fn message(&self) -> String {
        let b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        summarize(&String::from_utf8_lossy(&b))
    }
}

/// Last few non-empty lines of a tool's stderr, joined with " | ".
pub(crate) fn summarize(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "(no message)".to_string();
    }
    let start = lines.len().saturating_sub(4);
    lines[start..].join(" | ")
}

/// Kills a child that stays blocked (inside a read or write on its pipe) for
/// longer than `limit`. Time spent outside [`Watchdog::busy`] does not count,
/// so a slow producer never trips it.
pub(crate) struct Watchdog {
    state: Arc<WatchState>,
    thread: Option<JoinHandle<()>>,
}

struct WatchState {
    start: Instant,
    /// Milliseconds since `start` at which the current blocking call began + 1; 0 = idle.
    busy_since: AtomicU64,
    stop: AtomicBool,
    fired: AtomicBool,
}

impl Watchdog {
    pub(crate) fn start(child: Arc<Mutex<Child>>, limit: Duration) -> Self {
        let state = Arc::new(WatchState {
            start: Instant::now(),
            busy_since: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            fired: AtomicBool::new(false),
        });
        let s = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let limit_ms = limit.as_millis() as u64;
            while !s.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
                let since = s.busy_since.load(Ordering::Acquire);
                if since == 0 {
                    continue;
                }
                let now = s.start.elapsed().as_millis() as u64 + 1;
                if now.saturating_sub(since) > limit_ms {
                    s.fired.store(true, Ordering::Release);
                    let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
                    break;
                }
            }
        });
        Watchdog {
            state,
            thread: Some(thread),
        }
    }

    /// Runs a blocking call under the watchdog.
    pub(crate) fn busy<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = self.state.start.elapsed().as_millis() as u64 + 1;
        self.state.busy_since.store(now, Ordering::Release);
        let out = f();
        self.state.busy_since.store(0, Ordering::Release);
        out
    }

    /// Whether the watchdog killed the child.
    pub(crate) fn fired(&self) -> bool {
        self.state.fired.load(Ordering::Acquire)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits for a child, killing it when `limit` passes. Returns `None` on timeout.
pub(crate) fn wait_timeout(
    child: &Mutex<Child>,
    limit: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        {
            let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(status) = c.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return Ok(None);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Output of a short-lived tool run.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs a tool to completion with captured stdout and stderr tail, killing it
/// after `limit`.
pub(crate) fn run(tool: Tool, mut cmd: Command, path: &Path, limit: Duration) -> Result<Finished> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = tool.spawn(&mut cmd, path)?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut tail = StderrTail::start(child.stderr.take().expect("stderr is piped"));
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let child = Mutex::new(child);
    let status = wait_timeout(&child, limit).map_err(|source| Error::Io {
        action: "wait for ffmpeg on",
        path: path.to_path_buf(),
        source,
    })?;
    let stdout = reader.join().unwrap_or_default();
    let stderr = tail.finish();
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        None => Err(Error::Timeout {
            program: tool.name().to_string(),
            path: path.to_path_buf(),
            seconds: limit.as_secs_f64(),
        }),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden temporary name beside `dir/file_name`, unique within this machine's
/// processes, for writing a file that is renamed into place when complete.
pub(crate) fn temp_path(dir: &Path, file_name: &std::ffi::OsStr) -> std::path::PathBuf {
    dir.join(format!(
        ".{}.partial-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Checks that `path` exists and is not empty, before any tool sees it.
pub(crate) fn check_input(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => Err(Error::EmptyFile {
            path: path.to_path_buf(),
        }),
        Ok(m) if m.is_dir() => Err(Error::InvalidArgument {
            path: path.to_path_buf(),
            reason: "this is a directory, not a video file; pass the path of a video file".into(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(Error::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}
