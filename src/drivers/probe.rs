//! Host-side HTTP probes: health (is the replica up?) and warm-up (is it fast yet?).
//!
//! Semantics, stated once (Kubernetes' successThreshold surprised users of seed 003; these
//! do not hide anything):
//! - health: probe every `interval` with `timeout`; the replica is healthy at the first 2xx;
//!   failures during `start_period` do not count; after it, `retries` consecutive failures
//!   make the replica unhealthy. Until the first answer, extra probes go in between, sooner
//!   at first (10 ms after the first probe, then twice as long each time, until they are an
//!   `interval` apart): a replica that is up within milliseconds is seen so, not a whole
//!   `interval` later. Only the probes on the `interval` beat count as failures and ask
//!   whether the container still runs (asked alongside the probe, not before it).
//! - warm-up: `concurrency` requests in flight; a success is a 2xx answered within
//!   `max_latency`; `successes` CONSECUTIVE successes (in completion order) finish it; any
//!   slow or failed answer resets the count; `deadline` bounds the whole step.
//!
//! The semantics ([`wait_healthy`], [`warm_up`]) run on any [`Prober`]; [`HttpProber`] is the
//! real one. Time is tokio's, so that tests with a paused clock run them at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{HealthSpec, WarmupSpec};
use crate::ports::{BoxFuture, Prober};

pub use crate::ports::ProbeResult;

fn describe(r: &ProbeResult) -> String {
    match &r.outcome {
        Ok(s) => format!("HTTP {s} in {} ms", r.latency.as_millis()),
        Err(e) => format!("{e} after {} ms", r.latency.as_millis()),
    }
}

/// A reusable HTTP client for probes (connection reuse, no proxies, no redirects).
#[derive(Clone)]
pub struct HttpProber {
    client: reqwest::Client,
}

impl Default for HttpProber {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpProber {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .expect("an HTTP client without TLS always builds");
        HttpProber { client }
    }

    /// GET `http://{address}{path}` within `timeout`.
    pub async fn get(&self, address: &str, path: &str, timeout: Duration) -> ProbeResult {
        let started = Instant::now();
        let url = format!("http://{address}{path}");
        let outcome = match self.client.get(&url).timeout(timeout).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Read the body so the connection can be reused.
                let _ = resp.bytes().await;
                Ok(status)
            }
            Err(e) if e.is_timeout() => Err(format!("no answer within {} ms", timeout.as_millis())),
            Err(e) if e.is_connect() => Err("connection refused".to_string()),
            Err(e) => Err(e.to_string()),
        };
        ProbeResult {
            outcome,
            latency: started.elapsed(),
        }
    }

    /// [`wait_healthy`] with this prober.
    pub async fn wait_healthy<F, Fut>(
        &self,
        spec: &HealthSpec,
        address: &str,
        still_running: F,
    ) -> Result<HealthReport, HealthError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        wait_healthy(self, spec, address, still_running).await
    }

    /// [`warm_up`] with this prober.
    pub async fn warm_up(
        &self,
        spec: &WarmupSpec,
        address: &str,
    ) -> Result<WarmupReport, WarmupError> {
        warm_up(self, spec, address).await
    }
}

impl Prober for HttpProber {
    fn get<'a>(
        &'a self,
        address: &'a str,
        path: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, ProbeResult> {
        Box::pin(HttpProber::get(self, address, path, timeout))
    }
}

/// Waits until the replica at `address` is healthy, or says why it is not.
/// `still_running` is asked between probes so that a crashed container fails fast.
pub async fn wait_healthy<P, F, Fut>(
    prober: &P,
    spec: &HealthSpec,
    address: &str,
    mut still_running: F,
) -> Result<HealthReport, HealthError>
where
    P: Prober + ?Sized,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let Some(path) = &spec.http else {
        return Err(HealthError::Unsupported(
            "only HTTP health checks are run by gantry itself".into(),
        ));
    };
    let started = Instant::now();
    let interval = spec.interval.0;
    let mut failures = 0;
    let mut probes = 0;
    // The next probe on the `interval` beat, and the wait before an extra probe.
    let mut beat = started;
    let mut early = FIRST_EARLY_PROBE;
    loop {
        let sent = Instant::now();
        let on_beat = sent >= beat;
        let r = if on_beat {
            beat = sent + interval;
            let (running, r) = futures_util::future::join(
                still_running(),
                prober.get(address, path, spec.timeout.0),
            )
            .await;
            if let Err(why) = running {
                return Err(HealthError::Exited(why));
            }
            r
        } else {
            prober.get(address, path, spec.timeout.0).await
        };
        probes += 1;
        if r.is_2xx() {
            return Ok(HealthReport {
                probes,
                elapsed: started.elapsed(),
            });
        }
        if on_beat && started.elapsed() >= spec.start_period.0 {
            failures += 1;
            if failures >= spec.retries {
                return Err(HealthError::Unhealthy {
                    failures,
                    last: describe(&r),
                });
            }
        }
        let now = Instant::now();
        let next = match (sent + early).min(beat) {
            // An extra probe only while they are sooner than the beat.
            extra if early < interval => extra,
            _ => beat,
        };
        // Capped: a replica that never answers loops for `retries` beats, however many.
        early = early.saturating_mul(2).min(interval);
        tokio::time::sleep_until(next.max(now)).await;
    }
}

