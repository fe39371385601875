//! The engine's view of the outside world: small traits, each with a real adapter in
//! `drivers` and an in-memory fake in `testing`. The apply executor is written against these,
//! so that its logic can be unit tested with the fakes while every behaviour is also
//! exercised against the real Docker engine. One conformance suite per trait
//! (`testing::conformance`) runs against both, so a fake cannot drift from its adapter.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

pub use crate::model::{Mount, MountSource, NetworkMode, Protocol, Publish, Restart, Ulimit};

/// Labels every container gantry creates carries, so that gantry can always rediscover
/// what it owns, even with a lost state file.
pub mod labels {
    pub const PROJECT: &str = "dev.gantry.project";
    pub const SERVICE: &str = "dev.gantry.service";
    pub const REVISION: &str = "dev.gantry.revision";
    pub const REPLICA: &str = "dev.gantry.replica";
    pub const SPEC_HASH: &str = "dev.gantry.spec-hash";
    pub const HOST: &str = "dev.gantry.host";
    /// The container port that is probed and put behind the load balancer (`port`); set by
    /// the engine. Of several published ports, `ContainerInfo::host_port` is this one's.
    pub const PORT: &str = "dev.gantry.port";
    /// The host port the driver fixed for `port` when it created the container (set by the
    /// driver, not the engine): how ports of stopped containers are known in one list call.
    pub const HOST_PORT: &str = "dev.gantry.host-port";
    /// On a task's container (instead of `SERVICE` and `REPLICA`): the task's name.
    pub const TASK: &str = "dev.gantry.task";
}

/// Everything needed to create one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// `<project>-<service>-<revision>-<n>`.
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    /// `KEY=value`, secrets included: this struct never leaves the process.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Container port to publish, if any.
    pub port: Option<u16>,
    /// Host port to publish it on; `None`: the driver fixes a free one when it creates the
    /// container, kept across restarts (a start may then fail with `PortInUse`).
    pub host_port: Option<u16>,
    /// Address the published port is bound to.
    pub host_ip: String,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub log_max_size: Option<String>,
    pub log_max_files: Option<u32>,
    pub stop_grace: Duration,
    /// The image as the user wrote it (`registry.example/web:3074f46`), for `docker ps` to
    /// show; the container must still run exactly `image` (an ID). The driver uses it only
    /// while the reference names that very image on the host.
    pub image_ref: Option<String>,
    pub options: ContainerOptions,
}

/// The container options of a service (`model::ServiceSpec`), resolved for one engine:
/// volume names are the engine's (`<project>_<name>`), networks carry their aliases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOptions {
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// Fixed extra ports, beside `port`.
    pub publish: Vec<Publish>,
    /// Networks joined, each with the DNS aliases the replica answers to there. Empty with
    /// `network_mode` host or none (and for containers made before networks existed).
    pub networks: Vec<NetworkAttachment>,
    pub network_mode: NetworkMode,
    /// Volume sources are engine volume names; bind sources absolute host paths.
    pub mounts: Vec<Mount>,
    pub tmpfs: Vec<String>,
    pub restart: Restart,
    /// A health command the engine runs (Docker's HEALTHCHECK).
    pub healthcheck: Option<Healthcheck>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub init: bool,
    pub pid: Option<String>,
    pub shm_size: Option<u64>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    /// `NAME:IP`.
    pub extra_hosts: Vec<String>,
    /// `HOST_PATH:CONTAINER_PATH:PERMISSIONS`.
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAttachment {
    pub name: String,
    pub aliases: Vec<String>,
}

/// Docker's HEALTHCHECK of a container: `test` is run with exec (`CMD`), exit 0 = healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// What the engine says of a container's health command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: HealthStatus,
    /// The output of the last run of the health command (trimmed), for error messages.
    pub last_output: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    /// Exited (or dead) with this code.
    Exited(i64),
    Other,
}

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// The published host port of the container port, when there is one.
    pub host_port: Option<u16>,
    /// Image ID (`sha256:...`) the container was created from.
    pub image_id: String,
    /// The state of its health command, when it has one and runs.
    pub health: Option<Health>,
    /// What of its configuration can change while it lives; `inspect` reads it, `list` does
    /// not (`None`).
    pub settings: Option<LiveSettings>,
}

