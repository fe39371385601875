//! `gantry apply` against the real Docker engine, with the test application image
//! (tests/support, testapp/). Order is checked from the engine's own container timestamps,
//! not from gantry's log. Skipped (with a message) without Docker locally; fails under CI.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::docker::{self, DockerTestGuard};
use support::project::{self, code, explain};

struct Project {
    dir: tempfile::TempDir,
    name: String,
    labels: String,
}

impl Project {
    fn new(guard: &DockerTestGuard, tag: &str) -> Project {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("t{}-{n}", std::process::id());
        let p = Project {
            dir: tempfile::tempdir().unwrap(),
            name,
            labels: project::labels_toml(guard),
        };
        p.write(tag, "", "");
        p
    }

    /// Three replicas of the test app, start-first, batch 1, with a health check.
    fn write(&self, tag: &str, extra_env: &str, extra: &str) {
        let toml = format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 3
port = 8080
env = {{ VERSION = "{tag}"{extra_env} }}
labels = {labels}
stop_grace_period = "5s"
health = {{ http = "/healthz", interval = "200ms", timeout = "1s", retries = 5 }}
rollout = {{ batch = 1, order = "start-first", soak = "300ms" }}
{extra}
"#,
            name = self.name,
            labels = self.labels
        );
        std::fs::write(self.dir.path().join("gantry.toml"), toml).unwrap();
    }

    fn gantry(&self, args: &[&str]) -> Output {
        project::gantry(self.dir.path(), args)
    }

    /// The names of the project's containers (and `extra_filter`'s, unless empty), sorted.
    fn containers(&self, extra_filter: &str) -> Vec<String> {
        let label = project::label_filter(&self.name);
        let mut filters = vec![label.as_str()];
        if !extra_filter.is_empty() {
            filters.push(extra_filter);
        }
        project::containers(&filters, "{{.Names}}")
    }
}

fn timestamp(container: &str, field: &str) -> String {
    docker::inspect(container, &format!("{{{{.State.{field}}}}}"))
}

fn images() -> (String, String) {
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    (tags[0].clone(), tags[1].clone())
}

#[test]
fn apply_rolls_batch_by_batch_then_plans_no_changes_and_records_history() {
    if !docker::require_docker("apply_rolls_batch_by_batch") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);

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

/// Each misbehaviour fails at its step; v1 keeps serving with all its replicas.
#[test]
fn failures_restore_the_previous_revision() {
    if !docker::require_docker("failures_restore_the_previous_revision") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let v1_running = p.containers("status=running");

    let cases: [(&str, &str, &str); 3] = [
        (", NEVER_HEALTHY = \"1\"", "", "health #1"),
        (", CRASH_AFTER_SECONDS = \"0\"", "", "health #1"),
        (
            ", WARMUP_SECONDS = \"30\", COLD_LATENCY_MS = \"400\"",
            "warmup = { http = \"/warmup\", max_latency = \"50ms\", successes = 3, deadline = \"2s\" }",
            "warm up #1",
        ),
    ];
    for (env, extra, failing_step) in cases {
        p.write(&v2, env, extra);
        let started = Instant::now();
        let o = p.gantry(&["apply", "--yes"]);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(code(&o), 3, "{env}: {}", explain(&o));
        assert!(
            stderr.contains("FAILED") && stderr.contains(failing_step),
            "{env}: expected `{failing_step}` to fail:\n{stderr}"
        );
        assert!(
            stderr.contains("previous revision was restored"),
            "{stderr}"
        );
        assert_eq!(
            p.containers("status=running"),
            v1_running,
            "{env}: v1 serves with all its replicas"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{env}: took {:?}",
            started.elapsed()
        );
        for c in &v1_running {
            let addr = docker::published_addr(c, 8080);
            let r = support::http::get(&addr, "/version").expect("v1 answers");
            assert_eq!(r.text().trim(), v1, "{c} serves v1");
        }
        // Nothing of the failed revision is left behind.
        assert!(
            p.containers("status=exited")
                .iter()
                .all(|n| !n.contains("-web-1-")),
            "v1 replicas were restarted"
        );
    }
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        code(&o),
        2,
        "the failed change is still pending: {}",
        explain(&o)
    );
}

