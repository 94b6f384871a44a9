//! Plans a pipeline: expands matrices into tasks and orders the stages
//! after the stages they need, in written order otherwise. Map stages stay
//! one task each: their items are known only at run time and fan out
//! inside the task.

use crate::compile::Pipeline;
use serde_json::Value;
use std::ops::Range;

/// One unit of scheduling.
#[derive(Debug, Clone)]
pub struct Task {
    pub stage: usize,
    /// Index into each matrix key's values (empty without a matrix).
    pub combo: Vec<usize>,
    /// `stage` or `stage[key=value,...]`.
    pub label: String,
}

/// Tasks in topological order of their stages.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tasks: Vec<Task>,
    /// The tasks of each stage, by stage index.
    pub stage_tasks: Vec<Range<usize>>,
    /// Stage indices, upstream first.
    pub stage_order: Vec<usize>,
    /// Stages that need each stage (reverse edges).
    pub dependants: Vec<Vec<usize>>,
}

impl Plan {
    pub fn task_index(&self, label: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.label == label)
    }
}

/// Expands and orders. The pipeline is already checked for cycles.
pub fn plan(p: &Pipeline) -> Plan {
    let mut dependants = vec![vec![]; p.stages.len()];
    for (i, s) in p.stages.iter().enumerate() {
        for &n in &s.needs {
            dependants[n].push(i);
        }
    }
    let stage_order = stage_order(p, &dependants);
    let total: usize = p.stages.iter().map(|s| s.task_count()).sum();
    let mut tasks = Vec::with_capacity(total);
    let mut stage_tasks = vec![0..0; p.stages.len()];
    for &si in &stage_order {
        let s = &p.stages[si];
        let start = tasks.len();
        if s.matrix.is_empty() {
            tasks.push(Task {
                stage: si,
                combo: vec![],
                label: s.name.clone(),
            });
        } else {
            let sizes: Vec<usize> = s.matrix.iter().map(|(_, v)| v.len()).collect();
            let mut combo = vec![0usize; sizes.len()];
            'outer: loop {
                tasks.push(Task {
                    stage: si,
                    combo: combo.clone(),
                    label: matrix_label(&s.name, &s.matrix, &combo),
                });
                for k in (0..combo.len()).rev() {
                    combo[k] += 1;
                    if combo[k] < sizes[k] {
                        continue 'outer;
                    }
                    combo[k] = 0;
                }
                break;
            }
        }
        stage_tasks[si] = start..tasks.len();
    }
    Plan {
        tasks,
        stage_tasks,
        stage_order,
        dependants,
    }
}

/// The stages in an order where each comes after the stages it needs and,
/// among those free to go, in the order they are written: a plan, a run's
/// events and its record list `extract_0` before `extract_1`. (petgraph's
/// depth-first `toposort` listed independent stages last-written first.)
/// The pipeline is already checked for cycles; a stage on one would be
/// left out here, so any such is appended in written order.
fn stage_order(p: &Pipeline, dependants: &[Vec<usize>]) -> Vec<usize> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = p.stages.len();
    let mut needs_left: Vec<usize> = p.stages.iter().map(|s| s.needs.len()).collect();
    let mut free: BinaryHeap<Reverse<usize>> = (0..n)
        .filter(|&i| needs_left[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = free.pop() {
        order.push(i);
        for &d in &dependants[i] {
            needs_left[d] -= 1;
            if needs_left[d] == 0 {
                free.push(Reverse(d));
            }
        }
    }
    if order.len() < n {
        let mut placed = vec![false; n];
        for &i in &order {
            placed[i] = true;
        }
        order.extend((0..n).filter(|&i| !placed[i]));
    }
    order
}

/// `train[hidden=64,lr=0.001]`.
pub fn matrix_label(name: &str, matrix: &[(String, Vec<Value>)], combo: &[usize]) -> String {
    let mut s = String::with_capacity(name.len() + 16 * matrix.len());
    s.push_str(name);
    s.push('[');
    for (i, ((k, vals), &c)) in matrix.iter().zip(combo).enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push('=');
        match &vals[c] {
            Value::String(v) => s.push_str(v),
            v => s.push_str(&v.to_string()),
        }
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::stage::Registry;

    fn order(yaml: &str) -> Vec<String> {
        let p = compile("p.yaml", yaml, &Registry::with_builtins()).unwrap();
        plan(&p).tasks.into_iter().map(|t| t.label).collect()
    }

    #[test]
    fn stages_come_after_what_they_need_and_otherwise_as_written() {
        let stage = |name: &str, needs: &str| {
            format!(
                "  {name}:\n    uses: builtin.echo\n    needs: [{needs}]\n    with: {{ text: x }}\n"
            )
        };
        // Independent stages: as written (petgraph's toposort gave c, b, a).
        let yaml = format!(
            "name: o\nstages:\n{}{}{}",
            stage("a", ""),
            stage("b", ""),
            stage("c", "")
        );
        assert_eq!(order(&yaml), ["a", "b", "c"]);
        // `first` is written last but needed by `second`; `other` is free
        // from the start and written before `second`.
        let yaml = format!(
            "name: o\nstages:\n{}{}{}{}",
            stage("report", "second, other"),
            stage("second", "first"),
            stage("other", ""),
            stage("first", ""),
        );
        assert_eq!(order(&yaml), ["other", "first", "second", "report"]);
    }
}
