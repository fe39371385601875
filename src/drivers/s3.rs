//! `[state] backend = "s3"`: the state, its backup, the lock and the journal as objects of an
//! S3-compatible bucket, shared by everyone who deploys the project (release engineers,
//! release jobs, on-call, pull-request CI reading with read-only credentials).
//!
//! Objects under `KEY/`:
//! - `state.json`, `state.json.backup`, `state.json.broken-<stamp>`: as in `.gantry/`. A
//!   write is conditional on the ETag of the state this store last read or wrote
//!   (If-Match), or on there being none (If-None-Match: *): two writers never overwrite
//!   each other; the second gets [`FsError::Conflict`].
//! - `lock.json`: created only if absent (If-None-Match: *). It names the holder and carries
//!   a heartbeat that a background task of the holder refreshes every quarter of
//!   `stale_lock_after`, each time conditional on the ETag of its own last write. A
//!   heartbeat that finds the lock changed knows it was taken over: the run is told to stop
//!   safely. A lock whose heartbeat is older than `stale_lock_after` (or whose holder is a
//!   dead process of this machine) is stale and is taken over by a conditional write on
//!   the ETag it was read with, so that two runs cannot both take it over.
//! - `journal/current` names the last run; `journal/<run>/<seq>.json` is one entry each,
//!   created with If-None-Match: * in order. An object is durable when its PUT returns, so
//!   an entry is in the backend before the engine makes the change it announces. Objects
//!   cannot be appended to: one object per entry keeps every append one small PUT.
//!
//! A copy of the journal (and of a state the backend refused to take) is kept in the local
//! state directory (`.gantry/s3/`): when the backend goes away during a run, the step in
//! flight fails (no journal entry, no change), the engine restores what it changed, and the
//! next command that takes the lock uploads what the backend missed.
//!
//! object_store's client is async; the store owns a small runtime of its own and waits for
//! it, so that it can be called from the engine's async code and from plain commands alike.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig,
    StaticCredentialProvider, UpdateVersion,
};

use super::fs::{
    Backup, BackupFault, FsError, HeldLock, LockError, LockInfo, StateDir, StateLock,
    UnusableBackup,
};
use super::journal::JournalFile;
use super::store::{JournalAppend, StateStore};
use crate::model::state_backend::S3Backend;
use crate::state::journal::{Entry, Journal};
use crate::state::{STATE_FILE_NAME, State};

/// The store's own runtime, shut down without waiting when the last user lets go of it
/// (it may be dropped inside another runtime, where a blocking shutdown would panic).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Runtime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("running").handle()
    }
}

/// Runs `f` on the store's runtime and waits for it, from sync or async code alike.
fn block<F, T>(rt: &Runtime, f: F) -> Result<T, String>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.handle().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .map_err(|_| "the state backend's client stopped".to_string())
}

/// An object as read: its bytes, its ETag and when it was written.
type Object = (Vec<u8>, Option<String>, SystemTime);

/// The state last read or written: its ETag (what the next write is conditional on) and
/// its bytes (what becomes the backup).
#[derive(Clone)]
struct Seen {
    e_tag: Option<String>,
    bytes: Vec<u8>,
}

pub struct S3Store {
    cfg: S3Backend,
    s3: Arc<AmazonS3>,
    rt: Arc<Runtime>,
    /// `None`: nothing read yet; `Some(None)`: read, and there was no state.
    seen: Mutex<Option<Option<Seen>>>,
    /// The local copies (`.gantry/s3/`).
    local: StateDir,
    /// The entries of a run read before (see [`S3Store::journal_entries`]).
    journal_cache: Mutex<Option<(String, Vec<Entry>)>>,
}

fn remote(location: &str, e: impl std::fmt::Display) -> FsError {
    FsError::Remote {
        location: location.to_string(),
        message: e.to_string(),
    }
}

impl S3Store {
    /// Connects nothing yet: the first request does. `local_dir` is the local state
    /// directory, where the copies of the journal go.
    pub fn open(cfg: &S3Backend, local_dir: PathBuf) -> Result<S3Store, FsError> {
        Self::open_with(cfg, local_dir, None)
    }

