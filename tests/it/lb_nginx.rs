//! Load-balancer membership with a real nginx on loopback in front of the test app's
//! replicas, under a steady load of GETs and non-idempotent POSTs: a rollout and a roll back
//! lose no request; a failing `nginx -t` leaves nginx serving as before and the rollout
//! restores itself. They measure latency and rate under load, so each runs alone
//! (`support::serial`).

use std::ops::Deref;
use std::process::Output;
use std::time::Duration;

use crate::support;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::load::Load;
use crate::support::nginx::{NginxUnderTest, require_nginx};
use crate::support::project::{Project, explain};
use crate::support::serial;

struct Setup {
    nginx: NginxUnderTest,
    /// Last: its directory, where nginx runs, goes after nginx stops.
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
        let p = Project::new("lb", guard);
        Setup {
            nginx: NginxUnderTest::start(&p.join("nginx"), "app"),
            p,
        }
    }

    fn write(&self, tag: &str, check: Option<&str>) {
        self.write_with(tag, check, "", "");
    }

    /// `env` is added to the replicas' environment, `extra` to the service table.
    fn write_with(&self, tag: &str, check: Option<&str>, env: &str, extra: &str) {
        let (default_check, _) = self.nginx.toml_commands();
        // The reload counts its calls (issue 11: one reload per batch, not two).
        let reload = format!(
            "[\"sh\", \"-c\", \"echo reload >> {}; exec nginx {} -s reload\"]",
            self.reload_log().display(),
            self.nginx.args().join(" ")
        );
        self.p.write_toml(&format!(
            r#"[project]
name = "{name}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 4
port = 8080
env = {{ VERSION = "{tag}"{env} }}
labels = {labels}
stop_grace_period = "10s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 10 }}
rollout = {{ batch = 1, order = "start-first", drain = "1s" }}
{extra}

[lb.front]
kind = "nginx"
upstream = "app"
upstream_file = "{file}"
check = {check}
reload = {reload}
"#,
            name = self.name,
            labels = self.labels,
            file = self.nginx.upstream_file.display(),
            check = check.unwrap_or(&default_check),
        ));
    }

    fn reload_log(&self) -> std::path::PathBuf {
        self.p.join("reloads.log")
    }

    /// How many times gantry has reloaded nginx so far.
    fn reloads(&self) -> usize {
        std::fs::read_to_string(self.reload_log())
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn rollback(&self) -> Output {
        self.p.gantry(&["rollback", "--yes", "--progress", "plain"])
    }

    fn apply(&self) -> Output {
        self.p.gantry(&["apply", "--yes", "--progress", "plain"])
    }

    /// The version nginx serves, once its reload has taken effect (nginx reloads
    /// asynchronously: for a moment after `nginx -s reload` returns, the old workers answer).
    fn version(&self) -> String {
        support::http::wait_for_status(&self.nginx.addr(), "/version", 200, Duration::from_secs(5))
            .map(|r| r.text().trim().to_string())
            .unwrap_or_else(|e| e)
    }
}

#[test]
fn rollout_and_roll_back_behind_nginx_lose_no_request() {
    if !docker::require_docker("rollout_behind_nginx") || !require_nginx("rollout_behind_nginx") {
        return;
    }
    let _alone = serial::alone();
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::new(&guard);
    s.write(&tags[0], None);
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    let upstream = std::fs::read_to_string(&s.nginx.upstream_file).unwrap();
    let errors = std::fs::read_to_string(s.nginx.dir.join("error.log")).unwrap_or_default();
    assert_eq!(
        s.version(),
        tags[0],
        "upstream:\n{upstream}\nnginx error log:\n{errors}"
    );
    assert!(
        upstream.starts_with("# Managed by gantry")
            && upstream.matches("server 127.0.0.1:").count() == 4,
        "{upstream}"
    );

    let (before, before_s) = {
        let load = Load::start(&s.nginx.addr(), 500, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(3));
        load.stop()
    };
    eprintln!("before the rollout: {}", before.summary(before_s));

    support::load::rounds_lose_no_request(
        "nginx",
        &s.nginx.addr(),
        &tags,
        support::load::KeepAlive::Reported,
        Duration::from_millis(500),
        |rollout, tag| {
            s.write(tag, None);
            let before = s.reloads();
            let o = if rollout { s.apply() } else { s.rollback() };
            let reloads = s.reloads() - before;
            eprintln!(
                "nginx reloads during the {}: {reloads}",
                if rollout {
                    "rollout (4 replicas, 4 batches)"
                } else {
                    "rollback"
                }
            );
            // One change per batch: 4 batches reload nginx 4 times (twice as many before
            // issue 11); a rollback moves every replica in one batch. (Another build, given
            // by GANTRY_BIN to compare, is measured, not judged.)
            if std::env::var_os("GANTRY_BIN").is_none() {
                assert!(reloads <= if rollout { 5 } else { 1 }, "{reloads} reloads");
            }
            o
        },
        || s.version(),
        |_| {},
    );
}

