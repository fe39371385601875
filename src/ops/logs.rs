//! `gantry logs`: the output of every replica of the chosen services on every host, merged
//! in time order, each line prefixed with the replica it came from (`web#2@host-a | `).
//!
//! Which replicas exist is read from the engines, by gantry's labels (`dev.gantry.project`,
//! `dev.gantry.service`, `dev.gantry.replica`, `dev.gantry.host`), one list call per host, not
//! from the state: while an apply runs, the replicas it has just started are on the engines
//! before the state records them, `--follow` has to ask the engines anyway to pick up the
//! replicas a rollout starts, and logs stay readable when the state is lost. Like `status`,
//! it takes no lock: it changes nothing, and it is most needed while an apply runs.
//!
//! `gantry exec` finds its replica the same way ([`discover`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anstyle::{AnsiColor, Style};

use super::outcome::Outcome;
use super::session::{Session, engine};
use super::{Common, Error, emit, load};
use crate::drivers::docker::DockerRuntime;
use crate::drivers::docker_attach::{LogLine, LogQuery, log_lines};
use crate::model::{Model, Runtime};
use crate::ports::{ContainerRuntime, ContainerState, HealthStatus, labels};

#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Services to show; empty: all of them.
    pub services: Vec<String>,
    pub follow: bool,
    /// A duration back from now (`10m`) or an RFC 3339 time.
    pub since: Option<String>,
    /// Lines per replica.
    pub tail: Option<u64>,
    /// Also the stopped replicas (kept for a rollback, or stopped behind gantry's back).
    pub stopped: bool,
    /// Show the engine's time of each line after the prefix.
    pub timestamps: bool,
}

/// How often `--follow` asks the engines for replicas that started.
const POLL: Duration = Duration::from_secs(1);
/// Lines that arrive within this window are put in time order before they are written.
const REORDER: Duration = Duration::from_millis(200);

/// One container of a replica of a service, as the engine labels it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub service: String,
    pub index: u32,
    pub host: String,
    /// The host's place in the configuration (first host first).
    pub host_pos: usize,
    pub id: String,
    pub revision: u64,
    pub state: ContainerState,
    pub health: Option<HealthStatus>,
}

impl Found {
    /// `web#2@host-a`.
    pub fn label(&self) -> String {
        replica_label(&self.service, self.index, &self.host)
    }

    fn order(&self) -> (&str, u32, usize, u64) {
        (&self.service, self.index, self.host_pos, self.revision)
    }
}

pub fn replica_label(service: &str, index: u32, host: &str) -> String {
    format!("{service}#{index}@{host}")
}

/// The connected engine of one host of the configuration.
pub struct Engine {
    pub host: String,
    pub pos: usize,
    pub runtime: DockerRuntime,
    /// Replicas the state records on this host that may carry no gantry label (adopted by
    /// `gantry adopt`): container ID -> (service, index, revision).
    pub adopted: BTreeMap<String, (String, u32, u64)>,
}

/// Notes on each engine the replicas `state` records there, so that [`discover`] finds the
/// adopted ones (no gantry label) by their ID.
pub fn note_adopted(engines: &mut [Engine], state: Option<&crate::state::State>) {
    let Some(state) = state else { return };
    for (service, s) in &state.services {
        for r in &s.replicas {
            if let Some(e) = engines.iter_mut().find(|e| e.host == r.host) {
                e.adopted.insert(
                    r.container_id.clone(),
                    (service.clone(), r.index, r.revision),
                );
            }
        }
    }
}

/// Connects every host of the configuration. A host that cannot be reached is named on
/// `err` and left out (the others still answer); an error when none can be reached.
pub async fn connect_all(model: &Model, err: &mut dyn Write) -> Result<Vec<Engine>, Error> {
    let mut engines = Vec::new();
    let mut failures = Vec::new();
    for (pos, h) in model.hosts.iter().enumerate() {
        match engine(h).await {
            Ok(runtime) => match runtime.ping().await {
                Ok(()) => engines.push(Engine {
                    host: h.name.clone(),
                    pos,
                    runtime,
                    adopted: BTreeMap::new(),
                }),
                Err(e) => failures.push(format!("host `{}`: {e}", h.name)),
            },
            Err(e) => failures.push(e.to_string()),
        }
    }
    if engines.is_empty() && !failures.is_empty() {
        return Err(Error::Message(failures.join("\n")));
    }
    for f in failures {
        emit(err, &format!("warning: {f}; its replicas are left out\n"))?;
    }
    Ok(engines)
}

