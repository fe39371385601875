//! Table tests of step generation: for each rollout shape, the exact sequence of steps
//! (host, batch, and the step's description, which names its replicas and generation).

use super::*;
use crate::model::ServiceSpec;

/// One step as a row: `host batch description`.
fn row(s: &Step) -> String {
    let host = s.host.as_deref().unwrap_or("-");
    let batch = s
        .batch
        .map_or("-".to_string(), |b| format!("{}/{}", b.number, b.of));
    format!("{host} {batch} {}", s.describe())
}

fn rows(steps: &[Step]) -> Vec<String> {
    steps.iter().map(row).collect()
}

const HOSTS: &str = r#"
[[host]]
name = "a"
docker = "unix:///a.sock"

[[host]]
name = "b"
docker = "unix:///b.sock"
"#;

const PREVIEW: &str = r#"
[lb.preview]
kind = "command"
join = ["true"]
leave = ["true"]
"#;

/// `[service.web]` with `service` and `rollout` lines added, an LB `front` (and `preview`).
fn web(service: &str, rollout: &str) -> ServiceSpec {
    let toml = format!(
        r#"[project]
name = "p"

[lb.front]
kind = "command"
join = ["true"]
leave = ["true"]
{preview}{hosts}
[service.web]
image = "app:v1"
port = 8080
lb = ["front"]
stop_grace_period = "10s"
{replicas}{service}

[service.web.rollout]
{rollout}
"#,
        hosts = if service.contains("hosts") { HOSTS } else { "" },
        replicas = if service.contains("replicas") {
            ""
        } else {
            "replicas = 2\n"
        },
        preview = if rollout.contains("preview_lb") {
            PREVIEW
        } else {
            ""
        },
    );
    crate::testing::model(&toml)
        .services
        .remove("web")
        .expect("web")
}

fn v2(before: &ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        image: "app:v2".into(),
        ..before.clone()
    }
}

fn front() -> Vec<String> {
    vec!["front".to_string()]
}

fn table(before: &ServiceSpec, after: &ServiceSpec) -> Vec<String> {
    rows(&roll(before, after, &front(), &front()))
}

/// Start-first: each batch's new replicas are up and healthy, then replace the old ones in
/// the LB in ONE change (one nginx reload, issue 11); the old drain and stop; no soak step
/// when `soak` is zero.
#[test]
fn start_first_one_at_a_time() {
    let before = web("", "order = \"start-first\"\nbatch = 1");
    assert_eq!(
        table(&before, &v2(&before)),
        [
            "local 1/2 start #1 (new)",
            "local 1/2 health #1",
            "local 1/2 #1 (new) replaces #1 (current) in lb.front",
            "local 1/2 drain 5s",
            "local 1/2 stop #1 (current, grace 10s, kept for rollback)",
            "local 2/2 start #2 (new)",
            "local 2/2 health #2",
            "local 2/2 #2 (new) replaces #2 (current) in lb.front",
            "local 2/2 drain 5s",
            "local 2/2 stop #2 (current, grace 10s, kept for rollback)",
        ]
    );
}

/// Stop-first: the old replica leaves, drains and stops before its successor starts; the
/// soak closes each batch.
#[test]
fn stop_first_with_soak() {
    let before = web("", "order = \"stop-first\"\nbatch = 1\nsoak = \"3s\"");
    assert_eq!(
        table(&before, &v2(&before)),
        [
            "local 1/2 #1 (current) leave lb.front",
            "local 1/2 drain 5s",
            "local 1/2 stop #1 (current, grace 10s, kept for rollback)",
            "local 1/2 start #1 (new)",
            "local 1/2 health #1",
            "local 1/2 #1 (new) join lb.front",
            "local 1/2 soak 3s",
            "local 2/2 #2 (current) leave lb.front",
            "local 2/2 drain 5s",
            "local 2/2 stop #2 (current, grace 10s, kept for rollback)",
            "local 2/2 start #2 (new)",
            "local 2/2 health #2",
            "local 2/2 #2 (new) join lb.front",
            "local 2/2 soak 3s",
        ]
    );
}

/// Batches of 2 over 3 replicas (the last batch is short); the warm-up follows the health
/// check.
#[test]
fn batches_of_two_with_warm_up() {
    let before = web(
        "replicas = 3\nwarmup = { http = \"/\", successes = 5 }",
        "batch = 2",
    );
    assert_eq!(
        table(&before, &v2(&before)),
        [
            "local 1/2 start #1,#2 (new)",
            "local 1/2 health #1,#2",
            "local 1/2 warm up #1,#2",
            "local 1/2 #1,#2 (new) replace #1,#2 (current) in lb.front",
            "local 1/2 drain 5s",
            "local 1/2 stop #1,#2 (current, grace 10s, kept for rollback)",
            "local 2/2 start #3 (new)",
            "local 2/2 health #3",
            "local 2/2 warm up #3",
            "local 2/2 #3 (new) replaces #3 (current) in lb.front",
            "local 2/2 drain 5s",
            "local 2/2 stop #3 (current, grace 10s, kept for rollback)",
        ]
    );
}

