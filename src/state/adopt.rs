//! `gantry adopt`: running containers gantry did not create (a Compose project's, a stack's
//! Swarm services, containers named on the command line) become the current revision of the
//! state, as they run, without a restart. Pure, like the planner: what the engines and the
//! load balancers report comes in as data ([`Inputs`]); out comes the state to record, or
//! every way in which the configuration does not describe what runs ([`Refused`]).
//!
//! What is checked is what the next rollout relies on: each container's service exists, runs
//! on that host, runs the image the configuration names (by image ID on that host), and
//! publishes the service's `port`; load balancers send only to adopted containers. The rest
//! of the configuration (environment, command, options) is not compared: it is what the
//! next apply's new containers run.

use std::collections::BTreeMap;

use crate::model::{LbSpec, Model, NetworkMode, Runtime};
use crate::state::{
    LbState, Member, Origin, Outcome, Replica, ReplicaStatus, RevisionRecord, RevisionService,
    ServiceState, State, SwarmService,
};

/// A container proposed for adoption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The configured host whose engine runs it.
    pub host: String,
    pub id: String,
    pub name: String,
    /// The service of the configuration it is claimed for.
    pub service: String,
    /// Where the claim comes from, in words (`Compose service web`, `--container`).
    pub via: String,
    /// Image ID (`sha256:...`) it runs.
    pub image_id: String,
    /// The image as the engine names it, for messages.
    pub image: String,
    pub running: bool,
    /// Published TCP ports: `(container port, host port)`.
    pub ports: Vec<(u16, u16)>,
    /// Orders a service's containers into replica indices (Compose's container number);
    /// then the name.
    pub number: Option<u32>,
}

/// A Swarm service proposed for adoption (`--stack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmCandidate {
    /// The configured host (a Swarm manager) it was found through.
    pub host: String,
    pub id: String,
    /// `<stack>_<service>`.
    pub name: String,
    /// The configuration's service it is claimed for.
    pub service: String,
    /// The image ID its image resolves to on the manager (`None`: not there).
    pub image_id: Option<String>,
    /// Its image as its spec names it.
    pub image: String,
    /// Published ports through the routing mesh: `(container port, published port)`.
    pub ports: Vec<(u16, u16)>,
    pub replicas: Option<u64>,
}

/// One server line of a load balancer as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `ip:port` (or `name:port`) as the load balancer has it.
    pub address: String,
    /// Sent requests (not `down`, not `backup`, not in maintenance).
    pub active: bool,
    /// A server gantry leaves alone when it changes members (HAProxy servers it did not add):
    /// not adopting it is no loss.
    pub left_alone: bool,
}

/// What a load balancer's members are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbMembers {
    Read(Vec<Server>),
    /// The load balancer cannot be asked (`kind = "command"`): every adopted replica of its
    /// services is taken to be a member.
    Unreadable(String),
    /// Reading it failed: a mismatch, named.
    Failed(String),
}

/// Everything adopt decides from.
pub struct Inputs<'a> {
    pub model: &'a Model,
    pub candidates: Vec<Candidate>,
    pub swarm: Vec<SwarmCandidate>,
    /// `(host, image reference)` -> its image ID on that host (`None`: not there).
    pub image_ids: BTreeMap<(String, String), Option<String>>,
    /// The members of each load balancer an adopted service belongs to.
    pub lbs: BTreeMap<String, LbMembers>,
    pub prior: Option<&'a State>,
    /// The lineage of a new state.
    pub lineage: String,
    /// RFC 3339, UTC.
    pub now: String,
}

/// The state to record, and what it records, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    pub state: State,
    pub revision: u64,
    /// One line per service, container and load balancer recorded.
    pub lines: Vec<String>,
    /// What differs but does not stop the adoption (the next apply takes care of it).
    pub notes: Vec<String>,
}

/// Every reason the configuration does not describe what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub mismatches: Vec<String>,
}

