//! What the journal records: per step its start and its end, and before every change the
//! undo of that change (no journal, no change).

use super::*;
use crate::state::journal::Undo;

/// One journal entry in words; container IDs by name.
pub(super) fn words(w: &World, e: &Entry) -> String {
    let name = |id: &str| {
        w.rt.containers()
            .into_iter()
            .find(|c| c.id == id)
            .map_or(id.to_string(), |c| c.name)
    };
    let addresses = |m: &[crate::ports::Member]| {
        m.iter()
            .map(|m| m.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    match e {
        Entry::Begin { revision, .. } => format!("begin {revision}"),
        Entry::StepStarted { resource, step, .. } => format!("> {resource}: {step}"),
        Entry::StepFinished { resource, step, .. } => format!("< {resource}: {step}"),
        Entry::StepFailed { resource, step, .. } => format!("! {resource}: {step}"),
        Entry::Intent { undo } => match undo {
            Undo::Created { id, .. } => format!("intent: remove {}", name(id)),
            Undo::Stopped { id, .. } => format!("intent: start again {}", name(id)),
            Undo::Restarted { id, .. } => format!("intent: stop again {}", name(id)),
            Undo::Members { lb, .. } => format!("intent: members of {lb}"),
            Undo::Swarm { name, .. } => format!("intent: swarm {name}"),
            Undo::Exec { id, command, .. } => {
                format!("intent: exec {} in {}", command.join(" "), name(id))
            }
        },
        Entry::Members { lb, previous, next } => {
            format!(
                "members {lb}: [{}] -> [{}]",
                addresses(previous),
                addresses(next)
            )
        }
        Entry::Restoring { .. } => "restoring".into(),
        Entry::Interrupted { .. } => "interrupted".into(),
        Entry::Aborted { .. } => "aborted".into(),
        Entry::Held { positions, .. } => format!("held {positions:?}"),
        Entry::Promoted { .. } => "promoted".into(),
        Entry::End { outcome, .. } => format!("end {outcome:?}"),
    }
}

pub(super) fn journal(w: &World) -> Vec<String> {
    w.sink.entries().iter().map(|e| words(w, e)).collect()
}

/// Pins the journal of a rolling update: each step between `>` (started) and `<` (finished),
/// and inside a step, before each change, the entry that undoes it: the container to remove
/// before it is created (by name: the engine gives the ID only once it exists), the
/// container to start again before it is stopped, the members before and after before a
/// load balancer is changed. The run's `Begin` is the session's; the engine ends with `End`.
#[tokio::test(start_paused = true)]
async fn every_change_is_journalled_with_its_undo_before_it_is_made() {
    let w = World::new();
    let s = w.applied(&web("v1", 2, "batch = 2"), empty()).await;
    w.applied(&web("v2", 2, "batch = 2"), s).await;
    assert_eq!(
        journal(&w),
        [
            "begin 2",
            "> service.web: start #1,#2 (new)",
            "intent: remove p-web-2-1",
            "intent: remove p-web-2-2",
            "< service.web: start #1,#2 (new)",
            "> service.web: health #1,#2",
            "< service.web: health #1,#2",
            // One change of the load balancer per batch (issue 11): the new in, the old out.
            "> service.web: #1,#2 (new) replace #1,#2 (current) in lb.front",
            "members front: [10.0.0.1:32768,10.0.0.1:32769] -> [10.0.0.1:32770,10.0.0.1:32771]",
            "< service.web: #1,#2 (new) replace #1,#2 (current) in lb.front",
            "> service.web: drain 1s",
            "< service.web: drain 1s",
            "> service.web: stop #1,#2 (current, grace 10s, kept for rollback)",
            "intent: start again p-web-1-1",
            "intent: start again p-web-1-2",
            "< service.web: stop #1,#2 (current, grace 10s, kept for rollback)",
            "end Succeeded",
        ]
    );
    // The timestamps are the run's clock's.
    assert!(w.sink.entries().iter().all(|e| match e {
        Entry::StepStarted { at, .. } | Entry::StepFinished { at, .. } | Entry::End { at, .. } =>
            at == "2026-01-01T00:00:00Z",
        _ => true,
    }));
}

/// Pins "no journal, no change": when the undo of a create cannot be journalled, that
/// container is never created, the step fails, and what the run did is undone.
#[tokio::test(start_paused = true)]
async fn a_change_whose_undo_cannot_be_journalled_is_not_made() {
    let w = World::new();
    // Writes: the step's start, the first replica's intent; the second's fails.
    w.sink.fail_journal_after(2);
    let (outcome, state) = w.apply(&web("v1", 2, ""), empty(), Hold::No).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(failure.reason.contains("journal"), "{failure}");
    let calls: Vec<String> =
        w.rt.calls()
            .into_iter()
            .filter(|c| c.starts_with("create") || c.starts_with("remove"))
            .collect();
    assert_eq!(calls, ["create p-web-1-1", "remove p-web-1-1"]);
    assert!(w.rt.containers().is_empty());
    assert!(
        state
            .services
            .get("web")
            .is_none_or(|s| s.replicas.is_empty())
    );
}

/// Pins that the state is saved after every step, and that what a step created is in the
/// state before the step ends (a crash after it loses nothing).
#[tokio::test(start_paused = true)]
async fn the_state_is_saved_after_every_step() {
    let w = World::new();
    w.applied(&web("v1", 2, ""), empty()).await;
    let saves = w.sink.saves();
    let serials: Vec<u64> = saves.iter().map(|s| s.serial).collect();
    assert!(serials.windows(2).all(|p| p[1] == p[0] + 1), "{serials:?}");
    let steps = w
        .sink
        .entries()
        .iter()
        .filter(|e| matches!(e, Entry::StepFinished { .. }))
        .count();
    assert!(saves.len() > steps, "{} saves, {steps} steps", saves.len());
    // The save right after the create, before the start: the replica is recorded, stopped.
    let first = saves
        .iter()
        .find(|s| {
            s.services
                .get("web")
                .is_some_and(|w| !w.replicas.is_empty())
        })
        .expect("a save with a replica");
    assert_eq!(
        World::replicas(first, "web")[0].1,
        ReplicaStatus::Stopped,
        "recorded as soon as it exists"
    );
}
