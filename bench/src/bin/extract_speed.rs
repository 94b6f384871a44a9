//! Feature extraction speed and memory (issue 4).
//!
//! `extract_speed [SECONDS]` (default 120): encodes a 224x224 25 fps test
//! video, decodes its frames at 5 fps to 64x64 once, and times on the
//! same batches (a) the bare backbone forward pass over frames already in
//! memory and (b) `video_features`, the extraction path (ffmpeg decode on
//! its own thread, overlapped with the forward pass). Prints frames/s of
//! both and their ratio; the target is (b) >= 0.8 x (a).
//! `extract_speed --memory MINUTES`: peak RSS of extraction on a video of
//! that length, in a fresh process (ours, and ffmpeg's).
//! `extract_speed --motion [SECONDS]`: extraction with the full-rate motion
//! statistics, as it was (two ffmpeg decodes: sampled frames, and every
//! frame for the motion) against one decode feeding both
//! (`FrameReader::open_pair`), with ffmpeg's own thread count and with one
//! thread; wall and CPU time (ours plus ffmpeg's) of each, checking that
//! both give the same features.
//! `cargo run --release -p bench --features torch --bin extract_speed`

use replay_model::frames::{Sampling, batch_tensor, stream, video_features};
use replay_model::net::{Arch, BACKBONE_KIND, Backbone, BackboneInfo, SmallCnn};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::{Device, nn};

fn peak_mib(who: i32) -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru.ru_maxrss as f64 / 1024.0
    }
}

fn encode(path: &Path, seconds: u64) {
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=224x224:rate=25",
            "-t",
        ])
        .arg(seconds.to_string())
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(path)
        .status()
        .expect("ffmpeg runs");
    assert!(ok.success(), "ffmpeg failed to encode the test video");
}

fn backbone(dir: &Path) -> (Backbone, Sampling) {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    // ARCH=resnet18: 112x112, 512 features; default the small CNN at 64x64.
    // Random weights: speed does not depend on them.
    let resnet = std::env::var("ARCH").is_ok_and(|a| a == "resnet18");
    let (arch, size, dim) = if resnet {
        let _net = tch::vision::resnet::resnet18_no_final_layer(&vs.root());
        (Arch::Resnet18, 112, 512)
    } else {
        let _net = SmallCnn::new(&vs.root(), 64, 3);
        (Arch::SmallCnn, 64, 64)
    };
    vs.save(dir.join("backbone.safetensors"))
        .expect("save backbone");
    let info = BackboneInfo {
        kind: BACKBONE_KIND.into(),
        arch,
        width: size,
        height: size,
        dim,
        fps: 5.0,
        frame_motion: false,
        weights: "backbone.safetensors".into(),
        origin: serde_json::Value::Null,
    };
    let s = Sampling {
        fps: info.fps,
        width: info.width,
        height: info.height,
        threads: None,
    };
    (
        Backbone::load(&info, dir, Device::Cpu).expect("load backbone"),
        s,
    )
}

