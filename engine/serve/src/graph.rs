//! The stage DAG of a run, laid out by the engine (no JavaScript): stages
//! ranked by their longest path from a source, one column per rank, rows
//! ordered by the mean row of their upstream stages; drawn as inline SVG
//! by `templates/dag.html`. Also the timeline (Gantt) of tasks.

use crate::views::{task_state, task_url};
use engine_core::records::RunRecord;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

pub const NODE_W: f64 = 190.0;
pub const NODE_H: f64 = 74.0;
const COL_GAP: f64 = 70.0;
const ROW_GAP: f64 = 26.0;
const MARGIN: f64 = 12.0;

/// One matrix trial (a task of a stage with several tasks).
#[derive(Debug, Serialize)]
pub struct Trial {
    pub label: String,
    pub state: &'static str,
    pub url: String,
    pub x: f64,
}

/// A stage with its tasks aggregated, and where it is drawn.
#[derive(Debug, Serialize)]
pub struct StageNode {
    pub name: String,
    /// The name cut to fit the box.
    pub label: String,
    pub kind: String,
    pub kind_label: String,
    /// The state its colour shows: `failed` if any task failed, `running`
    /// while any runs, `done`/`cached` when all succeeded, ...
    pub state: &'static str,
    /// `3 done, 1 running`.
    pub summary: String,
    /// A map stage's items: done and total, and the bar's width.
    pub items: Option<Items>,
    /// A matrix stage's trials.
    pub trials: Vec<Trial>,
    pub url: String,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Serialize)]
pub struct Items {
    pub done: usize,
    pub total: usize,
    pub bar: f64,
}

#[derive(Debug, Serialize)]
pub struct Edge {
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct Graph {
    pub nodes: Vec<StageNode>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
    pub node_w: f64,
    pub node_h: f64,
}

/// Upstream stages of each stage, from the rendered spec: `needs:` and
/// the stage a `map: {over: STAGE.OUTPUT}` reads; and, for records whose
/// spec does not parse, the stages the task inputs came from.
fn upstream(run: &RunRecord, stages: &[String]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut preds = vec![vec![]; stages.len()];
    let mut add = |i: usize, from: &str| {
        if let Some(&j) = index.get(from)
            && j != i
            && !preds[i].contains(&j)
        {
            preds[i].push(j);
        }
    };
    let doc: Value = serde_saphyr::from_str(&run.spec).unwrap_or(Value::Null);
    if let Some(map) = doc.get("stages").and_then(Value::as_object) {
        for (name, st) in map {
            let Some(&i) = index.get(name.as_str()) else {
                continue;
            };
            for n in st
                .get("needs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = n.as_str() {
                    add(i, n);
                }
            }
            if let Some(over) = st.pointer("/map/over").and_then(Value::as_str) {
                add(i, over.split('.').next().unwrap_or(""));
            }
        }
    }
    for t in &run.tasks {
        let Some(&i) = index.get(t.stage.as_str()) else {
            continue;
        };
        for input in &t.inputs {
            add(i, input.name.split('/').next().unwrap_or(""));
        }
    }
    preds
}

/// Longest-path rank of each stage; a cycle (a damaged record) is cut
/// where it is found.
fn ranks(preds: &[Vec<usize>]) -> Vec<usize> {
    fn visit(i: usize, preds: &[Vec<usize>], rank: &mut [Option<usize>], on: &mut [bool]) -> usize {
        if let Some(r) = rank[i] {
            return r;
        }
        on[i] = true;
        let mut r = 0;
        for &p in &preds[i] {
            if !on[p] {
                r = r.max(visit(p, preds, rank, on) + 1);
            }
        }
        on[i] = false;
        rank[i] = Some(r);
        r
    }
    let mut rank = vec![None; preds.len()];
    let mut on = vec![false; preds.len()];
    (0..preds.len())
        .map(|i| visit(i, preds, &mut rank, &mut on))
        .collect()
}

/// `s` cut to `n` characters, with `…` when cut.
pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

