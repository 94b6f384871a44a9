//! Table-driven spec cases: every `cases/valid-*.yaml` compiles; every
//! `cases/invalid-*.yaml` fails with exactly the errors its header lists
//! (`# error: LINE:COL: message` lines; the file name is left out).
//! Each case is compiled, then its `deps:` are resolved against this folder
//! (as `engine validate` does against the pipeline's folder).
//! Run with `UPDATE_CASES=1` to rewrite the headers from actual output.

use engine_core::compile::{Pipeline, compile};
use engine_core::deps;
use engine_core::diag::Diagnostics;
use engine_core::stage::Registry;
use std::path::Path;

fn cases(prefix: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// What `engine validate` checks: the spec, then that every `deps:` entry
/// matches files in the cases' folder.
fn validate(text: &str, reg: &Registry) -> Result<Pipeline, Diagnostics> {
    let p = compile("case.yaml", text, reg)?;
    deps::resolve(
        &p,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases"),
    )?;
    Ok(p)
}

fn body(text: &str) -> String {
    text.lines()
        .skip_while(|l| l.starts_with("# error: ") || l.starts_with("#   help: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn valid_cases_compile() {
    let reg = Registry::with_builtins();
    let files = cases("valid-");
    assert!(files.len() >= 2);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if let Err(d) = validate(&text, &reg) {
            panic!("{} should compile:\n{}", f.display(), d.render());
        }
    }
}

#[test]
fn invalid_cases_report_exact_errors() {
    let reg = Registry::with_builtins();
    let files = cases("invalid-");
    assert!(files.len() >= 10, "expected the invalid cases to be there");
    let update = std::env::var_os("UPDATE_CASES").is_some();
    let mut failures = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let spec = body(&text);
        let expected: Vec<String> = text
            .lines()
            .take_while(|l| l.starts_with("# error: ") || l.starts_with("#   help: "))
            .map(str::to_string)
            .collect();
        let d = match validate(&spec, &reg) {
            Ok(_) => {
                failures.push(format!("{}: compiled, but should fail", f.display()));
                continue;
            }
            Err(d) => d,
        };
        let mut actual = vec![];
        for item in &d.items {
            assert_eq!(item.file, "case.yaml");
            actual.push(format!(
                "# error: {}:{}: {}",
                item.line, item.column, item.message
            ));
            if let Some(h) = &item.hint {
                actual.push(format!("#   help: {h}"));
            }
        }
        // Rendering never panics and shows the source line.
        let rendered = d.render();
        assert!(rendered.contains("error"), "{rendered}");
        if update {
            std::fs::write(&f, format!("{}\n{spec}", actual.join("\n"))).unwrap();
        } else if actual != expected {
            failures.push(format!(
                "{}:\n  expected:\n    {}\n  actual:\n    {}",
                f.display(),
                expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every case, made long enough to be cached, compiles to the same result
/// from the parse cache as from the YAML: the same stages with the same
/// params and places, or the same errors at the same lines and columns.
#[test]
fn every_case_compiles_the_same_from_the_parse_cache() {
    use engine_core::spec_cache::{MIN_BYTES, SpecCache};
    let reg = Registry::with_builtins();
    let dir = tempfile::tempdir().unwrap();
    let cache = SpecCache::at(dir.path().to_path_buf(), b"test build");
    let outcome = |r: Result<Pipeline, Diagnostics>| match r {
        Ok(p) => format!(
            "{} {:?} {:?}",
            p.name,
            p.classes,
            p.stages
                .iter()
                .map(|s| {
                    let s = (
                        (&s.name, &s.kind, &s.params, &s.needs, &s.deps, s.loc),
                        (
                            &s.when, &s.publish, s.retries, s.timeout, s.cache, &s.matrix,
                        ),
                        s.class,
                    );
                    format!("{s:?}")
                })
                .collect::<Vec<_>>()
        ),
        Err(d) => d.render(),
    };
    let mut hits = 0;
    for f in cases("") {
        let mut text = body(&std::fs::read_to_string(&f).unwrap());
        // A trailing comment moves no line or column of the spec.
        text.push_str(&format!("# {}\n", "x".repeat(MIN_BYTES)));
        let fresh = outcome(compile_with(&text, &reg, None));
        let first = outcome(compile_with(&text, &reg, Some(&cache)));
        if cache.get(&text).is_some() {
            hits += 1;
        }
        let second = outcome(compile_with(&text, &reg, Some(&cache)));
        assert_eq!(first, fresh, "{}: first, through the cache", f.display());
        assert_eq!(second, fresh, "{}: read from the cache", f.display());
    }
    // The cases that parse (all valid ones, and the invalid ones whose
    // errors come from the checks) were read back from the cache.
    assert!(hits >= 10, "only {hits} cases were cached");
}

fn compile_with(
    text: &str,
    reg: &Registry,
    cache: Option<&engine_core::spec_cache::SpecCache>,
) -> Result<Pipeline, Diagnostics> {
    engine_core::compile::compile_cached("case.yaml", text, reg, cache)
}
