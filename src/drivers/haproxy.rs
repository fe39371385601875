//! HAProxy through its runtime API (`stats socket ... level admin`): no reload, no dropped
//! connection. gantry adds its members as dynamic servers named `gantry-<address>` in the
//! configured backend (`add server`, then `state ready`); a leaving member is set to `drain`
//! (no new sessions), and `finish_drain` waits until HAProxy reports no current session on it
//! (bounded by the rollout's `drain`) before `maint` and `del server`. Servers not named by
//! gantry are left alone, unless they are recorded members (adopted by `gantry adopt`): those
//! leave as gantry's do, by drain and then maintenance (they are not deleted).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ports::{BoxFuture, LoadBalancer, Member};

const PREFIX: &str = "gantry-";

pub struct Haproxy {
    pub socket: PathBuf,
    pub backend: String,
}

/// `127.0.0.1:32769` -> `gantry-127-0-0-1-32769`.
pub fn server_name(address: &str) -> String {
    format!("{PREFIX}{}", address.replace(['.', ':', '[', ']'], "-"))
}

#[derive(Debug, Clone, PartialEq)]
struct Server {
    name: String,
    address: String,
    /// srv_admin_state: bit 0x01 forced maintenance, 0x08 forced drain (0x04, maintenance
    /// from the configuration, stays set on a `server-template ... disabled` slot made ready).
    admin: u32,
    /// srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping.
    op: u32,
    /// Named by gantry (`gantry-...`).
    ours: bool,
}

impl Server {
    /// Taking new sessions: neither forced into maintenance nor draining.
    fn in_rotation(&self) -> bool {
        self.admin & 0x09 == 0
    }
}

