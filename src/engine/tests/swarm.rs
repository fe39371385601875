//! Services with `runtime = "swarm"` through the executor, on the fake manager.

use super::journal::journal;
use super::*;
use crate::testing::{FakeSwarm, FakeUpdate};

fn swarm_web(tag: &str) -> String {
    format!(
        r#"[project]
name = "p"

[lb.front]
kind = "command"
join = ["true"]
leave = ["true"]

[service.web]
runtime = "swarm"
image = "app:{tag}"
replicas = 2
port = 8080
lb = ["front"]
"#
    )
}

/// The world with a Swarm manager on host `local`.
fn world() -> (World, FakeSwarm) {
    let mut w = World::new();
    let swarm = FakeSwarm::new();
    w.hosts.get_mut("local").expect("local").swarm = Some(Box::new(swarm.clone()));
    (w, swarm)
}

fn revision_label(swarm: &FakeSwarm) -> Option<String> {
    let spec = swarm.spec_of("p_web")?;
    crate::testing::swarm::spec_labels(&spec)
        .get(crate::ports::labels::REVISION)
        .cloned()
}

/// Pins a Swarm update that Swarm itself rolls back: the step fails naming the failed
/// task, gantry does not roll back again (the service no longer carries this run's spec),
/// and the load balancer keeps the published address.
#[tokio::test(start_paused = true)]
async fn an_update_swarm_rolls_back_fails_the_step_and_names_the_failed_tasks() {
    let (w, swarm) = world();
    let v1 = w.applied(&swarm_web("v1"), empty()).await;
    let published = v1.swarm["web"].published_port.expect("published");
    assert_eq!(w.front.in_rotation(), [format!("{HOST_IP}:{published}")]);
    swarm.on_update("p_web", FakeUpdate::RollsBack);
    let (outcome, state) = w.apply(&swarm_web("v2"), v1, Hold::No).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        failure.reason.contains("Swarm rolled the update back"),
        "{failure}"
    );
    assert!(failure.reason.contains("Failed: task"), "{failure}");
    assert_eq!(swarm.calls(), ["create p_web", "update p_web v1"]);
    assert_eq!(revision_label(&swarm).as_deref(), Some("1"));
    assert_eq!(state.swarm["web"].revision, 1);
    assert!(journal(&w).contains(&"intent: swarm p_web".to_string()));
}

/// Pins the undo of a Swarm update that converged when a later step fails (here its
/// warm-up): the update was journalled with its undo first, and the restore has Swarm roll
/// back to the previous spec.
#[tokio::test(start_paused = true)]
async fn a_later_failure_has_swarm_roll_back_the_update() {
    let (w, swarm) = world();
    let v1 = w.applied(&swarm_web("v1"), empty()).await;
    let published = v1.swarm["web"].published_port.expect("published");
    w.prober.always(
        &format!("{HOST_IP}:{published}"),
        crate::testing::FakeAnswer::Status(500),
    );
    let with_warmup =
        swarm_web("v2") + "warmup = { http = \"/\", successes = 3, deadline = \"2s\" }\n";
    let (outcome, state) = w.apply(&with_warmup, v1, Hold::No).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(failure.step, "warm up through the published port");
    assert_eq!(
        swarm.calls(),
        ["create p_web", "update p_web v1", "rollback p_web"]
    );
    assert_eq!(revision_label(&swarm).as_deref(), Some("1"));
    assert_eq!(state.swarm["web"].revision, 1);
}
