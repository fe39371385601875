//! The steps of a service with `runtime = "swarm"`: Swarm rolls the replicas itself, so a
//! change is ONE `swarm_update` (the whole spec, with gantry's rollout settings as Swarm's
//! `UpdateConfig`), then the warm-up and the load-balancer steps around it. Swarm's routing
//! mesh publishes one port on the manager for all replicas: that address is what load
//! balancers and the warm-up use, and it does not move during an update.
//!
//! Everything the executor needs is decided here, including how long it may wait.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Step, StepOp};
use crate::model::{Duration, OnFailure, Order, Runtime, ServiceSpec};

/// Swarm's `UpdateConfig`, from gantry's rollout settings. The rollback Swarm runs on a
/// failure replaces every replica at once, in the same order, and pauses if it fails too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwarmUpdateConfig {
    /// Replicas replaced at a time (`rollout.batch`).
    pub parallelism: u32,
    /// `rollout.order`.
    pub order: Order,
    /// Wait between batches (`rollout.soak`): the new replicas take real traffic first.
    pub delay: Duration,
    /// A failure of a new replica this long after it started fails the update
    /// (`rollout.soak`, or Swarm's default 5s).
    pub monitor: Duration,
    /// `rollout.on_failure`: Swarm rolls back to the previous spec, or pauses.
    pub failure_action: OnFailure,
}

impl SwarmUpdateConfig {
    /// `1 at a time, start-first, 30s between batches, monitor 30s, on failure rollback`.
    pub fn describe(&self) -> String {
        let delay = if self.delay.is_zero() {
            String::new()
        } else {
            format!("{} between batches, ", self.delay)
        };
        format!(
            "{} at a time, {}, {delay}monitor {}, on failure {}",
            self.parallelism, self.order, self.monitor, self.failure_action
        )
    }
}

/// Swarm's default `Monitor` (`docker service update --update-monitor`).
const DEFAULT_MONITOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether either side of a change runs on Swarm (those changes are planned here).
pub fn involved(before: &ServiceSpec, after: &ServiceSpec) -> bool {
    before.runtime == Runtime::Swarm || after.runtime == Runtime::Swarm
}

/// The manager a Swarm service is deployed through (validation allows exactly one host).
fn manager(spec: &ServiceSpec) -> &str {
    spec.hosts.first().map_or("", String::as_str)
}

pub fn update_config(spec: &ServiceSpec) -> SwarmUpdateConfig {
    let r = &spec.rollout;
    SwarmUpdateConfig {
        parallelism: r.batch.clamp(1, spec.replicas.max(1)),
        order: r.order,
        delay: r.soak,
        monitor: if r.soak.is_zero() {
            Duration(DEFAULT_MONITOR)
        } else {
            r.soak
        },
        failure_action: r.on_failure,
    }
}

/// How long the update may take: every batch gets its replicas started and healthy (start
/// period, then as many probes as it takes to fail), monitored and the old ones stopped;
/// plus as long again for Swarm's rollback, and a margin for scheduling.
pub fn deadline(spec: &ServiceSpec) -> Duration {
    let secs = std::time::Duration::from_secs;
    let update = update_config(spec);
    let healthy = match &spec.health {
        Some(h) => h.start_period.0 + (h.interval.0 + h.timeout.0) * (h.retries + 1),
        None => secs(5),
    };
    let per_batch =
        healthy + update.delay.0 + update.monitor.0 + spec.stop_grace_period.0 + secs(10);
    let batches = spec.replicas.div_ceil(update.parallelism).max(1);
    let rollback = healthy + update.monitor.0 + spec.stop_grace_period.0;
    let total = per_batch * batches + rollback + secs(30);
    // Whole seconds: the plan shows it.
    Duration(secs(total.as_secs()))
}

fn update_step(spec: &ServiceSpec) -> Step {
    Step::new(
        manager(spec),
        None,
        StepOp::SwarmUpdate {
            replicas: spec.replicas,
            update: update_config(spec),
            deadline: deadline(spec),
        },
    )
}

/// A new Swarm service: create it, warm it up, let its published port join the LBs.
pub(in crate::plan) fn create(spec: &ServiceSpec, join: &[String]) -> Vec<Step> {
    let host = manager(spec);
    let mut out = vec![update_step(spec)];
    if spec.warmup.is_some() {
        out.push(Step::new(host, None, StepOp::SwarmWarmup));
    }
    for lb in join {
        out.push(Step::new(
            host,
            None,
            StepOp::SwarmJoinLb { lb: lb.clone() },
        ));
    }
    out
}

/// A removed Swarm service: leave the LBs, drain, remove it.
pub(in crate::plan) fn remove(spec: &ServiceSpec, leave: &[String]) -> Vec<Step> {
    let host = manager(spec);
    let mut out: Vec<Step> = leave
        .iter()
        .map(|lb| Step::new(host, None, StepOp::SwarmLeaveLb { lb: lb.clone() }))
        .collect();
    if !leave.is_empty() {
        out.push(Step::new(
            host,
            None,
            StepOp::Drain {
                duration: spec.rollout.drain,
            },
        ));
    }
    out.push(Step::new(host, None, StepOp::SwarmRemove));
    out
}

/// Settings that are not part of the Swarm service spec.
fn outside_swarm_spec(spec: &ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        lb: Vec::new(),
        warmup: None,
        depends_on: Vec::new(),
        ..spec.clone()
    }
}

