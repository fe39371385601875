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
    /// The shared state backend could not be reached or refused the request.
    #[error("state backend {location}: {message}")]
    Remote { location: String, message: String },
    /// A conditional write found that someone else wrote first; nothing was overwritten.
    #[error(
        "{location} changed since gantry read it: another run or `gantry state push` wrote it first. Nothing was overwritten; run the command again to start from what is there now"
    )]
    Conflict { location: String },
    /// `state.json` cannot be used; `backup` is what `state.json.backup` offers instead
    /// (`None` for a file that has no backup of its own).
    #[error("state file {} {source}{}", path.display(), recovery_hint(source, backup.as_deref()))]
    State {
        path: PathBuf,
        source: StateError,
        /// Boxed: this error travels in every `Result` of the crate.
        backup: Option<Box<BackupCheck>>,
    },
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
    write_atomic_mode(path, contents, 0o644)
}

/// [`write_atomic`] for the state directory's files: readable by their owner only (they
/// name hosts, images and container IDs; the journal records the state before a run).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FsError> {
    write_atomic_mode(path, contents, 0o600)
}

fn write_atomic_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    use std::os::unix::fs::OpenOptionsExt;
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
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
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

    /// The recorded state, or `None` when nothing was ever applied. When the file cannot be
    /// used, the error says what the backup offers; nothing is written either way.
    pub fn read(&self) -> Result<Option<State>, FsError> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FsError::Read { path, source }),
        };
        parse_state(&bytes)
            .map(Some)
            .map_err(|source| FsError::State {
                path,
                source,
                backup: Some(Box::new(self.backup_check())),
            })
    }

    /// `state.json.backup`, parsed, or `None` when there is none.
    pub fn read_backup(&self) -> Result<Option<Backup>, UnusableBackup> {
        let path = self.backup_path();
        let unusable = |fault| UnusableBackup {
            path: path.clone(),
            fault,
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unusable(BackupFault::Read(e))),
        };
        let state = parse_state(&bytes).map_err(|e| unusable(BackupFault::State(e)))?;
        let written = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|_| "at an unknown time".into());
        Ok(Some(Backup {
            path,
            state,
            bytes,
            written,
        }))
    }

    /// What the backup offers, in the terms of the error message of an unreadable state.
    pub fn backup_check(&self) -> BackupCheck {
        match self.read_backup() {
            Ok(None) => BackupCheck::Missing {
                path: self.backup_path(),
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

    /// Puts `backup` in place of `state.json` (`gantry state restore-backup`; the caller holds
    /// the lock and has checked the backup). The current `state.json`, if any, is first copied
    /// to `state.json.broken-<stamp>` (a new file, never one that exists) and is only then
    /// replaced atomically, so at no instant is there no state file. Returns where the old one
    /// went. The backup stays as it is: `write` would have replaced it with the broken file.
    pub fn restore_backup(&self, backup: &Backup, stamp: &str) -> Result<Option<PathBuf>, FsError> {
        let path = self.state_path();
        let moved = match fs::read(&path) {
            Ok(current) => Some(self.keep_aside(&current, stamp)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(FsError::Read { path, source }),
        };
        write_private(&path, &backup.bytes)?;
        Ok(moved)
    }

    fn keep_aside(&self, bytes: &[u8], stamp: &str) -> Result<PathBuf, FsError> {
        for n in 1u32.. {
            let name = match n {
                1 => format!("{STATE_FILE_NAME}.broken-{stamp}"),
                n => format!("{STATE_FILE_NAME}.broken-{stamp}-{n}"),
            };
            let aside = self.dir.join(name);
            let err = |source| FsError::Write {
                path: aside.clone(),
                source,
            };
            let created = {
                use std::os::unix::fs::OpenOptionsExt;
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&aside)
            };
            match created {
                Ok(mut f) => {
                    f.write_all(bytes)
                        .and_then(|_| f.sync_all())
                        .and_then(|_| fs::File::open(&self.dir)?.sync_all())
                        .map_err(err)?;
                    return Ok(aside);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err(e)),
            }
        }
        unreachable!("some suffix is free")
    }
}

/// A state file's bytes as a state; bytes that are not UTF-8 are reported like any other
/// corruption, with the position where they start.
pub(crate) fn parse_state(bytes: &[u8]) -> Result<State, StateError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => State::from_json(text),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            Err(StateError::Malformed {
                line: valid.iter().filter(|b| **b == b'\n').count() + 1,
                column: valid.len() - line_start + 1,
                message: "bytes that are not UTF-8".into(),
            })
        }
    }
}

