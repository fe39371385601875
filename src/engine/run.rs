//! One run of the executor: the plan's waves scheduled (the resources of a wave run
//! concurrently, each host's steps in order), interrupts and hold points honoured, every step
//! announced in the journal and followed by a save, and the end decided: success, hold,
//! interruption, pause, or restore.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use super::membership::Leaving;
use super::report::Event;
use super::resources::{HostNeeds, host_needs};
use super::{
    ApplyInputs, ApplyOutcome, Failure, Hold, RunEnv, StepError, Target, service_spec, swarm,
};
use crate::model::{OnFailure, ServiceSpec};
use crate::plan::{Action, Plan, ResourceChange, Step, StepOp};
use crate::ports::ContainerRuntime;
use crate::state::journal::{Entry, Undo};
use crate::state::{Outcome, ReplicaStatus, RevisionService, ServiceState, State};

/// The executor's working set for one run: shared by the resources of a wave (behind locks,
/// none held across an await).
pub(super) struct Run<'a, R: ContainerRuntime> {
    pub(super) env: &'a RunEnv<'a, R>,
    pub(super) inputs: &'a ApplyInputs<'a>,
    pub(super) revision: u64,
    /// Shared by the services of a wave, which run concurrently; never held across an await.
    pub(super) state: Mutex<State>,
    pub(super) undo: Mutex<Vec<Undo>>,
    /// Set when a step fails: the other services of the wave stop at their next step.
    pub(super) cancelled: AtomicBool,
    /// One membership change at a time (read, change, write the members of an LB).
    pub(super) lb_lock: tokio::sync::Mutex<()>,
    /// Members that left a load balancer and await their drain, per (service, host).
    pub(super) leaving: Mutex<BTreeMap<(String, String), Vec<Leaving>>>,
    /// The last step that finished, for the message after an interrupt.
    pub(super) last_finished: Mutex<Option<String>>,
    /// Undoing a run that crashed: its last engine request may still be under way.
    pub(super) recovering: AtomicBool,
    /// Per host, the network and volumes the run's new containers need there.
    pub(super) needs: Mutex<BTreeMap<String, HostNeeds>>,
    /// Hosts whose network and volumes this run has made sure of (held while it does).
    pub(super) prepared: tokio::sync::Mutex<BTreeSet<String>>,
    /// Every service's spec after the plan (a task runs from its service's).
    pub(super) specs: Mutex<BTreeMap<String, ServiceSpec>>,
}

/// Why a resource's steps stopped before their end.
pub(super) enum Halt {
    Failed(Failure),
    /// Another resource failed, or an interrupt asked to stop.
    Cancelled,
    /// At a blue-green hold point: the index of the next step.
    Held(usize),
}

