//! Declared file dependencies (`deps:`): files of the pipeline's repository
//! that a stage reads (a script, a data file), hashed into its fingerprint
//! so a changed `train.py` is not served from the cache.
//!
//! Three steps, one function each:
//! - [`check_pattern`], at compile time and without touching the disk: a
//!   relative path inside the pipeline's folder, or a valid glob. Compile
//!   stays off the disk because `engine task exec` compiles the recorded
//!   spec again on a Slurm node, where the repository need not be.
//! - [`resolve`], before `validate`, `plan` or `run` say anything: expands
//!   every pattern against the pipeline's folder. A pattern that matches no
//!   file is an error naming the stage and the path, at its place in the
//!   pipeline file.
//! - [`hash`]: a blake3 digest per file, through a [`StatCache`] so a file
//!   whose size, mtime, ctime and inode are unchanged is not read again (as
//!   Git's index and DVC do), or git's blob ids ([`GitBlobs`]) for files
//!   the repository has clean.
//!
//! Patterns are relative to the folder of the pipeline file, the same base
//! template `include`s use, and like includes they may not leave it: no
//! absolute paths, no `..`, no symlink that resolves outside. A folder
//! means every file under it; walks skip `.git` and `.engine` (the store
//! and this cache) and do not follow symlinked folders.

use crate::compile::Pipeline;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Folders a walk never enters: git's own data, and the engine's store and
/// stat cache (hashing them would make every run change the next one's key).
const SKIP_DIRS: &[&str] = &[".git", ".engine"];

/// A file changed this recently is not trusted by its stat alone: within
/// one mtime tick it can change again without its stat changing (the
/// "racy git" problem), so its digest is not cached and it is read again
/// next time.
const RACY: Duration = Duration::from_secs(2);

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

/// Checks one `deps:` entry as written; the message (to follow "entry")
/// says what is wrong.
pub fn check_pattern(p: &str) -> Result<(), String> {
    if p.trim().is_empty() {
        return Err("is empty".into());
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(format!("`{p}` is an absolute path"));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("`{p}` contains `..`"));
    }
    if is_glob(p) {
        glob(p).map_err(|e| format!("`{p}` is not a valid glob: {}", e.kind()))?;
    }
    Ok(())
}

fn glob(p: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(p.trim_start_matches("./"))
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

/// One file a stage depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DepFile {
    /// Relative to the pipeline's folder, `/`-separated: the fingerprint's key.
    pub rel: String,
    pub path: PathBuf,
}

/// Every stage's `deps:` expanded into files (sorted, no duplicates).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub base: PathBuf,
    /// By stage index; empty for stages without `deps`.
    pub stages: Vec<Vec<DepFile>>,
}

impl Resolved {
    pub fn file_count(&self) -> usize {
        self.stages.iter().map(Vec::len).sum()
    }
}

/// Expands every stage's `deps` against `base` (the pipeline file's
/// folder). All problems come back together, located in the pipeline file.
pub fn resolve(p: &Pipeline, base: &Path) -> Result<Resolved, Diagnostics> {
    let mut errors = vec![];
    let mut stages = Vec::with_capacity(p.stages.len());
    let root = base.canonicalize().ok();
    // Absolute once, so every file's path is (the stat cache's key).
    let base = &std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let mut plain = HashSet::new();
    for s in &p.stages {
        let mut files = vec![];
        for (pattern, loc) in &s.deps {
            match expand(base, root.as_deref(), pattern, &mut plain) {
                Ok(found) if !found.is_empty() => files.extend(found),
                Ok(_) => errors.push(missing(p, base, &s.name, pattern, *loc)),
                Err(msg) => errors.push(
                    Diagnostic::new(&p.file, *loc, format!("stage `{}`: {msg}", s.name))
                        .with_hint("`deps` name files inside the pipeline's folder"),
                ),
            }
        }
        files.sort();
        files.dedup();
        stages.push(files);
    }
    if errors.is_empty() {
        Ok(Resolved {
            base: base.to_path_buf(),
            stages,
        })
    } else {
        Err(Diagnostics {
            items: errors,
            source: Some(p.text.clone()),
        })
    }
}

fn missing(p: &Pipeline, base: &Path, stage: &str, pattern: &str, loc: Loc) -> Diagnostic {
    let message = if is_glob(pattern) {
        format!("stage `{stage}` depends on `{pattern}`, which matches no file")
    } else if base.join(pattern).is_dir() {
        format!("stage `{stage}` depends on folder `{pattern}`, which has no files")
    } else {
        format!("stage `{stage}` depends on `{pattern}`, which does not exist")
    };
    Diagnostic::new(&p.file, loc, message).with_hint(format!(
        "`deps` are relative to the folder of `{}`; create the file or fix the path",
        p.file
    ))
}

