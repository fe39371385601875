//! One module per command. Each takes an options struct, does the I/O through `drivers`,
//! calls the pure core, and writes through the writers it is given.

pub mod adopt;
pub mod apply;
pub mod exec;
pub mod execute;
pub mod graph;
pub mod history;
pub mod hooks;
pub mod import;
pub mod logs;
pub mod outcome;
pub mod plan;
pub mod preflight;
pub mod promote;
pub mod prune;
pub mod pull_bars;
pub mod recover;
pub mod rollback;
pub mod run;
pub mod scale_down;
pub mod session;
pub mod state_cmd;
pub mod status;
pub mod validate;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::diag::render_diagnostics;
use crate::drivers::fs::{EnvFiles, FsError, StateDir, read_to_string, sha256_hex};
use crate::model::Model;
pub use outcome::{Choices, Error, Halt, Outcome, Verb};

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub config: PathBuf,
    pub state_dir: Option<PathBuf>,
    /// Emit ANSI styles (the caller strips them again when the output is not a terminal).
    pub color: bool,
}

impl Common {
    pub fn config_dir(&self) -> PathBuf {
        match self.config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The state store `[state]` names: the local directory ([`Common::state_dir`]) or a
    /// shared backend. Read from the configuration's `[state]` alone, so that commands
    /// that do not load the whole model (`history`, `force-unlock`) find it too; without a
    /// configuration file, the local directory.
    pub fn store(&self) -> Result<std::sync::Arc<dyn crate::drivers::store::StateStore>, Error> {
        let backend = match std::fs::read_to_string(&self.config) {
            Err(_) => crate::model::state_backend::StateBackend::Local,
            Ok(source) => {
                let raw = crate::config::parse(&source);
                crate::model::state_backend(&raw).map_err(|diags| Error::Invalid {
                    rendered: render_diagnostics(
                        &display_path(&self.config),
                        &source,
                        &diags,
                        self.color,
                    ),
                    count: diags.len(),
                })?
            }
        };
        Ok(match backend {
            crate::model::state_backend::StateBackend::Local => {
                std::sync::Arc::new(self.state_dir())
            }
            crate::model::state_backend::StateBackend::S3(s3) => std::sync::Arc::new(
                crate::drivers::s3::S3Store::open(&s3, self.state_dir().dir)?,
            ),
        })
    }

    /// `.gantry/` beside the config unless `--state-dir` says otherwise.
    pub fn state_dir(&self) -> StateDir {
        StateDir {
            dir: self
                .state_dir
                .clone()
                .unwrap_or_else(|| self.config_dir().join(".gantry")),
        }
    }
}

/// A loaded, validated configuration.
pub struct Loaded {
    pub model: Model,
    /// SHA-256 over the config and every env file it names.
    pub sha256: String,
}

/// Reads, parses and validates the config; all problems at once, rendered.
pub fn load(common: &Common) -> Result<Loaded, Error> {
    let source = read_to_string(&common.config)?;
    let raw = crate::config::parse(&source);
    let files = EnvFiles {
        base: common.config_dir(),
    };
    match crate::model::validate(raw, &files) {
        Ok(mut model) => {
            resolve_tls_paths(&mut model, &common.config_dir());
            let mut material = source.clone().into_bytes();
            for spec in model.services.values() {
                if let Some(f) = &spec.env_file {
                    material.extend_from_slice(format!("\0{}\0{}", f.path, f.sha256).as_bytes());
                }
            }
            Ok(Loaded {
                model,
                sha256: sha256_hex(&material),
            })
        }
        Err(diags) => Err(Error::Invalid {
            rendered: render_diagnostics(
                &display_path(&common.config),
                &source,
                &diags,
                common.color,
            ),
            count: diags.len(),
        }),
    }
}

/// `[host] tls` files are named relative to the config file's directory, like `env_file`.
fn resolve_tls_paths(model: &mut Model, base: &Path) {
    for tls in model.hosts.iter_mut().filter_map(|h| h.tls.as_mut()) {
        for path in [&mut tls.ca, &mut tls.cert, &mut tls.key] {
            *path = base.join(&*path).display().to_string();
        }
    }
}

pub fn display_path(p: &Path) -> String {
    p.strip_prefix("./").unwrap_or(p).display().to_string()
}

/// Writes, treating a closed pipe as success.
pub fn emit(out: &mut dyn Write, s: &str) -> Result<(), Error> {
    crate::render::write_out(out, s).map_err(|source| {
        Error::Fs(FsError::Write {
            path: PathBuf::from("<stdout>"),
            source,
        })
    })
}
