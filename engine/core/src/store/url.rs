//! Store URLs: `fs://DIR`, `memory://NAME`, `s3://BUCKET/PREFIX?endpoint=…&region=…`.

use crate::digest::Digest;
use opendal::Operator;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Why a store URL does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    #[error("`fs://` needs a folder, e.g. `fs://.engine/store`")]
    FsWithoutFolder,
    #[error("`s3://` needs a bucket, e.g. `s3://my-bucket/engine`")]
    S3WithoutBucket,
    #[error("query part `{0}` is not `key=value`")]
    BadQuery(String),
    #[error("unknown s3 option `{0}`; known: `endpoint`, `region`")]
    UnknownS3Option(String),
    #[error("unknown store scheme `{0}://`; use `fs://`, `memory://` or `s3://`")]
    UnknownScheme(String),
}

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Fs(PathBuf),
    Memory(String),
    S3 {
        bucket: String,
        prefix: String,
        params: Vec<(String, String)>,
    },
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl, StoreUrlError> {
        if let Some(rest) = url.strip_prefix("fs://") {
            if rest.is_empty() {
                return Err(StoreUrlError::FsWithoutFolder);
            }
            return Ok(StoreUrl::Fs(PathBuf::from(rest)));
        }
        if let Some(rest) = url.strip_prefix("memory://") {
            return Ok(StoreUrl::Memory(rest.to_string()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            if bucket.is_empty() {
                return Err(StoreUrlError::S3WithoutBucket);
            }
            let mut params = vec![];
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| StoreUrlError::BadQuery(pair.to_string()))?;
                if !["endpoint", "region"].contains(&k) {
                    return Err(StoreUrlError::UnknownS3Option(k.to_string()));
                }
                params.push((k.to_string(), v.to_string()));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
                params,
            });
        }
        if url.contains("://") {
            let scheme = url.split("://").next().unwrap_or("");
            return Err(StoreUrlError::UnknownScheme(scheme.to_string()));
        }
        Ok(StoreUrl::Fs(PathBuf::from(url)))
    }

    /// The URL as records show it (fs paths made absolute elsewhere).
    pub fn display(&self) -> String {
        match self {
            StoreUrl::Fs(p) => format!("fs://{}", p.display()),
            StoreUrl::Memory(n) => format!("memory://{n}"),
            StoreUrl::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    pub fn operator(&self, base: &Path) -> Result<Operator, String> {
        match self {
            StoreUrl::Fs(p) => {
                let root = if p.is_absolute() {
                    p.clone()
                } else {
                    base.join(p)
                };
                std::fs::create_dir_all(&root)
                    .map_err(|e| format!("Failed to create folder `{}`: {e}", root.display()))?;
                let tmp = root.join(".tmp");
                std::fs::create_dir_all(&tmp)
                    .map_err(|e| format!("Failed to create folder `{}`: {e}", tmp.display()))?;
                let b = opendal::services::Fs::default()
                    .root(&root.to_string_lossy())
                    .atomic_write_dir(&tmp.to_string_lossy());
                Operator::new(b).map_err(|e| e.to_string())
            }
            StoreUrl::Memory(name) => {
                // One operator per name per process, so two opens share data.
                static MEM: OnceLock<Mutex<HashMap<String, Operator>>> = OnceLock::new();
                let mut map = MEM
                    .get_or_init(Default::default)
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some(op) = map.get(name) {
                    return Ok(op.clone());
                }
                let op = Operator::new(opendal::services::Memory::default())
                    .map_err(|e| e.to_string())?;
                map.insert(name.clone(), op.clone());
                Ok(op)
            }
            StoreUrl::S3 {
                bucket,
                prefix,
                params,
            } => {
                // The HTTP client OpenDAL's S3 service talks through.
                opendal::install_default();
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(pk, _)| pk == k)
                        .map(|(_, v)| v.clone())
                };
                let mut b = opendal::services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"));
                let endpoint = get("endpoint").or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                if let Some(e) = endpoint {
                    b = b.endpoint(&e);
                }
                let region = get("region")
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into());
                b = b.region(&region);
                if let (Ok(k), Ok(s)) = (
                    std::env::var("AWS_ACCESS_KEY_ID"),
                    std::env::var("AWS_SECRET_ACCESS_KEY"),
                ) {
                    b = b.access_key_id(&k).secret_access_key(&s);
                }
                // A 503 `SlowDown`, a reset connection or a timeout is worth
                // another try; OpenDAL marks those errors temporary and the
                // retry layer repeats only them (a 404 or 412 answers at once).
                Ok(Operator::new(b).map_err(|e| e.to_string())?.layer(
                    opendal::layers::RetryLayer::new()
                        .with_jitter()
                        .with_min_delay(std::time::Duration::from_millis(100))
                        .with_max_delay(std::time::Duration::from_secs(5))
                        .with_max_times(5),
                ))
            }
        }
    }
}

