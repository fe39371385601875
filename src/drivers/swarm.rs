//! Docker Swarm through bollard's service API: the real adapter behind the `swarm_*` steps.
//!
//! Two halves. The pure half maps a gantry service to a Swarm `ServiceSpec` ([`service_spec`])
//! and reads what the manager reports into a [`Progress`] ([`progress`]); it is unit tested
//! here. The I/O half ([`SwarmManager`]) is a thin wrapper over the engine calls, exercised
//! against a real swarm-mode engine by `tests/swarm.rs`.
//!
//! How convergence is told apart from "not started yet": every task template carries the
//! label [`TEMPLATE_LABEL`], a digest of the template itself. The service has converged
//! when exactly `replicas` tasks are meant to run, all run, and all carry the digest of the
//! spec gantry set; an update that Swarm paused or rolled back is read from `UpdateStatus`,
//! and only an `UpdateStatus` that started after gantry's call counts (a previous update's
//! status stays on the service).

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Service, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum as UpdateState, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecResources, TaskState,
};
use bollard::query_parameters::{
    InspectContainerOptions, InspectServiceOptions, ListTasksOptions, UpdateServiceOptions,
};

use crate::model::{OnFailure, Order};
use crate::plan::steps::SwarmUpdateConfig;
use crate::ports::labels;

/// Container label of every task: a digest of the task template gantry set.
pub const TEMPLATE_LABEL: &str = "dev.gantry.swarm-template";

/// What a Swarm service is made of, resolved by the executor.
#[derive(Debug, Clone)]
pub struct ServiceInput<'a> {
    /// `<project>_<service>`.
    pub name: &'a str,
    pub project: &'a str,
    pub service: &'a str,
    /// The manager's host name (recorded as a label).
    pub host: &'a str,
    pub revision: u64,
    pub spec: &'a crate::model::ServiceSpec,
    /// The image pinned by digest or ID (see [`SwarmManager::pinned_image`]).
    pub image: &'a str,
    /// `KEY=value`, secrets included.
    pub env: &'a [String],
    pub replicas: u32,
    pub update: &'a SwarmUpdateConfig,
    /// `engine::spec_hash` of the gantry spec, as on containers.
    pub spec_hash: &'a str,
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The Swarm `ServiceSpec` of a gantry service.
pub fn service_spec(input: &ServiceInput<'_>) -> ServiceSpec {
    let spec = input.spec;
    let health_check = spec.health.as_ref().and_then(|h| {
        let command = h.command.as_ref()?;
        Some(HealthConfig {
            test: Some(
                std::iter::once("CMD".to_string())
                    .chain(command.iter().cloned())
                    .collect(),
            ),
            interval: Some(nanos(h.interval.0)),
            timeout: Some(nanos(h.timeout.0)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(nanos(h.start_period.0)),
            start_interval: None,
        })
    });
    let mut log_options = HashMap::new();
    if let Some(size) = spec.log.max_size {
        log_options.insert("max-size".to_string(), size.to_string());
    }
    if let Some(files) = spec.log.max_files {
        log_options.insert("max-file".to_string(), files.to_string());
    }
    let limits = (!spec.resources.is_empty()).then(|| Limit {
        nano_cpus: spec.resources.cpus.map(|c| (c * 1e9) as i64),
        memory_bytes: spec.resources.memory.map(|m| m.0 as i64),
        pids: None,
    });
    let mut container_labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut template = TaskSpec {
        container_spec: Some(TaskSpecContainerSpec {
            image: Some(input.image.to_string()),
            labels: Some(container_labels.clone()),
            // gantry's `command` replaces the image's CMD, as for containers.
            args: spec.command.clone(),
            env: Some(input.env.to_vec()),
            stop_grace_period: Some(nanos(spec.stop_grace_period.0)),
            health_check,
            ..Default::default()
        }),
        resources: limits.map(|l| TaskSpecResources {
            limits: Some(l),
            reservations: None,
        }),
        log_driver: Some(TaskSpecLogDriver {
            name: Some("json-file".to_string()),
            options: (!log_options.is_empty()).then_some(log_options),
        }),
        ..Default::default()
    };
    let digest = template_digest(&template);
    container_labels.insert(TEMPLATE_LABEL.to_string(), digest);
    if let Some(c) = template.container_spec.as_mut() {
        c.labels = Some(container_labels);
    }

    let mut service_labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    service_labels.insert(labels::PROJECT.into(), input.project.into());
    service_labels.insert(labels::SERVICE.into(), input.service.into());
    service_labels.insert(labels::REVISION.into(), input.revision.to_string());
    service_labels.insert(labels::HOST.into(), input.host.into());
    service_labels.insert(labels::SPEC_HASH.into(), input.spec_hash.into());

    let update = input.update;
    let endpoint_spec = spec.port.map(|port| EndpointSpec {
        mode: Some(EndpointSpecModeEnum::VIP),
        ports: Some(vec![EndpointPortConfig {
            name: None,
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(i64::from(port)),
            // Absent: Swarm chooses one (30000-32767).
            published_port: spec.host_ports.map(|r| i64::from(r.start)),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::INGRESS),
        }]),
    });
    ServiceSpec {
        name: Some(input.name.to_string()),
        labels: Some(service_labels),
        task_template: Some(template),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(input.replicas)),
            }),
            ..Default::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(i64::from(update.parallelism)),
            delay: Some(nanos(update.delay.0)),
            failure_action: Some(match update.failure_action {
                OnFailure::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
                OnFailure::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            }),
            monitor: Some(nanos(update.monitor.0)),
            max_failure_ratio: Some(0.0),
            order: Some(match update.order {
                Order::StartFirst => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
                Order::StopFirst => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            }),
        }),
        // Back to the previous spec at once, in the same order; a rollback that fails pauses.
        rollback_config: Some(ServiceSpecRollbackConfig {
            parallelism: Some(i64::from(input.replicas.max(1))),
            delay: Some(0),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(nanos(update.monitor.0)),
            max_failure_ratio: Some(0.0),
            order: Some(match update.order {
                Order::StartFirst => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
                Order::StopFirst => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            }),
        }),
        networks: None,
        endpoint_spec,
    }
}

