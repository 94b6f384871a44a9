//! Checking the gates of DESIGN.md's evaluation protocol: floors per
//! league and overall, "these leagues improve by X", "no other league drops
//! by more than Y". Every check is one row; a failed row's message names
//! the league, the metric, both values and the threshold.

use super::config::Gates;
use super::score::{GroupFigures, Scores, round4};
use serde::Serialize;

/// Figures equal to a threshold up to rounding pass.
const EPS: f64 = 1e-9;

/// One check of one gate on one league (or `overall`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GateRow {
    /// `floors`, `overall`, `improve` or `no_regression`.
    pub gate: &'static str,
    /// A league, or `overall` for the sport as a whole.
    pub league: String,
    pub metric: String,
    /// The candidate's figure; `None` when the league has no golden videos.
    pub candidate: Option<f64>,
    /// Production's figure, when production has videos of the league.
    pub production: Option<f64>,
    /// The floor (`floors`, `overall`), the required gain `by` (`improve`)
    /// or `max_drop` (`no_regression`).
    pub threshold: f64,
    /// True when the check passed or was skipped.
    pub pass: bool,
    /// True when the check could not apply (no production model; a new
    /// league under `no_regression`); `note` says why.
    pub skipped: bool,
    /// Why it failed, or why it was skipped; empty when it passed.
    pub note: String,
}

/// Checks every gate. `has_production`: whether a production model's
/// predictions were given at all.
pub fn check(gates: &Gates, s: &Scores, has_production: bool) -> Vec<GateRow> {
    let mut rows = vec![];
    let leagues = || s.leagues.iter().map(|(k, g)| (k.as_str(), g));
    for (metric, &floor) in &gates.floors {
        for (league, g) in std::iter::once(("overall", &s.overall)).chain(leagues()) {
            rows.push(floor_row("floors", league, g, metric, floor));
        }
    }
    for (metric, &floor) in &gates.overall {
        rows.push(floor_row("overall", "overall", &s.overall, metric, floor));
    }
    let improving: &[String] = gates
        .improve
        .as_ref()
        .map(|i| &i.leagues[..])
        .unwrap_or(&[]);
    if let Some(imp) = &gates.improve {
        for league in &imp.leagues {
            let g = s.leagues.get(league);
            let mut row = GateRow {
                gate: "improve",
                league: league.clone(),
                metric: imp.metric.clone(),
                candidate: g.map(|g| g.candidate(&imp.metric)),
                production: g.and_then(|g| g.production(&imp.metric)),
                threshold: imp.by,
                pass: false,
                skipped: false,
                note: String::new(),
            };
            match (g, row.candidate, row.production) {
                (None, _, _) => {
                    row.note = format!(
                        "gate improve: league `{league}` has no golden videos, so its {} cannot be shown to improve by {:.3}",
                        imp.metric, imp.by
                    );
                }
                (Some(_), Some(c), _) if !has_production => {
                    row.pass = true;
                    row.skipped = true;
                    row.note = format!(
                        "gate improve: league `{league}` {} is {c:.3}; skipped: no production model to improve on",
                        imp.metric
                    );
                }
                (Some(_), Some(c), None) => {
                    row.note = format!(
                        "gate improve: league `{league}` {} is {c:.3} but production has no golden videos of it, so it cannot be shown to improve by {:.3}",
                        imp.metric, imp.by
                    );
                }
                (Some(_), Some(c), Some(p)) => {
                    let gain = round4(c - p);
                    row.pass = gain + EPS >= imp.by;
                    if !row.pass {
                        row.note = format!(
                            "gate improve: league `{league}` {} went {p:.3} -> {c:.3} (gain {gain:.3} < by {:.3})",
                            imp.metric, imp.by
                        );
                    }
                }
                (Some(_), None, _) => unreachable!("a league with videos has candidate figures"),
            }
            rows.push(row);
        }
    }
    if let Some(nr) = &gates.no_regression {
        for (league, g) in leagues().filter(|(l, _)| !improving.iter().any(|i| i.as_str() == *l)) {
            let c = g.candidate(&nr.metric);
            let p = g.production(&nr.metric);
            let mut row = GateRow {
                gate: "no_regression",
                league: league.into(),
                metric: nr.metric.clone(),
                candidate: Some(c),
                production: p,
                threshold: nr.max_drop,
                pass: true,
                skipped: false,
                note: String::new(),
            };
            match p {
                None => {
                    row.skipped = true;
                    row.note = if has_production {
                        format!(
                            "gate no_regression: league `{league}` is new (production has no golden videos of it); exempt"
                        )
                    } else {
                        format!(
                            "gate no_regression: league `{league}`: skipped: no production model"
                        )
                    };
                }
                Some(p) => {
                    let drop = round4(p - c);
                    row.pass = drop <= nr.max_drop + EPS;
                    if !row.pass {
                        row.note = format!(
                            "gate no_regression: league `{league}` {} fell {p:.3} -> {c:.3} (drop {drop:.3} > max_drop {:.3})",
                            nr.metric, nr.max_drop
                        );
                    }
                }
            }
            rows.push(row);
        }
    }
    rows
}

