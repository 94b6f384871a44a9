//! Draws the task graph as Graphviz DOT or Mermaid, coloured by state when
//! a run record is given.

use crate::compile::Pipeline;
use crate::plan::Plan;
use crate::records::{RunRecord, TaskStatus};

fn colour(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Done => "#8fd694",
        TaskStatus::Cached => "#b3d4fc",
        TaskStatus::Failed => "#f28b82",
        TaskStatus::Skipped => "#e0e0e0",
        TaskStatus::Cancelled => "#fbbc04",
        TaskStatus::Running => "#fff475",
        TaskStatus::Waiting => "#ffffff",
    }
}

/// Task-level edges: every task of a stage depends on every task of each
/// stage it needs.
fn edges(p: &Pipeline, plan: &Plan) -> Vec<(usize, usize)> {
    let mut e = vec![];
    for (t, task) in plan.tasks.iter().enumerate() {
        for &n in &p.stages[task.stage].needs {
            for u in plan.stage_tasks[n].clone() {
                e.push((u, t));
            }
        }
    }
    e
}

fn status_of(run: Option<&RunRecord>, label: &str) -> Option<TaskStatus> {
    run.and_then(|r| r.task(label)).map(|t| t.status)
}

pub fn dot(p: &Pipeline, plan: &Plan, run: Option<&RunRecord>) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n",
        p.name
    );
    for (i, t) in plan.tasks.iter().enumerate() {
        let kind = &p.stages[t.stage].kind;
        let label = t.label.replace('"', "\\\"");
        match status_of(run, &t.label) {
            Some(st) => s.push_str(&format!(
                "  t{i} [label=\"{label}\\n{kind}\\n{}\", fillcolor=\"{}\"];\n",
                st.as_str(),
                colour(st)
            )),
            None => s.push_str(&format!("  t{i} [label=\"{label}\\n{kind}\"];\n")),
        }
    }
    for (a, b) in edges(p, plan) {
        s.push_str(&format!("  t{a} -> t{b};\n"));
    }
    s.push_str("}\n");
    s
}

pub fn mermaid(p: &Pipeline, plan: &Plan, run: Option<&RunRecord>) -> String {
    let mut s = String::from("flowchart LR\n");
    let mut used = std::collections::BTreeSet::new();
    for (i, t) in plan.tasks.iter().enumerate() {
        let kind = &p.stages[t.stage].kind;
        let label = t.label.replace('"', "'");
        match status_of(run, &t.label) {
            Some(st) => {
                s.push_str(&format!(
                    "  t{i}[\"{label}<br/>{kind}<br/>{}\"]:::{}\n",
                    st.as_str(),
                    st.as_str()
                ));
                used.insert(st);
            }
            None => s.push_str(&format!("  t{i}[\"{label}<br/>{kind}\"]\n")),
        }
    }
    for (a, b) in edges(p, plan) {
        s.push_str(&format!("  t{a} --> t{b}\n"));
    }
    for st in used {
        s.push_str(&format!("  classDef {} fill:{}\n", st.as_str(), colour(st)));
    }
    s
}