#[test]
fn missing_image_fails_pre_flight_and_changes_nothing() {
    if !docker::require_docker("missing_image_fails_pre_flight") {
        return;
    }
    let guard = DockerTestGuard::new();
    let p = Project::new(&guard, "no-such-tag-anywhere");
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("attempt 4/4"),
        "pulls are retried: {stderr}"
    );
    assert!(
        stderr.contains("pre-flight") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(p.containers("").is_empty());
}

#[test]
fn a_dead_engine_is_a_clear_error_and_the_state_stays_readable() {
    if !docker::require_docker("a_dead_engine_is_a_clear_error") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let before = std::fs::read_to_string(p.dir.path().join(".gantry/state.json")).unwrap();
    // Point the same project at a socket nobody listens on.
    let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml")).unwrap();
    let dead = p.dir.path().join("dead.sock");
    let toml = format!(
        "[[host]]\nname = \"local\"\ndocker = \"unix://{}\"\n\n{}",
        dead.display(),
        toml.replace("replicas = 3", "replicas = 4")
    );
    std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach the Docker engine"),
        "{}",
        explain(&o)
    );
    assert_eq!(
        std::fs::read_to_string(p.dir.path().join(".gantry/state.json")).unwrap(),
        before,
        "state untouched"
    );
    assert!(
        !Path::new(&p.dir.path().join(".gantry/lock.json")).exists(),
        "lock released"
    );
}

#[test]
fn a_second_apply_fails_on_the_lock_and_harms_nothing() {
    if !docker::require_docker("a_second_apply_fails_on_the_lock") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    // A slow rollout (3 s of soak per batch) holds the lock long enough.
    p.write(&v2, "", "");
    let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml"))
        .unwrap()
        .replace("soak = \"300ms\"", "soak = \"3s\"");
    std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    let first = project::gantry_command(p.dir.path(), &["apply", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.dir.path().join(".gantry/lock.json").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 5, "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the state is locked by") && stderr.contains("pid"),
        "{stderr}"
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        p.containers("status=running")
            .iter()
            .all(|n| n.contains("-web-2-"))
    );
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
}

