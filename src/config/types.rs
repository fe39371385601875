//! The raw shape of `gantry.toml`, exactly as serde reads it.
//!
//! Nothing here is validated beyond TOML types and key names: durations, sizes, images
//! and cross references stay as spanned strings so that `model::validate` can report every
//! problem of a file at once, each pointing at its own line and column.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A span-carrying string; the schema sees a plain string.
pub type SpStr = Spanned<String>;

/// The whole configuration file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "gantry configuration (gantry.toml)")]
pub struct TomlManifest {
    /// The project: names every container and state file gantry creates.
    pub project: TomlProject,
    /// Docker engines to deploy to. Without any, the local engine is used as host `local`.
    #[serde(default)]
    pub host: Vec<TomlHost>,
    /// Services by name.
    #[serde(default)]
    pub service: BTreeMap<String, TomlService>,
    /// Load balancers by name.
    #[serde(default)]
    pub lb: BTreeMap<String, TomlLb>,
    /// Commands run on the machine running gantry around an apply or a rollback.
    #[serde(default)]
    pub hooks: Option<TomlHooks>,
    /// One-off tasks (migrations) by name: run from a service's new spec before its rollout.
    #[serde(default)]
    pub task: BTreeMap<String, TomlTask>,
    /// Credentials for pulls from a registry, by registry host (`[registry."HOST"]`).
    #[serde(default)]
    pub registry: BTreeMap<String, TomlRegistry>,
    /// Where the state, the lock and the journal live: `.gantry/` beside this file (the
    /// default) or a shared S3-compatible bucket.
    #[serde(default)]
    pub state: Option<TomlState>,
}

/// `[state]`: where the state, its backup, the lock and the journal of runs are kept.
/// `backend = "s3"` shares them with the whole team: every write is conditional on what was
/// read (If-Match), the lock is an object created only if absent (If-None-Match: *).
/// Credentials come from the standard AWS chain (environment, profile, web identity,
/// container or instance role); never from this file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlState {
    /// `"local"` (default: `.gantry/` beside the configuration, or `--state-dir`) or `"s3"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backend: Option<SpStr>,
    /// S3: the bucket (it must exist).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub bucket: Option<SpStr>,
    /// S3: the prefix of every object of this project, e.g. `"games-api"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub key: Option<SpStr>,
    /// S3: the bucket's region (default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub region: Option<SpStr>,
    /// S3: the URL of an S3-compatible store (`https://s3.internal`); optional for AWS.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub endpoint: Option<SpStr>,
    /// How long a lock may go without a heartbeat before it is stale and taken over
    /// (default `"2m"`; the holder beats every quarter of it).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub stale_lock_after: Option<SpStr>,
}

/// `[registry."HOST"]`: the account gantry pulls with from the registry `HOST` (as in an
/// image reference: `registry.example`, `localhost:5000`, `docker.io`). Checked before the
/// Docker config and its credential helpers, as `docker pull` would after a `docker login`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlRegistry {
    /// The user name.
    #[schemars(with = "String")]
    pub username: SpStr,
    /// The NAME of a variable of gantry's environment holding the password (or token);
    /// read at pre-flight, never written anywhere.
    #[schemars(with = "String")]
    pub password_env: SpStr,
}

