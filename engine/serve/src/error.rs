//! Every failure of a request, mapped to a status code in one place: what
//! went wrong and what to do, never a crash.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine_core::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A run, task, artifact, file or ref that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A malformed request: a bad digest, a path that leaves an artifact.
    #[error("{0}")]
    BadRequest(String),
    /// No token, or a wrong one, where the server needs one.
    #[error(
        "this server needs a token: send `Authorization: Bearer TOKEN`, or open any page once with `?token=TOKEN`"
    )]
    Unauthorized,
    /// A write refused: read-only server, or a missing CSRF token.
    #[error("{0}")]
    Forbidden(String),
    /// A write that lost to an earlier one: a video already reviewed.
    #[error("{0}")]
    Conflict(String),
    /// The review queue's catalog failed (SQL, connection).
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Failed to render page `{page}`: {reason}")]
    Render { page: String, reason: String },
}

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

impl ServeError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServeError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServeError::Conflict(_) | ServeError::Catalog(catalog::CatalogError::Conflict(_)) => {
                StatusCode::CONFLICT
            }
            ServeError::Store(e) if e.is_not_found() => StatusCode::NOT_FOUND,
            ServeError::Store(StoreError::BadName { .. }) => StatusCode::BAD_REQUEST,
            ServeError::Store(_) | ServeError::Catalog(_) | ServeError::Render { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut r = (
            status,
            [("content-type", "text/plain; charset=utf-8")],
            format!(
                "{} {}: {self}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}