fn floor_row(
    gate: &'static str,
    league: &str,
    g: &GroupFigures,
    metric: &str,
    floor: f64,
) -> GateRow {
    let c = g.candidate(metric);
    let p = g.production(metric);
    let pass = c + EPS >= floor;
    let note = if pass {
        String::new()
    } else {
        let who = if league == "overall" {
            "overall".to_string()
        } else {
            format!("league `{league}`")
        };
        let prod = match p {
            Some(p) => format!("production {p:.3}"),
            None => "no production figure".into(),
        };
        format!("gate {gate}: {who} {metric} is {c:.3}, below the floor {floor:.3} ({prod})")
    };
    GateRow {
        gate,
        league: league.into(),
        metric: metric.into(),
        candidate: Some(c),
        production: p,
        threshold: floor,
        pass,
        skipped: false,
        note,
    }
}

/// The failure messages, in gate order.
pub fn failures(rows: &[GateRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| !r.pass)
        .map(|r| r.note.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::config::{Improve, NoRegression};
    use super::*;
    use crate::replay::metrics::Evaluation;
    use std::collections::BTreeMap;

    fn fig(c: &[(f64, f64)], p: Option<&[(f64, f64)]>) -> GroupFigures {
        let truth = [(0.0, 10.0), (20.0, 30.0)];
        GroupFigures {
            candidate: Evaluation::of_video(c, &truth, 400, 10.0),
            production: p.map(|p| Evaluation::of_video(p, &truth, 400, 10.0)),
        }
    }

    #[test]
    fn each_gate_names_league_metric_values_and_threshold() {
        let both = [(0.0, 10.0), (20.0, 30.0)];
        let one = [(0.0, 10.0)];
        let s = Scores {
            overall: fig(&both, Some(&one[..])),
            leagues: BTreeMap::from([
                ("good".to_string(), fig(&both, Some(&both[..]))),
                ("worse".to_string(), fig(&one, Some(&both[..]))),
                ("new".to_string(), fig(&both, None)),
            ]),
            ..Default::default()
        };
        let gates = Gates {
            floors: BTreeMap::from([("segment_f1".into(), 0.9)]),
            overall: BTreeMap::from([("segment_f1".into(), 0.99)]),
            improve: Some(Improve {
                leagues: vec!["good".into(), "absent".into()],
                metric: "segment_f1".into(),
                by: 0.05,
            }),
            no_regression: Some(NoRegression {
                metric: "segment_f1".into(),
                max_drop: 0.01,
            }),
        };
        let rows = check(&gates, &s, true);
        assert_eq!(
            failures(&rows),
            [
                "gate floors: league `worse` segment_f1 is 0.667, below the floor 0.900 (production 1.000)",
                "gate improve: league `good` segment_f1 went 1.000 -> 1.000 (gain 0.000 < by 0.050)",
                "gate improve: league `absent` has no golden videos, so its segment_f1 cannot be shown to improve by 0.050",
                "gate no_regression: league `worse` segment_f1 fell 1.000 -> 0.667 (drop 0.333 > max_drop 0.010)",
            ]
        );
        let new = rows
            .iter()
            .find(|r| r.gate == "no_regression" && r.league == "new")
            .unwrap();
        assert!(new.pass && new.skipped, "{new:?}");
        // Without production, improve is skipped but a missing league still fails.
        let rows = check(&gates, &s, false);
        let good = rows
            .iter()
            .find(|r| r.gate == "improve" && r.league == "good")
            .unwrap();
        assert!(good.pass && good.skipped && good.note.contains("skipped: no production model"));
    }
}
