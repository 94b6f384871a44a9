//! The task log: one per task, shared by its attempts and its items, kept
//! in memory for the run record and streamed as events.

use crate::events::{Event, EventSink};
use std::sync::{Arc, Mutex};

/// The task log, shared between a task's attempts and its items.
#[derive(Clone)]
pub struct Log {
    task: String,
    buf: Arc<Mutex<LogBuf>>,
    events: EventSink,
}

/// The stored log: its first [`LOG_HEAD`] bytes and its last [`LOG_TAIL`]
/// bytes, with a line saying what was cut between them (the end of a log
/// is where a failure shows).
#[derive(Default)]
struct LogBuf {
    head: String,
    tail: std::collections::VecDeque<String>,
    tail_bytes: usize,
    cut_lines: usize,
    cut_bytes: usize,
}

const LOG_HEAD: usize = 1 << 20;
const LOG_TAIL: usize = 7 << 20;

impl LogBuf {
    fn push(&mut self, line: &str) {
        if self.tail.is_empty() && self.head.len() + line.len() < LOG_HEAD {
            self.head.push_str(line);
            self.head.push('\n');
            return;
        }
        self.tail_bytes += line.len() + 1;
        self.tail.push_back(line.to_string());
        while self.tail_bytes > LOG_TAIL
            && let Some(old) = self.tail.pop_front()
        {
            self.tail_bytes -= old.len() + 1;
            self.cut_lines += 1;
            self.cut_bytes += old.len() + 1;
        }
    }

    fn text(&self) -> String {
        let mut s = String::with_capacity(self.head.len() + self.tail_bytes + 100);
        s.push_str(&self.head);
        if self.cut_lines > 0 {
            s.push_str(&format!(
                "[... {} lines ({} bytes) cut: a log keeps its first {} MiB and its last {} MiB ...]\n",
                self.cut_lines,
                self.cut_bytes,
                LOG_HEAD >> 20,
                LOG_TAIL >> 20
            ));
        }
        for l in &self.tail {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

impl Log {
    pub fn new(task: &str, events: EventSink) -> Self {
        Log {
            task: task.into(),
            buf: Default::default(),
            events,
        }
    }
    pub fn line(&self, line: &str) {
        let line = &*crate::secrets::redact(line);
        self.buf
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        self.events.emit(Event::Log {
            task: self.task.clone(),
            line: line.into(),
        });
    }
    pub fn text(&self) -> String {
        self.buf.lock().unwrap_or_else(|p| p.into_inner()).text()
    }
    /// Bytes written so far (cut ones included): grows with every line.
    pub fn written(&self) -> usize {
        let b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        b.head.len() + b.tail_bytes + b.cut_bytes
    }
    /// The last `max` bytes of the log (at a character boundary), for the
    /// log of a task still running.
    pub fn tail(&self, max: usize) -> String {
        let text = self.text();
        let mut at = text.len().saturating_sub(max);
        while !text.is_char_boundary(at) {
            at += 1;
        }
        text[at..].to_string()
    }
    pub fn progress(&self, done: u64, total: u64) {
        self.events.emit(Event::Progress {
            task: self.task.clone(),
            done,
            total,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_head_and_its_tail_and_says_what_was_cut() {
        let mut b = LogBuf::default();
        let line = "y".repeat(1023);
        let n = 10 * 1024; // 10 MiB of 1 KiB lines
        b.push("first line");
        for i in 0..n {
            b.push(&format!("{i:06} {line}"));
        }
        b.push("last line");
        let t = b.text();
        assert!(t.starts_with("first line\n"));
        assert!(t.ends_with("last line\n"));
        assert!(t.len() <= LOG_HEAD + LOG_TAIL + 200, "{}", t.len());
        let marker = t
            .lines()
            .find(|l| l.starts_with("[... "))
            .expect("a cut marker");
        assert!(
            marker.contains("lines (") && marker.contains("bytes) cut"),
            "{marker}"
        );
        // Nothing is lost silently: kept + cut lines add up.
        let kept = t.lines().count() - 1;
        let cut: usize = marker[5..].split(' ').next().unwrap().parse().unwrap();
        assert_eq!(kept + cut, n + 2);
    }
}