/// The files one pattern names; an error when one leaves the folder.
fn expand(
    base: &Path,
    root: Option<&Path>,
    pattern: &str,
    plain: &mut HashSet<PathBuf>,
) -> Result<Vec<DepFile>, String> {
    let pattern = pattern.trim_start_matches("./");
    if !is_glob(pattern) {
        let path = base.join(pattern);
        let meta = match plain_file(base, pattern, plain) {
            Some(meta) => meta,
            None => {
                let Ok(meta) = std::fs::metadata(&path) else {
                    return Ok(vec![]);
                };
                inside(root, &path, pattern)?;
                meta
            }
        };
        let rel = rel_of(base, &path);
        if meta.is_dir() {
            return walk(base, &path, &|_| true);
        }
        return Ok(vec![DepFile { rel, path }]);
    }
    let matcher = glob(pattern).map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))?;
    // Walk only below the part of the pattern without wildcards.
    let prefix: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !is_glob(&c.as_os_str().to_string_lossy()))
        .collect();
    let start = base.join(&prefix);
    if !start.is_dir() {
        return Ok(vec![]);
    }
    inside(root, &start, pattern)?;
    // A folder the glob matches counts with everything under it.
    walk(base, &start, &|rel: &str| matcher.is_match(rel))
}

/// The metadata of `base/rel` when no symlink and no `..` lies on the way
/// from `base` to it, which keeps it inside the pipeline's folder: one
/// `lstat` per file, and one per folder on the way (remembered in
/// `plain`), where [`inside`] resolves every component of the path again
/// (a 5,001-stage pipeline spent most of `resolve` there). `None` sends
/// the path the long way: missing, a symlink somewhere, `..`, absolute.
fn plain_file(base: &Path, rel: &str, plain: &mut HashSet<PathBuf>) -> Option<std::fs::Metadata> {
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut dir = base.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            if !plain.contains(&dir) {
                let m = std::fs::symlink_metadata(&dir).ok()?;
                if !m.file_type().is_dir() {
                    return None;
                }
                plain.insert(dir.clone());
            }
        }
    }
    let m = std::fs::symlink_metadata(base.join(rel)).ok()?;
    (!m.file_type().is_symlink()).then_some(m)
}

/// Refuses a path that a symlink takes outside the pipeline's folder.
fn inside(root: Option<&Path>, path: &Path, pattern: &str) -> Result<(), String> {
    if let (Some(root), Ok(real)) = (root, path.canonicalize())
        && !real.starts_with(root)
    {
        return Err(format!(
            "`deps` entry `{pattern}` resolves to `{}`, outside the pipeline's folder (through a symlink)",
            real.display()
        ));
    }
    Ok(())
}

/// Files under `start` whose path (or a folder above it, below `start`)
/// `select` accepts.
fn walk(base: &Path, start: &Path, select: &dyn Fn(&str) -> bool) -> Result<Vec<DepFile>, String> {
    let mut out = vec![];
    let mut it = walkdir::WalkDir::new(start)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    // Depth of the shallowest selected folder we are inside, if any.
    let mut selected_at: Option<usize> = None;
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| format!("Failed to list `{}`: {e}", start.display()))?;
        if selected_at.is_some_and(|d| entry.depth() <= d) {
            selected_at = None;
        }
        let ft = entry.file_type();
        if ft.is_dir()
            && entry.depth() > 0
            && SKIP_DIRS.contains(&&*entry.file_name().to_string_lossy())
        {
            it.skip_current_dir();
            continue;
        }
        let rel = match entry.path().strip_prefix(base) {
            Ok(r) => r.to_string_lossy().into_owned(),
            Err(_) => rel_of(base, entry.path()),
        };
        let chosen = selected_at.is_some() || select(&rel);
        if ft.is_dir() {
            if chosen && selected_at.is_none() && entry.depth() > 0 {
                selected_at = Some(entry.depth());
            }
            continue;
        }
        // A symlink counts when it points at a file (inside the folder).
        let is_file = ft.is_file()
            || (ft.is_symlink() && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()));
        if is_file && chosen {
            if ft.is_symlink() {
                inside(base.canonicalize().ok().as_deref(), entry.path(), &rel)?;
            }
            out.push(DepFile {
                rel,
                path: entry.path().to_path_buf(),
            });
        }
    }
    Ok(out)
}

