//! Synth (todo).
