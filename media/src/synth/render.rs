//! Composes each frame: the world through the right camera, the score box,
//! distractors, replay transitions and pundit drawings.

use super::draw::Canvas;
use super::plan::{Plan, plan};
use super::scene::{Camera, LIVE_VIEW, World};
use super::style::{GraphicStyle, Rgb, WipeShape};
use super::truth::{DistractorKind, GROUND_TRUTH_VERSION, GroundTruth, ReplayTruth, VideoMeta};
use super::{SynthError, VideoSpec};

/// Where the score box is drawn: `[x0, y0, x1, y1]` in pixels (exclusive
/// end) for a `width` x `height` video. Its top-left 2x2 pixels are always
/// the broadcaster's scoreboard background colour outside replay transitions.
pub fn scoreboard_rect(width: u32, height: u32) -> [u32; 4] {
    let (w, h) = (width as f64, height as f64);
    [
        (w * 0.03).round() as u32,
        (h * 0.03).round() as u32,
        (w * 0.62).round() as u32,
        (h * 0.03 + (h * 0.1).max(8.0)).round() as u32,
    ]
}

/// The plan and ground truth of `spec`, without drawing anything.
pub(crate) fn plan_with_truth(spec: &VideoSpec) -> Result<(Plan, GroundTruth), SynthError> {
    spec.validate()?;
    let fps = spec.fps;
    let frames = (spec.duration * fps).round() as u64;
    let plan = plan(&spec.style, fps, frames, spec.seed);
    let s = &spec.style;
    let truth = GroundTruth {
        version: GROUND_TRUTH_VERSION,
        video: VideoMeta {
            name: spec.name.clone(),
            sport: s.sport,
            league: s.league.clone(),
            broadcaster: s.broadcaster.clone(),
            season: s.season.clone(),
            style: s.name.clone(),
            fps,
            width: spec.width,
            height: spec.height,
            frames,
            duration: frames as f64 / fps,
            seed: spec.seed,
        },
        replays: plan.replays.clone(),
        events: plan.events.iter().map(|e| e.truth.clone()).collect(),
        distractors: plan.distractors.clone(),
    };
    Ok((plan, truth))
}

/// What a frame shows underneath overlays.
#[derive(Clone, Copy)]
enum Shot {
    Live { t: f64, view: f64 },
    Replay { replay: usize, k: u64 },
}

/// Renders the frames of one synthetic video into caller-provided buffers.
///
/// Rendering allocates nothing per frame; frames may be rendered in any order.
pub struct Renderer {
    width: usize,
    height: usize,
    fps: f64,
    style: super::style::Style,
    plan: Plan,
    world: World,
    truth: GroundTruth,
    old: Vec<u8>,
    new: Vec<u8>,
    cols: Vec<usize>,
}

impl Renderer {
    /// Plans the timeline of `spec` and prepares the world.
    pub fn new(spec: &VideoSpec) -> Result<Renderer, SynthError> {
        let (plan, truth) = plan_with_truth(spec)?;
        let world = World::new(
            spec.style.sport,
            &spec.style.field,
            spec.seed,
            &plan.events,
            spec.fps,
        );
        let len = spec.width as usize * spec.height as usize * 3;
        Ok(Renderer {
            width: spec.width as usize,
            height: spec.height as usize,
            fps: spec.fps,
            style: spec.style.clone(),
            plan,
            world,
            truth,
            old: vec![0; len],
            new: vec![0; len],
            cols: Vec::with_capacity(spec.width as usize),
        })
    }

    /// Number of frames in the video.
    pub fn frame_count(&self) -> u64 {
        self.plan.frames
    }

    /// Bytes of one RGB24 frame.
    pub fn frame_len(&self) -> usize {
        self.width * self.height * 3
    }

    /// The exact ground truth of the video.
    pub fn ground_truth(&self) -> &GroundTruth {
        &self.truth
    }

