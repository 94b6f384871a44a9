//! Templates: one `*.yaml.j2` pipeline, many variants through values files
//! and `--set` overrides. Undefined values are errors that name the value.

use crate::diag::{Diagnostic, Diagnostics, Loc};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// Everything that decides the rendered text of a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RenderRequest {
    /// The pipeline file: `*.j2` is rendered, anything else is used as is.
    pub path: PathBuf,
    /// Values files (YAML or JSON), merged left to right.
    pub values_files: Vec<PathBuf>,
    /// `key.path=value` overrides, applied last; values parse as YAML scalars.
    pub sets: Vec<String>,
    /// Values under all the others (a profile's `catalog`): any values
    /// file or `--set` replaces them.
    pub defaults: Value,
}

/// The rendered pipeline with the values that produced it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub file: String,
    pub text: String,
    pub values: Value,
}

/// Reads, merges values, and renders. Errors name the file and value.
pub fn render(req: &RenderRequest) -> Result<Rendered, Diagnostics> {
    let file = req.path.display().to_string();
    let one = |d: Diagnostic, src: Option<String>| Diagnostics {
        items: vec![d],
        source: src,
    };
    let source = std::fs::read_to_string(&req.path).map_err(|e| {
        one(
            Diagnostic::new(
                &file,
                Loc::default(),
                format!("Failed to read pipeline file: {e}"),
            )
            .with_hint("check the path; pipelines are `*.yaml` or `*.yaml.j2` files"),
            None,
        )
    })?;
    let values = match &req.defaults {
        Value::Object(d) if !d.is_empty() => {
            let mut v = req.defaults.clone();
            merge(&mut v, load_values(&req.values_files, &req.sets)?);
            v
        }
        _ => load_values(&req.values_files, &req.sets)?,
    };
    if !file.ends_with(".j2") {
        return Ok(Rendered {
            file,
            text: source,
            values,
        });
    }
    let text = render_str(&file, &source, &values, req.path.parent())
        .map_err(|d| one(d, Some(source.clone())))?;
    Ok(Rendered { file, text, values })
}

/// Merges values files and `--set` overrides into one JSON object.
pub fn load_values(files: &[PathBuf], sets: &[String]) -> Result<Value, Diagnostics> {
    let mut merged = Value::Object(Default::default());
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Diagnostics {
            items: vec![Diagnostic::new(
                &name,
                Loc::default(),
                format!("Failed to read values file: {e}"),
            )],
            source: None,
        })?;
        let v: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(&text).map_err(|e| {
                let loc = e
                    .location()
                    .map(|l| Loc {
                        line: l.line(),
                        column: l.column(),
                    })
                    .unwrap_or_default();
                Diagnostics {
                    items: vec![Diagnostic::new(
                        &name,
                        loc,
                        format!("Failed to parse values file: {}", e.without_snippet()),
                    )],
                    source: Some(text.clone()),
                }
            })?
        };
        if !v.is_object() {
            return Err(Diagnostics {
                items: vec![Diagnostic::new(
                    &name,
                    Loc { line: 1, column: 1 },
                    "values file must be a mapping of names to values",
                )],
                source: Some(text),
            });
        }
        merge(&mut merged, v);
    }
    for set in sets {
        let Some((key, raw)) = set.split_once('=') else {
            return Err(Diagnostics {
                items: vec![
                    Diagnostic::new(
                        "--set",
                        Loc::default(),
                        format!("`{set}` is not `key=value`"),
                    )
                    .with_hint("write e.g. `--set sport=basketball` or `--set train.epochs=5`"),
                ],
                source: None,
            });
        };
        let value: Value = if raw.is_empty() {
            Value::String(String::new())
        } else {
            serde_saphyr::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
        };
        set_path(&mut merged, key, value).map_err(|m| Diagnostics {
            items: vec![Diagnostic::new("--set", Loc::default(), m.to_string())],
            source: None,
        })?;
    }
    Ok(merged)
}

/// Deep merge: objects merge key by key, anything else replaces.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Why [`set_path`] cannot set a key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPathError {
    #[error("`{0}` is not a valid key path (empty segment)")]
    EmptySegment(String),
    #[error("cannot set `{path}`: `{parent}` is not a mapping")]
    NotAMapping { path: String, parent: String },
}

