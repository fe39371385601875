//! The plan: a pure function from (desired model, recorded state) to an immutable,
//! serialisable [`Plan`]. By the time apply runs, every choice has been made here: which
//! resources change, why (attribute by attribute), in which order, and the exact rolling
//! steps. The JSON form is canonical; the text and Markdown views are rendered from it.

mod diff;
pub mod drift;
pub mod steps;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::graph::{Address, ResourceGraph, ResourceKind};
use crate::model::{LbSpec, Model, Order, ServiceSpec, StopFirstReason, TaskSpec};
use crate::state::State;

pub use diff::{AttributeChange, SERVICE_FIELDS};
pub use steps::{Step, StepOp};

/// The plan format this build writes and reads.
pub const PLAN_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "gantry plan (gantry plan --format json / --out PLANFILE)")]
pub struct Plan {
    pub format_version: u32,
    pub gantry_version: String,
    pub project: String,
    /// SHA-256 over the config file and the env files it names: apply refuses a plan file
    /// whose config has changed since.
    pub config_sha256: String,
    /// The state this plan was computed against: apply refuses it if the state has moved.
    pub prior: Prior,
    pub summary: Summary,
    /// Every resource, changed or not, in the order apply walks them.
    pub changes: Vec<ResourceChange>,
    /// Resources of the desired configuration grouped in dependency waves: members of a
    /// wave are independent of each other.
    pub waves: Vec<Vec<Address>>,
    /// What the engines run that the state does not say (`--refresh` only; empty offline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<drift::Drift>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prior {
    /// `null` when there is no state yet.
    pub lineage: Option<String>,
    pub serial: u64,
    pub revision: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Tasks that run (absent in plans of builds before tasks).
    #[serde(default)]
    pub run: usize,
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub scale: usize,
    pub destroy: usize,
    pub no_op: usize,
}

impl Summary {
    pub fn count(changes: &[ResourceChange]) -> Summary {
        let mut summary = Summary::default();
        for c in changes {
            *match c.action {
                Action::Create => &mut summary.create,
                Action::Update => &mut summary.update,
                Action::Replace => &mut summary.replace,
                Action::Scale => &mut summary.scale,
                Action::Destroy => &mut summary.destroy,
                Action::NoOp => &mut summary.no_op,
                Action::Run => &mut summary.run,
            } += 1;
        }
        summary
    }

    pub fn has_changes(&self) -> bool {
        self.run + self.create + self.update + self.replace + self.scale + self.destroy > 0
    }

    /// `Plan: 1 to create, 2 to roll, 0 to destroy.` with the other actions when present.
    pub fn line(&self) -> String {
        if !self.has_changes() {
            return "No changes. The running services match the configuration.".to_string();
        }
        let mut parts = Vec::new();
        if self.run > 0 {
            parts.push(format!(
                "{} task{} to run",
                self.run,
                if self.run == 1 { "" } else { "s" }
            ));
        }
        parts.push(format!("{} to create", self.create));
        if self.update > 0 {
            parts.push(format!("{} to update in place", self.update));
        }
        parts.push(format!("{} to roll", self.replace));
        if self.scale > 0 {
            parts.push(format!("{} to scale", self.scale));
        }
        parts.push(format!("{} to destroy", self.destroy));
        format!("Plan: {}.", parts.join(", "))
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    /// Settings recorded or LB membership changed; no container replaced.
    Update,
    /// New containers, rolled in batches.
    Replace,
    /// Replica count only.
    Scale,
    Destroy,
    NoOp,
    /// A task runs (to completion, in a container of its own).
    Run,
}

impl Action {
    /// Terraform's symbols.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create | Action::Run => "+",
            Action::Update | Action::Scale => "~",
            Action::Replace => "-/+",
            Action::Destroy => "-",
            Action::NoOp => " ",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update in place",
            Action::Replace => "roll",
            Action::Scale => "scale",
            Action::Destroy => "destroy",
            Action::NoOp => "no changes",
            Action::Run => "run",
        }
    }
}

