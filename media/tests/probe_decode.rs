//! probe and FrameReader on real files.

mod common;

use media::{DecodeOptions, FrameReader, Resize, probe};

#[test]
fn probe_reports_generated_video() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, truth) = common::small_video(dir.path(), 1);
    let info = probe(&mp4).unwrap();
    assert_eq!((info.width, info.height), (112, 112));
    assert_eq!(info.fps.num, 10);
    assert_eq!(info.fps.den, 1);
    assert_eq!(info.codec, "h264");
    assert_eq!(info.frames, Some(truth.video.frames));
    assert!(
        (info.duration - 16.0).abs() < 0.15,
        "duration {}",
        info.duration
    );
}

#[test]
fn decode_returns_every_frame_with_pts() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, truth) = common::small_video(dir.path(), 2);
    let mut reader = FrameReader::open(&mp4, &DecodeOptions::default()).unwrap();
    let mut frame = media::Frame::default();
    let mut n = 0u64;
    while reader.read_frame(&mut frame).unwrap() {
        assert_eq!(frame.index, n);
        assert!((frame.pts_seconds - n as f64 / 10.0).abs() < 1e-9);
        assert_eq!((frame.width, frame.height), (112, 112));
        assert_eq!(frame.data.len(), 112 * 112 * 3);
        n += 1;
    }
    assert!(
        n.abs_diff(truth.video.frames) <= 1,
        "decoded {n} of {}",
        truth.video.frames
    );
    // After the end it stays at the end.
    assert!(reader.next_frame().unwrap().is_none());
}

#[test]
fn iterator_and_fps_resampling() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::testsrc(dir.path(), "t.mp4", &[]);
    let opts = DecodeOptions {
        fps: Some(5.0),
        ..Default::default()
    };
    let frames: Vec<_> = FrameReader::open(&src, &opts)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        frames.len().abs_diff(15) <= 1,
        "got {} frames",
        frames.len()
    );
    assert!((frames[2].pts_seconds - 0.4).abs() < 1e-9);
}

#[test]
fn start_and_duration_select_a_span() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 3);
    let opts = DecodeOptions {
        start: Some(4.0),
        duration: Some(2.5),
        ..Default::default()
    };
    let mut reader = FrameReader::open(&mp4, &opts).unwrap();
    let first = reader.next_frame().unwrap().unwrap();
    assert!((first.pts_seconds - 4.0).abs() < 1e-9);
    let rest = reader.count();
    assert!((rest + 1).abs_diff(25) <= 1, "got {} frames", rest + 1);
}

#[test]
fn resize_modes_give_requested_size_and_bars() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 4);
    for resize in [Resize::Letterbox, Resize::CenterCrop, Resize::Stretch] {
        let opts = DecodeOptions {
            width: Some(64),
            height: Some(32),
            resize,
            ..Default::default()
        };
        let mut r = FrameReader::open(&mp4, &opts).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.width, f.height, f.data.len()), (64, 32, 64 * 32 * 3));
        let left = f.pixel(2, 16);
        if resize == Resize::Letterbox {
            // A square source in a 2:1 box: black pillars left and right.
            assert!(left.iter().all(|&c| c < 20), "{resize:?} left bar {left:?}");
        } else {
            assert!(
                left.iter().any(|&c| c > 30),
                "{resize:?} has picture at the left edge: {left:?}"
            );
        }
    }
}

#[test]
fn odd_output_size_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::testsrc(dir.path(), "t.mp4", &[]);
    let opts = DecodeOptions {
        width: Some(101),
        height: Some(75),
        resize: Resize::Stretch,
        ..Default::default()
    };
    let frames: Vec<_> = FrameReader::open(&src, &opts)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(frames.len().abs_diff(30) <= 1);
    assert!(
        frames
            .iter()
            .all(|f| f.data.len() == 101 * 75 * 3 && f.width == 101 && f.height == 75)
    );
}

#[test]
fn half_given_size_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::testsrc(dir.path(), "t.mp4", &[]);
    let opts = DecodeOptions {
        width: Some(64),
        ..Default::default()
    };
    let err = FrameReader::open(&src, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("t.mp4") && msg.contains("pass both"), "{msg}");
}

