//! Compiles a parsed spec into a validated [`Pipeline`]: names resolved to
//! indices, stage params built by their kinds, and every problem collected
//! before reporting, like a compiler. One function per check.

use crate::diag::{Diagnostic, Diagnostics, Loc, suggest};
use crate::digest::Digest;
use crate::spec::{self, Located, PipelineSpec, StageSpec};
use crate::stage::{OutputDecl, Registry, StageImpl};
use crate::store::ArtifactKind;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A resource class with its sizes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceClass {
    pub name: String,
    pub cpus: u32,
    /// Bytes; 0 when the class does not count memory.
    pub memory: u64,
    pub gpus: u32,
    pub slots: Option<u32>,
    /// Slurm partition, for the Slurm executor.
    pub partition: Option<String>,
}

/// `map:` resolved: the upstream stage index and its collection output.
#[derive(Debug, Clone)]
pub struct MapOver {
    pub stage: usize,
    pub output: String,
    pub batch: usize,
}

/// A stage after validation.
#[derive(Clone)]
pub struct CompiledStage {
    pub name: String,
    pub kind: String,
    pub params: Value,
    pub needs: Vec<usize>,
    pub class: usize,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub when: Option<String>,
    pub matrix: Vec<(String, Vec<Value>)>,
    pub map: Option<MapOver>,
    pub cache: bool,
    pub imp: StageImpl,
    /// Builds the kind again for each matrix combination's params.
    pub build: crate::stage::BuildFn,
    pub outputs: Vec<OutputDecl>,
    /// Output name -> ref moved to it after success.
    pub publish: Vec<(String, String)>,
    /// `deps:` as written (checked to stay inside the pipeline's folder),
    /// with where each was written.
    pub deps: Vec<(String, Loc)>,
    /// Relative path -> digest of every file `deps` matches, put here by
    /// [`crate::deps::hash`] before planning or running; `None` until then.
    pub dep_digests: Option<Arc<BTreeMap<String, Digest>>>,
    pub loc: Loc,
}

impl CompiledStage {
    /// Params for one matrix combination: `with:` plus each key set.
    pub fn params_for(&self, combo: &[usize]) -> Value {
        Self::params_with(&self.params, &self.matrix, combo)
    }

    fn params_with(params: &Value, matrix: &[(String, Vec<Value>)], combo: &[usize]) -> Value {
        let mut p = if params.is_null() {
            Value::Object(Default::default())
        } else {
            params.clone()
        };
        for ((key, values), &i) in matrix.iter().zip(combo) {
            if let Some(v) = values.get(i) {
                let _ = crate::template::set_path(&mut p, key, v.clone());
            }
        }
        p
    }
    /// The digests of this stage's declared files: empty without `deps`;
    /// an error when it has some that [`crate::deps::hash`] has not hashed
    /// (a run must never treat declared files as absent).
    pub fn dep_digests(&self) -> Result<BTreeMap<String, Digest>, String> {
        match &self.dep_digests {
            Some(d) => Ok(d.as_ref().clone()),
            None if self.deps.is_empty() => Ok(BTreeMap::new()),
            None => Err(format!(
                "the `deps` of stage `{}` were not hashed (engine_core::deps::hash runs before planning)",
                self.name
            )),
        }
    }

    /// Number of tasks the matrix expands to.
    pub fn task_count(&self) -> usize {
        self.matrix
            .iter()
            .map(|(_, v)| v.len())
            .product::<usize>()
            .max(1)
    }
}

/// A validated pipeline, ready to plan.
#[derive(Clone)]
pub struct Pipeline {
    pub name: String,
    pub file: String,
    pub store: Option<String>,
    pub classes: Vec<ResourceClass>,
    pub stages: Vec<CompiledStage>,
    /// The rendered text and its digest.
    pub text: String,
    pub digest: Digest,
}

impl Pipeline {
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

struct Checker<'a> {
    file: &'a str,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, loc: Loc, msg: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::new(self.file, loc, msg);
        d.hint = hint;
        self.errors.push(d);
    }
}

/// The most tasks one stage's `matrix:` may expand to.
pub const MAX_MATRIX_TASKS: usize = 10_000;
/// The most tasks a pipeline may have (map items are not tasks).
pub const MAX_TASKS: usize = 100_000;

