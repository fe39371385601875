//! The validated model: what the user asked for, with every default filled in.
//!
//! `ServiceSpec` and `LbSpec` are also the recorded form in the state file and the
//! before/after of the JSON plan, so "what changed" is a comparison of two values of the
//! same type. No I/O happens here; facts about files come in through [`FileFacts`].

pub mod container;
pub mod hooks;
pub mod registry;
pub mod ssh_target;
pub mod state_backend;
pub mod swarm;
pub mod units;
mod validate;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use container::{
    Mount, MountSource, NetworkMode, Protocol, Publish, Restart, StopFirstReason, Ulimit,
};
pub use hooks::{HookPoint, Hooks};
pub use units::{ByteSize, Duration, ImageRef};
pub use validate::{EnvFileFacts, FileFacts, state_backend, validate};

/// Name of the implicit host when the config declares none.
pub const LOCAL_HOST: &str = "local";
pub const DEFAULT_DOCKER: &str = "unix:///var/run/docker.sock";

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub project: String,
    /// Revisions whose stopped containers are kept for a fast rollback.
    pub keep_previous: u32,
    /// Docker labels of the networks and volumes gantry creates (`[project] labels`).
    pub labels: BTreeMap<String, String>,
    pub hosts: Vec<Host>,
    pub services: BTreeMap<String, ServiceSpec>,
    pub lbs: BTreeMap<String, LbSpec>,
    /// Load balancers that send only to the replicas of some hosts (`[lb.NAME] hosts`).
    pub lb_hosts: BTreeMap<String, Vec<String>>,
    /// `[hooks]`: commands run on the deploying machine around a run.
    pub hooks: Hooks,
    /// One-off tasks (`[task.NAME]`), each run before its service's rollout.
    pub tasks: BTreeMap<String, TaskSpec>,
    /// `[registry."HOST"]`: accounts for pulls, by registry host.
    pub registries: BTreeMap<String, registry::Registry>,
    /// `[state]`: where the state, lock and journal are kept.
    pub state: state_backend::StateBackend,
}

/// `[task.NAME]`: a command run to completion in a container of its own, made from the new
/// spec of `service`, after what that service (and the task) depends on and before the
/// service's rollout. Also the recorded form in the state and the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub service: String,
    pub command: Vec<String>,
    /// Services that must be up before it runs, beside those `service` depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub run: TaskRun,
    pub timeout: Duration,
}

/// When a task runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskRun {
    /// When its service's image differs from the one it last ran with, when the task itself
    /// changes, and the first time.
    #[default]
    OnChange,
    /// Whenever its service changes in any way (created, rolled, updated, scaled), and when
    /// it would on-change.
    Always,
}

impl TaskRun {
    pub fn word(self) -> &'static str {
        match self {
            TaskRun::OnChange => "on-change",
            TaskRun::Always => "always",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub docker: String,
    pub address: String,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// One service as it should run. Field order is the order plans show attributes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub image: String,
    /// Absent in plans and states of container services (the default).
    #[serde(default, skip_serializing_if = "Runtime::is_container")]
    pub runtime: Runtime,
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ports: Option<PortRange>,
    /// Fixed extra ports, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Keys and a content digest only: the values of an env file are secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<EnvFileSpec>,
    /// Names only; the values are read from gantry's environment at apply time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub hosts: Vec<String>,
    /// Existing networks joined beside the project's, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    #[serde(default, skip_serializing_if = "NetworkMode::is_project")]
    pub network_mode: NetworkMode,
    /// Mounts, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// Absent: `unless-stopped`.
    #[serde(default, skip_serializing_if = "Restart::is_default")]
    pub restart: Restart,
    pub stop_grace_period: Duration,
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "LogSpec::is_empty")]
    pub log: LogSpec,
    /// Upper case, without `CAP_`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub init: bool,
    /// `host` or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// `NAME:IP`, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// `HOST_PATH:CONTAINER_PATH:PERMISSIONS`, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lb: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupSpec>,
    pub rollout: RolloutSpec,
}

impl ServiceSpec {
    /// Attributes that live in the container itself (or decide where it runs): changing one
    /// means new containers. Everything else (replicas, probes, rollout, dependencies, LB
    /// membership, stop grace) is applied in place.
    pub const CONTAINER_ATTRIBUTES: [&'static str; 32] = [
        "image",
        "runtime",
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
        "hosts",
        "networks",
        "network_mode",
        "volumes",
        "tmpfs",
        "restart",
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
    ];

