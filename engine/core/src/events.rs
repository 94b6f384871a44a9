//! Events a run emits, for progress displays and `--json` output.

use serde::Serialize;

/// What happened, in the order it happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run: String,
        pipeline: String,
        tasks: usize,
        store: String,
    },
    TaskStarted {
        task: String,
        attempt: u32,
    },
    TaskRetry {
        task: String,
        attempt: u32,
        error: String,
        delay_ms: u64,
    },
    TaskFinished {
        task: String,
        status: crate::records::TaskStatus,
        seconds: f64,
        reason: String,
        error: Option<String>,
    },
    Progress {
        task: String,
        done: u64,
        total: u64,
    },
    Log {
        task: String,
        line: String,
    },
    RunFinished {
        run: String,
        status: crate::records::RunStatus,
        seconds: f64,
        counts: std::collections::BTreeMap<String, usize>,
    },
}

/// Where events go; dropping events when nobody listens is fine.
#[derive(Clone, Default)]
pub struct EventSink(Option<tokio::sync::mpsc::UnboundedSender<Event>>);

impl EventSink {
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<Event>) -> Self {
        EventSink(Some(tx))
    }
    pub fn none() -> Self {
        EventSink(None)
    }
    pub fn emit(&self, e: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }
}
