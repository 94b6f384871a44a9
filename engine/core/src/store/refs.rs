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

use super::{Backend, Store, StoreError, now_rfc3339};
use crate::digest::Digest;
use opendal::ErrorKind;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

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

/// Reading, listing, setting and removing refs, and resolving what a
/// user names (`name@alias`, a digest or its prefix).
impl Store {
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
