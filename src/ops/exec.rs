//! `gantry exec`: runs a command inside a running replica of a service, through the engine's
//! exec API, on a TTY when gantry's stdin is a terminal; the command's exit code becomes
//! gantry's. Replicas are found as `gantry logs` finds them (the engines' labels); the state,
//! when there is one, only says which revision is live, preferred among replicas of the same
//! index (a blue-green old colour runs beside the new one). No lock: it changes nothing
//! gantry manages, and it is most needed while an apply runs.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read, Write};

use tokio::sync::mpsc;

use super::logs::{Found, connect_all, discover, select_services};
use super::outcome::Outcome;
use super::session::Session;
use super::{Common, Error, load};
use crate::drivers::docker_attach::{ExecIo, exec as run_exec};
use crate::ports::{ContainerState, HealthStatus};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub service: String,
    /// The replica's index (`web#2` is 2).
    pub replica: Option<u32>,
    pub host: Option<String>,
    pub command: Vec<String>,
}

/// Runs the command; its output goes to `out` and `err` byte for byte (the caller gives the
/// process's own streams, not colour-stripping ones: the output may be a binary dump).
pub fn exec(
    common: &Common,
    opts: &ExecOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let model = &loaded.model;
    let services = select_services(model, std::slice::from_ref(&opts.service))?;
    if let Some(host) = &opts.host
        && !model.hosts.iter().any(|h| h.name == *host)
    {
        let hosts: Vec<&str> = model.hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(Error::Message(format!(
            "unknown host `{host}`; the hosts are: {}",
            hosts.join(", ")
        )));
    }
    let session = Session::new(common)?;
    // Read only, without the lock: which revision is live.
    let state = session.state_dir().read().ok().flatten();
    let live = state
        .as_ref()
        .and_then(|s| s.services.get(&opts.service).map(|s| s.revision));
    session.block_on(async {
        let mut engines = connect_all(model, err).await?;
        super::logs::note_adopted(&mut engines, state.as_ref());
        let found = discover(&model.project, &engines, &services).await?;
        let chosen = choose(&found, opts, live).map_err(Error::Message)?;
        let docker = engines
            .iter()
            .find(|e| e.pos == chosen.host_pos)
            .map(|e| e.runtime.client())
            .expect("found on a connected engine");
        let tty = std::io::stdin().is_terminal();
        let mut env = Vec::new();
        let (mut stdin, mut resize) = (None, None);
        if tty {
            if let Some(term) = std::env::var_os("TERM") {
                env.push(format!("TERM={}", term.to_string_lossy()));
            }
            stdin = Some(forward_stdin());
            resize = Some(watch_size());
        }
        // Raw from here until the guard drops, also when the exec fails.
        let raw = if tty { Some(RawMode::enable()?) } else { None };
        let result = run_exec(
            docker,
            &chosen.id,
            &opts.command,
            &env,
            ExecIo {
                tty,
                stdin,
                resize,
                out,
                err,
            },
        )
        .await;
        drop(raw);
        let code = result.map_err(|e| Error::Message(format!("{}: {e}", chosen.label())))?;
        Ok(Outcome::Exited {
            code: i32::try_from(code).unwrap_or(255),
        })
    })?
}

/// The replica to run in: the one `--replica` and `--host` name, else the first healthy one
/// (running, and healthy or without a health command) by index, then host order; among
/// containers of one replica, the live revision's, then the newest. The error lists what
/// there is.
pub fn choose<'f>(
    found: &'f [Found],
    opts: &ExecOptions,
    live: Option<u64>,
) -> Result<&'f Found, String> {
    let running: Vec<&Found> = found
        .iter()
        .filter(|f| f.state == ContainerState::Running)
        .collect();
    let names = |list: &[&Found]| {
        let unique: BTreeSet<(u32, usize, String)> = list
            .iter()
            .map(|f| (f.index, f.host_pos, f.label()))
            .collect();
        unique
            .into_iter()
            .map(|(_, _, l)| l)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let service = &opts.service;
    if running.is_empty() {
        return Err(if found.is_empty() {
            format!("service.{service} has no replica on the engines")
        } else {
            let all: Vec<&Found> = found.iter().collect();
            format!(
                "service.{service} has no running replica; stopped: {}",
                names(&all)
            )
        });
    }
    let mut candidates: Vec<&Found> = running
        .iter()
        .copied()
        .filter(|f| opts.replica.is_none_or(|i| f.index == i))
        .filter(|f| opts.host.as_ref().is_none_or(|h| f.host == *h))
        .collect();
    let named = opts.replica.is_some() || opts.host.is_some();
    if !named {
        candidates.retain(|f| f.health.is_none_or(|h| h == HealthStatus::Healthy));
    }
    candidates.sort_by_key(|f| {
        (
            f.index,
            f.host_pos,
            live != Some(f.revision),
            std::cmp::Reverse(f.revision),
        )
    });
    match candidates.first() {
        Some(f) => Ok(f),
        None if named => Err(format!(
            "no running replica {service}#{}@{}; the running replicas are: {}",
            opts.replica.map_or("*".to_string(), |i| i.to_string()),
            opts.host.as_deref().unwrap_or("*"),
            names(&running)
        )),
        None => Err(format!(
            "no healthy replica of service.{service}; the running replicas are: {} (choose one with --replica N)",
            names(&running)
        )),
    }
}

