//! Frames of a video for the networks: streamed from ffmpeg at the
//! backbone's rate and size, in batches, on a decoder thread that runs
//! ahead of the network by at most two batches (decode overlaps compute,
//! memory stays flat with video length).

use crate::net::Backbone;
use engine_core::stage::StageError;
use std::path::Path;
use std::sync::mpsc;
use tch::{Device, Kind, Tensor};

/// How frames are sampled from a video.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    /// ffmpeg's threads (the task's CPU grant; `None`: one per core). Not
    /// part of what the networks see: the frames are the same either way.
    pub threads: Option<usize>,
}

impl Sampling {
    fn options(&self) -> media::DecodeOptions {
        media::DecodeOptions {
            fps: Some(self.fps),
            width: Some(self.width),
            height: Some(self.height),
            resize: media::Resize::Stretch,
            threads: self.threads,
            ..Default::default()
        }
    }
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

/// One batch of RGB24 frames, back to back.
pub struct Batch {
    pub data: Vec<u8>,
    pub frames: usize,
}

/// Starts decoding `path` on its own thread; batches arrive on the channel.
pub fn stream(path: &Path, s: Sampling, batch: usize) -> mpsc::Receiver<Result<Batch, StageError>> {
    let owned = path.to_path_buf();
    stream_from(path, batch, move || {
        media::FrameReader::open(&owned, &s.options())
    })
}

/// Streams the frames of the reader `open` returns (called on the decoder
/// thread), in batches of `batch`; the reader is dropped, and its ffmpeg
/// stopped, when the receiver is.
fn stream_from(
    path: &Path,
    batch: usize,
    open: impl FnOnce() -> media::Result<media::FrameReader> + Send + 'static,
) -> mpsc::Receiver<Result<Batch, StageError>> {
    let (tx, rx) = mpsc::sync_channel(2);
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut reader = match open() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(decode_error(&path, e)));
                return;
            }
        };
        let frame_bytes = reader.frame_len();
        let mut frame = media::Frame::default();
        loop {
            let mut b = Batch {
                data: Vec::with_capacity(batch * frame_bytes),
                frames: 0,
            };
            while b.frames < batch {
                match reader.read_frame(&mut frame) {
                    Ok(true) => {
                        b.data.extend_from_slice(&frame.data);
                        b.frames += 1;
                    }
                    Ok(false) => break,
                    Err(e) => {
                        let _ = tx.send(Err(decode_error(&path, e)));
                        return;
                    }
                }
            }
            let last = b.frames < batch;
            if b.frames > 0 && tx.send(Ok(b)).is_err() {
                return; // the consumer stopped
            }
            if last {
                return;
            }
        }
    });
    rx
}

fn decode_error(path: &Path, e: media::Error) -> StageError {
    StageError::msg(format!("Failed to decode video `{}`: {e}", path.display()))
}

/// A batch as a `[B, H, W, 3]` u8 tensor.
pub fn batch_tensor(b: &Batch, s: Sampling) -> Tensor {
    Tensor::from_slice(&b.data).view([b.frames as i64, s.height as i64, s.width as i64, 3])
}

/// Every frame of a video as one `[N, H, W, 3]` u8 tensor (training reads
/// short clips' videos whole; inference streams instead).
pub fn decode_all(path: &Path, s: Sampling) -> Result<Tensor, StageError> {
    let mut parts = vec![];
    for b in stream(path, s, 256) {
        parts.push(batch_tensor(&b?, s));
    }
    if parts.is_empty() {
        return Err(StageError::msg(format!(
            "video `{}` has no frames at {} fps",
            path.display(),
            s.fps
        )));
    }
    Ok(Tensor::cat(&parts, 0))
}

