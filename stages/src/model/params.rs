//! The params of the model stages, their versions and outputs: everything
//! the engine needs to validate, fingerprint and plan a model stage, and
//! nothing that needs libtorch. The `engine` binary links this; the stages
//! themselves run in the `engine-worker` executable (see [`super::proxy`]),
//! so validating or planning a pipeline never loads libtorch.

/// Optimisation params both trainers share.
pub mod train {
    use serde::{Deserialize, Serialize};

    /// Optimisation params (part of each trainer's `with:`).
    #[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct FitParams {
        /// Adam learning rate.
        #[serde(default = "default_lr")]
        pub lr: f64,
        /// Most epochs.
        #[serde(default = "default_epochs")]
        pub epochs: usize,
        /// Stop after this many epochs without a better validation loss.
        #[serde(default = "default_patience")]
        pub patience: usize,
        /// Clips per mini-batch.
        #[serde(default = "default_batch")]
        pub batch: usize,
        /// Seed of initialisation and shuffling.
        #[serde(default = "default_seed")]
        pub seed: u64,
    }

    fn default_lr() -> f64 {
        2e-3
    }
    fn default_epochs() -> usize {
        40
    }
    fn default_patience() -> usize {
        6
    }
    fn default_batch() -> usize {
        32
    }
    fn default_seed() -> u64 {
        7
    }

    impl FitParams {
        pub fn check(&self) -> Result<(), String> {
            if !(self.lr.is_finite() && self.lr > 0.0) {
                return Err(format!("`lr` must be a positive number, got {}", self.lr));
            }
            if self.epochs == 0 || self.batch == 0 {
                return Err("`epochs` and `batch` must be at least 1".into());
            }
            Ok(())
        }
    }
}

/// `backbone.train` and `backbone.import`.
pub mod backbone {
    use super::train::FitParams;
    use serde::{Deserialize, Serialize};
    use std::path::PathBuf;

