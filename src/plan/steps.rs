//! The rolling steps apply will take, decided here so that the executor decides nothing.
//!
//! A rolling replacement walks replica indices in batches of `rollout.batch`, host by host:
//!
//! - start-first: start new -> healthy -> warm up -> new replace old in each LB (one change
//!   per LB: one nginx reload, one HAProxy runtime update) -> drain -> stop old (kept stopped
//!   for rollback) -> soak
//! - stop-first: old leave LBs -> drain -> stop old -> start new -> healthy -> warm up ->
//!   join LBs -> soak

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Duration, Order, ServiceSpec};

pub mod swarm;
pub use swarm::SwarmUpdateConfig;

/// One step of apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
    #[serde(flatten)]
    pub op: StepOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub number: u32,
    pub of: u32,
}

/// Which containers a step touches: those running now, or those this apply starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    Current,
    New,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StepOp {
    /// Create and start containers of the new spec.
    Start { replicas: Vec<u32> },
    /// Rollback fast path: start again the kept (stopped) containers of `revision` for these
    /// replicas: no create, no pull.
    Restart { replicas: Vec<u32>, revision: u64 },
    /// Wait for the health check (or, without one, for the container to keep running).
    WaitHealthy { replicas: Vec<u32> },
    /// The warm-up probe: consecutive fast successes under load.
    Warmup { replicas: Vec<u32> },
    JoinLb {
        lb: String,
        generation: Generation,
        replicas: Vec<u32>,
    },
    LeaveLb {
        lb: String,
        generation: Generation,
        replicas: Vec<u32>,
    },
    /// Start-first: the new replicas join and the current ones leave in ONE change of the
    /// load balancer (one nginx reload: each reload closes idle keep-alive connections).
    ReplaceInLb {
        lb: String,
        /// New replicas that join.
        joining: Vec<u32>,
        /// Current replicas that leave (drained next).
        leaving: Vec<u32>,
    },
    /// Let in-flight requests finish after leaving the LBs, before SIGTERM.
    Drain { duration: Duration },
    /// SIGTERM, then SIGKILL after `grace`; the container is kept (stopped) for rollback.
    Stop {
        generation: Generation,
        replicas: Vec<u32>,
        grace: Duration,
    },
    /// Real traffic on the new replicas, health watched, before the next batch.
    Soak { duration: Duration },
    /// Record settings that take effect without new containers.
    Record,
    /// Blue-green: run the user's check against the new colour before traffic moves.
    PreviewCheck { command: Vec<String> },
    /// Blue-green switch-back: the running replicas of `revision` (the old colour) become
    /// this run's, without any container change.
    Adopt { replicas: Vec<u32>, revision: u64 },
    /// Blue-green: move the LB from the current colour to the new one in one change.
    Switch { lb: String, replicas: Vec<u32> },
    /// Blue-green: after `delay`, stop the old colour but for `keep` replicas.
    ScaleDownOld { delay: Duration, keep: u32 },
    /// Load balancer: render its members, check the configuration, reload.
    Configure { members: Vec<String> },
    /// Load balancer: stop managing it (its configuration is left as it is).
    Forget,
    /// Docker Swarm: create or update the Swarm service `<project>_<service>` through the
    /// manager's service API, then wait until Swarm reports the update completed. A rolled
    /// back update fails the step.
    SwarmUpdate {
        replicas: u32,
        update: SwarmUpdateConfig,
        /// Not converged by then: the step fails (and with `on_failure = "rollback"`, Swarm
        /// is told to roll the update back).
        deadline: Duration,
    },
    /// Docker Swarm: warm up through the published port (the routing mesh spreads the
    /// requests over the replicas).
    SwarmWarmup,
    /// Docker Swarm: the service's published address joins a load balancer.
    SwarmJoinLb { lb: String },
    /// Docker Swarm: the service's published address leaves a load balancer.
    SwarmLeaveLb { lb: String },
    /// Docker Swarm: remove the service; Swarm stops its tasks (`stop_grace_period`).
    SwarmRemove,
    /// A task: one container of its service's new spec runs `command` to completion on the
    /// step's host (exit 0 within `timeout`, or the step fails); then it is removed.
    RunTask {
        service: String,
        command: Vec<String>,
        timeout: Duration,
    },
}

