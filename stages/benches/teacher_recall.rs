//! Boundary recall and precision of the graphic-detection teacher, per
//! generator style, at +-0.5 s of the middle of each true wipe; plus the
//! proposed segments at temporal IoU >= 0.5, the share of videos it would
//! tag automatically (confidence >= 0.5), and hard-cut recall at +-0.2 s.
//!
//!   CARGO_TARGET_DIR=/work/target-data cargo bench -p stages --bench teacher_recall [-- VIDEOS_PER_STYLE [small|demo]]
//!
//! Videos are generated once into `$CARGO_TARGET_DIR/teacher-bench/` (or the
//! system temp dir) and reused. `TEACHER_STYLE=substring` keeps matching
//! styles; `TEACHER_PARAMS='{"threshold":0.1}'` overrides detector params;
//! `TEACHER_DEBUG=1` prints the signal of every video with a miss.

use media::synth::{DistractorKind, GroundTruth, Preset, VideoSpec, generate_video, styles};
use stages::teacher::detect::{
    DetectParams, cues_from_video, detect, graphic_signal, matched, truth_boundaries,
};
use std::path::PathBuf;
use std::sync::Mutex;

const TOL: f64 = 0.5;
const CUT_TOL: f64 = 0.2;
const REVIEW_BELOW: f64 = 0.5;

#[derive(Default, Clone)]
struct Row {
    videos: usize,
    want: usize,
    found: usize,
    hit: usize,
    seg_want: usize,
    seg_found: usize,
    seg_hit: usize,
    auto: usize,
    cut_want: usize,
    cut_hit: usize,
    cut_found: usize,
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.videos += o.videos;
        self.want += o.want;
        self.found += o.found;
        self.hit += o.hit;
        self.seg_want += o.seg_want;
        self.seg_found += o.seg_found;
        self.seg_hit += o.seg_hit;
        self.auto += o.auto;
        self.cut_want += o.cut_want;
        self.cut_hit += o.cut_hit;
        self.cut_found += o.cut_found;
    }
}

fn ratio(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.3}", a as f64 / b as f64)
    }
}

