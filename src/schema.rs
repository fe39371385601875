//! JSON Schemas of the files other tools read: the config, the plan, the state, and the
//! report of `gantry import --format json`.
//! Generated from the Rust types; `tests/schemas.rs` fails when `schemas/` drifts.

use schemars::generate::SchemaSettings;

fn render<T: schemars::JsonSchema>(id: &str) -> String {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<T>();
    schema.insert(
        "$id".into(),
        format!("https://gantry.dev/schemas/{id}").into(),
    );
    let mut s = serde_json::to_string_pretty(&schema).expect("schema serialises");
    s.push('\n');
    s
}

/// `(file name, contents)` of every committed schema.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        (
            "gantry.schema.json",
            render::<crate::config::TomlManifest>("gantry.schema.json"),
        ),
        (
            "plan.schema.json",
            render::<crate::plan::Plan>("plan.schema.json"),
        ),
        (
            "import.schema.json",
            render::<crate::compose::Report>("import.schema.json"),
        ),
        (
            "state.schema.json",
            render::<crate::state::State>("state.schema.json"),
        ),
    ]
}
