//! `evaluate`: the candidate model against production on the golden videos,
//! per sport, league, broadcaster and league x broadcaster, with the gates
//! that decide whether the candidate may be deployed (DESIGN.md,
//! "Evaluation protocol").
//!
//! It reads the `predictions` collections of two `detect` stages run over
//! the same golden videos, so what is measured is exactly what production
//! runs. Truth comes from each item's catalog `labels`. The stage succeeds
//! when gates fail: the report is its product, and the values `passed` and
//! `failures` tell the deploy stage (and a person) why not to deploy.
//!
//! Output `evaluation`: `evaluation.json` (everything), `evaluation.md`
//! (a PR comment), `evaluation.html` (charts, self-contained). Nothing in
//! them depends on the clock or the host, so the same inputs give the same
//! artifact digest.

pub mod config;
pub mod gates;
pub mod render;
pub mod score;

use async_trait::async_trait;
use config::EvaluateConfig;
use engine_core::stage::{Input, OutputDecl, Stage, StageEnv, StageError, TaskCtx};
use score::{Pred, Scores, Segment, Video};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

struct Evaluate(EvaluateConfig);

/// `predictions.json` of one item of a `detect` stage.
#[derive(Deserialize)]
struct PredictionsFile {
    /// The detector's artifact digest; `null` when there is no model yet.
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    fps: Option<f64>,
    #[serde(default)]
    frames: Option<usize>,
    #[serde(default)]
    segments: Vec<Segment>,
}

const OUTPUT: &str = "evaluation";

#[async_trait]
impl Stage for Evaluate {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::artifact(OUTPUT)]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let cfg = &self.0;
        let cand_in = ctx.input(&cfg.candidate, "predictions")?.clone();
        let cand = read_predictions(ctx, &cand_in).await?;
        if cand.is_empty() {
            return Err(StageError::msg(format!(
                "evaluate: the golden set is empty: stage `{}` ran on no videos, so nothing can be judged and nothing may deploy; mark golden videos with `engine catalog golden add` (every league and broadcaster of the sport: `engine catalog golden ls --sport SPORT` shows the coverage) and rerun",
                cfg.candidate
            )));
        }
        let cand_model = one_model(&cand, &cfg.candidate)?.ok_or_else(|| {
            StageError::msg(format!(
                "evaluate: the candidate's predictions (stage `{}`) have no model (`\"model\": null`); `candidate` must be the detect stage of the model under test",
                cfg.candidate
            ))
        })?;
        let prod_in = match &cfg.production {
            Some(p) => Some(ctx.input(p, "predictions")?.clone()),
            None => None,
        };
        let mut prod = match &prod_in {
            Some(i) => read_predictions(ctx, i).await?,
            None => BTreeMap::new(),
        };
        let prod_model = match &cfg.production {
            Some(stage) => one_model(&prod, stage)?,
            None => None,
        };
        if prod_model.is_none() {
            ctx.log("evaluate: no production model yet; the report shows the candidate alone and production gates are skipped");
            prod.clear();
        }
        let extra: Vec<&str> = prod
            .keys()
            .filter(|k| !cand.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !extra.is_empty() {
            ctx.log(format!(
                "evaluate: production has predictions for {} video(s) the candidate was not run on; they are left out: {}",
                extra.len(),
                extra.join(", ")
            ));
        }

        let mut videos = vec![];
        let mut unlabelled = vec![];
        for (key, (meta, file)) in &cand {
            let Some((truth, source)) = truth_of(meta) else {
                unlabelled.push(key.as_str());
                continue;
            };
            let candidate = pred_of(key, file, None, &cfg.candidate)?;
            let production = match prod.get(key) {
                Some((_, f)) => Some(pred_of(key, f, Some(&candidate), "production")?),
                None => None,
            };
            let s = |k: &str| {
                meta.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string()
            };
            videos.push(Video {
                key: key.clone(),
                sport: s("sport"),
                league: s("league"),
                broadcaster: s("broadcaster"),
                truth,
                truth_source: source.into(),
                candidate,
                production,
            });
        }
        if !unlabelled.is_empty() {
            return Err(StageError::msg(format!(
                "evaluate: golden video(s) without `human` or `truth` labels cannot be scored: {}; label them (review them, or import their label files) or take them out of the golden set",
                unlabelled.join(", ")
            )));
        }
        if videos.is_empty() {
            ctx.log(format!(
                "evaluate: stage `{}` gave no predictions: there is nothing to score",
                cfg.candidate
            ));
        }

        let scores = Scores::of(&videos);
        let has_production = prod_model.is_some();
        let rows = gates::check(&cfg.gates, &scores, has_production);
        let failures = gates::failures(&rows);
        let passed = failures.is_empty();
        let skipped = rows.iter().filter(|r| r.skipped).count();
        let short = |d: &str| d.chars().take(12).collect::<String>();
        let versus = match &prod_model {
            Some(p) => format!("vs production `{}`", short(p)),
            None => "(no production model)".into(),
        };
        let verdict = if passed {
            format!(
                "PASSED: candidate `{}` {versus} meets every gate ({} checks, {skipped} skipped)",
                short(&cand_model),
                rows.len()
            )
        } else {
            format!(
                "FAILED: {} of {} gate checks failed for candidate `{}` {versus}",
                failures.len(),
                rows.len(),
                short(&cand_model)
            )
        };
        for r in &rows {
            if r.skipped {
                ctx.log(&r.note);
            }
        }
        for f in &failures {
            ctx.log(f);
        }
        ctx.log(format!("evaluate: {verdict}"));

        let weakest = scores
            .leagues
            .iter()
            .map(|(l, g)| (l, g.candidate("segment_f1")))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(l, v)| json!({ "league": l, "metric": "segment_f1", "candidate": v }));
        let model = |stage: &str, digest: &str, input: &Input| json!({ "stage": stage, "digest": digest, "predictions": input.digest.to_string() });
        let doc = json!({
            "sport": scores.sport,
            "passed": passed,
            "verdict": verdict,
            "failures": failures,
            "models": {
                "candidate": model(&cfg.candidate, &cand_model, &cand_in),
                "production": prod_model.as_ref().zip(prod_in.as_ref()).zip(cfg.production.as_ref())
                    .map(|((d, i), s)| model(s, d, i)),
            },
            "gates_declared": cfg.gates,
            "gates": rows,
            "weakest_league": weakest,
            "groups": scores.groups_json(),
            "videos": scores.videos,
        });
        let md = render::markdown(&doc)?;
        let html = render::html(&doc)?;
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.put_file(OUTPUT, "evaluation.json", bytes).await?;
        ctx.put_file(OUTPUT, "evaluation.md", md.into_bytes())
            .await?;
        ctx.put_file(OUTPUT, "evaluation.html", html.into_bytes())
            .await?;
        ctx.set_meta(
            OUTPUT,
            json!({ "passed": passed, "failures": failures.len(), "videos": videos.len(), "sport": scores.sport }),
        )?;
        ctx.set_value("passed", json!(passed));
        ctx.set_value("failures", json!(failures));
        ctx.set_value("gates", json!(rows));
        ctx.set_value("overall", json!(scores.overall.candidate.summary()));
        Ok(())
    }
}

