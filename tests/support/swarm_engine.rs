//! A real single-node Docker Swarm for the Swarm tests: its own `dockerd`, made a manager with
//! `docker swarm init`, beside the main engine (which other tests use, and which is never put
//! in swarm mode).
//!
//! ```ignore
//! mod support;
//! use support::swarm_engine;
//!
//! #[test]
//! fn my_test() {
//!     let Some(swarm) = swarm_engine::require_swarm_engine("my_test") else {
//!         return; // skipped locally; panics instead when CI=true
//!     };
//!     swarm.load_images(&[&image]);          // docker save | docker -H <swarm> load
//!     swarm.docker_ok(&["service", "ls"]);    // the manager, through its unix socket
//! }
//! ```
//!
//! One engine per test process, shared by the tests that run at the same time (the first
//! caller starts it, the drop of the last `Arc` stops it and removes everything). How it
//! stays out of the main engine's way, as `second_engine` does, plus what Swarm adds:
//! - its own `--config-file` (`{}`), `--data-root`, `--exec-root`, `--pidfile`, unix socket,
//!   containerd, and `--storage-driver vfs` (no overlay mounts left behind if it is killed);
//! - its own bridge `gsw<pid>x<n>` on a free `10.124.X.1/24` passed as `--bridge` (`--bip`
//!   would re-address the main engine's `docker0`), `--iptables=false`, `--ip-forward=false`;
//! - Swarm's `docker_gwbridge` network is created before `swarm init` with a bridge of its
//!   own name (`gsg<pid>x<n>`) on another free `10.124.Y.0/24` (the default name and subnet
//!   would be chosen from what the main engine uses);
//! - `swarm init` listens on `127.0.0.1:<free port>` (not 2377) with a free data-path
//!   (VXLAN) port, so that two test processes, or another swarm, do not collide.
//!
//! Without iptables, Swarm's routing mesh does not answer on published ports: the tests
//! observe Swarm through the engine (`docker service ps`, `service inspect`), not by HTTP.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::docker::{self, STALE_AFTER, docker_available, free_port, run_id, run_with_timeout};

/// Directories of swarm engines are `<temp>/gantry-sw-<pid>-<n>`.
const DIR_PREFIX: &str = "gantry-sw-";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running swarm-mode `dockerd`. Left, stopped, its bridges and directory removed on drop.
pub struct SwarmEngine {
    pub dir: PathBuf,
    /// `unix://<dir>/docker.sock`: what gantry's `[[host]] docker` is given.
    pub socket: String,
    pub bridge: String,
    pub gw_bridge: String,
    child: Mutex<Child>,
}

static CURRENT: Mutex<Weak<SwarmEngine>> = Mutex::new(Weak::new());

/// Why a swarm engine cannot run here, or `None`.
pub fn unavailable_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            if !docker_available() {
                return Some("docker not available".into());
            }
            if !is_root() {
                return Some("a second dockerd (for swarm mode) needs root".into());
            }
            for (tool, arg) in [("dockerd", "--version"), ("ip", "-V")] {
                let mut cmd = Command::new(tool);
                cmd.arg(arg);
                match run_with_timeout(cmd, Duration::from_secs(20)) {
                    Ok(o) if o.status.success() => {}
                    _ => return Some(format!("`{tool}` is not installed")),
                }
            }
            None
        })
        .clone()
}

/// The swarm engine, started if this process has none running. When one cannot run here,
/// prints `SKIPPED: <test>: <why>` and returns `None`, except under `CI=true`, where it
/// panics. When it could run but does not start, panics with what failed.
pub fn require_swarm_engine(test: &str) -> Option<Arc<SwarmEngine>> {
    if let Some(why) = unavailable_reason() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why}, and CI=true: the Swarm tests must run in CI");
        }
        let _ = writeln!(std::io::stdout(), "SKIPPED: {test}: {why}");
        return None;
    }
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(engine) = current.upgrade() {
        return Some(engine);
    }
    static REAPED: OnceLock<()> = OnceLock::new();
    REAPED.get_or_init(reap_stale);
    let engine = Arc::new(SwarmEngine::start());
    *current = Arc::downgrade(&engine);
    Some(engine)
}