fn iou(a: (f64, f64), b: (f64, f64)) -> f64 {
    let inter = (a.1.min(b.1) - a.0.max(b.0)).max(0.0);
    let union = (a.1 - a.0) + (b.1 - b.0) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

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
    let only = std::env::var("TEACHER_STYLE").unwrap_or_default();
    let p: DetectParams = match std::env::var("TEACHER_PARAMS") {
        Ok(j) => serde_json::from_str(&j).expect("TEACHER_PARAMS is DetectParams JSON"),
        Err(_) => DetectParams::default(),
    };
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = root
        .join("teacher-bench")
        .join(format!("{preset:?}").to_lowercase());
    std::fs::create_dir_all(&dir).unwrap();

    let mut jobs = vec![];
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
    let order: Vec<String> = jobs.iter().map(|v| v.style.name.clone()).collect();
    let started = std::time::Instant::now();
    let jobs = Mutex::new(jobs);
    let results: Mutex<Vec<(String, Row)>> = Mutex::new(vec![]);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                loop {
                    let Some(v) = jobs.lock().unwrap().pop() else {
                        break;
                    };
                    let mp4 = dir.join(format!("{}.mp4", v.name));
                    let json = dir.join(format!("{}.json", v.name));
                    let truth: GroundTruth = if mp4.exists() && json.exists() {
                        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
                    } else {
                        generate_video(&v, &mp4, &json, &mut |_, _| {}).unwrap()
                    };
                    let cues = cues_from_video(&mp4, &p, None, &|| false).unwrap();
                    let d = detect(&cues, &p);
                    let found: Vec<f64> = d.boundaries.iter().map(|b| b.time).collect();
                    let want = truth_boundaries(&truth);
                    let hit = matched(&found, &want, TOL);
                    let spans: Vec<(f64, f64)> = truth
                        .replays
                        .iter()
                        .map(|r| (r.span.start, r.span.end))
                        .collect();
                    let props: Vec<(f64, f64)> =
                        d.segments.iter().map(|s| (s.start, s.end)).collect();
                    let seg_hit = spans
                        .iter()
                        .filter(|t| props.iter().any(|p| iou(**t, *p) >= 0.5))
                        .count();
                    let cuts: Vec<f64> = truth
                        .distractors
                        .iter()
                        .filter(|x| x.kind == DistractorKind::LiveCut)
                        .flat_map(|x| [x.span.start, x.span.end])
                        .filter(|t| *t > 0.0 && *t < truth.video.duration)
                        .collect();
                    if debug && (hit < want.len() || hit < found.len()) {
                        let s = graphic_signal(&cues, &p);
                        let top: Vec<String> = s
                            .iter()
                            .enumerate()
                            .filter(|(_, x)| **x > p.threshold * 0.5)
                            .map(|(t, x)| {
                                format!(
                                    "{:.1}:{x:.2}/{:.2}",
                                    t as f64 / cues.fps,
                                    cues.frames[t].diff
                                )
                            })
                            .collect();
                        eprintln!(
                            "{}: want {want:?} found {found:?}\n   signal {}",
                            v.name,
                            top.join(" ")
                        );
                    }
                    let row = Row {
                        videos: 1,
                        want: want.len(),
                        found: found.len(),
                        hit,
                        seg_want: spans.len(),
                        seg_found: props.len(),
                        seg_hit,
                        auto: usize::from(d.confidence >= REVIEW_BELOW),
                        cut_want: cuts.len(),
                        cut_hit: matched(&d.cuts, &cuts, CUT_TOL),
                        cut_found: d.cuts.len(),
                    };
                    results.lock().unwrap().push((v.style.name.clone(), row));
                }
            });
        }
    });
    let mut by_style: Vec<(String, Row)> = vec![];
    for (style, row) in results.into_inner().unwrap() {
        match by_style.iter_mut().find(|(s, _)| *s == style) {
            Some((_, r)) => r.add(&row),
            None => by_style.push((style, row)),
        }
    }
    by_style.sort_by_key(|(s, _)| order.iter().position(|o| o == s));
    println!(
        "teacher on preset {preset:?}, {per_style} videos per style, {:.1} s; boundaries at +-{TOL} s, segments at IoU >= 0.5, auto = confidence >= {REVIEW_BELOW}, cuts at +-{CUT_TOL} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<40} {:>6} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} | {:>5} | {:>7} {:>7}",
        "style",
        "videos",
        "recall",
        "prec",
        "true",
        "found",
        "seg rec",
        "seg prc",
        "auto",
        "cut rec",
        "cut prc"
    );
    let mut all = Row::default();
    for (style, r) in &by_style {
        all.add(r);
        println!(
            "{style:<40} {:>6} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} | {:>5} | {:>7} {:>7}",
            r.videos,
            ratio(r.hit, r.want),
            ratio(r.hit, r.found),
            r.want,
            r.found,
            ratio(r.seg_hit, r.seg_want),
            ratio(r.seg_hit, r.seg_found),
            ratio(r.auto, r.videos),
            ratio(r.cut_hit, r.cut_want),
            ratio(r.cut_hit, r.cut_found)
        );
    }
    println!(
        "{:<40} {:>6} {:>7} {:>7} {:>5} {:>5} | {:>7} {:>7} | {:>5} | {:>7} {:>7}",
        "all",
        all.videos,
        ratio(all.hit, all.want),
        ratio(all.hit, all.found),
        all.want,
        all.found,
        ratio(all.seg_hit, all.seg_want),
        ratio(all.seg_hit, all.seg_found),
        ratio(all.auto, all.videos),
        ratio(all.cut_hit, all.cut_want),
        ratio(all.cut_hit, all.cut_found)
    );
}
