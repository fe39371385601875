//! Machines reached over SSH through the system `ssh` client, so that `~/.ssh/config`, the
//! agent, `ProxyJump` and `known_hosts` work exactly as they do for `docker -H ssh://`.
//!
//! One [`SshSession`] is one authenticated connection per machine and run: an `ssh` master
//! (`ControlMaster`, its control socket in a private temporary directory) that every later
//! command multiplexes over, without a new handshake. `BatchMode` keeps ssh from ever
//! prompting; when the master cannot be opened, ssh's stderr says why and [`SshError`] says
//! it in the user's words (unknown or changed host key, authentication, network).
//!
//! [`DockerOverSsh`] forwards a local unix socket (in the same private directory) to the
//! engine's socket on the far side, through the master (`ssh -O forward`): every engine
//! connection is one channel of the one SSH connection, no process and no handshake of its
//! own. bollard connects to that socket. The master is stopped, and the directory removed,
//! when the session drops.
//!
//! Measured (`benches/ssh_overhead.sh`): running `docker system dial-stdio` on the far side
//! for each engine connection, as the Docker CLI does, made a rollout 3 to 4 times slower
//! than over the unix socket (a `docker` process started per connection); forwarding does
//! not.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How long opening the master may take (connect, key exchange, authentication).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::model::ssh_target::SshTarget;

/// The destination arguments of an `ssh` command line, last before the remote command.
fn destination(t: &SshTarget) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(u) = &t.user {
        args.extend(["-l".to_string(), u.clone()]);
    }
    if let Some(p) = t.port {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    args.extend(["--".to_string(), t.host.clone()]);
    args
}

/// Why a machine could not be reached or used over SSH.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error(
        "ssh does not know the host key of {machine} (not in known_hosts), and gantry never accepts a key unseen: connect once with `ssh {machine}` and check the fingerprint, or add the key to ~/.ssh/known_hosts"
    )]
    UnknownHostKey { machine: String },
    #[error(
        "the host key of {machine} has CHANGED since it was recorded in known_hosts, and ssh refused to connect (someone may be in the middle); if the machine was reinstalled, remove the old key with `ssh-keygen -R HOST` and check the new one"
    )]
    ChangedHostKey { machine: String },
    #[error(
        "ssh authentication to {machine} failed ({detail}): check the user, the key (ssh-agent or IdentityFile in ~/.ssh/config) and the machine's authorized_keys"
    )]
    Authentication { machine: String, detail: String },
    #[error("ssh cannot connect to {machine}: {detail}")]
    Connect { machine: String, detail: String },
    #[error("no Docker on the far side of {machine}: {detail}")]
    NoDocker { machine: String, detail: String },
    #[error("ssh to {machine}: {detail}")]
    Other { machine: String, detail: String },
}

/// What ssh's stderr (and exit status) say about a failed connection. ssh says it in
/// English whatever the locale; these are its words since OpenSSH 7.
pub fn classify(machine: &str, stderr: &str, status: Option<i32>) -> SshError {
    let machine = machine.to_string();
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("")
        .to_string();
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        SshError::ChangedHostKey { machine }
    } else if stderr.contains("Host key verification failed")
        || stderr.contains("host key is known for")
    {
        SshError::UnknownHostKey { machine }
    } else if stderr.contains("Permission denied") || stderr.contains("Too many authentication") {
        SshError::Authentication {
            machine,
            detail: last,
        }
    } else if [
        "Could not resolve hostname",
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Network is unreachable",
        "Connection closed by",
        "Connection reset",
    ]
    .iter()
    .any(|s| stderr.contains(s))
    {
        SshError::Connect {
            machine,
            detail: last,
        }
    } else {
        let detail = match (last.is_empty(), status) {
            (true, Some(s)) => format!("ssh exited with status {s}"),
            (true, None) => "ssh was killed".to_string(),
            (false, _) => last,
        };
        SshError::Other { machine, detail }
    }
}