/// The state a group of task states shows as one.
pub fn aggregate(states: &[&'static str]) -> &'static str {
    let has = |s: &str| states.contains(&s);
    let all = |s: &str| !states.is_empty() && states.iter().all(|x| *x == s);
    if has("failed") {
        "failed"
    } else if has("interrupted") {
        "interrupted"
    } else if has("running") {
        "running"
    } else if has("cancelled") {
        "cancelled"
    } else if all("cached") {
        "cached"
    } else if all("skipped") {
        "skipped"
    } else if has("waiting") {
        if states.iter().any(|s| *s == "done" || *s == "cached") {
            "running"
        } else {
            "waiting"
        }
    } else {
        "done"
    }
}

pub fn stage_graph(run: &RunRecord) -> Graph {
    let mut stages: Vec<String> = vec![];
    let mut tasks_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, t) in run.tasks.iter().enumerate() {
        if !tasks_of.contains_key(t.stage.as_str()) {
            stages.push(t.stage.clone());
        }
        tasks_of.entry(t.stage.as_str()).or_default().push(i);
    }
    let preds = upstream(run, &stages);
    let rank = ranks(&preds);
    // Rows: rank by rank, each stage placed by the mean row of its
    // upstream stages, so edges mostly run straight.
    let max_rank = rank.iter().copied().max().unwrap_or(0);
    let mut row = vec![0f64; stages.len()];
    let mut rows_used = 0usize;
    for r in 0..=max_rank {
        let mut col: Vec<usize> = (0..stages.len()).filter(|&i| rank[i] == r).collect();
        let key = |i: usize| {
            if preds[i].is_empty() {
                i as f64
            } else {
                preds[i].iter().map(|&p| row[p]).sum::<f64>() / preds[i].len() as f64
            }
        };
        col.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        for (k, &i) in col.iter().enumerate() {
            row[i] = k as f64;
        }
        rows_used = rows_used.max(col.len());
    }
    let pos = |i: usize| {
        (
            MARGIN + rank[i] as f64 * (NODE_W + COL_GAP),
            MARGIN + row[i] * (NODE_H + ROW_GAP),
        )
    };
    let interrupted = run.interrupted();
    let mut nodes = vec![];
    for (i, name) in stages.iter().enumerate() {
        let idx = &tasks_of[name.as_str()];
        let states: Vec<&'static str> = idx
            .iter()
            .map(|&t| task_state(&run.tasks[t], interrupted))
            .collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &states {
            *counts.entry(s).or_insert(0) += 1;
        }
        let summary = counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let first = &run.tasks[idx[0]];
        let items = if idx.len() == 1 {
            first.items.map(|c| {
                let done = (c.run + c.cached).min(c.total);
                Items {
                    done,
                    total: c.total,
                    bar: if c.total == 0 {
                        NODE_W - 20.0
                    } else {
                        (NODE_W - 20.0) * done as f64 / c.total as f64
                    },
                }
            })
        } else {
            None
        };
        // At most 40 trial squares fit; the summary counts them all.
        let trials = if idx.len() > 1 {
            idx.iter()
                .zip(&states)
                .take(40)
                .enumerate()
                .map(|(k, (&t, &state))| Trial {
                    label: run.tasks[t].task.clone(),
                    state,
                    url: task_url(&run.id, &run.tasks[t].task),
                    x: 10.0 + (k % 20) as f64 * 8.5,
                })
                .collect()
        } else {
            vec![]
        };
        let (x, y) = pos(i);
        nodes.push(StageNode {
            name: name.clone(),
            label: cut(name, 24),
            kind: first.kind.clone(),
            kind_label: cut(&first.kind, 18),
            state: aggregate(&states),
            summary,
            items,
            trials,
            url: task_url(&run.id, &first.task),
            x,
            y,
        });
    }
    let mut edges = vec![];
    for (i, ps) in preds.iter().enumerate() {
        for &p in ps {
            let (x1, y1) = pos(p);
            let (x2, y2) = pos(i);
            let (ax, ay) = (x1 + NODE_W, y1 + NODE_H / 2.0);
            let (bx, by) = (x2, y2 + NODE_H / 2.0);
            let dx = (bx - ax).abs() / 2.0;
            edges.push(Edge {
                path: format!(
                    "M{ax:.1} {ay:.1} C{:.1} {ay:.1} {:.1} {by:.1} {bx:.1} {by:.1}",
                    ax + dx,
                    bx - dx
                ),
            });
        }
    }
    Graph {
        nodes,
        edges,
        width: 2.0 * MARGIN + (max_rank + 1) as f64 * (NODE_W + COL_GAP) - COL_GAP,
        height: 2.0 * MARGIN + rows_used.max(1) as f64 * (NODE_H + ROW_GAP) - ROW_GAP,
        node_w: NODE_W,
        node_h: NODE_H,
    }
}

/// One bar of the timeline: a span when a task held its resources.
#[derive(Debug, Serialize)]
pub struct Bar {
    pub x: f64,
    pub w: f64,
    pub title: String,
}

#[derive(Debug, Serialize)]
pub struct TimelineRow {
    pub label: String,
    /// The label cut to fit the label column.
    pub short: String,
    pub state: &'static str,
    pub url: String,
    pub y: f64,
    pub bars: Vec<Bar>,
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub rows: Vec<TimelineRow>,
    pub width: f64,
    pub height: f64,
    pub label_w: f64,
    pub end_s: String,
    /// Tasks left out (the timeline shows the first [`TIMELINE_ROWS`]).
    pub hidden: usize,
}

/// The most rows the timeline draws; a run of 10,000 tasks lists them all
/// in its table, but a chart that tall helps no one.
pub const TIMELINE_ROWS: usize = 500;

pub fn timeline(run: &RunRecord) -> Timeline {
    let interrupted = run.interrupted();
    let end = run
        .tasks
        .iter()
        .flat_map(|t| {
            t.finished_ms
                .into_iter()
                .chain(t.held_ms.iter().map(|h| h[1]))
        })
        .fold(1.0f64, f64::max);
    let (label_w, width, row) = (240.0, 1100.0, 18.0);
    let scale = (width - label_w - 20.0) / end;
    let mut rows = vec![];
    for (i, t) in run.tasks.iter().take(TIMELINE_ROWS).enumerate() {
        let spans: Vec<[f64; 2]> = if t.held_ms.is_empty() {
            match (t.started_ms, t.finished_ms) {
                (Some(a), Some(b)) => vec![[a, b]],
                (Some(a), None) => vec![[a, end]],
                _ => vec![],
            }
        } else {
            t.held_ms.clone()
        };
        let state = task_state(t, interrupted);
        rows.push(TimelineRow {
            label: t.task.clone(),
            short: cut(&t.task, 38),
            state,
            url: task_url(&run.id, &t.task),
            y: i as f64 * row + 4.0,
            bars: spans
                .iter()
                .map(|[a, b]| Bar {
                    x: label_w + a * scale,
                    w: ((b - a) * scale).max(1.5),
                    title: format!("{} {state}: {:.0}-{:.0} ms", t.task, a, b),
                })
                .collect(),
        });
    }
    Timeline {
        height: rows.len() as f64 * row + 30.0,
        rows,
        width,
        label_w,
        end_s: format!("{:.2} s", end / 1000.0),
        hidden: run.tasks.len().saturating_sub(TIMELINE_ROWS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_longest_path() {
        // 0 -> 1 -> 2, 0 -> 2, 3 alone.
        let preds = vec![vec![], vec![0], vec![0, 1], vec![]];
        assert_eq!(ranks(&preds), vec![0, 1, 2, 0]);
        // A cycle in a damaged record does not loop forever.
        assert_eq!(ranks(&[vec![1], vec![0]]).len(), 2);
    }

    #[test]
    fn a_stage_shows_its_worst_state() {
        assert_eq!(aggregate(&["done", "failed"]), "failed");
        assert_eq!(aggregate(&["done", "waiting"]), "running");
        assert_eq!(aggregate(&["cached", "cached"]), "cached");
        assert_eq!(aggregate(&["cached", "done"]), "done");
        assert_eq!(aggregate(&["waiting"]), "waiting");
    }
}
