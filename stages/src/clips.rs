//! Placeholder: filled in by the data-creation work (issue 5).

use engine_core::stage::Registry;

pub fn register(_r: &mut Registry) {}
