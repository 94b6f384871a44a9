//! The training loop both trainers share: Adam, shuffled mini-batches from
//! a seeded generator, early stopping on the validation loss with the best
//! weights restored, curves recorded, NaN losses caught.

use engine_core::stage::StageError;
use serde::{Deserialize, Serialize};
pub use stages::model::params::train::FitParams;
use std::collections::HashMap;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Reduction, Tensor};
use tokio_util::sync::CancellationToken;

/// Loss and best epoch per epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Curves {
    pub train_loss: Vec<f64>,
    pub val_loss: Vec<f64>,
    pub best_epoch: usize,
    /// Wall-clock training time: for records and logs only, never inside an
    /// artifact (identical weights must get identical digests).
    #[serde(skip)]
    pub seconds: f64,
}

/// Per-frame loss of `[B, T, 3]` logits against targets: BCE, with the rare
/// start and end frames weighted up.
pub fn frame_loss(logits: &Tensor, y: &Tensor, pos_weight: f64) -> Tensor {
    let w =
        Tensor::from_slice(&[pos_weight as f32, pos_weight as f32, 1.0]).to_device(logits.device());
    logits.binary_cross_entropy_with_logits::<&Tensor>(y, None, Some(&w), Reduction::Mean)
}

/// A permutation of `0..n` from a SplitMix64 stream: the same on every platform.
pub fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<i64> {
    let mut s = seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut v: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Trains the variables of `vs`. `train_loss(indices)` returns the loss of
/// a mini-batch of training examples (with gradients); `val_loss()` the
/// validation loss (called under no_grad). Returns the curves; the weights
/// of the best validation epoch are restored.
// Both trainers pass their closures and settings straight through; a
// struct for them would only rename the arguments.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    vs: &nn::VarStore,
    n_train: usize,
    p: &FitParams,
    what: &str,
    mut train_loss: impl FnMut(&[i64]) -> Tensor,
    mut val_loss: impl FnMut() -> f64,
    cancel: &CancellationToken,
    log: &dyn Fn(String),
) -> Result<Curves, StageError> {
    let t0 = std::time::Instant::now();
    let mut opt = nn::Adam::default()
        .build(vs, p.lr)
        .map_err(|e| StageError::msg(format!("Failed to set up the optimiser for {what}: {e}")))?;
    let mut curves = Curves::default();
    let mut best = f64::INFINITY;
    let mut best_weights: HashMap<String, Tensor> = HashMap::new();
    let mut since_best = 0;
    for epoch in 0..p.epochs {
        if cancel.is_cancelled() {
            return Err(StageError::Cancelled);
        }
        let order = shuffled(n_train, p.seed, epoch);
        let (mut sum, mut count) = (0.0, 0usize);
        for idx in order.chunks(p.batch) {
            let loss = train_loss(idx);
            let v = loss.double_value(&[]);
            if !v.is_finite() {
                return Err(StageError::msg(format!(
                    "training {what} diverged: the loss is {v} in epoch {}; lower `lr` (now {}) or check the features for NaNs",
                    epoch + 1,
                    p.lr
                )));
            }
            opt.backward_step(&loss);
            sum += v * idx.len() as f64;
            count += idx.len();
        }
        let tl = sum / count.max(1) as f64;
        let vl = tch::no_grad(&mut val_loss);
        if !vl.is_finite() {
            return Err(StageError::msg(format!(
                "training {what} diverged: the validation loss is {vl} in epoch {}; lower `lr` (now {})",
                epoch + 1,
                p.lr
            )));
        }
        curves.train_loss.push(tl);
        curves.val_loss.push(vl);
        log(format!(
            "{what}: epoch {} train loss {tl:.4} validation loss {vl:.4}",
            epoch + 1
        ));
        if vl < best - 1e-5 {
            best = vl;
            curves.best_epoch = epoch + 1;
            since_best = 0;
            best_weights = vs
                .variables()
                .into_iter()
                .map(|(k, v)| (k, v.detach().copy()))
                .collect();
        } else {
            since_best += 1;
            if since_best >= p.patience {
                log(format!(
                    "{what}: early stop after epoch {} (best {})",
                    epoch + 1,
                    curves.best_epoch
                ));
                break;
            }
        }
    }
    tch::no_grad(|| {
        for (k, mut v) in vs.variables() {
            if let Some(b) = best_weights.get(&k) {
                v.copy_(b);
            }
        }
    });
    curves.seconds = t0.elapsed().as_secs_f64();
    Ok(curves)
}

/// Fraction of `pred` argmax equal to `y`.
pub fn accuracy(logits: &Tensor, y: &Tensor) -> f64 {
    logits
        .argmax(-1, false)
        .eq_tensor(y)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_loss_stops_training_with_a_clear_error() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().zeros("w", &[1]);
        let p = FitParams {
            lr: 1e-3,
            epochs: 3,
            patience: 2,
            batch: 4,
            seed: 1,
        };
        let err = fit(
            &vs,
            8,
            &p,
            "trial x",
            |_| (&w * f64::NAN).sum(Kind::Float),
            || 0.0,
            &CancellationToken::new(),
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("training trial x diverged") && err.contains("lower `lr`"),
            "{err}"
        );
    }

    #[test]
    fn shuffles_are_permutations_and_repeat() {
        let a = shuffled(100, 7, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<i64>>());
        assert_eq!(a, shuffled(100, 7, 0));
        assert_ne!(a, shuffled(100, 7, 1));
    }
}
