//! Labels (todo).