fn rel_of(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// Failures while hashing dependencies.
#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("Failed to read dependency `{rel}` (`{path}`): {source}")]
    Read {
        rel: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What [`hash`] did, for `--verbose` output and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HashStats {
    /// Distinct files.
    pub files: usize,
    /// Files read and hashed.
    pub hashed: usize,
    /// Files whose digest came from the stat cache.
    pub from_stat_cache: usize,
    /// Files whose digest is git's blob id.
    pub from_git: usize,
}

/// Gives every stage of `p` the digests of its dependency files
/// (`CompiledStage::dep_digests`), which its task fingerprints then hold.
/// Each distinct file is hashed once; `cache` saves re-reading unchanged
/// files, `git` (when given) supplies blob ids for clean tracked files.
pub fn hash(
    p: &mut Pipeline,
    r: &Resolved,
    cache: &mut StatCache,
    git: Option<&GitBlobs>,
) -> Result<HashStats, DepsError> {
    let mut stats = HashStats::default();
    let mut done: HashMap<&Path, Digest> = HashMap::new();
    let real_base = match git {
        Some(_) => r.base.canonicalize().ok(),
        None => None,
    };
    for (i, stage) in p.stages.iter_mut().enumerate() {
        let files = r.stages.get(i).map(Vec::as_slice).unwrap_or(&[]);
        let mut map = BTreeMap::new();
        for f in files {
            let d = match done.get(f.path.as_path()) {
                Some(d) => d.clone(),
                None => {
                    stats.files += 1;
                    let d = if let Some(d) = git
                        .zip(real_base.as_ref())
                        .and_then(|(g, b)| g.digest(&b.join(&f.rel)))
                    {
                        stats.from_git += 1;
                        d
                    } else {
                        let (d, cached) = cache.digest(&f.path).map_err(|e| DepsError::Read {
                            rel: f.rel.clone(),
                            path: f.path.display().to_string(),
                            source: e,
                        })?;
                        if cached {
                            stats.from_stat_cache += 1;
                        } else {
                            stats.hashed += 1;
                        }
                        d
                    };
                    done.insert(f.path.as_path(), d.clone());
                    d
                }
            };
            map.insert(f.rel.clone(), d);
        }
        stage.dep_digests = Some(Arc::new(map));
    }
    Ok(stats)
}

/// What the stat cache knows about one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
    digest: Digest,
    /// Looked at in this process (kept on save even if the file is gone).
    #[serde(skip)]
    seen: bool,
}

impl Entry {
    fn stat(meta: &std::fs::Metadata, digest: Digest) -> Entry {
        Entry {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
            dev: meta.dev(),
            digest,
            seen: true,
        }
    }
    fn same_stat(&self, meta: &std::fs::Metadata) -> bool {
        self.size == meta.len()
            && self.ino == meta.ino()
            && self.dev == meta.dev()
            && self.mtime_ns == meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
            && self.ctime_ns == meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128
    }
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    files: HashMap<String, Entry>,
}

#[derive(Serialize)]
struct CacheFileRef<'a> {
    version: u32,
    files: &'a HashMap<String, Entry>,
}

const STAT_CACHE_VERSION: u32 = 1;

/// Absolute path -> (size, mtime, ctime, inode, device, digest), kept in a
/// local file between runs. A file whose stat matches is not read again.
/// The file is only ever an optimisation: one that is missing, unreadable
/// or corrupt is ignored (with a warning) and rebuilt, never an error.
#[derive(Debug, Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: HashMap<String, Entry>,
    dirty: bool,
    /// Why the cache file was not used, when it was there but unreadable.
    pub warning: Option<String>,
}

impl StatCache {
    /// Where the CLI keeps it: `.engine/stat-cache.json` under `dir` (the
    /// current folder, beside the default store).
    pub fn default_path(dir: &Path) -> PathBuf {
        dir.join(".engine").join("stat-cache.json")
    }

    /// A cache that is not saved anywhere (every file is read once per use).
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// Loads the cache file at `path`; a missing file is an empty cache, a
    /// bad one an empty cache with a warning.
    pub fn load(path: &Path) -> StatCache {
        let mut c = StatCache {
            path: Some(path.to_path_buf()),
            ..StatCache::default()
        };
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(f) if f.version == STAT_CACHE_VERSION => c.entries = f.files,
                Ok(f) => {
                    c.warning = Some(format!(
                        "stat cache `{}` has version {}, not {STAT_CACHE_VERSION}; rebuilding it",
                        path.display(),
                        f.version
                    ));
                    c.dirty = true;
                }
                Err(e) => {
                    c.warning = Some(format!(
                        "stat cache `{}` is corrupt ({e}); ignoring it and rebuilding it (every dependency is hashed once)",
                        path.display()
                    ));
                    c.dirty = true;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                c.warning = Some(format!(
                    "Failed to read stat cache `{}` ({e}); hashing every dependency",
                    path.display()
                ));
            }
        }
        c
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The content digest of `path`, and whether it came from the cache.
    pub fn digest(&mut self, path: &Path) -> std::io::Result<(Digest, bool)> {
        let abs;
        let path = if path.is_absolute() {
            path
        } else {
            abs = std::path::absolute(path)?;
            &abs
        };
        let key = path.to_string_lossy();
        let meta = std::fs::metadata(path)?;
        if let Some(e) = self.entries.get_mut(key.as_ref())
            && e.same_stat(&meta)
        {
            e.seen = true;
            return Ok((e.digest.clone(), true));
        }
        // Stat before reading: a change while we read makes the file racy
        // (recent mtime), so what we read is never cached under a stat it
        // does not belong to.
        let digest = hash_file(path)?;
        let entry = Entry::stat(&meta, digest.clone());
        if is_racy(&entry) {
            if self.entries.remove(key.as_ref()).is_some() {
                self.dirty = true;
            }
        } else {
            self.entries.insert(key.into_owned(), entry);
            self.dirty = true;
        }
        Ok((digest, false))
    }

