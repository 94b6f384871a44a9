//! Secrets in stage params: `${env:NAME}` references.
//!
//! A param string may contain `${env:NAME}` (for example
//! `db: "postgres://engine:${env:PGPASSWORD}@db/catalog"`, or a whole value
//! `--set 'catalog=${env:CATALOG_URL}'`). The reference, not its value, is
//! what the spec, the run record, the fingerprint and `engine show` see: a
//! rotated password neither reruns the task nor lands in the store. The
//! value is read from the environment only when a stage is built from its
//! params ([`build_stage`]), and every value read is remembered so that task
//! logs and task errors print `[redacted]` in its place ([`redact`]).
//! `$${env:NAME}` is the literal text `${env:NAME}`.

use crate::stage::{BuildFn, ParamsError, StageImpl};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};

/// Values read through references, for [`redact`]. Process-wide because a
/// value can surface in any task's log (a driver error that prints its URL).
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Shorter values are not redacted: replacing every `1` or `dev` in every
/// log would hide more than it protects.
const MIN_REDACTED: usize = 6;

/// Builds a stage from its params with `${env:NAME}` references resolved.
/// Every place that turns params into a stage goes through here.
pub fn build_stage(build: BuildFn, params: &Value) -> Result<StageImpl, ParamsError> {
    // Most params name no variable: build from them as they are, rather
    // than from a copy (a 5,001-stage pipeline builds 5,001 stages).
    if !refers_to_env(params) {
        return build(params);
    }
    build(&resolve(params)?)
}

/// Whether some string in `params` holds `${env:`.
fn refers_to_env(params: &Value) -> bool {
    match params {
        Value::String(s) => s.contains("${env:"),
        Value::Array(a) => a.iter().any(refers_to_env),
        Value::Object(m) => m.values().any(refers_to_env),
        _ => false,
    }
}

/// A `${env:NAME}` reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvRefError {
    #[error("`${{env:` in `{text}` is not closed; write `${{env:NAME}}`")]
    Unclosed { text: String },
    #[error("`${{env:{name}}}` does not name an environment variable (letters, digits and `_`)")]
    BadName { name: String },
    #[error(
        "`${{env:{name}}}` names an environment variable that is not set; export `{name}` before running the engine"
    )]
    Unset { name: String },
}

impl From<EnvRefError> for ParamsError {
    fn from(e: EnvRefError) -> Self {
        ParamsError::from(e.to_string())
    }
}