    /// The named volumes this service mounts read-write.
    pub fn rw_volumes(&self) -> impl Iterator<Item = &str> {
        self.volumes
            .iter()
            .filter(|m| !m.read_only)
            .filter_map(Mount::volume)
    }

    /// Why this service must roll stop-first (never two copies of a replica at once).
    pub fn stop_first_reason(&self) -> Option<StopFirstReason> {
        StopFirstReason::of(
            self.runtime,
            &self.volumes,
            &self.publish,
            self.network_mode,
            self.port,
        )
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What runs a service's replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    /// gantry creates, checks and replaces every replica itself, container by container.
    #[default]
    Container,
    /// A Docker Swarm service: gantry sets its spec through the manager's service API and
    /// waits while Swarm rolls it (and rolls it back on failure).
    Swarm,
}

impl Runtime {
    pub fn is_container(&self) -> bool {
        *self == Runtime::Container
    }
}

/// An inclusive range of host ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvFileSpec {
    /// As written in the config, relative to it.
    pub path: String,
    /// Variable names the file defines, sorted.
    pub keys: Vec<String>,
    /// SHA-256 of the file's bytes, so that a changed value rolls the service without the
    /// value itself ever being stored.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.cpus.is_none() && self.memory.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
}

impl LogSpec {
    pub fn is_empty(&self) -> bool {
        self.max_size.is_none() && self.max_files.is_none()
    }
}

/// How a replica is judged healthy. Semantics, stated once: after `start_period`, a replica
/// is healthy at its first passing probe and unhealthy after `retries` consecutive failures.
/// Exactly one of `http` and `command` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// GET this path on the replica's published port; 2xx is a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Docker HEALTHCHECK command run inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// Warm-up: `successes` consecutive 2xx answers, each within `max_latency`, with
/// `concurrency` requests in flight, before `deadline`. A slow answer resets the count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmupSpec {
    pub http: String,
    pub max_latency: Duration,
    pub successes: u32,
    pub concurrency: u32,
    pub deadline: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    pub strategy: Strategy,
    pub batch: u32,
    pub order: Order,
    pub drain: Duration,
    pub soak: Duration,
    pub on_failure: OnFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenSpec>,
    /// How many hosts roll at the same time.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub hosts_in_parallel: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenSpec {
    pub scale_down_delay: Duration,
    pub keep_old_replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_check: Option<Vec<String>>,
    /// The load balancer the new colour joins before the switch (the preview address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_lb: Option<String>,
    /// Exec'ed in each replica of this colour once a release has switched away from it and
    /// it has left the load balancers (it runs in this colour's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_command: Option<Vec<String>>,
    /// Exec'ed in each replica of this colour before a switch-back gives it traffic again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_command: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Rolling,
    BlueGreen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    StartFirst,
    StopFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    Rollback,
    Pause,
}

macro_rules! keyword_enum {
    ($ty:ty { $($word:literal => $variant:expr),+ $(,)? }) => {
        impl $ty {
            pub const WORDS: &'static [&'static str] = &[$($word),+];
            pub fn parse_word(s: &str) -> Option<Self> {
                match s { $($word => Some($variant),)+ _ => None }
            }
            pub fn word(self) -> &'static str {
                $(if self == $variant { return $word; })+
                unreachable!()
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.word())
            }
        }
    };
}

keyword_enum!(Strategy { "rolling" => Strategy::Rolling, "blue-green" => Strategy::BlueGreen });
keyword_enum!(Runtime { "container" => Runtime::Container, "swarm" => Runtime::Swarm });
keyword_enum!(Order { "start-first" => Order::StartFirst, "stop-first" => Order::StopFirst });
keyword_enum!(OnFailure { "rollback" => OnFailure::Rollback, "pause" => OnFailure::Pause });
keyword_enum!(LbKind { "nginx" => LbKind::Nginx, "haproxy" => LbKind::Haproxy, "command" => LbKind::Command });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LbKind {
    Nginx,
    Haproxy,
    Command,
}

