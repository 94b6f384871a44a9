//! The store: content-addressed blobs, artifact manifests, cache entries,
//! refs and run records, in any object store OpenDAL reaches.
//!
//! Layout under the store root:
//!
//! ```text
//! blobs/ab/abcdef…            file contents, named by blake3
//! artifacts/ab/abcdef….json   manifests, named by the digest of their JSON
//! cache/tasks/<fp>.json       task fingerprint -> output artifact digests
//! cache/items/<fp>.json       item fingerprint -> one output item
//! lineage/<digest>.json       which run and task first produced an artifact
//! refs/<name>.json            named pointers with history
//! runs/<run-id>.json          run records
//! runs/<run-id>/events/N.json  a running run's task changes since its record was last written whole
//! locks/refs/<name>.lock      who is moving a ref right now (fs only)
//! ```
//!
//! Blobs are written before the manifest that lists them, and every write
//! goes through a temporary file renamed into place (fs) or a single PUT
//! (s3), so a crash never leaves a manifest pointing at missing data. On
//! fs, objects that readers verify (blobs, manifests, cache entries,
//! lineage) are flushed to disk together by [`Store::flush`] before a ref
//! or a run's final record points at them; refs and records are flushed
//! as they are written (see [`url::FsRoot`] for why and what it saves).
//!
//! A write of a content-addressed object that finds one already there keeps
//! it only when it has the right size (and, for manifests and under
//! [`Verify::Hash`], the right hash): a truncated or damaged object is
//! replaced by the next write of the same content, never kept for good.
//! Such a write also makes the object young again (`Store::freshen`), so
//! `engine gc` ([`crate::gc`]), which deletes in the reverse of this order
//! and never deletes a young object, cannot take it from under the write.

mod export;
mod files;
mod refs;
mod url;

pub use files::Files;
pub use url::{StoreUrl, StoreUrlError};

use crate::digest::{Digest, canonical_json};
use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// A stored file: its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// Whether an artifact is a set of named files or a collection of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    #[default]
    Artifact,
    Collection,
}

/// One item of a collection: a key, its files and small metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub key: String,
    #[serde(default)]
    pub files: Files,
    #[serde(default)]
    pub meta: Value,
}

impl Item {
    /// The digest of the item's key, files and metadata: what per-item
    /// caching keys on.
    pub fn digest(&self) -> Digest {
        Digest::of(self.canonical().as_bytes())
    }

    /// The item's canonical JSON: what its digest hashes, and its text in
    /// a manifest.
    pub fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).expect("items serialise"))
    }
}

/// A collection manifest's canonical JSON from its items' canonical JSON
/// ([`Item::canonical`]), no files and no metadata: the bytes
/// [`Manifest::canonical`] writes for the same items.
pub fn collection_canonical<S: AsRef<str>>(items: &[S]) -> String {
    let len = items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>();
    let mut out = String::with_capacity(32 + len);
    out.push('{');
    push_items(&mut out, items.iter());
    out.push_str("\"kind\":\"collection\"}");
    out
}

/// `"items":[...],` when there are items.
fn push_items(out: &mut String, items: impl ExactSizeIterator<Item = impl AsRef<str>>) {
    if items.len() == 0 {
        return;
    }
    out.push_str("\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item.as_ref());
    }
    out.push_str("],");
}

/// An artifact: the manifest whose digest is the artifact's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub kind: ArtifactKind,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, BlobRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub meta: Value,
}

impl Manifest {
    pub fn digest(&self) -> Digest {
        Digest::of(self.canonical().as_bytes())
    }

    /// The manifest's canonical JSON, which its digest hashes and the store
    /// keeps: the bytes of `canonical_json` of the whole manifest, written
    /// item by item. The whole collection as one `Value` tree, plus the
    /// sorted copy `canonical_json` makes, took several KB an item: GBs
    /// for a million-item map stage.
    fn canonical(&self) -> String {
        let value =
            |v: Result<Value, serde_json::Error>| canonical_json(&v.expect("manifests serialise"));
        let mut out = String::from("{");
        // Top-level keys in sorted order, the empty ones skipped as
        // `Serialize` skips them: files, items, kind, meta.
        if !self.files.is_empty() {
            out.push_str("\"files\":");
            out.push_str(&value(serde_json::to_value(&self.files)));
            out.push(',');
        }
        push_items(&mut out, self.items.iter().map(Item::canonical));
        out.push_str("\"kind\":");
        out.push_str(&value(serde_json::to_value(self.kind)));
        if !self.meta.is_null() {
            out.push_str(",\"meta\":");
            out.push_str(&canonical_json(&self.meta));
        }
        out.push('}');
        out
    }

    /// Every blob the manifest lists: its files and its items' files.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        self.files
            .values()
            .chain(self.items.iter().flat_map(|i| i.files.values()))
    }
}

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

/// How closely an object already in the store is checked before it is
/// trusted: by size (a stat), or by hashing all of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    #[default]
    Size,
    Hash,
}

