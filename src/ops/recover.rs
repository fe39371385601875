//! What apply and rollback share around a run: the state lock (a stale one, left by a dead
//! process on this host, is taken over), the journal, the two-step interrupt, and the
//! recovery of a run that did not finish (`apply --resume`, `apply --undo`, `rollback`).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use super::{Common, Error, emit};
use crate::drivers::docker::DockerRuntime;
use crate::drivers::fs::{LockError, StateDir, StateLock, hostname, process_alive};
use crate::drivers::journal::JournalFile;
use crate::drivers::probe::HttpProber;
use crate::engine::recover::{Mode, Recovered};
use crate::engine::report::{LineReporter, ProgressFormat, Reporter, TtyReporter};
use crate::engine::{RunEnv, StateSink, Target};
use crate::exit::ExitStatus;
use crate::model::Model;
use crate::ports::ContainerRuntime as _;
use crate::state::State;
use crate::state::journal::{Entry, Journal, Undo};

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Saves the state file and appends to the journal.
pub struct FileSink<'a> {
    pub dir: &'a StateDir,
    pub journal: Arc<JournalFile>,
}

impl StateSink for FileSink<'_> {
    fn save(&self, state: &State) -> Result<(), String> {
        self.dir.write(state).map_err(|e| e.to_string())
    }

    fn journal(&self, entry: &Entry) -> Result<(), String> {
        self.journal.append(entry).map_err(|e| e.to_string())
    }
}

/// The journal of a run that did not finish and whose process is gone; `None` when the last
/// run finished, or is still running (its live process holds the lock).
pub fn pending(state_dir: &StateDir) -> Result<Option<Journal>, Error> {
    let Some(journal) = state_dir.read_journal()? else {
        return Ok(None);
    };
    if journal.unfinished().is_none_or(|u| u.held) {
        return Ok(None);
    }
    if let Some(lock) = state_dir.lock_holder()?
        && lock.pid != std::process::id()
        && (lock.host != hostname() || process_alive(lock.pid))
    {
        return Ok(None);
    }
    Ok(Some(journal))
}

/// The journal of a blue-green release held at its preview (`gantry promote` continues it).
pub fn held(state_dir: &StateDir) -> Result<Option<Journal>, Error> {
    Ok(state_dir
        .read_journal()?
        .filter(|j| j.unfinished().is_some_and(|u| u.held)))
}

/// Takes the state lock. A lock left by a dead process on this host is stale: it is taken
/// over, with a note. `Ok(None)`: a live run holds it (said on `err`; exit 5).
pub fn take_lock(
    state_dir: &StateDir,
    operation: &str,
    err: &mut dyn Write,
) -> Result<Option<StateLock>, Error> {
    for _ in 0..2 {
        match state_dir.lock(operation, &now()) {
            Ok(lock) => return Ok(Some(lock)),
            Err(LockError::Held(info, true)) => {
                emit(
                    err,
                    &format!(
                        "note: taking over the lock left by pid {} on {} ({} since {}): that process is gone.\n",
                        info.pid, info.host, info.operation, info.started_at
                    ),
                )?;
                state_dir.force_unlock()?;
            }
            Err(held @ LockError::Held(..)) => {
                emit(err, &format!("error: {held}\n"))?;
                return Ok(None);
            }
            Err(LockError::Fs(e)) => return Err(e.into()),
        }
    }
    Err(Error::Message(
        "the state lock changed hands while it was being taken over; try again".into(),
    ))
}

/// Asks `question` on the terminal unless `yes`; without a terminal, refuses.
pub fn confirm(verb: &str, yes: bool, out: &mut dyn Write) -> Result<bool, Error> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Message(format!(
            "refusing to {verb} without confirmation: no terminal to ask on. Pass --yes, or apply a saved plan file"
        )));
    }
    emit(
        out,
        &format!("\nDo you want to {verb}? Only `yes` is accepted: "),
    )?;
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() != "yes" {
        emit(out, "Cancelled; nothing was changed.\n")?;
        return Ok(false);
    }
    Ok(true)
}

/// The first SIGINT/SIGTERM sets `flag` (the engine finishes the steps in flight and stops
/// safely); the second journals `Aborted` and exits at once with status 4.
pub fn watch_interrupts(flag: Arc<AtomicBool>, journal: Arc<JournalFile>, lock: PathBuf) {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
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
                let _ = std::fs::remove_file(&lock);
                let _ = writeln!(
                    std::io::stderr(),
                    "\nsecond interrupt: stopped at once; the journal is on disk. `gantry apply --resume` continues, `gantry apply --undo` undoes (`gantry rollback` undoes too)."
                );
                std::process::exit(ExitStatus::FailedHalted.code());
            }
        }
    });
}

