//! An extra, real Docker engine on this machine beside the main one: its own `dockerd` (own
//! data root, exec root, containerd, pid file and bridge), reachable on a unix socket. What
//! `second_engine` (multi-host tests, plus a TLS listener) and `swarm_engine` (Docker Swarm
//! tests, plus `swarm init`) share; a [`Kind`] says what differs between them.
//!
//! One engine of a kind per test process, shared by the tests that run at the same time: the
//! first caller of [`shared`] starts it (the others wait for it), and the drop of the last
//! [`Arc`] handed out stops it, deletes its bridges and removes its directory (so tests that
//! run one after the other each start their own, a few seconds each). Engines of killed test
//! processes are reaped when the next process starts one of the same kind: see [`reap_stale`].
//! A test that disturbs its engine (restarts it: [`ExtraEngine::restart`]) takes one of its
//! own instead, with [`private`] (see `private_engine`).
//!
//! How it runs beside the main engine without fighting it:
//! - `--config-file <dir>/daemon.json` holding `{}`: `/etc/docker/daemon.json` belongs to the
//!   main engine (it may set `data-root`, which would clash with the flag).
//! - `--data-root`, `--exec-root`, `--pidfile` and `-H unix://` all inside the engine's own
//!   directory `<temp>/<dir_prefix><pid>-<n>`; `dockerd` then starts its own containerd
//!   there too.
//! - `--storage-driver vfs`: works on any filesystem and leaves no overlay mounts behind if the
//!   engine is ever killed; the test image is 1.4 MB, so copying it per container costs nothing.
//! - Networking: gantry publishes ports, so containers need a bridge. The default one,
//!   `docker0`, belongs to the main engine (`--bip` would reconfigure it), so the engine gets
//!   its own (`ip link add <bridge_prefix><pid>x<n> type bridge`, address
//!   `<subnet_prefix>.X.1/24` with X unused on this machine) passed as `--bridge`.
//!   `--iptables=false` (and `--ip-forward=false`): the two engines would otherwise rewrite
//!   the same `DOCKER` chains and sysctls. Containers of this engine have no outbound NAT,
//!   which the tests do not need.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::docker::{self, STALE_AFTER, docker_available, run_id, run_with_timeout};

/// How long the engine may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `SIGTERM`ed engine may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What differs between the kinds of extra engines.
pub struct Kind {
    /// In messages: "the `<what>` dockerd", "`<what>` engine up".
    pub what: &'static str,
    /// Directories of these engines are `<temp>/<dir_prefix><pid>-<n>`.
    pub dir_prefix: &'static str,
    /// The engine's `--bridge` is `<bridge_prefix><pid>x<n>`.
    pub bridge_prefix: &'static str,
    /// Names reserved for bridges of networks made on the engine later (`<prefix><pid>x<n>`
    /// each): deleted with the engine, like its own bridge.
    pub more_bridges: &'static [&'static str],
    /// Bridges are on free `<subnet_prefix>.X.0/24` subnets, e.g. `10.123`.
    pub subnet_prefix: &'static str,
    /// The tools it needs besides `dockerd` and `ip`, with the argument that checks them.
    pub tools: &'static [(&'static str, &'static str)],
    /// Why it cannot run unless we are root.
    pub needs_root: &'static str,
    /// Which tests must not be skipped under `CI=true`, e.g. "the multi-host tests".
    pub tests: &'static str,
}

/// A running extra `dockerd`. Stopped, with its networks, bridges and directory removed, on
/// drop.
pub struct ExtraEngine {
    pub kind: &'static Kind,
    /// Everything of this engine lives here.
    pub dir: PathBuf,
    /// `unix://<dir>/docker.sock`.
    pub socket: String,
    /// The bridge created for it.
    pub bridge: String,
    /// `<subnet_prefix>.X.1/24`, the bridge's address.
    pub bridge_cidr: String,
    /// The names reserved after [`Kind::more_bridges`], in that order.
    pub more_bridges: Vec<String>,
    /// Where the search for free subnets starts.
    seed: u32,
    /// `dockerd`'s arguments, for [`Self::restart`].
    args: Vec<String>,
    child: Mutex<Child>,
}

