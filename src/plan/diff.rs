//! Attribute-level differences between a recorded and a desired spec, and the action they
//! call for.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::steps::{self, Step, StepOp};
use super::{Action, ResourceChange, Risk, Spec};
use crate::graph::Address;
use crate::model::{LbSpec, Model, ServiceSpec, TaskRun, TaskSpec};
use crate::state::{LbState, TaskState};

/// One attribute that differs. `before`/`after` are `null` when absent on that side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeChange {
    /// Dotted path: `image`, `rollout.batch`, `env`.
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The values are secret: views print `(sensitive)` instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// Changing this attribute means new containers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

/// Top-level service attributes in the order views show them: `ServiceSpec`'s field order
/// (a unit test holds the two together).
pub const SERVICE_FIELDS: [&str; 39] = [
    "image",
    "runtime",
    "replicas",
    "entrypoint",
    "command",
    "user",
    "working_dir",
    "port",
    "host_ports",
    "publish",
    "env",
    "env_file",
    "secret_env",
    "depends_on",
    "hosts",
    "networks",
    "network_mode",
    "volumes",
    "tmpfs",
    "restart",
    "stop_grace_period",
    "resources",
    "labels",
    "log",
    "cap_add",
    "cap_drop",
    "privileged",
    "read_only",
    "init",
    "pid",
    "shm_size",
    "sysctls",
    "ulimits",
    "extra_hosts",
    "devices",
    "lb",
    "health",
    "warmup",
    "rollout",
];

/// Maps whose entries are shown as one block diff rather than one attribute each.
const BLOCKS: [&str; 5] = ["env", "labels", "host_ports", "sysctls", "ulimits"];
const SENSITIVE: [&str; 1] = ["env_file.sha256"];

fn to_map<T: Serialize>(v: &T) -> serde_json::Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

fn compare(
    path: String,
    before: Option<&Value>,
    after: Option<&Value>,
    forces: bool,
    out: &mut Vec<AttributeChange>,
) {
    if before == after {
        return;
    }
    if let (Some(Value::Object(b)), Some(Value::Object(a))) = (before, after)
        && !BLOCKS.contains(&path.as_str())
    {
        for k in ordered_keys(b, a) {
            compare(format!("{path}.{k}"), b.get(k), a.get(k), forces, out);
        }
        return;
    }
    out.push(AttributeChange {
        sensitive: SENSITIVE.contains(&path.as_str()),
        path,
        before: before.cloned(),
        after: after.cloned(),
        forces_replacement: forces,
    });
}

/// Keys in declaration order (serde_json keeps it): the desired side's, then those only
/// the recorded side has.
fn ordered_keys<'a>(
    b: &'a serde_json::Map<String, Value>,
    a: &'a serde_json::Map<String, Value>,
) -> Vec<&'a String> {
    a.keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .collect()
}

pub(super) fn service_attributes(
    before: &ServiceSpec,
    after: &ServiceSpec,
) -> Vec<AttributeChange> {
    let (b, a) = (to_map(before), to_map(after));
    let mut out = Vec::new();
    for field in SERVICE_FIELDS {
        let forces = ServiceSpec::CONTAINER_ATTRIBUTES.contains(&field)
            || (field == "health" && health_in_container(before, after));
        compare(
            field.to_string(),
            b.get(field),
            a.get(field),
            forces,
            &mut out,
        );
    }
    out
}

/// A health check by `command` is the container's own Docker HEALTHCHECK, run by the engine:
/// any change of it (or to or from it) means new containers. An HTTP probe is gantry's, from
/// the host, and changes in place.
fn health_in_container(before: &ServiceSpec, after: &ServiceSpec) -> bool {
    let command = |s: &ServiceSpec| s.health.as_ref().is_some_and(|h| h.command.is_some());
    before.health != after.health && (command(before) || command(after))
}

/// LBs a service can join or leave right now: those already recorded. A load balancer
/// created by this plan is configured with its members by its own step.
fn existing(lbs: &[String], prior_lbs: &BTreeMap<String, LbState>) -> Vec<String> {
    lbs.iter()
        .filter(|l| prior_lbs.contains_key(*l))
        .cloned()
        .collect()
}

