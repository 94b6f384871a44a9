//! Problems found by `engine validate`, for machines: a JSON list, or GitHub
//! Actions workflow commands that show as annotations on a pull request.

use engine_core::diag::{Diagnostic, Diagnostics};
use serde::Serialize;

/// One problem, as `engine validate --format json` prints it.
#[derive(Debug, Serialize)]
pub struct Problem {
    pub file: String,
    /// 1-based; absent when the problem has no position (a missing file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<&Diagnostic> for Problem {
    fn from(d: &Diagnostic) -> Self {
        let known = |v: u64| (v > 0).then_some(v);
        Problem {
            file: d.file.clone(),
            line: known(d.line),
            column: known(d.column),
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}

/// Every problem in `error`: each diagnostic of a pipeline that failed to
/// compile, or the error itself, put on `file` (a template that failed to
/// render, a missing values file).
pub fn problems(error: &anyhow::Error, file: &str) -> Vec<Problem> {
    match error.downcast_ref::<Diagnostics>() {
        Some(d) => d.items.iter().map(Problem::from).collect(),
        None => vec![Problem {
            file: file.to_string(),
            line: None,
            column: None,
            message: format!("{error:#}"),
            hint: None,
        }],
    }
}

/// `::error file=F,line=L,col=C,title=engine validate::MESSAGE`, escaped as
/// GitHub's workflow command parser expects.
pub fn github_annotation(p: &Problem) -> String {
    let mut props = vec![format!("file={}", escape_property(&p.file))];
    if let Some(l) = p.line {
        props.push(format!("line={l}"));
    }
    if let Some(c) = p.column {
        props.push(format!("col={c}"));
    }
    props.push("title=engine validate".into());
    let message = match &p.hint {
        Some(h) => format!("{}\nhelp: {h}", p.message),
        None => p.message.clone(),
    };
    format!("::error {}::{}", props.join(","), escape_data(&message))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_core::diag::Loc;

    #[test]
    fn annotations_escape_what_github_would_misread() {
        let d = Diagnostic::new(
            "pipes/a,b.yaml",
            Loc { line: 3, column: 7 },
            "unknown key `wiht`: 100% wrong",
        )
        .with_hint("did you mean `with`?");
        let line = github_annotation(&Problem::from(&d));
        assert_eq!(
            line,
            "::error file=pipes/a%2Cb.yaml,line=3,col=7,title=engine validate::unknown key `wiht`: 100%25 wrong%0Ahelp: did you mean `with`?"
        );
    }

    #[test]
    fn a_problem_without_position_has_no_line() {
        let e = anyhow::anyhow!("values file `x.yaml` does not exist");
        let p = problems(&e, "p.yaml");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, None);
        assert_eq!(
            github_annotation(&p[0]),
            "::error file=p.yaml,title=engine validate::values file `x.yaml` does not exist"
        );
    }
}
