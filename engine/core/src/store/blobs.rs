//! Blobs: file contents named by their blake3, written before any manifest
//! lists them, read back verified.

use super::{Backend, BlobRef, Store, StoreError};
use crate::digest::Digest;
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Files up to this size are hashed on the calling thread when they move
/// into the store (tens of microseconds at most); larger ones on the
/// blocking pool.
const INLINE_HASH_UP_TO: u64 = 64 << 10;

const CHUNK: usize = 1 << 20;

impl Store {
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
    pub(super) async fn read_verified(
        &self,
        path: &str,
        digest: &Digest,
    ) -> Result<Vec<u8>, StoreError> {
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
}
