//! Container options of issue 12 through the executor: what a replica is created with, the
//! project network and volumes made before the first container of a host, the health
//! command waited on, the restart policy of kept replicas, and a taken engine-chosen port.

use super::journal::journal;
use super::*;
use crate::ports::{ContainerRuntime, MountSource, NetworkAttachment, Restart};
use crate::testing::FakeOp;

/// `redis` (a named volume, a bind mount, a health command, an external network, `restart`)
/// and `web` (2 replicas, HTTP health), both on the project network.
fn stack(redis_tag: &str, web_tag: &str, restart: &str) -> String {
    format!(
        r#"[project]
name = "p"
labels = {{ team = "games" }}

[service.redis]
image = "redis:{redis_tag}"
port = 6379
command = ["redis-server", "--appendonly", "yes"]
volumes = ["cache-data:/data", "/srv/logs:/logs:ro"]
networks = ["shared"]
restart = "{restart}"
user = "999"
cap_add = ["SYS_NICE"]
health = {{ command = ["redis-cli", "ping"], interval = "1s", timeout = "2s", retries = 3, start_period = "5s" }}
rollout = {{ order = "stop-first" }}

[service.web]
image = "app:{web_tag}"
replicas = 2
port = 8080
env = {{ REDIS_HOST = "redis" }}
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 3 }}
"#
    )
}

/// A world where the external network `shared` of `stack` exists.
async fn with_shared() -> World {
    let w = World::new();
    w.rt.ensure_network("shared", &BTreeMap::new())
        .await
        .unwrap();
    w
}

fn names_of(calls: &[String], prefix: &str) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.starts_with(prefix))
        .cloned()
        .collect()
}

/// Pins what a replica is created with: the image as written for `docker ps` (the ID runs),
/// the project network with the service's name as alias and the external network without,
/// `<project>_<name>` volumes, the health command as the engine's healthcheck, the restart
/// policy and the other options as written, and the probed port as a label.
#[tokio::test(start_paused = true)]
async fn replicas_are_created_with_their_service_options() {
    let w = with_shared().await;
    w.applied(&stack("7.2", "v1", "always"), empty()).await;
    let spec = w.rt.spec_of("p-redis-1-1").expect("created");
    assert_eq!(spec.image_ref.as_deref(), Some("redis:7.2"));
    assert_eq!(
        w.rt.shown_image("p-redis-1-1").as_deref(),
        Some("redis:7.2")
    );
    assert!(spec.image.starts_with("sha256:"), "{}", spec.image);
    assert_eq!(spec.labels["dev.gantry.port"], "6379");
    let o = &spec.options;
    assert_eq!(
        o.networks,
        [
            NetworkAttachment {
                name: "p".into(),
                aliases: vec!["redis".into()],
            },
            NetworkAttachment {
                name: "shared".into(),
                aliases: vec![],
            },
        ]
    );
    let sources: Vec<(MountSource, &str, bool)> = o
        .mounts
        .iter()
        .map(|m| (m.source.clone(), m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        sources,
        [
            (MountSource::Volume("p_cache-data".into()), "/data", false),
            (MountSource::Bind("/srv/logs".into()), "/logs", true),
        ]
    );
    let hc = o.healthcheck.as_ref().expect("a healthcheck");
    assert_eq!(hc.test, ["redis-cli", "ping"]);
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries, hc.start_period),
        (
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(2),
            3,
            std::time::Duration::from_secs(5)
        )
    );
    assert_eq!(o.restart, Restart::Always);
    assert_eq!(o.user.as_deref(), Some("999"));
    assert_eq!(o.cap_add, ["SYS_NICE"]);
    // The web replicas: the project network, the default policy, no healthcheck of the
    // engine's (their probe is gantry's HTTP one).
    let web = w.rt.spec_of("p-web-1-1").expect("created").options;
    assert_eq!(web.networks.len(), 1);
    assert_eq!(web.networks[0].aliases, ["web"]);
    assert_eq!(web.restart, Restart::UnlessStopped);
    assert!(web.healthcheck.is_none());
}

/// Pins `network_mode = "host"`: no network of gantry's, none joined, none created.
#[tokio::test(start_paused = true)]
async fn host_network_mode_joins_and_creates_no_network() {
    let w = World::new();
    let toml = r#"[project]
name = "p"

[service.agent]
image = "agent:1"
network_mode = "host"
"#;
    w.applied(toml, empty()).await;
    assert!(
        w.rt.spec_of("p-agent-1-1")
            .unwrap()
            .options
            .networks
            .is_empty()
    );
    assert!(w.rt.networks().is_empty());
    assert!(
        !w.rt
            .spec_of("p-agent-1-1")
            .unwrap()
            .labels
            .contains_key("dev.gantry.port")
    );
}