/// `[task.NAME]`: a command run to completion in a container of its own, made from the new
/// spec of `service` (image, env, secrets, networks, volumes), after what that service
/// depends on and before its rollout begins.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlTask {
    /// The service whose new spec the task runs from.
    #[schemars(with = "String")]
    pub service: SpStr,
    /// The command (exec form), e.g. `["python3", "/app/migrate.py"]`; must exit 0.
    #[schemars(with = "Vec<String>")]
    pub command: Spanned<Vec<String>>,
    /// Services that must be up before it runs, beside those `service` depends on.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpStr>,
    /// `on-change` (default: when the service's image or the task itself changes) or
    /// `always` (whenever the service changes in any way).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub run: Option<SpStr>,
    /// How long it may run before it is stopped and the apply fails (default `10m`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<SpStr>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlProject {
    /// Lower-case letters, digits and `-`; prefixes container names (`<project>-<service>-<revision>-<n>`).
    #[schemars(with = "String")]
    pub name: SpStr,
    /// Revisions whose stopped containers are kept after a successful apply, so that a
    /// rollback to them is a `docker start` (default 1; 0 keeps none).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub keep_previous: Option<Spanned<i64>>,
    /// Docker labels on every network and volume gantry creates for the project.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlHost {
    /// Name services use in `hosts = [...]`.
    #[schemars(with = "String")]
    pub name: SpStr,
    /// Docker endpoint: `unix:///var/run/docker.sock` or `tcp://10.0.0.5:2376`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub docker: Option<SpStr>,
    /// Address load balancers use to reach replicas published on this host (default 127.0.0.1).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub address: Option<SpStr>,
    /// TLS client material for `tcp://` endpoints.
    #[serde(default)]
    pub tls: Option<TomlTls>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// Either one port or an inclusive range `"18080-18089"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TomlPorts {
    One(u16),
    Range(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlService {
    /// Image reference with an immutable tag or a digest: `registry.example/app:3074f46`.
    #[schemars(with = "String")]
    pub image: SpStr,
    /// Allow a tag that can move (`latest`, or no tag at all). Off by default: rollbacks need
    /// to know exactly what ran.
    #[serde(default)]
    pub allow_mutable_tag: bool,
    /// `container` (default): gantry runs every replica as a container of its own. `swarm`:
    /// a Docker Swarm service, created and updated through the service API of the manager
    /// named by `hosts`; Swarm runs the rolling update and rolls it back on failure.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub runtime: Option<SpStr>,
    /// Number of replicas (per host; with `runtime = "swarm"`, in the whole swarm).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub replicas: Option<Spanned<i64>>,
    /// Command and arguments; the image's default when absent.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Overrides the image's ENTRYPOINT (`[]` clears it).
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// User (and group) the process runs as: `"1000:1000"`, `"app"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user: Option<SpStr>,
    /// Working directory of the process (absolute).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub working_dir: Option<SpStr>,
    /// Container port the service listens on; probes and load balancers use it.
    #[serde(default)]
    #[schemars(with = "Option<u16>")]
    pub port: Option<Spanned<u16>>,
    /// Host ports to publish replicas on: one port, or a range `"18080-18089"` large enough
    /// for every replica plus the surge of a rollout. Default: ports chosen by the engine.
    #[serde(default)]
    #[schemars(with = "Option<TomlPorts>")]
    pub host_ports: Option<Spanned<TomlPorts>>,
    /// Fixed extra ports, beside the probed `port`: `"[HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]"`.
    /// A fixed host port allows one replica per host and `order = "stop-first"`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub publish: Vec<SpStr>,
    /// Plain environment variables (shown in plans).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A dotenv file, relative to the config file; its values are secret.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub env_file: Option<SpStr>,
    /// Names of variables taken from gantry's own environment at apply time; never printed.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub secret_env: Vec<SpStr>,
    /// Services that must be healthy before this one is changed.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpStr>,
    /// Hosts this service runs on (default: all).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub hosts: Option<Vec<SpStr>>,
    /// Existing networks every replica joins as well, beside the project's network.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub networks: Vec<SpStr>,
    /// `host`: the host's network stack; `none`: no network. Default: the project's
    /// network, where the service's name resolves to its running replicas.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub network_mode: Option<SpStr>,
    /// Mounts: `"NAME:/path"` (a named volume of the project, kept across revisions) or
    /// `"/abs/host/path:/path"`, optionally `:ro`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub volumes: Vec<SpStr>,
    /// In-memory file systems mounted at these container paths.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tmpfs: Vec<SpStr>,
    /// `unless-stopped` (default), `always`, `on-failure`, `on-failure:N` or `no`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub restart: Option<SpStr>,
    /// Time between SIGTERM and SIGKILL, e.g. `"30s"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub stop_grace_period: Option<SpStr>,
    #[serde(default)]
    pub resources: Option<TomlResources>,
    /// Docker labels added to every replica.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Log rotation of the json-file driver.
    #[serde(default)]
    pub log: Option<TomlLog>,
    /// Linux capabilities added, e.g. `["SYS_ADMIN"]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cap_add: Vec<SpStr>,
    /// Linux capabilities dropped, e.g. `["ALL"]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cap_drop: Vec<SpStr>,
    /// Every capability and every device: plans mark it as a risk.
    #[serde(default)]
    pub privileged: bool,
    /// Mounts the container's root file system read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Runs an init process (tini) as PID 1 that forwards signals and reaps zombies.
    #[serde(default)]
    pub init: bool,
    /// `host`: the host's PID namespace.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub pid: Option<SpStr>,
    /// Size of `/dev/shm`, e.g. `"256m"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub shm_size: Option<SpStr>,
    /// Namespaced kernel parameters, e.g. `{ "net.core.somaxconn" = "1024" }`.
    #[serde(default)]
    pub sysctls: BTreeMap<String, TomlScalar>,
    /// Resource limits, e.g. `{ nofile = { soft = 20000, hard = 40000 }, nproc = 65535 }`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, TomlUlimit>")]
    pub ulimits: BTreeMap<String, Spanned<TomlUlimit>>,
    /// Extra `/etc/hosts` lines: `"NAME:IP"`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub extra_hosts: Vec<SpStr>,
    /// Host devices: `"/dev/fuse"` or `"HOST_PATH:CONTAINER_PATH[:rwm]"`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub devices: Vec<SpStr>,
    /// Load balancers this service's replicas are members of.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub lb: Vec<SpStr>,
    #[serde(default)]
    pub health: Option<TomlHealth>,
    #[serde(default)]
    pub warmup: Option<TomlWarmup>,
    #[serde(default)]
    pub rollout: Option<TomlRollout>,
}

/// A ulimit: one number (soft = hard) or both.
#[derive(Debug, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum TomlUlimit {
    One(i64),
    Pair { soft: i64, hard: i64 },
}

