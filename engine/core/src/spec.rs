//! The pipeline spec as written in YAML: typed, with source locations.
//!
//! These types are the single source of the JSON Schema in `schemas/`; every
//! field's doc comment becomes its description there.

use crate::diag::{Diagnostic, Diagnostics, Loc};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};

/// A value with the place it was written in the YAML file.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Located<T> {
    pub fn new(value: T, loc: Loc) -> Self {
        Located { value, loc }
    }
}

/// From YAML, the span comes from the parser. From the parse cache
/// ([`crate::spec_cache`], a format serde calls not human-readable), it is
/// written next to the value as `(value, line, column)`.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            let (value, line, column) = <(T, u64, u64)>::deserialize(d)?;
            return Ok(Located {
                value,
                loc: Loc { line, column },
            });
        }
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Located {
            value: s.value,
            loc: Loc {
                line: s.referenced.line(),
                column: s.referenced.column(),
            },
        })
    }
}

/// As `(value, line, column)`: the form the parse cache reads back.
impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.value, self.loc.line, self.loc.column).serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<T>()
    }
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T: Eq> Eq for Located<T> {}
impl<T: Hash> Hash for Located<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}

/// A pipeline: named stages wired by `needs`, run on resource classes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name; runs and records are grouped under it.
    pub name: Located<String>,
    /// Where artifacts, cache entries, refs and run records go: `fs://DIR`
    /// (relative to the working directory), `memory://`, or
    /// `s3://BUCKET/PREFIX`. Default `fs://.engine/store`. `--store` wins.
    #[serde(default)]
    pub store: Option<Located<String>>,
    /// Named resource classes; a stage picks one with `resources:`.
    /// The class `default` (1 cpu) exists unless redefined here.
    #[serde(default)]
    pub resources: IndexMap<String, Located<ResourceClassSpec>>,
    /// The stages, by name. Names are letters, digits, `_` and `-`.
    pub stages: IndexMap<Located<String>, StageSpec>,
}

/// What one task of a class takes from the machine.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceClassSpec {
    /// CPU cores a task holds; also the thread count it is granted. Default 1.
    #[serde(default = "one")]
    pub cpus: u32,
    /// Memory a task holds, e.g. `512MiB`, `2GiB`. Default: not counted.
    #[serde(default)]
    pub memory: Option<String>,
    /// GPUs a task holds. Default 0.
    #[serde(default)]
    pub gpus: u32,
    /// At most this many tasks of the class at once. Default: no limit
    /// beyond the machine's totals.
    #[serde(default)]
    pub slots: Option<u32>,
    /// Slurm partition for tasks of this class (`--executor slurm`).
    /// Default: the cluster's default partition.
    #[serde(default)]
    pub partition: Option<String>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// One stage: a stage kind, its inputs, params and how it runs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// The stage kind, e.g. `shell`, `features.extract`, `builtin.items`.
    pub uses: Located<String>,
    /// Stages whose outputs this stage reads; it runs after them.
    #[serde(default)]
    pub needs: Vec<Located<String>>,
    /// Params of the stage kind (typed and checked by the kind).
    #[serde(default, rename = "with")]
    pub params: Option<Located<serde_json::Value>>,
    /// The resource class tasks of this stage run on. Default `default`.
    #[serde(default)]
    pub resources: Option<Located<String>>,
    /// Extra attempts after a failure, with exponential backoff. Default 0.
    #[serde(default)]
    pub retries: u32,
    /// Limit for one attempt, e.g. `30s`, `5m`, `2h`. Default: none.
    #[serde(default)]
    pub timeout: Option<Located<String>>,
    /// Run only when this expression over upstream values is true, e.g.
    /// `evaluate.passed` or `evaluate.f1 > 0.9 and not evaluate.regressed`.
    /// Otherwise the stage and its dependants are skipped.
    #[serde(default)]
    pub when: Option<Located<String>>,
    /// Static fan-out: one task per combination of these lists. Each key
    /// (a dotted path such as `env.N`) is set in the task's params.
    #[serde(default)]
    pub matrix: Option<Located<IndexMap<String, Vec<serde_json::Value>>>>,
    /// Dynamic fan-out over an upstream collection, cached per item.
    #[serde(default)]
    pub map: Option<Located<MapSpec>>,
    /// Reuse outputs from the cache when the fingerprint matches. Default
    /// true; set false for side effects that must happen every run.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Files of the pipeline's repository the stage reads (a script, a data
    /// file): paths relative to the pipeline file's folder, folders (every
    /// file under them) or globs (`scripts/*.py`, `data/**/*.csv`). Their
    /// contents are part of the cache key, so a changed `train.py` runs
    /// the stage again. Each must match at least one file.
    #[serde(default)]
    pub deps: Vec<Located<String>>,
    /// Refs to move to this stage's outputs when it succeeds (or comes from
    /// the cache), e.g. `{ dataset: datasets/basketball@latest }` or, under
    /// a `when:` gate, `{ model: models/basketball@production }`.
    #[serde(default)]
    pub publish: Option<Located<IndexMap<String, String>>>,
}