/// Why a change deserves a reviewer's eye; risky changes are listed first in every view.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    Destroy,
    ReplicaDecrease,
    LbRemoval,
    /// Starts containers with `privileged = true` where none ran before: every capability
    /// and every device of the host.
    Privileged,
}

impl Risk {
    pub fn describe(self) -> &'static str {
        match self {
            Risk::Destroy => "destroys a resource",
            Risk::ReplicaDecrease => "reduces replicas",
            Risk::LbRemoval => "removes load-balancer membership",
            Risk::Privileged => {
                "runs privileged containers: every capability and device of the host"
            }
        }
    }
}

/// Which order a rolled service's replicas are replaced in, and why when gantry had no
/// choice: a service that must never run two copies of a replica at once rolls stop-first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollOrder {
    pub order: Order,
    /// Why stop-first is the only order (absent: the order as configured, or the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StopFirstReason>,
}

impl RollOrder {
    /// The order of a rolling replacement to `after`; `None` for blue-green.
    pub fn of(after: &ServiceSpec) -> Option<RollOrder> {
        if after.rollout.blue_green.is_some() {
            return None;
        }
        Some(RollOrder {
            order: after.rollout.order,
            reason: after.stop_first_reason(),
        })
    }

    /// `rolls stop-first: read-write volume `cache-data` (two copies of the process would
    /// write `cache-data` at once)`, or `None` when there is nothing to explain.
    pub fn explain(&self) -> Option<String> {
        let reason = self.reason.as_ref()?;
        Some(format!(
            "rolls {}: {reason} ({})",
            self.order,
            reason.consequence()
        ))
    }
}

/// The recorded or desired settings of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Spec {
    Service(Box<ServiceSpec>),
    Lb(LbSpec),
    Task(TaskSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceChange {
    pub address: Address,
    pub action: Action,
    /// 1-based wave; destroys come after every desired wave, dependents first.
    pub wave: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risks: Vec<Risk>,
    /// Attribute-level reasons, in spec order. Empty for create, destroy and no-op.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeChange>,
    pub before: Option<Spec>,
    pub after: Option<Spec>,
    /// Rolled services: the order of the replacement, and why when it is forced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll_order: Option<RollOrder>,
    /// What apply will do for this resource, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Why a task runs (`web's image changes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ResourceChange {
    pub fn is_risky(&self) -> bool {
        !self.risks.is_empty()
    }
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.summary.has_changes()
    }

    /// Changed resources, risky first (destroy, replica decrease, LB removal), then in
    /// apply order: the order every human view lists them in.
    pub fn review_order(&self) -> Vec<&ResourceChange> {
        let mut changed: Vec<(usize, &ResourceChange)> = self
            .changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.action != Action::NoOp)
            .collect();
        changed.sort_by_key(|(i, c)| {
            (
                c.risks.first().copied().map_or(usize::MAX, |r| r as usize),
                *i,
            )
        });
        changed.into_iter().map(|(_, c)| c).collect()
    }

    pub fn from_json(text: &str) -> Result<Plan, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plan serialises");
        s.push('\n');
        s
    }
}

