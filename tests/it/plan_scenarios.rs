//! A realistic configuration planned against a recorded state file
//! (`tests/fixtures/plan/state.json`, produced from `previous.toml`): every action kind
//! appears once, in dependency order, and the three views are kept as snapshots.

use crate::support::fixtures::*;
use gantry::plan::{Action, Plan, Risk, StepOp};
use gantry::state::State;

fn scenario_plan() -> Plan {
    let source = std::fs::read_to_string(fixture("plan/gantry.toml")).unwrap();
    let state =
        State::from_json(&std::fs::read_to_string(fixture("plan/state.json")).unwrap()).unwrap();
    gantry::plan::plan(&model(&source), Some(&state), "fixture")
}

fn action(plan: &Plan, address: &str) -> Action {
    plan.changes
        .iter()
        .find(|c| c.address.to_string() == address)
        .unwrap_or_else(|| panic!("{address} not in plan"))
        .action
}

#[test]
fn every_action_kind_is_recognised() {
    let plan = scenario_plan();
    assert_eq!(action(&plan, "service.cache"), Action::NoOp);
    assert_eq!(action(&plan, "service.api"), Action::Replace);
    assert_eq!(action(&plan, "service.worker"), Action::Scale);
    assert_eq!(action(&plan, "service.web"), Action::Update);
    assert_eq!(action(&plan, "service.search"), Action::Create);
    assert_eq!(action(&plan, "service.legacy"), Action::Destroy);
    assert_eq!(action(&plan, "lb.old"), Action::Destroy);
    assert_eq!(action(&plan, "lb.front"), Action::NoOp);
    let s = &plan.summary;
    assert_eq!(
        (s.create, s.update, s.replace, s.scale, s.destroy, s.no_op),
        (1, 1, 1, 1, 2, 2)
    );
    assert_eq!(
        s.line(),
        "Plan: 1 to create, 1 to update in place, 1 to roll, 1 to scale, 2 to destroy."
    );
}

#[test]
fn reasons_are_attribute_level() {
    let plan = scenario_plan();
    let api = plan
        .changes
        .iter()
        .find(|c| c.address.to_string() == "service.api")
        .unwrap();
    let paths: Vec<&str> = api.attributes.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["image", "command", "env", "secret_env"]);
    assert!(api.attributes.iter().all(|a| a.forces_replacement));
    let web = plan
        .changes
        .iter()
        .find(|c| c.address.to_string() == "service.web")
        .unwrap();
    let paths: Vec<&str> = web.attributes.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["health.interval"]);
    assert!(!web.attributes[0].forces_replacement);
}

#[test]
fn changes_follow_dependency_order_and_destroys_come_last() {
    let plan = scenario_plan();
    let order: Vec<String> = plan.changes.iter().map(|c| c.address.to_string()).collect();
    let pos = |a: &str| order.iter().position(|o| o == a).unwrap();
    assert!(pos("service.cache") < pos("service.api"));
    assert!(pos("service.cache") < pos("service.worker"));
    assert!(pos("service.api") < pos("service.web"));
    assert!(pos("service.api") < pos("service.search"));
    assert!(pos("service.search") < pos("lb.front"));
    // Destroyed services go before the load balancer they were members of: they leave it
    // first, then gantry stops managing it.
    assert_eq!(&order[order.len() - 2..], ["service.legacy", "lb.old"]);
    let waves: Vec<usize> = plan.changes.iter().map(|c| c.wave).collect();
    assert!(waves.windows(2).all(|w| w[0] <= w[1]), "{waves:?}");
}

#[test]
fn rolling_steps_follow_start_first_order_per_batch() {
    let plan = scenario_plan();
    let api = plan
        .changes
        .iter()
        .find(|c| c.address.to_string() == "service.api")
        .unwrap();
    let ops: Vec<&str> = api
        .steps
        .iter()
        .filter(|s| s.batch.map(|b| b.number) == Some(1))
        .map(|s| match &s.op {
            StepOp::Start { .. } => "start",
            StepOp::WaitHealthy { .. } => "health",
            StepOp::JoinLb { .. } => "join",
            StepOp::LeaveLb { .. } => "leave",
            StepOp::ReplaceInLb { .. } => "replace",
            StepOp::Drain { .. } => "drain",
            StepOp::Stop { .. } => "stop",
            StepOp::Soak { .. } => "soak",
            _ => "other",
        })
        .collect();
    assert_eq!(
        ops,
        // issue 11: one load-balancer change per batch (one nginx reload), not a join and
        // a leave.
        ["start", "health", "replace", "drain", "stop", "soak"]
    );
    let batches: std::collections::BTreeSet<u32> = api
        .steps
        .iter()
        .filter_map(|s| s.batch.map(|b| b.number))
        .collect();
    assert_eq!(batches.len(), 3);
}

