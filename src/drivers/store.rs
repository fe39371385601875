//! Where a project's state, its backup, the lock and the journal of runs are kept: the
//! `StateStore` seam. Commands read and write through it and never know which backend
//! they have: the local directory ([`StateDir`], `.gantry/`), a shared S3-compatible bucket
//! ([`super::s3::S3Store`]), or the in-memory fake of `testing::store`. One conformance
//! suite (`testing::conformance::state`) holds them to the same contract: a saved state
//! reads back equal, a write made from an outdated read is refused, one lock holder at a
//! time, the journal reads back in order.
//!
//! The method names are `StateDir`'s, which every command used before there was a choice.

use std::path::PathBuf;
use std::sync::Arc;

use super::fs::{
    Backup, BackupCheck, FsError, LockError, LockInfo, StateDir, StateLock, UnusableBackup,
};
use super::journal::JournalFile;
use crate::engine::StateSink;
use crate::state::State;
use crate::state::journal::{Entry, Journal};

/// An open journal that one run appends to. An entry is durable in the backend when
/// `append` returns: the engine makes the change it announces only then.
pub trait JournalAppend: Send + Sync {
    fn append(&self, entry: &Entry) -> Result<(), FsError>;
}

/// The state, its backup, the lock and the journal of one project.
pub trait StateStore: Send + Sync {
    /// Where the store is (`.gantry` or `s3://bucket/key`), for messages.
    fn location(&self) -> String;
    /// Where the state itself is, for messages.
    fn state_location(&self) -> String;

    /// The recorded state, or `None` when nothing was ever applied. When it cannot be used,
    /// the error says what the backup offers; nothing is written either way.
    fn read(&self) -> Result<Option<State>, FsError>;
    /// Writes the state, keeping the previous one as the backup. A shared backend writes
    /// only if the state is still the one this store last read or wrote
    /// ([`FsError::Conflict`] otherwise).
    fn write(&self, state: &State) -> Result<(), FsError>;
    /// The state's bytes exactly as stored (`gantry state pull`), `None` when there is none.
    fn read_raw(&self) -> Result<Option<Vec<u8>>, FsError>;

    fn read_backup(&self) -> Result<Option<Backup>, UnusableBackup>;
    /// What the backup offers, in the terms of the error message of an unreadable state.
    fn backup_check(&self) -> BackupCheck {
        match self.read_backup() {
            Ok(None) => BackupCheck::Missing {
                path: PathBuf::from(self.state_location() + ".backup"),
            },
            Ok(Some(b)) => BackupCheck::Readable {
                path: b.path,
                serial: b.state.serial,
                revision: b.state.revision,
                written: b.written,
            },
            Err(e) => BackupCheck::Unusable(e),
        }
    }
    /// Puts `backup` in place of the state; the current one is kept aside as
    /// `state.json.broken-<stamp>`, whose location is returned.
    fn restore_backup(&self, backup: &Backup, stamp: &str) -> Result<Option<PathBuf>, FsError>;

    /// Takes the lock or says who holds it (and whether that holder is gone).
    fn lock(&self, operation: &str, now_rfc3339: &str) -> Result<StateLock, LockError>;
    /// Takes over the stale lock `stale` (it was read as such): the caller has told the user.
    /// Refused when the lock changed hands in between.
    fn take_over(
        &self,
        stale: &LockInfo,
        operation: &str,
        now_rfc3339: &str,
    ) -> Result<StateLock, LockError>;
    fn lock_holder(&self) -> Result<Option<LockInfo>, FsError>;
    /// Is the holder of `lock` gone (dead on this machine, or silent for too long)?
    fn is_stale(&self, lock: &LockInfo) -> bool;
    /// Removes the lock whoever holds it (`gantry force-unlock`).
    fn force_unlock(&self) -> Result<Option<LockInfo>, FsError>;

    /// The journal of the last run, if there is one.
    fn read_journal(&self) -> Result<Option<Journal>, FsError>;
    /// Starts a new journal with `begin` (replacing the last run's), durably.
    fn begin_journal(&self, begin: &Entry) -> Result<Arc<dyn JournalAppend>, FsError>;
    /// Opens the existing journal to append to it (a recovery adds to the run it recovers).
    fn reopen_journal(&self) -> Result<Arc<dyn JournalAppend>, FsError>;

