//! Undo of a run, newest change first (after a failure, or from the journal after a crash),
//! and the ports that moved when kept containers were started again.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::blue_green::exec_bounded;
use super::replica::wait_healthy;
use super::report::Event;
use super::run::Run;
use super::swarm;
use crate::ports::{ContainerRuntime, Restart};
use crate::state::journal::{Entry, Undo};
use crate::state::{Replica, ReplicaStatus, State};

impl<R: ContainerRuntime> Run<'_, R> {
    /// Undoes this run and puts `original` back as the state (with the ports restarted
    /// containers were given, and the history as it is now).
    pub(super) async fn restore_to(&self, original: State) -> Result<(), String> {
        let _ = self.journal(Entry::Restoring { at: self.now() });
        let moved = self.restore().await?;
        let mut current = self.st();
        let mut state = original;
        state.serial = current.serial;
        state.history = std::mem::take(&mut current.history);
        // A task that ran did its work (a migration is not undone): it is not run again for
        // the same image.
        state.tasks = std::mem::take(&mut current.tasks);
        moved.apply(&mut state);
        *current = state;
        Ok(())
    }

    /// Undoes this apply, newest change first.
    pub(super) async fn restore(&self) -> Result<Moved, String> {
        let mut problems = Vec::new();
        // A restarted container with an engine-chosen port gets a new one: the load balancers
        // and the state must follow it.
        let mut moved = Moved::default();
        loop {
            let next = self.undo.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(u) = next else { break };
            match u {
                Undo::Exec { host, id, command } => {
                    let Ok(t) = self.target(&Some(host)) else {
                        continue;
                    };
                    match exec_bounded(&t.runtime, &id, &command).await {
                        Ok(()) => self.env.reporter.event(Event::Note {
                            message: format!(
                                "ran `{}` in {} again",
                                command.join(" "),
                                &id[..12.min(id.len())]
                            ),
                        }),
                        Err(e) => problems.push(format!(
                            "running `{}` in {id} again: {e}",
                            command.join(" ")
                        )),
                    }
                }
                Undo::Swarm { .. } => {
                    if let Err(e) = swarm::undo(self, &u).await {
                        problems.push(e);
                    }
                }
                Undo::Members { lb, mut previous } => {
                    for m in &mut previous {
                        if let Some(new) = moved.addresses.get(&m.address) {
                            m.address = new.clone();
                        }
                    }
                    let current = self.members_of(&lb);
                    if let Some(driver) = self.env.lbs.get(&lb) {
                        match driver.set_members(&current, &previous).await {
                            Ok(()) => {
                                if let Some(entry) = self.st().lbs.get_mut(&lb) {
                                    entry.members = previous;
                                }
                            }
                            Err(e) => {
                                problems.push(format!("restoring the members of lb.{lb}: {e}"))
                            }
                        }
                    }
                }
                Undo::Restarted { host, id, grace } => {
                    if let Ok(t) = self.target(&Some(host)) {
                        // Kept again: stopped, also across an engine restart. (Gone is fine.)
                        let _ = t.runtime.set_restart(&id, Restart::No).await;
                        match t.runtime.stop(&id, grace).await {
                            Ok(()) => self.mark(&id, Some(ReplicaStatus::Stopped)),
                            Err(e) => problems.push(format!("stopping {id} again: {e}")),
                        }
                    }
                }
                Undo::Created { host, id, grace } => {
                    let Ok(t) = self.target(&Some(host)) else {
                        continue;
                    };
                    let r = t.runtime.stop(&id, grace).await;
                    match r.and(t.runtime.remove(&id).await) {
                        Ok(()) => self.mark(&id, None),
                        Err(e) => problems.push(format!("removing {id}: {e}")),
                    }
                }
                Undo::Stopped {
                    host,
                    id,
                    spec,
                    port,
                } => {
                    let started = Instant::now();
                    let Ok(t) = self.target(&Some(host.clone())) else {
                        continue;
                    };
                    // After a crash the stop may still be under way on the engine's side:
                    // stopping again waits for it (the replica left its load balancers
                    // before it was stopped), so the start below is the last word.
                    if self.recovering.load(Ordering::SeqCst) {
                        let _ = t.runtime.stop(&id, spec.stop_grace_period.0).await;
                    }
                    // Kept with the policy `no`: running again, it gets its service's back.
                    if let Err(e) = t.runtime.set_restart(&id, spec.restart).await {
                        problems.push(format!("restoring the restart policy of {id}: {e}"));
                        continue;
                    }
                    if let Err(e) = t.runtime.start(&id).await {
                        problems.push(format!("restarting {id}: {e}"));
                        continue;
                    }
                    let new_port = t
                        .runtime
                        .inspect(&id)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|i| i.host_port)
                        .or(port);
                    if let (Some(old), Some(new)) = (port, new_port)
                        && old != new
                    {
                        moved.addresses.insert(
                            format!("{}:{old}", t.address),
                            format!("{}:{new}", t.address),
                        );
                    }
                    if let Some(new) = new_port {
                        moved.ports.insert(id.clone(), new);
                    }
                    self.mark(&id, Some(ReplicaStatus::Running));
                    let replica = Replica {
                        index: 0,
                        host: host.clone(),
                        name: id.clone(),
                        container_id: id.clone(),
                        image_id: None,
                        revision: 0,
                        host_port: new_port,
                        status: ReplicaStatus::Running,
                    };
                    match wait_healthy(self.env.prober, t, &spec, &replica).await {
                        Ok(_) => self.env.reporter.event(Event::Note {
                            message: format!(
                                "restored {} in {:.1}s",
                                &id[..12.min(id.len())],
                                started.elapsed().as_secs_f64()
                            ),
                        }),
                        Err(e) => problems.push(format!(
                            "restarted {id} but it is not healthy: {}",
                            e.reason
                        )),
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(moved)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Records what a restore did to one container: a new status, or gone (`None`).
    pub(super) fn mark(&self, id: &str, status: Option<ReplicaStatus>) {
        let mut state = self.st();
        for s in state.services.values_mut() {
            match status {
                Some(status) => {
                    if let Some(r) = s
                        .replicas
                        .iter_mut()
                        .find(|r| r.container_id == id || r.name == id)
                    {
                        r.status = status;
                    }
                }
                None => s.replicas.retain(|r| r.container_id != id && r.name != id),
            }
        }
    }
}

/// Ports that changed when containers were started again during a restore.
#[derive(Debug, Default)]
pub(super) struct Moved {
    /// Old `host:port` -> new `host:port`.
    addresses: BTreeMap<String, String>,
    /// Container ID -> its host port now.
    ports: BTreeMap<String, u16>,
}

impl Moved {
    /// Applies the moves to a state (the snapshot a successful restore goes back to).
    pub(super) fn apply(&self, state: &mut State) {
        for s in state.services.values_mut() {
            for r in &mut s.replicas {
                if let Some(p) = self.ports.get(&r.container_id) {
                    r.host_port = Some(*p);
                }
            }
        }
        for lb in state.lbs.values_mut() {
            for m in &mut lb.members {
                if let Some(new) = self.addresses.get(&m.address) {
                    m.address = new.clone();
                }
            }
        }
    }
}
