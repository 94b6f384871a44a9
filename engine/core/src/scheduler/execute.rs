//! One task from "ready" to its record: `when`, upstream failures, the
//! fingerprint and the cache, then a run as a whole task or a map.

use super::*;

/// Why a stage cannot run: an upstream task failed, was cancelled or skipped.
pub(super) fn upstream_problem(
    p: &Pipeline,
    plan: &Plan,
    rec: &RunRecord,
    stage: &CompiledStage,
) -> Option<String> {
    for &n in &stage.needs {
        for t in plan.stage_tasks[n].clone() {
            let r = &rec.tasks[t];
            match r.status {
                TaskStatus::Failed => return Some(format!("upstream `{}` failed", r.task)),
                TaskStatus::Cancelled => {
                    return Some(format!("upstream `{}` was cancelled", r.task));
                }
                TaskStatus::Skipped => {
                    return Some(format!("upstream `{}` was skipped", p.stages[n].name));
                }
                _ => {}
            }
        }
    }
    None
}

/// What deciding a task found.
// `Ended` is the larger variant and the common one (most of a rerun's
// tasks): boxing it would allocate once per cached task.
#[allow(clippy::large_enum_variant)]
pub(super) enum Step {
    /// It ended without running: its `when` is false, it could not be
    /// fingerprinted or looked up, or the cache answered it.
    Ended(TaskRecord, Option<Done>),
    /// It runs: [`work`].
    Runs(Box<Runs>),
}

/// Decides a task: evaluates its `when`, builds its fingerprint and looks
/// it up in the cache. Cheap and without a stage's state, so that the loop
/// can decide many tasks in one of the runtime's tasks (most of a rerun's
/// tasks end here) and spawn one only for each task that runs.
pub(super) async fn decide_task(
    sh: &Shared,
    t: usize,
    mut rec: TaskRecord,
    input_specs: Vec<InputSpec>,
    when_ctx: &Value,
) -> Step {
    let task = &sh.plan.tasks[t];
    let stage = &sh.pipeline.stages[task.stage];
    rec.started_ms = Some(sh.ms());
    rec.inputs = input_specs
        .iter()
        .map(|i| InputRef {
            name: format!("{}/{}/{}", i.stage, i.task, i.output),
            digest: i.digest.clone(),
        })
        .collect();

    if let Some(expr) = &stage.when {
        let env = crate::compile::when_env();
        let verdict = env
            .compile_expression(expr)
            .and_then(|e| e.eval(minijinja::Value::from(minijinja::value::Serde(when_ctx))))
            .map(|v| v.is_true());
        match verdict {
            Ok(true) => {}
            Ok(false) => {
                let r = finish(
                    sh,
                    rec,
                    TaskStatus::Skipped,
                    Some(format!("condition `{expr}` is false")),
                    None,
                );
                return Step::Ended(r, None);
            }
            Err(e) => {
                let msg = format!(
                    "Failed to evaluate `when: {expr}` of stage `{}`: {e}",
                    stage.name
                );
                return Step::Ended(
                    finish(
                        sh,
                        rec,
                        TaskStatus::Failed,
                        Some("condition error".into()),
                        Some(msg),
                    ),
                    None,
                );
            }
        }
    }

    let (params, imp) = match task_stage(stage, &task.combo) {
        Ok(x) => x,
        Err(m) => {
            let msg = format!(
                "invalid params for `{}` in task `{}`: {m}",
                stage.kind, rec.task
            );
            return Step::Ended(
                finish(
                    sh,
                    rec,
                    TaskStatus::Failed,
                    Some("invalid params".into()),
                    Some(msg),
                ),
                None,
            );
        }
    };
    let fp = match TaskFingerprint::of_task(
        stage,
        imp.version(),
        &params,
        rec.inputs
            .iter()
            .map(|i| (i.name.clone(), i.digest.clone()))
            .collect(),
    ) {
        Ok(fp) => fp,
        Err(msg) => {
            return Step::Ended(
                finish(
                    sh,
                    rec,
                    TaskStatus::Failed,
                    Some("deps not hashed".into()),
                    Some(msg),
                ),
                None,
            );
        }
    };
    let fpd = fp.digest();
    rec.fingerprint = Some(fpd.clone());
    let policy = CachePolicy {
        forced: sh.forced(&stage.name),
        no_cache: sh.opts.no_cache,
        verify: sh.verify(),
    };
    let use_cache = stage.cache && !policy.no_cache && !policy.forced;
    match decide(
        &sh.store,
        &sh.pipeline.name,
        &rec.task,
        stage,
        (&fp, &fpd),
        &policy,
    )
    .await
    {
        Ok(Decided::Cached(entry)) => {
            rec.outputs = entry.outputs.clone();
            rec.values = entry.values.clone();
            let d = Done {
                outputs: entry.outputs,
                values: entry.values,
            };
            let r = finish(
                sh,
                rec,
                TaskStatus::Cached,
                Some(format!("cached from run {}", entry.run)),
                None,
            );
            return Step::Ended(r, Some(d));
        }
        Ok(Decided::Run(reason)) => rec.reason = reason,
        Err(e) => {
            let msg = format!("Failed to read the cache for task `{}`: {e}", rec.task);
            return Step::Ended(
                finish(
                    sh,
                    rec,
                    TaskStatus::Failed,
                    Some("cache unreadable".into()),
                    Some(msg),
                ),
                None,
            );
        }
    }

    Step::Runs(Box::new(Runs {
        rec,
        input_specs,
        params: params.into_owned(),
        imp,
        fp,
        fpd,
        use_cache,
    }))
}

