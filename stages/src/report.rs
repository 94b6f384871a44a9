//! `dataset.report`: a per-league summary of the video collections a stage
//! reads, as JSON and as an HTML page with a bar chart.

use async_trait::async_trait;
use engine_core::stage::{OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Params of `dataset.report`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Page title.
    #[serde(default = "default_title")]
    pub title: String,
}

fn default_title() -> String {
    "Dataset report".into()
}

struct Report(ReportConfig);

impl StageConfig for ReportConfig {
    const KIND: &'static str = "dataset.report";
    const SUMMARY: &'static str = "per-league summary of video collections (JSON + HTML)";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Report(self)))
    }
}

#[derive(Default, Clone)]
struct Row {
    sport: String,
    broadcasters: std::collections::BTreeSet<String>,
    videos: usize,
    seconds: f64,
    replays: u64,
    replay_seconds: f64,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[async_trait]
impl Stage for Report {
    fn version(&self) -> u32 {
        2
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("report")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for item in ctx.input_items(None) {
            let m = &item.meta;
            let s = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string()
            };
            let row = rows.entry(s("league")).or_default();
            row.sport = s("sport");
            row.broadcasters.insert(s("broadcaster"));
            row.videos += 1;
            let dur = m
                .pointer("/probe/duration")
                .or_else(|| m.get("duration"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            row.seconds += dur;
            // Generator items carry `replays`; catalog rows carry `labels`
            // of several sources: count one, `human` first, then `truth`.
            let labels = m.get("labels").and_then(Value::as_array).map(|all| {
                let of = |src: &str| -> Vec<&Value> {
                    all.iter()
                        .filter(|l| l.get("source").and_then(Value::as_str) == Some(src))
                        .collect()
                };
                let human = of("human");
                if human.is_empty() { of("truth") } else { human }
            });
            row.replays += m
                .get("replays")
                .and_then(Value::as_u64)
                .or_else(|| labels.as_ref().map(|l| l.len() as u64))
                .unwrap_or(0);
            row.replay_seconds += m
                .get("replay_seconds")
                .and_then(Value::as_f64)
                .unwrap_or_else(|| {
                    labels
                        .as_ref()
                        .map(|l| {
                            l.iter()
                                .map(|x| {
                                    x.get("end_s").and_then(Value::as_f64).unwrap_or(0.0)
                                        - x.get("start_s").and_then(Value::as_f64).unwrap_or(0.0)
                                })
                                .sum()
                        })
                        .unwrap_or(0.0)
                });
        }
        if rows.is_empty() {
            ctx.log("no videos in the inputs: the report is empty");
        }
        let summary: Vec<Value> = rows
            .iter()
            .map(|(league, r)| {
                json!({
                    "league": league, "sport": r.sport, "broadcasters": r.broadcasters,
                    "videos": r.videos, "seconds": r.seconds, "replays": r.replays,
                    "replay_share": if r.seconds > 0.0 { r.replay_seconds / r.seconds } else { 0.0 },
                })
            })
            .collect();
        let videos: usize = rows.values().map(|r| r.videos).sum();
        let replays: u64 = rows.values().map(|r| r.replays).sum();
        let max = rows.values().map(|r| r.replays).max().unwrap_or(1).max(1) as f64;
        let bar_h = 26;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"{}\" role=\"img\" aria-label=\"replays per league\">",
            rows.len() * bar_h + 10
        );
        for (i, (league, r)) in rows.iter().enumerate() {
            let w = (r.replays as f64 / max * 400.0).max(1.0);
            let y = i * bar_h + 5;
            svg.push_str(&format!(
                "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text><rect x=\"160\" y=\"{y}\" width=\"{w:.0}\" height=\"18\" fill=\"#4a7bd0\"/><text x=\"{:.0}\" y=\"{}\" font-size=\"12\">{}</text>",
                y + 14,
                esc(league),
                165.0 + w,
                y + 14,
                r.replays
            ));
        }
        svg.push_str("</svg>");
        let mut table = String::from(
            "<table><tr><th>league</th><th>sport</th><th>broadcasters</th><th>videos</th><th>minutes</th><th>replays</th><th>replay share</th></tr>",
        );
        for (league, r) in &rows {
            table.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{:.1}%</td></tr>",
                esc(league),
                esc(&r.sport),
                esc(&r.broadcasters.iter().cloned().collect::<Vec<_>>().join(", ")),
                r.videos,
                r.seconds / 60.0,
                r.replays,
                if r.seconds > 0.0 { 100.0 * r.replay_seconds / r.seconds } else { 0.0 }
            ));
        }
        table.push_str("</table>");
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head><body><h1>{t}</h1><p>{videos} videos, {replays} replays, task <code>{task}</code>.</p><h2>Replays per league</h2>{svg}<h2>Per league</h2>{table}</body></html>\n",
            t = esc(&self.0.title),
            task = esc(ctx.task()),
        );
        ctx.put_file("report", "report.html", html.into_bytes())
            .await?;
        let summary =
            serde_json::to_vec_pretty(&summary).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.put_file("report", "summary.json", summary).await?;
        ctx.set_value("videos", json!(videos));
        ctx.set_value("replays", json!(replays));
        Ok(())
    }
}
