//! Declared file dependencies (`deps:`): a stage reruns when a file it
//! declares changes content, not when only its stat changes; declared
//! files that are missing are located errors; the stat cache saves reads.

mod common;

use common::{fs_store, opts, status};
use engine_core::cache::TaskFingerprint;
use engine_core::compile::{Pipeline, compile};
use engine_core::deps::{self, GitBlobs, HashStats, StatCache};
use engine_core::plan::plan;
use engine_core::records::TaskStatus;
use engine_core::scheduler;
use engine_core::stage::Registry;
use engine_core::store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A pipeline file in `repo` with one shell stage that reads `data/in.txt`.
fn shell_pipeline(repo: &Path) -> String {
    format!(
        r#"name: deps-shell
stages:
  train:
    uses: shell
    deps: [data/in.txt]
    with:
      run: cat "$IN" > out.txt
      env: {{ IN: "{}" }}
      outputs: {{ out: out.txt }}
"#,
        repo.join("data/in.txt").display()
    )
}

/// Compile, resolve and hash, as `engine run` and `engine plan` do.
fn prepare(repo: &Path, yaml: &str, cache: &mut StatCache) -> (Pipeline, HashStats) {
    let file = repo.join("pipeline.yaml");
    let mut p = compile(
        &file.display().to_string(),
        yaml,
        &Registry::with_builtins(),
    )
    .unwrap_or_else(|d| panic!("{}", d.render()));
    let r = deps::resolve(&p, repo).unwrap_or_else(|d| panic!("{}", d.render()));
    let stats = deps::hash(&mut p, &r, cache, None).unwrap();
    (p, stats)
}

async fn run(p: Pipeline, store: &Store) -> engine_core::records::RunRecord {
    let pl = plan(&p);
    scheduler::run(Arc::new(p), Arc::new(pl), store.clone(), opts(2))
        .await
        .unwrap()
}

/// Sets a file's mtime into the past, out of the racy window, as an old
/// file in a checkout would have.
fn age(path: &Path, secs_ago: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

#[tokio::test]
async fn a_shell_stage_reruns_when_a_declared_file_changes_and_not_when_only_touched() {
    let repo = tempfile::tempdir().unwrap();
    let data = repo.path().join("data/in.txt");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, "one\n").unwrap();
    age(&data, 60);
    let yaml = shell_pipeline(repo.path());
    let fs = fs_store();
    let cache_file = repo.path().join(".engine/stat-cache.json");

    let mut cache = StatCache::load(&cache_file);
    let (p, stats) = prepare(repo.path(), &yaml, &mut cache);
    assert_eq!((stats.files, stats.hashed), (1, 1));
    assert_eq!(cache.save(), None);
    let r = run(p, &fs.store).await;
    assert_eq!(
        status(&r, "train"),
        TaskStatus::Done,
        "{:?}",
        r.task("train")
    );

    // Unchanged: cached, and the file is not read again.
    let mut cache = StatCache::load(&cache_file);
    assert_eq!(cache.warning, None);
    let (p, stats) = prepare(repo.path(), &yaml, &mut cache);
    assert_eq!((stats.hashed, stats.from_stat_cache), (0, 1));
    let pl = plan(&p);
    let d = scheduler::explain(&p, &pl, &fs.store, &[], false)
        .await
        .unwrap();
    assert_eq!(d[0].action, "cached", "{d:?}");
    assert_eq!(
        status(&run(p, &fs.store).await, "train"),
        TaskStatus::Cached
    );

    // New content of the same size: plan names the file, run reruns.
    std::fs::write(&data, "two\n").unwrap();
    age(&data, 30);
    let mut cache = StatCache::load(&cache_file);
    let (p, stats) = prepare(repo.path(), &yaml, &mut cache);
    assert_eq!(stats.hashed, 1);
    cache.save();
    let pl = plan(&p);
    let d = scheduler::explain(&p, &pl, &fs.store, &[], false)
        .await
        .unwrap();
    assert_eq!(d[0].action, "run");
    assert_eq!(d[0].reason, "input changed: data/in.txt");
    let r = run(p, &fs.store).await;
    assert_eq!(status(&r, "train"), TaskStatus::Done);
    assert_eq!(
        r.task("train").unwrap().reason,
        "input changed: data/in.txt"
    );

    // `touch`: the stat changes, the content does not: hashed, still cached.
    age(&data, 10);
    let mut cache = StatCache::load(&cache_file);
    let (p, stats) = prepare(repo.path(), &yaml, &mut cache);
    assert_eq!(stats.hashed, 1, "a changed stat is read again");
    assert_eq!(
        status(&run(p, &fs.store).await, "train"),
        TaskStatus::Cached
    );
}

