//! Load-balancer membership with a real HAProxy over its runtime API: no reload, a leaving
//! replica is drained until HAProxy reports no session on it, and only then stopped. Each
//! test measures under load, so it runs alone (`support::serial`).

use std::ops::Deref;
use std::process::Output;
use std::time::Duration;

use crate::support;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::haproxy::{HaproxyUnderTest, require_haproxy};
use crate::support::load::Load;
use crate::support::project::{Project, explain};
use crate::support::serial;

struct Setup {
    haproxy: HaproxyUnderTest,
    /// Last: its directory, where HAProxy runs, goes after HAProxy stops.
    p: Project,
}

impl Deref for Setup {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.p
    }
}

impl Setup {
    fn new(guard: &DockerTestGuard) -> Setup {
        Self::with_backend(guard, "    balance roundrobin\n")
    }

    fn with_backend(guard: &DockerTestGuard, body: &str) -> Setup {
        let p = Project::new("hp", guard);
        Setup {
            haproxy: HaproxyUnderTest::start_with(&p.join("haproxy"), "app", body),
            p,
        }
    }

    fn write(&self, tag: &str, replicas: u32, drain: &str) {
        self.p.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = {replicas}
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "10s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}
rollout = {{ batch = 1, order = "start-first", drain = "{drain}" }}

[lb.front]
kind = "haproxy"
socket = "{socket}"
backend = "app"
"#,
            name = self.name,
            labels = self.labels,
            socket = self.haproxy.socket.display(),
        ));
    }

    fn rollback(&self) -> Output {
        self.p.gantry(&["rollback", "--yes", "--progress", "plain"])
    }

    fn apply(&self) -> Output {
        self.p.gantry(&["apply", "--yes", "--progress", "plain"])
    }

    fn version(&self) -> String {
        support::http::wait_for_status(
            &self.haproxy.addr(),
            "/version",
            200,
            Duration::from_secs(5),
        )
        .map(|r| r.text().trim().to_string())
        .unwrap_or_else(|e| e)
    }
}

#[test]
fn rollout_and_roll_back_behind_haproxy_lose_no_request() {
    if !docker::require_docker("rollout_behind_haproxy")
        || !require_haproxy("rollout_behind_haproxy")
    {
        return;
    }
    let _alone = serial::alone();
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::new(&guard);
    s.write(&tags[0], 4, "5s");
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert_eq!(s.version(), tags[0]);
    support::load::rounds_lose_no_request(
        "haproxy",
        &s.haproxy.addr(),
        &tags,
        support::load::KeepAlive::MustNotFail,
        Duration::from_millis(300),
        |rollout, tag| {
            s.write(tag, 4, "5s");
            if rollout { s.apply() } else { s.rollback() }
        },
        || s.version(),
        |o| {
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                stderr.contains("session(s) ->"),
                "the drain says what it saw:\n{stderr}"
            );
        },
    );
}

