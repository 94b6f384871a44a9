//! The world: a field texture, the ball and the players as functions of
//! time, and cameras that look at it.

use super::draw::Canvas;
use super::plan::EventPlan;
use super::rng::{Rng, hash2};
use super::style::{FieldStyle, Rgb, Sport};

/// Texture size in world units (1 unit = 1 texel).
pub(crate) const TW: usize = 1200;
pub(crate) const TH: usize = 700;
/// The playing field inside the texture.
const FX0: f64 = 100.0;
const FX1: f64 = 1100.0;
const FY0: f64 = 80.0;
const FY1: f64 = 620.0;
/// Width of the world the live camera sees.
pub(crate) const LIVE_VIEW: f64 = 520.0;
const PLAYERS_PER_TEAM: usize = 5;

/// Where a camera looks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Camera {
    pub cx: f64,
    pub cy: f64,
    /// World units visible across the width.
    pub view: f64,
    /// Mirror left-right (reverse angle).
    pub flip: bool,
}

struct Player {
    home: (f64, f64),
    amp: (f64, f64),
    freq: (f64, f64),
    phase: (f64, f64),
    pull: f64,
}

pub(crate) struct World {
    texture: Vec<u8>,
    field: FieldStyle,
    ball_phase: [f64; 4],
    players: Vec<Player>,
    events: Vec<(f64, f64, (f64, f64))>,
}

impl World {
    pub fn new(
        sport: Sport,
        field: &FieldStyle,
        seed: u64,
        events: &[EventPlan],
        fps: f64,
    ) -> World {
        let mut rng = Rng::fork(seed, 2);
        let texture = paint_texture(sport, field, seed as u32);
        let ball_phase = [
            rng.range(0.0, 6.3),
            rng.range(0.0, 6.3),
            rng.range(0.0, 6.3),
            rng.range(0.0, 6.3),
        ];
        let mut players = Vec::new();
        for team in 0..2 {
            for i in 0..PLAYERS_PER_TEAM {
                let side = if team == 0 { -1.0 } else { 1.0 };
                let depth = (i as f64 + 0.5) / PLAYERS_PER_TEAM as f64;
                players.push(Player {
                    home: (
                        600.0 + side * rng.range(60.0, 380.0),
                        FY0 + 40.0 + depth * (FY1 - FY0 - 80.0) + rng.range(-30.0, 30.0),
                    ),
                    amp: (rng.range(20.0, 60.0), rng.range(15.0, 45.0)),
                    freq: (rng.range(0.3, 0.9), rng.range(0.3, 0.9)),
                    phase: (rng.range(0.0, 6.3), rng.range(0.0, 6.3)),
                    pull: rng.range(0.25, 0.6),
                });
            }
        }
        let events = events
            .iter()
            .map(|e| {
                let goal_x = if e.team == 0 { FX1 - 10.0 } else { FX0 + 10.0 };
                let miss = if e.goal {
                    0.0
                } else {
                    rng.range(50.0, 90.0) * if rng.chance(0.5) { 1.0 } else { -1.0 }
                };
                (
                    e.truth.live.start_frame as f64 / fps,
                    e.truth.live.end_frame as f64 / fps,
                    (goal_x, 350.0 + miss),
                )
            })
            .collect();
        World {
            texture,
            field: field.clone(),
            ball_phase,
            players,
            events,
        }
    }

    /// The ball at time `t`: a smooth wander, pulled to the goal during events.
    pub fn ball(&self, t: f64) -> (f64, f64) {
        let p = &self.ball_phase;
        let mut x = 600.0 + 330.0 * (0.21 * t + p[0]).sin() + 100.0 * (0.53 * t + p[1]).sin();
        let mut y = 350.0 + 160.0 * (0.17 * t + p[2]).sin() + 60.0 * (0.71 * t + p[3]).sin();
        for &(a, b, target) in &self.events {
            let u = (t - a) / (b - a);
            let w = if (0.0..1.0).contains(&u) {
                smooth(u)
            } else if (1.0..1.5).contains(&u) {
                1.0 - smooth((u - 1.0) / 0.5)
            } else {
                continue;
            };
            x += (target.0 - x) * w;
            y += (target.1 - y) * w;
        }
        (x, y)
    }

