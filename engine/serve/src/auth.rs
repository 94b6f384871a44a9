//! Who may do what: a token on every request when one is configured
//! (anything but loopback needs one), writes only with `--allow-write`,
//! each write a POST carrying the server's CSRF token from a same-origin
//! page, and headers that keep pages and artifact files apart.

use crate::Ctx;
use crate::error::ServeError;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

pub const COOKIE: &str = "engine_token";

/// Equal in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A random hex string from the system's generator, for CSRF tokens.
pub fn random_hex() -> String {
    let mut buf = [0u8; 32];
    let got = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok();
    if !got {
        // No /dev/urandom: time, pid and an address are still unguessable
        // enough across the network for a per-process token.
        let seed = format!(
            "{:?}{}{:p}",
            std::time::SystemTime::now(),
            std::process::id(),
            &buf
        );
        buf = *blake3::hash(seed.as_bytes()).as_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request's Origin (or Referer) must be this server: a form posted
/// from another site is refused even if it guessed everything else.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    match from {
        // No Origin (curl, tests with the token): the CSRF field decides.
        None => true,
        Some(o) => {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .unwrap_or("");
            rest.split('/').next() == Some(host)
        }
    }
}

/// Checks a write's CSRF field: called by every POST handler.
pub fn check_csrf(ctx: &Ctx, field: &str) -> Result<(), ServeError> {
    if same(field, &ctx.csrf) {
        Ok(())
    } else {
        Err(ServeError::Forbidden(
            "the form's CSRF token is missing or stale; reload the page and submit it again".into(),
        ))
    }
}

/// Every request: the token, then the write rules, then safe headers.
pub async fn guard(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let mut set_cookie = None;
    if let Some(token) = &ctx.token {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let from_cookie = cookie(req.headers(), COOKIE);
        let from_query = Query::<HashMap<String, String>>::try_from_uri(req.uri())
            .ok()
            .and_then(|q| q.0.get("token").cloned());
        let ok =
            bearer.is_some_and(|b| same(b, token)) || from_cookie.is_some_and(|c| same(c, token));
        if !ok {
            if from_query.as_deref().is_some_and(|q| same(q, token)) {
                set_cookie = Some(format!(
                    "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                ));
            } else {
                return ServeError::Unauthorized.into_response();
            }
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if req.method() != Method::POST {
            return ServeError::BadRequest(format!(
                "method {} is not used here: pages are GET, writes are POST",
                req.method()
            ))
            .into_response();
        }
        if !ctx.allow_write {
            return ServeError::Forbidden(
                "this server is read-only; start it with `engine serve --allow-write` to roll back refs or record review verdicts".into(),
            )
            .into_response();
        }
        if !same_origin(req.headers()) {
            return ServeError::Forbidden(
                "a write must come from this server's own pages (the Origin header names another site)".into(),
            )
            .into_response();
        }
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it Chromium sends `Origin: null` with a
    // form POST, and `same_origin` (rightly) refuses that, so no write form
    // worked from a real browser. `same-origin` still tells other sites
    // nothing.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key("content-security-policy") {
        // Pages: only this server's script and stylesheet, frames from
        // this server (artifact reports, themselves sandboxed).
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
            ),
        );
        h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
    }
    if let Some(c) = set_cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        h.append(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_eq!(random_hex().len(), 64);
        assert_ne!(random_hex(), random_hex());
    }

    #[test]
    fn another_origin_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
    }
}
