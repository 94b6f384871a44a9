//! Fingerprints and cache entries. A task's fingerprint is the blake3 of a
//! serialisable struct: stage kind and version, params, input digests,
//! the digests of the files the stage declares (`deps:`) and the engine's
//! cache version. Resource settings are left out on purpose:
//! the same work on more cores gives the same result.

use crate::digest::{Digest, canonical_json};
use crate::store::{Item, Store, StoreError, Verify};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What decides a task's outputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskFingerprint {
    pub cache_version: u32,
    pub kind: String,
    pub stage_version: u32,
    /// Params (after matrix expansion), as canonical JSON.
    pub params: String,
    /// `stage/task/output` -> artifact digest, for every input.
    pub inputs: BTreeMap<String, Digest>,
    /// Declared files (`deps:`): path relative to the pipeline's folder ->
    /// content digest. Left out when empty, so the fingerprints of stages
    /// without `deps` (and every cache entry written before `deps`
    /// existed) stay the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Digest>,
}

impl TaskFingerprint {
    pub fn new(
        kind: &str,
        stage_version: u32,
        params: &Value,
        inputs: BTreeMap<String, Digest>,
    ) -> Self {
        TaskFingerprint {
            cache_version: crate::CACHE_VERSION,
            kind: kind.into(),
            stage_version,
            params: canonical_json(params),
            inputs,
            files: BTreeMap::new(),
        }
    }

    /// The fingerprint of one task of `stage`: the one computation that
    /// `engine run` and `engine plan` share. `version` is the stage kind's
    /// version for these params; `inputs` the upstream outputs by
    /// `stage/task/output`. Fails when the stage's `deps` were not hashed.
    pub fn of_task(
        stage: &crate::compile::CompiledStage,
        version: u32,
        params: &Value,
        inputs: BTreeMap<String, Digest>,
    ) -> Result<Self, String> {
        let mut fp = TaskFingerprint::new(&stage.kind, version, params, inputs);
        fp.files = stage.dep_digests()?;
        Ok(fp)
    }
    /// blake3 of the canonical JSON (keys sorted at every level). Written
    /// straight into the hasher, fields in alphabetical order and maps
    /// already sorted, so the bytes are those of `canonical_json` without
    /// building a JSON value first (with 10,000 declared files that value
    /// was the slowest step of a no-op `engine plan`).
    pub fn digest(&self) -> Digest {
        #[derive(Serialize)]
        struct Sorted<'a> {
            cache_version: u32,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            files: &'a BTreeMap<String, Digest>,
            inputs: &'a BTreeMap<String, Digest>,
            kind: &'a str,
            params: &'a str,
            stage_version: u32,
        }
        let mut h = blake3::Hasher::new();
        serde_json::to_writer(
            &mut h,
            &Sorted {
                cache_version: self.cache_version,
                files: &self.files,
                inputs: &self.inputs,
                kind: &self.kind,
                params: &self.params,
                stage_version: self.stage_version,
            },
        )
        .expect("fingerprints serialise");
        Digest::from_hasher(&h)
    }

    /// Why this fingerprint differs from an earlier one of the same task.
    pub fn why_changed(&self, before: &TaskFingerprint) -> String {
        if self.kind != before.kind
            || self.stage_version != before.stage_version
            || self.cache_version != before.cache_version
        {
            return format!("stage `{}` changed version", self.kind);
        }
        if self.params != before.params {
            return match changed_keys(&before.params, &self.params) {
                keys if keys.is_empty() => "params changed".into(),
                keys => format!("params changed: {}", keys.join(", ")),
            };
        }
        if self.files != before.files {
            let changed: Vec<&str> = self
                .files
                .iter()
                .filter(|(k, v)| before.files.get(*k) != Some(v))
                .map(|(k, _)| k.as_str())
                .chain(
                    before
                        .files
                        .keys()
                        .filter(|k| !self.files.contains_key(*k))
                        .map(|k| k.as_str()),
                )
                .collect::<std::collections::BTreeSet<&str>>()
                .into_iter()
                .collect();
            return match changed.as_slice() {
                [one] => format!("input changed: {one}"),
                [first, rest @ ..] => format!("input changed: {first} and {} more", rest.len()),
                [] => "input changed".into(),
            };
        }
        let changed: Vec<&str> = self
            .inputs
            .iter()
            .filter(|(k, v)| before.inputs.get(*k) != Some(v))
            .map(|(k, _)| k.as_str())
            .chain(
                before
                    .inputs
                    .keys()
                    .filter(|k| !self.inputs.contains_key(*k))
                    .map(|k| k.as_str()),
            )
            .collect();
        if changed.is_empty() {
            "no cache entry".into()
        } else {
            format!("input changed: {}", changed.join(", "))
        }
    }
}

