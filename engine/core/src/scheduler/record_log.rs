//! How a running run's record reaches the store: a head at its start, the
//! whole document once it does something and at its end, small event
//! batches in between.

use super::*;

/// How a running run's record reaches the store: a head (no tasks) at the
/// start, the whole document once the run does something (see
/// [`RecordLog::begin`]) and at the end, and in between a batch of the
/// tasks that changed
/// every [`CHECKPOINT`] (with a heartbeat at least every
/// [`records::HEARTBEAT`]), as [`records::RunEvents`] objects. The
/// document is rewritten (compacted) only once the batches written since
/// hold as many bytes as it does (or a sixteenth of that past
/// [`MAX_BATCHES`] of them, or [`HARD_MAX_BATCHES`] of them): so
/// the bytes written stay proportional to the number of task events,
/// where saving the whole record every checkpoint grew with the square of
/// the number of tasks.
#[derive(Default)]
pub(super) struct RecordLog {
    /// Tasks changed since the last batch.
    dirty: std::collections::BTreeSet<usize>,
    /// Number of the last batch written.
    seq: u64,
    /// Batches and their bytes since the document was last written.
    batches: u64,
    batch_bytes: usize,
    /// Bytes of the whole document last written; 0 until it is (batches
    /// follow a document: see [`RecordLog::written`]).
    doc_bytes: usize,
    last: Option<Instant>,
    /// Each ended task's record as JSON, made by the task on its own
    /// thread ([`RecordLog::ended`]) and dropped when the record changes
    /// again ([`RecordLog::touch`]): what the whole document is made of
    /// (see [`records::run_json`]).
    sealed: Vec<Option<Box<[u8]>>>,
}

/// How often the changed tasks of a running run are written, at most.
pub(super) const CHECKPOINT: Duration = Duration::from_secs(2);
/// Batches after which the document is compacted once they hold a
/// sixteenth of its bytes: a bound on what a reader lists and reads that
/// keeps the bytes written linear (a long run of N tasks makes many
/// batches, and compacting every 64 whatever their size rewrote the
/// N-task document once per 64 batches, a cost growing with N x time).
pub(super) const MAX_BATCHES: u64 = 64;
/// Batches after which the document is compacted whatever their size (the
/// heartbeats of a long run whose tasks rarely change).
pub(super) const HARD_MAX_BATCHES: u64 = 1024;

impl RecordLog {
    /// A run starts: it saves a `running` record before its first cache
    /// lookup (`engine gc`, beside it, keeps every cache entry while one
    /// exists: see `gc.rs`), but only a head of it, without its tasks and
    /// its rendered spec: at 5,001 cached tasks the whole document was
    /// 2.5 MB. The whole document is written before the first task runs
    /// ([`RecordLog::before_work`]), at the first checkpoint or heartbeat,
    /// and at the end, so a run whose every task ends at the cache (a no-op
    /// rerun) writes it once, at its end. Killed before that, it shows as
    /// an interrupted run with no tasks. A head that cannot be saved is
    /// the whole document's first save, with its retries and warning.
    pub(super) async fn begin(store: &Store, record: &mut RunRecord, events: &EventSink) -> Self {
        let mut log = RecordLog {
            last: Some(Instant::now()),
            ..RecordLog::default()
        };
        let tasks = std::mem::take(&mut record.tasks);
        let spec = std::mem::take(&mut record.spec);
        let head = records::save_run(store, record).await;
        record.tasks = tasks;
        record.spec = spec;
        if head.is_err() {
            log.save_whole(store, record, events).await;
        }
        log
    }
    /// The whole document has been written (it is never empty).
    fn written(&self) -> bool {
        self.doc_bytes > 0
    }
    /// A task is about to run (on this machine or as a batch job, whose
    /// worker reads the run's record): the document is there first, so
    /// `engine runs` shows the run and a crash leaves it `interrupted`.
    pub(super) async fn before_work(
        &mut self,
        store: &Store,
        record: &mut RunRecord,
        events: &EventSink,
    ) {
        if !self.written() {
            self.save_whole(store, record, events).await;
        }
    }
    /// Task `t`'s record changed: it goes into the next batch, and its
    /// JSON is made again.
    pub(super) fn touch(&mut self, t: usize) {
        self.dirty.insert(t);
        if let Some(s) = self.sealed.get_mut(t) {
            *s = None;
        }
    }
    /// Task `t` ended with a record whose JSON is `json`.
    pub(super) fn ended(&mut self, t: usize, json: Box<[u8]>) {
        self.dirty.insert(t);
        if self.sealed.len() <= t {
            self.sealed.resize(t + 1, None);
        }
        self.sealed[t] = Some(json);
    }
    pub(super) fn due(&self) -> bool {
        self.last.is_none_or(|l| l.elapsed() > CHECKPOINT) && !self.dirty.is_empty()
    }
    pub(super) fn until_heartbeat(&self) -> Duration {
        records::HEARTBEAT.saturating_sub(self.last.map_or(Duration::ZERO, |l| l.elapsed()))
    }

