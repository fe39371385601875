//! Every example under `examples/` validates and plans, and plans what its comments promise.

use crate::support::fixtures::*;
use crate::support::project::{gantry, run, stderr, stdout};

fn plan_json(example: &str) -> serde_json::Value {
    let dir = root("examples").join(example);
    let state = tempfile::tempdir().unwrap();
    let o = gantry(
        &dir,
        &[
            "plan",
            "--format",
            "json",
            "--state-dir",
            state.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{example}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn every_example_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(root("examples")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("gantry.toml").exists() {
            continue;
        }
        seen += 1;
        let o = gantry(&dir, &["validate"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}",
            dir.display(),
            stderr(&o)
        );
        let state = tempfile::tempdir().unwrap();
        let o = gantry(
            &dir,
            &[
                "plan",
                "--detailed-exitcode",
                "--state-dir",
                state.path().to_str().unwrap(),
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            dir.display(),
            stderr(&o)
        );
        assert!(stdout(&o).contains("Plan: "), "{}", stdout(&o));
    }
    assert_eq!(seen, 4, "examples: quickstart and three seed shapes");
}

#[test]
fn quickstart_creates_two_replicas() {
    let v = plan_json("quickstart");
    assert_eq!(v["summary"]["create"], 1);
    assert_eq!(v["changes"][0]["after"]["replicas"], 2);
}

#[test]
fn seed_000_has_graphql_behind_nginx_after_the_agent_it_finds_by_name() {
    let v = plan_json("seed-000-graphql-nginx");
    let order: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["service.datadog", "service.graphql", "lb.front"]);
    let graphql = &v["changes"][1]["after"];
    assert_eq!(graphql["replicas"], 3);
    assert_eq!(
        graphql["env_file"]["keys"],
        serde_json::json!(["DB_HOST", "DB_USER"])
    );
    assert_eq!(
        v["changes"][2]["steps"][0]["members"],
        serde_json::json!(["service.graphql"])
    );
    // The article's stack: the agent found by name, its read-only mounts and fixed ports,
    // restarts by the engine (Compose's `condition: any`), the health checks.
    assert_eq!(graphql["env"]["DD_AGENT_HOST"], "datadog");
    assert_eq!(graphql["restart"], "always");
    assert_eq!(graphql["health"]["http"], "/healthcheck");
    let datadog = &v["changes"][0]["after"];
    assert_eq!(datadog["restart"], "always");
    assert_eq!(
        datadog["volumes"],
        serde_json::json!([
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "/proc/:/host/proc/:ro",
            "/sys/fs/cgroup:/host/sys/fs/cgroup:ro"
        ])
    );
    assert_eq!(
        datadog["publish"],
        serde_json::json!(["8125:8125/udp", "8126:8126"])
    );
    assert_eq!(datadog["stop_grace_period"], "5s");
    assert!(datadog["health"]["command"].is_array());
    assert_eq!(datadog["rollout"]["order"], "stop-first", "its fixed ports");
}

#[test]
fn seed_003_warms_up_under_concurrency_and_stops_first() {
    let v = plan_json("seed-003-warmup-monolith");
    let app = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "service.app")
        .unwrap();
    assert_eq!(app["after"]["warmup"]["successes"], 5);
    assert_eq!(app["after"]["warmup"]["concurrency"], 8);
    assert_eq!(app["after"]["rollout"]["order"], "stop-first");
    assert!(
        app["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["op"] == "warmup")
    );
}

#[test]
fn seed_001_is_blue_green_with_a_preview_check() {
    let v = plan_json("seed-001-blue-green");
    let web = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "service.web")
        .unwrap();
    let bg = &web["after"]["rollout"]["blue_green"];
    assert_eq!(bg["keep_old_replicas"], 1);
    assert_eq!(bg["scale_down_delay"], "10m");
    assert_eq!(
        bg["preview_check"],
        serde_json::json!(["./scripts/smoke-test.sh"])
    );
}

#[test]
fn blue_green_release_plans_preview_then_one_switch() {
    // Record the example's spec, move the image: the plan shows the blue-green steps.
    let source = std::fs::read_to_string(root("examples/seed-001-blue-green/gantry.toml")).unwrap();
    let before = model(&source);
    let after = model(&source.replace("bookmark-web:9f2c1ab", "bookmark-web:a1b2c3d"));
    let mut state = gantry::state::State::empty("bookmark", "l".into());
    for (n, spec) in before.services {
        state.services.insert(
            n,
            gantry::state::ServiceState {
                spec,
                revision: 1,
                replicas: vec![],
                old_colour: None,
            },
        );
    }
    for (n, spec) in before.lbs {
        state.lbs.insert(
            n,
            gantry::state::LbState {
                spec,
                members: vec![],
            },
        );
    }
    let plan = gantry::plan::plan(&after, Some(&state), "x");
    let web = plan
        .changes
        .iter()
        .find(|c| c.address.to_string() == "service.web")
        .unwrap();
    let steps: Vec<String> = web.steps.iter().map(|s| s.describe()).collect();
    assert_eq!(
        steps,
        [
            "start #1,#2,#3,#4 (new)",
            "health #1,#2,#3,#4",
            "warm up #1,#2,#3,#4",
            "#1,#2,#3,#4 (new) join lb.preview",
            "preview check `./scripts/smoke-test.sh`",
            "switch lb.edge from the live colour to #1,#2,#3,#4 in one change",
            "#1,#2,#3,#4 (new) leave lb.preview",
            "drain 5s",
            "keep the old colour 10m for switch-back, then scale it down to 1 running",
        ]
    );
}

/// The README's first command: the quickstart, end to end against the real engine.
#[test]
fn quickstart_script_runs_end_to_end() {
    use crate::support::docker;
    if !docker::require_docker("quickstart_script") {
        return;
    }
    // Its containers are not labelled for a guard; the guard removes what the project
    // `quickstart` left if the script fails half way (and waits for no `alone` test).
    let guard = docker::DockerTestGuard::new();
    guard.track_project("quickstart");
    let mut script = std::process::Command::new("bash");
    script
        .arg(root("examples/quickstart/run.sh"))
        .env("GANTRY", env!("CARGO_BIN_EXE_gantry"));
    let o = run(script);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{text}");
    for expected in [
        "Apply complete: revision 2",
        "restart #1,#2 (kept from revision 1)",
        "rollback to revision 1 (from 2)",
        "quickstart done",
        "Removed the project network quickstart",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let left = docker::docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=dev.gantry.project=quickstart",
    ]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the quickstart leaves no container"
    );
    assert!(
        !docker::docker(&["network", "inspect", "quickstart"])
            .status
            .success(),
        "the quickstart leaves no network: `gantry prune` removes it"
    );
}
