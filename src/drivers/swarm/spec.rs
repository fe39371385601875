//! The Swarm `ServiceSpec` of a gantry service, and the digest label that tells the tasks of
//! one template from the others.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount as SwarmMount,
    MountTmpfsOptions, MountTypeEnum, MountVolumeOptions, NetworkAttachmentConfig,
    ResourcesUlimits, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use crate::model::swarm::{SwarmTmpfs, swarm_capability, swarm_host_line};
use crate::model::{MountSource, NetworkMode, OnFailure, Order, Protocol, Restart};
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
    /// The project's overlay network, which the service joins with its name as DNS alias
    /// (`None`: no network of the project's, e.g. in the conformance suite).
    pub network: Option<&'a str>,
    /// `[project] labels`: on the volumes Swarm creates for the service's named volumes.
    pub project_labels: &'a BTreeMap<String, String>,
}

/// Where `/dev/shm` is: `shm_size` is a tmpfs mount there (Swarm has no `ShmSize`; the engine
/// mounts no `/dev/shm` of its own over a mount of the user's).
const DEV_SHM: &str = "/dev/shm";

/// The engine's name of a named volume of the project: `<project>_<name>`, as for containers
/// (and `docker stack deploy`).
pub fn volume_name(project: &str, volume: &str) -> String {
    format!("{project}_{volume}")
}