/// Dynamic fan-out: `over: STAGE.COLLECTION`, items grouped in batches.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// The collection to map over, as `stage.output`.
    pub over: Located<String>,
    /// Items per scheduling unit; each batch holds one resource grant.
    /// Default 1.
    #[serde(default = "one_usize")]
    pub batch: usize,
}

fn one_usize() -> usize {
    1
}

/// Largest pipeline file accepted (after rendering).
pub const MAX_SPEC_BYTES: usize = 4 << 20;

/// Parses rendered YAML into a spec. Syntax, type and unknown-field errors
/// come back located in `file`.
pub fn parse(file: &str, text: &str) -> Result<PipelineSpec, Diagnostics> {
    let fail = |d: Diagnostic| Diagnostics {
        items: vec![d],
        source: Some(text.to_string()),
    };
    if text.len() > MAX_SPEC_BYTES {
        return Err(fail(
            Diagnostic::new(
                file,
                Loc::default(),
                format!(
                    "pipeline is {} bytes; the limit is {} bytes",
                    text.len(),
                    MAX_SPEC_BYTES
                ),
            )
            .with_hint("split the pipeline, or move data out of the spec into files"),
        ));
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 64;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_nodes = 200_000;
    budget.max_events = 200_000;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_SPEC_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options::<PipelineSpec>(text, options).map_err(|e| {
        let loc = e
            .location()
            .map(|l| Loc {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or_default();
        fail(yaml_diagnostic(file, loc, &e))
    })
}

/// Turns a parser error into a diagnostic with a hint where we have one.
fn yaml_diagnostic(file: &str, loc: Loc, e: &serde_saphyr::Error) -> Diagnostic {
    let raw = e.without_snippet().to_string();
    let mut message = raw.lines().next().unwrap_or("").trim().to_string();
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    let message = message.trim_start_matches("error: ").to_string();
    if let Some(detail) = message.strip_prefix("budget breached: ") {
        let what = detail.split([' ', '{']).next().unwrap_or(detail);
        let (msg, hint) = match what {
            "Depth" => (
                "nesting is deeper than 64 levels".to_string(),
                "flatten the structure",
            ),
            "Aliases"
            | "Anchors"
            | "Nodes"
            | "Events"
            | "RecordedAnchorEvents"
            | "RecordedAnchorBytes" => (
                format!(
                    "the YAML expands to too much data ({detail}); this looks like an alias bomb"
                ),
                "write the data out without repeated aliases, or move it into a file",
            ),
            _ => (
                format!("the YAML exceeds a parser safety limit ({detail})"),
                "simplify the file",
            ),
        };
        return Diagnostic::new(file, loc, msg).with_hint(hint);
    }
    let mut d = Diagnostic::new(file, loc, message.clone());
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, expected)) = rest.split_once('`')
    {
        let expected = expected
            .trim_start_matches(',')
            .trim()
            .trim_start_matches("expected one of")
            .trim_start_matches("expected");
        let candidates: Vec<&str> = expected
            .split(',')
            .map(|c| c.trim().trim_matches('`'))
            .filter(|c| !c.is_empty())
            .collect();
        if let Some(c) = crate::diag::closest(name, candidates.iter().copied()) {
            d = d.with_hint(format!("did you mean `{c}`?"));
        }
    } else if ["invalid u32", "invalid u64", "invalid usize", "invalid i64"]
        .contains(&message.as_str())
    {
        d = d.with_hint("expected a whole number (0 or more)");
    }
    d
}
