//! The replay model on libtorch: a frame backbone, frozen
//! and used as a feature extractor; an LSTM over feature sequences; the
//! joint CNN+LSTM baseline; and the detector that production inference
//! and evaluation share.
//!
//! Artifacts (each a manifest of files, named by content):
//! - backbone: `backbone.json` ([`net::BackboneInfo`]) + weights
//!   (`backbone.safetensors`, or `backbone.pt` for TorchScript);
//! - detector: `model.json` ([`detector::DetectorInfo`]) + the backbone's
//!   weights + `temporal.safetensors`.
//!
//! `Tensor` is Send but not Sync: every worker loads its own model.
//!
//! `engine` registers these kinds as proxies (`stages::model::proxy`) and
//! never links this crate; `engine-worker` registers them with [`register`]
//! and runs them.

pub mod backbone;
pub mod data;
pub mod detector;
pub mod extract;
pub mod frames;
pub mod joint;
pub mod net;
pub mod sweep;
pub mod train;

use engine_core::stage::{ParamsError, Registry, StageError, StageImpl, parse_params};
use stages::model::params;
use std::path::Path;

/// Registers the real model stages, replacing their proxies: for the
/// worker executable and for tests that run the stages in-process.
pub fn register(r: &mut Registry) {
    add::<backbone::TrainBackbone>(r);
    add::<backbone::Import>(r);
    add::<extract::Extract>(r);
    add::<sweep::Sweep>(r);
    add::<sweep::Select>(r);
    add::<joint::Joint>(r);
    add::<detector::Detect>(r);
}

/// A model stage as the worker builds it. Its params type, summary, schema
/// and checks live in [`params::KINDS`] (the `engine` binary's proxies read
/// them without libtorch); all this adds is the stage itself.
trait ModelStage {
    type Config: serde::de::DeserializeOwned;
    const KIND: &'static str;
    fn build(c: Self::Config) -> StageImpl;
}

fn add<S: ModelStage>(r: &mut Registry) {
    let k = params::kind(S::KIND);
    r.insert(engine_core::stage::KindInfo {
        name: k.name,
        summary: k.summary,
        build: build::<S>,
        params: Some(k.params),
    });
}

/// Checked by the proxy's own check, so `engine` and the worker refuse the
/// same params with the same message.
fn build<S: ModelStage>(v: &serde_json::Value) -> Result<StageImpl, ParamsError> {
    (params::kind(S::KIND).check)(v)?;
    Ok(S::build(parse_params(v)?))
}

/// CUDA when present, else CPU. Nothing assumes a GPU.
pub fn device() -> tch::Device {
    tch::Device::cuda_if_available()
}

/// A libtorch error as a stage error, saying what was being done.
pub fn torch_err(what: impl std::fmt::Display) -> impl FnOnce(tch::TchError) -> StageError {
    move |e| StageError::msg(format!("{what}: {e}"))
}

/// Reads and parses a JSON file of an artifact, naming it on failure.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::io("read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        StageError::msg(format!(
            "Failed to parse {what} `{}`: {e}; is this the right kind of artifact?",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use engine_core::stage::Registry;
    use serde_json::json;

    /// `engine` plans with the proxies and the worker runs these stages:
    /// the two must agree on everything a fingerprint or a plan reads.
    #[test]
    fn each_proxy_matches_its_stage() {
        let mut proxies = Registry::default();
        stages::model::proxy::register(&mut proxies);
        let mut real = Registry::default();
        super::register(&mut real);
        let names: Vec<&str> = real.names().collect();
        assert_eq!(names, proxies.names().collect::<Vec<_>>());
        let cases = names.iter().flat_map(|&name| match name {
            "backbone.import" => vec![
                (name, json!({"artifact": "backbones/x@production"})),
                (name, json!({"path": "b.pt", "arch": "torchscript"})),
            ],
            _ => vec![(name, json!({}))],
        });
        for (name, params) in cases {
            let p = (proxies.get(name).unwrap().build)(&params).unwrap();
            let r = (real.get(name).unwrap().build)(&params).unwrap();
            assert_eq!(p.version(), r.version(), "{name}");
            assert_eq!(p.is_map(), r.is_map(), "{name}");
            assert_eq!(p.outputs(), r.outputs(), "{name}");
            assert_eq!(p.always_run(), r.always_run(), "{name}");
            assert_eq!(
                proxies.get(name).unwrap().summary,
                real.get(name).unwrap().summary
            );
            assert!(proxies.get(name).unwrap().params.is_some(), "{name}");
            // The same params are refused the same way.
            let bad = json!({"no_such_param": 1});
            assert_eq!(
                (proxies.get(name).unwrap().build)(&bad).err(),
                (real.get(name).unwrap().build)(&bad).err(),
                "{name}"
            );
        }
    }
}
