//! The model kinds as the `engine` binary registers them: params checked
//! and versions and outputs declared here, without libtorch; the work runs
//! in the `engine-worker` process ([`engine_core::worker`]).

use super::params::{ModelKind, Shape, kind};
use engine_core::stage::{KindInfo, OutputDecl, ParamsError, Registry, StageImpl};
use engine_core::worker::{Remote, WorkerMap, WorkerTask};
use serde_json::Value;
use std::sync::Arc;

/// Registers every model kind as a proxy to the worker.
pub fn register(r: &mut Registry) {
    // One line per kind: a build function is a plain `fn`, so each names
    // its kind inline rather than capturing it.
    macro_rules! proxy {
        ($name:literal) => {{
            let k = kind($name);
            r.insert(KindInfo {
                name: k.name,
                summary: k.summary,
                build: |v| build(kind($name), v),
                params: Some(k.params),
            });
        }};
    }
    proxy!("backbone.train");
    proxy!("backbone.import");
    proxy!("features.extract");
    proxy!("train.sweep");
    proxy!("model.select");
    proxy!("train.joint");
    proxy!("detect");
}

fn build(k: &'static ModelKind, params: &Value) -> Result<StageImpl, ParamsError> {
    (k.check)(params)?;
    let remote = Remote {
        kind: k.name,
        version: k.version,
        params: params.clone(),
    };
    Ok(match k.shape {
        Shape::Task(output) => StageImpl::Task(Arc::new(WorkerTask {
            remote,
            outputs: vec![OutputDecl::artifact(output)],
            always_run: (k.always_run)(params),
        })),
        Shape::Map(output) => StageImpl::Map(Arc::new(WorkerMap {
            remote,
            output: output.into(),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_kind_has_a_proxy() {
        let mut r = Registry::default();
        register(&mut r);
        let names: Vec<&str> = r.names().collect();
        for k in super::super::params::KINDS {
            assert!(names.contains(&k.name), "{} has no proxy", k.name);
        }
        assert_eq!(names.len(), super::super::params::KINDS.len());
    }

    #[test]
    fn an_empty_ensemble_is_refused_when_the_pipeline_is_compiled() {
        let mut r = Registry::default();
        register(&mut r);
        let build = r.get("model.select").unwrap().build;
        let err = build(&serde_json::json!({"ensemble": 0}))
            .err()
            .expect("ensemble 0 is refused");
        assert_eq!(err.to_string(), "`ensemble` must be 1 (one trial) or more");
        assert!(build(&serde_json::json!({"ensemble": 3})).is_ok());
    }

    #[test]
    fn a_proxy_checks_params_like_the_stage() {
        let mut r = Registry::default();
        register(&mut r);
        let build = r.get("train.sweep").unwrap().build;
        let err = build(&serde_json::json!({"hidden": 0}))
            .err()
            .expect("hidden 0 is refused");
        assert!(err.message.contains("`hidden`"), "{err}");
        let err = build(&serde_json::json!({"hiden": 3}))
            .err()
            .expect("a typo is refused");
        assert!(err.message.contains("hiden"), "{err}");
        let s = build(&serde_json::json!({"hidden": 32})).unwrap();
        assert_eq!(s.version(), kind("train.sweep").version);
        assert!(!s.is_map());
        let s = (r.get("features.extract").unwrap().build)(&Value::Null).unwrap();
        assert!(s.is_map());
        assert_eq!(s.outputs()[0].name, "features");
    }
}