/// Why an engine of `kind` cannot run here, or `None` when it can: Docker answers, we are
/// root (`dockerd` needs it), and `dockerd`, `ip` and the kind's tools are installed.
/// Checked once per kind and process.
pub fn unavailable_reason(kind: &Kind) -> Option<String> {
    static REASONS: Mutex<Vec<(&str, Option<String>)>> = Mutex::new(Vec::new());
    let mut reasons = REASONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, reason)) = reasons.iter().find(|(k, _)| *k == kind.dir_prefix) {
        return reason.clone();
    }
    let reason = check_available(kind);
    reasons.push((kind.dir_prefix, reason.clone()));
    reason
}

fn check_available(kind: &Kind) -> Option<String> {
    if !docker_available() {
        return Some("docker not available".into());
    }
    if !is_root() {
        return Some(kind.needs_root.into());
    }
    let base = [("dockerd", "--version")];
    let last = [("ip", "-V")];
    for (tool, arg) in base.iter().chain(kind.tools).chain(&last) {
        let mut cmd = Command::new(tool);
        cmd.arg(arg);
        match run_with_timeout(cmd, Duration::from_secs(20)) {
            Ok(o) if o.status.success() => {}
            _ => return Some(format!("`{tool}` is not installed")),
        }
    }
    None
}

/// The engine of `kind` this process's tests share (`current`), started with `start` if none
/// runs. When one cannot run here, prints `SKIPPED: <test>: <why>` and returns `None`, except
/// under `CI=true`, where it panics: CI must fail, not skip. When it could run but does not
/// start, `start` panics with what failed.
pub fn shared<T>(
    kind: &Kind,
    test: &str,
    current: &Mutex<Weak<T>>,
    start: impl FnOnce() -> T,
) -> Option<Arc<T>> {
    if !can_run(kind, test) {
        return None;
    }
    // Held while starting: parallel tests wait for the one engine instead of starting theirs.
    let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(engine) = current.upgrade() {
        return Some(engine);
    }
    reap_stale_once(kind);
    let engine = Arc::new(start());
    *current = Arc::downgrade(&engine);
    Some(engine)
}

/// An engine of `kind` for the calling test alone, started with `start` (for a test that
/// disturbs its engine, e.g. restarts it: a shared one would disturb the tests sharing it).
/// Skipped, or panicking under `CI=true`, like [`shared`].
pub fn private<T>(kind: &Kind, test: &str, start: impl FnOnce() -> T) -> Option<T> {
    if !can_run(kind, test) {
        return None;
    }
    reap_stale_once(kind);
    Some(start())
}

/// Whether an engine of `kind` can run here; if not, prints `SKIPPED: <test>: <why>`, or
/// panics under `CI=true`: CI must fail, not skip.
fn can_run(kind: &Kind, test: &str) -> bool {
    let Some(why) = unavailable_reason(kind) else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true: {} must run in CI", kind.tests);
    }
    let _ = writeln!(std::io::stdout(), "SKIPPED: {test}: {why}");
    false
}

/// [`reap_stale`] for `kind`, the first time this process starts an engine of that kind.
fn reap_stale_once(kind: &Kind) {
    static REAPED: Mutex<Vec<&str>> = Mutex::new(Vec::new());
    let mut reaped = REAPED.lock().unwrap_or_else(|e| e.into_inner());
    if !reaped.contains(&kind.dir_prefix) {
        reaped.push(kind.dir_prefix);
        reap_stale(kind);
    }
}

