//! `testapp`: the small HTTP/1.1 server that gantry's integration tests and quickstart deploy.
//!
//! It is built as a static binary and packaged `FROM scratch` by `testapp/build.sh` (see
//! `testapp/README.md`), so it needs no shell, no libc and no DNS at run time. Only the standard
//! library and `signal-hook` (for SIGTERM) are used.
//!
//! Endpoints (GET, HEAD and POST; any request body is read fully; keep-alive and pipelining):
//!
//! | path            | answer                                                   |
//! |-----------------|----------------------------------------------------------|
//! | `/healthz`      | `200 ok`, or `503 unhealthy` with `NEVER_HEALTHY=1`      |
//! | `/version`      | the value of `VERSION`, as plain text                     |
//! | `/idle`, `/resume`, `/mode` | set (or only show) the mode: `idle` or `active` (the default) |
//! | anything else   | `200 {"version":"v1","host":"<hostname>"}` (`/`, `/warmup`, ...) |
//!
//! Any path also takes `?delay_ms=N` (at most 120000) to add N ms to that one request, so tests
//! can keep a request in flight on purpose.
//!
//! Environment:
//!
//! * `PORT` (default 8080), `VERSION` (default `dev`).
//! * `WARMUP_SECONDS`, `COLD_LATENCY_MS` (default 1000 when `WARMUP_SECONDS` is set): every
//!   request's added latency starts at `COLD_LATENCY_MS` and falls linearly to 0 over
//!   `WARMUP_SECONDS` since start. Requests are served concurrently, never serialised.
//! * `NEVER_HEALTHY=1`: `/healthz` always answers 503.
//! * `CRASH_AFTER_SECONDS=N`: the process exits with code 3 after N seconds, saying why on stderr.
//! * `SHUTDOWN_DELAY_SECONDS=N`: on SIGTERM, go on serving in-flight and new requests for N
//!   seconds before closing the listener (a slow shutdown).
//!
//! `testapp --healthcheck [PATH]` does not serve: it GETs `http://127.0.0.1:$PORT/PATH` (default
//! `/healthz`) and exits 0 on a 2xx answer, 1 otherwise. Images `FROM scratch` have no curl, so
//! this is the in-container health check for Docker Swarm (`HEALTHCHECK CMD /testapp --healthcheck`).
//! `testapp --healthcheck http://HOST:PORT/PATH` GETs another address, HOST resolved by DNS
//! (another container's network alias). `testapp --get PATH` is the same, for commands
//! exec'ed in the container (`--get /idle`).
//!
//! Seconds may be fractional (`0.5`). On SIGTERM (or SIGINT) the server stops accepting, finishes
//! the requests in flight (idle keep-alive connections are closed), and exits 0. One line per
//! lifecycle event goes to stdout: listening, signal received, listener closed, exit. A bad
//! environment value is reported on stderr with exit code 2.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use std::{env, fs, process, thread};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How often a blocked read wakes up to look at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);
/// An idle keep-alive connection is closed after this long.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(75);
/// A request (head or body) that makes no progress for this long is abandoned.
const STALL: Duration = Duration::from_secs(30);
/// Largest accepted request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest `?delay_ms=`.
const MAX_DELAY_MS: u64 = 120_000;

