//! Templates cannot run away: a runaway loop, a string doubled in a loop
//! and an oversized output each end in a diagnostic, quickly, never an
//! abort.

use engine_core::template::render_str;
use serde_json::json;
use std::time::{Duration, Instant};

fn render(src: &str) -> Result<String, engine_core::diag::Diagnostic> {
    render_str("bomb.yaml.j2", src, &json!({}), None)
}

fn assert_stops(src: &str, needle: &str) {
    let t0 = Instant::now();
    let e = render(src).expect_err("the template must be refused");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    assert!(e.message.contains(needle), "{}", e.message);
    assert_eq!(e.file, "bomb.yaml.j2");
    assert!(e.hint.is_some(), "{e:?}");
}

#[test]
fn nested_loops_run_out_of_budget() {
    assert_stops(
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{{ '' }}{% endfor %}{% endfor %}{% endfor %}",
        "did not finish within its budget",
    );
}

#[test]
fn a_string_doubled_in_a_loop_runs_out_of_budget() {
    assert_stops(
        "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "did not finish within its budget",
    );
}

#[test]
fn an_oversized_output_is_refused() {
    assert_stops(
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        "passes 16 MiB",
    );
}

#[test]
fn every_pipeline_template_renders_within_budget() {
    // The repository's own templates, with each sport's values: far below
    // the limits (they render, which is all the budget allows).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let values = engine_core::template::load_values(&[root.join("sports/basketball.yaml")], &[])
        .expect("values");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".yaml.j2") {
            let src = std::fs::read_to_string(&p).unwrap();
            render_str(&p.display().to_string(), &src, &values, Some(&root))
                .unwrap_or_else(|d| panic!("{}: {d}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "found {n} templates");
}

#[test]
fn an_include_through_a_symlink_out_of_the_folder_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yaml"), "stolen: true\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("blocks")).unwrap();
    let e = render_str(
        "p.yaml.j2",
        "{% include \"blocks/secret.yaml\" %}",
        &json!({}),
        Some(dir.path()),
    )
    .expect_err("must refuse");
    assert!(
        e.message.contains("outside the template's folder"),
        "{}",
        e.message
    );
    // Inside the folder, includes still work.
    std::fs::write(dir.path().join("ok.yaml"), "fine: true\n").unwrap();
    let ok = render_str(
        "p.yaml.j2",
        "{% include \"ok.yaml\" %}",
        &json!({}),
        Some(dir.path()),
    );
    assert_eq!(ok.unwrap(), "fine: true\n");
}