/// A short digest of a task template (without its own label). Keys are sorted first: the
/// spec's maps are `HashMap`s, whose order changes from one run to the next.
fn template_digest(template: &TaskSpec) -> String {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sorted).collect())
            }
            other => other,
        }
    }
    let value = sorted(serde_json::to_value(template).unwrap_or_default());
    let json = serde_json::to_vec(&value).unwrap_or_default();
    crate::drivers::fs::sha256_hex(&json)[..16].to_string()
}

/// The digest label of a service spec's template.
pub fn template_of(spec: &ServiceSpec) -> Option<&str> {
    template_label(spec.task_template.as_ref())
}

/// The digest label of the template a task was created from.
fn task_template(task: &Task) -> Option<&str> {
    template_label(task.spec.as_ref())
}

fn template_label(template: Option<&TaskSpec>) -> Option<&str> {
    template?
        .container_spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(TEMPLATE_LABEL)
        .map(String::as_str)
}

/// Identifies one update of a service (`UpdateStatus.StartedAt`), whatever the date type.
pub fn update_started(service: &Service) -> Option<String> {
    service
        .update_status
        .as_ref()
        .and_then(|s| s.started_at.as_ref())
        .map(|t| format!("{t:?}"))
}

/// Where an update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet; what is happening, in words.
    Waiting(String),
    /// Every replica runs the spec gantry set.
    Converged(String),
    /// Swarm rolled the update back (`failure_action = rollback`): the previous spec runs.
    RolledBack(String),
    /// Swarm paused the update (or the rollback): a human must look.
    Paused(String),
}

fn state_word(s: &UpdateState) -> &'static str {
    match s {
        UpdateState::EMPTY => "",
        UpdateState::UPDATING => "updating",
        UpdateState::PAUSED => "paused",
        UpdateState::COMPLETED => "completed",
        UpdateState::ROLLBACK_STARTED => "rollback_started",
        UpdateState::ROLLBACK_PAUSED => "rollback_paused",
        UpdateState::ROLLBACK_COMPLETED => "rollback_completed",
    }
}

/// The update status word of a service (`completed`, `rollback_completed`, ...), if any.
pub fn update_state(service: &Service) -> Option<&'static str> {
    service
        .update_status
        .as_ref()
        .and_then(|s| s.state.as_ref())
        .map(state_word)
}

