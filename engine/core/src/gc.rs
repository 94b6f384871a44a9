//! `engine gc`: deletes what nothing needs any more, so a store that
//! continual learning writes to every day stops growing without limit.
//!
//! Kept (everything else older than the grace period goes):
//!
//! 1. every artifact a ref ever pointed at, its whole history (so `engine
//!    ref rollback` keeps working), and the evaluations behind deploys;
//! 2. the last `keep_runs` runs, the runs saved within `keep_for`, and every
//!    run whose record says `running`: their records (with their Slurm
//!    files), every input and output artifact of their tasks, their logs;
//! 3. the blobs those manifests list (a manifest lists blobs only; its
//!    `meta` is opaque and names nothing gc follows);
//! 4. the task cache entries whose outputs are all kept and the item cache
//!    entries whose files are all kept; an entry whose outputs go is
//!    deleted with them, so no later run meets a hit whose blobs are gone
//!    (it would run again, see [`crate::cache::Lookup::Damaged`], but gc
//!    should not leave those behind);
//! 5. the lineage records of kept artifacts;
//! 6. every object written less than `grace` ago, and what it references.
//!
//! Refs, `cache/last/` (why a task missed last time) and lock files are
//! never touched; neither is a file whose name is not one gc knows.
//!
//! A run writing while gc runs stays whole:
//!
//! - What it writes is young, and what its writes find already there (a
//!   blob it made again) they make young (`Store::freshen`); gc looks at
//!   each object again just before deleting it and leaves it if it has
//!   become young. Everything is listed before anything is decided, so
//!   what is written after the listing is not even seen.
//! - What it reads through an old cache entry: while any run is going (its
//!   record says `running` and its engine is alive: see
//!   [`RunRecord::interrupted`]; a run that died is still kept, with what
//!   it references, but protects nothing more), gc keeps every cache entry
//!   and all they reach, because a
//!   running run may hit any of them and its record names its hits only
//!   later. Such a gc still frees old run records, their logs and what no
//!   cache entry reaches; the rest goes at the next gc with no run going.
//! - A run that starts during the sweep: gc deletes in the reverse of the
//!   write order (cache entries; then run records, lineage, manifests;
//!   blobs last) and, once the cache entries are gone, reads the run
//!   records again. A run saves its `running` record before its first
//!   cache lookup, so a run that could have hit an entry gc just deleted
//!   shows up there; gc then stops and leaves manifests and blobs to the
//!   next gc. A run that starts later finds no entry for what gc deletes.
//!   A ref moved during gc to an artifact gc was about to delete stops the
//!   sweep the same way.
//!
//! The grace period must exceed the clock difference between the machines
//! that write (S3 times are the server's) and gc's own, and on S3 also
//! [`crate::store::FRESHEN_AFTER`] (5 minutes): a write there makes an
//! object young again only once it is older than that. A store that gives
//! no modification times (`memory://`) has only young objects: gc deletes
//! nothing there.

use crate::cache::{CacheEntry, ItemEntry};
use crate::digest::Digest;
use crate::fsck::named_digest;
use crate::records::{RunRecord, RunStatus};
use crate::store::{Listed, Manifest, RefDoc, Store, StoreError};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// The kinds of object gc counts, as its report names them.
pub const BLOBS: &str = "blobs";
pub const MANIFESTS: &str = "manifests";
pub const TASK_ENTRIES: &str = "cache entries";
pub const ITEM_ENTRIES: &str = "item cache entries";
pub const LINEAGE: &str = "lineage records";
pub const RUNS: &str = "run records";

/// How many requests gc keeps in flight (reads and deletes; S3 answers
/// each in milliseconds, so one at a time would take hours on a big store).
const IN_FLIGHT: usize = 16;

/// What gc keeps and how it deletes.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// The newest runs kept with everything they reference.
    pub keep_runs: usize,
    /// Also keep every run whose record was saved within this long.
    pub keep_for: Option<Duration>,
    /// Never delete an object written less than this long ago.
    pub grace: Duration,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            keep_runs: 10,
            keep_for: None,
            grace: Duration::from_secs(3600),
            dry_run: false,
        }
    }
}

