//! An in-memory [`StateStore`]: the fake of the state backends, with the semantics of a
//! shared one (every write conditional on the version its handle last read, the lock
//! created only if absent). [`MemoryStore::handle`] is a second machine on the same store.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::drivers::fs::{
    Backup, BackupFault, FsError, HeldLock, LockError, LockInfo, StateLock, UnusableBackup,
};
use crate::drivers::store::{JournalAppend, StateStore};
use crate::state::State;
use crate::state::journal::{Entry, Journal};

#[derive(Debug, Default)]
struct Shared {
    /// The state's bytes and their version (bumped by every write).
    state: Option<(Vec<u8>, u64)>,
    version: u64,
    backup: Option<Vec<u8>>,
    lock: Option<LockInfo>,
    journal: Option<Vec<Entry>>,
}

/// One handle on a shared in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    shared: Arc<Mutex<Shared>>,
    /// The version of the state this handle last read or wrote (`Some(None)`: read, none).
    seen: Mutex<Option<Option<u64>>>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const LOCATION: &str = "memory://state";

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Another handle on the same store (another machine).
    pub fn handle(&self) -> MemoryStore {
        MemoryStore {
            shared: self.shared.clone(),
            seen: Mutex::new(None),
        }
    }
}

struct MemoryLock {
    shared: Arc<Mutex<Shared>>,
    pid: u32,
}

impl HeldLock for MemoryLock {
    fn release(&self) {
        let mut s = guard(&self.shared);
        if s.lock.as_ref().is_some_and(|l| l.pid == self.pid) {
            s.lock = None;
        }
    }
}

struct MemoryJournal {
    shared: Arc<Mutex<Shared>>,
}

impl JournalAppend for MemoryJournal {
    fn append(&self, entry: &Entry) -> Result<(), FsError> {
        guard(&self.shared)
            .journal
            .get_or_insert_with(Vec::new)
            .push(entry.clone());
        Ok(())
    }
}

impl StateStore for MemoryStore {
    fn location(&self) -> String {
        LOCATION.into()
    }

    fn state_location(&self) -> String {
        format!("{LOCATION}/state.json")
    }

    fn read(&self) -> Result<Option<State>, FsError> {
        let current = guard(&self.shared).state.clone();
        *guard(&self.seen) = Some(current.as_ref().map(|(_, v)| *v));
        match current {
            None => Ok(None),
            Some((bytes, _)) => {
                crate::drivers::fs::parse_state(&bytes)
                    .map(Some)
                    .map_err(|source| FsError::State {
                        path: PathBuf::from(self.state_location()),
                        source,
                        backup: None,
                    })
            }
        }
    }

    fn write(&self, state: &State) -> Result<(), FsError> {
        let mut s = guard(&self.shared);
        let mut seen = guard(&self.seen);
        let current = s.state.as_ref().map(|(_, v)| *v);
        if seen.is_some_and(|seen| seen != current) {
            return Err(FsError::Conflict {
                location: self.state_location(),
            });
        }
        s.version += 1;
        let version = s.version;
        s.backup = s.state.take().map(|(b, _)| b);
        s.state = Some((state.to_json().into_bytes(), version));
        *seen = Some(Some(version));
        Ok(())
    }

    fn read_raw(&self) -> Result<Option<Vec<u8>>, FsError> {
        Ok(guard(&self.shared).state.as_ref().map(|(b, _)| b.clone()))
    }

    fn read_backup(&self) -> Result<Option<Backup>, UnusableBackup> {
        let Some(bytes) = guard(&self.shared).backup.clone() else {
            return Ok(None);
        };
        let path = PathBuf::from(format!("{LOCATION}/state.json.backup"));
        let state = crate::drivers::fs::parse_state(&bytes).map_err(|e| UnusableBackup {
            path: path.clone(),
            fault: BackupFault::State(e),
        })?;
        Ok(Some(Backup {
            path,
            state,
            bytes,
            written: "2026-01-01T00:00:00Z".into(),
        }))
    }

    fn restore_backup(&self, backup: &Backup, _stamp: &str) -> Result<Option<PathBuf>, FsError> {
        let mut s = guard(&self.shared);
        s.version += 1;
        let version = s.version;
        s.state = Some((backup.bytes.clone(), version));
        *guard(&self.seen) = Some(Some(version));
        Ok(None)
    }

    fn lock(&self, operation: &str, now_rfc3339: &str) -> Result<StateLock, LockError> {
        let mut s = guard(&self.shared);
        if let Some(held) = &s.lock {
            let stale = self.is_stale(held);
            return Err(LockError::Held(Box::new(held.clone()), stale));
        }
        let info = LockInfo::mine(operation, now_rfc3339);
        let pid = info.pid;
        s.lock = Some(info);
        Ok(StateLock::new(Arc::new(MemoryLock {
            shared: self.shared.clone(),
            pid,
        })))
    }

    fn take_over(
        &self,
        stale: &LockInfo,
        operation: &str,
        now_rfc3339: &str,
    ) -> Result<StateLock, LockError> {
        {
            let mut s = guard(&self.shared);
            match &s.lock {
                Some(l) if l != stale => {
                    let stale = self.is_stale(l);
                    return Err(LockError::Held(Box::new(l.clone()), stale));
                }
                _ => s.lock = None,
            }
        }
        self.lock(operation, now_rfc3339)
    }

    fn lock_holder(&self) -> Result<Option<LockInfo>, FsError> {
        Ok(guard(&self.shared).lock.clone())
    }

    fn is_stale(&self, lock: &LockInfo) -> bool {
        lock.holder_is_dead_here()
    }

    fn force_unlock(&self) -> Result<Option<LockInfo>, FsError> {
        Ok(guard(&self.shared).lock.take())
    }

    fn read_journal(&self) -> Result<Option<Journal>, FsError> {
        Ok(guard(&self.shared).journal.clone().map(|entries| Journal {
            entries,
            torn_tail: false,
        }))
    }

    fn begin_journal(&self, begin: &Entry) -> Result<Arc<dyn JournalAppend>, FsError> {
        guard(&self.shared).journal = Some(vec![begin.clone()]);
        self.reopen_journal()
    }

    fn reopen_journal(&self) -> Result<Arc<dyn JournalAppend>, FsError> {
        Ok(Arc::new(MemoryJournal {
            shared: self.shared.clone(),
        }))
    }

    fn import(
        &self,
        state: &[u8],
        backup: Option<&[u8]>,
        journal: Option<&Journal>,
    ) -> Result<(), FsError> {
        let mut s = guard(&self.shared);
        s.version += 1;
        s.state = Some((state.to_vec(), s.version));
        s.backup = backup.map(<[u8]>::to_vec);
        s.journal = journal.map(|j| j.entries.clone());
        Ok(())
    }
}
