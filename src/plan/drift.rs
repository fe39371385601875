//! Drift: what the engines run that the state does not say (`gantry plan --refresh`). Pure:
//! given the recorded state and what one list call per engine returned, it names every
//! difference, and the plan rolls the services whose replicas drifted so that apply repairs
//! them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, Plan, ResourceChange, Spec, Summary, diff::AttributeChange};
use crate::model::{NetworkMode, Runtime, ServiceSpec};
use crate::ports::{ContainerInfo, ContainerState, LiveSettings, labels};
use crate::state::{ReplicaStatus, State};

/// One difference between the recorded state and an engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// `service.NAME`, or `host.NAME` for what belongs to no service.
    pub resource: String,
    pub host: String,
    /// The container's name (or ID when it has none).
    pub container: String,
    pub kind: DriftKind,
    /// What was recorded and what the engine says, in words.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// A recorded running replica's container is gone.
    Gone,
    /// A container kept stopped for rollback is gone (a fast rollback to its revision
    /// creates new containers instead).
    KeptGone,
    /// Recorded running; the engine has it stopped.
    Stopped,
    /// Recorded stopped (kept for rollback); the engine has it running.
    Started,
    /// The container runs another image than recorded.
    ImageChanged,
    /// The container publishes another host port than recorded.
    PortChanged,
    /// What can change on a living container differs from the configuration: its restart
    /// policy or resource limits (`docker update`), or the networks it is on (`docker network
    /// connect` / `disconnect`).
    SettingsChanged,
    /// A container with this project's labels the state does not know.
    Unrecorded,
    /// A container gantry does not manage publishes a host port a service uses or reserves.
    ForeignOnPort,
}

impl DriftKind {
    /// Whether apply repairs it by rolling the service (the others are shown only).
    pub fn repaired_by_rolling(self) -> bool {
        matches!(
            self,
            DriftKind::Gone
                | DriftKind::Stopped
                | DriftKind::ImageChanged
                | DriftKind::PortChanged
                | DriftKind::SettingsChanged
        )
    }
}