/// The comparison: the same load while each replica is replaced naively (`docker stop`,
/// then `docker run` of the new version on the same port, nobody telling nginx). Reported,
/// not asserted: how many requests it loses depends on timing. `benches/zero_downtime.sh`
/// runs it beside the gantry rollouts.
#[test]
#[ignore = "a measurement for benches/zero_downtime.sh, not a check"]
fn naive_recreate_behind_nginx_for_comparison() {
    if !docker::require_docker("naive_recreate") || !require_nginx("naive_recreate") {
        return;
    }
    let _alone = serial::alone();
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::new(&guard);
    s.write(&tags[0], None);
    assert_eq!(s.apply().status.code(), Some(0));
    assert_eq!(s.version(), tags[0]);
    let replicas: Vec<String> = (1..=4).map(|i| format!("{}-web-1-{i}", s.name)).collect();
    let load = Load::start(&s.nginx.addr(), 500, Duration::from_secs(120));
    for (i, c) in replicas.iter().enumerate() {
        let port = docker::published_addr(c, 8080)
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        docker::docker_ok(&["stop", "-t", "10", c]);
        let mut args: Vec<String> = vec!["run".into(), "-d".into()];
        args.extend(guard.label_args());
        args.extend([
            "--name".into(),
            format!("{}-naive-{i}", s.name),
            "-e".into(),
            format!("VERSION={}", tags[1]),
        ]);
        args.extend([
            "-p".into(),
            format!("127.0.0.1:{port}:8080"),
            format!("gantry-testapp:{}", tags[1]),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker::docker_ok(&args);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (during, secs) = load.stop();
    eprintln!(
        "nginx, naive recreate (docker stop + docker run, no LB coordination): {}",
        during.summary(secs)
    );
}

#[test]
fn a_failing_nginx_check_keeps_nginx_serving_and_the_rollout_restores_itself() {
    if !docker::require_docker("failing_nginx_check") || !require_nginx("failing_nginx_check") {
        return;
    }
    let _alone = serial::alone();
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::new(&guard);
    s.write(&tags[0], None);
    assert_eq!(s.apply().status.code(), Some(0));
    assert_eq!(s.version(), tags[0]);
    let upstream_before = std::fs::read_to_string(&s.nginx.upstream_file).unwrap();

    // The check now fails, as a broken include would make `nginx -t` fail.
    s.write(
        &tags[1],
        Some("[\"sh\", \"-c\", \"echo 'nginx: [emerg] broken include' >&2; exit 1\"]"),
    );
    let load = Load::start(&s.nginx.addr(), 200, Duration::from_secs(60));
    let o = s.apply();
    let (during, secs) = load.stop();
    assert_eq!(o.status.code(), Some(3), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("[emerg] broken include"),
        "nginx's own message is shown: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&s.nginx.upstream_file).unwrap(),
        upstream_before,
        "previous upstream file restored"
    );
    assert_eq!(
        during.failed(),
        0,
        "nginx kept serving: {}",
        during.summary(secs)
    );
    assert_eq!(s.version(), tags[0]);
}

/// Cold replicas of the test app answer 300 ms slower at first, falling to nothing over 3 s.
/// With a warm-up (5 consecutive answers within 5 ms, 4 in flight) a replica joins only once
/// it is fast, so users see no slow answers: p99 during the rollout stays within twice the
/// p99 before it (with a 25 ms floor under the "before": p99s of a few ms on a shared 2-core
/// machine are scheduling noise, 24 ms seen in CI with compiles beside it). Without the
/// warm-up, the ~4 % of requests that reach a cold replica (1 in 4 replicas, 3 s of 20) take
/// up to 300 ms, which puts the p99 above 200 ms: far above the bound.
#[test]
fn warm_up_keeps_p99_during_a_rollout_within_twice_the_p99_before() {
    if !docker::require_docker("warm_up_p99") || !require_nginx("warm_up_p99") {
        return;
    }
    let _alone = serial::alone();
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let s = Setup::new(&guard);
    let cold = ", WARMUP_SECONDS = \"3\", COLD_LATENCY_MS = \"300\"";
    let warmup = "warmup = { http = \"/warmup\", max_latency = \"5ms\", successes = 5, concurrency = 4, deadline = \"30s\" }";
    s.write_with(&tags[0], None, cold, warmup);
    let o = s.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert_eq!(s.version(), tags[0]);
    let (before, before_s) = {
        let load = Load::start(&s.nginx.addr(), 500, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(3));
        load.stop()
    };
    s.write_with(&tags[1], None, cold, warmup);
    let load = Load::start(&s.nginx.addr(), 500, Duration::from_secs(120));
    let o = s.apply();
    std::thread::sleep(Duration::from_millis(300));
    let (during, secs) = load.stop();
    eprintln!("with warm-up, before: {}", before.summary(before_s));
    eprintln!("with warm-up, during the rollout: {}", during.summary(secs));
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("latency p50"),
        "the warm-up reports latencies"
    );
    assert_eq!(during.failed(), 0, "{:?}", during.failures);
    let floor = before.percentile(99).max(Duration::from_millis(25));
    assert!(
        during.percentile(99) <= floor * 2,
        "p99 during {:?} > 2 x {:?}",
        during.percentile(99),
        floor
    );
}