#[tokio::test]
async fn a_stage_without_deps_keeps_its_fingerprint() {
    // Cache entries written before `deps:` existed must still match.
    let fp = TaskFingerprint::new(
        "shell",
        1,
        &serde_json::json!({"run": "x"}),
        Default::default(),
    );
    let v = serde_json::to_value(&fp).unwrap();
    assert!(v.get("files").is_none(), "{v}");
    let old: TaskFingerprint = serde_json::from_value(v).unwrap();
    assert_eq!(old.digest(), fp.digest());
}

#[test]
fn a_fingerprint_digest_is_the_blake3_of_its_canonical_json() {
    // Cache entries are keyed by this digest: computing it another way must
    // give the same bytes as canonical JSON, or every entry stops matching.
    let d = |s: &str| engine_core::digest::Digest::of(s.as_bytes());
    let params = serde_json::json!({"b": [1, {"z": 1, "a": 2}], "a": "x"});
    let inputs = [
        ("up/up/out".to_string(), d("i")),
        ("a/a/b".to_string(), d("j")),
    ];
    let mut fp = TaskFingerprint::new("shell", 3, &params, inputs.into_iter().collect());
    for with_files in [false, true] {
        if with_files {
            fp.files.insert("data/x \"q\".csv".into(), d("f"));
            fp.files.insert("a.py".into(), d("g"));
        }
        let canonical = engine_core::digest::canonical_json(&serde_json::to_value(&fp).unwrap());
        assert_eq!(
            fp.digest(),
            engine_core::digest::Digest::of(canonical.as_bytes())
        );
    }
}

#[test]
fn why_changed_names_the_first_changed_file_and_counts_the_rest() {
    let d = |s: &str| engine_core::digest::Digest::of(s.as_bytes());
    let mut a = TaskFingerprint::new("shell", 1, &serde_json::json!({}), Default::default());
    a.files.insert("data/in_0000.txt".into(), d("a"));
    a.files.insert("data/in_0001.txt".into(), d("b"));
    let mut b = a.clone();
    b.files.insert("data/in_0000.txt".into(), d("changed"));
    assert_eq!(b.why_changed(&a), "input changed: data/in_0000.txt");
    b.files.remove("data/in_0001.txt");
    b.files.insert("data/new.txt".into(), d("new"));
    assert_eq!(
        b.why_changed(&a),
        "input changed: data/in_0000.txt and 2 more"
    );
}

#[test]
fn missing_deps_are_located_errors_naming_stage_and_path() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("there.txt"), "x").unwrap();
    std::fs::create_dir(repo.path().join("empty")).unwrap();
    let yaml = "name: m\nstages:\n  a:\n    uses: builtin.echo\n    deps: [there.txt, gone.txt, empty, \"src/*.py\"]\n    with: { text: x }\n";
    let p = compile("p.yaml", yaml, &Registry::with_builtins()).unwrap();
    let d = deps::resolve(&p, repo.path()).unwrap_err();
    let msgs: Vec<String> = d
        .items
        .iter()
        .map(|i| format!("{}:{}: {}", i.line, i.column, i.message))
        .collect();
    assert_eq!(
        msgs,
        [
            "5:23: stage `a` depends on `gone.txt`, which does not exist",
            "5:33: stage `a` depends on folder `empty`, which has no files",
            "5:40: stage `a` depends on `src/*.py`, which matches no file",
        ]
    );
    assert!(d.render().contains("gone.txt"));
}