/// A load balancer gantry manages membership of. Its members are the services whose `lb`
/// names it; membership changes belong to those services' steps, not to the LB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LbSpec {
    Nginx {
        upstream: String,
        upstream_file: String,
        check: Vec<String>,
        reload: Vec<String>,
        /// The machines (`ssh://...`) the file is written and the commands run on; empty:
        /// this machine.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        at: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_fails: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fail_timeout: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keepalive: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<String>,
        /// Weight per member service (absent: 1).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        weights: BTreeMap<String, u32>,
    },
    Haproxy {
        socket: String,
        backend: String,
        /// The machine (`ssh://...`) whose `socket` gantry reaches through SSH; empty: this
        /// machine (or `socket = "tcp://..."`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        at: Vec<String>,
    },
    Command {
        join: Vec<String>,
        leave: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drain_check: Option<Vec<String>>,
        timeout: Duration,
    },
}

impl LbSpec {
    pub fn kind(&self) -> LbKind {
        match self {
            LbSpec::Nginx { .. } => LbKind::Nginx,
            LbSpec::Haproxy { .. } => LbKind::Haproxy,
            LbSpec::Command { .. } => LbKind::Command,
        }
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    /// A spec as gantry recorded it before the container options existed (issue 12), from
    /// `tests/fixtures/plan/state.json`.
    const RECORDED_BEFORE_ISSUE_12: &str = r#"{
  "image": "registry.example/shop-api:1.4.0",
  "replicas": 3,
  "command": [
    "api",
    "serve"
  ],
  "port": 8080,
  "env": {
    "LOG_LEVEL": "info",
    "REGION": "eu"
  },
  "depends_on": [
    "cache"
  ],
  "hosts": [
    "local"
  ],
  "stop_grace_period": "10s",
  "lb": [
    "front"
  ],
  "health": {
    "http": "/healthz",
    "interval": "2s",
    "timeout": "1s",
    "retries": 3,
    "start_period": "0s"
  },
  "rollout": {
    "strategy": "rolling",
    "batch": 1,
    "order": "start-first",
    "drain": "5s",
    "soak": "10s",
    "on_failure": "rollback"
  }
}"#;

    #[test]
    fn a_spec_recorded_before_the_container_options_round_trips_byte_identically() {
        let spec: ServiceSpec = serde_json::from_str(RECORDED_BEFORE_ISSUE_12).unwrap();
        assert_eq!(spec.restart, Restart::UnlessStopped);
        assert_eq!(spec.network_mode, NetworkMode::Project);
        assert!(spec.volumes.is_empty() && spec.publish.is_empty() && !spec.privileged);
        assert_eq!(
            serde_json::to_string_pretty(&spec).unwrap(),
            RECORDED_BEFORE_ISSUE_12,
            "defaults of the new keys are not written, so old states produce no diff"
        );
    }

    #[test]
    fn stop_first_reasons_in_order_of_precedence() {
        let v = |s: &str| s.parse::<Mount>().unwrap();
        let p = |s: &str| s.parse::<Publish>().unwrap();
        let of = StopFirstReason::of;
        assert_eq!(
            of(
                Runtime::Container,
                &[v("logs:/logs:ro"), v("data:/data")],
                &[p("80:80")],
                NetworkMode::Project,
                None
            ),
            Some(StopFirstReason::ReadWriteVolume {
                volume: "data".into()
            })
        );
        // Read-only volumes and bind mounts do not force anything.
        assert_eq!(
            of(
                Runtime::Container,
                &[v("logs:/logs:ro"), v("/srv:/srv")],
                &[],
                NetworkMode::Project,
                Some(80)
            ),
            None
        );
        assert_eq!(
            of(
                Runtime::Container,
                &[],
                &[p("8125:8125/udp")],
                NetworkMode::Project,
                None
            )
            .map(|r| r.to_string()),
            Some("fixed host port `8125:8125/udp`".to_string())
        );
        // Swarm's routing mesh publishes a port for every replica.
        assert_eq!(
            of(
                Runtime::Swarm,
                &[],
                &[p("8125:8125")],
                NetworkMode::Project,
                None
            ),
            None
        );
        assert_eq!(
            of(Runtime::Container, &[], &[], NetworkMode::Host, Some(8080)),
            Some(StopFirstReason::HostNetwork { port: 8080 })
        );
        assert_eq!(
            of(Runtime::Container, &[], &[], NetworkMode::Host, None),
            None
        );
    }
}