/// `state.json.backup`, readable and parsed.
#[derive(Debug)]
pub struct Backup {
    pub path: PathBuf,
    pub state: State,
    /// Exactly what the file holds: a restore installs these bytes.
    pub bytes: Vec<u8>,
    /// The file's modification time (RFC 3339, UTC).
    pub written: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{} {fault}", path.display())]
pub struct UnusableBackup {
    pub path: PathBuf,
    pub fault: BackupFault,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupFault {
    #[error("cannot be read: {0}")]
    Read(io::Error),
    #[error("{0}")]
    State(StateError),
}

/// What `state.json.backup` offers when `state.json` cannot be read.
#[derive(Debug)]
pub enum BackupCheck {
    Missing {
        path: PathBuf,
    },
    Unusable(UnusableBackup),
    Readable {
        path: PathBuf,
        serial: u64,
        revision: u64,
        written: String,
    },
}

/// The lines after "state file ... cannot be used": that nothing was written, and the way
/// back (upgrade, restore the backup, or repair by hand). Every command shows it, since
/// every command reads the state through `StateDir::read`.
fn recovery_hint(source: &StateError, backup: Option<&BackupCheck>) -> String {
    let Some(backup) = backup else {
        return String::new();
    };
    let newer = matches!(source, StateError::NewerFormat { .. });
    let mut hint = String::from(
        "\nNothing was changed: gantry never writes over a state file it cannot read.",
    );
    if newer {
        hint.push_str(
            "\nUpgrading gantry is the right fix: that file records what the newer gantry did.",
        );
    }
    const OPTIONS: &str = "add the -f/--state-dir options you gave this command, if any";
    match backup {
        BackupCheck::Readable {
            path,
            serial,
            revision,
            written,
        } => {
            hint.push_str(&format!(
                "\nA backup is readable: {} (serial {serial}, revision {revision}, written {written}).",
                path.display()
            ));
            if newer {
                hint.push_str(&format!(
                    "\nRestoring it would discard everything the newer gantry recorded after serial {serial}. Only if you cannot upgrade: `gantry state restore-backup --force` ({OPTIONS})."
                ));
            } else {
                hint.push_str(&format!(
                    "\nTo restore it: `gantry state restore-backup` ({OPTIONS}); the unreadable file is kept aside as {STATE_FILE_NAME}.broken-<UTC time>."
                ));
            }
        }
        BackupCheck::Missing { path } => hint.push_str(&format!(
            "\nThere is no backup to restore ({} does not exist).",
            path.display()
        )),
        BackupCheck::Unusable(e) => {
            hint.push_str(&format!("\nThe backup cannot be restored either: {e}."))
        }
    }
    if !newer && !matches!(backup, BackupCheck::Readable { .. }) {
        hint.push_str("\nThe state file has to be repaired by hand.");
    }
    hint
}

/// Who holds the state lock: written into the lock file so that a second run can name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    /// `user@host`.
    pub holder: String,
    pub pid: u32,
    pub host: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// What the holder is doing (`apply`, `rollback`).
    pub operation: String,
    /// RFC 3339, UTC: when the holder last said it is alive (a shared backend's lock; the
    /// local lock is judged by its pid instead and has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
}

impl LockInfo {
    /// This process's lock record.
    pub fn mine(operation: &str, now_rfc3339: &str) -> LockInfo {
        let host = hostname();
        LockInfo {
            holder: format!(
                "{}@{host}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            ),
            pid: std::process::id(),
            host,
            started_at: now_rfc3339.to_string(),
            operation: operation.to_string(),
            heartbeat: None,
        }
    }

    /// What a lock that cannot be read says of its holder.
    pub fn unreadable() -> LockInfo {
        LockInfo {
            holder: "unknown (unreadable lock)".into(),
            pid: 0,
            host: "unknown".into(),
            started_at: "unknown".into(),
            operation: "unknown".into(),
            heartbeat: None,
        }
    }

    /// Held by a process of this machine that is gone.
    pub fn holder_is_dead_here(&self) -> bool {
        self.host == hostname() && self.pid != 0 && !process_alive(self.pid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the state is locked by {} (pid {} on {}, {} since {}{}){}",
        .0.holder, .0.pid, .0.host, .0.operation, .0.started_at,
        .0.heartbeat.as_ref().map(|h| format!(", last heartbeat {h}")).unwrap_or_default(),
        if *.1 { "; that process is gone, so the lock is stale: remove it with `gantry force-unlock`" } else { "" }
    )]
    Held(Box<LockInfo>, bool),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A lock as its backend holds it: released once, from the drop of [`StateLock`] or from
/// the second interrupt (which exits at once).
pub trait HeldLock: Send + Sync {
    fn release(&self);
    /// Where the run learns that its lock was taken over (a shared backend's heartbeat found
    /// another holder): `flag` is set, and the run stops safely as after a first interrupt.
    fn on_lost(&self, _flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {}
}

/// The state lock, held for the life of this value (released on drop).
pub struct StateLock {
    held: std::sync::Arc<dyn HeldLock>,
}

impl std::fmt::Debug for StateLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateLock")
    }
}

impl StateLock {
    pub fn new(held: std::sync::Arc<dyn HeldLock>) -> StateLock {
        StateLock { held }
    }