/// `sha256:0123456789ab` (12 hex digits) of an image ID.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Whether two addresses of one machine name the same interface as far as a load balancer
/// on it is concerned (`localhost`, `127.0.0.1`, `0.0.0.0` and `::1` are one).
fn same_ip(a: &str, b: &str) -> bool {
    let local = |s: &str| {
        let s = s.trim_start_matches('[').trim_end_matches(']');
        s == "localhost" || s.starts_with("127.") || s == "0.0.0.0" || s == "::1" || s == "::"
    };
    a == b || (local(a) && local(b))
}

/// Two hosts of the configuration may be one engine (or two managers of one swarm): what is
/// found through both is taken once, through a host its service runs on when there is one.
/// `key` gives an item's (ID, service, host).
fn once_each<T>(
    model: &Model,
    mut found: Vec<T>,
    key: impl Fn(&T) -> (&str, &str, &str),
) -> Vec<T> {
    found.sort_by_key(|c| {
        let (_, service, host) = key(c);
        !model
            .services
            .get(service)
            .is_some_and(|s| s.hosts.iter().any(|h| h == host))
    });
    let mut seen = std::collections::BTreeSet::new();
    found.retain(|c| seen.insert(key(c).0.to_string()));
    found
}

/// Decides what adopt records. `Err` lists every mismatch; nothing is to be recorded then.
pub fn adopt(inputs: Inputs<'_>) -> Result<Adopted, Refused> {
    let model = inputs.model;
    let mut mismatches = Vec::new();
    let mut notes = Vec::new();
    let mut lines = Vec::new();

    if let Some(prior) = inputs.prior
        && (!prior.services.is_empty() || !prior.swarm.is_empty())
    {
        let mut recorded: Vec<&String> = prior.services.keys().chain(prior.swarm.keys()).collect();
        recorded.sort();
        mismatches.push(format!(
            "the state already records {} (revision {}): adopt moves running containers into a project gantry does not run yet; `gantry apply` changes what gantry runs",
            recorded
                .iter()
                .map(|s| format!("service.{s}"))
                .collect::<Vec<_>>()
                .join(", "),
            prior.revision
        ));
    }
    if inputs.candidates.is_empty() && inputs.swarm.is_empty() {
        mismatches.push("no container was found to adopt".to_string());
    }

    let host_address = |host: &str| {
        model
            .hosts
            .iter()
            .find(|h| h.name == host)
            .map(|h| h.address.clone())
            .unwrap_or_default()
    };

    // Containers, by service and host, in replica order.
    let mut by_service: BTreeMap<String, BTreeMap<String, Vec<Candidate>>> = BTreeMap::new();
    for c in once_each(model, inputs.candidates, |c| (&c.id, &c.service, &c.host)) {
        let who = format!("container {} ({}, host `{}`)", c.name, c.via, c.host);
        let Some(spec) = model.services.get(&c.service) else {
            mismatches.push(format!(
                "{who}: the configuration has no service.{}",
                c.service
            ));
            continue;
        };
        if spec.runtime == Runtime::Swarm {
            mismatches.push(format!(
                "{who}: service.{} has runtime = \"swarm\", whose containers are Swarm's tasks; adopt its Swarm service with --stack",
                c.service
            ));
            continue;
        }
        if !spec.hosts.contains(&c.host) {
            mismatches.push(format!(
                "{who}: service.{} runs on {}, not on host `{}`",
                c.service,
                spec.hosts
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                c.host
            ));
            continue;
        }
        if !c.running {
            mismatches.push(format!(
                "{who}: not running; adopt takes over running containers only"
            ));
            continue;
        }
        match inputs.image_ids.get(&(c.host.clone(), spec.image.clone())) {
            Some(Some(want)) if *want == c.image_id => {}
            Some(Some(want)) => mismatches.push(format!(
                "{who}: runs image `{}` ({}), but service.{} has image `{}` ({} on host `{}`)",
                c.image,
                short_id(&c.image_id),
                c.service,
                spec.image,
                short_id(want),
                c.host
            )),
            _ => mismatches.push(format!(
                "{who}: runs image `{}` ({}), but service.{}'s image `{}` is not on host `{}`",
                c.image,
                short_id(&c.image_id),
                c.service,
                spec.image,
                c.host
            )),
        }
        if let Some(port) = spec.port
            && spec.network_mode != NetworkMode::Host
            && !c.ports.iter().any(|(p, _)| *p == port)
        {
            let published = if c.ports.is_empty() {
                "publishes no TCP port".to_string()
            } else {
                format!(
                    "publishes only {}",
                    c.ports
                        .iter()
                        .map(|(p, h)| format!("{p} (on host port {h})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            mismatches.push(format!(
                "{who}: {published}, but service.{} has port = {port}",
                c.service
            ));
        }
        by_service
            .entry(c.service.clone())
            .or_default()
            .entry(c.host.clone())
            .or_default()
            .push(c);
    }

    let revision = inputs.prior.map_or(1, State::next_revision);
    let mut state = match inputs.prior {
        Some(p) => p.clone(),
        None => State::empty(&model.project, inputs.lineage.clone()),
    };
    let mut record_services = BTreeMap::new();

    for (service, hosts) in &mut by_service {
        let spec = &model.services[service];
        let counts: Vec<(String, usize)> = spec
            .hosts
            .iter()
            .map(|h| (h.clone(), hosts.get(h).map_or(0, Vec::len)))
            .collect();
        let count = counts[0].1;
        if counts.iter().any(|(_, n)| *n != count) {
            mismatches.push(format!(
                "service.{service} runs on every host of {}, but the containers found are {}: adopt needs as many on every host",
                counts
                    .iter()
                    .map(|(h, _)| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                counts
                    .iter()
                    .map(|(h, n)| format!("{n} on `{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        let mut recorded_spec = spec.clone();
        if count as u32 != spec.replicas {
            notes.push(format!(
                "service.{service}: {} adopted per host, the configuration says replicas = {}: the next apply scales it",
                plural(count, "container"),
                spec.replicas
            ));
            recorded_spec.replicas = count as u32;
        }
        let mut image_id = None;
        let mut replicas = Vec::new();
        for (host, found) in hosts.iter_mut() {
            found.sort_by(|a, b| (a.number, &a.name).cmp(&(b.number, &b.name)));
            for (i, c) in found.iter().enumerate() {
                let host_port = match (spec.port, spec.network_mode) {
                    (Some(p), NetworkMode::Host) => Some(p),
                    (Some(p), _) => c.ports.iter().find(|(cp, _)| *cp == p).map(|(_, h)| *h),
                    (None, _) => None,
                };
                image_id.get_or_insert_with(|| c.image_id.clone());
                replicas.push(Replica {
                    index: i as u32 + 1,
                    host: host.clone(),
                    name: c.name.clone(),
                    container_id: c.id.clone(),
                    image_id: Some(c.image_id.clone()),
                    revision,
                    host_port,
                    status: ReplicaStatus::Running,
                });
            }
        }
        lines.push(format!(
            "service.{service}: {} as revision {revision}, image `{}` ({})",
            plural(replicas.len(), "container"),
            spec.image,
            image_id.as_deref().map(short_id).unwrap_or_default()
        ));
        for r in &replicas {
            lines.push(format!(
                "  #{} {} on host `{}`{}",
                r.index,
                r.name,
                r.host,
                r.host_port.map_or(String::new(), |p| format!(
                    ", {}:{p}",
                    host_address(&r.host)
                ))
            ));
        }
        record_services.insert(
            service.clone(),
            RevisionService {
                spec: recorded_spec.clone(),
                image_id: image_id.clone(),
                image_digest: None,
                replicas_revision: Some(revision),
            },
        );
        state.services.insert(
            service.clone(),
            ServiceState {
                spec: recorded_spec,
                revision,
                replicas,
                old_colour: None,
            },
        );
    }

    for c in once_each(model, inputs.swarm, |c| (&c.id, &c.service, &c.host)) {
        let who = format!("Swarm service {} (host `{}`)", c.name, c.host);
        let Some(spec) = model.services.get(&c.service) else {
            mismatches.push(format!(
                "{who}: the configuration has no service.{}",
                c.service
            ));
            continue;
        };
        if spec.runtime != Runtime::Swarm {
            mismatches.push(format!(
                "{who}: service.{} is not a Swarm service (runtime = \"swarm\"): gantry would run containers of its own beside Swarm's tasks, which Swarm keeps replacing",
                c.service
            ));
            continue;
        }
        // As `engine::swarm` names it.
        let want_name = format!("{}_{}", model.project, c.service);
        if c.name != want_name {
            mismatches.push(format!(
                "{who}: gantry names the Swarm service of service.{} `{want_name}` (`<project>_<service>`); set [project] name to the stack's name",
                c.service
            ));
            continue;
        }
        if !spec.hosts.contains(&c.host) {
            mismatches.push(format!(
                "{who}: service.{} is set through host `{}`",
                c.service,
                spec.hosts.first().cloned().unwrap_or_default()
            ));
            continue;
        }
        let want = inputs
            .image_ids
            .get(&(c.host.clone(), spec.image.clone()))
            .cloned()
            .flatten();
        match (&c.image_id, &want) {
            (Some(have), Some(want)) if have == want => {}
            (have, want) => mismatches.push(format!(
                "{who}: runs image `{}` ({}), but service.{} has image `{}` ({})",
                c.image,
                have.as_deref()
                    .map_or("not on the manager".to_string(), short_id),
                c.service,
                spec.image,
                want.as_deref()
                    .map_or("not on the manager".to_string(), short_id),
            )),
        }
        let published = match (spec.port, spec.network_mode) {
            (Some(p), NetworkMode::Host) => Some(p),
            (Some(p), _) => match c.ports.iter().find(|(cp, _)| *cp == p) {
                Some((_, h)) => Some(*h),
                None => {
                    mismatches.push(format!(
                        "{who}: does not publish port {p} (service.{}'s `port`)",
                        c.service
                    ));
                    continue;
                }
            },
            (None, _) => None,
        };
        let mut recorded_spec = spec.clone();
        if let Some(n) = c.replicas
            && n as u32 != spec.replicas
        {
            notes.push(format!(
                "service.{}: Swarm runs {n} replicas, the configuration says {}: the next apply updates it",
                c.service, spec.replicas
            ));
            recorded_spec.replicas = n as u32;
        }
        let image_id = c.image_id.clone().unwrap_or_default();
        lines.push(format!(
            "service.{}: Swarm service {} as revision {revision}, image `{}` ({}){}",
            c.service,
            c.name,
            spec.image,
            short_id(&image_id),
            published.map_or(String::new(), |p| format!(
                ", published on {}:{p}",
                host_address(&c.host)
            ))
        ));
        record_services.insert(
            c.service.clone(),
            RevisionService {
                spec: recorded_spec.clone(),
                image_id: Some(image_id.clone()),
                image_digest: None,
                replicas_revision: Some(revision),
            },
        );
        state.swarm.insert(
            c.service.clone(),
            SwarmService {
                host: c.host.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
                image_id,
                revision,
                published_port: published,
            },
        );
        state.services.insert(
            c.service.clone(),
            ServiceState {
                spec: recorded_spec,
                revision,
                replicas: Vec::new(),
                old_colour: None,
            },
        );
    }

    // Load balancers: what they send to now, each server matched to an adopted replica.
    for (lb, spec) in &model.lbs {
        let services: Vec<&String> = record_services
            .keys()
            .filter(|s| model.services[*s].lb.contains(lb))
            .collect();
        if services.is_empty() {
            continue;
        }
        let scoped = model.lb_hosts.get(lb);
        let mut candidates: Vec<Member> = Vec::new();
        for service in &services {
            if let Some(sw) = state.swarm.get(*service) {
                if let Some(port) = sw.published_port {
                    candidates.push(Member {
                        address: format!("{}:{port}", host_address(&sw.host)),
                        service: (*service).clone(),
                        replica: 1,
                        host: sw.host.clone(),
                    });
                }
                continue;
            }
            for r in &state.services[*service].replicas {
                if scoped.is_some_and(|h| !h.contains(&r.host)) {
                    continue;
                }
                if let Some(port) = r.host_port {
                    candidates.push(Member {
                        address: format!("{}:{port}", host_address(&r.host)),
                        service: (*service).clone(),
                        replica: r.index,
                        host: r.host.clone(),
                    });
                }
            }
        }
        let backup = match spec {
            LbSpec::Nginx { backup, .. } => backup.clone(),
            _ => None,
        };
        let mut members = Vec::new();
        match inputs.lbs.get(lb) {
            None => {
                mismatches.push(format!("lb.{lb}: its members were not read"));
                continue;
            }
            Some(LbMembers::Failed(why)) => {
                mismatches.push(format!("lb.{lb}: {why}"));
                continue;
            }
            Some(LbMembers::Unreadable(why)) => {
                notes.push(format!(
                    "lb.{lb}: {why}; every adopted replica of its services is recorded as its member"
                ));
                members = candidates.clone();
            }
            Some(LbMembers::Read(servers)) => {
                for s in servers {
                    if !s.active {
                        continue;
                    }
                    if backup.as_deref() == Some(s.address.as_str()) {
                        continue;
                    }
                    let (ip, port) = s.address.rsplit_once(':').unwrap_or((&s.address, ""));
                    let found = candidates.iter().find(|m| {
                        let (mip, mport) = m.address.rsplit_once(':').unwrap_or(("", ""));
                        mport == port && same_ip(ip, mip)
                    });
                    match found {
                        Some(m) => members.push(m.clone()),
                        None if s.left_alone => notes.push(format!(
                            "lb.{lb} also sends to {}, which is none of the adopted containers: gantry leaves that server alone",
                            s.address
                        )),
                        None => mismatches.push(format!(
                            "lb.{lb} sends to {}, which is none of the adopted containers: gantry sets lb.{lb}'s members as a whole and would drop it (adopt that container too, or take the server out first)",
                            s.address
                        )),
                    }
                }
                for m in &candidates {
                    if !members.iter().any(|x| x.address == m.address) {
                        notes.push(format!(
                            "lb.{lb} does not send to service.{} #{} ({}): it stays out until the next rollout replaces it",
                            m.service, m.replica, m.address
                        ));
                    }
                }
            }
        }
        members.sort();
        members.dedup_by(|a, b| a.address == b.address);
        lines.push(format!(
            "lb.{lb}: {}{}",
            plural(members.len(), "member"),
            if members.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    members
                        .iter()
                        .map(|m| format!("{} (service.{} #{})", m.address, m.service, m.replica))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        state.lbs.insert(
            lb.clone(),
            LbState {
                spec: spec.clone(),
                members,
            },
        );
    }

    for (name, spec) in &model.services {
        if !record_services.contains_key(name) && spec.runtime == Runtime::Container {
            notes.push(format!(
                "service.{name}: nothing adopted; the next apply creates it"
            ));
        }
    }

    if !mismatches.is_empty() {
        return Err(Refused { mismatches });
    }
    state.revision = revision;
    state.serial += 1;
    state.history.push(RevisionRecord {
        revision,
        started_at: inputs.now.clone(),
        finished_at: Some(inputs.now),
        origin: Origin::Adopt,
        outcome: Outcome::Succeeded,
        services: record_services,
        tasks: BTreeMap::new(),
        failure: None,
    });
    Ok(Adopted {
        state,
        revision,
        lines,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[project]
name = "shop"

[service.web]
image = "shop/web:2"
replicas = 2
port = 8080
lb = ["front"]

[service.worker]
image = "shop/worker:2"

[lb.front]
kind = "nginx"
upstream = "web"
upstream_file = "upstream.conf"
check = ["true"]
reload = ["true"]
"#;

    fn container(name: &str, service: &str, image: &str, ports: &[(u16, u16)]) -> Candidate {
        Candidate {
            host: "local".into(),
            id: format!("id-{name}"),
            name: name.into(),
            service: service.into(),
            via: format!("Compose service {service}"),
            image_id: image.into(),
            image: "shop/web:2".into(),
            running: true,
            ports: ports.to_vec(),
            number: name.rsplit('-').next().and_then(|n| n.parse().ok()),
        }
    }

    fn server(address: &str) -> Server {
        Server {
            address: address.into(),
            active: true,
            left_alone: false,
        }
    }

    fn inputs<'a>(
        model: &'a Model,
        candidates: Vec<Candidate>,
        servers: Vec<Server>,
    ) -> Inputs<'a> {
        Inputs {
            model,
            candidates,
            swarm: Vec::new(),
            image_ids: BTreeMap::from([(
                ("local".to_string(), "shop/web:2".to_string()),
                Some("sha256:aaaa".to_string()),
            )]),
            lbs: BTreeMap::from([("front".to_string(), LbMembers::Read(servers))]),
            prior: None,
            lineage: "lineage".into(),
            now: "2026-12-03T18:00:00Z".into(),
        }
    }

    #[test]
    fn compose_containers_become_the_current_revision_with_their_lb_members() {
        let model = crate::testing::model(CONFIG);
        let adopted = adopt(inputs(
            &model,
            // Listed out of order: Compose's container number orders the replicas.
            vec![
                container("shop-web-2", "web", "sha256:aaaa", &[(8080, 32002)]),
                container(
                    "shop-web-1",
                    "web",
                    "sha256:aaaa",
                    &[(8080, 32001), (9090, 32100)],
                ),
            ],
            vec![
                server("localhost:32001"),
                server("127.0.0.1:32002"),
                Server {
                    address: "127.0.0.1:9".into(),
                    active: false,
                    left_alone: false,
                },
            ],
        ))
        .unwrap();
        let s = &adopted.state;
        assert_eq!((s.revision, s.serial, adopted.revision), (1, 1, 1));
        let web = &s.services["web"];
        let replicas: Vec<(u32, &str, Option<u16>, u64)> = web
            .replicas
            .iter()
            .map(|r| (r.index, r.name.as_str(), r.host_port, r.revision))
            .collect();
        assert_eq!(
            replicas,
            [
                (1, "shop-web-1", Some(32001), 1),
                (2, "shop-web-2", Some(32002), 1)
            ]
        );
        assert_eq!(web.spec, model.services["web"]);
        let members: Vec<(&str, u32)> = s.lbs["front"]
            .members
            .iter()
            .map(|m| (m.address.as_str(), m.replica))
            .collect();
        assert_eq!(members, [("127.0.0.1:32001", 1), ("127.0.0.1:32002", 2)]);
        let record = &s.history[0];
        assert_eq!(record.origin, Origin::Adopt);
        assert_eq!(record.outcome, Outcome::Succeeded);
        assert_eq!(record.services["web"].replicas_revision, Some(1));
        assert_eq!(
            record.services["web"].image_id.as_deref(),
            Some("sha256:aaaa")
        );
        assert!(
            adopted
                .notes
                .iter()
                .any(|n| n.contains("service.worker: nothing adopted")),
            "{:?}",
            adopted.notes
        );
        // The next plan of the same configuration changes nothing but creating `worker`.
        let plan = crate::plan::plan(&model, Some(s), "sha");
        let web_change = plan
            .changes
            .iter()
            .find(|c| c.address.name == "web")
            .unwrap();
        assert_eq!(web_change.action, crate::plan::Action::NoOp);
    }

    #[test]
    fn a_container_seen_through_two_hosts_of_one_engine_is_taken_once() {
        let model = crate::testing::model(&format!(
            "[[host]]\nname = \"a\"\n\n[[host]]\nname = \"b\"\n{}",
            CONFIG.replace("replicas = 2\n", "replicas = 1\nhosts = [\"b\"]\n")
        ));
        let mut on_a = container("shop-web-1", "web", "sha256:aaaa", &[(8080, 32001)]);
        on_a.host = "a".into();
        let mut on_b = on_a.clone();
        on_b.host = "b".into();
        let mut i = inputs(&model, vec![on_a, on_b], vec![server("127.0.0.1:32001")]);
        i.image_ids = BTreeMap::from([
            (
                ("a".into(), "shop/web:2".into()),
                Some("sha256:aaaa".into()),
            ),
            (
                ("b".into(), "shop/web:2".into()),
                Some("sha256:aaaa".into()),
            ),
        ]);
        let adopted = adopt(i).unwrap();
        let replicas = &adopted.state.services["web"].replicas;
        assert_eq!(replicas.len(), 1);
        assert_eq!(replicas[0].host, "b");
    }

    /// Two configured hosts that are managers of one swarm list the same stack service:
    /// it is taken once, through the host its service is set through, not refused for the
    /// other one.
    #[test]
    fn a_swarm_service_seen_through_two_managers_is_taken_once() {
        let model = crate::testing::model(
            "[project]\nname = \"shop\"\n\n[[host]]\nname = \"a\"\n\n[[host]]\nname = \"b\"\n\n[service.web]\nimage = \"shop/web:2\"\nruntime = \"swarm\"\nhosts = [\"b\"]\nport = 8080\n",
        );
        let on = |host: &str| SwarmCandidate {
            host: host.into(),
            id: "svc-1".into(),
            name: "shop_web".into(),
            service: "web".into(),
            image_id: Some("sha256:aaaa".into()),
            image: "shop/web:2".into(),
            ports: vec![(8080, 30080)],
            replicas: Some(1),
        };
        let mut i = inputs(&model, Vec::new(), Vec::new());
        i.swarm = vec![on("a"), on("b")];
        i.lbs = BTreeMap::new();
        i.image_ids = ["a", "b"]
            .into_iter()
            .map(|h| {
                (
                    (h.to_string(), "shop/web:2".to_string()),
                    Some("sha256:aaaa".to_string()),
                )
            })
            .collect();
        let adopted = adopt(i).unwrap_or_else(|r| panic!("{:?}", r.mismatches));
        assert_eq!(adopted.state.swarm.len(), 1);
        assert_eq!(adopted.state.swarm["web"].host, "b");
    }

    #[test]
    fn adopted_containers_without_labels_are_no_drift() {
        let model = crate::testing::model(CONFIG);
        let adopted = adopt(inputs(
            &model,
            vec![
                container("shop-web-1", "web", "sha256:aaaa", &[(8080, 32001)]),
                container("shop-web-2", "web", "sha256:aaaa", &[(8080, 32002)]),
            ],
            vec![server("127.0.0.1:32001"), server("127.0.0.1:32002")],
        ))
        .unwrap();
        let engine = |name: &str, port: u16| crate::ports::ContainerInfo {
            id: format!("id-{name}"),
            name: name.into(),
            labels: BTreeMap::from([("com.docker.compose.service".into(), "web".into())]),
            state: crate::ports::ContainerState::Running,
            host_port: Some(port),
            image_id: "sha256:aaaa".into(),
            health: None,
            settings: None,
        };
        let engines = BTreeMap::from([(
            "local".to_string(),
            vec![engine("shop-web-1", 32001), engine("shop-web-2", 32002)],
        )]);
        assert_eq!(crate::plan::drift::detect(&adopted.state, &engines), []);
        // Gone is drift as for any replica.
        let engines = BTreeMap::from([("local".to_string(), vec![engine("shop-web-1", 32001)])]);
        let drift = crate::plan::drift::detect(&adopted.state, &engines);
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].kind, crate::plan::drift::DriftKind::Gone);
    }

    #[test]
    fn every_mismatch_is_named_and_nothing_is_recorded() {
        let model = crate::testing::model(CONFIG);
        let mut stopped = container("shop-web-3", "web", "sha256:aaaa", &[]);
        stopped.running = false;
        let refused = adopt(inputs(
            &model,
            vec![
                container("shop-web-1", "web", "sha256:bbbb", &[(8080, 32001)]),
                container("shop-web-2", "web", "sha256:aaaa", &[(8081, 32002)]),
                container("shop-db-1", "db", "sha256:cccc", &[]),
                stopped,
            ],
            vec![server("127.0.0.1:32001"), server("10.0.0.7:8080")],
        ))
        .unwrap_err();
        let m = refused.mismatches.join("\n");
        for expected in [
            "container shop-web-1 (Compose service web, host `local`): runs image `shop/web:2` (sha256:bbbb), but service.web has image `shop/web:2` (sha256:aaaa on host `local`)",
            "container shop-web-2 (Compose service web, host `local`): publishes only 8081 (on host port 32002), but service.web has port = 8080",
            "container shop-db-1 (Compose service db, host `local`): the configuration has no service.db",
            "container shop-web-3 (Compose service web, host `local`): not running",
            "lb.front sends to 10.0.0.7:8080, which is none of the adopted containers",
        ] {
            assert!(m.contains(expected), "missing {expected:?} in:\n{m}");
        }
    }

    #[test]
    fn a_replica_count_that_differs_is_recorded_and_planned_as_a_scale() {
        let model = crate::testing::model(CONFIG);
        let adopted = adopt(inputs(
            &model,
            vec![container(
                "shop-web-1",
                "web",
                "sha256:aaaa",
                &[(8080, 32001)],
            )],
            vec![server("127.0.0.1:32001")],
        ))
        .unwrap();
        assert_eq!(adopted.state.services["web"].spec.replicas, 1);
        let plan = crate::plan::plan(&model, Some(&adopted.state), "sha");
        let web = plan
            .changes
            .iter()
            .find(|c| c.address.name == "web")
            .unwrap();
        assert_eq!(web.action, crate::plan::Action::Scale);
    }

    #[test]
    fn a_state_that_records_services_is_not_adopted_into() {
        let model = crate::testing::model(CONFIG);
        let first = adopt(inputs(
            &model,
            vec![container(
                "shop-web-1",
                "web",
                "sha256:aaaa",
                &[(8080, 32001)],
            )],
            vec![],
        ))
        .unwrap();
        let mut again = inputs(
            &model,
            vec![container(
                "shop-web-1",
                "web",
                "sha256:aaaa",
                &[(8080, 32001)],
            )],
            vec![],
        );
        again.prior = Some(&first.state);
        let refused = adopt(again).unwrap_err();
        assert!(
            refused.mismatches[0].starts_with("the state already records service.web (revision 1)"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_command_load_balancer_gets_every_adopted_replica() {
        let model = crate::testing::model(CONFIG);
        let mut i = inputs(
            &model,
            vec![container(
                "shop-web-1",
                "web",
                "sha256:aaaa",
                &[(8080, 32001)],
            )],
            vec![],
        );
        i.lbs
            .insert("front".into(), LbMembers::Unreadable("cannot ask".into()));
        let adopted = adopt(i).unwrap();
        assert_eq!(adopted.state.lbs["front"].members.len(), 1);
        assert!(
            adopted
                .notes
                .iter()
                .any(|n| n.starts_with("lb.front: cannot ask"))
        );
    }
}