/// Reads where the update of `service` to the template `template` stands. `before` is the
/// update status the service had before gantry's call ([`update_started`]).
pub fn progress(
    service: &Service,
    before: Option<&str>,
    tasks: &[Task],
    replicas: u32,
    template: &str,
) -> Progress {
    let status = service.update_status.as_ref();
    let new_update =
        update_started(service).is_some() && update_started(service).as_deref() != before;
    let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
    if new_update {
        match status.and_then(|s| s.state.as_ref()) {
            Some(UpdateState::ROLLBACK_COMPLETED) => return Progress::RolledBack(message),
            Some(UpdateState::PAUSED) => {
                return Progress::Paused(format!("update paused: {message}"));
            }
            Some(UpdateState::ROLLBACK_PAUSED) => {
                return Progress::Paused(format!("rollback paused: {message}"));
            }
            Some(UpdateState::ROLLBACK_STARTED) => {
                return Progress::Waiting(format!("Swarm is rolling back: {message}"));
            }
            _ => {}
        }
    }
    let meant: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .collect();
    let ours_running = meant
        .iter()
        .filter(|t| {
            task_template(t) == Some(template)
                && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
        })
        .count();
    let updating = new_update
        && matches!(
            status.and_then(|s| s.state.as_ref()),
            Some(UpdateState::UPDATING)
        );
    if !updating && ours_running == replicas as usize && meant.len() == replicas as usize {
        return Progress::Converged(format!(
            "{ours_running}/{replicas} replica(s) running the new spec{}",
            if new_update {
                format!(" (update {})", message.trim_start_matches("update "))
            } else {
                String::new()
            }
        ));
    }
    Progress::Waiting(format!(
        "{ours_running}/{replicas} replica(s) running the new spec{}",
        if message.is_empty() || !new_update {
            String::new()
        } else {
            format!("; Swarm: {message}")
        }
    ))
}

/// Tasks of the template `template` that stopped or never started, in words, newest first:
/// what a failed update names.
pub fn failed_tasks(tasks: &[Task], template: &str) -> Vec<(String, Option<String>)> {
    let mut failed: Vec<&Task> = tasks
        .iter()
        .filter(|t| task_template(t) == Some(template))
        .filter(|t| {
            let status = t.status.as_ref();
            match status.and_then(|s| s.state) {
                Some(
                    TaskState::FAILED
                    | TaskState::REJECTED
                    | TaskState::COMPLETE
                    | TaskState::ORPHANED,
                ) => true,
                // Shut down by Swarm (a rollback replacing it) is not a failure of its own.
                Some(TaskState::SHUTDOWN) => status
                    .and_then(|s| s.err.as_ref())
                    .is_some_and(|e| !e.is_empty()),
                _ => false,
            }
        })
        .collect();
    failed.sort_by_key(|t| std::cmp::Reverse(format!("{:?}", t.updated_at)));
    failed
        .into_iter()
        .map(|t| {
            let s = t.status.clone().unwrap_or_default();
            let mut words = format!(
                "task {} (slot {}): {}",
                t.id.as_deref().map_or("?", |i| &i[..12.min(i.len())]),
                t.slot.unwrap_or_default(),
                s.state
                    .map_or("?".to_string(), |st| format!("{st:?}").to_lowercase()),
            );
            if let Some(m) = s.message.filter(|m| !m.is_empty()) {
                words.push_str(&format!(", {m}"));
            }
            if let Some(e) = s.err.filter(|e| !e.is_empty()) {
                words.push_str(&format!(", {e}"));
            }
            if let Some(code) = s.container_status.as_ref().and_then(|c| c.exit_code) {
                words.push_str(&format!(", exit code {code}"));
            }
            let container = s
                .container_status
                .and_then(|c| c.container_id)
                .filter(|c| !c.is_empty());
            (words, container)
        })
        .collect()
}

/// The manager's engine, through bollard.
pub struct SwarmManager {
    docker: Docker,
}

impl SwarmManager {
    /// From a connected engine client (the host's, with its TLS settings).
    pub fn new(docker: Docker) -> Self {
        SwarmManager { docker }
    }