/// By hand rather than `untagged`, whose error ("data did not match any variant") says
/// nothing about what to write.
impl<'de> Deserialize<'de> for TomlUlimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TomlUlimit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a ulimit: a number (soft and hard limit) or { soft = N, hard = N }")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<TomlUlimit, E> {
                Ok(TomlUlimit::One(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<TomlUlimit, E> {
                i64::try_from(n)
                    .map(TomlUlimit::One)
                    .map_err(|_| E::custom(format!("ulimit {n} is too large")))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TomlUlimit, A::Error> {
                let (mut soft, mut hard) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "soft" => soft = Some(map.next_value::<i64>()?),
                        "hard" => hard = Some(map.next_value::<i64>()?),
                        _ => {
                            return Err(serde::de::Error::unknown_field(&key, &["soft", "hard"]));
                        }
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) => Ok(TomlUlimit::Pair { soft, hard }),
                    _ => Err(serde::de::Error::custom(
                        "a ulimit table needs both `soft` and `hard` (or write one number for both)",
                    )),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A value written as a string or a number (sysctls).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TomlScalar {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for TomlScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TomlScalar::Int(n) => write!(f, "{n}"),
            TomlScalar::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlResources {
    /// CPUs, e.g. `1.5`.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub cpus: Option<Spanned<f64>>,
    /// Memory limit, e.g. `"1000M"`, `"2g"` (binary units, as `docker run --memory`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub memory: Option<SpStr>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlLog {
    /// Size at which a log file is rotated, e.g. `"100m"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_size: Option<SpStr>,
    /// Number of rotated files kept.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub max_files: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlHealth {
    /// Path of a host-side HTTP probe on the replica's published port; healthy = 2xx.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub http: Option<SpStr>,
    /// A command the engine runs inside the container (its Docker HEALTHCHECK), exit 0 =
    /// healthy, instead of an HTTP probe from the host, e.g. `["redis-cli", "ping"]`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub interval: Option<SpStr>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<SpStr>,
    /// Consecutive failures (after `start_period`) that make a replica unhealthy.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub retries: Option<Spanned<i64>>,
    /// Grace time after start during which failures do not count.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub start_period: Option<SpStr>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlWarmup {
    /// Path requested to warm the replica up.
    #[schemars(with = "String")]
    pub http: SpStr,
    /// A success is a 2xx answered within this, e.g. `"500ms"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_latency: Option<SpStr>,
    /// This many CONSECUTIVE successes are needed; a slow or failed answer resets the count.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub successes: Option<Spanned<i64>>,
    /// Requests kept in flight while warming up.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub concurrency: Option<Spanned<i64>>,
    /// The warm-up step fails when not done within this.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub deadline: Option<SpStr>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlRollout {
    /// `rolling` or `blue-green`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub strategy: Option<SpStr>,
    /// Replicas replaced per step.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub batch: Option<Spanned<i64>>,
    /// `start-first` (surge: new replicas before old ones stop) or `stop-first`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub order: Option<SpStr>,
    /// Wait after leaving the load balancer, before SIGTERM.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub drain: Option<SpStr>,
    /// Real traffic on the new batch, health watched, before the next batch.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub soak: Option<SpStr>,
    /// `rollback` (restore the previous revision) or `pause` (stop where it is).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub on_failure: Option<SpStr>,
    /// Several hosts: how many hosts roll at the same time (1: host after host).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub hosts_in_parallel: Option<Spanned<i64>>,
    /// Blue-green: how long the old colour is kept after the switch.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub scale_down_delay: Option<SpStr>,
    /// Blue-green: replicas of the old colour kept after `scale_down_delay`.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub keep_old_replicas: Option<Spanned<i64>>,
    /// Blue-green: a command that must exit 0 against the preview before traffic moves.
    #[serde(default)]
    pub preview_check: Option<Vec<String>>,
    /// Blue-green: the load balancer (its own nginx upstream or HAProxy backend) that is
    /// the preview address: the new colour joins it before the switch.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub preview_lb: Option<SpStr>,
    /// Blue-green: a command exec'ed in each replica of the old colour once it has left the
    /// load balancers after a switch (e.g. stop consuming queues); a failure is a warning.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub idle_command: Option<Spanned<Vec<String>>>,
    /// Blue-green: a command exec'ed in each replica of the old colour before a switch-back
    /// gives it traffic again; a failure fails the switch-back.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub resume_command: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlLb {
    /// `nginx`, `haproxy` or `command`.
    #[schemars(with = "String")]
    pub kind: SpStr,
    /// The `[[host]]`s whose replicas this load balancer sends to (default: every host; one
    /// load balancer in front of all of them).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub hosts: Vec<SpStr>,
    /// nginx: name of the `upstream` block gantry renders.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub upstream: Option<SpStr>,
    /// nginx: the include file gantry owns and rewrites atomically.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub upstream_file: Option<SpStr>,
    /// nginx: configuration check run before every reload (default `["nginx", "-t"]`).
    #[serde(default)]
    pub check: Option<Vec<String>>,
    /// nginx: reload command (default `["nginx", "-s", "reload"]`).
    #[serde(default)]
    pub reload: Option<Vec<String>>,
    /// nginx and haproxy: the machines of this load balancer, `ssh://[user@]host[:port]` each
    /// (default: this machine). nginx: the file is written, and `check` and `reload` run, on
    /// every one; haproxy: each machine's `socket` is reached through SSH. A change is checked
    /// on all of them, then made on all of them, or undone on all of them.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub at: Vec<SpStr>,
    /// haproxy: runtime API socket (`stats socket ... level admin`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub socket: Option<SpStr>,
    /// haproxy: backend whose servers gantry manages.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backend: Option<SpStr>,
    /// command: run to add a replica; `{service}`, `{replica}`, `{address}`, `{port}` are substituted.
    #[serde(default)]
    pub join: Option<Vec<String>>,
    /// command: run to remove a replica.
    #[serde(default)]
    pub leave: Option<Vec<String>>,
    /// command: exits 0 once a leaving replica has no sessions left.
    #[serde(default)]
    pub drain_check: Option<Vec<String>>,
    /// command: time limit of each command (default `"30s"`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<SpStr>,
    /// nginx: `max_fails` of every server (passive health checks).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub max_fails: Option<Spanned<i64>>,
    /// nginx: `fail_timeout` of every server, e.g. `"10s"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub fail_timeout: Option<SpStr>,
    /// nginx: idle keep-alive connections to the members kept per worker (needs
    /// `proxy_http_version 1.1` and an empty `Connection` header in your `location`).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub keepalive: Option<Spanned<i64>>,
    /// nginx: relative weights of member services, e.g. `{ web = 3, canary = 1 }` (default 1).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, i64>")]
    pub weights: BTreeMap<String, Spanned<i64>>,
    /// nginx: a `backup` server (`host:port`) used only when every member is down.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backup: Option<SpStr>,
}

/// `[hooks]`: commands run on the machine running gantry (never for `plan`), each an array
/// `["program", "arg", ...]`, a relative program resolved against the configuration file's
/// directory, which is also their working directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TomlHooks {
    /// Before an apply (or promote, or `apply --resume`) changes anything; a failure stops
    /// it with exit 1, nothing changed.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub before_apply: Option<Spanned<Vec<String>>>,
    /// After an apply (or promote, or resume) succeeded or was held at its preview.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub after_apply: Option<Spanned<Vec<String>>>,
    /// After an apply (or promote, or resume) failed, restored or not.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub on_failure: Option<Spanned<Vec<String>>>,
    /// After `gantry rollback` (a switch-back included) or `apply --undo`, whatever its outcome.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub after_rollback: Option<Spanned<Vec<String>>>,
    /// Time limit of each hook, e.g. `"30s"` (default `"1m"`); the hook's process group is
    /// killed then.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<SpStr>,
    /// Variables named in a service's `secret_env` that hooks get all the same (they get
    /// no other secret).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub secret_env: Vec<SpStr>,
}
