//! `engine plan`: what a run would do and why, without running anything.

use super::*;

/// What `engine plan` says about one task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub task: String,
    pub stage: String,
    pub kind: String,
    /// `run`, `cached` or `unknown` (depends on upstream results).
    pub action: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemCounts>,
}

/// Decides, without running anything, what a run would do.
pub async fn explain(
    pipeline: &Pipeline,
    plan: &Plan,
    store: &Store,
    force: &[String],
    no_cache: bool,
) -> Result<Vec<Decision>, StoreError> {
    let mut known: Vec<Option<BTreeMap<String, Digest>>> = vec![None; plan.tasks.len()];
    let mut out = Vec::with_capacity(plan.tasks.len());
    for (t, task) in plan.tasks.iter().enumerate() {
        let stage = &pipeline.stages[task.stage];
        let mut d = Decision {
            task: task.label.clone(),
            stage: stage.name.clone(),
            kind: stage.kind.clone(),
            action: "run".into(),
            reason: String::new(),
            items: None,
        };
        let mut inputs = BTreeMap::new();
        let mut upstream_unknown = None;
        for &n in &stage.needs {
            for u in plan.stage_tasks[n].clone() {
                match &known[u] {
                    Some(outs) => {
                        for (o, dig) in outs {
                            inputs.insert(
                                format!(
                                    "{}/{}/{}",
                                    pipeline.stages[n].name, plan.tasks[u].label, o
                                ),
                                dig.clone(),
                            );
                        }
                    }
                    None => upstream_unknown = Some(pipeline.stages[n].name.clone()),
                }
            }
        }
        let forced = force.iter().any(|f| f == &stage.name);
        if let Some(up) = upstream_unknown {
            d.action = "run".into();
            d.reason = format!("upstream `{up}` will run");
            out.push(d);
            continue;
        }
        let (params, version) = match task_stage(stage, &task.combo) {
            Ok((params, imp)) => (params, imp.version()),
            Err(why) => {
                d.reason = format!("invalid params: {why}");
                out.push(d);
                continue;
            }
        };
        let fp = match TaskFingerprint::of_task(stage, version, &params, inputs.clone()) {
            Ok(fp) => fp,
            Err(why) => {
                d.reason = why;
                out.push(d);
                continue;
            }
        };
        let policy = CachePolicy {
            forced,
            no_cache,
            verify: Verify::Size,
        };
        let use_cache = stage.cache && !no_cache && !forced;
        match decide(
            store,
            &pipeline.name,
            &task.label,
            stage,
            (&fp, &fp.digest()),
            &policy,
        )
        .await?
        {
            Decided::Cached(entry) => {
                d.action = "cached".into();
                d.reason = format!("cached from run {}", entry.run);
                known[t] = Some(entry.outputs);
                out.push(d);
                continue;
            }
            Decided::Run(reason) => d.reason = reason,
        }
        if let StageImpl::Task(s) = &stage.imp
            && stage.imp.always_run()
            && let Some(outputs) = s.foresee(store).await
        {
            known[t] = Some(outputs);
        }
        if let (Some(over), StageImpl::Map(m)) = (&stage.map, &stage.imp) {
            let mut side = vec![];
            for &n in stage.needs.iter().filter(|&&n| n != over.stage) {
                for u in plan.stage_tasks[n].clone() {
                    for (o, dig) in known[u].iter().flatten() {
                        side.push((plan.tasks[u].label.as_str(), o.as_str(), dig));
                    }
                }
            }
            let params = cache::item_params(&params, side.into_iter(), &fp.files);
            let mut counts = ItemCounts::default();
            for u in plan.stage_tasks[over.stage].clone() {
                if let Some(dig) = known[u].as_ref().and_then(|o| o.get(&over.output)) {
                    let man = store.get_manifest(dig).await?;
                    for it in &man.items {
                        counts.total += 1;
                        let ifp = cache::item_fingerprint(&stage.kind, m.version(), &params, it);
                        if use_cache
                            && matches!(
                                cache::lookup_item(store, &ifp, Verify::Size).await?,
                                cache::Lookup::Hit(_)
                            )
                        {
                            counts.cached += 1;
                        } else {
                            counts.run += 1;
                        }
                    }
                }
            }
            d.items = Some(counts);
        }
        out.push(d);
    }
    Ok(out)
}