impl Haproxy {
    async fn command(&self, cmd: &str) -> Result<String, String> {
        async fn talk<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
            mut s: S,
            cmd: &str,
        ) -> std::io::Result<String> {
            s.write_all(format!("{cmd}\n").as_bytes()).await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok(out)
        }
        let socket = self.socket.to_string_lossy();
        let io = async {
            // `tcp://host:port`: a `stats socket ipv4@...` on another machine.
            match socket.strip_prefix("tcp://") {
                Some(addr) => talk(tokio::net::TcpStream::connect(addr).await?, cmd).await,
                None => talk(tokio::net::UnixStream::connect(&self.socket).await?, cmd).await,
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), io).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(format!(
                "HAProxy runtime API at {}: {e}",
                self.socket.display()
            )),
            Err(_) => Err(format!(
                "HAProxy runtime API at {}: no answer within 10s",
                self.socket.display()
            )),
        }
    }

    /// A command whose answer must say it worked.
    async fn expect(&self, cmd: &str, ok: &[&str]) -> Result<(), String> {
        let out = self.command(cmd).await?;
        let text = out.trim();
        if ok.iter().any(|o| text.contains(o)) || (ok.is_empty() && text.is_empty()) {
            Ok(())
        } else {
            Err(format!("HAProxy refused `{cmd}`: {text}"))
        }
    }

    /// The servers of the backend, gantry's (`ours`) and the others.
    async fn servers(&self) -> Result<Vec<Server>, String> {
        let out = self
            .command(&format!("show servers state {}", self.backend))
            .await?;
        if out.contains("Can't find backend") || out.contains("Unknown") {
            return Err(format!(
                "HAProxy has no backend `{}`: {}",
                self.backend,
                out.trim()
            ));
        }
        let mut servers = Vec::new();
        for line in out
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_port (19th)
            if f.len() > 18 {
                servers.push(Server {
                    name: f[3].to_string(),
                    address: format!("{}:{}", f[4], f[18]),
                    admin: f[6].parse().unwrap_or(0),
                    op: f[5].parse().unwrap_or(0),
                    ours: f[3].starts_with(PREFIX),
                });
            }
        }
        Ok(servers)
    }

    /// Current sessions of a server (`scur` of `show stat`).
    async fn sessions(&self, server: &str) -> Result<u64, String> {
        let out = self.command("show stat").await?;
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let scur = header
            .iter()
            .position(|h| *h == "scur")
            .ok_or("HAProxy `show stat` has no scur column")?;
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            if f.first() == Some(&self.backend.as_str()) && f.get(1) == Some(&server) {
                return Ok(f.get(scur).and_then(|v| v.parse().ok()).unwrap_or(0));
            }
        }
        Ok(0)
    }

    /// What the backend sends to now, for `gantry adopt`: every server, in rotation or not;
    /// those gantry did not add are left alone by later changes unless adopted.
    pub async fn read_servers(&self) -> Result<Vec<crate::state::adopt::Server>, String> {
        Ok(self
            .servers()
            .await?
            .into_iter()
            .map(|s| crate::state::adopt::Server {
                active: s.in_rotation() && s.op != 0,
                left_alone: !s.ours,
                address: s.address,
            })
            .collect())
    }

    async fn set(&self, previous: &[Member], members: &[Member]) -> Result<(), String> {
        let members: Vec<&str> = members.iter().map(|m| m.address.as_str()).collect();
        // Servers gantry did not add are its own only when recorded (adopted members).
        let managed = |s: &Server| s.ours || previous.iter().any(|m| m.address == s.address);
        let mut current = self.servers().await?;
        for m in &members {
            match current.iter().find(|s| s.address == *m) {
                Some(s) if s.in_rotation() => {}
                Some(s) => self.ready(&s.name).await?,
                None => {
                    let name = server_name(m);
                    let out = self
                        .command(&format!("add server {}/{name} {m}", self.backend))
                        .await?;
                    if out.contains("New server registered") {
                        self.ready(&name).await?;
                        continue;
                    }
                    if !out.contains("dynamic") {
                        return Err(format!(
                            "HAProxy refused `add server {}/{name} {m}`: {}",
                            self.backend,
                            out.trim()
                        ));
                    }
                    // No dynamic servers with this backend's algorithm: take a free slot of a
                    // pre-declared `server-template gantry- N ... disabled`.
                    let slot = current
                        .iter_mut()
                        .find(|s| {
                            s.ours && s.admin & 1 != 0 && !members.contains(&s.address.as_str())
                        })
                        .ok_or_else(|| {
                            format!(
                                "backend `{}` does not take dynamic servers ({}) and has no free `server-template gantry- N ...` slot left",
                                self.backend,
                                out.trim()
                            )
                        })?;
                    let (host, port) = m.rsplit_once(':').unwrap_or((m, ""));
                    self.expect(
                        &format!(
                            "set server {}/{} addr {host} port {port}",
                            self.backend, slot.name
                        ),
                        &["changed", "no need"],
                    )
                    .await?;
                    self.ready(&slot.name).await?;
                    slot.address = m.to_string();
                    slot.admin = 0;
                }
            }
        }
        for s in current
            .iter()
            .filter(|s| s.in_rotation() && managed(s) && !members.contains(&s.address.as_str()))
        {
            // Out of rotation now; removed by finish_drain once idle.
            self.expect(
                &format!("set server {}/{} state drain", self.backend, s.name),
                &[],
            )
            .await?;
        }
        Ok(())
    }

    /// Puts gantry's servers back as `before` listed them, after a change that failed here
    /// or on another machine of the same load balancer: each server in the state it had
    /// (ready, drain, maintenance), a server added since in maintenance again (a template
    /// slot, free again) or deleted (a dynamic server).
    async fn restore(&self, before: &[Server]) -> Result<(), String> {
        for s in self.servers().await? {
            let state = |admin: u32| {
                if admin & 1 != 0 {
                    "maint"
                } else if admin & 8 != 0 {
                    "drain"
                } else {
                    "ready"
                }
            };
            match before.iter().find(|b| b.address == s.address) {
                Some(b) if state(b.admin) == state(s.admin) => {}
                Some(b) => {
                    self.expect(
                        &format!(
                            "set server {}/{} state {}",
                            self.backend,
                            s.name,
                            state(b.admin)
                        ),
                        &[],
                    )
                    .await?
                }
                None => {
                    self.expect(
                        &format!("set server {}/{} state maint", self.backend, s.name),
                        &[],
                    )
                    .await?;
                    if s.name == server_name(&s.address) {
                        self.expect(
                            &format!("del server {}/{}", self.backend, s.name),
                            &["Server deleted"],
                        )
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn ready(&self, name: &str) -> Result<(), String> {
        self.expect(
            &format!("set server {}/{name} state ready", self.backend),
            &[],
        )
        .await
    }

    async fn drain(&self, leaving: &[Member], bound: Duration) -> Result<String, String> {
        let started = Instant::now();
        let servers = self.servers().await?;
        let mut seen = Vec::new();
        for address in leaving.iter().map(|m| m.address.as_str()) {
            // gantry's server for the address first (an adopted one may share it).
            let Some(server) = servers
                .iter()
                .filter(|s| s.address == address)
                .max_by_key(|s| s.ours)
            else {
                continue;
            };
            let name = &server.name;
            let initial = self.sessions(name).await?;
            let mut now = initial;
            while now > 0 && started.elapsed() < bound {
                tokio::time::sleep(Duration::from_millis(50)).await;
                now = self.sessions(name).await?;
            }
            seen.push(format!(
                "{address}: {initial} session(s) -> {now} after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            self.expect(
                &format!("set server {}/{name} state maint", self.backend),
                &[],
            )
            .await?;
            // A dynamic server is deleted; a template slot stays in maintenance, free again.
            // `del server` refuses while connections linger: reported, not fatal.
            if *name == server_name(address)
                && let Err(e) = self
                    .expect(
                        &format!("del server {}/{name}", self.backend),
                        &["Server deleted"],
                    )
                    .await
            {
                seen.push(e);
            }
        }
        Ok(seen.join("; "))
    }
}

impl LoadBalancer for Haproxy {
    /// A change that fails half-way puts the servers back as they were read before it (the
    /// trait's contract: the load balancer serves as before).
    fn set_members<'a>(
        &'a self,
        previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let before = self.servers().await?;
            match self.set(previous, members).await {
                Ok(()) => Ok(()),
                Err(e) => match self.restore(&before).await {
                    Ok(()) => Err(format!("{e}; the servers were put back as they were")),
                    Err(r) => Err(format!("{e}; and putting the servers back failed: {r}")),
                },
            }
        })
    }

    fn finish_drain<'a>(
        &'a self,
        leaving: &'a [Member],
        bound: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.drain(leaving, bound))
    }

    fn current_members(&self) -> BoxFuture<'_, crate::state::adopt::LbMembers> {
        Box::pin(async move { haproxy_members(self.read_servers().await, &self.backend) })
    }
}

