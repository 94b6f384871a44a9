//! Plans a pipeline: expands matrices into tasks and orders them on a
//! petgraph DAG of stages. Map stages stay one task each: their items are
//! known only at run time and fan out inside the task.

use crate::compile::Pipeline;
use petgraph::graph::DiGraph;
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
    let mut g = DiGraph::<usize, ()>::with_capacity(p.stages.len(), p.stages.len());
    let nodes: Vec<_> = (0..p.stages.len()).map(|i| g.add_node(i)).collect();
    let mut dependants = vec![vec![]; p.stages.len()];
    for (i, s) in p.stages.iter().enumerate() {
        for &n in &s.needs {
            g.add_edge(nodes[n], nodes[i], ());
            dependants[n].push(i);
        }
    }
    let stage_order: Vec<usize> = match petgraph::algo::toposort(&g, None) {
        Ok(order) => order.into_iter().map(|n| g[n]).collect(),
        Err(_) => (0..p.stages.len()).collect(), // unreachable after compile
    };
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