/// A task the cache did not answer, with what deciding it found.
pub(super) struct Runs {
    rec: TaskRecord,
    input_specs: Vec<InputSpec>,
    params: Value,
    imp: StageImpl,
    fp: TaskFingerprint,
    fpd: Digest,
    use_cache: bool,
}

/// Runs a task that the cache did not answer: loads its inputs, runs it as
/// a whole task or a map, and publishes its outputs.
pub(super) async fn work(sh: Arc<Shared>, t: usize, runs: Box<Runs>) -> (TaskRecord, Option<Done>) {
    let Runs {
        mut rec,
        input_specs,
        params,
        imp,
        fp,
        fpd,
        use_cache,
    } = *runs;
    let task = &sh.plan.tasks[t];
    let stage = &sh.pipeline.stages[task.stage];
    // The inputs' manifests, only now that the task runs: the fingerprint
    // needs their digests alone, and a cached task (most of a rerun) would
    // read them for nothing.
    let mut inputs = Vec::with_capacity(input_specs.len());
    for i in &input_specs {
        match sh.manifest(&i.digest).await {
            Ok(m) => inputs.push(Input {
                stage: i.stage.clone(),
                task: i.task.clone(),
                output: i.output.clone(),
                digest: i.digest.clone(),
                manifest: m,
            }),
            Err(e) => {
                let msg = format!(
                    "Failed to load input `{}.{}` of task `{}`: {e}",
                    i.stage, i.output, rec.task
                );
                return (
                    finish(
                        &sh,
                        rec,
                        TaskStatus::Failed,
                        Some("input missing".into()),
                        Some(msg),
                    ),
                    None,
                );
            }
        }
    }

    let log = Log::new(&rec.task, sh.opts.events.clone());
    sh.live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(t, log.clone());
    let label = rec.task.clone();
    let outcome = match &imp {
        StageImpl::Task(s) => run_task(
            &sh,
            stage,
            &label,
            s.clone(),
            &inputs,
            &task_matrix(stage, &task.combo),
            &log,
            &mut rec,
        )
        .await
        .map(|(outputs, values)| {
            let outputs = outputs
                .into_iter()
                .map(|(name, m)| (name, Output::Manifest(m)))
                .collect();
            (outputs, values)
        }),
        StageImpl::Map(m) => {
            run_map(
                &sh,
                task.stage,
                &label,
                m.clone(),
                &params,
                &inputs,
                &log,
                &mut rec,
                use_cache,
            )
            .await
        }
    };
    sh.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&t);
    let log_text = log.text();
    if !log_text.is_empty()
        && let Ok(b) = sh.store.put_blob(log_text.into_bytes()).await
    {
        rec.log = Some(b.digest);
    }
    let (outputs, values) = match outcome {
        Ok(x) => x,
        Err(StageError::Cancelled) => {
            return (
                finish(
                    &sh,
                    rec,
                    TaskStatus::Cancelled,
                    None,
                    Some("cancelled".into()),
                ),
                None,
            );
        }
        Err(e) => {
            let msg = e.to_string();
            return (finish(&sh, rec, TaskStatus::Failed, None, Some(msg)), None);
        }
    };
    // The inputs are not needed any more: a large one goes before the
    // outputs are written (see `KEEP_MANIFESTS_UP_TO`), and its memory
    // back to the system. glibc keeps freed small blocks for reuse, but the
    // manifest text `publish` writes is one large block that cannot reuse
    // them: without the trim a million-item map stage's peak held its
    // input, its output and the output's text at once.
    let large = inputs
        .iter()
        .any(|i| i.manifest.items.len() + i.manifest.files.len() > KEEP_MANIFESTS_UP_TO);
    drop(inputs);
    if large {
        crate::resources::trim_heap();
    }
    match publish(&sh, stage, &rec, &fpd, outputs, &values).await {
        Ok(digests) => {
            let last = cache::last_path(&sh.pipeline.name, &rec.task);
            let _ = sh.store.put_json_deferred(&last, &fp).await;
            rec.outputs = digests.clone();
            rec.values = values.clone();
            let d = Done {
                outputs: digests,
                values,
            };
            (finish(&sh, rec, TaskStatus::Done, None, None), Some(d))
        }
        Err(e) => {
            let msg = format!("Failed to publish outputs of task `{}`: {e}", rec.task);
            (finish(&sh, rec, TaskStatus::Failed, None, Some(msg)), None)
        }
    }
}

pub(super) fn task_matrix(stage: &CompiledStage, combo: &[usize]) -> BTreeMap<String, Value> {
    stage
        .matrix
        .iter()
        .zip(combo)
        .map(|((k, v), &i)| (k.clone(), v[i].clone()))
        .collect()
}
