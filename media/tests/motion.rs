//! `frame_motion` on generated broadcasts: slow motion against live play
//! and against the live cuts a detector confuses with replays.

use media::synth::{
    DistractorKind, GroundTruth, Preset, Sport, VideoSpec, find_style, generate_video,
};
use media::{MOTION_CHANNELS, frame_motion};

/// Where a sampled frame lies.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    /// Slow-motion replay footage (away from its edges).
    Content,
    /// A hard cut to a tight live camera (a distractor).
    LiveCut,
    /// Other live play.
    Live,
}

fn part(truth: &GroundTruth, f: u64) -> Option<Part> {
    let inside = |s: &media::synth::Span| s.start_frame + 3 <= f && f + 3 < s.end_frame;
    if truth.replays.iter().any(|r| inside(&r.content)) {
        Some(Part::Content)
    } else if truth.replays.iter().any(|r| r.span.contains(f)) {
        None
    } else if truth
        .distractors
        .iter()
        .any(|d| d.kind == DistractorKind::LiveCut && inside(&d.span))
    {
        Some(Part::LiveCut)
    } else {
        Some(Part::Live)
    }
}

/// Mean motion channels per part over generated videos of one broadcaster,
/// 112x112 at `fps` for `seconds`, sampled at 5 fps.
fn means(
    bc: &str,
    seeds: &[u64],
    fps: f64,
    seconds: f64,
) -> Vec<(Part, [f64; MOTION_CHANNELS], u32)> {
    let mut acc: Vec<(Part, [f64; MOTION_CHANNELS], u32)> =
        [Part::Content, Part::LiveCut, Part::Live]
            .into_iter()
            .map(|p| (p, [0.0; MOTION_CHANNELS], 0))
            .collect();
    for &seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        let style = find_style(Sport::Basketball, "hoops-pro", bc, None).unwrap();
        let spec = VideoSpec {
            width: 112,
            height: 112,
            fps,
            duration: seconds,
            ..VideoSpec::from_preset("m", style, Preset::Demo, seed)
        };
        let mp4 = dir.path().join("m.mp4");
        let truth =
            generate_video(&spec, &mp4, &dir.path().join("m.json"), &mut |_, _| {}).unwrap();
        let rate = 5.0;
        let m = frame_motion(&mp4, rate, || false).unwrap();
        let expect = (truth.video.frames as f64 / fps * rate).round() as usize;
        assert!(
            m.len().abs_diff(expect) <= 1,
            "{} samples, expected about {expect}",
            m.len()
        );
        for (i, v) in m.iter().enumerate().skip(1) {
            let f = (i as f64 / rate * fps).round() as u64;
            let Some(p) = part(&truth, f) else { continue };
            let a = acc.iter_mut().find(|a| a.0 == p).unwrap();
            for c in 0..MOTION_CHANNELS {
                a.1[c] += v[c] as f64;
            }
            a.2 += 1;
        }
    }
    for a in &mut acc {
        assert!(a.2 > 0, "no samples of one part over seeds {seeds:?}");
        a.1 = a.1.map(|x| x / a.2 as f64);
    }
    acc
}

#[test]
fn repeated_frame_slow_motion_shows_as_repeats_and_live_play_does_not() {
    // dunk-tv repeats source frames in its slow motion.
    let m = means("dunk-tv", &[3, 11], 12.0, 60.0);
    let [content, cut, live] = [&m[0].1, &m[1].1, &m[2].1];
    assert!(content[1] > 0.4, "repeat share in slow motion {content:?}");
    assert!(
        cut[1] < 0.1 && live[1] < 0.1,
        "repeat share in live play: cut {cut:?} live {live:?}"
    );
    // Every sample carries the video's style: it repeats frames.
    assert!(
        content[3] > 0.4 && cut[3] > 0.4 && live[3] > 0.4,
        "style {content:?} {cut:?} {live:?}"
    );
}

/// Encodes an ffmpeg lavfi source (10 fps, 3 s) with the CLI.
fn lavfi(dir: &std::path::Path, name: &str, source: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
        ])
        .args([
            "-t", "3", "-r", "10", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg failed on {source}");
    out
}

#[test]
fn a_still_picture_repeats_every_frame_a_moving_one_none_and_doubled_frames_half() {
    let dir = tempfile::tempdir().unwrap();
    let still = lavfi(dir.path(), "still.mp4", "color=c=gray:size=112x112:rate=10");
    let moving = lavfi(dir.path(), "moving.mp4", "testsrc2=size=112x112:rate=10");
    // The same motion at 5 fps, each picture shown twice at 10 fps.
    let doubled = lavfi(
        dir.path(),
        "doubled.mp4",
        "testsrc2=size=112x112:rate=5,fps=10",
    );
    let mean = |p: &std::path::Path| {
        let m = frame_motion(p, 2.0, || false).unwrap();
        assert!(
            m.len().abs_diff(7) <= 1,
            "3 s at 2 fps: {} samples",
            m.len()
        );
        let body = &m[1..m.len() - 1];
        let n = body.len() as f64;
        [0, 1, 2, 3].map(|c| body.iter().map(|v| v[c] as f64).sum::<f64>() / n)
    };
    let (s, mv, d) = (mean(&still), mean(&moving), mean(&doubled));
    assert!(s[0] < 0.05 && s[1] > 0.99, "still: {s:?}");
    assert!(
        mv[0] > 0.5 && mv[1] < 0.01 && mv[3] < 0.01,
        "moving: {mv:?}"
    );
    assert!(
        (0.35..=0.65).contains(&d[1]),
        "doubled frames repeat half the time: {d:?}"
    );
    assert!(d[2] > s[2], "doubled frames still move: {d:?}");
}

#[test]
fn stop_ends_the_measurement_early() {
    let dir = tempfile::tempdir().unwrap();
    let moving = lavfi(dir.path(), "moving.mp4", "testsrc2=size=112x112:rate=10");
    let calls = std::cell::Cell::new(0);
    let m = frame_motion(&moving, 5.0, || {
        calls.set(calls.get() + 1);
        calls.get() > 5
    })
    .unwrap();
    assert!(
        m.len() <= 3,
        "stopped after 5 frames, got {} samples",
        m.len()
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let e = frame_motion(std::path::Path::new("/nonexistent/v.mp4"), 5.0, || false).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/v.mp4"), "{e}");
}
