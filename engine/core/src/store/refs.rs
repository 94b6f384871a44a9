//! Ref moves as compare-and-swap. A ref is one JSON document with its whole
//! history; a move reads it, appends an event and writes it back. Two moves
//! at once (twenty `engine ref set` from a CI matrix, two deploys) must not
//! lose one another's events, so the read-modify-write is guarded:
//!
//! - `fs://`: an exclusive lock file under `locks/refs/`, created with
//!   `O_EXCL`, held for the few milliseconds of the move and removed after.
//!   A lock older than [`LOCK_STALE`] is taken to belong to a process that
//!   died and is broken (renamed aside, then checked to be the one seen).
//! - `s3://`: a conditional PUT: `If-Match` with the ETag read, or
//!   `If-None-Match: *` for a new ref; a lost race answers 412 and the move
//!   is tried again on the new document. Moves from one process are also
//!   queued on a process-wide mutex, so they do not race each other at all.
//!   This is as safe as the server's conditional writes: AWS S3 checks the
//!   condition and writes atomically; `s3s-fs`, the test server, checks
//!   then writes, so two processes that PUT within the same millisecond
//!   can still both pass its check (seen: 13 of 20 moves kept when twenty
//!   moves raced without the process mutex).
//! - `memory://` lives in one process: the process-wide mutex alone.

use super::{Backend, RefDoc, RefEvent, RefMove, Store, StoreError, mover, now_rfc3339};
use crate::digest::Digest;
use opendal::ErrorKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// A lock this old is abandoned (a move takes milliseconds).
const LOCK_STALE: Duration = Duration::from_secs(30);
/// How long a move waits for a busy ref before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(90);

/// A short random pause, so movers that collided do not collide again.
async fn pause(round: u32) {
    let cap = 5u64 << round.min(4);
    let jitter = u64::from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % cap;
    tokio::time::sleep(Duration::from_millis(2 + jitter)).await;
}

/// The document with the move applied, and whether it changed: a move to
/// where the ref already points records nothing.
fn apply(doc: Option<RefDoc>, name: &str, digest: &Digest, why: &RefMove) -> (RefDoc, bool) {
    let mut doc = doc.unwrap_or_else(|| RefDoc {
        name: name.into(),
        history: vec![],
    });
    let previous = doc.current().cloned();
    if previous.as_ref() == Some(digest) {
        return (doc, false);
    }
    doc.history.push(RefEvent {
        digest: digest.clone(),
        at: now_rfc3339(),
        previous,
        note: why.note.clone(),
        by: Some(mover()),
        run: why.run.clone(),
        evaluation: why.evaluation.clone(),
    });
    (doc, true)
}

/// Held while a ref moves on `fs://`; removes its lock file when dropped,
/// if the file is still the one it created.
struct FsLock {
    file: std::path::PathBuf,
    token: String,
}

impl Drop for FsLock {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.file).is_ok_and(|t| t == self.token) {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

impl Store {
    /// Moves a ref, recording who, why, from which run and on which
    /// evaluation. A move to where the ref already points records nothing.
    /// Concurrent moves of one ref each land in its history.
    pub async fn move_ref(
        &self,
        name: &str,
        digest: &Digest,
        why: &RefMove,
    ) -> Result<RefDoc, StoreError> {
        let path = Self::ref_path(name)?;
        if !self.exists(&Self::manifest_path(digest)).await? {
            return Err(StoreError::NotFound {
                path: Self::manifest_path(digest),
                url: self.url.clone(),
            });
        }
        // A ref is durable when moved: what it points at must be too.
        self.flush().await?;
        match &self.backend {
            Backend::Fs(_) => {
                let _lock = self.lock_fs(name).await?;
                let (doc, changed) = apply(self.get_json(&path).await?, name, digest, why);
                if changed {
                    self.put_json(&path, &doc).await?;
                }
                Ok(doc)
            }
            Backend::Dal(op) if op.info().capability().write_with_if_match => {
                let lock = process_lock(&format!("{}/{path}", self.url));
                let _held = lock.lock().await;
                self.move_ref_cas(op, &path, name, digest, why).await
            }
            Backend::Dal(_) => {
                let lock = process_lock(&format!("{}/{path}", self.url));
                let _held = lock.lock().await;
                let (doc, changed) = apply(self.get_json(&path).await?, name, digest, why);
                if changed {
                    self.put_json(&path, &doc).await?;
                }
                Ok(doc)
            }
        }
    }

