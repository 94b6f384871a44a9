//! `teacher.tag`: the cheap graphic-detection teacher, per video (a map
//! stage, so the engine caches per video); `review.route`: splits its
//! output into videos tagged automatically and videos a human must review.
//!
//! Why two stages: a map stage produces exactly one collection, and per-video
//! caching matters more than saving one tiny task. `teacher.tag` marks each
//! item with `route: auto | review`; `review.route` splits on it and, with
//! `catalog:`, records the review queue in the catalog.
//!
//! Human labels always win over the teacher: an attached
//! `human_labels.json`, or a catalog video's `human` labels or review
//! verdict (from `catalog.query`'s item meta). `teacher.calibrate` tunes the
//! detector per league; `teacher.tag` takes its `calibration.json` through
//! `needs:`.

pub mod calibrate;
pub mod detect;

use async_trait::async_trait;
use detect::{DetectParams, Detection};
use engine_core::stage::ParamsError;
use engine_core::stage::{
    ItemCtx, MapStage, OutputDecl, Stage, StageConfig, StageEnv, StageError, StageImpl, TaskCtx,
};
use engine_core::store::Item;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Params of `teacher.tag`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// Videos whose confidence is below this go to manual review.
    #[serde(default = "default_review_below")]
    pub review_below: f64,
    /// Detector knobs (analysis rate and size, thresholds, pairing). A
    /// `calibration.json` from `teacher.calibrate` among the stage's `needs`
    /// overrides the threshold and rare share of the leagues it calibrated.
    #[serde(default)]
    pub detector: DetectParams,
}

fn default_review_below() -> f64 {
    0.5
}

impl StageConfig for TagConfig {
    const KIND: &'static str = "teacher.tag";
    const SUMMARY: &'static str =
        "per video: graphic boundaries, proposed replays and a confidence (tags.json)";
    fn check(&self) -> Result<(), ParamsError> {
        if !(self.review_below.is_finite() && (0.0..=1.0).contains(&self.review_below)) {
            return Err(format!(
                "`review_below` must be between 0 and 1, got {}",
                self.review_below
            )
            .into());
        }
        self.detector
            .check()
            .map_err(|e| format!("`detector`: {e}").into())
    }
    fn build(self) -> StageImpl {
        StageImpl::Map(Arc::new(Tag(self)))
    }
}

/// Where a tagged video goes next.
pub const ROUTE_AUTO: &str = "auto";
pub const ROUTE_REVIEW: &str = "review";

/// The `tags.json` file of a tagged video.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tags {
    pub version: u32,
    pub video: String,
    /// `teacher` or `human` (a `human_labels.json` file, or a catalog
    /// video's human labels or review verdict, wins).
    pub source: String,
    /// `auto` or `review`.
    pub route: String,
    pub confidence: f64,
    /// Seconds, when known.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Candidate graphic boundaries (teacher only).
    #[serde(default)]
    pub boundaries: Vec<detect::Boundary>,
    /// Hard cuts the teacher saw (seconds; teacher only).
    #[serde(default)]
    pub cuts: Vec<f64>,
    /// Non-replay graphics the teacher saw (seconds they appear; teacher
    /// only): hard negatives for `clips.cut`.
    #[serde(default)]
    pub overlays: Vec<f64>,
    /// Replay segments: the teacher's proposals or the human labels.
    pub segments: Vec<detect::Proposal>,
    /// Why the video could not be tagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The league whose calibrated detector settings were used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<String>,
}

pub const TAGS_VERSION: u32 = 1;

struct Tag(TagConfig);

