//! `dataset.split`: train / test / validation, grouped by video.
//!
//! Every clip of a video lands in that video's split, so no video leaks
//! across splits. Two ways to place a video, `stratify:`
//! - `hash` (default): a pure function of (seed, video key), a stable hash
//!   mapped to [0, 1) and cut at the fractions. Adding videos never moves an
//!   existing one, with no state; per-league shares hold only in
//!   expectation (a league of 5 videos can miss the test split).
//! - `quota`: exact per league. Videos already in a previous dataset (an
//!   input artifact holding `dataset.json`, e.g. `artifact.ref` of
//!   `datasets/SPORT@latest` with `optional: true`) keep their split; each
//!   new video, in the order of its stable hash, goes to the split of its
//!   league furthest below its share. Stable when the previous dataset is
//!   fed back; without one it is exact but a rerun with more videos may
//!   move old ones (the log says so).
//!
//! Videos of the catalog's golden set (item meta `golden: true`, set by
//! `catalog.query`) are refused: they are for evaluation only, and a
//! training query must exclude them.

use crate::formats::{
    DATASET_FILE, SPLITS, dataset_splits, has_clip_set, read_clip_set, stable_hash,
};
use async_trait::async_trait;
use engine_core::stage::ParamsError;
use engine_core::stage::{OutputDecl, Stage, StageConfig, StageError, StageImpl, TaskCtx};
use engine_core::store::Item;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Params of `dataset.split`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Seed of the video -> split hash. Changing it reshuffles everything.
    #[serde(default)]
    pub seed: u64,
    /// Share of videos in train.
    #[serde(default = "default_train")]
    pub train: f64,
    /// Share of videos in test.
    #[serde(default = "default_eval")]
    pub test: f64,
    /// Share of videos in validation.
    #[serde(default = "default_eval")]
    pub validation: f64,
    /// The collection to split, as `stage.output`; default: every input
    /// collection.
    #[serde(default)]
    pub from: Option<String>,
    /// `hash` (stateless, stratified in expectation) or `quota` (exact per
    /// league, anchored on a previous dataset among the inputs).
    #[serde(default)]
    pub stratify: Stratify,
}

/// How `dataset.split` places videos.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stratify {
    #[default]
    Hash,
    Quota,
}

/// Places videos by quota: `previous` keep their split; the others, in
/// hash order, go to the split of their league furthest below its share
/// (ties: train, test, validation). Returns key -> split.
pub fn quota_splits<'a>(
    c: &SplitConfig,
    videos: &'a [(String, String)],
    previous: &BTreeMap<String, String>,
) -> BTreeMap<&'a str, &'static str> {
    let fractions = [c.train, c.test, c.validation];
    let mut by_league: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, league) in videos {
        by_league
            .entry(league.as_str())
            .or_default()
            .push(key.as_str());
    }
    let mut out = BTreeMap::new();
    for keys in by_league.values() {
        let mut count = [0usize; 3];
        let mut fresh = vec![];
        for &k in keys {
            match previous
                .get(k)
                .and_then(|s| SPLITS.iter().position(|x| x == s))
            {
                Some(i) => {
                    count[i] += 1;
                    out.insert(k, SPLITS[i]);
                }
                None => fresh.push(k),
            }
        }
        fresh.sort_by_key(|k| (stable_hash(c.seed, k), *k));
        for k in fresh {
            let total = (count.iter().sum::<usize>() + 1) as f64;
            let deficit = |i: usize| fractions[i] * total - count[i] as f64;
            let best = (0..3).fold(0, |b, i| if deficit(i) > deficit(b) + 1e-9 { i } else { b });
            count[best] += 1;
            out.insert(k, SPLITS[best]);
        }
    }
    out
}

/// Golden videos (meta `golden: true`) must never be trained on: an error
/// naming up to five of them and how to exclude them.
pub fn refuse_golden(items: &[Item]) -> Result<(), String> {
    let golden: Vec<&Item> = items
        .iter()
        .filter(|i| i.meta.get("golden") == Some(&Value::Bool(true)))
        .collect();
    if golden.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = golden
        .iter()
        .take(5)
        .map(|i| {
            let uri = i.meta.get("uri").and_then(Value::as_str).unwrap_or(&i.key);
            format!("`{uri}`")
        })
        .collect();
    let more = if golden.len() > 5 {
        format!(" and {} more", golden.len() - 5)
    } else {
        String::new()
    };
    Err(format!(
        "dataset.split: Failed to split: {} golden video(s) among the inputs ({}{more}); golden videos are for evaluation and must not be trained on; exclude them in the catalog query, e.g. `... AND id NOT IN (SELECT video_id FROM golden)`",
        golden.len(),
        named.join(", ")
    ))
}

fn default_train() -> f64 {
    0.7
}
fn default_eval() -> f64 {
    0.15
}