/// The services named (all but the Swarm ones when none are), each checked against the
/// configuration: an unknown name is an error listing the services there are.
pub fn select_services(model: &Model, named: &[String]) -> Result<BTreeSet<String>, Error> {
    if named.is_empty() {
        return Ok(model
            .services
            .iter()
            .filter(|(_, s)| s.runtime != Runtime::Swarm)
            .map(|(name, _)| name.clone())
            .collect());
    }
    let mut chosen = BTreeSet::new();
    for name in named {
        match model.services.get(name) {
            None => {
                let known: Vec<&str> = model.services.keys().map(String::as_str).collect();
                return Err(Error::Message(format!(
                    "unknown service `{name}`; the services are: {}",
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            Some(s) if s.runtime == Runtime::Swarm => {
                return Err(Error::Message(format!(
                    "service.{name} runs on Docker Swarm: its tasks are Swarm's (`docker service logs` / `docker exec` on the node)"
                )));
            }
            Some(_) => {
                chosen.insert(name.clone());
            }
        }
    }
    Ok(chosen)
}

/// Every container of a replica of `services` on `engines` (running or not), sorted by
/// service, index, host and revision. One list call per host.
pub async fn discover(
    project: &str,
    engines: &[Engine],
    services: &BTreeSet<String>,
) -> Result<Vec<Found>, Error> {
    let mut found = Vec::new();
    for e in engines {
        // Adopted replicas carry no label of gantry's: then every container is listed.
        let filter: &[(&str, &str)] = if e.adopted.is_empty() {
            &[(labels::PROJECT, project)]
        } else {
            &[]
        };
        let listed = e
            .runtime
            .list(filter)
            .await
            .map_err(|err| Error::Message(format!("host `{}`: {err}", e.host)))?;
        for c in listed {
            let label = |key: &str| c.labels.get(key);
            let (service, index, revision) = if label(labels::PROJECT).is_some_and(|p| p == project)
            {
                // Two hosts of the configuration may be one engine: each sees its own.
                if label(labels::HOST).is_some_and(|h| *h != e.host) {
                    continue;
                }
                let (Some(service), Some(index)) = (
                    label(labels::SERVICE),
                    label(labels::REPLICA).and_then(|i| i.parse().ok()),
                ) else {
                    continue;
                };
                let revision = label(labels::REVISION)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                (service.clone(), index, revision)
            } else if let Some(known) = e.adopted.get(&c.id) {
                known.clone()
            } else {
                continue;
            };
            if !services.contains(&service) {
                continue;
            }
            found.push(Found {
                service,
                index,
                host: e.host.clone(),
                host_pos: e.pos,
                revision,
                id: c.id.clone(),
                state: c.state,
                health: c.health.as_ref().map(|h| h.status),
            });
        }
    }
    found.sort_by(|a, b| a.order().cmp(&b.order()));
    Ok(found)
}

pub fn logs(
    common: &Common,
    opts: &LogsOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let model = &loaded.model;
    let services = select_services(model, &opts.services)?;
    let started = SystemTime::now();
    let since = match &opts.since {
        Some(s) => Some(parse_since(s, started).map_err(Error::Message)?),
        None => None,
    };
    let session = Session::new(common)?;
    // Read only, without the lock: the replicas adopted containers are (no gantry label).
    let state = session.state_dir().read().ok().flatten();
    session.block_on(async {
        let mut engines = connect_all(model, err).await?;
        note_adopted(&mut engines, state.as_ref());
        let found = discover(&model.project, &engines, &services).await?;
        let shown: Vec<Found> = found
            .iter()
            .filter(|f| opts.stopped || f.state == ContainerState::Running)
            .cloned()
            .collect();
        if shown.is_empty() && !opts.follow {
            emit(
                err,
                &format!(
                    "No {}replica of {} on the engines.\n",
                    if opts.stopped { "" } else { "running " },
                    services.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            )?;
            return Ok(Outcome::Done);
        }
        let mut printer = Printer::new(common.color, opts.timestamps);
        for f in &shown {
            printer.colour_of(&f.label());
        }
        // What is there now, read to its end and merged.
        let query = LogQuery {
            follow: false,
            since: since.map_or(0, unix_seconds),
            tail: opts.tail,
        };
        let mut backlog = Vec::new();
        for f in &shown {
            let docker = client(&engines, f);
            let mut lines = Vec::new();
            let mut stream = log_lines(docker, &f.id, query);
            while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                match chunk {
                    Ok(chunk) => lines.extend(chunk),
                    Err(e) => {
                        emit(err, &format!("warning: {}: {e}\n", f.label()))?;
                        break;
                    }
                }
            }
            // The engine filters by whole seconds: the rest of the second goes here.
            lines.retain(|l| since.is_none_or(|s| l.at.is_none_or(|at| at >= s)));
            backlog.push(lines);
        }
        let mut last: HashMap<String, SystemTime> = HashMap::new();
        for (f, lines) in shown.iter().zip(&backlog) {
            if let Some(at) = lines.iter().filter_map(|l| l.at).max() {
                last.insert(f.id.clone(), at);
            }
        }
        let labels: Vec<String> = shown.iter().map(Found::label).collect();
        let merged = merge(backlog);
        let text: String = merged
            .iter()
            .map(|(i, line)| printer.line(&labels[*i], line))
            .collect();
        if !write(out, &text)? || !opts.follow {
            return Ok(Outcome::Done);
        }
        let known: HashSet<String> = found.iter().map(|f| f.id.clone()).collect();
        follow(FollowStart {
            project: &model.project,
            engines: &engines,
            services: &services,
            since,
            started,
            known,
            last,
            printer,
            out,
            err,
        })
        .await
    })?
}

/// Where `--follow` starts from, after the lines that were there.
struct FollowStart<'a> {
    project: &'a str,
    engines: &'a [Engine],
    services: &'a BTreeSet<String>,
    since: Option<SystemTime>,
    started: SystemTime,
    /// The containers there were at the start: their earlier lines are not new.
    known: HashSet<String>,
    /// The time of the last line shown of each container.
    last: HashMap<String, SystemTime>,
    printer: Printer,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

enum Event {
    Lines(usize, Vec<LogLine>),
    Failed(usize, String),
    Ended(usize),
}

/// Streams what running replicas write, and every second asks the engines for replicas
/// that started since (a rollout's new ones, or kept ones started again by a rollback):
/// their lines join the stream. Stops on Ctrl-C, or when stdout is closed.
async fn follow(start: FollowStart<'_>) -> Result<Outcome, Error> {
    let FollowStart {
        project,
        engines,
        services,
        since,
        started,
        known,
        mut last,
        mut printer,
        out,
        err,
    } = start;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    // One entry per stream started: the container, its label, and lines at or before
    // `skip_until` (already shown before the stream stopped) are dropped.
    let mut streams: Vec<(Found, Option<SystemTime>)> = Vec::new();
    let mut active: HashSet<String> = HashSet::new();
    let mut pending: Vec<(SystemTime, usize, usize, LogLine)> = Vec::new();
    let mut seq = 0usize;
    let mut poll = tokio::time::interval(POLL);
    let mut flush = tokio::time::interval(REORDER);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            _ = poll.tick() => {
                let found = match discover(project, engines, services).await {
                    Ok(found) => found,
                    Err(e) => {
                        emit(err, &format!("warning: {e}\n"))?;
                        continue;
                    }
                };
                for f in found {
                    if f.state != ContainerState::Running || active.contains(&f.id) {
                        continue;
                    }
                    let from = match last.get(&f.id).copied() {
                        // Shown before, stopped, running again: from where it was.
                        Some(at) => Some(at),
                        // There at the start but not shown (stopped): only what is new.
                        None if known.contains(&f.id) => Some(started.max(since.unwrap_or(UNIX_EPOCH))),
                        // Started since: all of it (from `since`).
                        None => since,
                    };
                    let query = LogQuery {
                        follow: true,
                        since: from.map_or(0, unix_seconds),
                        tail: None,
                    };
                    let mut stream = log_lines(client(engines, &f), &f.id, query);
                    let slot = streams.len();
                    printer.colour_of(&f.label());
                    active.insert(f.id.clone());
                    streams.push((f, from));
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                            let event = match chunk {
                                Ok(lines) if lines.is_empty() => continue,
                                Ok(lines) => Event::Lines(slot, lines),
                                Err(e) => Event::Failed(slot, e.to_string()),
                            };
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                        let _ = tx.send(Event::Ended(slot));
                    });
                }
            }
            Some(event) = rx.recv() => match event {
                Event::Lines(slot, lines) => {
                    let (f, skip_until) = &streams[slot];
                    for line in lines {
                        let at = line.at.unwrap_or_else(SystemTime::now);
                        if skip_until.is_some_and(|s| at <= s) {
                            continue;
                        }
                        let newest = last.entry(f.id.clone()).or_insert(at);
                        *newest = (*newest).max(at);
                        pending.push((at, slot, seq, line));
                        seq += 1;
                    }
                }
                Event::Failed(slot, e) => {
                    emit(err, &format!("warning: {}: {e}\n", streams[slot].0.label()))?;
                }
                Event::Ended(slot) => {
                    active.remove(&streams[slot].0.id);
                }
            },
            _ = flush.tick() => {
                if pending.is_empty() {
                    continue;
                }
                pending.sort_by_key(|(at, _, seq, _)| (*at, *seq));
                let text: String = pending
                    .drain(..)
                    .map(|(_, slot, _, line)| printer.line(&streams[slot].0.label(), &line))
                    .collect();
                if !write(out, &text)? {
                    break;
                }
            }
        }
    }
    Ok(Outcome::Done)
}

