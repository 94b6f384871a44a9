//! The built-in stage plugins, one module per family. Each module has a
//! `register` that adds its kinds to the engine's table.

pub mod catalog;
#[cfg(feature = "video")]
pub mod clips;
pub mod deploy;
#[cfg(feature = "torch")]
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

/// Adds every stage kind this build has.
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
    #[cfg(feature = "torch")]
    model::register(r);
    let _ = r;
}