    /// [`S3Store::open`] with an access key given (tests and benchmarks), instead of the
    /// standard chain.
    pub fn open_with(
        cfg: &S3Backend,
        local_dir: PathBuf,
        key: Option<(String, String)>,
    ) -> Result<S3Store, FsError> {
        let location = cfg.url();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            // A backend that does not answer fails the command in seconds, not minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(20)),
            );
        let profile = super::aws_profile::from_files().map_err(|e| remote(&location, e))?;
        let region = cfg
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| profile.as_ref().and_then(|p| p.region.clone()))
            .unwrap_or_else(|| "us-east-1".into());
        builder = builder.with_region(region);
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        // The standard chain: the environment's keys (read by `from_env`), then the shared
        // profile files, then web identity, the container's role and the instance's role
        // (object_store's own chain, used when no key was given).
        if let Some((key_id, secret_key)) = key {
            builder =
                builder.with_credentials(Arc::new(StaticCredentialProvider::new(AwsCredential {
                    key_id,
                    secret_key,
                    token: None,
                })));
        } else if env("AWS_ACCESS_KEY_ID").is_none()
            && let Some(credential) = profile.and_then(|p| p.credential)
        {
            builder =
                builder.with_credentials(Arc::new(StaticCredentialProvider::new(AwsCredential {
                    key_id: credential.key_id,
                    secret_key: credential.secret_key,
                    token: credential.token,
                })));
        }
        let s3 = builder.build().map_err(|e| remote(&location, e))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gantry-s3")
            .enable_all()
            .build()
            .map_err(|e| remote(&location, format!("cannot start its client: {e}")))?;
        Ok(S3Store {
            cfg: cfg.clone(),
            s3: Arc::new(s3),
            rt: Arc::new(Runtime(Some(rt))),
            seen: Mutex::new(None),
            local: StateDir {
                dir: local_dir.join("s3"),
            },
            journal_cache: Mutex::new(None),
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{name}", self.cfg.key))
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.cfg.url())
    }

    fn run<F, T>(&self, f: F) -> Result<T, FsError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        block(&self.rt, f).map_err(|e| remote(&self.cfg.url(), e))
    }

    /// An object's bytes, ETag and modification time, `None` when there is none.
    fn get(&self, name: &str) -> Result<Option<Object>, FsError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        let got = self.run(async move {
            match s3.get(&path).await {
                Ok(r) => {
                    let meta = r.meta.clone();
                    r.bytes().await.map(|b| {
                        Some((b.to_vec(), meta.e_tag, SystemTime::from(meta.last_modified)))
                    })
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        got.map_err(|e| remote(&self.url(name), e))
    }

    /// Writes an object; `Ok(None)` when the condition failed.
    fn put(
        &self,
        name: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<Option<Option<String>>, FsError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        let put = self.run(async move {
            s3.put_opts(&path, PutPayload::from(bytes), PutOptions::from(mode))
                .await
        })?;
        match put {
            Ok(r) => Ok(Some(r.e_tag)),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(None),
            Err(e) => Err(remote(&self.url(name), e)),
        }
    }

    fn delete(&self, name: &str) -> Result<(), FsError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        match self.run(async move { s3.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote(&self.url(name), e)),
        }
    }

    fn read_lock(&self) -> Result<Option<(LockInfo, Option<String>)>, FsError> {
        Ok(self.get("lock.json")?.map(|(bytes, e_tag, _)| {
            (
                serde_json::from_slice(&bytes).unwrap_or_else(|_| LockInfo::unreadable()),
                e_tag,
            )
        }))
    }

    /// Holds the lock written with `e_tag`: starts its heartbeat.
    /// Writes this process's lock with `mode` (created only if absent, or replacing the
    /// lock read with its ETag); when the bucket refuses, the lock that is there now.
    fn claim(
        &self,
        operation: &str,
        now_rfc3339: &str,
        mode: PutMode,
    ) -> Result<StateLock, LockError> {
        let mut info = LockInfo::mine(operation, now_rfc3339);
        info.heartbeat = Some(now());
        let body = serde_json::to_vec_pretty(&info).expect("lock info serialises");
        match self.put("lock.json", body, mode)? {
            Some(e_tag) => Ok(self.hold(info, e_tag)),
            None => {
                let held = self
                    .read_lock()?
                    .map(|(i, _)| i)
                    .unwrap_or_else(LockInfo::unreadable);
                let stale = self.is_stale(&held);
                Err(LockError::Held(Box::new(held), stale))
            }
        }
    }

    fn hold(&self, mut info: LockInfo, e_tag: Option<String>) -> StateLock {
        info.heartbeat = Some(now());
        let lock = Arc::new(S3Lock {
            s3: self.s3.clone(),
            path: self.path("lock.json"),
            rt: self.rt.clone(),
            state: Mutex::new((info, e_tag)),
            lost: Arc::new(AtomicBool::new(false)),
            stop_flag: Mutex::new(None),
            task: Mutex::new(None),
        });
        let every = (self.cfg.stale_lock_after.0 / 4).max(Duration::from_millis(250));
        let beating = lock.clone();
        let task = self.rt.handle().spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !beating.beat().await {
                    return;
                }
            }
        });
        *lock.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        StateLock::new(lock)
    }

    fn journal_run(&self) -> Result<Option<String>, FsError> {
        Ok(self
            .get("journal/current")?
            .map(|(b, _, _)| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|r| !r.is_empty()))
    }

    /// The entries of run `run`, in order, with the number of the next one. Read by number,
    /// 32 at a time, up to the first that does not exist: GetObject is all a reader needs
    /// (no ListBucket), and entries are numbered without gaps. Entries are never rewritten,
    /// so those read before by this store are not read again: a command that looks at the
    /// journal several times (pending, held, again under the lock) reads each entry once.
    fn journal_entries(&self, run: &str) -> Result<(Vec<Entry>, u64), FsError> {
        let cached = self
            .journal_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|(r, _)| r == run)
            .map(|(_, entries)| entries);
        // After what is known, a few probes first: usually nothing was added.
        let mut batch: u64 = if cached.is_some() { 4 } else { 32 };
        let mut entries = cached.unwrap_or_default();
        let result = loop {
            let from = entries.len() as u64;
            let paths: Vec<ObjectPath> = (from..from + batch)
                .map(|seq| self.path(&format!("journal/{run}/{seq:08}.json")))
                .collect();
            let s3 = self.s3.clone();
            let fetched = self.run(async move {
                futures_util::future::try_join_all(paths.into_iter().map(|p| {
                    let s3 = s3.clone();
                    async move {
                        match s3.get(&p).await {
                            Ok(r) => r.bytes().await.map(Some),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        }
                    }
                }))
                .await
            })?;
            let fetched = fetched.map_err(|e| remote(&self.url("journal"), e))?;
            batch = 32;
            let mut ended = false;
            for (i, bytes) in fetched.into_iter().enumerate() {
                let Some(bytes) = bytes else {
                    ended = true;
                    break;
                };
                let entry = serde_json::from_slice::<Entry>(&bytes).map_err(|e| FsError::Read {
                    path: PathBuf::from(
                        self.url(&format!("journal/{run}/{:08}.json", from + i as u64)),
                    ),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })?;
                entries.push(entry);
            }
            if ended {
                break entries;
            }
        };
        *self.journal_cache.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((run.to_string(), result.clone()));
        let next = result.len() as u64;
        Ok((result, next))
    }

    fn open_journal(&self, run: String, next: u64, local: JournalFile) -> Arc<S3Journal> {
        Arc::new(S3Journal {
            s3: self.s3.clone(),
            rt: self.rt.clone(),
            prefix: format!("{}/journal/{run}", self.cfg.key),
            location: self.url(&format!("journal/{run}")),
            next: AtomicU64::new(next),
            local,
            unsynced: self.unsynced_path(),
        })
    }

    fn pending_path(&self) -> PathBuf {
        self.local.dir.join("state.pending.json")
    }

    /// Present while the local copies hold something the backend missed.
    fn unsynced_path(&self) -> PathBuf {
        self.local.dir.join("unsynced")
    }

    /// After an outage: uploads what the backend missed of the last run (journal entries
    /// and the last state the run saved), if the backend has not moved on since. Called
    /// under the lock. Returns what was done, for a note.
    fn upload_copies(&self) -> Result<Vec<String>, FsError> {
        let mut done = Vec::new();
        if !self.unsynced_path().exists() {
            return Ok(done);
        }
        if let (Some(local), Some(run)) = (
            self.local.read_journal().ok().flatten(),
            self.journal_run()?,
        ) {
            let (remote_entries, next) = self.journal_entries(&run)?;
            if !remote_entries.is_empty()
                && local.entries.len() > remote_entries.len()
                && local.entries.starts_with(&remote_entries)
            {
                let journal = self.open_journal(run, next, self.local.reopen_journal()?);
                let missing = &local.entries[remote_entries.len()..];
                for e in missing {
                    journal.append_remote(e)?;
                }
                done.push(format!(
                    "uploaded {} journal entr{} kept locally while the backend was unreachable",
                    missing.len(),
                    if missing.len() == 1 { "y" } else { "ies" }
                ));
            }
        }
        let pending = self.pending_path();
        if let Ok(bytes) = std::fs::read(&pending) {
            if let Ok(state) = State::from_json(&String::from_utf8_lossy(&bytes)) {
                let current = self.read()?;
                if current
                    .as_ref()
                    .is_none_or(|c| c.lineage == state.lineage && c.serial < state.serial)
                {
                    self.write(&state)?;
                    done.push(format!(
                        "uploaded the state (serial {}) kept locally while the backend was unreachable",
                        state.serial
                    ));
                }
            }
            let _ = std::fs::remove_file(&pending);
        }
        let _ = std::fs::remove_file(self.unsynced_path());
        Ok(done)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl StateStore for S3Store {
    fn location(&self) -> String {
        self.cfg.url()
    }

    fn state_location(&self) -> String {
        self.url(STATE_FILE_NAME)
    }

    fn read(&self) -> Result<Option<State>, FsError> {
        let got = self.get(STATE_FILE_NAME)?;
        let seen = got.as_ref().map(|(bytes, e_tag, _)| Seen {
            e_tag: e_tag.clone(),
            bytes: bytes.clone(),
        });
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        let Some((bytes, _, _)) = got else {
            return Ok(None);
        };
        super::fs::parse_state(&bytes)
            .map(Some)
            .map_err(|source| FsError::State {
                path: PathBuf::from(self.state_location()),
                source,
                backup: Some(Box::new(self.backup_check())),
            })
    }

    fn write(&self, state: &State) -> Result<(), FsError> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let seen = match seen {
            Some(s) => s,
            None => {
                self.read().ok();
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .flatten()
            }
        };
        let bytes = state.to_json().into_bytes();
        let result = (|| {
            let Some(previous) = &seen else {
                return match self.put(STATE_FILE_NAME, bytes.clone(), PutMode::Create)? {
                    Some(e_tag) => Ok(e_tag),
                    None => Err(FsError::Conflict {
                        location: self.state_location(),
                    }),
                };
            };
            // The previous state becomes the backup while the new one is written, in one
            // round trip: a crash in between leaves the new state or the old one, and a
            // backup that is the previous state or the one before it (as `.gantry/`'s).
            let s3 = self.s3.clone();
            let (backup, state) = (
                self.path(&format!("{STATE_FILE_NAME}.backup")),
                self.path(STATE_FILE_NAME),
            );
            let previous_bytes = PutPayload::from(previous.bytes.clone());
            let new_bytes = PutPayload::from(bytes.clone());
            let mode = PutMode::Update(UpdateVersion {
                e_tag: previous.e_tag.clone(),
                version: None,
            });
            let (backed_up, written) = self.run(async move {
                tokio::join!(
                    s3.put_opts(
                        &backup,
                        previous_bytes,
                        PutOptions::from(PutMode::Overwrite)
                    ),
                    s3.put_opts(&state, new_bytes, PutOptions::from(mode)),
                )
            })?;
            match written {
                // A backup that could not be written stays one write older: the state
                // itself is written, and that is what the next write is conditional on.
                Ok(r) => {
                    drop(backed_up);
                    Ok(r.e_tag)
                }
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::NotFound { .. },
                ) => Err(FsError::Conflict {
                    location: self.state_location(),
                }),
                Err(e) => Err(remote(&self.state_location(), e)),
            }
        })();
        match result {
            Ok(e_tag) => {
                *self.seen.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Some(Seen { e_tag, bytes }));
                let _ = std::fs::remove_file(self.pending_path());
                Ok(())
            }
            Err(e) => {
                // Kept for the next command, which uploads it once the backend is back
                // (a conflict is not kept: someone else's state is newer).
                if matches!(e, FsError::Remote { .. }) && self.local.create_dir().is_ok() {
                    let _ = super::fs::write_private(&self.pending_path(), &bytes);
                    let _ = std::fs::write(self.unsynced_path(), b"");
                }
                Err(e)
            }
        }
    }

    fn read_raw(&self) -> Result<Option<Vec<u8>>, FsError> {
        Ok(self.get(STATE_FILE_NAME)?.map(|(b, _, _)| b))
    }

    fn upload_local_copies(&self) -> Result<Vec<String>, FsError> {
        self.upload_copies()
    }

    fn has_unsynced_copies(&self) -> bool {
        self.unsynced_path().exists()
    }

    fn import(
        &self,
        state: &[u8],
        backup: Option<&[u8]>,
        journal: Option<&Journal>,
    ) -> Result<(), FsError> {
        if let Some(backup) = backup {
            self.put(
                &format!("{STATE_FILE_NAME}.backup"),
                backup.to_vec(),
                PutMode::Overwrite,
            )?;
        }
        if self
            .put(STATE_FILE_NAME, state.to_vec(), PutMode::Create)?
            .is_none()
        {
            return Err(FsError::Conflict {
                location: self.state_location(),
            });
        }
        super::store::import_journal(self, journal)
    }

    fn read_backup(&self) -> Result<Option<Backup>, UnusableBackup> {
        let name = format!("{STATE_FILE_NAME}.backup");
        let path = PathBuf::from(self.url(&name));
        let unusable = |fault| UnusableBackup {
            path: path.clone(),
            fault,
        };
        let got = self
            .get(&name)
            .map_err(|e| unusable(BackupFault::Read(std::io::Error::other(e.to_string()))))?;
        let Some((bytes, _, modified)) = got else {
            return Ok(None);
        };
        let state = super::fs::parse_state(&bytes).map_err(|e| unusable(BackupFault::State(e)))?;
        Ok(Some(Backup {
            path: path.clone(),
            state,
            bytes,
            written: humantime::format_rfc3339_seconds(modified).to_string(),
        }))
    }

    fn restore_backup(&self, backup: &Backup, stamp: &str) -> Result<Option<PathBuf>, FsError> {
        let current = self.get(STATE_FILE_NAME)?;
        let mut moved = None;
        let mut mode = PutMode::Create;
        if let Some((bytes, e_tag, _)) = current {
            for n in 1u32..100 {
                let name = match n {
                    1 => format!("{STATE_FILE_NAME}.broken-{stamp}"),
                    n => format!("{STATE_FILE_NAME}.broken-{stamp}-{n}"),
                };
                if self.put(&name, bytes.clone(), PutMode::Create)?.is_some() {
                    moved = Some(PathBuf::from(self.url(&name)));
                    break;
                }
            }
            mode = PutMode::Update(UpdateVersion {
                e_tag,
                version: None,
            });
        }
        match self.put(STATE_FILE_NAME, backup.bytes.clone(), mode)? {
            Some(e_tag) => {
                *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(Seen {
                    e_tag,
                    bytes: backup.bytes.clone(),
                }));
                Ok(moved)
            }
            None => Err(FsError::Conflict {
                location: self.state_location(),
            }),
        }
    }

    fn lock(&self, operation: &str, now_rfc3339: &str) -> Result<StateLock, LockError> {
        self.claim(operation, now_rfc3339, PutMode::Create)
    }

    fn take_over(
        &self,
        stale: &LockInfo,
        operation: &str,
        now_rfc3339: &str,
    ) -> Result<StateLock, LockError> {
        let Some((current, e_tag)) = self.read_lock()? else {
            return self.lock(operation, now_rfc3339);
        };
        if &current != stale {
            let stale = self.is_stale(&current);
            return Err(LockError::Held(Box::new(current), stale));
        }
        let mode = PutMode::Update(UpdateVersion {
            e_tag,
            version: None,
        });
        self.claim(operation, now_rfc3339, mode)
    }

    fn lock_holder(&self) -> Result<Option<LockInfo>, FsError> {
        Ok(self.read_lock()?.map(|(i, _)| i))
    }

    fn is_stale(&self, lock: &LockInfo) -> bool {
        if lock.holder_is_dead_here() {
            return true;
        }
        let Some(beat) = lock
            .heartbeat
            .as_deref()
            .and_then(|h| humantime::parse_rfc3339(h).ok())
        else {
            return false;
        };
        SystemTime::now()
            .duration_since(beat)
            .is_ok_and(|age| age > self.cfg.stale_lock_after.0)
    }

    fn force_unlock(&self) -> Result<Option<LockInfo>, FsError> {
        let holder = self.lock_holder()?;
        self.delete("lock.json")?;
        Ok(holder)
    }

    fn read_journal(&self) -> Result<Option<Journal>, FsError> {
        let Some(run) = self.journal_run()? else {
            return Ok(None);
        };
        let (entries, _) = self.journal_entries(&run)?;
        Ok(Some(Journal {
            entries,
            torn_tail: false,
        }))
    }

    fn begin_journal(&self, begin: &Entry) -> Result<Arc<dyn JournalAppend>, FsError> {
        let stamp: String = now().chars().filter(|c| !matches!(c, '-' | ':')).collect();
        let run = format!(
            "{stamp}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let local = self.local.begin_journal(begin)?;
        let journal = self.open_journal(run.clone(), 0, local);
        // The run's first entry, then the pointer to it: a crash in between leaves the
        // last run current, and this one announced nothing it did.
        journal.append_remote(begin)?;
        self.put("journal/current", run.into_bytes(), PutMode::Overwrite)?;
        Ok(journal as Arc<dyn JournalAppend>)
    }

    fn reopen_journal(&self) -> Result<Arc<dyn JournalAppend>, FsError> {
        let run = self.journal_run()?.ok_or_else(|| FsError::Remote {
            location: self.url("journal"),
            message: "there is no journal to continue".into(),
        })?;
        let (entries, next) = self.journal_entries(&run)?;
        // The local copy follows the backend's journal (another machine may have run it).
        let same = self
            .local
            .read_journal()
            .ok()
            .flatten()
            .is_some_and(|l| l.entries.starts_with(&entries));
        let local = match (same, entries.first()) {
            (true, _) => self.local.reopen_journal()?,
            (false, Some(first)) => {
                let local = self.local.begin_journal(first)?;
                for e in &entries[1..] {
                    local.append(e)?;
                }
                local
            }
            (false, None) => self.local.begin_journal(&Entry::Restoring { at: now() })?,
        };
        Ok(self.open_journal(run, next, local) as Arc<dyn JournalAppend>)
    }
}

