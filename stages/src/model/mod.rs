//! The model stage kinds as the `engine` binary knows them: their params,
//! versions and outputs ([`params`]) and the proxies that hand their work
//! to the `engine-worker` process ([`proxy`]). None of this needs libtorch;
//! the stages themselves are in the `replay-model` crate (`model/`), which
//! only `engine-worker` links.

pub mod params;
pub mod proxy;
