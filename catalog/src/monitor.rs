//! The monitor's figures: per-league (and per-broadcaster) precision and
//! recall of production predictions from review verdicts in a time window.
//!
//! TP = `correct`; FP = `false_alarm` (and legacy `false_positive`) +
//! `wrong_boundaries`; FN = `missed` + `wrong_boundaries` (a prediction with
//! wrong boundaries both claims a wrong span and leaves the true one
//! unfound). precision = TP / (TP + FP), recall = TP / (TP + FN); a ratio
//! with a zero denominator is undefined (`None`) and fails nothing.
//!
//! [`Catalog::verdict_rows`] reads the rows; [`judge`] is a pure function
//! over them and [`MonitorSettings`] (the `monitor:` key of a sport's values
//! file); [`prometheus`] renders the result as Prometheus text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::Catalog;
use crate::error::Result;

/// One review verdict with its video's league and broadcaster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictRow {
    pub league: Option<String>,
    pub broadcaster: Option<String>,
    /// As stored: `correct`, `wrong_boundaries`, `false_alarm`, `false_positive`, `missed`.
    pub verdict: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// Thresholds of one league (every field optional: unset ones come from the sport's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeagueThresholds {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub min_verdicts: Option<u64>,
}

/// The `monitor:` key of a sport's values file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    /// The sliding window, e.g. `14d`, `12h` (read by the CLI).
    #[serde(default = "default_window")]
    pub window: String,
    /// A league fails when its precision is below this.
    #[serde(default = "default_ratio")]
    pub precision: f64,
    /// A league fails when its recall is below this.
    #[serde(default = "default_ratio")]
    pub recall: f64,
    /// Fewer verdicts than this in the window: too few to judge.
    #[serde(default = "default_min_verdicts")]
    pub min_verdicts: u64,
    /// Per-league overrides.
    #[serde(default)]
    pub leagues: BTreeMap<String, LeagueThresholds>,
}

fn default_window() -> String {
    "14d".into()
}
fn default_ratio() -> f64 {
    0.9
}
fn default_min_verdicts() -> u64 {
    3
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            window: default_window(),
            precision: default_ratio(),
            recall: default_ratio(),
            min_verdicts: default_min_verdicts(),
            leagues: BTreeMap::new(),
        }
    }
}

/// Counts and ratios of one group of verdicts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub verdicts: u64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

impl Figures {
    fn add(&mut self, verdict: &str) {
        self.verdicts += 1;
        match verdict {
            "correct" => self.tp += 1,
            "false_alarm" | "false_positive" => self.fp += 1,
            "wrong_boundaries" => {
                self.fp += 1;
                self.fn_ += 1;
            }
            "missed" => self.fn_ += 1,
            _ => self.verdicts -= 1,
        }
    }
    fn finish(&mut self) {
        let ratio = |a: u64, b: u64| (a + b > 0).then(|| a as f64 / (a + b) as f64);
        self.precision = ratio(self.tp, self.fp);
        self.recall = ratio(self.tp, self.fn_);
    }
}

/// `ok`, `failing`, or `too_few` verdicts to judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failing,
    TooFew,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failing => "failing",
            Status::TooFew => "too few verdicts",
        }
    }
}

/// One league's figures, thresholds and status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeagueReport {
    pub league: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub precision_threshold: f64,
    pub recall_threshold: f64,
    pub min_verdicts: u64,
    pub status: Status,
}

/// One broadcaster's figures (for finding where errors cluster; no thresholds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BroadcasterReport {
    pub broadcaster: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The monitor's verdict on a sport.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    pub sport: String,
    pub window: String,
    pub leagues: Vec<LeagueReport>,
    pub broadcasters: Vec<BroadcasterReport>,
}