/// A change of a service that runs on Swarm on one side at least. `join` and `leave` are
/// the load balancers (known to the state) of `after` and of `before`.
pub(in crate::plan) fn change(
    before: &ServiceSpec,
    after: &ServiceSpec,
    join: &[String],
    leave: &[String],
) -> Vec<Step> {
    let moved = before.runtime != after.runtime || manager(before) != manager(after);
    if moved {
        // New first, beside the old (start-first), then the old goes.
        let mut out = super::create(after, join);
        out.extend(super::destroy(before, leave));
        return out;
    }
    let host = manager(after);
    let mut out = Vec::new();
    if outside_swarm_spec(before) != outside_swarm_spec(after) {
        out.push(update_step(after));
        if after.warmup.is_some() {
            out.push(Step::new(host, None, StepOp::SwarmWarmup));
        }
    }
    for lb in join.iter().filter(|l| !before.lb.contains(l)) {
        out.push(Step::new(
            host,
            None,
            StepOp::SwarmJoinLb { lb: lb.clone() },
        ));
    }
    let leaving: Vec<&String> = leave.iter().filter(|l| !after.lb.contains(l)).collect();
    for lb in &leaving {
        out.push(Step::new(
            host,
            None,
            StepOp::SwarmLeaveLb { lb: (*lb).clone() },
        ));
    }
    if !leaving.is_empty() {
        out.push(Step::new(
            host,
            None,
            StepOp::Drain {
                duration: after.rollout.drain,
            },
        ));
    }
    if out.is_empty() {
        out.push(Step::global(StepOp::Record));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        let mut m = crate::model::validate(
            crate::config::parse(
                r#"
[project]
name = "p"

[service.web]
runtime = "swarm"
image = "app:v1"
replicas = 3
port = 8080
host_ports = 18080
lb = ["front"]
[service.web.health]
command = ["/app", "--healthcheck"]
interval = "1s"
timeout = "1s"
retries = 2
[service.web.rollout]
batch = 1
order = "start-first"

[lb.front]
kind = "command"
join = ["true"]
leave = ["true"]
"#,
            ),
            &NoFiles,
        )
        .expect("valid");
        m.services.remove("web").expect("web")
    }

    struct NoFiles;
    impl crate::model::FileFacts for NoFiles {
        fn env_file(&self, _: &str) -> Result<crate::model::EnvFileFacts, String> {
            Err("no files".into())
        }
    }

    fn ops(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::describe).collect()
    }

    #[test]
    fn rollout_settings_become_the_update_config() {
        let s = spec();
        let u = update_config(&s);
        assert_eq!(u.parallelism, 1);
        assert_eq!(u.order, Order::StartFirst);
        assert_eq!(u.failure_action, OnFailure::Rollback);
        assert_eq!(u.monitor.0, DEFAULT_MONITOR);
        // 3 batches of (0 + 2s * 3 probes + 5s monitor + 10s grace + 10s) + rollback + 30s.
        assert_eq!(deadline(&s).0.as_secs(), 3 * 31 + 21 + 30);
    }

    #[test]
    fn an_image_change_is_one_swarm_update() {
        let before = spec();
        let after = ServiceSpec {
            image: "app:v2".into(),
            ..before.clone()
        };
        let steps = change(&before, &after, &["front".into()], &["front".into()]);
        assert_eq!(
            ops(&steps),
            [
                "swarm service update: 3 replica(s), 1 at a time, start-first, monitor 5s, on failure rollback; wait at most 2m 24s"
            ]
        );
        assert_eq!(steps[0].host.as_deref(), Some("local"));
    }

    #[test]
    fn a_container_option_change_is_one_swarm_update_and_the_plan_shows_it() {
        let before = spec();
        let after = ServiceSpec {
            volumes: vec!["data:/data".parse().unwrap()],
            cap_drop: vec!["ALL".into()],
            read_only: true,
            restart: crate::model::Restart::OnFailure(Some(3)),
            ..before.clone()
        };
        let steps = change(&before, &after, &["front".into()], &["front".into()]);
        assert_eq!(ops(&steps).len(), 1);
        assert!(ops(&steps)[0].starts_with("swarm service update"));
        let paths: Vec<String> = crate::plan::diff::service_attributes(&before, &after)
            .into_iter()
            .map(|a| a.path)
            .collect();
        assert_eq!(paths, ["volumes", "restart", "cap_drop", "read_only"]);
    }

    #[test]
    fn lb_membership_alone_needs_no_swarm_update() {
        let before = spec();
        let after = ServiceSpec {
            lb: Vec::new(),
            ..before.clone()
        };
        let steps = change(&before, &after, &[], &["front".into()]);
        assert_eq!(ops(&steps), ["published port leaves lb.front", "drain 5s"]);
    }

    #[test]
    fn create_and_remove() {
        let s = spec();
        assert_eq!(
            ops(&create(&s, &["front".into()])),
            [
                "swarm service update: 3 replica(s), 1 at a time, start-first, monitor 5s, on failure rollback; wait at most 2m 24s",
                "published port joins lb.front"
            ]
        );
        assert_eq!(
            ops(&remove(&s, &["front".into()])),
            [
                "published port leaves lb.front",
                "drain 5s",
                "remove the swarm service"
            ]
        );
    }

    #[test]
    fn moving_from_containers_to_swarm_starts_the_swarm_service_first() {
        let after = spec();
        let before = ServiceSpec {
            runtime: Runtime::Container,
            host_ports: None,
            ..after.clone()
        };
        let steps = change(&before, &after, &["front".into()], &["front".into()]);
        let d = ops(&steps);
        assert!(d[0].starts_with("swarm service update"), "{d:?}");
        assert_eq!(d[1], "published port joins lb.front");
        assert!(d.last().unwrap().starts_with("stop #1,#2,#3"), "{d:?}");
    }
}
