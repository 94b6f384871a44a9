//! The JSON Schema of pipeline files, generated from the spec types.

/// `schemas/pipeline.schema.json`, pretty-printed with a trailing newline.
pub fn pipeline_schema() -> String {
    let schema = schemars::schema_for!(crate::spec::PipelineSpec);
    let mut s = serde_json::to_string_pretty(&schema).expect("schemas serialise");
    s.push('\n');
    s
}
