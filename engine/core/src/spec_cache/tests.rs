use super::*;
use crate::spec::parse;

/// A pipeline of `n` stages using every part of the spec, long enough
/// to be cached when `n` is a few hundred.
fn big(n: usize, tag: &str) -> String {
    let mut t = format!(
        "name: big_{tag}\nstore: fs://.engine/store\nresources:\n  heavy: {{ cpus: 2, memory: 1GiB, slots: 3, partition: gpu }}\nstages:\n"
    );
    t.push_str("  items:\n    uses: builtin.items\n    with: { items: [a, b, c] }\n");
    for i in 0..n {
        t.push_str(&format!(
            "  s{i}:\n    uses: shell\n    needs: [items]\n    resources: heavy\n    retries: 2\n    timeout: 5m\n    when: items.count > {i}\n    cache: {}\n    deps: [data/in_{i}.txt]\n    matrix: {{ env.N: [1, 2.5, -3, x, null, true] }}\n    publish: {{ out: things/s{i}@latest }}\n    with:\n      run: \"echo {i} > out.txt\"\n      outputs: {{ out: out.txt }}\n      env: {{ A: 'quoted: {tag}', B: [1, {{ c: d }}] }}\n",
            i % 2 == 0
        ));
    }
    t.push_str("  mapped:\n    uses: builtin.upper\n    map: { over: items.items, batch: 4 }\n");
    t
}

fn cache_in(dir: &Path, build: &str) -> SpecCache {
    SpecCache::at(dir.join("parse-cache"), build.as_bytes())
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("parse-cache"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_cached_spec_reads_back_with_every_value_and_span() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path(), "b1");
    let text = big(200, "x");
    assert!(text.len() >= MIN_BYTES);
    let spec = parse("p.yaml", &text).unwrap();
    assert!(cache.get(&text).is_none(), "empty cache");
    cache.put(&text, &spec);
    let back = cache.get(&text).expect("a hit after put");
    // Debug shows every field, spans included (Located's PartialEq
    // compares values only).
    assert_eq!(format!("{back:?}"), format!("{spec:?}"));
    let last = back.stages.last().unwrap();
    assert_eq!(last.0.value, "mapped");
    assert!(last.0.loc.line > 1000, "spans survive: {:?}", last.0.loc);
}

#[test]
fn another_text_or_another_build_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path(), "b1");
    let text = big(200, "x");
    cache.put(&text, &parse("p.yaml", &text).unwrap());
    assert!(cache.get(&big(200, "y")).is_none(), "changed text");
    assert!(
        cache_in(dir.path(), "b2").get(&text).is_none(),
        "another engine build"
    );
    assert!(cache.get(&text).is_some());
}

#[test]
fn a_damaged_entry_is_a_miss_and_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path(), "b1");
    let text = big(200, "x");
    let spec = parse("p.yaml", &text).unwrap();
    cache.put(&text, &spec);
    let file = cache.path(&text);
    let good = std::fs::read(&file).unwrap();
    // One flipped byte in the payload, then a truncated file, then junk.
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    for bad in [flipped, good[..good.len() / 2].to_vec(), b"junk".to_vec()] {
        std::fs::write(&file, &bad).unwrap();
        assert!(cache.get(&text).is_none());
    }
    cache.put(&text, &spec);
    assert!(cache.get(&text).is_some());
}

#[test]
fn short_texts_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path(), "b1");
    let text = big(2, "x");
    assert!(text.len() < MIN_BYTES);
    cache.put(&text, &parse("p.yaml", &text).unwrap());
    assert_eq!(entries(dir.path()), 0);
    assert!(cache.get(&text).is_none());
}

#[test]
fn the_cache_keeps_the_newest_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_in(dir.path(), "b1");
    let texts: Vec<String> = (0..KEEP + 3).map(|i| big(120, &i.to_string())).collect();
    for t in &texts {
        cache.put(t, &parse("p.yaml", t).unwrap());
    }
    assert_eq!(entries(dir.path()), KEEP);
    assert!(
        cache.get(texts.last().unwrap()).is_some(),
        "the newest stays"
    );
}

#[test]
fn a_project_without_an_engine_folder_caches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(SpecCache::in_project(dir.path()).is_none());
    std::fs::create_dir(dir.path().join(".engine")).unwrap();
    let cache = SpecCache::in_project(dir.path()).expect("a cache once .engine exists");
    let text = big(200, "x");
    cache.put(&text, &parse("p.yaml", &text).unwrap());
    assert_eq!(entries(&dir.path().join(".engine")), 1);
}