/// CPU seconds used so far by this process and its waited-for children.
fn cpu_seconds() -> f64 {
    let of = |who| {
        // SAFETY: getrusage only writes the struct we hand it.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut ru);
            ru
        };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

/// `--motion`: two decodes against one (see the module header).
fn motion(dir: &Path, seconds: u64) {
    let video = dir.join("video.mp4");
    encode(&video, seconds);
    let (b, s) = backbone(dir);
    // What extraction did before `open_pair`: the backbone's frames from
    // one ffmpeg while a second one measured the motion.
    let two_decodes = || {
        std::thread::scope(|scope| {
            let m = scope.spawn(|| media::frame_motion(&video, s.fps, || false));
            let f = video_features(&b, &video, s, false, 64, Device::Cpu, |_| {}, || false)
                .expect("extract");
            let m = m.join().expect("motion thread").expect("motion");
            let rows: Vec<f32> = (0..f.size()[0] as usize)
                .flat_map(|i| m.get(i).copied().unwrap_or([0.0; media::MOTION_CHANNELS]))
                .collect();
            let rows =
                tch::Tensor::from_slice(&rows).view([f.size()[0], media::MOTION_CHANNELS as i64]);
            tch::Tensor::cat(&[f, rows], 1)
        })
    };
    let one_decode = |threads: Option<usize>| {
        let s = Sampling { threads, ..s };
        video_features(&b, &video, s, true, 64, Device::Cpu, |_| {}, || false).expect("extract")
    };
    let reference = two_decodes();
    assert!(
        one_decode(None).equal(&reference) && one_decode(Some(1)).equal(&reference),
        "one decode gave other features than two"
    );
    let mut runs: [(&str, Vec<f64>, Vec<f64>); 3] = [
        ("two decodes (before)", vec![], vec![]),
        ("one decode", vec![], vec![]),
        ("one decode, 1 ffmpeg thread", vec![], vec![]),
    ];
    for _ in 0..5 {
        for (i, run) in runs.iter_mut().enumerate() {
            let (t, c) = (Instant::now(), cpu_seconds());
            let _ = match i {
                0 => two_decodes(),
                1 => one_decode(None),
                _ => one_decode(Some(1)),
            };
            run.1.push(t.elapsed().as_secs_f64());
            run.2.push(cpu_seconds() - c);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{seconds} s video (224x224 25 fps), features at 5 fps with full-rate motion, medians of 5 interleaved runs:"
    );
    let (mut base_wall, mut base_cpu) = (0.0, 0.0);
    for (i, (name, wall, cpu)) in runs.iter_mut().enumerate() {
        let (w, c) = (median(wall), median(cpu));
        if i == 0 {
            (base_wall, base_cpu) = (w, c);
        }
        println!(
            "  {name:<28} wall {w:.2} s ({:.2}x)   CPU {c:.2} s ({:.2}x)",
            w / base_wall,
            c / base_cpu
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(threads);
    if args.first().map(String::as_str) == Some("--motion") {
        let seconds = args.get(1).and_then(|m| m.parse().ok()).unwrap_or(120);
        motion(dir.path(), seconds);
        return;
    }
    if args.first().map(String::as_str) == Some("--memory") {
        let minutes: u64 = args.get(1).and_then(|m| m.parse().ok()).unwrap_or(30);
        let video = dir.path().join("long.mp4");
        encode(&video, minutes * 60);
        let (b, s) = backbone(dir.path());
        let before = peak_mib(libc::RUSAGE_SELF);
        let t = Instant::now();
        let f = video_features(&b, &video, s, false, 64, Device::Cpu, |_| {}, || false)
            .expect("extract");
        println!(
            "{minutes}-minute video: {} frames x {} features in {:.1} s; peak RSS engine {:.1} MiB (before extraction {:.1} MiB), ffmpeg {:.1} MiB",
            f.size()[0],
            f.size()[1],
            t.elapsed().as_secs_f64(),
            peak_mib(libc::RUSAGE_SELF),
            before,
            peak_mib(libc::RUSAGE_CHILDREN)
        );
        return;
    }
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(120);
    let video = dir.path().join("video.mp4");
    encode(&video, seconds);
    let (b, s) = backbone(dir.path());
    let batches: Vec<_> = stream(&video, s, 64)
        .into_iter()
        .map(|b| batch_tensor(&b.expect("decode"), s))
        .collect();
    let frames: i64 = batches.iter().map(|t| t.size()[0]).sum();
    // Warm-up, then the best of three of each, interleaved.
    let _ = b.features(&batches[0]).expect("forward");
    let (mut bare, mut full, mut decode) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        let n: usize = stream(&video, s, 64)
            .into_iter()
            .map(|b| b.expect("decode").frames)
            .sum();
        decode = decode.min(t.elapsed().as_secs_f64());
        assert_eq!(n as i64, frames);
        let t = Instant::now();
        for x in &batches {
            let _ = b.features(x).expect("forward");
        }
        bare = bare.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let f = video_features(&b, &video, s, false, 64, Device::Cpu, |_| {}, || false)
            .expect("extract");
        full = full.min(t.elapsed().as_secs_f64());
        assert_eq!(f.size()[0], frames);
    }
    let (fb, ff) = (frames as f64 / bare, frames as f64 / full);
    println!(
        "{seconds} s video (224x224 25 fps), {frames} frames at 5 fps, {} {}x{}, torch threads {threads}",
        std::env::var("ARCH").unwrap_or_else(|_| "small-cnn".into()),
        s.width,
        s.height
    );
    println!(
        "decode alone (ffmpeg, no network):    {:.0} frames/s",
        frames as f64 / decode
    );
    println!("bare forward pass (frames in memory): {fb:.0} frames/s");
    println!("extraction (decode overlapped):       {ff:.0} frames/s");
    println!("ratio extraction / bare: {:.2}", ff / fb);
}
