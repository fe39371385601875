//! Drift: what the engines run that the state does not say (`gantry plan --refresh`). Pure:
//! given the recorded state and what one list call per engine returned, it names every
//! difference, and the plan rolls the services whose replicas drifted so that apply repairs
//! them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, Plan, ResourceChange, Spec, Summary, diff::AttributeChange};
use crate::ports::{ContainerInfo, ContainerState, labels};
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
            DriftKind::Gone | DriftKind::Stopped | DriftKind::ImageChanged | DriftKind::PortChanged
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
            if ours && !recorded.contains(&c.id.as_str()) {
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
            if ours || c.state != ContainerState::Running {
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
}