impl<'a, R: ContainerRuntime> Run<'a, R> {
    /// Runs `plan` wave by wave from `start` (resource -> first step; 0 when absent), then
    /// succeeds, holds, stops, or restores `original`.
    pub(super) async fn execute(
        self,
        plan: &Plan,
        original: State,
        start: &BTreeMap<String, usize>,
    ) -> (ApplyOutcome, State) {
        let revision = self.revision;
        *self.needs.lock().unwrap_or_else(|e| e.into_inner()) = host_needs(plan);
        *self.specs.lock().unwrap_or_else(|e| e.into_inner()) = plan
            .changes
            .iter()
            .filter_map(|c| Some((c.address.name.clone(), service_spec(&c.after)?.clone())))
            .collect();
        // Wave by wave; the resources of one wave are independent and run concurrently.
        let mut waves: BTreeMap<usize, Vec<&ResourceChange>> = BTreeMap::new();
        for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
            waves.entry(c.wave).or_default().push(c);
        }
        let mut failed: Option<(Failure, OnFailure)> = None;
        // The failure is a task's (which changes nothing a restore would undo).
        let mut task_failed = false;
        let mut stopped_early = false;
        // Where each resource stopped at a hold point (its next step), and the resources not begun.
        let mut held: BTreeMap<String, usize> = BTreeMap::new();
        for wave in waves.values() {
            if !held.is_empty() {
                for c in wave {
                    held.insert(
                        c.address.to_string(),
                        start.get(&c.address.to_string()).copied().unwrap_or(0),
                    );
                }
                continue;
            }
            let results = futures_util::future::join_all(wave.iter().map(|c| {
                // A promote runs only what the hold left; everything else is done.
                let from = match start.get(&c.address.to_string()) {
                    Some(i) => *i,
                    None if start.is_empty() => 0,
                    None => usize::MAX,
                };
                self.change(c, from)
            }))
            .await;
            for (change, result) in wave.iter().zip(results) {
                match (result, &failed) {
                    (Err(Halt::Failed(f)), None) => {
                        let policy = service_spec(&change.after)
                            .or(service_spec(&change.before))
                            .map_or(OnFailure::Rollback, |s| s.rollout.on_failure);
                        task_failed = change.address.kind == crate::graph::ResourceKind::Task;
                        failed = Some((f, policy));
                    }
                    (Err(Halt::Cancelled), _) => stopped_early = true,
                    (Err(Halt::Held(at)), _) => {
                        held.insert(change.address.to_string(), at);
                    }
                    _ => {}
                }
            }
            if failed.is_some() || stopped_early {
                break;
            }
        }