type Items = BTreeMap<String, (Value, PredictionsFile)>;

/// Every item's meta and parsed `predictions.json`, by item key.
async fn read_predictions(ctx: &StageEnv, input: &Input) -> Result<Items, StageError> {
    let mut out = BTreeMap::new();
    for item in &input.manifest.items {
        let Some(blob) = item.files.get("predictions.json") else {
            return Err(StageError::msg(format!(
                "evaluate: item `{}` of `{}.{}` has no `predictions.json`; name a `detect` stage",
                item.key, input.stage, input.output
            )));
        };
        let bytes = ctx.read(blob).await?;
        let file: PredictionsFile = serde_json::from_slice(&bytes).map_err(|e| {
            StageError::msg(format!(
                "evaluate: Failed to parse `predictions.json` of item `{}` of stage `{}`: {e}",
                item.key, input.stage
            ))
        })?;
        out.insert(item.key.clone(), (item.meta.clone(), file));
    }
    Ok(out)
}

/// The one model digest of a stage's predictions: `None` when every item
/// says `"model": null` (no model yet). Mixed models are an error.
fn one_model(items: &Items, stage: &str) -> Result<Option<String>, StageError> {
    let models: BTreeSet<Option<&str>> = items.values().map(|(_, f)| f.model.as_deref()).collect();
    match models.len() {
        0 => Ok(None),
        1 => Ok(models.into_iter().next().flatten().map(str::to_string)),
        _ => Err(StageError::msg(format!(
            "evaluate: the predictions of stage `{stage}` come from {} different models ({}); one detect stage must run one model",
            models.len(),
            models
                .iter()
                .map(|m| m.unwrap_or("null"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A video's truth: its `human` labels (a reviewed video is human-labelled
/// even when the reviewer found no replays), else its `truth` labels.
fn truth_of(meta: &Value) -> Option<(Vec<(f64, f64)>, &'static str)> {
    let labels = meta.get("labels").and_then(Value::as_array);
    let of = |src: &str| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = labels
            .into_iter()
            .flatten()
            .filter(|l| l.get("source").and_then(Value::as_str) == Some(src))
            .filter_map(|l| Some((l.get("start_s")?.as_f64()?, l.get("end_s")?.as_f64()?)))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let has = |src: &str| {
        labels
            .into_iter()
            .flatten()
            .any(|l| l.get("source").and_then(Value::as_str) == Some(src))
    };
    if has("human") || meta.get("review").is_some_and(|r| !r.is_null()) {
        Some((of("human"), "human"))
    } else if has("truth") {
        Some((of("truth"), "truth"))
    } else {
        None
    }
}

/// One model's predictions of a video; production falls back to the
/// candidate's frame grid when its file has none.
fn pred_of(
    key: &str,
    f: &PredictionsFile,
    grid: Option<&Pred>,
    who: &str,
) -> Result<Pred, StageError> {
    let (frames, fps) = match (f.frames, f.fps, grid) {
        (Some(n), Some(fps), _) if fps > 0.0 && fps.is_finite() => (n, fps),
        (_, _, Some(g)) => (g.frames, g.fps),
        _ => {
            return Err(StageError::msg(format!(
                "evaluate: `predictions.json` of video `{key}` (stage `{who}`) has no positive `fps` and `frames`, needed for the content figures"
            )));
        }
    };
    Ok(Pred {
        segments: f.segments.clone(),
        frames,
        fps,
    })
}