struct Config {
    port: u16,
    version: String,
    host: String,
    warmup: Duration,
    cold_latency: Duration,
    never_healthy: bool,
    crash_after: Option<Duration>,
    shutdown_delay: Duration,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let port = match var("PORT") {
            None => 8080,
            Some(v) => v
                .parse::<u16>()
                .map_err(|_| format!("PORT={v:?} is not a port number (0-65535)"))?,
        };
        let version = var("VERSION").unwrap_or_else(|| "dev".to_owned());
        let warmup = seconds("WARMUP_SECONDS")?.unwrap_or(Duration::ZERO);
        let cold_latency = match var("COLD_LATENCY_MS") {
            None if warmup.is_zero() => Duration::ZERO,
            None => Duration::from_millis(1000),
            Some(v) => Duration::from_millis(v.parse::<u64>().map_err(|_| {
                format!("COLD_LATENCY_MS={v:?} is not a whole number of milliseconds")
            })?),
        };
        let never_healthy = match var("NEVER_HEALTHY").as_deref() {
            None => false,
            Some("1" | "true" | "yes" | "on") => true,
            Some("0" | "false" | "no" | "off") => false,
            Some(v) => return Err(format!("NEVER_HEALTHY={v:?} is not 1/0/true/false")),
        };
        Ok(Config {
            port,
            version,
            host: hostname(),
            warmup,
            cold_latency,
            never_healthy,
            crash_after: seconds("CRASH_AFTER_SECONDS")?,
            shutdown_delay: seconds("SHUTDOWN_DELAY_SECONDS")?.unwrap_or(Duration::ZERO),
        })
    }

    /// The knobs in effect, for the `listening` line.
    fn describe(&self) -> String {
        let mut s = format!("version={} host={}", self.version, self.host);
        if !self.warmup.is_zero() && !self.cold_latency.is_zero() {
            let _ = write!(
                s,
                " warmup={:?} cold_latency={:?}",
                self.warmup, self.cold_latency
            );
        }
        if self.never_healthy {
            s.push_str(" never_healthy");
        }
        if let Some(d) = self.crash_after {
            let _ = write!(s, " crash_after={d:?}");
        }
        if !self.shutdown_delay.is_zero() {
            let _ = write!(s, " shutdown_delay={:?}", self.shutdown_delay);
        }
        s
    }
}

/// An environment variable, `None` when unset or blank.
fn var(name: &str) -> Option<String> {
    env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn seconds(name: &str) -> Result<Option<Duration>, String> {
    let Some(v) = var(name) else { return Ok(None) };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(format!(
            "{name}={v:?} is not a number of seconds (like 5 or 0.5)"
        )),
    }
}

/// The container's hostname without libc or DNS: the kernel's UTS name first.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .chain(env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

struct App {
    cfg: Config,
    started: Instant,
    /// Set when the listener is to close: no new requests on kept-alive connections either.
    stopping: AtomicBool,
    /// Open connections, and a condvar signalled when one closes.
    open: Mutex<usize>,
    closed: Condvar,
    /// Set by the accept loop once it has stopped accepting.
    accept_done: Mutex<bool>,
    accept_done_cv: Condvar,
    requests: AtomicU64,
    /// Requests read but not yet fully answered.
    in_flight: AtomicU64,
    /// Set by `/idle`, cleared by `/resume` (what a blue-green old colour is told).
    idle: AtomicBool,
}

impl App {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Warm-up latency: `cold_latency` at start, falling linearly to 0 over `warmup`.
    fn warmup_latency(&self) -> Duration {
        let (warmup, cold) = (self.cfg.warmup, self.cfg.cold_latency);
        if warmup.is_zero() || cold.is_zero() {
            return Duration::ZERO;
        }
        let elapsed = self.started.elapsed();
        if elapsed >= warmup {
            return Duration::ZERO;
        }
        cold.mul_f64(1.0 - elapsed.as_secs_f64() / warmup.as_secs_f64())
    }
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    if matches!(
        args.first().map(String::as_str),
        Some("--healthcheck" | "--get")
    ) {
        process::exit(healthcheck(args.get(1).map_or("/healthz", String::as_str)));
    }
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("testapp: invalid environment: {e}");
            process::exit(2);
        }
    };
    let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testapp: cannot listen on 0.0.0.0:{}: {e}", cfg.port);
            process::exit(1);
        }
    };
    let local = listener.local_addr().expect("listener address");
    let app = Arc::new(App {
        cfg,
        started: Instant::now(),
        stopping: AtomicBool::new(false),
        open: Mutex::new(0),
        closed: Condvar::new(),
        accept_done: Mutex::new(false),
        accept_done_cv: Condvar::new(),
        requests: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        idle: AtomicBool::new(false),
    });

    let signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testapp: cannot install signal handlers: {e}");
            process::exit(1);
        }
    };
    println!(
        "testapp: listening on {local} ({}, pid={})",
        app.cfg.describe(),
        process::id()
    );

    {
        let app = Arc::clone(&app);
        thread::spawn(move || watch_signals(signals, app, local));
    }
    if let Some(after) = app.cfg.crash_after {
        thread::spawn(move || {
            thread::sleep(after);
            eprintln!(
                "testapp: crashing on purpose: CRASH_AFTER_SECONDS={} elapsed, exit code 3",
                after.as_secs_f64()
            );
            process::exit(3);
        });
    }

    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                *app.open.lock().unwrap() += 1;
                let app = Arc::clone(&app);
                thread::spawn(move || {
                    serve(&app, stream);
                    let mut open = app.open.lock().unwrap();
                    *open -= 1;
                    app.closed.notify_all();
                });
            }
            Err(e) if !app.stopping() => {
                eprintln!("testapp: accept failed: {e}");
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => {}
        }
        if app.stopping() {
            break;
        }
    }
    drop(listener);
    *app.accept_done.lock().unwrap() = true;
    app.accept_done_cv.notify_all();
    // The signal thread finishes the shutdown and exits the process.
    loop {
        thread::park();
    }
}