impl ExtraEngine {
    /// Creates the directory and bridges and starts `dockerd` with the common flags and
    /// those `prepare` returns (it is given the directory, to put its files in, and returns
    /// what the caller keeps of them as well). Waits until the engine answers on its socket.
    pub fn start<X>(
        kind: &'static Kind,
        prepare: impl FnOnce(&Path) -> (Vec<String>, X),
    ) -> (ExtraEngine, X) {
        static NEXT: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut n = NEXT.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n
        };
        let what = kind.what;
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("{}{pid}-{n}", kind.dir_prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create the {what} engine's directory: {e}"));
        // Written first: the reaper of a later process needs them if this one is killed.
        std::fs::write(dir.join("owner"), run_id()).unwrap();
        let bridge = format!("{}{pid}x{n}", kind.bridge_prefix);
        let more_bridges: Vec<String> = kind
            .more_bridges
            .iter()
            .map(|prefix| format!("{prefix}{pid}x{n}"))
            .collect();
        let all = std::iter::once(&bridge).chain(&more_bridges);
        std::fs::write(
            dir.join("bridges"),
            all.map(String::as_str).collect::<Vec<_>>().join(" "),
        )
        .unwrap();

        let (more_args, prepared) = prepare(&dir);
        let seed = pid + n;
        let bridge_cidr = create_bridge(&bridge, kind.subnet_prefix, seed);
        std::fs::write(dir.join("daemon.json"), "{}\n").unwrap();
        let socket = format!("unix://{}", dir.join("docker.sock").display());
        let d = |p: &str| dir.join(p).display().to_string();
        let mut args: Vec<String> = vec![
            format!("--config-file={}", d("daemon.json")),
            format!("--data-root={}", d("data")),
            format!("--exec-root={}", d("exec")),
            format!("--pidfile={}", d("docker.pid")),
            format!("--host={socket}"),
            format!("--bridge={bridge}"),
            "--iptables=false".into(),
            "--ip-forward=false".into(),
            "--storage-driver=vfs".into(),
        ];
        args.extend(more_args);
        let child = spawn_dockerd(&dir, &args);
        let engine = ExtraEngine {
            kind,
            dir,
            socket,
            bridge,
            bridge_cidr,
            more_bridges,
            seed,
            args,
            child: Mutex::new(child),
        };
        let started = Instant::now();
        engine.wait_until_up();
        eprintln!(
            "{what} engine up in {:.1}s: {}, bridge {} {}",
            started.elapsed().as_secs_f64(),
            engine.socket,
            engine.bridge,
            engine.bridge_cidr
        );
        (engine, prepared)
    }

