//! An HTTP client for the tests that talk to the server as a browser would,
//! but without following redirects (tests assert them).

use reqwest::StatusCode;
use reqwest::redirect::Policy;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// GET `path`: its status and body.
pub async fn get(base: &str, path: &str) -> (StatusCode, String) {
    let r = client().get(format!("{base}{path}")).send().await.unwrap();
    let s = r.status();
    // minijinja escapes `/` in text and attributes; a browser reads it back.
    (s, r.text().await.unwrap().replace("&#x2f;", "/"))
}

/// GET `path` as JSON (`null` when the body is not JSON).
pub async fn get_json(base: &str, path: &str) -> serde_json::Value {
    client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or_default()
}
