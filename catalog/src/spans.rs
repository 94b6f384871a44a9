//! Replay spans typed by a person, `START-END` in seconds: shared by
//! `engine review fix|missed|verdict` and the review page of `engine serve`,
//! so both accept and refuse exactly the same text.

use crate::model::NewLabel;

/// `12.0-18.5,40-47.2` -> spans, sorted by start; an empty (or blank) list
/// is "no replays". The error says what is wrong with which segment; the
/// caller adds where the text came from (a flag, a form field) and an
/// example, which differ between them.
pub fn parse_spans(text: &str) -> Result<Vec<NewLabel>, String> {
    let mut out: Vec<NewLabel> = vec![];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((a, b)) = part.split_once('-') else {
            return Err(format!("segment `{part}` has no `-` between start and end"));
        };
        let num = |s: &str, which: &str| -> Result<f64, String> {
            let s = s.trim();
            if s.is_empty() {
                return Err(format!("segment `{part}` has no {which}"));
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(format!(
                    "the {which} `{s}` of segment `{part}` is not a number of seconds >= 0"
                )),
            }
        };
        let (start, end) = (num(a, "start")?, num(b, "end")?);
        if end <= start {
            return Err(format!(
                "segment `{part}` ends ({end}) before it starts ({start})"
            ));
        }
        out.push(NewLabel {
            start_s: start,
            end_s: end,
            confidence: None,
        });
    }
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    for w in out.windows(2) {
        if w[1].start_s < w[0].end_s {
            return Err(format!(
                "segments `{}-{}` and `{}-{}` overlap",
                w[0].start_s, w[0].end_s, w[1].start_s, w[1].end_s
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_sorted_or_say_what_is_wrong() {
        let s = parse_spans("40-47.2, 12.0-18.5").unwrap();
        assert_eq!(
            s.iter().map(|l| (l.start_s, l.end_s)).collect::<Vec<_>>(),
            [(12.0, 18.5), (40.0, 47.2)]
        );
        assert!(parse_spans(" , ").unwrap().is_empty());
        for (bad, want) in [
            ("12-", "segment `12-` has no end"),
            ("-5", "segment `-5` has no start"),
            ("18-12", "segment `18-12` ends (12) before it starts (18)"),
            ("3-3", "segment `3-3` ends (3) before it starts (3)"),
            ("a-4", "the start `a` of segment `a-4` is not a number"),
            ("1-inf", "the end `inf` of segment `1-inf` is not a number"),
            ("12", "segment `12` has no `-`"),
            ("1-5,4-8", "segments `1-5` and `4-8` overlap"),
        ] {
            let e = parse_spans(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