/// Connects every host of the model (pre-flight: nothing is touched if one is missing).
pub async fn connect(model: &Model) -> Result<BTreeMap<String, Target<DockerRuntime>>, Error> {
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

pub fn reporter(progress: ProgressFormat) -> Box<dyn Reporter> {
    match progress {
        ProgressFormat::Auto if std::io::stderr().is_terminal() => Box::new(TtyReporter::new()),
        format => Box::new(LineReporter::new(std::io::stderr(), format)),
    }
}

/// What an undo of `journal` will do, one line each, for the confirmation.
pub fn undo_summary(journal: &Journal) -> String {
    let (mut created, mut stopped, mut restarted) = (0, 0, 0);
    let mut lbs: Vec<&str> = Vec::new();
    let mut swarm: Vec<String> = Vec::new();
    for u in journal.undos() {
        match u {
            Undo::Created { .. } => created += 1,
            Undo::Stopped { .. } => stopped += 1,
            Undo::Restarted { .. } => restarted += 1,
            Undo::Members { .. } => {}
            Undo::Swarm {
                name,
                created: true,
                ..
            } => swarm.push(format!("  - remove the Swarm service {name} it created\n")),
            Undo::Swarm { name, .. } => swarm.push(format!(
                "  - have Swarm roll the service {name} back to its previous spec\n"
            )),
        }
    }
    for (lb, _) in journal.maybe_members() {
        if !lbs.contains(&lb) {
            lbs.push(lb);
        }
    }
    let mut s = String::from("Undoing it will:\n");
    s.push_str(&format!(
        "  - remove the {created} container(s) it created (and any it left unrecorded)\n"
    ));
    s.push_str(&format!(
        "  - start again the {stopped} container(s) it stopped, and wait until they are healthy\n"
    ));
    if restarted > 0 {
        s.push_str(&format!(
            "  - stop again the {restarted} kept container(s) it started\n"
        ));
    }
    for lb in lbs {
        s.push_str(&format!(
            "  - give lb.{lb} back the members it had before\n"
        ));
    }
    for line in swarm {
        s.push_str(&line);
    }
    s
}

/// Reconciles and then undoes or prepares to resume the unfinished run of `journal`, under
/// the lock. Returns the exit status when the command ends here, `None` when a resume goes
/// on to apply.
#[allow(clippy::too_many_arguments)]
pub fn recover(
    common: &Common,
    model: &Model,
    journal: &Journal,
    mode: Mode,
    progress: ProgressFormat,
    lbs: &BTreeMap<String, Box<dyn crate::ports::LoadBalancer>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Result<Recovered, ExitStatus>, Error> {
    let state_dir = common.state_dir();
    let Some(lock) = take_lock(&state_dir, "recover", err)? else {
        return Ok(Err(ExitStatus::Locked));
    };
    let state = state_dir.read()?.ok_or_else(|| {
        Error::Message("the journal names a run, but there is no state file".into())
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Message(format!("cannot start the async runtime: {e}")))?;
    let recovered = runtime.block_on(async {
        let hosts = connect(model).await?;
        let journal_file = Arc::new(state_dir.reopen_journal()?);
        let interrupt = Arc::new(AtomicBool::new(false));
        watch_interrupts(
            interrupt.clone(),
            journal_file.clone(),
            lock.path().to_path_buf(),
        );
        let reporter = reporter(progress);
        let sink = FileSink {
            dir: &state_dir,
            journal: journal_file,
        };
        let run_env = RunEnv {
            project: &model.project,
            hosts: &hosts,
            prober: &HttpProber::new(),
            commands: &crate::drivers::command::LocalCommands,
            clock: &crate::drivers::clock::SystemClock,
            reporter: reporter.as_ref(),
            sink: &sink,
            lbs,
            keep_previous: model.keep_previous,
            interrupt: &interrupt,
        };
        let (recovered, _notes, _state) =
            crate::engine::recover::recover(journal, state, mode, &run_env).await;
        Ok::<_, Error>(recovered)
    })?;
    drop(lock);
    match &recovered {
        Recovered::Undone { revision } => emit(
            out,
            &format!("\nUndone: revision {revision} runs again, as before the interrupted run.\n"),
        )?,
        Recovered::ReadyToResume => emit(
            out,
            "\nReconciled with the engine; continuing from where the run stopped.\n\n",
        )?,
        Recovered::Halted { error } => {
            emit(
                err,
                &format!(
                    "\nerror: the interrupted run could not be undone: {error}\nA human must look: `gantry status` shows what runs.\n"
                ),
            )?;
            return Ok(Err(ExitStatus::FailedHalted));
        }
    }
    Ok(Ok(recovered))
}

/// Says which run did not finish (then `intro`) and what undoing it does, asks unless
/// `yes`, then undoes it (`recover` in `Mode::Undo`).
pub fn undo_confirmed(
    common: &Common,
    model: &Model,
    journal: &Journal,
    intro: &str,
    (yes, progress): (bool, ProgressFormat),
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Result<Recovered, ExitStatus>, Error> {
    let state = common.state_dir().read()?;
    let lbs = super::apply::lb_drivers(model, state.as_ref(), &common.config_dir());
    emit(out, &format!("{}\n{intro}", choose_header(journal)))?;
    emit(out, &undo_summary(journal))?;
    if !confirm("undo it", yes, out)? {
        return Ok(Err(ExitStatus::Error));
    }
    recover(common, model, journal, Mode::Undo, progress, &lbs, out, err)
}

/// One line saying which run did not finish.
pub fn choose_header(journal: &Journal) -> String {
    journal
        .unfinished()
        .map(|u| format!("The last run did not finish: {}", u.describe()))
        .unwrap_or_default()
}

/// The message when a run did not finish and the user has not said what to do.
pub fn choose(journal: &Journal) -> String {
    let Some(u) = journal.unfinished() else {
        return String::new();
    };
    format!(
        "the last run did not finish: {}\nChoose:\n  gantry apply --resume   reconcile with the engine, then continue to the configuration\n  gantry apply --undo     put revision {} back as it was before that run\n  gantry rollback         the same undo (an incident's way out)\n`gantry status` shows what runs now.",
        u.describe(),
        u.prior.revision
    )
}