    /// Draws frame `f` (RGB24) into `out`. Frames past the end show live play.
    ///
    /// # Panics
    /// When `out` is not [`Renderer::frame_len`] bytes long.
    pub fn render(&mut self, f: u64, out: &mut [u8]) {
        assert_eq!(
            out.len(),
            self.frame_len(),
            "frame buffer has the wrong size"
        );
        let replay = self.truth.replays.iter().position(|r| r.span.contains(f));
        let Some(ri) = replay else {
            let shot = self.live_shot(f);
            self.draw_shot(out, shot, f);
            return;
        };
        let r = self.truth.replays[ri].clone();
        let g = self.style.graphics.clone();
        match (&g, r.opening, r.closing) {
            (Some(g), Some(open), _) if open.contains(f) => {
                let p = (f - open.start_frame) as f64 / open.frames() as f64;
                let mut old = std::mem::take(&mut self.old);
                let mut new = std::mem::take(&mut self.new);
                let live = self.live_shot(f);
                self.draw_shot(&mut old, live, f);
                self.draw_shot(&mut new, Shot::Replay { replay: ri, k: 0 }, f);
                transition(out, &old, &new, self.width, self.height, g, p, true);
                self.old = old;
                self.new = new;
            }
            (Some(g), _, Some(close)) if close.contains(f) => {
                let p = (f - close.start_frame) as f64 / close.frames() as f64;
                let mut old = std::mem::take(&mut self.old);
                let mut new = std::mem::take(&mut self.new);
                let last = r.content.frames().saturating_sub(1);
                let live = self.live_shot(f);
                self.draw_shot(
                    &mut old,
                    Shot::Replay {
                        replay: ri,
                        k: last,
                    },
                    f,
                );
                self.draw_shot(&mut new, live, f);
                transition(out, &old, &new, self.width, self.height, g, p, false);
                self.old = old;
                self.new = new;
            }
            _ => {
                let k = f - r.content.start_frame;
                self.draw_shot(out, Shot::Replay { replay: ri, k }, f);
            }
        }
    }

    fn live_shot(&self, f: u64) -> Shot {
        let cut = self
            .truth
            .distractors
            .iter()
            .any(|d| d.kind == DistractorKind::LiveCut && d.span.contains(f));
        Shot::Live {
            t: f as f64 / self.fps,
            view: if cut { LIVE_VIEW / 1.8 } else { LIVE_VIEW },
        }
    }

    fn replay_time(&self, r: &ReplayTruth, k: u64) -> f64 {
        let src = k as f64 * r.speed;
        let src = if r.repeated_frames { src.floor() } else { src };
        let t = r.live.start + src / self.fps;
        t.min(r.live.end)
    }

    fn draw_shot(&mut self, out: &mut [u8], shot: Shot, f: u64) {
        let mut cols = std::mem::take(&mut self.cols);
        self.draw_shot_with(out, shot, f, &mut cols);
        self.cols = cols;
    }

    fn draw_shot_with(&self, out: &mut [u8], shot: Shot, f: u64, cols: &mut Vec<usize>) {
        let (w, h) = (self.width, self.height);
        let mut cv = Canvas { buf: out, w, h };
        match shot {
            Shot::Live { t, view } => {
                let cam = if view < LIVE_VIEW {
                    self.world.tight_camera(t, view, false)
                } else {
                    self.world.live_camera(t, view)
                };
                self.world.render(&mut cv, &cam, t, cols);
                self.overlays(&mut cv, f, true);
            }
            Shot::Replay { replay, k } => {
                let r = &self.truth.replays[replay];
                let t = self.replay_time(r, k);
                let cam = self
                    .world
                    .tight_camera(t, LIVE_VIEW / r.zoom, r.reverse_angle);
                self.world.render(&mut cv, &cam, t, cols);
                if r.drawings {
                    self.drawings(&mut cv, r, k, t, &cam);
                }
                self.overlays(&mut cv, f, false);
            }
        }
    }