    /// The lock itself, for whoever must release it without this value (the interrupt
    /// watcher's second interrupt exits the process: no drop runs).
    pub fn handle(&self) -> std::sync::Arc<dyn HeldLock> {
        self.held.clone()
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        self.held.release();
    }
}

/// `lock.json` in the state directory.
struct FileLock {
    path: PathBuf,
}

impl HeldLock for FileLock {
    fn release(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".to_string())
}

/// Is `pid` a live process on this machine?
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl StateDir {
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("lock.json")
    }

    pub fn backup_path(&self) -> PathBuf {
        self.dir.join("state.json.backup")
    }

    /// Takes the lock or says who holds it. Creating the lock file is atomic
    /// (`O_CREAT|O_EXCL`), so two runs can never both succeed.
    pub fn lock(&self, operation: &str, now_rfc3339: &str) -> Result<StateLock, LockError> {
        use std::os::unix::fs::OpenOptionsExt;
        self.create_dir()?;
        let path = self.lock_path();
        let info = LockInfo::mine(operation, now_rfc3339);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let body = serde_json::to_vec_pretty(&info).expect("lock info serialises");
                f.write_all(&body)
                    .and_then(|_| f.sync_all())
                    .map_err(|source| FsError::Write {
                        path: path.clone(),
                        source,
                    })?;
                Ok(StateLock::new(std::sync::Arc::new(FileLock { path })))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let held = self.lock_holder()?.unwrap_or_else(LockInfo::unreadable);
                let stale = held.holder_is_dead_here();
                Err(LockError::Held(Box::new(held), stale))
            }
            Err(source) => Err(FsError::Write { path, source }.into()),
        }
    }

    /// The current lock holder, if any.
    pub fn lock_holder(&self) -> Result<Option<LockInfo>, FsError> {
        let path = self.lock_path();
        match fs::read_to_string(&path) {
            Ok(t) => Ok(serde_json::from_str(&t).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FsError::Read { path, source }),
        }
    }

