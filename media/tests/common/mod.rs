//! Helpers shared by the integration tests (real ffmpeg, small videos).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use media::synth::{GroundTruth, Preset, Sport, VideoSpec, find_style, generate_video};

/// A small synthetic video (112x112, 10 fps, 16 s = 160 frames) in `dir`.
pub fn small_video(dir: &Path, seed: u64) -> (PathBuf, GroundTruth) {
    let style = find_style(Sport::Soccer, "premier-north", "skyline-tv", None).unwrap();
    let spec = VideoSpec::from_preset("small", style, Preset::Small, seed);
    let mp4 = dir.join("small.mp4");
    let truth = generate_video(&spec, &mp4, &dir.join("small.json"), &mut |_, _| {}).unwrap();
    (mp4, truth)
}

/// Runs the ffmpeg CLI with `args` (quiet, overwrite) and asserts success.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 3 s, 10 fps, 112x112 test pattern encoded by ffmpeg itself.
pub fn testsrc(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=112x112:rate=10",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(extra);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
    out
}

/// Mean absolute difference between two RGB values.
pub fn rgb_dist(a: [u8; 3], b: [u8; 3]) -> u32 {
    (0..3)
        .map(|i| (a[i] as i32 - b[i] as i32).unsigned_abs())
        .sum::<u32>()
        / 3
}
