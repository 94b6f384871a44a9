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
            out.push_str(&format!(
                "\n {pad} |\n {num} | {line}\n {pad} | {}^",
                " ".repeat(caret_at.min(line.chars().count()))
            ));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  = help: {hint}"));
        }
        out
    }
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
