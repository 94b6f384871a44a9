//! Map stages: items fanned out in batches, each cached on its own. Items
//! run in this process, or, when the executor runs items elsewhere (Slurm:
//! one job array per map task), only the cache lookups happen here and the
//! misses go to the executor in the stage's batches. [`run_item`] is the one
//! way an item runs, here and on a node (`engine task exec-batch`).

use super::*;

/// The mapped collection, read in place from the inputs' manifests (one
/// per upstream task; several under a matrix), indexed as one list. A
/// copy of the items cost as much memory again as the manifest: 300 MB
/// for a million items.
pub(super) struct MapItems {
    parts: Vec<Arc<Manifest>>,
    /// Index of each part's first item.
    starts: Vec<usize>,
    len: usize,
}

impl MapItems {
    fn new(parts: Vec<Arc<Manifest>>) -> Self {
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0;
        for p in &parts {
            starts.push(len);
            len += p.items.len();
        }
        MapItems { parts, starts, len }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = &Item> {
        self.parts.iter().flat_map(|p| p.items.iter())
    }
}

impl std::ops::Index<usize> for MapItems {
    type Output = Item;
    fn index(&self, i: usize) -> &Item {
        let p = self.starts.partition_point(|&s| s <= i) - 1;
        &self.parts[p].items[i - self.starts[p]]
    }
}

/// The collection and values a finished map task hands on; an error (not
/// a collection with holes) when an item has no result.
fn map_outputs(
    m: &Arc<dyn MapStage>,
    results: Vec<Option<Box<str>>>,
    counts: ItemCounts,
) -> Result<(BTreeMap<String, Output>, BTreeMap<String, Value>), StageError> {
    if let Some(i) = results.iter().position(Option::is_none) {
        return Err(StageError::msg(format!(
            "item {i} of {} has no result; rerun the stage (finished items come from the cache)",
            results.len()
        )));
    }
    // In place: `Option<Box<str>>` and `Box<str>` have one size, so the
    // million-slot vector is reused, not copied.
    let items = results.into_iter().flatten().collect();
    let mut outputs = BTreeMap::new();
    outputs.insert(m.output(), Output::Items(items));
    let mut values = BTreeMap::new();
    values.insert("items".to_string(), Value::from(counts.total));
    values.insert("items_run".to_string(), Value::from(counts.run));
    values.insert("items_cached".to_string(), Value::from(counts.cached));
    Ok((outputs, values))
}

/// A map task whose items run through the executor (Slurm: a job array):
/// every item is looked up in the cache here, the misses go out in the
/// stage's batches, and no item runs in this process.
#[allow(clippy::too_many_arguments)]
async fn run_map_remote(
    sh: &Arc<Shared>,
    stage_idx: usize,
    label: &str,
    m: Arc<dyn MapStage>,
    item_params: &Value,
    side: Arc<Vec<Input>>,
    items: Arc<MapItems>,
    log: &Log,
    rec: &mut TaskRecord,
    use_cache: bool,
) -> Result<(BTreeMap<String, Output>, BTreeMap<String, Value>), StageError> {
    use futures::StreamExt;
    let stage = &sh.pipeline.stages[stage_idx];
    let total = items.len();
    let version = m.version();
    rec.started_ms = Some(sh.ms());
    sh.opts.events.emit(Event::TaskStarted {
        task: label.into(),
        attempt: 1,
    });
    log.progress(0, total as u64);
    let mut results: Vec<Option<Box<str>>> = vec![None; total];
    let mut counts = ItemCounts {
        total,
        run: 0,
        cached: 0,
    };
    let mut todo: Vec<(usize, Item)> = vec![];
    if use_cache {
        // Lazily, 32 at a time (a million pending lookups would take GBs);
        // the closure takes an index and owns what it reads, so the task's
        // future stays `Send` (a `&Item` argument trips higher-ranked
        // lifetimes).
        let (kind, params) = (stage.kind.clone(), Arc::new(item_params.clone()));
        let (store, verify, all) = (sh.store.clone(), sh.verify(), items.clone());
        let mut found = futures::stream::iter(0..total)
            .map(move |i| {
                let fp = cache::item_fingerprint(&kind, version, &params, &all[i]);
                let store = store.clone();
                async move { (i, cache::lookup_item(&store, &fp, verify).await) }
            })
            .buffer_unordered(32);
        while let Some((i, hit)) = found.next().await {
            match hit? {
                cache::Lookup::Hit(e) => {
                    let mut it = e.item;
                    it.key = items[i].key.clone();
                    results[i] = Some(it.canonical().into_boxed_str());
                    counts.cached += 1;
                }
                _ => todo.push((i, items[i].clone())),
            }
        }
        todo.sort_by_key(|(i, _)| *i);
    } else {
        todo = items.iter().cloned().enumerate().collect();
    }
    log.progress(counts.cached as u64, total as u64);
    let batch = stage.map.as_ref().map_or(1, |o| o.batch.max(1));
    // Moved, not copied, into the batches: a million-item stage holds one copy.
    let mut batches: Vec<Vec<(usize, Item)>> = Vec::with_capacity(todo.len().div_ceil(batch));
    let mut rest = todo.into_iter().peekable();
    while rest.peek().is_some() {
        batches.push(rest.by_ref().take(batch).collect());
    }
    rec.attempts = 1;
    if batches.is_empty() {
        rec.placement = Some("every item was cached; no job was submitted".into());
    } else {
        let class = sh.pool.class(stage.class).clone();
        let cached = counts.cached;
        let progress = |n: usize| log.progress((cached + n) as u64, total as u64);
        let cancel = sh.opts.cancel.child_token();
        let job = crate::executor::ItemBatches {
            run_id: &sh.opts.run_id,
            task: label,
            store: &sh.store,
            class: &class,
            batches,
            side: &side,
            item_params,
            use_cache: stage.cache && !sh.opts.no_cache && !sh.forced(&stage.name),
            retries: stage.retries,
            log,
            cancel: &cancel,
            jobs: &mut rec.jobs,
            progress: &progress,
        };
        let done = sh.opts.executor.run_items(job).await;
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                if sh.opts.cancel.is_cancelled() {
                    return Err(StageError::Cancelled);
                }
                return Err(e);
            }
        };
        rec.attempts = done.rounds.max(1);
        rec.placement = Some(done.note);
        counts.run += done.run;
        counts.cached += done.cached;
        for (i, it) in done.items {
            if let Some(slot) = results.get_mut(i) {
                sh.store.check_listed(it.files.values()).await?;
                *slot = Some(it.canonical().into_boxed_str());
            }
        }
    }
    rec.items = Some(counts);
    if let Some(i) = results.iter().position(Option::is_none) {
        return Err(StageError::msg(format!(
            "item `{}` of task `{label}` got no result from the executor",
            items[i].key
        )));
    }
    map_outputs(&m, results, counts)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_map(
    sh: &Arc<Shared>,
    stage_idx: usize,
    label: &str,
    m: Arc<dyn MapStage>,
    params: &Value,
    inputs: &[Input],
    log: &Log,
    rec: &mut TaskRecord,
    use_cache: bool,
) -> Result<(BTreeMap<String, Output>, BTreeMap<String, Value>), StageError> {
    let stage = &sh.pipeline.stages[stage_idx];
    let over = stage
        .map
        .as_ref()
        .ok_or_else(|| StageError::msg(format!("stage `{}` has no `map`", stage.name)))?;
    let up = &sh.pipeline.stages[over.stage].name;
    let items = MapItems::new(
        inputs
            .iter()
            .filter(|i| &i.stage == up && i.output == over.output)
            .map(|i| i.manifest.clone())
            .collect(),
    );
    let mut keys = HashSet::with_capacity(items.len());
    for it in items.iter() {
        if !keys.insert(it.key.as_str()) {
            return Err(StageError::msg(format!(
                "collection `{up}.{}` has two items with key `{}`",
                over.output, it.key
            )));
        }
    }
    drop(keys);
    let items = Arc::new(items);
    let total = items.len();
    let version = m.version();
    // Inputs from stages other than the mapped one (a model, a config) are
    // part of every item's fingerprint and visible to every item.
    let side: Arc<Vec<Input>> =
        Arc::new(inputs.iter().filter(|i| &i.stage != up).cloned().collect());
    let params = &cache::item_params(
        params,
        side.iter()
            .map(|i| (i.task.as_str(), i.output.as_str(), &i.digest)),
        // Checked by the task's fingerprint before the map started.
        &stage.dep_digests().unwrap_or_default(),
    );
    if sh.opts.executor.runs_items() {
        return run_map_remote(
            sh, stage_idx, label, m, params, side, items, log, rec, use_cache,
        )
        .await;
    }
    let cancel = sh.opts.cancel.child_token();
    // Each batch returns (item index, output item, came from cache) and
    // when it held its grant.
    type BatchResult = Result<(Vec<(usize, Box<str>, bool)>, Option<[f64; 2]>), StageError>;
    let mut join: JoinSet<BatchResult> = JoinSet::new();
    rec.started_ms = Some(sh.ms());
    sh.opts.events.emit(Event::TaskStarted {
        task: label.into(),
        attempt: 1,
    });
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    log.progress(0, total as u64);
    let batch = over.batch.max(1);
    for start in (0..total).step_by(batch) {
        let end = (start + batch).min(total);
        let (sh, m, items, cancel, log, label, params, progress, side) = (
            sh.clone(),
            m.clone(),
            items.clone(),
            cancel.clone(),
            log.clone(),
            label.to_string(),
            params.clone(),
            progress.clone(),
            side.clone(),
        );
        join.spawn(async move {
            let stage = &sh.pipeline.stages[stage_idx];
            // Grown as items finish, not sized now: every batch is spawned
            // at once and most wait for a grant, and a million items' worth
            // of empty slots (100 MB) waited with them.
            let mut out = Vec::new();
            let mut grant = None;
            let mut held_from = None;
            for i in start..end {
                let item = &items[i];
                let fp = cache::item_fingerprint(&stage.kind, version, &params, item);
                let hit = if use_cache {
                    cache::lookup_item(&sh.store, &fp, sh.verify()).await?
                } else {
                    cache::Lookup::Miss
                };
                if let cache::Lookup::Hit(e) = hit {
                    let mut it = e.item;
                    it.key = item.key.clone();
                    out.push((i, it.canonical().into_boxed_str(), true));
                } else {
                    if grant.is_none() {
                        grant = Some(tokio::select! {
                            g = sh.pool.acquire(stage.class) => g,
                            _ = cancel.cancelled() => return Err(StageError::Cancelled),
                        });
                        held_from = Some(sh.ms());
                    }
                    let threads = grant.as_ref().map(|g| g.threads()).unwrap_or(1);
                    let runner = ItemRunner {
                        writer: sh.writer(&stage.name),
                        label: label.clone(),
                        scratch: sh.scratch.path().join(sanitize(&label)),
                        timeout: stage.timeout,
                        retries: stage.retries,
                        backoff: sh.opts.retry_backoff,
                        log: log.clone(),
                        side: side.clone(),
                    };
                    let it = run_item(&runner, &m, item, i, threads, &cancel).await?;
                    // What `put_manifest` checks, done here: the item is
                    // kept only as text.
                    sh.store.check_listed(it.files.values()).await?;
                    let text = it.canonical().into_boxed_str();
                    if stage.cache {
                        let entry = ItemEntry {
                            item: it,
                            run: sh.opts.run_id.clone(),
                        };
                        sh.store
                            .put_json_deferred(&cache::item_path(&fp), &entry)
                            .await?;
                    }
                    out.push((i, text, false));
                }
                let n = progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                log.progress(n, total as u64);
            }
            Ok((out, held_from.map(|a| [a, sh.ms()])))
        });
    }
    let mut results: Vec<Option<Box<str>>> = vec![None; total];
    let mut counts = ItemCounts {
        total,
        run: 0,
        cached: 0,
    };
    let mut first_err = None;
    while let Some(j) = join.join_next().await {
        match j {
            Ok(Ok((v, held))) => {
                rec.held_ms.extend(held);
                for (i, it, cached) in v {
                    if cached {
                        counts.cached += 1
                    } else {
                        counts.run += 1
                    }
                    results[i] = Some(it);
                }
            }
            Ok(Err(e)) => {
                if first_err.is_none() {
                    cancel.cancel();
                    first_err = Some(e);
                }
            }
            Err(e) => {
                if first_err.is_none() {
                    cancel.cancel();
                    first_err = Some(StageError::msg(format!("an item worker panicked: {e}")));
                }
            }
        }
    }
    rec.items = Some(counts);
    rec.held_ms.sort_by(|a, b| a[0].total_cmp(&b[0]));
    rec.attempts = 1;
    if let Some(e) = first_err {
        if sh.opts.cancel.is_cancelled() {
            return Err(StageError::Cancelled);
        }
        return Err(e);
    }
    map_outputs(&m, results, counts)
}

