//! The built-in stage plugins, one module per family; [`register`] is the
//! table of their kinds.

pub mod catalog;
#[cfg(feature = "video")]
pub mod clips;
pub mod deploy;
pub mod formats;
pub mod model;
pub mod replay;
#[cfg(feature = "video")]
pub mod report;
#[cfg(feature = "video")]
pub mod split;
#[cfg(feature = "video")]
pub mod teacher;
#[cfg(feature = "video")]
pub mod video;

use engine_core::stage::Registry;

/// Adds every stage kind this build has; the model kinds as proxies to
/// the worker (`model::register` adds the real ones, feature `torch`).
pub fn register(r: &mut Registry) {
    r.register::<catalog::CatalogQueryConfig>();
    r.register::<deploy::DeployConfig>();
    r.register::<replay::evaluate::config::EvaluateConfig>();
    #[cfg(feature = "video")]
    {
        r.register::<video::SynthConfig>();
        r.register::<video::ProbeConfig>();
        r.register::<report::ReportConfig>();
        r.register::<teacher::TagConfig>();
        r.register::<teacher::calibrate::CalibrateConfig>();
        r.register::<teacher::RouteConfig>();
        r.register::<clips::CutConfig>();
        r.register::<split::SplitConfig>();
    }
    // The model kinds as proxies: their stages run in `engine-worker`, so
    // a binary that registers them never loads libtorch.
    model::proxy::register(r);
}
