//! A steady load of real HTTP requests (GETs and non-idempotent POSTs) at a fixed rate,
//! bounded in time, recording every outcome: each on a fresh connection ([`Load`]), or on
//! keep-alive connections as browsers, apps and proxies send them ([`Load::keep_alive`]).
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
    /// Failed POSTs (keep-alive: a client never retries them).
    pub posts_failed: usize,
    /// Keep-alive: GETs sent again on a new connection after their reused one failed before
    /// any answer, as HTTP clients do for idempotent requests. Not failures.
    pub retried: usize,
    /// Keep-alive: new connections opened.
    pub connections: usize,
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
        let keep_alive = if self.connections > 0 {
            format!(
                " ({} failed POST(s), {} GET(s) retried; {} connections)",
                self.posts_failed, self.retried, self.connections
            )
        } else {
            String::new()
        };
        format!(
            "{} requests ({} POST) in {seconds:.1}s = {:.0}/s: {} ok, {} non-2xx, {} connection errors{keep_alive}; p50 {} ms, p99 {} ms",
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

    fn add(&mut self, r: LoadReport) {
        self.total += r.total;
        self.ok += r.ok;
        self.non_2xx += r.non_2xx;
        self.errors += r.errors;
        self.posts += r.posts;
        self.posts_failed += r.posts_failed;
        self.retried += r.retried;
        self.connections += r.connections;
        self.latencies.extend(r.latencies);
        self.failures.extend(r.failures.into_iter().take(5));
    }
}

/// Sends `rps` requests per second to `addr` until `stop` is set (at most `limit`).
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<thread::JoinHandle<LoadReport>>,
    started: Instant,
}

impl Load {
    /// Each request on a fresh connection (`Connection: close`).
    pub fn start(addr: &str, rps: u32, limit: Duration) -> Load {
        Self::run(addr, rps, limit, false)
    }

    /// Each of 32 workers keeps one connection alive and sends its requests on it, in turn.
    /// Like an HTTP client's pool: a connection the server has already closed is replaced
    /// before use; when a reused connection fails before any answer, a GET is sent again on a
    /// new one (counted as retried) and a POST is a failure (clients never retry those).
    pub fn keep_alive(addr: &str, rps: u32, limit: Duration) -> Load {
        Self::run(addr, rps, limit, true)
    }

