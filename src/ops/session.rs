//! One session for every command that touches the engines or the state directory. Each of
//! them used to take the lock, watch interrupts, connect the engines and start an async
//! runtime its own way; here each is done once, the same way for all: the state lock (a
//! stale one, left by a dead process on this host, is taken over), the journal, the two-step
//! interrupt, the engine connections, the reporter and the one tokio runtime. The run's
//! environment for the engine is built in [`Run::env`] and nowhere else; what one apply
//! brings ([`crate::engine::ApplyInputs`]) stays with the command.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use super::{Common, Error, emit};
use crate::drivers::clock::SystemClock;
use crate::drivers::command::LocalCommands;
use crate::drivers::docker::DockerRuntime;
use crate::drivers::fs::{HeldLock, LockError, StateLock, hostname};
use crate::drivers::probe::HttpProber;
use crate::drivers::store::{JournalAppend, StateStore, StoreSink};
use crate::engine::report::{LineReporter, ProgressFormat, Reporter, TtyReporter};
use crate::engine::{RunEnv, Target};
use crate::exit::ExitStatus;
use crate::model::Model;
use crate::ports::{ContainerInfo, ContainerRuntime, LoadBalancer};
use crate::state::journal::{Entry, Journal};

/// The connected engine of every host, by host name.
pub type Hosts = BTreeMap<String, Target<DockerRuntime>>;
/// A driver per load balancer, by name.
pub type Lbs = BTreeMap<String, Box<dyn LoadBalancer>>;

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A command's hold on the state (its store: the local directory or a shared backend) and
/// the engines.
pub struct Session<'c> {
    common: &'c Common,
    state_dir: Arc<dyn StateStore>,
    /// Built on first use: offline commands never start one.
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl<'c> Session<'c> {
    /// Opens the state store the configuration names (nothing is read yet).
    pub fn new(common: &'c Common) -> Result<Self, Error> {
        Ok(Session {
            common,
            state_dir: common.store()?,
            runtime: OnceLock::new(),
        })
    }

    pub fn common(&self) -> &'c Common {
        self.common
    }

    /// The state store (named after the local directory it was before there were others).
    pub fn state_dir(&self) -> &dyn StateStore {
        self.state_dir.as_ref()
    }

    /// Warns about state files that others than their owner can read.
    pub fn warn_if_readable(&self, err: &mut dyn Write) -> Result<(), Error> {
        for path in self.state_dir.readable_by_others() {
            emit(
                err,
                &format!(
                    "warning: {} can be read by other users; the state names hosts, images and containers: `chmod go-rwx {}`\n",
                    path.display(),
                    path.display()
                ),
            )?;
        }
        Ok(())
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, Error> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Message(format!("cannot start the async runtime: {e}")))?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// Runs `f` to completion on the session's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> Result<F::Output, Error> {
        Ok(self.runtime()?.block_on(f))
    }

    /// The journal of a run that did not finish and whose process is gone; `None` when the
    /// last run finished, or is still running (its live process holds the lock).
    pub fn pending(&self) -> Result<Option<Journal>, Error> {
        let Some(journal) = self.state_dir.read_journal()? else {
            return Ok(None);
        };
        if journal.unfinished().is_none_or(|u| u.held) {
            return Ok(None);
        }
        // Still running: a lock that is not this process's, readable (an unreadable one
        // says nothing of a live holder) and not stale.
        if let Some(lock) = self.state_dir.lock_holder()?
            && !(lock.pid == std::process::id() && lock.host == hostname())
            && lock.pid != 0
            && !self.state_dir.is_stale(&lock)
        {
            return Ok(None);
        }
        Ok(Some(journal))
    }

    /// The journal of a blue-green release held at its preview (`gantry promote` continues it).
    pub fn held(&self) -> Result<Option<Journal>, Error> {
        Ok(self
            .state_dir
            .read_journal()?
            .filter(|j| j.unfinished().is_some_and(|u| u.held)))
    }

    /// Takes the state lock. A stale lock (left by a dead process on this host, or, in a
    /// shared backend, whose heartbeat stopped longer ago than `stale_lock_after`) is taken
    /// over, with a note on `err`. [`Error::Locked`] when a live run holds it. Under the
    /// lock, what a run kept locally while the backend was unreachable is uploaded.
    pub fn lock(&self, operation: &str, err: &mut dyn Write) -> Result<StateLock, Error> {
        let lock = match self.state_dir.lock(operation, &now()) {
            Ok(lock) => lock,
            Err(LockError::Held(info, true)) => {
                let why = match &info.heartbeat {
                    Some(beat) if !info.holder_is_dead_here() => {
                        format!("its last heartbeat was at {beat}")
                    }
                    _ => "that process is gone".to_string(),
                };
                emit(
                    err,
                    &format!(
                        "note: taking over the lock left by {} (pid {} on {}, {} since {}): {why}.\n",
                        info.holder, info.pid, info.host, info.operation, info.started_at
                    ),
                )?;
                match self.state_dir.take_over(&info, operation, &now()) {
                    Ok(lock) => lock,
                    Err(held @ LockError::Held(..)) => return Err(Error::Locked(held)),
                    Err(LockError::Fs(e)) => return Err(e.into()),
                }
            }
            Err(held @ LockError::Held(..)) => return Err(Error::Locked(held)),
            Err(LockError::Fs(e)) => return Err(e.into()),
        };
        for note in self.state_dir.upload_local_copies()? {
            emit(err, &format!("note: {note}.\n"))?;
        }
        Ok(lock)
    }

    /// After an outage of a shared backend: when the last run here kept journal entries or
    /// a state the backend missed, takes the lock (a stale one is taken over, with a note)
    /// to upload them before anything else is decided. A live run elsewhere: exit 5.
    pub fn upload_kept_copies(&self, operation: &str, err: &mut dyn Write) -> Result<(), Error> {
        if self.state_dir.has_unsynced_copies() {
            drop(self.lock(operation, err)?);
        }
        Ok(())
    }

    /// Every container of every host (`--refresh`; see [`observe_engine`]).
    pub fn observe(&self, model: &Model) -> Result<BTreeMap<String, Vec<ContainerInfo>>, Error> {
        self.block_on(async {
            let hosts = connect(model).await.map_err(|e| {
                Error::Message(format!(
                    "--refresh needs every engine: {e}. Without --refresh, plan works offline"
                ))
            })?;
            let mut engines = BTreeMap::new();
            for (name, target) in &hosts {
                let found = observe_engine(&target.runtime, &model.project)
                    .await
                    .map_err(|e| Error::Message(format!("--refresh: host `{name}`: {e}")))?;
                engines.insert(name.clone(), found);
            }
            Ok(engines)
        })?
    }

    /// Starts a new journal for a run, announcing it before any change.
    pub fn begin_journal(&self, begin: &Entry) -> Result<Arc<dyn JournalAppend>, Error> {
        Ok(self.state_dir.begin_journal(begin)?)
    }

    /// Opens the last run's journal to append to it (a recovery or a promote continues it).
    pub fn reopen_journal(&self) -> Result<Arc<dyn JournalAppend>, Error> {
        Ok(self.state_dir.reopen_journal()?)
    }

    /// Starts a run of the engine under `lock`, journaling to `journal`: from here on an
    /// interrupt is watched (the first stops safely, the second at once) until the run is
    /// dropped.
    pub fn start(
        &self,
        lock: StateLock,
        journal: Arc<dyn JournalAppend>,
        model: &Model,
        (hosts, lbs): (Hosts, Lbs),
        progress: ProgressFormat,
    ) -> Result<Run, Error> {
        let interrupt = Arc::new(AtomicBool::new(false));
        // A lock taken over by another run stops this one as a first interrupt does.
        lock.handle().on_lost(interrupt.clone());
        let watcher = self.runtime()?.spawn(watch_interrupts(
            interrupt.clone(),
            journal.clone(),
            lock.handle(),
        ));
        Ok(Run {
            project: model.project.clone(),
            keep_previous: model.keep_previous,
            labels: model.labels.clone(),
            hosts,
            lbs,
            sink: StoreSink {
                store: self.state_dir.clone(),
                journal,
            },
            reporter: reporter(progress),
            prober: HttpProber::new(),
            interrupt,
            watcher,
            _lock: lock,
        })
    }
}