#[async_trait]
impl MapStage for Tag {
    fn version(&self) -> u32 {
        // 2: catalog human labels and verdicts win; calibration.
        // 3: human-labelled videos keep the teacher's cuts and graphics.
        // 4: non-replay graphics (`overlays`).
        4
    }
    fn output(&self) -> String {
        "tagged".into()
    }
    async fn run_item(&self, item: &Item, ctx: &mut ItemCtx) -> Result<(), StageError> {
        for (n, b) in &item.files {
            ctx.attach_file(n, b.clone())?;
        }
        let duration = item
            .meta
            .get("duration")
            .or_else(|| item.meta.get("duration_s"))
            .and_then(Value::as_f64);
        let tags = match (
            item.files.get("human_labels.json"),
            catalog_human_labels(&item.meta),
        ) {
            (Some(blob), _) => {
                let t = human_tags(item, ctx, blob, duration).await;
                self.with_teacher_negatives(item, ctx, t).await?
            }
            (None, Some(segments)) => {
                let t = human_tags_from(item, segments, duration);
                self.with_teacher_negatives(item, ctx, t).await?
            }
            (None, None) => self.teacher_tags(item, ctx, duration).await?,
        };
        let mut meta = if item.meta.is_object() {
            item.meta.clone()
        } else {
            json!({})
        };
        meta["route"] = json!(tags.route);
        meta["label_source"] = json!(tags.source);
        meta["teacher"] = json!({
            "confidence": tags.confidence,
            "boundaries": tags.boundaries.len(),
            "segments": tags.segments.len(),
            "cuts": tags.cuts.len(),
            "overlays": tags.overlays.len(),
        });
        if let Some(league) = &tags.calibrated {
            meta["teacher"]["calibrated_for"] = json!(league);
        }
        if let Some(check) = truth_check(item, ctx, &tags).await {
            meta["teacher"]["truth_check"] = check;
        }
        if let Some(e) = &tags.error {
            meta["error"] = json!(e);
            ctx.log(format!("video `{}` goes to review: {e}", item.key));
        }
        let bytes = serde_json::to_vec_pretty(&tags).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.put_file("tags.json", bytes).await?;
        ctx.set_meta(meta);
        Ok(())
    }
}

impl Tag {
    /// Human labels say where the replays are, but not where the hard
    /// negatives are: live cuts to a tight camera and non-replay graphics.
    /// Those come from the teacher's cues of the same video. Without them a
    /// league whose replays were labelled by people (typically a drifted
    /// one: no graphics, so the teacher was unsure) trains with only easy
    /// negatives, and the model learns "a cut is a replay" there and calls
    /// every live cut of every league a replay. A video the teacher cannot
    /// read keeps its human labels and simply gets no hard negatives.
    async fn with_teacher_negatives(
        &self,
        item: &Item,
        ctx: &mut ItemCtx,
        mut tags: Tags,
    ) -> Result<Tags, StageError> {
        if tags.error.is_some() {
            return Ok(tags);
        }
        let seen = self.teacher_tags(item, ctx, tags.duration).await?;
        if seen.error.is_none() {
            tags.cuts = seen.cuts;
            tags.overlays = seen.overlays;
            tags.boundaries = seen.boundaries;
            tags.duration = tags.duration.or(seen.duration);
        }
        Ok(tags)
    }