/// Parses and validates; all problems come back together, sorted by place.
pub fn compile(file: &str, text: &str, registry: &Registry) -> Result<Pipeline, Diagnostics> {
    compile_cached(file, text, registry, None)
}

/// [`compile`], reading the parsed spec from `cache` when it has `text`
/// (and keeping it there when it did not). The checks run either way.
pub fn compile_cached(
    file: &str,
    text: &str,
    registry: &Registry,
    cache: Option<&crate::spec_cache::SpecCache>,
) -> Result<Pipeline, Diagnostics> {
    let mut spec = match cache.and_then(|c| c.get(text)) {
        Some(spec) => spec,
        None => {
            let spec = spec::parse(file, text)?;
            if let Some(c) = cache {
                c.put(text, &spec);
            }
            spec
        }
    };
    let mut c = Checker {
        file,
        errors: vec![],
    };
    // Each stage's `with:` moves into its compiled stage rather than being
    // copied (no check after `check_stage` reads it).
    let params: Vec<Option<Located<Value>>> =
        spec.stages.values_mut().map(|s| s.params.take()).collect();
    let pipeline = check(&mut c, &spec, params, file, text, registry);
    if c.errors.is_empty()
        && let Some(p) = pipeline
    {
        return Ok(p);
    }
    c.errors
        .sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
    c.errors.dedup();
    Err(Diagnostics {
        items: c.errors,
        source: Some(text.to_string()),
    })
}

fn check(
    c: &mut Checker,
    spec: &PipelineSpec,
    params: Vec<Option<Located<Value>>>,
    file: &str,
    text: &str,
    registry: &Registry,
) -> Option<Pipeline> {
    check_name(c, &spec.name, "pipeline");
    let classes = check_classes(c, spec);
    let names: HashMap<&str, usize> = spec
        .stages
        .keys()
        .enumerate()
        .map(|(i, k)| (k.value.as_str(), i))
        .collect();
    let ordered: Vec<&str> = spec.stages.keys().map(|k| k.value.as_str()).collect();
    for key in spec.stages.keys() {
        check_name(c, key, "stage");
    }
    if spec.stages.is_empty() {
        c.error(
            spec.name.loc,
            "pipeline has no stages",
            Some("add a `stages:` mapping with at least one stage".into()),
        );
    }
    let mut built: Vec<Option<CompiledStage>> = vec![];
    let known = Known {
        names: &names,
        ordered: &ordered,
        classes: &classes,
        registry,
    };
    for ((key, st), params) in spec.stages.iter().zip(params) {
        built.push(check_stage(c, key, st, params, &known));
    }
    check_maps(c, spec, &mut built);
    check_cycles(c, spec, &names);
    check_whens(c, spec, &built);
    let stages: Vec<CompiledStage> = built.into_iter().collect::<Option<Vec<_>>>()?;
    let tasks: usize = stages.iter().map(CompiledStage::task_count).sum();
    if tasks > MAX_TASKS {
        c.error(
            spec.name.loc,
            format!("the pipeline expands to {tasks} tasks; the most is {MAX_TASKS}"),
            Some(
                "use a `map:` stage over a collection for many items: its items are not tasks"
                    .into(),
            ),
        );
        return None;
    }
    Some(Pipeline {
        name: spec.name.value.clone(),
        file: file.into(),
        store: spec.store.as_ref().map(|s| s.value.clone()),
        classes,
        stages,
        text: text.into(),
        digest: Digest::of(text.as_bytes()),
    })
}

fn check_name(c: &mut Checker, name: &Located<String>, what: &str) {
    let n = &name.value;
    let ok = !n.is_empty()
        && n.len() <= 100
        && n.chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && n.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    if !ok {
        c.error(
            name.loc,
            format!("invalid {what} name `{n}`"),
            Some("names start with a letter or `_` and use letters, digits, `_` and `-` (at most 100)".into()),
        );
    }
}