/// A run of the engine in progress: it owns what the engine's environment borrows, holds
/// the lock and watches interrupts until it is dropped.
pub struct Run {
    project: String,
    keep_previous: u32,
    labels: BTreeMap<String, String>,
    hosts: Hosts,
    lbs: Lbs,
    sink: StoreSink,
    reporter: Box<dyn Reporter>,
    prober: HttpProber,
    interrupt: Arc<AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
    _lock: StateLock,
}

impl Run {
    /// The engine's environment for this run: the one place it is built.
    pub fn env(&self) -> RunEnv<'_, DockerRuntime> {
        RunEnv {
            project: &self.project,
            hosts: &self.hosts,
            prober: &self.prober,
            commands: &LocalCommands,
            clock: &SystemClock,
            reporter: self.reporter.as_ref(),
            sink: &self.sink,
            lbs: &self.lbs,
            keep_previous: self.keep_previous,
            labels: &self.labels,
            interrupt: &self.interrupt,
        }
    }
}

impl Drop for Run {
    /// An interrupt after the run is no longer the run's: the watcher stops with it (the
    /// lock is released by its own drop).
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Asks whether to `verb` on the terminal unless `yes`; without a terminal, refuses.
/// [`Error::Cancelled`] when the answer is not `yes`.
pub fn confirm(verb: &str, yes: bool, out: &mut dyn Write) -> Result<(), Error> {
    confirm_with(verb, yes, "Pass --yes, or apply a saved plan file", out)
}

/// [`confirm`], with `hint` saying what to do when there is no terminal to ask on.
pub fn confirm_with(verb: &str, yes: bool, hint: &str, out: &mut dyn Write) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Message(format!(
            "refusing to {verb} without confirmation: no terminal to ask on. {hint}"
        )));
    }
    emit(
        out,
        &format!("\nDo you want to {verb}? Only `yes` is accepted: "),
    )?;
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() != "yes" {
        return Err(Error::Cancelled);
    }
    Ok(())
}

