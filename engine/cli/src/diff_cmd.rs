//! `engine diff A B`: what differs between two runs, or between the runs
//! that made two artifacts (refs, digests, `RUN/TASK`): template values and
//! stage params by key, task values and metrics, and output digests.
//!
//! The same [`Diff`] feeds the table, `--json` and `--md` (a PR comment).

use anyhow::{Result, anyhow};
use engine_core::diff::compare;
pub use engine_core::diff::{Change, Diff, Side};
use engine_core::digest::Digest;
use engine_core::records::{self, RunRecord};
use engine_core::store::Store;
use serde_json::Value;

/// Compares what `a` and `b` name.
pub async fn diff(store: &Store, a: &str, b: &str) -> Result<Diff> {
    let (sa, ra) = side(store, a).await?;
    let (sb, rb) = side(store, b).await?;
    Ok(compare(sa, &ra, sb, &rb))
}

/// A run id (or prefix, or `latest`), else an artifact whose lineage names
/// the run that made it.
async fn side(store: &Store, what: &str) -> Result<(Side, RunRecord)> {
    if !what.contains('/')
        && !what.contains('@')
        && let Some(r) = records::find_run(store, what).await?
    {
        let s = Side {
            what: what.into(),
            run: r.id.clone(),
            pipeline: r.pipeline.clone(),
            artifact: None,
            task: None,
        };
        return Ok((s, r));
    }
    let d: Digest = crate::show::resolve_artifact(store, what).await.map_err(|_| {
        anyhow!(
            "`{what}` is neither a run (id, prefix or `latest`), a ref, `RUN/TASK` nor an artifact digest in store {}; list runs with `engine runs`, refs with `engine ref ls`",
            store.url()
        )
    })?;
    let lin = records::load_lineage(store, &d).await?.ok_or_else(|| {
        anyhow!(
            "artifact {} (`{what}`) has no lineage in store {}: it was not made by a run (imported with `engine ref set`?), so there is no run to compare",
            d.short(),
            store.url()
        )
    })?;
    let r = records::load_run(store, &lin.run).await?.ok_or_else(|| {
        anyhow!(
            "run {} that made `{what}` is gone from store {}",
            lin.run,
            store.url()
        )
    })?;
    let s = Side {
        what: what.into(),
        run: r.id.clone(),
        pipeline: r.pipeline.clone(),
        artifact: Some(d.to_string()),
        task: Some(lin.task.clone()),
    };
    Ok((s, r))
}

fn shown(v: &Option<Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::String(s)) if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) => {
            s[..12].to_string()
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Some(v) => v.to_string(),
    }
}

fn delta(c: &Change) -> String {
    match (
        c.a.as_ref().and_then(Value::as_f64),
        c.b.as_ref().and_then(Value::as_f64),
    ) {
        (Some(a), Some(b)) => format!("{:+.4}", b - a),
        _ => String::new(),
    }
}

fn sections(d: &Diff) -> [(&'static str, &Vec<Change>); 4] {
    [
        ("values", &d.values),
        ("params", &d.params),
        ("metrics", &d.metrics),
        ("outputs", &d.outputs),
    ]
}

fn side_line(s: &Side) -> String {
    match (&s.artifact, &s.task) {
        (Some(a), Some(t)) => format!(
            "`{}` = {} made by {}/{t} ({})",
            s.what,
            &a[..12.min(a.len())],
            s.run,
            s.pipeline
        ),
        _ => format!("run {} ({})", s.run, s.pipeline),
    }
}

/// The terminal table.
pub fn text(d: &Diff) -> String {
    let mut out = format!("A: {}\nB: {}\n", side_line(&d.a), side_line(&d.b));
    if d.is_empty() {
        out.push_str("\nno differences in values, params, metrics or outputs\n");
        return out;
    }
    for (name, list) in sections(d) {
        if list.is_empty() {
            continue;
        }
        let w = list.iter().map(|c| c.key.len()).max().unwrap_or(0).max(3);
        out.push_str(&format!("\n{name} ({} differ)\n", list.len()));
        out.push_str(&format!(
            "  {:<w$}  {:>14}  {:>14}  {:>9}\n",
            "key", "A", "B", "B - A"
        ));
        for c in list {
            out.push_str(&format!(
                "  {:<w$}  {:>14}  {:>14}  {:>9}\n",
                c.key,
                shown(&c.a),
                shown(&c.b),
                delta(c)
            ));
        }
    }
    out
}

/// Markdown for a pull-request comment.
pub fn markdown(d: &Diff) -> String {
    let cell = |s: String| s.replace('|', "\\|");
    let mut out = format!(
        "### engine diff\n\n- **A**: {}\n- **B**: {}\n",
        side_line(&d.a),
        side_line(&d.b)
    );
    if d.is_empty() {
        out.push_str("\nNo differences in values, params, metrics or outputs.\n");
        return out;
    }
    for (name, list) in sections(d) {
        if list.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n#### {name} ({} differ)\n\n| key | A | B | B - A |\n|---|---:|---:|---:|\n",
            list.len()
        ));
        for c in list {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                cell(c.key.clone()),
                cell(shown(&c.a)),
                cell(shown(&c.b)),
                delta(c)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_numeric_change_shows_its_delta() {
        let c = Change {
            key: "train.lr".into(),
            a: Some(json!(0.1)),
            b: Some(json!(0.01)),
        };
        assert_eq!(delta(&c), "-0.0900");
        assert_eq!(shown(&c.a), "0.1000");
    }
}