fn change(
    address: &Address,
    action: Action,
    before: Option<Spec>,
    after: Option<Spec>,
) -> ResourceChange {
    ResourceChange {
        address: address.clone(),
        action,
        wave: 0,
        risks: Vec::new(),
        attributes: Vec::new(),
        before,
        after,
        roll_order: None,
        steps: Vec::new(),
        reason: None,
    }
}

fn service_spec(s: &ServiceSpec) -> Option<Spec> {
    Some(Spec::Service(Box::new(s.clone())))
}

pub(super) fn service(
    addr: &Address,
    before: Option<&ServiceSpec>,
    after: &ServiceSpec,
    prior_lbs: &BTreeMap<String, LbState>,
) -> ResourceChange {
    let Some(before) = before else {
        let mut c = change(addr, Action::Create, None, service_spec(after));
        if after.privileged {
            c.risks.push(Risk::Privileged);
        }
        c.steps = steps::create(after, &existing(&after.lb, prior_lbs));
        return c;
    };
    if before == after {
        return change(
            addr,
            Action::NoOp,
            service_spec(before),
            service_spec(after),
        );
    }
    let attributes = service_attributes(before, after);
    let replace = attributes.iter().any(|a| a.forces_replacement);
    let action = if replace {
        Action::Replace
    } else if before.replicas != after.replicas {
        Action::Scale
    } else {
        Action::Update
    };
    let mut c = change(addr, action, service_spec(before), service_spec(after));
    if after.replicas < before.replicas {
        c.risks.push(Risk::ReplicaDecrease);
    }
    let removed_lbs: Vec<String> = before
        .lb
        .iter()
        .filter(|l| !after.lb.contains(l))
        .cloned()
        .collect();
    if !removed_lbs.is_empty() {
        c.risks.push(Risk::LbRemoval);
    }
    if after.privileged && !before.privileged {
        c.risks.push(Risk::Privileged);
    }
    if action == Action::Replace {
        c.roll_order = super::RollOrder::of(after);
    }
    let join = existing(&after.lb, prior_lbs);
    if steps::swarm::involved(before, after) {
        // Swarm rolls, scales and updates in one service update: see `steps::swarm`.
        c.steps = steps::swarm::change(before, after, &join, &existing(&before.lb, prior_lbs));
        c.attributes = attributes;
        return c;
    }
    c.steps = match action {
        Action::Replace => steps::roll(before, after, &join, &existing(&before.lb, prior_lbs)),
        Action::Scale => {
            let mut s = steps::scale(before, after, &join, &existing(&before.lb, prior_lbs));
            // Membership changed too: the replicas that stay join or leave as in an update.
            let added: Vec<String> = after
                .lb
                .iter()
                .filter(|l| !before.lb.contains(l))
                .cloned()
                .collect();
            let kept = ServiceSpec {
                replicas: before.replicas.min(after.replicas),
                ..before.clone()
            };
            if !added.is_empty() || !removed_lbs.is_empty() {
                let staying = steps::update(
                    &kept,
                    after,
                    &existing(&added, prior_lbs),
                    &existing(&removed_lbs, prior_lbs),
                );
                s.extend(staying.into_iter().filter(|st| st.op != StepOp::Record));
            }
            if attributes.iter().any(|a| a.path != "replicas") {
                s.push(Step::global(StepOp::Record));
            }
            s
        }
        _ => {
            let added: Vec<String> = after
                .lb
                .iter()
                .filter(|l| !before.lb.contains(l))
                .cloned()
                .collect();
            steps::update(
                before,
                after,
                &existing(&added, prior_lbs),
                &existing(&removed_lbs, prior_lbs),
            )
        }
    };
    c.attributes = attributes;
    c
}

fn members(model: &Model, lb: &str) -> Vec<String> {
    model
        .services
        .iter()
        .filter(|(_, s)| s.lb.iter().any(|l| l == lb))
        .map(|(n, _)| Address::service(n).to_string())
        .collect()
}