/// Compares `state` with `engines` (host name -> every container on it, as one list call
/// with `all` returns them).
pub fn detect(state: &State, engines: &BTreeMap<String, Vec<ContainerInfo>>) -> Vec<Drift> {
    let mut out = Vec::new();
    for (name, s) in &state.services {
        let resource = format!("service.{name}");
        for r in &s.replicas {
            let Some(found) = engines.get(&r.host) else {
                continue;
            };
            let container = found.iter().find(|c| c.id == r.container_id);
            let mut push = |kind, detail: String| {
                out.push(Drift {
                    resource: resource.clone(),
                    host: r.host.clone(),
                    container: r.name.clone(),
                    kind,
                    detail,
                })
            };
            let Some(c) = container else {
                match r.status {
                    ReplicaStatus::Running => push(
                        DriftKind::Gone,
                        format!("#{} recorded running; no such container", r.index),
                    ),
                    ReplicaStatus::Stopped => push(
                        DriftKind::KeptGone,
                        format!(
                            "#{} of revision {} was kept stopped for rollback; no such container",
                            r.index, r.revision
                        ),
                    ),
                }
                continue;
            };
            let running = c.state == ContainerState::Running;
            match (r.status, running) {
                (ReplicaStatus::Running, false) => push(
                    DriftKind::Stopped,
                    format!(
                        "#{} recorded running; the engine has it {}",
                        r.index,
                        describe(c.state)
                    ),
                ),
                (ReplicaStatus::Stopped, true) => push(
                    DriftKind::Started,
                    format!(
                        "#{} recorded stopped (kept for rollback); the engine has it running, outside any load balancer",
                        r.index
                    ),
                ),
                _ => {}
            }
            if let Some(recorded) = &r.image_id
                && !c.image_id.is_empty()
                && *recorded != c.image_id
            {
                push(
                    DriftKind::ImageChanged,
                    format!(
                        "#{} recorded image {}; the container runs {}",
                        r.index,
                        short(recorded),
                        short(&c.image_id)
                    ),
                );
            }
            if running
                && r.status == ReplicaStatus::Running
                && let (Some(recorded), Some(now)) = (r.host_port, c.host_port)
                && recorded != now
            {
                push(
                    DriftKind::PortChanged,
                    format!(
                        "#{} recorded on host port {recorded}; the engine publishes it on {now} (load balancers still send to {recorded})",
                        r.index
                    ),
                );
            }
            // Only the live revision's replicas run the recorded spec (a blue-green old colour
            // runs the one before).
            if running
                && r.status == ReplicaStatus::Running
                && r.revision == s.revision
                && s.spec.runtime != Runtime::Swarm
                && let Some(now) = &c.settings
            {
                let want = expected_settings(&state.project, &s.spec);
                for detail in settings_differences(r.index, &want, now) {
                    push(DriftKind::SettingsChanged, detail);
                }
            }
        }
    }
    let recorded: Vec<&str> = state
        .services
        .values()
        .flat_map(|s| s.replicas.iter().map(|r| r.container_id.as_str()))
        .collect();
    for (host, found) in engines {
        for c in found {
            let ours = c.labels.get(labels::PROJECT) == Some(&state.project);
            // A task's container lives only while its apply runs.
            let task = c.labels.contains_key(labels::TASK);
            if ours && !task && !recorded.contains(&c.id.as_str()) {
                let service = c.labels.get(labels::SERVICE).cloned().unwrap_or_default();
                out.push(Drift {
                    resource: format!("service.{service}"),
                    host: host.clone(),
                    container: c.name.clone(),
                    kind: DriftKind::Unrecorded,
                    detail: format!(
                        "carries this project's labels ({}) but is not in the state",
                        describe(c.state)
                    ),
                });
                continue;
            }
            // An adopted container (`gantry adopt`) carries no label of gantry's, but it is
            // recorded: it is the service's own, not a foreign one on its port.
            if ours || c.state != ContainerState::Running || recorded.contains(&c.id.as_str()) {
                continue;
            }
            let Some(port) = c.host_port else { continue };
            for (name, s) in &state.services {
                let in_range = s
                    .spec
                    .host_ports
                    .is_some_and(|r| (r.start..=r.end).contains(&port));
                // A fixed port of `publish` (or the port of a service on the host's network)
                // is the service's on every host it runs on.
                let fixed = s.spec.hosts.contains(host)
                    && (s.spec.publish.iter().any(|p| p.host_port == port)
                        || (s.spec.network_mode == crate::model::NetworkMode::Host
                            && s.spec.port == Some(port)));
                let used = s
                    .replicas
                    .iter()
                    .any(|r| r.host == *host && r.host_port == Some(port));
                if in_range || used || fixed {
                    out.push(Drift {
                        resource: format!("service.{name}"),
                        host: host.clone(),
                        container: c.name.clone(),
                        kind: DriftKind::ForeignOnPort,
                        detail: format!(
                            "a container gantry does not manage publishes host port {port}, which service.{name} {}",
                            if used {
                                "uses"
                            } else if fixed {
                                "binds (a fixed port)"
                            } else {
                                "reserves (host_ports)"
                            }
                        ),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.resource, &a.host, &a.container, a.kind as u8).cmp(&(
            &b.resource,
            &b.host,
            &b.container,
            b.kind as u8,
        ))
    });
    out
}

/// Records `drift` in the plan and rolls every unchanged service whose replicas drifted in a
/// way a roll repairs (new containers for all its replicas, the drifted ones leave).
pub fn apply_to_plan(plan: &mut Plan, drift: Vec<Drift>, state: &State) {
    for change in &mut plan.changes {
        if change.action != Action::NoOp {
            continue;
        }
        let address = change.address.to_string();
        let reasons: Vec<&Drift> = drift
            .iter()
            .filter(|d| d.resource == address && d.kind.repaired_by_rolling())
            .collect();
        if reasons.is_empty() {
            continue;
        }
        if let (Some(Spec::Service(before)), Some(Spec::Service(after))) =
            (change.before.clone(), change.after.clone())
        {
            roll_for_drift(change, &before, &after, state, &reasons);
        }
    }
    plan.summary = Summary::count(&plan.changes);
    plan.drift = drift;
}

fn roll_for_drift(
    change: &mut ResourceChange,
    before: &crate::model::ServiceSpec,
    after: &crate::model::ServiceSpec,
    state: &State,
    reasons: &[&Drift],
) {
    change.action = Action::Replace;
    change.attributes.push(AttributeChange {
        path: "drift".into(),
        before: Some(serde_json::Value::String(
            reasons
                .iter()
                .map(|d| format!("{}: {}", d.container, d.detail))
                .collect::<Vec<_>>()
                .join("; "),
        )),
        after: Some(serde_json::Value::String(
            "every replica running as recorded".into(),
        )),
        sensitive: false,
        forces_replacement: true,
    });
    change.steps = super::roll_steps(before, after, state);
    change.roll_order = super::RollOrder::of(after);
}

/// What `inspect` reports of a replica created from `spec` (see [`LiveSettings`]).
fn expected_settings(project: &str, spec: &ServiceSpec) -> LiveSettings {
    let mut networks = match spec.network_mode {
        NetworkMode::Host => vec!["host".to_string()],
        NetworkMode::None => vec!["none".to_string()],
        NetworkMode::Project => std::iter::once(project.to_string())
            .chain(spec.networks.iter().cloned())
            .collect(),
    };
    networks.sort();
    networks.dedup();
    LiveSettings {
        restart: spec.restart,
        memory_bytes: spec.resources.memory.map(|m| m.0),
        nano_cpus: spec.resources.cpus.map(crate::ports::nano_cpus),
        networks,
    }
}

/// One sentence per difference between `want` and what the engine reports.
fn settings_differences(index: u32, want: &LiveSettings, now: &LiveSettings) -> Vec<String> {
    let mut out = Vec::new();
    if want.restart != now.restart {
        out.push(format!(
            "#{index} has restart policy `{}`; the configuration says `{}` (changed with `docker update`)",
            now.restart, want.restart
        ));
    }
    let limit = |v: Option<u64>, unit: fn(u64) -> String| v.map_or("no limit".to_string(), unit);
    let bytes = |b: u64| format!("{b} bytes");
    let cpus = |n: u64| format!("{} CPUs", n as f64 / 1e9);
    if want.memory_bytes != now.memory_bytes {
        out.push(format!(
            "#{index} has memory limit {}; the configuration says {} (changed with `docker update`)",
            limit(now.memory_bytes, bytes),
            limit(want.memory_bytes, bytes)
        ));
    }
    if want.nano_cpus != now.nano_cpus {
        out.push(format!(
            "#{index} has CPU limit {}; the configuration says {} (changed with `docker update`)",
            limit(now.nano_cpus, cpus),
            limit(want.nano_cpus, cpus)
        ));
    }
    for n in want.networks.iter().filter(|n| !now.networks.contains(n)) {
        out.push(format!(
            "#{index} is not on network {n}, which the configuration joins (disconnected behind gantry's back, or created before gantry made project networks)"
        ));
    }
    for n in now.networks.iter().filter(|n| !want.networks.contains(n)) {
        out.push(format!(
            "#{index} is also on network {n}, which the configuration does not join"
        ));
    }
    out
}

fn describe(s: ContainerState) -> String {
    match s {
        ContainerState::Running => "running".into(),
        ContainerState::Created => "created, never started".into(),
        ContainerState::Exited(code) => format!("exited ({code})"),
        ContainerState::Other => "neither running nor exited".into(),
    }
}

fn short(image: &str) -> &str {
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Replica;

    fn container(id: &str, state: ContainerState, port: Option<u16>, ours: bool) -> ContainerInfo {
        let mut l = BTreeMap::new();
        if ours {
            l.insert(labels::PROJECT.to_string(), "p".to_string());
            l.insert(labels::SERVICE.to_string(), "web".to_string());
        }
        ContainerInfo {
            id: id.into(),
            name: format!("name-{id}"),
            labels: l,
            state,
            host_port: port,
            image_id: "sha256:aaa".into(),
            health: None,
            settings: None,
        }
    }

    fn state() -> State {
        let plan_state: State =
            serde_json::from_str(include_str!("../../tests/fixtures/plan/state.json")).unwrap();
        let mut s = State::empty("p", "l".into());
        let mut web = plan_state.services.values().next().unwrap().clone();
        web.replicas = (1..=3)
            .map(|i| Replica {
                index: i,
                host: "local".into(),
                name: format!("p-web-1-{i}"),
                container_id: format!("c{i}"),
                image_id: Some("sha256:aaa".into()),
                revision: 1,
                host_port: Some(30000 + i as u16),
                status: ReplicaStatus::Running,
            })
            .collect();
        s.services.insert("web".into(), web);
        s
    }

    #[test]
    fn names_gone_stopped_moved_unrecorded_and_foreign() {
        let s = state();
        let engines = BTreeMap::from([(
            "local".to_string(),
            vec![
                container("c1", ContainerState::Running, Some(30001), true),
                container("c2", ContainerState::Exited(137), None, true),
                container("x9", ContainerState::Running, Some(40000), true),
                container("f1", ContainerState::Running, Some(30003), false),
            ],
        )]);
        let drift = detect(&s, &engines);
        let kinds: Vec<(String, DriftKind)> = drift
            .iter()
            .map(|d| (d.container.clone(), d.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("name-f1".to_string(), DriftKind::ForeignOnPort),
                ("name-x9".to_string(), DriftKind::Unrecorded),
                ("p-web-1-2".to_string(), DriftKind::Stopped),
                ("p-web-1-3".to_string(), DriftKind::Gone),
            ]
        );
        assert!(drift[2].detail.contains("exited (137)"), "{:?}", drift[2]);
        assert!(
            detect(&s, &BTreeMap::new()).is_empty(),
            "no engine, no claim"
        );
    }

    #[test]
    fn a_foreign_container_on_a_fixed_publish_port_is_named() {
        let mut s = state();
        let web = s.services.get_mut("web").unwrap();
        web.spec.publish = vec!["8125:8125/udp".parse().unwrap()];
        let engines = BTreeMap::from([(
            "local".to_string(),
            vec![container("f1", ContainerState::Running, Some(8125), false)],
        )]);
        let drift: Vec<Drift> = detect(&s, &engines)
            .into_iter()
            .filter(|d| d.kind == DriftKind::ForeignOnPort)
            .collect();
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(
            drift[0].detail.contains("binds (a fixed port)"),
            "{drift:?}"
        );
    }

    #[test]
    fn settings_changed_on_a_living_replica_are_named_and_rolled() {
        let mut s = state();
        s.services.get_mut("web").unwrap().revision = 1;
        let web = &s.services["web"].spec;
        let want = expected_settings("p", web);
        assert_eq!(want.networks, ["p"], "the project network");
        let mut changed = want.clone();
        changed.restart = crate::ports::Restart::No;
        changed.networks = vec!["bridge".into()];
        changed.memory_bytes = Some(1 << 30);
        let mut c1 = container("c1", ContainerState::Running, Some(30001), true);
        c1.settings = Some(changed);
        let mut c2 = container("c2", ContainerState::Running, Some(30002), true);
        c2.settings = Some(want.clone());
        // Read by `list` only: nothing to compare.
        let c3 = container("c3", ContainerState::Running, Some(30003), true);
        let engines = BTreeMap::from([("local".to_string(), vec![c1, c2, c3])]);
        let drift = detect(&s, &engines);
        let details: Vec<(&str, DriftKind, &str)> = drift
            .iter()
            .map(|d| (d.container.as_str(), d.kind, d.detail.as_str()))
            .collect();
        assert_eq!(details.len(), 4, "{details:#?}");
        assert!(
            details
                .iter()
                .all(|(c, k, _)| *c == "p-web-1-1" && *k == DriftKind::SettingsChanged)
        );
        let text: Vec<&str> = details.iter().map(|d| d.2).collect();
        assert!(text.contains(&"#1 has restart policy `no`; the configuration says `unless-stopped` (changed with `docker update`)"), "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("#1 is not on network p,")),
            "{text:#?}"
        );
        assert!(
            text.contains(&"#1 is also on network bridge, which the configuration does not join"),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with(
                "#1 has memory limit 1073741824 bytes; the configuration says no limit"
            )),
            "{text:#?}"
        );
        assert!(DriftKind::SettingsChanged.repaired_by_rolling());

        // A replica of an older revision (a blue-green old colour) runs the spec before.
        let mut older = s.clone();
        older.services.get_mut("web").unwrap().revision = 2;
        assert!(
            detect(&older, &engines)
                .iter()
                .all(|d| d.kind != DriftKind::SettingsChanged)
        );
    }
}