    /// Architectures a backbone artifact may hold.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum Arch {
        /// The project's small CNN (4 strided convolutions + a linear layer),
        /// trained by `backbone.train`.
        SmallCnn,
        /// torchvision's ResNet-18 without its final layer (512 features),
        /// weights from a safetensors file with torchvision's names.
        Resnet18,
        /// Any TorchScript module mapping float `[B, 3, H, W]` in [0, 1] to `[B, D]`.
        Torchscript,
    }

    /// Params of `backbone.train`.
    #[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct TrainConfig {
        /// Frames per second sampled from the videos (also for extraction).
        #[serde(default = "default_fps")]
        pub fps: f64,
        /// Frames are resized to `size` x `size`.
        #[serde(default = "default_size")]
        pub size: u32,
        /// Feature dimension.
        #[serde(default = "default_dim")]
        pub dim: i64,
        /// Seconds after a replay's start and before its end labelled `transition`.
        #[serde(default = "default_transition")]
        pub transition: f64,
        /// Adam learning rate.
        #[serde(default = "default_lr")]
        pub lr: f64,
        /// Most epochs.
        #[serde(default = "default_epochs")]
        pub epochs: usize,
        /// Early-stopping patience in epochs.
        #[serde(default = "default_patience")]
        pub patience: usize,
        /// Frames per mini-batch.
        #[serde(default = "default_batch")]
        pub batch: usize,
        /// Seed.
        #[serde(default = "default_seed")]
        pub seed: u64,
        /// Append full-rate motion statistics to every frame's features
        /// (mean change, share of repeated frames, largest change between
        /// the source frames a sampled frame stands for): the cue that tells
        /// slow motion, with or without replay graphics, from a live camera.
        /// Recorded in the backbone, so extraction and `detect` follow it.
        #[serde(default)]
        pub frame_motion: bool,
        /// The dataset collection, as `stage.output`; default: every input
        /// collection with `clips.json` items.
        #[serde(default)]
        pub from: Option<String>,
    }

    fn default_fps() -> f64 {
        5.0
    }
    fn default_size() -> u32 {
        64
    }
    fn default_dim() -> i64 {
        64
    }
    fn default_transition() -> f64 {
        0.6
    }
    fn default_lr() -> f64 {
        2e-3
    }
    fn default_epochs() -> usize {
        12
    }
    fn default_patience() -> usize {
        3
    }
    fn default_batch() -> usize {
        128
    }
    fn default_seed() -> u64 {
        7
    }

    impl TrainConfig {
        pub fn fit(&self) -> FitParams {
            FitParams {
                lr: self.lr,
                epochs: self.epochs,
                patience: self.patience,
                batch: self.batch,
                seed: self.seed,
            }
        }
    }

    /// Params of `backbone.import`: either `artifact` (a backbone already in
    /// the store, by ref or digest: pins the backbone so a run that adds videos
    /// extracts features only for them) or `path` with `arch` (a user's file).
    #[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ImportConfig {
        /// A backbone artifact in the store: a ref (`backbones/basketball@production`)
        /// or a digest. Resolved on every run.
        #[serde(default)]
        pub artifact: Option<String>,
        /// The file: a TorchScript module (`.pt`) or ResNet-18 weights (`.safetensors`).
        #[serde(default)]
        pub path: Option<PathBuf>,
        /// `torchscript` or `resnet18` (with `path`).
        #[serde(default)]
        pub arch: Option<Arch>,
        /// Frame size the network takes.
        #[serde(default = "default_import_size")]
        pub size: u32,
        /// Frames per second to sample.
        #[serde(default = "default_fps")]
        pub fps: f64,
        /// Append full-rate motion statistics to every frame's features
        /// (mean change, share of repeated frames, largest change between
        /// the source frames a sampled frame stands for): the cue that tells
        /// slow motion, with or without replay graphics, from a live camera.
        /// With `path`; recorded in the backbone, so extraction and `detect` follow it.
        #[serde(default)]
        pub frame_motion: bool,
    }

    impl ImportConfig {
        pub fn check(&self) -> Result<(), String> {
            if self.artifact.is_some() && self.frame_motion {
                return Err(
                    "`frame_motion` with `artifact` would be ignored: a backbone in the store keeps the setting it was made with".into(),
                );
            }
            match (&self.artifact, &self.path, self.arch) {
                (Some(_), None, None) => Ok(()),
                (None, Some(_), Some(Arch::Torchscript | Arch::Resnet18)) => Ok(()),
                (None, Some(_), Some(Arch::SmallCnn)) => Err(
                    "a `small-cnn` comes from `backbone.train`; import it with `artifact:` (its ref or digest)".into(),
                ),
                (None, Some(_), None) => Err("`path` needs `arch`: `torchscript` or `resnet18`".into()),
                _ => Err("give either `artifact` (a backbone in the store) or `path` with `arch`".into()),
            }
        }
    }

    fn default_import_size() -> u32 {
        112
    }
}

/// `features.extract`.
pub mod extract {
    use serde::Deserialize;

    /// Params of `features.extract`.
    #[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ExtractConfig {
        /// Frames per forward pass.
        #[serde(default = "default_batch")]
        pub batch: usize,
        /// Overrides the backbone's sampling rate (frames per second).
        #[serde(default)]
        pub fps: Option<f64>,
        /// Whole videos without clips: the items need no `clips.json` (map
        /// over `catalog.query`'s videos, e.g. the golden set, so that
        /// `detect` of every model on this backbone reuses the features).
        #[serde(default)]
        pub whole_videos: bool,
    }

    fn default_batch() -> usize {
        64
    }
}

/// `train.sweep` and `model.select`.
pub mod sweep {
    use super::train::FitParams;
    use crate::replay::postprocess::PostProcess;
    use serde::{Deserialize, Serialize};