/// Pins the network and the volumes: made once per host per run, before the first create,
/// with the project's labels and gantry's; kept through a roll and a destroy of the service.
#[tokio::test(start_paused = true)]
async fn network_and_volumes_are_made_once_before_the_first_container_and_kept() {
    let w = with_shared().await;
    let s = w.applied(&stack("7.2", "v1", "always"), empty()).await;
    let calls = w.rt.calls();
    assert_eq!(
        names_of(&calls, "ensure_network"),
        ["ensure_network shared", "ensure_network p"]
    );
    assert_eq!(
        names_of(&calls, "ensure_volume"),
        ["ensure_volume p_cache-data"]
    );
    let first_create = calls.iter().position(|c| c.starts_with("create ")).unwrap();
    let ensured = calls
        .iter()
        .position(|c| c.starts_with("ensure_volume"))
        .unwrap();
    assert!(ensured < first_create, "{calls:#?}");
    assert_eq!(w.rt.networks(), ["p", "shared"]);
    assert_eq!(w.rt.volumes(), ["p_cache-data"]);
    let labelled =
        w.rt.list_volumes(&[
            ("dev.gantry.project", "p"),
            ("dev.gantry.volume", "cache-data"),
            ("team", "games"),
        ])
        .await
        .unwrap();
    assert_eq!(labelled, ["p_cache-data"]);

    // A roll of redis (stop-first), then redis destroyed: the volume stays.
    let s = w.applied(&stack("7.4", "v1", "always"), s).await;
    assert_eq!(w.rt.volumes(), ["p_cache-data"]);
    let without_redis = r#"[project]
name = "p"

[service.web]
image = "app:v1"
replicas = 2
port = 8080
health = { http = "/healthz", interval = "100ms", timeout = "1s", retries = 3 }
"#;
    let s = w.applied(without_redis, s).await;
    assert!(!s.services.contains_key("redis"));
    assert_eq!(w.rt.volumes(), ["p_cache-data"]);
    assert_eq!(w.rt.networks(), ["p", "shared"]);
    assert!(names_of(&w.rt.calls(), "remove_volume").is_empty());
}

/// Pins the health command: the step waits until the engine reports healthy and says so.
#[tokio::test(start_paused = true)]
async fn a_health_command_is_waited_on_until_healthy() {
    let w = with_shared().await;
    w.applied(&stack("7.2", "v1", "unless-stopped"), empty())
        .await;
    let detail = lock(&w.reporter.events)
        .iter()
        .find_map(|e| match e {
            Event::StepFinished {
                resource,
                step,
                detail,
                ..
            } if resource == "service.redis" && step.starts_with("health") => detail.clone(),
            _ => None,
        })
        .expect("the health step of redis");
    assert!(detail.contains("healthy (health command)"), "{detail}");
}

/// Pins an unhealthy health command: the step fails with the command's last output and the
/// container's log tail, and the usual restore follows (the old replica runs again, with
/// its service's restart policy back).
#[tokio::test(start_paused = true)]
async fn an_unhealthy_command_fails_the_step_with_its_output_and_restores() {
    let w = with_shared().await;
    let s = w.applied(&stack("7.2", "v1", "always"), empty()).await;
    w.rt.unhealthy("p-redis-2-", "Could not connect to Redis at 127.0.0.1:6379");
    w.rt.set_logs("p-redis-2-1", &["Fatal error loading the DB"]);
    let (outcome, state) = w.apply(&stack("7.4", "v1", "always"), s, Hold::No).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(failure.step.starts_with("health"), "{failure}");
    assert!(
        failure
            .reason
            .contains("last output: `Could not connect to Redis at 127.0.0.1:6379`"),
        "{failure}"
    );
    assert_eq!(failure.logs, ["Fatal error loading the DB"]);
    assert!(journal(&w).contains(&"restoring".to_string()));
    assert_eq!(w.rt.running(), ["p-redis-1-1", "p-web-1-1", "p-web-1-2"]);
    assert_eq!(
        w.rt.spec_of("p-redis-1-1").unwrap().options.restart,
        Restart::Always
    );
    let calls = w.rt.calls();
    let policy = calls
        .iter()
        .rposition(|c| c == "set_restart p-redis-1-1 always")
        .expect("policy put back");
    let start = calls
        .iter()
        .rposition(|c| c == "start p-redis-1-1")
        .unwrap();
    assert!(policy < start, "{calls:#?}");
    assert_eq!(state.revision, 1);
}

