#![no_main]
//! Any bytes through parse + compile: diagnostics or a pipeline, never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let reg = engine_core::stage::Registry::with_builtins();
        if let Err(d) = engine_core::compile::compile("fuzz.yaml", text, &reg) {
            assert!(!d.items.is_empty());
            let _ = d.render();
        }
    }
});
