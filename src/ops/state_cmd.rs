//! `gantry state restore-backup`: the way back offered when `state.json` cannot be read
//! (truncated, corrupt, or from a newer gantry). The backup is the state as of the write
//! before the last one; the file it replaces is moved aside, never deleted. No engine is
//! contacted: `gantry status` afterwards shows how far the backup is from what runs.

use std::io::{BufRead, IsTerminal, Write};
use std::time::SystemTime;

use super::outcome::Outcome;
use super::{Common, Error, emit, load};
use crate::drivers::fs::{Backup, FsError, LockError};
use crate::drivers::store::StateStore;
use crate::state::StateError;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Do not ask for confirmation.
    pub yes: bool,
    /// Replace a state file this gantry can read (or one from a newer gantry) too.
    pub force: bool,
}

pub fn restore_backup(
    common: &Common,
    opts: &RestoreOptions,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let store = common.store()?;
    let state_dir = store.as_ref();
    let backup = check(state_dir, &loaded.model.project, opts.force)?;
    let state_path = state_dir.state_location();

    if !opts.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Message(
                "refusing to restore the backup without confirmation: no terminal to ask on. Pass --yes".into(),
            ));
        }
        emit(
            out,
            &format!(
                "This replaces {} with {} (serial {}, revision {}, written {}); the current file is kept as {}.broken-<UTC time>.\nDo you want to restore the backup? Only `yes` is accepted: ",
                state_path,
                backup.path.display(),
                backup.state.serial,
                backup.state.revision,
                backup.written,
                state_path,
            ),
        )?;
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            return Err(Error::Cancelled);
        }
    }

    let now = SystemTime::now();
    let _lock = match state_dir.lock(
        "restore-backup",
        &humantime::format_rfc3339_seconds(now).to_string(),
    ) {
        Ok(l) => l,
        Err(held @ LockError::Held(..)) => return Err(Error::Locked(held)),
        Err(LockError::Fs(e)) => return Err(e.into()),
    };
    // Again under the lock: a run that held it may have written both files since.
    let backup = check(state_dir, &loaded.model.project, opts.force)?;
    // `20261123T200000Z`: sorts by time and needs no quoting in a shell.
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let moved = state_dir.restore_backup(&backup, &stamp)?;

    let mut done = format!(
        "Restored {} from {}: serial {}, revision {} (backup written {}).\n",
        state_path,
        backup.path.display(),
        backup.state.serial,
        backup.state.revision,
        backup.written,
    );
    match moved {
        Some(aside) => done.push_str(&format!(
            "The previous state file was moved to {} (kept, not deleted).\n",
            aside.display()
        )),
        None => done.push_str("There was no state file to move aside.\n"),
    }
    done.push_str(
        "The backup is one write behind: run `gantry status` to compare what it records with what the engines run.\n",
    );
    emit(out, &done)?;
    Ok(Outcome::Done)
}

/// The backup, if restoring it is allowed: it exists, parses, belongs to the configured
/// project, and the current state is unreadable, absent, or `force` is given.
fn check(state_dir: &dyn StateStore, project: &str, force: bool) -> Result<Backup, Error> {
    let backup = match state_dir.read_backup() {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(Error::Message(format!(
                "there is no backup to restore: {}.backup does not exist; nothing was changed",
                state_dir.state_location()
            )));
        }
        Err(e) => {
            return Err(Error::Message(format!(
                "the backup cannot be restored: {e}; nothing was changed"
            )));
        }
    };
    if backup.state.project != project {
        return Err(Error::Message(format!(
            "the backup {} belongs to project `{}`, but the configuration declares project `{project}`; nothing was changed",
            backup.path.display(),
            backup.state.project,
        )));
    }
    let state_path = state_dir.state_location();
    match state_dir.read() {
        Ok(None) => {}
        Err(FsError::State {
            source: StateError::Malformed { .. },
            ..
        }) => {}
        Ok(Some(current)) if !force => {
            return Err(Error::Message(format!(
                "refusing to restore the backup: {} is readable (serial {}, revision {}); replacing it with the backup (serial {}) would lose its newest writes. Pass --force to replace it anyway (it is kept aside); nothing was changed",
                state_path, current.serial, current.revision, backup.state.serial,
            )));
        }
        Err(FsError::State {
            source: StateError::NewerFormat { found, .. },
            ..
        }) if !force => {
            return Err(Error::Message(format!(
                "refusing to restore the backup: {} was written by a newer gantry (state format {found}); upgrade gantry instead. Restoring the backup would discard what the newer gantry recorded; pass --force to do it anyway (the file is kept aside). Nothing was changed",
                state_path,
            )));
        }
        Ok(Some(_)) | Err(FsError::State { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(backup)
}
