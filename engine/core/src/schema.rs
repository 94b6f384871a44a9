//! The JSON Schema of pipeline files, generated from the spec types and
//! each stage kind's params, so an editor (yaml-language-server) completes
//! `uses:` with every kind and checks `with:` against that kind's params.

use crate::stage::Registry;
use serde_json::{Value, json};

/// `schemas/pipeline.schema.json`, pretty-printed with a trailing newline.
pub fn pipeline_schema(registry: &Registry) -> String {
    let mut s =
        serde_json::to_string_pretty(&pipeline_schema_value(registry)).expect("schemas serialise");
    s.push('\n');
    s
}

/// The schema as a value: the spec types, then one `if uses: KIND then
/// with: PARAMS` branch per kind with typed params.
///
/// A branch's params leave out `required`: a matrix may supply a required
/// param per task (`matrix: { count: [1, 2] }`), which the schema cannot
/// see; `engine validate` reports a missing one. Unknown params (typos) and
/// wrong types are flagged.
pub fn pipeline_schema_value(registry: &Registry) -> Value {
    let mut g = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let root = g.root_schema_for::<crate::spec::PipelineSpec>();
    let mut root = root.to_value();
    let mut params = vec![];
    for k in registry.kinds() {
        if let Some(f) = k.params {
            params.push((k.name, f(&mut g).to_value()));
        }
    }
    let defs = g.take_definitions(true);
    let mut branches = vec![];
    for (name, sub) in params {
        let mut with = resolve(&sub, &defs);
        if let Some(o) = with.as_object_mut() {
            o.remove("required");
        }
        branches.push(json!({
            "if": { "properties": { "uses": { "const": name } }, "required": ["uses"] },
            "then": { "properties": { "with": with } },
        }));
    }
    let kinds: Vec<Value> = registry
        .kinds()
        .map(|k| json!({ "const": k.name, "description": k.summary }))
        .collect();
    let root_defs = root
        .as_object_mut()
        .expect("a schema object")
        .entry("$defs")
        .or_insert_with(|| json!({}));
    for (k, v) in defs {
        root_defs[k.as_str()] = v;
    }
    let stage = &mut root_defs["StageSpec"];
    stage["properties"]["uses"]["anyOf"] = Value::Array(kinds);
    if !branches.is_empty() {
        stage["allOf"] = Value::Array(branches);
    }
    root
}

/// `{"$ref": "#/$defs/X"}` as the definition it names; anything else as is.
fn resolve(schema: &Value, defs: &serde_json::Map<String, Value>) -> Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => defs.get(name).cloned().unwrap_or_else(|| schema.clone()),
        None => schema.clone(),
    }
}

/// Each kind's params schema on its own (`engine stages --json`): name,
/// summary and a self-contained schema of `with:`.
pub fn kinds_json(registry: &Registry) -> Value {
    Value::Array(
        registry
            .kinds()
            .map(|k| {
                let params = k.params.map(|f| {
                    let mut g = schemars::generate::SchemaSettings::draft2020_12().into_generator();
                    let sub = f(&mut g).to_value();
                    let defs = g.take_definitions(true);
                    let mut s = resolve(&sub, &defs);
                    if !defs.is_empty()
                        && let Some(o) = s.as_object_mut()
                    {
                        o.insert("$defs".into(), Value::Object(defs));
                    }
                    s
                });
                json!({ "name": k.name, "summary": k.summary, "params": params })
            })
            .collect(),
    )
}
