//! A second, real Docker engine on this machine, for multi-host tests: its own `dockerd`
//! (own data root, exec root, containerd, pid file and bridge), reachable on a unix socket
//! (for the test's own `docker -H` checks) and on `tcp://127.0.0.1:PORT` with TLS and client
//! certificates (`--tlsverify`), which is what gantry is given, so that TLS is proven for real.
//!
//! ```ignore
//! mod support;
//! use support::second_engine;
//!
//! #[test]
//! fn my_test() {
//!     let Some(b) = second_engine::require_second_engine("my_test") else {
//!         return; // skipped locally; panics instead when CI=true
//!     };
//!     let guard = DockerTestGuard::new();
//!     let image = docker::build_testapp_image_once(&docker::run_tag("v1"));
//!     b.load_images(&[&image]);          // docker save | docker -H <b> load
//!     let toml = b.host_toml("b");        // [[host]] with the TLS endpoint and certificates
//!     b.docker_ok(&["ps", "-q"]);          // the engine, through its unix socket
//! }
//! ```
//!
//! One engine per test process, shared by the tests that run at the same time: the first
//! [`require_second_engine`] starts it (the others wait for it), and the drop of the last
//! [`Arc`] handed out stops it, deletes its bridge and removes its directory (so tests that
//! run one after the other each start their own, a few seconds each). Engines of killed test
//! processes are reaped when the next process starts one: see [`reap_stale`].
//!
//! How it runs beside the main engine without fighting it:
//! - `--config-file <dir>/daemon.json` holding `{}`: `/etc/docker/daemon.json` belongs to the
//!   main engine (it may set `data-root`, which would clash with the flag).
//! - `--data-root`, `--exec-root`, `--pidfile` and `-H unix://` all inside the engine's own
//!   directory; `dockerd` then starts its own containerd there too.
//! - `--storage-driver vfs`: works on any filesystem and leaves no overlay mounts behind if the
//!   engine is ever killed; the test image is 1.4 MB, so copying it per container costs nothing.
//! - Networking: gantry publishes ports, so containers need a bridge. The default one,
//!   `docker0`, belongs to the main engine (`--bip` would reconfigure it), so the test creates
//!   its own (`ip link add gtb<pid>x<n> type bridge`, address `10.123.X.1/24` with X unused on
//!   this machine) and passes `--bridge`. `--iptables=false` (and `--ip-forward=false`): the
//!   two engines would otherwise rewrite the same `DOCKER` chains and sysctls. Without
//!   iptables rules, a published port is served by the userland proxy (`docker-proxy`, on by
//!   default, stated explicitly) listening on `127.0.0.1:PORT` and forwarding over the bridge,
//!   which the host reaches directly. Containers of this engine have no outbound NAT, which
//!   the tests do not need. Both engines hand out ephemeral host ports from the same kernel
//!   range; when one picks a port the other's proxy holds, the bind fails and Docker retries
//!   with the next port (up to 10 times), so they coexist.
//! - TLS: a throw-away CA, a server certificate for `127.0.0.1`/`localhost` and a client
//!   certificate, EC P-256, made with the `openssl` CLI (no crate needed for a test helper).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::docker::{self, STALE_AFTER, docker_available, free_port, run_id, run_with_timeout};

/// Directories of second engines are `<temp>/gantry-e2-<pid>-<n>`.
const DIR_PREFIX: &str = "gantry-e2-";
/// How long the engine may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `SIGTERM`ed engine may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The client side of the engine's TLS, for gantry's `[host] tls` and `docker --tlsverify`.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running second `dockerd`. Stopped, with its bridge and directory removed, on drop.
pub struct SecondEngine {
    /// Everything of this engine lives here.
    pub dir: PathBuf,
    /// `unix://<dir>/docker.sock`.
    pub socket: String,
    /// `tcp://127.0.0.1:<port>`, TLS with client certificates required.
    pub tls_endpoint: String,
    pub client_tls: ClientTls,
    /// The bridge created for it.
    pub bridge: String,
    /// `10.123.X.1/24`, the bridge's address.
    pub bridge_cidr: String,
    child: Mutex<Child>,
}

/// The engine currently shared by this process's tests (dead once the last user dropped it).
static CURRENT: Mutex<Weak<SecondEngine>> = Mutex::new(Weak::new());