impl MonitorReport {
    /// Leagues below a threshold, by name.
    pub fn failing(&self) -> Vec<&str> {
        self.leagues
            .iter()
            .filter(|l| l.status == Status::Failing)
            .map(|l| l.league.as_str())
            .collect()
    }
    /// Verdicts counted.
    pub fn verdicts(&self) -> u64 {
        self.leagues.iter().map(|l| l.figures.verdicts).sum()
    }
}

/// The name of a missing league or broadcaster in reports.
pub const UNKNOWN: &str = "unknown";

/// Figures per league and broadcaster of `rows` (already limited to the
/// window), judged against `settings`.
pub fn judge(sport: &str, rows: &[VerdictRow], settings: &MonitorSettings) -> MonitorReport {
    let mut leagues: BTreeMap<String, Figures> = BTreeMap::new();
    let mut broadcasters: BTreeMap<String, Figures> = BTreeMap::new();
    for r in rows {
        let name = |s: &Option<String>| s.clone().unwrap_or_else(|| UNKNOWN.into());
        leagues.entry(name(&r.league)).or_default().add(&r.verdict);
        broadcasters
            .entry(name(&r.broadcaster))
            .or_default()
            .add(&r.verdict);
    }
    let leagues = leagues
        .into_iter()
        .map(|(league, mut figures)| {
            figures.finish();
            let o = settings.leagues.get(&league).cloned().unwrap_or_default();
            let precision_threshold = o.precision.unwrap_or(settings.precision);
            let recall_threshold = o.recall.unwrap_or(settings.recall);
            let min_verdicts = o.min_verdicts.unwrap_or(settings.min_verdicts);
            let below = |v: Option<f64>, t: f64| v.is_some_and(|v| v < t);
            let status = if figures.verdicts < min_verdicts {
                Status::TooFew
            } else if below(figures.precision, precision_threshold)
                || below(figures.recall, recall_threshold)
            {
                Status::Failing
            } else {
                Status::Ok
            };
            LeagueReport {
                league,
                figures,
                precision_threshold,
                recall_threshold,
                min_verdicts,
                status,
            }
        })
        .collect();
    let broadcasters = broadcasters
        .into_iter()
        .map(|(broadcaster, mut figures)| {
            figures.finish();
            BroadcasterReport {
                broadcaster,
                figures,
            }
        })
        .collect();
    MonitorReport {
        sport: sport.into(),
        window: settings.window.clone(),
        leagues,
        broadcasters,
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v}"),
        None => "NaN".into(),
    }
}

