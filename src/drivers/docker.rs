//! The Docker engine through bollard: the real [`ContainerRuntime`], over a unix socket, plain
//! HTTP on loopback, HTTPS with client certificates (a remote engine's `--tlsverify`), or SSH
//! (the system `ssh` client, see `drivers::ssh`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, NetworkConnectRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

use crate::model::Tls;
use crate::ports::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, ExecOutput, Health,
    HealthStatus, LiveSettings, MountSource, NetworkAttachment, NetworkMode, Pulled, RegistryAuth,
    Restart, RuntimeError, labels,
};

/// Per request: a graceful stop waits up to the service's `stop_grace_period` inside one
/// request, so this is long.
const REQUEST_TIMEOUT_SECS: u64 = 3600;

/// Pull attempts and the first back-off (doubled after each failure).
const PULL_ATTEMPTS: u32 = 4;
const PULL_BACKOFF: Duration = Duration::from_millis(500);

pub struct DockerRuntime {
    docker: Docker,
    endpoint: String,
    pull_backoff: Duration,
    /// The engine runs on this machine (a unix socket): a port it is to publish can also be
    /// tried with a bind here before it is chosen.
    local: bool,
    /// An `ssh://` engine: the connection bollard's socket goes through, closed on drop.
    _ssh: Option<crate::drivers::ssh::DockerOverSsh>,
    /// Who is shown the progress of its pulls, and the host's name for them.
    pull_observer: Option<(String, std::sync::Arc<dyn crate::ports::PullObserver>)>,
}

impl DockerRuntime {
    /// Connects to a host's engine and negotiates the API version with it (old engines refuse
    /// newer clients). See `Transport::choose` for which endpoint and `tls` combinations
    /// mean what; every refusal names the endpoint and says what to change.
    pub async fn connect(endpoint: &str, tls: Option<&Tls>) -> Result<Self, RuntimeError> {
        let unreachable = |message: String| RuntimeError::Unreachable {
            endpoint: endpoint.to_string(),
            message,
        };
        let version = bollard::API_DEFAULT_VERSION;
        let transport = Transport::choose(endpoint, tls).map_err(unreachable)?;
        let local = matches!(transport, Transport::Unix(_));
        let mut ssh = None;
        let docker = match transport {
            Transport::Unix(path) => Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version),
            Transport::Ssh(target) => {
                let tunnel = crate::drivers::ssh::DockerOverSsh::open(&target)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                let socket = tunnel.socket().to_string_lossy().into_owned();
                ssh = Some(tunnel);
                Docker::connect_with_unix(&socket, REQUEST_TIMEOUT_SECS, version)
            }
            Transport::Http => Docker::connect_with_http(endpoint, REQUEST_TIMEOUT_SECS, version),
            Transport::Https(tls) => {
                // bollard reads the client key lazily, at each handshake, and a key it cannot
                // read becomes "no client certificate" and a bare handshake failure: check the
                // three files now, in the user's words.
                check_tls_files(tls).map_err(unreachable)?;
                Docker::connect_with_ssl(
                    endpoint,
                    Path::new(&tls.key),
                    Path::new(&tls.cert),
                    Path::new(&tls.ca),
                    REQUEST_TIMEOUT_SECS,
                    version,
                )
            }
        }
        .map_err(|e| unreachable(error_chain(&e)))?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            let mut message = error_chain(&e);
            if message.contains("HTTP request to an HTTPS server") {
                message.push_str(
                    " (the engine wants TLS: give this host `tls` with ca, cert and key)",
                );
            }
            unreachable(message)
        })?;
        Ok(DockerRuntime {
            docker,
            endpoint: endpoint.to_string(),
            pull_backoff: PULL_BACKOFF,
            local,
            _ssh: ssh,
            pull_observer: None,
        })
    }

    /// Shows the progress of this engine's pulls to an observer, as host `HOST`
    /// (`Some((HOST, observer))`), or to no one (`None`).
    pub fn set_pull_observer(
        &mut self,
        observer: Option<(&str, std::sync::Arc<dyn crate::ports::PullObserver>)>,
    ) {
        self.pull_observer = observer.map(|(host, o)| (host.to_string(), o));
    }

    /// Shorter back-off, for tests of the retry path.
    pub fn with_pull_backoff(mut self, backoff: Duration) -> Self {
        self.pull_backoff = backoff;
        self
    }

    /// The connected client, for drivers of other parts of the engine's API (Swarm services).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// What `gantry adopt` needs of a container gantry did not create: the image as it was
    /// named when the container was created, and its published TCP ports, `(container port,
    /// host port)` sorted, that a service's `port` is matched against (such a container has no
    /// label saying which port is probed).
    pub async fn adoption_facts(
        &self,
        id: &str,
    ) -> Result<(Option<String>, Vec<(u16, u16)>), RuntimeError> {
        let c = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.engine_error(&format!("inspect container {id}"), e))?;
        let image = c.config.as_ref().and_then(|cfg| cfg.image.clone());
        let mut out: Vec<(u16, u16)> = c
            .network_settings
            .and_then(|n| n.ports)
            .into_iter()
            .flatten()
            .filter_map(|(key, bindings)| {
                let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
                let port = port.parse::<u16>().ok().filter(|_| proto == "tcp")?;
                // The IPv4 binding first: with an engine-chosen port, IPv4 and IPv6 may get
                // different ones, and load balancers send to the IPv4 address.
                let mut bindings: Vec<(bool, u16)> = bindings
                    .into_iter()
                    .flatten()
                    .filter_map(|b| {
                        let v6 = b.host_ip.as_deref().is_some_and(|ip| ip.contains(':'));
                        Some((v6, b.host_port?.parse().ok()?))
                    })
                    .collect();
                bindings.sort_by_key(|(v6, _)| *v6);
                bindings.first().map(|(_, h)| (port, *h))
            })
            .collect();
        out.sort_unstable();
        Ok((image, out))
    }

    /// A host port for a container's probed port, fixed at create so that it is the same
    /// after every restart (an engine-chosen port changes at each start): one of
    /// [`FIXED_HOST_PORTS`] that no container on this engine publishes, none of gantry's stopped
    /// containers holds (their `HOST_PORT` label), this process has not just handed out, and,
    /// for a local engine, nothing listens on now. A start can still find it taken (by a
    /// process or a container created meanwhile): `RuntimeError::PortInUse`.
    async fn free_host_port(&self, host_ip: &str) -> Result<u16, RuntimeError> {
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.engine_error("list containers", e))?;
        let mut taken = HashSet::new();
        for s in summaries {
            taken.extend(s.ports.iter().flatten().filter_map(|p| p.public_port));
            if let Some(p) = s
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::HOST_PORT)?.parse::<u16>().ok())
            {
                taken.insert(p);
            }
        }
        let ip: std::net::IpAddr = host_ip
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut recent = RECENT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let mine = recent.entry(self.endpoint.clone()).or_default();
        mine.retain(|_, at| at.elapsed() < RECENT_PORT_TTL);
        taken.extend(mine.keys().copied());
        let bindable = |port: u16| {
            !self.local
                || !matches!(
                    std::net::TcpListener::bind((ip, port)),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
                )
        };
        let port = pick_port(&taken, bindable).ok_or_else(|| RuntimeError::Engine {
            op: "choose a host port".into(),
            message: format!(
                "every port of {}-{} is taken",
                FIXED_HOST_PORTS.start(),
                FIXED_HOST_PORTS.end()
            ),
        })?;
        mine.insert(port, Instant::now());
        Ok(port)
    }

    /// What to create the container from: `image_ref` while it names exactly `image` (the
    /// recorded ID) on this engine, so that `docker ps` shows what the user wrote; the ID
    /// otherwise (a reference that is gone or has moved on is silently not used).
    async fn image_to_run<'a>(&self, spec: &'a ContainerSpec) -> &'a str {
        if let Some(r) = spec.image_ref.as_deref().filter(|r| *r != spec.image)
            && let Ok(Some(id)) = self.image_id(r).await
            && id == spec.image
        {
            return r;
        }
        &spec.image
    }

    async fn create_from(
        &self,
        spec: &ContainerSpec,
        image: &str,
        host_port: Option<u16>,
    ) -> Result<(String, Vec<NetworkAttachment>), RuntimeError> {
        let (body, connect_later) = create_body(spec, image, host_port);
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match self.docker.create_container(Some(options), body).await {
            Ok(r) => Ok((r.id, connect_later)),
            // Pre-flight pulls what is missing; nothing is pulled mid-run.
            Err(e) if is_not_found(&e) && !error_chain(&e).contains("network") => {
                Err(RuntimeError::ImageUnavailable {
                    image: spec.image.clone(),
                    message: format!(
                        "{} (gantry pulls during pre-flight only: was it removed from the host since?)",
                        error_chain(&e)
                    ),
                })
            }
            Err(e) => Err(self.engine_error(&format!("create container {}", spec.name), e)),
        }
    }

    /// The error of a start that failed: `PortInUse` when a host port is taken.
    async fn start_error(&self, id: &str, e: bollard::errors::Error) -> RuntimeError {
        let error = self.engine_error(&format!("start container {id}"), e);
        let RuntimeError::Engine { message, .. } = &error else {
            return error;
        };
        let Some(port) = port_in_use(message) else {
            return error;
        };
        let port = match port {
            Some(p) => p,
            // The message names no port: the one the driver fixed.
            None => self
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .ok()
                .and_then(|c| c.config?.labels?.get(labels::HOST_PORT)?.parse().ok())
                .unwrap_or(0),
        };
        RuntimeError::PortInUse {
            port,
            message: message.clone(),
        }
    }

    fn engine_error(&self, op: &str, e: bollard::errors::Error) -> RuntimeError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError { message, .. } => RuntimeError::Engine {
                op: op.to_string(),
                message,
            },
            E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::RequestTimeoutError => RuntimeError::Unreachable {
                endpoint: self.endpoint.clone(),
                message: error_chain(&e),
            },
            other => RuntimeError::Engine {
                op: op.to_string(),
                message: other.to_string(),
            },
        }
    }
}