/// Why a second engine cannot run here, or `None` when it can: Docker answers, we are root
/// (`dockerd` needs it), and `dockerd`, `openssl` and `ip` are installed.
pub fn unavailable_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            if !docker_available() {
                return Some("docker not available".into());
            }
            if !is_root() {
                return Some("a second dockerd needs root".into());
            }
            for (tool, arg) in [
                ("dockerd", "--version"),
                ("openssl", "version"),
                ("ip", "-V"),
            ] {
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

/// The second engine, started if this process has none running. When one cannot run here,
/// prints `SKIPPED: <test>: <why>` and returns `None`, except under `CI=true`, where it
/// panics: CI must fail, not skip. When it could run but does not start, panics with what
/// failed (the command, its output, the tail of the engine's log).
pub fn require_second_engine(test: &str) -> Option<Arc<SecondEngine>> {
    if let Some(why) = unavailable_reason() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why}, and CI=true: the multi-host tests must run in CI");
        }
        let _ = writeln!(std::io::stdout(), "SKIPPED: {test}: {why}");
        return None;
    }
    // Held while starting: parallel tests wait for the one engine instead of starting theirs.
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(engine) = current.upgrade() {
        return Some(engine);
    }
    static REAPED: OnceLock<()> = OnceLock::new();
    REAPED.get_or_init(reap_stale);
    let engine = Arc::new(SecondEngine::start());
    *current = Arc::downgrade(&engine);
    Some(engine)
}

impl SecondEngine {
    fn start() -> SecondEngine {
        static NEXT: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut n = NEXT.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n
        };
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tls")).expect("create the second engine's directory");
        // Written first: the reaper of a later process needs them if this one is killed.
        std::fs::write(dir.join("owner"), run_id()).unwrap();
        let bridge = format!("gtb{pid}x{n}");
        std::fs::write(dir.join("bridge"), &bridge).unwrap();

        let client_tls = make_certificates(&dir.join("tls"));
        let bridge_cidr = create_bridge(&bridge, pid + n);
        std::fs::write(dir.join("daemon.json"), "{}\n").unwrap();
        let port = free_port();
        let socket = format!("unix://{}", dir.join("docker.sock").display());
        let tls_endpoint = format!("tcp://127.0.0.1:{port}");
        let d = |p: &str| dir.join(p).display().to_string();
        let args: Vec<String> = vec![
            format!("--config-file={}", d("daemon.json")),
            format!("--data-root={}", d("data")),
            format!("--exec-root={}", d("exec")),
            format!("--pidfile={}", d("docker.pid")),
            format!("--host={socket}"),
            format!("--host={tls_endpoint}"),
            "--tlsverify".into(),
            format!("--tlscacert={}", d("tls/ca.pem")),
            format!("--tlscert={}", d("tls/server-cert.pem")),
            format!("--tlskey={}", d("tls/server-key.pem")),
            format!("--bridge={bridge}"),
            "--iptables=false".into(),
            "--ip-forward=false".into(),
            "--userland-proxy=true".into(),
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
        let engine = SecondEngine {
            dir,
            socket,
            tls_endpoint,
            client_tls,
            bridge,
            bridge_cidr,
            child: Mutex::new(child),
        };
        let started = Instant::now();
        engine.wait_until_up(&args);
        eprintln!(
            "second engine up in {:.1}s: {} and {} (TLS), bridge {} {}",
            started.elapsed().as_secs_f64(),
            engine.socket,
            engine.tls_endpoint,
            engine.bridge,
            engine.bridge_cidr
        );
        engine
    }

