//! The networks: the small frame CNN, user-supplied backbones (TorchScript,
//! ResNet-18 safetensors) and the LSTM temporal model.

use crate::torch_err;
use engine_core::stage::StageError;
use serde::{Deserialize, Serialize};
pub use stages::model::params::backbone::Arch;
use std::path::Path;
use tch::nn::{self, ModuleT, RNN};
use tch::{Device, Kind, Tensor};

/// `backbone.json`: what a backbone is and how it wants its frames.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneInfo {
    /// Always `backbone`.
    pub kind: String,
    pub arch: Arch,
    /// Frame size fed to the network.
    pub width: u32,
    pub height: u32,
    /// Feature dimension.
    pub dim: i64,
    /// Frames per second it samples from a video.
    pub fps: f64,
    /// Each sampled frame's features end with [`media::MOTION_CHANNELS`]
    /// numbers about how fast the picture moves at the source's full frame
    /// rate ([`media::frame_motion`]): what tells slow motion from a live
    /// camera when the sampled frames alone cannot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frame_motion: bool,
    /// File holding the weights, inside the artifact.
    pub weights: String,
    /// How it was made (training summary or source file).
    #[serde(default)]
    pub origin: serde_json::Value,
}

pub const BACKBONE_KIND: &str = "backbone";

impl BackboneInfo {
    /// Numbers per sampled frame: the network's `dim`, plus the motion
    /// channels when `frame_motion` is on.
    pub fn feature_dim(&self) -> i64 {
        self.dim
            + if self.frame_motion {
                media::MOTION_CHANNELS as i64
            } else {
                0
            }
    }
}

/// The small frame CNN. `features` is the frozen backbone's output;
/// `head` classifies frames (live, transition, replay) during its training.
#[derive(Debug)]
pub struct SmallCnn {
    convs: Vec<nn::Conv2D>,
    fc: nn::Linear,
    pub head: nn::Linear,
}

pub const SMALL_CNN_CHANNELS: [i64; 4] = [16, 32, 64, 32];

impl SmallCnn {
    pub fn new(p: &nn::Path, dim: i64, classes: i64) -> SmallCnn {
        let cfg = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let mut convs = vec![];
        let mut c_in = 3;
        for (i, &c) in SMALL_CNN_CHANNELS.iter().enumerate() {
            convs.push(nn::conv2d(p / format!("conv{i}"), c_in, c, 3, cfg));
            c_in = c;
        }
        SmallCnn {
            convs,
            fc: nn::linear(p / "fc", c_in * 16, dim, Default::default()),
            head: nn::linear(p / "head", dim, classes, Default::default()),
        }
    }

    /// Frames as float `[B, 3, H, W]` in [0, 1] -> features `[B, dim]`.
    pub fn features(&self, x: &Tensor) -> Tensor {
        let mut h = (x - 0.5) / 0.25;
        for c in &self.convs {
            h = h.apply(c).relu();
        }
        h.adaptive_avg_pool2d([4, 4])
            .flatten(1, -1)
            .apply(&self.fc)
            .relu()
    }
}

/// A loaded, frozen backbone.
pub enum Backbone {
    Small {
        _vs: nn::VarStore,
        net: SmallCnn,
    },
    Resnet {
        _vs: nn::VarStore,
        net: nn::FuncT<'static>,
    },
    Script(tch::CModule),
}