/// The first SIGINT/SIGTERM sets `flag` (the engine finishes the steps in flight and stops
/// safely); the second journals `Aborted` and exits at once with status 4: the process may
/// be stuck, so this cannot wait for the command to return its outcome.
async fn watch_interrupts(
    flag: Arc<AtomicBool>,
    journal: Arc<dyn JournalAppend>,
    lock: Arc<dyn HeldLock>,
) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    let mut count = 0;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term.recv() => {}
        }
        count += 1;
        if count == 1 {
            flag.store(true, Ordering::SeqCst);
            let _ = writeln!(
                std::io::stderr(),
                "\ninterrupt: finishing the step in flight, then stopping safely. Interrupt again to stop at once."
            );
        } else {
            let _ = journal.append(&Entry::Aborted { at: now() });
            lock.release();
            let _ = writeln!(
                std::io::stderr(),
                "\nsecond interrupt: stopped at once; the journal is on disk. `gantry apply --resume` continues, `gantry apply --undo` undoes (`gantry rollback` undoes too)."
            );
            std::process::exit(ExitStatus::FailedHalted.code());
        }
    }
}

/// Connects every host of the model (pre-flight: nothing is touched if one is missing).
pub async fn connect(model: &Model) -> Result<Hosts, Error> {
    let mut hosts = BTreeMap::new();
    for h in &model.hosts {
        let fail = |e: crate::ports::RuntimeError| {
            Error::Message(format!(
                "pre-flight: host `{}`: {e}; nothing was changed",
                h.name
            ))
        };
        let rt = DockerRuntime::connect(&h.docker, h.tls.as_ref())
            .await
            .map_err(fail)?;
        rt.ping().await.map_err(fail)?;
        let swarm = crate::drivers::swarm::SwarmManager::new(rt.client().clone());
        // A Swarm service needs its host to be a manager: said now, before any change.
        if let Some(service) = model
            .services
            .iter()
            .find(|(_, s)| s.runtime == crate::model::Runtime::Swarm && s.hosts.contains(&h.name))
            && let Err(e) = swarm.check_manager().await
        {
            return Err(Error::Message(format!(
                "pre-flight: service.{} runs on Docker Swarm through host `{}`, but {e}; nothing was changed",
                service.0, h.name
            )));
        }
        hosts.insert(
            h.name.clone(),
            Target {
                runtime: rt,
                address: h.address.clone(),
                swarm: Some(Box::new(swarm)),
            },
        );
    }
    Ok(hosts)
}