    /// Score box always; banners and bars only in live play.
    fn overlays(&self, cv: &mut Canvas, f: u64, live: bool) {
        let (w, h) = (cv.w as f64, cv.h as f64);
        let sb = &self.style.scoreboard;
        let [x0, y0, x1, y1] = scoreboard_rect(cv.w as u32, cv.h as u32).map(|v| v as f64);
        cv.fill_rect(x0, y0, x1, y1, sb.background);
        let bh = y1 - y0;
        let dh = bh * 0.7;
        let dy = y0 + (bh - dh) / 2.0;
        let chip = bh * 0.45;
        cv.fill_rect(
            x0 + bh * 0.3,
            dy,
            x0 + bh * 0.3 + chip,
            dy + dh,
            self.style.field.home,
        );
        let (home, away) = self.score(f);
        let mut x = x0 + bh * 0.3 + chip + bh * 0.25;
        cv.digit(x, dy, dh, home, sb.text);
        x += dh * 0.8;
        cv.fill_rect(x, dy + dh * 0.45, x + dh * 0.35, dy + dh * 0.6, sb.text);
        x += dh * 0.55;
        cv.digit(x, dy, dh, away, sb.text);
        x += dh * 0.8;
        cv.fill_rect(x, dy, x + chip, dy + dh, self.style.field.away);
        x += chip + bh * 0.35;
        let secs = (f as f64 / self.fps) as u32 + 17 * 60;
        for (i, d) in [secs / 600 % 10, secs / 60 % 10, secs / 10 % 6, secs % 10]
            .into_iter()
            .enumerate()
        {
            if x + dh * 0.6 > x1 {
                break;
            }
            cv.digit(x, dy, dh, d, sb.text);
            x += dh * 0.7;
            if i == 1 {
                let dot = (dh * 0.15).max(1.0);
                cv.fill_rect(x, dy + dh * 0.25, x + dot, dy + dh * 0.25 + dot, sb.text);
                cv.fill_rect(x, dy + dh * 0.65, x + dot, dy + dh * 0.65 + dot, sb.text);
                x += dot + dh * 0.15;
            }
        }
        if !live {
            return;
        }
        let dcol = self.style.distractors.color;
        for d in self.truth.distractors.iter().filter(|d| d.span.contains(f)) {
            let k = (f - d.span.start_frame) as f64;
            let slide = (k / 6.0).min(1.0);
            match d.kind {
                DistractorKind::AdBanner => {
                    let left = w * (1.0 - slide) + w * 0.04;
                    cv.fill_rect(left, h * 0.86, left + w * 0.92, h * 0.97, dcol);
                    for i in 0..4 {
                        let bx = left + w * (0.05 + 0.22 * i as f64);
                        cv.fill_rect(bx, h * 0.89, bx + w * 0.15, h * 0.94, [250, 250, 250]);
                    }
                }
                DistractorKind::LowerThird => {
                    let right = w * 0.65 * slide;
                    cv.fill_rect(right - w * 0.6, h * 0.70, right, h * 0.80, sb.background);
                    cv.fill_rect(right - w * 0.6, h * 0.80, right, h * 0.82, sb.accent);
                    cv.fill_rect(
                        right - w * 0.55,
                        h * 0.73,
                        right - w * 0.2,
                        h * 0.77,
                        sb.text,
                    );
                }
                DistractorKind::ScorePopup => {
                    let (px0, py0) = (x0, y1 + h * 0.02);
                    cv.fill_rect(px0, py0, px0 + w * 0.3, py0 + h * 0.12, sb.accent);
                    cv.digit(
                        px0 + w * 0.05,
                        py0 + h * 0.015,
                        h * 0.09,
                        home,
                        sb.background,
                    );
                    cv.digit(
                        px0 + w * 0.18,
                        py0 + h * 0.015,
                        h * 0.09,
                        away,
                        sb.background,
                    );
                }
                DistractorKind::LiveCut => {}
            }
        }
    }

    fn score(&self, f: u64) -> (u32, u32) {
        let mut s = (0, 0);
        for e in self
            .plan
            .events
            .iter()
            .filter(|e| e.goal && e.truth.live.end_frame <= f)
        {
            if e.team == 0 {
                s.0 += 1;
            } else {
                s.1 += 1;
            }
        }
        s
    }