impl Backbone {
    /// Loads a backbone's weights from `dir` (holding `info.weights`).
    pub fn load(info: &BackboneInfo, dir: &Path, device: Device) -> Result<Backbone, StageError> {
        if info.kind != BACKBONE_KIND {
            return Err(StageError::msg(format!(
                "`{}` is a `{}` artifact, not a backbone",
                dir.display(),
                info.kind
            )));
        }
        let path = dir.join(&info.weights);
        let what = format!("Failed to load backbone weights `{}`", path.display());
        Ok(match info.arch {
            Arch::SmallCnn => {
                let mut vs = nn::VarStore::new(device);
                let net = SmallCnn::new(&vs.root(), info.dim, 3);
                vs.load(&path).map_err(torch_err(&what))?;
                vs.freeze();
                Backbone::Small { _vs: vs, net }
            }
            Arch::Resnet18 => {
                let mut vs = nn::VarStore::new(device);
                let net = tch::vision::resnet::resnet18_no_final_layer(&vs.root());
                vs.load(&path).map_err(torch_err(&what))?;
                vs.freeze();
                Backbone::Resnet { _vs: vs, net }
            }
            Arch::Torchscript => {
                let mut m =
                    tch::CModule::load_on_device(&path, device).map_err(torch_err(&what))?;
                m.set_eval();
                Backbone::Script(m)
            }
        })
    }

    /// Frames `[B, H, W, 3]` u8 -> features `[B, D]`, without gradients.
    pub fn features(&self, frames: &Tensor) -> Result<Tensor, StageError> {
        let x = frames.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
        tch::no_grad(|| match self {
            Backbone::Small { net, .. } => Ok(net.features(&x)),
            Backbone::Resnet { net, .. } => {
                let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406])
                    .view([1, 3, 1, 1])
                    .to_device(x.device());
                let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225])
                    .view([1, 3, 1, 1])
                    .to_device(x.device());
                Ok(net.forward_t(&((x - mean) / std), false))
            }
            Backbone::Script(m) => {
                let y = m
                    .forward_ts(&[x])
                    .map_err(torch_err("TorchScript backbone forward failed"))?;
                match y.dim() {
                    2 => Ok(y),
                    4 => Ok(y.mean_dim(&[2i64, 3][..], false, Kind::Float)),
                    d => Err(StageError::msg(format!(
                        "the TorchScript backbone returned a {d}-d tensor; it must return [batch, features]"
                    ))),
                }
            }
        })
    }
}

/// Shape of the temporal model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalConfig {
    /// Feature dimension in.
    pub dim: i64,
    pub hidden: i64,
    pub layers: i64,
    pub bidirectional: bool,
    /// Frames per window at training and inference.
    pub window: i64,
    /// The LSTM also reads each frame's change from the previous frame.
    #[serde(default)]
    pub motion: bool,
}

/// LSTM over per-frame features -> per-frame logits `[start, end, content]`.
/// Features are standardised with the training set's mean and std, which
/// are stored with the weights.
#[derive(Debug)]
pub struct Temporal {
    pub cfg: TemporalConfig,
    mean: Tensor,
    std: Tensor,
    lstm: nn::LSTM,
    out: nn::Linear,
}

impl Temporal {
    pub fn new(p: &nn::Path, cfg: TemporalConfig) -> Temporal {
        let mean = p.zeros_no_train("norm_mean", &[cfg.dim]);
        let std = p.ones_no_train("norm_std", &[cfg.dim]);
        let rc = nn::RNNConfig {
            num_layers: cfg.layers,
            bidirectional: cfg.bidirectional,
            batch_first: true,
            ..Default::default()
        };
        let input = if cfg.motion { 2 * cfg.dim } else { cfg.dim };
        let lstm = nn::lstm(p / "lstm", input, cfg.hidden, rc);
        let dirs = if cfg.bidirectional { 2 } else { 1 };
        let out = nn::linear(p / "out", cfg.hidden * dirs, 3, Default::default());
        Temporal {
            cfg,
            mean,
            std,
            lstm,
            out,
        }
    }

    /// Sets the standardisation from training features `[N, dim]`.
    pub fn set_norm(&mut self, feats: &Tensor) {
        tch::no_grad(|| {
            let m = feats.mean_dim(&[0i64][..], false, Kind::Float);
            let s = feats.std_dim(&[0i64][..], false, false).clamp_min(1e-4);
            self.mean.copy_(&m);
            self.std.copy_(&s);
        });
    }

