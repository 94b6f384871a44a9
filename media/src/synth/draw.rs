//! Drawing primitives on an RGB24 buffer, all clipped, none allocating.

use super::style::{LogoShape, Rgb};

pub(crate) struct Canvas<'a> {
    pub buf: &'a mut [u8],
    pub w: usize,
    pub h: usize,
}

impl Canvas<'_> {
    #[inline]
    pub fn put(&mut self, x: usize, y: usize, c: Rgb) {
        let i = (y * self.w + x) * 3;
        self.buf[i..i + 3].copy_from_slice(&c);
    }

    fn span(&mut self, y: usize, x0: usize, x1: usize, c: Rgb) {
        let row = &mut self.buf[(y * self.w + x0) * 3..(y * self.w + x1) * 3];
        for px in row.chunks_exact_mut(3) {
            px.copy_from_slice(&c);
        }
    }

    /// Pixel range covering [a, b) in continuous coordinates (pixel centres inside).
    fn cover(a: f64, b: f64, n: usize) -> (usize, usize) {
        let lo = (a - 0.5).ceil().max(0.0) as usize;
        let hi = ((b - 0.5).ceil().max(0.0) as usize).min(n);
        (lo.min(n), hi)
    }

    pub fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb) {
        let (xa, xb) = Self::cover(x0, x1, self.w);
        let (ya, yb) = Self::cover(y0, y1, self.h);
        if xa >= xb {
            return;
        }
        for y in ya..yb {
            self.span(y, xa, xb, c);
        }
    }

    pub fn fill_disc(&mut self, cx: f64, cy: f64, r: f64, c: Rgb) {
        self.ring(cx, cy, 0.0, r, c, None);
    }

    /// Annulus between `r0` and `r1`; `arc = Some((start, sweep))` in radians keeps only that arc.
    pub fn ring(&mut self, cx: f64, cy: f64, r0: f64, r1: f64, c: Rgb, arc: Option<(f64, f64)>) {
        if r1 <= 0.0 {
            return;
        }
        let (ya, yb) = Self::cover(cy - r1, cy + r1, self.h);
        let (r0s, r1s) = (r0 * r0, r1 * r1);
        for y in ya..yb {
            let dy = y as f64 + 0.5 - cy;
            let half = (r1s - dy * dy).max(0.0).sqrt();
            let (xa, xb) = Self::cover(cx - half, cx + half, self.w);
            for x in xa..xb {
                let dx = x as f64 + 0.5 - cx;
                let d2 = dx * dx + dy * dy;
                if d2 < r0s || d2 > r1s {
                    continue;
                }
                if let Some((start, sweep)) = arc {
                    let ang = (dy.atan2(dx) - start).rem_euclid(std::f64::consts::TAU);
                    if ang > sweep {
                        continue;
                    }
                }
                self.put(x, y, c);
            }
        }
    }

    /// Fills a simple polygon (even-odd rule) of up to 16 vertices.
    pub fn fill_polygon(&mut self, pts: &[(f64, f64)], c: Rgb) {
        debug_assert!(pts.len() <= 16);
        let (mut ymin, mut ymax) = (f64::MAX, f64::MIN);
        for p in pts {
            ymin = ymin.min(p.1);
            ymax = ymax.max(p.1);
        }
        let (ya, yb) = Self::cover(ymin, ymax, self.h);
        let mut xs = [0f64; 16];
        for y in ya..yb {
            let yc = y as f64 + 0.5;
            let mut n = 0;
            for i in 0..pts.len() {
                let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                if (a.1 <= yc) != (b.1 <= yc) {
                    xs[n] = a.0 + (yc - a.1) / (b.1 - a.1) * (b.0 - a.0);
                    n += 1;
                }
            }
            let xs = &mut xs[..n];
            xs.sort_by(|a, b| a.total_cmp(b));
            for pair in xs.chunks_exact(2) {
                let (xa, xb) = Self::cover(pair[0], pair[1], self.w);
                if xa < xb {
                    self.span(y, xa, xb, c);
                }
            }
        }
    }

    /// A straight stroke of width `wd` from `a` to `b`.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), wd: f64, c: Rgb) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1e-6 {
            return;
        }
        let (nx, ny) = (-dy / len * wd / 2.0, dx / len * wd / 2.0);
        self.fill_polygon(
            &[
                (a.0 + nx, a.1 + ny),
                (b.0 + nx, b.1 + ny),
                (b.0 - nx, b.1 - ny),
                (a.0 - nx, a.1 - ny),
            ],
            c,
        );
    }

    /// An arrow from `a` to `b` with a triangular head.
    pub fn arrow(&mut self, a: (f64, f64), b: (f64, f64), wd: f64, head: bool, c: Rgb) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1e-6 {
            return;
        }
        let (ux, uy) = (dx / len, dy / len);
        let hl = (wd * 3.5).min(len);
        let base = (b.0 - ux * hl, b.1 - uy * hl);
        self.line(a, if head { base } else { b }, wd, c);
        if head {
            let hw = wd * 2.2;
            self.fill_polygon(
                &[
                    b,
                    (base.0 - uy * hw, base.1 + ux * hw),
                    (base.0 + uy * hw, base.1 - ux * hw),
                ],
                c,
            );
        }
    }

    /// A league logo of radius `r` centred at `(cx, cy)`: `fill` outside, `inner` in the middle.
    pub fn logo(&mut self, shape: LogoShape, cx: f64, cy: f64, r: f64, fill: Rgb, inner: Rgb) {
        let mut pts = [(0.0, 0.0); 10];
        let poly = |pts: &mut [(f64, f64); 10], n: usize, rad: &dyn Fn(usize) -> f64, rot: f64| {
            for (i, p) in pts.iter_mut().enumerate().take(n) {
                let a = rot + i as f64 * std::f64::consts::TAU / n as f64;
                *p = (cx + rad(i) * a.cos(), cy + rad(i) * a.sin());
            }
        };
        let up = -std::f64::consts::FRAC_PI_2;
        match shape {
            LogoShape::Star => {
                poly(&mut pts, 10, &|i| if i % 2 == 0 { r } else { r * 0.45 }, up);
                self.fill_polygon(&pts, fill);
            }
            LogoShape::Diamond => {
                poly(&mut pts, 4, &|_| r, up);
                self.fill_polygon(&pts[..4], fill);
            }
            LogoShape::Hexagon => {
                poly(&mut pts, 6, &|_| r, 0.0);
                self.fill_polygon(&pts[..6], fill);
            }
            LogoShape::Roundel => {
                self.fill_disc(cx, cy, r, fill);
                self.ring(cx, cy, r * 0.32, r * 0.62, inner, None);
            }
        }
        self.fill_disc(cx, cy, r * 0.2, inner);
    }

    /// A seven-segment digit of height `h` with its top-left at `(x, y)`.
    pub fn digit(&mut self, x: f64, y: f64, h: f64, d: u32, c: Rgb) {
        const SEGS: [u8; 10] = [0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f];
        let w = h * 0.55;
        let t = (h * 0.16).max(1.0);
        let m = y + h / 2.0;
        let s = SEGS[(d % 10) as usize];
        let bars = [
            (x, y, x + w, y + t),                 // a top
            (x + w - t, y, x + w, m),             // b top right
            (x + w - t, m, x + w, y + h),         // c bottom right
            (x, y + h - t, x + w, y + h),         // d bottom
            (x, m, x + t, y + h),                 // e bottom left
            (x, y, x + t, m),                     // f top left
            (x, m - t / 2.0, x + w, m + t / 2.0), // g middle
        ];
        for (i, b) in bars.iter().enumerate() {
            if s & (1 << i) != 0 {
                self.fill_rect(b.0, b.1, b.2, b.3, c);
            }
        }
    }
}