/// The journal of one run in the backend, with its local copy.
struct S3Journal {
    s3: Arc<AmazonS3>,
    rt: Arc<Runtime>,
    /// `KEY/journal/<run>`.
    prefix: String,
    location: String,
    next: AtomicU64,
    local: JournalFile,
    /// Marks that the backend missed something (see [`S3Store::unsynced_path`]).
    unsynced: PathBuf,
}

impl S3Journal {
    /// One entry as the next object of the run. The number advances only when the object
    /// is written (a failed entry leaves no gap); an object already there (a write that
    /// succeeded although its answer was lost) moves on to the next number.
    fn append_remote(&self, entry: &Entry) -> Result<(), FsError> {
        let body = serde_json::to_vec(entry).expect("journal entries serialise");
        for _ in 0..3 {
            let seq = self.next.load(Ordering::SeqCst);
            let path = ObjectPath::from(format!("{}/{seq:08}.json", self.prefix));
            let s3 = self.s3.clone();
            let payload = PutPayload::from(body.clone());
            let put = block(&self.rt, async move {
                s3.put_opts(&path, payload, PutOptions::from(PutMode::Create))
                    .await
            })
            .map_err(|e| remote(&self.location, e))?;
            match put {
                Ok(_) => {
                    self.next.store(seq + 1, Ordering::SeqCst);
                    return Ok(());
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    self.next.store(seq + 1, Ordering::SeqCst);
                }
                Err(e) => return Err(remote(&self.location, e)),
            }
        }
        Err(remote(
            &self.location,
            "another run is writing this journal",
        ))
    }
}