/// One pointer move in a ref's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefEvent {
    pub digest: Digest,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Who moved it (`user@host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The run that moved it (a `publish:` or deploy), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The evaluation artifact that justified the move (a deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Digest>,
}

/// Why a ref moves: recorded with the move.
#[derive(Debug, Clone, Default)]
pub struct RefMove {
    pub note: String,
    pub run: Option<String>,
    pub evaluation: Option<Digest>,
}

/// The login name of this process's user from the password database
/// (CI jobs and cron often run without `USER`).
fn login_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; the
    // name is copied out at once, on this thread.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// `user@host` of this process, for ref histories.
pub fn mover() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(login_name)
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }));
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

/// A named, mutable pointer to an artifact, with its history (newest last).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RefDoc {
    pub name: String,
    pub history: Vec<RefEvent>,
}

impl RefDoc {
    pub fn current(&self) -> Option<&Digest> {
        self.history.last().map(|e| &e.digest)
    }
}

/// Files up to this size are hashed on the calling thread when they move
/// into the store (tens of microseconds at most); larger ones on the
/// blocking pool.
const INLINE_HASH_UP_TO: u64 = 64 << 10;

const CHUNK: usize = 1 << 20;

/// How old an object that a write finds whole may be before the write
/// makes it young again on S3 (see `Store::freshen`); well under
/// `gc`'s default grace period.
pub const FRESHEN_AFTER: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// An object in a listing: its path from the store root, its size and when
/// it was last written (`None` when the store does not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
}

impl Listed {
    /// How long ago it was written; `None` when unknown or in the future
    /// (a clock ahead of this one).
    pub fn age(&self) -> Option<std::time::Duration> {
        std::time::SystemTime::now()
            .duration_since(self.modified?)
            .ok()
    }
}

/// A handle on one store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    url: String,
    /// The URL another machine uses to open this store (absolute for fs).
    worker_url: Option<String>,
    /// How a write checks an object already at its content address.
    existing: Verify,
}

/// `fs://` goes straight to the file system: through OpenDAL's fs service a
/// small read cost 0.6 ms against 0.007 ms for `std::fs::read` (measured by
/// `bench --bin store_ops`), which dominated cached reruns. Every other
/// scheme goes through OpenDAL.
#[derive(Clone)]
enum Backend {
    Dal(Operator),
    Fs(Arc<url::FsRoot>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

impl Store {
    /// Opens the store a URL names; relative `fs://` paths resolve from `base`.
    pub fn open(url: &str, base: &Path) -> Result<Store, StoreError> {
        let parsed = StoreUrl::parse(url).map_err(|e| StoreError::Open {
            url: url.into(),
            reason: e.to_string(),
        })?;
        let open = |reason| StoreError::Open {
            url: url.into(),
            reason,
        };
        let (backend, worker_url) = match &parsed {
            StoreUrl::Fs(p) => {
                let root = url::FsRoot::open(p, base).map_err(open)?;
                let abs = format!("fs://{}", root.path("").display());
                (
                    Backend::Fs(Arc::new(root)),
                    Some(abs.trim_end_matches('/').to_string()),
                )
            }
            StoreUrl::Memory(_) => (Backend::Dal(parsed.operator(base).map_err(open)?), None),
            StoreUrl::S3 { .. } => (
                Backend::Dal(parsed.operator(base).map_err(open)?),
                Some(url.to_string()),
            ),
        };
        Ok(Store {
            backend,
            url: parsed.display(),
            worker_url,
            existing: Verify::Size,
        })
    }

    /// A handle on the same store whose writes hash any object already at
    /// the address they write and replace it when its bytes do not match
    /// (`--force`, `--no-cache`, `--verify`: a rerun repairs what it writes).
    pub fn rewriting(&self) -> Store {
        Store {
            existing: Verify::Hash,
            ..self.clone()
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this store answers reads and stats at once, with no round
    /// trip to wait for (`fs://`): callers then check many objects one after
    /// another, where against a server they overlap the requests.
    pub fn answers_at_once(&self) -> bool {
        matches!(self.backend, Backend::Fs(_))
    }

    /// Whether this handle's writes replace mismatching objects ([`Store::rewriting`]).
    pub fn is_rewriting(&self) -> bool {
        self.existing == Verify::Hash
    }

    /// The URL a worker on another machine opens this store with; `None`
    /// for `memory://`, which lives in this process only.
    pub fn worker_url(&self) -> Option<&str> {
        self.worker_url.as_deref()
    }

    fn io(&self, op: &'static str, path: &str) -> impl FnOnce(opendal::Error) -> StoreError + '_ {
        let path = path.to_string();
        move |source| {
            if source.kind() == ErrorKind::NotFound {
                StoreError::NotFound {
                    path,
                    url: self.url.clone(),
                }
            } else {
                StoreError::Io {
                    op,
                    path,
                    url: self.url.clone(),
                    source: Box::new(source),
                }
            }
        }
    }

    pub fn blob_path(d: &Digest) -> String {
        format!("blobs/{}/{}", &d.as_str()[..2], d.as_str())
    }

    pub fn manifest_path(d: &Digest) -> String {
        format!("artifacts/{}/{}.json", &d.as_str()[..2], d.as_str())
    }

    fn local_io(&self, op: &'static str, path: &str, e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound {
                path: path.into(),
                url: self.url.clone(),
            }
        } else {
            StoreError::Local {
                op,
                path: format!("{}/{path}", self.url),
                source: e,
            }
        }
    }

    pub async fn exists(&self, path: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Dal(op) => Box::pin(op.exists(path))
                .await
                .map_err(self.io("check", path)),
            Backend::Fs(fs) => Ok(fs.path(path).exists()),
        }
    }

    /// Writes bytes under `path` in one step, as a deferred write: atomic,
    /// but on `fs://` durable against a power cut only after the next
    /// [`Store::flush`] (see [`url::FsRoot`]). For what readers verify:
    /// content-addressed objects, cache entries, lineage. Elsewhere the
    /// same as [`Store::write`] (an object store's PUT is durable when it
    /// returns).
    pub async fn write_deferred(&self, path: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Dal(_) => self.write(path, bytes).await,
            Backend::Fs(fs) => fs
                .write_deferred(path, &bytes)
                .map_err(|e| self.local_io("write", path, e)),
        }
    }

    /// Makes every deferred write so far durable. Called before anything
    /// durable points at deferred objects: a ref move, a run's final
    /// record, the end of a task run elsewhere (`engine task exec`).
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Dal(_) => Ok(()),
            // Not even a thread of the blocking pool for nothing to flush.
            Backend::Fs(fs) if !fs.unflushed() => Ok(()),
            Backend::Fs(fs) => {
                let fs = fs.clone();
                tokio::task::spawn_blocking(move || fs.flush())
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
                    .map_err(|e| self.local_io("flush", "", e))
            }
        }
    }

    /// Writes bytes under `path`, replacing what was there, in one step;
    /// durable once this returns.
    pub async fn write(&self, path: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Dal(op) => op
                .write(path, bytes)
                .await
                .map(|_| ())
                .map_err(self.io("write", path)),
            Backend::Fs(fs) => fs
                .write(path, &bytes)
                .map_err(|e| self.local_io("write", path, e)),
        }
    }

    /// The size of the object at `path`; `None` when there is none.
    pub async fn size_of(&self, path: &str) -> Result<Option<u64>, StoreError> {
        let res = match &self.backend {
            Backend::Dal(op) => Box::pin(op.stat(path))
                .await
                .map(|m| m.content_length())
                .map_err(self.io("check", path)),
            Backend::Fs(fs) => fs
                .stat(path)
                .map(|(len, _)| len)
                .map_err(|e| self.local_io("check", path, e)),
        };
        match res {
            Ok(n) => Ok(Some(n)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The blake3 of the object at `path`, read in chunks; `None` when
    /// there is none.
    pub async fn hash_of(&self, path: &str) -> Result<Option<Digest>, StoreError> {
        let res = match &self.backend {
            Backend::Dal(op) => Box::pin(op.read(path))
                .await
                .map(|b| Digest::of(&b.to_vec()))
                .map_err(self.io("read", path)),
            Backend::Fs(fs) => {
                let file = fs.path(path);
                tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
                    let mut h = blake3::Hasher::new();
                    h.update_reader(std::fs::File::open(&file)?)?;
                    Ok(Digest::from_hasher(&h))
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
                .map_err(|e| self.local_io("read", path, e))
            }
        };
        match res {
            Ok(d) => Ok(Some(d)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `path` holds the object with this digest and size, checked
    /// as closely as `how` says.
    async fn holds(
        &self,
        path: &str,
        digest: &Digest,
        size: u64,
        how: Verify,
    ) -> Result<bool, StoreError> {
        let Some(found) = self.stat(path).await? else {
            return Ok(false);
        };
        if found.size != size {
            return Ok(false);
        }
        if how == Verify::Hash && self.hash_of(path).await?.as_ref() != Some(digest) {
            return Ok(false);
        }
        Ok(self.freshen(path, &found))
    }

    /// Makes an object a write found whole young again, so that `gc` (which
    /// never deletes young objects, and looks again before it deletes) does
    /// not take it from under the write that counts on it. On `fs://` that
    /// is a touch; elsewhere an object older than [`FRESHEN_AFTER`] is
    /// reported as absent, so the caller writes it again (one PUT, only for
    /// content a run makes again after minutes). `false`: write it again.
    fn freshen(&self, path: &str, found: &Listed) -> bool {
        match &self.backend {
            Backend::Fs(fs) => std::fs::File::options()
                .write(true)
                .open(fs.path(path))
                .and_then(|f| f.set_modified(std::time::SystemTime::now()))
                .is_ok(),
            Backend::Dal(_) => found.age().is_none_or(|age| age < FRESHEN_AFTER),
        }
    }

    /// The size and last modification of the object at `path`; `None` when
    /// there is none.
    pub async fn stat(&self, path: &str) -> Result<Option<Listed>, StoreError> {
        let res = match &self.backend {
            Backend::Dal(op) => Box::pin(op.stat(path))
                .await
                .map(|m| Listed {
                    path: path.into(),
                    size: m.content_length(),
                    modified: m.last_modified().map(Into::into),
                })
                .map_err(self.io("check", path)),
            Backend::Fs(fs) => fs
                .stat(path)
                .map(|(size, modified)| Listed {
                    path: path.into(),
                    size,
                    modified,
                })
                .map_err(|e| self.local_io("check", path, e)),
        };
        match res {
            Ok(l) => Ok(Some(l)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What is wrong with a blob a manifest lists, if anything.
    pub async fn check_blob(&self, b: &BlobRef, how: Verify) -> Result<Option<String>, StoreError> {
        let path = Self::blob_path(&b.digest);
        match self.size_of(&path).await? {
            None => return Ok(Some(format!("blob `{path}` is missing"))),
            Some(n) if n != b.size => {
                return Ok(Some(format!("blob `{path}` has {n} bytes, not {}", b.size)));
            }
            Some(_) => {}
        }
        if how == Verify::Hash {
            match self.hash_of(&path).await? {
                Some(d) if d == b.digest => {}
                Some(d) => {
                    return Ok(Some(format!(
                        "blob `{path}` is corrupt: it hashes to `{d}`"
                    )));
                }
                None => return Ok(Some(format!("blob `{path}` is missing"))),
            }
        }
        Ok(None)
    }

    /// Reads an artifact's manifest and checks the blobs it lists: `Ok(Ok)`
    /// when it is whole, `Ok(Err(why))` when it is missing or damaged, `Err`
    /// when the store cannot answer.
    pub async fn check_artifact(
        &self,
        d: &Digest,
        how: Verify,
    ) -> Result<Result<Manifest, String>, StoreError> {
        let m = match self.get_manifest(d).await {
            Ok(m) => m,
            Err(StoreError::NotFound { path, .. }) => {
                return Ok(Err(format!("manifest `{path}` is missing")));
            }
            Err(e @ (StoreError::Corrupt { .. } | StoreError::Decode { .. })) => {
                return Ok(Err(e.to_string()));
            }
            Err(e) => return Err(e),
        };
        if let Some(why) = self.check_blobs(m.blobs(), how).await? {
            return Ok(Err(why));
        }
        Ok(Ok(m))
    }

    /// The first problem among these blobs, checked a few at a time (one
    /// stat each: a HEAD request on S3).
    pub async fn check_blobs<'a>(
        &self,
        blobs: impl Iterator<Item = &'a BlobRef>,
        how: Verify,
    ) -> Result<Option<String>, StoreError> {
        use futures::StreamExt;
        // A local file system answers a stat at once: checking sizes one
        // blob after another spares each cached task (most have one blob)
        // the stream that overlaps an object store's round trips. Hashing
        // (`--verify`) still runs a few at a time.
        if matches!(self.backend, Backend::Fs(_)) && how == Verify::Size {
            for b in blobs {
                if let Some(why) = self.check_blob(b, how).await? {
                    return Ok(Some(why));
                }
            }
            return Ok(None);
        }
        let blobs: Vec<BlobRef> = blobs.cloned().collect();
        let mut checks = futures::stream::iter(blobs)
            .map(|b| async move { self.check_blob(&b, how).await })
            .buffer_unordered(16);
        while let Some(r) = checks.next().await {
            if let Some(why) = r? {
                return Ok(Some(why));
            }
        }
        Ok(None)
    }

    /// Removes an object; removing one that is not there is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Dal(op) => Box::pin(op.delete(path))
                .await
                .map_err(self.io("delete", path)),
            Backend::Fs(fs) => match std::fs::remove_file(fs.path(path)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.local_io("delete", path, e)),
            },
        }
    }

    /// Reads an object whole.
    ///
    /// OpenDAL's futures are boxed here, in the other requests a cache
    /// lookup makes (`stat`, `size_of`, `hash_of`) and in `exists` and
    /// `delete`: inline, a read's 1.4 KB of state was in the future of
    /// every lookup, on `fs://` too, and so in every cached task's
    /// (bench/README, "Cache hits decided in batches"). One allocation per
    /// request to a server costs nothing beside its round trip.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, StoreError> {
        match &self.backend {
            Backend::Dal(op) => Ok(Box::pin(op.read(path))
                .await
                .map_err(self.io("read", path))?
                .to_vec()),
            Backend::Fs(fs) => fs.read(path).map_err(|e| self.local_io("read", path, e)),
        }
    }

    /// Stores bytes as a blob (a no-op when the blob is there whole).
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobRef, StoreError> {
        let digest = Digest::of(&bytes);
        let size = bytes.len() as u64;
        let path = Self::blob_path(&digest);
        if !self.holds(&path, &digest, size, self.existing).await? {
            self.write_deferred(&path, bytes).await?;
        }
        Ok(BlobRef { digest, size })
    }

    /// Stores a local file as a blob by moving it in (the file is gone
    /// afterwards): on an `fs://` store on the same file system that is a
    /// rename, with no copy and no second file made and deleted; elsewhere
    /// a copy ([`Store::put_blob_file`]) and the file removed. For files a
    /// finished task left in its scratch folder, which nothing writes any
    /// more.
    pub async fn put_blob_file_moving(&self, file: &Path) -> Result<BlobRef, StoreError> {
        let local = |op, source| StoreError::Local {
            op,
            path: file.display().to_string(),
            source,
        };
        let Backend::Fs(fs) = &self.backend else {
            let b = self.put_blob_file(file).await?;
            let _ = tokio::fs::remove_file(file).await;
            return Ok(b);
        };
        // A small file is hashed here: handing it to the blocking pool
        // costs two thread switches, more than the hashing (seen in
        // profiles of many small tasks).
        let small = std::fs::symlink_metadata(file).is_ok_and(|m| m.len() <= INLINE_HASH_UP_TO);
        let taken = if small {
            fs.take_in(file).map_err(|e| local("move", e))?
        } else {
            let (fs, src) = (fs.clone(), file.to_path_buf());
            tokio::task::spawn_blocking(move || fs.take_in(&src))
                .await
                .map_err(|e| local("move", std::io::Error::other(e.to_string())))?
                .map_err(|e| local("move", e))?
        };
        let Some((tmp, digest, size)) = taken else {
            let b = self.put_blob_file(file).await?;
            let _ = tokio::fs::remove_file(file).await;
            return Ok(b);
        };
        let path = Self::blob_path(&digest);
        let res = match self.holds(&path, &digest, size, self.existing).await {
            Ok(true) => {
                fs.discard(&tmp);
                Ok(())
            }
            Ok(false) => fs
                .publish_deferred(&tmp, &path)
                .map_err(|e| self.local_io("write", &path, e)),
            Err(e) => Err(e),
        };
        if res.is_err() {
            fs.discard(&tmp);
        }
        res.map(|()| BlobRef { digest, size })
    }

    /// Stores a local file as a blob, streaming: memory stays bounded by
    /// the chunk size whatever the file's size.
    pub async fn put_blob_file(&self, file: &Path) -> Result<BlobRef, StoreError> {
        let local = |op, source| StoreError::Local {
            op,
            path: file.display().to_string(),
            source,
        };
        let mut hasher = blake3::Hasher::new();
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| local("open", e))?;
        let mut buf = vec![0u8; CHUNK];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).await.map_err(|e| local("read", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let digest = Digest::from_hasher(&hasher);
        let path = Self::blob_path(&digest);
        if self.holds(&path, &digest, size, self.existing).await? {
            return Ok(BlobRef { digest, size });
        }
        let op = match &self.backend {
            Backend::Dal(op) => op,
            Backend::Fs(fs) => {
                let (fs, src, dest, want) =
                    (fs.clone(), file.to_path_buf(), path.clone(), digest.clone());
                let check = tokio::task::spawn_blocking(move || fs.copy_in(&src, &dest, &want))
                    .await
                    .map_err(|e| local("copy", std::io::Error::other(e.to_string())))?
                    .map_err(|e| local("copy", e))?;
                if check != digest {
                    return Err(local(
                        "read",
                        std::io::Error::other("file changed while it was stored"),
                    ));
                }
                return Ok(BlobRef { digest, size });
            }
        };
        if size as usize <= CHUNK {
            let bytes = tokio::fs::read(file).await.map_err(|e| local("read", e))?;
            if Digest::of(&bytes) != digest {
                return Err(local(
                    "read",
                    std::io::Error::other("file changed while it was stored"),
                ));
            }
            self.write(&path, bytes).await?;
            return Ok(BlobRef { digest, size });
        }
        let mut w = op.writer(&path).await.map_err(self.io("write", &path))?;
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| local("open", e))?;
        let mut check = blake3::Hasher::new();
        loop {
            let n = f.read(&mut buf).await.map_err(|e| local("read", e))?;
            if n == 0 {
                break;
            }
            check.update(&buf[..n]);
            w.write(buf[..n].to_vec())
                .await
                .map_err(self.io("write", &path))?;
        }
        if Digest::from_hasher(&check) != digest {
            let _ = w.abort().await;
            return Err(local(
                "read",
                std::io::Error::other("file changed while it was stored"),
            ));
        }
        w.close().await.map_err(self.io("write", &path))?;
        Ok(BlobRef { digest, size })
    }

    /// Reads a content-addressed object; an error names it when its bytes
    /// do not hash to the digest it is stored under.
    async fn read_verified(&self, path: &str, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let bytes = self.read(path).await?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::Corrupt {
                path: path.to_string(),
                url: self.url.clone(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Reads a blob and checks its digest.
    pub async fn get_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        self.read_verified(&Self::blob_path(digest), digest).await
    }

    /// Copies a blob to a local file, verifying it; the file appears under
    /// its name only once complete and verified.
    pub async fn get_blob_to_file(&self, digest: &Digest, dest: &Path) -> Result<(), StoreError> {
        let bytes = self.get_blob(digest).await?;
        let local = |op, source| StoreError::Local {
            op,
            path: dest.display().to_string(),
            source,
        };
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| local("create folder for", e))?;
        }
        let tmp = dest.with_extension("engine-partial");
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|e| local("write", e))?;
        tokio::fs::rename(&tmp, dest)
            .await
            .map_err(|e| local("rename", e))?;
        Ok(())
    }

    /// Publishes a manifest after checking that every blob it lists is
    /// there with its size. A manifest already there is kept only when its
    /// bytes hash to its name (manifests are small; a damaged one must not
    /// survive the rerun that rewrites it).
    pub async fn put_manifest(&self, m: &Manifest) -> Result<Digest, StoreError> {
        let text = m.canonical();
        if let Some(d) = self.manifest_held(&text).await? {
            return Ok(d);
        }
        self.check_listed(m.blobs()).await?;
        self.write_manifest(text).await
    }

    /// Publishes a collection manifest given as its canonical text
    /// ([`collection_canonical`]): a map stage's results, which it keeps as
    /// text and whose blobs it checked with [`Store::check_listed`] as each
    /// item finished.
    pub async fn put_manifest_text(&self, text: String) -> Result<Digest, StoreError> {
        if let Some(d) = self.manifest_held(&text).await? {
            return Ok(d);
        }
        self.write_manifest(text).await
    }

    /// The digest of a manifest already stored with these bytes.
    async fn manifest_held(&self, text: &str) -> Result<Option<Digest>, StoreError> {
        let digest = Digest::of(text.as_bytes());
        let path = Self::manifest_path(&digest);
        let held = self
            .holds(&path, &digest, text.len() as u64, Verify::Hash)
            .await?;
        Ok(held.then_some(digest))
    }

    async fn write_manifest(&self, text: String) -> Result<Digest, StoreError> {
        let digest = Digest::of(text.as_bytes());
        self.write_deferred(&Self::manifest_path(&digest), text.into_bytes())
            .await?;
        Ok(digest)
    }

    /// Checks that every blob a manifest will list is stored with its
    /// size: the error names the first that is not.
    pub async fn check_listed<'a>(
        &self,
        blobs: impl Iterator<Item = &'a BlobRef>,
    ) -> Result<(), StoreError> {
        for b in blobs {
            let bp = Self::blob_path(&b.digest);
            match self.size_of(&bp).await? {
                None => {
                    return Err(StoreError::NotFound {
                        path: bp,
                        url: self.url.clone(),
                    });
                }
                Some(n) if n != b.size => {
                    return Err(StoreError::WrongSize {
                        path: bp,
                        url: self.url.clone(),
                        expected: b.size,
                        actual: n,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Reads a manifest and checks its digest.
    pub async fn get_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        let path = Self::manifest_path(digest);
        let bytes = self.read_verified(&path, digest).await?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Decode {
            path,
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }

    pub async fn put_json<T: Serialize>(&self, path: &str, v: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(v).expect("store documents serialise");
        self.write(path, bytes).await
    }

    /// [`Store::put_json`] as a deferred write (see [`Store::write_deferred`]):
    /// for documents a reader that finds them damaged can do without (a
    /// cache entry is then a miss, a lineage note is written again).
    pub async fn put_json_deferred<T: Serialize>(
        &self,
        path: &str,
        v: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(v).expect("store documents serialise");
        self.write_deferred(path, bytes).await
    }

    /// Reads a JSON document; `Ok(None)` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, StoreError> {
        match self.read(path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Decode {
                    path: path.into(),
                    url: self.url.clone(),
                    reason: e.to_string(),
                }),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names of the entries directly under a folder (files and folders).
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let dir = if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        };
        let op = match &self.backend {
            Backend::Dal(op) => op,
            Backend::Fs(fs) => {
                return match std::fs::read_dir(fs.path(&dir)) {
                    Ok(rd) => Ok(rd
                        .filter_map(|e| {
                            e.ok().map(|e| e.file_name().to_string_lossy().into_owned())
                        })
                        .collect()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                    Err(e) => Err(self.local_io("list", &dir, e)),
                };
            }
        };
        match op.list(&dir).await {
            Ok(entries) => Ok(entries
                .into_iter()
                .map(|e| {
                    e.path()
                        .trim_start_matches(&dir)
                        .trim_end_matches('/')
                        .to_string()
                })
                .filter(|n| !n.is_empty())
                .collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(self.io("list", &dir)(e)),
        }
    }

    /// Paths (from the store root) of every file under a folder, at any
    /// depth; none when the folder does not exist.
    pub async fn list_all(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .walk(dir, false)
            .await?
            .into_iter()
            .map(|l| l.path)
            .collect())
    }

    /// Every file under a folder, at any depth, with its size and last
    /// modification (from the listing on S3; one stat per file on fs).
    pub async fn list_all_with_meta(&self, dir: &str) -> Result<Vec<Listed>, StoreError> {
        self.walk(dir, true).await
    }

    async fn walk(&self, dir: &str, meta: bool) -> Result<Vec<Listed>, StoreError> {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        let op = match &self.backend {
            Backend::Dal(op) => op,
            Backend::Fs(fs) => {
                let mut out = vec![];
                let mut todo = vec![dir.clone()];
                while let Some(d) = todo.pop() {
                    let rd = match std::fs::read_dir(fs.path(&d)) {
                        Ok(rd) => rd,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(self.local_io("list", &d, e)),
                    };
                    for e in rd {
                        let e = e.map_err(|e| self.local_io("list", &d, e))?;
                        let name = format!("{d}{}", e.file_name().to_string_lossy());
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            todo.push(format!("{name}/"));
                            continue;
                        }
                        let mut l = Listed {
                            path: name,
                            size: 0,
                            modified: None,
                        };
                        if meta {
                            match e.metadata() {
                                Ok(m) => {
                                    l.size = m.len();
                                    l.modified = m.modified().ok();
                                }
                                // Gone since the listing: not there.
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                                Err(e) => return Err(self.local_io("check", &l.path, e)),
                            }
                        }
                        out.push(l);
                    }
                }
                out.sort_by(|a, b| a.path.cmp(&b.path));
                return Ok(out);
            }
        };
        let entries = match op.list_with(&dir).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.io("list", &dir)(e)),
        };
        let mut out = vec![];
        for e in entries {
            let path = e.path().trim_start_matches('/').to_string();
            if path.ends_with('/') {
                continue;
            }
            let m = e.metadata();
            let mut l = Listed {
                path,
                size: m.content_length(),
                modified: m.last_modified().map(Into::into),
            };
            // A listing without times (not S3's) asks each object.
            if meta && l.modified.is_none() {
                match self.stat(&l.path).await? {
                    Some(found) => l = found,
                    None => continue,
                }
            }
            out.push(l);
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    // ---- refs ----

    fn ref_path(name: &str) -> Result<String, StoreError> {
        check_ref_name(name)?;
        Ok(format!("refs/{name}.json"))
    }

    /// Removes a ref and its history (the artifacts stay until `engine gc`);
    /// false when there was no such ref.
    pub async fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        let path = Self::ref_path(name)?;
        if !self.exists(&path).await? {
            return Ok(false);
        }
        self.delete(&path).await?;
        Ok(true)
    }

    pub async fn get_ref(&self, name: &str) -> Result<Option<RefDoc>, StoreError> {
        self.get_json(&Self::ref_path(name)?).await
    }

    /// Every ref under `prefix` (all when `None`), by the name users type
    /// (`models/x@production`: the last `/` of the stored name becomes
    /// `@`), sorted by name.
    pub async fn list_refs(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<(String, RefDoc)>, StoreError> {
        let root = match prefix {
            Some(p) => format!("refs/{}", p.replace('@', "/").trim_matches('/')),
            None => "refs".to_string(),
        };
        let mut out = vec![];
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in self.list(&dir).await? {
                let path = format!("{dir}/{entry}");
                match path.strip_suffix(".json") {
                    Some(stem) => {
                        let stored = stem.trim_start_matches("refs/");
                        let name = match stored.rsplit_once('/') {
                            Some((a, b)) => format!("{a}@{b}"),
                            None => stored.to_string(),
                        };
                        if let Some(doc) = self.get_ref(stored).await? {
                            out.push((name, doc));
                        }
                    }
                    None => dirs.push(path),
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Moves a ref to an artifact that exists, recording the move.
    pub async fn set_ref(
        &self,
        name: &str,
        digest: &Digest,
        note: &str,
    ) -> Result<RefDoc, StoreError> {
        let why = RefMove {
            note: note.into(),
            ..Default::default()
        };
        self.move_ref(name, digest, &why).await
    }

    /// Resolves `name@alias` or a plain ref name, or a digest (full or a
    /// unique prefix of at least 8 characters among manifests).
    pub async fn resolve(&self, what: &str) -> Result<Digest, StoreError> {
        if let Some(d) = Digest::parse(what) {
            return Ok(d);
        }
        let name = what.replace('@', "/");
        if check_ref_name(&name).is_ok()
            && let Some(doc) = self.get_ref(&name).await?
            && let Some(d) = doc.current()
        {
            return Ok(d.clone());
        }
        if what.len() >= 8 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<String> = self
                .list(&format!("artifacts/{}", &what[..2]))
                .await?
                .into_iter()
                .filter(|n| n.starts_with(what))
                .collect();
            if matches.len() == 1
                && let Some(d) = Digest::parse(matches[0].trim_end_matches(".json"))
            {
                return Ok(d);
            }
        }
        Err(StoreError::NotFound {
            path: what.into(),
            url: self.url.clone(),
        })
    }
}

/// Ref names: `a-z A-Z 0-9 . _ - /` and `@`, no empty segment, no `..`.
pub fn check_ref_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::BadName {
            name: name.into(),
            why: why.into(),
        })
    };
    if name.is_empty() || name.len() > 200 {
        return bad("a ref name has 1 to 200 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
    {
        return bad("use letters, digits, `.`, `_`, `-` and `/` (and `@` before an alias)");
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("no empty, `.` or `..` path segment");
    }
    Ok(())
}

/// A file name inside an artifact that could point outside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    #[error("an output name cannot be empty")]
    Empty,
    #[error("`{0}` is an absolute path; outputs are named by relative paths")]
    Absolute(String),
    #[error("`{0}` contains `..`; outputs must stay inside the task's folder")]
    Escapes(String),
}

impl From<RelPathError> for String {
    fn from(e: RelPathError) -> String {
        e.to_string()
    }
}

/// A relative path for a file inside an artifact: no `..`, not absolute.
pub fn check_rel_path(name: &str) -> Result<(), RelPathError> {
    if name.is_empty() {
        return Err(RelPathError::Empty);
    }
    if name.starts_with('/') || name.starts_with('\\') || name.contains('\0') {
        return Err(RelPathError::Absolute(name.into()));
    }
    if name.split(['/', '\\']).any(|s| s == "..") {
        return Err(RelPathError::Escapes(name.into()));
    }
    Ok(())
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_moved_file_becomes_one_blob_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("fs://s", dir.path()).unwrap();
        let tmp_left = || {
            std::fs::read_dir(dir.path().join("s/.tmp"))
                .unwrap()
                .count()
        };
        let f = dir.path().join("out.txt");
        std::fs::write(&f, b"hello").unwrap();
        let b = store.put_blob_file_moving(&f).await.unwrap();
        assert!(!f.exists(), "the file was not moved");
        assert_eq!((b.digest.clone(), b.size), (Digest::of(b"hello"), 5));
        assert_eq!(store.get_blob(&b.digest).await.unwrap(), b"hello");
        // The same content again: the blob is kept, the second copy dropped.
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(store.put_blob_file_moving(&f).await.unwrap(), b);
        assert!(!f.exists());
        assert_eq!(tmp_left(), 0);
        // A truncated blob is replaced by the next move of its content.
        std::fs::write(dir.path().join("s").join(Store::blob_path(&b.digest)), b"").unwrap();
        std::fs::write(&f, b"hello").unwrap();
        store.put_blob_file_moving(&f).await.unwrap();
        assert_eq!(store.get_blob(&b.digest).await.unwrap(), b"hello");
        // A missing file is an error that names it.
        let e = store
            .put_blob_file_moving(&f)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("out.txt"), "{e}");
        assert_eq!(tmp_left(), 0);
    }

    #[tokio::test]
    async fn a_file_on_another_file_system_is_copied_in_and_removed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm here: nothing to test");
            return;
        };
        let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
        if dev(dir.path()) == dev(other.path()) {
            eprintln!(
                "/dev/shm is on the same file system as the temporary folder: nothing to test"
            );
            return;
        }
        let store = Store::open("fs://s", dir.path()).unwrap();
        let f = other.path().join("out.bin");
        std::fs::write(&f, vec![7u8; 3000]).unwrap();
        let b = store.put_blob_file_moving(&f).await.unwrap();
        assert!(!f.exists());
        assert_eq!(store.get_blob(&b.digest).await.unwrap(), vec![7u8; 3000]);
    }
    #[test]
    fn a_manifest_written_item_by_item_has_the_bytes_of_the_whole_tree() {
        let whole = |m: &Manifest| canonical_json(&serde_json::to_value(m).unwrap());
        let blob = |s: &str| BlobRef {
            digest: Digest::of(s.as_bytes()),
            size: s.len() as u64,
        };
        let item = |key: &str, meta: Value| Item {
            key: key.into(),
            files: [
                ("b.txt".to_string(), blob(key)),
                ("a \"q\"/ä".to_string(), blob("a")),
            ]
            .into_iter()
            .collect(),
            meta,
        };
        let mut files = BTreeMap::new();
        files.insert("z.json".to_string(), blob("z"));
        files.insert("model.json".to_string(), blob("m"));
        let cases = [
            Manifest::default(),
            Manifest {
                kind: ArtifactKind::Collection,
                ..Default::default()
            },
            Manifest {
                files: files.clone(),
                meta: serde_json::json!({"z": 1, "a": {"y": [1, {"c": 2, "b": null}], "x": "é"}}),
                ..Default::default()
            },
            Manifest {
                kind: ArtifactKind::Collection,
                items: vec![
                    item("k1", Value::Null),
                    item("k0", serde_json::json!({"w": 2.5, "v": [true]})),
                    Item {
                        key: "bare".into(),
                        files: Files::new(),
                        meta: Value::Null,
                    },
                ],
                meta: serde_json::json!({"count": 3}),
                files,
            },
        ];
        let texts: Vec<String> = cases[3].items.iter().map(Item::canonical).collect();
        let bare = Manifest {
            kind: ArtifactKind::Collection,
            items: cases[3].items.clone(),
            ..Default::default()
        };
        assert_eq!(collection_canonical(&texts), whole(&bare));
        assert_eq!(collection_canonical::<String>(&[]), whole(&cases[1]));
        for m in &cases {
            assert_eq!(m.canonical(), whole(m));
            assert_eq!(m.digest(), Digest::of(whole(m).as_bytes()));
            let back: Manifest = serde_json::from_str(&m.canonical()).unwrap();
            assert_eq!(&back, m);
        }
    }
}
