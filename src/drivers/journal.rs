//! The journal file (`journal.jsonl` in the state directory): one JSON line per entry,
//! appended and fsynced before the call returns, so that whatever the engine does next is
//! announced on disk first. A new run replaces the file; a crash mid-line leaves a torn
//! last line that the reader ignores.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use super::fs::{FsError, StateDir};
use crate::state::journal::{Entry, JOURNAL_FILE_NAME, Journal};

/// An open journal, appended to by one run.
pub struct JournalFile {
    path: PathBuf,
    file: Mutex<fs::File>,
}

impl StateDir {
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE_NAME)
    }

    /// The journal of the last run, if there is one.
    pub fn read_journal(&self) -> Result<Option<Journal>, FsError> {
        let path = self.journal_path();
        match fs::read_to_string(&path) {
            Ok(text) => Journal::parse(&text).map(Some).map_err(|e| FsError::Read {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FsError::Read { path, source }),
        }
    }

    /// Starts a new journal with `begin` (replacing the last run's), durably.
    pub fn begin_journal(&self, begin: &Entry) -> Result<JournalFile, FsError> {
        let path = self.journal_path();
        let mut line = serde_json::to_vec(begin).expect("journal entries serialise");
        line.push(b'\n');
        self.create_dir()?;
        super::fs::write_private(&path, &line)?;
        JournalFile::open(path)
    }

    /// Opens the existing journal to append to it (a recovery adds to the run it recovers).
    pub fn reopen_journal(&self) -> Result<JournalFile, FsError> {
        JournalFile::open(self.journal_path())
    }
}

impl JournalFile {
    fn open(path: PathBuf) -> Result<JournalFile, FsError> {
        let file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| FsError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(JournalFile {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends one entry and waits until it is on disk.
    pub fn append(&self, entry: &Entry) -> Result<(), FsError> {
        let mut line = serde_json::to_vec(entry).expect("journal entries serialise");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line)
            .and_then(|_| file.sync_data())
            .map_err(|source| FsError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Outcome, State};

    #[test]
    fn entries_survive_reopening_and_a_new_run_replaces_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir {
            dir: dir.path().to_path_buf(),
        };
        assert!(sd.read_journal().unwrap().is_none());
        let begin = |revision| Entry::Begin {
            revision,
            origin: crate::state::Origin::Apply,
            pid: 1,
            host: "h".into(),
            at: "t".into(),
            prior: Box::new(State::empty("p", "l".into())),
        };
        let j = sd.begin_journal(&begin(1)).unwrap();
        j.append(&Entry::Restoring { at: "t".into() }).unwrap();
        drop(j);
        sd.reopen_journal()
            .unwrap()
            .append(&Entry::End {
                outcome: Outcome::RolledBack,
                at: "t".into(),
            })
            .unwrap();
        assert_eq!(sd.read_journal().unwrap().unwrap().entries.len(), 3);
        sd.begin_journal(&begin(2)).unwrap();
        let j = sd.read_journal().unwrap().unwrap();
        assert_eq!(j.entries, vec![begin(2)]);
    }
}