/// Dotted keys whose values differ between two canonical-JSON params
/// documents (`train.lr`, `epochs`); empty when either does not parse.
fn changed_keys(before: &str, now: &str) -> Vec<String> {
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<Value>(before),
        serde_json::from_str::<Value>(now),
    ) else {
        return vec![];
    };
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    crate::digest::flatten_json("", &a, &mut fa);
    crate::digest::flatten_json("", &b, &mut fb);
    let mut keys: Vec<String> = fa
        .keys()
        .chain(fb.keys())
        .filter(|k| fa.get(*k) != fb.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The fingerprint of one item of a map stage.
pub fn item_fingerprint(kind: &str, stage_version: u32, params: &Value, item: &Item) -> Digest {
    let v = serde_json::json!({
        "cache_version": crate::CACHE_VERSION,
        "kind": kind,
        "stage_version": stage_version,
        "params": canonical_json(params),
        "item": item.digest(),
    });
    Digest::of(canonical_json(&v).as_bytes())
}

/// The params an item fingerprint hashes: the stage's params, plus the
/// digests of its side inputs (inputs other than the mapped collection, such
/// as a model) and of its declared files (`deps:`) when it has any, so a new
/// model or a changed script re-runs every item. Without either this is the
/// params unchanged, so old entries keep matching.
///
/// Side inputs count by content only, not by the upstream task that made
/// them: the same model reached through `model.select` in one cycle and
/// through its `production` ref in the next is the same (model, video)
/// work, and is served from the cache.
pub fn item_params<'a>(
    params: &Value,
    side: impl Iterator<Item = (&'a str, &'a str, &'a Digest)>,
    files: &BTreeMap<String, Digest>,
) -> Value {
    let side: std::collections::BTreeSet<String> =
        side.map(|(_task, _output, d)| d.to_string()).collect();
    if side.is_empty() && files.is_empty() {
        return params.clone();
    }
    let mut v = serde_json::json!({ "params": params });
    if !side.is_empty() {
        v["side_inputs"] = serde_json::json!(side);
    }
    if !files.is_empty() {
        v["files"] = serde_json::json!(files);
    }
    v
}

/// A task's cached result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub outputs: BTreeMap<String, Digest>,
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    pub run: String,
    pub task: String,
    pub at: String,
}

/// An item's cached result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemEntry {
    pub item: Item,
    pub run: String,
}

pub fn task_path(fp: &Digest) -> String {
    format!("cache/tasks/{}/{}.json", &fp.as_str()[..2], fp.as_str())
}

pub fn item_path(fp: &Digest) -> String {
    format!("cache/items/{}/{}.json", &fp.as_str()[..2], fp.as_str())
}

/// Where the last fingerprint of a task is kept, to explain cache misses.
pub fn last_path(pipeline: &str, task: &str) -> String {
    format!(
        "cache/last/{pipeline}/{}.json",
        Digest::of(task.as_bytes()).short()
    )
}

/// What a cache lookup found.
#[derive(Debug)]
pub enum Lookup<T> {
    /// A usable entry: everything it names is in the store.
    Hit(T),
    Miss,
    /// An entry whose outputs are missing or damaged (the reason says
    /// which): the work runs again and its writes replace what is broken.
    Damaged(String),
}

/// Reads a cache entry; an entry that does not parse counts as damaged.
async fn entry<T: serde::de::DeserializeOwned>(
    store: &Store,
    path: &str,
) -> Result<Result<Option<T>, String>, StoreError> {
    match store.get_json::<T>(path).await {
        Ok(e) => Ok(Ok(e)),
        Err(e @ StoreError::Decode { .. }) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Looks a task up: a hit only when its entry parses and every output
/// manifest it names parses and lists blobs that are all there, with their
/// sizes (`Verify::Size`) or their hashes (`Verify::Hash`, `--verify`).
pub async fn lookup(
    store: &Store,
    fp: &Digest,
    how: Verify,
) -> Result<Lookup<CacheEntry>, StoreError> {
    let entry = match entry::<CacheEntry>(store, &task_path(fp)).await? {
        Ok(Some(e)) => e,
        Ok(None) => return Ok(Lookup::Miss),
        Err(why) => return Ok(Lookup::Damaged(why)),
    };
    for (name, d) in &entry.outputs {
        if let Err(why) = store.check_artifact(d, how).await? {
            return Ok(Lookup::Damaged(format!("output `{name}`: {why}")));
        }
    }
    Ok(Lookup::Hit(entry))
}

/// Looks an item of a map stage up: a hit only when its entry parses and
/// every file of the item is there (checked as `how` says).
pub async fn lookup_item(
    store: &Store,
    fp: &Digest,
    how: Verify,
) -> Result<Lookup<ItemEntry>, StoreError> {
    let entry = match entry::<ItemEntry>(store, &item_path(fp)).await? {
        Ok(Some(e)) => e,
        Ok(None) => return Ok(Lookup::Miss),
        Err(why) => return Ok(Lookup::Damaged(why)),
    };
    if let Some(why) = store.check_blobs(entry.item.files.values(), how).await? {
        return Ok(Lookup::Damaged(format!("item `{}`: {why}", entry.item.key)));
    }
    Ok(Lookup::Hit(entry))
}