pub(super) fn lb(
    addr: &Address,
    before: Option<&LbSpec>,
    after: &LbSpec,
    model: &Model,
) -> ResourceChange {
    let configure = || {
        Step::global(StepOp::Configure {
            members: members(model, &addr.name),
        })
    };
    let after_spec = Some(Spec::Lb(after.clone()));
    let Some(before) = before else {
        let mut c = change(addr, Action::Create, None, after_spec);
        c.steps = vec![configure()];
        return c;
    };
    if before == after {
        return change(
            addr,
            Action::NoOp,
            Some(Spec::Lb(before.clone())),
            after_spec,
        );
    }
    let kind_changed = before.kind() != after.kind();
    let action = if kind_changed {
        Action::Replace
    } else {
        Action::Update
    };
    let mut c = change(addr, action, Some(Spec::Lb(before.clone())), after_spec);
    let (b, a) = (to_map(before), to_map(after));
    for k in ordered_keys(&b, &a) {
        compare(
            k.clone(),
            b.get(k),
            a.get(k),
            kind_changed,
            &mut c.attributes,
        );
    }
    c.steps = if kind_changed {
        vec![Step::global(StepOp::Forget), configure()]
    } else {
        vec![configure()]
    };
    c
}

pub(super) fn destroy_service(addr: &Address, before: &ServiceSpec) -> ResourceChange {
    let mut c = change(addr, Action::Destroy, service_spec(before), None);
    c.risks.push(Risk::Destroy);
    if !before.lb.is_empty() {
        c.risks.push(Risk::LbRemoval);
    }
    c.steps = steps::destroy(before, &before.lb);
    c
}

pub(super) fn destroy_lb(addr: &Address, before: &LbSpec) -> ResourceChange {
    let mut c = change(addr, Action::Destroy, Some(Spec::Lb(before.clone())), None);
    c.risks = vec![Risk::Destroy, Risk::LbRemoval];
    c.steps = vec![Step::global(StepOp::Forget)];
    c
}

