//! Host-side HTTP probes: health (is the replica up?) and warm-up (is it fast yet?).
//!
//! Semantics, stated once (Kubernetes' successThreshold surprised users of seed 003; these
//! do not hide anything):
//! - health: probe every `interval` with `timeout`; the replica is healthy at the first 2xx;
//!   failures during `start_period` do not count; after it, `retries` consecutive failures
//!   make the replica unhealthy.
//! - warm-up: `concurrency` requests in flight; a success is a 2xx answered within
//!   `max_latency`; `successes` CONSECUTIVE successes (in completion order) finish it; any
//!   slow or failed answer resets the count; `deadline` bounds the whole step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::model::{HealthSpec, WarmupSpec};

/// One probe answer: the HTTP status (or the transport error) and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub outcome: Result<u16, String>,
    pub latency: Duration,
}

impl ProbeResult {
    pub fn is_2xx(&self) -> bool {
        matches!(self.outcome, Ok(s) if (200..300).contains(&s))
    }

    fn describe(&self) -> String {
        match &self.outcome {
            Ok(s) => format!("HTTP {s} in {} ms", self.latency.as_millis()),
            Err(e) => format!("{e} after {} ms", self.latency.as_millis()),
        }
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

    /// Waits until the replica at `address` is healthy, or says why it is not.
    /// `still_running` is asked between probes so that a crashed container fails fast.
    pub async fn wait_healthy<F, Fut>(
        &self,
        spec: &HealthSpec,
        address: &str,
        mut still_running: F,
    ) -> Result<HealthReport, HealthError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let Some(path) = &spec.http else {
            return Err(HealthError::Unsupported(
                "only HTTP health checks are run by gantry itself".into(),
            ));
        };
        let started = Instant::now();
        let mut failures = 0;
        let mut probes = 0;
        loop {
            if let Err(why) = still_running().await {
                return Err(HealthError::Exited(why));
            }
            let r = self.get(address, path, spec.timeout.0).await;
            probes += 1;
            if r.is_2xx() {
                return Ok(HealthReport {
                    probes,
                    elapsed: started.elapsed(),
                });
            }
            if started.elapsed() >= spec.start_period.0 {
                failures += 1;
                if failures >= spec.retries {
                    return Err(HealthError::Unhealthy {
                        failures,
                        last: r.describe(),
                    });
                }
            }
            tokio::time::sleep(spec.interval.0.saturating_sub(r.latency)).await;
        }
    }

    /// Runs the warm-up probe against `address`.
    pub async fn warm_up(
        &self,
        spec: &WarmupSpec,
        address: &str,
    ) -> Result<WarmupReport, WarmupError> {
        let started = Instant::now();
        let consecutive = Arc::new(AtomicU32::new(0));
        let best = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let last_failure = Arc::new(Mutex::new(None::<String>));
        let deadline = started + spec.deadline.0;
        let mut workers = Vec::new();
        for _ in 0..spec.concurrency.max(1) {
            let (prober, consecutive, best, done, latencies, last_failure) = (
                self.clone(),
                consecutive.clone(),
                best.clone(),
                done.clone(),
                latencies.clone(),
                last_failure.clone(),
            );
            let (path, address, spec) = (spec.http.clone(), address.to_string(), spec.clone());
            workers.push(tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    // Wait past max_latency (up to the deadline) so slow answers are seen as slow, not lost.
                    let r = prober
                        .get(
                            &address,
                            &path,
                            remaining.min(spec.max_latency.0 * 10 + Duration::from_secs(1)),
                        )
                        .await;
                    latencies.lock().await.push(r.latency);
                    if r.is_2xx() && r.latency <= spec.max_latency.0 {
                        let streak = consecutive.fetch_add(1, Ordering::SeqCst) + 1;
                        best.fetch_max(streak, Ordering::SeqCst);
                        if streak >= spec.successes {
                            done.store(true, Ordering::SeqCst);
                        }
                    } else {
                        consecutive.store(0, Ordering::SeqCst);
                        *last_failure.lock().await = Some(r.describe());
                        // A refused or non-2xx answer comes fast: do not hammer a cold replica.
                        if !r.is_2xx() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        let mut seen = latencies.lock().await.clone();
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
                last_failure: last_failure.lock().await.clone(),
                report,
            })
        }
    }
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

    #[test]
    fn percentiles_pick_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99), Duration::ZERO);
    }
}
