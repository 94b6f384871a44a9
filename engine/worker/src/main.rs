//! `engine-worker`: the model stages (libtorch) in a process of their own.
//!
//! `engine` never links libtorch, so validating, planning and listing runs
//! start in milliseconds. When a model stage runs, `engine` starts this
//! executable (found beside itself, or through `ENGINE_WORKER`) and talks
//! to it over stdin/stdout ([`engine_core::worker`]):
//!
//! - `engine-worker serve`: runs tasks and map items of the model stages
//!   against the store, one request at a time, until stdin closes;
//! - `engine-worker detect --model-dir DIR --video FILE [--sport S]`: the
//!   inference behind `engine detect`, answering with the detections.
//!
//! It is not meant to be run by hand.

use engine_core::stage::Registry;
use engine_core::worker::{Done, Reply};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "engine-worker runs the model stages (libtorch) for `engine`, which starts it; it is not meant to be run by hand.
usage: engine-worker serve
       engine-worker detect --model-dir DIR --video FILE [--sport SPORT]
       engine-worker --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("detect") => detect(&args[1..]),
        Some("--version" | "-V") => {
            println!("engine-worker {}", engine_core::ENGINE_VERSION);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The protocol's output: the original stdout. Anything else that writes
/// to fd 1 (a library printing) goes to stderr instead, which the engine
/// copies into the task log.
fn protocol_out() -> std::fs::File {
    // SAFETY: called before any other thread exists; fds 1 and 2 are open
    // (the engine pipes both).
    unsafe {
        let fd = libc::dup(1);
        assert!(fd >= 0, "dup(1) failed");
        libc::dup2(2, 1);
        std::fs::File::from_raw_fd(fd)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn serve() -> ExitCode {
    let out = protocol_out();
    engine_core::worker::exit_with_parent();
    let mut r = Registry::with_builtins();
    stages::register(&mut r);
    replay_model::register(&mut r);
    let rt = runtime();
    let res = rt.block_on(engine_core::worker::serve(
        &r,
        tokio::io::stdin(),
        tokio::fs::File::from_std(out),
    ));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine-worker: the connection to `engine` failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn detect(args: &[String]) -> ExitCode {
    let mut out = protocol_out();
    engine_core::worker::exit_with_parent();
    let (mut dir, mut video, mut sport) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--model-dir" => &mut dir,
            "--video" => &mut video,
            "--sport" => &mut sport,
            _ => {
                eprintln!("engine-worker detect: unknown argument `{a}`\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        *slot = it.next().cloned();
    }
    let (Some(dir), Some(video)) = (dir, video) else {
        eprintln!("engine-worker detect: `--model-dir` and `--video` are required\n{USAGE}");
        return ExitCode::from(2);
    };
    let reply = match run_detect(
        &PathBuf::from(dir),
        &PathBuf::from(video),
        sport.as_deref(),
        &mut out,
    ) {
        Ok(meta) => Reply::Done(Done {
            meta,
            ..Default::default()
        }),
        Err(e) => Reply::Failed(e.to_string()),
    };
    let failed = matches!(reply, Reply::Failed(_));
    write(&mut out, &reply);
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn write(out: &mut std::fs::File, r: &Reply) {
    use std::io::Write;
    let mut line = serde_json::to_string(r).expect("replies serialise");
    line.push('\n');
    let _ = out.write_all(line.as_bytes());
}

fn run_detect(
    dir: &std::path::Path,
    video: &std::path::Path,
    sport: Option<&str>,
    out: &mut std::fs::File,
) -> Result<serde_json::Value, engine_core::stage::StageError> {
    use replay_model::detector::{Detector, check_sport};
    let d = Detector::load(dir)?;
    check_sport(&d.info, sport, &video.display().to_string())?;
    let total = media::probe(video)
        .map(|i| (i.duration * d.sampling().fps).ceil() as u64)
        .unwrap_or(0);
    let mut last = std::time::Instant::now();
    let found = d.detect_video(
        video,
        |n| {
            // A few updates a second are enough for a progress bar.
            if last.elapsed().as_millis() >= 100 {
                last = std::time::Instant::now();
                write(out, &Reply::Progress(n, total));
            }
        },
        || false,
    )?;
    Ok(serde_json::to_value(&found).expect("detections serialise"))
}
