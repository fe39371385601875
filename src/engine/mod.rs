//! The apply executor: walks a [`Plan`] step by step against real ports (container runtime,
//! HTTP prober), writes the state after every step, and on failure restores what it
//! changed, in reverse order. It decides nothing the plan has not already decided.

pub mod recover;
pub mod report;
mod swarm;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::drivers::probe::HttpProber;
use crate::graph::ResourceKind;
use crate::model::{OnFailure, ServiceSpec};
use crate::plan::steps::Generation;
use crate::plan::{Action, Plan, ResourceChange, Spec, Step, StepOp};
use crate::ports::{ContainerRuntime, ContainerSpec, ContainerState, LoadBalancer, Member, labels};
use crate::state::journal::{Entry, Journal, Undo};
use crate::state::{
    LbState, Outcome, Replica, ReplicaStatus, RevisionRecord, RevisionService, ServiceState, State,
};
use report::{Event, Reporter};

/// One host: its engine and the address load balancers and probes reach it on.
pub struct Target<R> {
    pub runtime: R,
    pub address: String,
    /// The same engine's Swarm service API (services with `runtime = "swarm"`).
    pub swarm: Option<crate::drivers::swarm::SwarmManager>,
}

/// Where the executor saves the state after every step, and journals every change before
/// it makes it.
pub trait StateSink: Send + Sync {
    fn save(&self, state: &State) -> Result<(), String>;
    /// Appends to the journal, durably, before returning.
    fn journal(&self, entry: &Entry) -> Result<(), String>;
}

/// Everything apply needs besides the plan and the state.
pub struct ApplyContext<'a, R> {
    pub project: &'a str,
    pub hosts: &'a BTreeMap<String, Target<R>>,
    pub prober: HttpProber,
    pub reporter: &'a dyn Reporter,
    pub sink: &'a dyn StateSink,
    /// Resolved environment per service (`KEY=value`, secrets included; never logged).
    pub env: &'a BTreeMap<String, Vec<String>>,
    /// Image reference -> image ID, from pre-flight.
    pub image_ids: &'a BTreeMap<String, String>,
    /// `apply` or `rollback of N`.
    pub origin: String,
    /// Revisions whose stopped containers are kept after success (`keep_previous`).
    pub keep_previous: u32,
    /// A driver per load balancer gantry can drive.
    pub lbs: &'a BTreeMap<String, Box<dyn LoadBalancer>>,
    /// Set by the first Ctrl-C/SIGTERM: finish the steps in flight, then stop safely.
    pub interrupt: &'a AtomicBool,
    /// Where a blue-green release stops for `gantry promote`.
    pub hold: Hold,
}

/// Blue-green hold points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hold {
    #[default]
    No,
    /// `apply --prepare`: the new colour is up and warm; stop before the preview check.
    BeforePreview,
    /// `apply --hold-at-preview`: stop after the preview check, before the switch.
    AfterPreview,
}