    /// The live broadcast camera: follows the ball loosely, so it pans slowly.
    pub fn live_camera(&self, t: f64, view: f64) -> Camera {
        let b = self.ball(t);
        let half = view / 2.0;
        Camera {
            cx: (600.0 + 0.75 * (b.0 - 600.0)).clamp(half, TW as f64 - half),
            cy: 350.0 + 0.3 * (b.1 - 350.0),
            view,
            flip: false,
        }
    }

    /// A camera that centres the ball.
    pub fn tight_camera(&self, t: f64, view: f64, flip: bool) -> Camera {
        let b = self.ball(t);
        Camera {
            cx: b.0,
            cy: b.1,
            view,
            flip,
        }
    }

    /// Screen position of world point `p`.
    pub fn to_screen(cam: &Camera, w: usize, h: usize, p: (f64, f64)) -> (f64, f64) {
        let s = w as f64 / cam.view;
        let dx = (p.0 - cam.cx) * s;
        (
            w as f64 / 2.0 + if cam.flip { -dx } else { dx },
            h as f64 / 2.0 + (p.1 - cam.cy) * s,
        )
    }

    /// Player positions at time `t`, team 0 first.
    pub fn player(&self, i: usize, t: f64) -> (f64, f64) {
        let p = &self.players[i];
        let b = self.ball(t);
        (
            p.home.0 + p.pull * (b.0 - p.home.0) + p.amp.0 * (p.freq.0 * t + p.phase.0).sin(),
            p.home.1 + p.pull * (b.1 - p.home.1) + p.amp.1 * (p.freq.1 * t + p.phase.1).sin(),
        )
    }

    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// Draws the world at time `t` through `cam`. `cols` is scratch space (one entry per column).
    pub fn render(&self, canvas: &mut Canvas, cam: &Camera, t: f64, cols: &mut Vec<usize>) {
        let (w, h) = (canvas.w, canvas.h);
        let s = w as f64 / cam.view;
        cols.clear();
        for x in 0..w {
            let dx = (x as f64 + 0.5 - w as f64 / 2.0) / s;
            let wx = cam.cx + if cam.flip { -dx } else { dx };
            cols.push((wx.round().clamp(0.0, TW as f64 - 1.0) as usize) * 3);
        }
        for y in 0..h {
            let wy = cam.cy + (y as f64 + 0.5 - h as f64 / 2.0) / s;
            let row = wy.round().clamp(0.0, TH as f64 - 1.0) as usize * TW * 3;
            let src = &self.texture[row..row + TW * 3];
            let dst = &mut canvas.buf[y * w * 3..(y + 1) * w * 3];
            for (px, &c) in dst.chunks_exact_mut(3).zip(cols.iter()) {
                px.copy_from_slice(&src[c..c + 3]);
            }
        }
        let r = (11.0 * s).max(1.5);
        for i in 0..self.players.len() {
            let p = World::to_screen(cam, w, h, self.player(i, t));
            let shirt = if i < PLAYERS_PER_TEAM {
                self.field.home
            } else {
                self.field.away
            };
            canvas.fill_disc(p.0, p.1, r, darken(shirt));
            canvas.fill_disc(p.0, p.1, (r - 1.0).max(1.0), shirt);
        }
        let b = World::to_screen(cam, w, h, self.ball(t));
        canvas.fill_disc(b.0, b.1, (5.0 * s).max(1.2), [250, 250, 250]);
    }
}

fn smooth(u: f64) -> f64 {
    u * u * (3.0 - 2.0 * u)
}

pub(crate) fn darken(c: Rgb) -> Rgb {
    [c[0] / 2, c[1] / 2, c[2] / 2]
}

