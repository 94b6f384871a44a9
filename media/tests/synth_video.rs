//! Generated files: mp4 + JSON, decoded back through ffmpeg.

mod common;

use media::synth::{GroundTruth, Preset, Sport, SynthSpec, scoreboard_rect};
use media::{DecodeOptions, FrameReader, probe};

#[test]
fn generated_video_decodes_to_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, truth) = common::small_video(dir.path(), 31);
    let json: GroundTruth =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("small.json")).unwrap())
            .unwrap();
    assert_eq!(json, truth);
    assert_eq!(truth.video.frames, 160);

    let info = probe(&mp4).unwrap();
    assert_eq!((info.width, info.height), (112, 112));
    let mut reader = FrameReader::open(&mp4, &DecodeOptions::default()).unwrap();
    let [x0, y0, ..] = scoreboard_rect(112, 112);
    let style =
        media::synth::find_style(Sport::Soccer, "premier-north", "skyline-tv", None).unwrap();
    let g = style.graphics.unwrap();
    let mut n = 0u64;
    while let Some(frame) = reader.next_frame().unwrap() {
        let f = frame.index;
        let in_transition = truth
            .replays
            .iter()
            .any(|r| r.opening.unwrap().contains(f) || r.closing.unwrap().contains(f));
        if !in_transition {
            let p = frame.pixel(x0 + 2, y0 + 2);
            assert!(
                common::rgb_dist(p, style.scoreboard.background) < 16,
                "frame {f}: scoreboard pixel {p:?}"
            );
        }
        if let Some(o) = truth.replays[0].opening
            && f == o.start_frame + o.frames() / 2
        {
            let close = frame
                .data
                .chunks_exact(3)
                .filter(|p| common::rgb_dist([p[0], p[1], p[2]], g.primary) < 20)
                .count();
            assert!(
                close as f64 > 0.1 * (112.0 * 112.0),
                "mid-transition frame has {close} wipe-coloured pixels"
            );
        }
        n += 1;
    }
    assert!(
        n.abs_diff(truth.video.frames) <= 1,
        "decoded {n}, truth says {}",
        truth.video.frames
    );
}

#[test]
fn generate_set_writes_pairs_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        sport: Sport::IceHockey,
        league: None,
        broadcaster: None,
        season: None,
        preset: Preset::Small,
        width: Some(64),
        height: Some(48),
        fps: None,
        duration: Some(10.0),
        seed: 3,
        count: 3,
    };
    let mut last = (0, 0);
    let mut calls = 0;
    let truths = media::synth::generate_set(&spec, &dir.path().join("set"), &mut |d, t| {
        assert!(d > last.0 || calls == 0);
        last = (d, t);
        calls += 1;
    })
    .unwrap();
    assert_eq!(truths.len(), 3);
    assert_eq!(last, (300, 300));
    for t in &truths {
        let mp4 = dir.path().join("set").join(format!("{}.mp4", t.video.name));
        let json = dir
            .path()
            .join("set")
            .join(format!("{}.json", t.video.name));
        assert!(json.exists());
        let info = probe(&mp4).unwrap();
        assert_eq!((info.width, info.height, info.frames), (64, 48, Some(100)));
    }
    let names: std::collections::BTreeSet<_> =
        truths.iter().map(|t| t.video.name.clone()).collect();
    assert_eq!(names.len(), 3);
    // Nothing but the pairs in the folder (no temporary files).
    assert_eq!(
        std::fs::read_dir(dir.path().join("set")).unwrap().count(),
        6
    );
}

#[test]
fn same_seed_gives_identical_decoded_video() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (ma, _) = common::small_video(a.path(), 40);
    let (mb, _) = common::small_video(b.path(), 40);
    let fa: Vec<_> = FrameReader::open(&ma, &DecodeOptions::default())
        .unwrap()
        .map(|f| f.unwrap().data)
        .collect();
    let fb: Vec<_> = FrameReader::open(&mb, &DecodeOptions::default())
        .unwrap()
        .map(|f| f.unwrap().data)
        .collect();
    assert_eq!(fa.len(), 160);
    assert!(
        fa == fb,
        "decoded frames differ between two generations of seed 40"
    );
}
