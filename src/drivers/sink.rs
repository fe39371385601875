//! Where the engine saves the state and appends to the journal: the state directory's
//! files. The engine sees only `StateSink`; the run's data goes down to the disk from here
//! instead of climbing back into `ops`.

use std::sync::Arc;

use super::fs::StateDir;
use super::journal::JournalFile;
use crate::engine::StateSink;
use crate::state::State;
use crate::state::journal::Entry;

/// Saves the state file (with its backup) and appends to the run's journal.
pub struct FileSink {
    pub dir: StateDir,
    pub journal: Arc<JournalFile>,
}

impl StateSink for FileSink {
    fn save(&self, state: &State) -> Result<(), String> {
        self.dir.write(state).map_err(|e| e.to_string())
    }

    fn journal(&self, entry: &Entry) -> Result<(), String> {
        self.journal.append(entry).map_err(|e| e.to_string())
    }
}