    /// `Ok(())` when the engine is an active Swarm manager.
    pub async fn check_manager(&self) -> Result<(), String> {
        let info = self.docker.info().await.map_err(|e| e.to_string())?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available == Some(true) {
            return Ok(());
        }
        let state = swarm
            .local_node_state
            .map(|s| format!("{s:?}").to_lowercase())
            .unwrap_or_else(|| "unknown".into());
        Err(format!(
            "its engine is not a Swarm manager (swarm: {state}); run `docker swarm init` there, or name a manager in `hosts`"
        ))
    }

    pub async fn inspect(&self, name: &str) -> Result<Option<Service>, String> {
        match self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(format!("inspect Swarm service {name}: {e}")),
        }
    }

    /// Creates a service; returns its ID.
    pub async fn create(&self, spec: ServiceSpec) -> Result<String, String> {
        let name = spec.name.clone().unwrap_or_default();
        self.docker
            .create_service(spec, None)
            .await
            .map_err(|e| format!("create Swarm service {name}: {e}"))?
            .id
            .ok_or_else(|| format!("create Swarm service {name}: the engine gave no ID"))
    }

    /// Sets a new spec on the service at `version` (Swarm's optimistic concurrency).
    pub async fn update(&self, id: &str, version: u64, spec: ServiceSpec) -> Result<(), String> {
        self.update_with(id, version, spec, None).await
    }

    /// `docker service rollback`: back to the service's previous spec.
    pub async fn rollback(&self, service: &Service) -> Result<(), String> {
        let id = service.id.clone().unwrap_or_default();
        let version = service.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        let spec = service.spec.clone().unwrap_or_default();
        self.update_with(&id, version, spec, Some("previous".into()))
            .await
    }

    async fn update_with(
        &self,
        id: &str,
        version: u64,
        spec: ServiceSpec,
        rollback: Option<String>,
    ) -> Result<(), String> {
        let options = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            rollback,
            ..Default::default()
        };
        self.docker
            .update_service(id, spec, options, None)
            .await
            .map(|_| ())
            .map_err(|e| format!("update Swarm service {id}: {e}"))
    }

    /// Removes a service (gone already is fine).
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        match self.docker.delete_service(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(format!("remove Swarm service {name}: {e}")),
        }
    }

    /// Every task of the service (Swarm keeps a few old ones per slot).
    pub async fn tasks(&self, service_id: &str) -> Result<Vec<Task>, String> {
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                vec![service_id.to_string()],
            )])),
        };
        self.docker
            .list_tasks(Some(options))
            .await
            .map_err(|e| format!("list the tasks of Swarm service {service_id}: {e}"))
    }

    /// The image as the service should name it: by registry digest (`repo@sha256:...`) when
    /// the image came from a registry, so that every node can pull exactly it; else by image
    /// ID, which only nodes that already hold the image can run.
    pub async fn pinned_image(&self, reference: &str, image_id: &str) -> String {
        let repository = repository_of(reference);
        match self.docker.inspect_image(image_id).await {
            Ok(i) => i
                .repo_digests
                .unwrap_or_default()
                .into_iter()
                .find(|d| d.split('@').next() == Some(repository))
                .unwrap_or_else(|| image_id.to_string()),
            Err(_) => image_id.to_string(),
        }
    }

    /// The last output of a task container's health check, when it ran on this engine.
    pub async fn health_output(&self, container: &str) -> Option<String> {
        let c = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let last = c.state?.health?.log?.pop()?;
        let output = last.output.unwrap_or_default();
        Some(format!(
            "last health check: exit code {}{}",
            last.exit_code.unwrap_or(-1),
            if output.trim().is_empty() {
                String::new()
            } else {
                format!(", {}", output.trim())
            }
        ))
    }
}

/// `registry.example/app` of `registry.example/app:tag` (a port is not a tag).
fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => without_digest,
    }
}

/// The published port of `target` (the container port), once Swarm has assigned it.
pub fn published_port(service: &Service, target: u16) -> Option<u16> {
    service
        .endpoint
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.target_port == Some(i64::from(target)))
        .and_then(|p| p.published_port)
        .and_then(|p| u16::try_from(p).ok())
}

/// The value of a gantry label of the service's spec.
pub fn label<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
    service
        .spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Labels of the spec as a sorted map (for messages and tests).
