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

/// `gantry state pull`: the state exactly as stored. Reads only.
pub fn pull(common: &Common, out: &mut dyn Write) -> Result<Outcome, Error> {
    let store = common.store()?;
    match store.read_raw()? {
        Some(bytes) => {
            emit(out, &String::from_utf8_lossy(&bytes))?;
            Ok(Outcome::Done)
        }
        None => Err(Error::Message(format!(
            "there is no state in {}: nothing was applied there yet",
            store.location()
        ))),
    }
}

/// `gantry state push FILE [--force]`: replaces the state, under the lock, when FILE is of
/// the same project and lineage and newer than the current state (or `force`).
pub fn push(
    common: &Common,
    file: &std::path::Path,
    force: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let text = crate::drivers::fs::read_to_string(file)?;
    let mut state = crate::state::State::from_json(&text).map_err(|e| {
        Error::Message(format!(
            "{} is not a gantry state file: {e}; nothing was changed",
            file.display()
        ))
    })?;
    if state.project != loaded.model.project {
        return Err(Error::Message(format!(
            "{} is the state of project `{}`, but the configuration declares project `{}`; nothing was changed",
            file.display(),
            state.project,
            loaded.model.project
        )));
    }
    let session = super::session::Session::new(common)?;
    let _lock = session.lock("state push", err)?;
    let store = session.state_dir();
    if let Some(journal) = session.pending()? {
        return Err(super::outcome::Choices::error(&journal));
    }
    let current = store.read()?;
    if let Some(current) = &current {
        if !force && current.lineage != state.lineage {
            return Err(Error::Message(format!(
                "{} is of lineage {}, but {} is of lineage {}: it is the state of another deployment. Pass --force to replace it anyway; nothing was changed",
                file.display(),
                state.lineage,
                store.state_location(),
                current.lineage
            )));
        }
        if !force && state.serial <= current.serial {
            return Err(Error::Message(format!(
                "{} has serial {}, but {} is at serial {}: pushing it would undo newer writes. Pass --force to replace it anyway; nothing was changed",
                file.display(),
                state.serial,
                store.state_location(),
                current.serial
            )));
        }
        // Forced over a newer state: the serial still moves forward, so that plans saved
        // against the replaced state are refused.
        state.serial = state.serial.max(current.serial + 1);
    }
    store.write(&state)?;
    emit(
        out,
        &format!(
            "Pushed {} to {}: serial {}, revision {}.\n",
            file.display(),
            store.state_location(),
            state.serial,
            state.revision
        ),
    )?;
    Ok(Outcome::Done)
}

/// `gantry state migrate --to s3|local`: copies the state, its backup and the journal
/// between the local directory and the configured S3 bucket, keeping the source.
pub fn migrate(common: &Common, to_s3: bool, out: &mut dyn Write) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let crate::model::state_backend::StateBackend::S3(s3) = &loaded.model.state else {
        return Err(Error::Message(
            "`gantry state migrate` copies between the local directory and the S3 bucket of `[state]`: set `backend = \"s3\"` with its `bucket` (and `key`, `region`, `endpoint`) in the configuration first; nothing was copied".into(),
        ));
    };
    let local: std::sync::Arc<dyn StateStore> = std::sync::Arc::new(common.state_dir());
    let remote: std::sync::Arc<dyn StateStore> = std::sync::Arc::new(
        crate::drivers::s3::S3Store::open(s3, common.state_dir().dir)?,
    );
    let (from, to) = match to_s3 {
        true => (local, remote),
        false => (remote, local),
    };
    let now = super::session::now();
    let _lock = match from.lock("state migrate", &now) {
        Ok(l) => l,
        Err(held @ LockError::Held(..)) => return Err(Error::Locked(held)),
        Err(LockError::Fs(e)) => return Err(e.into()),
    };
    let journal = from.read_journal()?;
    if let Some(unfinished) = journal.as_ref().and_then(|j| j.unfinished()) {
        return Err(Error::Message(format!(
            "the run of revision {} in {} did not finish: finish it first (`gantry apply --resume`, `gantry apply --undo` or `gantry promote`); nothing was copied",
            unfinished.revision,
            from.location()
        )));
    }
    let Some(state) = from.read_raw()? else {
        return Err(Error::Message(format!(
            "there is no state in {} to copy; nothing was copied",
            from.location()
        )));
    };
    let parsed = from.read()?.expect("read_raw found a state");
    if parsed.project != loaded.model.project {
        return Err(Error::Message(format!(
            "{} holds the state of project `{}`, not `{}`; nothing was copied",
            from.state_location(),
            parsed.project,
            loaded.model.project
        )));
    }
    if to.read_raw()?.is_some() {
        return Err(Error::Message(format!(
            "{} already holds a state; gantry does not replace it (remove it, or use `gantry state push` to replace it with lineage and serial checks); nothing was copied",
            to.state_location()
        )));
    }
    let backup = from.read_backup().ok().flatten().map(|b| b.bytes);
    to.import(&state, backup.as_deref(), journal.as_ref())?;
    emit(
        out,
        &format!(
            "Copied the state (serial {}, revision {}, {} revisions of history){}{} from {} to {}. The copy in {} is kept as it was.\n",
            parsed.serial,
            parsed.revision,
            parsed.history.len(),
            if backup.is_some() { ", its backup" } else { "" },
            if journal.is_some() {
                " and the journal"
            } else {
                ""
            },
            from.location(),
            to.location(),
            from.location(),
        ),
    )?;
    if !to_s3 {
        emit(
            out,
            "Set `backend = \"local\"` in [state] (or remove [state]) to use the local copy.\n",
        )?;
    }
    Ok(Outcome::Done)
}
