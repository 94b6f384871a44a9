//! Synthetic broadcast speed: render-only and render+encode throughput.
//!
//! `cargo bench -p media --bench synth_speed` (add `-- SECONDS` to change the
//! video length, default 60). Prints one line per measurement.

use std::time::Instant;

use media::synth::{Preset, Renderer, Sport, VideoSpec, find_style, generate_video};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60.0);
    let cases = [
        ("soccer", "premier-north", "skyline-tv"),
        ("basketball", "hoops-pro", "net-one"),
        ("ice-hockey", "ice-premier", "frost-tv"),
    ];
    let dir = std::env::temp_dir().join(format!("synth-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("synth_speed: {seconds} s of 224x224 @ 25 fps per case");
    for (sport, league, bc) in cases {
        let sport: Sport = sport.parse()?;
        let style = find_style(sport, league, bc, None).ok_or("style missing from catalog")?;
        let mut spec = VideoSpec::from_preset("bench", style, Preset::Demo, 42);
        spec.duration = seconds;

        let t0 = Instant::now();
        let mut r = Renderer::new(&spec)?;
        let setup = t0.elapsed().as_secs_f64();
        let mut buf = vec![0u8; r.frame_len()];
        let t1 = Instant::now();
        for f in 0..r.frame_count() {
            r.render(f, &mut buf);
        }
        let render = t1.elapsed().as_secs_f64();
        let frames = r.frame_count();

        let mp4 = dir.join("bench.mp4");
        let json = dir.join("bench.json");
        let t2 = Instant::now();
        generate_video(&spec, &mp4, &json, &mut |_, _| {})?;
        let total = t2.elapsed().as_secs_f64();
        println!(
            "{:<32} frames {frames:>5}  setup {setup:>6.3} s  render-only {render:>6.3} s ({:>6.0} fps)  render+encode {total:>6.3} s ({:>5.0} fps, {:.2}x real time)",
            spec.style.name,
            frames as f64 / render,
            frames as f64 / total,
            seconds / total
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
