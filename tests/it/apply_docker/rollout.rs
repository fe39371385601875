//! Rollouts that succeed: order, batches, waves, scaling, what reaches the container.

use super::{Web, images, timestamp};
use crate::support::docker::{self, DockerTestGuard};
use crate::support::project::{code, explain};
use std::time::Duration;

#[test]
fn apply_rolls_batch_by_batch_then_plans_no_changes_and_records_history() {
    if !docker::require_docker("apply_rolls_batch_by_batch") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Web::new(&guard, &v1);

    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(
        running,
        [
            format!("{}-web-1-1", p.name),
            format!("{}-web-1-2", p.name),
            format!("{}-web-1-3", p.name)
        ]
    );
    // Every container carries the labels gantry rediscovers it by.
    let labels = docker::labels_of(&running[0]);
    assert_eq!(
        labels.get("dev.gantry.service").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        labels.get("dev.gantry.revision").map(String::as_str),
        Some("1")
    );
    assert!(labels.contains_key("dev.gantry.spec-hash"));

    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "no changes after apply: {}", explain(&o));

    p.write(&v2, "", "");
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|n| n.contains("-web-2-")), "{running:?}");
    // The old revision is kept stopped for rollback.
    assert_eq!(p.containers("status=exited").len(), 3);

    // Start-first, batch 1, from the engine's timestamps: new #i starts before old #i stops,
    // and old #i stops before new #i+1 starts.
    for i in 1..=3 {
        let new = format!("{}-web-2-{i}", p.name);
        let old = format!("{}-web-1-{i}", p.name);
        let new_started = timestamp(&new, "StartedAt");
        let old_finished = timestamp(&old, "FinishedAt");
        assert!(
            new_started < old_finished,
            "batch {i}: new started {new_started}, old finished {old_finished}"
        );
        if i < 3 {
            let next_started = timestamp(&format!("{}-web-2-{}", p.name, i + 1), "StartedAt");
            assert!(
                old_finished < next_started,
                "batch {i} finished before batch {} started",
                i + 1
            );
        }
    }

    let o = p.gantry(&["history"]);
    let history = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        history.contains(&format!("gantry-testapp:{v1}"))
            && history.contains(&format!("gantry-testapp:{v2}")),
        "{history}"
    );
    assert_eq!(history.matches("succeeded").count(), 2, "{history}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.dir.path().join(".gantry/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["history"].as_array().unwrap().len(), 2);
    assert!(
        state["history"][1]["services"]["web"]["image_id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn stop_first_stops_the_old_replica_before_starting_the_new_one() {
    if !docker::require_docker("stop_first_order") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Web::new(&guard, &v1);
    let stop_first = |p: &Web, tag: &str| {
        p.write(tag, "", "");
        let toml = p.toml().replace("start-first", "stop-first");
        p.write_toml(&toml);
    };
    stop_first(&p, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    stop_first(&p, &v2);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    for i in 1..=3 {
        let old_finished = timestamp(&format!("{}-web-1-{i}", p.name), "FinishedAt");
        let new_started = timestamp(&format!("{}-web-2-{i}", p.name), "StartedAt");
        assert!(
            old_finished < new_started,
            "batch {i}: old finished {old_finished}, new started {new_started}"
        );
    }
}

#[test]
fn scale_down_up_and_destroy_against_the_engine() {
    if !docker::require_docker("scale_and_destroy") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Web::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let set_replicas = |n: u32| {
        let toml = p.toml();
        let toml = toml
            .lines()
            .map(|l| {
                if l.starts_with("replicas = ") {
                    format!("replicas = {n}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        p.write_toml(&toml);
    };
    set_replicas(1);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(
        p.containers("status=running"),
        [format!("{}-web-1-1", p.name)]
    );
    set_replicas(2);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(
        p.containers("status=running"),
        [format!("{}-web-1-1", p.name), format!("{}-web-3-2", p.name)]
    );

    // Removing the service from the config destroys it: nothing of it is left.
    let toml = format!("[project]\nname = \"{}\"\n", p.name);
    p.write_toml(&toml);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(p.containers("").is_empty(), "{:?}", p.containers(""));
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
}

/// Independent services of a wave roll concurrently; a dependent waits for its dependency.
/// Each service's bring-up holds a 1.5 s warm-up, so that one after the other would show as
/// gaps of at least 1.5 s between the services' starts. (The replicas of one service start
/// side by side, issue 11: the order of a#2 and b#1 says nothing.)
#[test]
fn independent_services_run_in_parallel_and_dependents_wait() {
    if !docker::require_docker("waves_in_parallel") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Web::new(&guard, &v1);
    let service = |name: &str, deps: &str| {
        format!(
            "[service.{name}]\nimage = \"gantry-testapp:{v1}\"\nreplicas = 2\nport = 8080\nlabels = {labels}\ndepends_on = [{deps}]\nhealth = {{ http = \"/healthz\", interval = \"200ms\" }}\nwarmup = {{ http = \"/warmup?delay_ms=3000\", max_latency = \"8s\", successes = 1, concurrency = 1 }}\nrollout = {{ soak = \"1s\" }}\n",
            labels = p.labels
        )
    };
    let toml = format!(
        "[project]\nname = \"{}\"\n{}{}{}",
        p.name,
        service("a", ""),
        service("b", ""),
        service("c", "\"a\"")
    );
    p.write_toml(&toml);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    // Seconds since the epoch, from the engine's StartedAt (RFC 3339, nanoseconds).
    let started = |svc: &str, i: u32| {
        let t = timestamp(&format!("{}-{svc}-1-{i}", p.name), "StartedAt");
        let whole = humantime::parse_rfc3339_weak(&t[..19]).unwrap();
        let fraction: f64 = format!("0{}", t[19..].trim_end_matches('Z'))
            .parse()
            .unwrap_or(0.0);
        whole
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + fraction
    };
    // a and b are in the same wave: they start together, not 3 s (a warm-up) apart (2 s of
    // slack: concurrent starts on a loaded engine spread over a second or more).
    let (a, b) = (started("a", 1), started("b", 1));
    assert!(
        (a - b).abs() < 2.0,
        "a and b one after the other: a#1 {a} b#1 {b}"
    );
    // c depends on a: it starts after a's replicas are up and warm.
    let a_last = started("a", 1).max(started("a", 2));
    assert!(
        started("c", 1) > a_last + 2.9,
        "c started before a was up: c#1 {} a {a_last}",
        started("c", 1)
    );
}

#[test]
fn log_rotation_and_resource_limits_reach_the_container() {
    if !docker::require_docker("log_rotation_and_resource_limits") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Web::new(&guard, &v1);
    p.write(
        &v1,
        "",
        "resources = { cpus = 0.5, memory = \"64m\" }\nlog = { max_size = \"10m\", max_files = 3 }",
    );
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let c = format!("{}-web-1-1", p.name);
    assert_eq!(
        docker::inspect(&c, "{{.HostConfig.Memory}}"),
        (64 * 1024 * 1024).to_string()
    );
    assert_eq!(docker::inspect(&c, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(
        docker::inspect(&c, "{{.HostConfig.LogConfig.Type}}"),
        "json-file"
    );
    let log = docker::inspect(&c, "{{json .HostConfig.LogConfig.Config}}");
    assert!(
        log.contains("\"max-size\":\"10m\"") && log.contains("\"max-file\":\"3\""),
        "{log}"
    );
}

#[test]
fn fixed_host_ports_are_used_and_checked_before_anything_changes() {
    if !docker::require_docker("fixed_host_ports") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Web::new(&guard, &v1);
    // Two adjacent free ports (one replica + the start-first surge).
    let (held, base) = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 65000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break (l, port);
        }
    };
    let write = |p: &Web| {
        p.write(&v1, "", &format!("host_ports = \"{base}-{}\"", base + 1));
        let toml = p.toml().replace("replicas = 3", "replicas = 1");
        p.write_toml(&toml);
    };
    write(&p);
    // Both ports taken by someone else: pre-flight refuses, nothing is created.
    let other = std::net::TcpListener::bind(("127.0.0.1", base + 1)).unwrap();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("free host port"),
        "{}",
        explain(&o)
    );
    assert!(p.containers("").is_empty());
    drop((held, other));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let addr = docker::published_addr(&format!("{}-web-1-1", p.name), 8080);
    assert_eq!(addr, format!("127.0.0.1:{base}"));
}

/// issue 11: the replicas of a batch start, pass health and warm up side by side. Each
/// replica's warm-up takes about 1.5 s (5 consecutive answers, one at a time, each delayed
/// 300 ms by the test app), so a batch of 4 warmed up one after the other took 6 s; side by
/// side it takes about one warm-up. Measured from gantry's step durations
/// (`--progress json`), for the creation (every replica in one step) and for a rollout in
/// one batch of 4; generously bounded (under 2.5 warm-ups) for a loaded 2-core machine.
#[test]
fn a_batch_of_four_warms_up_in_about_one_warm_up_not_four() {
    if !docker::require_docker("batch_warms_up_in_parallel") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Web::new(&guard, &v1);
    let write = |tag: &str| {
        let toml = format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 4
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "5s"
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 20 }}
warmup = {{ http = "/warmup?delay_ms=300", max_latency = "1s", successes = 5, concurrency = 1, deadline = "60s" }}
rollout = {{ batch = 4, order = "start-first" }}
"#,
            name = p.name,
            labels = p.labels
        );
        p.write_toml(&toml);
    };
    let one_warm_up = Duration::from_millis(1500);
    for tag in [&v1, &v2] {
        write(tag);
        let o = p.gantry(&["apply", "--yes", "--progress", "json"]);
        assert_eq!(code(&o), 0, "{}", explain(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        let warm_up: Vec<serde_json::Value> = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == "step_finished" && e["step"] == "warm up #1,#2,#3,#4")
            .collect();
        assert_eq!(
            warm_up.len(),
            1,
            "one warm-up step for the batch:\n{stderr}"
        );
        let took = Duration::from_millis(warm_up[0]["elapsed_ms"].as_u64().unwrap());
        eprintln!("{tag}: a batch of 4 warmed up in {took:?} (one warm-up: {one_warm_up:?})");
        assert!(
            took >= one_warm_up && took < one_warm_up * 5 / 2,
            "a batch of 4 warmed up in {took:?}, one warm-up is {one_warm_up:?}:\n{stderr}"
        );
        // Every replica reports its own warm-up.
        let detail = warm_up[0]["detail"].as_str().unwrap_or_default();
        for i in 1..=4 {
            assert!(detail.contains(&format!("#{i}: ")), "{detail}");
        }
    }
    assert_eq!(p.containers("status=running").len(), 4);
}
