//! A real HAProxy on loopback for tests, with its runtime API on a unix socket, stopped on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct HaproxyUnderTest {
    pub dir: PathBuf,
    pub port: u16,
    pub socket: PathBuf,
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
        let d = dir.display();
        let cfg = format!(
            "global\n    stats socket {d}/admin.sock mode 600 level admin\n    pidfile {d}/haproxy.pid\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend web\n    bind 127.0.0.1:{port}\n    default_backend {backend}\n\
             backend {backend}\n{body}"
        );
        std::fs::write(dir.join("haproxy.cfg"), cfg).unwrap();
        let o = Command::new("haproxy")
            .args(["-f", &format!("{d}/haproxy.cfg"), "-D"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "haproxy did not start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !socket.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        HaproxyUnderTest {
            dir: dir.to_path_buf(),
            port,
            socket,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for HaproxyUnderTest {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("haproxy.pid")) {
            let _ = Command::new("kill")
                .args(["-TERM", "--", pid.trim()])
                .status();
        }
    }
}