/// An HAProxy on other machines (`at = ["ssh://...", ...]`): one load balancer that is one
/// or several HAProxy processes (each machine's own, the same backend), changed together or
/// not at all. Each machine's unix stats socket is forwarded to a local one through one ssh
/// master of its own, opened (and the API asked `show info`) in pre-flight. A membership
/// change first reads the backend's servers on every machine (each reached, the backend
/// there), then changes every machine in `at` order; when one fails, the machines already
/// changed, and the one that failed, get their servers back as they were read.
pub struct RemoteHaproxy {
    at: Vec<crate::drivers::ssh::SshTarget>,
    remote_socket: String,
    backend: String,
    /// Per machine: the session (kept open for the forward) and the driver on the local end.
    connected: tokio::sync::OnceCell<Vec<(crate::drivers::ssh::SshSession, Haproxy)>>,
}

impl RemoteHaproxy {
    pub fn new(
        at: Vec<crate::drivers::ssh::SshTarget>,
        remote_socket: String,
        backend: String,
    ) -> RemoteHaproxy {
        RemoteHaproxy {
            at,
            remote_socket,
            backend,
            connected: tokio::sync::OnceCell::new(),
        }
    }

    async fn connect(
        &self,
        target: &crate::drivers::ssh::SshTarget,
    ) -> Result<(crate::drivers::ssh::SshSession, Haproxy), String> {
        let session = crate::drivers::ssh::SshSession::open(target)
            .await
            .map_err(|e| e.to_string())?;
        let socket = session
            .forward_unix("haproxy.sock", &self.remote_socket)
            .await
            .map_err(|e| e.to_string())?;
        let h = Haproxy {
            socket,
            backend: self.backend.clone(),
        };
        // The forward opens the far socket only on use: one command says it answers.
        h.command("show info").await.map_err(|e| {
            format!(
                "{e} (through ssh to {}, socket {})",
                session.machine(),
                self.remote_socket
            )
        })?;
        Ok((session, h))
    }