/// A number of objects and their bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub objects: usize,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, l: &Listed) {
        self.objects += 1;
        self.bytes += l.size;
    }

    fn sum<'a>(all: impl Iterator<Item = &'a Tally>) -> Tally {
        all.fold(Tally::default(), |a, t| Tally {
            objects: a.objects + t.objects,
            bytes: a.bytes + t.bytes,
        })
    }
}

/// An object gc failed to delete.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GcFailure {
    pub path: String,
    pub error: String,
}

/// What gc kept and freed, per kind (`blobs`, `manifests`, ...).
#[derive(Debug, Clone, Serialize, Default)]
pub struct GcReport {
    pub store: String,
    /// Nothing was deleted; `freed` is what would have been.
    pub dry_run: bool,
    pub kept: BTreeMap<String, Tally>,
    pub freed: BTreeMap<String, Tally>,
    /// The runs kept with everything they reference, newest first.
    pub runs_kept: Vec<String>,
    /// Runs going (records that say `running`, engines alive): while there
    /// are any, every cache entry is kept with what it reaches.
    pub running: Vec<String>,
    /// Why the sweep stopped before the end, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub failures: Vec<GcFailure>,
}

impl GcReport {
    pub fn total_kept(&self) -> Tally {
        Tally::sum(self.kept.values())
    }

    pub fn total_freed(&self) -> Tally {
        Tally::sum(self.freed.values())
    }