#[test]
fn a_leaving_replica_is_stopped_only_after_its_last_request() {
    if !docker::require_docker("verified_drain") || !require_haproxy("verified_drain") {
        return;
    }
    let _alone = serial::alone();
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::new(&guard);
    s.write(&tags[0], 1, "20s");
    assert_eq!(s.apply().status.code(), Some(0));
    assert_eq!(s.version(), tags[0]);
    // A slow request is in flight on the only v1 replica when the rollout starts.
    let addr = s.haproxy.addr();
    let slow = std::thread::spawn(move || {
        support::http::request(
            &addr,
            "POST",
            "/orders?delay_ms=3000",
            b"x",
            Duration::from_secs(30),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    s.write(&tags[1], 1, "20s");
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    let slow = slow.join().unwrap().expect("the slow request completed");
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert!(
        slow.text().contains(&tags[0]),
        "served by v1 to the end: {}",
        slow.text()
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let drain = stderr
        .lines()
        .find(|l| l.contains("drain 20s done"))
        .unwrap_or_default();
    assert!(
        drain.contains("1 session(s) -> 0"),
        "waited for the in-flight request, not the full 20s: {drain}\n{stderr}"
    );
    let seconds: f64 = drain
        .split(" done in ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(99.0);
    assert!(
        seconds < 10.0,
        "the drain ended when the session did ({seconds}s), not after 20s"
    );
}

/// A backend whose balance algorithm takes no dynamic servers: gantry fills the free slots of
/// a pre-declared `server-template`, still without a reload or a lost request.
#[test]
fn server_template_slots_when_the_backend_takes_no_dynamic_servers() {
    if !docker::require_docker("server_template_slots") || !require_haproxy("server_template_slots")
    {
        return;
    }
    let _alone = serial::alone();
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::with_backend(
        &guard,
        "    balance source\n    server-template gantry- 6 127.0.0.1:1 disabled\n",
    );
    s.write(&tags[0], 2, "2s");
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert_eq!(s.version(), tags[0]);
    s.write(&tags[1], 2, "2s");
    let load = Load::start(&s.haproxy.addr(), 300, Duration::from_secs(60));
    let o = s.apply();
    std::thread::sleep(Duration::from_millis(300));
    let (during, secs) = load.stop();
    eprintln!(
        "haproxy server-template, during the rollout: {}",
        during.summary(secs)
    );
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert_eq!(during.failed(), 0, "{:?}", during.failures);
    assert_eq!(s.version(), tags[1]);
}

/// `socket = "tcp://host:port"` (issue 14): the runtime API on a TCP stats socket, as an
/// HAProxy on another machine exposes it. A rollout moves the backend from v1 to v2 through
/// it, and the servers gantry set are the ones HAProxy lists on the unix socket too.
#[test]
fn the_runtime_api_is_reached_over_tcp() {
    if !docker::require_docker("haproxy_tcp") || !require_haproxy("haproxy_tcp") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::new(&guard);
    let over_tcp = |tag: &str| {
        s.write(tag, 2, "200ms");
        s.p.edit_toml(|t| {
            t.replace(
                &format!("socket = \"{}\"", s.haproxy.socket.display()),
                &format!("socket = \"{}\"", s.haproxy.socket_tcp),
            )
        });
        assert!(s.p.toml().contains("socket = \"tcp://127.0.0.1:"));
    };
    over_tcp(&tags[0]);
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert_eq!(s.version(), tags[0]);
    over_tcp(&tags[1]);
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert_eq!(s.version(), tags[1]);
}

/// A change that fails half-way puts HAProxy's servers back (the load balancer's contract):
/// a backend without dynamic servers and three `server-template` slots, two of them taken by
/// v1, and a start-first batch of two new replicas: the first takes the free slot, the second
/// finds none. The slot is freed again (maintenance), v1's servers stay in rotation, and the
/// apply restores itself (exit 3).
#[test]
fn a_change_that_fails_half_way_puts_the_servers_back() {
    if !docker::require_docker("haproxy_half_way") || !require_haproxy("haproxy_half_way") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::with_backend(
        &guard,
        "    balance source\n    server-template gantry- 3 127.0.0.1:1 disabled\n",
    );
    // `name address:port admin-state` of gantry's servers.
    let servers = || -> Vec<String> {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo 'show servers state app' | socat - UNIX-CONNECT:{}",
                s.haproxy.socket.display()
            ))
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 18 && f[3].starts_with("gantry-"))
            .map(|f| format!("{} {}:{} {}", f[3], f[4], f[18], f[6]))
            .collect();
        v.sort();
        v
    };
    s.write(&tags[0], 2, "200ms");
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    // In rotation: neither forced maintenance (0x01) nor drain (0x08); a template slot keeps
    // its configured maintenance bit (0x04) once ready.
    let in_rotation = |l: &&String| {
        let admin: u32 = l.rsplit(' ').next().unwrap().parse().unwrap();
        admin & 0x09 == 0
    };
    let before = servers();
    let ready: Vec<&String> = before.iter().filter(in_rotation).collect();
    assert_eq!(ready.len(), 2, "{before:?}");

    s.write(&tags[1], 2, "200ms");
    s.p.edit_toml(|t| t.replace("batch = 1", "batch = 2"));
    let o = s.apply();
    assert_eq!(o.status.code(), Some(3), "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("has no free `server-template gantry- N ...` slot left")
            && err.contains("the servers were put back as they were"),
        "{}",
        explain(&o)
    );
    let after = servers();
    let ready_after: Vec<&String> = after.iter().filter(in_rotation).collect();
    assert_eq!(
        ready_after, ready,
        "v1's servers in rotation, nothing else: {after:?}"
    );
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(s.version(), tags[0]);
}