    /// Waits for the unix socket. Panics with the engine's log if it exits or does not answer
    /// in time (the drop of `self` then cleans up).
    fn wait_until_up(&self) {
        let what = self.kind.what;
        let args = &self.args;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait();
            if let Ok(Some(status)) = exited {
                panic!(
                    "the {what} dockerd exited ({status}) right after `dockerd {}`:\n{}",
                    args.join(" "),
                    self.log_tail(40)
                );
            }
            let o = self.docker(&["version", "--format", "{{.Server.Version}}"]);
            if o.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the {what} dockerd did not answer on {} within {START_TIMEOUT:?} (`dockerd {}`); last `docker version`: {}\n{}",
                    self.socket,
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim(),
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Restarts the engine as a reboot would: `SIGTERM` to `dockerd` (it stops its
    /// containers, their `docker-proxy` and its containerd), waits until all of that has
    /// exited, then starts `dockerd` again with the same arguments (data root, socket,
    /// bridge) and waits until it answers. Containers then come back, or not, as their
    /// restart policies say. Panics, with the engine's log, when it does not stop in time
    /// (it is then killed) or does not come back; the drop still cleans up. Returns how long
    /// the engine was down.
    pub fn restart(&self) -> Duration {
        let what = self.kind.what;
        let started = Instant::now();
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let pid = child.id();
        // Its own processes that do not name its directory: the userland proxies.
        let mut engine_processes = children_of(pid);
        let graceful = stop_dockerd(&mut child, what);
        engine_processes.extend(processes_under(&self.dir).into_iter().map(|(p, _)| p));
        let lingering: Vec<u32> = engine_processes
            .into_iter()
            .filter(|p| !wait_gone(*p, STOP_TIMEOUT))
            .collect();
        for p in &lingering {
            kill_hard(*p);
        }
        if !graceful || !lingering.is_empty() {
            drop(child);
            panic!(
                "restart of the {what} engine: dockerd {} and these processes of it {lingering:?} did not stop on SIGTERM within {STOP_TIMEOUT:?} (killed)\n{}",
                if graceful { "stopped" } else { "did not stop" },
                self.log_tail(40)
            );
        }
        let down_at = Instant::now();
        eprintln!(
            "{what} engine stopped in {:.1}s; starting it again",
            started.elapsed().as_secs_f64()
        );
        *child = spawn_dockerd(&self.dir, &self.args);
        drop(child);
        self.wait_until_up();
        eprintln!(
            "{what} engine up again in {:.1}s: {}",
            down_at.elapsed().as_secs_f64(),
            self.socket
        );
        down_at.elapsed()
    }

    /// `docker -H <unix socket> ARGS`, whatever its status.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["-H", &self.socket]).args(args);
        run_with_timeout(cmd, docker::DOCKER_TIMEOUT)
            .unwrap_or_else(|e| panic!("docker -H {} {}: {e}", self.socket, args.join(" ")))
    }

    /// [`Self::docker`], panicking unless it succeeds; its trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker -H {} {} failed ({}):\n{}{}",
            self.socket,
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Copies images from the main engine (`docker save | docker -H <this> load`), those not
    /// here yet. The image IDs stay the same, as after a pull of the same digest.
    pub fn load_images(&self, images: &[&str]) {
        for image in images {
            if self.docker(&["image", "inspect", image]).status.success() {
                continue;
            }
            let mut save = Command::new("docker")
                .args(["save", image])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run docker save");
            let load = Command::new("docker")
                .args(["-H", &self.socket, "load", "-q"])
                .stdin(save.stdout.take().expect("piped stdout"))
                .output()
                .expect("run docker load");
            let saved = save.wait_with_output().expect("wait for docker save");
            assert!(
                saved.status.success() && load.status.success(),
                "docker save {image} | docker -H {} load failed:\n{}{}",
                self.socket,
                String::from_utf8_lossy(&saved.stderr),
                String::from_utf8_lossy(&load.stderr)
            );
        }
    }

    /// A `<subnet_prefix>.Y.0/24` that no interface or route of this machine uses and that is
    /// not the bridge's, for a network made on this engine.
    pub fn free_subnet(&self) -> String {
        free_subnet(self.kind.subnet_prefix, self.seed + 1, &[&self.bridge_cidr])
    }

    /// The last `lines` lines of the engine's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ExtraEngine {
    fn drop(&mut self) {
        let what = self.kind.what;
        let started = Instant::now();
        // Everything on this engine is a test's: removing the containers first makes the
        // shutdown quick (dockerd would otherwise stop each with its grace period).
        let ids = String::from_utf8_lossy(&self.docker(&["ps", "-aq"]).stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        // The networks made on it (gantry's project networks): their bridges are kernel
        // devices, which a stopped engine leaves behind.
        let _ = self.docker(&["network", "prune", "-f"]);
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if !stop_dockerd(child, what) {
            eprintln!("test cleanup: the {what} dockerd did not stop on SIGTERM; killed it");
        }
        let bridges: Vec<&str> = std::iter::once(&self.bridge)
            .chain(&self.more_bridges)
            .map(String::as_str)
            .collect();
        remove_engine_dir(&self.dir, &bridges);
        eprintln!(
            "{what} engine stopped and removed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Starts `dockerd ARGS`, its output appended to `<dir>/dockerd.log`.
fn spawn_dockerd(dir: &Path, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .unwrap();
    Command::new("dockerd")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run dockerd {}: {e}", args.join(" ")))
}

/// `SIGTERM` to `dockerd`, waiting up to [`STOP_TIMEOUT`] for its exit, then `SIGKILL`.
/// Whether it stopped on `SIGTERM` (or had exited already).
fn stop_dockerd(child: &mut Child, what: &str) -> bool {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return true;
    }
    terminate(child.id());
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    if matches!(child.try_wait(), Ok(Some(_))) {
        return true;
    }
    eprintln!("the {what} dockerd did not stop on SIGTERM within {STOP_TIMEOUT:?}; killing it");
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after its `)`.
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Reaps the engines of `kind` of test processes that are gone (or older than
/// [`STALE_AFTER`]), judged by the run id in their `owner` file: stops what still runs from
/// their directory, unmounts, deletes their bridges and directory.
pub fn reap_stale(kind: &Kind) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with(kind.dir_prefix) {
            continue;
        }
        let dir = entry.path();
        let owner = std::fs::read_to_string(dir.join("owner")).unwrap_or_default();
        // `gantry-test-<pid>-<nanos>`
        let mut parts = owner.trim().rsplit('-');
        let nanos = parts.next().and_then(|n| n.parse::<u128>().ok());
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        let old = nanos.is_none_or(|t| now.saturating_sub(t) > STALE_AFTER.as_nanos());
        if alive && !old || owner.trim() == run_id() {
            continue;
        }
        eprintln!(
            "test cleanup: reaping the {} engine left in {}",
            kind.what,
            dir.display()
        );
        // dockerd first (it stops its containers and containerd), then whatever is left.
        let dockerd = processes_under(&dir)
            .into_iter()
            .filter(|(_, comm)| comm == "dockerd")
            .map(|(pid, _)| pid);
        for pid in dockerd {
            terminate(pid);
            wait_gone(pid, STOP_TIMEOUT);
        }
        for (pid, _) in processes_under(&dir) {
            terminate(pid);
            if !wait_gone(pid, Duration::from_secs(5)) {
                kill_hard(pid);
            }
        }
        // `bridge`: where second engines of before this module named their one bridge.
        let mut bridges = String::new();
        for file in ["bridges", "bridge"] {
            bridges += &std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            bridges.push(' ');
        }
        let bridges: Vec<&str> = bridges.split_whitespace().collect();
        remove_engine_dir(&dir, &bridges);
    }
}

/// Unmounts what is mounted under `dir`, deletes `bridges` and removes `dir`; best effort,
/// problems on stderr (this runs in `Drop`).
fn remove_engine_dir(dir: &Path, bridges: &[&str]) {
    let prefix = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount").args(["-l", m]).output();
    }
    for bridge in bridges.iter().filter(|b| !b.is_empty()) {
        let o = Command::new("ip").args(["link", "del", bridge]).output();
        if let Ok(o) = o
            && !o.status.success()
            && !String::from_utf8_lossy(&o.stderr).contains("Cannot find device")
        {
            eprintln!(
                "test cleanup: ip link del {bridge}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("test cleanup: remove {}: {e}", dir.display());
    }
}

/// Processes whose command line names something under `dir`: `(pid, comm)`.
fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid > 1 && *pid != std::process::id())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then(|| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, comm.trim().to_owned())
            })
        })
        .collect()
}