fn paint_texture(sport: Sport, f: &FieldStyle, seed: u32) -> Vec<u8> {
    let mut tex = vec![0u8; TW * TH * 3];
    for y in 0..TH {
        for x in 0..TW {
            let (xf, yf) = (x as f64, y as f64);
            let n = hash2(x as u32, y as u32, seed);
            let inside = (FX0..FX1).contains(&xf) && (FY0..FY1).contains(&yf);
            let c = if inside {
                let band = match sport {
                    Sport::Soccer => (((xf - FX0) / 50.0) as u32).is_multiple_of(2),
                    Sport::Basketball => ((yf / 18.0) as u32
                        + hash2((yf / 18.0) as u32, (xf / 150.0) as u32, seed) % 2)
                        .is_multiple_of(2),
                    Sport::IceHockey => hash2(x as u32 / 40, y as u32 / 3, seed).is_multiple_of(7),
                };
                let base = if band { f.stripe } else { f.base };
                let j = (n % 13) as i32 - 6;
                [
                    clamp(base[0] as i32 + j),
                    clamp(base[1] as i32 + j),
                    clamp(base[2] as i32 + j),
                ]
            } else {
                // The stands: dark with coloured speckles of the crowd.
                let k = n % 16;
                match k {
                    0 => [200, 40, 40],
                    1 => [230, 230, 230],
                    2 => [40, 80, 200],
                    3 => [220, 190, 60],
                    _ => {
                        let g = 35 + (n >> 8) as i32 % 25;
                        [g as u8, g as u8, (g + 8) as u8]
                    }
                }
            };
            tex[(y * TW + x) * 3..(y * TW + x) * 3 + 3].copy_from_slice(&c);
        }
    }
    let mut cv = Canvas {
        buf: &mut tex,
        w: TW,
        h: TH,
    };
    let l = f.lines;
    let lw = 4.0;
    // Boundary and halfway line.
    cv.fill_rect(FX0, FY0, FX1, FY0 + lw, l);
    cv.fill_rect(FX0, FY1 - lw, FX1, FY1, l);
    cv.fill_rect(FX0, FY0, FX0 + lw, FY1, l);
    cv.fill_rect(FX1 - lw, FY0, FX1, FY1, l);
    cv.fill_rect(598.0, FY0, 602.0, FY1, l);
    cv.ring(600.0, 350.0, 76.0, 80.0, l, None);
    match sport {
        Sport::Soccer => {
            for (x0, x1) in [(FX0, FX0 + 160.0), (FX1 - 160.0, FX1)] {
                cv.fill_rect(x0, 200.0, x1, 204.0, l);
                cv.fill_rect(x0, 496.0, x1, 500.0, l);
                let xe = if x0 == FX0 { x1 } else { x0 };
                cv.fill_rect(xe - 2.0, 200.0, xe + 2.0, 500.0, l);
            }
            cv.fill_rect(FX0 - 25.0, 310.0, FX0, 390.0, [245, 245, 245]);
            cv.fill_rect(FX1, 310.0, FX1 + 25.0, 390.0, [245, 245, 245]);
        }
        Sport::Basketball => {
            let paint = darken(f.home);
            cv.fill_rect(FX0, 270.0, FX0 + 190.0, 430.0, paint);
            cv.fill_rect(FX1 - 190.0, 270.0, FX1, 430.0, paint);
            cv.ring(
                FX0 + 20.0,
                350.0,
                236.0,
                240.0,
                l,
                Some((-std::f64::consts::FRAC_PI_2, std::f64::consts::PI)),
            );
            cv.ring(
                FX1 - 20.0,
                350.0,
                236.0,
                240.0,
                l,
                Some((std::f64::consts::FRAC_PI_2, std::f64::consts::PI)),
            );
            cv.ring(FX0 + 40.0, 350.0, 8.0, 12.0, [255, 110, 0], None);
            cv.ring(FX1 - 40.0, 350.0, 8.0, 12.0, [255, 110, 0], None);
        }
        Sport::IceHockey => {
            cv.fill_rect(596.0, FY0, 604.0, FY1, [200, 30, 40]);
            cv.fill_rect(420.0, FY0, 432.0, FY1, [30, 60, 200]);
            cv.fill_rect(768.0, FY0, 780.0, FY1, [30, 60, 200]);
            for (cx, cy) in [
                (250.0, 220.0),
                (250.0, 480.0),
                (950.0, 220.0),
                (950.0, 480.0),
            ] {
                cv.ring(cx, cy, 56.0, 60.0, [200, 30, 40], None);
                cv.fill_disc(cx, cy, 7.0, [200, 30, 40]);
            }
            cv.fill_rect(FX0 + 30.0, 325.0, FX0 + 50.0, 375.0, [200, 30, 40]);
            cv.fill_rect(FX1 - 50.0, 325.0, FX1 - 30.0, 375.0, [200, 30, 40]);
        }
    }
    tex
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}