/// A local store root. Writes go to a temporary file under `.tmp/` that is
/// renamed into place, so a reader never sees a partial file and a killed
/// process leaves either the old state or the complete new object.
///
/// A durable write ([`FsRoot::write`]) also flushes the file (fsync) before
/// the rename and the folder after it, so a power cut cannot lose it
/// either. A deferred one ([`FsRoot::write_deferred`], [`FsRoot::copy_in`])
/// does not: content-addressed objects and cache entries are checked when
/// they are read (size, digest, a parse), so one damaged by a power cut is
/// a cache miss that the next write repairs, and [`FsRoot::flush`] makes
/// them all durable at once before anything durable (a ref, a run's final
/// record) points at them. Two fsyncs per object cost about 1.2 ms on this
/// project's machines against 0.06 ms for the write itself, and a task
/// writes five or six objects.
pub struct FsRoot {
    root: PathBuf,
    /// `root` held open (`O_PATH`): reads and stats resolve their paths
    /// from it, so the kernel walks `blobs/ab/cd…` rather than the whole
    /// path from `/` each time (a cache hit makes three such lookups; a
    /// 5,001-task no-op rerun spent a quarter of its workers' CPU in
    /// `openat` and `statx`, much of it walking paths).
    /// `None` where the folder cannot be opened so; then, and when the
    /// folder it holds was removed (perhaps made anew under the same
    /// name), the full path is used.
    dir: Option<std::fs::File>,
    tmp: PathBuf,
    /// Makes temporary names unique across hosts sharing one store (a
    /// Slurm cluster on a shared disk): host name, pid and 64 random bits.
    /// Pid, thread and counter alone collide between machines.
    salt: String,
    counter: AtomicU64,
    /// Folders known to exist, to skip `create_dir_all` on every write.
    dirs: Mutex<std::collections::HashSet<PathBuf>>,
    /// A deferred write was published since the last [`FsRoot::flush`]:
    /// a flush with none skips its `syncfs`, which also waits for every
    /// other dirty file on that file system (a no-op rerun wrote nothing
    /// deferred, and its flush took 0.2-4 ms on tmpfs).
    unflushed: std::sync::atomic::AtomicBool,
}

