//! The test application image (`testapp/build.sh`, `examples/testapp.rs`) behaves as the
//! apply / rollback tests and the quickstart expect: checked over real HTTP against real
//! containers. Skipped without Docker, except under CI=true where it fails.

use crate::support;

use std::thread;
use std::time::{Duration, Instant};

use support::docker::{self, DockerTestGuard};
use support::http::{self, HttpConn};

const READY: Duration = Duration::from_secs(20);

/// Docker check, guard, image (built once per process), one container with `env`.
/// Returns the guard (keep it alive), the container id and its published address.
fn start(test: &str, env: &[&str]) -> Option<(DockerTestGuard, String, String)> {
    if !docker::require_docker(test) {
        return None;
    }
    let guard = DockerTestGuard::new();
    let image = docker::build_testapp_image_once(&docker::run_tag("testapp"));
    let mut opts = vec!["-p", "127.0.0.1::8080"];
    for e in env {
        opts.extend(["-e", e]);
    }
    let id = guard.run(&opts, &image);
    let addr = docker::published_addr(&id, 8080);
    Some((guard, id, addr))
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn serves_health_version_post_keepalive_and_is_labelled() {
    let Some((_guard, id, addr)) = start(
        "serves_health_version_post_keepalive_and_is_labelled",
        &["VERSION=v7"],
    ) else {
        return;
    };
    http::wait_for_status(&addr, "/healthz", 200, READY).unwrap();

    let health = http::get(&addr, "/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    let version = http::get(&addr, "/version").unwrap();
    assert_eq!((version.status, version.text().as_str()), (200, "v7"));
    let hostname = docker::inspect(&id, "{{.Config.Hostname}}");
    let root = http::get(&addr, "/").unwrap();
    assert_eq!(root.status, 200);
    assert_eq!(
        root.text(),
        format!(r#"{{"version":"v7","host":"{hostname}"}}"#)
    );
    assert_eq!(root.header("content-type"), Some("application/json"));

    // Keep-alive: a POST with a body, then more requests on the same connection. The body
    // must have been read fully, or the next request would be garbage to the server.
    let mut conn = HttpConn::connect(&addr, Duration::from_secs(10)).unwrap();
    let body = vec![b'x'; 200_000];
    let post = conn.request("POST", "/warmup", &[], &body).unwrap();
    assert_eq!(post.status, 200, "{}", post.text());
    assert!(post.text().contains(r#""version":"v7""#), "{}", post.text());
    assert!(!post.closes());
    let again = conn.get("/version").unwrap();
    assert_eq!((again.status, again.text().as_str()), (200, "v7"));
    let chunked = conn
        .request(
            "POST",
            "/anything",
            &[("Transfer-Encoding", "chunked"), ("Expect", "100-continue")],
            b"5\r\nhello\r\n0\r\n\r\n",
        )
        .unwrap();
    assert_eq!(chunked.status, 200);
    let head = conn.request("HEAD", "/healthz", &[], b"").unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("2"));
    assert!(head.body.is_empty());
    // `Connection: close` is honoured: answered, then closed by the server.
    let last = conn
        .request("GET", "/healthz", &[("Connection", "close")], b"")
        .unwrap();
    assert_eq!(last.status, 200);
    assert!(last.closes());
    assert!(conn.is_closed_by_peer());

    // Every response has a Content-Length, errors included.
    let put = http::request(&addr, "PUT", "/", b"", Duration::from_secs(10)).unwrap();
    assert_eq!(put.status, 405);
    assert!(put.header("content-length").is_some());

    // The image carries the run label; the container the guard's labels.
    let image = docker::inspect(&id, "{{.Image}}");
    let image_labels = docker::labels_of(&image);
    assert_eq!(
        image_labels.get(docker::RUN_LABEL_KEY).map(String::as_str),
        Some(docker::run_id())
    );
    assert!(docker::labels_of(&id).contains_key(docker::SCOPE_LABEL_KEY));
    let logs = docker::logs(&id);
    assert!(
        logs.contains("testapp: listening on 0.0.0.0:8080"),
        "{logs}"
    );
}

#[test]
fn never_healthy_answers_503() {
    let Some((_guard, _id, addr)) = start("never_healthy_answers_503", &["NEVER_HEALTHY=1"]) else {
        return;
    };
    // Serving, but never healthy.
    http::wait_for_status(&addr, "/version", 200, READY).unwrap();
    for _ in 0..3 {
        let r = http::get(&addr, "/healthz").unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
    }
    assert_eq!(http::get(&addr, "/warmup").unwrap().status, 200);
}

#[test]
fn crash_after_exits_with_code_3() {
    let Some((_guard, id, addr)) =
        start("crash_after_exits_with_code_3", &["CRASH_AFTER_SECONDS=1"])
    else {
        return;
    };
    let started = Instant::now();
    // It serves until it crashes.
    let _ = http::wait_for_status(&addr, "/healthz", 200, Duration::from_millis(900));
    let code = docker::wait_exit(&id, Duration::from_secs(15));
    assert_eq!(code, Some(3), "logs:\n{}", docker::logs(&id));
    assert!(started.elapsed() < Duration::from_secs(10));
    let logs = docker::logs(&id);
    assert!(logs.contains("CRASH_AFTER_SECONDS"), "{logs}");
}

#[test]
fn warmup_latency_falls_to_zero_and_requests_run_concurrently() {
    let Some((_guard, _id, addr)) = start(
        "warmup_latency_falls_to_zero_and_requests_run_concurrently",
        &["WARMUP_SECONDS=5", "COLD_LATENCY_MS=2000"],
    ) else {
        return;
    };
    // The container started before `start` returned: from here, at most 5 s of warm-up remain.
    let t0 = Instant::now();
    let first = loop {
        let sent = Instant::now();
        match http::get(&addr, "/warmup") {
            Ok(r) if r.status == 200 => break sent.elapsed(),
            _ if t0.elapsed() > READY => panic!("no answer within {READY:?}"),
            _ => thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(
        first >= Duration::from_millis(700),
        "first request took {} ms; expected a cold, slow one",
        ms(first)
    );

    // Cold requests are served side by side, not one after the other.
    let batch = Instant::now();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || {
                let sent = Instant::now();
                let r = http::get(&addr, "/warmup").unwrap();
                assert_eq!(r.status, 200);
                sent.elapsed()
            })
        })
        .collect();
    let each: Vec<Duration> = slow.into_iter().map(|h| h.join().unwrap()).collect();
    let wall = batch.elapsed();
    let sum: Duration = each.iter().sum();
    if each.iter().all(|d| *d >= Duration::from_millis(150)) {
        assert!(
            wall < sum.mul_f64(0.6),
            "4 concurrent requests took {} ms in all, {} ms added up: serialised?",
            ms(wall),
            ms(sum)
        );
    }

    // Past the warm-up, requests are fast.
    let warm_at = t0 + Duration::from_millis(5500);
    thread::sleep(warm_at.saturating_duration_since(Instant::now()));
    let sent = Instant::now();
    assert_eq!(http::get(&addr, "/warmup").unwrap().status, 200);
    let warm = sent.elapsed();
    assert!(
        warm < Duration::from_millis(300),
        "request after warm-up took {} ms",
        ms(warm)
    );
    assert!(warm < first / 2);
}

#[test]
fn sigterm_finishes_in_flight_request_then_exits_0() {
    let Some((_guard, id, addr)) = start("sigterm_finishes_in_flight_request_then_exits_0", &[])
    else {
        return;
    };
    http::wait_for_status(&addr, "/healthz", 200, READY).unwrap();
    // An idle kept-alive connection must not hold the shutdown up.
    let mut idle = HttpConn::connect(&addr, Duration::from_secs(15)).unwrap();
    assert_eq!(idle.get("/healthz").unwrap().status, 200);

    let in_flight = {
        let addr = addr.clone();
        thread::spawn(move || {
            let sent = Instant::now();
            let r = http::request(
                &addr,
                "GET",
                "/?delay_ms=3000",
                b"",
                Duration::from_secs(15),
            );
            (r, sent.elapsed())
        })
    };
    thread::sleep(Duration::from_millis(700));
    let stop = Instant::now();
    docker::docker_ok(&["stop", "-t", "10", &id]);
    let stopped_in = stop.elapsed();

    let (resp, took) = in_flight.join().unwrap();
    let resp = resp.expect("the in-flight request completes");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.text().contains(r#""version":"dev""#),
        "{}",
        resp.text()
    );
    assert!(took >= Duration::from_millis(2900), "{} ms", ms(took));

    let logs = docker::logs(&id);
    assert_eq!(
        docker::inspect(&id, "{{.State.ExitCode}}"),
        "0",
        "logs:\n{logs}"
    );
    // Waited for the request (about 2.3 s left), but was not killed at the 10 s limit.
    assert!(
        stopped_in >= Duration::from_millis(1500) && stopped_in < Duration::from_secs(8),
        "docker stop took {} ms; logs:\n{logs}",
        ms(stopped_in)
    );
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("testapp: exit 0"), "{logs}");
}

#[test]
fn shutdown_delay_keeps_serving_new_requests_before_exit_0() {
    let Some((_guard, id, addr)) = start(
        "shutdown_delay_keeps_serving_new_requests_before_exit_0",
        &["SHUTDOWN_DELAY_SECONDS=2"],
    ) else {
        return;
    };
    http::wait_for_status(&addr, "/healthz", 200, READY).unwrap();
    let stopper = {
        let id = id.clone();
        thread::spawn(move || {
            let t = Instant::now();
            docker::docker_ok(&["stop", "-t", "10", &id]);
            t.elapsed()
        })
    };
    thread::sleep(Duration::from_millis(800));
    // SIGTERM has arrived, but new connections and requests are still served.
    let during = http::get(&addr, "/version").unwrap();
    assert_eq!((during.status, during.text().as_str()), (200, "dev"));
    let stopped_in = stopper.join().unwrap();

    let logs = docker::logs(&id);
    assert!(logs.contains("SHUTDOWN_DELAY_SECONDS"), "{logs}");
    assert_eq!(
        docker::inspect(&id, "{{.State.ExitCode}}"),
        "0",
        "logs:\n{logs}"
    );
    assert!(
        stopped_in >= Duration::from_millis(1900) && stopped_in < Duration::from_secs(8),
        "docker stop took {} ms; logs:\n{logs}",
        ms(stopped_in)
    );
}