    /// `[B, T, dim]` -> logits `[B, T, 3]`. With `motion`, each frame's
    /// standardised features are followed by their change from the previous
    /// frame (zero for a window's first frame): a frozen per-frame backbone
    /// sees no movement, and slow motion (repeated or in-between frames)
    /// changes little from frame to frame where a live camera cut to a tight
    /// shot changes a lot.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = (x - &self.mean) / &self.std;
        if self.cfg.motion {
            let t = x.size()[1];
            let prev = Tensor::cat(&[x.narrow(1, 0, 1), x.narrow(1, 0, t - 1)], 1);
            let delta = &x - prev;
            x = Tensor::cat(&[x, delta], 2);
        }
        let (h, _) = self.lstm.seq(&x);
        h.apply(&self.out)
    }

    /// Per-frame probabilities of a whole sequence `[N, dim]`: overlapping
    /// windows of `cfg.window` frames (hop half a window), averaged where
    /// they overlap, so a long video is seen in the context length the
    /// model was trained on.
    pub fn probs(&self, feats: &Tensor) -> Result<Vec<[f32; 3]>, StageError> {
        let n = feats.size()[0];
        if n == 0 {
            return Ok(vec![]);
        }
        let w = self.cfg.window.clamp(1, n);
        let hop = (w / 2).max(1);
        let mut starts: Vec<i64> = (0..=n - w).step_by(hop as usize).collect();
        if *starts.last().unwrap_or(&0) != n - w {
            starts.push(n - w);
        }
        let mut sum = vec![[0f64; 3]; n as usize];
        let mut count = vec![0u32; n as usize];
        tch::no_grad(|| -> Result<(), StageError> {
            for chunk in starts.chunks(64) {
                let batch = Tensor::stack(
                    &chunk
                        .iter()
                        .map(|&a| feats.narrow(0, a, w))
                        .collect::<Vec<_>>(),
                    0,
                );
                let p = self
                    .forward(&batch)
                    .sigmoid()
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float);
                let v: Vec<f32> = Vec::try_from(p.flatten(0, -1))
                    .map_err(torch_err("Failed to read the temporal model's output"))?;
                for (k, &a) in chunk.iter().enumerate() {
                    for t in 0..w {
                        let f = (a + t) as usize;
                        let base = ((k as i64 * w + t) * 3) as usize;
                        for s in 0..3 {
                            sum[f][s] += v[base + s] as f64;
                        }
                        count[f] += 1;
                    }
                }
            }
            Ok(())
        })?;
        Ok(sum
            .iter()
            .zip(&count)
            .map(|(s, &c)| {
                let c = c.max(1) as f64;
                [(s[0] / c) as f32, (s[1] / c) as f32, (s[2] / c) as f32]
            })
            .collect())
    }
}

/// A model trained end to end (the joint baseline): the small CNN's
/// features feed the temporal model.
pub fn joint_forward(cnn: &SmallCnn, temporal: &Temporal, frames: &Tensor) -> Tensor {
    // frames: [B, T, H, W, 3] u8
    let s = frames.size();
    let (b, t) = (s[0], s[1]);
    let x = frames
        .flatten(0, 1)
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    let f = cnn.features(&x).view([b, t, -1]);
    temporal.forward(&f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_line_up() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cnn = SmallCnn::new(&vs.root(), 32, 3);
        let x = Tensor::zeros([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        assert_eq!(cnn.features(&x).size(), vec![2, 32]);
        let t = Temporal::new(
            &vs.root(),
            TemporalConfig {
                dim: 32,
                hidden: 8,
                layers: 1,
                bidirectional: true,
                window: 10,
                motion: true,
            },
        );
        let feats = Tensor::randn([25, 32], (Kind::Float, Device::Cpu));
        let p = t.probs(&feats).unwrap();
        assert_eq!(p.len(), 25);
        assert!(p.iter().all(|q| q.iter().all(|v| (0.0..=1.0).contains(v))));
    }
}