pub fn service_labels(spec: &ServiceSpec) -> BTreeMap<String, String> {
    spec.labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ObjectVersion, ServiceUpdateStatus, TaskStatus};

    fn model() -> crate::model::ServiceSpec {
        let raw = crate::config::parse(
            r#"
[project]
name = "p"

[service.web]
runtime = "swarm"
image = "app:v1"
replicas = 3
command = ["serve", "--fast"]
port = 8080
host_ports = 18080
labels = { team = "a" }
stop_grace_period = "20s"
resources = { cpus = 0.5, memory = "64m" }
log = { max_size = "10m", max_files = 3 }
[service.web.health]
command = ["/app", "--healthcheck"]
interval = "2s"
timeout = "1s"
retries = 4
start_period = "3s"
[service.web.rollout]
batch = 2
order = "stop-first"
soak = "7s"
on_failure = "pause"
"#,
        );
        struct NoFiles;
        impl crate::model::FileFacts for NoFiles {
            fn env_file(&self, _: &str) -> Result<crate::model::EnvFileFacts, String> {
                Err("none".into())
            }
        }
        crate::model::validate(raw, &NoFiles)
            .expect("valid")
            .services
            .remove("web")
            .expect("web")
    }

    fn spec() -> ServiceSpec {
        let m = model();
        let update = crate::plan::steps::swarm::update_config(&m);
        service_spec(&ServiceInput {
            name: "p_web",
            project: "p",
            service: "web",
            host: "local",
            revision: 4,
            spec: &m,
            image: "sha256:abc",
            env: &["A=1".to_string()],
            replicas: 3,
            update: &update,
            spec_hash: "hash",
        })
    }

    #[test]
    fn gantry_settings_map_to_the_swarm_spec() {
        let s = spec();
        let json = serde_json::to_value(&s).unwrap();
        let c = &json["TaskTemplate"]["ContainerSpec"];
        assert_eq!(c["Image"], "sha256:abc");
        assert_eq!(c["Args"], serde_json::json!(["serve", "--fast"]));
        assert_eq!(c["Env"], serde_json::json!(["A=1"]));
        assert_eq!(c["StopGracePeriod"], 20_000_000_000i64);
        assert_eq!(
            c["HealthCheck"]["Test"],
            serde_json::json!(["CMD", "/app", "--healthcheck"])
        );
        assert_eq!(c["HealthCheck"]["Retries"], 4);
        assert_eq!(c["HealthCheck"]["StartPeriod"], 3_000_000_000i64);
        assert_eq!(c["Labels"]["team"], "a");
        assert!(c["Labels"][TEMPLATE_LABEL].is_string());
        let t = &json["TaskTemplate"];
        assert_eq!(t["Resources"]["Limits"]["NanoCPUs"], 500_000_000i64);
        assert_eq!(t["Resources"]["Limits"]["MemoryBytes"], 64 * 1024 * 1024);
        assert_eq!(t["LogDriver"]["Options"]["max-file"], "3");
        assert_eq!(json["Mode"]["Replicated"]["Replicas"], 3);
        let u = &json["UpdateConfig"];
        assert_eq!(u["Parallelism"], 2);
        assert_eq!(u["Order"], "stop-first");
        assert_eq!(u["FailureAction"], "pause");
        assert_eq!(u["Monitor"], 7_000_000_000i64);
        assert_eq!(u["Delay"], 7_000_000_000i64);
        assert_eq!(json["RollbackConfig"]["Parallelism"], 3);
        assert_eq!(json["RollbackConfig"]["FailureAction"], "pause");
        let port = &json["EndpointSpec"]["Ports"][0];
        assert_eq!(port["TargetPort"], 8080);
        assert_eq!(port["PublishedPort"], 18080);
        assert_eq!(port["PublishMode"], "ingress");
        let labels = service_labels(&s);
        assert_eq!(labels[labels::REVISION], "4");
        assert_eq!(labels[labels::PROJECT], "p");
        assert_eq!(labels["team"], "a");
    }

    #[test]
    fn the_template_digest_follows_the_template() {
        let a = spec();
        let mut m = model();
        m.env.insert("B".into(), "2".into());
        let update = crate::plan::steps::swarm::update_config(&m);
        let b = service_spec(&ServiceInput {
            name: "p_web",
            project: "p",
            service: "web",
            host: "local",
            revision: 5,
            spec: &m,
            image: "sha256:abc",
            env: &["A=1".to_string(), "B=2".to_string()],
            replicas: 3,
            update: &update,
            spec_hash: "hash2",
        });
        assert_ne!(template_of(&a), template_of(&b));
        // The revision is a service label, not part of the template: no task restart.
        let mut c = spec();
        c.labels
            .as_mut()
            .unwrap()
            .insert(labels::REVISION.into(), "9".into());
        assert_eq!(template_of(&a), template_of(&c));
    }

    fn service(state: Option<UpdateState>, started: &str, message: &str) -> Service {
        Service {
            id: Some("svc".into()),
            version: Some(ObjectVersion { index: Some(10) }),
            update_status: state.map(|s| ServiceUpdateStatus {
                state: Some(s),
                started_at: Some(started.into()),
                completed_at: None,
                message: Some(message.into()),
            }),
            ..Default::default()
        }
    }

    fn task(template: &str, desired: TaskState, state: TaskState) -> Task {
        let mut labels = HashMap::new();
        labels.insert(TEMPLATE_LABEL.to_string(), template.to_string());
        Task {
            id: Some("task0123456789".into()),
            slot: Some(1),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                message: Some("finished".into()),
                ..Default::default()
            }),
            spec: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    labels: Some(labels),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_previous_update_status_does_not_count() {
        let s = service(
            Some(UpdateState::ROLLBACK_COMPLETED),
            "t1",
            "rollback completed",
        );
        let before = update_started(&s);
        let tasks = vec![task("old", TaskState::RUNNING, TaskState::RUNNING)];
        assert!(matches!(
            progress(&s, before.as_deref(), &tasks, 1, "new"),
            Progress::Waiting(_)
        ));
        // The same status, seen as new: the rollback is the answer.
        assert!(matches!(
            progress(&s, None, &tasks, 1, "new"),
            Progress::RolledBack(_)
        ));
    }

    #[test]
    fn converged_when_every_meant_task_runs_the_new_template() {
        let s = service(Some(UpdateState::COMPLETED), "t2", "update completed");
        let mut tasks = vec![
            task("new", TaskState::RUNNING, TaskState::RUNNING),
            task("new", TaskState::RUNNING, TaskState::STARTING),
            task("old", TaskState::SHUTDOWN, TaskState::SHUTDOWN),
        ];
        assert!(matches!(
            progress(&s, Some("t1"), &tasks, 2, "new"),
            Progress::Waiting(_)
        ));
        tasks[1] = task("new", TaskState::RUNNING, TaskState::RUNNING);
        assert!(matches!(
            progress(&s, Some("t1"), &tasks, 2, "new"),
            Progress::Converged(_)
        ));
        // Still updating: not done even if the counts match for a moment.
        let u = service(Some(UpdateState::UPDATING), "t2", "update in progress");
        assert!(matches!(
            progress(&u, Some("t1"), &tasks, 2, "new"),
            Progress::Waiting(_)
        ));
        // A service created (no update status at all) converges on its tasks alone.
        let created = service(None, "", "");
        assert!(matches!(
            progress(&created, None, &tasks, 2, "new"),
            Progress::Converged(_)
        ));
    }

    #[test]
    fn paused_updates_and_rollbacks_are_reported() {
        let p = service(
            Some(UpdateState::PAUSED),
            "t3",
            "update paused due to failure",
        );
        assert!(matches!(
            progress(&p, None, &[], 1, "x"),
            Progress::Paused(_)
        ));
        let r = service(Some(UpdateState::ROLLBACK_PAUSED), "t3", "rollback paused");
        assert!(matches!(
            progress(&r, None, &[], 1, "x"),
            Progress::Paused(_)
        ));
    }

    #[test]
    fn failed_tasks_are_named() {
        let tasks = vec![
            task("new", TaskState::SHUTDOWN, TaskState::COMPLETE),
            task("old", TaskState::RUNNING, TaskState::RUNNING),
        ];
        let failed = failed_tasks(&tasks, "new");
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].0,
            "task task01234567 (slot 1): complete, finished"
        );
    }

    #[test]
    fn repositories_of_references() {
        assert_eq!(repository_of("app:v1"), "app");
        assert_eq!(
            repository_of("registry.example:5000/app:v1"),
            "registry.example:5000/app"
        );
        assert_eq!(
            repository_of("registry.example:5000/app"),
            "registry.example:5000/app"
        );
        assert_eq!(repository_of("app@sha256:abc"), "app");
    }
}
