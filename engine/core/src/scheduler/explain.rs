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
        let params = stage.params_for(&task.combo);
        let version = if task.combo.is_empty() {
            stage.imp.version()
        } else {
            crate::secrets::build_stage(stage.build, &params)
                .map(|i| i.version())
                .unwrap_or(0)
        };
        let fp = match TaskFingerprint::of_task(stage, version, &params, inputs.clone()) {
            Ok(fp) => fp,
            Err(why) => {
                d.reason = why;
                out.push(d);
                continue;
            }
        };
        let fpd = fp.digest();
        let use_cache = stage.cache && !no_cache && !forced;
        let mut damaged = None;
        if use_cache {
            match cache::lookup(store, &fpd, Verify::Size).await? {
                cache::Lookup::Hit(entry) => {
                    d.action = "cached".into();
                    d.reason = format!("cached from run {}", entry.run);
                    known[t] = Some(entry.outputs);
                    out.push(d);
                    continue;
                }
                cache::Lookup::Miss => {}
                cache::Lookup::Damaged(why) => damaged = Some(why),
            }
        }
        d.reason = if forced {
            "forced".into()
        } else if no_cache {
            "cache disabled (--no-cache)".into()
        } else if let Some(why) = damaged {
            format!("cached outputs are damaged, running again: {why}")
        } else if !stage.cache {
            "cache: false".into()
        } else {
            match store
                .get_json::<TaskFingerprint>(&cache::last_path(&pipeline.name, &task.label))
                .await?
            {
                Some(before) => fp.why_changed(&before),
                None => "no cache entry".into(),
            }
        };
        if let StageImpl::Task(s) = &stage.imp
            && stage.imp.always_run()
            && let Some(outputs) = s.foresee(store).await
        {
            d.reason = "runs every time (reads outside state)".into();
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
