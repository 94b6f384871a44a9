//! What can go wrong in the store; each error names the object and the
//! store (credentials scrubbed).

/// Store failures; each names the object and the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Failed to open store `{}`: {}", crate::secrets::scrub(.url), crate::secrets::scrub(.reason))]
    Open { url: String, reason: String },
    /// The backend's error is shown scrubbed: OpenDAL's messages carry
    /// endpoints, which may carry credentials.
    #[error("Failed to {op} `{path}` in store `{}`: {}", crate::secrets::scrub(.url), crate::secrets::scrub(&.source.to_string()))]
    Io {
        op: &'static str,
        path: String,
        url: String,
        #[source]
        source: Box<opendal::Error>,
    },
    #[error("Failed to {op} local file `{path}`: {source}")]
    Local {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` not found in store `{url}`")]
    NotFound { path: String, url: String },
    #[error(
        "`{path}` in store `{url}` is corrupt: its content hashes to `{actual}`, not `{expected}`; rerun with `engine run --verify` to rebuild it, or remove it with `engine fsck --repair` and rerun"
    )]
    Corrupt {
        path: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("Failed to decode `{path}` in store `{url}`: {reason}")]
    Decode {
        path: String,
        url: String,
        reason: String,
    },
    #[error(
        "`{path}` in store `{url}` is damaged: it has {actual} bytes, not {expected}; rerun the task that produced it (`engine fsck --repair` removes damaged objects)"
    )]
    WrongSize {
        path: String,
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid name `{name}`: {why}")]
    BadName { name: String, why: String },
    /// A manifest names a file outside its folder (`..`, an absolute path):
    /// the message of [`check_rel_path`].
    #[error("{0}")]
    UnsafePath(String),
    #[error(
        "Failed to lock ref `{name}` in store `{url}`: `{lock}` has been held by {holder} for {waited}; if no engine is moving this ref, delete `{lock}`"
    )]
    Locked {
        name: String,
        url: String,
        lock: String,
        holder: String,
        waited: String,
    },
}

impl StoreError {
    /// Whether the object is absent (as opposed to unreadable or damaged).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        e.to_string()
    }
}
