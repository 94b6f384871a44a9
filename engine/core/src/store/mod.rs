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
//!
//! Here: opening a store, its reads and writes, checks and manifests;
//! `manifest.rs` the stored types, `blobs.rs` file contents, `refs.rs`
//! named pointers, `list.rs` walking the store, `error.rs` its errors,
//! `url.rs` store URLs and the `fs://` backend, `files.rs` an artifact's
//! file list, `export.rs` copying an artifact out.

mod blobs;
mod error;
mod export;
mod files;
mod list;
mod manifest;
mod refs;
mod url;

pub use error::StoreError;
pub use files::Files;
pub use manifest::{ArtifactKind, BlobRef, Item, Manifest, collection_canonical};
pub use refs::{RefDoc, RefEvent, RefMove, check_ref_name, mover};
pub use url::{StoreUrl, StoreUrlError};

use crate::digest::Digest;
use opendal::{ErrorKind, Operator};
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;
use std::sync::Arc;

/// How closely an object already in the store is checked before it is
/// trusted: by size (a stat), or by hashing all of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    #[default]
    Size,
    Hash,
}

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
}