fn client<'e>(engines: &'e [Engine], f: &Found) -> &'e bollard::Docker {
    engines
        .iter()
        .find(|e| e.pos == f.host_pos)
        .map(|e| e.runtime.client())
        .expect("found on a connected engine")
}

/// Writes `text`; `Ok(false)` when stdout is closed (`gantry logs -f | head`): time to stop.
fn write(out: &mut dyn Write, text: &str) -> Result<bool, Error> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::Message(format!("writing to stdout: {e}"))),
    }
}

/// Merges the lines of several replicas, each in its own order, into one in time order
/// (k-way: a replica's lines never change order among themselves, even when its clock
/// stepped back). Equal times keep the replicas' order. Returns (replica, line).
pub fn merge(per_replica: Vec<Vec<LogLine>>) -> Vec<(usize, LogLine)> {
    let total = per_replica.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = per_replica
        .into_iter()
        .map(|v| v.into_iter().peekable())
        .collect();
    let key = |line: &LogLine| line.at.unwrap_or(UNIX_EPOCH);
    let mut heap = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(line) = it.peek() {
            heap.push(Reverse((key(line), i)));
        }
    }
    let mut out = Vec::with_capacity(total);
    while let Some(Reverse((_, i))) = heap.pop() {
        let line = iters[i].next().expect("peeked");
        out.push((i, line));
        if let Some(next) = iters[i].peek() {
            heap.push(Reverse((key(next), i)));
        }
    }
    out
}

