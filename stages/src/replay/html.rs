//! The model report a person reads: the trials of a sweep side by side, the
//! chosen trial's loss curves as an SVG plot, and its test figures per
//! league and broadcaster.

use serde_json::Value;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e9 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    }
}

/// An SVG line plot of named series (one value per epoch).
pub fn loss_plot(series: &[(&str, &str, Vec<f64>)], best_epoch: usize) -> String {
    let (w, h, pad) = (560.0, 240.0, 40.0);
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
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n - 1) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{pad}" y="{pad}" width="{}" height="{}" fill="none" stroke="#bbb"/>"##,
        w - 2.0 * pad,
        h - 2.0 * pad
    );
    let _ = write!(
        s,
        r#"<text x="4" y="{}">{hi:.3}</text><text x="4" y="{}">{lo:.3}</text>"#,
        pad + 4.0,
        h - pad
    );
    let _ = write!(s, r#"<text x="{}" y="{}">epoch</text>"#, w / 2.0, h - 8.0);
    if best_epoch > 0 {
        let bx = x(best_epoch - 1);
        let _ = write!(
            s,
            r##"<line x1="{bx}" y1="{pad}" x2="{bx}" y2="{}" stroke="#999" stroke-dasharray="4 3"/><text x="{}" y="{}">best {best_epoch}</text>"##,
            h - pad,
            bx + 3.0,
            pad + 12.0
        );
    }
    for (k, (name, colour, v)) in series.iter().enumerate() {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
            w - pad - 110.0,
            pad + 16.0 + 14.0 * k as f64,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

const FIGURES: [&str; 6] = [
    "segment_f1",
    "segment_mean_f1",
    "start_f1_1s",
    "end_f1_1s",
    "content_precision",
    "content_recall",
];

fn group_table(title: &str, groups: &Value) -> String {
    let mut s = format!("<h2>{}</h2><table><tr><th></th><th>videos</th>", esc(title));
    for f in FIGURES {
        let _ = write!(s, "<th>{f}</th>");
    }
    s.push_str("</tr>");
    for (name, g) in groups.as_object().into_iter().flatten() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td>",
            esc(name),
            num(&g["videos"])
        );
        for f in FIGURES {
            let _ = write!(s, "<td>{}</td>", num(&g[f]));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The page. `trials`: `[{trial, params, test, best_epoch}]`;
/// `metrics`: the chosen model's `metrics` (test, leagues, broadcasters, curves).
pub fn model_report(
    title: &str,
    chosen: &str,
    metric: &str,
    trials: &[Value],
    metrics: &Value,
) -> String {
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}tr.chosen{{background:#eef6ff;font-weight:bold}}</style></head><body><h1>{t}</h1>",
        t = esc(title)
    );
    let _ = write!(
        s,
        "<p>Chosen: <b>{}</b>, the best <code>{}</code> on the test split.</p>",
        esc(chosen),
        esc(metric)
    );
    s.push_str("<h2>Trials</h2><table><tr><th>trial</th><th>params</th>");
    for f in FIGURES {
        let _ = write!(s, "<th>{f}</th>");
    }
    s.push_str("<th>best epoch</th></tr>");
    for t in trials {
        let name = t["trial"].as_str().unwrap_or("?");
        let cls = if name == chosen {
            " class=\"chosen\""
        } else {
            ""
        };
        let params: String = ["hidden", "layers", "bidirectional", "lr"]
            .iter()
            .filter_map(|k| t["params"].get(*k).map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = write!(
            s,
            "<tr{cls}><td>{}</td><td>{}</td>",
            esc(name),
            esc(&params)
        );
        for f in FIGURES {
            let _ = write!(s, "<td>{}</td>", num(&t["test"][f]));
        }
        let _ = write!(s, "<td>{}</td></tr>", num(&t["best_epoch"]));
    }
    s.push_str("</table>");
    let curve = |k: &str| {
        metrics["curves"][k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let best = metrics["curves"]["best_epoch"].as_u64().unwrap_or(0) as usize;
    s.push_str("<h2>Loss of the chosen trial</h2>");
    s.push_str(&loss_plot(
        &[
            ("train", "#1f77b4", curve("train_loss")),
            ("validation", "#d62728", curve("val_loss")),
        ],
        best,
    ));
    s.push_str(&group_table("Test split per league", &metrics["leagues"]));
    s.push_str(&group_table(
        "Test split per broadcaster",
        &metrics["broadcasters"],
    ));
    s.push_str("</body></html>\n");
    s
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
        );
        assert!(html.contains("<tr class=\"chosen\"><td>train[hidden=64]</td>"));
        assert!(html.contains("<polyline"));
        assert!(html.contains("best 2"));
        assert!(html.contains("hoops-pro") && html.contains("net-one"));
        assert!(html.contains("0.950"));
    }
}