/// How gantry talks to one engine, decided from the host's `docker` endpoint and `tls`.
#[derive(Debug, PartialEq, Eq)]
enum Transport<'a> {
    /// `unix:///path`: the local socket.
    Unix(&'a str),
    /// `tcp://` or `http://` without `tls`: plain HTTP (validation allows it on loopback only).
    Http,
    /// `tcp://` or `https://` with `tls`: HTTPS; the engine's certificate must be signed by
    /// `tls.ca` and name the endpoint's host, and gantry presents `tls.cert` and `tls.key`
    /// (what an engine started with `--tlsverify` demands).
    Https(&'a Tls),
    /// `ssh://[user@]host[:port]`: the system `ssh` client, one connection forwarding a
    /// local socket to the far engine's (`drivers::ssh`).
    Ssh(crate::drivers::ssh::SshTarget),
}

impl<'a> Transport<'a> {
    fn choose(endpoint: &'a str, tls: Option<&'a Tls>) -> Result<Transport<'a>, String> {
        let scheme = endpoint.split_once("://").map_or("", |(s, _)| s);
        match (scheme, tls) {
            ("unix", None) => Ok(Transport::Unix(&endpoint["unix://".len()..])),
            ("unix", Some(_)) => Err(
                "`tls` is set, but a unix socket has no TLS: remove `tls`, or use `tcp://HOST:2376`"
                    .into(),
            ),
            ("tcp" | "https", Some(tls)) => Ok(Transport::Https(tls)),
            ("http", Some(_)) => {
                Err("`tls` is set, but `http://` is plain HTTP: use `tcp://` or `https://`".into())
            }
            ("tcp" | "http", None) => Ok(Transport::Http),
            ("https", None) => Err(
                "`https://` needs `tls` (ca, cert, key): the engine checks gantry's client certificate"
                    .into(),
            ),
            ("ssh", None) => crate::drivers::ssh::SshTarget::parse(endpoint).map(Transport::Ssh),
            ("ssh", Some(_)) => Err(
                "`tls` is set, but an `ssh://` endpoint is secured by SSH: remove `tls`".into(),
            ),
            _ => Err("unsupported endpoint scheme (use `unix://`, `tcp://` or `ssh://`)".into()),
        }
    }
}

/// Each TLS file is readable and holds what it should, as PEM.
fn check_tls_files(tls: &Tls) -> Result<(), String> {
    let files = [
        ("ca", &tls.ca, " CERTIFICATE-----", "a PEM certificate"),
        ("cert", &tls.cert, " CERTIFICATE-----", "a PEM certificate"),
        ("key", &tls.key, " PRIVATE KEY-----", "a PEM private key"),
    ];
    for (field, path, marker, what) in files {
        let text = std::fs::read(path)
            .map_err(|e| format!("tls.{field} `{path}`: cannot read it: {e}"))?;
        let text = String::from_utf8_lossy(&text);
        if !(text.contains("-----BEGIN ") && text.contains(marker)) {
            return Err(format!("tls.{field} `{path}` does not hold {what}"));
        }
    }
    Ok(())
}

/// An error and its causes, `outer: inner: ...`: bollard's own message for a failed TLS
/// handshake is only "client error (Connect)"; the reason (an unknown issuer, a name
/// mismatch, a refused client certificate) is further down the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string().trim().to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string().trim().to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
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

/// Docker's form of a restart policy.
pub(crate) fn restart_policy(restart: Restart) -> bollard::models::RestartPolicy {
    use bollard::models::RestartPolicyNameEnum as Name;
    let (name, count) = match restart {
        Restart::No => (Name::NO, None),
        Restart::Always => (Name::ALWAYS, None),
        Restart::UnlessStopped => (Name::UNLESS_STOPPED, None),
        Restart::OnFailure(n) => (Name::ON_FAILURE, n.map(i64::from)),
    };
    bollard::models::RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    }
}

fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

/// Where the driver fixes host ports. Not Docker's own ephemeral range (Linux's
/// `ip_local_port_range`, 32768-60999): the kernel gives those ports to outgoing connections,
/// and a replica kept stopped for a rollback would find its port taken by a client socket when
/// it starts again (seen in a test under load). Below 30000 also keeps clear of Kubernetes'
/// NodePorts (30000-32767) on hosts that run both.
const FIXED_HOST_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;

/// How long a port handed out by this process stays reserved for the container being created
/// with it (a list call made before that container exists does not show it yet).
const RECENT_PORT_TTL: Duration = Duration::from_secs(120);

/// Ports handed out recently in this process, per engine endpoint: concurrent creates on one
/// engine do not choose the same free port.
static RECENT_PORTS: Mutex<BTreeMap<String, HashMap<u16, Instant>>> = Mutex::new(BTreeMap::new());