    async fn move_ref_cas(
        &self,
        op: &opendal::Operator,
        path: &str,
        name: &str,
        digest: &Digest,
        why: &RefMove,
    ) -> Result<RefDoc, StoreError> {
        let t0 = Instant::now();
        for round in 0.. {
            let (current, etag) = self.read_ref_versioned(op, path).await?;
            let (doc, changed) = apply(current, name, digest, why);
            if !changed {
                return Ok(doc);
            }
            if self.write_ref_if(op, path, &doc, etag.as_deref()).await? {
                return Ok(doc);
            }
            if t0.elapsed() > LOCK_WAIT {
                return Err(StoreError::Locked {
                    name: name.into(),
                    url: self.url.clone(),
                    lock: path.into(),
                    holder: "other movers that kept winning".into(),
                    waited: humantime::format_duration(Duration::from_secs(t0.elapsed().as_secs()))
                        .to_string(),
                });
            }
            pause(round).await;
        }
        unreachable!("the loop returns")
    }

    /// A ref document and the ETag it was read under (`None`, `None` when
    /// there is no ref yet). If the ref moves between the two requests, the
    /// conditional write made with this ETag fails and the move starts over.
    async fn read_ref_versioned(
        &self,
        op: &opendal::Operator,
        path: &str,
    ) -> Result<(Option<RefDoc>, Option<String>), StoreError> {
        let etag = match op.stat(path).await {
            Ok(m) => m.etag().map(str::to_string).ok_or_else(|| StoreError::Open {
                url: self.url.clone(),
                reason: format!(
                    "the server gave no ETag for `{path}`, so ref moves cannot be made safe; use a server that sends ETags (any S3)"
                ),
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((None, None)),
            Err(e) => return Err(self.io("check", path)(e)),
        };
        Ok((self.get_json::<RefDoc>(path).await?, Some(etag)))
    }

    /// Writes a ref document only if the stored one still has `etag` (or,
    /// with `None`, only if there is none yet); `Ok(false)` when another
    /// move got there first.
    async fn write_ref_if(
        &self,
        op: &opendal::Operator,
        path: &str,
        doc: &RefDoc,
        etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec_pretty(doc).expect("refs serialise");
        let write = op.write_with(path, bytes);
        let res = match etag {
            Some(t) => write.if_match(t).await,
            None => write.if_not_exists(true).await,
        };
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.io("write", path)(e)),
        }
    }

