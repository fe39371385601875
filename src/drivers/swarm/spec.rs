//! The Swarm `ServiceSpec` of a gantry service, and the digest label that tells the tasks of
//! one template from the others.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecLogDriver,
    TaskSpecResources,
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
    /// The image pinned by digest or ID (see [`super::SwarmManager::pinned_image`]).
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
pub(super) fn task_template(task: &Task) -> Option<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::swarm::service_labels;

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
}