/// Turns a plan into a rollback: an incident wants the previous revision back at once, so
/// each rolled service goes in ONE batch (still start-first: the new replicas are healthy and
/// in the load balancers before the others leave), without soak. With `fast`, where the state
/// keeps stopped replicas of `revision`, they are started again instead of creating new
/// containers. Pure, like `plan`: the executor is told exactly what to do.
pub fn for_rollback(plan: &mut Plan, state: &State, revision: u64, fast: bool) {
    // The kept containers of a service are those of the revision that created its replicas
    // in the target record (older than the record for a service it did not change).
    let record = state.history.iter().find(|r| r.revision == revision);
    let kept_revision = |service: &str| -> u64 {
        record
            .and_then(|r| r.services.get(service))
            .and_then(|s| s.replicas_revision)
            .unwrap_or(revision)
    };
    // The same spec with another image behind its tag (the tag was re-pointed since): the
    // recorded image ID is what counts, so the service is rolled all the same.
    for change in &mut plan.changes {
        if change.address.kind != ResourceKind::Service || change.action != Action::NoOp {
            continue;
        }
        let recorded = record
            .and_then(|r| r.services.get(&change.address.name))
            .and_then(|s| s.image_id.clone());
        let running = state
            .services
            .get(&change.address.name)
            .and_then(|s| {
                s.replicas
                    .iter()
                    .filter(|r| r.status == crate::state::ReplicaStatus::Running)
                    .find_map(|r| r.image_id.clone())
            })
            // A Swarm service has no replicas of gantry's: its record says what it runs.
            .or_else(|| {
                state
                    .swarm
                    .get(&change.address.name)
                    .map(|w| w.image_id.clone())
            });
        if let (Some(recorded), Some(running)) = (recorded, running)
            && recorded != running
        {
            change.action = Action::Replace;
            change.attributes.push(diff::AttributeChange {
                path: "image_id".into(),
                before: Some(serde_json::Value::String(running)),
                after: Some(serde_json::Value::String(recorded)),
                sensitive: false,
                forces_replacement: true,
            });
        }
    }
    plan.summary = Summary::count(&plan.changes);
    for change in &mut plan.changes {
        if change.address.kind != ResourceKind::Service || change.action != Action::Replace {
            continue;
        }
        if let (Some(Spec::Service(before)), Some(Spec::Service(after))) =
            (&change.before, &change.after)
        {
            let mut at_once = (**after).clone();
            at_once.rollout.batch = at_once.replicas.max(before.replicas);
            at_once.rollout.soak = crate::model::Duration::default();
            // A service that must never run two copies of a replica at once (read-write
            // volume, fixed host port) rolls back stop-first as well.
            at_once.rollout.order = match at_once.stop_first_reason() {
                Some(_) => Order::StopFirst,
                None => Order::StartFirst,
            };
            change.steps = roll_steps(before, &at_once, state);
            change.roll_order = RollOrder::of(&at_once);
        }
        let revision = kept_revision(&change.address.name);
        // Blue-green with the old colour still running: switch back to it, no container
        // started.
        if let (Some(s), Some(Spec::Service(after))) =
            (state.services.get(&change.address.name), &change.after)
            && s.old_colour
                .as_ref()
                .is_some_and(|o| o.revision == revision)
            && after.hosts.iter().all(|h| {
                (1..=after.replicas).all(|i| {
                    s.replicas.iter().any(|r| {
                        r.host == *h
                            && r.index == i
                            && r.revision == revision
                            && r.status == crate::state::ReplicaStatus::Running
                    })
                })
            })
        {
            let join: Vec<String> = after
                .lb
                .iter()
                .filter(|l| state.lbs.contains_key(*l))
                .cloned()
                .collect();
            change.steps = steps::switch_back(after, revision, &join);
            change.roll_order = None;
            continue;
        }
        let Some(kept) = state.services.get(&change.address.name).filter(|_| fast) else {
            continue;
        };
        for step in &mut change.steps {
            let StepOp::Start { replicas } = &step.op else {
                continue;
            };
            let host = step.host.clone().unwrap_or_default();
            let available = |i: &u32| {
                kept.replicas.iter().any(|r| {
                    r.index == *i
                        && r.host == host
                        && r.revision == revision
                        && r.status == crate::state::ReplicaStatus::Stopped
                })
            };
            if !replicas.is_empty() && replicas.iter().all(available) {
                step.op = StepOp::Restart {
                    replicas: replicas.clone(),
                    revision,
                };
            }
        }
    }
}

