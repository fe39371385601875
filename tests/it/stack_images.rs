//! The application-stack test images (`support::stack`, built from Debian packages by
//! `support::debian`) are real programs that find each other by name: checked with plain
//! `docker run` on a test network, before any gantry feature uses them; and the guard removes
//! the volumes and project networks stack tests leave. Skipped without Docker or mmdebstrap,
//! except under CI=true where they fail.

use crate::support;

use std::net::UdpSocket;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use support::docker::{self, DockerTestGuard};
use support::http;
use support::{debian, stack};

const READY: Duration = Duration::from_secs(30);

/// A user-defined bridge network carrying the guard's labels (removed with its scope).
fn network(guard: &DockerTestGuard) -> String {
    let name = docker::run_tag(&format!("stack-{}", docker::free_port()));
    let mut args = vec!["network", "create"];
    let labels = guard.label_args();
    args.extend(labels.iter().map(String::as_str));
    args.push(&name);
    docker::docker_ok(&args);
    name
}

/// `docker exec CONTAINER CMD...`: (exit code, stdout + stderr).
fn exec(container: &str, cmd: &[&str]) -> (i32, String) {
    let mut args = vec!["exec", container];
    args.extend_from_slice(cmd);
    let out = docker::docker(&args);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The engine's health status once it is `want` (or panics with the last probe's output).