#[test]
fn status_shows_kept_replicas_and_names_drift() {
    if !docker::require_docker("status_shows_kept_replicas_and_names_drift") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    p.write(&v2, "", "");
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let o = p.gantry(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(text.matches("kept for rollback").count(), 3, "{text}");
    assert_eq!(text.matches("healthy").count(), 3, "{text}");
    assert!(text.contains("No drift"), "{text}");

    // A replica removed behind gantry's back, and a foreign container with its labels.
    docker::docker_ok(&["rm", "-f", &format!("{}-web-2-2", p.name)]);
    let project_label = format!("dev.gantry.project={}", p.name);
    let mut args: Vec<String> = guard.label_args();
    args.extend([
        "--label".into(),
        project_label,
        "--label".into(),
        "dev.gantry.service=web".into(),
        "--name".into(),
        format!("{}-intruder", p.name),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    guard.run(&args, &format!("gantry-testapp:{v1}"));
    // A container gantry does not manage, on the host port a kept v1 replica will need.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.dir.path().join(".gantry/state.json")).unwrap(),
    )
    .unwrap();
    let kept_port = state["services"]["web"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "stopped")
        .and_then(|r| r["host_port"].as_u64())
        .unwrap();
    let publish = format!("127.0.0.1:{kept_port}:8080");
    let mut args: Vec<String> = guard.label_args();
    args.extend([
        "-p".into(),
        publish,
        "--name".into(),
        format!("{}-squatter", p.name),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    guard.run(&args, &format!("gantry-testapp:{v1}"));

    let o = p.gantry(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("Drift (3)"), "{text}");
    assert!(
        text.contains("#2 recorded running; no such container"),
        "{text}"
    );
    assert!(
        text.contains("-intruder on local: carries this project's labels"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "publishes host port {kept_port}, which service.web uses"
        )),
        "{text}"
    );

    // Plan stays offline and sees nothing; --refresh shows the drift and rolls the service.
    assert_eq!(code(&p.gantry(&["plan", "--detailed-exitcode"])), 0);
    let o = p.gantry(&["plan", "--refresh", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(text.contains("Drift found by --refresh (3)"), "{text}");
    assert!(text.contains("roll 3 replicas"), "{text}");
    let o = p.gantry(&["plan", "--refresh", "--format", "markdown"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("<details><summary>Drift found by"),
        "drift in its own collapsed section"
    );
    let o = p.gantry(&["plan", "--refresh", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["drift"].as_array().unwrap().len(), 3);

    // apply --refresh repairs: three healthy replicas again; the foreign ones stay drift.
    let o = p.gantry(&["apply", "--refresh", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(
        running.iter().filter(|c| c.contains("-web-3-")).count(),
        3,
        "{running:?}"
    );
    let o = p.gantry(&["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(
        code(&o),
        0,
        "only what apply cannot repair is left\n{}",
        explain(&o)
    );
}

#[test]
fn stop_first_stops_the_old_replica_before_starting_the_new_one() {
    if !docker::require_docker("stop_first_order") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    let stop_first = |p: &Project, tag: &str| {
        p.write(tag, "", "");
        let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml"))
            .unwrap()
            .replace("start-first", "stop-first");
        std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
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
    let p = Project::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let set_replicas = |n: u32| {
        let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml")).unwrap();
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
        std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
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
    std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(p.containers("").is_empty(), "{:?}", p.containers(""));
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
}

#[test]
fn pause_leaves_the_failure_in_place_and_exits_4() {
    if !docker::require_docker("pause_leaves_the_failure_in_place") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    p.write(&v2, ", NEVER_HEALTHY = \"1\"", "");
    let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml"))
        .unwrap()
        .replace(
            "soak = \"300ms\"",
            "soak = \"300ms\", on_failure = \"pause\"",
        );
    std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 4, "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("NOT restored") && stderr.contains("gantry apply"),
        "{stderr}"
    );
    // The unhealthy new replica is left running for a human to look at; v1 still serves.
    assert!(
        p.containers("status=running")
            .contains(&format!("{}-web-2-1", p.name))
    );
    assert_eq!(
        p.containers("status=running")
            .iter()
            .filter(|n| n.contains("-web-1-"))
            .count(),
        3
    );
    let o = p.gantry(&["history"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("failed, halted"));

    // Fix the cause, apply again: it converges, strays included.
    p.write(&v2, "", "");
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(running.iter().all(|n| n.contains("-web-3-")), "{running:?}");
}

/// Independent services of a wave roll concurrently; a dependent waits for its dependency.
#[test]
fn independent_services_run_in_parallel_and_dependents_wait() {
    if !docker::require_docker("waves_in_parallel") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new(&guard, &v1);
    let service = |name: &str, deps: &str| {
        format!(
            "[service.{name}]\nimage = \"gantry-testapp:{v1}\"\nreplicas = 2\nport = 8080\nlabels = {labels}\ndepends_on = [{deps}]\nhealth = {{ http = \"/healthz\", interval = \"200ms\" }}\nrollout = {{ soak = \"1s\" }}\n",
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
    std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let started = |svc: &str, i: u32| timestamp(&format!("{}-{svc}-1-{i}", p.name), "StartedAt");
    // a and b are in the same wave: each started its first replica before the other's
    // second (one after the other, b #1 would start after a #2).
    let a_last = started("a", 2);
    assert!(
        started("b", 1) < a_last,
        "b waited for a: b#1 {} a#2 {a_last}",
        started("b", 1)
    );
    assert!(started("a", 1) < started("b", 2), "a waited for b");
    // c depends on a: it starts after a's replicas are up.
    assert!(started("c", 1) > a_last, "c started before a was up");
}

/// The engine goes away in the middle of a rollout (a socat proxy in front of the real socket
/// is killed): a clear error, exit 4, a readable state that lists every container gantry
/// created; with the engine back, the next apply converges.
#[test]
fn engine_unplugged_mid_apply_then_the_next_apply_converges() {
    use std::os::unix::process::CommandExt;
    if !docker::require_docker("engine_unplugged_mid_apply") {
        return;
    }
    if Command::new("socat").arg("-V").output().is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "socat is needed in CI (.ci/run installs it)"
        );
        println!("SKIPPED: engine_unplugged_mid_apply: socat not installed");
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    let sock = p.dir.path().join("engine.sock");
    /// Kills the proxy's whole process group (socat forks one child per connection), also
    /// when the test panics.
    struct Proxy(std::process::Child);
    impl Drop for Proxy {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{}", self.0.id())])
                .status();
            let _ = self.0.wait();
        }
    }
    let proxy = || {
        let _ = std::fs::remove_file(&sock);
        let child = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
            .arg("UNIX-CONNECT:/var/run/docker.sock")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy(child)
    };
    let through_proxy = |tag: &str| {
        p.write(tag, "", "");
        let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml"))
            .unwrap()
            .replace("soak = \"300ms\"", "soak = \"2s\"");
        let toml = format!(
            "[[host]]\nname = \"local\"\ndocker = \"unix://{}\"\n\n{toml}",
            sock.display()
        );
        std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    };

    let socat = proxy();
    through_proxy(&v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    through_proxy(&v2);
    let apply = project::gantry_command(p.dir.path(), &["apply", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Unplug once the first replica of revision 2 runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p
        .containers("status=running")
        .iter()
        .any(|n| n.contains("-web-2-"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(socat);
    let started = Instant::now();
    let o = apply.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?} after the unplug",
        started.elapsed()
    );
    assert!(
        stderr.contains("cannot reach the Docker engine") || stderr.contains("Docker engine"),
        "{stderr}"
    );

    // The state is readable and knows every container of the project.
    let text = std::fs::read_to_string(p.dir.path().join(".gantry/state.json")).unwrap();
    let state = gantry::state::State::from_json(&text).expect("state readable after the unplug");
    assert_eq!(
        state.history.last().unwrap().outcome,
        gantry::state::Outcome::Halted
    );
    let recorded: Vec<String> = state.services["web"]
        .replicas
        .iter()
        .map(|r| r.name.clone())
        .collect();
    for c in p.containers("") {
        assert!(
            recorded.contains(&c),
            "{c} is not in the state: {recorded:?}"
        );
    }

    // The engine is back: the next apply converges.
    let _socat = proxy();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(running.iter().all(|n| n.contains("-web-3-")), "{running:?}");
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
}

#[test]
fn log_rotation_and_resource_limits_reach_the_container() {
    if !docker::require_docker("log_rotation_and_resource_limits") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, _) = images();
    let p = Project::new(&guard, &v1);
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
    let p = Project::new(&guard, &v1);
    // Two adjacent free ports (one replica + the start-first surge).
    let (held, base) = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 65000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break (l, port);
        }
    };
    let write = |p: &Project| {
        p.write(&v1, "", &format!("host_ports = \"{base}-{}\"", base + 1));
        let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml"))
            .unwrap()
            .replace("replicas = 3", "replicas = 1");
        std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
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

/// A load balancer gantry does not speak, driven by the user's commands: they run once per
/// joining or leaving replica with the placeholders filled in; a failing one fails the step
/// with its exit status and output, and the rollout restores itself.
#[test]
fn command_load_balancers_run_the_users_commands() {
    if !docker::require_docker("command_load_balancers") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    let log = p.dir.path().join("lb.log");
    let lb = |join: &str| {
        format!(
            "lb = [\"ext\"]\n\n[lb.ext]\nkind = \"command\"\njoin = {join}\nleave = [\"sh\", \"-c\", \"echo leave {{service}} {{replica}} {{address}} {{port}} >> {log}\"]\ndrain_check = [\"true\"]\ntimeout = \"5s\"\n",
            log = log.display()
        )
    };
    let good_join = format!(
        "[\"sh\", \"-c\", \"echo join {{service}} {{replica}} {{address}} {{port}} >> {}\"]",
        log.display()
    );
    p.write(&v1, "", &lb(&good_join));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("join web ")).count(),
        3,
        "{text}"
    );
    let port = docker::published_addr(&format!("{}-web-1-1", p.name), 8080)
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!("join web 1 127.0.0.1 {port}")),
        "{text}"
    );

    p.write(&v2, "", &lb(&good_join));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("leave web ")).count(),
        3,
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("idle after"),
        "drain_check was used: {}",
        explain(&o)
    );

    // A join command that fails: exit status and output in the error, v2 restored.
    p.write(
        &v1,
        "",
        &lb("[\"sh\", \"-c\", \"echo lbctl: pool is locked >&2; exit 7\"]"),
    );
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("lbctl: pool is locked") && stderr.contains("exit status: 7"),
        "{stderr}"
    );
    assert!(
        p.containers("status=running")
            .iter()
            .all(|n| n.contains("-web-2-"))
    );
}

/// `gantry rollback` returns to the previous revision's exact image IDs, even after its tag
/// was re-pointed, without pulling; the history says where it came from.
#[test]
fn rollback_restores_the_recorded_images_even_when_the_tag_moved() {
    if !docker::require_docker("rollback_restores_recorded_images") {
        return;
    }
    let guard = DockerTestGuard::new();
    let (v1, v2) = images();
    let p = Project::new(&guard, &v1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let v1_id = docker::inspect(&format!("{}-web-1-1", p.name), "{{.Image}}");
    p.write(&v2, "", "");
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    // Someone re-points the v1 tag at another image; a rollback must not care.
    let v1_tag = format!("gantry-testapp:{v1}");
    let v2_id = docker::inspect(&format!("{}-web-2-1", p.name), "{{.Image}}");
    assert_ne!(v1_id, v2_id);
    docker::docker_ok(&["tag", &v2_id, &v1_tag]);

    // The fast path: the kept v1 containers are started again (no create, no pull).
    let o = p.gantry(&["rollback", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restart #1,#2,#3 (kept from revision 1)"),
        "{}",
        explain(&o)
    );
    let running = p.containers("status=running");
    assert_eq!(
        running,
        (1..=3)
            .map(|i| format!("{}-web-1-{i}", p.name))
            .collect::<Vec<_>>()
    );
    for c in &running {
        assert_eq!(
            docker::inspect(c, "{{.Image}}"),
            v1_id,
            "{c} runs the recorded v1 image"
        );
        let r = support::http::get(&docker::published_addr(c, 8080), "/version").unwrap();
        assert_eq!(r.text().trim(), v1);
    }
    assert_eq!(
        code(&p.gantry(&["plan", "--detailed-exitcode"])),
        2,
        "config still says v2"
    );
    let history = String::from_utf8_lossy(&p.gantry(&["history"]).stdout).to_string();
    assert!(
        history.contains("rollback to revision 1 (from 2)"),
        "{history}"
    );

    // Forward again, then back with --recreate: new containers from the recorded image ID,
    // although the v1 tag now names another image.
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let o = p.gantry(&["rollback", "--yes", "--recreate"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let running = p.containers("status=running");
    assert_eq!(running.len(), 3, "{running:?}");
    for c in &running {
        assert!(c.contains("-web-5-"), "{running:?}");
        assert_eq!(
            docker::inspect(c, "{{.Image}}"),
            v1_id,
            "{c} runs the recorded v1 image"
        );
    }
    // Roll back to a revision that no longer exists: refused, nothing changed.
    let o = p.gantry(&["rollback", "--to", "9", "--yes"]);
    assert_eq!(code(&o), 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a successful revision"),
        "{}",
        explain(&o)
    );
}

/// `keep_previous` revisions of stopped containers are kept after each apply; `gantry prune`
/// removes what is beyond it, and the images no container uses, never what runs.
#[test]
fn keep_previous_and_prune() {
    if !docker::require_docker("keep_previous_and_prune") {
        return;
    }
    let guard = DockerTestGuard::new();
    // Images of this test only: prune removes images, other tests' must not be touched.
    let (a, b) = (docker::run_tag("prune-a"), docker::run_tag("prune-b"));
    docker::build_testapp_images_once(&[&a, &b]);
    let p = Project::new(&guard, &a);
    let keep = |n: u32| {
        let toml = std::fs::read_to_string(p.dir.path().join("gantry.toml")).unwrap();
        let toml = toml
            .lines()
            .filter(|l| !l.starts_with("keep_previous"))
            .map(|l| {
                if l.starts_with("name = ") {
                    format!("{l}\nkeep_previous = {n}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    };
    for tag in [&a, &b, &a] {
        p.write(tag, "", "");
        keep(2);
        let o = p.gantry(&["apply", "--yes"]);
        assert_eq!(code(&o), 0, "{}", explain(&o));
    }
    // Revisions 1 and 2 are kept stopped behind revision 3.
    let stopped = p.containers("status=exited");
    assert_eq!(stopped.len(), 6, "{stopped:?}");
    let b_id = docker::inspect(&format!("{}-web-2-1", p.name), "{{.Image}}");

    keep(0);
    let o = p.gantry(&["prune"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.starts_with("Removed 6 container(s) and 1 image(s)"),
        "{text}"
    );
    assert!(p.containers("status=exited").is_empty());
    assert_eq!(p.containers("status=running").len(), 3);
    assert!(
        !docker::image_exists(&b_id),
        "the image no container uses is gone"
    );
    assert_eq!(code(&p.gantry(&["plan", "--detailed-exitcode"])), 0);
}
