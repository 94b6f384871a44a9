//! Streaming decode memory: peak RSS of this process (and of the ffmpeg
//! child) while decoding a 1-minute and a 30-minute 224x224 25 fps video
//! to 112x112 RGB frames at 5 fps. Memory must not grow with length.
//! `cargo run --release -p bench --bin decode_memory [-- MINUTES...]`

use media::{DecodeOptions, FrameReader, Resize};
use std::process::Command;
use std::time::Instant;

fn child_peak_mib() -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as f64 / 1024.0
    }
}

fn main() {
    let minutes: Vec<u64> = {
        let v: Vec<u64> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if v.is_empty() { vec![1, 30] } else { v }
    };
    if let Some(path) = std::env::var_os("DECODE_MEMORY_VIDEO") {
        return decode(std::path::Path::new(&path), minutes[0]);
    }
    // Encode each test video here, then decode it in a fresh process, so
    // each peak (ours and the ffmpeg child's) belongs to the decode alone.
    let dir = tempfile::tempdir().expect("tempdir");
    for m in minutes {
        let video = dir.path().join(format!("{m}min.mp4"));
        let t = Instant::now();
        let ok = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=224x224:rate=25",
                "-t",
            ])
            .arg((m * 60).to_string())
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&video)
            .status()
            .expect("ffmpeg runs");
        assert!(ok.success());
        eprintln!(
            "encoded the {m}-minute test video in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let out = Command::new(std::env::current_exe().expect("own path"))
            .arg(m.to_string())
            .env("DECODE_MEMORY_VIDEO", &video)
            .output()
            .expect("child");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn decode(video: &std::path::Path, m: u64) {
    let base = bench::peak_rss_mib();
    let opts = DecodeOptions {
        fps: Some(5.0),
        width: Some(112),
        height: Some(112),
        resize: Resize::Letterbox,
        ..DecodeOptions::default()
    };
    let t = Instant::now();
    let mut reader = FrameReader::open(video, &opts).expect("open");
    let mut frames = 0u64;
    let mut checksum = 0u64;
    while let Some(f) = reader.next_frame().expect("decode") {
        frames += 1;
        checksum = checksum.wrapping_add(f.data[f.data.len() / 2] as u64);
    }
    drop(reader);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{m:>3} min video: {frames} frames decoded in {secs:.1} s ({:.0} frames/s); peak RSS engine {:.1} MiB (before decode {:.1}), ffmpeg child {:.1} MiB (checksum {checksum})",
        frames as f64 / secs,
        bench::peak_rss_mib(),
        base,
        child_peak_mib()
    );
}