/// At most this many lines of a health command's output are kept (the last ones).
const HEALTH_OUTPUT_LINES: usize = 20;

/// The request that creates a container for `spec`, running `image` (the ID, or a reference
/// naming that very image), with the probed `port` published on `host_port` (`None`: the
/// engine chooses). Also returns the networks beyond the first: the create request of API
/// versions before 1.44 takes one network, so these are connected after create.
pub(crate) fn create_body(
    spec: &ContainerSpec,
    image: &str,
    host_port: Option<u16>,
) -> (ContainerCreateBody, Vec<NetworkAttachment>) {
    let o = &spec.options;
    let isolated = matches!(o.network_mode, NetworkMode::Host | NetworkMode::None);
    let mut container_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = HashMap::new();
    if !isolated {
        if let Some(port) = spec.port {
            exposed.insert(port_key(port), HashMap::new());
            port_bindings.insert(
                port_key(port),
                Some(vec![PortBinding {
                    host_ip: Some(spec.host_ip.clone()),
                    host_port: Some(host_port.map(|p| p.to_string()).unwrap_or_default()),
                }]),
            );
            if let Some(p) = host_port {
                container_labels.insert(labels::HOST_PORT.to_string(), p.to_string());
            }
        }
        for p in &o.publish {
            let key = format!("{}/{}", p.container_port, p.protocol.word());
            exposed.insert(key.clone(), HashMap::new());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.clone().unwrap_or_default()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
    }
    let mut log_config = HashMap::new();
    if let Some(size) = &spec.log_max_size {
        log_config.insert("max-size".to_string(), size.clone());
    }
    if let Some(files) = spec.log_max_files {
        log_config.insert("max-file".to_string(), files.to_string());
    }
    let (network_mode, networking_config, connect_later) = match o.network_mode {
        NetworkMode::Host => (Some("host".to_string()), None, Vec::new()),
        NetworkMode::None => (Some("none".to_string()), None, Vec::new()),
        NetworkMode::Project => match o.networks.split_first() {
            None => (None, None, Vec::new()),
            Some((first, rest)) => (
                Some(first.name.clone()),
                Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        first.name.clone(),
                        endpoint(&first.aliases),
                    )])),
                }),
                rest.to_vec(),
            ),
        },
    };
    let nanos = |d: Duration| (!d.is_zero()).then(|| d.as_nanos().min(i64::MAX as u128) as i64);
    let healthcheck = o.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(
            std::iter::once("CMD".to_string())
                .chain(h.test.iter().cloned())
                .collect(),
        ),
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        retries: (h.retries > 0).then_some(i64::from(h.retries)),
        start_period: nanos(h.start_period),
        start_interval: None,
    });
    let mounts: Vec<bollard::models::Mount> = o
        .mounts
        .iter()
        .map(|m| {
            let (typ, source) = match &m.source {
                MountSource::Volume(v) => (bollard::models::MountTypeEnum::VOLUME, v),
                MountSource::Bind(p) => (bollard::models::MountTypeEnum::BIND, p),
            };
            bollard::models::Mount {
                target: Some(m.target.clone()),
                source: Some(source.clone()),
                typ: Some(typ),
                read_only: Some(m.read_only),
                ..Default::default()
            }
        })
        .collect();
    let tmpfs: HashMap<String, String> = o
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((path, options)) => (path.to_string(), options.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let ulimits: Vec<ResourcesUlimits> = o
        .ulimits
        .iter()
        .map(|(name, u)| ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(u.soft),
            hard: Some(u.hard),
        })
        .collect();
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: spec.command.clone(),
        entrypoint: o.entrypoint.clone(),
        user: o.user.clone(),
        working_dir: o.working_dir.clone(),
        env: Some(spec.env.clone()),
        labels: Some(container_labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_timeout: Some(spec.stop_grace.as_secs() as i64),
        healthcheck,
        networking_config,
        host_config: Some(HostConfig {
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            memory: spec.memory_bytes.map(|m| m as i64),
            nano_cpus: spec.cpus.map(|c| crate::ports::nano_cpus(c) as i64),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_string()),
                config: (!log_config.is_empty()).then_some(log_config),
            }),
            network_mode,
            restart_policy: Some(restart_policy(o.restart)),
            mounts: (!mounts.is_empty()).then_some(mounts),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            cap_add: non_empty(&o.cap_add),
            cap_drop: non_empty(&o.cap_drop),
            // Unset rather than false: the engine's defaults stay in force (`dockerd --init`).
            privileged: o.privileged.then_some(true),
            readonly_rootfs: o.read_only.then_some(true),
            init: o.init.then_some(true),
            pid_mode: o.pid.clone(),
            shm_size: o.shm_size.map(|s| s.min(i64::MAX as u64) as i64),
            sysctls: (!o.sysctls.is_empty()).then(|| o.sysctls.clone().into_iter().collect()),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            extra_hosts: non_empty(&o.extra_hosts),
            devices: (!o.devices.is_empty())
                .then(|| o.devices.iter().map(|d| device_mapping(d)).collect()),
            ..Default::default()
        }),
        ..Default::default()
    };
    (body, connect_later)
}

/// What of an inspected container can change while it lives (see [`LiveSettings`]).
fn live_settings(
    host: Option<&HostConfig>,
    network: Option<&bollard::models::NetworkSettings>,
) -> LiveSettings {
    use bollard::models::RestartPolicyNameEnum as Name;
    let policy = host.and_then(|h| h.restart_policy.as_ref());
    let restart = match policy.and_then(|p| p.name) {
        Some(Name::ALWAYS) => Restart::Always,
        Some(Name::UNLESS_STOPPED) => Restart::UnlessStopped,
        // The engine keeps 0 for "no limit".
        Some(Name::ON_FAILURE) => Restart::OnFailure(
            policy
                .and_then(|p| p.maximum_retry_count)
                .filter(|n| *n > 0)
                .and_then(|n| u32::try_from(n).ok()),
        ),
        _ => Restart::No,
    };
    let positive = |v: Option<i64>| v.filter(|v| *v > 0).map(|v| v as u64);
    let mut networks: Vec<String> = network
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    LiveSettings {
        restart,
        memory_bytes: positive(host.and_then(|h| h.memory)),
        nano_cpus: positive(host.and_then(|h| h.nano_cpus)),
        networks,
    }
}

fn endpoint(aliases: &[String]) -> EndpointSettings {
    EndpointSettings {
        aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
        ..Default::default()
    }
}

/// `HOST_PATH[:CONTAINER_PATH][:PERMISSIONS]`, as `docker run --device` reads it.
fn device_mapping(device: &str) -> DeviceMapping {
    let is_permissions =
        |s: &str| !s.is_empty() && s.len() <= 3 && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let parts: Vec<&str> = device.splitn(3, ':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, p] if is_permissions(p) => (*host, *host, *p),
        [host, container] => (*host, *container, "rwm"),
        [host, container, p] => (*host, *container, *p),
        _ => (device, device, "rwm"),
    };
    DeviceMapping {
        path_on_host: Some(host.to_string()),
        path_in_container: Some(container.to_string()),
        cgroup_permissions: Some(permissions.to_string()),
    }
}

