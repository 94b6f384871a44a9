//! Parsed pipelines kept between commands, keyed by the rendered text.
//!
//! YAML parsing is most of what `validate`, `plan` and a no-op `run` cost
//! on a large pipeline: serde-saphyr reads about 14 MB/s here, so a
//! 5,001-stage pipeline (1 MB) takes 70-100 ms to parse and 4-10 ms to read
//! back from this cache. The parse is a pure function of the rendered text,
//! so its result is kept under the text's digest, as Nix keeps evaluations
//! and Bazel keeps parsed BUILD files:
//!
//! - **Key.** blake3 of the format version, the engine binary's identity
//!   (its size, modification time and inode: any rebuild or upgrade starts
//!   afresh, so a changed spec type never reads an old entry) and the text.
//!   Only a successful parse is kept; an error is parsed (and reported) again.
//! - **File.** `.engine/parse-cache/<key>.bin`: a magic line, the blake3 of
//!   the payload, and the payload ([`PipelineSpec`] as MessagePack, spans
//!   included). Anything that does not check out is a miss, never an error:
//!   the text is parsed again and the entry rewritten.
//! - **Where.** Only in a folder that already has `.engine/` (the engine
//!   creates it on the first run), so that `engine validate` anywhere leaves
//!   nothing behind; only for texts of [`MIN_BYTES`] or more, which take
//!   a few milliseconds or less to parse and are not worth a file; at most
//!   [`KEEP`] entries, the oldest removed on write.

use crate::spec::PipelineSpec;
use std::path::{Path, PathBuf};

/// Texts shorter than this are parsed every time (a few milliseconds).
pub const MIN_BYTES: usize = 32 << 10;
/// Entries kept; a write beyond this removes the oldest.
pub const KEEP: usize = 32;

const MAGIC: &[u8; 16] = b"engine-spec-v1\n\0";

/// The cache folder of one project, for one engine binary.
#[derive(Debug, Clone)]
pub struct SpecCache {
    dir: PathBuf,
    build: [u8; 32],
}

impl SpecCache {
    /// The cache under `project/.engine/parse-cache`, when `project/.engine`
    /// exists and the engine binary can be told apart from others; `None`
    /// otherwise (nothing is cached).
    pub fn in_project(project: &Path) -> Option<SpecCache> {
        let engine_dir = project.join(".engine");
        if !engine_dir.is_dir() {
            return None;
        }
        Some(SpecCache::at(
            engine_dir.join("parse-cache"),
            &build_identity()?,
        ))
    }

    /// A cache in `dir` for an engine whose identity is `build` (any bytes
    /// that change when the spec types or the parser may have changed).
    pub fn at(dir: PathBuf, build: &[u8]) -> SpecCache {
        SpecCache {
            dir,
            build: *blake3::hash(build).as_bytes(),
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let mut h = blake3::Hasher::new();
        h.update(MAGIC);
        h.update(&self.build);
        h.update(text.as_bytes());
        self.dir.join(format!("{}.bin", h.finalize().to_hex()))
    }

    /// The spec parsed from `text` earlier, when an entry is there and
    /// checks out.
    pub fn get(&self, text: &str) -> Option<PipelineSpec> {
        if text.len() < MIN_BYTES {
            return None;
        }
        let bytes = std::fs::read(self.path(text)).ok()?;
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        if rest.len() < 32 {
            return None;
        }
        let (sum, payload) = rest.split_at(32);
        if blake3::hash(payload).as_bytes() != sum {
            return None;
        }
        rmp_serde::from_slice(payload).ok()
    }

    /// Keeps `spec`, parsed from `text`. A failure to write costs only the
    /// next command's parse, so it is not reported.
    pub fn put(&self, text: &str, spec: &PipelineSpec) {
        if text.len() < MIN_BYTES {
            return;
        }
        let Ok(payload) = rmp_serde::to_vec(spec) else {
            return;
        };
        let path = self.path(text);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            use std::io::Write;
            tmp.write_all(MAGIC)?;
            tmp.write_all(blake3::hash(&payload).as_bytes())?;
            tmp.write_all(&payload)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        if write().is_ok() {
            self.prune(&path);
        }
    }

    /// Removes the oldest entries beyond [`KEEP`], never `newest`.
    fn prune(&self, newest: &Path) {
        let Ok(list) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = list
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "bin") && e.path() != newest)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() < KEEP {
            return;
        }
        entries.sort();
        let extra = entries.len() + 1 - KEEP;
        for (_, p) in entries.into_iter().take(extra) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The engine's version with the size, modification time and inode of the
/// running executable: changes with every build and install. `None` when
/// the executable cannot be read: two builds could not be told apart.
fn build_identity() -> Option<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    let mut id = crate::ENGINE_VERSION.as_bytes().to_vec();
    for n in [m.size() as i64, m.mtime(), m.mtime_nsec(), m.ino() as i64] {
        id.extend_from_slice(&n.to_le_bytes());
    }
    Some(id)
}

#[cfg(test)]
mod tests;