#[test]
fn risky_changes_are_flagged_and_listed_first() {
    let plan = scenario_plan();
    let review: Vec<String> = plan
        .review_order()
        .iter()
        .map(|c| c.address.to_string())
        .collect();
    assert_eq!(&review[..3], ["service.legacy", "lb.old", "service.worker"]);
    let worker = plan
        .changes
        .iter()
        .find(|c| c.address.to_string() == "service.worker")
        .unwrap();
    assert_eq!(worker.risks, [Risk::ReplicaDecrease]);
    let legacy = plan
        .changes
        .iter()
        .find(|c| c.address.to_string() == "service.legacy")
        .unwrap();
    assert_eq!(legacy.risks, [Risk::Destroy, Risk::LbRemoval]);
}

#[test]
fn planning_is_deterministic_to_the_byte() {
    let a = scenario_plan();
    let b = scenario_plan();
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(
        gantry::render::text(&a, true),
        gantry::render::text(&b, true)
    );
    assert_eq!(
        Plan::from_json(&a.to_json()).unwrap(),
        a,
        "the JSON plan round-trips"
    );
}

#[test]
fn no_changes_when_config_matches_state() {
    let source = std::fs::read_to_string(fixture("plan/previous.toml")).unwrap();
    let state =
        State::from_json(&std::fs::read_to_string(fixture("plan/state.json")).unwrap()).unwrap();
    let plan = gantry::plan::plan(&model(&source), Some(&state), "x");
    assert!(!plan.has_changes());
    assert!(gantry::render::text(&plan, false).contains("No changes."));
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    // Relative to this file: tests/snapshots, named without the module path.
    s.set_snapshot_path("../snapshots");
    s.add_filter(
        r#""gantry_version": "[^"]+""#,
        r#""gantry_version": "[VERSION]""#,
    );
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn snapshot_text() {
    settings().bind(|| {
        insta::assert_snapshot!("plan_text", gantry::render::text(&scenario_plan(), false))
    });
}

#[test]
fn snapshot_markdown() {
    settings().bind(|| {
        insta::assert_snapshot!(
            "plan_markdown",
            gantry::render::markdown(&scenario_plan(), gantry::render::GITHUB_COMMENT_LIMIT)
        )
    });
}

#[test]
fn snapshot_json() {
    settings()
        .bind(|| insta::assert_snapshot!("plan_json", gantry::render::json(&scenario_plan())));
}

#[test]
fn load_balancer_settings_alone_are_an_in_place_update_of_that_lb() {
    let source = std::fs::read_to_string(fixture("plan/previous.toml")).unwrap();
    let tuned = source.replacen(
        "upstream_file = \"/etc/nginx/conf.d/shop.conf\"",
        "upstream_file = \"/etc/nginx/conf.d/shop.conf\"\nmax_fails = 2\nkeepalive = 16",
        1,
    );
    let state =
        State::from_json(&std::fs::read_to_string(fixture("plan/state.json")).unwrap()).unwrap();
    let plan = gantry::plan::plan(&model(&tuned), Some(&state), "x");
    let changed: Vec<(String, Action)> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.address.to_string(), c.action))
        .collect();
    assert_eq!(changed, [("lb.front".to_string(), Action::Update)]);
    let front = plan
        .changes
        .iter()
        .find(|c| c.address.to_string() == "lb.front")
        .unwrap();
    let paths: Vec<&str> = front.attributes.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["max_fails", "keepalive"]);
    assert!(
        matches!(front.steps.as_slice(), [step] if matches!(step.op, StepOp::Configure { .. }))
    );
}

// ---------------------------------------------------------------------------------------
// Container options (issue 12): what rolls, what is marked, which order and why.

