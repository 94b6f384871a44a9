//! Every kind of bad input gives a clear error naming the file, never a panic or a hang.

mod common;

use media::{DecodeOptions, Error, FrameReader, probe};

fn open_err(path: &std::path::Path) -> Error {
    FrameReader::open(path, &DecodeOptions::default()).unwrap_err()
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.mp4");
    let err = open_err(&path);
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("nope.mp4") && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(matches!(probe(&path), Err(Error::NotFound { .. })));
}

#[test]
fn text_file_is_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.mp4");
    std::fs::write(
        &path,
        "these are not the frames you are looking for\n".repeat(20),
    )
    .unwrap();
    let err = open_err(&path);
    assert!(matches!(err, Error::Probe { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("Failed to probe `"), "{msg}");
    assert!(
        msg.contains("notes.mp4") && msg.contains("Invalid data"),
        "{msg}"
    );
    assert!(msg.contains("check the file is a complete video"), "{msg}");
}

#[test]
fn zero_length_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mp4");
    std::fs::write(&path, b"").unwrap();
    let err = open_err(&path);
    assert!(matches!(err, Error::EmptyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.mp4"));
}

#[test]
fn directory_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = probe(dir.path()).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}

#[test]
fn truncated_mp4_with_index_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, _) = common::small_video(dir.path(), 11);
    let bytes = std::fs::read(&mp4).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = open_err(&cut);
    let msg = err.to_string();
    assert!(
        msg.contains("cut.mp4") && msg.contains("moov atom not found"),
        "{msg}"
    );
}

#[test]
fn truncated_mp4_with_index_at_the_front() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::testsrc(dir.path(), "fast.mp4", &["-movflags", "+faststart"]);
    let bytes = std::fs::read(&src).unwrap();
    let cut = dir.path().join("half.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    // Probing still works (the index is intact) but decoding must report the damage.
    let result: Result<Vec<_>, _> = match FrameReader::open(&cut, &DecodeOptions::default()) {
        Ok(r) => r.collect(),
        Err(e) => Err(e),
    };
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("half.mp4"), "{msg}");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[test]
fn start_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::testsrc(dir.path(), "t.mp4", &[]);
    let opts = DecodeOptions {
        start: Some(99.0),
        ..Default::default()
    };
    let msg = FrameReader::open(&src, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("past the end") && msg.contains("t.mp4"),
        "{msg}"
    );
}

#[test]
fn audio_only_file_has_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1",
        wav.to_str().unwrap(),
    ]);
    let err = probe(&wav).unwrap_err();
    assert!(matches!(err, Error::NotAVideo { .. }), "{err:?}");
    assert!(err.to_string().contains("no video stream"), "{err}");
}