impl Hold {
    fn is_at(self, op: &StepOp) -> bool {
        match self {
            Hold::No => false,
            Hold::BeforePreview => {
                matches!(op, StepOp::PreviewCheck { .. } | StepOp::Switch { .. })
            }
            Hold::AfterPreview => matches!(op, StepOp::Switch { .. }),
        }
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub resource: String,
    pub step: String,
    pub reason: String,
    /// The failing container's last output lines.
    pub logs: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: step `{}` failed: {}",
            self.resource, self.step, self.reason
        )?;
        if !self.logs.is_empty() {
            write!(f, "\n  last log lines of the container:")?;
            for l in &self.logs {
                write!(f, "\n    | {l}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApplyOutcome {
    Succeeded {
        revision: u64,
    },
    /// Failed; everything this apply changed was undone.
    RolledBack {
        failure: Failure,
    },
    /// Failed and left where it stopped: `on_failure = "pause"`, or the restore failed too.
    Halted {
        failure: Failure,
        restore_error: Option<String>,
    },
    /// A blue-green release held at its preview; `gantry promote` continues it.
    Held {
        revision: u64,
    },
    /// Stopped by an interrupt after the steps in flight finished; the journal keeps the run
    /// open for `--resume` or `--undo`.
    Interrupted {
        /// The last step that finished, if any.
        after: Option<String>,
    },
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn list(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.address.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn ids(replicas: &[u32]) -> String {
    replicas
        .iter()
        .map(|r| format!("#{r}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn service_spec(s: &Option<Spec>) -> Option<&ServiceSpec> {
    match s {
        Some(Spec::Service(s)) => Some(s),
        _ => None,
    }
}

/// Steps this executor can run today; anything else is refused before touching anything.
/// `lbs` names the load balancers a driver is connected for.
pub fn unsupported_step(plan: &Plan, lbs: &[String]) -> Option<(String, String)> {
    let driven = |lb: &str| lbs.iter().any(|l| l == lb);
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        if c.address.kind == ResourceKind::Lb && !driven(&c.address.name) {
            return Some((
                c.address.to_string(),
                "no driver for this load balancer".into(),
            ));
        }
        for s in &c.steps {
            let why = match &s.op {
                StepOp::JoinLb { lb, .. }
                | StepOp::LeaveLb { lb, .. }
                | StepOp::Switch { lb, .. }
                    if !driven(lb) =>
                {
                    Some(format!("step `{}`: no driver for lb.{lb}", s.describe()))
                }
                _ => None,
            };
            if let Some(why) = why {
                return Some((c.address.to_string(), why));
            }
        }
        // Swarm runs a `command` health check itself, inside the container.
        if let Some(spec) = service_spec(&c.after)
            && spec.health.as_ref().is_some_and(|h| h.command.is_some())
            && spec.runtime != crate::model::Runtime::Swarm
        {
            return Some((
                c.address.to_string(),
                "health checks by `command` are not run by gantry yet; use `http`".into(),
            ));
        }
    }
    None
}

/// How long a blue-green preview check may run.
const PREVIEW_CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a failing preview check is tried again.
const PREVIEW_CHECK_RETRIES: Duration = Duration::from_secs(5);

/// Addresses that left one load balancer and await their drain: `(lb, addresses)`.
type Leaving = (String, Vec<Member>);

struct Run<'a, 'p, R: ContainerRuntime> {
    ctx: &'a ApplyContext<'p, R>,
    revision: u64,
    /// Shared by the services of a wave, which run concurrently; never held across an await.
    state: Mutex<State>,
    undo: Mutex<Vec<Undo>>,
    /// Set when a step fails: the other services of the wave stop at their next step.
    cancelled: AtomicBool,
    /// One membership change at a time (read, change, write the members of an LB).
    lb_lock: tokio::sync::Mutex<()>,
    /// Members that left a load balancer and await their drain, per (service, host).
    leaving: Mutex<BTreeMap<(String, String), Vec<Leaving>>>,
    /// The last step that finished, for the message after an interrupt.
    last_finished: Mutex<Option<String>>,
    /// Undoing a run that crashed: its last engine request may still be under way.
    recovering: AtomicBool,
}

/// Applies `plan` to `state`. The state is saved after every step; the returned state is
/// the one to keep (also saved).
pub async fn apply<R: ContainerRuntime>(
    plan: &Plan,
    state: State,
    ctx: &ApplyContext<'_, R>,
) -> (ApplyOutcome, State) {
    let original = state.clone();
    let revision = state.next_revision();
    let run = Run::new(ctx, revision, state);
    run.st().history.push(RevisionRecord {
        revision,
        started_at: now(),
        finished_at: None,
        origin: ctx.origin.clone(),
        outcome: Outcome::InProgress,
        services: BTreeMap::new(),
        failure: None,
    });
    let _ = run.save();
    run.execute(plan, original, &BTreeMap::new()).await
}

/// Continues a blue-green release held at its preview (`apply --hold-at-preview` or
/// `--prepare`): the remaining steps of `held`, as the same revision. A failure undoes the
/// whole release, the part before the hold included (its undo is in the journal).
pub async fn promote<R: ContainerRuntime>(
    journal: &Journal,
    state: State,
    ctx: &ApplyContext<'_, R>,
) -> Option<(ApplyOutcome, State)> {
    let unfinished = journal.unfinished()?;
    let held = journal.held()?;
    let (plan, positions) = (held.plan, held.positions);
    let original = unfinished.prior.clone();
    let run = Run::new(ctx, unfinished.revision, state);
    *run.undo.lock().unwrap_or_else(|e| e.into_inner()) = journal.undos();
    if let Some(record) = run
        .st()
        .history
        .iter_mut()
        .rev()
        .find(|r| r.revision == unfinished.revision)
    {
        record.outcome = Outcome::InProgress;
        record.finished_at = None;
    }
    let _ = run.save();
    let _ = run.journal(Entry::Promoted { at: now() });
    Some(run.execute(plan, original, positions).await)
}

/// Why a resource's steps stopped before their end.
enum Stopped {
    Failed(Failure),
    /// Another resource failed, or an interrupt asked to stop.
    Cancelled,
    /// At a blue-green hold point: the index of the next step.
    Held(usize),
}

impl<'a, 'p, R: ContainerRuntime> Run<'a, 'p, R> {
    /// Runs `plan` wave by wave from `start` (resource -> first step; 0 when absent), then
    /// succeeds, holds, stops, or restores `original`.
    async fn execute(
        self,
        plan: &Plan,
        original: State,
        start: &BTreeMap<String, usize>,
    ) -> (ApplyOutcome, State) {
        let revision = self.revision;
        // Wave by wave; the resources of one wave are independent and run concurrently.
        let mut waves: BTreeMap<usize, Vec<&ResourceChange>> = BTreeMap::new();
        for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
            waves.entry(c.wave).or_default().push(c);
        }
        let mut failed: Option<(Failure, OnFailure)> = None;
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
                    (Err(Stopped::Failed(f)), None) => {
                        let policy = service_spec(&change.after)
                            .or(service_spec(&change.before))
                            .map_or(OnFailure::Rollback, |s| s.rollout.on_failure);
                        failed = Some((f, policy));
                    }
                    (Err(Stopped::Cancelled), _) => stopped_early = true,
                    (Err(Stopped::Held(at)), _) => {
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
                    at: now(),
                    plan: Box::new(plan.clone()),
                    positions: held,
                    image_ids: self.ctx.image_ids.clone(),
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
                let _ = self.journal(Entry::Interrupted { at: now() });
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
                self.ctx.reporter.event(Event::Note {
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
                self.ctx.reporter.event(Event::Note {
                    message: format!("restoring revision {} after: {failure}", original.revision),
                });
                match self.restore_to(original).await {
                    Ok(()) => {
                        self.finish(
                            Outcome::RolledBack,
                            BTreeMap::new(),
                            Some(failure.to_string()),
                        );
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

    fn new(ctx: &'a ApplyContext<'p, R>, revision: u64, state: State) -> Self {
        Run {
            ctx,
            revision,
            state: Mutex::new(state),
            undo: Mutex::new(Vec::new()),
            cancelled: AtomicBool::new(false),
            lb_lock: tokio::sync::Mutex::new(()),
            leaving: Mutex::new(BTreeMap::new()),
            last_finished: Mutex::new(None),
            recovering: AtomicBool::new(false),
        }
    }

    /// Journals an entry; a failure is reported here and returned.
    fn journal(&self, entry: Entry) -> Result<(), String> {
        let result = self.ctx.sink.journal(&entry);
        if let Err(e) = &result {
            self.ctx.reporter.event(Event::Note {
                message: format!("warning: could not write the journal: {e}"),
            });
        }
        result
    }

    /// Announces a change in the journal before making it: no journal, no change.
    fn intent(&self, undo: Undo) -> Result<(), (String, Vec<String>)> {
        self.journal(Entry::Intent { undo })
            .map_err(|e| (format!("the journal could not be written: {e}"), Vec::new()))
    }

    fn last_finished(&self) -> Option<String> {
        self.last_finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The record of every service in this revision: its spec, the image its newest running
    /// replicas run, and the revision that created them.
    fn revision_services(&self) -> BTreeMap<String, RevisionService> {
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
                    .or_else(|| self.ctx.image_ids.get(&s.spec.image).cloned());
                (
                    n.clone(),
                    RevisionService {
                        spec: s.spec.clone(),
                        image_id,
                        replicas_revision: newest.map(|r| r.revision),
                    },
                )
            })
            .collect()
    }

    /// Undoes this run and puts `original` back as the state (with the ports restarted
    /// containers were given, and the history as it is now).
    async fn restore_to(&self, original: State) -> Result<(), String> {
        let _ = self.journal(Entry::Restoring { at: now() });
        let moved = self.restore().await?;
        let mut current = self.st();
        let mut state = original;
        state.serial = current.serial;
        state.history = std::mem::take(&mut current.history);
        moved.apply(&mut state);
        *current = state;
        Ok(())
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn into_state(self) -> State {
        self.state.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn push_undo(&self, u: Undo) {
        self.undo.lock().unwrap_or_else(|e| e.into_inner()).push(u);
    }

    /// Writes the state. A failure is reported here; after a step it also fails the step
    /// (see `change`): containers the state does not know must not pile up.
    fn save(&self) -> Result<(), String> {
        let mut state = self.st();
        state.serial += 1;
        let result = self.ctx.sink.save(&state);
        if let Err(e) = &result {
            self.ctx.reporter.event(Event::Note {
                message: format!("warning: could not save the state: {e}"),
            });
        }
        result
    }

    fn finish(
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
            last.finished_at = Some(now());
            last.services = services;
            last.failure = failure;
        }
        let _ = self.save();
        let _ = self.journal(Entry::End { outcome, at: now() });
    }

    fn target(&self, host: &Option<String>) -> Result<&Target<R>, String> {
        let name = host.as_deref().unwrap_or_default();
        self.ctx
            .hosts
            .get(name)
            .ok_or_else(|| format!("no engine connected for host `{name}`"))
    }

    /// Runs the steps of one resource from step `from`.
    async fn change(&self, change: &ResourceChange, from: usize) -> Result<(), Stopped> {
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
        let parallel = match self.ctx.hold {
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
                Ok::<(), Stopped>(())
            }))
            .await;
            // A failure wins over a hold, a hold over a stop caused by the others.
            let mut stopped = None;
            for r in results {
                match (r, &stopped) {
                    (Err(e @ Stopped::Failed(_)), _) => {
                        stopped = Some(e);
                        break;
                    }
                    (Err(e @ Stopped::Held(_)), None | Some(Stopped::Cancelled)) => {
                        stopped = Some(e)
                    }
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
    async fn run_step(
        &self,
        change: &ResourceChange,
        index: usize,
        step: &Step,
        from: usize,
    ) -> Result<(), Stopped> {
        let name = change.address.name.clone();
        if self.cancelled.load(Ordering::SeqCst) || self.ctx.interrupt.load(Ordering::SeqCst) {
            return Err(Stopped::Cancelled);
        }
        if index > from && self.ctx.hold.is_at(&step.op) {
            return Err(Stopped::Held(index));
        }
        let started = Instant::now();
        let description = step.describe();
        let batch = step.batch.map(|b| format!("{}/{}", b.number, b.of));
        self.ctx.reporter.event(Event::StepStarted {
            resource: change.address.to_string(),
            host: step.host.clone(),
            batch: batch.clone(),
            step: description.clone(),
        });
        let result = match self.journal(Entry::StepStarted {
            resource: change.address.to_string(),
            step: description.clone(),
            host: step.host.clone(),
            at: now(),
        }) {
            Ok(()) => self.step(&name, change, step).await,
            Err(e) => Err((format!("the journal could not be written: {e}"), Vec::new())),
        };
        let result = match (result, self.save()) {
            (Ok(_), Err(e)) => Err((format!("the state could not be saved: {e}"), Vec::new())),
            (result, _) => result,
        };
        let journaled = match &result {
            Ok(_) => self.journal(Entry::StepFinished {
                resource: change.address.to_string(),
                step: description.clone(),
                at: now(),
            }),
            Err((reason, _)) => self.journal(Entry::StepFailed {
                resource: change.address.to_string(),
                step: description.clone(),
                reason: reason.clone(),
                at: now(),
            }),
        };
        let result = match (result, journaled) {
            (Ok(_), Err(e)) => Err((format!("the journal could not be written: {e}"), Vec::new())),
            (result, _) => result,
        };
        let elapsed_ms = started.elapsed().as_millis();
        match result {
            Ok(detail) => {
                *self.last_finished.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("{}: {description}", change.address));
                self.ctx.reporter.event(Event::StepFinished {
                    resource: change.address.to_string(),
                    host: step.host.clone(),
                    batch,
                    step: description,
                    elapsed_ms,
                    detail,
                });
            }
            Err((reason, logs)) => {
                self.ctx.reporter.event(Event::StepFailed {
                    resource: change.address.to_string(),
                    host: step.host.clone(),
                    batch,
                    step: description.clone(),
                    elapsed_ms,
                    reason: reason.clone(),
                });
                self.cancelled.store(true, Ordering::SeqCst);
                return Err(Stopped::Failed(Failure {
                    resource: match (&step.host, self.ctx.hosts.len()) {
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

    /// Runs one step; `Ok(detail)` or `Err((reason, container log lines))`.
    async fn step(
        &self,
        service: &str,
        change: &ResourceChange,
        step: &Step,
    ) -> Result<Option<String>, (String, Vec<String>)> {
        let plain = |e: String| (e, Vec::new());
        let after = service_spec(&change.after);
        let before = service_spec(&change.before);
        let host = step.host.clone().unwrap_or_default();
        match &step.op {
            StepOp::Start { replicas } => {
                let spec = after
                    .ok_or_else(|| plain("start without a desired spec".into()))?
                    .clone();
                for &index in replicas {
                    self.start_replica(service, &host, &spec, index).await?;
                }
                Ok(None)
            }
            StepOp::Restart { replicas, revision } => {
                let grace = after.map_or(Duration::from_secs(10), |s| s.stop_grace_period.0);
                for &index in replicas {
                    self.restart_replica(service, &host, index, *revision, grace)
                        .await?;
                }
                Ok(Some("no image pull, no create".into()))
            }
            StepOp::WaitHealthy { replicas } => {
                let spec = after
                    .ok_or_else(|| plain("health without a desired spec".into()))?
                    .clone();
                let mut details = Vec::new();
                for &index in replicas {
                    let replica = self
                        .replica(service, &host, index, Generation::New)
                        .ok_or_else(|| plain(format!("replica #{index} was not started")))?;
                    details.push(self.wait_healthy(&host, &spec, &replica).await?);
                }
                Ok(Some(details.join("; ")))
            }
            StepOp::Warmup { replicas } => {
                let spec = after.ok_or_else(|| plain("warm-up without a desired spec".into()))?;
                let Some(warmup) = &spec.warmup else {
                    return Ok(None);
                };
                let target = self.target(&step.host).map_err(plain)?;
                let mut details = Vec::new();
                for &index in replicas {
                    let replica = self
                        .replica(service, &host, index, Generation::New)
                        .ok_or_else(|| plain(format!("replica #{index} was not started")))?;
                    let address = format!(
                        "{}:{}",
                        target.address,
                        replica.host_port.unwrap_or_default()
                    );
                    match self.ctx.prober.warm_up(warmup, &address).await {
                        Ok(report) => details.push(format!("#{index}: {report}")),
                        Err(e) => {
                            return Err((
                                format!("#{index}: {e}"),
                                self.logs(&host, &replica.container_id).await,
                            ));
                        }
                    }
                }
                Ok(Some(details.join("; ")))
            }
            StepOp::Stop {
                generation,
                replicas,
                grace,
            } => {
                let spec = before
                    .or(after)
                    .cloned()
                    .ok_or_else(|| plain("stop without a spec".into()))?;
                let stopped: Vec<Replica> = replicas
                    .iter()
                    .flat_map(|&index| self.replicas(service, &host, index, *generation))
                    .collect();
                self.stop_replicas(service, &host, &spec, &stopped, grace.0)
                    .await
                    .map(|killed| {
                        Some(format!(
                            "{} stopped, kept for rollback{killed}",
                            ids(replicas)
                        ))
                    })
            }
            StepOp::PreviewCheck { command } => {
                let addresses = self.new_addresses(service, &host).map_err(plain)?;
                let env = [
                    ("GANTRY_PREVIEW_ADDRESSES".to_string(), addresses.join(",")),
                    ("GANTRY_SERVICE".to_string(), service.to_string()),
                    ("GANTRY_REVISION".to_string(), self.revision.to_string()),
                ];
                // Load balancers reload asynchronously (nginx's old workers answer for a
                // moment): a failing check is tried again for a few seconds.
                let started = Instant::now();
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match crate::drivers::command::run_with_env(
                        command,
                        &env,
                        PREVIEW_CHECK_TIMEOUT,
                    )
                    .await
                    {
                        Ok(()) => {
                            break Ok(Some(format!(
                                "passed against {} (attempt {attempts})",
                                addresses.join(", ")
                            )));
                        }
                        Err(e) if started.elapsed() >= PREVIEW_CHECK_RETRIES => {
                            break Err(plain(format!(
                                "the preview check failed ({attempts} attempts over {:.1}s): {e}; no user traffic was moved",
                                started.elapsed().as_secs_f64()
                            )));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
            StepOp::Switch { lb, replicas } => {
                let target = self.target(&step.host).map_err(plain)?;
                let on_host = format!("{}:", target.address);
                let new = self
                    .addresses(service, &host, replicas, Generation::New)
                    .map_err(plain)?;
                let mut old: Vec<Member> = Vec::new();
                let joined = list(&new);
                self.change_members(lb, None, |m| {
                    let (out, stay): (Vec<Member>, Vec<Member>) =
                        std::mem::take(m).into_iter().partition(|a| {
                            a.service == service
                                && a.address.starts_with(&on_host)
                                && !new.iter().any(|n| n.address == a.address)
                        });
                    old = out;
                    *m = stay;
                    m.extend(new);
                })
                .await
                .map_err(plain)?;
                let left = list(&old);
                self.leaving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((service.to_string(), host.clone()))
                    .or_default()
                    .push((lb.clone(), old));
                Ok(Some(format!("lb.{lb}: {left} -> {joined}")))
            }
            StepOp::Adopt { replicas, revision } => {
                let mut state = self.st();
                let s = state
                    .services
                    .get_mut(service)
                    .ok_or_else(|| plain("service missing from state".into()))?;
                for &index in replicas {
                    let r = s
                        .replicas
                        .iter_mut()
                        .find(|r| {
                            r.index == index
                                && r.host == host
                                && r.revision == *revision
                                && r.status == ReplicaStatus::Running
                        })
                        .ok_or_else(|| {
                            plain(format!(
                                "#{index} of revision {revision} no longer runs; roll back with --recreate"
                            ))
                        })?;
                    r.revision = self.revision;
                }
                s.old_colour = None;
                Ok(Some("no container started".into()))
            }
            StepOp::ScaleDownOld { delay, keep } => {
                let spec = before
                    .or(after)
                    .cloned()
                    .ok_or_else(|| plain("scale-down without a spec".into()))?;
                let old = self.running_on(service, &host, |r| r.revision != self.revision);
                let Some(live) = old.iter().map(|r| r.revision).max() else {
                    return Ok(Some("no old colour runs".into()));
                };
                // Older leftovers go now; the colour that was live goes after `delay`.
                let (colour, leftovers): (Vec<Replica>, Vec<Replica>) =
                    old.into_iter().partition(|r| r.revision == live);
                self.stop_replicas(service, &host, &spec, &leftovers, spec.stop_grace_period.0)
                    .await?;
                if delay.is_zero() {
                    let beyond: Vec<Replica> =
                        colour.into_iter().filter(|r| r.index > *keep).collect();
                    self.stop_replicas(service, &host, &spec, &beyond, spec.stop_grace_period.0)
                        .await?;
                    self.set_old_colour(
                        service,
                        (*keep > 0).then_some(crate::state::OldColour {
                            revision: live,
                            scale_down_at: None,
                            keep: *keep,
                        }),
                    );
                    return Ok(Some(format!(
                        "old colour (revision {live}) down to {keep} running"
                    )));
                }
                let at = humantime::format_rfc3339_seconds(SystemTime::now() + delay.0).to_string();
                self.set_old_colour(
                    service,
                    Some(crate::state::OldColour {
                        revision: live,
                        scale_down_at: Some(at.clone()),
                        keep: *keep,
                    }),
                );
                Ok(Some(format!(
                    "old colour (revision {live}) keeps running for switch-back until {at}, then `gantry scale-down` takes it down to {keep}"
                )))
            }
            StepOp::Drain { duration } => {
                let leaving = self
                    .leaving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(service.to_string(), host.clone()))
                    .unwrap_or_default();
                if leaving.is_empty() {
                    tokio::time::sleep(duration.0).await;
                    return Ok(None);
                }
                // Every load balancer drains at once; each waits at most `drain`.
                let waits = leaving.iter().map(|(lb, addresses)| async move {
                    let driver = self
                        .ctx
                        .lbs
                        .get(lb)
                        .ok_or_else(|| format!("no driver for lb.{lb}"))?;
                    driver
                        .finish_drain(addresses, duration.0)
                        .await
                        .map(|seen| format!("lb.{lb}: {seen}"))
                });
                let seen: Result<Vec<String>, String> = futures_util::future::join_all(waits)
                    .await
                    .into_iter()
                    .collect();
                seen.map(|s| Some(s.join("; "))).map_err(plain)
            }
            StepOp::Soak { duration } => {
                let spec = after
                    .cloned()
                    .ok_or_else(|| plain("soak without a desired spec".into()))?;
                self.soak(service, &host, &spec, duration.0)
                    .await
                    .map(|_| None)
            }
            StepOp::Record => Ok(None),
            StepOp::JoinLb {
                lb,
                generation,
                replicas,
            } => {
                let addresses = self
                    .addresses(service, &host, replicas, *generation)
                    .map_err(plain)?;
                let joined = list(&addresses);
                self.change_members(lb, None, |m| m.extend(addresses))
                    .await
                    .map_err(plain)?;
                Ok(Some(format!("lb.{lb} now sends to {joined}")))
            }
            StepOp::LeaveLb {
                lb,
                generation,
                replicas,
            } => {
                let addresses = self
                    .addresses(service, &host, replicas, *generation)
                    .map_err(plain)?;
                let left = list(&addresses);
                self.change_members(lb, None, |m| {
                    m.retain(|a| !addresses.iter().any(|x| x.address == a.address))
                })
                .await
                .map_err(plain)?;
                self.leaving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((service.to_string(), host.clone()))
                    .or_default()
                    .push((lb.clone(), addresses));
                Ok(Some(format!("lb.{lb} no longer sends to {left}")))
            }
            StepOp::Configure { members } => {
                let Some(Spec::Lb(spec)) = &change.after else {
                    return Err(plain("configure without a load-balancer spec".into()));
                };
                let addresses = self.member_addresses(members);
                let count = addresses.len();
                self.change_members(service, Some(spec.clone()), |m| *m = addresses)
                    .await
                    .map_err(plain)?;
                Ok(Some(format!("{count} member(s)")))
            }
            StepOp::Forget => {
                self.st().lbs.remove(service);
                Ok(None)
            }
            StepOp::SwarmUpdate { .. }
            | StepOp::SwarmWarmup
            | StepOp::SwarmJoinLb { .. }
            | StepOp::SwarmLeaveLb { .. }
            | StepOp::SwarmRemove => swarm::step(self, service, change, step).await,
        }
    }

    /// Stops `replicas` (kept for rollback, each announced in the journal first); returns
    /// what was killed after the grace period, as a sentence tail.
    async fn stop_replicas(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        replicas: &[Replica],
        grace: Duration,
    ) -> Result<String, (String, Vec<String>)> {
        let plain = |e: String| (e, Vec::new());
        let target = self.target(&Some(host.to_string())).map_err(plain)?;
        let mut killed = Vec::new();
        for replica in replicas {
            let undo = Undo::Stopped {
                host: host.to_string(),
                id: replica.container_id.clone(),
                spec: Box::new(spec.clone()),
                port: replica.host_port,
            };
            self.intent(undo.clone())?;
            target
                .runtime
                .stop(&replica.container_id, grace)
                .await
                .map_err(|e| plain(e.to_string()))?;
            match target.runtime.inspect(&replica.container_id).await {
                Ok(Some(info)) if info.state == ContainerState::Exited(137) => {
                    killed.push(format!("#{}", replica.index))
                }
                // Gone behind gantry's back: nothing to keep.
                Ok(None) => {
                    self.mark(&replica.container_id, None);
                    continue;
                }
                _ => {}
            }
            self.set_status(service, &replica.container_id, ReplicaStatus::Stopped);
            self.push_undo(undo);
        }
        Ok(if killed.is_empty() {
            String::new()
        } else {
            format!(
                "; {} did not exit within the {} grace period and were killed",
                killed.join(","),
                crate::model::Duration(grace)
            )
        })
    }

    /// `host:port` of this run's running replicas of `service` on `host`.
    fn new_addresses(&self, service: &str, host: &str) -> Result<Vec<String>, String> {
        let target = self.target(&Some(host.to_string()))?;
        Ok(self
            .running_on(service, host, |r| r.revision == self.revision)
            .into_iter()
            .filter_map(|r| r.host_port.map(|p| format!("{}:{p}", target.address)))
            .collect())
    }

    /// The running replicas of `service` on `host` that `keep` selects.
    fn running_on(
        &self,
        service: &str,
        host: &str,
        keep: impl Fn(&Replica) -> bool,
    ) -> Vec<Replica> {
        self.st()
            .services
            .get(service)
            .map(|s| {
                s.replicas
                    .iter()
                    .filter(|r| r.host == host && r.status == ReplicaStatus::Running && keep(r))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The members the state records for `lb`.
    fn members_of(&self, lb: &str) -> Vec<Member> {
        self.st()
            .lbs
            .get(lb)
            .map(|l| l.members.clone())
            .unwrap_or_default()
    }

    fn set_old_colour(&self, service: &str, colour: Option<crate::state::OldColour>) {
        if let Some(s) = self.st().services.get_mut(service) {
            s.old_colour = colour;
        }
    }

    async fn start_replica(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        index: u32,
    ) -> Result<(), (String, Vec<String>)> {
        let plain = |e: String| (e, Vec::new());
        let name = format!("{}-{service}-{}-{index}", self.ctx.project, self.revision);
        let target = self.target(&Some(host.to_string())).map_err(plain)?;
        let host_port = match spec.host_ports {
            None => None,
            Some(range) => Some(self.free_port(service, range, &target.address)?),
        };
        let mut container_labels = spec.labels.clone();
        container_labels.insert(labels::PROJECT.into(), self.ctx.project.into());
        container_labels.insert(labels::SERVICE.into(), service.into());
        container_labels.insert(labels::REVISION.into(), self.revision.to_string());
        container_labels.insert(labels::REPLICA.into(), index.to_string());
        container_labels.insert(labels::HOST.into(), host.into());
        container_labels.insert(labels::SPEC_HASH.into(), spec_hash(spec));
        let container = ContainerSpec {
            name: name.clone(),
            // The image ID resolved by pre-flight: every replica runs the same image even if
            // the tag moves during the rollout, and a rollback runs exactly what was recorded.
            image: self
                .ctx
                .image_ids
                .get(&spec.image)
                .cloned()
                .unwrap_or_else(|| spec.image.clone()),
            command: spec.command.clone(),
            env: self.ctx.env.get(service).cloned().unwrap_or_default(),
            labels: container_labels,
            port: spec.port,
            host_port,
            host_ip: target.address.clone(),
            memory_bytes: spec.resources.memory.map(|m| m.0),
            cpus: spec.resources.cpus,
            log_max_size: spec.log.max_size.map(|s| s.to_string()),
            log_max_files: spec.log.max_files,
            stop_grace: spec.stop_grace_period.0,
        };
        // Announced by name: the engine gives the ID only once it exists.
        self.intent(Undo::Created {
            host: host.to_string(),
            id: name.clone(),
            grace: spec.stop_grace_period.0,
        })?;
        let id = target
            .runtime
            .create(&container)
            .await
            .map_err(|e| plain(e.to_string()))?;
        self.push_undo(Undo::Created {
            host: host.to_string(),
            id: id.clone(),
            grace: spec.stop_grace_period.0,
        });
        // Recorded as soon as it exists, so that no container gantry created is ever
        // missing from the state, whatever happens next.
        self.st()
            .services
            .get_mut(service)
            .ok_or_else(|| plain("service missing from state".into()))?
            .replicas
            .push(Replica {
                index,
                host: host.to_string(),
                name,
                container_id: id.clone(),
                image_id: None,
                revision: self.revision,
                host_port,
                status: ReplicaStatus::Stopped,
            });
        let _ = self.save();
        let target = self.target(&Some(host.to_string())).map_err(plain)?;
        if let Err(e) = target.runtime.start(&id).await {
            return Err((e.to_string(), self.logs(host, &id).await));
        }
        self.record_started(target, service, &id)
            .await
            .map_err(plain)?;
        Ok(())
    }

    /// After a container started, what the engine says goes into its record, now running and
    /// part of this revision: its host port (an engine-chosen one is chosen again at every
    /// start) and its image.
    async fn record_started(
        &self,
        target: &Target<R>,
        service: &str,
        id: &str,
    ) -> Result<(), String> {
        let info = target
            .runtime
            .inspect(id)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(r) = self
            .st()
            .services
            .get_mut(service)
            .and_then(|s| s.replicas.iter_mut().find(|r| r.container_id == id))
        {
            r.status = ReplicaStatus::Running;
            r.revision = self.revision;
            if let Some(info) = info {
                r.host_port = info.host_port.or(r.host_port);
                r.image_id = Some(info.image_id);
            }
        }
        Ok(())
    }

    /// Starts a kept replica of `revision` again; from now on it belongs to this revision.
    async fn restart_replica(
        &self,
        service: &str,
        host: &str,
        index: u32,
        revision: u64,
        grace: Duration,
    ) -> Result<(), (String, Vec<String>)> {
        let plain = |e: String| (e, Vec::new());
        let id = self
            .st()
            .services
            .get(service)
            .and_then(|s| {
                s.replicas
                    .iter()
                    .find(|r| {
                        r.index == index
                            && r.host == host
                            && r.revision == revision
                            && r.status == ReplicaStatus::Stopped
                    })
                    .map(|r| r.container_id.clone())
            })
            .ok_or_else(|| {
                plain(format!(
                    "no kept replica #{index} of revision {revision} on host {host}"
                ))
            })?;
        let target = self.target(&Some(host.to_string())).map_err(plain)?;
        let undo = Undo::Restarted {
            host: host.to_string(),
            id: id.clone(),
            grace,
        };
        self.intent(undo.clone())?;
        target
            .runtime
            .start(&id)
            .await
            .map_err(|e| plain(e.to_string()))?;
        self.push_undo(undo);
        self.record_started(target, service, &id)
            .await
            .map_err(plain)?;
        let _ = self.save();
        Ok(())
    }

    /// The lowest port of `range` that no replica of this service uses (running or kept)
    /// and that can be bound now.
    fn free_port(
        &self,
        service: &str,
        range: crate::model::PortRange,
        address: &str,
    ) -> Result<u16, (String, Vec<String>)> {
        let used: Vec<u16> = self
            .st()
            .services
            .get(service)
            .map(|s| s.replicas.iter().filter_map(|r| r.host_port).collect())
            .unwrap_or_default();
        (range.start..=range.end)
            .find(|p| {
                let local = address
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
                !used.contains(p) && (!local || std::net::TcpListener::bind((address, *p)).is_ok())
            })
            .ok_or_else(|| {
                (
                    format!("no free host port left in {range} on {address}"),
                    Vec::new(),
                )
            })
    }

    fn replica(
        &self,
        service: &str,
        host: &str,
        index: u32,
        generation: Generation,
    ) -> Option<Replica> {
        self.replicas(service, host, index, generation)
            .into_iter()
            .next()
    }

    /// Running replicas of `index` on `host`: those this apply started (new), or any other
    /// (current; after an interrupted run there can be more than one).
    fn replicas(
        &self,
        service: &str,
        host: &str,
        index: u32,
        generation: Generation,
    ) -> Vec<Replica> {
        let state = self.st();
        let Some(s) = state.services.get(service) else {
            return Vec::new();
        };
        s.replicas
            .iter()
            .filter(|r| r.host == host && r.index == index && r.status == ReplicaStatus::Running)
            .filter(|r| match generation {
                Generation::New => r.revision == self.revision,
                Generation::Current => r.revision != self.revision,
            })
            .cloned()
            .collect()
    }

    /// Running replicas of `service` on `host`, as load-balancer members.
    fn addresses(
        &self,
        service: &str,
        host: &str,
        replicas: &[u32],
        generation: Generation,
    ) -> Result<Vec<Member>, String> {
        let target = self.target(&Some(host.to_string()))?;
        let mut out = Vec::new();
        for &index in replicas {
            for r in self.replicas(service, host, index, generation) {
                let port = r
                    .host_port
                    .ok_or_else(|| format!("replica #{index} publishes no port"))?;
                out.push(Member {
                    address: format!("{}:{port}", target.address),
                    service: service.to_string(),
                    replica: index,
                    host: host.to_string(),
                });
            }
        }
        Ok(out)
    }

    /// Every running replica of the given services (`service.NAME`), as members.
    fn member_addresses(&self, services: &[String]) -> Vec<Member> {
        let state = self.st();
        let mut out = Vec::new();
        for address in services {
            let name = address.strip_prefix("service.").unwrap_or(address);
            let Some(s) = state.services.get(name) else {
                continue;
            };
            for r in s
                .replicas
                .iter()
                .filter(|r| r.status == ReplicaStatus::Running)
            {
                if let (Some(port), Some(t)) = (r.host_port, self.ctx.hosts.get(&r.host)) {
                    out.push(Member {
                        address: format!("{}:{port}", t.address),
                        service: name.to_string(),
                        replica: r.index,
                        host: r.host.clone(),
                    });
                }
            }
            // A Swarm service is one member: its published port (the routing mesh).
            if let Some(w) = state.swarm.get(name)
                && let (Some(port), Some(t)) = (w.published_port, self.ctx.hosts.get(&w.host))
            {
                out.push(Member {
                    address: format!("{}:{port}", t.address),
                    service: name.to_string(),
                    replica: 1,
                    host: w.host.clone(),
                });
            }
        }
        out
    }

    /// Changes the members of `lb` through its driver, one change at a time; records the
    /// previous members for undo. `spec` creates the LB's state entry (configure).
    async fn change_members(
        &self,
        lb: &str,
        spec: Option<crate::model::LbSpec>,
        edit: impl FnOnce(&mut Vec<Member>),
    ) -> Result<(), String> {
        let _one_at_a_time = self.lb_lock.lock().await;
        let previous = self.members_of(lb);
        let mut next = previous.clone();
        edit(&mut next);
        next.sort();
        next.dedup_by(|a, b| a.address == b.address);
        let driver = self
            .ctx
            .lbs
            .get(lb)
            .ok_or_else(|| format!("no driver for lb.{lb}"))?;
        self.journal(Entry::Members {
            lb: lb.to_string(),
            previous: previous.clone(),
            next: next.clone(),
        })?;
        driver.set_members(&previous, &next).await?;
        self.push_undo(Undo::Members {
            lb: lb.to_string(),
            previous,
        });
        let mut state = self.st();
        match (state.lbs.get_mut(lb), spec) {
            (Some(entry), Some(spec)) => {
                entry.spec = spec;
                entry.members = next;
            }
            (Some(entry), None) => entry.members = next,
            (None, Some(spec)) => {
                state.lbs.insert(
                    lb.to_string(),
                    LbState {
                        spec,
                        members: next,
                    },
                );
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn set_status(&self, service: &str, id: &str, status: ReplicaStatus) {
        if let Some(r) = self
            .st()
            .services
            .get_mut(service)
            .and_then(|s| s.replicas.iter_mut().find(|r| r.container_id == id))
        {
            r.status = status;
        }
    }

    async fn logs(&self, host: &str, id: &str) -> Vec<String> {
        match self.target(&Some(host.to_string())) {
            Ok(t) => t.runtime.logs_tail(id, 10).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    async fn wait_healthy(
        &self,
        host: &str,
        spec: &ServiceSpec,
        replica: &Replica,
    ) -> Result<String, (String, Vec<String>)> {
        wait_healthy(
            self.ctx,
            self.target(&Some(host.to_string()))
                .map_err(|e| (e, Vec::new()))?,
            spec,
            replica,
        )
        .await
    }

    /// Real traffic for `duration`, the new replicas watched: one that stops or turns
    /// unhealthy fails the step.
    async fn soak(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        duration: Duration,
    ) -> Result<(), (String, Vec<String>)> {
        let target = self
            .target(&Some(host.to_string()))
            .map_err(|e| (e, Vec::new()))?;
        let deadline = Instant::now() + duration;
        let every = spec
            .health
            .as_ref()
            .map_or(Duration::from_secs(1), |h| h.interval.0)
            .min(duration.max(Duration::from_millis(100)));
        while Instant::now() < deadline {
            tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
            for r in self.running_on(service, host, |r| r.revision == self.revision) {
                match target.runtime.inspect(&r.container_id).await {
                    Ok(Some(info)) if info.state == ContainerState::Running => {}
                    Ok(Some(info)) => {
                        return Err((
                            format!("#{} stopped during soak ({:?})", r.index, info.state),
                            self.logs(host, &r.container_id).await,
                        ));
                    }
                    Ok(None) => {
                        return Err((format!("#{} disappeared during soak", r.index), Vec::new()));
                    }
                    Err(e) => return Err((e.to_string(), Vec::new())),
                }
                if let (Some(h), Some(path), Some(port)) = (
                    &spec.health,
                    spec.health.as_ref().and_then(|h| h.http.as_ref()),
                    r.host_port,
                ) {
                    let probe = self
                        .ctx
                        .prober
                        .get(&format!("{}:{port}", target.address), path, h.timeout.0)
                        .await;
                    if !probe.is_2xx() {
                        return Err((
                            format!(
                                "#{} failed its health check during soak: {:?}",
                                r.index, probe.outcome
                            ),
                            self.logs(host, &r.container_id).await,
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// After success: remove what no revision kept for rollback needs (stopped replicas older
    /// than the previous revision, and the replicas of destroyed services).
    async fn cleanup(&self, plan: &Plan) {
        let destroyed: Vec<String> = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Destroy && c.address.kind == ResourceKind::Service)
            .map(|c| c.address.name.clone())
            .collect();
        // Converge: one running replica per (host, index) of the spec, the newest; strays
        // left running by an interrupted run are stopped (and then fall under retention).
        let mut strays: Vec<(String, String, String, Duration)> = Vec::new();
        for (name, s) in &self.st().services {
            if destroyed.contains(name) {
                continue;
            }
            let running: Vec<&Replica> = s
                .replicas
                .iter()
                .filter(|r| r.status == ReplicaStatus::Running)
                .collect();
            for r in &running {
                let newer = running
                    .iter()
                    .any(|o| o.host == r.host && o.index == r.index && o.revision > r.revision);
                let outside = r.index > s.spec.replicas || !s.spec.hosts.contains(&r.host);
                // Blue-green: the old colour runs on beside the live one until scaled down.
                let old_colour = s.old_colour.as_ref().is_some_and(|o| {
                    o.revision == r.revision && (o.scale_down_at.is_some() || r.index <= o.keep)
                });
                if (newer || outside) && !old_colour {
                    strays.push((
                        name.clone(),
                        r.host.clone(),
                        r.container_id.clone(),
                        s.spec.stop_grace_period.0,
                    ));
                }
            }
        }
        for (service, host, id, grace) in strays {
            if let Ok(t) = self.target(&Some(host)) {
                let _ = t.runtime.stop(&id, grace).await;
            }
            self.set_status(&service, &id, ReplicaStatus::Stopped);
        }
        let mut to_remove: Vec<(String, String)> = Vec::new();
        for (name, s) in self.st().services.iter_mut() {
            if destroyed.contains(name) {
                to_remove.extend(
                    s.replicas
                        .iter()
                        .map(|r| (r.host.clone(), r.container_id.clone())),
                );
                s.replicas.clear();
                continue;
            }
            // Keep the stopped replicas of the newest `keep_previous` older revisions: they
            // are what a fast rollback starts again.
            let (stay, go) =
                crate::state::retain_kept(std::mem::take(&mut s.replicas), self.ctx.keep_previous);
            to_remove.extend(go.into_iter().map(|r| (r.host, r.container_id)));
            s.replicas = stay;
        }
        for name in destroyed {
            self.st().services.remove(&name);
        }
        for (host, id) in to_remove {
            if let Ok(t) = self.target(&Some(host)) {
                let _ = t.runtime.remove(&id).await;
            }
        }
        self.remove_late_leftovers().await;
        let _ = self.save();
    }

    /// Removes the containers of interrupted revisions that the state does not record. A
    /// create in flight when gantry was killed completes on the engine's side, possibly after
    /// the recovery looked: nothing refers to such a container.
    async fn remove_late_leftovers(&self) {
        let dead: Vec<String> = self
            .st()
            .history
            .iter()
            .filter(|r| r.outcome == Outcome::Interrupted)
            .map(|r| r.revision.to_string())
            .collect();
        if dead.is_empty() {
            return;
        }
        for (host, target) in self.ctx.hosts {
            let Ok(found) = target
                .runtime
                .list(&[(labels::PROJECT, self.ctx.project)])
                .await
            else {
                continue;
            };
            for c in found {
                let of_dead_run = c
                    .labels
                    .get(labels::REVISION)
                    .is_some_and(|r| dead.contains(r));
                let here = c.labels.get(labels::HOST).is_none_or(|h| h == host);
                let recorded = self
                    .st()
                    .services
                    .values()
                    .any(|s| s.replicas.iter().any(|r| r.container_id == c.id));
                if of_dead_run && here && !recorded {
                    let _ = target.runtime.remove(&c.id).await;
                    self.ctx.reporter.event(Event::Note {
                        message: format!(
                            "removed {}: created for an interrupted run after it was recovered",
                            c.name
                        ),
                    });
                }
            }
        }
    }

    /// Undoes this apply, newest change first.
    async fn restore(&self) -> Result<Moved, String> {
        let mut problems = Vec::new();
        // A restarted container with an engine-chosen port gets a new one: the load balancers
        // and the state must follow it.
        let mut moved = Moved::default();
        loop {
            let next = self.undo.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(u) = next else { break };
            match u {
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
                    if let Some(driver) = self.ctx.lbs.get(&lb) {
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
                    match wait_healthy(self.ctx, t, &spec, &replica).await {
                        Ok(_) => self.ctx.reporter.event(Event::Note {
                            message: format!(
                                "restored {} in {:.1}s",
                                &id[..12.min(id.len())],
                                started.elapsed().as_secs_f64()
                            ),
                        }),
                        Err((e, _)) => {
                            problems.push(format!("restarted {id} but it is not healthy: {e}"))
                        }
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
    fn mark(&self, id: &str, status: Option<ReplicaStatus>) {
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
struct Moved {
    /// Old `host:port` -> new `host:port`.
    addresses: BTreeMap<String, String>,
    /// Container ID -> its host port now.
    ports: BTreeMap<String, u16>,
}

impl Moved {
    /// Applies the moves to a state (the snapshot a successful restore goes back to).
    fn apply(&self, state: &mut State) {
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

/// Health of one replica: the HTTP probe when configured, else "still running after a
/// moment" (a container that crashes at start is caught either way).
async fn wait_healthy<R: ContainerRuntime>(
    ctx: &ApplyContext<'_, R>,
    target: &Target<R>,
    spec: &ServiceSpec,
    replica: &Replica,
) -> Result<String, (String, Vec<String>)> {
    let id = replica.container_id.clone();
    let still_running = || {
        let id = id.clone();
        async move {
            match target.runtime.inspect(&id).await {
                Ok(Some(i)) if i.state == ContainerState::Running => Ok(()),
                Ok(Some(i)) => Err(match i.state {
                    ContainerState::Exited(code) => {
                        format!("the container exited with code {code}")
                    }
                    other => format!("the container is {other:?}"),
                }),
                Ok(None) => Err("the container is gone".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let result = match (
        &spec.health,
        spec.health.as_ref().and_then(|h| h.http.as_ref()),
    ) {
        (Some(h), Some(_)) => {
            let address = format!(
                "{}:{}",
                target.address,
                replica.host_port.unwrap_or_default()
            );
            ctx.prober
                .wait_healthy(h, &address, still_running)
                .await
                .map(|r| {
                    format!(
                        "healthy after {} probe(s), {:.1}s",
                        r.probes,
                        r.elapsed.as_secs_f64()
                    )
                })
                .map_err(|e| e.to_string())
        }
        _ => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            still_running()
                .await
                .map(|_| "running (no health check configured)".to_string())
        }
    };
    match result {
        Ok(s) => Ok(s),
        Err(e) => Err((
            e,
            target
                .runtime
                .logs_tail(&replica.container_id, 10)
                .await
                .unwrap_or_default(),
        )),
    }
}

/// A short digest of the container-level spec, stored as a label.
pub fn spec_hash(spec: &ServiceSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    crate::drivers::fs::sha256_hex(&json)[..16].to_string()
}