/// The colours of the prefixes, one per replica in the order they are first shown.
const PALETTE: [AnsiColor; 6] = [
    AnsiColor::Cyan,
    AnsiColor::Yellow,
    AnsiColor::Green,
    AnsiColor::Magenta,
    AnsiColor::Blue,
    AnsiColor::Red,
];

/// Formats lines: `web#2@host-a | text`, the prefix in the replica's colour when `color`
/// (the styles are stripped again where stdout is not a terminal or NO_COLOR is set; see
/// main.rs).
pub struct Printer {
    color: bool,
    timestamps: bool,
    colours: HashMap<String, AnsiColor>,
}

impl Printer {
    pub fn new(color: bool, timestamps: bool) -> Printer {
        Printer {
            color,
            timestamps,
            colours: HashMap::new(),
        }
    }

    fn colour_of(&mut self, label: &str) -> AnsiColor {
        let next = PALETTE[self.colours.len() % PALETTE.len()];
        *self.colours.entry(label.to_string()).or_insert(next)
    }

    /// One line, with its newline.
    pub fn line(&mut self, label: &str, line: &LogLine) -> String {
        let prefix = if self.color {
            let style = Style::new().fg_color(Some(self.colour_of(label).into()));
            format!("{style}{label} |{style:#} ")
        } else {
            format!("{label} | ")
        };
        let time = match (self.timestamps, line.at) {
            (true, Some(at)) => format!("{} ", humantime::format_rfc3339_micros(at)),
            (true, None) => "- ".to_string(),
            (false, _) => String::new(),
        };
        format!("{prefix}{time}{}\n", line.text)
    }
}

