//! Encoder and cut.

mod common;

use media::{DecodeOptions, Encoder, Error, FrameReader, cut, probe};

fn gradient(w: u32, h: u32, k: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(&[(x * 2 + k) as u8, (y * 2) as u8, 128]);
        }
    }
    v
}

#[test]
fn encode_then_decode_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grad.mp4");
    let mut enc = Encoder::create(&path, 96, 64, 25.0).unwrap();
    for k in 0..50 {
        enc.write_frame(&gradient(96, 64, k)).unwrap();
    }
    assert!(!path.exists(), "the final name appears only after finish");
    assert_eq!(enc.finish().unwrap(), 50);
    let info = probe(&path).unwrap();
    assert_eq!((info.width, info.height, info.frames), (96, 64, Some(50)));
    assert_eq!(info.fps.as_f64(), 25.0);
    let frames: Vec<_> = FrameReader::open(&path, &DecodeOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(frames.len(), 50);
    let px = frames[10].pixel(20, 30);
    assert!(common::rgb_dist(px, [50, 60, 128]) < 8, "{px:?}");
    // No temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("grad.mp4")]);
}

#[test]
fn fractional_rate_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ntsc.mp4");
    let mut enc = Encoder::create(&path, 32, 32, 29.97).unwrap();
    for k in 0..10 {
        enc.write_frame(&gradient(32, 32, k)).unwrap();
    }
    enc.finish().unwrap();
    let info = probe(&path).unwrap();
    assert_eq!((info.fps.num, info.fps.den), (30000, 1001));
}

#[test]
fn dropped_encoder_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.mp4");
    let mut enc = Encoder::create(&path, 64, 64, 10.0).unwrap();
    for k in 0..5 {
        enc.write_frame(&gradient(64, 64, k)).unwrap();
    }
    drop(enc);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn odd_size_and_wrong_frame_length_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = Encoder::create(dir.path().join("odd.mp4"), 101, 75, 10.0).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::InvalidArgument { .. })
            && msg.contains("odd.mp4")
            && msg.contains("100x74"),
        "{msg}"
    );

    let mut enc = Encoder::create(dir.path().join("ok.mp4"), 64, 64, 10.0).unwrap();
    let msg = enc.write_frame(&[0u8; 10]).unwrap_err().to_string();
    assert!(msg.contains("12288"), "{msg}");
    assert!(
        matches!(enc.finish(), Err(Error::InvalidArgument { .. })),
        "finish without frames"
    );
    assert!(!dir.path().join("ok.mp4").exists());
}

#[test]
fn missing_output_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let msg = Encoder::create(dir.path().join("no/such/dir/x.mp4"), 64, 64, 10.0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn cut_is_frame_accurate() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 21);
    let clip = dir.path().join("clip.mp4");
    cut(&mp4, 3.0, 2.0, &clip).unwrap();
    let info = probe(&clip).unwrap();
    assert!((info.duration - 2.0).abs() < 0.15, "{}", info.duration);
    assert!(info.frames.unwrap().abs_diff(20) <= 1, "{:?}", info.frames);
    // The clip's first frame is the source's frame 30.
    let src = FrameReader::open(
        &mp4,
        &DecodeOptions {
            start: Some(3.0),
            ..Default::default()
        },
    )
    .unwrap()
    .next_frame()
    .unwrap()
    .unwrap();
    let first = FrameReader::open(&clip, &DecodeOptions::default())
        .unwrap()
        .next_frame()
        .unwrap()
        .unwrap();
    let diff: u64 = src
        .data
        .iter()
        .zip(&first.data)
        .map(|(a, b)| (*a as i64 - *b as i64).unsigned_abs())
        .sum();
    assert!(
        diff / (src.data.len() as u64) < 6,
        "mean abs diff {}",
        diff / src.data.len() as u64
    );
}

#[test]
fn cut_outside_the_video_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::testsrc(dir.path(), "t.mp4", &[]);
    let msg = cut(&src, 10.0, 1.0, dir.path().join("c.mp4"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("outside the video") && msg.contains("t.mp4"),
        "{msg}"
    );
    let msg = cut(
        dir.path().join("gone.mp4"),
        0.0,
        1.0,
        dir.path().join("c.mp4"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("gone.mp4") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn readers_encoders_and_renderers_can_move_to_worker_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<FrameReader>();
    assert_send::<Encoder>();
    assert_send::<media::synth::Renderer>();
    assert_send::<Error>();
}