/// Puts the local terminal in raw mode (keys go to the command as typed, Ctrl-C included)
/// and back as it was when dropped.
struct RawMode;

impl RawMode {
    fn enable() -> Result<RawMode, Error> {
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| Error::Message(format!("cannot put the terminal in raw mode: {e}")))?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Reads gantry's stdin on a thread of its own and sends what it reads. A plain thread, not
/// the runtime's blocking pool: a read of a terminal cannot be cancelled, and the runtime
/// must not wait for it when the command has ended.
fn forward_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The terminal's size now, then at each change (SIGWINCH).
fn watch_size() -> mpsc::Receiver<(u16, u16)> {
    let (tx, rx) = mpsc::channel(4);
    if let Ok(size) = crossterm::terminal::size() {
        let _ = tx.try_send(size);
    }
    tokio::spawn(async move {
        let Ok(mut changes) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while changes.recv().await.is_some() {
            if let Ok(size) = crossterm::terminal::size()
                && tx.send(size).await.is_err()
            {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(index: u32, host: &str, pos: usize, revision: u64, running: bool) -> Found {
        Found {
            service: "web".into(),
            index,
            host: host.into(),
            host_pos: pos,
            id: format!("{host}-{index}-{revision}"),
            revision,
            state: if running {
                ContainerState::Running
            } else {
                ContainerState::Exited(0)
            },
            health: None,
        }
    }

    fn opts(replica: Option<u32>, host: Option<&str>) -> ExecOptions {
        ExecOptions {
            service: "web".into(),
            replica,
            host: host.map(str::to_string),
            command: vec!["true".into()],
        }
    }

    #[test]
    fn by_default_the_first_healthy_replica_by_index_then_host() {
        let mut list = vec![
            found(1, "b", 1, 1, true),
            found(1, "a", 0, 1, true),
            found(2, "a", 0, 1, true),
        ];
        assert_eq!(
            choose(&list, &opts(None, None), Some(1)).unwrap().id,
            "a-1-1"
        );
        // An unhealthy one is passed over, unless named.
        list[1].health = Some(HealthStatus::Unhealthy);
        assert_eq!(
            choose(&list, &opts(None, None), Some(1)).unwrap().id,
            "b-1-1"
        );
        assert_eq!(
            choose(&list, &opts(Some(1), Some("a")), Some(1))
                .unwrap()
                .id,
            "a-1-1"
        );
    }

    #[test]
    fn of_two_containers_of_one_replica_the_live_revision_then_the_newest() {
        let list = vec![found(1, "a", 0, 3, true), found(1, "a", 0, 4, true)];
        assert_eq!(
            choose(&list, &opts(None, None), Some(3)).unwrap().id,
            "a-1-3"
        );
        assert_eq!(choose(&list, &opts(None, None), None).unwrap().id, "a-1-4");
    }

    #[test]
    fn a_replica_that_does_not_run_is_an_error_listing_those_that_do() {
        let list = vec![
            found(1, "local", 0, 1, true),
            found(2, "local", 0, 1, true),
            found(3, "local", 0, 1, false),
        ];
        let e = choose(&list, &opts(Some(3), None), None).unwrap_err();
        assert_eq!(
            e,
            "no running replica web#3@*; the running replicas are: web#1@local, web#2@local"
        );
        let e = choose(&list, &opts(None, Some("other")), None).unwrap_err();
        assert!(e.ends_with("are: web#1@local, web#2@local"), "{e}");
        let stopped = vec![found(1, "local", 0, 1, false)];
        let e = choose(&stopped, &opts(None, None), None).unwrap_err();
        assert_eq!(
            e,
            "service.web has no running replica; stopped: web#1@local"
        );
    }
}
