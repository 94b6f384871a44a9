//! What a pipeline item needs to point at a catalogued video without
//! copying it: a safe item key and a cheap content identity.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Files up to this size are hashed; larger ones are identified by size and mtime.
pub const HASH_LIMIT: u64 = 64 << 20;

/// Changes when the file's bytes change (for files over [`HASH_LIMIT`]:
/// when its size or modification time changes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentIdentity {
    pub size: u64,
    /// blake3 of the bytes, for files up to [`HASH_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Modification time in nanoseconds since the Unix epoch, for larger files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u128>,
}

/// Reads (or, for large files, stats) `path`. Blocking.
pub fn content_identity(path: &Path) -> std::io::Result<ContentIdentity> {
    let meta = std::fs::metadata(path)?;
    let size = meta.len();
    if size <= HASH_LIMIT {
        let mut hasher = blake3::Hasher::new();
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        return Ok(ContentIdentity {
            size,
            blake3: Some(hasher.finalize().to_hex().to_string()),
            mtime_ns: None,
        });
    }
    let mtime_ns = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(ContentIdentity {
        size,
        blake3: None,
        mtime_ns: Some(mtime_ns),
    })
}

/// An item key for a video uri: the file name without extension, with
/// anything but `A-Z a-z 0-9 . _ -` replaced by `_` and no leading dot (so
/// never `..` or a path).
pub fn item_key(uri: &str) -> String {
    let name = uri.rsplit(['/', '\\']).next().unwrap_or(uri);
    let stem = match name.rfind('.') {
        Some(p) if p > 0 => &name[..p],
        _ => name,
    };
    let mut key: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.starts_with('.') {
        key.replace_range(0..1, "_");
    }
    if key.is_empty() { "video".into() } else { key }
}

/// A key made unique among `taken` by a short hash of the uri.
pub fn unique_item_key(uri: &str, taken: &std::collections::BTreeSet<String>) -> String {
    let key = item_key(uri);
    if !taken.contains(&key) {
        return key;
    }
    let hash = blake3::hash(uri.as_bytes()).to_hex();
    let mut n = 8;
    loop {
        let k = format!("{key}-{}", &hash[..n]);
        if !taken.contains(&k) || n == hash.len() {
            return k;
        }
        n += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_names() {
        assert_eq!(item_key("/data/a b/match-01.mp4"), "match-01");
        assert_eq!(item_key("/x/../..mp4"), "_");
        assert_eq!(item_key("/x/.."), "_");
        assert_eq!(item_key(""), "video");
        assert_eq!(item_key("s3://bucket/dir/clip.v2.mkv"), "clip.v2");
        assert_eq!(item_key("/x/ü€.mp4"), "__");
        let taken = ["match-01".to_string()].into_iter().collect();
        let k = unique_item_key("/other/match-01.mkv", &taken);
        assert!(k.starts_with("match-01-") && k.len() == 17, "{k}");
    }
}