/// `SIGTERM` to one process (never a group: the pid is always positive here).
fn terminate(pid: u32) {
    assert!(pid > 1);
    let _ = Command::new("kill").arg(pid.to_string()).output();
}

/// `SIGKILL` to one process.
fn kill_hard(pid: u32) {
    assert!(pid > 1);
    let _ = Command::new("kill")
        .args(["-s", "KILL", &pid.to_string()])
        .output();
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

/// The first `<prefix>.X.0/24` (from `seed`) that no interface or route of this machine uses
/// and that is not in `also_taken`.
fn free_subnet(prefix: &str, seed: u32, also_taken: &[&str]) -> String {
    let used = ip(&["-o", "-4", "addr", "show"]) + &ip(&["-4", "route", "show"]);
    let x = (0..250)
        .map(|i| (seed + i) % 250 + 1)
        .find(|x| {
            let net = format!("{prefix}.{x}.");
            !used.contains(&net) && !also_taken.iter().any(|t| t.starts_with(&net))
        })
        .unwrap_or_else(|| panic!("no free {prefix}.X.0/24 for an extra engine's bridge"));
    format!("{prefix}.{x}.0/24")
}

fn ip(args: &[&str]) -> String {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Creates `bridge` on a free `<prefix>.X.1/24` (from `seed`) and brings it up; returns the
/// address.
fn create_bridge(bridge: &str, prefix: &str, seed: u32) -> String {
    let cidr = free_subnet(prefix, seed, &[]).replace(".0/24", ".1/24");
    let _ = Command::new("ip").args(["link", "del", bridge]).output();
    ip(&["link", "add", "name", bridge, "type", "bridge"]);
    ip(&["addr", "add", &cidr, "dev", bridge]);
    ip(&["link", "set", bridge, "up"]);
    cidr
}
