//! Placeholder: filled in by the data-creation work (issue 5).

pub mod detect;

use engine_core::stage::Registry;

pub fn register(_r: &mut Registry) {}