impl StageConfig for SplitConfig {
    const KIND: &'static str = "dataset.split";
    const SUMMARY: &'static str = "train/test/validation by video, no leakage: exact per-league quotas kept across runs, or a stable hash";
    fn check(&self) -> Result<(), ParamsError> {
        let all = [self.train, self.test, self.validation];
        if all.iter().any(|f| !(f.is_finite() && *f >= 0.0)) {
            return Err(
                format!("`train`, `test` and `validation` must be 0 or more, got {all:?}").into(),
            );
        }
        let sum: f64 = all.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!("`train` + `test` + `validation` must be 1, got {sum}").into());
        }
        Ok(())
    }

    fn build(self) -> StageImpl {
        StageImpl::Task(Arc::new(Split(self)))
    }
}

impl SplitConfig {
    /// The split of one video: stable under additions of other videos.
    pub fn split_of(&self, key: &str) -> &'static str {
        let u = (stable_hash(self.seed, key) >> 11) as f64 / (1u64 << 53) as f64;
        if u < self.train {
            "train"
        } else if u < self.train + self.test {
            "test"
        } else {
            "validation"
        }
    }
}

struct Split(SplitConfig);

#[async_trait]
impl Stage for Split {
    fn version(&self) -> u32 {
        1
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![
            OutputDecl::artifact("dataset"),
            OutputDecl::collection("clips"),
        ]
    }
    async fn run(&self, ctx: &mut TaskCtx) -> Result<(), StageError> {
        let mut items: Vec<Item> = ctx
            .input_items(self.0.from.as_deref())
            .filter(|i| has_clip_set(i))
            .cloned()
            .collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        refuse_golden(&items).map_err(StageError::msg)?;
        if items.is_empty() {
            ctx.log(
                "dataset.split: no videos with `clips.json` in the inputs; the dataset is empty",
            );
        }
        ctx.set_meta("clips", json!({}))?;
        let assigned: BTreeMap<String, &'static str> = match self.0.stratify {
            Stratify::Hash => items
                .iter()
                .map(|i| (i.key.clone(), self.0.split_of(&i.key)))
                .collect(),
            Stratify::Quota => {
                let mut previous = BTreeMap::new();
                let mut anchored = false;
                for input in ctx.inputs() {
                    if let Some(b) = input.manifest.files.get(DATASET_FILE) {
                        let d = dataset_splits(&ctx.read(b).await?).map_err(|e| {
                            StageError::msg(format!(
                                "Failed to parse the previous dataset from `{}`: {e}",
                                input.task
                            ))
                        })?;
                        previous.extend(d);
                        anchored = true;
                    } else if input.manifest.meta.get("missing").is_some() {
                        anchored = true; // the first run: the ref does not exist yet
                    }
                }
                if !anchored {
                    ctx.log("dataset.split: `stratify: quota` without a previous dataset among the inputs: exact per league now, but a rerun with more videos may move old ones; feed `artifact.ref` of the last dataset (optional: true) to keep them");
                }
                let videos: Vec<(String, String)> = items
                    .iter()
                    .map(|i| {
                        (
                            i.key.clone(),
                            i.meta
                                .get("league")
                                .and_then(Value::as_str)
                                .unwrap_or("unknown")
                                .to_string(),
                        )
                    })
                    .collect();
                let kept = videos
                    .iter()
                    .filter(|(k, _)| previous.contains_key(k))
                    .count();
                ctx.log(format!("dataset.split: {kept} videos keep their split from the previous dataset, {} placed by quota", videos.len() - kept));
                quota_splits(&self.0, &videos, &previous)
                    .into_iter()
                    .map(|(k, s)| (k.to_string(), s))
                    .collect()
            }
        };
        let mut splits: BTreeMap<&str, Vec<Value>> = SPLITS.iter().map(|s| (*s, vec![])).collect();
        let mut videos = vec![];
        // league -> split -> (videos, clips)
        let mut counts: BTreeMap<String, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
        let mut totals: BTreeMap<&str, (u64, u64)> = SPLITS.iter().map(|s| (*s, (0, 0))).collect();
        for mut item in items {
            let split = assigned[&item.key];
            let league = item
                .meta
                .get("league")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            let set = read_clip_set(ctx, &item).await?;
            let blob = &item.files[crate::formats::CLIPS_FILE];
            let video_digest = item.files.get("video.mp4").map(|b| b.digest.to_string());
            for c in &set.clips {
                splits.get_mut(split).expect("known split").push(json!({
                    "video": item.key, "id": c.id, "start": c.start, "end": c.end, "kind": c.kind,
                    "negative": c.negative, "label": c.label, "source": c.source,
                    "video_digest": video_digest,
                }));
            }
            let n = set.clips.len() as u64;
            let e = counts
                .entry(league.clone())
                .or_default()
                .entry(split)
                .or_default();
            e.0 += 1;
            e.1 += n;
            let t = totals.get_mut(split).expect("known split");
            t.0 += 1;
            t.1 += n;
            videos.push(json!({
                "video": item.key, "league": league, "split": split, "clips": n,
                "clips_digest": blob.digest.to_string(), "video_digest": video_digest,
            }));
            if !item.meta.is_object() {
                item.meta = json!({});
            }
            item.meta["split"] = json!(split);
            ctx.add_item("clips", item)?;
        }
        let count_json = |m: &BTreeMap<&str, (u64, u64)>| -> Value {
            SPLITS
                .iter()
                .map(|s| {
                    (
                        s.to_string(),
                        m.get(s)
                            .map(|(v, c)| json!({ "videos": v, "clips": c }))
                            .unwrap_or(json!({ "videos": 0, "clips": 0 })),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let leagues: serde_json::Map<String, Value> = counts
            .iter()
            .map(|(l, m)| (l.clone(), count_json(m)))
            .collect();
        let meta = json!({
            "seed": self.0.seed,
            "fractions": { "train": self.0.train, "test": self.0.test, "validation": self.0.validation },
            "totals": count_json(&totals),
            "leagues": leagues,
        });
        let dataset = json!({
            "version": 1,
            "seed": self.0.seed,
            "fractions": meta["fractions"],
            "videos": videos,
            "splits": splits,
            "counts": { "totals": meta["totals"], "leagues": meta["leagues"] },
        });
        let bytes =
            serde_json::to_vec_pretty(&dataset).map_err(|e| StageError::msg(e.to_string()))?;
        ctx.put_file("dataset", DATASET_FILE, bytes).await?;
        ctx.set_meta("dataset", meta.clone())?;
        ctx.set_meta("clips", meta)?;
        for s in SPLITS {
            ctx.set_value(s, json!(totals[s].1));
        }
        ctx.log(format!(
            "split {} videos: {}",
            videos.len(),
            SPLITS
                .iter()
                .map(|s| format!("{s} {} videos / {} clips", totals[s].0, totals[s].1))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_splits_follow_the_fractions() {
        assert_eq!(stable_hash(0, "a"), stable_hash(0, "a"));
        assert_ne!(stable_hash(0, "a"), stable_hash(1, "a"));
        let c: SplitConfig = serde_json::from_value(json!({ "seed": 3 })).unwrap();
        let mut n: BTreeMap<&str, usize> = BTreeMap::new();
        for i in 0..10_000 {
            *n.entry(c.split_of(&format!("video-{i}"))).or_default() += 1;
        }
        assert!((6700..7300).contains(&n["train"]), "{n:?}");
        assert!((1300..1700).contains(&n["test"]), "{n:?}");
    }

    #[test]
    fn quotas_are_exact_per_league_and_keep_previous_videos() {
        let c: SplitConfig =
            serde_json::from_value(json!({ "seed": 7, "stratify": "quota" })).unwrap();
        let videos: Vec<(String, String)> = (0..20)
            .map(|i| {
                (
                    format!("{}-{i:04}", ["a", "b"][i % 2]),
                    ["a", "b"][i % 2].to_string(),
                )
            })
            .collect();
        let first = quota_splits(&c, &videos, &BTreeMap::new());
        for league in ["a", "b"] {
            let mut n: BTreeMap<&str, usize> = BTreeMap::new();
            for (k, s) in &first {
                if k.starts_with(league) {
                    *n.entry(s).or_default() += 1;
                }
            }
            // 10 videos at 0.7 / 0.15 / 0.15: 7, 2 and 1 or 1 and 2.
            assert_eq!(n["train"], 7, "{league}: {n:?}");
            assert_eq!(n["test"] + n["validation"], 3, "{league}: {n:?}");
            assert!(n["test"] >= 1 && n["validation"] >= 1, "{league}: {n:?}");
        }
        // Ten more videos: the first twenty keep their split.
        let previous: BTreeMap<String, String> = first
            .iter()
            .map(|(k, s)| (k.to_string(), s.to_string()))
            .collect();
        let more: Vec<(String, String)> = (0..30)
            .map(|i| {
                (
                    format!("{}-{i:04}", ["a", "b"][i % 2]),
                    ["a", "b"][i % 2].to_string(),
                )
            })
            .collect();
        let second = quota_splits(&c, &more, &previous);
        for (k, s) in &first {
            assert_eq!(second[k], *s, "{k} moved");
        }
        let train_a = second
            .iter()
            .filter(|(k, s)| k.starts_with('a') && **s == "train")
            .count();
        assert!((10..=11).contains(&train_a), "{train_a} of 15");
    }

    #[test]
    fn golden_videos_are_refused() {
        let item = |n: usize, golden: bool| Item {
            key: format!("v{n}"),
            files: Default::default(),
            meta: json!({ "uri": format!("/videos/v{n}.mp4"), "golden": golden }),
        };
        assert!(refuse_golden(&[item(0, false), item(1, false)]).is_ok());
        let items: Vec<Item> = (0..8).map(|n| item(n, n != 0)).collect();
        let e = refuse_golden(&items).unwrap_err();
        assert!(
            e.contains("7 golden video(s)")
                && e.contains("`/videos/v1.mp4`")
                && e.contains("`/videos/v5.mp4`")
                && !e.contains("`/videos/v6.mp4`")
                && e.contains("and 2 more")
                && e.contains("must not be trained on")
                && e.contains("id NOT IN (SELECT video_id FROM golden)"),
            "{e}"
        );
    }

    #[test]
    fn fractions_must_sum_to_one() {
        let c: SplitConfig = serde_json::from_value(json!({ "train": 0.5 })).unwrap();
        assert!(c.check().unwrap_err().message.contains("must be 1"));
    }
}
