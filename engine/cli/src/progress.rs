//! Live progress: bars on a terminal, plain lines otherwise, JSON lines
//! with `--json`.

use engine_core::events::Event;
use engine_core::records::TaskStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

pub enum Display {
    Json { verbose: bool },
    Plain { verbose: bool },
    Bars { verbose: bool, total: usize },
}

impl Display {
    pub fn new(json: bool, verbose: bool, total: usize) -> Self {
        if json {
            Display::Json { verbose }
        } else if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            Display::Bars { verbose, total }
        } else {
            Display::Plain { verbose }
        }
    }

    pub async fn consume(self, mut rx: UnboundedReceiver<Event>) {
        match self {
            Display::Json { verbose } => {
                let mut out = Vec::new();
                while let Some(e) = rx.recv().await {
                    let mut next = Some(e);
                    while let Some(e) = next {
                        if verbose || !matches!(e, Event::Log { .. } | Event::Progress { .. }) {
                            let at = out.len();
                            match serde_json::to_writer(&mut out, &e) {
                                Ok(()) => out.push(b'\n'),
                                Err(_) => out.truncate(at),
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    write_out(&mut std::io::stdout(), &mut out);
                }
            }
            Display::Plain { verbose } => {
                let mut throttle = Throttle::new(plain_interval());
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut out = Vec::new();
                loop {
                    let e = tokio::select! {
                        e = rx.recv() => match e {
                            Some(e) => e,
                            None => break,
                        },
                        _ = tick.tick() => {
                            if let Some(line) = throttle.line(std::time::Instant::now()) {
                                eprintln!("{line}");
                            }
                            continue;
                        }
                    };
                    let mut next = Some(e);
                    while let Some(e) = next {
                        if let Some(line) = plain_line(e, &mut throttle, verbose) {
                            out.extend_from_slice(line.as_bytes());
                            out.push(b'\n');
                        }
                        next = rx.try_recv().ok();
                    }
                    write_out(&mut std::io::stderr(), &mut out);
                }
            }
            Display::Bars { verbose, total } => {
                let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
                let main = mp.add(ProgressBar::new(total as u64));
                main.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                main.enable_steady_tick(Duration::from_millis(100));
                let mut running: HashMap<String, ProgressBar> = HashMap::new();
                let task_style =
                    ProgressStyle::with_template("  {spinner} {prefix} {wide_msg} {pos}/{len}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                // The lines of every event already queued go out in one
                // `println`: each call redraws the bars, and a 5,001-task
                // rerun wrote 1.6 MB to the terminal one redraw per line.
                let mut lines: Vec<String> = vec![];
                let flush = |lines: &mut Vec<String>| {
                    if !lines.is_empty() {
                        let _ = mp.println(lines.join("\n"));
                        lines.clear();
                    }
                };
                while let Some(e) = rx.recv().await {
                    let mut next = Some(e);
                    while let Some(e) = next {
                        match e {
                            Event::RunStarted { run, pipeline, .. } => {
                                main.set_message(format!("{pipeline} ({run})"))
                            }
                            Event::TaskStarted { task, .. } => {
                                let pb = running.entry(task.clone()).or_insert_with(|| {
                                    let pb = mp.add(ProgressBar::new(0));
                                    pb.set_style(task_style.clone());
                                    pb.set_prefix(task.clone());
                                    pb.enable_steady_tick(Duration::from_millis(120));
                                    pb
                                });
                                pb.set_message("running");
                            }
                            Event::Progress { task, done, total } => {
                                if let Some(pb) = running.get(&task) {
                                    pb.set_length(total);
                                    pb.set_position(done);
                                    pb.set_message("items");
                                }
                            }
                            Event::TaskRetry {
                                task,
                                attempt,
                                error,
                                ..
                            } => lines.push(format!(
                                "retry    {task}: attempt {attempt} failed: {error}"
                            )),
                            Event::TaskFinished {
                                task,
                                status,
                                seconds,
                                reason,
                                error,
                            } => {
                                if let Some(pb) = running.remove(&task) {
                                    pb.finish_and_clear();
                                    mp.remove(&pb);
                                }
                                main.inc(1);
                                lines.push(finished_line(
                                    &task,
                                    status,
                                    seconds,
                                    &reason,
                                    error.as_deref(),
                                ));
                            }
                            Event::Log { task, line } if verbose => {
                                lines.push(format!("[{task}] {line}"))
                            }
                            Event::RunFinished { .. } => {
                                flush(&mut lines);
                                main.finish_and_clear()
                            }
                            _ => {}
                        }
                        next = rx.try_recv().ok();
                    }
                    flush(&mut lines);
                }
                let _ = mp.clear();
            }
        }
    }
}

/// Writes the lines gathered from every event that was already queued, in
/// one write: a 5,001-task rerun printed 5,001 lines one system call (and
/// one lock of the stream) each. A closed output (`engine run --json |
/// head`) is not an error of the run, which goes on to its end (SIGPIPE
/// stays ignored while stages run, see `main`): what cannot be written is
/// dropped, where `println!` panicked.
fn write_out(w: &mut impl std::io::Write, out: &mut Vec<u8>) {
    if !out.is_empty() {
        let _ = w.write_all(out).and_then(|()| w.flush());
        out.clear();
    }
}

/// The plain line of one event, if it has one.
fn plain_line(e: Event, throttle: &mut Throttle, verbose: bool) -> Option<String> {
    match e {
        Event::RunStarted {
            run,
            pipeline,
            tasks,
            store,
        } => Some(format!(
            "run {run}: pipeline `{pipeline}`, {tasks} tasks, store {store}"
        )),
        Event::TaskStarted { task, attempt } if attempt > 1 => {
            Some(format!("start    {task} (attempt {attempt})"))
        }
        Event::TaskStarted { task, .. } => Some(format!("start    {task}")),
        Event::TaskRetry {
            task,
            attempt,
            error,
            delay_ms,
        } => Some(format!(
            "retry    {task}: attempt {attempt} failed: {error}; next in {delay_ms} ms"
        )),
        Event::TaskFinished {
            task,
            status,
            seconds,
            reason,
            error,
        } => {
            throttle.finished(&task);
            Some(finished_line(
                &task,
                status,
                seconds,
                &reason,
                error.as_deref(),
            ))
        }
        Event::Progress { task, done, total } => {
            throttle.update(&task, done, total);
            None
        }
        Event::Log { task, line } if verbose => Some(format!("[{task}] {line}")),
        _ => None,
    }
}

/// Seconds between plain progress lines: `ENGINE_PROGRESS_INTERVAL`,
/// default 10 (a CI log gets a line every 10 s, not one per item).
fn plain_interval() -> Duration {
    std::env::var("ENGINE_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(10))
}

/// Progress of running tasks for logs that are not a terminal: one line for
/// all of them, at most every `every`, and only when something moved.
struct Throttle {
    every: Duration,
    last: Option<std::time::Instant>,
    tasks: std::collections::BTreeMap<String, (u64, u64)>,
    moved: bool,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            tasks: Default::default(),
            moved: false,
        }
    }

    fn update(&mut self, task: &str, done: u64, total: u64) {
        if total > 0 {
            self.tasks.insert(task.to_string(), (done, total));
            self.moved = true;
        }
    }

    /// A finished task leaves the line; its `done` line says the rest.
    fn finished(&mut self, task: &str) {
        self.tasks.remove(task);
    }

    /// `progress extract 12/58 · detect 3/24`, when due.
    fn line(&mut self, now: std::time::Instant) -> Option<String> {
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.every);
        if !due || !self.moved || self.tasks.is_empty() {
            return None;
        }
        self.last = Some(now);
        self.moved = false;
        let parts: Vec<String> = self
            .tasks
            .iter()
            .map(|(t, (d, n))| format!("{t} {d}/{n}"))
            .collect();
        Some(format!("progress {}", parts.join(" · ")))
    }
}

fn finished_line(
    task: &str,
    status: TaskStatus,
    seconds: f64,
    reason: &str,
    error: Option<&str>,
) -> String {
    let mut s = format!("{:<8} {task}", status.as_str());
    if matches!(status, TaskStatus::Done | TaskStatus::Failed) {
        s.push_str(&format!(" ({seconds:.2}s)"));
    }
    if !reason.is_empty() {
        s.push_str(&format!(": {reason}"));
    }
    if let Some(e) = error {
        s.push_str(&format!(
            "\n         error: {}",
            e.replace('\n', "\n         ")
        ));
    }
    s
}

/// A plain bar for one-off commands; hidden when stderr is not a terminal.
pub fn bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn plain_progress_is_one_line_per_interval_for_all_tasks() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.line(t0), None, "nothing moved yet");
        for i in 1..=12 {
            t.update("golden", i, 24);
        }
        t.update("videos", 3, 8);
        assert_eq!(
            t.line(t0).as_deref(),
            Some("progress golden 12/24 · videos 3/8")
        );
        t.update("golden", 13, 24);
        assert_eq!(t.line(t0 + Duration::from_secs(5)), None, "not due");
        assert_eq!(
            t.line(t0 + Duration::from_secs(10)).as_deref(),
            Some("progress golden 13/24 · videos 3/8")
        );
        assert_eq!(t.line(t0 + Duration::from_secs(30)), None, "nothing moved");
        t.finished("golden");
        t.update("videos", 4, 8);
        assert_eq!(
            t.line(t0 + Duration::from_secs(40)).as_deref(),
            Some("progress videos 4/8")
        );
    }
}