    /// Waits for the unix socket, then checks the TLS endpoint with the client certificate.
    /// Panics with the engine's log if it exits or does not answer in time (the drop of
    /// `self` then cleans up).
    fn wait_until_up(&self, args: &[String]) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!(
                    "the second dockerd exited ({status}) right after `dockerd {}`:\n{}",
                    args.join(" "),
                    self.log_tail(40)
                );
            }
            let o = self.docker(&["version", "--format", "{{.Server.Version}}"]);
            if o.status.success() {
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the second dockerd did not answer on {} within {START_TIMEOUT:?} (`dockerd {}`); last `docker version`: {}\n{}",
                    self.socket,
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim(),
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        let o = self.docker_tls(&["version", "--format", "{{.Server.Version}}"]);
        assert!(
            o.status.success(),
            "the second dockerd answers on its socket but not with TLS on {}: {}\n{}",
            self.tls_endpoint,
            String::from_utf8_lossy(&o.stderr).trim(),
            self.log_tail(20)
        );
    }

    /// `docker -H <unix socket> ARGS`, whatever its status.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(["-H", &self.socket]).args(args);
        run_with_timeout(cmd, docker::DOCKER_TIMEOUT)
            .unwrap_or_else(|e| panic!("docker -H {} {}: {e}", self.socket, args.join(" ")))
    }

    /// `docker --tlsverify ... -H tcp://127.0.0.1:PORT ARGS`: the way gantry reaches it.
    pub fn docker_tls(&self, args: &[&str]) -> Output {
        let t = &self.client_tls;
        let mut cmd = Command::new("docker");
        cmd.arg("--tlsverify")
            .arg(format!("--tlscacert={}", t.ca.display()))
            .arg(format!("--tlscert={}", t.cert.display()))
            .arg(format!("--tlskey={}", t.key.display()))
            .args(["-H", &self.tls_endpoint])
            .args(args);
        run_with_timeout(cmd, docker::DOCKER_TIMEOUT)
            .unwrap_or_else(|e| panic!("docker -H {} {}: {e}", self.tls_endpoint, args.join(" ")))
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

    /// A `[[host]]` table for gantry: this engine over TLS, its replicas on 127.0.0.1.
    pub fn host_toml(&self, name: &str) -> String {
        let t = &self.client_tls;
        format!(
            "[[host]]\nname = \"{name}\"\ndocker = \"{}\"\naddress = \"127.0.0.1\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            self.tls_endpoint,
            t.ca.display(),
            t.cert.display(),
            t.key.display()
        )
    }

    /// The last `lines` lines of the engine's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
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
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        terminate(child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("test cleanup: the second dockerd did not stop on SIGTERM; killing it");
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_engine_dir(&self.dir, &self.bridge);
        eprintln!(
            "second engine stopped and removed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Reaps the second engines of test processes that are gone (or older than [`STALE_AFTER`]),
/// judged by the run id in their `owner` file: stops what still runs from their directory,
/// unmounts, deletes their bridge and directory.
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
            "test cleanup: reaping the second engine left in {}",
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
        let bridge = std::fs::read_to_string(dir.join("bridge")).unwrap_or_default();
        remove_engine_dir(&dir, bridge.trim());
    }
}

/// Unmounts what is mounted under `dir`, deletes `bridge` and removes `dir`; best effort,
/// problems on stderr (this runs in `Drop`).
fn remove_engine_dir(dir: &Path, bridge: &str) {
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
    if !bridge.is_empty() {
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

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        .unwrap_or(false)
}

/// Creates `bridge` with the first `10.123.X.1/24` (from `seed`) that no interface of this
/// machine uses yet, and brings it up; returns the address.
fn create_bridge(bridge: &str, seed: u32) -> String {
    let ip = |args: &[&str]| {
        let o = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            o.status.success(),
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let used = ip(&["-o", "-4", "addr", "show"]) + &ip(&["-4", "route", "show"]);
    let x = (0..250)
        .map(|i| (seed + i) % 250 + 1)
        .find(|x| !used.contains(&format!("10.123.{x}.")))
        .expect("a free 10.123.X.0/24 for the second engine's bridge");
    let cidr = format!("10.123.{x}.1/24");
    let _ = Command::new("ip").args(["link", "del", bridge]).output();
    ip(&["link", "add", "name", bridge, "type", "bridge"]);
    ip(&["addr", "add", &cidr, "dev", bridge]);
    ip(&["link", "set", bridge, "up"]);
    cidr
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (EC P-256, two days),
/// with the `openssl` CLI, in `dir`.
fn make_certificates(dir: &Path) -> ClientTls {
    // Our own config: extensions do not depend on the system's openssl.cnf or its version.
    std::fs::write(
        dir.join("openssl.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = gantry-test\n\
         [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [server]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n\
         [client]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            o.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let cnf = ["-config", "openssl.cnf"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=gantry-test-ca"];
    ca.extend(ec);
    ca.extend(cnf);
    ca.extend([
        "-extensions",
        "ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    openssl(&ca);
    for (who, cn, key) in [
        ("server", "127.0.0.1", "server-key.pem"),
        ("client", "gantry-test-client", "key.pem"),
    ] {
        let subj = format!("/CN={cn}");
        let csr = format!("{who}.csr");
        let mut req = vec!["req", "-new", "-subj", &subj];
        req.extend(ec);
        req.extend(cnf);
        req.extend(["-keyout", key, "-out", &csr]);
        openssl(&req);
        let out = if who == "server" {
            "server-cert.pem"
        } else {
            "cert.pem"
        };
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            who,
            "-out",
            out,
        ]);
    }
    ClientTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}