/// Sets `a.b.c` in an object, creating intermediate objects.
pub fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), KeyPathError> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(KeyPathError::EmptySegment(path.to_string()));
    }
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = cur else {
            return Err(KeyPathError::NotAMapping {
                path: path.to_string(),
                parent: parts[..i].join("."),
            });
        };
        if i == parts.len() - 1 {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

/// Renders template text with strict undefined; includes resolve relative
/// to `dir` and may not leave it.
pub fn render_str(
    file: &str,
    source: &str,
    values: &Value,
    dir: Option<&Path>,
) -> Result<String, Diagnostic> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // YAML templates: keep the final newline, drop the line breaks of block
    // tags, and never escape (minijinja would JSON-quote `*.yaml` output).
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let base = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    env.set_loader(move |name| {
        let rel = Path::new(name);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("include `{name}` must be a relative path inside the template's folder"),
            ));
        }
        // A symlink inside the folder may point out of it: resolve, compare.
        let path = base.join(rel);
        if let (Ok(real), Ok(root)) = (path.canonicalize(), base.canonicalize())
            && !real.starts_with(&root)
        {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!(
                    "include `{name}` resolves to `{}`, outside the template's folder (through a symlink)",
                    real.display()
                ),
            ));
        }
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("Failed to read include `{name}`: {e}"),
            )),
        }
    });
    env.set_fuel(Some(FUEL));
    let mut out = Limited {
        buf: Vec::new(),
        over: false,
    };
    let mut render = |out: &mut Limited| -> Result<(), minijinja::Error> {
        env.add_template(file, source)?;
        env.get_template(file)?
            .render_captured_to(minijinja::Value::from(minijinja::value::Serde(values)), out)
            .map(|_| ())
    };
    match render(&mut out) {
        Ok(()) => String::from_utf8(out.buf).map_err(|_| {
            Diagnostic::new(file, Loc::default(), "the rendered pipeline is not UTF-8")
        }),
        Err(_) if out.over => Err(Diagnostic::new(
            file,
            Loc::default(),
            format!("the rendered pipeline passes {} MiB", MAX_OUTPUT >> 20),
        )
        .with_hint(
            "a loop in the template writes far more than a pipeline needs; check its bounds",
        )),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => {
            let mut d = template_diagnostic(file, source, &e);
            d.message = format!(
                "the template did not finish within its budget ({FUEL} steps, about {} MiB)",
                (FUEL * 64) >> 20
            );
            d.hint = Some(
                "a loop that does not end, or one building far more than a pipeline needs (nested `range`s, a string doubled in a loop); check its bounds".into(),
            );
            Err(d)
        }
        Err(e) => Err(template_diagnostic(file, source, &e)),
    }
}

/// minijinja's budget per render: about one step per instruction and one
/// per 64 bytes allocated. The largest pipeline templates in this repository
/// need a few thousand; runaway loops and string doubling stop here with a
/// diagnostic instead of running for minutes or aborting on allocation.
const FUEL: u64 = 4_000_000;
/// The most text a template may render.
const MAX_OUTPUT: usize = 16 << 20;

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct Limited {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Limited {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("rendered output too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn template_diagnostic(file: &str, source: &str, e: &minijinja::Error) -> Diagnostic {
    let in_file = e.name().unwrap_or(file).to_string();
    let line = e.line().unwrap_or(0) as u64;
    let mut column = 0;
    let mut snippet = None;
    if let Some(range) = e.range()
        && in_file == file
        && range.end <= source.len()
    {
        snippet = Some(source[range.clone()].trim().to_string());
        let line_start = source[..range.start]
            .rfind('\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        column = (source[line_start..range.start].chars().count() + 1) as u64;
    }
    let detail = e.detail().unwrap_or("").to_string();
    let (message, hint) = match e.kind() {
        minijinja::ErrorKind::UndefinedError => {
            let what = snippet.clone().unwrap_or_else(|| "a value".into());
            (
                format!("undefined value `{what}`"),
                Some(
                    "define it in a values file (`--values FILE`) or with `--set key=value`"
                        .to_string(),
                ),
            )
        }
        minijinja::ErrorKind::TemplateNotFound => (format!("template not found: {detail}"), None),
        minijinja::ErrorKind::SyntaxError => (format!("template syntax error: {detail}"), None),
        _ => (
            if detail.is_empty() {
                e.kind().to_string()
            } else {
                format!("{}: {detail}", e.kind())
            },
            None,
        ),
    };
    let mut d = Diagnostic::new(&in_file, Loc { line, column }, message);
    d.hint = hint;
    d
}
