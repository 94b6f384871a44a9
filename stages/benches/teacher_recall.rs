//! Boundary recall and precision of the graphic-detection teacher, per
//! generator style, at +-0.5 s of the middle of each true wipe.
//!
//!   CARGO_TARGET_DIR=/work/target-data cargo bench -p stages --bench teacher_recall [-- VIDEOS_PER_STYLE [small|demo]]
//!
//! Videos are generated once into `$CARGO_TARGET_DIR/teacher-bench/` (or the
//! system temp dir) and reused. `TEACHER_DEBUG=1` prints each video's
//! signal peaks next to the true wipes.

use media::synth::{GroundTruth, Preset, VideoSpec, generate_video, styles};
use stages::teacher::detect::{
    DetectParams, cues_from_video, detect, graphic_signal, matched, truth_boundaries,
};
use std::path::PathBuf;
use std::sync::Mutex;

const TOL: f64 = 0.5;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let per_style: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let preset = match args.get(1).map(String::as_str) {
        Some("demo") => Preset::Demo,
        _ => Preset::Small,
    };
    let debug = std::env::var_os("TEACHER_DEBUG").is_some();
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = root
        .join("teacher-bench")
        .join(format!("{preset:?}").to_lowercase());
    std::fs::create_dir_all(&dir).unwrap();
    let p: DetectParams = match std::env::var("TEACHER_PARAMS") {
        Ok(j) => serde_json::from_str(&j).expect("TEACHER_PARAMS is DetectParams JSON"),
        Err(_) => DetectParams::default(),
    };

    let mut jobs = vec![];
    let only = std::env::var("TEACHER_STYLE").unwrap_or_default();
    for s in styles().into_iter().filter(|s| s.name.contains(&only)) {
        for i in 0..per_style {
            let name = format!("{}-{i}", s.name.replace('/', "_"));
            jobs.push(VideoSpec::from_preset(
                name,
                s.clone(),
                preset,
                1000 + i as u64 * 7919,
            ));
        }
    }
    let started = std::time::Instant::now();
    let jobs = Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let results = Mutex::new(vec![]);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                loop {
                    let Some((k, v)) = jobs.lock().unwrap().pop() else {
                        break;
                    };
                    let mp4 = dir.join(format!("{}.mp4", v.name));
                    let json = dir.join(format!("{}.json", v.name));
                    let truth: GroundTruth = if mp4.exists() && json.exists() {
                        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
                    } else {
                        generate_video(&v, &mp4, &json, &mut |_, _| {}).unwrap()
                    };
                    let cues = cues_from_video(&mp4, &p, &|| false).unwrap();
                    let d = detect(&cues, &p);
                    let found: Vec<f64> = d.boundaries.iter().map(|b| b.time).collect();
                    let want = truth_boundaries(&truth);
                    let hit = matched(&found, &want, TOL);
                    if debug && (hit < want.len() || hit < found.len()) {
                        let s = graphic_signal(&cues, &p);
                        let top: Vec<String> = s
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| **v > p.threshold * 0.5)
                            .map(|(t, v)| format!("{:.1}:{v:.2}/{:.2}", t as f64 / cues.fps, cues.frames[t].diff))
                            .collect();
                        eprintln!(
                            "{}: want {want:?} found {found:?}\n   signal {}",
                            v.name,
                            top.join(" ")
                        );
                    }
                    results.lock().unwrap().push((
                        k,
                        v.style.name.clone(),
                        want.len(),
                        found.len(),
                        hit,
                        d.confidence,
                    ));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    println!(
        "teacher boundary recall at +-{TOL} s, preset {preset:?}, {per_style} videos per style ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<42} {:>7} {:>9} {:>7} {:>6} {:>6} {:>9}",
        "style", "videos", "recall", "prec", "true", "found", "mean conf"
    );
    let (mut tw, mut tf, mut th) = (0, 0, 0);
    let mut i = 0;
    while i < results.len() {
        let style = results[i].1.clone();
        let rows: Vec<_> = results[i..].iter().take_while(|r| r.1 == style).collect();
        i += rows.len();
        let (w, f, h): (usize, usize, usize) = rows
            .iter()
            .fold((0, 0, 0), |a, r| (a.0 + r.2, a.1 + r.3, a.2 + r.4));
        let conf = rows.iter().map(|r| r.5).sum::<f64>() / rows.len() as f64;
        tw += w;
        tf += f;
        th += h;
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{:.3}", a as f64 / b as f64)
            }
        };
        println!(
            "{style:<42} {:>7} {:>9} {:>7} {w:>6} {f:>6} {conf:>9.2}",
            rows.len(),
            ratio(h, w),
            ratio(h, f)
        );
    }
    println!(
        "{:<42} {:>7} {:>9.3} {:>7.3} {tw:>6} {tf:>6}",
        "all",
        results.len(),
        th as f64 / tw.max(1) as f64,
        th as f64 / tf.max(1) as f64
    );
}
