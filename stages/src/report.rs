//! `dataset.report`: a per-league summary of the video collections a stage
//! reads, as JSON and as an HTML page with a bar chart.

use async_trait::async_trait;
use engine_core::stage::{OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx};
use serde::{Deserialize, Serialize};
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

/// One league of the report: a row of `summary.json` and of the page.
/// Fields in alphabetical order, the order `summary.json` has always had.
#[derive(Serialize)]
struct LeagueSummary<'a> {
    broadcasters: &'a std::collections::BTreeSet<String>,
    league: &'a str,
    replay_share: f64,
    replays: u64,
    seconds: f64,
    sport: &'a str,
    videos: usize,
}

/// A bar of the replays-per-league chart, in SVG units.
#[derive(Serialize)]
struct Bar<'a> {
    league: &'a str,
    replays: u64,
    y: usize,
    w: f64,
}

#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    task: &'a str,
    videos: usize,
    replays: u64,
    chart_height: usize,
    bars: Vec<Bar<'a>>,
    leagues: &'a [LeagueSummary<'a>],
}

const BAR_H: usize = 26;

fn page_html(page: &Page) -> Result<String, StageError> {
    engine_core::html::render("report.html", include_str!("templates/report.html"), page)
        .map_err(|e| StageError::msg(format!("Failed to render report.html: {e:#}")))
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
        let summary: Vec<LeagueSummary> = rows
            .iter()
            .map(|(league, r)| LeagueSummary {
                league,
                sport: &r.sport,
                broadcasters: &r.broadcasters,
                videos: r.videos,
                seconds: r.seconds,
                replays: r.replays,
                replay_share: if r.seconds > 0.0 {
                    r.replay_seconds / r.seconds
                } else {
                    0.0
                },
            })
            .collect();
        let videos: usize = rows.values().map(|r| r.videos).sum();
        let replays: u64 = rows.values().map(|r| r.replays).sum();
        let max = rows.values().map(|r| r.replays).max().unwrap_or(1).max(1) as f64;
        let bars = rows
            .iter()
            .enumerate()
            .map(|(i, (league, r))| Bar {
                league,
                replays: r.replays,
                y: i * BAR_H + 5,
                w: (r.replays as f64 / max * 400.0).max(1.0),
            })
            .collect();
        let html = page_html(&Page {
            title: &self.0.title,
            task: ctx.task(),
            videos,
            replays,
            chart_height: rows.len() * BAR_H + 10,
            bars,
            leagues: &summary,
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn league_and_task_names_are_escaped() {
        let b: BTreeSet<String> = ["net <one> & co".to_string()].into();
        let leagues = [LeagueSummary {
            league: "<script>alert(1)</script>",
            sport: "basketball",
            broadcasters: &b,
            videos: 2,
            seconds: 120.0,
            replays: 3,
            replay_share: 0.25,
        }];
        let html = page_html(&Page {
            title: "Leagues & cups",
            task: "report[x=<b>]",
            videos: 2,
            replays: 3,
            chart_height: 36,
            bars: vec![Bar {
                league: "<script>alert(1)</script>",
                replays: 3,
                y: 5,
                w: 400.0,
            }],
            leagues: &leagues,
        })
        .unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("<h1>Leagues &amp; cups</h1>"));
        assert!(
            html.contains("<td>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</td>"),
            "{html}"
        );
        assert!(html.contains("net &lt;one&gt; &amp; co"));
        assert!(html.contains(r##"<rect x="160" y="5" width="400" height="18" fill="#4a7bd0"/><text x="565" y="19" font-size="12">3</text>"##));
        assert!(html.contains("<td>2.0</td><td>3</td><td>25.0%</td>"));
    }
}