/// What one item's attempts need, on this machine or on a Slurm node
/// (`engine task exec-batch`), so both run items alike.
pub(crate) struct ItemRunner {
    /// The store item outputs are written through.
    pub writer: Store,
    /// The task's label.
    pub label: String,
    /// The folder item scratch folders are made in.
    pub scratch: PathBuf,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// First retry delay.
    pub backoff: Duration,
    pub log: Log,
    /// Inputs other than the mapped collection.
    pub side: Arc<Vec<Input>>,
}

/// Runs one item with the stage's retries and timeout.
pub(crate) async fn run_item(
    r: &ItemRunner,
    m: &Arc<dyn MapStage>,
    item: &Item,
    index: usize,
    threads: usize,
    cancel: &CancellationToken,
) -> Result<Item, StageError> {
    let log = &r.log;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let scratch = r.scratch.join(format!("item-{index}-{attempt}"));
        let mut ctx = ItemCtx::new(StageEnv::new(
            r.writer.clone(),
            &r.label,
            r.side.clone(),
            log.clone(),
            cancel.child_token(),
            scratch.clone(),
            threads,
        ));
        let res = guarded(r.timeout, cancel, m.run_item(item, &mut ctx)).await;
        // A timed-out item's future is dropped, but work it handed to a
        // worker thread goes on until told: tell it, before any retry starts.
        ctx.cancel.cancel();
        super::scratch::remove_scratch(&scratch).await;
        let e = match res {
            Ok(()) => {
                return Ok(Item {
                    key: item.key.clone(),
                    files: ctx.files,
                    meta: ctx.meta,
                });
            }
            Err(e) => e,
        };
        let retry = |_| {
            log.line(&format!(
                "item `{}` attempt {attempt} failed: {e}; retrying",
                item.key
            ))
        };
        if !wait_to_retry(r.backoff, r.retries, attempt, &e, cancel, retry).await? {
            return Err(match e {
                StageError::Cancelled => e,
                e => StageError::msg(format!("item `{}`: {e}", item.key)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_items_index_the_inputs_in_place_across_parts() {
        let part = |keys: &[&str]| {
            Arc::new(Manifest {
                kind: ArtifactKind::Collection,
                items: keys
                    .iter()
                    .map(|k| Item {
                        key: k.to_string(),
                        files: Default::default(),
                        meta: Value::Null,
                    })
                    .collect(),
                ..Default::default()
            })
        };
        let (a, b) = (part(&["a0", "a1"]), part(&["b0"]));
        let items = MapItems::new(vec![part(&[]), a.clone(), part(&[]), b.clone(), part(&[])]);
        assert_eq!(items.len(), 3);
        let keys: Vec<&str> = (0..3).map(|i| items[i].key.as_str()).collect();
        assert_eq!(keys, ["a0", "a1", "b0"]);
        assert_eq!(
            items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            keys
        );
        // Read in place, not copied: the item is the one in the input.
        assert!(std::ptr::eq(&items[2], &b.items[0]));
        assert!(std::ptr::eq(&items[1], &a.items[1]));
    }
}
