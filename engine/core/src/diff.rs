//! What differs between two runs: template values and stage params by
//! key, task values and metrics, and output digests. `engine diff` prints
//! it as a table, JSON or Markdown; `engine serve` shows it side by side.

use crate::digest::flatten_json as flatten;
use crate::records::RunRecord;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One side of the comparison, as the user named it.
#[derive(Debug, Serialize)]
pub struct Side {
    /// What the user typed.
    pub what: String,
    pub run: String,
    pub pipeline: String,
    /// The artifact the user named, when it was not a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The task that made that artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

impl Side {
    /// A side named by its run.
    pub fn run(what: &str, r: &RunRecord) -> Side {
        Side {
            what: what.into(),
            run: r.id.clone(),
            pipeline: r.pipeline.clone(),
            artifact: None,
            task: None,
        }
    }
}

/// A key whose value differs; `None` where one side lacks it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Change {
    pub key: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct Diff {
    pub a: Side,
    pub b: Side,
    /// Template values (`-f`, `--set`), by dotted key.
    pub values: Vec<Change>,
    /// Stage params (`with:`, `matrix:`, `map:`...) from the rendered
    /// pipelines, as `stage.with.key`.
    pub params: Vec<Change>,
    /// Values and metrics the tasks reported, as `task.key`.
    pub metrics: Vec<Change>,
    /// Output digests that differ, as `task.output`.
    pub outputs: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.params.is_empty()
            && self.metrics.is_empty()
            && self.outputs.is_empty()
    }
}

/// What differs between run `ra` (named by `sa`) and run `rb`.
pub fn compare(sa: Side, ra: &RunRecord, sb: Side, rb: &RunRecord) -> Diff {
    let mut va = BTreeMap::new();
    let mut vb = BTreeMap::new();
    flatten("", &ra.values, &mut va);
    flatten("", &rb.values, &mut vb);
    let mut pa = BTreeMap::new();
    let mut pb = BTreeMap::new();
    flatten("", &stage_params(&ra.spec), &mut pa);
    flatten("", &stage_params(&rb.spec), &mut pb);
    let mut ma = BTreeMap::new();
    let mut mb = BTreeMap::new();
    let mut oa = BTreeMap::new();
    let mut ob = BTreeMap::new();
    for (r, m, o) in [(ra, &mut ma, &mut oa), (rb, &mut mb, &mut ob)] {
        for t in &r.tasks {
            for (k, v) in &t.values {
                flatten(&format!("{}.{k}", t.task), v, m);
            }
            for (k, d) in &t.outputs {
                o.insert(format!("{}.{k}", t.task), Value::String(d.to_string()));
            }
        }
    }
    Diff {
        a: sa,
        b: sb,
        values: changes(&va, &vb),
        params: changes(&pa, &pb),
        metrics: changes(&ma, &mb),
        outputs: changes(&oa, &ob),
    }
}

/// `stages:` of a rendered pipeline without what only names things
/// (`uses` stays: a changed kind is a changed param).
pub fn stage_params(spec: &str) -> Value {
    let doc: Value = serde_saphyr::from_str(spec).unwrap_or(Value::Null);
    doc.get("stages").cloned().unwrap_or(Value::Null)
}

pub fn changes(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<Change> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Change {
            key: k.clone(),
            a: a.get(k).cloned(),
            b: b.get(k).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values_differ_by_key() {
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        flatten(
            "",
            &json!({"train": {"lr": 0.1, "epochs": 5}, "sport": "hockey"}),
            &mut a,
        );
        flatten(
            "",
            &json!({"train": {"lr": 0.01, "epochs": 5}, "seed": 3, "sport": "hockey"}),
            &mut b,
        );
        let c = changes(&a, &b);
        assert_eq!(
            c,
            vec![
                Change {
                    key: "seed".into(),
                    a: None,
                    b: Some(json!(3))
                },
                Change {
                    key: "train.lr".into(),
                    a: Some(json!(0.1)),
                    b: Some(json!(0.01))
                },
            ]
        );
    }

    #[test]
    fn stage_params_come_from_the_rendered_spec() {
        let spec = "name: p\nstages:\n  train:\n    uses: x\n    with: { epochs: 3, lr: 0.1 }\n";
        let mut out = BTreeMap::new();
        flatten("", &stage_params(spec), &mut out);
        assert_eq!(out.get("train.with.epochs"), Some(&json!(3)));
        assert_eq!(out.get("train.uses"), Some(&json!("x")));
        assert!(!out.contains_key("name"));
    }
}