/// What of a container's configuration can change while it lives: the restart policy and
/// resource limits (`docker update`) and the networks it is on (`docker network connect` and
/// `disconnect`). Everything else (mounts, capabilities, user, ...) is fixed when the
/// container is created: changing it means a new container, which drift sees as the recorded
/// one gone and an unrecorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    pub restart: Restart,
    /// `None`: no limit.
    pub memory_bytes: Option<u64>,
    /// Billionths of a CPU; `None`: no limit.
    pub nano_cpus: Option<u64>,
    /// The networks it is on, sorted: the names it joined, or `host` / `none` for those
    /// network modes (`bridge` for Docker's default).
    pub networks: Vec<String>,
}

/// Docker's `NanoCpus` of a `cpus` limit (`--cpus 1.5` is 1,500,000,000).
pub fn nano_cpus(cpus: f64) -> u64 {
    (cpus * 1e9).round() as u64
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the Docker engine at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("image `{image}` is not on the host and could not be pulled: {message}")]
    ImageUnavailable { image: String, message: String },
    #[error("Docker engine refused to {op}: {message}")]
    Engine { op: String, message: String },
    /// A start failed because a host port of the container is taken on its host (by another
    /// container or process). The container is left created; removing and re-creating it
    /// (without `host_port`) chooses another port.
    #[error("host port {port} is already in use: {message}")]
    PortInUse { port: u16, message: String },
}

/// How a command exec'ed in a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code (Docker's 126/127 when the program cannot be run).
    pub exit_code: i64,
    /// The last lines of its stdout and stderr, interleaved as written, at most
    /// [`ExecOutput::MAX_LINES`].
    pub output: Vec<String>,
}

impl ExecOutput {
    /// Output lines kept of an exec (the last ones).
    pub const MAX_LINES: usize = 20;

    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// `exit code N: last line / last line`, for messages.
    pub fn describe(&self) -> String {
        let tail = self.output.iter().rev().take(3).rev().cloned();
        let tail: Vec<String> = tail.collect();
        if tail.is_empty() {
            format!("exit code {}", self.exit_code)
        } else {
            format!("exit code {}: {}", self.exit_code, tail.join(" / "))
        }
    }
}

/// The credentials of one pull from one registry, as `docker login` stores them. They never
/// appear in output: `Debug` shows the registry and the user only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry's server address (`registry.example:5000`, or Docker Hub's
    /// `https://index.docker.io/v1/`).
    pub server: String,
    pub username: String,
    pub password: String,
    /// An identity (refresh) token, which some registries give instead of a password.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a pull brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The image ID (`sha256:...`).
    pub id: String,
    /// The registry's digest of it, `repo@sha256:...` (from the image's `RepoDigests`).
    pub repo_digest: Option<String>,
}

/// One event of a pull's progress, as the engine streams it: a layer (`id`, the first 12
/// hex digits of its digest; other events carry the tag or nothing), its status
/// (`Downloading`, `Extracting`, `Pull complete`, ...) and, while bytes move, how many of
/// how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub id: String,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// Who watches the pulls of an engine (the per-layer lines on a terminal). Told nothing
/// secret: an event carries a layer, a status and byte counts.
pub trait PullObserver: Send + Sync {
    /// An event of the pull of `image` on `host`.
    fn event(&self, host: &str, image: &str, e: &LayerProgress);
    /// The pull of `image` on `host` ended (its attempt; a retried pull starts again).
    fn finished(&self, host: &str, image: &str);
}