    /// Copies in another store's content (`gantry state migrate`): the backup's bytes, the
    /// state's, then the journal's entries. The caller has checked that there is no state
    /// here; a shared backend refuses to replace one that appeared since.
    fn import(
        &self,
        state: &[u8],
        backup: Option<&[u8]>,
        journal: Option<&Journal>,
    ) -> Result<(), FsError>;

    /// After an outage: under the lock, uploads what a run kept locally because the
    /// backend could not take it. Returns notes of what was done.
    fn upload_local_copies(&self) -> Result<Vec<String>, FsError> {
        Ok(Vec::new())
    }

    /// Whether a run kept something locally that the backend missed (an outage): the next
    /// command that may write takes the lock to upload it ([`StateStore::upload_local_copies`]).
    fn has_unsynced_copies(&self) -> bool {
        false
    }

    /// Files or objects that others than their owner can read (local only).
    fn readable_by_others(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

impl JournalAppend for JournalFile {
    fn append(&self, entry: &Entry) -> Result<(), FsError> {
        JournalFile::append(self, entry)
    }
}

impl StateStore for StateDir {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn state_location(&self) -> String {
        self.state_path().display().to_string()
    }
    fn read(&self) -> Result<Option<State>, FsError> {
        StateDir::read(self)
    }
    fn write(&self, state: &State) -> Result<(), FsError> {
        StateDir::write(self, state)
    }
    fn read_raw(&self) -> Result<Option<Vec<u8>>, FsError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FsError::Read { path, source }),
        }
    }
    fn read_backup(&self) -> Result<Option<Backup>, UnusableBackup> {
        StateDir::read_backup(self)
    }
    fn restore_backup(&self, backup: &Backup, stamp: &str) -> Result<Option<PathBuf>, FsError> {
        StateDir::restore_backup(self, backup, stamp)
    }
    fn lock(&self, operation: &str, now_rfc3339: &str) -> Result<StateLock, LockError> {
        StateDir::lock(self, operation, now_rfc3339)
    }
    fn take_over(
        &self,
        _stale: &LockInfo,
        operation: &str,
        now_rfc3339: &str,
    ) -> Result<StateLock, LockError> {
        StateDir::force_unlock(self)?;
        StateDir::lock(self, operation, now_rfc3339)
    }
    fn lock_holder(&self) -> Result<Option<LockInfo>, FsError> {
        StateDir::lock_holder(self)
    }
    fn is_stale(&self, lock: &LockInfo) -> bool {
        lock.holder_is_dead_here()
    }
    fn force_unlock(&self) -> Result<Option<LockInfo>, FsError> {
        StateDir::force_unlock(self)
    }
    fn read_journal(&self) -> Result<Option<Journal>, FsError> {
        StateDir::read_journal(self)
    }
    fn begin_journal(&self, begin: &Entry) -> Result<Arc<dyn JournalAppend>, FsError> {
        Ok(Arc::new(StateDir::begin_journal(self, begin)?))
    }
    fn reopen_journal(&self) -> Result<Arc<dyn JournalAppend>, FsError> {
        Ok(Arc::new(StateDir::reopen_journal(self)?))
    }
    fn readable_by_others(&self) -> Vec<PathBuf> {
        StateDir::readable_by_others(self)
    }
    fn import(
        &self,
        state: &[u8],
        backup: Option<&[u8]>,
        journal: Option<&Journal>,
    ) -> Result<(), FsError> {
        self.create_dir()?;
        if let Some(backup) = backup {
            super::fs::write_private(&self.backup_path(), backup)?;
        }
        super::fs::write_private(&self.state_path(), state)?;
        import_journal(self, journal)
    }
}

/// Writes `journal`'s entries as the store's journal.
pub fn import_journal(store: &dyn StateStore, journal: Option<&Journal>) -> Result<(), FsError> {
    if let Some((first, rest)) = journal.and_then(|j| j.entries.split_first()) {
        let copy = store.begin_journal(first)?;
        for e in rest {
            copy.append(e)?;
        }
    }
    Ok(())
}

/// What the engine saves the state and appends the journal through: the command's store
/// and the run's journal.
pub struct StoreSink {
    pub store: Arc<dyn StateStore>,
    pub journal: Arc<dyn JournalAppend>,
}

impl StateSink for StoreSink {
    fn save(&self, state: &State) -> Result<(), String> {
        self.store.write(state).map_err(|e| e.to_string())
    }

    fn journal(&self, entry: &Entry) -> Result<(), String> {
        self.journal.append(entry).map_err(|e| e.to_string())
    }
}