/// How long after the first health probe the first extra probe goes (see the module doc).
const FIRST_EARLY_PROBE: Duration = Duration::from_millis(10);

/// Runs the warm-up probe against `address`: `concurrency` workers, each one request at a
/// time, polled together (the requests are in flight at once; the counting is shared).
pub async fn warm_up<P: Prober + ?Sized>(
    prober: &P,
    spec: &WarmupSpec,
    address: &str,
) -> Result<WarmupReport, WarmupError> {
    let started = Instant::now();
    let consecutive = AtomicU32::new(0);
    let best = AtomicU32::new(0);
    let done = AtomicBool::new(false);
    let latencies = Mutex::new(Vec::<Duration>::new());
    let last_failure = Mutex::new(None::<String>);
    let deadline = started + spec.deadline.0;
    let worker = || async {
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Wait past max_latency (up to the deadline) so slow answers are seen as slow, not lost.
            let r = prober
                .get(
                    address,
                    &spec.http,
                    remaining.min(spec.max_latency.0 * 10 + Duration::from_secs(1)),
                )
                .await;
            lock(&latencies).push(r.latency);
            if r.is_2xx() && r.latency <= spec.max_latency.0 {
                let streak = consecutive.fetch_add(1, Ordering::SeqCst) + 1;
                best.fetch_max(streak, Ordering::SeqCst);
                if streak >= spec.successes {
                    done.store(true, Ordering::SeqCst);
                }
            } else {
                consecutive.store(0, Ordering::SeqCst);
                *lock(&last_failure) = Some(describe(&r));
                // A refused or non-2xx answer comes fast: do not hammer a cold replica.
                if !r.is_2xx() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    futures_util::future::join_all((0..spec.concurrency.max(1)).map(|_| worker())).await;
    let mut seen = lock(&latencies).clone();
    seen.sort();
    let report = WarmupReport {
        requests: seen.len(),
        p50: percentile(&seen, 50),
        p99: percentile(&seen, 99),
        max: seen.last().copied().unwrap_or_default(),
        elapsed: started.elapsed(),
    };
    if done.load(Ordering::SeqCst) {
        Ok(report)
    } else {
        Err(WarmupError {
            reached: best.load(Ordering::SeqCst),
            last_failure: lock(&last_failure).clone(),
            report,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() * p).div_ceil(100)).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub probes: u32,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HealthError {
    #[error("unhealthy: {failures} consecutive failed probes, the last: {last}")]
    Unhealthy { failures: u32, last: String },
    #[error("the container stopped while waiting to be healthy: {0}")]
    Exited(String),
    #[error("{0}")]
    Unsupported(String),
}

/// Latencies seen during a warm-up, reported in progress output and errors.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupReport {
    pub requests: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub elapsed: Duration,
}

impl std::fmt::Display for WarmupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in {:.1}s, latency p50 {} ms, p99 {} ms, max {} ms",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.p50.as_millis(),
            self.p99.as_millis(),
            self.max.as_millis()
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("warm-up did not finish before its deadline: best run {reached} consecutive fast successes; last failure: {}; {report}", last_failure.as_deref().unwrap_or("none"))]
pub struct WarmupError {
    pub reached: u32,
    pub last_failure: Option<String>,
    pub report: WarmupReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refuses connections until `up_at`, then answers 200; records when each probe was sent.
    struct StartsAt {
        up_at: Instant,
        sent: Mutex<Vec<Duration>>,
        origin: Instant,
    }

    impl StartsAt {
        fn new(after: Duration) -> Self {
            let origin = Instant::now();
            StartsAt {
                up_at: origin + after,
                sent: Mutex::new(Vec::new()),
                origin,
            }
        }

        fn sent_ms(&self) -> Vec<u128> {
            lock(&self.sent).iter().map(|d| d.as_millis()).collect()
        }
    }

    impl Prober for StartsAt {
        fn get<'a>(
            &'a self,
            _address: &'a str,
            _path: &'a str,
            _timeout: Duration,
        ) -> BoxFuture<'a, ProbeResult> {
            let now = Instant::now();
            lock(&self.sent).push(now - self.origin);
            Box::pin(async move {
                ProbeResult {
                    outcome: if now >= self.up_at {
                        Ok(200)
                    } else {
                        Err("connection refused".into())
                    },
                    latency: Duration::ZERO,
                }
            })
        }
    }

    fn health(interval_ms: u64, retries: u32) -> HealthSpec {
        HealthSpec {
            http: Some("/healthz".into()),
            command: None,
            interval: crate::model::Duration(Duration::from_millis(interval_ms)),
            timeout: crate::model::Duration(Duration::from_secs(1)),
            retries,
            start_period: crate::model::Duration::default(),
        }
    }

    /// A replica that answers 35 ms after its start is healthy at the probe 70 ms in, not
    /// at the second `interval` beat (100 ms); the container is asked about once, alongside
    /// the first probe.
    #[tokio::test(start_paused = true)]
    async fn a_replica_that_is_up_soon_is_seen_before_the_next_interval() {
        let prober = StartsAt::new(Duration::from_millis(35));
        let asked = AtomicU32::new(0);
        let running = || {
            asked.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        };
        let report = wait_healthy(&prober, &health(100, 3), "a:1", running)
            .await
            .expect("healthy");
        assert_eq!(prober.sent_ms(), [0, 10, 30, 70]);
        assert_eq!(report.probes, 4);
        assert_eq!(report.elapsed, Duration::from_millis(70));
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    /// The extra probes never count as failures: `retries` failures still take `retries`
    /// beats of `interval`, and only the beats ask whether the container still runs.
    #[tokio::test(start_paused = true)]
    async fn only_the_probes_on_the_interval_beat_count_as_failures() {
        let prober = StartsAt::new(Duration::from_secs(3600));
        let asked = AtomicU32::new(0);
        let running = || {
            asked.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        };
        let started = Instant::now();
        match wait_healthy(&prober, &health(100, 3), "a:1", running).await {
            Err(HealthError::Unhealthy { failures: 3, last }) => {
                assert!(last.contains("connection refused"), "{last}")
            }
            other => panic!("unhealthy after 3 beats: {other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert_eq!(prober.sent_ms(), [0, 10, 30, 70, 100, 200]);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    /// A long interval gets a few extra probes early on, then the interval's own beat.
    #[tokio::test(start_paused = true)]
    async fn extra_probes_stop_once_they_are_an_interval_apart() {
        let prober = StartsAt::new(Duration::from_millis(2500));
        let always = || async { Ok::<(), String>(()) };
        wait_healthy(&prober, &health(1000, 10), "a:1", always)
            .await
            .expect("healthy");
        assert_eq!(
            prober.sent_ms(),
            [0, 10, 30, 70, 150, 310, 630, 1000, 2000, 3000]
        );
    }

    /// Many beats (a long start period, many retries) keep the extra-probe gap capped.
    #[tokio::test(start_paused = true)]
    async fn hundreds_of_failing_beats_are_no_overflow() {
        let prober = StartsAt::new(Duration::from_secs(3600));
        let always = || async { Ok::<(), String>(()) };
        let started = Instant::now();
        match wait_healthy(&prober, &health(10, 200), "a:1", always).await {
            Err(HealthError::Unhealthy { failures: 200, .. }) => {}
            other => panic!("unhealthy after 200 beats: {other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_millis(1990));
    }

    /// A container that stopped fails the wait at once, even when something answers.
    #[tokio::test(start_paused = true)]
    async fn a_stopped_container_fails_the_first_beat() {
        let prober = StartsAt::new(Duration::ZERO);
        let exited = || async { Err::<(), String>("the container exited with code 1".into()) };
        assert!(matches!(
            wait_healthy(&prober, &health(100, 3), "a:1", exited).await,
            Err(HealthError::Exited(_))
        ));
    }

    #[test]
    fn percentiles_pick_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99), Duration::ZERO);
    }
}