    /// The temporal model's shape and training targets (shared with `train.joint`).
    #[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct SweepConfig {
        /// LSTM hidden size.
        #[serde(default = "default_hidden")]
        pub hidden: i64,
        /// LSTM layers.
        #[serde(default = "default_layers")]
        pub layers: i64,
        /// Read the sequence both ways.
        #[serde(default = "default_true")]
        pub bidirectional: bool,
        /// Start/end targets are 1 within this many seconds of the boundary.
        #[serde(default = "default_tolerance")]
        pub tolerance: f64,
        /// Weight of positive start/end frames in the loss.
        #[serde(default = "default_pos_weight")]
        pub pos_weight: f64,
        /// Adam learning rate.
        #[serde(default = "default_lr")]
        pub lr: f64,
        /// Most epochs.
        #[serde(default = "default_epochs")]
        pub epochs: usize,
        /// Early stopping: epochs without a better validation loss.
        #[serde(default = "default_patience")]
        pub patience: usize,
        /// Clips per mini-batch.
        #[serde(default = "default_batch")]
        pub batch: usize,
        /// Seed of initialisation and shuffling.
        #[serde(default = "default_seed")]
        pub seed: u64,
        /// Feed the LSTM each frame's change from the previous frame as well as
        /// the frame (slow motion changes little; a live camera a lot).
        #[serde(default = "default_true")]
        pub motion: bool,
        /// From per-frame signals to segments.
        #[serde(default)]
        pub postprocess: PostProcess,
        /// The input collection, as `stage.output`; default: every input
        /// collection with features.
        #[serde(default)]
        pub from: Option<String>,
    }

    fn default_hidden() -> i64 {
        64
    }
    fn default_layers() -> i64 {
        1
    }
    fn default_true() -> bool {
        true
    }
    fn default_tolerance() -> f64 {
        0.4
    }
    fn default_pos_weight() -> f64 {
        4.0
    }
    fn default_lr() -> f64 {
        3e-3
    }
    fn default_epochs() -> usize {
        60
    }
    fn default_patience() -> usize {
        8
    }
    fn default_batch() -> usize {
        32
    }
    fn default_seed() -> u64 {
        7
    }

    impl SweepConfig {
        pub fn fit(&self) -> FitParams {
            FitParams {
                lr: self.lr,
                epochs: self.epochs,
                patience: self.patience,
                batch: self.batch,
                seed: self.seed,
            }
        }
        pub fn check(&self) -> Result<(), String> {
            self.fit().check()?;
            self.postprocess.check()?;
            if self.hidden < 1 || self.layers < 1 {
                return Err(format!(
                    "`hidden` and `layers` must be at least 1, got {} and {}",
                    self.hidden, self.layers
                ));
            }
            if !(self.tolerance.is_finite()
                && self.tolerance >= 0.0
                && self.pos_weight.is_finite()
                && self.pos_weight > 0.0)
            {
                return Err("`tolerance` must be 0 or more and `pos_weight` positive".into());
            }
            Ok(())
        }
    }

    /// Params of `model.select`.
    #[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct SelectConfig {
        /// Test-split figure to maximise (e.g. `segment_f1`, `start_f1_1s`,
        /// `segment_mean_f1`).
        #[serde(default = "default_metric")]
        pub metric: String,
        /// Average the probabilities of the best this-many trials (ranked
        /// by `metric`, then validation loss) instead of keeping one. The
        /// test split is a video or two per league, too small to pick one
        /// trial reliably; an ensemble is steadier on unseen broadcasts.
        #[serde(default = "default_ensemble")]
        pub ensemble: usize,
    }

    impl SelectConfig {
        pub fn check(&self) -> Result<(), String> {
            if self.ensemble == 0 {
                return Err("`ensemble` must be 1 (one trial) or more".into());
            }
            Ok(())
        }
    }

    fn default_ensemble() -> usize {
        1
    }

    fn default_metric() -> String {
        "segment_f1".into()
    }
}

/// `train.joint`.
pub mod joint {
    use super::sweep::SweepConfig;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    /// Params of `train.joint`: the backbone's frame sampling and size plus
    /// every `train.sweep` param.
    #[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct JointConfig {
        /// Frames per second sampled from the videos.
        #[serde(default = "default_fps")]
        pub fps: f64,
        /// Frames are resized to `size` x `size`.
        #[serde(default = "default_size")]
        pub size: u32,
        /// CNN feature dimension.
        #[serde(default = "default_dim")]
        pub dim: i64,
        /// The temporal model, targets, optimiser and post-processing, as in
        /// `train.sweep` (its `from` names the dataset collection here).
        #[serde(default = "default_temporal")]
        pub temporal: SweepConfig,
    }

    fn default_fps() -> f64 {
        5.0
    }
    fn default_size() -> u32 {
        64
    }
    fn default_dim() -> i64 {
        64
    }
    fn default_temporal() -> SweepConfig {
        serde_json::from_value(json!({})).expect("every sweep param has a default")
    }
}

/// `detect`.
pub mod detect {
    use serde::Deserialize;

    /// Params of `detect`.
    #[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct DetectConfig {
        /// Catalog URL (SQLite path or postgres://) to record the predictions
        /// in, for videos that came from the catalog (their `uri`).
        #[serde(default)]
        pub catalog: Option<String>,
        /// The model may be missing: its input is an `artifact.ref` with
        /// `optional: true` that found nothing (no production model yet). Each
        /// video then gets `predictions.json` with `"model": null` and no
        /// segments, and `evaluate` shows the candidate alone.
        #[serde(default)]
        pub optional: bool,
    }
}

