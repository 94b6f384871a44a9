//! Diagnostics that point at the text: file, line, column, message, hint.

use std::fmt;

/// One problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in, as the user named it.
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong, with values in backticks.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &str, loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: loc.line,
            column: loc.column,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `file:line:col: message`, the first line of the report.
    pub fn headline(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file, self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }

    /// The full report: headline, the source line with a caret, the hint.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = format!("error: {}", self.headline());
        if let Some(text) = source
            && self.line > 0
            && let Some(line) = text.lines().nth(self.line as usize - 1)
        {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            let caret_at = (self.column.max(1) - 1) as usize;
            let (snippet, caret) = snippet(line, caret_at);
            out.push_str(&format!(
                "\n {pad} |\n {num} | {snippet}\n {pad} | {}^",
                " ".repeat(caret)
            ));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  = help: {hint}"));
        }
        out
    }
}

/// At most this many characters of a source line are shown.
const SNIPPET_WIDTH: usize = 120;

/// The part of `line` to show around character `at`, and where the caret
/// goes in it: the whole line when short, else a window around the column
/// with `…` where it was cut (a minified 100,000-character line must not
/// fill the terminal).
fn snippet(line: &str, at: usize) -> (String, usize) {
    let len = line.chars().count();
    let at = at.min(len);
    if len <= SNIPPET_WIDTH {
        return (line.to_string(), at);
    }
    let start = at
        .saturating_sub(SNIPPET_WIDTH / 2)
        .min(len - SNIPPET_WIDTH);
    let end = start + SNIPPET_WIDTH;
    let mut out = String::new();
    let mut caret = at - start;
    if start > 0 {
        out.push('…');
        caret += 1;
    }
    out.extend(line.chars().skip(start).take(end - start));
    if end < len {
        out.push('…');
    }
    (out, caret)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(h) = &self.hint {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

/// A position in the source text (1-based; 0 means unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub line: u64,
    pub column: u64,
}

/// Every problem found, in source order, with the text they point into.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    pub source: Option<String>,
}

impl Diagnostics {
    pub fn render(&self) -> String {
        let mut parts: Vec<String> = self
            .items
            .iter()
            .map(|d| d.render(self.source.as_deref()))
            .collect();
        parts.push(format!(
            "{} error{} found",
            self.items.len(),
            if self.items.len() == 1 { "" } else { "s" }
        ));
        parts.join("\n\n")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

/// The valid name closest to `name`, when one is close enough to be a typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A hint naming the closest candidate, or listing them all when few.
pub fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<String> {
    if let Some(c) = closest(name, candidates.clone()) {
        return Some(format!("did you mean `{c}`?"));
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    if all.is_empty() {
        None
    } else if all.len() <= 8 {
        Some(format!(
            "expected one of {}",
            all.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_source_line_is_cut_to_a_window_around_the_column() {
        let line = format!("{}BAD{}", "a".repeat(50_000), "b".repeat(50_000));
        let d = Diagnostic::new(
            "p.yaml",
            Loc {
                line: 1,
                column: 50_001,
            },
            "unexpected `BAD`",
        );
        let out = d.render(Some(&line));
        assert!(out.len() < 1_000, "{} bytes rendered", out.len());
        let lines: Vec<&str> = out.lines().collect();
        let text = lines[2].split_once("| ").unwrap().1;
        let caret = lines[3].split_once("| ").unwrap().1;
        assert!(text.starts_with('…') && text.ends_with('…'), "{text}");
        let col = caret.chars().count() - 1;
        let under: String = text.chars().skip(col).take(3).collect();
        assert_eq!(under, "BAD", "{text}\n{caret}");
    }

    #[test]
    fn a_short_line_is_shown_whole() {
        let d = Diagnostic::new("p.yaml", Loc { line: 1, column: 5 }, "x");
        let out = d.render(Some("key: value"));
        assert!(out.contains(" 1 | key: value\n   |     ^"), "{out}");
    }
}