    fn run(addr: &str, rps: u32, limit: Duration, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers_n = 32u32;
        let interval = Duration::from_secs_f64(f64::from(workers_n) / f64::from(rps));
        let started = Instant::now();
        let workers = (0..workers_n)
            .map(|w| {
                let (stop, addr) = (stop.clone(), addr.to_string());
                thread::spawn(move || {
                    let mut r = LoadReport::default();
                    let mut conn: Option<super::http::HttpConn> = None;
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
                        let result = if keep_alive {
                            send_keep_alive(&addr, &mut conn, post, &mut r)
                        } else if post {
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
                                r.posts_failed += usize::from(post);
                                r.failures.push(format!(
                                    "{} {}",
                                    if post { "POST" } else { "GET" },
                                    resp.status
                                ));
                            }
                            Err(e) => {
                                r.errors += 1;
                                r.posts_failed += usize::from(post);
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
            all.add(w.join().expect("load worker"));
        }
        (all, seconds)
    }
}

/// One request of a keep-alive worker on its connection (see [`Load::keep_alive`]).
fn send_keep_alive(
    addr: &str,
    conn: &mut Option<super::http::HttpConn>,
    post: bool,
    r: &mut LoadReport,
) -> std::io::Result<super::http::Response> {
    let timeout = Duration::from_secs(10);
    let send = |c: &mut super::http::HttpConn| {
        if post {
            c.request("POST", "/orders", &[], b"{\"item\":42}")
        } else {
            c.request("GET", "/", &[], b"")
        }
    };
    if let Some(mut c) = conn.take().filter(|c| !c.idle_closed()) {
        match send(&mut c) {
            Ok(resp) => {
                if !resp.closes() {
                    *conn = Some(c);
                }
                return Ok(resp);
            }
            // Reused and failed: a POST is lost, a GET is sent again on a new connection.
            Err(e) if post => return Err(e),
            Err(_) => r.retried += 1,
        }
    }
    let mut c = super::http::HttpConn::connect(addr, timeout)?;
    r.connections += 1;
    let resp = send(&mut c)?;
    if !resp.closes() {
        *conn = Some(c);
    }
    Ok(resp)
}

/// What the zero-downtime proof asserts of its keep-alive clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Not one keep-alive request may fail (HAProxy's runtime API: no reload).
    MustNotFail,
    /// Failures are reported, not asserted: an nginx reload closes idle keep-alive
    /// connections, and a request sent on one at that instant is lost (issue 11).
    Reported,
}

/// The zero-downtime proof shared by the nginx and HAProxy tests: rollouts to `tags[1]` and
/// `gantry rollback`s to `tags[0]` under two loads at once, 500 requests/s each, half of them
/// POSTs: one on fresh connections, one on keep-alive connections ([`Load::keep_alive`]).
/// One round of each, or `GANTRY_ZERO_DOWNTIME_ROUNDS` (`benches/zero_downtime.sh`).
/// `run(rollout, tag)` writes the configuration for `tag` and runs `gantry apply` (rollout) or
/// `gantry rollback`; `version()` is what the load balancer serves once settled; `check` looks
/// at each command's output. Asserts no failed fresh-connection request, keep-alive as
/// `keep_alive` says, steady loads and the right version after each round; prints both
/// loads' figures per round and in total.
#[allow(clippy::too_many_arguments)]
pub fn rounds_lose_no_request(
    lb: &str,
    addr: &str,
    tags: &[String; 2],
    keep_alive: KeepAlive,
    settle: Duration,
    mut run: impl FnMut(bool, &str) -> std::process::Output,
    version: impl Fn() -> String,
    check: impl Fn(&std::process::Output),
) {
    let rounds: usize = std::env::var("GANTRY_ZERO_DOWNTIME_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (mut fresh_all, mut kept_all) = (LoadReport::default(), LoadReport::default());
    for (rollout, tag) in (0..rounds).flat_map(|_| [(true, &tags[1]), (false, &tags[0])]) {
        let load = Load::start(addr, 500, Duration::from_secs(120));
        let kept = Load::keep_alive(addr, 500, Duration::from_secs(120));
        let o = run(rollout, tag);
        thread::sleep(settle);
        let (during, secs) = load.stop();
        let (kept_during, kept_secs) = kept.stop();
        let what = if rollout {
            "rollout to v2"
        } else {
            "gantry rollback to v1"
        };
        eprintln!("{lb}, during the {what}: {}", during.summary(secs));
        eprintln!(
            "{lb}, during the {what}, keep-alive: {}",
            kept_during.summary(kept_secs)
        );
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
        if keep_alive == KeepAlive::MustNotFail {
            assert_eq!(
                kept_during.failed(),
                0,
                "{what}: {} failed keep-alive requests, e.g. {:?}",
                kept_during.failed(),
                kept_during.failures
            );
        }
        for (load, secs) in [(&during, secs), (&kept_during, kept_secs)] {
            assert!(
                load.total as f64 >= 450.0 * secs,
                "{what}: the load was not steady: {}",
                load.summary(secs)
            );
        }
        assert_eq!(version(), *tag);
        check(&o);
        fresh_all.add(during);
        kept_all.add(kept_during);
    }
    eprintln!(
        "{lb}, {rounds} rollout(s) and roll back(s): fresh connections: {} requests, {} failed; keep-alive: {} requests, {} failed ({} POST), {} GET(s) retried",
        fresh_all.total,
        fresh_all.failed(),
        kept_all.total,
        kept_all.failed(),
        kept_all.posts_failed,
        kept_all.retried
    );
}
