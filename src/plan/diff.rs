//! Attribute-level differences between a recorded and a desired spec, and the action they
//! call for.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::steps::{self, Step, StepOp};
use super::{Action, ResourceChange, Risk, Spec};
use crate::graph::Address;
use crate::model::{LbSpec, Model, ServiceSpec};
use crate::state::LbState;

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

/// Top-level service attributes in the order views show them.
pub const SERVICE_FIELDS: [&str; 19] = [
    "image",
    "runtime",
    "replicas",
    "command",
    "port",
    "host_ports",
    "env",
    "env_file",
    "secret_env",
    "depends_on",
    "hosts",
    "stop_grace_period",
    "resources",
    "labels",
    "log",
    "lb",
    "health",
    "warmup",
    "rollout",
];

/// Maps whose entries are shown as one block diff rather than one attribute each.
const BLOCKS: [&str; 3] = ["env", "labels", "host_ports"];
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
        let forces = ServiceSpec::CONTAINER_ATTRIBUTES.contains(&field);
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
        steps: Vec::new(),
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
