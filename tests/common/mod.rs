//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs the real binary with a clean colour environment, in `dir`.
pub fn gantry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .current_dir(dir)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("CLICOLOR_FORCE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run gantry")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