    async fn teacher_tags(
        &self,
        item: &Item,
        ctx: &mut ItemCtx,
        duration: Option<f64>,
    ) -> Result<Tags, StageError> {
        let failed = |e: String| Tags {
            version: TAGS_VERSION,
            video: item.key.clone(),
            source: "teacher".into(),
            route: ROUTE_REVIEW.into(),
            confidence: 0.0,
            duration,
            boundaries: vec![],
            cuts: vec![],
            overlays: vec![],
            segments: vec![],
            error: Some(e),
            calibrated: None,
        };
        // An attached video, or the local file a catalog row's `uri` names.
        let path = match crate::video::local_video(item, ctx).await {
            Ok(p) => p,
            Err(StageError::Failed(m)) => return Ok(failed(m)),
            Err(e) => return Err(e),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let league = item.meta.get("league").and_then(Value::as_str);
        let (params, calibrated) = match calibration(ctx).await? {
            Some(c) => match c.params_for(league, &self.0.detector) {
                Some(p) => (p, league.map(str::to_string)),
                None => (self.0.detector.clone(), None),
            },
            None => (self.0.detector.clone(), None),
        };
        let (cancel, threads) = (ctx.cancel_token(), Some(ctx.threads()));
        let res = ctx
            .blocking(move || {
                let cues =
                    detect::cues_from_video(&path, &params, threads, &|| cancel.is_cancelled());
                if cancel.is_cancelled() {
                    return Err(StageError::Cancelled);
                }
                Ok(cues.map(|c| {
                    let d = detect::detect(&c, &params);
                    (d, c.frames.len() as f64 / c.fps)
                }))
            })
            .await?;
        let (d, analysed): (Detection, f64) = match res {
            Ok(x) => x,
            Err(e) => return Ok(failed(format!("Failed to decode `{name}`: {e}"))),
        };
        if d.frames == 0 {
            return Ok(failed(format!("`{name}` has no frames")));
        }
        let route = if d.confidence >= self.0.review_below {
            ROUTE_AUTO
        } else {
            ROUTE_REVIEW
        };
        Ok(Tags {
            version: TAGS_VERSION,
            video: item.key.clone(),
            source: "teacher".into(),
            route: route.into(),
            confidence: d.confidence,
            duration: duration.or(Some(analysed)),
            boundaries: d.boundaries,
            cuts: d.cuts,
            overlays: d.overlays,
            segments: d.segments,
            error: None,
            calibrated,
        })
    }
}

/// The `calibration.json` among the stage's other inputs (`needs:`), if any.
async fn calibration(ctx: &StageEnv) -> Result<Option<calibrate::Calibration>, StageError> {
    let found: Vec<_> = ctx
        .inputs()
        .iter()
        .filter_map(|i| {
            i.manifest
                .files
                .get(calibrate::CALIBRATION_FILE)
                .map(|b| (i, b))
        })
        .collect();
    let (input, blob) = match found.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            return Err(StageError::msg(format!(
                "teacher.tag: {} inputs have a `{}` ({}); keep one `teacher.calibrate` in `needs`",
                many.len(),
                calibrate::CALIBRATION_FILE,
                many.iter()
                    .map(|(i, _)| format!("`{}.{}`", i.task, i.output))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let bytes = ctx.read(blob).await?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        StageError::msg(format!(
            "teacher.tag: Failed to parse `{}` of `{}.{}`: {e}; rerun `teacher.calibrate`",
            calibrate::CALIBRATION_FILE,
            input.task,
            input.output
        ))
    })
}

/// A catalog video's human verdict from `catalog.query`'s meta: its `human`
/// labels, or none at all when a person reviewed it and found no replays.
/// `None`: nobody labelled it (generator `truth` labels do not count).
fn catalog_human_labels(meta: &Value) -> Option<Vec<(f64, f64)>> {
    let labels = meta.get("labels").and_then(Value::as_array);
    let human: Vec<(f64, f64)> = labels
        .into_iter()
        .flatten()
        .filter(|l| l.get("source").and_then(Value::as_str) == Some("human"))
        .filter_map(|l| Some((l.get("start_s")?.as_f64()?, l.get("end_s")?.as_f64()?)))
        .collect();
    let reviewed = meta.get("review").is_some_and(|r| r.is_object());
    (!human.is_empty() || reviewed).then_some(human)
}

fn human_tags_from(item: &Item, mut segments: Vec<(f64, f64)>, duration: Option<f64>) -> Tags {
    segments.sort_by(|a, b| a.0.total_cmp(&b.0));
    Tags {
        version: TAGS_VERSION,
        video: item.key.clone(),
        source: "human".into(),
        route: ROUTE_AUTO.into(),
        confidence: 1.0,
        duration,
        boundaries: vec![],
        cuts: vec![],
        overlays: vec![],
        segments: segments
            .into_iter()
            .map(|(start, end)| detect::Proposal {
                start,
                end,
                confidence: 1.0,
            })
            .collect(),
        error: None,
        calibrated: None,
    }
}

/// On generated videos (a `truth.json` with replay graphics), how well the
/// teacher did: boundary recall and precision at +-0.5 s of each wipe's
/// middle. For monitoring per league; routing never looks at the truth.
async fn truth_check(item: &Item, ctx: &StageEnv, tags: &Tags) -> Option<Value> {
    if tags.source != "teacher" || tags.error.is_some() {
        return None;
    }
    let bytes = ctx.read(item.files.get("truth.json")?).await.ok()?;
    let truth: media::synth::GroundTruth = serde_json::from_slice(&bytes).ok()?;
    let want = detect::truth_boundaries(&truth);
    if want.is_empty() {
        return None;
    }
    let found: Vec<f64> = tags.boundaries.iter().map(|b| b.time).collect();
    let hit = detect::matched(&found, &want, 0.5);
    Some(json!({
        "true": want.len(),
        "found": found.len(),
        "matched": hit,
        "recall": hit as f64 / want.len() as f64,
        "precision": if found.is_empty() { Value::Null } else { json!(hit as f64 / found.len() as f64) },
    }))
}

/// Human labels win: route auto, confidence 1. Bad label files go to review.
async fn human_tags(
    item: &Item,
    ctx: &mut ItemCtx,
    blob: &engine_core::store::BlobRef,
    duration: Option<f64>,
) -> Tags {
    let mut t = Tags {
        version: TAGS_VERSION,
        video: item.key.clone(),
        source: "human".into(),
        route: ROUTE_AUTO.into(),
        confidence: 1.0,
        duration,
        boundaries: vec![],
        cuts: vec![],
        overlays: vec![],
        segments: vec![],
        error: None,
        calibrated: None,
    };
    let read = async {
        let path = ctx.scratch_dir()?.join("human_labels.json");
        ctx.fetch(blob, &path).await?;
        media::labels::read_json(&path).map_err(|e| StageError::msg(e.to_string()))
    };
    match read.await {
        Ok(list) => {
            t.segments = list
                .iter()
                .flat_map(|s| &s.segments)
                .map(|s| detect::Proposal {
                    start: s.start,
                    end: s.end,
                    confidence: 1.0,
                })
                .collect();
        }
        Err(e) => {
            t.route = ROUTE_REVIEW.into();
            t.confidence = 0.0;
            t.error = Some(format!("Failed to read `human_labels.json`: {e}"));
        }
    }
    t
}

/// Params of `review.route`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The collection to split, as `stage.output`; default: every input
    /// collection.
    #[serde(default)]
    pub from: Option<String>,
    /// Also record the review queue in this catalog (a SQLite path,
    /// `sqlite://PATH` or `postgres://...`): each video sent to review that
    /// has a catalog `uri` gets a pending entry with the teacher's confidence
    /// and proposals, for `engine review ls|accept|fix`. Default: none.
    #[serde(default)]
    pub catalog: Option<String>,
}

impl StageConfig for RouteConfig {
    const KIND: &'static str = "review.route";
    const SUMMARY: &'static str =
        "split tagged videos into `tagged` (auto) and `review` (low confidence)";
    fn check(&self) -> Result<(), ParamsError> {
        match &self.catalog {
            Some(c) if c.trim().is_empty() => {
                Err("`catalog` is empty; give a SQLite path, `sqlite://PATH` or `postgres://...`, or leave it out".into())
            }
            _ => Ok(()),
        }
    }
    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Route(self)))
    }
}

