//! Deciding whether a task runs, and why: shared by `engine run`
//! ([`super::execute`]) and `engine plan` ([`super::explain`]), so what
//! the plan says is what the run does.

use super::*;
use std::borrow::Cow;

/// A task's params (its matrix values applied) and its stage built from
/// them. A task without a matrix borrows the params and reuses the stage
/// compiled once (a rerun's cached task only hashes them).
pub(super) fn task_stage<'s>(
    stage: &'s CompiledStage,
    combo: &[usize],
) -> Result<(Cow<'s, Value>, StageImpl), crate::stage::ParamsError> {
    if combo.is_empty() {
        let params = if stage.params.is_null() {
            Cow::Owned(stage.params_for(combo))
        } else {
            Cow::Borrowed(&stage.params)
        };
        return Ok((params, stage.imp.clone()));
    }
    let params = Cow::Owned(stage.params_for(combo));
    let imp = crate::secrets::build_stage(stage.build, &params)?;
    Ok((params, imp))
}

/// What the cache says about a task.
pub(super) enum Decided {
    /// Its outputs are stored: reuse them.
    Cached(CacheEntry),
    /// It runs, for this reason.
    Run(String),
}

/// How a run treats the cache.
pub(super) struct CachePolicy {
    pub forced: bool,
    pub no_cache: bool,
    pub verify: Verify,
}

/// Looks `fp` (whose digest is `fpd`) up in the cache (when the stage and
/// `policy` allow it) and says why the task runs when it does: forced,
/// cache off, damaged outputs, a stage that reads outside state, or what
/// changed since the task's last fingerprint.
pub(super) async fn decide(
    store: &Store,
    pipeline: &str,
    label: &str,
    stage: &CompiledStage,
    (fp, fpd): (&TaskFingerprint, &Digest),
    policy: &CachePolicy,
) -> Result<Decided, StoreError> {
    let mut damaged = None;
    if stage.cache && !policy.no_cache && !policy.forced {
        match cache::lookup(store, fpd, policy.verify).await? {
            cache::Lookup::Hit(entry) => return Ok(Decided::Cached(entry)),
            cache::Lookup::Miss => {}
            cache::Lookup::Damaged(why) => damaged = Some(why),
        }
    }
    let reason = if policy.forced {
        "forced".into()
    } else if policy.no_cache {
        "cache disabled (--no-cache)".into()
    } else if let Some(why) = damaged {
        format!("cached outputs are damaged, running again: {why}")
    } else if !stage.cache {
        if stage.imp.always_run() {
            "runs every time (reads outside state)".into()
        } else {
            "cache: false".into()
        }
    } else {
        // An unreadable last fingerprint only costs the explanation.
        match store
            .get_json::<TaskFingerprint>(&cache::last_path(pipeline, label))
            .await
        {
            Ok(Some(before)) => fp.why_changed(&before),
            _ => "no cache entry".into(),
        }
    };
    Ok(Decided::Run(reason))
}