        match failed {
            None if !held.is_empty() && !stopped_early => {
                // Held at the preview: the journal keeps the run open for `gantry promote`.
                let _ = self.journal(Entry::Held {
                    at: self.now(),
                    plan: Box::new(plan.clone()),
                    positions: held,
                    image_ids: self.inputs.image_ids.clone(),
                });
                if let Some(record) = self
                    .st()
                    .history
                    .iter_mut()
                    .rev()
                    .find(|r| r.revision == revision)
                {
                    record.outcome = Outcome::Held;
                }
                let _ = self.save();
                (ApplyOutcome::Held { revision }, self.into_state())
            }
            None if stopped_early => {
                // Interrupted between steps: everything done so far is recorded; the journal stays
                // open so that `--resume` or `--undo` can take it from here.
                let _ = self.journal(Entry::Interrupted { at: self.now() });
                let _ = self.save();
                let after = self.last_finished();
                (ApplyOutcome::Interrupted { after }, self.into_state())
            }
            None => {
                let services = self.revision_services();
                self.st().revision = revision;
                self.finish(Outcome::Succeeded, services, None);
                // Only old containers go from here on; an interruption now loses nothing.
                self.cleanup(plan).await;
                (ApplyOutcome::Succeeded { revision }, self.into_state())
            }
            Some((failure, OnFailure::Pause)) => {
                self.env.reporter.event(Event::Note {
                    message: format!(
                        "on_failure = \"pause\": leaving everything where it stopped. {failure}"
                    ),
                });
                self.finish(Outcome::Halted, BTreeMap::new(), Some(failure.to_string()));
                (
                    ApplyOutcome::Halted {
                        failure,
                        restore_error: None,
                    },
                    self.into_state(),
                )
            }
            Some((failure, OnFailure::Rollback)) => {
                self.env.reporter.event(Event::Note {
                    message: format!("restoring revision {} after: {failure}", original.revision),
                });
                let changed = !self
                    .undo
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                match self.restore_to(original).await {
                    Ok(()) => {
                        self.finish(
                            Outcome::RolledBack,
                            BTreeMap::new(),
                            Some(failure.to_string()),
                        );
                        if task_failed && !changed {
                            return (ApplyOutcome::Unchanged { failure }, self.into_state());
                        }
                        (ApplyOutcome::RolledBack { failure }, self.into_state())
                    }
                    Err(e) => {
                        self.finish(
                            Outcome::Halted,
                            BTreeMap::new(),
                            Some(format!("{failure}; restore failed: {e}")),
                        );
                        (
                            ApplyOutcome::Halted {
                                failure,
                                restore_error: Some(e),
                            },
                            self.into_state(),
                        )
                    }
                }
            }
        }
    }

    pub(super) fn new(
        env: &'a RunEnv<'a, R>,
        inputs: &'a ApplyInputs<'a>,
        revision: u64,
        state: State,
    ) -> Self {
        Run {
            env,
            inputs,
            revision,
            state: Mutex::new(state),
            undo: Mutex::new(Vec::new()),
            cancelled: AtomicBool::new(false),
            lb_lock: tokio::sync::Mutex::new(()),
            leaving: Mutex::new(BTreeMap::new()),
            last_finished: Mutex::new(None),
            recovering: AtomicBool::new(false),
            needs: Mutex::new(BTreeMap::new()),
            prepared: tokio::sync::Mutex::new(BTreeSet::new()),
            specs: Mutex::new(BTreeMap::new()),
        }
    }

    /// The time for the state and the journal, from the run's clock.
    pub(super) fn now(&self) -> String {
        self.env.clock.rfc3339()
    }

    /// Journals an entry; a failure is reported here and returned.
    pub(super) fn journal(&self, entry: Entry) -> Result<(), String> {
        let result = self.env.sink.journal(&entry);
        if let Err(e) = &result {
            self.env.reporter.event(Event::Note {
                message: format!("warning: could not write the journal: {e}"),
            });
        }
        result
    }

    /// Announces a change in the journal before making it: no journal, no change.
    pub(super) fn intent(&self, undo: Undo) -> Result<(), StepError> {
        self.journal(Entry::Intent { undo })
            .map_err(|e| StepError::new(format!("the journal could not be written: {e}")))
    }

    pub(super) fn last_finished(&self) -> Option<String> {
        self.last_finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The record of every service in this revision: its spec, the image its newest running
    /// replicas run, and the revision that created them.
    pub(super) fn revision_services(&self) -> BTreeMap<String, RevisionService> {
        let state = self.st();
        state
            .services
            .iter()
            .map(|(n, s)| {
                let running = s
                    .replicas
                    .iter()
                    .filter(|r| r.status == ReplicaStatus::Running);
                let newest = running.clone().max_by_key(|r| r.revision);
                let image_id = newest
                    .and_then(|r| r.image_id.clone())
                    .or_else(|| running.clone().find_map(|r| r.image_id.clone()))
                    .or_else(|| state.swarm.get(n).map(|w| w.image_id.clone()))
                    .or_else(|| self.inputs.image_ids.get(&s.spec.image).cloned());
                // Pulled now, or recorded beside the same image ID before.
                let image_digest = image_id.as_ref().and_then(|id| {
                    (self.inputs.image_ids.get(&s.spec.image) == Some(id))
                        .then(|| self.inputs.image_digests.get(&s.spec.image).cloned())
                        .flatten()
                        .or_else(|| {
                            state.history.iter().rev().find_map(|r| {
                                r.services
                                    .values()
                                    .find(|v| v.image_id.as_ref() == Some(id))
                                    .and_then(|v| v.image_digest.clone())
                            })
                        })
                });
                (
                    n.clone(),
                    RevisionService {
                        spec: s.spec.clone(),
                        image_id,
                        image_digest,
                        replicas_revision: newest.map(|r| r.revision),
                    },
                )
            })
            .collect()
    }

    /// `service`'s spec after the plan.
    pub(super) fn service_spec_of(&self, service: &str) -> Option<ServiceSpec> {
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .cloned()
    }

    pub(super) fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn into_state(self) -> State {
        self.state.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push_undo(&self, u: Undo) {
        self.undo.lock().unwrap_or_else(|e| e.into_inner()).push(u);
    }

    /// Writes the state. A failure is reported here; after a step it also fails the step
    /// (see `change`): containers the state does not know must not pile up.
    pub(super) fn save(&self) -> Result<(), String> {
        let mut state = self.st();
        state.serial += 1;
        let result = self.env.sink.save(&state);
        if let Err(e) = &result {
            self.env.reporter.event(Event::Note {
                message: format!("warning: could not save the state: {e}"),
            });
        }
        result
    }

    pub(super) fn finish(
        &self,
        outcome: Outcome,
        services: BTreeMap<String, RevisionService>,
        failure: Option<String>,
    ) {
        if let Some(last) = self
            .st()
            .history
            .iter_mut()
            .rev()
            .find(|r| r.revision == self.revision)
        {
            last.outcome = outcome;
            last.finished_at = Some(self.now());
            last.services = services;
            last.failure = failure;
        }
        let _ = self.save();
        let _ = self.journal(Entry::End {
            outcome,
            at: self.now(),
        });
    }

    pub(super) fn target(&self, host: &Option<String>) -> Result<&Target<R>, String> {
        let name = host.as_deref().unwrap_or_default();
        self.env
            .hosts
            .get(name)
            .ok_or_else(|| format!("no engine connected for host `{name}`"))
    }

    /// Runs the steps of one resource from step `from`.
    pub(super) async fn change(&self, change: &ResourceChange, from: usize) -> Result<(), Halt> {
        let name = change.address.name.clone();
        let after = service_spec(&change.after).cloned();
        let known = self.st().services.contains_key(&name);
        if let (Some(spec), false) = (&after, known) {
            self.st().services.insert(
                name.clone(),
                // Recorded with no replicas until the change completes: if it stops half way
                // (pause, failure), the next plan scales up what is missing.
                ServiceState {
                    spec: ServiceSpec {
                        replicas: 0,
                        ..spec.clone()
                    },
                    revision: self.revision,
                    replicas: Vec::new(),
                    old_colour: None,
                },
            );
        }
        // Host after host, or `hosts_in_parallel` hosts at a time: each host's steps stay in
        // order. A hold point stops the rollout host by host, whatever the setting.
        let parallel = match self.inputs.hold {
            Hold::No => after
                .as_ref()
                .or(service_spec(&change.before))
                .map_or(1, |s| s.rollout.hosts_in_parallel.max(1)) as usize,
            _ => 1,
        };
        let mut groups: Vec<Vec<(usize, &Step)>> = Vec::new();
        for (index, step) in change.steps.iter().enumerate().skip(from) {
            match groups.last_mut() {
                Some(g) if g[0].1.host == step.host => g.push((index, step)),
                _ => groups.push(vec![(index, step)]),
            }
        }
        for chunk in groups.chunks(parallel) {
            let results = futures_util::future::join_all(chunk.iter().map(|group| async move {
                for &(index, step) in group {
                    self.run_step(change, index, step, from).await?;
                }
                Ok::<(), Halt>(())
            }))
            .await;
            // A failure wins over a hold, a hold over a stop caused by the others.
            let mut stopped = None;
            for r in results {
                match (r, &stopped) {
                    (Err(e @ Halt::Failed(_)), _) => {
                        stopped = Some(e);
                        break;
                    }
                    (Err(e @ Halt::Held(_)), None | Some(Halt::Cancelled)) => stopped = Some(e),
                    (Err(e), None) => stopped = Some(e),
                    _ => {}
                }
            }
            if let Some(e) = stopped {
                return Err(e);
            }
        }
        match (&after, change.action) {
            (_, Action::Destroy) => {}
            (Some(spec), _) => {
                if let Some(s) = self.st().services.get_mut(&name) {
                    s.spec = spec.clone();
                    s.revision = self.revision;
                }
                let _ = self.save();
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// Runs step `index` of `change`: announced in the journal and the progress, the state
    /// saved after it.
    pub(super) async fn run_step(
        &self,
        change: &ResourceChange,
        index: usize,
        step: &Step,
        from: usize,
    ) -> Result<(), Halt> {
        let name = change.address.name.clone();
        if self.cancelled.load(Ordering::SeqCst) || self.env.interrupt.load(Ordering::SeqCst) {
            return Err(Halt::Cancelled);
        }
        if index > from && self.inputs.hold.is_at(&step.op) {
            return Err(Halt::Held(index));
        }
        let started = Instant::now();
        let description = step.describe();
        let batch = step.batch.map(|b| format!("{}/{}", b.number, b.of));
        self.env.reporter.event(Event::StepStarted {
            resource: change.address.to_string(),
            host: step.host.clone(),
            batch: batch.clone(),
            step: description.clone(),
        });
        let result = match self.journal(Entry::StepStarted {
            resource: change.address.to_string(),
            step: description.clone(),
            host: step.host.clone(),
            at: self.now(),
        }) {
            Ok(()) => self.step(&name, change, step).await,
            Err(e) => Err(StepError::new(format!(
                "the journal could not be written: {e}"
            ))),
        };
        let result = match (result, self.save()) {
            (Ok(_), Err(e)) => Err(StepError::new(format!("the state could not be saved: {e}"))),
            (result, _) => result,
        };
        let journaled = match &result {
            Ok(_) => self.journal(Entry::StepFinished {
                resource: change.address.to_string(),
                step: description.clone(),
                at: self.now(),
            }),
            Err(e) => self.journal(Entry::StepFailed {
                resource: change.address.to_string(),
                step: description.clone(),
                reason: e.reason.clone(),
                at: self.now(),
            }),
        };
        let result = match (result, journaled) {
            (Ok(_), Err(e)) => Err(StepError::new(format!(
                "the journal could not be written: {e}"
            ))),
            (result, _) => result,
        };
        let elapsed_ms = started.elapsed().as_millis();
        match result {
            Ok(detail) => {
                *self.last_finished.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("{}: {description}", change.address));
                self.env.reporter.event(Event::StepFinished {
                    resource: change.address.to_string(),
                    host: step.host.clone(),
                    batch,
                    step: description,
                    elapsed_ms,
                    detail,
                });
            }
            Err(StepError { reason, logs }) => {
                self.env.reporter.event(Event::StepFailed {
                    resource: change.address.to_string(),
                    host: step.host.clone(),
                    batch,
                    step: description.clone(),
                    elapsed_ms,
                    reason: reason.clone(),
                });
                self.cancelled.store(true, Ordering::SeqCst);
                return Err(Halt::Failed(Failure {
                    resource: match (&step.host, self.env.hosts.len()) {
                        (Some(h), n) if n > 1 => format!("{} on host `{h}`", change.address),
                        _ => change.address.to_string(),
                    },
                    step: description,
                    reason,
                    logs,
                }));
            }
        }
        Ok(())
    }

    /// Runs one step; `Ok(detail)` or `Err` with the reason and the container's log lines.
    pub(super) async fn step(
        &self,
        service: &str,
        change: &ResourceChange,
        step: &Step,
    ) -> Result<Option<String>, StepError> {
        match &step.op {
            StepOp::Start { .. }
            | StepOp::Restart { .. }
            | StepOp::WaitHealthy { .. }
            | StepOp::Warmup { .. }
            | StepOp::Stop { .. }
            | StepOp::Adopt { .. }
            | StepOp::Soak { .. } => self.replica_step(service, change, step).await,
            StepOp::JoinLb { .. }
            | StepOp::LeaveLb { .. }
            | StepOp::ReplaceInLb { .. }
            | StepOp::Switch { .. }
            | StepOp::Drain { .. }
            | StepOp::Configure { .. }
            | StepOp::Forget => self.membership_step(service, change, step).await,
            StepOp::PreviewCheck { .. } | StepOp::ScaleDownOld { .. } => {
                self.blue_green_step(service, change, step).await
            }
            StepOp::Record => Ok(None),
            StepOp::RunTask { .. } => self.task_step(service, change, step).await,
            StepOp::SwarmUpdate { .. }
            | StepOp::SwarmWarmup
            | StepOp::SwarmJoinLb { .. }
            | StepOp::SwarmLeaveLb { .. }
            | StepOp::SwarmRemove => swarm::step(self, service, change, step).await,
        }
    }
}
