//! `dataset.split`: train / test / validation, grouped by video.
//!
//! Every clip of a video lands in that video's split, so no video leaks
//! across splits. The split of a video is a pure function of (seed, video
//! key): a stable hash mapped to [0, 1) and cut at the fractions. Adding
//! videos never moves an existing one. Stratification by league holds in
//! expectation (each league's videos are hashed independently with the same
//! cuts); the per-league counts are in the manifest meta so a lopsided small
//! league is visible. An exact per-league quota would have to reassign old
//! videos when new ones arrive, which breaks the cache downstream and
//! leaks: we chose stability.

use async_trait::async_trait;
use engine_core::stage::{
    OutputDecl, Registry, Stage, StageError, StageImpl, TaskCtx, parse_params,
};
use engine_core::store::Item;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn register(r: &mut Registry) {
    r.add(
        "dataset.split",
        "train/test/validation by video (stable hash, no leakage), per-league counts",
        |v| {
            let c: SplitConfig = parse_params(v)?;
            c.check()?;
            Ok(StageImpl::Task(Arc::new(Split(c))))
        },
    );
}

/// A stable 64-bit hash of (seed, text): FNV-1a then the SplitMix64
/// finaliser. Same on every platform and release, unlike `DefaultHasher`.
pub fn stable_hash(seed: u64, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in text.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub const SPLITS: [&str; 3] = ["train", "test", "validation"];

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
}

fn default_train() -> f64 {
    0.7
}
fn default_eval() -> f64 {
    0.15
}

impl SplitConfig {
    fn check(&self) -> Result<(), String> {
        let all = [self.train, self.test, self.validation];
        if all.iter().any(|f| !(f.is_finite() && *f >= 0.0)) {
            return Err(format!(
                "`train`, `test` and `validation` must be 0 or more, got {all:?}"
            ));
        }
        let sum: f64 = all.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!(
                "`train` + `test` + `validation` must be 1, got {sum}"
            ));
        }
        Ok(())
    }

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
            .filter(|i| i.files.contains_key("clips.json"))
            .cloned()
            .collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        if items.is_empty() {
            ctx.log(
                "dataset.split: no videos with `clips.json` in the inputs; the dataset is empty",
            );
        }
        ctx.set_meta("clips", json!({}))?;
        let mut splits: BTreeMap<&str, Vec<Value>> = SPLITS.iter().map(|s| (*s, vec![])).collect();
        let mut videos = vec![];
        // league -> split -> (videos, clips)
        let mut counts: BTreeMap<String, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
        let mut totals: BTreeMap<&str, (u64, u64)> = SPLITS.iter().map(|s| (*s, (0, 0))).collect();
        for mut item in items {
            let split = self.0.split_of(&item.key);
            let league = item
                .meta
                .get("league")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            let blob = &item.files["clips.json"];
            let set: crate::clips::ClipSet = serde_json::from_slice(&ctx.read(blob).await?)
                .map_err(|e| {
                    StageError::msg(format!(
                        "Failed to parse `clips.json` of video `{}`: {e}",
                        item.key
                    ))
                })?;
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
        ctx.put_file("dataset", "dataset.json", bytes).await?;
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
    fn fractions_must_sum_to_one() {
        let c: SplitConfig = serde_json::from_value(json!({ "train": 0.5 })).unwrap();
        assert!(c.check().unwrap_err().contains("must be 1"));
    }
}