/// Pins a container that exits while its health command is awaited: the step fails at once.
#[tokio::test(start_paused = true)]
async fn an_exit_fails_the_health_command_wait() {
    let w = with_shared().await;
    w.rt.exit_at_start("p-redis-1-1", 1);
    let (outcome, _) = w
        .apply(&stack("7.2", "v1", "always"), empty(), Hold::No)
        .await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(failure.reason.contains("exited with code 1"), "{failure}");
}

/// Pins the restart policy of kept replicas: `no` before they stop (so an engine restart
/// leaves them stopped), their service's back before the rollback's fast path starts them
/// again, and `no` again for the replicas the rollback stops and keeps.
#[tokio::test(start_paused = true)]
async fn kept_replicas_are_set_to_no_and_get_their_policy_back_when_started_again() {
    let w = World::new();
    let v1 = w.applied(&web_restart("v1", "always"), empty()).await;
    let v2 = w.applied(&web_restart("v2", "always"), v1).await;
    let policy = |name: &str| w.rt.spec_of(name).unwrap().options.restart;
    assert_eq!(policy("p-web-1-1"), Restart::No);
    assert_eq!(policy("p-web-1-2"), Restart::No);
    assert_eq!(policy("p-web-2-1"), Restart::Always);
    let calls = w.rt.calls();
    let set = calls
        .iter()
        .position(|c| c == "set_restart p-web-1-1 no")
        .expect("set to no");
    let stop = calls.iter().position(|c| c == "stop p-web-1-1").unwrap();
    assert!(set < stop, "{calls:#?}");

    // Rollback to 1: the kept v1 replicas start again (fast path), with `always`.
    let (outcome, _) = rollback(&w, &web_restart("v1", "always"), v2, 1).await;
    assert!(
        matches!(outcome, ApplyOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(w.rt.running(), ["p-web-1-1", "p-web-1-2"]);
    assert_eq!(policy("p-web-1-1"), Restart::Always);
    assert_eq!(policy("p-web-2-1"), Restart::No);
    let calls = w.rt.calls();
    let back = calls
        .iter()
        .rposition(|c| c == "set_restart p-web-1-1 always")
        .expect("policy back");
    let start = calls.iter().rposition(|c| c == "start p-web-1-1").unwrap();
    assert!(back < start, "{calls:#?}");
}

/// Pins why: after an engine restart the replicas kept for rollback stay stopped, even with
/// `always`, and the running ones run again.
#[tokio::test(start_paused = true)]
async fn an_engine_restart_leaves_kept_replicas_stopped() {
    let w = World::new();
    let v1 = w.applied(&web_restart("v1", "always"), empty()).await;
    w.applied(&web_restart("v2", "always"), v1).await;
    w.rt.restart_engine();
    assert_eq!(w.rt.running(), ["p-web-2-1", "p-web-2-2"]);
}

/// Pins the undo of a rollback's fast path: a kept replica it started is stopped and kept
/// again, set to `no` first.
#[tokio::test(start_paused = true)]
async fn a_failed_rollback_sets_the_replicas_it_started_back_to_no() {
    let w = World::new();
    let v1 = w.applied(&web_restart("v1", "always"), empty()).await;
    let v2 = w.applied(&web_restart("v2", "always"), v1).await;
    w.prober.always(
        &format!("{HOST_IP}:*"),
        crate::testing::FakeAnswer::Status(500),
    );
    let (outcome, _) = rollback(&w, &web_restart("v1", "always"), v2, 1).await;
    assert!(
        matches!(
            outcome,
            ApplyOutcome::RolledBack { .. } | ApplyOutcome::Halted { .. }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        w.rt.spec_of("p-web-1-1").unwrap().options.restart,
        Restart::No
    );
    assert_eq!(
        w.rt.by_name("p-web-1-1").unwrap().state,
        ContainerState::Exited(0)
    );
}

/// Pins a taken engine-chosen host port: the replica is removed and created again (the
/// engine picks another port), each create announced in the journal as usual.
#[tokio::test(start_paused = true)]
async fn a_taken_engine_chosen_port_is_tried_again_with_a_new_container() {
    let w = World::new();
    w.rt.fail_once(
        FakeOp::Start,
        "p-web-1-1",
        "driver failed programming external connectivity: Bind for 10.0.0.1:32768 failed: port is already allocated",
    );
    let s = w
        .applied(&web_restart("v1", "unless-stopped"), empty())
        .await;
    let calls = w.rt.calls();
    assert_eq!(names_of(&calls, "create p-web-1-1").len(), 2, "{calls:#?}");
    assert_eq!(names_of(&calls, "remove p-web-1-1").len(), 1);
    let recorded: Vec<String> = World::replicas(&s, "web")
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(recorded, ["p-web-1-1", "p-web-1-2"]);
    assert_eq!(w.rt.running(), ["p-web-1-1", "p-web-1-2"]);
    let intents = journal(&w)
        .into_iter()
        .filter(|l| l == "intent: remove p-web-1-1")
        .count();
    assert_eq!(intents, 2);
}

/// Pins the limit: three attempts, then the step fails and the run restores.
#[tokio::test(start_paused = true)]
async fn a_port_taken_three_times_fails_the_start() {
    let w = World::new();
    w.rt.fail(
        FakeOp::Start,
        "p-web-1-1",
        "Bind for 10.0.0.1:32768 failed: port is already allocated",
    );
    let (outcome, _) = w
        .apply(&web_restart("v1", "unless-stopped"), empty(), Hold::No)
        .await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        failure.reason.contains("port is already allocated"),
        "{failure}"
    );
    assert_eq!(names_of(&w.rt.calls(), "create p-web-1-1").len(), 3);
    assert!(w.rt.by_name("p-web-1-1").is_none());
}

/// `web` of 2 replicas with restart policy `restart`, HTTP health, rolled a batch at a time.
fn web_restart(tag: &str, restart: &str) -> String {
    format!(
        r#"[project]
name = "p"

[service.web]
image = "app:{tag}"
replicas = 2
port = 8080
restart = "{restart}"
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 3 }}
rollout = {{ batch = 2 }}
"#
    )
}