/// A replacement that also shrinks: batches walk the old indices; replicas beyond the new
/// count only leave and stop.
#[test]
fn a_replacement_that_shrinks() {
    let before = web("replicas = 3", "batch = 2");
    let after = ServiceSpec {
        replicas: 1,
        ..v2(&before)
    };
    assert_eq!(
        table(&before, &after),
        [
            "local 1/2 start #1 (new)",
            "local 1/2 health #1",
            "local 1/2 #1 (new) replaces #1,#2 (current) in lb.front",
            "local 1/2 drain 5s",
            "local 1/2 stop #1,#2 (current, grace 10s, kept for rollback)",
            "local 2/2 #3 (current) leave lb.front",
            "local 2/2 drain 5s",
            "local 2/2 stop #3 (current, grace 10s, kept for rollback)",
        ]
    );
}

/// Blue-green: the whole new colour beside the live one, through the preview and its check,
/// then one switch per LB, the preview left, one drain, and the scale-down of the old colour
/// (after its delay, keeping `keep_old_replicas`); no batches.
#[test]
fn blue_green_with_preview() {
    let before = web(
        "",
        "strategy = \"blue-green\"\npreview_lb = \"preview\"\npreview_check = [\"check\"]\nscale_down_delay = \"10m\"\nkeep_old_replicas = 1\ndrain = \"2s\"",
    );
    assert_eq!(
        table(&before, &v2(&before)),
        [
            "local - start #1,#2 (new)",
            "local - health #1,#2",
            "local - #1,#2 (new) join lb.preview",
            "local - preview check `check`",
            "local - switch lb.front from the live colour to #1,#2 in one change",
            "local - #1,#2 (new) leave lb.preview",
            "local - drain 2s",
            "local - keep the old colour 10m for switch-back, then scale it down to 1 running",
        ]
    );
    // Without a delay the old colour goes down at once.
    let now = web("", "strategy = \"blue-green\"\nscale_down_delay = \"0s\"");
    assert_eq!(
        table(&now, &v2(&now))[3..],
        [
            "local - drain 5s",
            "local - scale the old colour down to 0 running"
        ]
    );
}

/// `hosts_in_parallel` is the executor's business: the steps are the same, host by host in
/// name order, each host's steps contiguous (what the executor runs side by side).
#[test]
fn hosts_in_parallel_keeps_each_hosts_steps_together() {
    let parallel = web("hosts = [\"b\", \"a\"]", "hosts_in_parallel = 2\nbatch = 2");
    let one_by_one = ServiceSpec {
        rollout: crate::model::RolloutSpec {
            hosts_in_parallel: 1,
            ..parallel.rollout.clone()
        },
        ..parallel.clone()
    };
    let steps = table(&parallel, &v2(&parallel));
    assert_eq!(steps, table(&one_by_one, &v2(&one_by_one)));
    let per_host = [
        "1/1 start #1,#2 (new)",
        "1/1 health #1,#2",
        "1/1 #1,#2 (new) replace #1,#2 (current) in lb.front",
        "1/1 drain 5s",
        "1/1 stop #1,#2 (current, grace 10s, kept for rollback)",
    ];
    let expected: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|h| per_host.iter().map(move |s| format!("{h} {s}")))
        .collect();
    assert_eq!(steps, expected);
}

/// A state at revision 2 (`v2` running) that keeps revision 1's replicas stopped, and the
/// history record of revision 1.
fn rolled_state(spec_v1: &ServiceSpec, old_colour_running: bool) -> crate::state::State {
    use crate::state::{LbState, OldColour, Replica, ReplicaStatus, ServiceState, State};
    let spec_v2 = v2(spec_v1);
    let mut state = State::empty("p", "lineage".into());
    state.revision = 2;
    let replica = |index: u32, revision: u64, status: ReplicaStatus| Replica {
        index,
        host: "local".into(),
        name: format!("p-web-{revision}-{index}"),
        container_id: format!("c{revision}{index}"),
        image_id: Some(format!("sha256:v{revision}")),
        revision,
        host_port: Some(32768 + index as u16 + 10 * revision as u16),
        status,
    };
    let old = if old_colour_running {
        ReplicaStatus::Running
    } else {
        ReplicaStatus::Stopped
    };
    state.services.insert(
        "web".into(),
        ServiceState {
            spec: spec_v2,
            revision: 2,
            replicas: vec![
                replica(1, 1, old),
                replica(2, 1, old),
                replica(1, 2, ReplicaStatus::Running),
                replica(2, 2, ReplicaStatus::Running),
            ],
            old_colour: old_colour_running.then_some(OldColour {
                revision: 1,
                scale_down_at: Some("2026-01-01T00:10:00Z".into()),
                keep: 0,
            }),
        },
    );
    let lb = model_v1("").lbs.remove("front").expect("front");
    state.lbs.insert(
        "front".into(),
        LbState {
            spec: lb,
            members: Vec::new(),
        },
    );
    // Through JSON: the record's origin is written as the state file writes it.
    let record = serde_json::json!({
        "revision": 1,
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z",
        "origin": "apply",
        "outcome": "succeeded",
        "services": { "web": {
            "spec": serde_json::to_value(spec_v1).expect("spec"),
            "image_id": "sha256:v1",
            "replicas_revision": 1,
        }},
    });
    state
        .history
        .push(serde_json::from_value(record).expect("a revision record"));
    state
}

