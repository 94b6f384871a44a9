//! `model.deploy`: the last gate before production. It passes a replay
//! detector through unchanged (same files, same meta, so the same digest)
//! only when the model was trained on this pipeline's sport and an
//! `evaluate` of this very model passed its gates; the stage's `publish:`
//! then moves `models/SPORT@production`, and the ref history records the
//! run and the evaluation (the `evaluation` value).
//!
//! A refusal fails the task, so the run is red and nothing downstream (the
//! ref move included) happens. The checks read only JSON, not weights, so
//! the stage needs no libtorch.

use std::sync::Arc;

use async_trait::async_trait;
use engine_core::stage::{
    Input, OutputDecl, Stage, StageConfig, StageEnv, StageError, StageImpl, TaskCtx,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// Params of `model.deploy`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// The sport this pipeline deploys for (`basketball`); a model trained on
    /// another sport is refused.
    pub sport: String,
    /// Refuse a model without a passed `evaluate` of that very model among
    /// the inputs. Default true.
    #[serde(default = "yes")]
    pub require_evaluation: bool,
}

fn yes() -> bool {
    true
}

struct Deploy(DeployConfig);

impl StageConfig for DeployConfig {
    const KIND: &'static str = "model.deploy";
    const SUMMARY: &'static str = "passes a replay detector on for `publish:` only if it is of this sport and its evaluation passed";
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Deploy(self)))
    }
}

fn norm_sport(s: &str) -> String {
    if s == "ice-hockey" {
        "hockey".into()
    } else {
        s.to_ascii_lowercase()
    }
}

/// The evaluation's verdict on one candidate.
struct Verdict {
    passed: bool,
    candidate: Option<String>,
    failures: Vec<String>,
}

fn verdict_of(doc: &Value) -> Verdict {
    let candidate = [
        "/models/candidate/digest",
        "/models/candidate",
        "/candidate/model",
        "/candidate/digest",
        "/candidate",
    ]
    .iter()
    .find_map(|p| doc.pointer(p).and_then(Value::as_str))
    .map(str::to_string);
    Verdict {
        passed: doc.get("passed").and_then(Value::as_bool).unwrap_or(false),
        candidate,
        failures: doc
            .get("failures")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

async fn read_json(ctx: &StageEnv, input: &Input, file: &str) -> Result<Value, StageError> {
    let blob = &input.manifest.files[file];
    let bytes = ctx.read(blob).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        StageError::msg(format!(
            "Failed to parse `{file}` of the output of `{}`: {e}",
            input.task
        ))
    })
}

#[async_trait]
impl Stage for Deploy {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact("model")]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let c = &self.0;
        let models: Vec<Input> = ctx
            .inputs()
            .iter()
            .filter(|i| i.manifest.files.contains_key("model.json"))
            .cloned()
            .collect();
        let model = match models.as_slice() {
            [m] => m.clone(),
            [] => {
                return Err(StageError::msg(
                    "model.deploy found no replay detector among its inputs; put `model.select` in its `needs`",
                ));
            }
            many => {
                return Err(StageError::msg(format!(
                    "model.deploy found {} models among its inputs ({}); it deploys exactly one: need only `model.select`",
                    many.len(),
                    many.iter()
                        .map(|i| format!("`{}`", i.task))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let info = read_json(ctx, &model, "model.json").await?;
        let trained = info
            .pointer("/trained_on/sport")
            .and_then(Value::as_str)
            .unwrap_or("");
        if trained.is_empty() {
            return Err(StageError::msg(format!(
                "model {} (from `{}`) does not record its sport (made before models did); retrain it before deploying to {}",
                model.digest.short(),
                model.task,
                c.sport
            )));
        }
        if norm_sport(trained) != norm_sport(&c.sport) {
            return Err(StageError::msg(format!(
                "refusing to deploy: model {} was trained on {trained}, this pipeline deploys {}",
                model.digest.short(),
                c.sport
            )));
        }
        let evals: Vec<Input> = ctx
            .inputs()
            .iter()
            .filter(|i| i.manifest.files.contains_key("evaluation.json"))
            .cloned()
            .collect();
        let mut evaluation = None;
        for e in &evals {
            let v = verdict_of(&read_json(ctx, e, "evaluation.json").await?);
            if v.candidate.as_deref() != Some(model.digest.as_str()) {
                continue;
            }
            if !v.passed {
                let list = if v.failures.is_empty() {
                    "the evaluation did not pass".to_string()
                } else {
                    v.failures.join("; ")
                };
                return Err(StageError::msg(format!(
                    "refusing to deploy model {}: {} failed gates: {list} (report: `engine show RUN/{}`)",
                    model.digest.short(),
                    v.failures.len().max(1),
                    e.task
                )));
            }
            evaluation = Some(e.clone());
        }
        if evaluation.is_none() && c.require_evaluation {
            let why = if evals.is_empty() {
                "there is no evaluation among its inputs; put `evaluate` in its `needs`".to_string()
            } else {
                format!(
                    "the evaluation{} among its inputs judged another model",
                    if evals.len() > 1 { "s" } else { "" }
                )
            };
            return Err(StageError::msg(format!(
                "refusing to deploy model {} without a passed evaluation of it: {why} (or set `require_evaluation: false`)",
                model.digest.short()
            )));
        }
        for (name, blob) in &model.manifest.files {
            ctx.attach_file("model", name, blob.clone())?;
        }
        ctx.set_meta("model", model.manifest.meta.clone())?;
        ctx.set_value("model", json!(model.digest.to_string()));
        ctx.set_value("sport", json!(c.sport));
        if let Some(e) = &evaluation {
            ctx.set_value("evaluation", json!(e.digest.to_string()));
        }
        ctx.log(format!(
            "model.deploy: model {} ({trained}) passes{}",
            model.digest.short(),
            evaluation
                .map(|e| format!(" with evaluation {}", e.digest.short()))
                .unwrap_or_default()
        ));
        Ok(())
    }
}