    async fn machines(&self) -> Result<&Vec<(crate::drivers::ssh::SshSession, Haproxy)>, String> {
        self.connected
            .get_or_try_init(|| async {
                let all =
                    futures_util::future::join_all(self.at.iter().map(|t| self.connect(t))).await;
                all.into_iter().collect::<Result<Vec<_>, String>>()
            })
            .await
    }

    async fn set(&self, previous: &[Member], members: &[Member]) -> Result<(), String> {
        let machines = self.machines().await?;
        // Check all: every machine answers and has the backend; what each had is kept for
        // the undo.
        let mut before = Vec::new();
        for (s, h) in machines {
            before.push(
                h.servers()
                    .await
                    .map_err(|e| format!("{}: {e}; nothing was changed", s.machine()))?,
            );
        }
        for (i, (s, h)) in machines.iter().enumerate() {
            if let Err(e) = h.set(previous, members).await {
                let failure = format!("{}: {e}", s.machine());
                let mut problems = Vec::new();
                for ((s, h), b) in machines[..=i].iter().zip(&before) {
                    if let Err(e) = h.restore(b).await {
                        problems.push(format!("{}: {e}", s.machine()));
                    }
                }
                let undone: Vec<String> = machines[..=i].iter().map(|(s, _)| s.machine()).collect();
                return Err(if problems.is_empty() {
                    format!(
                        "{failure}; the servers were put back as they were on {}",
                        undone.join(", ")
                    )
                } else {
                    format!(
                        "{failure}; and putting the servers back failed: {}",
                        problems.join("; ")
                    )
                });
            }
        }
        Ok(())
    }

    async fn drain(&self, leaving: &[Member], bound: Duration) -> Result<String, String> {
        let machines = self.machines().await?;
        // At the same time: the bound is the rollout's, not per machine.
        let seen = futures_util::future::join_all(machines.iter().map(|(s, h)| async move {
            h.drain(leaving, bound)
                .await
                .map(|seen| (s.machine(), seen))
                .map_err(|e| format!("{}: {e}", s.machine()))
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, String>>()?;
        if let [(_, only)] = seen.as_slice() {
            return Ok(only.clone());
        }
        Ok(seen
            .into_iter()
            .filter(|(_, text)| !text.is_empty())
            .map(|(machine, text)| format!("{machine}: {text}"))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

impl LoadBalancer for RemoteHaproxy {
    fn preflight(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.machines().await.map(|_| ()) })
    }

    fn set_members<'a>(
        &'a self,
        previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.set(previous, members))
    }

    fn finish_drain<'a>(
        &'a self,
        leaving: &'a [Member],
        bound: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.drain(leaving, bound))
    }

    /// The backend on the first machine of `at` (gantry changes them all alike).
    fn current_members(&self) -> BoxFuture<'_, crate::state::adopt::LbMembers> {
        Box::pin(async move {
            let read = match self.machines().await {
                Ok(machines) => match machines.first() {
                    Some((_, h)) => h.read_servers().await,
                    None => Err("no machine in `at`".to_string()),
                },
                Err(e) => Err(e),
            };
            haproxy_members(read, &self.backend)
        })
    }
}

fn haproxy_members(
    read: Result<Vec<crate::state::adopt::Server>, String>,
    backend: &str,
) -> crate::state::adopt::LbMembers {
    use crate::state::adopt::LbMembers;
    match read {
        Ok(servers) => LbMembers::Read(servers),
        Err(e) => LbMembers::Failed(format!("reading backend `{backend}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_names_are_stable_and_safe() {
        assert_eq!(
            super::server_name("127.0.0.1:32769"),
            "gantry-127-0-0-1-32769"
        );
    }
}