/// The report as Prometheus text exposition format (version 0.0.4): per
/// league `engine_monitor_{precision,recall,verdicts,failing,...}` with
/// `sport` and `league` labels, per broadcaster `engine_monitor_broadcaster_*`.
/// Undefined ratios are `NaN`.
pub fn prometheus(report: &MonitorReport) -> String {
    let sport = escape(&report.sport);
    let mut out = String::new();
    type Get<'a, T> = &'a dyn Fn(&T) -> String;
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in lines {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    };
    let league_metrics: [(&str, &str, Get<LeagueReport>); 7] = [
        (
            "precision",
            "Precision of production predictions from review verdicts in the window (NaN: no TP+FP).",
            &|l| number(l.figures.precision),
        ),
        (
            "recall",
            "Recall of production predictions from review verdicts in the window (NaN: no TP+FN).",
            &|l| number(l.figures.recall),
        ),
        ("verdicts", "Review verdicts in the window.", &|l| {
            l.figures.verdicts.to_string()
        }),
        (
            "true_positives",
            "Predictions reviewed correct in the window.",
            &|l| l.figures.tp.to_string(),
        ),
        (
            "false_positives",
            "False alarms and wrong boundaries in the window.",
            &|l| l.figures.fp.to_string(),
        ),
        (
            "false_negatives",
            "Missed replays and wrong boundaries in the window.",
            &|l| l.figures.fn_.to_string(),
        ),
        (
            "failing",
            "1 when the league is below its precision or recall threshold with enough verdicts.",
            &|l| u8::from(l.status == Status::Failing).to_string(),
        ),
    ];
    for (name, help, get) in league_metrics {
        let lines = report
            .leagues
            .iter()
            .map(|l| {
                (
                    format!("sport=\"{sport}\",league=\"{}\"", escape(&l.league)),
                    get(l),
                )
            })
            .collect();
        family(&format!("engine_monitor_{name}"), "gauge", help, lines);
    }
    let thresholds: [(&str, &str, Get<LeagueReport>); 2] = [
        (
            "precision_threshold",
            "The league's precision threshold.",
            &|l| l.precision_threshold.to_string(),
        ),
        ("recall_threshold", "The league's recall threshold.", &|l| {
            l.recall_threshold.to_string()
        }),
    ];
    for (name, help, get) in thresholds {
        let lines = report
            .leagues
            .iter()
            .map(|l| {
                (
                    format!("sport=\"{sport}\",league=\"{}\"", escape(&l.league)),
                    get(l),
                )
            })
            .collect();
        family(&format!("engine_monitor_{name}"), "gauge", help, lines);
    }
    let broadcaster_metrics: [(&str, &str, Get<BroadcasterReport>); 3] = [
        (
            "precision",
            "Precision per broadcaster in the window (NaN: no TP+FP).",
            &|b| number(b.figures.precision),
        ),
        (
            "recall",
            "Recall per broadcaster in the window (NaN: no TP+FN).",
            &|b| number(b.figures.recall),
        ),
        (
            "verdicts",
            "Review verdicts per broadcaster in the window.",
            &|b| b.figures.verdicts.to_string(),
        ),
    ];
    for (name, help, get) in broadcaster_metrics {
        let lines = report
            .broadcasters
            .iter()
            .map(|b| {
                (
                    format!(
                        "sport=\"{sport}\",broadcaster=\"{}\"",
                        escape(&b.broadcaster)
                    ),
                    get(b),
                )
            })
            .collect();
        family(
            &format!("engine_monitor_broadcaster_{name}"),
            "gauge",
            help,
            lines,
        );
    }
    out
}

impl Catalog {
    /// Verdicts on videos of `sport` recorded at or after `since` (RFC 3339
    /// UTC). With `model_version`, verdicts on that model's predictions and
    /// `missed` verdicts on videos it has predictions for.
    pub async fn verdict_rows(
        &self,
        sport: &str,
        since: &str,
        model_version: Option<&str>,
    ) -> Result<Vec<VerdictRow>> {
        let sql = format!(
            "SELECT v.league, v.broadcaster, r.verdict, r.created_at FROM reviews r JOIN videos v ON v.id = r.video_id \
             LEFT JOIN predictions p ON p.id = r.prediction_id WHERE v.sport = $1 AND r.created_at >= $2{} ORDER BY r.id",
            if model_version.is_some() {
                " AND (p.model_version = $3 OR (r.prediction_id IS NULL AND r.verdict = 'missed' AND EXISTS \
                 (SELECT 1 FROM predictions p2 WHERE p2.video_id = r.video_id AND p2.model_version = $3)))"
            } else {
                ""
            }
        );
        with_pool!(self, p => {
            let mut q = sqlx::query(&sql).bind(sport).bind(since);
            if let Some(m) = model_version {
                q = q.bind(m);
            }
            q.fetch_all(p).await.map(|rows| rows.iter().map(|r| VerdictRow {
                league: r.get(0), broadcaster: r.get(1), verdict: r.get(2), created_at: r.get(3),
            }).collect::<Vec<_>>())
        })
        .map_err(|e| self.sql_err(&sql, e))
    }

