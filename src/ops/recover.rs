//! The recovery of a run that did not finish (`apply --resume`, `apply --undo`, `rollback`):
//! under the lock, reconcile with the engines, then undo the run or prepare to resume it.

use std::io::Write;

use super::outcome::{Choices, Halt};
use super::session::{Lbs, Session, confirm, connect};
use super::{Error, emit};
use crate::engine::recover::{Mode, Recovered};
use crate::engine::report::ProgressFormat;
use crate::model::Model;
use crate::state::journal::{Journal, Undo};

/// What an undo of `journal` will do, one line each, for the confirmation.
pub fn undo_summary(journal: &Journal) -> String {
    let (mut created, mut stopped, mut restarted) = (0, 0, 0);
    let mut lbs: Vec<&str> = Vec::new();
    let mut swarm: Vec<String> = Vec::new();
    let mut execs = 0;
    for u in journal.undos() {
        match u {
            Undo::Exec { .. } => execs += 1,
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
    if execs > 0 {
        s.push_str(&format!(
            "  - run the old colour's resume_command (or idle_command) again in {execs} replica(s)\n"
        ));
    }
    s
}

/// Reconciles and then undoes or prepares to resume the unfinished run of `journal`, under
/// the lock, driving `lbs`. `Recovered::Halted` comes back as [`Halt::UndoFailed`].
pub fn recover(
    session: &Session<'_>,
    model: &Model,
    journal: &Journal,
    (mode, progress): (Mode, ProgressFormat),
    lbs: Lbs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Recovered, Error> {
    let state_dir = session.state_dir();
    let lock = session.lock("recover", err)?;
    let state = state_dir.read()?.ok_or_else(|| {
        Error::Message("the journal names a run, but there is no state file".into())
    })?;
    let recovered = session.block_on(async {
        let hosts = connect(model).await?;
        let journal_file = session.reopen_journal()?;
        let run = session.start(lock, journal_file, model, (hosts, lbs), progress)?;
        let (recovered, _notes, _state) =
            crate::engine::recover::recover(journal, state, mode, &run.env()).await;
        Ok::<_, Error>(recovered)
    })??;
    match recovered {
        Recovered::ReadyToResume => emit(
            out,
            "\nReconciled with the engine; continuing from where the run stopped.\n\n",
        )?,
        Recovered::Halted { error } => {
            return Err(Error::Halted(Box::new(Halt::UndoFailed { error })));
        }
        Recovered::Undone { .. } => {}
    }
    Ok(recovered)
}

/// Says which run did not finish (then `intro`) and what undoing it does, asks unless
/// `yes`, then undoes it (`recover` in `Mode::Undo`).
pub fn undo_confirmed(
    session: &Session<'_>,
    model: &Model,
    journal: &Journal,
    intro: &str,
    (yes, progress): (bool, ProgressFormat),
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Recovered, Error> {
    let lbs = crate::drivers::lb::drivers(
        model,
        session.state_dir().read()?.as_ref(),
        &session.common().config_dir(),
    );
    emit(out, &format!("{}\n{intro}", Choices::header_of(journal)))?;
    emit(out, &undo_summary(journal))?;
    confirm("undo it", yes, out)?;
    recover(
        session,
        model,
        journal,
        (Mode::Undo, progress),
        lbs,
        out,
        err,
    )
}