/// The engine of one host, without pre-flight checks: `status` and `prune` read or clean up
/// what they reach.
/// Every container on one engine (one list call), with the settings that can change on a
/// living container (`LiveSettings`) read for the running ones of `project`: one inspect
/// each, all at once. A container gone in between keeps what the list said.
pub async fn observe_engine<R: ContainerRuntime>(
    rt: &R,
    project: &str,
) -> Result<Vec<ContainerInfo>, crate::ports::RuntimeError> {
    let mut found = rt.list(&[]).await?;
    let ours: Vec<usize> = (0..found.len())
        .filter(|&i| {
            found[i].state == crate::ports::ContainerState::Running
                && found[i]
                    .labels
                    .get(crate::ports::labels::PROJECT)
                    .map(String::as_str)
                    == Some(project)
        })
        .collect();
    let inspected =
        futures_util::future::join_all(ours.iter().map(|&i| rt.inspect(&found[i].id))).await;
    for (i, info) in ours.into_iter().zip(inspected) {
        if let Some(info) = info? {
            found[i].settings = info.settings;
        }
    }
    Ok(found)
}

pub async fn engine(host: &crate::model::Host) -> Result<DockerRuntime, Error> {
    DockerRuntime::connect(&host.docker, host.tls.as_ref())
        .await
        .map_err(|e| Error::Message(format!("host `{}`: {e}", host.name)))
}

pub fn reporter(progress: ProgressFormat) -> Box<dyn Reporter> {
    match progress {
        ProgressFormat::Auto if std::io::stderr().is_terminal() => Box::new(TtyReporter::new()),
        format => Box::new(LineReporter::new(std::io::stderr(), format)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(dir: &std::path::Path) -> Common {
        Common {
            config: dir.join("gantry.toml"),
            state_dir: Some(dir.join("state")),
            color: false,
        }
    }

    #[test]
    fn a_lock_held_by_a_live_run_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let common = common(dir.path());
        let session = Session::new(&common).unwrap();
        let mut err = Vec::new();
        let held = session.lock("apply", &mut err).unwrap();
        // This process is alive: its lock is not stale, so it is not taken over.
        match session.lock("prune", &mut err) {
            Err(e @ Error::Locked(_)) => {
                assert_eq!(
                    crate::ops::outcome::exit_status(&Err(e)),
                    ExitStatus::Locked
                )
            }
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        drop(held);
        assert!(session.lock("prune", &mut err).is_ok());
    }

    #[test]
    fn nothing_pending_or_held_without_a_journal_and_no_runtime_until_asked() {
        let dir = tempfile::tempdir().unwrap();
        let common = common(dir.path());
        let session = Session::new(&common).unwrap();
        assert!(session.pending().unwrap().is_none());
        assert!(session.held().unwrap().is_none());
        assert!(session.runtime.get().is_none());
        assert_eq!(session.block_on(async { 2 + 2 }).unwrap(), 4);
        assert!(session.runtime.get().is_some());
    }
}