#[test]
fn folders_and_globs_expand_to_files_inside_the_pipeline_folder() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    for f in [
        "scripts/train.py",
        "scripts/util.py",
        "scripts/notes.md",
        "scripts/lib/deep.py",
        "data/a/x.csv",
        "data/b/c/y.csv",
        "data/b/c/z.txt",
        "data/.git/HEAD",
        "data/.engine/stat-cache.json",
        "models/m1/w.bin",
    ] {
        std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        std::fs::write(root.join(f), f).unwrap();
    }
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link")).unwrap();
    let yaml = "name: g\nstages:\n  a:\n    uses: builtin.echo\n    deps: [\"scripts/*.py\", \"data/**/*.csv\", data, \"models/*\"]\n    with: { text: x }\n  b:\n    uses: builtin.echo\n    deps: [link]\n    with: { text: x }\n";
    let p = compile("p.yaml", yaml, &Registry::with_builtins()).unwrap();
    let err = deps::resolve(&p, root).unwrap_err();
    assert_eq!(err.items.len(), 1, "{}", err.render());
    assert!(
        err.items[0]
            .message
            .contains("outside the pipeline's folder"),
        "{}",
        err.render()
    );
    std::fs::remove_file(root.join("link")).unwrap();
    std::fs::write(root.join("link"), "now a file").unwrap();
    let r = deps::resolve(&p, root).unwrap();
    let a: Vec<&str> = r.stages[0].iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(
        a,
        [
            "data/a/x.csv",
            "data/b/c/y.csv",
            "data/b/c/z.txt",
            "models/m1/w.bin",
            "scripts/train.py",
            "scripts/util.py",
        ]
    );
    let b: Vec<&str> = r.stages[1].iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(b, ["link"]);
}

#[test]
fn a_corrupt_stat_cache_is_ignored_with_a_warning_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "content").unwrap();
    age(&file, 60);
    let cache_file = dir.path().join(".engine/stat-cache.json");
    std::fs::create_dir_all(cache_file.parent().unwrap()).unwrap();
    std::fs::write(&cache_file, "{ not json").unwrap();
    let mut c = StatCache::load(&cache_file);
    assert!(
        c.warning.as_deref().unwrap().contains("corrupt"),
        "{:?}",
        c.warning
    );
    let (d, cached) = c.digest(&file).unwrap();
    assert!(!cached);
    assert_eq!(d, deps::hash_file(&file).unwrap());
    assert_eq!(c.save(), None);
    let mut c = StatCache::load(&cache_file);
    assert_eq!(c.warning, None);
    assert_eq!(c.digest(&file).unwrap(), (d, true));
}

#[test]
fn a_file_modified_just_now_is_not_trusted_by_its_stat() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "aaaa").unwrap();
    let cache_file = dir.path().join("stat-cache.json");
    let mut c = StatCache::load(&cache_file);
    c.digest(&file).unwrap();
    assert!(c.is_empty(), "a racy file's digest is not kept");
    c.save();
    // Same size, and maybe the same mtime tick: only reading tells.
    std::fs::write(&file, "bbbb").unwrap();
    let mut c = StatCache::load(&cache_file);
    let (d, cached) = c.digest(&file).unwrap();
    assert!(!cached);
    assert_eq!(d, engine_core::digest::Digest::of(b"bbbb"));
}