/// The features of every sampled frame of a video, `[N, D]` on the CPU:
/// the backbone's, followed with `motion` by the full-rate motion
/// statistics of [`media::frame_motion`] (measured from the same ffmpeg
/// decode, on a second thread while the network runs). `progress` gets the frame count after
/// each batch; `stop` returning true aborts (cancellation).
#[allow(clippy::too_many_arguments)]
pub fn video_features(
    backbone: &Backbone,
    path: &Path,
    s: Sampling,
    motion: bool,
    batch: usize,
    device: Device,
    progress: impl FnMut(u64),
    stop: impl Fn() -> bool + Sync,
) -> Result<Tensor, StageError> {
    if !motion {
        return backbone_features(
            backbone,
            path,
            stream(path, s, batch),
            s,
            device,
            progress,
            &stop,
        );
    }
    // One ffmpeg decodes the video for both: the sampled frames for the
    // backbone and every source frame for the motion statistics (the same
    // pixels as two decodes, at about half the decoding cost).
    let (frames, full_rate) =
        media::FrameReader::open_pair(path, &s.options(), &media::motion_decode_options())
            .map_err(|e| decode_error(path, e))?;
    std::thread::scope(|scope| {
        // Both outputs must be read at once: ffmpeg writes them in step.
        let stop_ref = &stop;
        let measured = scope.spawn(move || media::frame_motion_of(full_rate, s.fps, stop_ref));
        let batches = stream_from(path, batch, move || Ok(frames));
        // On an error the batches' receiver is dropped, the decoder thread
        // drops its reader and ffmpeg stops, which ends the motion thread.
        let f = backbone_features(backbone, path, batches, s, device, progress, &stop);
        let m = measured.join().map_err(|_| {
            StageError::msg(format!(
                "measuring the motion of `{}` failed",
                path.display()
            ))
        })?;
        let f = f?;
        let m = m.map_err(|e| decode_error(path, e))?;
        if stop() {
            return Err(StageError::Cancelled);
        }
        let rows = motion_rows(&m, f.size()[0]);
        Ok(Tensor::cat(&[f, rows], 1))
    })
}

/// `[n, MOTION_CHANNELS]` from per-sample motion figures; samples the
/// motion decoder did not reach (rounding at the video's end) are zero.
fn motion_rows(m: &[[f32; media::MOTION_CHANNELS]], n: i64) -> Tensor {
    let mut flat = Vec::with_capacity(n as usize * media::MOTION_CHANNELS);
    for i in 0..n as usize {
        flat.extend_from_slice(&m.get(i).copied().unwrap_or([0.0; media::MOTION_CHANNELS]));
    }
    Tensor::from_slice(&flat).view([n, media::MOTION_CHANNELS as i64])
}

/// The backbone features of every sampled frame of a video, `[N, D]`.
fn backbone_features(
    backbone: &Backbone,
    path: &Path,
    batches: mpsc::Receiver<Result<Batch, StageError>>,
    s: Sampling,
    device: Device,
    mut progress: impl FnMut(u64),
    stop: impl Fn() -> bool,
) -> Result<Tensor, StageError> {
    let mut parts = vec![];
    let mut n = 0u64;
    for b in batches {
        if stop() {
            return Err(StageError::Cancelled);
        }
        let b = b?;
        let f = backbone.features(&batch_tensor(&b, s).to_device(device))?;
        parts.push(f.to_device(Device::Cpu).to_kind(Kind::Float));
        n += b.frames as u64;
        progress(n);
        if parts.len() % 8 == 0 {
            // Keeps peak memory flat with video length (see trim_heap).
            engine_core::resources::trim_heap();
        }
    }
    if parts.is_empty() {
        return Err(StageError::msg(format!(
            "video `{}` has no frames at {} fps",
            path.display(),
            s.fps
        )));
    }
    let f = Tensor::cat(&parts, 0);
    if f.isnan().any().int64_value(&[]) != 0 {
        return Err(StageError::msg(format!(
            "the backbone produced NaN features on `{}`; its weights are broken",
            path.display()
        )));
    }
    Ok(f)
}