/// A container engine (Docker, through bollard).
pub trait ContainerRuntime: Send + Sync {
    /// Is the engine there? (Pre-flight.)
    fn ping(&self) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The local image ID of `image`, or `None` when it is not on the host.
    fn image_id(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<String>, RuntimeError>> + Send;
    /// Pulls `image` with retries (registries answer 5xx), with `auth` when given. A
    /// reference with a tag and a digest (`repo:tag@sha256:...`) is pulled by the digest and
    /// then tagged `repo:tag` on the host, so that every host runs what the first one
    /// resolved the tag to.
    fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> impl Future<Output = Result<Pulled, RuntimeError>> + Send;
    /// Creates (does not start) a container; returns its ID.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// `None` when the container does not exist (any more).
    fn inspect(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ContainerInfo>, RuntimeError>> + Send;
    /// Every container (running or not) carrying all of `labels`; one engine call.
    fn list(
        &self,
        labels: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;
    /// Removes an image by ID unless a container still uses it; `Ok(false)` when it was kept
    /// for that reason (or is gone already).
    fn remove_image(&self, id: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// The last `lines` lines of the container's output, for error messages.
    fn logs_tail(
        &self,
        id: &str,
        lines: usize,
    ) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    /// Runs `cmd` in the running container `id` (`docker exec`: no TTY, no stdin) and waits
    /// for it to end. A command that runs and fails is `Ok` with its exit code; a container
    /// that is gone or not running is an `Err`.
    fn exec(
        &self,
        id: &str,
        cmd: &[String],
    ) -> impl Future<Output = Result<ExecOutput, RuntimeError>> + Send;
    /// Creates the bridge network `name` carrying `labels`, unless a network of that name
    /// exists (whatever its labels).
    fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Whether a network named `name` exists (pre-flight of `networks`).
    fn network_exists(&self, name: &str)
    -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// Removes the network `name` when it carries all of `labels`. `Ok(false)` when there is
    /// no such network, it lacks one of the labels (not gantry's to remove), or a container
    /// or Swarm service still uses it.
    fn remove_network(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// Creates the local volume `name` carrying `labels`, unless it exists.
    fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Names of the volumes carrying all of `labels`, sorted.
    fn list_volumes(
        &self,
        labels: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    /// Removes a volume; `Ok(false)` when a container still uses it (or it is gone).
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// Sets the restart policy of an existing container (replicas kept for a rollback are
    /// set to `no`, so that an engine restart leaves them stopped).
    fn set_restart(
        &self,
        id: &str,
        restart: Restart,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Waits until the container is no longer running, at most `timeout`: its exit code, or
    /// `None` when it still runs (a task's timeout). A container that is gone is an error.
    fn wait(
        &self,
        id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<i64>, RuntimeError>> + Send;
    /// Of `paths` (bind-mount sources), those that do not exist on the engine's host.
    /// `image` is an image on the host the check may use.
    fn missing_paths(
        &self,
        image: &str,
        paths: &[String],
    ) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
}

/// A load balancer whose membership gantry manages. Membership is set as a whole (the
/// sorted list of `host:port` addresses), so that every change is one configuration change
/// (one reload for nginx, one runtime-API transaction for HAProxy). Members that leave are
/// first only taken out of rotation; `finish_drain` then waits until they are idle (where the
/// load balancer can tell) and removes them for good.
pub trait LoadBalancer: Send + Sync {
    /// Makes `members` the members in rotation, or fails leaving the load balancer serving as
    /// before. `previous` are the members as gantry last set them (drivers that can list
    /// their members themselves ignore it).
    fn set_members<'a>(
        &'a self,
        previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Pre-flight: reaches what the load balancer runs on (its machines over SSH), before
    /// anything changes. Most load balancers have nothing to check here.
    fn preflight(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// Who the load balancer sends to now, as it says (`gantry adopt` records them before
    /// gantry has ever set them). A load balancer that cannot be asked says so.
    fn current_members(&self) -> BoxFuture<'_, crate::state::adopt::LbMembers> {
        Box::pin(async {
            crate::state::adopt::LbMembers::Unreadable(
                "a command load balancer cannot be asked who it sends to".into(),
            )
        })
    }

    /// Waits, at most `bound`, until `leaving` have no sessions left, then removes them.
    /// Returns what it saw, for the progress output.
    fn finish_drain<'a>(
        &'a self,
        leaving: &'a [Member],
        bound: Duration,
    ) -> BoxFuture<'a, Result<String, String>>;
}

pub use crate::state::Member;

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTP probe answer: the status (or the transport error, in words) and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub outcome: Result<u16, String>,
    pub latency: Duration,
}

impl ProbeResult {
    pub fn is_2xx(&self) -> bool {
        matches!(self.outcome, Ok(s) if (200..300).contains(&s))
    }
}

/// Host-side HTTP probes (health and warm-up). Only the single request is the side effect:
/// what makes a replica healthy or warm (`drivers::probe::wait_healthy`, `warm_up`) is built
/// on it, so that the fake answers requests and the semantics stay the real ones.
pub trait Prober: Send + Sync {
    /// GET `http://{address}{path}`, giving up after `timeout` (an `Err` outcome then).
    fn get<'a>(
        &'a self,
        address: &'a str,
        path: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, ProbeResult>;
}

/// Swarm's own data as the manager reports it (bollard's models are plain serde structs):
/// the executor reads update status and tasks as they are, so the fake speaks them too.
pub use bollard::models::{
    Service as SwarmServiceInfo, ServiceSpec as SwarmSpec, Task as SwarmTask,
};

/// The Swarm service API of a manager, as the `swarm_*` steps use it. Errors are sentences
/// naming the service.
pub trait SwarmApi: Send + Sync {
    /// `Ok(())` when the engine is an active Swarm manager, else why not (pre-flight).
    fn check_manager(&self) -> BoxFuture<'_, Result<(), String>>;
    /// The service by name or ID; `None` when there is none.
    fn inspect<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SwarmServiceInfo>, String>>;
    /// Creates a service; returns its ID.
    fn create(&self, spec: SwarmSpec) -> BoxFuture<'_, Result<String, String>>;
    /// Sets a new spec on the service at `version` (Swarm's optimistic concurrency: an
    /// outdated version is refused).
    fn update<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        spec: SwarmSpec,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// `docker service rollback`: back to the service's previous spec.
    fn rollback<'a>(&'a self, service: &'a SwarmServiceInfo) -> BoxFuture<'a, Result<(), String>>;
    /// Removes a service; one that is gone already is fine.
    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// Every task of the service (Swarm keeps a few old ones per slot).
    fn tasks<'a>(&'a self, service_id: &'a str) -> BoxFuture<'a, Result<Vec<SwarmTask>, String>>;
    /// The image as the service should name it: by registry digest when it has one, else
    /// by ID.
    fn pinned_image<'a>(&'a self, reference: &'a str, image_id: &'a str) -> BoxFuture<'a, String>;
    /// The last output of a task container's health check, when it ran on this engine.
    fn health_output<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Option<String>>;
    /// The scope of the network `name` (`swarm` for an overlay network services can join,
    /// `local` for a bridge); `None` when there is no network of that name.
    fn network_scope<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Creates the attachable overlay network `name` carrying `labels` unless it exists;
    /// `Ok(true)` when it was created. A network of that name Swarm services cannot join
    /// (a local bridge) is an error.
    fn ensure_overlay<'a>(
        &'a self,
        name: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// Services whose image is on the registry `registry` are created and updated with
    /// `auth`, which the manager passes to the nodes that pull (`--with-registry-auth`).
    /// Pre-flight calls it; an adapter that has no use for it ignores it.
    fn use_registry_auth(&self, registry: &str, auth: &RegistryAuth) {
        let _ = (registry, auth);
    }
}

/// Runs a local command (preview checks, the command load balancer, nginx's check and
/// reload). Output and exit status are the error when it fails.
pub trait CommandRunner: Send + Sync {
    /// Runs `argv` with `env` added to the environment, killed after `timeout`.
    fn run<'a>(
        &'a self,
        argv: &'a [String],
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Wall-clock time, for the timestamps of the state and the journal and for the time a
/// scale-down is due. Waiting is tokio's (`tokio::time`), which tests control with
/// `start_paused`.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;

    /// `now()` as RFC 3339 to the second, as the state and the journal write it.
    fn rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.now()).to_string()
    }
}