#[test]
fn clean_tracked_files_take_git_blob_ids() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/clean.txt"), "clean").unwrap();
    std::fs::write(root.join("sub/edited.txt"), "v1").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "init"]);
    std::fs::write(root.join("sub/edited.txt"), "v2").unwrap();
    std::fs::write(root.join("sub/untracked.txt"), "u").unwrap();
    let blob = git(&["rev-parse", "HEAD:sub/clean.txt"]);

    // The pipeline lives in `sub/`; paths are relative to it.
    let base = root.join("sub");
    let yaml = "name: g\nstages:\n  a:\n    uses: builtin.echo\n    deps: [clean.txt, edited.txt, untracked.txt]\n    with: { text: x }\n";
    let mut p = compile("sub/p.yaml", yaml, &Registry::with_builtins()).unwrap();
    let r = deps::resolve(&p, &base).unwrap();
    let g = GitBlobs::load(&base).unwrap();
    let stats = deps::hash(&mut p, &r, &mut StatCache::in_memory(), Some(&g)).unwrap();
    assert_eq!((stats.from_git, stats.hashed), (1, 2));
    let digests = p.stages[0].dep_digests().unwrap();
    assert_eq!(digests["clean.txt"].as_str(), format!("git-blob:{blob}"));
    assert_eq!(
        digests["edited.txt"],
        engine_core::digest::Digest::of(b"v2")
    );
    assert_eq!(
        digests["untracked.txt"],
        engine_core::digest::Digest::of(b"u")
    );
}

#[tokio::test]
async fn a_run_refuses_deps_that_were_not_hashed() {
    let repo = tempfile::tempdir().unwrap();
    let yaml =
        "name: n\nstages:\n  a:\n    uses: builtin.echo\n    deps: [x]\n    with: { text: x }\n";
    let p = compile("p.yaml", yaml, &Registry::with_builtins()).unwrap();
    let _ = repo;
    let r = run(p, &common::mem_store("deps-unhashed")).await;
    let t = r.task("a").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(
        t.error.as_deref().unwrap().contains("were not hashed"),
        "{t:?}"
    );
}

#[tokio::test]
async fn a_map_stage_reruns_its_items_when_a_declared_file_changes() {
    let repo = tempfile::tempdir().unwrap();
    let tool = repo.path().join("tool.txt");
    std::fs::write(&tool, "v1").unwrap();
    let yaml = "name: m\nstages:\n  items:\n    uses: builtin.items\n    with: { count: 3 }\n  upper:\n    uses: builtin.upper\n    map: { over: items.items }\n    deps: [tool.txt]\n";
    let store = common::mem_store("deps-map");
    let items = |r: &engine_core::records::RunRecord| {
        let c = r.task("upper").unwrap().items.unwrap();
        (c.run, c.cached)
    };
    let mut cache = StatCache::in_memory();
    let r = run(prepare(repo.path(), yaml, &mut cache).0, &store).await;
    assert_eq!(items(&r), (3, 0));
    std::fs::write(&tool, "v2").unwrap();
    let r = run(prepare(repo.path(), yaml, &mut cache).0, &store).await;
    assert_eq!(items(&r), (3, 0), "every item reruns");
    let r = run(prepare(repo.path(), yaml, &mut cache).0, &store).await;
    assert_eq!(status(&r, "upper"), TaskStatus::Cached);
}

/// A declared file reached through a symlinked folder is checked where
/// the link leads: refused outside the pipeline's folder, accepted inside
/// it; plain files and folders on the way are accepted as they are.
#[test]
fn a_symlinked_folder_on_the_way_is_followed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "s").unwrap();
    std::fs::create_dir_all(root.join("real/sub")).unwrap();
    std::fs::write(root.join("real/sub/f.txt"), "f").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
    let yaml = |deps: &str| {
        format!(
            "name: g\nstages:\n  a:\n    uses: builtin.echo\n    deps: [{deps}]\n    with: {{ text: x }}\n"
        )
    };
    let reg = Registry::with_builtins();
    let p = compile("p.yaml", &yaml("out/secret.txt"), &reg).unwrap();
    let err = deps::resolve(&p, root).unwrap_err();
    assert!(
        err.items[0]
            .message
            .contains("outside the pipeline's folder"),
        "{}",
        err.render()
    );
    let p = compile("p.yaml", &yaml("real/sub/f.txt, alias/sub/f.txt"), &reg).unwrap();
    let r = deps::resolve(&p, root).unwrap();
    let files: Vec<&str> = r.stages[0].iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(files, ["alias/sub/f.txt", "real/sub/f.txt"]);
}