/// `params` with every `${env:NAME}` replaced by the variable's value. A
/// variable that is not set is an error naming it.
pub fn resolve(params: &Value) -> Result<Value, EnvRefError> {
    Ok(match params {
        Value::String(s) => match resolve_str(s)? {
            Cow::Borrowed(_) => params.clone(),
            Cow::Owned(s) => Value::String(s),
        },
        Value::Array(a) => Value::Array(a.iter().map(resolve).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v)?)))
                .collect::<Result<_, EnvRefError>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve_str(s: &str) -> Result<Cow<'_, str>, EnvRefError> {
    if !s.contains("${env:") {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("${env:") {
        if rest[..at].ends_with('$') {
            // `$${env:...}`: the literal text.
            out.push_str(&rest[..at - 1]);
            out.push_str("${env:");
            rest = &rest[at + 6..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 6..];
        let Some(end) = after.find('}') else {
            return Err(EnvRefError::Unclosed { text: shorten(s) });
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EnvRefError::BadName { name: name.into() });
        }
        let value = std::env::var(name).map_err(|_| EnvRefError::Unset { name: name.into() })?;
        remember(&value);
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Remembers a secret value so that [`redact`] hides it (the shell stage's
/// `pass_env` values go through here too).
pub fn remember(value: &str) {
    if value.len() < MIN_REDACTED {
        return;
    }
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if !seen.iter().any(|v| v == value) {
        seen.push(value.to_string());
        // Longest first, so a secret that contains another is hidden whole.
        seen.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every remembered secret replaced by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if seen.is_empty() || !seen.iter().any(|v| text.contains(v.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for v in seen.iter() {
        out = out.replace(v.as_str(), "[redacted]");
    }
    Cow::Owned(out)
}

/// `text` (an error from a storage or database client) with the secrets a
/// URL can carry hidden: the password of `scheme://user:PASSWORD@host`, and
/// the values of query parameters whose names say secret, password, token,
/// signature, credential or key; then remembered secrets ([`redact`]).
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        rest = &rest[at + 3..];
        let end = rest
            .find(|c: char| {
                c == '/'
                    || c == '?'
                    || c == '#'
                    || c.is_whitespace()
                    || c == '`'
                    || c == '"'
                    || c == '\''
            })
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        match authority.rsplit_once('@') {
            Some((user, host)) if user.contains(':') => {
                let name = user.split(':').next().unwrap_or_default();
                out.push_str(&format!("{name}:***@{host}"));
            }
            _ => out.push_str(authority),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let secret_name = |k: &str| {
        let k = k.to_ascii_lowercase();
        [
            "secret",
            "password",
            "token",
            "signature",
            "credential",
            "key",
        ]
        .iter()
        .any(|w| k.contains(w))
    };
    let mut scrubbed = String::with_capacity(out.len());
    let mut rest = out.as_str();
    // `name=value` after `?` or `&`: hide the value of a secret-named one.
    while let Some(at) = rest.find(['?', '&']) {
        scrubbed.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let end = rest
            .find(|c: char| {
                c == '&' || c.is_whitespace() || c == '`' || c == '"' || c == '\'' || c == ')'
            })
            .unwrap_or(rest.len());
        match rest[..end].split_once('=') {
            Some((k, _)) if secret_name(k) => {
                scrubbed.push_str(k);
                scrubbed.push_str("=***");
            }
            _ => scrubbed.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    scrubbed.push_str(rest);
    redact(&scrubbed).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_are_remembered_and_redacted() {
        // SAFETY: this test owns variables with names no other test uses.
        unsafe {
            std::env::set_var("ENGINE_TEST_SECRET_A", "hunter2-secret");
        }
        let p = json!({
            "db": "postgres://u:${env:ENGINE_TEST_SECRET_A}@db/x",
            "list": ["${env:ENGINE_TEST_SECRET_A}", 3],
            "literal": "$${env:ENGINE_TEST_SECRET_A}",
            "plain": "no reference",
        });
        let r = resolve(&p).unwrap();
        assert_eq!(r["db"], "postgres://u:hunter2-secret@db/x");
        assert_eq!(r["list"], json!(["hunter2-secret", 3]));
        assert_eq!(r["literal"], "${env:ENGINE_TEST_SECRET_A}");
        assert_eq!(r["plain"], "no reference");
        assert_eq!(
            redact("connect postgres://u:hunter2-secret@db/x failed"),
            "connect postgres://u:[redacted]@db/x failed"
        );
    }

    #[test]
    fn a_missing_or_malformed_reference_is_an_error_naming_it() {
        let e = resolve(&json!({"a": "${env:ENGINE_TEST_NOT_SET_ANYWHERE}"})).unwrap_err();
        assert_eq!(
            e,
            EnvRefError::Unset {
                name: "ENGINE_TEST_NOT_SET_ANYWHERE".into()
            }
        );
        let e = e.to_string();
        assert!(
            e.contains("`${env:ENGINE_TEST_NOT_SET_ANYWHERE}`")
                && e.contains("export `ENGINE_TEST_NOT_SET_ANYWHERE`"),
            "{e}"
        );
        let e = resolve(&json!("x ${env:OPEN")).unwrap_err().to_string();
        assert!(
            e.contains("not closed") && e.contains("`x ${env:OPEN`"),
            "{e}"
        );
        let e = resolve(&json!("${env:a-b}")).unwrap_err().to_string();
        assert!(
            e.contains("does not name") && e.contains("`${env:a-b}`"),
            "{e}"
        );
    }

    #[test]
    fn urls_in_error_text_lose_their_secrets() {
        assert_eq!(
            scrub(
                "Unexpected (temporary) at read, context: { endpoint: http://minio:s3cr3tpw@10.0.0.1:9000/b?X-Amz-Signature=abc123&part=2 } => send failed"
            ),
            "Unexpected (temporary) at read, context: { endpoint: http://minio:***@10.0.0.1:9000/b?X-Amz-Signature=***&part=2 } => send failed"
        );
        assert_eq!(
            scrub("postgres://db/x?user=u&password=pw and s3://bucket/prefix"),
            "postgres://db/x?user=u&password=*** and s3://bucket/prefix"
        );
        assert_eq!(scrub("no url here"), "no url here");
    }

    #[test]
    fn short_values_are_not_redacted() {
        remember("abc");
        assert_eq!(redact("abc def"), "abc def");
    }
}