    /// Takes the lock file of a ref on `fs://`, waiting while another
    /// process holds it and breaking it when it is stale.
    async fn lock_fs(&self, name: &str) -> Result<FsLock, StoreError> {
        let Backend::Fs(fs) = &self.backend else {
            unreachable!("only fs stores take lock files")
        };
        let rel = format!("locks/refs/{name}.lock");
        let file = fs.path(&rel);
        let token = format!(
            "{} pid {} at {} ({})",
            mover(),
            std::process::id(),
            now_rfc3339(),
            unique()
        );
        let t0 = Instant::now();
        let mut round = 0;
        loop {
            match fs.create_new(&rel, token.as_bytes()) {
                Ok(true) => return Ok(FsLock { file, token }),
                Ok(false) => {}
                Err(e) => return Err(self.local_io("create lock", &rel, e)),
            }
            let seen = std::fs::read_to_string(&file).unwrap_or_default();
            let age = std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            if age.is_some_and(|a| a > LOCK_STALE) {
                break_stale(fs, &file, &seen);
                continue;
            }
            if t0.elapsed() > LOCK_WAIT {
                return Err(StoreError::Locked {
                    name: name.into(),
                    url: self.url.clone(),
                    lock: file.display().to_string(),
                    holder: if seen.is_empty() {
                        "another process".into()
                    } else {
                        format!("`{seen}`")
                    },
                    waited: humantime::format_duration(Duration::from_secs(t0.elapsed().as_secs()))
                        .to_string(),
                });
            }
            pause(round).await;
            round += 1;
        }
    }
}

/// Removes a stale lock, but only the one that was seen: it is renamed
/// aside first, and put back if it turns out to be a fresh lock another
/// process took in the meantime.
fn break_stale(fs: &super::url::FsRoot, file: &std::path::Path, seen: &str) {
    let aside = fs.path(&format!(".tmp/stale-lock-{}", unique()));
    if std::fs::rename(file, &aside).is_err() {
        return;
    }
    let got = std::fs::read_to_string(&aside).unwrap_or_default();
    if got != seen {
        let _ = std::fs::hard_link(&aside, file);
    }
    let _ = std::fs::remove_file(&aside);
}

/// A name no other call in any process on any host makes at the same time.
fn unique() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{host}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
}

/// One async mutex per ref of a store that lives in this process.
fn process_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.to_string())
        .or_default()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Manifest;

    /// The compare-and-swap itself, against the S3 server the tests use: a
    /// write made with the ETag of a document that has since moved is
    /// refused, and so is a second create of a new ref.
    #[tokio::test]
    async fn an_s3_ref_write_with_a_stale_etag_is_refused() {
        let Ok(endpoint) = std::env::var("ENGINE_TEST_S3_ENDPOINT") else {
            eprintln!("skipped: set ENGINE_TEST_S3_ENDPOINT to test s3://");
            return;
        };
        let bucket =
            std::env::var("ENGINE_TEST_S3_BUCKET").unwrap_or_else(|_| "engine-test".into());
        let url = format!(
            "s3://{bucket}/cas-{}-{}?endpoint={endpoint}",
            std::process::id(),
            unique()
        );
        let store = Store::open(&url, std::path::Path::new(".")).unwrap();
        let Backend::Dal(op) = &store.backend else {
            panic!("s3 goes through OpenDAL")
        };
        let a = store
            .put_manifest(&Manifest {
                meta: serde_json::json!(1),
                ..Default::default()
            })
            .await
            .unwrap();
        let b = store
            .put_manifest(&Manifest {
                meta: serde_json::json!(2),
                ..Default::default()
            })
            .await
            .unwrap();
        let path = "refs/r.json";
        let first = apply(None, "r", &a, &RefMove::default()).0;
        assert!(store.write_ref_if(op, path, &first, None).await.unwrap());
        assert!(
            !store.write_ref_if(op, path, &first, None).await.unwrap(),
            "a second create won"
        );
        let (doc, etag) = store.read_ref_versioned(op, path).await.unwrap();
        assert_eq!(doc.as_ref(), Some(&first));
        // Another mover gets in between our read and our write.
        store.set_ref("r", &b, "").await.unwrap();
        let stale = apply(doc, "r", &b, &RefMove::default()).0;
        assert!(
            !store
                .write_ref_if(op, path, &stale, etag.as_deref())
                .await
                .unwrap(),
            "a stale write won"
        );
        let (now, etag) = store.read_ref_versioned(op, path).await.unwrap();
        assert_eq!(now.unwrap().history.len(), 2);
        let next = apply(None, "r", &a, &RefMove::default()).0;
        assert!(
            store
                .write_ref_if(op, path, &next, etag.as_deref())
                .await
                .unwrap()
        );
    }
}
