//! A steady load of real HTTP requests (GETs and non-idempotent POSTs, each on a fresh
//! connection) at a fixed rate, bounded in time, recording every outcome.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub total: usize,
    pub ok: usize,
    pub non_2xx: usize,
    pub errors: usize,
    pub posts: usize,
    pub latencies: Vec<Duration>,
    pub failures: Vec<String>,
}

impl LoadReport {
    pub fn failed(&self) -> usize {
        self.non_2xx + self.errors
    }

    pub fn percentile(&self, p: usize) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l[((l.len() * p).div_ceil(100)).clamp(1, l.len()) - 1]
    }

    pub fn summary(&self, seconds: f64) -> String {
        format!(
            "{} requests ({} POST) in {seconds:.1}s = {:.0}/s: {} ok, {} non-2xx, {} connection errors; p50 {} ms, p99 {} ms",
            self.total,
            self.posts,
            self.total as f64 / seconds,
            self.ok,
            self.non_2xx,
            self.errors,
            self.percentile(50).as_millis(),
            self.percentile(99).as_millis()
        )
    }
}

/// Sends `rps` requests per second to `addr` until `stop` is set (at most `limit`).
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<thread::JoinHandle<LoadReport>>,
    started: Instant,
}

impl Load {
    pub fn start(addr: &str, rps: u32, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers_n = 32u32;
        let interval = Duration::from_secs_f64(f64::from(workers_n) / f64::from(rps));
        let started = Instant::now();
        let workers = (0..workers_n)
            .map(|w| {
                let (stop, addr) = (stop.clone(), addr.to_string());
                thread::spawn(move || {
                    let mut r = LoadReport::default();
                    let mut next = started + interval.mul_f64(f64::from(w) / f64::from(workers_n));
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) && started.elapsed() < limit {
                        let now = Instant::now();
                        if next > now {
                            thread::sleep(next - now);
                        }
                        next += interval;
                        n += 1;
                        let post = n % 2 == 0;
                        let t = Instant::now();
                        let result = if post {
                            super::http::request(
                                &addr,
                                "POST",
                                "/orders",
                                b"{\"item\":42}",
                                Duration::from_secs(10),
                            )
                        } else {
                            super::http::request(&addr, "GET", "/", b"", Duration::from_secs(10))
                        };
                        r.total += 1;
                        r.posts += usize::from(post);
                        match result {
                            Ok(resp) if (200..300).contains(&resp.status) => {
                                r.ok += 1;
                                r.latencies.push(t.elapsed());
                            }
                            Ok(resp) => {
                                r.non_2xx += 1;
                                r.failures.push(format!(
                                    "{} {}",
                                    if post { "POST" } else { "GET" },
                                    resp.status
                                ));
                            }
                            Err(e) => {
                                r.errors += 1;
                                r.failures
                                    .push(format!("{} {e}", if post { "POST" } else { "GET" }));
                            }
                        }
                    }
                    r
                })
            })
            .collect();
        Load {
            stop,
            workers,
            started,
        }
    }

    pub fn stop(self) -> (LoadReport, f64) {
        self.stop.store(true, Ordering::SeqCst);
        let seconds = self.started.elapsed().as_secs_f64();
        let mut all = LoadReport::default();
        for w in self.workers {
            let r = w.join().expect("load worker");
            all.total += r.total;
            all.ok += r.ok;
            all.non_2xx += r.non_2xx;
            all.errors += r.errors;
            all.posts += r.posts;
            all.latencies.extend(r.latencies);
            all.failures.extend(r.failures.into_iter().take(5));
        }
        (all, seconds)
    }
}

/// The zero-downtime proof shared by the nginx and HAProxy tests: rollouts to `tags[1]` and
/// `gantry rollback`s to `tags[0]` under 500 requests/s, one of each, or
/// `GANTRY_ZERO_DOWNTIME_ROUNDS` of each (`benches/zero_downtime.sh`). `run(rollout, tag)`
/// writes the configuration for `tag` and runs `gantry apply` (rollout) or `gantry rollback`;
/// `version()` is what the load balancer serves once settled; `check` looks at each command's
/// output. Asserts no failed request, a steady load and the right version after each round.
pub fn rounds_lose_no_request(
    lb: &str,
    addr: &str,
    tags: &[String; 2],
    settle: Duration,
    mut run: impl FnMut(bool, &str) -> std::process::Output,
    version: impl Fn() -> String,
    check: impl Fn(&std::process::Output),
) {
    let rounds: usize = std::env::var("GANTRY_ZERO_DOWNTIME_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut totals = (0usize, 0usize);
    for (rollout, tag) in (0..rounds).flat_map(|_| [(true, &tags[1]), (false, &tags[0])]) {
        let load = Load::start(addr, 500, Duration::from_secs(120));
        let o = run(rollout, tag);
        thread::sleep(settle);
        let (during, secs) = load.stop();
        let what = if rollout {
            "rollout to v2"
        } else {
            "gantry rollback to v1"
        };
        totals = (totals.0 + during.total, totals.1 + during.failed());
        eprintln!("{lb}, during the {what}: {}", during.summary(secs));
        assert_eq!(
            o.status.code(),
            Some(0),
            "exit {:?}\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            during.failed(),
            0,
            "{what}: {} failed requests, e.g. {:?}",
            during.failed(),
            during.failures
        );
        assert!(
            during.total as f64 >= 450.0 * secs,
            "{what}: the load was not steady: {}",
            during.summary(secs)
        );
        assert_eq!(version(), *tag);
        check(&o);
    }
    eprintln!(
        "{lb}, {rounds} rollout(s) and roll back(s): {} requests, {} failed",
        totals.0, totals.1
    );
}
