//! A video file with HTTP range requests: a `<video>` element asks for
//! byte ranges to read the container's index and to seek, and without 206
//! answers Chromium cannot seek at all. The caller picks the file (from the
//! catalog, never from the request); this module only slices it.

use crate::error::{Result, ServeError};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What a `Range` header asks of a file of a known length.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No header, or one this server ignores (another unit, several
    /// ranges, a malformed one): the whole file, as RFC 9110 allows.
    Whole,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// A valid range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads `bytes=FIRST-LAST`, `bytes=FIRST-` and `bytes=-SUFFIX`.
pub fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => Wanted::Unsatisfiable,
            Ok(_) if len == 0 => Wanted::Unsatisfiable,
            Ok(n) => Wanted::Part {
                first: len.saturating_sub(n),
                last: len - 1,
            },
            Err(_) => Wanted::Whole,
        };
    }
    let Ok(first) = a.parse::<u64>() else {
        return Wanted::Whole;
    };
    let last = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(l) if l >= first => Some(l),
            _ => return Wanted::Whole,
        }
    };
    if first >= len {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part {
        first,
        last: last.map_or(len - 1, |l| l.min(len - 1)),
    }
}

pub fn video_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mov" => "video/quicktime",
        "ts" => "video/mp2t",
        _ => "application/octet-stream",
    }
}

/// The file at `path` (named `what` in messages), whole or the range the
/// request asks for.
pub async fn serve_file(path: &Path, what: &str, headers: &HeaderMap) -> Result<Response> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ServeError::NotFound(format!(
                "{what} is not on disk at `{}`; restore the file, or remove the video from the catalog",
                path.display()
            ))
        } else {
            ServeError::NotFound(format!(
                "Failed to open {what} at `{}`: {e}; check that the server's user may read it",
                path.display()
            ))
        }
    })?;
    let len = file
        .metadata()
        .await
        .map_err(|e| {
            ServeError::NotFound(format!(
                "Failed to read the size of {what} at `{}`: {e}",
                path.display()
            ))
        })?
        .len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let ctype = HeaderValue::from_static(video_type(path));
    let (status, first, count) = match wanted(range, len) {
        Wanted::Whole => (StatusCode::OK, 0, len),
        Wanted::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Wanted::Unsatisfiable => {
            let mut r = (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "416 Range Not Satisfiable: the range `{}` starts past the end of {what} ({len} bytes); ask for bytes below {len}\n",
                    range.unwrap_or_default()
                ),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    if first > 0 {
        file.seek(std::io::SeekFrom::Start(first))
            .await
            .map_err(|e| {
                ServeError::NotFound(format!(
                    "Failed to seek to byte {first} of {what} at `{}`: {e}",
                    path.display()
                ))
            })?;
    }
    // Streamed: a broadcast can be gigabytes, and a seek asks for the rest.
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(count)));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, ctype);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{}/{len}", first + count - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let part = |first, last| Wanted::Part { first, last };
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-9"), 100), part(0, 9));
        assert_eq!(wanted(Some("bytes=90-"), 100), part(90, 99));
        assert_eq!(wanted(Some("bytes=90-500"), 100), part(90, 99));
        assert_eq!(wanted(Some("bytes=-10"), 100), part(90, 99));
        assert_eq!(wanted(Some("bytes=-500"), 100), part(0, 99));
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        // Ignored, so the whole file: other units, several ranges, nonsense.
        for h in [
            "items=0-9",
            "bytes=0-9,20-29",
            "bytes=9-0",
            "bytes=x-",
            "bytes=5",
        ] {
            assert_eq!(wanted(Some(h), 100), Wanted::Whole, "{h}");
        }
    }
}
