//! The replay detector's torch-free parts, shared by training, evaluation
//! and production inference: per-frame targets from segments, the
//! post-processing rule from per-frame signals to segments, and the metrics
//! of the evaluation protocol (DESIGN.md, "Evaluation protocol"), and the
//! `evaluate` stage that scores candidate against production with them.

pub mod evaluate;
pub mod html;
pub mod metrics;
pub mod postprocess;
pub mod predictions;
pub mod targets;

/// The three per-frame outputs of the temporal model, in tensor order.
pub const SIGNALS: [&str; 3] = ["start", "end", "content"];