/// `--healthcheck`: one GET of `path` on this container's own port; 0 for a 2xx answer.
/// `path` may also be a URL, `http://HOST:PORT/PATH`: HOST is resolved by the container's
/// DNS (a network alias), so that tests can see one container reach another by name.
fn healthcheck(path: &str) -> i32 {
    let port = var("PORT")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8080);
    let (host, path) = match path.strip_prefix("http://") {
        Some(rest) => {
            let (authority, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = if authority.contains(':') {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            };
            (authority, if p.is_empty() { "/" } else { p })
        }
        None => (format!("127.0.0.1:{port}"), path),
    };
    let answer = (|| -> io::Result<String> {
        use std::net::ToSocketAddrs;
        let addr = host.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"))
        })?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned())
    })();
    match answer {
        Ok(line) if line.split(' ').nth(1).is_some_and(|c| c.starts_with('2')) => 0,
        Ok(line) => {
            eprintln!("testapp: health check of {path} failed: {line}");
            1
        }
        Err(e) => {
            eprintln!("testapp: health check of {path} failed: {e}");
            1
        }
    }
}

/// Waits for SIGTERM / SIGINT, then: optional delay, stop accepting, drain, exit 0.
fn watch_signals(mut signals: Signals, app: Arc<App>, local: SocketAddr) {
    let Some(sig) = signals.forever().next() else {
        return;
    };
    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
    {
        // Report (and otherwise ignore) repeated signals while shutting down.
        thread::spawn(move || {
            for sig in signals.forever() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                println!("testapp: {name} received again; already shutting down");
            }
        });
    }
    let delay = app.cfg.shutdown_delay;
    if delay.is_zero() {
        println!("testapp: {name} received; closing the listener, finishing in-flight requests");
    } else {
        println!(
            "testapp: {name} received; still serving for {delay:?} (SHUTDOWN_DELAY_SECONDS) \
             before closing the listener"
        );
        thread::sleep(delay);
        println!(
            "testapp: shutdown delay over; closing the listener, finishing in-flight requests"
        );
    }
    app.stopping.store(true, Ordering::SeqCst);

    // Wake the accept loop with a connection of our own, then wait until it has stopped.
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, local.port()), Duration::from_secs(1));
    {
        let done = app.accept_done.lock().unwrap();
        let (done, _) = app
            .accept_done_cv
            .wait_timeout_while(done, Duration::from_secs(2), |d| !*d)
            .unwrap();
        if !*done {
            eprintln!("testapp: the accept loop did not stop; exiting without it");
        }
    }
    println!(
        "testapp: listener closed; finishing {} in-flight request(s)",
        app.in_flight.load(Ordering::SeqCst)
    );
    let mut open = app.open.lock().unwrap();
    while *open > 0 {
        open = app.closed.wait(open).unwrap();
    }
    println!(
        "testapp: exit 0 ({} requests served in {:.1}s)",
        app.requests.load(Ordering::SeqCst),
        app.started.elapsed().as_secs_f64()
    );
    let _ = io::stdout().flush();
    process::exit(0);
}

