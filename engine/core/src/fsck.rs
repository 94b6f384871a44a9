//! `engine fsck`: checks every object and ref of a store, and with repair
//! removes what is broken so the next run rebuilds it.
//!
//! What is checked, in the order of the write path (a later kind is judged
//! against the earlier ones, so one damaged blob shows up as itself, the
//! manifests that list it and the cache entries that name those):
//!
//! 1. blobs: their bytes hash to their name;
//! 2. manifests: their bytes hash to their name, they parse, and every blob
//!    they list is there, whole, with its size;
//! 3. task cache entries: they parse and every output manifest is whole;
//! 4. item cache entries: they parse and every file of the item is whole;
//! 5. lineage and run records: they parse;
//! 6. refs: they parse and their current artifact is whole.
//!
//! Repair removes blobs, manifests, cache entries, lineage and run records
//! that fail. A removed blob or manifest is rebuilt by the next run of the
//! task that produced it (its cache entry no longer holds). Refs are never
//! removed (their history is the registry's audit trail): a broken ref is
//! reported with what to do.

use crate::cache::{CacheEntry, ItemEntry};
use crate::digest::Digest;
use crate::records::{Lineage, RunRecord};
use crate::store::{Manifest, RefDoc, Store, StoreError, check_ref_name};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One thing wrong in the store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FsckProblem {
    /// The object's path in the store.
    pub path: String,
    /// What is wrong with it.
    pub what: String,
    /// Whether `--repair` removed it.
    pub removed: bool,
    /// What to do when repair cannot (refs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What `fsck` checked and found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FsckReport {
    pub store: String,
    /// Objects checked, per kind (`blobs`, `manifests`, ...).
    pub checked: BTreeMap<String, usize>,
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Checker<'a> {
    store: &'a Store,
    repair: bool,
    report: FsckReport,
}

