pub fn register(_r: &mut engine_core::stage::Registry) {}