/// Why a connection ends.
enum End {
    /// Peer closed, idle timeout, shutdown, or an I/O error: just close.
    Close,
    /// Malformed request: answer with this status, then close.
    Reject(u16),
}

struct Request {
    method: String,
    target: String,
    keep_alive: bool,
    body: Body,
    expect_continue: bool,
    http11: bool,
}

enum Body {
    None,
    Length(u64),
    Chunked,
}

struct Conn<'a> {
    app: &'a App,
    stream: TcpStream,
    buf: Vec<u8>,
}

fn serve(app: &App, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut conn = Conn {
        app,
        stream,
        buf: Vec::with_capacity(4096),
    };
    loop {
        match conn.one_request() {
            Ok(true) => continue,
            Ok(false) | Err(End::Close) => break,
            Err(End::Reject(status)) => {
                let _ = conn.respond(
                    status,
                    "text/plain",
                    reason(status).as_bytes(),
                    false,
                    false,
                );
                break;
            }
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Write);
}

impl Conn<'_> {
    /// Serves one request; `Ok(true)` when the connection stays open for another.
    fn one_request(&mut self) -> Result<bool, End> {
        let req = self.read_head()?;
        self.app.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = self.answer(req);
        self.app.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn answer(&mut self, req: Request) -> Result<bool, End> {
        if req.expect_continue && req.http11 && !matches!(req.body, Body::None) {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        match req.body {
            Body::None => {}
            Body::Length(n) => self.skip(n)?,
            Body::Chunked => self.skip_chunked()?,
        }
        self.app.requests.fetch_add(1, Ordering::Relaxed);

        let (path, query) = split_target(&req.target);
        let mut delay = self.app.warmup_latency();
        if let Some(ms) = query_param(query, "delay_ms").and_then(|v| v.parse::<u64>().ok()) {
            delay += Duration::from_millis(ms.min(MAX_DELAY_MS));
        }
        if !delay.is_zero() {
            thread::sleep(delay);
        }

        let head_only = req.method == "HEAD";
        let keep_alive = req.keep_alive && !self.app.stopping();
        let cfg = &self.app.cfg;
        match (req.method.as_str(), path) {
            ("GET" | "HEAD" | "POST", "/healthz") if cfg.never_healthy => {
                self.respond(503, "text/plain", b"unhealthy", head_only, keep_alive)?
            }
            ("GET" | "HEAD" | "POST", "/healthz") => {
                self.respond(200, "text/plain", b"ok", head_only, keep_alive)?
            }
            ("GET" | "HEAD" | "POST", "/idle" | "/resume" | "/mode") => {
                if path != "/mode" {
                    self.app.idle.store(path == "/idle", Ordering::SeqCst);
                }
                let mode: &[u8] = match self.app.idle.load(Ordering::SeqCst) {
                    true => b"idle",
                    false => b"active",
                };
                self.respond(200, "text/plain", mode, head_only, keep_alive)?
            }
            ("GET" | "HEAD" | "POST", "/version") => self.respond(
                200,
                "text/plain",
                cfg.version.as_bytes(),
                head_only,
                keep_alive,
            )?,
            ("GET" | "HEAD" | "POST", _) => {
                let body = format!(
                    "{{\"version\":{},\"host\":{}}}",
                    json_string(&cfg.version),
                    json_string(&cfg.host)
                );
                self.respond(
                    200,
                    "application/json",
                    body.as_bytes(),
                    head_only,
                    keep_alive,
                )?
            }
            _ => self.respond(405, "text/plain", b"method not allowed", false, keep_alive)?,
        }
        Ok(keep_alive)
    }

    /// Reads more bytes into `buf`. `Ok(false)` on end of stream. Gives up (closes) after
    /// `stall` without progress, or at once when `idle_close` says so (checked between polls).
    fn fill(&mut self, stall: Duration, idle_close: bool) -> Result<bool, End> {
        let start = Instant::now();
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if (idle_close && self.app.stopping()) || start.elapsed() >= stall {
                        return Err(End::Close);
                    }
                }
                Err(_) => return Err(End::Close),
            }
        }
    }

    fn read_head(&mut self) -> Result<Request, End> {
        loop {
            // Empty lines before a request line are allowed (RFC 9112 section 2.2).
            let blank = self
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            self.buf.drain(..blank);
            if let Some(end) = head_end(&self.buf) {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                return parse_head(&head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(End::Reject(431));
            }
            // Between requests: wait up to the keep-alive idle time, and close at once on
            // shutdown. Within a head: finish it even during shutdown.
            let idle = self.buf.is_empty();
            let stall = if idle { KEEPALIVE_IDLE } else { STALL };
            if !self.fill(stall, idle)? {
                return Err(End::Close);
            }
        }
    }

    /// Consumes `n` body bytes.
    fn skip(&mut self, mut n: u64) -> Result<(), End> {
        loop {
            let have = (self.buf.len() as u64).min(n);
            self.buf.drain(..have as usize);
            n -= have;
            if n == 0 {
                return Ok(());
            }
            if !self.fill(STALL, false)? {
                return Err(End::Close);
            }
        }
    }

    /// One CRLF-terminated line (without the terminator), for chunked bodies.
    fn line(&mut self) -> Result<String, End> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..i])
                    .trim_end_matches('\r')
                    .to_owned();
                self.buf.drain(..=i);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(End::Reject(400));
            }
            if !self.fill(STALL, false)? {
                return Err(End::Close);
            }
        }
    }

    fn skip_chunked(&mut self) -> Result<(), End> {
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| End::Reject(400))?;
            if size == 0 {
                // Trailer fields, up to the empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.skip(size)?;
            if !self.line()?.is_empty() {
                return Err(End::Reject(400));
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.stream.write_all(bytes).map_err(|_| End::Close)
    }

    fn respond(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
        head_only: bool,
        keep_alive: bool,
    ) -> Result<(), End> {
        let cfg = &self.app.cfg;
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: {}\r\nCache-Control: no-store\r\nX-Testapp-Version: {}\r\n\
             X-Testapp-Host: {}\r\n",
            reason(status),
            body.len(),
            if keep_alive { "keep-alive" } else { "close" },
            header_safe(&cfg.version),
            header_safe(&cfg.host),
        );
        if status == 405 {
            out.push_str("Allow: GET, HEAD, POST\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !head_only {
            out.extend_from_slice(body);
        }
        self.write(&out)
    }
}