/// 64 random bits: from the kernel, else from std's per-process random
/// hasher keys mixed with the time.
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Flushes a folder's entries (a rename into it) to disk.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl FsRoot {
    pub fn open(p: &Path, base: &Path) -> Result<FsRoot, String> {
        let root = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        let tmp = root.join(".tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| format!("Failed to create folder `{}`: {e}", tmp.display()))?;
        let host: String = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        let dir = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(&root)
                .ok()
        };
        Ok(FsRoot {
            root,
            dir,
            tmp,
            salt: format!("{host}-{}-{:016x}", std::process::id(), random_u64()),
            counter: AtomicU64::new(0),
            dirs: Mutex::new(Default::default()),
            unflushed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The held root folder and `rel` as a C string, when `rel` can be
    /// resolved from it (a relative path without NUL bytes).
    fn at(&self, rel: &str) -> Option<(std::os::fd::RawFd, std::ffi::CString)> {
        use std::os::fd::AsRawFd;
        let dir = self.dir.as_ref()?;
        if rel.starts_with('/') {
            return None;
        }
        Some((dir.as_raw_fd(), std::ffi::CString::new(rel).ok()?))
    }

    /// Whether the root folder held open was removed since: then a path
    /// resolved from it finds nothing, and the full path is asked instead.
    fn root_gone(&self) -> bool {
        self.dir
            .as_ref()
            .and_then(|d| d.metadata().ok())
            .is_none_or(|m| std::os::unix::fs::MetadataExt::nlink(&m) == 0)
    }

    /// The contents of `rel`. A small file (a store document: a cache
    /// entry, a manifest) takes one read into a buffer on the stack and the
    /// read that finds its end, then one allocation of its size; a larger
    /// one is sized from its metadata, so a manifest of a million items is
    /// read into a buffer of its size, not one grown by doubling.
    pub fn read(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        const FIRST: usize = 8 << 10;
        let Some((dir, c)) = self.at(rel) else {
            return std::fs::read(self.path(rel));
        };
        // SAFETY: `c` is NUL-terminated and `dir` an open descriptor; the
        // descriptor returned is owned by the `File` made from it.
        let fd = unsafe { libc::openat(dir, c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::NotFound && self.root_gone() {
                return std::fs::read(self.path(rel));
            }
            return Err(e);
        }
        use std::os::fd::FromRawFd;
        // SAFETY: `fd` was just opened and nothing else owns it.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut first = [0u8; FIRST];
        let mut n = 0;
        while n < FIRST {
            match f.read(&mut first[n..]) {
                Ok(0) => return Ok(first[..n].to_vec()),
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let size = f.metadata()?.len() as usize;
        let mut buf = Vec::with_capacity(size.max(FIRST));
        buf.extend_from_slice(&first);
        f.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The size and last modification of `rel` (following symlinks).
    pub fn stat(&self, rel: &str) -> std::io::Result<(u64, Option<std::time::SystemTime>)> {
        let from_path = || std::fs::metadata(self.path(rel)).map(|m| (m.len(), m.modified().ok()));
        let Some((dir, c)) = self.at(rel) else {
            return from_path();
        };
        // SAFETY: fstatat writes only into `st`; `c` is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::NotFound && self.root_gone() {
                return from_path();
            }
            return Err(e);
        }
        let modified = u64::try_from(st.st_mtime).ok().map(|secs| {
            std::time::UNIX_EPOCH
                + std::time::Duration::new(secs, st.st_mtime_nsec.clamp(0, 999_999_999) as u32)
        });
        Ok((st.st_size.max(0) as u64, modified))
    }

    fn tmp_name(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}-{n}", self.salt))
    }

    fn ensure_parent(&self, dest: &Path) -> std::io::Result<()> {
        if let Some(parent) = dest.parent() {
            let known = self
                .dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(parent);
            if !known {
                std::fs::create_dir_all(parent)?;
                self.dirs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(parent.to_path_buf());
            }
        }
        Ok(())
    }

    /// Renames a complete, flushed temporary file into place and flushes
    /// the folder, so the new name survives a power cut.
    fn publish(&self, tmp: &Path, rel: &str) -> std::io::Result<()> {
        let dest = self.path(rel);
        self.ensure_parent(&dest)?;
        std::fs::rename(tmp, &dest)?;
        match dest.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }

    /// Moves a local file into the store's temporary folder and hashes it
    /// there: `Ok(None)` when it is on another file system (the caller
    /// copies it instead). Once moved, the engine holds the only name of
    /// it; the caller publishes it ([`FsRoot::publish_deferred`]) or drops
    /// it ([`FsRoot::discard`]).
    pub fn take_in(&self, src: &Path) -> std::io::Result<Option<(PathBuf, Digest, u64)>> {
        let tmp = self.tmp_name();
        match std::fs::rename(src, &tmp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Ok(None),
            Err(e) => return Err(e),
        }
        let hashed = (|| {
            let mut h = blake3::Hasher::new();
            let size = h.update_reader(std::fs::File::open(&tmp)?)?.count();
            Ok((Digest::from_hasher(&h), size as u64))
        })();
        match hashed {
            Ok((d, size)) => Ok(Some((tmp, d, size))),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Removes a temporary file [`FsRoot::take_in`] made.
    pub fn discard(&self, tmp: &Path) {
        let _ = std::fs::remove_file(tmp);
    }

    /// Renames a complete temporary file into place without flushing
    /// (a deferred write: see [`FsRoot::flush`]).
    pub fn publish_deferred(&self, tmp: &Path, rel: &str) -> std::io::Result<()> {
        let dest = self.path(rel);
        self.ensure_parent(&dest)?;
        std::fs::rename(tmp, &dest)?;
        self.unflushed.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes a temporary file, flushed when `durable`; the caller
    /// publishes it.
    fn write_tmp(&self, bytes: &[u8], durable: bool) -> std::io::Result<PathBuf> {
        let tmp = self.tmp_name();
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            if durable { f.sync_all() } else { Ok(()) }
        })();
        match res {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Writes `rel` durably: it survives a power cut once this returns.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.write_tmp(bytes, true)?;
        let res = self.publish(&tmp, rel);
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Writes `rel` atomically but durable only after the next
    /// [`FsRoot::flush`]; for objects that readers verify.
    pub fn write_deferred(&self, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.write_tmp(bytes, false)?;
        let res = self.publish_deferred(&tmp, rel);
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Whether a deferred write awaits a [`FsRoot::flush`].
    pub fn unflushed(&self) -> bool {
        self.unflushed.load(Ordering::Acquire)
    }

    /// Makes every deferred write so far durable: one `syncfs` of the file
    /// system holding the store (one flush of its journal, where an fsync
    /// per object paid one each). Nothing to do when no deferred write was
    /// published since the last flush.
    pub fn flush(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        if !self.unflushed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let synced = std::fs::File::open(&self.root).and_then(|dir| {
            // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
        if synced.is_err() {
            // Not durable: the next flush tries again.
            self.unflushed.store(true, Ordering::Release);
        }
        synced
    }

    /// Creates `rel` with these bytes only if nothing is there yet
    /// (`Ok(false)` when something is): an `O_EXCL` create, for lock files.
    pub fn create_new(&self, rel: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let dest = self.path(rel);
        self.ensure_parent(&dest)?;
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        f.write_all(bytes)?;
        Ok(true)
    }

    /// Copies a local file in under `rel`, hashing what it copies; the copy
    /// is published only when it hashes to `expected` (a file that changed
    /// since it was hashed never lands under a digest it does not have).
    /// Returns the digest of what was copied. The copy is a deferred write
    /// (a blob: its size and digest are checked where it is used).
    pub fn copy_in(&self, src: &Path, rel: &str, expected: &Digest) -> std::io::Result<Digest> {
        let tmp = self.tmp_name();
        let res = (|| {
            let mut input = std::fs::File::open(src)?;
            let mut out = std::fs::File::create(&tmp)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
            }
            drop(out);
            let got = Digest::from_hasher(&hasher);
            if &got == expected {
                self.publish_deferred(&tmp, rel)?;
            } else {
                std::fs::remove_file(&tmp)?;
            }
            Ok(got)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_differ_between_two_openers_of_one_store() {
        // Two hosts with the same pid writing through one shared folder
        // look, to the names, like two openers in one process and thread.
        let dir = tempfile::tempdir().unwrap();
        let a = FsRoot::open(Path::new("s"), dir.path()).unwrap();
        let b = FsRoot::open(Path::new("s"), dir.path()).unwrap();
        assert_ne!(a.tmp_name(), b.tmp_name());
    }

    #[test]
    fn a_copy_that_does_not_hash_to_its_digest_is_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::open(Path::new("s"), dir.path()).unwrap();
        let src = dir.path().join("in.txt");
        std::fs::write(&src, b"changed since it was hashed").unwrap();
        let claimed = Digest::of(b"what was hashed");
        let rel = "blobs/xx/claimed";
        let got = root.copy_in(&src, rel, &claimed).unwrap();
        assert_ne!(got, claimed);
        assert!(!root.path(rel).exists(), "a wrong copy was published");
        assert_eq!(
            std::fs::read_dir(dir.path().join("s/.tmp"))
                .unwrap()
                .count(),
            0
        );
        let right = Digest::of(b"changed since it was hashed");
        assert_eq!(root.copy_in(&src, rel, &right).unwrap(), right);
        assert!(root.path(rel).exists());
    }

    #[test]
    fn reads_and_stats_go_to_a_store_folder_made_anew_under_the_same_name() {
        // The root is held open; once that folder is removed and a new one
        // made, the new one is what a reader must see (a long-lived
        // `engine serve` beside a user who wiped the store).
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::open(Path::new("s"), dir.path()).unwrap();
        root.write("cache/tasks/ab/x.json", b"old").unwrap();
        assert_eq!(root.read("cache/tasks/ab/x.json").unwrap(), b"old");
        std::fs::remove_dir_all(dir.path().join("s")).unwrap();
        assert_eq!(
            root.read("cache/tasks/ab/x.json").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        std::fs::create_dir_all(dir.path().join("s/cache/tasks/ab")).unwrap();
        std::fs::write(dir.path().join("s/cache/tasks/ab/x.json"), b"new!").unwrap();
        assert_eq!(root.read("cache/tasks/ab/x.json").unwrap(), b"new!");
        assert_eq!(root.stat("cache/tasks/ab/x.json").unwrap().0, 4);
    }

    #[test]
    fn reads_return_every_byte_of_files_small_and_large() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::open(Path::new("s"), dir.path()).unwrap();
        for n in [0, 1, (8 << 10) - 1, 8 << 10, (8 << 10) + 1, 1 << 20] {
            let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            root.write("f", &bytes).unwrap();
            assert_eq!(root.read("f").unwrap(), bytes, "{n} bytes");
            assert_eq!(root.stat("f").unwrap().0, n as u64);
        }
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        assert!(root.stat("f").unwrap().1.is_some_and(|t| t > before));
        assert_eq!(
            root.stat("missing").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        // A folder is not a document.
        assert!(root.read(".tmp").is_err());
    }

    #[test]
    fn create_new_does_not_replace() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::open(Path::new("s"), dir.path()).unwrap();
        assert!(root.create_new("refs/x.lock", b"one").unwrap());
        assert!(!root.create_new("refs/x.lock", b"two").unwrap());
        assert_eq!(std::fs::read(root.path("refs/x.lock")).unwrap(), b"one");
    }
}
