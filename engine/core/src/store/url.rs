//! Store URLs: `fs://DIR`, `memory://NAME`, `s3://BUCKET/PREFIX?endpoint=…&region=…`.

use crate::digest::Digest;
use opendal::Operator;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

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
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = url.strip_prefix("fs://") {
            if rest.is_empty() {
                return Err("`fs://` needs a folder, e.g. `fs://.engine/store`".into());
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
                return Err("`s3://` needs a bucket, e.g. `s3://my-bucket/engine`".into());
            }
            let mut params = vec![];
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("query part `{pair}` is not `key=value`"))?;
                if !["endpoint", "region"].contains(&k) {
                    return Err(format!(
                        "unknown s3 option `{k}`; known: `endpoint`, `region`"
                    ));
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
            return Err(format!(
                "unknown store scheme `{scheme}://`; use `fs://`, `memory://` or `s3://`"
            ));
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
                Operator::new(b).map_err(|e| e.to_string())
            }
        }
    }
}

/// A local store root. Writes go to a temporary file under `.tmp/` and are
/// renamed into place, so a reader never sees a partial file.
pub struct FsRoot {
    root: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
    /// Folders known to exist, to skip `create_dir_all` on every write.
    dirs: Mutex<std::collections::HashSet<PathBuf>>,
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
        Ok(FsRoot {
            root,
            tmp,
            counter: AtomicU64::new(0),
            dirs: Mutex::new(Default::default()),
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn tmp_name(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(
            format!(
                "{}-{:?}-{n}",
                std::process::id(),
                std::thread::current().id()
            )
            .replace(['(', ')'], ""),
        )
    }

    fn publish(&self, tmp: &Path, rel: &str) -> std::io::Result<()> {
        let dest = self.path(rel);
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
        std::fs::rename(tmp, dest)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.tmp_name();
        let res = std::fs::write(&tmp, bytes).and_then(|_| self.publish(&tmp, rel));
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Copies a local file in, hashing what it copies; returns that digest.
    pub fn copy_in(&self, src: &Path, rel: &str) -> std::io::Result<Digest> {
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
            out.flush()?;
            drop(out);
            self.publish(&tmp, rel)?;
            Ok(Digest::from_hasher(&hasher))
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}
