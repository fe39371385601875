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
    private(&dir.path().join(".gantry"));
    dir
}

/// Makes a state directory written by a test as private as gantry makes its own (`0700`,
/// files `0600`), so that gantry does not warn about it.
pub fn private(state_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    set(state_dir, 0o700).unwrap();
    for entry in std::fs::read_dir(state_dir).unwrap().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            set(&entry.path(), 0o600).unwrap();
        }
    }
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
