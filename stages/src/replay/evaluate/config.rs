//! Params of `evaluate` and their checks. Every check runs when the
//! pipeline is compiled (`engine validate`), so a typo in a gate fails
//! before any model runs, with a message that names the key and the valid
//! choices.

use crate::replay::metrics::METRICS;
use engine_core::stage::ParamsError;
use engine_core::stage::{StageConfig, StageImpl};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Params of `evaluate`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateConfig {
    /// The `detect` stage that ran the candidate model over the golden
    /// videos; its `predictions` collection is scored. It must be in
    /// `needs`.
    pub candidate: String,
    /// The `detect` stage that ran the production model over the same
    /// videos, for the side-by-side figures and the `improve` and
    /// `no_regression` gates. Leave it out, or let its predictions say
    /// `"model": null`, when there is no production model yet: the report
    /// then shows the candidate alone.
    #[serde(default)]
    pub production: Option<String>,
    /// The sport's known leagues. When given, every league a gate names
    /// must be one of them.
    #[serde(default)]
    pub leagues: Option<Vec<String>>,
    /// What the candidate must reach to be deployed.
    #[serde(default)]
    pub gates: Gates,
}

/// The gates; each one is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// Minimum figures, by metric name, that every league and the sport
    /// overall must reach, e.g. `{ segment_f1: 0.9, start_f1_1s: 0.8 }`.
    #[serde(default)]
    pub floors: BTreeMap<String, f64>,
    /// Minimum figures, by metric name, for the sport overall only.
    #[serde(default)]
    pub overall: BTreeMap<String, f64>,
    /// Leagues the candidate must improve on production. Skipped (and noted)
    /// when there is no production model; a listed league without golden
    /// videos fails, since nothing shows it improved.
    #[serde(default)]
    pub improve: Option<Improve>,
    /// No league outside `improve.leagues` may fall more than `max_drop`
    /// below production. A league production has no videos of (a new
    /// league) is exempt; floors still apply to it.
    #[serde(default)]
    pub no_regression: Option<NoRegression>,
}

/// The `improve` gate.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Improve {
    /// The leagues this training run is for; may be empty.
    pub leagues: Vec<String>,
    /// The metric that must rise, e.g. `segment_f1`.
    pub metric: String,
    /// How much it must rise over production, in the metric's units
    /// (0.05 = five points of F1).
    pub by: f64,
}

/// The `no_regression` gate.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoRegression {
    /// The metric compared with production, e.g. `segment_f1`.
    pub metric: String,
    /// The largest drop below production allowed, e.g. 0.01.
    pub max_drop: f64,
}

impl StageConfig for EvaluateConfig {
    const KIND: &'static str = "evaluate";
    const SUMMARY: &'static str = "candidate vs production detector on the golden videos: figures per league and broadcaster, gates (evaluation.json/.md/.html)";
    /// Checks what serde cannot: stage names, metric names, league names
    /// and thresholds. Every problem goes in the one message.
    fn check(&self) -> Result<(), ParamsError> {
        let mut errs: Vec<String> = vec![];
        if self.candidate.trim().is_empty() {
            errs.push("`candidate` must name the `detect` stage of the candidate model".into());
        }
        if let Some(p) = &self.production {
            if p.trim().is_empty() {
                errs.push("`production` must name a `detect` stage (or be left out)".into());
            } else if *p == self.candidate {
                errs.push(format!(
                    "`candidate` and `production` are the same stage `{p}`; production must be the detect stage of the production model"
                ));
            }
        }
        let g = &self.gates;
        for (key, floors) in [("floors", &g.floors), ("overall", &g.overall)] {
            for (metric, v) in floors {
                check_metric(&mut errs, &format!("gates.{key}.{metric}"), metric);
                check_unit(&mut errs, &format!("gates.{key}.{metric}"), *v);
            }
        }
        if let Some(i) = &g.improve {
            check_metric(&mut errs, "gates.improve.metric", &i.metric);
            if !(i.by.is_finite() && i.by >= 0.0) {
                errs.push(format!(
                    "`gates.improve.by` must be a number of at least 0, got {}",
                    i.by
                ));
            }
            if let Some(known) = &self.leagues {
                for l in &i.leagues {
                    if !known.contains(l) {
                        errs.push(format!(
                            "`gates.improve.leagues`: unknown league `{l}`; the leagues are: {}",
                            known.join(", ")
                        ));
                    }
                }
            }
        }
        if let Some(n) = &g.no_regression {
            check_metric(&mut errs, "gates.no_regression.metric", &n.metric);
            if !(n.max_drop.is_finite() && n.max_drop >= 0.0) {
                errs.push(format!(
                    "`gates.no_regression.max_drop` must be a number of at least 0, got {}",
                    n.max_drop
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; ").into())
        }
    }
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(super::Evaluate(self)))
    }
}

fn check_metric(errs: &mut Vec<String>, key: &str, metric: &str) {
    if !METRICS.contains(&metric) {
        errs.push(format!(
            "`{key}`: unknown metric `{metric}`; the metrics are: {}",
            METRICS.join(", ")
        ));
    }
}

fn check_unit(errs: &mut Vec<String>, key: &str, v: f64) {
    if !(0.0..=1.0).contains(&v) {
        errs.push(format!("`{key}` must be between 0 and 1, got {v}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_core::stage::parse_params;
    use serde_json::json;

    fn check(v: serde_json::Value) -> Result<(), String> {
        parse_params::<EvaluateConfig>(&v)
            .map_err(|e| e.to_string())?
            .check()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_config_passes() {
        check(json!({
            "candidate": "a", "production": "b", "leagues": ["x", "y"],
            "gates": {
                "floors": {"segment_f1": 0.9, "start_f1_1s": 0.8},
                "overall": {"segment_f1": 0.95},
                "improve": {"leagues": [], "metric": "segment_f1", "by": 0.05},
                "no_regression": {"metric": "segment_f1", "max_drop": 0.01},
            }
        }))
        .unwrap();
    }

    #[test]
    fn bad_names_and_numbers_are_all_reported() {
        let e = check(json!({
            "candidate": "a", "production": "a", "leagues": ["x"],
            "gates": {
                "floors": {"segment_f2": 1.5},
                "improve": {"leagues": ["z"], "metric": "f1", "by": -1},
            }
        }))
        .unwrap_err();
        for want in [
            "`candidate` and `production` are the same stage `a`",
            "`gates.floors.segment_f2`: unknown metric `segment_f2`; the metrics are: segment_f1, ",
            "`gates.floors.segment_f2` must be between 0 and 1, got 1.5",
            "`gates.improve.metric`: unknown metric `f1`",
            "`gates.improve.by` must be a number of at least 0, got -1",
            "`gates.improve.leagues`: unknown league `z`; the leagues are: x",
        ] {
            assert!(e.contains(want), "{want}\nin: {e}");
        }
    }

    #[test]
    fn unknown_keys_name_the_key() {
        let e = check(json!({"candidate": "a", "gates": {"floor": {}}})).unwrap_err();
        assert!(e.contains("unknown field `floor`"), "{e}");
        let e = check(json!({"candidate": "a", "gates": {"no_regression": {"metric": "segment_f1", "drop": 1}}})).unwrap_err();
        assert!(e.contains("unknown field `drop`"), "{e}");
    }
}