    /// Writes the cache back when something changed (a temporary file
    /// renamed over the old one, so a reader never sees half of it).
    /// Entries of files that are gone are dropped. A failure is returned
    /// as a warning: the next run just hashes again.
    pub fn save(&mut self) -> Option<String> {
        let path = self.path.clone()?;
        let before = self.entries.len();
        self.entries.retain(|k, e| e.seen || Path::new(k).exists());
        if !self.dirty && self.entries.len() == before {
            return None;
        }
        let write = || -> std::io::Result<()> {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            let doc = CacheFileRef {
                version: STAT_CACHE_VERSION,
                files: &self.entries,
            };
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            serde_json::to_writer(&mut w, &doc).map_err(std::io::Error::other)?;
            w.flush()?;
            drop(w);
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        match write() {
            Ok(()) => {
                self.dirty = false;
                None
            }
            Err(e) => Some(format!(
                "Failed to write stat cache `{}` ({e}); the next run hashes every dependency again",
                path.display()
            )),
        }
    }
}

fn is_racy(e: &Entry) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    // Only the mtime: a write after an old mtime moves it, so it is the
    // one stamp that can fail to change (same tick) when the content does.
    now - e.mtime_ns < RACY.as_nanos() as i128
}

/// blake3 of a file's bytes, streamed (memory does not grow with size).
pub fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(Digest::from_hasher(&h))
}

/// Git's blob ids for the files of the pipeline's repository that are
/// tracked and clean (the index and the working tree agree with `HEAD`'s
/// content as git sees it), so they need not be read. Git keeps its own
/// stat cache in the index, so asking it is cheap.
#[derive(Debug, Default)]
pub struct GitBlobs {
    blobs: HashMap<PathBuf, String>,
}

impl GitBlobs {
    /// Asks git in `dir`. `Err` says why git's ids cannot be used (not a
    /// repository, git missing); files git does not know, or that are
    /// modified or staged, are hashed as usual.
    pub fn load(dir: &Path) -> Result<GitBlobs, String> {
        let git = |args: &[&str]| -> Result<Vec<u8>, String> {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .map_err(|e| format!("Failed to run `git`: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`git {}` in `{}` failed: {}",
                    args.join(" "),
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(out.stdout)
        };
        let top = git(&["rev-parse", "--show-toplevel"])?;
        let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
        let top = top.canonicalize().unwrap_or(top);
        // Modified in the work tree or staged: not clean, hash them.
        let mut dirty = HashSet::new();
        let status = git(&["status", "--porcelain=v1", "-z", "--untracked-files=no"])?;
        let mut fields = status.split(|&b| b == 0).filter(|f| !f.is_empty());
        while let Some(f) = fields.next() {
            if f.len() > 3 {
                dirty.insert(top.join(String::from_utf8_lossy(&f[3..]).as_ref()));
            }
            // A rename lists its source next.
            if matches!(f.first(), Some(b'R' | b'C')) {
                fields.next();
            }
        }
        let listed = git(&["ls-files", "-s", "-z", "--full-name"])?;
        let mut blobs = HashMap::new();
        for rec in listed.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            // `MODE OBJECT STAGE\tPATH`
            let rec = String::from_utf8_lossy(rec);
            let Some((meta, path)) = rec.split_once('\t') else {
                continue;
            };
            let parts: Vec<&str> = meta.split(' ').collect();
            if parts.len() != 3 || parts[2] != "0" || !parts[0].starts_with("100") {
                continue; // conflicts, symlinks, submodules
            }
            let abs = top.join(path);
            if !dirty.contains(&abs) {
                blobs.insert(abs, parts[1].to_string());
            }
        }
        Ok(GitBlobs { blobs })
    }

    /// `git-blob:ID` for a clean tracked file, by its path with every
    /// symlink resolved (as [`hash`] builds it from the real pipeline folder).
    pub fn digest(&self, real_path: &Path) -> Option<Digest> {
        self.blobs.get(real_path).map(|id| Digest::git_blob(id))
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}
