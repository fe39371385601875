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
