//! A real HAProxy on loopback for tests, with its runtime API on a unix socket, stopped on drop.
//!
//! It runs in the foreground (no `-D`) as a child of the test, in a process group of its
//! own, stopped by that id. Daemonized, it was stopped through the pid file in its
//! directory, which the fixtures had often deleted first: the daemons outlived the tests.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct HaproxyUnderTest {
    pub dir: PathBuf,
    pub port: u16,
    pub socket: PathBuf,
    /// `tcp://127.0.0.1:PORT`: the same runtime API on a TCP stats socket.
    pub socket_tcp: String,
    process: Child,
}

pub fn require_haproxy(test: &str) -> bool {
    if Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: haproxy not installed, and CI=true: HAProxy tests must run in CI");
    }
    println!("SKIPPED: {test}: haproxy not installed");
    false
}

impl HaproxyUnderTest {
    /// Starts HAProxy on a free loopback port with an empty backend `backend`.
    pub fn start(dir: &Path, backend: &str) -> HaproxyUnderTest {
        Self::start_with(dir, backend, "    balance roundrobin\n")
    }

    /// The same with the backend's body given (balance algorithm, server templates).
    pub fn start_with(dir: &Path, backend: &str, body: &str) -> HaproxyUnderTest {
        std::fs::create_dir_all(dir).unwrap();
        let port = super::docker::free_port();
        let socket = dir.join("admin.sock");
        let admin_port = super::docker::free_port();
        let d = dir.display();
        let cfg = format!(
            "global\n    stats socket {d}/admin.sock mode 600 level admin\n    \
             stats socket ipv4@127.0.0.1:{admin_port} level admin\n    pidfile {d}/haproxy.pid\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend web\n    bind 127.0.0.1:{port}\n    default_backend {backend}\n\
             backend {backend}\n{body}"
        );
        std::fs::write(dir.join("haproxy.cfg"), cfg).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut process = Command::new("haproxy")
            .args(["-f", &format!("{d}/haproxy.cfg")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("run haproxy");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            let exited = process.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                super::process::stop_group(&mut process, Duration::ZERO);
                panic!(
                    "haproxy did not start ({exited:?}): {}",
                    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        HaproxyUnderTest {
            dir: dir.to_path_buf(),
            port,
            socket,
            socket_tcp: format!("tcp://127.0.0.1:{admin_port}"),
            process,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for HaproxyUnderTest {
    fn drop(&mut self) {
        super::process::stop_group(&mut self.process, Duration::from_secs(5));
    }
}