/// Index just past the blank line ending a request head (CRLF or bare LF line ends).
fn head_end(buf: &[u8]) -> Option<usize> {
    for i in 0..buf.len() {
        if buf[i] != b'\n' {
            continue;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => return Some(i + 2),
            Some([b'\r', b'\n', ..]) => return Some(i + 3),
            _ => {}
        }
    }
    None
}

fn parse_head(head: &str) -> Result<Request, End> {
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().ok_or(End::Reject(400))?;
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(End::Reject(400));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(End::Reject(505)),
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or(End::Reject(400))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value.parse::<u64>().map_err(|_| End::Reject(400))?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(End::Reject(400));
                }
                content_length = Some(n);
            }
            "transfer-encoding" => {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
                if !chunked {
                    return Err(End::Reject(501));
                }
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    let body = if chunked {
        Body::Chunked
    } else {
        match content_length {
            Some(n) if n > 0 => Body::Length(n),
            _ => Body::None,
        }
    };
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        keep_alive: !close && (http11 || keep_alive_token),
        body,
        expect_continue,
        http11,
    })
}

/// Path and query of an origin-form or absolute-form request target.
fn split_target(target: &str) -> (&str, &str) {
    let rest = match target.split_once("://") {
        Some((_, after)) => after.find('/').map_or("/", |i| &after[i..]),
        None => target,
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    rest.split_once('?').unwrap_or((rest, ""))
}

fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value safe to put in a header line (control characters dropped).
fn header_safe(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}
