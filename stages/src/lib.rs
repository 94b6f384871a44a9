//! The built-in stage plugins, one module per family. Each module has a
//! `register` that adds its kinds to the engine's table.

pub mod catalog;
#[cfg(feature = "video")]
pub mod clips;
pub mod deploy;
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
    catalog::register(r);
    deploy::register(r);
    replay::register(r);
    #[cfg(feature = "video")]
    {
        video::register(r);
        report::register(r);
        teacher::register(r);
        clips::register(r);
        split::register(r);
    }
    // The model kinds as proxies: their stages run in `engine-worker`, so
    // a binary that registers them never loads libtorch.
    model::proxy::register(r);
}
