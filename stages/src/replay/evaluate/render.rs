//! `evaluation.md` and `evaluation.html` from the `evaluation.json`
//! document: one view struct, two minijinja templates. The HTML template
//! is auto-escaped (its name ends in `.html`); bars are inline SVG whose
//! geometry is computed here, so the page needs no script or asset.

use engine_core::stage::StageError;
use minijinja::Environment;
use serde::Serialize;
use serde_json::Value;

/// The figures the tables show, in order.
const TABLE_METRICS: [&str; 6] = [
    "segment_f1",
    "segment_mean_f1",
    "start_f1_1s",
    "end_f1_1s",
    "content_f1",
    "content_recall",
];

/// The figures the Markdown per-league table shows.
const MD_METRICS: [&str; 4] = ["segment_f1", "start_f1_1s", "end_f1_1s", "content_f1"];

/// One chart per signal: (title, metric).
const CHARTS: [(&str, &str); 5] = [
    ("Start F1 (±1 s)", "start_f1_1s"),
    ("End F1 (±1 s)", "end_f1_1s"),
    ("Content F1 (frames)", "content_f1"),
    ("Content recall (frames)", "content_recall"),
    ("Segment F1 (tIoU ≥ 0.5)", "segment_f1"),
];

#[derive(Serialize)]
struct View {
    sport: String,
    passed: bool,
    verdict: String,
    candidate: String,
    production: Option<String>,
    gates: Vec<GateView>,
    failures: Vec<String>,
    notes: Vec<String>,
    weakest: Option<String>,
    leagues: Table,
    leagues_md: Table,
    broadcasters: Table,
    league_broadcasters: Table,
    charts: Vec<Chart>,
    videos: Vec<VideoView>,
}

#[derive(Serialize)]
struct GateView {
    gate: String,
    league: String,
    metric: String,
    candidate: String,
    production: String,
    threshold: String,
    /// `pass`, `fail` or `skipped`.
    result: &'static str,
}

#[derive(Serialize)]
struct Table {
    metrics: Vec<&'static str>,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    name: String,
    videos: String,
    cells: Vec<Cell>,
}

#[derive(Serialize)]
struct Cell {
    candidate: String,
    production: String,
    delta: String,
    /// `up`, `down` or empty: colours the delta.
    class: &'static str,
}

#[derive(Serialize)]
struct Chart {
    title: &'static str,
    metric: &'static str,
    width: f64,
    height: f64,
    bars: Vec<Bar>,
}

/// One group of a chart: a label and two bars, candidate above production.
#[derive(Serialize)]
struct Bar {
    label: String,
    y: f64,
    candidate_w: f64,
    candidate_text: String,
    production_w: Option<f64>,
    production_text: String,
}

#[derive(Serialize)]
struct VideoView {
    video: String,
    league: String,
    broadcaster: String,
    truth: usize,
    candidate: String,
    candidate_f1: String,
    production: String,
    production_f1: String,
}

const LABEL_W: f64 = 150.0;
const BAR_MAX: f64 = 300.0;
const ROW_H: f64 = 34.0;

/// A bar's length for a figure in [0, 1], to a tenth of a pixel; at least
/// one pixel so a zero still shows.
fn width(v: f64) -> f64 {
    ((BAR_MAX * v.clamp(0.0, 1.0)) * 10.0).round().max(10.0) / 10.0
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into())
}

fn short(d: &Value) -> Option<String> {
    d.as_str().map(|s| s.chars().take(12).collect())
}

