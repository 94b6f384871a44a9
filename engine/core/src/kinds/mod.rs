//! The stage kinds that ship with the engine itself, in one table.
//!
//! Production kinds: `shell` (any command) and `artifact.ref` (an artifact
//! already in the store). The `builtin.*` kinds in [`testing`] exist for
//! tests, examples and benchmarks. Domain kinds (video, teacher, model)
//! live in their own crates and register into the same [`Registry`].

pub mod artifact_ref;
pub mod shell;
pub mod testing;

use crate::stage::Registry;

/// Adds every kind of the engine to `r`.
pub fn register(r: &mut Registry) {
    r.register::<shell::ShellConfig>();
    r.register::<artifact_ref::RefConfig>();

    use testing::*;
    r.register::<ItemsConfig>();
    r.register::<UpperConfig>();
    r.register::<ConcatConfig>();
    r.register::<EchoConfig>();
    r.register::<ValueConfig>();
    r.register::<SleepConfig>();
    r.register::<FlakyConfig>();
    r.register::<FailConfig>();
    r.register::<WriteConfig>();
}
