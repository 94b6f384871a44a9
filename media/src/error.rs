//! The error type of the video I/O functions.

use std::path::PathBuf;

/// Result alias for the video I/O functions of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when probing, decoding, encoding or cutting.
///
/// Each message names the file and says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `ffmpeg` or `ffprobe` executable could not be started.
    #[error(
        "`{program}` was not found on PATH; install it (`apt-get install -y ffmpeg`) or set `{env}` to its full path"
    )]
    ToolNotFound {
        /// The program we tried to start.
        program: String,
        /// The environment variable that overrides its location.
        env: &'static str,
    },
    /// The input file does not exist.
    #[error("Failed to open `{}`: the file does not exist; check the path", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The input file has zero bytes.
    #[error("Failed to open `{}`: the file is empty (0 bytes); re-create or re-download it", path.display())]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },
    /// `ffprobe` could not read the file.
    #[error(
        "Failed to probe `{}`: ffprobe says: {message}; check the file is a complete video (not truncated, not another kind of file)",
        path.display()
    )]
    Probe {
        /// The file being probed.
        path: PathBuf,
        /// What ffprobe printed (last lines of its stderr).
        message: String,
    },
    /// The file has no video stream, or ffprobe reported unusable values.
    #[error("Failed to read `{}`: {reason}; check the file is a video", path.display())]
    NotAVideo {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// `ffmpeg` failed while decoding.
    #[error(
        "Failed to decode `{}`: ffmpeg says: {message}; check the file is a complete video",
        path.display()
    )]
    Decode {
        /// The file being decoded.
        path: PathBuf,
        /// What ffmpeg printed (last lines of its stderr) or what went wrong.
        message: String,
    },
    /// `ffmpeg` failed while encoding.
    #[error(
        "Failed to encode `{}`: ffmpeg says: {message}; check the directory is writable and the disk is not full",
        path.display()
    )]
    Encode {
        /// The output file.
        path: PathBuf,
        /// What ffmpeg printed (last lines of its stderr) or what went wrong.
        message: String,
    },
    /// `ffmpeg` failed while cutting a clip.
    #[error(
        "Failed to cut `{}` into `{}`: ffmpeg says: {message}; check the input is a complete video and the span lies inside it",
        input.display(),
        output.display()
    )]
    Cut {
        /// The source video.
        input: PathBuf,
        /// The clip being written.
        output: PathBuf,
        /// What ffmpeg printed.
        message: String,
    },
    /// A child process made no progress within its time limit and was killed.
    #[error(
        "`{program}` made no progress on `{}` for {seconds:.0} s and was stopped; the file may be damaged or the disk stalled, retry or raise the timeout",
        path.display()
    )]
    Timeout {
        /// `ffmpeg` or `ffprobe`.
        program: String,
        /// The file it was working on.
        path: PathBuf,
        /// The limit that was exceeded.
        seconds: f64,
    },
    /// The caller passed a value that cannot work.
    #[error("Invalid request for `{}`: {reason}", path.display())]
    InvalidArgument {
        /// The file the request was about.
        path: PathBuf,
        /// What is wrong and what to pass instead.
        reason: String,
    },
    /// A filesystem or pipe operation failed.
    #[error("Failed to {action} `{}`: {source}", path.display())]
    Io {
        /// What we were doing, e.g. "rename the finished video to".
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