/// Mounts: named volumes (created by Swarm on the node that runs the task, with gantry's
/// labels, when missing), bind mounts, `tmpfs`, and `shm_size` as a tmpfs at `/dev/shm`.
fn mounts(input: &ServiceInput<'_>) -> Vec<SwarmMount> {
    let spec = input.spec;
    let mut volume_labels: HashMap<String, String> = input
        .project_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    volume_labels.insert(labels::PROJECT.into(), input.project.into());
    let mut out: Vec<SwarmMount> = spec
        .volumes
        .iter()
        .map(|m| match &m.source {
            MountSource::Volume(v) => SwarmMount {
                target: Some(m.target.clone()),
                source: Some(volume_name(input.project, v)),
                typ: Some(MountTypeEnum::VOLUME),
                read_only: Some(m.read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(volume_labels.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            MountSource::Bind(path) => SwarmMount {
                target: Some(m.target.clone()),
                source: Some(path.clone()),
                typ: Some(MountTypeEnum::BIND),
                read_only: Some(m.read_only),
                ..Default::default()
            },
        })
        .collect();
    let tmpfs =
        |target: String, size: Option<u64>, mode: Option<u32>, read_only: bool| SwarmMount {
            target: Some(target),
            typ: Some(MountTypeEnum::TMPFS),
            read_only: read_only.then_some(true),
            tmpfs_options: Some(MountTmpfsOptions {
                size_bytes: size.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                mode: mode.map(i64::from),
                options: None,
            }),
            ..Default::default()
        };
    for entry in &spec.tmpfs {
        // Validation refused what Swarm cannot mount; a bare path is what is left otherwise.
        let t = entry.parse::<SwarmTmpfs>().unwrap_or_else(|_| SwarmTmpfs {
            target: entry.split(':').next().unwrap_or(entry).to_string(),
            size_bytes: None,
            mode: None,
            read_only: false,
        });
        out.push(tmpfs(t.target, t.size_bytes, t.mode, t.read_only));
    }
    if let Some(size) = spec.shm_size {
        out.push(tmpfs(
            DEV_SHM.to_string(),
            Some(size.0),
            Some(0o1777),
            false,
        ));
    }
    out
}

/// Networks the tasks join: the project's (the service's name as alias) and `networks`, or
/// the host's network stack.
fn networks(input: &ServiceInput<'_>) -> Vec<NetworkAttachmentConfig> {
    let spec = input.spec;
    let attach = |target: &str| NetworkAttachmentConfig {
        target: Some(target.to_string()),
        aliases: Some(vec![input.service.to_string()]),
        driver_opts: None,
    };
    match spec.network_mode {
        NetworkMode::Host => vec![NetworkAttachmentConfig {
            target: Some("host".to_string()),
            ..Default::default()
        }],
        // Refused by validation: Swarm has no `none` network for services.
        NetworkMode::None => Vec::new(),
        NetworkMode::Project => input
            .network
            .into_iter()
            .chain(spec.networks.iter().map(String::as_str))
            .map(attach)
            .collect(),
    }
}

/// Swarm's restart policy: `unless-stopped` and `always` are `any` (Swarm restarts a task
/// whatever its exit, and never one that a person stopped: it has no such thing).
fn restart_policy(restart: Restart) -> TaskSpecRestartPolicy {
    use TaskSpecRestartPolicyConditionEnum as Condition;
    let (condition, max) = match restart {
        Restart::No => (Condition::NONE, None),
        Restart::Always | Restart::UnlessStopped => (Condition::ANY, None),
        Restart::OnFailure(n) => (Condition::ON_FAILURE, n),
    };
    TaskSpecRestartPolicy {
        condition: Some(condition),
        max_attempts: max.map(i64::from),
        ..Default::default()
    }
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
    let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let mounts = mounts(input);
    let networks = networks(input);
    let mut template = TaskSpec {
        container_spec: Some(TaskSpecContainerSpec {
            image: Some(input.image.to_string()),
            labels: Some(container_labels.clone()),
            // Swarm's `Command` replaces the image's ENTRYPOINT (and then its CMD too, as
            // `docker run --entrypoint` does); `Args` replaces the CMD.
            command: spec.entrypoint.clone(),
            args: spec.command.clone(),
            env: Some(input.env.to_vec()),
            dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            read_only: spec.read_only.then_some(true),
            init: spec.init.then_some(true),
            mounts: (!mounts.is_empty()).then_some(mounts),
            stop_grace_period: Some(nanos(spec.stop_grace_period.0)),
            health_check,
            hosts: non_empty(
                spec.extra_hosts
                    .iter()
                    .map(|h| swarm_host_line(h))
                    .collect(),
            ),
            sysctls: (!spec.sysctls.is_empty()).then(|| {
                spec.sysctls
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            capability_add: non_empty(spec.cap_add.iter().map(|c| swarm_capability(c)).collect()),
            capability_drop: non_empty(spec.cap_drop.iter().map(|c| swarm_capability(c)).collect()),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|(name, u)| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        resources: limits.map(|l| TaskSpecResources {
            limits: Some(l),
            reservations: None,
        }),
        restart_policy: Some(restart_policy(spec.restart)),
        networks: (!networks.is_empty()).then_some(networks),
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
    let endpoint_spec = endpoint(spec);
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

/// The published ports, through Swarm's routing mesh (`ingress`: the port answers on every
/// node and spreads the connections over the replicas): `port` (on `host_ports`, or one
/// Swarm chooses) and every `publish` entry. A service on the host's network publishes
/// nothing: its process listens on the node's ports itself.
fn endpoint(spec: &crate::model::ServiceSpec) -> Option<EndpointSpec> {
    if spec.network_mode == NetworkMode::Host {
        return None;
    }
    let ingress = |protocol: Protocol, target: u16, published: Option<u16>| EndpointPortConfig {
        name: None,
        protocol: Some(match protocol {
            Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
            Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
        }),
        target_port: Some(i64::from(target)),
        // Absent: Swarm chooses one (30000-32767).
        published_port: published.map(i64::from),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::INGRESS),
    };
    let ports: Vec<EndpointPortConfig> = spec
        .port
        .map(|port| ingress(Protocol::Tcp, port, spec.host_ports.map(|r| r.start)))
        .into_iter()
        .chain(
            spec.publish
                .iter()
                .map(|p| ingress(p.protocol, p.container_port, Some(p.host_port))),
        )
        .collect();
    (!ports.is_empty()).then_some(EndpointSpec {
        mode: Some(EndpointSpecModeEnum::VIP),
        ports: Some(ports),
    })
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
            network: Some("p_default"),
            project_labels: &BTreeMap::new(),
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

    /// A service with every container option Swarm has, as the driver maps it.
    fn options_spec(extra: &str) -> ServiceSpec {
        let raw = crate::config::parse(&format!(
            r#"
[project]
name = "p"

[service.db]
runtime = "swarm"
image = "db:1"
port = 5432
entrypoint = ["/bin/db"]
command = ["--serve"]
user = "1000:1000"
working_dir = "/srv"
volumes = ["data:/var/lib/db", "/etc/db:/etc/db:ro"]
tmpfs = ["/tmp", "/run:size=64m,mode=1777"]
shm_size = "128m"
read_only = true
init = true
cap_add = ["NET_ADMIN"]
cap_drop = ["ALL"]
sysctls = {{ "net.core.somaxconn" = 1024 }}
ulimits = {{ nofile = {{ soft = 1000, hard = 2000 }}, nproc = 512 }}
extra_hosts = ["metadata:169.254.169.254"]
publish = ["8125:8125/udp", "9000:9000"]
networks = ["shared"]
health = {{ command = ["/bin/db", "ping"] }}
{extra}
"#
        ));
        struct NoFiles;
        impl crate::model::FileFacts for NoFiles {
            fn env_file(&self, _: &str) -> Result<crate::model::EnvFileFacts, String> {
                Err("none".into())
            }
        }
        let m = crate::model::validate(raw, &NoFiles)
            .expect("valid")
            .services
            .remove("db")
            .expect("db");
        let update = crate::plan::steps::swarm::update_config(&m);
        let labels = BTreeMap::from([("team".to_string(), "data".to_string())]);
        service_spec(&ServiceInput {
            name: "p_db",
            project: "p",
            service: "db",
            host: "local",
            revision: 1,
            spec: &m,
            image: "sha256:abc",
            env: &[],
            replicas: 1,
            update: &update,
            spec_hash: "hash",
            network: Some("p_default"),
            project_labels: &labels,
        })
    }

    #[test]
    fn container_options_map_to_the_swarm_spec() {
        let json = serde_json::to_value(options_spec("restart = \"on-failure:3\"")).unwrap();
        let t = &json["TaskTemplate"];
        let c = &t["ContainerSpec"];
        assert_eq!(c["Command"], serde_json::json!(["/bin/db"]));
        assert_eq!(c["Args"], serde_json::json!(["--serve"]));
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["Dir"], "/srv");
        assert_eq!(c["ReadOnly"], true);
        assert_eq!(c["Init"], true);
        assert_eq!(c["CapabilityAdd"], serde_json::json!(["CAP_NET_ADMIN"]));
        assert_eq!(c["CapabilityDrop"], serde_json::json!(["ALL"]));
        assert_eq!(c["Sysctls"]["net.core.somaxconn"], "1024");
        assert_eq!(
            c["Ulimits"],
            serde_json::json!([
                {"Name": "nofile", "Soft": 1000, "Hard": 2000},
                {"Name": "nproc", "Soft": 512, "Hard": 512}
            ])
        );
        assert_eq!(c["Hosts"], serde_json::json!(["169.254.169.254 metadata"]));
        assert_eq!(
            c["HealthCheck"]["Test"],
            serde_json::json!(["CMD", "/bin/db", "ping"])
        );
        let mounts = c["Mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 5, "{mounts:?}");
        assert_eq!(mounts[0]["Type"], "volume");
        assert_eq!(mounts[0]["Source"], "p_data");
        assert_eq!(mounts[0]["Target"], "/var/lib/db");
        assert_eq!(mounts[0]["ReadOnly"], false);
        assert_eq!(mounts[0]["VolumeOptions"]["Labels"][labels::PROJECT], "p");
        assert_eq!(mounts[0]["VolumeOptions"]["Labels"]["team"], "data");
        assert_eq!(mounts[1]["Type"], "bind");
        assert_eq!(mounts[1]["Source"], "/etc/db");
        assert_eq!(mounts[1]["ReadOnly"], true);
        assert_eq!(mounts[2]["Type"], "tmpfs");
        assert_eq!(mounts[2]["Target"], "/tmp");
        assert_eq!(mounts[3]["TmpfsOptions"]["SizeBytes"], 64 * 1024 * 1024);
        assert_eq!(mounts[3]["TmpfsOptions"]["Mode"], 0o1777);
        assert_eq!(mounts[4]["Target"], "/dev/shm");
        assert_eq!(mounts[4]["TmpfsOptions"]["SizeBytes"], 128 * 1024 * 1024);
        assert_eq!(
            t["RestartPolicy"],
            serde_json::json!({"Condition": "on-failure", "MaxAttempts": 3})
        );
        assert_eq!(
            t["Networks"],
            serde_json::json!([
                {"Target": "p_default", "Aliases": ["db"]},
                {"Target": "shared", "Aliases": ["db"]}
            ])
        );
        let ports = &json["EndpointSpec"]["Ports"];
        assert_eq!(ports[0]["TargetPort"], 5432);
        assert!(ports[0].get("PublishedPort").is_none());
        assert_eq!(ports[1]["Protocol"], "udp");
        assert_eq!(ports[1]["PublishedPort"], 8125);
        assert_eq!(ports[1]["PublishMode"], "ingress");
        assert_eq!(ports[2]["Protocol"], "tcp");
        assert_eq!(ports[2]["TargetPort"], 9000);
    }

    #[test]
    fn restart_policies_and_the_host_network() {
        let condition = |restart: &str| {
            let s = options_spec(&format!("restart = \"{restart}\""));
            serde_json::to_value(s.task_template.unwrap().restart_policy).unwrap()
        };
        assert_eq!(condition("always"), serde_json::json!({"Condition": "any"}));
        assert_eq!(
            condition("unless-stopped"),
            serde_json::json!({"Condition": "any"})
        );
        assert_eq!(condition("no"), serde_json::json!({"Condition": "none"}));
        assert_eq!(
            condition("on-failure"),
            serde_json::json!({"Condition": "on-failure"})
        );

        let mut m = model();
        m.network_mode = NetworkMode::Host;
        m.host_ports = None;
        let update = crate::plan::steps::swarm::update_config(&m);
        let s = service_spec(&ServiceInput {
            name: "p_web",
            project: "p",
            service: "web",
            host: "local",
            revision: 1,
            spec: &m,
            image: "sha256:abc",
            env: &[],
            replicas: 3,
            update: &update,
            spec_hash: "hash",
            network: None,
            project_labels: &BTreeMap::new(),
        });
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["TaskTemplate"]["Networks"],
            serde_json::json!([{"Target": "host"}])
        );
        assert!(json.get("EndpointSpec").is_none(), "{json}");
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
            network: Some("p_default"),
            project_labels: &BTreeMap::new(),
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