/// A state that recorded `model` as applied (revision 1), as an apply would have.
fn applied(model: &gantry::model::Model) -> State {
    let mut state = State::empty(&model.project, "lineage".into());
    state.revision = 1;
    for (name, spec) in &model.services {
        state.services.insert(
            name.clone(),
            gantry::state::ServiceState {
                spec: spec.clone(),
                revision: 1,
                replicas: vec![],
                old_colour: None,
            },
        );
    }
    state
}

const STACK: &str = r#"
[project]
name = "stack"

[service.redis]
image = "registry.example/redis:7.2"
command = ["redis-server", "--appendonly", "yes", "--dir", "/data"]
volumes = ["cache-data:/data"]
health = { command = ["redis-cli", "ping"], interval = "1s" }

[service.web]
image = "registry.example/web:3074f46"
replicas = 3
port = 8080
env = { REDIS_HOST = "redis" }
depends_on = ["redis"]
health = { http = "/healthz" }
"#;

/// The plan of `after` against a state that recorded `before`.
fn replan(before: &str, after: &str) -> Plan {
    gantry::plan::plan(&model(after), Some(&applied(&model(before))), "x")
}

fn change<'p>(plan: &'p Plan, address: &str) -> &'p gantry::plan::ResourceChange {
    plan.changes
        .iter()
        .find(|c| c.address.to_string() == address)
        .unwrap_or_else(|| panic!("{address} not in plan"))
}

fn paths(c: &gantry::plan::ResourceChange) -> Vec<&str> {
    c.attributes.iter().map(|a| a.path.as_str()).collect()
}

#[test]
fn an_unchanged_stack_with_container_options_plans_no_changes() {
    let plan = replan(STACK, STACK);
    assert!(
        !plan.has_changes(),
        "{}",
        gantry::render::text(&plan, false)
    );
}

#[test]
fn a_change_of_volumes_rolls_the_service_stop_first_and_the_plan_says_why() {
    let after = STACK.replace(
        "volumes = [\"cache-data:/data\"]",
        "volumes = [\"cache-data:/data\", \"/srv/redis/conf:/etc/redis:ro\"]",
    );
    let plan = replan(STACK, &after);
    let redis = change(&plan, "service.redis");
    assert_eq!(redis.action, Action::Replace);
    assert_eq!(paths(redis), ["volumes"]);
    assert!(redis.attributes[0].forces_replacement);
    // No `order` written: a read-write named volume makes stop-first the default, and the
    // plan carries the reason (JSON) and says it (text).
    let order = redis
        .roll_order
        .as_ref()
        .expect("a rolled service has an order");
    assert_eq!(order.order, gantry::model::Order::StopFirst);
    assert_eq!(
        order.reason,
        Some(gantry::model::StopFirstReason::ReadWriteVolume {
            volume: "cache-data".into()
        })
    );
    let ops: Vec<&str> = redis
        .steps
        .iter()
        .map(|s| match &s.op {
            StepOp::Start { .. } => "start",
            StepOp::Stop { .. } => "stop",
            StepOp::WaitHealthy { .. } => "health",
            _ => "other",
        })
        .collect();
    assert_eq!(ops, ["stop", "start", "health"], "the old copy stops first");
    let json = plan.to_json();
    assert!(
        json.contains("\"because\": \"read-write-volume\""),
        "{json}"
    );
    let text = gantry::render::text(&plan, false);
    assert!(
        text.contains(
            "rolls stop-first: read-write volume `cache-data` (two copies of the process would write `cache-data` at once)"
        ),
        "{text}"
    );
    assert!(
        text.contains("+ \"/srv/redis/conf:/etc/redis:ro\""),
        "{text}"
    );
    assert!(
        text.contains(
            "roll 1 replica in 1 batch, stop-first for read-write volume `cache-data` (volumes)"
        ),
        "the one-line view says it too:\n{text}"
    );
    let md = gantry::render::markdown(&plan, gantry::render::GITHUB_COMMENT_LIMIT);
    assert!(md.contains("rolls stop-first: read-write volume"), "{md}");
}