impl JournalAppend for S3Journal {
    fn append(&self, entry: &Entry) -> Result<(), FsError> {
        // The local copy first: whatever the backend missed is there for the next command.
        self.local.append(entry)?;
        let result = self.append_remote(entry);
        if result.is_err() {
            let _ = std::fs::write(&self.unsynced, b"");
        }
        result
    }
}

/// The lock object while this process holds it.
struct S3Lock {
    s3: Arc<AmazonS3>,
    path: ObjectPath,
    rt: Arc<Runtime>,
    /// What was last written and its ETag.
    state: Mutex<(LockInfo, Option<String>)>,
    lost: Arc<AtomicBool>,
    stop_flag: Mutex<Option<Arc<AtomicBool>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl S3Lock {
    /// Refreshes the heartbeat; `false` once the lock is no longer this process's.
    async fn beat(&self) -> bool {
        let (mut info, e_tag) = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        info.heartbeat = Some(now());
        let body = serde_json::to_vec_pretty(&info).expect("lock info serialises");
        let mode = PutMode::Update(UpdateVersion {
            e_tag,
            version: None,
        });
        match self
            .s3
            .put_opts(&self.path, PutPayload::from(body), PutOptions::from(mode))
            .await
        {
            Ok(r) => {
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (info, r.e_tag);
                true
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {
                self.lost.store(true, Ordering::SeqCst);
                if let Some(flag) = self
                    .stop_flag
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                {
                    flag.store(true, Ordering::SeqCst);
                }
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\nwarning: the state lock was taken over by another run or removed with `gantry force-unlock`: finishing the step in flight, then stopping."
                );
                false
            }
            // Unreachable for now: the next beat tries again.
            Err(_) => true,
        }
    }
}

impl HeldLock for S3Lock {
    fn release(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        if self.lost.load(Ordering::SeqCst) {
            return;
        }
        let (s3, path) = (self.s3.clone(), self.path.clone());
        let mine = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        // Removed only while it is still this process's (a heartbeat may be in flight).
        let _ = block(&self.rt, async move {
            if let Ok(r) = s3.head(&path).await
                && r.e_tag == mine
            {
                let _ = s3.delete(&path).await;
            }
        });
    }

    fn on_lost(&self, flag: Arc<AtomicBool>) {
        if self.lost.load(Ordering::SeqCst) {
            flag.store(true, Ordering::SeqCst);
        }
        *self.stop_flag.lock().unwrap_or_else(|e| e.into_inner()) = Some(flag);
    }
}
