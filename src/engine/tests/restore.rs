//! Restore after a failed step, and retention after a successful run.

use super::journal::journal;
use super::*;
use crate::testing::FakeOp;

fn lifecycle(w: &World) -> Vec<String> {
    w.rt.calls()
        .into_iter()
        .filter(|c| {
            ["create ", "start ", "stop ", "remove "]
                .iter()
                .any(|p| c.starts_with(p))
        })
        .collect()
}

/// Pins the restore: newest change first (the container that failed, then the old replica
/// started again, the two membership changes put back, the new replica removed); the old
/// replica's engine-chosen port changes when it starts again (a container made before host
/// ports were fixed at create), and the load balancer and the state follow it to the new port.
#[tokio::test(start_paused = true)]
async fn restore_runs_newest_first_and_follows_ports_that_moved() {
    let w = World::new();
    w.rt.choose_ports_at_start();
    let v1 = w.applied(&web("v1", 2, "batch = 1"), empty()).await;
    assert_eq!(w.front.in_rotation(), ["10.0.0.1:32768", "10.0.0.1:32769"]);
    w.rt.fail(FakeOp::Start, "p-web-2-2", "no space left on device");
    let before = lifecycle(&w).len();
    let (outcome, state) = w.apply(&web("v2", 2, "batch = 1"), v1, Hold::No).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(failure.step, "start #2 (new)");
    assert!(failure.reason.contains("no space left"), "{failure}");

    let calls = lifecycle(&w)[before..].to_vec();
    let failed_at = calls
        .iter()
        .position(|c| c == "start p-web-2-2")
        .expect("the failing start");
    assert_eq!(
        calls[failed_at + 1..],
        [
            "stop p-web-2-2",
            "remove p-web-2-2",
            "start p-web-1-1",
            "stop p-web-2-1",
            "remove p-web-2-1",
        ]
    );
    // p-web-1-1 was on 32768; started again, the engine gave it 32771.
    assert_eq!(w.address_of("p-web-1-1"), "10.0.0.1:32771");
    assert_eq!(w.front.in_rotation(), ["10.0.0.1:32769", "10.0.0.1:32771"]);
    assert_eq!(
        World::replicas(&state, "web"),
        [
            ("p-web-1-1".to_string(), ReplicaStatus::Running, Some(32771)),
            ("p-web-1-2".to_string(), ReplicaStatus::Running, Some(32769)),
        ]
    );
    // In the order of the snapshot restored (replica order), not re-sorted by address.
    let mut members: Vec<&str> = state.lbs["front"]
        .members
        .iter()
        .map(|m| m.address.as_str())
        .collect();
    members.sort();
    assert_eq!(members, ["10.0.0.1:32769", "10.0.0.1:32771"]);
    assert_eq!(state.revision, 1);
    let tail = journal(&w);
    assert_eq!(
        tail[tail.len() - 3..],
        [
            "! service.web: start #2 (new)",
            "restoring",
            "end RolledBack"
        ]
    );
}

/// Pins `on_failure = "pause"`: nothing is undone, the run halts where it stopped.
#[tokio::test(start_paused = true)]
async fn pause_leaves_everything_where_it_stopped() {
    let w = World::new();
    let v1 = w.applied(&web("v1", 2, "batch = 1"), empty()).await;
    w.rt.fail(FakeOp::Start, "p-web-2-2", "no space left on device");
    let (outcome, state) = w
        .apply(
            &web("v2", 2, "batch = 1\non_failure = \"pause\""),
            v1,
            Hold::No,
        )
        .await;
    assert!(matches!(
        outcome,
        ApplyOutcome::Halted {
            restore_error: None,
            ..
        }
    ));
    assert_eq!(w.rt.running(), ["p-web-1-2", "p-web-2-1"]);
    assert_eq!(w.front.in_rotation(), ["10.0.0.1:32769", "10.0.0.1:32770"]);
    assert!(!journal(&w).contains(&"restoring".to_string()));
    assert_eq!(
        state.history.last().map(|r| r.outcome),
        Some(crate::state::Outcome::Halted)
    );
}

/// Pins retention (`keep_previous = 1`): after a successful run the stopped replicas of the
/// previous revision stay for a fast rollback, older ones are removed from the engine and
/// from the state.
#[tokio::test(start_paused = true)]
async fn retention_keeps_the_previous_revision_only() {
    let w = World::new();
    let mut s = empty();
    for tag in ["v1", "v2", "v3"] {
        s = w.applied(&web(tag, 2, "batch = 2"), s).await;
    }
    let names: Vec<(String, ContainerState)> =
        w.rt.containers()
            .into_iter()
            .map(|c| (c.name, c.state))
            .collect();
    assert_eq!(
        names,
        [
            ("p-web-2-1".to_string(), ContainerState::Exited(0)),
            ("p-web-2-2".to_string(), ContainerState::Exited(0)),
            ("p-web-3-1".to_string(), ContainerState::Running),
            ("p-web-3-2".to_string(), ContainerState::Running),
        ]
    );
    let recorded: Vec<String> = World::replicas(&s, "web")
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        recorded,
        ["p-web-2-1", "p-web-2-2", "p-web-3-1", "p-web-3-2"]
    );
}