/// Computes the plan. Pure and deterministic: the same inputs give a byte-identical plan.
pub fn plan(model: &Model, state: Option<&State>, config_sha256: &str) -> Plan {
    let graph = ResourceGraph::from_model(model);
    let waves = graph.waves();
    let empty_services = BTreeMap::new();
    let empty_lbs = BTreeMap::new();
    let (prior_services, prior_lbs) = match state {
        Some(s) => (&s.services, &s.lbs),
        None => (&empty_services, &empty_lbs),
    };

    let mut changes = Vec::with_capacity(graph.len());
    for (i, wave) in waves.iter().enumerate() {
        for addr in wave {
            let change = match addr.kind {
                ResourceKind::Service => {
                    let after = &model.services[&addr.name];
                    let before = prior_services.get(&addr.name).map(|s| &s.spec);
                    diff::service(addr, before, after, prior_lbs)
                }
                ResourceKind::Lb => {
                    let after = &model.lbs[&addr.name];
                    let before = prior_lbs.get(&addr.name).map(|l| &l.spec);
                    diff::lb(addr, before, after, model)
                }
                ResourceKind::Task => {
                    let task = &model.tasks[&addr.name];
                    let service = &model.services[&task.service];
                    let service_change = diff::service(
                        &Address::service(&task.service),
                        prior_services.get(&task.service).map(|s| &s.spec),
                        service,
                        prior_lbs,
                    );
                    let recorded = state.and_then(|s| s.tasks.get(&addr.name));
                    diff::task(addr, task, recorded, service, service_change.action)
                }
            };
            changes.push(ResourceChange {
                wave: i + 1,
                ..change
            });
        }
    }

    // Destroys: what the state has and the config no longer does. Services go dependents
    // first (reverse waves of the recorded graph); load balancers go last, after their
    // members have left them.
    let gone = ResourceGraph::new(
        prior_services
            .keys()
            .filter(|n| !model.services.contains_key(*n))
            .map(Address::service),
        prior_services.iter().flat_map(|(name, s)| {
            s.spec
                .depends_on
                .iter()
                .map(move |d| (Address::service(d), Address::service(name)))
        }),
    );
    let mut destroy_waves = gone.waves();
    destroy_waves.reverse();
    let gone_lbs: Vec<Address> = prior_lbs
        .keys()
        .filter(|n| !model.lbs.contains_key(*n))
        .map(Address::lb)
        .collect();
    if !gone_lbs.is_empty() {
        destroy_waves.push(gone_lbs);
    }
    for (i, wave) in destroy_waves.iter().enumerate() {
        for addr in wave {
            let change = match addr.kind {
                ResourceKind::Service => {
                    diff::destroy_service(addr, &prior_services[&addr.name].spec)
                }
                ResourceKind::Lb => diff::destroy_lb(addr, &prior_lbs[&addr.name].spec),
                // Not in `gone`: a task no longer configured is only forgotten.
                ResourceKind::Task => continue,
            };
            changes.push(ResourceChange {
                wave: waves.len() + i + 1,
                ..change
            });
        }
    }

    let summary = Summary::count(&changes);

    Plan {
        format_version: PLAN_FORMAT_VERSION,
        gantry_version: env!("CARGO_PKG_VERSION").to_string(),
        project: model.project.clone(),
        config_sha256: config_sha256.to_string(),
        prior: Prior {
            lineage: state.map(|s| s.lineage.clone()),
            serial: state.map_or(0, |s| s.serial),
            revision: state.map_or(0, |s| s.revision),
        },
        summary,
        changes,
        waves,
        drift: Vec::new(),
    }
}

/// The steps of rolling a service from `before` to `after`, with the load balancers the
/// state knows.
pub(crate) fn roll_steps(before: &ServiceSpec, after: &ServiceSpec, state: &State) -> Vec<Step> {
    let lbs = |spec: &ServiceSpec| -> Vec<String> {
        spec.lb
            .iter()
            .filter(|l| state.lbs.contains_key(*l))
            .cloned()
            .collect()
    };
    steps::roll(before, after, &lbs(after), &lbs(before))
}
