//! CSV labels: `video,start,end[,league,broadcaster]`.

use std::path::Path;

use super::{LabelError, check_segment, read_text, sort_and_check_overlaps};
use crate::segments::{Segment, Segments};

const COLUMNS: [&str; 5] = ["video", "start", "end", "league", "broadcaster"];

/// Reads a CSV label file, one replay per row, grouped by video in order of
/// first appearance.
///
/// Columns are `video,start,end[,league,broadcaster]` (seconds), or as named
/// by a header row. Fields may be double-quoted (`""` inside quotes is a
/// quote). Blank lines and lines starting with `#` are skipped.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Vec<Segments>, LabelError> {
    let path = path.as_ref();
    let text = read_text(path)?;
    let invalid = |line: usize, message: String| LabelError::Invalid {
        path: path.to_path_buf(),
        location: format!("line {line}"),
        message,
    };
    // Column index of video, start, end, league, broadcaster.
    let mut order: [Option<usize>; 5] = [Some(0), Some(1), Some(2), Some(3), Some(4)];
    let mut first = true;
    let mut videos: Vec<(Segments, Vec<(Segment, String)>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = split(trimmed).map_err(|m| invalid(line, m))?;
        if std::mem::take(&mut first)
            && fields
                .iter()
                .any(|f| f.trim().eq_ignore_ascii_case("start"))
        {
            order = [None; 5];
            for (col, name) in fields.iter().enumerate() {
                let name = name.trim().to_lowercase();
                let Some(k) = COLUMNS.iter().position(|c| *c == name) else {
                    return Err(invalid(
                        line,
                        format!(
                            "unknown column `{name}` in the header; expected {}",
                            COLUMNS.join(", ")
                        ),
                    ));
                };
                order[k] = Some(col);
            }
            if order[..3].iter().any(Option::is_none) {
                return Err(invalid(
                    line,
                    "the header must name the columns `video`, `start` and `end`".into(),
                ));
            }
            continue;
        }
        if fields.len() < 3 || fields.len() > 5 {
            return Err(invalid(
                line,
                format!(
                    "expected 3 to 5 fields (video,start,end[,league,broadcaster]), found {}",
                    fields.len()
                ),
            ));
        }
        let get = |k: usize| {
            order[k]
                .and_then(|c| fields.get(c))
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
        };
        let video = get(0).ok_or_else(|| invalid(line, "the video field is empty".into()))?;
        let num = |k: usize| -> Result<f64, LabelError> {
            let s = get(k)
                .ok_or_else(|| invalid(line, format!("the `{}` field is empty", COLUMNS[k])))?;
            s.parse::<f64>().map_err(|_| {
                invalid(
                    line,
                    format!("`{}` is `{s}`, expected a number of seconds", COLUMNS[k]),
                )
            })
        };
        let seg = Segment {
            start: num(1)?,
            end: num(2)?,
        };
        let at = format!("line {line}");
        check_segment(path, &at, &seg)?;
        let league = get(3).map(str::to_string);
        let broadcaster = get(4).map(str::to_string);
        let entry = match videos.iter_mut().position(|(s, _)| s.video == video) {
            Some(k) => &mut videos[k],
            None => {
                videos.push((
                    Segments {
                        video: video.to_string(),
                        fps: None,
                        league: None,
                        broadcaster: None,
                        segments: Vec::new(),
                    },
                    Vec::new(),
                ));
                videos.last_mut().expect("just pushed")
            }
        };
        for (slot, value, what) in [
            (&mut entry.0.league, league, "league"),
            (&mut entry.0.broadcaster, broadcaster, "broadcaster"),
        ] {
            match (slot.as_ref(), value) {
                (Some(old), Some(new)) if *old != new => {
                    return Err(invalid(
                        line,
                        format!(
                            "{what} `{new}` differs from `{old}` given earlier for video `{video}`"
                        ),
                    ));
                }
                (None, Some(new)) => *slot = Some(new),
                _ => {}
            }
        }
        entry.1.push((seg, at));
    }
    let mut out = Vec::with_capacity(videos.len());
    for (mut s, mut segs) in videos {
        sort_and_check_overlaps(path, &mut segs)?;
        s.segments = segs.into_iter().map(|(s, _)| s).collect();
        out.push(s);
    }
    Ok(out)
}

/// Splits one CSV line, honouring double quotes.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed; add the closing `\"`".into());
    }
    out.push(cur);
    Ok(out)
}