use serde_json::Value;

/// How a model kind runs: a whole task with one artifact output, or a map
/// stage producing one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Task(&'static str),
    Map(&'static str),
}

/// A model stage kind, as the engine sees it without libtorch.
pub struct ModelKind {
    pub name: &'static str,
    pub summary: &'static str,
    /// Bumped when behaviour changes; old cache entries stop matching.
    pub version: u32,
    pub shape: Shape,
    /// Whether a stage with these params runs on every run, never cached
    /// (it resolves a ref that may have moved).
    pub always_run: fn(&Value) -> bool,
    /// Parses and checks `with:`; the error names the param.
    pub check: fn(&Value) -> Result<(), ParamsError>,
    /// The schema of `with:`.
    pub params: engine_core::stage::ParamsSchema,
}

use engine_core::stage::{ParamsError, parse_params};

/// Every model stage kind.
pub const KINDS: &[ModelKind] = &[
    ModelKind {
        name: "backbone.train",
        summary: "a small frame CNN trained on live/transition/replay frames of the train split",
        version: 1,
        shape: Shape::Task("backbone"),
        always_run: |_| false,
        params: |g| g.subschema_for::<backbone::TrainConfig>(),
        check: |v| Ok(parse_params::<backbone::TrainConfig>(v)?.fit().check()?),
    },
    ModelKind {
        name: "backbone.import",
        summary: "a user-supplied backbone: TorchScript file or ResNet-18 safetensors",
        version: 1,
        shape: Shape::Task("backbone"),
        always_run: |v| v.get("artifact").is_some_and(|a| !a.is_null()),
        params: |g| g.subschema_for::<backbone::ImportConfig>(),
        check: |v| Ok(parse_params::<backbone::ImportConfig>(v)?.check()?),
    },
    ModelKind {
        name: "features.extract",
        summary: "per video: frozen-backbone features of every sampled frame and of each clip (safetensors)",
        version: 1,
        shape: Shape::Map("features"),
        always_run: |_| false,
        params: |g| g.subschema_for::<extract::ExtractConfig>(),
        check: |v| {
            if parse_params::<extract::ExtractConfig>(v)?.batch == 0 {
                return Err("`batch` must be at least 1".into());
            }
            Ok(())
        },
    },
    ModelKind {
        name: "train.sweep",
        summary: "an LSTM over cached features, one trial per matrix task, evaluated on the test split",
        version: 2, // 2: motion input, bridged post-processing
        shape: Shape::Task("model"),
        always_run: |_| false,
        params: |g| g.subschema_for::<sweep::SweepConfig>(),
        check: |v| Ok(parse_params::<sweep::SweepConfig>(v)?.check()?),
    },
    ModelKind {
        name: "model.select",
        summary: "the best of its input models by a test-split metric",
        version: 1,
        shape: Shape::Task("model"),
        always_run: |_| false,
        params: |g| g.subschema_for::<sweep::SelectConfig>(),
        check: |v| Ok(parse_params::<sweep::SelectConfig>(v)?.check()?),
    },
    ModelKind {
        name: "train.joint",
        summary: "baseline: CNN and LSTM trained end to end on clip frames (same data and budget as train.sweep)",
        version: 2, // 2: motion input, bridged post-processing
        shape: Shape::Task("model"),
        always_run: |_| false,
        params: |g| g.subschema_for::<joint::JointConfig>(),
        check: |v| Ok(parse_params::<joint::JointConfig>(v)?.temporal.check()?),
    },
    ModelKind {
        name: "detect",
        summary: "per video: replay segments from a detector (predictions.json), optionally recorded in the catalog",
        version: 3, // 2: bridged post-processing; 3: `input` in predictions.json
        shape: Shape::Map("predictions"),
        always_run: |_| false,
        params: |g| g.subschema_for::<detect::DetectConfig>(),
        check: |v| parse_params::<detect::DetectConfig>(v).map(|_| ()),
    },
];

/// The model kind `name`; panics on a name not in [`KINDS`] (a bug).
pub fn kind(name: &str) -> &'static ModelKind {
    KINDS
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("`{name}` is not a model stage kind"))
}
