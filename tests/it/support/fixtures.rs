//! The offline tests' fixtures (what was `tests/common`): files under `tests/fixtures`, the
//! plan scenario in a temporary directory, and configurations validated in memory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A temp dir holding the plan scenario: gantry.toml and .gantry/state.json.
pub fn scenario() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("plan/gantry.toml"), dir.path().join("gantry.toml")).unwrap();
    std::fs::create_dir(dir.path().join(".gantry")).unwrap();
    std::fs::copy(
        fixture("plan/state.json"),
        dir.path().join(".gantry/state.json"),
    )
    .unwrap();
    dir
}

pub struct NoFiles;

impl gantry::model::FileFacts for NoFiles {
    fn env_file(&self, path: &str) -> Result<gantry::model::EnvFileFacts, String> {
        Err(format!("no files in this test ({path})"))
    }
}

pub fn model(source: &str) -> gantry::model::Model {
    match gantry::model::validate(gantry::config::parse(source), &NoFiles) {
        Ok(m) => m,
        Err(d) => panic!("invalid test config: {d:#?}"),
    }
}
