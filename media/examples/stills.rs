//! Writes still frames of synthetic videos as PNG (through the ffmpeg CLI)
//! so a person can check the replay cues by eye.
//!
//! `cargo run -p media --example stills -- OUT_DIR [STYLE_NAME...]`

use std::path::Path;

use media::synth::{Preset, Renderer, VideoSpec, styles};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = Path::new(args.first().map(String::as_str).unwrap_or("/tmp/stills"));
    std::fs::create_dir_all(out)?;
    let wanted: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    for style in styles() {
        if !wanted.is_empty() && !wanted.contains(&style.name.as_str()) {
            continue;
        }
        let spec = VideoSpec::from_preset("still", style.clone(), Preset::Demo, 7);
        let mut r = Renderer::new(&spec)?;
        let truth = r.ground_truth().clone();
        let Some(rep) = truth
            .replays
            .iter()
            .find(|x| x.drawings)
            .or(truth.replays.first())
        else {
            continue;
        };
        let mut picks = vec![(
            "live".to_string(),
            rep.live.start_frame + rep.live.frames() / 2,
        )];
        if let Some(o) = rep.opening {
            picks.push(("opening".to_string(), o.start_frame + o.frames() / 2));
            picks.push(("opening-early".to_string(), o.start_frame + o.frames() / 4));
        }
        picks.push((
            "replay".to_string(),
            rep.content.start_frame + rep.content.frames() * 3 / 4,
        ));
        let mut kinds = Vec::new();
        for d in &truth.distractors {
            if !kinds.contains(&d.kind) {
                kinds.push(d.kind);
                let name = serde_json::to_value(d.kind)?;
                let name = name.as_str().unwrap_or("distractor").to_string();
                picks.push((name, d.span.start_frame + d.span.frames() / 2));
            }
        }
        let mut buf = vec![0u8; r.frame_len()];
        for (what, f) in picks {
            r.render(f, &mut buf);
            let stem = format!("{}-{}", style.name.replace('/', "_"), what);
            let ppm = out.join(format!("{stem}.ppm"));
            let mut data = format!("P6\n{} {}\n255\n", spec.width, spec.height).into_bytes();
            data.extend_from_slice(&buf);
            std::fs::write(&ppm, data)?;
            let status = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-i"])
                .arg(&ppm)
                .arg(out.join(format!("{stem}.png")))
                .status()?;
            std::fs::remove_file(&ppm)?;
            println!("{stem}.png frame {f} (ffmpeg {status})");
        }
    }
    Ok(())
}