/// The host port in an engine's "port taken" message (`Bind for 127.0.0.1:32768 failed:
/// port is already allocated`, `listen tcp4 0.0.0.0:8125: bind: address already in use`),
/// or `None` when the message is about something else.
pub(crate) fn port_in_use(message: &str) -> Option<Option<u16>> {
    let lower = message.to_lowercase();
    if !(lower.contains("port is already allocated") || lower.contains("address already in use")) {
        return None;
    }
    Some(message.split_whitespace().find_map(|word| {
        let word = word.trim_end_matches([':', ',', ')', '.']);
        let (_, port) = word.rsplit_once(':')?;
        port.parse::<u16>().ok().filter(|p| *p > 0)
    }))
}

/// Docker's word for a health state, as ours.
fn health_of(state: Option<&bollard::models::ContainerState>) -> Option<Health> {
    use bollard::models::HealthStatusEnum as H;
    let health = state?.health.as_ref()?;
    let status = match health.status? {
        H::STARTING => HealthStatus::Starting,
        H::HEALTHY => HealthStatus::Healthy,
        H::UNHEALTHY => HealthStatus::Unhealthy,
        H::NONE | H::EMPTY => return None,
    };
    let last_output = health
        .log
        .as_ref()
        .and_then(|log| log.last())
        .and_then(|r| r.output.as_deref())
        .map(last_lines)
        .filter(|o| !o.is_empty());
    Some(Health {
        status,
        last_output,
    })
}

/// The output trimmed, of at most [`HEALTH_OUTPUT_LINES`] lines (the last ones).
fn last_lines(output: &str) -> String {
    let lines: Vec<&str> = output.trim().lines().collect();
    let skip = lines.len().saturating_sub(HEALTH_OUTPUT_LINES);
    lines[skip..].join("\n")
}

/// The health a container summary's status shows (`Up 3 seconds (healthy)`).
fn health_of_status(status: &str) -> Option<Health> {
    let status = if status.ends_with("(healthy)") {
        HealthStatus::Healthy
    } else if status.ends_with("(unhealthy)") {
        HealthStatus::Unhealthy
    } else if status.ends_with("(health: starting)") {
        HealthStatus::Starting
    } else {
        return None;
    };
    Some(Health {
        status,
        last_output: None,
    })
}

/// The probed container port of a container (the engine's `PORT` label).
fn probed_port(labels: &BTreeMap<String, String>) -> Option<u16> {
    labels.get(labels::PORT)?.parse().ok()
}

/// Of published `(container port, is TCP, host port)`s, the host port of the probed TCP
/// port (the one the driver fixed, when `publish` binds that container port as well), or
/// the first for containers made before the label existed.
fn choose_host_port(
    probed: Option<u16>,
    fixed: Option<u16>,
    published: impl IntoIterator<Item = (u16, bool, u16)>,
) -> Option<u16> {
    let mut first = None;
    for (container, tcp, host) in published {
        match probed {
            Some(p) if p == container && tcp => {
                if fixed.is_none_or(|f| f == host) {
                    return Some(host);
                }
                first.get_or_insert(host);
            }
            Some(_) => {}
            None => {
                first.get_or_insert(host);
            }
        }
    }
    first
}

/// The host port of the probed container port, as `inspect` and `list` report it:
/// `published` are (container port, is TCP, host port) in any order.
fn probed_host_port(
    labels: &BTreeMap<String, String>,
    host_network: bool,
    state: ContainerState,
    mut published: Vec<(u16, bool, u16)>,
) -> Option<u16> {
    let probed = probed_port(labels);
    if host_network {
        // The host's network stack: the container port is the host's.
        return probed.filter(|_| state == ContainerState::Running);
    }
    // A deterministic "first" for containers without the label (the engine's map has no
    // order); the bindings of one port keep theirs.
    published.sort_by_key(|(port, tcp, _)| (*port, !*tcp));
    choose_host_port(probed, fixed_port(labels), published)
}

/// The host port the driver fixed (the `HOST_PORT` label).
fn fixed_port(labels: &BTreeMap<String, String>) -> Option<u16> {
    labels.get(labels::HOST_PORT)?.parse().ok()
}

impl DockerRuntime {
    /// After a pull of `fetch`: tags it `repo:tag` when it was fetched by digest, and reads
    /// its ID and its digest on `repo`'s registry.
    async fn pulled(
        &self,
        image: &str,
        fetch: &str,
        repo: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<Pulled, RuntimeError> {
        if let (Some(tag), Some(_)) = (tag, digest) {
            let options = bollard::query_parameters::TagImageOptions {
                repo: Some(repo.to_string()),
                tag: Some(tag.to_string()),
            };
            self.docker
                .tag_image(fetch, Some(options))
                .await
                .map_err(|e| self.engine_error(&format!("tag {fetch} as {repo}:{tag}"), e))?;
        }
        let inspected = match self.docker.inspect_image(fetch).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => {
                return Err(RuntimeError::ImageUnavailable {
                    image: image.to_string(),
                    message: "the pull finished but the image is not on the host".into(),
                });
            }
            Err(e) => return Err(self.engine_error("inspect an image", e)),
        };
        let digests = inspected.repo_digests.unwrap_or_default();
        // Docker names Hub images by their short name (`redis@sha256:...`).
        let short = repo
            .strip_prefix("docker.io/")
            .map(|r| r.strip_prefix("library/").unwrap_or(r))
            .unwrap_or(repo);
        let repo_digest = digests
            .iter()
            .find(|d| {
                d.split_once('@')
                    .is_some_and(|(r, _)| r == repo || r == short)
            })
            .cloned();
        Ok(Pulled {
            id: inspected.id.unwrap_or_default(),
            repo_digest,
        })
    }
}

/// Credentials as the engine takes them in `X-Registry-Auth`.
pub fn docker_credentials(auth: &RegistryAuth) -> bollard::auth::DockerCredentials {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    bollard::auth::DockerCredentials {
        username: some(&auth.username),
        password: some(&auth.password),
        serveraddress: some(&auth.server),
        identitytoken: auth.identity_token.clone(),
        ..Default::default()
    }
}

/// An engine message with the secrets of `auth` masked, should a registry echo them.
fn scrub(message: &str, auth: Option<&RegistryAuth>) -> String {
    let mut out = message.to_string();
    if let Some(a) = auth {
        for secret in [Some(&a.password), a.identity_token.as_ref()]
            .into_iter()
            .flatten()
        {
            if secret.len() >= 3 {
                out = out.replace(secret.as_str(), "***");
            }
        }
    }
    out
}

/// A port of [`FIXED_HOST_PORTS`] not in `taken`, starting the search at a random point;
/// `usable` may refuse more (a local bind test).
fn pick_port(taken: &HashSet<u16>, mut usable: impl FnMut(u16) -> bool) -> Option<u16> {
    let (low, high) = (*FIXED_HOST_PORTS.start(), *FIXED_HOST_PORTS.end());
    let span = u32::from(high - low) + 1;
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
    (0..span)
        .map(|i| low + ((start + i) % span) as u16)
        .find(|p| !taken.contains(p) && usable(*p))
}

