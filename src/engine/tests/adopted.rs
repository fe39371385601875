//! Replicas `gantry adopt` recorded (`crate::state::adopt`): containers gantry did not create,
//! without any of its labels, known only by their IDs in the state. They are rolled, kept
//! and started again like gantry's own, and a recovery does not forget them.

use super::*;
use crate::ports::{ContainerRuntime, ContainerSpec};
use crate::state::adopt::{Candidate, Inputs, LbMembers};

/// Two running containers of `app:v1` as Compose made them (no gantry label), adopted as
/// revision 1 of `web("v1", 2, ...)`.
async fn adopted(w: &World, rollout: &str) -> State {
    let image = w.rt.add_image("app:v1");
    let mut candidates = Vec::new();
    for i in 1..=2u32 {
        let spec = ContainerSpec {
            name: format!("shop_web_{i}"),
            image: image.clone(),
            command: None,
            env: Vec::new(),
            labels: BTreeMap::from([("com.docker.compose.service".to_string(), "web".to_string())]),
            port: Some(8080),
            host_port: None,
            host_ip: "0.0.0.0".into(),
            memory_bytes: None,
            cpus: None,
            log_max_size: None,
            log_max_files: None,
            stop_grace: std::time::Duration::from_secs(1),
            image_ref: None,
            options: Default::default(),
        };
        let id = w.rt.create(&spec).await.unwrap();
        w.rt.start(&id).await.unwrap();
        let info = w.rt.inspect(&id).await.unwrap().unwrap();
        candidates.push(Candidate {
            host: "local".into(),
            id,
            name: info.name.clone(),
            service: "web".into(),
            via: "Compose service web".into(),
            image_id: info.image_id.clone(),
            image: "app:v1".into(),
            running: true,
            ports: vec![(8080, info.host_port.unwrap())],
            number: Some(i),
        });
    }
    let mut model = crate::testing::model(&web("v1", 2, rollout));
    // The address the fake engine publishes on, as a `[[host]]` would say it.
    model.hosts[0].address = HOST_IP.into();
    let adopted = crate::state::adopt::adopt(Inputs {
        model: &model,
        candidates,
        swarm: Vec::new(),
        image_ids: BTreeMap::from([(("local".into(), "app:v1".into()), Some(image))]),
        lbs: BTreeMap::from([(
            "front".into(),
            LbMembers::Unreadable("a command load balancer".into()),
        )]),
        prior: None,
        lineage: "lineage".into(),
        now: "2026-12-03T18:00:00Z".into(),
    })
    .unwrap();
    adopted.state
}

/// A rollout to `app:v2` interrupted after its first replacement, then undone.
async fn interrupted_and_undone(
    w: &World,
    state: State,
) -> (super::super::recover::Recovered, Vec<String>, State) {
    w.interrupt_after("#1 (new) replaces #1 (current) in lb.front");
    let (outcome, state) = w.apply(&web("v2", 2, "batch = 1"), state, Hold::No).await;
    assert!(
        matches!(outcome, ApplyOutcome::Interrupted { .. }),
        "{outcome:?}"
    );
    w.interrupt.store(false, Ordering::SeqCst);
    *lock(&w.reporter.interrupt_after) = None;
    let journal = w.sink.journal_so_far();
    super::super::recover::recover(&journal, state, super::super::recover::Mode::Undo, &w.env())
        .await
}