/// A directory only this user can enter, removed on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> std::io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Short: a unix socket's path must fit in 108 bytes.
        let base = std::env::temp_dir();
        let base = if base.as_os_str().len() > 60 {
            PathBuf::from("/tmp")
        } else {
            base
        };
        let path = base.join(format!("gantry-ssh-{}", &id[..12]));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A watcher of the master `pid` (the leader of its own process group): a shell that reads
/// a pipe gantry holds the only write end of (std opens pipes close-on-exec, so no other
/// child inherits it) and never writes to. When gantry ends in any way, SIGKILL included,
/// the kernel closes that end, `read` returns, and the shell stops the master's group and
/// removes the session's directory. On an orderly end the session kills the watcher first.
/// (Tying the master to gantry's life with `PR_SET_PDEATHSIG` needs `pre_exec`, which is
/// unsafe; `ControlPersist` with a timeout would end a master that a long soak left idle.)
fn watch(pid: u32, dir: &Path) -> std::io::Result<Child> {
    let script = format!(
        "read -r _; kill -TERM -{pid} 2>/dev/null; rm -rf -- '{}'",
        dir.display().to_string().replace('\'', r"'\''")
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// One authenticated connection to a machine: the `ssh` master every command shares.
pub struct SshSession {
    target: SshTarget,
    master: std::sync::Mutex<Child>,
    /// Stops the master should gantry die without dropping the session (see [`watch`]).
    watcher: std::sync::Mutex<Option<Child>>,
    control: PathBuf,
    // Last: removed after the master stopped.
    dir: PrivateDir,
}

impl SshSession {
    /// Opens the master connection (connect, host key, authentication), or says why not.
    pub async fn open(target: &SshTarget) -> Result<SshSession, SshError> {
        let machine = target.display();
        let other = |detail: String| SshError::Other {
            machine: machine.clone(),
            detail,
        };
        let dir = PrivateDir::new().map_err(|e| other(format!("private temp dir: {e}")))?;
        let control = dir.0.join("ctl");
        let log = dir.0.join("master.log");
        let stderr =
            std::fs::File::create(&log).map_err(|e| other(format!("{}: {e}", log.display())))?;
        let mut cmd = std::process::Command::new("ssh");
        // A process group of its own: a Ctrl-C at the terminal goes to gantry (which then
        // finishes its step, over this connection), not to the master.
        cmd.process_group(0);
        cmd.args(["-o", "BatchMode=yes", "-o", "ControlMaster=yes"])
            .arg("-o")
            .arg(format!("ControlPath={}", control.display()))
            .args([
                "-o",
                "ControlPersist=no",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "ServerAliveInterval=15",
                "-N",
            ])
            .args(destination(target))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| {
            other(format!(
                "cannot run the `ssh` client ({e}): install OpenSSH's client"
            ))
        })?;
        let mut watcher = match watch(child.id(), &dir.0) {
            Ok(w) => w,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(other(format!(
                    "cannot start the watcher of the ssh master: {e}"
                )));
            }
        };
        let started = Instant::now();
        loop {
            // The watcher goes first on a failure: it must never signal a reaped master.
            if let Ok(Some(status)) = child.try_wait() {
                let _ = watcher.kill();
                let _ = watcher.wait();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(classify(&machine, &text, status.code()));
            }
            if control.exists() {
                break;
            }
            if started.elapsed() > OPEN_TIMEOUT {
                let _ = watcher.kill();
                let _ = watcher.wait();
                let _ = child.kill();
                let _ = child.wait();
                return Err(SshError::Connect {
                    machine,
                    detail: format!("no connection within {}s", OPEN_TIMEOUT.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(SshSession {
            target: target.clone(),
            master: std::sync::Mutex::new(child),
            watcher: std::sync::Mutex::new(Some(watcher)),
            control,
            dir,
        })
    }

    /// The machine, as messages name it.
    pub fn machine(&self) -> String {
        self.target.display()
    }

    /// The private directory of this session (for local sockets beside the control socket).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// `ssh` with the options that make it a client of the master.
    fn control_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(["-o", "BatchMode=yes", "-o", "ControlMaster=no"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            .kill_on_drop(true);
        cmd
    }

    /// Forwards a local unix socket `name` (in the private directory) to the unix socket
    /// `remote` on the far side, through the master; returns the local socket's path.
    pub async fn forward_unix(&self, name: &str, remote: &str) -> Result<PathBuf, SshError> {
        let socket = self.dir().join(name);
        let mut forward = self.control_command();
        forward
            .args(["-O", "forward", "-L"])
            .arg(format!("{}:{remote}", socket.display()))
            .args(destination(&self.target))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = forward.output().await.map_err(|e| SshError::Other {
            machine: self.machine(),
            detail: format!("cannot run `ssh -O forward`: {e}"),
        })?;
        if !out.status.success() {
            return Err(SshError::Other {
                machine: self.machine(),
                detail: format!(
                    "cannot forward a local socket to {remote} there (sshd's AllowStreamLocalForwarding?): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(socket)
    }

    /// `ssh ... host REMOTE` over the master: no new handshake. `remote` is one shell
    /// command line, run by the remote user's shell.
    pub fn command(&self, remote: &str) -> tokio::process::Command {
        let mut cmd = self.control_command();
        cmd.arg("-T").args(destination(&self.target)).arg(remote);
        cmd
    }

    /// Runs `remote` over the master to its end: exit code (`None`: killed), stdout, stderr.
    pub async fn run(
        &self,
        remote: &str,
        stdin: Option<&[u8]>,
    ) -> Result<(Option<i32>, String, String), SshError> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.command(remote);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| SshError::Other {
            machine: self.machine(),
            detail: format!("cannot run `ssh`: {e}"),
        })?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A command that does not read its stdin closes the pipe: not an error here.
            let _ = pipe.write_all(bytes).await;
            drop(pipe);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| SshError::Other {
                machine: self.machine(),
                detail: format!("ssh: {e}"),
            })?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        // The watcher first, so that it never signals a group whose leader was reaped.
        if let Some(mut watcher) = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        let _ = master.kill();
        let _ = master.wait();
    }
}

/// Where the engine listens on the far side unless `DOCKER_HOST` there says otherwise
/// (Docker's default socket).
pub const REMOTE_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The engine's socket on the far side, from the far side's `DOCKER_HOST` (`""`: unset).
fn remote_socket(machine: &str, docker_host: &str) -> Result<String, SshError> {
    let host = docker_host.trim();
    if host.is_empty() {
        return Ok(REMOTE_DOCKER_SOCKET.to_string());
    }
    match host.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') => Ok(path.to_string()),
        _ => Err(SshError::NoDocker {
            machine: machine.to_string(),
            detail: format!(
                "DOCKER_HOST there is `{host}`, and gantry forwards to a unix socket only (`unix:///PATH`, or unset for {REMOTE_DOCKER_SOCKET})"
            ),
        }),
    }
}

/// A Docker engine on the far side of an [`SshSession`], forwarded to a local unix socket.
pub struct DockerOverSsh {
    socket: PathBuf,
    _session: SshSession,
}

impl DockerOverSsh {
    /// Opens the session, checks that `docker` answers on the far side (the engine, not just
    /// the CLI: the remote user may use it), then forwards a local socket to the engine's
    /// through the master: each engine connection is one channel of the one SSH connection.
    pub async fn open(target: &SshTarget) -> Result<DockerOverSsh, SshError> {
        let session = SshSession::open(target).await?;
        let machine = session.machine();
        // The far side's DOCKER_HOST first (as `docker -H ssh://` honours it there: its
        // `docker system dial-stdio` connects where that says), then whether docker answers.
        let (status, stdout, stderr) = session
            .run(
                "printf 'DOCKER_HOST=%s\\n' \"${DOCKER_HOST:-}\"; docker version --format '{{.Server.APIVersion}}'",
                None,
            )
            .await?;
        let said = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("")
            .to_string();
        match status {
            Some(0) => {}
            // ssh's own failure (the master went away): its words.
            Some(255) => return Err(classify(&machine, &stderr, status)),
            _ => {
                let detail = if status == Some(127) || said.contains("not found") {
                    format!("the `docker` command is not there ({said})")
                } else {
                    format!("`docker version` there failed: {said}")
                };
                return Err(SshError::NoDocker { machine, detail });
            }
        }
        // A login script may print before it: the marked line.
        let docker_host = stdout
            .lines()
            .find_map(|l| l.strip_prefix("DOCKER_HOST="))
            .unwrap_or("");
        let remote = remote_socket(&machine, docker_host)?;
        let socket = session.forward_unix("docker.sock", &remote).await?;
        Ok(DockerOverSsh {
            socket,
            _session: session,
        })
    }

    /// The local socket that reaches the far engine.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_into_user_host_and_port() {
        let t = SshTarget::parse("ssh://deploy@node-a.internal").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str(), t.port),
            (Some("deploy"), "node-a.internal", None)
        );
        let t = SshTarget::parse("ssh://deploy@10.0.0.5:2222").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.5", Some(2222)));
        assert_eq!(t.display(), "deploy@10.0.0.5:2222");
        let t = SshTarget::parse("ssh://node-b").unwrap();
        assert_eq!((t.user, t.host.as_str()), (None, "node-b"));
        let t = SshTarget::parse("ssh://root@[::1]:22").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(22)));
        assert_eq!(
            destination(&t),
            ["-l", "root", "-p", "22", "--", "::1"].map(String::from)
        );
        for bad in [
            "ssh://",
            "ssh://u@",
            "ssh://u@h:0",
            "ssh://u@h:x",
            "ssh://u@h/var/run/docker.sock",
            "ssh://-oProxyCommand=x",
            "ssh://u@h :2",
            "tcp://h",
        ] {
            assert!(SshTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_far_sides_docker_host_names_the_socket_forwarded_to() {
        assert_eq!(remote_socket("m", "").unwrap(), "/var/run/docker.sock");
        assert_eq!(
            remote_socket("m", "unix:///run/user/1000/docker.sock\n").unwrap(),
            "/run/user/1000/docker.sock"
        );
        for other in ["tcp://10.0.0.5:2376", "unix://relative.sock", "ssh://x"] {
            let e = remote_socket("m", other).unwrap_err();
            assert!(
                matches!(e, SshError::NoDocker { .. })
                    && e.to_string()
                        .contains(&format!("DOCKER_HOST there is `{other}`")),
                "{e}"
            );
        }
    }

    #[test]
    fn ssh_failures_are_told_apart_from_its_stderr() {
        let m = "deploy@node-a";
        let unknown = "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\n";
        assert!(matches!(
            classify(m, unknown, Some(255)),
            SshError::UnknownHostKey { .. }
        ));
        let changed = "@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\nHost key verification failed.\r\n";
        assert!(matches!(
            classify(m, changed, Some(255)),
            SshError::ChangedHostKey { .. }
        ));
        let denied = "deploy@127.0.0.1: Permission denied (publickey).\r\n";
        let e = classify(m, denied, Some(255));
        assert!(matches!(e, SshError::Authentication { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("(deploy@127.0.0.1: Permission denied (publickey).)"),
            "{e}"
        );
        let refused = "ssh: connect to host 127.0.0.1 port 9: Connection refused\r\n";
        assert!(matches!(
            classify(m, refused, Some(255)),
            SshError::Connect { .. }
        ));
        assert_eq!(
            classify(m, "", Some(255)).to_string(),
            "ssh to deploy@node-a: ssh exited with status 255"
        );
    }
}
