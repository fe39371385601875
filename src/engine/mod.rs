//! The apply executor: walks a [`Plan`] step by step against the ports of its [`RunEnv`]
//! (container runtime, load balancers, prober, Swarm API, commands, clock), writes the state
//! after every step, and on failure restores what it changed, in reverse order. It decides
//! nothing the plan has not already decided.
//!
//! `run` schedules and records a run; the steps it dispatches live by concern in `replica`,
//! `membership`, `blue_green` and `swarm`; `restore` undoes a run, `retention` tidies up
//! after a successful one, and [`recover`] takes over a run that died. `tests` drives it
//! through the in-memory ports of `crate::testing` on a paused clock.

mod blue_green;
mod membership;
pub mod recover;
mod replica;
pub mod report;
mod resources;
mod restore;
mod retention;
mod run;
mod swarm;
mod task;
mod types;

use std::collections::BTreeMap;

use crate::graph::ResourceKind;
use crate::model::ServiceSpec;
use crate::plan::{Action, Plan, Spec, StepOp};
use crate::ports::{ContainerRuntime, Member};
use crate::state::journal::{Entry, Journal};
use crate::state::{Outcome, RevisionRecord, State};
pub use replica::{Placement, replica_container};
pub use resources::{VOLUME_LABEL, container_options, declared_volumes, volume_name};
use run::Run;
pub use task::{mask, secret_values, task_container};
pub use types::{ApplyInputs, ApplyOutcome, Failure, Hold, RunEnv, StateSink, StepError, Target};

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
                | StepOp::ReplaceInLb { lb, .. }
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
    }
    None
}

/// Applies `plan` to `state`. The state is saved after every step; the returned state is
/// the one to keep (also saved).
pub async fn apply<R: ContainerRuntime>(
    plan: &Plan,
    state: State,
    env: &RunEnv<'_, R>,
    inputs: &ApplyInputs<'_>,
) -> (ApplyOutcome, State) {
    let original = state.clone();
    let revision = state.next_revision();
    let run = Run::new(env, inputs, revision, state);
    run.st().history.push(RevisionRecord {
        revision,
        started_at: env.clock.rfc3339(),
        finished_at: None,
        origin: inputs.origin.clone(),
        outcome: Outcome::InProgress,
        services: BTreeMap::new(),
        tasks: BTreeMap::new(),
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
    env: &RunEnv<'_, R>,
    inputs: &ApplyInputs<'_>,
) -> Option<(ApplyOutcome, State)> {
    let unfinished = journal.unfinished()?;
    let held = journal.held()?;
    let (plan, positions) = (held.plan, held.positions);
    let original = unfinished.prior.clone();
    let run = Run::new(env, inputs, unfinished.revision, state);
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
    let _ = run.journal(Entry::Promoted {
        at: env.clock.rfc3339(),
    });
    Some(run.execute(plan, original, positions).await)
}

/// A short digest of the container-level spec, stored as a label.
pub fn spec_hash(spec: &ServiceSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    crate::drivers::fs::sha256_hex(&json)[..16].to_string()
}

#[cfg(test)]
mod tests;