fn check_classes(c: &mut Checker, spec: &PipelineSpec) -> Vec<ResourceClass> {
    let mut classes = vec![];
    if !spec.resources.contains_key("default") {
        classes.push(ResourceClass {
            name: "default".into(),
            cpus: 1,
            memory: 0,
            gpus: 0,
            slots: None,
            partition: None,
        });
    }
    for (name, rc) in &spec.resources {
        let r = &rc.value;
        if r.cpus == 0 {
            c.error(
                rc.loc,
                format!("resource class `{name}` has `cpus: 0`"),
                Some("a task needs at least 1 cpu".into()),
            );
        }
        if r.slots == Some(0) {
            c.error(
                rc.loc,
                format!("resource class `{name}` has `slots: 0`, so nothing could run"),
                None,
            );
        }
        let memory = match &r.memory {
            None => 0,
            Some(m) => parse_bytes(m).unwrap_or_else(|| {
                c.error(
                    rc.loc,
                    format!("resource class `{name}`: `{m}` is not a memory size"),
                    Some("write e.g. `512MiB`, `2GiB` or `4G`".into()),
                );
                0
            }),
        };
        classes.push(ResourceClass {
            name: name.clone(),
            cpus: r.cpus.max(1),
            memory,
            gpus: r.gpus,
            slots: r.slots,
            partition: r.partition.clone(),
        });
    }
    classes
}

/// `512MiB`, `2GiB`, `4G`, `100MB`, `1024` (bytes).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" => 1000,
        "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        _ => return None,
    };
    (n >= 0.0 && n.is_finite()).then_some((n * mult as f64) as u64)
}

/// What a stage's spec may name: the other stages (by name, and in written
/// order for suggestions), the resource classes and the stage kinds.
#[derive(Clone, Copy)]
struct Known<'a> {
    names: &'a HashMap<&'a str, usize>,
    ordered: &'a [&'a str],
    classes: &'a [ResourceClass],
    registry: &'a Registry,
}