/// What `gantry rollback --to` runs: the plan of `toml` (the revision's config) made a
/// rollback to `to` (kept replicas started again), journalled as a session would.
pub(super) async fn rollback(
    w: &World,
    toml: &str,
    state: State,
    to: u64,
) -> (ApplyOutcome, State) {
    let (mut plan, image_ids) = w.plan(toml, &state);
    crate::plan::for_rollback(&mut plan, &state, to, true);
    w.sink.begin(Entry::Begin {
        revision: state.next_revision(),
        origin: Origin::Rollback {
            to,
            from: state.revision,
        },
        pid: 1,
        host: "test".into(),
        at: crate::ports::Clock::rfc3339(&w.clock),
        prior: Box::new(state.clone()),
    });
    let env = BTreeMap::new();
    let inputs = ApplyInputs {
        env: &env,
        image_ids: &image_ids,
        image_digests: &BTreeMap::new(),
        origin: Origin::Rollback {
            to,
            from: state.revision,
        },
        hold: Hold::No,
    };
    super::super::apply(&plan, state, &w.env(), &inputs).await
}

/// Pins a kept replica whose fixed host port was taken while it was stopped: the rollback's
/// fast path creates a new replica in its place (same image, another port); the kept one
/// stays stopped (and goes with retention: only revision 2 is kept now).
#[tokio::test(start_paused = true)]
async fn a_kept_replica_whose_port_was_taken_is_replaced_by_a_new_one() {
    let w = World::new();
    let v1 = w.applied(&web_restart("v1", "always"), empty()).await;
    let v2 = w.applied(&web_restart("v2", "always"), v1).await;
    let kept = w.rt.spec_of("p-web-1-2").unwrap();
    let port =
        w.rt.by_name("p-web-1-2")
            .and_then(|_| {
                v2.services["web"]
                    .replicas
                    .iter()
                    .find(|r| r.name == "p-web-1-2")
                    .and_then(|r| r.host_port)
            })
            .expect("a fixed host port");
    let squatter = crate::ports::ContainerSpec {
        name: "squatter".into(),
        labels: BTreeMap::new(),
        host_port: Some(port),
        image_ref: None,
        options: Default::default(),
        ..kept
    };
    let id = w.rt.create(&squatter).await.unwrap();
    w.rt.start(&id).await.unwrap();

    let (outcome, state) = rollback(&w, &web_restart("v1", "always"), v2, 1).await;
    assert!(
        matches!(outcome, ApplyOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        w.rt.running(),
        ["p-web-1-1", "p-web-3-2", "squatter"],
        "a new #2 of revision 3"
    );
    assert!(w.rt.by_name("p-web-1-2").is_none());
    assert!(
        w.rt.calls()
            .contains(&"set_restart p-web-1-2 no".to_string()),
        "set back to no"
    );
    assert_eq!(w.rt.restart_of("p-web-3-2"), Some(Restart::Always));
    let running: Vec<String> = World::replicas(&state, "web")
        .into_iter()
        .filter(|r| r.1 == ReplicaStatus::Running)
        .map(|r| r.0)
        .collect();
    assert_eq!(running, ["p-web-1-1", "p-web-3-2"]);
}