fn wait_health(container: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = docker::inspect(container, "{{.State.Health.Status}}");
        if status == want {
            return;
        }
        if Instant::now() >= deadline {
            let log = docker::inspect(
                container,
                "{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}\n{{end}}",
            );
            panic!("{container}: health {status}, not {want}, after {timeout:?}:\n{log}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `--health-cmd` runs through `/bin/sh -c`; gantry sets the exec form, which the image
/// runs the same way.
fn health_opts(cmd: &[&str]) -> Vec<String> {
    vec![
        "--health-cmd".into(),
        cmd.join(" "),
        "--health-interval".into(),
        "1s".into(),
        "--health-timeout".into(),
        "5s".into(),
        "--health-retries".into(),
        "2".into(),
    ]
}

fn published(container: &str, port: &str) -> String {
    let out = docker::docker_ok(&["port", container, port]);
    out.lines()
        .next()
        .unwrap_or_default()
        .trim()
        .replace("0.0.0.0:", "127.0.0.1:")
}

fn run(guard: &DockerTestGuard, opts: &[String], image: &str) -> String {
    run_cmd(guard, opts, image, &[])
}

/// `docker run -d <labels> OPTS IMAGE CMD...`; the container id.
fn run_cmd(guard: &DockerTestGuard, opts: &[String], image: &str, cmd: &[&str]) -> String {
    let mut args = strings(&["run", "-d"]);
    args.extend(guard.label_args());
    args.extend_from_slice(opts);
    args.push(image.to_owned());
    args.extend(strings(cmd));
    docker::docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn web_counts_in_redis_found_by_name_and_reports_to_the_agent() {
    let test = "web_counts_in_redis_found_by_name_and_reports_to_the_agent";
    if !debian::require_debian_images(test) {
        return;
    }
    let guard = DockerTestGuard::new();
    let started = Instant::now();
    let images = stack::stack_images();
    eprintln!(
        "stack images ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let net = network(&guard);

    // redis, by its alias only; the engine runs its health command.
    let mut opts = strings(&["--network", &net, "--network-alias", "redis"]);
    opts.extend(health_opts(&stack::REDIS_HEALTH));
    let redis = run_cmd(
        &guard,
        &opts,
        &images.redis,
        &["redis-server", "--appendonly", "yes", "--dir", "/data"],
    );
    wait_health(&redis, "healthy", READY);
    assert_eq!(exec(&redis, &["redis-cli", "ping"]), (0, "PONG\n".into()));
    assert_eq!(
        exec(&redis, &["redis-cli", "config", "get", "appendonly"]).1,
        "appendonly\nyes\n",
        "the command given after the image reaches redis-server"
    );

    // The agent, published on loopback: UDP 8125 and TCP 8126.
    let agent = run(
        &guard,
        &strings(&[
            "--network",
            &net,
            "--network-alias",
            "agent",
            "-p",
            "127.0.0.1::8125/udp",
            "-p",
            "127.0.0.1::8126",
        ]),
        &images.agent,
    );
    let apm = published(&agent, "8126/tcp");
    http::wait_for_status(&apm, "/info", 200, READY).unwrap();

    // Web, with REDIS_HOST left at its default "redis" and the agent found by name.
    let mut opts = strings(&[
        "--network",
        &net,
        "-p",
        "127.0.0.1::8080",
        "-e",
        "DD_AGENT_HOST=agent",
    ]);
    opts.extend(health_opts(&stack::WEB_HEALTH));
    let web = run(&guard, &opts, &images.web);
    let addr = published(&web, "8080/tcp");
    http::wait_for_status(&addr, "/healthz", 200, READY).unwrap();
    wait_health(&web, "healthy", READY);
    let counts: Vec<String> = (0..3)
        .map(|_| http::get(&addr, "/count").unwrap().text())
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);
    let post = http::request(&addr, "POST", "/count", b"x=1", Duration::from_secs(10)).unwrap();
    assert_eq!((post.status, post.text().as_str()), (200, "4"));
    assert_eq!(
        exec(&redis, &["redis-cli", "get", "count"]).1,
        "4\n",
        "the counter is redis's"
    );
    let hostname = docker::inspect(&web, "{{.Config.Hostname}}");
    assert_eq!(
        http::get(&addr, "/").unwrap().text(),
        format!(r#"{{"version":"v1","host":"{hostname}"}}"#)
    );
    let info = http::get(&apm, "/info").unwrap().text();
    assert!(
        info.contains(r#""datagrams":4"#) && info.contains(r#""last":"web.count:1|c""#),
        "each /count sends a statsd datagram to DD_AGENT_HOST=agent: {info}"
    );

    // A release that needs schema 2 is not healthy until the key says so (and the app runs
    // as another user on a read-only root file system).
    let needs_schema = run(
        &guard,
        &strings(&[
            "--network",
            &net,
            "-p",
            "127.0.0.1::8080",
            "-e",
            "REQUIRE_SCHEMA=2",
            "--user",
            "1000:1000",
            "--read-only",
        ]),
        &images.web,
    );
    let addr2 = published(&needs_schema, "8080/tcp");
    let refused = http::wait_for_status(&addr2, "/healthz", 503, READY).unwrap();
    assert!(
        refused.text().contains("schema_version"),
        "{}",
        refused.text()
    );
    exec(&redis, &["redis-cli", "set", "schema_version", "2"]);
    http::wait_for_status(&addr2, "/healthz", 200, READY).unwrap();

    // The unhealthy release serves, but its health command fails.
    let mut opts = strings(&["--network", &net]);
    opts.extend(health_opts(&stack::WEB_HEALTH));
    let bad = run(&guard, &opts, &images.web_unhealthy);
    wait_health(&bad, "unhealthy", READY);
    let (code, out) = exec(&bad, &stack::WEB_HEALTH);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NEVER_HEALTHY"), "{out}");

    // SIGTERM: web finishes the request in flight and exits 0.
    let slow = {
        let addr = addr.clone();
        thread::spawn(move || http::get(&addr, "/count?delay_ms=1500"))
    };
    thread::sleep(Duration::from_millis(500));
    docker::docker_ok(&["kill", "--signal", "TERM", &web]);
    let slow = slow.join().unwrap().unwrap();
    assert_eq!((slow.status, slow.text().as_str()), (200, "5"));
    assert_eq!(
        docker::wait_exit(&web, READY),
        Some(0),
        "{}",
        docker::logs(&web)
    );
    docker::docker_ok(&["stop", &redis]);
    assert_eq!(docker::wait_exit(&redis, READY), Some(0));
}

#[test]
fn agent_answers_udp_and_tcp_on_published_ports_and_sees_host_proc() {
    let test = "agent_answers_udp_and_tcp_on_published_ports_and_sees_host_proc";
    if !debian::require_debian_images(test) {
        return;
    }
    let guard = DockerTestGuard::new();
    let images = stack::stack_images();
    let net = network(&guard);
    let mut opts = strings(&[
        "--network",
        &net,
        "-p",
        "127.0.0.1::8125/udp",
        "-p",
        "127.0.0.1::8126",
        "-v",
        "/proc/:/host/proc/:ro",
    ]);
    let socket = Path::new("/var/run/docker.sock").exists();
    if socket {
        opts.extend(strings(&[
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
        ]));
    }
    opts.extend(health_opts(&stack::AGENT_HEALTH));
    let agent = run(&guard, &opts, &images.agent);
    let apm = published(&agent, "8126/tcp");
    let info = http::wait_for_status(&apm, "/info", 200, READY)
        .unwrap()
        .text();
    assert!(info.contains(r#""host_proc":true"#), "{info}");
    assert!(!info.contains(r#""processes":0"#), "{info}");
    assert!(
        info.contains(&format!(r#""docker_socket":{socket}"#)),
        "{info}"
    );

    let statsd = published(&agent, "8125/udp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + READY;
    let echo = loop {
        // UDP: resend until the agent (or the port forwarding) is up.
        sock.send_to(b"gantry.test:1|c", &statsd).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            break buf[..n].to_vec();
        }
        assert!(Instant::now() < deadline, "no UDP answer from {statsd}");
    };
    assert_eq!(echo, b"gantry.test:1|c");
    let info = http::get(&apm, "/").unwrap().text();
    assert!(info.contains(r#""last":"gantry.test:1|c""#), "{info}");
    wait_health(&agent, "healthy", READY);
    docker::docker_ok(&["stop", &agent]);
    assert_eq!(docker::wait_exit(&agent, READY), Some(0));
}

#[test]
fn images_are_cached_by_content_and_rebuilt_once_removed() {
    let test = "images_are_cached_by_content_and_rebuilt_once_removed";
    if !debian::require_debian_images(test) {
        return;
    }
    let _guard = DockerTestGuard::new();
    let base = debian::debian_image(stack::BASE_PACKAGES);
    // Order and repeats of the package list do not matter.
    let started = Instant::now();
    assert_eq!(
        debian::debian_image(&["redis-server", "python3", "redis-server"]),
        base
    );
    assert!(started.elapsed() < Duration::from_secs(5), "cached");
    let labels = docker::labels_of(&base);
    assert_eq!(
        labels.get(docker::RUN_LABEL_KEY).map(String::as_str),
        Some(docker::run_id())
    );

    let web = stack::web_release("cache-check");
    assert_eq!(stack::web_release("cache-check"), web);
    assert_ne!(stack::web_release("cache-check-2"), web);
    assert_eq!(
        docker::labels_of(&web)
            .get(docker::RUN_LABEL_KEY)
            .map(String::as_str),
        Some(docker::run_id())
    );
    // Removed behind the cache's back (as the last guard's cleanup does): built again.
    docker::docker_ok(&["rmi", "-f", &web]);
    assert!(!docker::image_exists(&web));
    assert_eq!(stack::web_release("cache-check"), web);
    assert!(docker::image_exists(&web));
}

#[test]
fn guard_removes_volumes_and_what_gantry_made_for_its_projects() {
    let test = "guard_removes_volumes_and_what_gantry_made_for_its_projects";
    if !docker::require_docker(test) {
        return;
    }
    let _outer = DockerTestGuard::new(); // keeps the run's other resources while `guard` drops
    let guard = DockerTestGuard::new();
    let project = support::project::Project::new("vol", &guard);
    let project_label = format!("{}={}", support::project::PROJECT_LABEL, project.name);
    // As gantry would make them: the project's label only, no test labels.
    let net = format!("{}_default", project.name);
    let vol = format!("{}_cache-data", project.name);
    docker::docker_ok(&["network", "create", "--label", &project_label, &net]);
    docker::docker_ok(&["volume", "create", "--label", &project_label, &vol]);
    let scoped = docker::run_tag("scoped-volume");
    let mut args = vec!["volume", "create"];
    let labels = guard.label_args();
    args.extend(labels.iter().map(String::as_str));
    args.push(&scoped);
    docker::docker_ok(&args);

    drop(guard);
    let left = |kind: &str, name: &str| {
        docker::docker(&[kind, "inspect", name])
            .status
            .success()
            .then(|| format!("{kind} {name}"))
    };
    let left: Vec<String> = [
        left("network", &net),
        left("volume", &vol),
        left("volume", &scoped),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(left.is_empty(), "left after the guard dropped: {left:?}");
}