#[test]
fn adding_a_restart_policy_rolls_the_service() {
    let after = STACK.replace("replicas = 3\n", "replicas = 3\nrestart = \"always\"\n");
    let plan = replan(STACK, &after);
    let web = change(&plan, "service.web");
    assert_eq!(web.action, Action::Replace);
    assert_eq!(paths(web), ["restart"]);
    assert!(web.attributes[0].forces_replacement);
    // `unless-stopped`, the default, is not written in plans or states.
    assert_eq!(web.attributes[0].before, None);
    assert_eq!(
        web.attributes[0].after,
        Some(serde_json::Value::String("always".into()))
    );
    let order = web.roll_order.as_ref().unwrap();
    assert_eq!(
        (order.order, order.reason.as_ref()),
        (gantry::model::Order::StartFirst, None)
    );
}

#[test]
fn a_command_health_check_change_rolls_and_an_http_probe_change_does_not() {
    let after = STACK.replace("interval = \"1s\"", "interval = \"3s\"");
    let plan = replan(STACK, &after);
    let redis = change(&plan, "service.redis");
    assert_eq!(redis.action, Action::Replace, "the engine runs the command");
    assert_eq!(paths(redis), ["health.interval"]);
    assert!(redis.attributes[0].forces_replacement);

    let after = STACK.replace(
        "health = { http = \"/healthz\" }",
        "health = { http = \"/ready\" }",
    );
    let plan = replan(STACK, &after);
    let web = change(&plan, "service.web");
    assert_eq!(web.action, Action::Update, "gantry probes from the host");
    assert!(!web.attributes[0].forces_replacement);

    // From an HTTP probe to a command: new containers carry the HEALTHCHECK.
    let after = STACK.replace(
        "health = { http = \"/healthz\" }",
        "health = { command = [\"/web\", \"--healthcheck\"] }",
    );
    let plan = replan(STACK, &after);
    let web = change(&plan, "service.web");
    assert_eq!(web.action, Action::Replace);
    assert!(web.attributes.iter().all(|a| a.forces_replacement));
}

#[test]
fn privileged_containers_are_a_risk_listed_first() {
    let after = STACK.replace(
        "replicas = 3\n",
        "replicas = 3\nprivileged = true\ncap_add = [\"sys_admin\"]\n",
    );
    let plan = replan(STACK, &after);
    let web = change(&plan, "service.web");
    assert_eq!(web.action, Action::Replace);
    assert_eq!(web.risks, [Risk::Privileged]);
    assert_eq!(paths(web), ["cap_add", "privileged"]);
    assert_eq!(
        plan.review_order()[0].address.to_string(),
        "service.web",
        "risky first"
    );
    assert!(plan.to_json().contains("\"privileged\""));
    let text = gantry::render::text(&plan, false);
    assert!(text.contains("! runs privileged containers"), "{text}");
    let md = gantry::render::markdown(&plan, gantry::render::GITHUB_COMMENT_LIMIT);
    assert!(md.contains("Risky changes (1)"), "{md}");

    // A new privileged service is a risk too; an unchanged one is not.
    let plan = gantry::plan::plan(&model(&after), None, "x");
    assert_eq!(change(&plan, "service.web").risks, [Risk::Privileged]);
    assert!(!replan(&after, &after).has_changes());
}

#[test]
fn a_destroyed_service_says_which_volumes_it_keeps() {
    let after = STACK
        .split("[service.web]")
        .next()
        .unwrap()
        .replace("[service.redis]", "[service.cache]");
    let plan = replan(STACK, &after);
    let redis = change(&plan, "service.redis");
    assert_eq!(redis.action, Action::Destroy);
    let text = gantry::render::text(&plan, false);
    assert!(
        text.contains("destroy (1 replica stopped, volume `cache-data` kept)"),
        "{text}"
    );
    assert!(
        text.contains("keeps its named volume `cache-data`"),
        "{text}"
    );
}

#[test]
fn a_rollback_of_a_service_with_a_read_write_volume_stays_stop_first() {
    let after = STACK.replace("redis:7.2", "redis:7.4");
    let state = applied(&model(STACK));
    let mut plan = gantry::plan::plan(&model(&after), Some(&state), "x");
    gantry::plan::for_rollback(&mut plan, &state, 1, false);
    let redis = change(&plan, "service.redis");
    assert_eq!(
        redis.roll_order.as_ref().map(|o| o.order),
        Some(gantry::model::Order::StopFirst)
    );
    assert!(matches!(redis.steps[0].op, StepOp::Stop { .. }));
}