impl Checker<'_> {
    async fn problem(&mut self, path: &str, what: String) -> Result<(), StoreError> {
        if self.repair {
            self.store.delete(path).await?;
        }
        self.report.problems.push(FsckProblem {
            path: path.into(),
            what,
            removed: self.repair,
            hint: None,
        });
        Ok(())
    }

    fn count(&mut self, kind: &str) {
        *self.report.checked.entry(kind.into()).or_default() += 1;
    }

    /// Reads and parses a JSON document; `None` (after reporting it) when
    /// it does not parse.
    async fn json<T: DeserializeOwned>(&mut self, path: &str) -> Result<Option<T>, StoreError> {
        match self.store.get_json::<T>(path).await {
            Ok(v) => Ok(v),
            Err(e @ StoreError::Decode { .. }) => {
                self.problem(path, format!("unreadable: {e}")).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The digest a content-addressed file is named by: `blobs/ab/<digest>`,
/// `artifacts/ab/<digest>.json`.
pub(crate) fn named_digest(path: &str, ext: &str) -> Option<Digest> {
    let name = path.rsplit('/').next()?.strip_suffix(ext)?;
    let d = Digest::parse(name)?;
    // A full digest, in the shard its first two characters name.
    let shard = path.rsplit('/').nth(1)?;
    (d.as_str() == name && shard == &name[..2]).then_some(d)
}

/// Checks every object and ref of a store; with `repair`, removes the
/// broken objects (never refs) as it finds them.
pub async fn fsck(store: &Store, repair: bool) -> Result<FsckReport, StoreError> {
    let mut c = Checker {
        store,
        repair,
        report: FsckReport {
            store: store.url().into(),
            ..Default::default()
        },
    };

    // 1. Blobs, by hash.
    let mut blobs: HashMap<Digest, u64> = HashMap::new();
    for path in store.list_all("blobs").await? {
        c.count("blobs");
        let Some(d) = named_digest(&path, "") else {
            c.problem(
                &path,
                "not a blob: its name is not a digest in its shard".into(),
            )
            .await?;
            continue;
        };
        match store.hash_of(&path).await? {
            Some(h) if h == d => {
                let size = store.size_of(&path).await?.unwrap_or(0);
                blobs.insert(d, size);
            }
            Some(h) => {
                c.problem(&path, format!("corrupt: its content hashes to `{h}`"))
                    .await?;
            }
            None => {}
        }
    }

    // 2. Manifests: whole, and every blob they list whole.
    let mut manifests: HashSet<Digest> = HashSet::new();
    for path in store.list_all("artifacts").await? {
        c.count("manifests");
        let Some(d) = named_digest(&path, ".json") else {
            c.problem(
                &path,
                "not a manifest: its name is not a digest in its shard".into(),
            )
            .await?;
            continue;
        };
        let m: Manifest = match store.get_manifest(&d).await {
            Ok(m) => m,
            Err(e @ (StoreError::Corrupt { .. } | StoreError::Decode { .. })) => {
                c.problem(&path, e.to_string()).await?;
                continue;
            }
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let bad = m.blobs().find_map(|b| match blobs.get(&b.digest) {
            None => Some(format!(
                "lists blob `{}`, which is missing or corrupt",
                Store::blob_path(&b.digest)
            )),
            Some(&n) if n != b.size => Some(format!(
                "lists blob `{}` with {} bytes, but it has {n}",
                Store::blob_path(&b.digest),
                b.size
            )),
            Some(_) => None,
        });
        match bad {
            Some(why) => c.problem(&path, why).await?,
            None => {
                manifests.insert(d);
            }
        }
    }

    // 3. Task cache entries.
    for path in store.list_all("cache/tasks").await? {
        c.count("cache entries");
        let Some(e) = c.json::<CacheEntry>(&path).await? else {
            continue;
        };
        if let Some((out, d)) = e.outputs.iter().find(|(_, d)| !manifests.contains(*d)) {
            c.problem(
                &path,
                format!(
                    "output `{out}` of task `{}` is `{}`, which is missing or damaged",
                    e.task,
                    Store::manifest_path(d)
                ),
            )
            .await?;
        }
    }

    // 4. Item cache entries.
    for path in store.list_all("cache/items").await? {
        c.count("item cache entries");
        let Some(e) = c.json::<ItemEntry>(&path).await? else {
            continue;
        };
        let bad = e
            .item
            .files
            .iter()
            .find(|(_, b)| blobs.get(&b.digest) != Some(&b.size));
        if let Some((name, b)) = bad {
            c.problem(
                &path,
                format!(
                    "file `{name}` of item `{}` is blob `{}`, which is missing or damaged",
                    e.item.key,
                    Store::blob_path(&b.digest)
                ),
            )
            .await?;
        }
    }

    // 5. Lineage and run records parse.
    for path in store.list_all("lineage").await? {
        c.count("lineage records");
        c.json::<Lineage>(&path).await?;
    }
    for path in store.list_all("runs").await? {
        // `runs/<id>.json`; Slurm's request and result files live deeper.
        if !path.ends_with(".json") || path.matches('/').count() != 1 {
            continue;
        }
        c.count("run records");
        c.json::<RunRecord>(&path).await?;
    }

    // 6. Refs: reported, never removed.
    for path in store.list_all("refs").await? {
        c.count("refs");
        let name = path
            .trim_start_matches("refs/")
            .trim_end_matches(".json")
            .to_string();
        let hint = |what: &str| {
            format!(
                "{what}; move it with `engine ref set {name} DIGEST` or `engine ref rollback {name}`, or rerun the run that publishes it"
            )
        };
        if check_ref_name(&name).is_err() || !path.ends_with(".json") {
            continue;
        }
        let doc = match store.get_json::<RefDoc>(&path).await {
            Ok(Some(doc)) => doc,
            Ok(None) => continue,
            Err(e @ StoreError::Decode { .. }) => {
                c.report.problems.push(FsckProblem {
                    path: path.clone(),
                    what: format!("unreadable: {e}"),
                    removed: false,
                    hint: Some(hint(
                        "fix or delete the file by hand (its history is in it)",
                    )),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(d) = doc.current()
            && !manifests.contains(d)
        {
            c.report.problems.push(FsckProblem {
                path: path.clone(),
                what: format!(
                    "points at artifact `{}`, which is missing or damaged",
                    Store::manifest_path(d)
                ),
                removed: false,
                hint: Some(hint("the ref is kept")),
            });
        }
    }
    Ok(c.report)
}