fn check_stage(
    c: &mut Checker,
    key: &Located<String>,
    st: &StageSpec,
    params: Option<Located<Value>>,
    known: &Known,
) -> Option<CompiledStage> {
    let Known {
        names,
        ordered,
        classes,
        registry,
    } = *known;
    let name = &key.value;
    let mut needs = vec![];
    for n in &st.needs {
        match names.get(n.value.as_str()) {
            Some(&i) if n.value == *name => {
                let _ = i;
                c.error(
                    n.loc,
                    format!("stage `{name}` needs itself"),
                    Some("remove it from `needs`".into()),
                );
            }
            Some(&i) => {
                if !needs.contains(&i) {
                    needs.push(i);
                }
            }
            None => c.error(
                n.loc,
                format!(
                    "stage `{name}` needs `{}`, which is not a stage of this pipeline",
                    n.value
                ),
                suggest(&n.value, ordered.iter().copied().filter(|o| o != name)),
            ),
        }
    }
    let class = match &st.resources {
        None => classes.iter().position(|r| r.name == "default"),
        Some(r) => {
            let found = classes.iter().position(|cl| cl.name == r.value);
            if found.is_none() {
                c.error(
                    r.loc,
                    format!(
                        "stage `{name}` uses resource class `{}`, which is not defined",
                        r.value
                    ),
                    suggest(&r.value, classes.iter().map(|cl| cl.name.as_str()))
                        .or(Some("define it under `resources:`".into())),
                );
            }
            found
        }
    };
    let timeout = st
        .timeout
        .as_ref()
        .and_then(|t| match humantime::parse_duration(&t.value) {
            Ok(d) if !d.is_zero() => Some(d),
            _ => {
                c.error(
                    t.loc,
                    format!("stage `{name}`: `{}` is not a timeout", t.value),
                    Some("write e.g. `90s`, `10m` or `2h`".into()),
                );
                None
            }
        });
    let mut matrix = vec![];
    if let Some(m) = &st.matrix {
        if m.value.is_empty() {
            c.error(
                m.loc,
                format!("stage `{name}` has an empty `matrix`"),
                Some("list at least one key with values, or remove `matrix`".into()),
            );
        }
        for (k, vals) in &m.value {
            if vals.is_empty() {
                c.error(
                    m.loc,
                    format!("matrix key `{k}` of stage `{name}` has no values"),
                    None,
                );
            }
            if k.split('.').any(str::is_empty) {
                c.error(
                    m.loc,
                    format!("matrix key `{k}` of stage `{name}` is not a key path"),
                    Some("write `key` or `a.b`".into()),
                );
            }
            matrix.push((k.clone(), vals.clone()));
        }
        let sizes: Vec<String> = m.value.values().map(|v| v.len().to_string()).collect();
        let count = m
            .value
            .values()
            .try_fold(1usize, |n, v| n.checked_mul(v.len().max(1)));
        if count.is_none_or(|n| n > MAX_MATRIX_TASKS) {
            c.error(
                m.loc,
                format!(
                    "the matrix of stage `{name}` expands to {} tasks ({}); the most is {MAX_MATRIX_TASKS}",
                    count.map(|n| n.to_string()).unwrap_or_else(|| "more than 2^64".into()),
                    sizes.join(" x ")
                ),
                Some("sweep fewer values per key, or split the sweep into stages".into()),
            );
            matrix.clear();
        }
    }
    let params_loc = params.as_ref().map(|p| p.loc).unwrap_or(st.uses.loc);
    let params = params.map(|p| p.value).unwrap_or(Value::Null);
    let Some(kind) = registry.get(&st.uses.value) else {
        c.error(
            st.uses.loc,
            format!("unknown stage kind `{}` in stage `{name}`", st.uses.value),
            suggest(&st.uses.value, registry.names())
                .or(Some("run `engine stages` to list the kinds".into())),
        );
        return None;
    };
    if !(params.is_null() || params.is_object()) {
        c.error(
            params_loc,
            format!("`with` of stage `{name}` must be a mapping of params"),
            None,
        );
        return None;
    }
    // Built once to check the params: with the first matrix combination
    // applied, or from `with:` itself when there is no matrix.
    let probe = if matrix.is_empty() && params.is_object() {
        std::borrow::Cow::Borrowed(&params)
    } else {
        let first: Vec<usize> = vec![0; matrix.len()];
        std::borrow::Cow::Owned(CompiledStage::params_with(&params, &matrix, &first))
    };
    let imp = match crate::secrets::build_stage(kind.build, &probe) {
        Ok(imp) => imp,
        Err(e) => {
            c.error(
                params_loc,
                format!(
                    "invalid params for `{}` in stage `{name}`: {}",
                    st.uses.value, e.message
                ),
                e.hint,
            );
            return None;
        }
    };
    let stage = CompiledStage {
        name: name.clone(),
        kind: st.uses.value.clone(),
        params,
        needs,
        class: class.unwrap_or(0),
        retries: st.retries,
        timeout,
        when: st.when.as_ref().map(|w| w.value.clone()),
        matrix,
        map: None,
        cache: st.cache && !imp.always_run(),
        publish: st
            .publish
            .as_ref()
            .map(|p| {
                p.value
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        outputs: imp.outputs(),
        deps: check_deps(c, name, &st.deps),
        dep_digests: None,
        imp,
        build: kind.build,
        loc: key.loc,
    };
    if let Some(p) = &st.publish {
        let names: Vec<String> = if stage.imp.is_map() {
            match &stage.imp {
                StageImpl::Map(m) => vec![m.output()],
                _ => vec![],
            }
        } else {
            stage.outputs.iter().map(|o| o.name.clone()).collect()
        };
        for (out, r) in &p.value {
            if !names.iter().any(|n| n == out) {
                c.error(
                    p.loc,
                    format!(
                        "stage `{name}` publishes `{out}`, but kind `{}` has no such output",
                        st.uses.value
                    ),
                    Some(format!("its outputs: {}", names.join(", "))),
                );
            }
            if crate::store::check_ref_name(&r.replace('@', "/")).is_err() {
                c.error(p.loc, format!("stage `{name}`: `{r}` is not a ref name (e.g. `models/basketball@production`)"), None);
            }
        }
    }
    match (&st.map, stage.imp.is_map()) {
        (None, true) => c.error(
            st.uses.loc,
            format!("stage kind `{}` runs per item: stage `{name}` needs `map: {{over: STAGE.COLLECTION}}`", st.uses.value),
            None,
        ),
        (Some(m), false) => c.error(
            m.loc,
            format!("stage kind `{}` does not run per item, so stage `{name}` cannot have `map`", st.uses.value),
            None,
        ),
        _ => {}
    }
    if let Some(m) = &st.map
        && m.value.batch == 0
    {
        c.error(
            m.loc,
            format!("`map.batch` of stage `{name}` must be at least 1"),
            None,
        );
    }
    if class.is_none() || (st.timeout.is_some() && timeout.is_none()) {
        return None;
    }
    Some(stage)
}

/// `deps:` entries must be relative paths or globs inside the pipeline's
/// folder; whether they match files is checked by [`crate::deps::resolve`].
fn check_deps(c: &mut Checker, name: &str, deps: &[Located<String>]) -> Vec<(String, Loc)> {
    let mut out = vec![];
    for d in deps {
        match crate::deps::check_pattern(&d.value) {
            Ok(()) => out.push((d.value.clone(), d.loc)),
            Err(m) => c.error(
                d.loc,
                format!("stage `{name}`: `deps` entry {m}"),
                Some("`deps` are paths inside the pipeline file's folder, relative to it, e.g. `scripts/train.py` or `data/**/*.csv`".into()),
            ),
        }
    }
    out
}

fn check_maps(c: &mut Checker, spec: &PipelineSpec, stages: &mut [Option<CompiledStage>]) {
    let outputs: Vec<(String, Option<Vec<OutputDecl>>)> = spec
        .stages
        .keys()
        .zip(stages.iter())
        .map(|(k, s)| (k.value.clone(), s.as_ref().map(|s| s.outputs.clone())))
        .collect();
    for (i, (key, st)) in spec.stages.iter().enumerate() {
        let Some(m) = &st.map else { continue };
        let over = &m.value.over;
        let Some((up, out)) = over.value.split_once('.') else {
            c.error(
                over.loc,
                format!(
                    "`map.over` of stage `{}` is `{}`, not `STAGE.COLLECTION`",
                    key.value, over.value
                ),
                None,
            );
            continue;
        };
        let Some(j) = outputs.iter().position(|(n, _)| n == up) else {
            c.error(
                over.loc,
                format!(
                    "`map.over` of stage `{}` names stage `{up}`, which does not exist",
                    key.value
                ),
                suggest(up, outputs.iter().map(|(n, _)| n.as_str())),
            );
            continue;
        };
        // A stage that failed to build has its own error; its outputs are unknown.
        let Some(decls) = &outputs[j].1 else { continue };
        let collections: Vec<&str> = decls
            .iter()
            .filter(|d| d.kind == ArtifactKind::Collection)
            .map(|d| d.name.as_str())
            .collect();
        if !collections.contains(&out) {
            let hint = if collections.is_empty() {
                Some(format!("stage `{up}` produces no collection"))
            } else {
                suggest(out, collections.iter().copied())
            };
            c.error(
                over.loc,
                format!(
                    "`map.over` of stage `{}`: stage `{up}` has no collection output `{out}`",
                    key.value
                ),
                hint,
            );
            continue;
        }
        if j == i {
            c.error(
                over.loc,
                format!("stage `{}` cannot map over its own output", key.value),
                None,
            );
            continue;
        }
        if let Some(s) = stages[i].as_mut() {
            if !s.needs.contains(&j) {
                s.needs.push(j);
            }
            s.map = Some(MapOver {
                stage: j,
                output: out.into(),
                batch: m.value.batch.max(1),
            });
        }
    }
}

fn check_cycles(c: &mut Checker, spec: &PipelineSpec, names: &HashMap<&str, usize>) {
    use petgraph::graph::DiGraph;
    let keys: Vec<&Located<String>> = spec.stages.keys().collect();
    let mut g = DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..keys.len()).map(|i| g.add_node(i)).collect();
    let mut adj: Vec<Vec<usize>> = vec![vec![]; keys.len()];
    for (i, st) in spec.stages.values().enumerate() {
        let mut deps: Vec<usize> = st
            .needs
            .iter()
            .filter_map(|n| names.get(n.value.as_str()).copied())
            .collect();
        if let Some(m) = &st.map
            && let Some((up, _)) = m.value.over.value.split_once('.')
            && let Some(&j) = names.get(up)
        {
            deps.push(j);
        }
        for j in deps {
            if j != i {
                g.add_edge(nodes[j], nodes[i], ());
                adj[j].push(i);
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&g) {
        if scc.len() < 2 {
            continue;
        }
        let members: Vec<usize> = {
            let mut m: Vec<usize> = scc.iter().map(|n| g[*n]).collect();
            m.sort();
            m
        };
        let start = members[0];
        let path = cycle_path(start, &members, &adj);
        let names: Vec<&str> = path.iter().map(|&i| keys[i].value.as_str()).collect();
        c.error(
            keys[start].loc,
            format!("cycle between stages: {}", names.join(" -> ")),
            Some("remove one of these `needs` so the stages form a DAG".into()),
        );
    }
}

/// A path from `start` back to itself inside one strongly connected set.
fn cycle_path(start: usize, members: &[usize], adj: &[Vec<usize>]) -> Vec<usize> {
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<usize> = adj[n]
            .iter()
            .copied()
            .filter(|m| members.contains(m))
            .collect();
        next.sort();
        for m in next {
            if m == start {
                let mut path = vec![start];
                let mut cur = n;
                while cur != start {
                    path.push(cur);
                    cur = prev[&cur];
                }
                path.push(start);
                let n = path.len();
                path[1..n - 1].reverse();
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start, start]
}

fn check_whens(c: &mut Checker, spec: &PipelineSpec, built: &[Option<CompiledStage>]) {
    let env = when_env();
    let names: HashMap<&str, usize> = spec
        .stages
        .keys()
        .enumerate()
        .map(|(i, k)| (k.value.as_str(), i))
        .collect();
    // Needs by index, from the spec (so stages that failed to build still count).
    let needs: Vec<Vec<usize>> = spec
        .stages
        .values()
        .enumerate()
        .map(|(i, st)| {
            let mut n: Vec<usize> = st
                .needs
                .iter()
                .filter_map(|x| names.get(x.value.as_str()).copied())
                .collect();
            if let Some(Some(s)) = built.get(i) {
                n.extend(s.needs.iter().copied());
            }
            n
        })
        .collect();
    let stage_names: Vec<&str> = spec.stages.keys().map(|k| k.value.as_str()).collect();
    for (i, st) in spec.stages.values().enumerate() {
        let Some(w) = &st.when else { continue };
        let name = stage_names[i];
        let expr = match env.compile_expression(&w.value) {
            Ok(e) => e,
            Err(e) => {
                c.error(
                    w.loc,
                    format!(
                        "`when` of stage `{name}` is not a valid expression: {}",
                        e.detail().unwrap_or(&e.to_string())
                    ),
                    Some("write e.g. `evaluate.passed` or `evaluate.f1 > 0.9`".into()),
                );
                continue;
            }
        };
        let ancestors = ancestors_of(&needs, i);
        let mut vars: Vec<String> = expr.undeclared_variables(false).into_iter().collect();
        vars.sort();
        for var in vars {
            let ok = ancestors.iter().any(|&a| when_name(stage_names[a]) == var);
            if !ok {
                c.error(
                    w.loc,
                    format!("`when` of stage `{name}` reads `{var}`, which is not an upstream stage"),
                    Some(format!("add `{var}` to `needs` of `{name}` (stage names with `-` are written with `_` here)")),
                );
            }
        }
    }
}

/// The minijinja environment `when:` expressions are compiled and run in.
pub fn when_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// How a stage is named inside `when:` expressions.
pub fn when_name(stage: &str) -> String {
    stage.replace('-', "_")
}

/// Every stage `i` transitively needs.
pub fn ancestors(stages: &[CompiledStage], i: usize) -> Vec<usize> {
    let needs: Vec<Vec<usize>> = stages.iter().map(|s| s.needs.clone()).collect();
    ancestors_of(&needs, i)
}

fn ancestors_of(needs: &[Vec<usize>], i: usize) -> Vec<usize> {
    let mut seen = vec![false; needs.len()];
    let mut stack = needs[i].clone();
    let mut out = vec![];
    while let Some(n) = stack.pop() {
        if n < seen.len() && !seen[n] {
            seen[n] = true;
            out.push(n);
            stack.extend(needs[n].iter().copied());
        }
    }
    out
}