    /// Every deletion gc tried succeeded.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What must stay: manifests and blobs by digest.
#[derive(Default)]
struct Live {
    manifests: HashSet<Digest>,
    blobs: HashSet<Digest>,
}

/// The run a file under `runs/` belongs to: `runs/<id>.json` (the record)
/// or `runs/<id>/...` (Slurm requests and results).
fn run_of(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix("runs/")?;
    match rest.split_once('/') {
        Some((id, _)) => Some((id, false)),
        None => rest.strip_suffix(".json").map(|id| (id, true)),
    }
}

/// Reads JSON documents a few at a time, in order: `None` for one that
/// does not parse; one deleted since the listing is left out.
async fn read_all<T: DeserializeOwned>(
    store: &Store,
    listed: Vec<Listed>,
) -> Result<Vec<(Listed, Option<T>)>, StoreError> {
    let mut reads = futures::stream::iter(listed)
        .map(|l| async move {
            let got = store.get_json::<T>(&l.path).await;
            (l, got)
        })
        .buffered(IN_FLIGHT);
    let mut out = vec![];
    while let Some((l, got)) = reads.next().await {
        match got {
            Ok(Some(v)) => out.push((l, Some(v))),
            Ok(None) => {}
            Err(StoreError::Decode { .. }) => out.push((l, None)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every digest any ref ever pointed at, or named as the evaluation of a
/// move. A ref that does not parse stops gc: its history is unknown.
async fn ref_targets(store: &Store) -> Result<HashSet<Digest>, StoreError> {
    let mut out = HashSet::new();
    for path in store.list_all("refs").await? {
        if !path.ends_with(".json") {
            continue;
        }
        let Some(doc) = store.get_json::<RefDoc>(&path).await? else {
            continue;
        };
        for e in doc.history {
            out.insert(e.digest);
            out.extend(e.previous);
            out.extend(e.evaluation);
        }
    }
    Ok(out)
}

/// The blobs a manifest lists; a kept manifest that cannot be read stops
/// gc, since what it lists is unknown.
async fn blobs_of(store: &Store, d: &Digest) -> Result<Vec<Digest>, StoreError> {
    let path = Store::manifest_path(d);
    let bytes = match store.read(&path).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::Decode {
        path: path.clone(),
        url: store.url().into(),
        reason: format!(
            "{e}; gc deletes nothing while an artifact it keeps is unreadable: run `engine fsck --repair`, then gc again"
        ),
    })?;
    Ok(m.blobs().map(|b| b.digest.clone()).collect())
}

/// The runs in a listing of `runs/`: which are kept, which are running,
/// and the artifacts and logs the kept ones reference.
struct Runs {
    kept: HashSet<String>,
    /// Kept, newest first.
    kept_order: Vec<String>,
    running: Vec<String>,
    /// Every run id with a record, running or not.
    seen: HashSet<String>,
}

async fn read_runs(
    store: &Store,
    listed: &[Listed],
    opts: &GcOptions,
    live: &mut Live,
) -> Result<Runs, StoreError> {
    let young = |l: &Listed| l.age().is_none_or(|a| a < opts.grace);
    let mut records: Vec<Listed> = listed
        .iter()
        .filter(|l| run_of(&l.path).is_some_and(|(_, record)| record))
        .cloned()
        .collect();
    // Run ids start with their UTC start time: newest first.
    records.sort_by(|a, b| b.path.cmp(&a.path));
    let mut runs = Runs {
        kept: HashSet::new(),
        kept_order: vec![],
        running: vec![],
        seen: HashSet::new(),
    };
    for (rank, (l, rec)) in read_all::<RunRecord>(store, records)
        .await?
        .into_iter()
        .enumerate()
    {
        let Some((id, _)) = run_of(&l.path) else {
            continue;
        };
        let id = id.to_string();
        runs.seen.insert(id.clone());
        let Some(mut rec) = rec else {
            // Unreadable: what it references is unknown; fsck reports it.
            runs.kept.insert(id.clone());
            runs.kept_order.push(id);
            continue;
        };
        // A running run's latest tasks and heartbeat are in its event
        // batches, not yet in its document.
        crate::records::apply_events(store, &mut rec).await?;
        let is_running = rec.status == RunStatus::Running;
        if is_running && !rec.interrupted() {
            runs.running.push(id.clone());
        }
        let recent = opts
            .keep_for
            .is_some_and(|keep| l.age().is_none_or(|a| a < keep));
        if rank < opts.keep_runs || is_running || recent || young(&l) {
            for t in &rec.tasks {
                live.manifests
                    .extend(t.inputs.iter().map(|i| i.digest.clone()));
                live.manifests.extend(t.outputs.values().cloned());
                live.blobs.extend(t.log.clone());
            }
            runs.kept.insert(id.clone());
            runs.kept_order.push(id);
        }
    }
    Ok(runs)
}

/// One object gc decided to delete.
struct Doomed {
    kind: &'static str,
    obj: Listed,
}

/// The store as listed before anything is decided: what is written after
/// the listing is not in it, so it stays whatever gc decides.
struct Listing {
    blobs: Vec<Listed>,
    manifests: Vec<Listed>,
    task_entries: Vec<(Listed, Option<CacheEntry>)>,
    item_entries: Vec<(Listed, Option<ItemEntry>)>,
    lineage: Vec<Listed>,
    run_files: Vec<Listed>,
}

impl Listing {
    async fn take(store: &Store) -> Result<Listing, StoreError> {
        let blobs = store.list_all_with_meta("blobs").await?;
        let manifests = store.list_all_with_meta("artifacts").await?;
        let task_entries = store.list_all_with_meta("cache/tasks").await?;
        let item_entries = store.list_all_with_meta("cache/items").await?;
        let lineage = store.list_all_with_meta("lineage").await?;
        let run_files = store.list_all_with_meta("runs").await?;
        Ok(Listing {
            task_entries: read_all(store, task_entries).await?,
            item_entries: read_all(store, item_entries).await?,
            blobs,
            manifests,
            lineage,
            run_files,
        })
    }

    /// Manifests that are there, by digest.
    fn manifests_present(&self) -> HashSet<Digest> {
        self.manifests
            .iter()
            .filter_map(|l| named_digest(&l.path, ".json"))
            .collect()
    }

    /// Blobs that are there, by digest, with their sizes.
    fn blobs_present(&self) -> HashMap<Digest, u64> {
        self.blobs
            .iter()
            .filter_map(|l| named_digest(&l.path, "").map(|d| (d, l.size)))
            .collect()
    }
}

/// What must stay, and what it was decided from.
struct Marked {
    live: Live,
    runs: Runs,
    /// Every digest the refs named when gc listed the store.
    refs: HashSet<Digest>,
    /// A run is going: every cache entry stays, with all it reaches.
    protect_cache: bool,
}

/// Marks what must stay: ref histories, kept runs, young objects, cache
/// entries that stay for their age or for a running run, and the blobs of
/// every manifest marked.
async fn mark(store: &Store, opts: &GcOptions, l: &Listing) -> Result<Marked, StoreError> {
    let young = |o: &Listed| o.age().is_none_or(|a| a < opts.grace);
    let mut live = Live::default();
    let refs = ref_targets(store).await?;
    live.manifests.extend(refs.iter().cloned());
    let runs = read_runs(store, &l.run_files, opts, &mut live).await?;
    let protect_cache = !runs.running.is_empty();
    let keep_entry = |o: &Listed| protect_cache || young(o);
    for m in l.manifests.iter().filter(|m| young(m)) {
        live.manifests.extend(named_digest(&m.path, ".json"));
    }
    for (_, e) in l.task_entries.iter().filter(|(o, _)| keep_entry(o)) {
        if let Some(e) = e {
            live.manifests.extend(e.outputs.values().cloned());
        }
    }
    for (_, e) in l.item_entries.iter().filter(|(o, _)| keep_entry(o)) {
        if let Some(e) = e {
            live.blobs
                .extend(e.item.files.values().map(|b| b.digest.clone()));
        }
    }
    let present = l.manifests_present();
    let to_read: Vec<Digest> = live
        .manifests
        .iter()
        .filter(|d| present.contains(*d))
        .cloned()
        .collect();
    let mut reads = futures::stream::iter(to_read)
        .map(|d| async move { blobs_of(store, &d).await })
        .buffer_unordered(IN_FLIGHT);
    while let Some(b) = reads.next().await {
        live.blobs.extend(b?);
    }
    drop(reads);
    Ok(Marked {
        live,
        runs,
        refs,
        protect_cache,
    })
}

/// What to delete, in the order it goes: cache entries first (so no run
/// can hit one whose outputs are going), then run records, lineage and
/// manifests, blobs last (so nothing still lists one when it goes).
#[derive(Default)]
struct Deletions {
    entries: Vec<Doomed>,
    rest: Vec<Doomed>,
    blobs: Vec<Doomed>,
}

/// Decides, object by object; what stays is counted into the report.
fn decide(opts: &GcOptions, l: Listing, m: &Marked, report: &mut GcReport) -> Deletions {
    let young = |o: &Listed| o.age().is_none_or(|a| a < opts.grace);
    let keep_entry = |o: &Listed| m.protect_cache || young(o);
    let live = &m.live;
    let present = l.manifests_present();
    let blobs_present = l.blobs_present();
    let mut doomed = Deletions::default();
    let mut decide = |kind: &'static str, obj: Listed, keep: bool, into: &mut Vec<Doomed>| {
        if keep {
            report.kept.entry(kind.into()).or_default().add(&obj);
        } else {
            into.push(Doomed { kind, obj });
        }
    };
    for (o, e) in l.task_entries {
        let keep = keep_entry(&o)
            || e.is_some_and(|e| {
                e.outputs
                    .values()
                    .all(|d| live.manifests.contains(d) && present.contains(d))
            });
        decide(TASK_ENTRIES, o, keep, &mut doomed.entries);
    }
    for (o, e) in l.item_entries {
        let keep = keep_entry(&o)
            || e.is_some_and(|e| {
                e.item.files.values().all(|b| {
                    live.blobs.contains(&b.digest) && blobs_present.get(&b.digest) == Some(&b.size)
                })
            });
        decide(ITEM_ENTRIES, o, keep, &mut doomed.entries);
    }
    for o in l.run_files {
        let keep = young(&o) || run_of(&o.path).is_none_or(|(id, _)| m.runs.kept.contains(id));
        decide(RUNS, o, keep, &mut doomed.rest);
    }
    for o in l.lineage {
        let keep =
            young(&o) || named_digest(&o.path, ".json").is_none_or(|d| live.manifests.contains(&d));
        decide(LINEAGE, o, keep, &mut doomed.rest);
    }
    for o in l.manifests {
        let keep =
            young(&o) || named_digest(&o.path, ".json").is_none_or(|d| live.manifests.contains(&d));
        decide(MANIFESTS, o, keep, &mut doomed.rest);
    }
    for o in l.blobs {
        let keep = young(&o) || named_digest(&o.path, "").is_none_or(|d| live.blobs.contains(&d));
        decide(BLOBS, o, keep, &mut doomed.blobs);
    }
    doomed
}

/// Lists, marks, decides, then (unless a dry run) sweeps.
pub async fn gc(store: &Store, opts: &GcOptions) -> Result<GcReport, StoreError> {
    let listing = Listing::take(store).await?;
    let marked = mark(store, opts, &listing).await?;
    let mut report = GcReport {
        store: store.url().into(),
        dry_run: opts.dry_run,
        runs_kept: marked.runs.kept_order.clone(),
        running: marked.runs.running.clone(),
        ..Default::default()
    };
    let doomed = decide(opts, listing, &marked, &mut report);
    if opts.dry_run {
        for d in doomed
            .entries
            .iter()
            .chain(&doomed.rest)
            .chain(&doomed.blobs)
        {
            report.freed.entry(d.kind.into()).or_default().add(&d.obj);
        }
        return Ok(report);
    }

    let deleted_entries = !doomed.entries.is_empty();
    sweep(store, opts, doomed.entries, &mut report).await;
    let stop = if deleted_entries && !marked.protect_cache {
        started_since(store, &marked.runs.seen).await?
    } else {
        None
    };
    let stop = match stop {
        Some(s) => Some(s),
        None => moved_refs(store, &marked.refs, &doomed.rest).await?,
    };
    if let Some(why) = stop {
        for d in doomed.rest.iter().chain(&doomed.blobs) {
            report.kept.entry(d.kind.into()).or_default().add(&d.obj);
        }
        report.stopped = Some(why);
        return Ok(report);
    }
    sweep(store, opts, doomed.rest, &mut report).await;
    sweep(store, opts, doomed.blobs, &mut report).await;
    Ok(report)
}

/// A run that started after the listing and says `running`: it may have
/// hit a cache entry gc has just deleted.
async fn started_since(
    store: &Store,
    seen: &HashSet<String>,
) -> Result<Option<String>, StoreError> {
    let new: Vec<Listed> = store
        .list_all_with_meta("runs")
        .await?
        .into_iter()
        .filter(|l| run_of(&l.path).is_some_and(|(id, record)| record && !seen.contains(id)))
        .collect();
    for (l, rec) in read_all::<RunRecord>(store, new).await? {
        if rec.is_none_or(|r| r.status == RunStatus::Running) {
            return Ok(Some(format!(
                "run `{}` started while gc deleted cache entries; it may use the artifacts of one, so manifests and blobs are left for the next gc",
                run_of(&l.path).map_or("?", |(id, _)| id)
            )));
        }
    }
    Ok(None)
}

/// A ref moved, since the listing, to an artifact gc was about to delete.
async fn moved_refs(
    store: &Store,
    before: &HashSet<Digest>,
    doomed: &[Doomed],
) -> Result<Option<String>, StoreError> {
    let now = ref_targets(store).await?;
    let doomed: HashSet<Digest> = doomed
        .iter()
        .filter(|d| d.kind == MANIFESTS)
        .filter_map(|d| named_digest(&d.obj.path, ".json"))
        .collect();
    Ok(now
        .difference(before)
        .find(|d| doomed.contains(*d))
        .map(|d| {
            format!(
                "a ref moved to artifact `{d}` while gc ran; manifests and blobs are left for the next gc"
            )
        }))
}

enum Outcome {
    Freed,
    /// Written again since the listing: young now, so it stays.
    Young,
    Failed(String),
}

/// Deletes objects a few at a time, each only if it has not become young
/// since the listing; a failure is reported and the sweep goes on.
async fn sweep(store: &Store, opts: &GcOptions, doomed: Vec<Doomed>, report: &mut GcReport) {
    let mut deletes = futures::stream::iter(doomed)
        .map(|d| async move {
            let outcome = match store.stat(&d.obj.path).await {
                Ok(None) => Outcome::Freed,
                Ok(Some(now)) if now.age().is_none_or(|a| a < opts.grace) => Outcome::Young,
                Ok(Some(_)) => match store.delete(&d.obj.path).await {
                    Ok(()) => Outcome::Freed,
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                Err(e) => Outcome::Failed(e.to_string()),
            };
            (d, outcome)
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some((d, outcome)) = deletes.next().await {
        match outcome {
            Outcome::Freed => report.freed.entry(d.kind.into()).or_default().add(&d.obj),
            Outcome::Young => report.kept.entry(d.kind.into()).or_default().add(&d.obj),
            Outcome::Failed(error) => {
                report.kept.entry(d.kind.into()).or_default().add(&d.obj);
                report.failures.push(GcFailure {
                    path: d.obj.path.clone(),
                    error,
                });
            }
        }
    }
    report.failures.sort_by(|a, b| a.path.cmp(&b.path));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, status: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id, "pipeline": "p", "file": "p.yaml", "status": status,
            "started": "2026-11-27T00:00:00Z", "engine_version": "0", "host": "h",
            "pipeline_digest": Digest::of(b"p"), "spec": "", "values": {},
            "store": "memory://", "executor": "local", "tasks": [],
        })
    }

    /// The check between the sweep of cache entries and the rest: a run
    /// that started since the listing stops gc; one seen before, or one
    /// already over, does not.
    #[tokio::test]
    async fn a_run_started_during_the_sweep_stops_it() {
        let store = Store::open("memory://gc-started-since", std::path::Path::new(".")).unwrap();
        let put = |id: &'static str, status: &'static str| {
            let store = store.clone();
            async move {
                store
                    .put_json(&format!("runs/{id}.json"), &record(id, status))
                    .await
                    .unwrap()
            }
        };
        put("20261127-000000-000-aaaa", "running").await;
        let seen: HashSet<String> = ["20261127-000000-000-aaaa".to_string()].into();
        assert_eq!(started_since(&store, &seen).await.unwrap(), None);
        put("20261127-000001-000-bbbb", "succeeded").await;
        assert_eq!(started_since(&store, &seen).await.unwrap(), None);
        put("20261127-000002-000-cccc", "running").await;
        let why = started_since(&store, &seen).await.unwrap().unwrap();
        assert!(why.contains("20261127-000002-000-cccc"), "{why}");
    }

    /// A ref moved since the listing to an artifact gc meant to delete
    /// stops gc; a move to one it keeps does not.
    #[tokio::test]
    async fn a_ref_moved_to_a_doomed_artifact_stops_the_sweep() {
        let store = Store::open("memory://gc-moved-refs", std::path::Path::new(".")).unwrap();
        let m = |n: i32| Manifest {
            meta: serde_json::json!(n),
            ..Default::default()
        };
        let (kept, doomed) = (
            store.put_manifest(&m(1)).await.unwrap(),
            store.put_manifest(&m(2)).await.unwrap(),
        );
        let before = ref_targets(&store).await.unwrap();
        let plan = vec![Doomed {
            kind: MANIFESTS,
            obj: Listed {
                path: Store::manifest_path(&doomed),
                size: 1,
                modified: None,
            },
        }];
        store.set_ref("r", &kept, "").await.unwrap();
        assert_eq!(moved_refs(&store, &before, &plan).await.unwrap(), None);
        store.set_ref("r", &doomed, "").await.unwrap();
        let why = moved_refs(&store, &before, &plan).await.unwrap().unwrap();
        assert!(why.contains(doomed.as_str()), "{why}");
    }
}