impl Step {
    fn new(host: &str, batch: Option<Batch>, op: StepOp) -> Self {
        Step {
            host: Some(host.to_string()),
            batch,
            op,
        }
    }

    /// A step on one host.
    pub fn on_host(host: &str, op: StepOp) -> Self {
        Step::new(host, None, op)
    }

    pub fn global(op: StepOp) -> Self {
        Step {
            host: None,
            batch: None,
            op,
        }
    }

    /// Short human form, e.g. `stop #1 (current, grace 30s, kept for rollback)`.
    pub fn describe(&self) -> String {
        let ids = |r: &[u32]| {
            r.iter()
                .map(|i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let generation = |g: Generation| match g {
            Generation::Current => "current",
            Generation::New => "new",
        };
        match &self.op {
            StepOp::Start { replicas } => format!("start {} (new)", ids(replicas)),
            StepOp::Restart { replicas, revision } => {
                format!("restart {} (kept from revision {revision})", ids(replicas))
            }
            StepOp::WaitHealthy { replicas } => format!("health {}", ids(replicas)),
            StepOp::Warmup { replicas } => format!("warm up {}", ids(replicas)),
            StepOp::JoinLb {
                lb,
                generation: g,
                replicas,
            } => format!("{} ({}) join lb.{lb}", ids(replicas), generation(*g)),
            StepOp::LeaveLb {
                lb,
                generation: g,
                replicas,
            } => format!("{} ({}) leave lb.{lb}", ids(replicas), generation(*g)),
            StepOp::ReplaceInLb {
                lb,
                joining,
                leaving,
            } => format!(
                "{} (new) {} {} (current) in lb.{lb}",
                ids(joining),
                if joining.len() == 1 {
                    "replaces"
                } else {
                    "replace"
                },
                ids(leaving)
            ),
            StepOp::Drain { duration } => format!("drain {duration}"),
            StepOp::Stop {
                generation: g,
                replicas,
                grace,
            } => {
                format!(
                    "stop {} ({}, grace {grace}, kept for rollback)",
                    ids(replicas),
                    generation(*g)
                )
            }
            StepOp::Soak { duration } => format!("soak {duration}"),
            StepOp::PreviewCheck { command } => format!("preview check `{}`", command.join(" ")),
            StepOp::Adopt { replicas, revision } => format!(
                "take over running {} of revision {revision} (old colour, no container started)",
                ids(replicas)
            ),
            StepOp::Switch { lb, replicas } => {
                format!(
                    "switch lb.{lb} from the live colour to {} in one change",
                    ids(replicas)
                )
            }
            StepOp::ScaleDownOld { delay, keep } if delay.is_zero() => {
                format!("scale the old colour down to {keep} running")
            }
            StepOp::ScaleDownOld { delay, keep } => {
                format!(
                    "keep the old colour {delay} for switch-back, then scale it down to {keep} running"
                )
            }
            StepOp::Record => "record new settings (no container changes)".to_string(),
            StepOp::RunTask {
                service,
                command,
                timeout,
            } => format!(
                "run `{}` from {service}'s new spec, to exit 0 within {timeout}",
                command.join(" ")
            ),
            StepOp::Configure { members } => {
                if members.is_empty() {
                    "configure, check and reload".to_string()
                } else {
                    format!("configure members {}, check and reload", members.join(", "))
                }
            }
            StepOp::Forget => "stop managing it (configuration left in place)".to_string(),
            StepOp::SwarmUpdate {
                replicas,
                update,
                deadline,
            } => format!(
                "swarm service update: {replicas} replica(s), {}; wait at most {deadline}",
                update.describe()
            ),
            StepOp::SwarmWarmup => "warm up through the published port".to_string(),
            StepOp::SwarmJoinLb { lb } => format!("published port joins lb.{lb}"),
            StepOp::SwarmLeaveLb { lb } => format!("published port leaves lb.{lb}"),
            StepOp::SwarmRemove => "remove the swarm service".to_string(),
        }
    }
}

fn range(from: u32, to: u32) -> Vec<u32> {
    (from..=to).collect()
}

/// All hosts either spec runs on, sorted (hosts are rolled one at a time, in name order).
fn hosts(before: Option<&ServiceSpec>, after: Option<&ServiceSpec>) -> Vec<String> {
    let mut hosts: Vec<String> = before
        .into_iter()
        .chain(after)
        .flat_map(|s| s.hosts.iter().cloned())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn replicas_on(spec: Option<&ServiceSpec>, host: &str) -> u32 {
    spec.filter(|s| s.hosts.iter().any(|h| h == host))
        .map_or(0, |s| s.replicas)
}

/// Start, check and let join a set of new replicas.
fn bring_up(
    out: &mut Vec<Step>,
    host: &str,
    batch: Option<Batch>,
    spec: &ServiceSpec,
    replicas: &[u32],
    join: &[String],
) {
    if replicas.is_empty() {
        return;
    }
    let r = replicas.to_vec();
    out.push(Step::new(
        host,
        batch,
        StepOp::Start {
            replicas: r.clone(),
        },
    ));
    out.push(Step::new(
        host,
        batch,
        StepOp::WaitHealthy {
            replicas: r.clone(),
        },
    ));
    if spec.warmup.is_some() {
        out.push(Step::new(
            host,
            batch,
            StepOp::Warmup {
                replicas: r.clone(),
            },
        ));
    }
    for lb in join {
        out.push(Step::new(
            host,
            batch,
            StepOp::JoinLb {
                lb: lb.clone(),
                generation: Generation::New,
                replicas: r.clone(),
            },
        ));
    }
}

/// Take a set of running replicas out of service: leave LBs, drain, stop.
fn take_down(
    out: &mut Vec<Step>,
    host: &str,
    batch: Option<Batch>,
    spec: &ServiceSpec,
    replicas: &[u32],
    leave: &[String],
    drain: Duration,
) {
    if replicas.is_empty() {
        return;
    }
    for lb in leave {
        out.push(Step::new(
            host,
            batch,
            StepOp::LeaveLb {
                lb: lb.clone(),
                generation: Generation::Current,
                replicas: replicas.to_vec(),
            },
        ));
    }
    drain_and_stop(out, host, batch, spec, replicas, !leave.is_empty(), drain);
}

/// After replicas left load balancers (`left`), drain; then stop them.
fn drain_and_stop(
    out: &mut Vec<Step>,
    host: &str,
    batch: Option<Batch>,
    spec: &ServiceSpec,
    replicas: &[u32],
    left: bool,
    drain: Duration,
) {
    // Even a zero drain is a step: it is where load balancers that can tell (HAProxy) are
    // told the leaving members are gone for good.
    if left {
        out.push(Step::new(host, batch, StepOp::Drain { duration: drain }));
    }
    out.push(Step::new(
        host,
        batch,
        StepOp::Stop {
            generation: Generation::Current,
            replicas: replicas.to_vec(),
            grace: spec.stop_grace_period,
        },
    ));
}

/// A start-first batch: the new replicas come up, then each load balancer changes ONCE (the
/// new in, the old out: one nginx reload, not two), then the old drain and stop.
fn start_first(
    out: &mut Vec<Step>,
    host: &str,
    batch: Option<Batch>,
    (before, after): (&ServiceSpec, &ServiceSpec),
    (new, old): (&[u32], &[u32]),
    (join, leave): (&[String], &[String]),
    drain: Duration,
) {
    bring_up(out, host, batch, after, new, &[]);
    let mut left = false;
    for lb in join.iter().filter(|_| !new.is_empty()) {
        let op = if leave.contains(lb) && !old.is_empty() {
            left = true;
            StepOp::ReplaceInLb {
                lb: lb.clone(),
                joining: new.to_vec(),
                leaving: old.to_vec(),
            }
        } else {
            StepOp::JoinLb {
                lb: lb.clone(),
                generation: Generation::New,
                replicas: new.to_vec(),
            }
        };
        out.push(Step::new(host, batch, op));
    }
    if old.is_empty() {
        return;
    }
    for lb in leave
        .iter()
        .filter(|lb| new.is_empty() || !join.contains(lb))
    {
        left = true;
        out.push(Step::new(
            host,
            batch,
            StepOp::LeaveLb {
                lb: lb.clone(),
                generation: Generation::Current,
                replicas: old.to_vec(),
            },
        ));
    }
    drain_and_stop(out, host, batch, before, old, left, drain);
}

/// A new service: every replica at once (nothing serves traffic yet), host by host.
pub(super) fn create(spec: &ServiceSpec, join: &[String]) -> Vec<Step> {
    if spec.runtime == crate::model::Runtime::Swarm {
        return swarm::create(spec, join);
    }
    let mut out = Vec::new();
    for host in hosts(None, Some(spec)) {
        bring_up(&mut out, &host, None, spec, &range(1, spec.replicas), join);
    }
    out
}

/// New containers, batch by batch, in the configured order (or, blue-green, all at once
/// beside the old colour, then one switch).
pub fn roll(
    before: &ServiceSpec,
    after: &ServiceSpec,
    join: &[String],
    leave: &[String],
) -> Vec<Step> {
    if swarm::involved(before, after) {
        return swarm::change(before, after, join, leave);
    }
    if let Some(bg) = &after.rollout.blue_green {
        return blue_green(before, after, bg, join);
    }
    let mut out = Vec::new();
    let rollout = &after.rollout;
    for host in hosts(Some(before), Some(after)) {
        let n_old = replicas_on(Some(before), &host);
        let n_new = replicas_on(Some(after), &host);
        let indices = range(1, n_old.max(n_new));
        let size = rollout.batch.max(1) as usize;
        let of = indices.len().div_ceil(size) as u32;
        for (i, chunk) in indices.chunks(size).enumerate() {
            let batch = Some(Batch {
                number: i as u32 + 1,
                of,
            });
            let new: Vec<u32> = chunk.iter().copied().filter(|r| *r <= n_new).collect();
            let old: Vec<u32> = chunk.iter().copied().filter(|r| *r <= n_old).collect();
            match rollout.order {
                Order::StartFirst => start_first(
                    &mut out,
                    &host,
                    batch,
                    (before, after),
                    (&new, &old),
                    (join, leave),
                    rollout.drain,
                ),
                Order::StopFirst => {
                    take_down(&mut out, &host, batch, before, &old, leave, rollout.drain);
                    bring_up(&mut out, &host, batch, after, &new, join);
                }
            }
            if !new.is_empty() && !rollout.soak.is_zero() {
                out.push(Step::new(
                    &host,
                    batch,
                    StepOp::Soak {
                        duration: rollout.soak,
                    },
                ));
            }
        }
    }
    out
}

/// Blue-green, host by host: the new colour is started in full beside the live one, health
/// checked and warmed up, joins the preview load balancer, passes the preview check; then each
/// load balancer is switched from the old colour to the new one in ONE change, the new colour
/// leaves the preview, the old one drains, and is scaled down after `scale_down_delay`.
fn blue_green(
    before: &ServiceSpec,
    after: &ServiceSpec,
    bg: &crate::model::BlueGreenSpec,
    join: &[String],
) -> Vec<Step> {
    let mut out = Vec::new();
    let preview: Vec<String> = bg.preview_lb.iter().cloned().collect();
    for host in hosts(Some(before), Some(after)) {
        let new = range(1, replicas_on(Some(after), &host));
        bring_up(&mut out, &host, None, after, &new, &preview);
        if let Some(command) = &bg.preview_check {
            out.push(Step::new(
                &host,
                None,
                StepOp::PreviewCheck {
                    command: command.clone(),
                },
            ));
        }
        for lb in join {
            out.push(Step::new(
                &host,
                None,
                StepOp::Switch {
                    lb: lb.clone(),
                    replicas: new.clone(),
                },
            ));
        }
        for lb in &preview {
            out.push(Step::new(
                &host,
                None,
                StepOp::LeaveLb {
                    lb: lb.clone(),
                    generation: Generation::New,
                    replicas: new.clone(),
                },
            ));
        }
        if !join.is_empty() || !preview.is_empty() {
            out.push(Step::new(
                &host,
                None,
                StepOp::Drain {
                    duration: after.rollout.drain,
                },
            ));
        }
        out.push(Step::new(
            &host,
            None,
            StepOp::ScaleDownOld {
                delay: bg.scale_down_delay,
                keep: bg.keep_old_replicas,
            },
        ));
    }
    out
}

/// Blue-green switch-back, while the old colour still runs: take its running replicas over
/// (no container started), switch every load balancer back to them in one change, drain,
/// stop the colour that was live (kept for rollback).
pub fn switch_back(spec: &ServiceSpec, revision: u64, join: &[String]) -> Vec<Step> {
    let mut out = Vec::new();
    for host in &spec.hosts {
        let r = range(1, spec.replicas);
        out.push(Step::new(
            host,
            None,
            StepOp::Adopt {
                replicas: r.clone(),
                revision,
            },
        ));
        for lb in join {
            out.push(Step::new(
                host,
                None,
                StepOp::Switch {
                    lb: lb.clone(),
                    replicas: r.clone(),
                },
            ));
        }
        if !join.is_empty() {
            out.push(Step::new(
                host,
                None,
                StepOp::Drain {
                    duration: spec.rollout.drain,
                },
            ));
        }
        out.push(Step::new(
            host,
            None,
            StepOp::Stop {
                generation: Generation::Current,
                replicas: r,
                grace: spec.stop_grace_period,
            },
        ));
    }
    out
}

/// Replica count changes only: add the missing indices, or retire the highest ones.
pub(super) fn scale(
    before: &ServiceSpec,
    after: &ServiceSpec,
    join: &[String],
    leave: &[String],
) -> Vec<Step> {
    let mut out = Vec::new();
    for host in &after.hosts {
        let (n_old, n_new) = (before.replicas, after.replicas);
        if n_new > n_old {
            bring_up(&mut out, host, None, after, &range(n_old + 1, n_new), join);
        } else {
            take_down(
                &mut out,
                host,
                None,
                before,
                &range(n_new + 1, n_old),
                leave,
                after.rollout.drain,
            );
        }
    }
    out
}

/// In-place changes: LB membership of the running replicas, and recorded settings.
pub(super) fn update(
    before: &ServiceSpec,
    after: &ServiceSpec,
    joins: &[String],
    leaves: &[String],
) -> Vec<Step> {
    let mut out = Vec::new();
    for host in &after.hosts {
        let all = range(1, before.replicas);
        for lb in joins {
            out.push(Step::new(
                host,
                None,
                StepOp::JoinLb {
                    lb: lb.clone(),
                    generation: Generation::Current,
                    replicas: all.clone(),
                },
            ));
        }
        for lb in leaves {
            out.push(Step::new(
                host,
                None,
                StepOp::LeaveLb {
                    lb: lb.clone(),
                    generation: Generation::Current,
                    replicas: all.clone(),
                },
            ));
        }
        if !leaves.is_empty() {
            out.push(Step::new(
                host,
                None,
                StepOp::Drain {
                    duration: after.rollout.drain,
                },
            ));
        }
    }
    out.push(Step::global(StepOp::Record));
    out
}

/// A removed service: leave LBs, drain and stop every replica (kept until pruned).
pub(super) fn destroy(spec: &ServiceSpec, leave: &[String]) -> Vec<Step> {
    if spec.runtime == crate::model::Runtime::Swarm {
        return swarm::remove(spec, leave);
    }
    let mut out = Vec::new();
    for host in &spec.hosts {
        take_down(
            &mut out,
            host,
            None,
            spec,
            &range(1, spec.replicas),
            leave,
            spec.rollout.drain,
        );
    }
    out
}

#[cfg(test)]
mod tests;
