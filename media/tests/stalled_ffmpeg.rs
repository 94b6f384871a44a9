//! A decoder that stops producing output is killed by the watchdog and
//! reported as a timeout instead of hanging. (Own test binary: it points
//! `MEDIA_FFMPEG` at a stand-in that never writes.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use media::{DecodeOptions, Error, FrameReader};

#[test]
fn stalled_decoder_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::testsrc(dir.path(), "t.mp4", &[]);
    let fake = dir.path().join("ffmpeg");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var(media::FFMPEG_ENV, &fake) };

    let opts = DecodeOptions {
        stall_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let t = Instant::now();
    let mut reader = FrameReader::open(&src, &opts).unwrap();
    let err = reader.next_frame().unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("t.mp4") && msg.contains("made no progress"),
        "{msg}"
    );
}
