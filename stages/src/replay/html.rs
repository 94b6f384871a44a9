//! The model report a person reads: the trials of a sweep side by side, the
//! chosen trial's loss curves as an SVG plot, and its test figures per
//! league and broadcaster.

use engine_core::stage::StageError;
use serde::Serialize;
use serde_json::Value;

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e9 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    }
}

/// An SVG line plot of named series (one value per epoch), as coordinates
/// the template draws.
#[derive(Serialize)]
struct LossPlot {
    w: u32,
    h: u32,
    pad: u32,
    lo: f64,
    hi: f64,
    best: Option<BestEpoch>,
    series: Vec<Series>,
}

#[derive(Serialize)]
struct BestEpoch {
    x: f64,
    epoch: usize,
}

#[derive(Serialize)]
struct Series {
    name: &'static str,
    colour: &'static str,
    /// `x,y x,y ...`, numbers only.
    points: String,
}

fn loss_plot(series: &[(&'static str, &'static str, Vec<f64>)], best_epoch: usize) -> LossPlot {
    let (w, h, pad) = (560u32, 240u32, 40u32);
    let (wf, hf, padf) = (w as f64, h as f64, pad as f64);
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(2);
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if ys.is_empty() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let x = |i: usize| padf + (wf - 2.0 * padf) * i as f64 / (n - 1) as f64;
    let y = |v: f64| hf - padf - (hf - 2.0 * padf) * (v - lo) / (hi - lo);
    LossPlot {
        w,
        h,
        pad,
        lo,
        hi,
        best: (best_epoch > 0).then(|| BestEpoch {
            x: x(best_epoch - 1),
            epoch: best_epoch,
        }),
        series: series
            .iter()
            .map(|(name, colour, v)| Series {
                name,
                colour,
                points: v
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect(),
    }
}

const FIGURES: [&str; 6] = [
    "segment_f1",
    "segment_mean_f1",
    "start_f1_1s",
    "end_f1_1s",
    "content_precision",
    "content_recall",
];

#[derive(Serialize)]
struct Trial<'a> {
    name: &'a str,
    chosen: bool,
    params: String,
    /// One per [`FIGURES`], formatted.
    cells: Vec<String>,
    best_epoch: String,
}

#[derive(Serialize)]
struct Group<'a> {
    name: &'a str,
    videos: String,
    cells: Vec<String>,
}

#[derive(Serialize)]
struct GroupTable<'a> {
    title: &'static str,
    rows: Vec<Group<'a>>,
}

#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    chosen: &'a str,
    metric: &'a str,
    figures: [&'static str; 6],
    trials: Vec<Trial<'a>>,
    plot: LossPlot,
    groups: [GroupTable<'a>; 2],
}

fn cells(figures: &Value) -> Vec<String> {
    FIGURES.iter().map(|f| num(&figures[f])).collect()
}

fn group_table<'a>(title: &'static str, groups: &'a Value) -> GroupTable<'a> {
    GroupTable {
        title,
        rows: groups
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, g)| Group {
                name,
                videos: num(&g["videos"]),
                cells: cells(g),
            })
            .collect(),
    }
}

/// The page. `trials`: `[{trial, params, test, best_epoch}]`;
/// `metrics`: the chosen model's `metrics` (test, leagues, broadcasters, curves).
pub fn model_report(
    title: &str,
    chosen: &str,
    metric: &str,
    trials: &[Value],
    metrics: &Value,
) -> Result<String, StageError> {
    let trials = trials
        .iter()
        .map(|t| {
            let name = t["trial"].as_str().unwrap_or("?");
            Trial {
                name,
                chosen: name == chosen,
                params: ["hidden", "layers", "bidirectional", "lr"]
                    .iter()
                    .filter_map(|k| t["params"].get(*k).map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(" "),
                cells: cells(&t["test"]),
                best_epoch: num(&t["best_epoch"]),
            }
        })
        .collect();
    let curve = |k: &str| {
        metrics["curves"][k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let best = metrics["curves"]["best_epoch"].as_u64().unwrap_or(0) as usize;
    let page = Page {
        title,
        chosen,
        metric,
        figures: FIGURES,
        trials,
        plot: loss_plot(
            &[
                ("train", "#1f77b4", curve("train_loss")),
                ("validation", "#d62728", curve("val_loss")),
            ],
            best,
        ),
        groups: [
            group_table("Test split per league", &metrics["leagues"]),
            group_table("Test split per broadcaster", &metrics["broadcasters"]),
        ],
    };
    engine_core::html::render(
        "model_report.html",
        include_str!("templates/model_report.html"),
        &page,
    )
    .map_err(|e| StageError::msg(format!("Failed to render the model report: {e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_shows_trials_curves_and_groups() {
        let trials = vec![
            json!({"trial": "train[hidden=32]", "params": {"hidden": 32}, "test": {"segment_f1": 0.9}, "best_epoch": 3}),
            json!({"trial": "train[hidden=64]", "params": {"hidden": 64}, "test": {"segment_f1": 0.95}, "best_epoch": 4}),
        ];
        let metrics = json!({
            "curves": {"train_loss": [0.5, 0.3, 0.2], "val_loss": [0.6, 0.4, 0.45], "best_epoch": 2},
            "leagues": {"hoops-pro": {"videos": 2, "segment_f1": 1.0}},
            "broadcasters": {"net-one": {"videos": 2, "segment_f1": 1.0}},
        });
        let html = model_report(
            "replay-basketball",
            "train[hidden=64]",
            "segment_f1",
            &trials,
            &metrics,
        )
        .unwrap();
        assert!(html.contains("<tr class=\"chosen\"><td>train[hidden=64]</td>"));
        assert!(html.contains("<polyline"));
        assert!(html.contains("best 2"));
        assert!(html.contains("hoops-pro") && html.contains("net-one"));
        assert!(html.contains("0.950"));
    }

    #[test]
    fn trial_and_league_names_are_escaped() {
        let trials = vec![json!({"trial": "t<script>", "params": {}, "test": {}, "best_epoch": 1})];
        let metrics = json!({
            "curves": {"train_loss": [0.5], "val_loss": [0.6], "best_epoch": 1},
            "leagues": {"<script>alert(1)</script>": {"videos": 1}},
            "broadcasters": {"A & B": {"videos": 1}},
        });
        let html = model_report("R&D <i>", "t<script>", "segment_f1", &trials, &metrics).unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<i>"),
            "{html}"
        );
        assert!(html.contains("<h1>R&amp;D &lt;i&gt;</h1>"));
        assert!(html.contains("<tr class=\"chosen\"><td>t&lt;script&gt;</td>"));
        assert!(
            html.contains(
                "<td>&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</td><td>1</td><td>-</td>"
            )
        );
        assert!(html.contains("<td>A &amp; B</td>"));
    }
}
