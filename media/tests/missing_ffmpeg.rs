//! When ffmpeg is not installed the error says so and how to install it.
//! (Its own test binary: it changes the process environment.)

use media::{Encoder, Error, probe};

#[test]
fn missing_tools_are_reported_with_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.mp4");
    std::fs::write(&file, b"not empty").unwrap();
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var(media::FFPROBE_ENV, "/nonexistent/ffprobe");
        std::env::set_var(media::FFMPEG_ENV, "/nonexistent/ffmpeg");
    }
    let err = probe(&file).unwrap_err();
    assert!(matches!(err, Error::ToolNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/ffprobe") && msg.contains("apt-get install"),
        "{msg}"
    );

    let err = Encoder::create(dir.path().join("out.mp4"), 64, 64, 10.0).unwrap_err();
    assert!(
        err.to_string()
            .contains("`/nonexistent/ffmpeg` was not found on PATH"),
        "{err}"
    );
}