/// `--since`: a duration back from `now` (`30s`, `10m`, `1h30m`) or an RFC 3339 time
/// (`2024-05-01T10:00:00Z`, `2024-05-01T12:00:00+02:00`).
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let bad = || {
        format!(
            "--since `{s}`: expected a duration (30s, 10m, 1h) or an RFC 3339 time (2024-05-01T10:00:00Z)"
        )
    };
    if let Ok(d) = humantime::parse_duration(s) {
        return now.checked_sub(d).ok_or_else(bad);
    }
    if let Ok(t) = humantime::parse_rfc3339(s) {
        return Ok(t);
    }
    // humantime reads `Z` only: an offset is applied here.
    if s.len() > 6 {
        let (time, offset) = s.split_at(s.len() - 6);
        let sign = match offset.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        let (h, m) = offset[1..].split_once(':').ok_or_else(bad)?;
        let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        let t = humantime::parse_rfc3339(&format!("{time}Z")).map_err(|_| bad())?;
        let shift = Duration::from_secs(h * 3600 + m * 60);
        // 12:00+02:00 is 10:00Z.
        return if sign > 0 {
            t.checked_sub(shift)
        } else {
            t.checked_add(shift)
        }
        .ok_or_else(bad);
    }
    Err(bad())
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(secs: u64, text: &str) -> LogLine {
        LogLine {
            at: Some(UNIX_EPOCH + Duration::from_secs(secs)),
            stderr: false,
            text: text.into(),
        }
    }

    #[test]
    fn lines_of_several_replicas_are_merged_in_time_order() {
        let a = vec![line(1, "a1"), line(4, "a4"), line(6, "a6")];
        let b = vec![line(2, "b2"), line(4, "b4"), line(5, "b5")];
        let c = vec![];
        let merged = merge(vec![a, b, c]);
        let texts: Vec<&str> = merged.iter().map(|(_, l)| l.text.as_str()).collect();
        // Equal times (4): the first replica's line first.
        assert_eq!(texts, ["a1", "b2", "a4", "b4", "b5", "a6"]);
        let from: Vec<usize> = merged.iter().map(|(i, _)| *i).collect();
        assert_eq!(from, [0, 1, 0, 1, 1, 0]);
    }

    #[test]
    fn a_replica_whose_clock_stepped_back_keeps_its_own_order() {
        let a = vec![line(5, "a5"), line(3, "a3")];
        let b = vec![line(4, "b4")];
        let texts: Vec<String> = merge(vec![a, b]).into_iter().map(|(_, l)| l.text).collect();
        assert_eq!(texts, ["b4", "a5", "a3"]);
    }

    #[test]
    fn each_line_is_prefixed_with_its_replica() {
        let mut p = Printer::new(false, false);
        assert_eq!(
            p.line(&replica_label("web", 2, "host-a"), &line(0, "hello")),
            "web#2@host-a | hello\n"
        );
        let mut p = Printer::new(false, true);
        assert_eq!(
            p.line("web#1@local", &line(1, "x")),
            "web#1@local | 1970-01-01T00:00:01.000000Z x\n"
        );
    }

    #[test]
    fn with_colour_each_replica_keeps_one_colour_of_its_own() {
        let mut p = Printer::new(true, false);
        let a1 = p.line("web#1@a", &line(0, "x"));
        let b = p.line("web#2@a", &line(0, "x"));
        let a2 = p.line("web#1@a", &line(0, "y"));
        assert_eq!(a1, "\u{1b}[36mweb#1@a |\u{1b}[0m x\n");
        assert_eq!(b, "\u{1b}[33mweb#2@a |\u{1b}[0m x\n");
        assert!(a2.starts_with("\u{1b}[36m"), "{a2:?}");
    }

    #[test]
    fn since_takes_a_duration_or_an_rfc3339_time() {
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        assert_eq!(parse_since("10m", now), Ok(now - Duration::from_secs(600)));
        assert_eq!(parse_since("1h", now), Ok(now - Duration::from_secs(3600)));
        let t = humantime::parse_rfc3339("2024-05-01T10:00:00Z").unwrap();
        assert_eq!(parse_since("2024-05-01T10:00:00Z", now), Ok(t));
        assert_eq!(parse_since("2024-05-01T12:00:00+02:00", now), Ok(t));
        assert_eq!(parse_since("2024-05-01T08:30:00-01:30", now), Ok(t));
        let e = parse_since("yesterday", now).unwrap_err();
        assert!(
            e.contains("--since `yesterday`: expected a duration"),
            "{e}"
        );
    }
}
