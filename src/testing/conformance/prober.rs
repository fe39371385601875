//! The prober's contract: an answer carries the HTTP status; a 2xx within the timeout is
//! healthy, a 500 or a refused connection is not; an answer slower than the timeout is an
//! error after about the timeout. On top of it, the health and warm-up semantics of
//! `drivers::probe` give the same verdicts through any prober.

use std::time::Duration;

use crate::drivers::probe::{HealthError, wait_healthy, warm_up};
use crate::model::{self, HealthSpec, WarmupSpec};
use crate::ports::Prober;
use crate::testing::{FakeAnswer, FakeProber};

/// Addresses (`host:port`) that answer `/health` as named.
pub struct ProbeFixture {
    /// 200 at once.
    pub ok: String,
    /// 500 at once.
    pub error: String,
    /// 200 after 2 seconds.
    pub slow: String,
    /// Nothing listens.
    pub refused: String,
}

fn secs(ms: u64) -> model::Duration {
    model::Duration(Duration::from_millis(ms))
}

fn health() -> HealthSpec {
    HealthSpec {
        http: Some("/health".into()),
        command: None,
        interval: secs(100),
        timeout: secs(1000),
        retries: 2,
        start_period: secs(0),
    }
}

fn warmup(deadline_ms: u64) -> WarmupSpec {
    WarmupSpec {
        http: "/health".into(),
        max_latency: secs(1000),
        successes: 3,
        concurrency: 2,
        deadline: secs(deadline_ms),
    }
}

pub async fn prober(p: &dyn Prober, f: &ProbeFixture) {
    let t = Duration::from_secs(2);
    let r = p.get(&f.ok, "/health", t).await;
    assert_eq!(r.outcome, Ok(200), "{}", f.ok);
    assert!(r.is_2xx());

    let r = p.get(&f.error, "/health", t).await;
    assert_eq!(r.outcome, Ok(500), "{}", f.error);
    assert!(!r.is_2xx());

    let r = p.get(&f.refused, "/health", t).await;
    assert!(r.outcome.is_err(), "refused: {r:?}");
    assert!(!r.is_2xx());

    let timeout = Duration::from_millis(300);
    let r = p.get(&f.slow, "/health", timeout).await;
    assert!(r.outcome.is_err(), "slower than the timeout: {r:?}");
    assert!(
        r.latency >= timeout && r.latency < Duration::from_millis(1500),
        "gave up after about the timeout: {r:?}"
    );

    let always = || async { Ok::<(), String>(()) };
    let report = wait_healthy(p, &health(), &f.ok, always)
        .await
        .expect("a 2xx is healthy");
    assert_eq!(report.probes, 1);
    match wait_healthy(p, &health(), &f.error, always).await {
        Err(HealthError::Unhealthy { failures: 2, last }) => {
            assert!(last.contains("500"), "{last}")
        }
        other => panic!("a 500 is unhealthy after `retries` probes: {other:?}"),
    }
    assert!(matches!(
        wait_healthy(p, &health(), &f.refused, always).await,
        Err(HealthError::Unhealthy { .. })
    ));
    let exited = || async { Err::<(), String>("the container exited with code 1".into()) };
    assert!(matches!(
        wait_healthy(p, &health(), &f.ok, exited).await,
        Err(HealthError::Exited(_))
    ));

    let report = warm_up(p, &warmup(5000), &f.ok)
        .await
        .expect("fast 2xx answers warm up");
    assert!(report.requests >= 3, "{report}");
    let e = warm_up(p, &warmup(600), &f.error)
        .await
        .expect_err("500s never warm up");
    assert_eq!(e.reached, 0);
    assert!(e.last_failure.is_some_and(|l| l.contains("500")));
}

/// Scripts a fake as the fixture's addresses behave for real.
pub fn script_fake(fake: &FakeProber) -> ProbeFixture {
    let f = ProbeFixture {
        ok: "10.0.0.1:8080".into(),
        error: "10.0.0.2:8080".into(),
        slow: "10.0.0.3:8080".into(),
        refused: "10.0.0.4:8080".into(),
    };
    fake.always(&f.ok, FakeAnswer::Status(200));
    fake.always(&f.error, FakeAnswer::Status(500));
    fake.always(&f.slow, FakeAnswer::Slow(200, Duration::from_secs(2)));
    f
}