fn row(name: &str, g: &Value, metrics: &[&'static str]) -> Row {
    let cells = metrics
        .iter()
        .map(|m| {
            let c = g["candidate"][m].as_f64();
            let p = g["production"][m].as_f64();
            let d = g["delta"][m].as_f64();
            Cell {
                candidate: fmt(c),
                production: if p.is_some() { fmt(p) } else { String::new() },
                delta: d.map(|d| format!("{d:+.3}")).unwrap_or_default(),
                class: match d {
                    Some(d) if d >= 0.0005 => "up",
                    Some(d) if d <= -0.0005 => "down",
                    _ => "",
                },
            }
        })
        .collect();
    Row {
        name: name.into(),
        videos: g["videos"].to_string(),
        cells,
    }
}

fn table(groups: &Value, overall: Option<(&str, &Value)>, metrics: &[&'static str]) -> Table {
    let mut rows: Vec<Row> = overall
        .map(|(n, g)| row(n, g, metrics))
        .into_iter()
        .collect();
    for (name, g) in groups.as_object().into_iter().flatten() {
        rows.push(row(name, g, metrics));
    }
    Table {
        metrics: metrics.to_vec(),
        rows,
    }
}

fn chart(title: &'static str, metric: &'static str, groups: &[(String, &Value)]) -> Chart {
    let bars: Vec<Bar> = groups
        .iter()
        .enumerate()
        .map(|(i, (label, g))| {
            let c = g["candidate"][metric].as_f64().unwrap_or(0.0);
            let p = g["production"][metric].as_f64();
            Bar {
                label: label.clone(),
                y: 28.0 + ROW_H * i as f64,
                candidate_w: width(c),
                candidate_text: format!("{c:.3}"),
                production_w: p.map(width),
                production_text: fmt(p),
            }
        })
        .collect();
    Chart {
        title,
        metric,
        width: LABEL_W + BAR_MAX + 60.0,
        height: 36.0 + ROW_H * bars.len() as f64,
        bars,
    }
}

fn view(doc: &Value) -> View {
    let groups = &doc["groups"];
    let sport = doc["sport"].as_str().unwrap_or("overall").to_string();
    let overall_name = format!("overall ({sport})");
    let gates = doc["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| GateView {
            gate: g["gate"].as_str().unwrap_or("").into(),
            league: g["league"].as_str().unwrap_or("").into(),
            metric: g["metric"].as_str().unwrap_or("").into(),
            candidate: fmt(g["candidate"].as_f64()),
            production: fmt(g["production"].as_f64()),
            threshold: fmt(g["threshold"].as_f64()),
            result: match (g["pass"].as_bool(), g["skipped"].as_bool()) {
                (_, Some(true)) => "skipped",
                (Some(true), _) => "pass",
                _ => "fail",
            },
        })
        .collect();
    let notes = doc["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["skipped"].as_bool() == Some(true))
        .filter_map(|g| g["note"].as_str().map(str::to_string))
        .collect();
    let mut chart_groups: Vec<(String, &Value)> = vec![("overall".into(), &groups["overall"])];
    for (name, g) in groups["leagues"].as_object().into_iter().flatten() {
        chart_groups.push((name.clone(), g));
    }
    let videos = doc["videos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let segs = |side: &Value| -> String {
                side["segments"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                format!(
                                    "{:.1}–{:.1}",
                                    s["start"].as_f64().unwrap_or(0.0),
                                    s["end"].as_f64().unwrap_or(0.0)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| "–".into())
            };
            VideoView {
                video: v["video"].as_str().unwrap_or("").into(),
                league: v["league"].as_str().unwrap_or("").into(),
                broadcaster: v["broadcaster"].as_str().unwrap_or("").into(),
                truth: v["truth"].as_array().map(Vec::len).unwrap_or(0),
                candidate: segs(&v["candidate"]),
                candidate_f1: fmt(v["candidate"]["segment_f1"].as_f64()),
                production: segs(&v["production"]),
                production_f1: fmt(v["production"]["segment_f1"].as_f64()),
            }
        })
        .collect();
    View {
        passed: doc["passed"].as_bool().unwrap_or(false),
        verdict: doc["verdict"].as_str().unwrap_or("").into(),
        candidate: short(&doc["models"]["candidate"]["digest"]).unwrap_or_default(),
        production: short(&doc["models"]["production"]["digest"]),
        gates,
        failures: doc["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect(),
        notes,
        weakest: doc["weakest_league"]["league"].as_str().map(|l| {
            format!(
                "`{l}` (segment_f1 {})",
                fmt(doc["weakest_league"]["candidate"].as_f64())
            )
        }),
        leagues: table(
            &groups["leagues"],
            Some((overall_name.as_str(), &groups["overall"])),
            &TABLE_METRICS,
        ),
        leagues_md: table(
            &groups["leagues"],
            Some((overall_name.as_str(), &groups["overall"])),
            &MD_METRICS,
        ),
        broadcasters: table(&groups["broadcasters"], None, &TABLE_METRICS),
        league_broadcasters: table(&groups["league_broadcasters"], None, &TABLE_METRICS),
        charts: CHARTS
            .iter()
            .map(|&(t, m)| chart(t, m, &chart_groups))
            .collect(),
        videos,
        sport,
    }
}

/// The shared page environment (layout, stylesheet; see
/// [`engine_core::html`]) with the evaluation's templates.
fn env() -> Environment<'static> {
    let mut env = engine_core::html::environment().expect("the shared layout parses");
    // A Markdown table cell must not contain a bare `|`.
    env.add_filter("cell", |s: String| s.replace('|', "\\|").replace('\n', " "));
    env.add_template("evaluation.md", include_str!("templates/evaluation.md.j2"))
        .expect("the Markdown template parses");
    env.add_template(
        "evaluation.html",
        include_str!("templates/evaluation.html.j2"),
    )
    .expect("the HTML template parses");
    env
}

fn render(name: &str, doc: &Value) -> Result<String, StageError> {
    let env = env();
    let t = env
        .get_template(name)
        .expect("templates are added in env()");
    t.render(minijinja::value::Serde(view(doc)))
        .map_err(|e| StageError::msg(format!("evaluate: Failed to render `{name}`: {e:#}")))
}

/// The PR comment: verdict, gate table, per-league table, weakest league.
pub fn markdown(doc: &Value) -> Result<String, StageError> {
    render("evaluation.md", doc)
}

/// The self-contained page: charts per signal, gates, tables.
pub fn html(doc: &Value) -> Result<String, StageError> {
    render("evaluation.html", doc)
}
