//! A real OpenSSH server on a free loopback port, for the tests of `ssh://` hosts: a host key
//! and a client key generated for it, the client key authorized, and a client side that the
//! `ssh` gantry spawns really uses. OpenSSH reads `~/.ssh` from the password database, not
//! from `$HOME`, so the client side is a directory with an `ssh` on PATH that runs the system
//! ssh with `-F` its own config ([`Sshd::path_env`]): aliases, keys and known_hosts as a
//! user's `~/.ssh/config` would give them. sshd runs in the foreground (`-D`) as a child of
//! the test and is killed when the [`Sshd`] drops, also when the test panics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::Background;

pub fn sshd_available() -> bool {
    Path::new("/usr/sbin/sshd").exists()
        && Command::new("ssh-keygen")
            .arg("-?")
            .stderr(Stdio::null())
            .status()
            .is_ok()
}

/// False (with a message) when OpenSSH is missing; panics under CI, where it must be.
pub fn require_sshd(test: &str) -> bool {
    if sshd_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: openssh-server not installed, and CI=true: the SSH tests must run in CI");
    }
    println!("SKIPPED: {test}: openssh-server not installed");
    false
}

/// One sshd and its client side.
pub struct Sshd {
    pub port: u16,
    /// Every port it listens on (`port` first): one machine per port in tests that need
    /// several (`Match LocalPort` blocks tell them apart), reached as
    /// `ssh://root@127.0.0.1:PORT`.
    pub ports: Vec<u16>,
    /// `gantry-it-<port>`: the alias of this server in the client config, with the
    /// authorized key and the right known_hosts.
    pub alias: String,
    dir: PathBuf,
    // Before `_tmp`: stopped before its directory goes.
    sshd: Background,
    _tmp: tempfile::TempDir,
}

fn keygen(path: &Path) -> String {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gantry-it", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

impl Sshd {
    /// Starts sshd on a free loopback port; `extra` are more `sshd_config` lines (e.g.
    /// `SetEnv PATH=/nonexistent`: a far side without docker).
    pub fn start(extra: &[&str]) -> Sshd {
        let extra: Vec<String> = extra.iter().map(|l| l.to_string()).collect();
        Sshd::start_with(1, |_| extra.clone())
    }

    /// Starts sshd listening on `count` free loopback ports, each known to the client side;
    /// `extra` gives more `sshd_config` lines from the ports (at the end of the file, so
    /// `Match LocalPort P` blocks may make each port a machine of its own: `SetEnv`,
    /// `ChrootDirectory`).
    pub fn start_with(count: usize, extra: impl Fn(&[u16]) -> Vec<String>) -> Sshd {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let d = dir.display();
        // sshd's privilege separation directory (Debian's package makes it at boot).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_pub = keygen(&dir.join("host_key"));
        let client_pub = keygen(&dir.join("client_key"));
        keygen(&dir.join("stranger_key"));
        // Another server's key, as known_hosts would hold it after a reinstall.
        let other_pub = keygen(&dir.join("other_host_key"));
        std::fs::write(dir.join("authorized_keys"), &client_pub).unwrap();
        let ports: Vec<u16> = (0..count.max(1))
            .map(|_| super::docker::free_port())
            .collect();
        let port = ports[0];
        let mut config: String = ports
            .iter()
            .map(|p| format!("ListenAddress 127.0.0.1:{p}\n"))
            .collect();
        config += &format!(
            "HostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\n\
             AllowStreamLocalForwarding yes\nMaxSessions 100\nMaxStartups 100\nLogLevel ERROR\n"
        );
        for line in extra(&ports) {
            config.push_str(&line);
            config.push('\n');
        }
        std::fs::write(dir.join("sshd_config"), config).unwrap();

        // The client side: known_hosts files and one alias per case.
        let key = |line: &str| {
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let known: String = ports
            .iter()
            .map(|p| format!("[127.0.0.1]:{p} {}\n", key(&host_pub)))
            .collect();
        std::fs::write(dir.join("known_hosts"), known).unwrap();
        std::fs::write(
            dir.join("changed_known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", key(&other_pub)),
        )
        .unwrap();
        std::fs::write(dir.join("empty_known_hosts"), "").unwrap();
        let alias = format!("gantry-it-{port}");
        let host = |name: &str, identity: &str, known: &str| {
            format!(
                "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {d}/{identity}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {d}/{known}\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  IdentityAgent none\n"
            )
        };
        let client = [
            host(&alias, "client_key", "known_hosts"),
            host(&format!("{alias}-unknown"), "client_key", "empty_known_hosts"),
            host(&format!("{alias}-changed"), "client_key", "changed_known_hosts"),
            host(&format!("{alias}-stranger"), "stranger_key", "known_hosts"),
            // `ssh://root@127.0.0.1:PORT` as written: the key and known_hosts of any host.
            format!(
                "Host 127.0.0.1\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  IdentityAgent none\n"
            ),
        ]
        .concat();
        std::fs::write(dir.join("ssh_config"), client).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let shim = dir.join("bin/ssh");
        std::fs::write(
            &shim,
            format!("#!/bin/sh\nexec /usr/bin/ssh -F {d}/ssh_config \"$@\"\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap());
        let sshd = Background::spawn(cmd, "sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports
            .iter()
            .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            if Instant::now() >= deadline {
                sshd.kill();
                panic!(
                    "sshd did not start: {}",
                    std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd {
            port,
            ports,
            alias,
            dir,
            sshd,
            _tmp: tmp,
        }
    }

    /// `PATH` for gantry: this server's `ssh` first, then the test's own.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The client config, for a test's own `ssh -F`.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// What sshd logged (errors only), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The ssh processes still running whose command line names this server (its alias or
    /// port): gantry must leave none behind.
    pub fn leftover_ssh(&self) -> Vec<String> {
        let mut found = Vec::new();
        let ports: Vec<String> = self.ports.iter().map(|p| p.to_string()).collect();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
            {
                continue;
            }
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_ssh = args.first().is_some_and(|a| a.ends_with("ssh"));
            let names_us = args
                .iter()
                .any(|a| a.starts_with(&self.alias) || ports.contains(a));
            if is_ssh && names_us {
                found.push(args.join(" "));
            }
        }
        found
    }
}
