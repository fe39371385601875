//! The committed JSON schemas are generated from the Rust types; this test fails when the
//! files in `schemas/` drift from the code. Regenerate with
//! `GANTRY_UPDATE_SCHEMAS=1 cargo test --test it schemas` and commit the result.

use std::path::Path;

#[test]
fn committed_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let update = std::env::var_os("GANTRY_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, generated) in gantry::schema::all() {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &generated).expect("write schema");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas out of date: {stale:?}; run `GANTRY_UPDATE_SCHEMAS=1 cargo test --test it schemas` and commit schemas/"
    );
}

#[test]
fn config_schema_knows_every_section_and_rejects_unknown_keys() {
    let (_, config) = gantry::schema::all().remove(0);
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    for key in ["project", "host", "service", "lb"] {
        assert!(
            v["properties"].get(key).is_some(),
            "{key} missing from the config schema"
        );
    }
    assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
}