    /// Sets a review's `created_at` (RFC 3339 UTC): for tests and for
    /// importing verdicts recorded elsewhere.
    pub async fn set_review_time(&self, review_id: i64, created_at: &str) -> Result<()> {
        const SQL: &str = "UPDATE reviews SET created_at = $2 WHERE id = $1";
        with_pool!(self, p => sqlx::query(SQL).bind(review_id).bind(created_at).execute(p).await.map(|_| ()))
            .map_err(|e| self.sql_err(SQL, e))
    }
}

/// `now - window` as RFC 3339 UTC, the `since` of [`Catalog::verdict_rows`].
pub fn since(window: std::time::Duration) -> String {
    let t = time::OffsetDateTime::now_utc() - window;
    crate::db::rfc3339(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(league: &str, broadcaster: &str, verdict: &str) -> VerdictRow {
        VerdictRow {
            league: Some(league.into()),
            broadcaster: Some(broadcaster.into()),
            verdict: verdict.into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn figures_thresholds_and_overrides() {
        let mut rows = vec![];
        // a: 8 correct, 1 false alarm, 1 missed -> P 8/9, R 8/9.
        rows.extend((0..8).map(|_| row("a", "tv1", "correct")));
        rows.push(row("a", "tv1", "false_alarm"));
        rows.push(row("a", "tv2", "missed"));
        // b: 2 correct, 1 wrong boundaries, 1 legacy false positive -> P 2/4, R 2/3.
        rows.extend((0..2).map(|_| row("b", "tv2", "correct")));
        rows.push(row("b", "tv2", "wrong_boundaries"));
        rows.push(row("b", "tv2", "false_positive"));
        // c: 2 verdicts, below min_verdicts.
        rows.extend((0..2).map(|_| row("c", "tv1", "missed")));
        let settings: MonitorSettings = serde_json::from_value(serde_json::json!({
            "precision": 0.85, "recall": 0.9, "leagues": { "a": { "recall": 0.8 } }
        }))
        .unwrap();
        let r = judge("soccer", &rows, &settings);
        let a = &r.leagues[0];
        assert_eq!(
            (
                a.figures.verdicts,
                a.figures.tp,
                a.figures.fp,
                a.figures.fn_
            ),
            (10, 8, 1, 1)
        );
        assert!((a.figures.precision.unwrap() - 8.0 / 9.0).abs() < 1e-12);
        assert_eq!((a.recall_threshold, a.status), (0.8, Status::Ok));
        let b = &r.leagues[1];
        assert_eq!((b.figures.tp, b.figures.fp, b.figures.fn_), (2, 2, 1));
        assert_eq!(
            (b.figures.precision, b.status),
            (Some(0.5), Status::Failing)
        );
        let c = &r.leagues[2];
        assert_eq!(
            (c.figures.precision, c.figures.recall, c.status),
            (None, Some(0.0), Status::TooFew)
        );
        assert_eq!(r.failing(), ["b"]);
        let tv2 = r
            .broadcasters
            .iter()
            .find(|b| b.broadcaster == "tv2")
            .unwrap();
        assert_eq!(tv2.figures.verdicts, 5);

        let text = prometheus(&r);
        assert!(text.contains("# HELP engine_monitor_precision "), "{text}");
        assert!(
            text.contains("# TYPE engine_monitor_precision gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("engine_monitor_precision{sport=\"soccer\",league=\"b\"} 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains("engine_monitor_precision{sport=\"soccer\",league=\"c\"} NaN\n"),
            "{text}"
        );
        assert!(
            text.contains("engine_monitor_failing{sport=\"soccer\",league=\"b\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("engine_monitor_verdicts{sport=\"soccer\",league=\"a\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "engine_monitor_broadcaster_verdicts{sport=\"soccer\",broadcaster=\"tv2\"} 5\n"
            ),
            "{text}"
        );
        // Every sample line is `name{labels} value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').unwrap();
            assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn settings_reject_unknown_keys() {
        let e = serde_json::from_value::<MonitorSettings>(serde_json::json!({ "recal": 0.8 }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("recal"), "{e}");
    }
}