impl SwarmEngine {
    fn start() -> SwarmEngine {
        static NEXT: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut n = NEXT.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n
        };
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the swarm engine's directory");
        std::fs::write(dir.join("owner"), run_id()).unwrap();
        let bridge = format!("gsw{pid}x{n}");
        let gw_bridge = format!("gsg{pid}x{n}");
        std::fs::write(dir.join("bridges"), format!("{bridge} {gw_bridge}")).unwrap();
        let bridge_cidr = create_bridge(&bridge, pid + n);
        std::fs::write(dir.join("daemon.json"), "{}\n").unwrap();
        let socket = format!("unix://{}", dir.join("docker.sock").display());
        let d = |p: &str| dir.join(p).display().to_string();
        let args: Vec<String> = vec![
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
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run dockerd {}: {e}", args.join(" ")));
        let engine = SwarmEngine {
            dir,
            socket,
            bridge,
            gw_bridge,
            child: Mutex::new(child),
        };
        let started = Instant::now();
        engine.wait_until_up(&args);
        // Swarm's gateway bridge, under a name and on a subnet of its own.
        let gw_subnet = free_subnet(pid + n + 1, &[&bridge_cidr]);
        engine.docker_ok(&[
            "network",
            "create",
            "--driver=bridge",
            &format!("--subnet={gw_subnet}"),
            &format!("--opt=com.docker.network.bridge.name={}", engine.gw_bridge),
            "--opt=com.docker.network.bridge.enable_icc=false",
            "--opt=com.docker.network.bridge.enable_ip_masquerade=false",
            "docker_gwbridge",
        ]);
        let port = free_port();
        let data_port = free_udp_port();
        engine.docker_ok(&[
            "swarm",
            "init",
            &format!("--advertise-addr=127.0.0.1:{port}"),
            &format!("--listen-addr=127.0.0.1:{port}"),
            "--data-path-addr=127.0.0.1",
            &format!("--data-path-port={data_port}"),
        ]);
        eprintln!(
            "swarm engine up in {:.1}s: {}, bridge {} {bridge_cidr}, gateway bridge {} {gw_subnet}, swarm on 127.0.0.1:{port}",
            started.elapsed().as_secs_f64(),
            engine.socket,
            engine.bridge,
            engine.gw_bridge,
        );
        engine
    }

    fn wait_until_up(&self, args: &[String]) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!(
                    "the swarm dockerd exited ({status}) right after `dockerd {}`:\n{}",
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
                    "the swarm dockerd did not answer on {} within {START_TIMEOUT:?}: {}\n{}",
                    self.socket,
                    String::from_utf8_lossy(&o.stderr).trim(),
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker -H <socket> ARGS`, whatever its status.
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

    /// Copies images from the main engine (`docker save | docker -H <swarm> load`); the
    /// image IDs stay the same.
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

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for SwarmEngine {
    fn drop(&mut self) {
        let started = Instant::now();
        // Services first (their tasks stop with them), then the swarm, then the engine.
        let services =
            String::from_utf8_lossy(&self.docker(&["service", "ls", "-q"]).stdout).to_string();
        let services: Vec<&str> = services.split_whitespace().collect();
        if !services.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(services);
            let _ = self.docker(&args);
        }
        let _ = self.docker(&["swarm", "leave", "--force"]);
        let ids = String::from_utf8_lossy(&self.docker(&["ps", "-aq"]).stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        terminate(child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("test cleanup: the swarm dockerd did not stop on SIGTERM; killing it");
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_engine_dir(&self.dir, &[&self.bridge, &self.gw_bridge]);
        eprintln!(
            "swarm engine stopped and removed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Reaps the swarm engines of test processes that are gone (or older than [`STALE_AFTER`]).
pub fn reap_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let owner = std::fs::read_to_string(dir.join("owner")).unwrap_or_default();
        let mut parts = owner.trim().rsplit('-');
        let nanos = parts.next().and_then(|n| n.parse::<u128>().ok());
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        let old = nanos.is_none_or(|t| now.saturating_sub(t) > STALE_AFTER.as_nanos());
        if alive && !old || owner.trim() == run_id() {
            continue;
        }
        eprintln!(
            "test cleanup: reaping the swarm engine left in {}",
            dir.display()
        );
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
        let bridges = std::fs::read_to_string(dir.join("bridges")).unwrap_or_default();
        let bridges: Vec<&str> = bridges.split_whitespace().collect();
        remove_engine_dir(&dir, &bridges);
    }
}

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

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

/// A UDP port free a moment ago, in the range Swarm accepts for its data path (1024-49151).
fn free_udp_port() -> u16 {
    let seed = std::process::id() % 20000;
    (0..20000)
        .map(|i| 20000 + ((seed + i) % 20000) as u16)
        .find(|p| std::net::UdpSocket::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free UDP port in 20000-39999")
}

/// The first `10.124.X.0/24` (from `seed`) no interface or route of this machine uses, and
/// that is not in `also_taken`.
fn free_subnet(seed: u32, also_taken: &[&str]) -> String {
    let used = ip(&["-o", "-4", "addr", "show"]) + &ip(&["-4", "route", "show"]);
    let x = (0..250)
        .map(|i| (seed + i) % 250 + 1)
        .find(|x| {
            let prefix = format!("10.124.{x}.");
            !used.contains(&prefix) && !also_taken.iter().any(|t| t.starts_with(&prefix))
        })
        .expect("a free 10.124.X.0/24 for the swarm engine");
    format!("10.124.{x}.0/24")
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

/// Creates `bridge` on a free `10.124.X.1/24` and brings it up; returns the address.
fn create_bridge(bridge: &str, seed: u32) -> String {
    let subnet = free_subnet(seed, &[]);
    let cidr = subnet.replace(".0/24", ".1/24");
    let _ = Command::new("ip").args(["link", "del", bridge]).output();
    ip(&["link", "add", "name", bridge, "type", "bridge"]);
    ip(&["addr", "add", &cidr, "dev", bridge]);
    ip(&["link", "set", bridge, "up"]);
    cidr
}
