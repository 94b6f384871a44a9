//! After a task: its record closed, its outputs, cache entry and lineage
//! written (blobs first, manifests next, the cache entry last), its refs moved.

use super::*;

pub(super) fn finish(
    sh: &Shared,
    mut rec: TaskRecord,
    status: TaskStatus,
    reason: Option<String>,
    error: Option<String>,
) -> TaskRecord {
    rec.status = status;
    if let Some(r) = reason {
        rec.reason = r;
    }
    // A driver error can print the URL it was given, password included.
    rec.error = error.map(|e| crate::secrets::redact(&e).into_owned());
    rec.finished_ms = Some(sh.ms());
    if rec.started_ms.is_none() {
        rec.started_ms = rec.finished_ms;
    }
    sh.opts.events.emit(Event::TaskFinished {
        task: rec.task.clone(),
        status,
        seconds: rec.seconds(),
        reason: rec.reason.clone(),
        error: rec.error.clone(),
    });
    rec
}

/// Moves the stage's `publish:` refs to the outputs of a task that
/// succeeded (ran or came from the cache). A ref that cannot be moved fails
/// the task: a deploy that did not happen must not look done.
pub(super) async fn publish_refs(sh: &Shared, t: usize, rec: TaskRecord) -> TaskRecord {
    let stage = &sh.pipeline.stages[sh.plan.tasks[t].stage];
    if stage.publish.is_empty() || !matches!(rec.status, TaskStatus::Done | TaskStatus::Cached) {
        return rec;
    }
    // Boxed, as few tasks publish: inline, the ref moves' state would make
    // every task's future larger (see `decide_batch`).
    Box::pin(move_refs(sh, stage, rec)).await
}

async fn move_refs(sh: &Shared, stage: &CompiledStage, mut rec: TaskRecord) -> TaskRecord {
    for (output, name) in &stage.publish {
        let Some(d) = rec.outputs.get(output) else {
            continue;
        };
        // A stage that checked an evaluation (`model.deploy`) names it in
        // its values; the ref history keeps it with the move.
        let why = crate::store::RefMove {
            note: format!("run {} task {}", sh.opts.run_id, rec.task),
            run: Some(sh.opts.run_id.clone()),
            evaluation: rec
                .values
                .get("evaluation")
                .and_then(Value::as_str)
                .and_then(crate::digest::Digest::parse),
        };
        match sh.store.move_ref(&name.replace('@', "/"), d, &why).await {
            Ok(_) => {
                let published = rec
                    .values
                    .entry("published".to_string())
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(m) = published {
                    m.insert(output.clone(), Value::String(name.clone()));
                }
            }
            Err(e) => {
                rec.status = TaskStatus::Failed;
                rec.error = Some(format!(
                    "Failed to move ref `{name}` to output `{output}` ({}): {e}",
                    d.short()
                ));
            }
        }
    }
    rec
}

/// One output of a finished task, as [`publish`] writes it.
pub(super) enum Output {
    Manifest(Manifest),
    /// A map stage's collection: each item's canonical JSON, in order,
    /// its blobs already checked. A million items kept as `Item`s took
    /// about 1 KB each (an item's metadata object alone is a B-tree node
    /// of about 640 bytes); as text, about 200 bytes.
    Items(Vec<Box<str>>),
}

/// Manifests after blobs, lineage, then the cache entry last.
pub(super) async fn publish(
    sh: &Shared,
    stage: &CompiledStage,
    rec: &TaskRecord,
    fp: &Digest,
    mut outputs: BTreeMap<String, Output>,
    values: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Digest>, String> {
    let mut digests = BTreeMap::new();
    for decl in &stage.outputs {
        let stored = match outputs.remove(&decl.name) {
            Some(Output::Manifest(m)) => sh.store.put_manifest(&m).await,
            Some(Output::Items(items)) => {
                let text = crate::store::collection_canonical(&items);
                drop(items);
                sh.store.put_manifest_text(text).await
            }
            None if decl.kind == ArtifactKind::Collection => {
                sh.store
                    .put_manifest(&Manifest {
                        kind: ArtifactKind::Collection,
                        ..Default::default()
                    })
                    .await
            }
            None => {
                return Err(format!(
                    "the stage did not write its declared output `{}`",
                    decl.name
                ));
            }
        };
        let d = stored.map_err(|e| e.to_string())?;
        let lpath = records::lineage_path(&d);
        // The first producer's note stays; one a power cut damaged (a
        // deferred write) is written again.
        let kept = matches!(sh.store.get_json::<Lineage>(&lpath).await, Ok(Some(_)));
        if !kept {
            let l = Lineage {
                artifact: d.clone(),
                output: decl.name.clone(),
                run: sh.opts.run_id.clone(),
                task: rec.task.clone(),
                stage: stage.name.clone(),
                kind: stage.kind.clone(),
                fingerprint: Some(fp.clone()),
                inputs: rec.inputs.clone(),
                at: now_rfc3339(),
            };
            sh.store
                .put_json_deferred(&lpath, &l)
                .await
                .map_err(|e| e.to_string())?;
        }
        digests.insert(decl.name.clone(), d);
    }
    if stage.cache {
        let entry = CacheEntry {
            outputs: digests.clone(),
            values: values.clone(),
            run: sh.opts.run_id.clone(),
            task: rec.task.clone(),
            at: now_rfc3339(),
        };
        sh.store
            .put_json_deferred(&cache::task_path(fp), &entry)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(digests)
}
