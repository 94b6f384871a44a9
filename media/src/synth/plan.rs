//! The timeline of a generated video: when events happen, which are
//! replayed, where transitions and distractors go. Decided before any pixel
//! is drawn, so the ground truth is exact by construction.

use super::rng::Rng;
use super::style::Style;
use super::truth::{DistractorKind, DistractorTruth, EventKind, EventTruth, ReplayTruth, Span};

/// Internal facts about an event that the renderer needs.
#[derive(Clone, Debug)]
pub(crate) struct EventPlan {
    pub truth: EventTruth,
    /// 0 = home attacks to the right, 1 = away attacks to the left.
    pub team: usize,
    pub goal: bool,
}

/// The whole timeline.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub frames: u64,
    pub events: Vec<EventPlan>,
    pub replays: Vec<ReplayTruth>,
    pub distractors: Vec<DistractorTruth>,
}

/// Timing ranges in seconds, shorter for short videos so tests get replays.
struct Pace {
    gap: (f64, f64),
    event: (f64, f64),
}

pub(crate) fn plan(style: &Style, fps: f64, frames: u64, seed: u64) -> Plan {
    let mut rng = Rng::fork(seed, 1);
    let secs = |s: f64| (s * fps).round().max(1.0) as u64;
    let duration = frames as f64 / fps;
    let pace = if duration < 40.0 {
        Pace {
            gap: (1.0, 2.0),
            event: (1.0, 1.6),
        }
    } else {
        Pace {
            gap: (4.0, 12.0),
            event: (2.0, 4.0),
        }
    };
    let tail = secs(0.5);
    let mut out = Plan {
        frames,
        events: Vec::new(),
        replays: Vec::new(),
        distractors: Vec::new(),
    };
    let mut f = 0u64;
    loop {
        let gap = secs(rng.range(pace.gap.0, pace.gap.1));
        let ev_len = secs(rng.range(pace.event.0, pace.event.1)).max(4);
        let ev_start = f + gap;
        if ev_start + ev_len + tail > frames {
            place_distractors(
                &mut rng,
                style,
                fps,
                f,
                frames.saturating_sub(tail).max(f),
                &mut out.distractors,
            );
            break;
        }
        place_distractors(&mut rng, style, fps, f, ev_start, &mut out.distractors);
        let id = out.events.len() as u32;
        let goal = rng.chance(0.4);
        let team = rng.int(0, 1) as usize;
        let live = Span::new(ev_start, ev_start + ev_len, fps);
        out.events.push(EventPlan {
            truth: EventTruth {
                id,
                kind: if goal {
                    EventKind::Goal
                } else {
                    EventKind::Chance
                },
                live,
            },
            team,
            goal,
        });
        f = live.end_frame;

        // The first event that fits is always replayed, so every video long
        // enough to hold one replay has one.
        let want = out.replays.is_empty() || rng.chance(style.replay.frequency);
        let delay = secs(rng.range(0.2, 0.6));
        let speed = rng.range(style.replay.slow_min, style.replay.slow_max);
        let zoom = rng.range(style.replay.zoom_min, style.replay.zoom_max);
        let reverse = rng.chance(style.replay.reverse_angle);
        let drawings = rng.chance(style.replay.pundit_drawings);
        let popup = rng.chance(style.distractors.score_popup);
        let (open, close) = style.graphics.as_ref().map_or((0, 0), |g| {
            (g.opening_frames as u64, g.closing_frames as u64)
        });
        let wanted_content = (ev_len as f64 / speed).ceil() as u64;
        let room = frames.saturating_sub(f + delay + open + close + tail);
        let content = wanted_content.min(room);
        if want && content >= 8 {
            let start = f + delay;
            let content_span = Span::new(start + open, start + open + content, fps);
            let end = content_span.end_frame + close;
            out.replays.push(ReplayTruth {
                id: out.replays.len() as u32,
                event_id: id,
                span: Span::new(start, end, fps),
                opening: (open > 0).then(|| Span::new(start, start + open, fps)),
                closing: (close > 0).then(|| Span::new(content_span.end_frame, end, fps)),
                content: content_span,
                live,
                shown: Span::new(
                    live.start_frame,
                    (live.start_frame + (content as f64 * speed).ceil() as u64).min(live.end_frame),
                    fps,
                ),
                speed,
                zoom,
                reverse_angle: reverse,
                repeated_frames: !style.replay.interpolate,
                drawings,
            });
            f = end;
        } else if popup {
            let len = secs(2.0).min(frames - f);
            if len > 0 {
                out.distractors.push(DistractorTruth {
                    kind: DistractorKind::ScorePopup,
                    span: Span::new(f, f + len, fps),
                });
            }
        }
    }
    out.distractors.sort_by_key(|d| d.span.start_frame);
    out
}

/// Puts ad banners, lower thirds and live cuts into the live stretch `[a, b)`.
fn place_distractors(
    rng: &mut Rng,
    style: &Style,
    fps: f64,
    a: u64,
    b: u64,
    out: &mut Vec<DistractorTruth>,
) {
    let d = &style.distractors;
    let stretch = (b.saturating_sub(a)) as f64 / fps;
    let weight = (stretch / 6.0).min(1.0);
    for (kind, p, len_s) in [
        (DistractorKind::AdBanner, d.ad_banner, (2.0, 5.0)),
        (DistractorKind::LowerThird, d.lower_third, (2.0, 4.0)),
        (DistractorKind::LiveCut, d.live_cut, (1.0, 3.0)),
    ] {
        let roll = rng.chance(p * weight);
        let len_pick = rng.range(len_s.0, len_s.1);
        let pos_pick = rng.unit();
        if !roll || stretch < 1.0 {
            continue;
        }
        let len = ((len_pick * fps).round() as u64).clamp(1, b - a);
        let start = a + ((b - a - len) as f64 * pos_pick) as u64;
        out.push(DistractorTruth {
            kind,
            span: Span::new(start, start + len, fps),
        });
    }
}
