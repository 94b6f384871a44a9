//! What a live run page receives: only what changed since the page (or
//! the last update) was drawn, so a run of 10,000 tasks costs its readers
//! a few KB/s, not its whole table every checkpoint.
//!
//! A page's state is a [`Snapshot`]: a digest of each fragment's data
//! (the header, the stage graph, the timeline) and one per task row. The
//! run page keeps its snapshot here under a key it puts in its events
//! URL (`?since=KEY`); the stream starts from that snapshot, so a page
//! opened on a running run receives nothing until something changes.
//! Without a known key (a restarted server, an evicted snapshot) the first
//! update carries everything, as the page would be drawn.
//!
//! Each update sends the fragments that changed, rendered, and the task
//! rows that changed as data (`[index, state, seconds, why, items,
//! error]`): a row's HTML is ~10 times its data. The timeline, whose bars
//! all move when the run's end moves, is sent at most every
//! [`TIMELINE_EVERY`] and with the last update.

use crate::error::Result;
use crate::views::RunView;
use crate::{Ctx, pages};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often, at most, a live page receives its timeline again.
pub const TIMELINE_EVERY: Duration = Duration::from_secs(10);

/// Snapshots kept for pages about to open their event stream; a page
/// whose snapshot was evicted starts with a full update.
const KEEP: usize = 32;

/// What a page shows, as digests.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    head: blake3::Hash,
    dag: blake3::Hash,
    timeline: blake3::Hash,
    rows: Vec<u64>,
}

/// A task row as the page's script applies it.
#[derive(Serialize)]
struct Row<'a>(
    usize,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
);

fn rows(view: &RunView) -> impl Iterator<Item = Row<'_>> {
    view.tasks.iter().enumerate().map(|(i, t)| {
        Row(
            i,
            t.state,
            &t.seconds,
            &t.reason,
            t.items.as_deref(),
            t.error.as_deref(),
        )
    })
}

fn digest<T: Serialize>(v: &T) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    // Serialising plain structs to a writer cannot fail.
    let _ = serde_json::to_writer(HashWriter(&mut h), v);
    h.finalize()
}

struct HashWriter<'a>(&'a mut blake3::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Snapshot {
    pub fn of(view: &RunView) -> Snapshot {
        Snapshot {
            head: digest(&view.run),
            dag: digest(&view.graph),
            timeline: digest(&view.timeline),
            rows: rows(view)
                .map(|r| {
                    let b = digest(&r);
                    let mut first = [0u8; 8];
                    first.copy_from_slice(&b.as_bytes()[..8]);
                    u64::from_le_bytes(first)
                })
                .collect(),
        }
    }

    fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        for d in [&self.head, &self.dag, &self.timeline] {
            h.update(d.as_bytes());
        }
        for r in &self.rows {
            h.update(&r.to_le_bytes());
        }
        h.finalize().to_hex()[..32].to_string()
    }
}

/// The snapshots of pages recently drawn, by key.
#[derive(Default)]
pub struct Snapshots(Mutex<VecDeque<(String, Arc<Snapshot>)>>);

impl Snapshots {
    /// Keeps `s` and returns its key, for the page's events URL.
    pub fn keep(&self, s: Snapshot) -> String {
        let key = s.key();
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !q.iter().any(|(k, _)| *k == key) {
            if q.len() >= KEEP {
                q.pop_front();
            }
            q.push_back((key.clone(), Arc::new(s)));
        }
        key
    }

    pub fn get(&self, key: &str) -> Option<Snapshot> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| Snapshot::clone(s))
    }
}

/// One client's stream: what its page shows now.
pub struct Follower {
    /// `None` until the first update when the page's snapshot is unknown.
    shown: Option<Snapshot>,
    timeline_at: Instant,
}

impl Follower {
    pub fn new(since: Option<Snapshot>) -> Follower {
        Follower {
            shown: since,
            timeline_at: Instant::now(),
        }
    }

    /// The update that brings the page from what it shows to `view`, as
    /// the event's JSON; `None` when nothing it would send changed.
    pub fn update(&mut self, ctx: &Ctx, view: &RunView) -> Result<Option<String>> {
        let now = Snapshot::of(view);
        let last = !view.live;
        let render = |t: &str| pages::render(&ctx.env, t, &ctx.common, view);
        let mut m = serde_json::Map::new();
        let mut shown = match self.shown.take() {
            Some(s) if s.rows.len() == now.rows.len() => s,
            _ => {
                // Everything, as the page would be drawn.
                for (key, t) in [
                    ("runhead", "runhead.html"),
                    ("dag", "dag.html"),
                    ("timeline", "timeline.html"),
                    ("tasks", "tasks.html"),
                ] {
                    m.insert(key.into(), render(t)?.into());
                }
                m.insert("status".into(), view.run.status.clone().into());
                self.timeline_at = Instant::now();
                self.shown = Some(now);
                return Ok(Some(serde_json::Value::Object(m).to_string()));
            }
        };
        if shown.head != now.head {
            m.insert("runhead".into(), render("runhead.html")?.into());
            shown.head = now.head;
        }
        if shown.dag != now.dag {
            m.insert("dag".into(), render("dag.html")?.into());
            shown.dag = now.dag;
        }
        if shown.timeline != now.timeline && (last || self.timeline_at.elapsed() >= TIMELINE_EVERY)
        {
            m.insert("timeline".into(), render("timeline.html")?.into());
            shown.timeline = now.timeline;
            self.timeline_at = Instant::now();
        }
        let changed: Vec<Row> = rows(view)
            .filter(|r| shown.rows[r.0] != now.rows[r.0])
            .collect();
        if !changed.is_empty() {
            m.insert(
                "rows".into(),
                serde_json::to_value(&changed).unwrap_or_default(),
            );
            shown.rows = now.rows;
        }
        self.shown = Some(shown);
        if m.is_empty() {
            return Ok(None);
        }
        m.insert("status".into(), view.run.status.clone().into());
        Ok(Some(serde_json::Value::Object(m).to_string()))
    }
}