/// The model of revision 1, as `gantry rollback` plans against.
fn model_v1(rollout: &str) -> crate::model::Model {
    crate::testing::model(&format!(
        "[project]\nname = \"p\"\n[lb.front]\nkind = \"command\"\njoin = [\"true\"]\nleave = [\"true\"]\n[service.web]\nimage = \"app:v1\"\nreplicas = 2\nport = 8080\nlb = [\"front\"]\nstop_grace_period = \"10s\"\n[service.web.rollout]\n{rollout}\n"
    ))
}

fn rollback_rows(rollout: &str, fast: bool, old_colour_running: bool) -> Vec<String> {
    let model = model_v1(rollout);
    let state = rolled_state(&model.services["web"], old_colour_running);
    let mut plan = crate::plan::plan(&model, Some(&state), "sha");
    crate::plan::for_rollback(&mut plan, &state, 1, fast);
    let web = plan
        .changes
        .iter()
        .find(|c| c.address.name == "web")
        .expect("web");
    rows(&web.steps)
}

/// Rollback: one batch, start-first, no soak, whatever the rollout says; the fast path
/// starts the kept containers of the revision again (restart), else creates new ones.
#[test]
fn rollback_restarts_the_kept_replicas_in_one_batch() {
    let slow_rollout = "order = \"stop-first\"\nbatch = 1\nsoak = \"30s\"";
    let tail = [
        "local 1/1 health #1,#2",
        "local 1/1 #1,#2 (new) replace #1,#2 (current) in lb.front",
        "local 1/1 drain 5s",
        "local 1/1 stop #1,#2 (current, grace 10s, kept for rollback)",
    ];
    let fast = rollback_rows(slow_rollout, true, false);
    assert_eq!(fast[0], "local 1/1 restart #1,#2 (kept from revision 1)");
    assert_eq!(fast[1..], tail);
    let recreate = rollback_rows(slow_rollout, false, false);
    assert_eq!(recreate[0], "local 1/1 start #1,#2 (new)");
    assert_eq!(recreate[1..], tail);
}

/// Blue-green rollback while the old colour still runs: take it over, switch back in one
/// change, drain, stop the colour that was live; no container started.
#[test]
fn blue_green_rollback_switches_back_to_the_running_old_colour() {
    assert_eq!(
        rollback_rows(
            "strategy = \"blue-green\"\nscale_down_delay = \"10m\"",
            true,
            true
        ),
        [
            "local - take over running #1,#2 of revision 1 (old colour, no container started)",
            "local - switch lb.front from the live colour to #1,#2 in one change",
            "local - drain 5s",
            "local - stop #1,#2 (current, grace 10s, kept for rollback)",
        ]
    );
}

/// Swarm: one update step on the manager carrying the rollout as Swarm's update config,
/// then the warm-up and the LB joins through the published port. The deadline: one batch of
/// (5s start + 4s delay + 4s monitor + 10s grace + 10s) + rollback (5s + 4s + 10s) + 30s.
#[test]
fn swarm_changes_are_one_update_on_the_manager() {
    let before = web(
        "runtime = \"swarm\"\nwarmup = { http = \"/\", successes = 5 }",
        "batch = 2\norder = \"stop-first\"\non_failure = \"pause\"\nsoak = \"4s\"",
    );
    let after = v2(&before);
    let steps = roll(&before, &after, &front(), &front());
    assert_eq!(
        rows(&steps),
        [
            "local - swarm service update: 2 replica(s), 2 at a time, stop-first, 4s between batches, monitor 4s, on failure pause; wait at most 1m 22s",
            "local - warm up through the published port",
        ]
    );
    let StepOp::SwarmUpdate {
        replicas, update, ..
    } = &steps[0].op
    else {
        panic!("{:?}", steps[0].op);
    };
    assert_eq!(*replicas, 2);
    assert_eq!(update.parallelism, 2);
    assert_eq!(update.order, crate::model::Order::StopFirst);
    assert_eq!(update.failure_action, crate::model::OnFailure::Pause);
    assert_eq!(
        rows(&create(&after, &front())),
        [
            "local - swarm service update: 2 replica(s), 2 at a time, stop-first, 4s between batches, monitor 4s, on failure pause; wait at most 1m 22s",
            "local - warm up through the published port",
            "local - published port joins lb.front",
        ]
    );
}
