//! Data-creation stages end to end (written below).
