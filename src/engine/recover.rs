//! Recovery of a run that died half way (kill -9, power loss, an engine restart, an
//! interrupt). First the recorded state is reconciled with what the engines run: containers
//! are found by their labels, so that none gantry created is left unmanaged. Then the run is
//! undone from its journal (every announced change has its undo), or prepared to be resumed
//! by a new apply.

use std::collections::BTreeMap;

use super::report::Event;
use super::run::Run;
use super::{ApplyInputs, Hold, RunEnv};
use crate::ports::{ContainerRuntime, ContainerState, labels};
use crate::state::journal::Journal;
use crate::state::{Origin, Outcome, Replica, ReplicaStatus, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Put back the state the run started from.
    Undo,
    /// Make the recorded state true (and the load balancers agree with it), so that a new
    /// apply continues from where the run stopped.
    Resume,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Recovered {
    /// Undone: the revision the run started from runs again.
    Undone { revision: u64 },
    /// Reconciled; a new apply continues.
    ReadyToResume,
    /// The undo did not complete: a human must look.
    Halted { error: String },
}

/// Recovers the unfinished run of `journal` (the caller checked there is one). Returns what
/// came of it, the notes on what reconciling found, and the state to keep (also saved).
pub async fn recover<R: ContainerRuntime>(
    journal: &Journal,
    state: State,
    mode: Mode,
    env: &RunEnv<'_, R>,
) -> (Recovered, Vec<String>, State) {
    let Some(unfinished) = journal.unfinished() else {
        return (Recovered::ReadyToResume, Vec::new(), state);
    };
    let what = unfinished.describe();
    let prior = unfinished.prior.clone();
    // A restore needs no inputs of its own: it starts again what it kept, creates nothing,
    // and records no revision.
    let (no_env, no_image_ids) = (BTreeMap::new(), BTreeMap::new());
    let inputs = ApplyInputs {
        env: &no_env,
        image_ids: &no_image_ids,
        image_digests: &no_image_ids,
        origin: Origin::Other(String::new()),
        hold: Hold::No,
    };
    let run = Run::new(env, &inputs, unfinished.revision, state);
    let say = |notes: &[String]| {
        for message in notes {
            env.reporter.event(Event::Note {
                message: message.clone(),
            });
        }
    };
    let mut notes = match run.reconcile(Some(unfinished.revision)).await {
        Ok(notes) => {
            say(&notes);
            notes
        }
        Err(e) => {
            let error = format!("cannot read what the engine runs: {e}");
            return (Recovered::Halted { error }, Vec::new(), run.into_state());
        }
    };
    // A members change whose outcome is unknown may have reached the load balancer.
    {
        let mut st = run.st();
        for (lb, next) in journal.maybe_members() {
            if let Some(entry) = st.lbs.get_mut(lb) {
                for m in next {
                    if !entry.members.iter().any(|x| x.address == m.address) {
                        entry.members.push(m.clone());
                    }
                }
                entry.members.sort();
            }
        }
    }
    let _ = run.save();
    let outcome = match mode {
        Mode::Undo => {
            *run.undo.lock().unwrap_or_else(|e| e.into_inner()) = journal.undos();
            run.recovering
                .store(true, std::sync::atomic::Ordering::SeqCst);
            match run.restore_to(prior).await {
                Ok(()) => {
                    // What the undo could not know about (a replica that died meanwhile).
                    // The interrupted revision's unrecorded containers go too: a create in
                    // flight at the crash may have completed since the first look.
                    if let Ok(more) = run.reconcile(Some(unfinished.revision)).await {
                        say(&more);
                        notes.extend(more);
                    }
                    run.finish(
                        Outcome::Interrupted,
                        BTreeMap::new(),
                        Some(format!("{what} Undone.")),
                    );
                    Recovered::Undone {
                        revision: run.st().revision,
                    }
                }
                Err(error) => {
                    run.finish(
                        Outcome::Halted,
                        BTreeMap::new(),
                        Some(format!("{what} Undoing it failed: {error}")),
                    );
                    Recovered::Halted { error }
                }
            }
        }
        Mode::Resume => match run.prepare_resume(unfinished.revision).await {
            Ok(more) => {
                say(&more);
                notes.extend(more);
                run.finish(
                    Outcome::Interrupted,
                    BTreeMap::new(),
                    Some(format!("{what} Resumed by the next revision.")),
                );
                Recovered::ReadyToResume
            }
            Err(error) => {
                let _ = run.save();
                Recovered::Halted { error }
            }
        },
    };
    (outcome, notes, run.into_state())
}

impl<R: ContainerRuntime> Run<'_, R> {
    /// Makes the recorded replicas what the engines say: statuses and ports updated, gone
    /// containers forgotten, unrecorded ones with this project's labels adopted. Containers
    /// of the `interrupted` revision that were never recorded are removed: nothing refers to
    /// them (load balancers are only given recorded replicas).
    pub(super) async fn reconcile(&self, interrupted: Option<u64>) -> Result<Vec<String>, String> {
        let mut notes = Vec::new();
        for (host, target) in self.env.hosts {
            // Adopted containers (`gantry adopt`) carry no label of gantry's: those the state
            // records on this host are looked for among all.
            let adopted: Vec<String> = self
                .st()
                .services
                .values()
                .flat_map(|s| s.replicas.iter())
                .filter(|r| r.host == *host)
                .map(|r| r.container_id.clone())
                .collect();
            let found: Vec<_> = target
                .runtime
                .list(&[])
                .await
                .map_err(|e| format!("host `{host}`: {e}"))?
                .into_iter()
                .filter(|c| {
                    (c.labels.get(labels::PROJECT).map(String::as_str) == Some(self.env.project)
                        && c.labels.get(labels::HOST).is_none_or(|h| h == host))
                        || adopted.contains(&c.id)
                })
                .collect();
            for (name, s) in self.st().services.iter_mut() {
                s.replicas.retain(|r| {
                    let there = r.host != *host || found.iter().any(|c| c.id == r.container_id);
                    if !there {
                        notes.push(format!(
                            "service.{name} #{} ({}) is gone from host `{host}`: forgotten",
                            r.index, r.name
                        ));
                    }
                    there
                });
            }
            for c in &found {
                let status = if c.state == ContainerState::Running {
                    ReplicaStatus::Running
                } else {
                    ReplicaStatus::Stopped
                };
                let label = |key| c.labels.get(key).cloned().unwrap_or_default();
                // A task's container is never needed after its run: one left by a run that
                // died goes, whatever its revision.
                if c.labels.contains_key(labels::TASK) {
                    match target.runtime.remove(&c.id).await {
                        Ok(()) => notes.push(format!(
                            "removed {}: the container of task.{} of a run that did not finish",
                            c.name,
                            label(labels::TASK)
                        )),
                        Err(e) => return Err(format!("removing {}: {e}", c.name)),
                    }
                    continue;
                }
                let service = label(labels::SERVICE);
                let revision: u64 = label(labels::REVISION).parse().unwrap_or(0);
                let index: u32 = label(labels::REPLICA).parse().unwrap_or(0);
                if Some(revision) == interrupted && !self.recorded(&c.id) {
                    match target.runtime.remove(&c.id).await {
                        Ok(()) => notes.push(format!(
                            "removed {}: created by the interrupted revision {revision} and never recorded",
                            c.name
                        )),
                        Err(e) => return Err(format!("removing {}: {e}", c.name)),
                    }
                    continue;
                }
                let mut st = self.st();
                if let Some(r) = st
                    .services
                    .values_mut()
                    .flat_map(|s| s.replicas.iter_mut())
                    .find(|r| r.container_id == c.id)
                {
                    if r.status != status {
                        notes.push(format!(
                            "{} is {} on the engine, recorded as {}: updated",
                            r.name,
                            describe(status),
                            describe(r.status)
                        ));
                        r.status = status;
                    }
                    if status == ReplicaStatus::Running && c.host_port.is_some() {
                        r.host_port = c.host_port;
                    }
                    r.image_id = Some(c.image_id.clone());
                    continue;
                }
                match st.services.get_mut(&service) {
                    Some(s) => {
                        s.replicas.push(Replica {
                            index,
                            host: host.clone(),
                            name: c.name.clone(),
                            container_id: c.id.clone(),
                            image_id: Some(c.image_id.clone()),
                            revision,
                            host_port: c.host_port,
                            status,
                        });
                        notes.push(format!(
                            "{} ({} on the engine, revision {revision}) was not recorded: adopted into service.{service}",
                            c.name,
                            describe(status)
                        ));
                    }
                    None => notes.push(format!(
                        "{} carries this project's labels but service `{service}` is not in the state: left alone (inspect it, then `docker rm` it)",
                        c.name
                    )),
                }
            }
        }
        let _ = self.save();
        Ok(notes)
    }

    fn recorded(&self, id: &str) -> bool {
        self.st()
            .services
            .values()
            .any(|s| s.replicas.iter().any(|r| r.container_id == id))
    }

    /// Before a resume: the interrupted revision's containers that do not run are removed
    /// (created and never started, or failed), and every load balancer is given exactly its
    /// recorded members that run.
    async fn prepare_resume(&self, interrupted: u64) -> Result<Vec<String>, String> {
        let mut notes = Vec::new();
        let junk: Vec<(String, String, String)> = self
            .st()
            .services
            .values()
            .flat_map(|s| s.replicas.iter())
            .filter(|r| r.revision == interrupted && r.status == ReplicaStatus::Stopped)
            .map(|r| (r.host.clone(), r.container_id.clone(), r.name.clone()))
            .collect();
        for (host, id, name) in junk {
            let target = self.target(&Some(host))?;
            target
                .runtime
                .remove(&id)
                .await
                .map_err(|e| format!("removing {name}: {e}"))?;
            self.mark(&id, None);
            notes.push(format!(
                "removed {name}: the interrupted revision created it and it does not run"
            ));
        }
        let services: Vec<String> = self
            .st()
            .services
            .keys()
            .map(|n| format!("service.{n}"))
            .collect();
        let running: Vec<String> = self
            .member_addresses(&services)
            .into_iter()
            .map(|m| m.address)
            .collect();
        let lbs: Vec<String> = self.st().lbs.keys().cloned().collect();
        for lb in lbs {
            let Some(driver) = self.env.lbs.get(&lb) else {
                continue;
            };
            let current = self.members_of(&lb);
            let next: Vec<_> = current
                .iter()
                .filter(|m| running.contains(&m.address))
                .cloned()
                .collect();
            driver
                .set_members(&current, &next)
                .await
                .map_err(|e| format!("lb.{lb}: {e}"))?;
            if next.len() != current.len() {
                notes.push(format!(
                    "lb.{lb}: {} member(s) that do not run were taken out",
                    current.len() - next.len()
                ));
            }
            if let Some(entry) = self.st().lbs.get_mut(&lb) {
                entry.members = next;
            }
        }
        let _ = self.save();
        Ok(notes)
    }
}

fn describe(status: ReplicaStatus) -> &'static str {
    match status {
        ReplicaStatus::Running => "running",
        ReplicaStatus::Stopped => "stopped",
    }
}