impl ContainerRuntime for DockerRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.engine_error("answer a ping", e))
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.engine_error("inspect an image", e)),
        }
    }

    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<Pulled, RuntimeError> {
        let (repo, tag, digest) = crate::drivers::credentials::split_reference(image);
        // By digest when one is given: the tag is set afterwards, on this host.
        let fetch = match digest {
            Some(d) => format!("{repo}@{d}"),
            None => image.to_string(),
        };
        let mut backoff = self.pull_backoff;
        let mut last = String::new();
        let credentials = auth.map(docker_credentials);
        for attempt in 1..=PULL_ATTEMPTS {
            let options = CreateImageOptions {
                from_image: Some(fetch.clone()),
                ..Default::default()
            };
            let mut stream = self
                .docker
                .create_image(Some(options), None, credentials.clone());
            let mut failed = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
                        if let (Some((host, observer)), Some(status)) =
                            (&self.pull_observer, &info.status)
                        {
                            let detail = info.progress_detail.as_ref();
                            let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
                            let e = crate::ports::LayerProgress {
                                id: info.id.clone().unwrap_or_default(),
                                status: scrub(status, auth),
                                current: count(detail.and_then(|d| d.current)),
                                total: count(detail.and_then(|d| d.total)),
                            };
                            observer.event(host, image, &e);
                        }
                        if let Some(err) = info.error_detail.and_then(|d| d.message) {
                            failed = Some(err);
                        }
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some((host, observer)) = &self.pull_observer {
                observer.finished(host, image);
            }
            match failed {
                None => return self.pulled(image, &fetch, repo, tag, digest).await,
                // Every failure is tried again, a refused login included: a registry that
                // answered its ping with 5xx gave the engine no auth challenge, and the
                // engine then reports the next request's 401 (found by the 503 proxy test).
                Some(e) => {
                    last = format!("attempt {attempt}/{PULL_ATTEMPTS}: {}", scrub(&e, auth));
                }
            }
            if attempt < PULL_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(RuntimeError::ImageUnavailable {
            image: image.to_string(),
            message: last,
        })
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let isolated = matches!(
            spec.options.network_mode,
            NetworkMode::Host | NetworkMode::None
        );
        let host_port = match (spec.port, spec.host_port) {
            (Some(_), None) if !isolated => Some(self.free_host_port(&spec.host_ip).await?),
            (_, fixed) => fixed,
        };
        let image = self.image_to_run(spec).await;
        let (mut id, mut connect_later) = self.create_from(spec, image, host_port).await?;
        if image != spec.image {
            // The reference may have moved on between the check and the create (a pull on
            // this engine): the container must run the recorded ID, so it is made again.
            let runs = self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| self.engine_error(&format!("inspect container {id}"), e))?
                .image;
            if runs.as_deref() != Some(spec.image.as_str()) {
                self.remove(&id).await?;
                (id, connect_later) = self.create_from(spec, &spec.image, host_port).await?;
            }
        }
        for network in &connect_later {
            let request = NetworkConnectRequest {
                container: Some(id.clone()),
                endpoint_config: Some(endpoint(&network.aliases)),
            };
            if let Err(e) = self.docker.connect_network(&network.name, request).await {
                let error = self.engine_error(
                    &format!(
                        "connect container {} to network {}",
                        spec.name, network.name
                    ),
                    e,
                );
                self.remove(&id).await?;
                return Err(error);
            }
        }
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self
            .docker
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            // 304: already running (an undo after a crash may start what never stopped).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.start_error(id, e).await),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let options = StopContainerOptions {
            t: Some(grace.as_secs().max(1) as i32),
            signal: None,
        };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: gone, or never created (an undo after a crash).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.engine_error(&format!("stop container {id}"), e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.engine_error(&format!("remove container {id}"), e)),
        }
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        let c = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.engine_error(&format!("inspect container {id}"), e)),
        };
        let labels: BTreeMap<String, String> = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let state = match &c.state {
            Some(s) if s.running == Some(true) => ContainerState::Running,
            Some(s) => match s.status {
                Some(bollard::models::ContainerStateStatusEnum::CREATED) => ContainerState::Created,
                Some(
                    bollard::models::ContainerStateStatusEnum::EXITED
                    | bollard::models::ContainerStateStatusEnum::DEAD,
                ) => ContainerState::Exited(s.exit_code.unwrap_or(-1)),
                _ => ContainerState::Other,
            },
            None => ContainerState::Other,
        };
        let host_network = c
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            == Some("host");
        let published = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|(key, bindings)| {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                let port = port.parse::<u16>().ok();
                // IPv4 first: an engine-chosen port may differ between IPv4 and IPv6 (a
                // container gantry did not create, `gantry adopt`), and load balancers send
                // to the IPv4 address.
                let mut bindings: Vec<_> = bindings.iter().flatten().collect();
                bindings.sort_by_key(|b| b.host_ip.as_deref().is_some_and(|ip| ip.contains(':')));
                bindings.into_iter().filter_map(move |b| {
                    Some((port?, proto == "tcp", b.host_port.as_ref()?.parse().ok()?))
                })
            })
            .collect();
        let host_port = probed_host_port(&labels, host_network, state, published);
        let health = health_of(c.state.as_ref());
        let settings = live_settings(c.host_config.as_ref(), c.network_settings.as_ref());
        Ok(Some(ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            labels,
            state,
            host_port,
            image_id: c.image.unwrap_or_default(),
            health,
            settings: Some(settings),
        }))
    }

    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.engine_error("list containers", e))?;
        let mut out: Vec<ContainerInfo> = summaries
            .into_iter()
            .map(|s| {
                use bollard::models::ContainerSummaryStateEnum as S;
                let state = match s.state {
                    Some(S::RUNNING) => ContainerState::Running,
                    Some(S::CREATED) => ContainerState::Created,
                    Some(S::EXITED | S::DEAD) => {
                        // The summary has no exit code; "Exited (3) 2 seconds ago" does.
                        let code = s
                            .status
                            .as_deref()
                            .and_then(|st| st.strip_prefix("Exited ("))
                            .and_then(|st| st.split(')').next())
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(-1);
                        ContainerState::Exited(code)
                    }
                    _ => ContainerState::Other,
                };
                let labels: BTreeMap<String, String> =
                    s.labels.unwrap_or_default().into_iter().collect();
                let host_network = s
                    .host_config
                    .as_ref()
                    .and_then(|h| h.network_mode.as_deref())
                    == Some("host");
                // IPv4 bindings first, as in `inspect`.
                let mut ports: Vec<_> = s.ports.iter().flatten().collect();
                ports.sort_by_key(|p| p.ip.as_deref().is_some_and(|ip| ip.contains(':')));
                let published = ports
                    .into_iter()
                    .filter_map(|p| {
                        let tcp = p.typ != Some(bollard::models::PortTypeEnum::UDP)
                            && p.typ != Some(bollard::models::PortTypeEnum::SCTP);
                        Some((p.private_port, tcp, p.public_port?))
                    })
                    .collect();
                let host_port = probed_host_port(&labels, host_network, state, published);
                ContainerInfo {
                    id: s.id.unwrap_or_default(),
                    name: s
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    labels,
                    state,
                    host_port,
                    image_id: s.image_id.unwrap_or_default(),
                    health: s.status.as_deref().and_then(health_of_status),
                    settings: None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove_image(&self, id: &str) -> Result<bool, RuntimeError> {
        let options = bollard::query_parameters::RemoveImageOptions {
            force: false,
            noprune: false,
        };
        match self.docker.remove_image(id, Some(options), None).await {
            Ok(_) => Ok(true),
            // 409: a container uses it; 404: gone already.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409 | 404,
                ..
            }) => Ok(false),
            Err(e) => Err(self.engine_error(&format!("remove image {id}"), e)),
        }
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, RuntimeError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(id, Some(options));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.extend(
                    String::from_utf8_lossy(&chunk.into_bytes())
                        .lines()
                        .map(str::to_string),
                ),
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(self.engine_error(&format!("read logs of {id}"), e)),
            }
        }
        let skip = out.len().saturating_sub(lines);
        Ok(out.split_off(skip))
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        let op = format!("exec `{}` in {id}", cmd.join(" "));
        let config = bollard::models::ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(false),
            tty: Some(false),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(id, config)
            .await
            .map_err(|e| self.engine_error(&op, e))?;
        let started = self
            .docker
            .start_exec(&created.id, None::<bollard::exec::StartExecOptions>)
            .await
            .map_err(|e| self.engine_error(&op, e))?;
        // Only the tail is kept: a chatty command must not fill the memory.
        const KEEP: usize = 64 * 1024;
        let mut bytes: Vec<u8> = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(item) = output.next().await {
                let chunk = item.map_err(|e| self.engine_error(&op, e))?;
                bytes.extend_from_slice(&chunk.into_bytes());
                if bytes.len() > 2 * KEEP {
                    bytes.drain(..bytes.len() - KEEP);
                }
            }
        }
        // The output ends when the process does; the engine may record its exit a moment later.
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit_code = loop {
            let inspected = self
                .docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| self.engine_error(&op, e))?;
            match (inspected.running, inspected.exit_code) {
                (Some(false), Some(code)) => break code,
                _ if Instant::now() >= deadline => {
                    return Err(RuntimeError::Engine {
                        op,
                        message: "the engine did not report the exit code".into(),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let skip = lines.len().saturating_sub(ExecOutput::MAX_LINES);
        Ok(ExecOutput {
            exit_code,
            output: lines[skip..].to_vec(),
        })
    }

    async fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        if self.network_exists(name).await? {
            return Ok(());
        }
        let request = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created meanwhile by another run on this engine (409 Conflict): it is there.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(self.engine_error(&format!("create network {name}"), e)),
        }
    }

    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            // The engine also matches an ID prefix: only the exact name counts.
            Ok(n) => Ok(n.name.as_deref() == Some(name)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.engine_error(&format!("inspect network {name}"), e)),
        }
    }

    async fn remove_network(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<bool, RuntimeError> {
        let network = match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => n,
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(self.engine_error(&format!("inspect network {name}"), e)),
        };
        let found = network.labels.unwrap_or_default();
        let ours = labels
            .iter()
            .all(|(k, v)| found.get(*k).map(String::as_str) == Some(*v));
        // The engine also matches an ID prefix: only the exact name counts.
        if network.name.as_deref() != Some(name) || !ours {
            return Ok(false);
        }
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            // 403 (active endpoints) or 409: a container or a Swarm service still uses it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403 | 409,
                ..
            }) => Ok(false),
            Err(e) => Err(self.engine_error(&format!("remove network {name}"), e)),
        }
    }

    async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        // Creating a volume that exists returns it unchanged (labels included): idempotent.
        let request = bollard::models::VolumeCreateOptions {
            name: Some(name.to_string()),
            driver: Some("local".to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|e| self.engine_error(&format!("create volume {name}"), e))
    }

    async fn list_volumes(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let options = bollard::query_parameters::ListVolumesOptions {
            filters: Some(filters),
        };
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| self.engine_error("list volumes", e))?;
        let mut names: Vec<String> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn remove_volume(&self, name: &str) -> Result<bool, RuntimeError> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            // 409: in use by a container.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(false),
            Err(e) => Err(self.engine_error(&format!("remove volume {name}"), e)),
        }
    }

    async fn set_restart(&self, id: &str, restart: Restart) -> Result<(), RuntimeError> {
        let body = bollard::models::ContainerUpdateBody {
            restart_policy: Some(restart_policy(restart)),
            ..Default::default()
        };
        self.docker
            .update_container(id, body)
            .await
            .map_err(|e| self.engine_error(&format!("update container {id}"), e))
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<i64>, RuntimeError> {
        let options = bollard::query_parameters::WaitContainerOptions {
            condition: "not-running".to_string(),
        };
        let mut stream = self.docker.wait_container(id, Some(options));
        match tokio::time::timeout(timeout, stream.next()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(r))) => Ok(Some(r.status_code)),
            // bollard reports a non-zero exit code as an error.
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
                Ok(Some(code))
            }
            Ok(Some(Err(e))) => Err(self.engine_error(&format!("wait for container {id}"), e)),
            Ok(None) => Err(RuntimeError::Engine {
                op: format!("wait for container {id}"),
                message: "the engine closed the wait without an exit code".into(),
            }),
        }
    }

    async fn missing_paths(
        &self,
        image: &str,
        paths: &[String],
    ) -> Result<Vec<String>, RuntimeError> {
        // The engine checks a bind mount's source when a container is created with it
        // (Mounts, unlike the legacy Binds, never creates a missing source): a container
        // that is created and removed, never started, answers for the engine's own host.
        let mut missing = Vec::new();
        for path in paths {
            let body = ContainerCreateBody {
                image: Some(image.to_string()),
                labels: Some(HashMap::from([(
                    "dev.gantry.preflight".to_string(),
                    "bind-source".to_string(),
                )])),
                host_config: Some(HostConfig {
                    mounts: Some(vec![bollard::models::Mount {
                        target: Some("/gantry-preflight".to_string()),
                        source: Some(path.clone()),
                        typ: Some(bollard::models::MountTypeEnum::BIND),
                        read_only: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match self
                .docker
                .create_container(None::<CreateContainerOptions>, body)
                .await
            {
                Ok(r) => self.remove(&r.id).await?,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 400,
                    message,
                }) if message.contains("does not exist") => missing.push(path.clone()),
                Err(e) => {
                    return Err(self.engine_error(&format!("check bind source {path}"), e));
                }
            }
        }
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{ContainerOptions, Healthcheck, Mount, Ulimit};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "p-web-3-1".into(),
            image: "sha256:abc".into(),
            command: Some(vec!["serve".into()]),
            env: vec!["A=1".into()],
            labels: BTreeMap::from([(labels::PORT.to_string(), "8080".to_string())]),
            port: Some(8080),
            host_port: None,
            host_ip: "127.0.0.1".into(),
            memory_bytes: Some(64 << 20),
            cpus: Some(0.5),
            log_max_size: Some("10m".into()),
            log_max_files: Some(3),
            stop_grace: Duration::from_secs(7),
            image_ref: Some("registry.example/web:3074f46".into()),
            options: ContainerOptions::default(),
        }
    }

    fn every_option() -> ContainerOptions {
        ContainerOptions {
            entrypoint: Some(vec!["/bin/app".into()]),
            user: Some("1000:1000".into()),
            working_dir: Some("/srv".into()),
            publish: vec![
                "8125:8125/udp".parse().unwrap(),
                "127.0.0.1:8126:8126".parse().unwrap(),
                "9090:8080".parse().unwrap(),
            ],
            networks: vec![
                NetworkAttachment {
                    name: "p".into(),
                    aliases: vec!["web".into()],
                },
                NetworkAttachment {
                    name: "shared".into(),
                    aliases: vec!["web".into(), "api".into()],
                },
            ],
            network_mode: NetworkMode::Project,
            mounts: vec![
                "p_cache:/data".parse::<Mount>().unwrap(),
                "/var/run/docker.sock:/var/run/docker.sock:ro"
                    .parse()
                    .unwrap(),
            ],
            tmpfs: vec!["/tmp".into(), "/run:size=64m,mode=1777".into()],
            restart: Restart::OnFailure(Some(5)),
            healthcheck: Some(Healthcheck {
                test: vec!["redis-cli".into(), "ping".into()],
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                retries: 3,
                start_period: Duration::ZERO,
            }),
            cap_add: vec!["SYS_ADMIN".into()],
            cap_drop: vec!["NET_RAW".into()],
            privileged: true,
            read_only: true,
            init: true,
            pid: Some("host".into()),
            shm_size: Some(128 << 20),
            sysctls: BTreeMap::from([("net.core.somaxconn".into(), "1024".into())]),
            ulimits: BTreeMap::from([(
                "nofile".into(),
                Ulimit {
                    soft: 1024,
                    hard: 2048,
                },
            )]),
            extra_hosts: vec!["db.example:10.0.0.9".into()],
            devices: vec!["/dev/fuse".into(), "/dev/sda:/dev/xvda:r".into()],
        }
    }

    #[test]
    fn a_plain_spec_publishes_its_port_on_the_fixed_host_port() {
        let (body, later) = create_body(&spec(), "registry.example/web:3074f46", Some(40001));
        assert!(later.is_empty());
        assert_eq!(body.image.as_deref(), Some("registry.example/web:3074f46"));
        assert_eq!(body.cmd, Some(vec!["serve".to_string()]));
        assert_eq!(body.stop_timeout, Some(7));
        let labels = body.labels.unwrap();
        assert_eq!(labels[labels::HOST_PORT], "40001");
        assert_eq!(labels[labels::PORT], "8080");
        let host = body.host_config.unwrap();
        assert_eq!(
            host.port_bindings.unwrap()["8080/tcp"],
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("40001".into()),
            }])
        );
        assert_eq!(host.network_mode, None, "the default bridge");
        assert_eq!(
            host.restart_policy,
            Some(restart_policy(Restart::UnlessStopped))
        );
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        for unset in [host.privileged, host.readonly_rootfs, host.init] {
            assert_eq!(unset, None, "engine defaults stay");
        }
        assert!(body.healthcheck.is_none() && body.networking_config.is_none());
    }

    #[test]
    fn every_option_reaches_the_create_request() {
        let mut s = spec();
        s.options = every_option();
        let (body, later) = create_body(&s, "sha256:abc", Some(40001));
        assert_eq!(body.entrypoint, Some(vec!["/bin/app".to_string()]));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.working_dir.as_deref(), Some("/srv"));
        let exposed: BTreeMap<_, _> = body.exposed_ports.clone().unwrap().into_iter().collect();
        assert_eq!(
            exposed.keys().collect::<Vec<_>>(),
            ["8080/tcp", "8125/udp", "8126/tcp"]
        );
        let health = body.healthcheck.clone().unwrap();
        assert_eq!(
            health.test.unwrap(),
            ["CMD", "redis-cli", "ping"].map(String::from)
        );
        assert_eq!(health.interval, Some(1_000_000_000));
        assert_eq!(health.timeout, Some(500_000_000));
        assert_eq!(health.retries, Some(3));
        assert_eq!(health.start_period, None, "0: the engine's default");
        // The first network at create, with its aliases; the others after create.
        let endpoints = body
            .networking_config
            .clone()
            .unwrap()
            .endpoints_config
            .unwrap();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints["p"].aliases, Some(vec!["web".to_string()]));
        assert_eq!(later, s.options.networks[1..]);

        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("p"));
        let bindings = host.port_bindings.unwrap();
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        assert_eq!(
            bindings["8080/tcp"],
            Some(vec![binding("127.0.0.1", "40001"), binding("", "9090")]),
            "the probed port and a publish of the same container port"
        );
        assert_eq!(bindings["8125/udp"], Some(vec![binding("", "8125")]));
        assert_eq!(
            bindings["8126/tcp"],
            Some(vec![binding("127.0.0.1", "8126")])
        );
        let mounts = host.mounts.unwrap();
        assert_eq!(
            (
                mounts[0].typ,
                mounts[0].source.as_deref(),
                mounts[0].target.as_deref(),
                mounts[0].read_only
            ),
            (
                Some(bollard::models::MountTypeEnum::VOLUME),
                Some("p_cache"),
                Some("/data"),
                Some(false)
            )
        );
        assert_eq!(mounts[1].typ, Some(bollard::models::MountTypeEnum::BIND));
        assert_eq!(mounts[1].read_only, Some(true));
        let tmpfs: BTreeMap<_, _> = host.tmpfs.unwrap().into_iter().collect();
        assert_eq!(
            tmpfs,
            BTreeMap::from([
                ("/tmp".to_string(), String::new()),
                ("/run".to_string(), "size=64m,mode=1777".to_string())
            ])
        );
        assert_eq!(
            host.restart_policy,
            Some(bollard::models::RestartPolicy {
                name: Some(bollard::models::RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(5),
            })
        );
        assert_eq!(host.cap_add, Some(vec!["SYS_ADMIN".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["NET_RAW".to_string()]));
        assert_eq!(
            (host.privileged, host.readonly_rootfs, host.init),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(host.pid_mode.as_deref(), Some("host"));
        assert_eq!(host.shm_size, Some(128 << 20));
        assert_eq!(host.sysctls.unwrap()["net.core.somaxconn"], "1024");
        assert_eq!(
            host.ulimits,
            Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(1024),
                hard: Some(2048),
            }])
        );
        assert_eq!(
            host.extra_hosts,
            Some(vec!["db.example:10.0.0.9".to_string()])
        );
        let devices = host.devices.unwrap();
        assert_eq!(devices[0], device_mapping("/dev/fuse:/dev/fuse:rwm"));
        assert_eq!(devices[1].path_in_container.as_deref(), Some("/dev/xvda"));
        assert_eq!(devices[1].cgroup_permissions.as_deref(), Some("r"));
    }

    #[test]
    fn host_and_none_networking_publish_nothing() {
        for (mode, word) in [(NetworkMode::Host, "host"), (NetworkMode::None, "none")] {
            let mut s = spec();
            s.options = every_option();
            s.options.network_mode = mode;
            s.options.networks.clear();
            let (body, later) = create_body(&s, "sha256:abc", None);
            assert!(later.is_empty());
            assert!(body.exposed_ports.is_none() && body.networking_config.is_none());
            let host = body.host_config.unwrap();
            assert_eq!(host.network_mode.as_deref(), Some(word));
            assert!(host.port_bindings.is_none());
            assert!(!body.labels.unwrap().contains_key(labels::HOST_PORT));
        }
    }

    #[test]
    fn devices_read_as_docker_run_reads_them() {
        let d = |s: &str| {
            let m = device_mapping(s);
            (
                m.path_on_host.unwrap(),
                m.path_in_container.unwrap(),
                m.cgroup_permissions.unwrap(),
            )
        };
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(d("/dev/fuse"), t("/dev/fuse", "/dev/fuse", "rwm"));
        assert_eq!(d("/dev/fuse:rw"), t("/dev/fuse", "/dev/fuse", "rw"));
        assert_eq!(d("/dev/sda:/dev/xvda"), t("/dev/sda", "/dev/xvda", "rwm"));
        assert_eq!(d("/dev/sda:/dev/xvda:r"), t("/dev/sda", "/dev/xvda", "r"));
    }

    #[test]
    fn a_taken_port_is_recognised_in_the_engines_words() {
        assert_eq!(
            port_in_use(
                "driver failed programming external connectivity on endpoint p-web-3-1 (ab12): Bind for 127.0.0.1:40001 failed: port is already allocated"
            ),
            Some(Some(40001))
        );
        assert_eq!(
            port_in_use(
                "driver failed programming external connectivity on endpoint x (1): Error starting userland proxy: listen tcp4 0.0.0.0:8125: bind: address already in use"
            ),
            Some(Some(8125))
        );
        assert_eq!(
            port_in_use("port is already allocated"),
            Some(None),
            "no port named"
        );
        assert_eq!(port_in_use("no space left on device"), None);
    }

    #[test]
    fn the_host_port_is_the_probed_ports() {
        let published = [(8080, true, 40001), (8125, false, 8125), (9090, true, 9090)];
        assert_eq!(choose_host_port(Some(9090), None, published), Some(9090));
        assert_eq!(
            choose_host_port(Some(8125), None, published),
            None,
            "udp is not probed"
        );
        assert_eq!(
            choose_host_port(None, None, published),
            Some(40001),
            "without the label: the first"
        );
        assert_eq!(choose_host_port(Some(8080), None, []), None);
        // `publish = ["9090:8080"]` beside the probed 8080 on its fixed 40001.
        let both = [(8080, true, 9090), (8080, true, 40001)];
        assert_eq!(choose_host_port(Some(8080), Some(40001), both), Some(40001));
        assert_eq!(choose_host_port(Some(8080), None, both), Some(9090));
    }

    #[test]
    fn a_chosen_port_is_free_and_in_gantrys_range() {
        let mut taken: HashSet<u16> = FIXED_HOST_PORTS.collect();
        assert_eq!(pick_port(&taken, |_| true), None);
        taken.remove(&25000);
        taken.remove(&25001);
        assert_eq!(pick_port(&taken, |p| p != 25000), Some(25001));
        for _ in 0..50 {
            let p = pick_port(&HashSet::new(), |_| true).unwrap();
            assert!(FIXED_HOST_PORTS.contains(&p));
        }
    }

    #[test]
    fn health_reads_the_status_and_the_last_output() {
        use bollard::models::{HealthStatusEnum as H, HealthcheckResult};
        let state = |status, outputs: &[&str]| bollard::models::ContainerState {
            health: Some(bollard::models::Health {
                status: Some(status),
                failing_streak: None,
                log: Some(
                    outputs
                        .iter()
                        .map(|o| HealthcheckResult {
                            output: Some(o.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        };
        let long: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let h = health_of(Some(&state(H::UNHEALTHY, &["old", &long]))).unwrap();
        assert_eq!(h.status, HealthStatus::Unhealthy);
        let out = h.last_output.unwrap();
        assert!(
            out.starts_with("line 11\n") && out.ends_with("line 30"),
            "{out}"
        );
        let h = health_of(Some(&state(H::STARTING, &[]))).unwrap();
        assert_eq!((h.status, h.last_output), (HealthStatus::Starting, None));
        assert_eq!(health_of(Some(&state(H::NONE, &[]))), None);
        assert_eq!(health_of(None), None);
        assert_eq!(
            health_of_status("Up 3 seconds (health: starting)").map(|h| h.status),
            Some(HealthStatus::Starting)
        );
        assert_eq!(
            health_of_status("Up 1 minute (unhealthy)").map(|h| h.status),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(health_of_status("Up 1 minute"), None);
    }

    fn tls(dir: &Path) -> Tls {
        let at = |f: &str| dir.join(f).display().to_string();
        Tls {
            ca: at("ca.pem"),
            cert: at("cert.pem"),
            key: at("key.pem"),
        }
    }

    fn write_pems(dir: &Path) {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.join("ca.pem"), cert).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(
            dir.join("key.pem"),
            "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
    }

    #[test]
    fn the_endpoint_and_tls_choose_the_transport() {
        let t = tls(Path::new("/certs"));
        let choose = Transport::choose;
        assert_eq!(
            choose("unix:///var/run/docker.sock", None),
            Ok(Transport::Unix("/var/run/docker.sock"))
        );
        assert_eq!(choose("tcp://127.0.0.1:2375", None), Ok(Transport::Http));
        assert_eq!(choose("http://127.0.0.1:2375", None), Ok(Transport::Http));
        assert_eq!(
            choose("tcp://10.0.0.5:2376", Some(&t)),
            Ok(Transport::Https(&t))
        );
        assert_eq!(
            choose("https://10.0.0.5:2376", Some(&t)),
            Ok(Transport::Https(&t))
        );
        assert!(matches!(
            choose("ssh://deploy@node-b:2222", None),
            Ok(Transport::Ssh(crate::drivers::ssh::SshTarget {
                port: Some(2222),
                ..
            }))
        ));
    }

    #[test]
    fn combinations_that_cannot_work_are_refused_in_words() {
        let t = tls(Path::new("/certs"));
        let refused = |endpoint, tls| Transport::choose(endpoint, tls).unwrap_err();
        assert!(
            refused("unix:///var/run/docker.sock", Some(&t)).contains("a unix socket has no TLS")
        );
        assert!(refused("http://10.0.0.5:2375", Some(&t)).contains("`http://` is plain HTTP"));
        assert!(refused("https://10.0.0.5:2376", None).contains("needs `tls`"));
        assert!(refused("ssh://deploy@node-b", Some(&t)).contains("secured by SSH"));
        assert!(refused("ssh://deploy@node-b/var/run/docker.sock", None).contains("no path"));
        assert!(
            refused("npipe:////./pipe/docker_engine", None).contains("unsupported endpoint scheme")
        );
    }

    #[tokio::test]
    async fn connect_over_ssh_names_the_endpoint_when_ssh_cannot_connect() {
        // Port 9 (discard) on loopback: nothing listens, ssh says "Connection refused".
        let Err(e) = DockerRuntime::connect("ssh://deploy@127.0.0.1:9", None).await else {
            panic!("ssh:// connected");
        };
        let text = e.to_string();
        assert!(
            text.starts_with("cannot reach the Docker engine at ssh://deploy@127.0.0.1:9: ssh cannot connect to deploy@127.0.0.1:9: "),
            "{text}"
        );
    }

    #[tokio::test]
    async fn connect_names_a_missing_or_wrong_tls_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = tls(dir.path());
        // Nothing listens there: the files are checked before any connection.
        let endpoint = "tcp://127.0.0.1:9";
        let Err(e) = DockerRuntime::connect(endpoint, Some(&t)).await else {
            panic!("connected without certificates");
        };
        assert!(
            e.to_string()
                .contains(&format!("tls.ca `{}`: cannot read it", t.ca)),
            "{e}"
        );

        write_pems(dir.path());
        std::fs::write(&t.key, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let Err(e) = DockerRuntime::connect(endpoint, Some(&t)).await else {
            panic!("connected with a certificate for a key");
        };
        assert!(
            e.to_string().contains(&format!(
                "tls.key `{}` does not hold a PEM private key",
                t.key
            )),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_tls_endpoint_that_does_not_answer_is_unreachable_with_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        write_pems(dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let Err(e) = DockerRuntime::connect(&endpoint, Some(&tls(dir.path()))).await else {
            panic!("connected to a closed port");
        };
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("cannot reach the Docker engine at {endpoint}: ")),
            "{text}"
        );
        assert!(
            text.to_lowercase().contains("refused"),
            "the cause is kept: {text}"
        );
    }

    #[test]
    fn the_error_chain_keeps_every_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            error_chain(&e),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }
}