    /// Writes the changed tasks as one batch, or the document when the
    /// batches are due for compaction (or a batch cannot be written).
    pub(super) async fn checkpoint(
        &mut self,
        store: &Store,
        record: &mut RunRecord,
        events: &EventSink,
    ) {
        self.last = Some(Instant::now());
        if !self.written()
            || self.batch_bytes > self.doc_bytes
            || (self.batches >= MAX_BATCHES && self.batch_bytes * 16 > self.doc_bytes)
            || self.batches >= HARD_MAX_BATCHES
        {
            self.save_whole(store, record, events).await;
            return;
        }
        let heartbeat = now_rfc3339();
        let batch = records::RunEvents {
            seq: self.seq + 1,
            heartbeat: heartbeat.clone(),
            tasks: self
                .dirty
                .iter()
                .map(|&t| (t, record.tasks[t].clone()))
                .collect(),
        };
        let bytes = serde_json::to_vec(&batch).expect("run events serialise");
        let n = bytes.len();
        match store
            .write(&records::events_path(&record.id, batch.seq), bytes)
            .await
        {
            Ok(()) => {
                self.seq = batch.seq;
                self.batches += 1;
                self.batch_bytes += n;
                self.dirty.clear();
                record.heartbeat = Some(heartbeat);
                record.events = self.seq;
            }
            // The document carries everything: readers need no batch.
            Err(_) => self.save_whole(store, record, events).await,
        }
    }

    /// Writes the whole document, retrying a failed save, then deletes the
    /// batches it took in. A record that still cannot be saved is a
    /// warning, not a failure: the run's outputs and cache entries are in
    /// the store, and the record is saved again at the next checkpoint.
    /// Each distinct failure is warned about once.
    pub(super) async fn save_whole(
        &mut self,
        store: &Store,
        record: &mut RunRecord,
        events: &EventSink,
    ) {
        self.last = Some(Instant::now());
        record.heartbeat = Some(now_rfc3339());
        record.events = self.seq;
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 1..=3 {
            match records::save_run_sealed(store, record, &self.sealed).await {
                Ok(n) => {
                    self.doc_bytes = n;
                    self.dirty.clear();
                    if self.batches > 0 {
                        for seq in (self.seq + 1 - self.batches)..=self.seq {
                            let _ = store.delete(&records::events_path(&record.id, seq)).await;
                        }
                    }
                    self.batches = 0;
                    self.batch_bytes = 0;
                    return;
                }
                Err(e) => last = Some(e),
            }
            if attempt < 3 {
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
        let Some(e) = last else { return };
        let w = format!(
            "Failed to save the run record `{}` (3 tries): {e}; the run goes on, but `engine runs` and `engine show` may not show it",
            records::run_path(&record.id)
        );
        if !record.warnings.contains(&w) {
            events.emit(Event::Log {
                task: String::new(),
                line: format!("warning: {w}"),
            });
            record.warnings.push(w);
        }
    }
}