struct Route(RouteConfig);

#[async_trait]
impl Stage for Route {
    fn version(&self) -> u32 {
        1
    }
    /// Writing the queue to a catalog is a side effect a cached result
    /// would skip (the catalog may be new): run every time then.
    fn always_run(&self) -> bool {
        self.0.catalog.is_some()
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![
            OutputDecl::collection("tagged"),
            OutputDecl::collection("review"),
        ]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let items: Vec<Item> = ctx.input_items(self.0.from.as_deref()).cloned().collect();
        // Both outputs exist even when empty.
        ctx.set_meta("tagged", json!({}))?;
        ctx.set_meta("review", json!({}))?;
        if items.is_empty() {
            let what = self
                .0
                .from
                .as_deref()
                .map(|f| format!("`{f}`"))
                .unwrap_or_else(|| "the inputs".into());
            ctx.log(format!(
                "review.route: no videos in {what}; `tagged` and `review` are empty"
            ));
        }
        let (mut auto, mut review) = (0u64, 0u64);
        let mut per_league: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        // league -> (true boundaries, matched) on videos with a truth check
        let mut checked: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut queue: Vec<Item> = vec![];
        for item in items {
            let league = item
                .meta
                .get("league")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            let to_auto = item.meta.get("route").and_then(Value::as_str) == Some(ROUTE_AUTO);
            if let Some(c) = item.meta.pointer("/teacher/truth_check") {
                let e = checked.entry(league.clone()).or_default();
                e.0 += c["true"].as_u64().unwrap_or(0);
                e.1 += c["matched"].as_u64().unwrap_or(0);
            }
            let e = per_league.entry(league).or_default();
            if to_auto {
                auto += 1;
                e.0 += 1;
                ctx.add_item("tagged", item)?;
            } else {
                review += 1;
                e.1 += 1;
                if self.0.catalog.is_some() {
                    queue.push(item.clone());
                }
                ctx.add_item("review", item)?;
            }
        }
        let leagues: BTreeMap<&String, Value> = per_league
            .iter()
            .map(|(l, (a, r))| {
                let mut v = json!({ "auto_tagged": a, "to_review": r });
                if let Some((t, m)) = checked.get(l).filter(|(t, _)| *t > 0) {
                    v["teacher_recall"] = json!(*m as f64 / *t as f64);
                }
                (l, v)
            })
            .collect();
        ctx.set_meta("tagged", json!({ "videos": auto, "leagues": leagues }))?;
        ctx.set_meta("review", json!({ "videos": review, "leagues": leagues }))?;
        ctx.set_value("auto_tagged", json!(auto));
        ctx.set_value("to_review", json!(review));
        if let Some(url) = &self.0.catalog {
            let queued = enqueue(ctx, url, &queue).await?;
            ctx.set_value("queued", json!(queued));
        }
        ctx.log(format!(
            "{auto} videos tagged automatically, {review} to review"
        ));
        // A league whose every video went to review is out of this run's
        // training data: say so loudly, in the values (the run summary and
        // record show them) and the log, instead of reporting plain success.
        let dropped: Vec<&String> = per_league
            .iter()
            .filter(|(_, (a, r))| *a == 0 && *r > 0)
            .map(|(l, _)| l)
            .collect();
        ctx.set_value("dropped_leagues", json!(dropped));
        for l in &dropped {
            let (_, r) = per_league[*l];
            ctx.log(format!(
                "WARNING: league `{l}` is left out of training: all {r} of its videos wait for review (the teacher was unsure of each); record verdicts with `engine review` and rerun"
            ));
        }
        for (l, (t, m)) in checked.iter().filter(|(_, (t, _))| *t > 0) {
            ctx.log(format!(
                "league `{l}`: teacher recall {m}/{t} on videos with ground truth"
            ));
        }
        Ok(())
    }
}

