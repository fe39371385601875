//! An in-memory state store: every saved state and every journal entry, in order, so that a
//! test can assert what the executor recorded and when; saves and journal writes can be
//! made to fail.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::StateSink;
use crate::state::State;
use crate::state::journal::{Entry, Journal};

use super::conformance::state::StateStore;

#[derive(Debug, Default)]
struct Inner {
    saves: Vec<State>,
    entries: Vec<Entry>,
    /// Saves still to succeed before they fail (None: they never fail).
    saves_left: Option<usize>,
    journal_left: Option<usize>,
}

/// Cloning shares the store.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<Inner>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every state saved, oldest first.
    pub fn saves(&self) -> Vec<State> {
        self.lock().saves.clone()
    }

    /// The last state saved.
    pub fn last(&self) -> Option<State> {
        self.lock().saves.last().cloned()
    }

    /// Every journal entry, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().entries.clone()
    }

    /// The entries as a journal (what a recovery would read).
    pub fn journal_so_far(&self) -> Journal {
        Journal {
            entries: self.entries(),
            torn_tail: false,
        }
    }

    /// Starts a journal from `begin`, dropping the entries of an earlier run (as
    /// `StateDir::begin_journal` replaces the file).
    pub fn begin(&self, begin: Entry) {
        self.lock().entries = vec![begin];
    }

    /// After `n` more successful saves, every save fails.
    pub fn fail_saves_after(&self, n: usize) {
        self.lock().saves_left = Some(n);
    }

    /// After `n` more successful journal writes, every write fails.
    pub fn fail_journal_after(&self, n: usize) {
        self.lock().journal_left = Some(n);
    }
}

impl StateSink for MemorySink {
    fn save(&self, state: &State) -> Result<(), String> {
        let mut inner = self.lock();
        match inner.saves_left {
            Some(0) => return Err("the fake state store refused the save".into()),
            Some(n) => inner.saves_left = Some(n - 1),
            None => {}
        }
        inner.saves.push(state.clone());
        Ok(())
    }

    fn journal(&self, entry: &Entry) -> Result<(), String> {
        let mut inner = self.lock();
        match inner.journal_left {
            Some(0) => return Err("the fake journal refused the write".into()),
            Some(n) => inner.journal_left = Some(n - 1),
            None => {}
        }
        inner.entries.push(entry.clone());
        Ok(())
    }
}

impl StateStore for MemorySink {
    fn read_state(&self) -> Result<Option<State>, String> {
        Ok(self.last())
    }

    fn read_journal(&self) -> Result<Vec<Entry>, String> {
        Ok(self.entries())
    }
}
