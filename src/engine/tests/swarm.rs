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
    assert_eq!(
        swarm.calls(),
        [
            "create network p_default",
            "create p_web",
            "update p_web v1"
        ]
    );
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
        [
            "create network p_default",
            "create p_web",
            "update p_web v1",
            "rollback p_web"
        ]
    );
    assert_eq!(revision_label(&swarm).as_deref(), Some("1"));
    assert_eq!(state.swarm["web"].revision, 1);
}

/// Pins the networks of a Swarm service: the project's overlay network is created once, with
/// gantry's and the project's labels, and the service joins it under its name; a network of
/// `networks` that the manager lacks fails the step before the service is touched.
#[tokio::test(start_paused = true)]
async fn the_project_network_is_created_once_and_external_networks_must_exist() {
    let (mut w, swarm) = world();
    w.labels = BTreeMap::from([("team".to_string(), "shop".to_string())]);
    let v1 = w.applied(&swarm_web("v1"), empty()).await;
    let v2 = w.applied(&swarm_web("v2"), v1).await;
    assert_eq!(
        swarm.calls(),
        [
            "create network p_default",
            "create p_web",
            "update p_web v1"
        ]
    );
    let labels = swarm.network_labels("p_default").expect("the network");
    assert_eq!(labels["team"], "shop");
    assert_eq!(labels[crate::ports::labels::PROJECT], "p");
    let spec = swarm.spec_of("p_web").expect("service");
    let networks = spec.task_template.unwrap().networks.unwrap();
    assert_eq!(networks[0].target.as_deref(), Some("p_default"));
    assert_eq!(networks[0].aliases, Some(vec!["web".to_string()]));

    let with_shared = swarm_web("v3") + "networks = [\"shared\"]\n";
    let (outcome, _) = w.apply(&with_shared, v2.clone(), Hold::No).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        failure
            .reason
            .contains("host `local` has no network `shared`"),
        "{failure}"
    );
    assert_eq!(swarm.calls().len(), 3, "the service was not touched");

    swarm.add_network("shared", "swarm");
    let v3 = w.applied(&with_shared, v2).await;
    assert_eq!(v3.swarm["web"].revision, 3);
    let spec = swarm.spec_of("p_web").expect("service");
    let targets: Vec<String> = spec
        .task_template
        .unwrap()
        .networks
        .unwrap()
        .into_iter()
        .filter_map(|n| n.target)
        .collect();
    assert_eq!(targets, ["p_default", "shared"]);
}