/// A task runs (`Action::Run`) the first time, when it changed, when its service's image
/// differs from the one it last ran with, and with `run = "always"` whenever its service
/// changes; otherwise it is a no-op. `recorded` is its last successful run.
pub(super) fn task(
    addr: &Address,
    after: &TaskSpec,
    recorded: Option<&TaskState>,
    service: &ServiceSpec,
    service_action: Action,
) -> ResourceChange {
    let name = &after.service;
    let mut attributes = Vec::new();
    let reason = match recorded {
        None if service_action == Action::Create => Some(format!("{name} is created")),
        None => Some("it has not run yet".to_string()),
        Some(r) => {
            let mut why = Vec::new();
            if r.image != service.image {
                attributes.push(AttributeChange {
                    path: format!("{name}.image"),
                    before: Some(serde_json::Value::String(r.image.clone())),
                    after: Some(serde_json::Value::String(service.image.clone())),
                    sensitive: false,
                    forces_replacement: false,
                });
                why.push(format!("{name}'s image changes"));
            }
            if r.spec != *after {
                let (b, a) = (
                    serde_json::to_value(&r.spec).unwrap_or_default(),
                    serde_json::to_value(after).unwrap_or_default(),
                );
                for key in ["service", "command", "depends_on", "run", "timeout"] {
                    if b.get(key) != a.get(key) {
                        attributes.push(AttributeChange {
                            path: key.to_string(),
                            before: b.get(key).cloned(),
                            after: a.get(key).cloned(),
                            sensitive: false,
                            forces_replacement: false,
                        });
                    }
                }
                why.push("the task changes".to_string());
            }
            if why.is_empty() && after.run == TaskRun::Always && service_action != Action::NoOp {
                why.push(format!("run = \"always\" and {name} changes"));
            }
            (!why.is_empty()).then(|| why.join(" and "))
        }
    };
    let before = recorded.map(|r| Spec::Task(r.spec.clone()));
    let action = if reason.is_some() {
        Action::Run
    } else {
        Action::NoOp
    };
    let mut c = change(addr, action, before, Some(Spec::Task(after.clone())));
    c.attributes = attributes;
    if c.action == Action::Run {
        // On the service's first host, where its first replicas start.
        let host = service.hosts.first().map_or("local", String::as_str);
        c.steps = vec![Step::on_host(
            host,
            StepOp::RunTask {
                service: after.service.clone(),
                command: after.command.clone(),
                timeout: after.timeout,
            },
        )];
    }
    c.reason = reason;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec with every key set, written in no particular order.
    const EVERY_KEY: &str = r#"{
        "rollout": {"strategy": "rolling", "batch": 1, "order": "stop-first", "drain": "5s", "soak": "0s", "on_failure": "rollback"},
        "warmup": {"http": "/w", "max_latency": "500ms", "successes": 3, "concurrency": 1, "deadline": "2m"},
        "health": {"command": ["true"], "interval": "2s", "timeout": "1s", "retries": 3, "start_period": "0s"},
        "lb": ["front"],
        "devices": ["/dev/fuse:/dev/fuse:rwm"],
        "extra_hosts": ["metadata:169.254.169.254"],
        "ulimits": {"nofile": {"soft": 1, "hard": 2}},
        "sysctls": {"net.core.somaxconn": "1024"},
        "shm_size": "64m",
        "pid": "host",
        "init": true,
        "read_only": true,
        "privileged": true,
        "cap_drop": ["ALL"],
        "cap_add": ["NET_ADMIN"],
        "log": {"max_size": "10m"},
        "labels": {"team": "a"},
        "resources": {"cpus": 1.0},
        "stop_grace_period": "10s",
        "restart": "always",
        "tmpfs": ["/tmp"],
        "volumes": ["data:/data"],
        "network_mode": "host",
        "networks": ["shared"],
        "hosts": ["local"],
        "depends_on": ["db"],
        "secret_env": ["TOKEN"],
        "env_file": {"path": "app.env", "keys": ["A"], "sha256": "00"},
        "env": {"A": "1"},
        "publish": ["8125:8125/udp"],
        "host_ports": {"start": 18080, "end": 18081},
        "port": 8080,
        "working_dir": "/app",
        "user": "1000:1000",
        "command": ["serve"],
        "entrypoint": ["/init"],
        "replicas": 1,
        "runtime": "swarm",
        "image": "app:1"
    }"#;

    #[test]
    fn service_fields_are_every_key_of_a_spec_in_spec_order() {
        let spec: ServiceSpec = serde_json::from_str(EVERY_KEY).unwrap();
        let keys: Vec<String> = to_map(&spec).keys().cloned().collect();
        assert_eq!(
            keys, SERVICE_FIELDS,
            "SERVICE_FIELDS must follow ServiceSpec"
        );
        for attribute in ServiceSpec::CONTAINER_ATTRIBUTES {
            assert!(SERVICE_FIELDS.contains(&attribute), "{attribute}");
        }
    }

    #[test]
    fn every_container_option_rolls_and_an_http_probe_does_not() {
        let base: ServiceSpec = serde_json::from_str(EVERY_KEY).unwrap();
        let plain = ServiceSpec {
            runtime: crate::model::Runtime::Container,
            ..base.clone()
        };
        let mut changed = plain.clone();
        changed.tmpfs.push("/run".into());
        changed.init = false;
        let attrs = service_attributes(&plain, &changed);
        assert_eq!(
            attrs.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(),
            ["tmpfs", "init"]
        );
        assert!(attrs.iter().all(|a| a.forces_replacement));

        let mut http = plain.clone();
        http.health = Some(crate::model::HealthSpec {
            http: Some("/healthz".into()),
            command: None,
            ..plain.health.clone().unwrap()
        });
        let mut slower = http.clone();
        if let Some(h) = &mut slower.health {
            h.interval = crate::model::Duration::from_secs(5);
        }
        let attrs = service_attributes(&http, &slower);
        assert_eq!(attrs.len(), 1);
        assert!(!attrs[0].forces_replacement, "gantry's own probe");
        let attrs = service_attributes(&plain, &http);
        assert!(
            attrs.iter().all(|a| a.forces_replacement),
            "from a command to a probe: the HEALTHCHECK goes away with new containers"
        );
    }
}
