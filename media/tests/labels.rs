//! Label readers on hand-written fixtures, good and malformed.

use std::path::PathBuf;

use media::labels::{
    LabelError, read_csv, read_json, read_labels, read_soccernet_cameras, write_json,
};
use media::{Segment, Segments};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn seg(start: f64, end: f64) -> Segment {
    Segment { start, end }
}

#[test]
fn json_single_object_sorted() {
    let v = read_json(fixture("labels/single.json")).unwrap();
    assert_eq!(
        v,
        vec![Segments {
            video: "match-01.mp4".into(),
            fps: Some(25.0),
            league: Some("premier-north".into()),
            broadcaster: Some("skyline-tv".into()),
            segments: vec![seg(12.5, 20.0), seg(61.0, 75.5)],
        }]
    );
}

#[test]
fn json_array_and_round_trip() {
    let v = read_json(fixture("labels/many.json")).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].segments, vec![seg(0.0, 4.5)]);
    assert_eq!(v[1].league.as_deref(), Some("liga-sur"));
    assert!(v[1].segments.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    write_json(&out, &v).unwrap();
    assert_eq!(read_json(&out).unwrap(), v);
}

#[test]
fn json_end_before_start_names_the_segment() {
    let err = read_json(fixture("labels/bad_end_before_start.json")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LabelError::Invalid { .. }));
    assert!(
        msg.contains("bad_end_before_start.json")
            && msg.contains("segments[1]")
            && msg.contains("end 25 is not after start 30"),
        "{msg}"
    );
}

#[test]
fn json_unknown_field_names_line_and_field() {
    let err = read_json(fixture("labels/bad_unknown_field.json")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LabelError::Syntax { line: 4, .. }), "{err:?}");
    assert!(
        msg.contains("bad_unknown_field.json")
            && msg.contains("line 4")
            && msg.contains("unknown field `stop`"),
        "{msg}"
    );
}

#[test]
fn json_syntax_error_names_line() {
    let err = read_json(fixture("labels/bad_syntax.json")).unwrap_err();
    assert!(matches!(err, LabelError::Syntax { line: 5, .. }), "{err:?}");
    assert!(err.to_string().contains("bad_syntax.json"));
}

#[test]
fn csv_with_header_quotes_comments_and_blank_lines() {
    let v = read_csv(fixture("labels/with_header.csv")).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].video, "match-01.mp4");
    assert_eq!(v[0].segments, vec![seg(12.5, 20.0), seg(61.0, 75.5)]);
    assert_eq!(v[0].league.as_deref(), Some("premier-north"));
    assert_eq!(v[0].broadcaster.as_deref(), Some("skyline-tv"));
    assert_eq!(v[1].video, "match, second half.mp4");
    assert_eq!(v[1].segments, vec![seg(3.0, 9.25)]);
}

#[test]
fn csv_without_header_and_reordered_header() {
    let v = read_csv(fixture("labels/plain.csv")).unwrap();
    assert_eq!(
        v.iter().map(|s| s.video.as_str()).collect::<Vec<_>>(),
        ["clip-a.mp4", "clip-b.mp4"]
    );
    assert_eq!(v[0].segments, vec![seg(1.0, 2.5), seg(5.0, 6.0)]);
    assert_eq!(v[0].league, None);
    let v = read_csv(fixture("labels/reordered.csv")).unwrap();
    assert_eq!(v[0].video, "x.mp4");
    assert_eq!(v[0].segments, vec![seg(1.0, 2.0)]);
}

#[test]
fn csv_errors_name_the_line() {
    let cases = [
        (
            "labels/bad_number.csv",
            "line 3",
            "`end` is `soon`, expected a number of seconds",
        ),
        ("labels/bad_fields.csv", "line 1", "expected 3 to 5 fields"),
        ("labels/overlap.csv", "line 3", "overlaps"),
        (
            "labels/bad_league.csv",
            "line 2",
            "league `coppa-est` differs from `liga-sur`",
        ),
    ];
    for (file, at, text) in cases {
        let err = read_csv(fixture(file)).unwrap_err();
        let msg = err.to_string();
        let name = file.rsplit('/').next().unwrap();
        assert!(
            msg.contains(name) && msg.contains(at) && msg.contains(text),
            "{file}: {msg}"
        );
    }
}

#[test]
fn soccernet_cameras_give_replay_segments_per_half() {
    let path = fixture(
        "soccernet/europe_uefa-cl/2015-2016/2015-09-15 - 21-45 Galatasaray 0 - 2 Atl. Madrid/Labels-cameras.json",
    );
    let v = read_soccernet_cameras(&path, "_224p.mkv").unwrap();
    assert_eq!(v.len(), 2);
    let dir = path.parent().unwrap();
    assert_eq!(v[0].video, dir.join("1_224p.mkv").to_string_lossy());
    assert_eq!(v[1].video, dir.join("2_224p.mkv").to_string_lossy());
    assert_eq!(v[0].league.as_deref(), Some("europe_uefa-cl"));
    // Two replay shots in a row (75.0 and 81.5) merge into one segment; the
    // file's annotations are out of order and still come out sorted.
    assert_eq!(v[0].segments, vec![seg(75.0, 90.25), seg(300.0, 312.0)]);
    // The replay still open at 40:00 of half 2 has no end and is left out.
    assert_eq!(v[1].segments, vec![seg(600.0, 620.5)]);
    // read_labels recognises the file by name.
    assert_eq!(read_labels(&path).unwrap(), v);
}

#[test]
fn soccernet_bad_replay_value_names_the_annotation() {
    let err = read_soccernet_cameras(fixture("soccernet/bad/Labels-cameras.json"), "_224p.mkv")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Labels-cameras.json")
            && msg.contains("annotations[1].replay")
            && msg.contains("slow-mo"),
        "{msg}"
    );
}

#[test]
fn missing_and_unknown_files() {
    let err = read_labels(fixture("labels/nope.json")).unwrap_err();
    assert!(
        matches!(err, LabelError::Io { .. }) && err.to_string().contains("nope.json"),
        "{err}"
    );
    let err = read_labels(fixture("labels/notes.txt")).unwrap_err();
    assert!(matches!(err, LabelError::UnknownFormat { .. }), "{err}");
    // A JSON label file that is SoccerNet-shaped but named otherwise fails clearly.
    let err = read_json(fixture("soccernet/bad/Labels-cameras.json")).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `annotations`")
            || err.to_string().contains("missing field"),
        "{err}"
    );
}

#[test]
fn ground_truth_converts_to_the_same_segments_type() {
    use media::synth::{Preset, VideoSpec, ground_truth, styles};
    let t = ground_truth(&VideoSpec::from_preset(
        "g",
        styles().remove(0),
        Preset::Small,
        2,
    ))
    .unwrap();
    let s = t.segments();
    let dir = tempfile::tempdir().unwrap();
    write_json(dir.path().join("g.json"), std::slice::from_ref(&s)).unwrap();
    assert_eq!(read_json(dir.path().join("g.json")).unwrap(), vec![s]);
}
