//! Per-frame training targets from replay segments. Frame `i` of a
//! sequence sampled at `fps` is the instant `i / fps`.

/// Frame classes of the backbone: what a single picture shows.
pub const FRAME_CLASSES: [&str; 3] = ["live", "transition", "replay"];

/// Targets for the temporal model: `[start, end, content]` per frame.
/// `start` (`end`) is 1 within `tolerance` seconds of a segment's start
/// (end); `content` is 1 inside a segment.
pub fn temporal_targets(
    frames: usize,
    fps: f64,
    segments: &[(f64, f64)],
    tolerance: f64,
) -> Vec<[f32; 3]> {
    (0..frames)
        .map(|i| {
            let t = i as f64 / fps;
            let mut y = [0f32; 3];
            for &(s, e) in segments {
                if (t - s).abs() <= tolerance {
                    y[0] = 1.0;
                }
                if (t - e).abs() <= tolerance {
                    y[1] = 1.0;
                }
                if t >= s && t < e {
                    y[2] = 1.0;
                }
            }
            y
        })
        .collect()
}

/// The backbone's class of each frame: 1 (`transition`) within
/// `transition` seconds after a segment's start or before its end, 2
/// (`replay`) elsewhere inside a segment, 0 (`live`) outside.
pub fn frame_classes(
    frames: usize,
    fps: f64,
    segments: &[(f64, f64)],
    transition: f64,
) -> Vec<i64> {
    (0..frames)
        .map(|i| {
            let t = i as f64 / fps;
            segments
                .iter()
                .find(|(s, e)| t >= *s && t < *e)
                .map(|&(s, e)| {
                    if t < s + transition || t >= e - transition {
                        1
                    } else {
                        2
                    }
                })
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_mark_boundaries_and_content() {
        let y = temporal_targets(20, 2.0, &[(2.0, 6.0)], 0.5);
        // t = 2.0 is frame 4: start frames 3..=5, end frames 11..=13.
        let starts: Vec<usize> = (0..20).filter(|&i| y[i][0] == 1.0).collect();
        let ends: Vec<usize> = (0..20).filter(|&i| y[i][1] == 1.0).collect();
        let content: Vec<usize> = (0..20).filter(|&i| y[i][2] == 1.0).collect();
        assert_eq!(starts, vec![3, 4, 5]);
        assert_eq!(ends, vec![11, 12, 13]);
        assert_eq!(content, (4..12).collect::<Vec<_>>());
    }

    #[test]
    fn classes_split_transitions_from_content() {
        let c = frame_classes(10, 1.0, &[(2.0, 8.0)], 1.0);
        assert_eq!(c, vec![0, 0, 1, 2, 2, 2, 2, 1, 0, 0]);
    }
}
