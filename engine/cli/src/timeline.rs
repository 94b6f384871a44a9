//! `engine show RUN --timeline`: a run's tasks on one time axis, as an
//! HTML page (a Gantt chart of when each task held its resources, and a
//! table).

use anyhow::{Context, Result};
use engine_core::records::{RunRecord, TaskStatus};
use serde::Serialize;

/// A run's timeline page: what the page shows and nothing else, so a
/// change in how records serialise (a field renamed, or left out when
/// empty) cannot break the page.
#[derive(Serialize)]
struct TimelinePage<'a> {
    id: &'a str,
    pipeline: &'a str,
    status: &'static str,
    seconds: f64,
    chart: Gantt<'a>,
    /// The task table, in the order of the record.
    rows: Vec<TaskRow<'a>>,
}

#[derive(Serialize)]
struct TaskRow<'a> {
    task: &'a str,
    status: &'static str,
    seconds: f64,
    reason: &'a str,
    error: &'a str,
}

#[derive(Serialize)]
struct Gantt<'a> {
    width: u32,
    height: usize,
    row: usize,
    label_w: u32,
    axis_y: usize,
    end_x: u32,
    end_s: f64,
    tasks: Vec<GanttRow<'a>>,
}

#[derive(Serialize)]
struct GanttRow<'a> {
    task: &'a str,
    status: &'static str,
    colour: &'static str,
    y: usize,
    spans: Vec<Span>,
}

#[derive(Serialize)]
struct Span {
    x: f64,
    w: f64,
    from_ms: f64,
    to_ms: f64,
}

/// A run as an HTML page: a Gantt chart of when each task held its
/// resources, coloured by status, and the task table.
pub fn timeline_html(r: &RunRecord) -> Result<String> {
    let end = r
        .tasks
        .iter()
        .filter_map(|t| t.finished_ms)
        .fold(1.0f64, f64::max);
    let row = 18;
    let (label_w, width) = (260u32, 900u32);
    let scale = (width - label_w - 20) as f64 / end;
    let colour = |s: TaskStatus| match s {
        TaskStatus::Done => "#4caf50",
        TaskStatus::Cached => "#64b5f6",
        TaskStatus::Failed => "#e53935",
        TaskStatus::Cancelled => "#fb8c00",
        _ => "#bdbdbd",
    };
    let tasks = r
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let spans: Vec<[f64; 2]> = if t.held_ms.is_empty() {
                match (t.started_ms, t.finished_ms) {
                    (Some(a), Some(b)) => vec![[a, b]],
                    _ => vec![],
                }
            } else {
                t.held_ms.clone()
            };
            GanttRow {
                task: &t.task,
                status: t.status.as_str(),
                colour: colour(t.status),
                y: i * row + 4,
                spans: spans
                    .into_iter()
                    .map(|[a, b]| Span {
                        x: label_w as f64 + a * scale,
                        w: ((b - a) * scale).max(1.5),
                        from_ms: a,
                        to_ms: b,
                    })
                    .collect(),
            }
        })
        .collect();
    let page = TimelinePage {
        id: &r.id,
        pipeline: &r.pipeline,
        status: r.status.as_str(),
        seconds: r.seconds,
        rows: r
            .tasks
            .iter()
            .map(|t| TaskRow {
                task: &t.task,
                status: t.status.as_str(),
                seconds: t.seconds(),
                reason: &t.reason,
                error: t.error.as_deref().unwrap_or(""),
            })
            .collect(),
        chart: Gantt {
            width,
            height: r.tasks.len() * row + 30,
            row,
            label_w,
            axis_y: r.tasks.len() * row + 20,
            end_x: width - 20,
            end_s: end / 1000.0,
            tasks,
        },
    };
    engine_core::html::render(
        "timeline.html",
        include_str!("templates/timeline.html"),
        &page,
    )
    .context("Failed to render the run's timeline page")
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_core::digest::Digest;

    fn run(task: &str, error: Option<&str>) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "id": "r<1>", "pipeline": "leagues & cups", "file": "p.yaml", "status": "failed",
            "started": "2026-11-28T10:00:00Z", "seconds": 1.5, "engine_version": "0",
            "host": "h", "pipeline_digest": Digest::of(b"p"), "spec": "", "values": {},
            "store": "file:///s", "executor": "local",
            "tasks": [{"task": task, "stage": "s", "kind": "shell", "status": "failed",
                       "reason": "no cache entry", "started_ms": 0.0, "finished_ms": 1000.0,
                       "error": error}],
        }))
        .unwrap()
    }

    #[test]
    fn the_timeline_draws_each_task_and_lists_it() {
        let html = timeline_html(&run("train[league=a]", None)).unwrap();
        assert!(html.contains("<h1>Run r&lt;1&gt;</h1>"), "{html}");
        assert!(html.contains("pipeline <b>leagues &amp; cups</b>, failed in 1.50 s"));
        assert!(html.contains(r##"<rect x="260.0" y="4" width="620.0" height="14" fill="#e53935"><title>train[league=a] failed: 0-1000 ms</title></rect>"##), "{html}");
        assert!(html.contains(r#"<text x="880" y="38" text-anchor="end">1.00 s</text>"#));
        assert!(html.contains("<tr><td>train[league=a]</td><td>failed</td><td>1.00</td><td>no cache entry</td><td></td></tr>"));
    }

    #[test]
    fn task_names_and_errors_are_escaped() {
        let html = timeline_html(&run("<script>x</script>", Some("a & b <i>"))).unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<i>"),
            "{html}"
        );
        assert!(
            html.contains("<text x=\"0\" y=\"16\">&lt;script&gt;x&lt;&#x2f;script&gt;</text>"),
            "{html}"
        );
        assert!(html.contains("<td>a &amp; b &lt;i&gt;</td>"));
    }
}