    /// Removes the lock whoever holds it (`gantry force-unlock`).
    pub fn force_unlock(&self) -> Result<Option<LockInfo>, FsError> {
        let holder = self.lock_holder()?;
        match fs::remove_file(self.lock_path()) {
            Ok(()) => Ok(holder),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FsError::Write {
                path: self.lock_path(),
                source,
            }),
        }
    }

    /// Writes the state atomically, keeping the previous version as `state.json.backup`.
    ///
    /// The previous file becomes the backup by a hard link, not a copy: its bytes are on disk
    /// already, so a save syncs the new file and then the directory, which holds both renames
    /// (two fsyncs where a copy takes four; the executor saves after every step). A crash in
    /// between leaves the new state or the old one, and a backup that is the previous state or
    /// the one before it. Where hard links are refused, the backup is a copy as before.
    pub fn write(&self, state: &State) -> Result<(), FsError> {
        self.create_dir()?;
        let path = self.state_path();
        if !self.link_backup()?
            && let Ok(previous) = fs::read(&path)
        {
            write_private(&self.backup_path(), &previous)?;
        }
        write_private(&path, state.to_json().as_bytes())
    }

    /// Creates the directory, readable by its owner only (`0700`), when it is missing.
    pub fn create_dir(&self) -> Result<(), FsError> {
        use std::os::unix::fs::DirBuilderExt;
        if self.dir.is_dir() {
            return Ok(());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| FsError::Write {
                path: self.dir.clone(),
                source,
            })
    }

    /// The directory and the files in it that others than their owner can read: gantry
    /// warns about them (it never changes permissions it did not set).
    pub fn readable_by_others(&self) -> Vec<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let mut found = Vec::new();
        let Ok(meta) = fs::metadata(&self.dir) else {
            return found;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            found.push(self.dir.clone());
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| {
                    e.metadata()
                        .is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
                })
                .map(|e| e.path())
                .collect();
            files.sort();
            found.extend(files);
        }
        found
    }

    /// Makes the current state file the backup, by a hard link renamed over the backup.
    /// `Ok(true)` when done or when there is no state file yet; `Ok(false)` when the file
    /// system refused the link (the caller copies instead).
    fn link_backup(&self) -> Result<bool, FsError> {
        let backup = self.backup_path();
        let tmp = self
            .dir
            .join(format!(".state.json.backup.link-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        match fs::hard_link(self.state_path(), &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(_) => return Ok(false),
        }
        fs::rename(&tmp, &backup).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            FsError::Write {
                path: backup,
                source,
            }
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir {
            dir: dir.path().join(".gantry"),
        };
        let held = sd.lock("apply", "2026-11-23T20:00:00Z").unwrap();
        match sd.lock("apply", "2026-11-23T20:00:01Z") {
            Err(LockError::Held(info, stale)) => {
                assert_eq!(info.pid, std::process::id());
                assert_eq!(info.operation, "apply");
                assert!(!stale, "we are alive");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        assert!(sd.lock("apply", "now").is_ok());
    }

    #[test]
    fn lock_of_a_dead_process_is_recognised_as_stale() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir {
            dir: dir.path().to_path_buf(),
        };
        // A pid that cannot exist (above the kernel's pid_max default of 4194304).
        let info = LockInfo {
            holder: "ci@h".into(),
            pid: 4_999_999,
            host: hostname(),
            started_at: "t".into(),
            operation: "apply".into(),
            heartbeat: None,
        };
        fs::write(sd.lock_path(), serde_json::to_string(&info).unwrap()).unwrap();
        match sd.lock("apply", "now") {
            Err(e @ LockError::Held(_, true)) => {
                assert!(e.to_string().contains("force-unlock"), "{e}")
            }
            other => panic!("expected a stale lock, got {other:?}"),
        }
        assert_eq!(sd.force_unlock().unwrap().map(|i| i.pid), Some(4_999_999));
        assert!(sd.lock("apply", "now").is_ok());
    }

    #[test]
    fn state_writes_keep_a_backup_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir {
            dir: dir.path().join("s"),
        };
        let mut state = State::empty("p", "lineage".into());
        sd.write(&state).unwrap();
        state.serial = 1;
        sd.write(&state).unwrap();
        assert_eq!(sd.read().unwrap().unwrap().serial, 1);
        let backup = State::from_json(&fs::read_to_string(sd.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 0);
        let leftovers: Vec<_> = fs::read_dir(&sd.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.contains(".tmp-") || name.contains(".link-")
            })
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
    }

    /// A save keeps the previous state as the backup without copying it: the backup is the
    /// very file that was `state.json` (its bytes were synced when it was written).
    #[test]
    fn the_previous_state_file_becomes_the_backup_without_a_copy() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir {
            dir: dir.path().to_path_buf(),
        };
        let mut state = State::empty("p", "l".into());
        for serial in 0..3 {
            state.serial = serial;
            let previous = fs::metadata(sd.state_path()).ok().map(|m| m.ino());
            sd.write(&state).unwrap();
            let backup = fs::metadata(sd.backup_path()).ok().map(|m| m.ino());
            assert_eq!(backup, previous, "save {serial}");
            assert_ne!(
                fs::metadata(sd.state_path()).unwrap().ino(),
                previous.unwrap_or_default()
            );
        }
        assert_eq!(sd.read().unwrap().unwrap().serial, 2);
        let backup = State::from_json(&fs::read_to_string(sd.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 1);
    }

    /// Issue 5: bytes that are not UTF-8 are corruption like any other: the error carries the
    /// backup hint, and the file is left alone.
    #[test]
    fn non_utf8_state_is_reported_with_the_backup_offered() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir {
            dir: dir.path().to_path_buf(),
        };
        let mut state = State::empty("p", "l".into());
        sd.write(&state).unwrap();
        state.serial = 1;
        sd.write(&state).unwrap();
        fs::write(sd.state_path(), b"{\n  \"lineage\": \"\xff").unwrap();
        let e = sd.read().unwrap_err().to_string();
        assert!(
            e.contains("at line 2, column 15: bytes that are not UTF-8"),
            "{e}"
        );
        assert!(e.contains("(serial 0, revision 0, written "), "{e}");
        assert_eq!(
            fs::read(sd.state_path()).unwrap(),
            b"{\n  \"lineage\": \"\xff"
        );
    }

    /// Issue 5: a restore keeps every earlier broken file: a second one in the same second
    /// gets a suffix instead of replacing the first.
    #[test]
    fn restore_keeps_earlier_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir {
            dir: dir.path().to_path_buf(),
        };
        let state = State::empty("p", "l".into());
        sd.write(&state).unwrap();
        sd.write(&state).unwrap();
        let backup = sd.read_backup().unwrap().unwrap();
        fs::write(sd.state_path(), "first").unwrap();
        let a = sd.restore_backup(&backup, "T").unwrap().unwrap();
        fs::write(sd.state_path(), "second").unwrap();
        let b = sd.restore_backup(&backup, "T").unwrap().unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "first");
        assert_eq!(fs::read_to_string(&b).unwrap(), "second");
        assert!(
            b.to_string_lossy().ends_with("state.json.broken-T-2"),
            "{b:?}"
        );
        assert_eq!(sd.read().unwrap(), Some(state));
    }
}
