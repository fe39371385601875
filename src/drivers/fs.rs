//! Files: the config, the env files it names, the state directory, plan files.
//!
//! Writes are atomic (temp file in the same directory, fsync, rename, fsync the directory),
//! so a crash at any instant leaves either the old file or the new one, never a torn one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::model::{EnvFileFacts, FileFacts};
use crate::state::{STATE_FILE_NAME, State, StateError};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("state file {} {source}", path.display())]
    State { path: PathBuf, source: StateError },
}

pub fn read_to_string(path: &Path) -> Result<String, FsError> {
    fs::read_to_string(path).map_err(|source| FsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `contents` to `path` atomically and durably.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), FsError> {
    let err = |source| FsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Env files, read relative to the config file's directory.
pub struct EnvFiles {
    pub base: PathBuf,
}

impl FileFacts for EnvFiles {
    fn env_file(&self, path: &str) -> Result<EnvFileFacts, String> {
        let full = self.base.join(path);
        let bytes = fs::read(&full).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("file not found ({})", full.display()),
            _ => format!("cannot read {}: {e}", full.display()),
        })?;
        let mut keys = Vec::new();
        for (i, item) in dotenvy::from_read_iter(bytes.as_slice()).enumerate() {
            match item {
                Ok((k, _value)) => keys.push(k),
                // Never echo the line: it may hold a secret.
                Err(_) => return Err(format!("entry {} is not `KEY=value`", i + 1)),
            }
        }
        keys.sort();
        keys.dedup();
        Ok(EnvFileFacts {
            keys,
            sha256: sha256_hex(&bytes),
        })
    }
}

/// The state directory: `state.json` (and, from apply on, its backup, lock and journal).
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE_NAME)
    }

    /// The recorded state, or `None` when nothing was ever applied.
    pub fn read(&self) -> Result<Option<State>, FsError> {
        let path = self.state_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FsError::Read { path, source }),
        };
        State::from_json(&text)
            .map(Some)
            .map_err(|source| FsError::State { path, source })
    }
}