/// Pins the first rollout after an adoption and the rollback to it: the adopted containers
/// leave the load balancer as the new ones join, are kept stopped, and are started again
/// (not re-created) by the rollback.
#[tokio::test(start_paused = true)]
async fn adopted_containers_are_rolled_kept_and_started_again() {
    let w = World::new();
    let state = adopted(&w, "batch = 1").await;
    assert_eq!(state.lbs["front"].members.len(), 2);
    let state = w.applied(&web("v2", 2, "batch = 1"), state).await;
    assert_eq!(w.rt.running(), ["p-web-2-1", "p-web-2-2"]);
    assert_eq!(
        World::replicas(&state, "web")
            .into_iter()
            .map(|(n, s, _)| (n, s))
            .collect::<Vec<_>>(),
        [
            ("p-web-2-1".to_string(), ReplicaStatus::Running),
            ("p-web-2-2".to_string(), ReplicaStatus::Running),
            ("shop_web_1".to_string(), ReplicaStatus::Stopped),
            ("shop_web_2".to_string(), ReplicaStatus::Stopped),
        ]
    );
    let in_lb = w.front.in_rotation();
    let news = [w.address_of("p-web-2-1"), w.address_of("p-web-2-2")];
    assert_eq!(in_lb.len(), 2);
    assert!(in_lb.iter().all(|a| news.contains(a)), "{in_lb:?}");

    let (outcome, state) = super::options::rollback(&w, &web("v1", 2, "batch = 1"), state, 1).await;
    assert!(
        matches!(outcome, ApplyOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(w.rt.running(), ["shop_web_1", "shop_web_2"]);
    let creates =
        w.rt.calls()
            .iter()
            .filter(|c| c.starts_with("create shop"))
            .count();
    assert_eq!(creates, 2, "started again, not re-created");
    let back = [w.address_of("shop_web_1"), w.address_of("shop_web_2")];
    let mut in_lb = w.front.in_rotation();
    in_lb.sort();
    let mut back = back.to_vec();
    back.sort();
    assert_eq!(in_lb, back);
    assert_eq!(state.revision, 3);
}

/// Pins recovery with adopted replicas: an undo after an interrupt finds them by ID (they
/// carry no project label) and puts them back, instead of forgetting them as gone.
#[tokio::test(start_paused = true)]
async fn an_undo_after_an_interrupt_keeps_the_adopted_replicas() {
    let w = World::new();
    let state = adopted(&w, "batch = 1").await;
    let (recovered, notes, state) = interrupted_and_undone(&w, state).await;
    assert_eq!(
        recovered,
        super::super::recover::Recovered::Undone { revision: 1 },
        "{notes:?}"
    );
    assert!(!notes.iter().any(|n| n.contains("forgotten")), "{notes:?}");
    assert_eq!(w.rt.running(), ["shop_web_1", "shop_web_2"]);
    assert_eq!(
        World::replicas(&state, "web")
            .into_iter()
            .map(|(n, s, _)| (n, s))
            .collect::<Vec<_>>(),
        [
            ("shop_web_1".to_string(), ReplicaStatus::Running),
            ("shop_web_2".to_string(), ReplicaStatus::Running),
        ]
    );
    assert_eq!(w.front.in_rotation().len(), 2);
}

/// Pins retention of adopted replicas (`keep_previous = 1`): kept stopped after the first
/// rollout, removed from the engine and from the state by the second, like gantry's own.
#[tokio::test(start_paused = true)]
async fn adopted_replicas_are_removed_by_retention_after_keep_previous() {
    let w = World::new();
    let state = adopted(&w, "batch = 2").await;
    let state = w.applied(&web("v2", 2, "batch = 2"), state).await;
    assert!(w.rt.by_name("shop_web_1").is_some(), "kept for rollback");
    let state = w.applied(&web("v3", 2, "batch = 2"), state).await;
    let names: Vec<String> = w.rt.containers().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["p-web-2-1", "p-web-2-2", "p-web-3-1", "p-web-3-2"]);
    let recorded: Vec<String> = World::replicas(&state, "web")
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(recorded, names);
}

/// Pins an adopted container the user removed by hand: a rollout goes on without it (no
/// panic, no failure on the missing ID), and an undo after an interrupt forgets it (named
/// in the notes) while keeping the other.
#[tokio::test(start_paused = true)]
async fn an_adopted_container_removed_by_hand_is_forgotten_not_fatal() {
    let w = World::new();
    let state = adopted(&w, "batch = 1").await;
    let gone = w.rt.by_name("shop_web_2").unwrap().id;
    w.rt.stop(&gone, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    w.rt.remove(&gone).await.unwrap();

    let (recovered, notes, state) = interrupted_and_undone(&w, state).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("shop_web_2") && n.contains("forgotten")),
        "{recovered:?} {notes:?}"
    );
    let names: Vec<String> = World::replicas(&state, "web")
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(names, ["shop_web_1"]);

    let state = w.applied(&web("v2", 2, "batch = 1"), state).await;
    // Revision 2 was the interrupted one.
    assert_eq!(w.rt.running(), ["p-web-3-1", "p-web-3-2"]);
    assert!(
        World::replicas(&state, "web")
            .iter()
            .all(|r| r.0 != "shop_web_2")
    );
}