#[test]
fn variable_frame_rate_becomes_constant_rate() {
    let dir = tempfile::tempdir().unwrap();
    // 1.5 s at 10 fps followed by 0.75 s at 20 fps in one stream: 30 frames, 2.25 s.
    let a = dir.path().join("a.mkv");
    let b = dir.path().join("b.mkv");
    for (rate, secs, out) in [("10", "1.5", &a), ("20", "0.75", &b)] {
        let src = format!("testsrc=size=112x112:rate={rate}");
        common::ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-t",
            secs,
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            out.to_str().unwrap(),
        ]);
    }
    let list = dir.path().join("list.txt");
    std::fs::write(
        &list,
        format!("file '{}'\nfile '{}'\n", a.display(), b.display()),
    )
    .unwrap();
    let vfr = dir.path().join("vfr.mkv");
    common::ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        vfr.to_str().unwrap(),
    ]);
    let opts = DecodeOptions {
        fps: Some(20.0),
        ..Default::default()
    };
    let info = probe(&vfr).unwrap();
    assert!(
        (info.duration - 2.25).abs() < 0.15,
        "the source is not the VFR file we meant: {info:?}"
    );
    let frames: Vec<_> = FrameReader::open(&vfr, &opts)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = (info.duration * 20.0).round() as usize;
    assert!(
        frames.len().abs_diff(expected) <= 2,
        "got {} frames, expected about {expected}",
        frames.len()
    );
    for (i, f) in frames.iter().enumerate() {
        assert!((f.pts_seconds - i as f64 / 20.0).abs() < 1e-9);
    }
}

#[test]
fn dropping_a_reader_early_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 5);
    let t = std::time::Instant::now();
    for _ in 0..3 {
        let mut r = FrameReader::open(&mp4, &DecodeOptions::default()).unwrap();
        r.next_frame().unwrap().unwrap();
        drop(r);
    }
    assert!(t.elapsed().as_secs() < 10);
}

fn stretched(fps: Option<f64>, side: u32) -> DecodeOptions {
    DecodeOptions {
        fps,
        width: Some(side),
        height: Some(side),
        resize: Resize::Stretch,
        ..Default::default()
    }
}

fn all_frames(r: FrameReader) -> Vec<media::Frame> {
    r.collect::<media::Result<Vec<_>>>().unwrap()
}

#[test]
fn a_pair_of_outputs_gives_the_frames_of_two_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 5);
    // What feature extraction asks for: a few sampled frames for the
    // backbone and every source frame, smaller, for the motion statistics.
    let (sampled, full) = (stretched(Some(5.0), 64), stretched(None, 48));
    let alone = (
        all_frames(FrameReader::open(&mp4, &sampled).unwrap()),
        all_frames(FrameReader::open(&mp4, &full).unwrap()),
    );
    // With one thread (a task's grant): threads change the speed, not the frames.
    let one_thread = |o: &DecodeOptions| DecodeOptions {
        threads: Some(1),
        ..o.clone()
    };
    assert!(all_frames(FrameReader::open(&mp4, &one_thread(&sampled)).unwrap()) == alone.0);
    let (a, b) = FrameReader::open_pair(&mp4, &one_thread(&sampled), &one_thread(&full)).unwrap();
    assert_eq!((a.fps(), b.fps()), (5.0, 10.0));
    let second = std::thread::spawn(move || all_frames(b));
    let first = all_frames(a);
    let second = second.join().unwrap();
    assert_eq!(first.len(), 80);
    assert_eq!(second.len(), 160);
    assert!(
        first == alone.0,
        "the sampled frames differ from a decode of their own"
    );
    assert!(
        second == alone.1,
        "the full-rate frames differ from a decode of their own"
    );
}

#[test]
fn dropping_one_of_a_pair_ends_the_other_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 5);
    let (a, mut b) =
        FrameReader::open_pair(&mp4, &stretched(Some(5.0), 64), &stretched(None, 48)).unwrap();
    b.next_frame().unwrap().unwrap();
    drop(a);
    let t = std::time::Instant::now();
    let rest: media::Result<Vec<_>> = b.collect();
    let err = rest.expect_err("ffmpeg was stopped before it wrote every frame");
    assert!(err.to_string().contains("small.mp4"), "{err}");
    assert!(t.elapsed().as_secs() < 10);
}

#[test]
fn a_pair_must_cover_one_span() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 5);
    let later = DecodeOptions {
        start: Some(2.0),
        ..stretched(None, 48)
    };
    let err = FrameReader::open_pair(&mp4, &stretched(Some(5.0), 64), &later).unwrap_err();
    assert!(
        err.to_string().contains("same `start` and `duration`"),
        "{err}"
    );
}
