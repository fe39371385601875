//! What a replica needs around it on its host, and the container options of a service
//! resolved for one engine: the project's network (named after the project, the service name
//! as DNS alias), the named volumes (`<project>_<name>`), made once per host per run before
//! the first container there, and never removed by a rollout, a rollback or a destroy (only
//! `gantry prune --volumes` removes a volume no service declares any more).

use std::collections::{BTreeMap, BTreeSet};

use super::StepError;
use super::run::Run;
use super::service_spec;
use crate::model::{Runtime, ServiceSpec};
use crate::plan::{Action, Plan};
use crate::ports::{
    ContainerOptions, ContainerRuntime, Healthcheck, Mount, MountSource, NetworkAttachment,
    NetworkMode, labels,
};

/// The label of a volume gantry creates: the name the configuration gives it.
pub const VOLUME_LABEL: &str = "dev.gantry.volume";

/// What the containers a run creates on one host need there first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct HostNeeds {
    /// Some replica joins the project's network.
    pub network: bool,
    /// Named volumes, as the configuration names them.
    pub volumes: BTreeSet<String>,
}

/// The engine's name of the project's volume `name`.
pub fn volume_name(project: &str, name: &str) -> String {
    format!("{project}_{name}")
}

/// Per host, what the services the plan creates or changes need there: the project network
/// (unless every one of them has `network_mode` host or none) and their named volumes.
pub(super) fn host_needs(plan: &Plan) -> BTreeMap<String, HostNeeds> {
    let mut needs: BTreeMap<String, HostNeeds> = BTreeMap::new();
    // A task runs from its service's spec, which may itself be unchanged.
    let run_tasks: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Run)
        .filter_map(|c| match &c.after {
            Some(crate::plan::Spec::Task(t)) => Some(t.service.as_str()),
            _ => None,
        })
        .collect();
    for c in plan.changes.iter().filter(|c| {
        !matches!(c.action, Action::NoOp | Action::Destroy)
            || (c.action == Action::NoOp && run_tasks.contains(&c.address.name.as_str()))
    }) {
        let Some(spec) = service_spec(&c.after) else {
            continue;
        };
        if spec.runtime == Runtime::Swarm {
            continue;
        }
        for host in &spec.hosts {
            let n = needs.entry(host.clone()).or_default();
            n.network |= spec.network_mode == NetworkMode::Project;
            n.volumes.extend(
                spec.volumes
                    .iter()
                    .filter_map(|m| m.volume())
                    .map(String::from),
            );
        }
    }
    needs
}

impl<R: ContainerRuntime> Run<'_, R> {
    /// Labels of what gantry creates for the project besides containers: `[project] labels`,
    /// then gantry's own (which win).
    pub(super) fn resource_labels(&self, more: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut l = self.env.labels.clone();
        l.insert(labels::PROJECT.into(), self.env.project.into());
        for (k, v) in more {
            l.insert((*k).into(), (*v).into());
        }
        l
    }

    /// Before the first container of this run on `host`: the project network and the named
    /// volumes its services use there, once per host per run (existing ones are left as they
    /// are). Nothing here is journalled: none of it is ever undone.
    pub(super) async fn prepare_host(&self, host: &str) -> Result<(), StepError> {
        let mut prepared = self.prepared.lock().await;
        if prepared.contains(host) {
            return Ok(());
        }
        let needs = self
            .needs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
            .unwrap_or_default();
        let target = self
            .target(&Some(host.to_string()))
            .map_err(StepError::new)?;
        let project = self.env.project;
        if needs.network {
            target
                .runtime
                .ensure_network(project, &self.resource_labels(&[]))
                .await
                .map_err(|e| {
                    StepError::new(format!(
                        "the project network `{project}` on host `{host}`: {e}"
                    ))
                })?;
        }
        for name in &needs.volumes {
            let volume = volume_name(project, name);
            target
                .runtime
                .ensure_volume(&volume, &self.resource_labels(&[(VOLUME_LABEL, name)]))
                .await
                .map_err(|e| StepError::new(format!("volume `{volume}` on host `{host}`: {e}")))?;
        }
        prepared.insert(host.to_string());
        Ok(())
    }
}

/// The container options of `service`'s replicas, resolved for an engine of `project`.
pub fn container_options(project: &str, service: &str, spec: &ServiceSpec) -> ContainerOptions {
    // The project network with the service's name as alias (`redis` resolves to its running
    // replicas); networks of `networks` are joined under the container's own name only: they
    // are shared with what is not the project's, where the name could clash.
    let networks = match spec.network_mode {
        NetworkMode::Project => std::iter::once(NetworkAttachment {
            name: project.to_string(),
            aliases: vec![service.to_string()],
        })
        .chain(spec.networks.iter().map(|n| NetworkAttachment {
            name: n.clone(),
            aliases: Vec::new(),
        }))
        .collect(),
        NetworkMode::Host | NetworkMode::None => Vec::new(),
    };
    let mounts = spec
        .volumes
        .iter()
        .map(|m| Mount {
            source: match &m.source {
                MountSource::Volume(v) => MountSource::Volume(volume_name(project, v)),
                bind => bind.clone(),
            },
            ..m.clone()
        })
        .collect();
    let healthcheck = spec.health.as_ref().and_then(|h| {
        h.command.as_ref().map(|test| Healthcheck {
            test: test.clone(),
            interval: h.interval.0,
            timeout: h.timeout.0,
            retries: h.retries,
            start_period: h.start_period.0,
        })
    });
    ContainerOptions {
        entrypoint: spec.entrypoint.clone(),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        publish: spec.publish.clone(),
        networks,
        network_mode: spec.network_mode,
        mounts,
        tmpfs: spec.tmpfs.clone(),
        restart: spec.restart,
        healthcheck,
        cap_add: spec.cap_add.clone(),
        cap_drop: spec.cap_drop.clone(),
        privileged: spec.privileged,
        read_only: spec.read_only,
        init: spec.init,
        pid: spec.pid.clone(),
        shm_size: spec.shm_size.map(|s| s.0),
        sysctls: spec.sysctls.clone(),
        ulimits: spec.ulimits.clone(),
        extra_hosts: spec.extra_hosts.clone(),
        devices: spec.devices.clone(),
    }
}

/// The engine names of the named volumes `services` declare.
pub fn declared_volumes<'a>(
    project: &str,
    services: impl IntoIterator<Item = &'a ServiceSpec>,
) -> BTreeSet<String> {
    services
        .into_iter()
        .flat_map(|s| s.volumes.iter().filter_map(|m| m.volume()))
        .map(|v| volume_name(project, v))
        .collect()
}