    /// A pundit circles the ball and draws an arrow from the nearest player to it.
    fn drawings(&self, cv: &mut Canvas, r: &ReplayTruth, k: u64, t: f64, cam: &Camera) {
        let n = r.content.frames() as f64;
        let q = ((k as f64 - 0.15 * n) / (0.35 * n)).clamp(0.0, 1.0);
        if q <= 0.0 {
            return;
        }
        let (w, h) = (cv.w, cv.h);
        let ink: Rgb = [255, 235, 0];
        let stroke = (w as f64 / 60.0).max(1.5);
        let b = World::to_screen(cam, w, h, self.world.ball(t));
        let rad = w as f64 * 0.11;
        cv.ring(
            b.0,
            b.1,
            rad - stroke,
            rad,
            ink,
            Some((-1.2, q * std::f64::consts::TAU)),
        );
        let mut best = (f64::MAX, b);
        for i in 0..self.world.player_count() {
            let p = World::to_screen(cam, w, h, self.world.player(i, t));
            let d = (p.0 - b.0).hypot(p.1 - b.1);
            if d > rad * 1.5 && d < best.0 {
                best = (d, p);
            }
        }
        if best.0 < f64::MAX {
            let a = best.1;
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len = (dx * dx + dy * dy).sqrt();
            let stop = ((len - rad) / len).max(0.0) * q;
            cv.arrow(a, (a.0 + dx * stop, a.1 + dy * stop), stroke, q > 0.5, ink);
        }
    }
}

/// Blends `old` into `new` through the league's wipe at progress `p` in [0, 1).
#[allow(clippy::too_many_arguments)]
fn transition(
    out: &mut [u8],
    old: &[u8],
    new: &[u8],
    w: usize,
    h: usize,
    g: &GraphicStyle,
    p: f64,
    opening: bool,
) {
    let (wf, hf) = (w as f64, h as f64);
    let logo_r = hf.min(wf) * 0.2;
    match g.wipe {
        WipeShape::Horizontal | WipeShape::Diagonal => {
            let diag = g.wipe == WipeShape::Diagonal;
            let band = if diag { (wf + hf) * 0.3 } else { wf * 0.35 };
            let extent = if diag { wf + hf } else { wf };
            let travel = extent + band;
            // Opening sweeps forward, closing sweeps back.
            let pos = if opening {
                -band / 2.0 + p * travel
            } else {
                extent + band / 2.0 - p * travel
            };
            for y in 0..h {
                for x in 0..w {
                    let coord = x as f64 + 0.5 + if diag { y as f64 + 0.5 } else { 0.0 };
                    let v = coord - pos;
                    let i = (y * w + x) * 3;
                    let c: [u8; 3] = if v.abs() <= band / 2.0 {
                        if (v.abs() - band * 0.4).abs() < band * 0.05 {
                            g.secondary
                        } else {
                            g.primary
                        }
                    } else {
                        let behind = if opening { v < 0.0 } else { v > 0.0 };
                        let src = if behind { new } else { old };
                        [src[i], src[i + 1], src[i + 2]]
                    };
                    out[i..i + 3].copy_from_slice(&c);
                }
            }
            let (lx, ly) = if diag {
                (pos / 2.0, pos / 2.0)
            } else {
                (pos, hf / 2.0)
            };
            let mut cv = Canvas { buf: out, w, h };
            cv.logo(g.logo, lx, ly, logo_r, g.secondary, g.primary);
        }
        WipeShape::Iris => {
            let src = if p < 0.5 { old } else { new };
            out.copy_from_slice(src);
            let cover = (wf * wf + hf * hf).sqrt() / 2.0 + 1.0;
            let tri = 1.0 - (2.0 * p - 1.0).abs();
            let r = cover * tri.powf(0.7);
            let mut cv = Canvas { buf: out, w, h };
            cv.fill_disc(wf / 2.0, hf / 2.0, r, g.primary);
            cv.ring(wf / 2.0, hf / 2.0, r * 0.88, r, g.secondary, None);
            cv.logo(
                g.logo,
                wf / 2.0,
                hf / 2.0,
                (r * 0.5).min(logo_r * 1.3),
                g.secondary,
                g.primary,
            );
        }
        WipeShape::LogoZoom => {
            let src = if p < 0.5 { old } else { new };
            out.copy_from_slice(src);
            let tri = 1.0 - (2.0 * p - 1.0).abs();
            let mut cv = Canvas { buf: out, w, h };
            if tri > 0.75 {
                cv.fill_rect(0.0, 0.0, wf, hf, g.primary);
                cv.logo(
                    g.logo,
                    wf / 2.0,
                    hf / 2.0,
                    logo_r * 1.4,
                    g.secondary,
                    g.primary,
                );
            } else {
                let r = wf.max(hf) * 1.6 * tri * tri;
                cv.logo(g.logo, wf / 2.0, hf / 2.0, r, g.primary, g.secondary);
            }
        }
    }
}