/// Records the videos sent to review in the catalog's queue; returns how
/// many entries were written. Videos without a catalog `uri` (generated in
/// the pipeline) are skipped with a log line.
async fn enqueue(ctx: &StageEnv, url: &str, items: &[Item]) -> Result<u64, StageError> {
    use ::catalog::{Catalog, NewLabel, NewQueueEntry};
    let fail = |e: ::catalog::CatalogError| StageError::msg(format!("review.route: {e}"));
    ::catalog::prepare_default(url).map_err(fail)?;
    let db = Catalog::open(url).await.map_err(fail)?;
    let (mut queued, mut outside) = (0u64, vec![]);
    let result = async {
        for item in items {
            let Some(uri) = item.meta.get("uri").and_then(Value::as_str) else {
                outside.push(item.key.clone());
                continue;
            };
            let tags: Option<Tags> = match item.files.get("tags.json") {
                Some(b) => serde_json::from_slice(&ctx.read(b).await?).ok(),
                None => None,
            };
            let confidence = item
                .meta
                .pointer("/teacher/confidence")
                .and_then(Value::as_f64);
            let reason = match item.meta.get("error").and_then(Value::as_str) {
                Some(e) => e.to_string(),
                None => format!("teacher confidence {:.2}", confidence.unwrap_or(0.0)),
            };
            let entry = NewQueueEntry {
                confidence,
                proposals: tags
                    .map(|t| t.segments)
                    .unwrap_or_default()
                    .iter()
                    .filter(|p| p.start.is_finite() && p.end > p.start && p.start >= 0.0)
                    .map(|p| NewLabel {
                        start_s: p.start,
                        end_s: p.end,
                        confidence: Some(p.confidence),
                    })
                    .collect(),
                reason: Some(reason),
                queued_by: Some(ctx.task().to_string()),
            };
            match db.enqueue_review(uri, &entry).await {
                Ok(_) => queued += 1,
                // A uri the query made up, not a catalogued video.
                Err(::catalog::CatalogError::Invalid(m)) => {
                    ctx.log(format!("review.route: not queued: {m}"))
                }
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }
    .await;
    let shown = db.url().to_string();
    db.close().await;
    result?;
    if !outside.is_empty() {
        ctx.log(format!(
            "review.route: {} video(s) have no catalog `uri` and were not queued in `{shown}` ({}); they are in the `review` collection",
            outside.len(),
            outside.join(", ")
        ));
    }
    ctx.log(format!(
        "review.route: {queued} video(s) pending review in `{shown}`; `engine review ls` lists them"
    ));
    Ok(queued)
}
