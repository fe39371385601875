//! An in-memory container engine: containers with states, names, labels, images and ports,
//! behaving as Docker with gantry's driver does where the executor depends on it (a host port
//! is fixed when a container is created and kept across restarts, and is not shown while the
//! container is stopped; a start whose host port is taken fails with `PortInUse`; stop and
//! remove of what is gone succeed; an image in use is not removed; a volume in use is not
//! removed; networks must exist; a missing bind source refuses the create; a process that
//! dies is restarted as its restart policy says), plus scripted faults.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::ports::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, ExecOutput, Health,
    HealthStatus, MountSource, NetworkMode, Pulled, RegistryAuth, Restart, RuntimeError,
};

/// The fake registry's digest of an image.
fn fake_digest(image_id: &str) -> String {
    format!("sha256:d{}", image_id.trim_start_matches("sha256:"))
}

/// Where a scripted fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeOp {
    Create,
    Start,
    Stop,
    Remove,
}

#[derive(Debug, Clone)]
enum Fault {
    /// `op` of a container whose name contains `name` fails, `times` times (None: always).
    Fails {
        op: FakeOp,
        name: String,
        message: String,
        times: Option<u32>,
    },
    /// The container exits with `code` as soon as it has started (a crash at start).
    ExitsAtStart { name: String, code: i64 },
    /// The container ignores SIGTERM: a stop kills it (exit code 137).
    IgnoresSigterm { name: String },
    /// The container's health command fails with this output (it is healthy otherwise).
    Unhealthy { name: String, output: String },
    /// A command exec'ed in containers whose name contains `name` (and whose argv, joined by
    /// spaces, contains `cmd`) ends with `code` and `output`.
    Exec {
        name: String,
        cmd: String,
        code: i64,
        output: Vec<String>,
    },
}

#[derive(Debug, Clone)]
struct Container {
    info: ContainerInfo,
    spec: ContainerSpec,
    /// The host port of the probed port, fixed at create.
    host_port: Option<u16>,
    /// What `docker ps` shows: the reference the user wrote, or the image ID.
    shown_image: String,
    /// Times the engine restarted it after its process died.
    restarts: u32,
}

impl Container {
    /// What `inspect` reports of what can change while it lives, as the Docker engine does.
    fn settings(&self) -> crate::ports::LiveSettings {
        let o = &self.spec.options;
        let mut networks: Vec<String> = match o.network_mode {
            NetworkMode::Host => vec!["host".into()],
            NetworkMode::None => vec!["none".into()],
            NetworkMode::Project if o.networks.is_empty() => vec!["bridge".into()],
            NetworkMode::Project => o.networks.iter().map(|n| n.name.clone()).collect(),
        };
        networks.sort();
        crate::ports::LiveSettings {
            restart: o.restart,
            memory_bytes: self.spec.memory_bytes,
            nano_cpus: self.spec.cpus.map(crate::ports::nano_cpus),
            networks,
        }
    }

    /// Every host port the container publishes while it runs.
    fn host_ports(&self) -> Vec<u16> {
        self.host_port
            .into_iter()
            .chain(self.spec.options.publish.iter().map(|p| p.host_port))
            .collect()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Image reference (or ID) -> image ID: what is on the host.
    images: BTreeMap<String, String>,
    /// Image reference -> image ID: what a pull would fetch.
    registry: BTreeMap<String, String>,
    /// The user name and password every pull must present, when set.
    registry_login: Option<(String, String)>,
    /// Each pull: the reference and the user name it presented.
    pulls: Vec<(String, Option<String>)>,
    containers: BTreeMap<String, Container>,
    faults: Vec<Fault>,
    next_id: u64,
    /// Where the search for a free host port starts.
    next_port: u16,
    /// Containers get no fixed host port: the engine chooses one at every start.
    ports_chosen_at_start: bool,
    unreachable: bool,
    calls: Vec<String>,
    logs: BTreeMap<String, Vec<String>>,
    /// Network and volume names -> their labels.
    networks: BTreeMap<String, BTreeMap<String, String>>,
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    /// Host paths that do not exist (every other path does).
    missing_paths: std::collections::BTreeSet<String>,
}

/// Cloning shares the engine: a test keeps one clone to look at what the executor did.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    inner: Arc<Mutex<Inner>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

fn engine(op: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Engine {
        op: op.to_string(),
        message: message.into(),
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        FakeRuntime {
            inner: Arc::new(Mutex::new(Inner {
                next_port: 32768,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts an image on the host; returns its ID (`sha256:` of the reference's digest).
    pub fn add_image(&self, reference: &str) -> String {
        let id = fake_image_id(reference);
        self.lock().images.insert(reference.to_string(), id.clone());
        id
    }

    /// Makes `reference` pullable (it is not on the host until pulled).
    pub fn add_to_registry(&self, reference: &str) -> String {
        let id = fake_image_id(reference);
        self.lock()
            .registry
            .insert(reference.to_string(), id.clone());
        id
    }

    /// Makes the registry's `reference` name another image (a tag moved on), which a pull
    /// by the old digest still finds; returns the new image ID.
    pub fn move_tag_in_registry(&self, reference: &str) -> String {
        let mut inner = self.lock();
        let id = fake_image_id(&format!("{reference}-moved-{}", inner.registry.len()));
        let (repo, _, _) = crate::drivers::credentials::split_reference(reference);
        let old = inner.registry.get(reference).cloned();
        if let Some(old) = old {
            // The old image stays in the registry under a name of its own.
            let n = inner.registry.len();
            inner.registry.insert(format!("{repo}:old-{n}"), old);
        }
        inner.registry.insert(reference.to_string(), id.clone());
        id
    }

    /// Every later pull must present this user name and password.
    pub fn require_login(&self, username: &str, password: &str) {
        self.lock().registry_login = Some((username.to_string(), password.to_string()));
    }

    /// Each pull so far: the reference and the user name it presented.
    pub fn pulls(&self) -> Vec<(String, Option<String>)> {
        self.lock().pulls.clone()
    }

    /// `op` fails for every container whose name contains `name`.
    pub fn fail(&self, op: FakeOp, name: &str, message: &str) {
        self.lock().faults.push(Fault::Fails {
            op,
            name: name.to_string(),
            message: message.to_string(),
            times: None,
        });
    }

    /// `op` fails once for a container whose name contains `name`, then works.
    pub fn fail_once(&self, op: FakeOp, name: &str, message: &str) {
        self.lock().faults.push(Fault::Fails {
            op,
            name: name.to_string(),
            message: message.to_string(),
            times: Some(1),
        });
    }

    /// Containers whose name contains `name` exit with `code` right after they start.
    pub fn exit_at_start(&self, name: &str, code: i64) {
        self.lock().faults.push(Fault::ExitsAtStart {
            name: name.to_string(),
            code,
        });
    }

    /// Containers whose name contains `name` are killed by a stop (exit code 137).
    pub fn ignore_sigterm(&self, name: &str) {
        self.lock().faults.push(Fault::IgnoresSigterm {
            name: name.to_string(),
        });
    }

    /// The health command of containers whose name contains `name` fails with `output`.
    pub fn unhealthy(&self, name: &str, output: &str) {
        self.lock().faults.push(Fault::Unhealthy {
            name: name.to_string(),
            output: output.to_string(),
        });
    }

    /// A command exec'ed in containers whose name contains `name`, and whose argv joined by
    /// spaces contains `cmd`, exits with `code` printing `output` (by default every exec
    /// exits 0 without output). The first matching script wins.
    pub fn script_exec(&self, name: &str, cmd: &str, code: i64, output: &[&str]) {
        self.lock().faults.push(Fault::Exec {
            name: name.to_string(),
            cmd: cmd.to_string(),
            code,
            output: output.iter().map(|l| l.to_string()).collect(),
        });
    }

    /// The commands exec'ed so far, as `NAME: ARGV...`, in order.
    pub fn execs(&self) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| c.strip_prefix("exec "))
            .map(str::to_string)
            .collect()
    }

    /// `path` does not exist on the host (bind-mount pre-flight).
    pub fn remove_host_path(&self, path: &str) {
        self.lock().missing_paths.insert(path.to_string());
    }

    /// Names of the networks, sorted.
    pub fn networks(&self) -> Vec<String> {
        self.lock().networks.keys().cloned().collect()
    }

    /// Names of the volumes, sorted.
    pub fn volumes(&self) -> Vec<String> {
        self.lock().volumes.keys().cloned().collect()
    }

    /// Every call fails as an unreachable engine would.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    /// Where the search for the next host port fixed at create starts (Docker's ephemeral
    /// range begins at 32768).
    pub fn set_next_port(&self, port: u16) {
        self.lock().next_port = port;
    }

    /// From now on, containers are created without a fixed host port and the engine chooses
    /// one again at every start, as for containers made by a gantry before host ports were
    /// fixed at create (the executor must still follow a port that moved).
    pub fn choose_ports_at_start(&self) {
        self.lock().ports_chosen_at_start = true;
    }

    /// Output lines `logs_tail` gives for a container (by name).
    pub fn set_logs(&self, name: &str, lines: &[&str]) {
        self.lock().logs.insert(
            name.to_string(),
            lines.iter().map(|l| l.to_string()).collect(),
        );
    }

    /// Every engine call so far, in words (`create NAME`, `start NAME`, `stop NAME`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Every container, sorted by name.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        let mut all: Vec<ContainerInfo> = self
            .lock()
            .containers
            .values()
            .map(|c| c.info.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The container named `name`, if there is one.
    pub fn by_name(&self, name: &str) -> Option<ContainerInfo> {
        self.lock()
            .containers
            .values()
            .find(|c| c.info.name == name)
            .map(|c| c.info.clone())
    }

    /// The spec a container was created with (environment, resources, ...).
    pub fn spec_of(&self, name: &str) -> Option<ContainerSpec> {
        self.lock()
            .containers
            .values()
            .find(|c| c.info.name == name)
            .map(|c| c.spec.clone())
    }

    /// Names of the running containers, sorted.
    pub fn running(&self) -> Vec<String> {
        self.containers()
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.name)
            .collect()
    }

    /// Stops a container behind gantry's back for good (a crash the engine does not undo):
    /// exit code `code`, whatever its restart policy.
    pub fn crash(&self, name: &str, code: i64) {
        let mut inner = self.lock();
        if let Some(c) = inner.containers.values_mut().find(|c| c.info.name == name) {
            c.info.state = ContainerState::Exited(code);
            c.info.host_port = None;
            c.info.health = None;
        }
    }

    /// The process of a running container dies with `code` (`kill -9` of its PID, not a
    /// `docker stop`): the engine restarts it, on the same host port, when its restart policy
    /// says so (`always`, `unless-stopped`, `on-failure` for a non-zero code within its
    /// count); otherwise it stays exited.
    pub fn kill_process(&self, name: &str, code: i64) {
        let mut inner = self.lock();
        let Some(c) = inner.containers.values_mut().find(|c| c.info.name == name) else {
            return;
        };
        if c.info.state != ContainerState::Running {
            return;
        }
        let restarts = match c.spec.options.restart {
            Restart::No => false,
            Restart::Always | Restart::UnlessStopped => true,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| c.restarts < m),
        };
        if restarts {
            c.restarts += 1;
        } else {
            c.info.state = ContainerState::Exited(code);
            c.info.host_port = None;
            c.info.health = None;
        }
    }

    /// The engine restarts (a reboot, a `systemctl restart docker`): every container stops;
    /// those with `always` (even if a stop call had stopped them) and the running ones with
    /// `unless-stopped` start again on their host ports; `on-failure` and `no` stay exited.
    pub fn restart_engine(&self) {
        let mut inner = self.lock();
        for c in inner.containers.values_mut() {
            let was_running = c.info.state == ContainerState::Running;
            // Docker: `always` even after a stop call; `unless-stopped` what ran.
            let back = match c.spec.options.restart {
                Restart::Always => true,
                Restart::UnlessStopped => was_running,
                Restart::No | Restart::OnFailure(_) => false,
            } && c.info.state != ContainerState::Created;
            if back {
                c.info.state = ContainerState::Running;
                c.info.host_port = c.host_port;
            } else if was_running {
                c.info.state = ContainerState::Exited(0);
                c.info.host_port = None;
                c.info.health = None;
            }
        }
    }

    /// The image `docker ps` shows for a container: the reference it was created with when
    /// that named its image, else the image ID.
    pub fn shown_image(&self, name: &str) -> Option<String> {
        self.lock()
            .containers
            .values()
            .find(|c| c.info.name == name)
            .map(|c| c.shown_image.clone())
    }

    /// The restart policy a container has now (`set_restart` changes it).
    pub fn restart_of(&self, name: &str) -> Option<Restart> {
        self.lock()
            .containers
            .values()
            .find(|c| c.info.name == name)
            .map(|c| c.spec.options.restart)
    }
}

/// A stable, distinct image ID per reference.
pub fn fake_image_id(reference: &str) -> String {
    format!(
        "sha256:{}",
        crate::drivers::fs::sha256_hex(reference.as_bytes())
    )
}

impl Inner {
    /// A host port no container holds, searched from `next_port` within Docker's ephemeral
    /// range (32768-60999).
    fn free_port(&mut self) -> u16 {
        let taken: std::collections::BTreeSet<u16> = self
            .containers
            .values()
            .flat_map(|c| c.host_ports())
            .collect();
        let mut p = self.next_port;
        while taken.contains(&p) {
            p = if p >= 60999 { 32768 } else { p + 1 };
        }
        self.next_port = if p >= 60999 { 32768 } else { p + 1 };
        p
    }

    fn check(&mut self, call: String) -> Result<(), RuntimeError> {
        if self.unreachable {
            return Err(RuntimeError::Unreachable {
                endpoint: "fake".into(),
                message: "the fake engine is set unreachable".into(),
            });
        }
        self.calls.push(call);
        Ok(())
    }

    /// The scripted failure of `op` on container `name`, used up if it is counted.
    fn fault(&mut self, op: FakeOp, name: &str) -> Option<String> {
        let i = self.faults.iter().position(|f| {
            matches!(f, Fault::Fails { op: o, name: n, times, .. }
                if *o == op && name.contains(n.as_str()) && *times != Some(0))
        })?;
        let Fault::Fails { message, times, .. } = &mut self.faults[i] else {
            return None;
        };
        if let Some(t) = times {
            *t -= 1;
        }
        Some(message.clone())
    }

    fn exits_at_start(&self, name: &str) -> Option<i64> {
        self.faults.iter().find_map(|f| match f {
            Fault::ExitsAtStart { name: n, code } if name.contains(n.as_str()) => Some(*code),
            _ => None,
        })
    }

    fn unhealthy(&self, name: &str) -> Option<String> {
        self.faults.iter().find_map(|f| match f {
            Fault::Unhealthy { name: n, output } if name.contains(n.as_str()) => {
                Some(output.clone())
            }
            _ => None,
        })
    }

    fn ignores_sigterm(&self, name: &str) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::IgnoresSigterm { name: n } if name.contains(n.as_str())))
    }

    /// By ID or name, as the engine accepts either.
    fn find(&self, id: &str) -> Option<String> {
        if self.containers.contains_key(id) {
            return Some(id.to_string());
        }
        self.containers
            .iter()
            .find(|(_, c)| c.info.name == id)
            .map(|(k, _)| k.clone())
    }

    fn name_of(&self, id: &str) -> String {
        self.find(id)
            .and_then(|k| self.containers.get(&k))
            .map_or(id.to_string(), |c| c.info.name.clone())
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.lock().check("ping".into())
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("image_id {image}"))?;
        Ok(inner
            .images
            .get(image)
            .cloned()
            .or_else(|| inner.images.values().find(|id| *id == image).cloned()))
    }

    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<Pulled, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("pull {image}"))?;
        inner
            .pulls
            .push((image.to_string(), auth.map(|a| a.username.clone())));
        if let Some((user, password)) = &inner.registry_login
            && auth.is_none_or(|a| a.username != *user || a.password != *password)
        {
            return Err(RuntimeError::ImageUnavailable {
                image: image.to_string(),
                message: "unauthorized: authentication required".into(),
            });
        }
        let (repo, tag, digest) = crate::drivers::credentials::split_reference(image);
        let unavailable = |message: &str| RuntimeError::ImageUnavailable {
            image: image.to_string(),
            message: message.into(),
        };
        // By digest: the image whose fake digest it is (the tag may have moved since).
        let (reference, id) = match digest {
            Some(d) => {
                let found = inner
                    .registry
                    .iter()
                    .find(|(r, id)| {
                        crate::drivers::credentials::split_reference(r).0 == repo
                            && fake_digest(id) == d
                    })
                    .map(|(_, id)| id.clone())
                    .ok_or_else(|| {
                        unavailable("manifest unknown: no such digest in the fake registry")
                    })?;
                let tagged = match tag {
                    Some(t) => format!("{repo}:{t}"),
                    None => repo.to_string(),
                };
                (tagged, found)
            }
            None => {
                let id = inner
                    .registry
                    .get(image)
                    .cloned()
                    .ok_or_else(|| unavailable("not in the fake registry"))?;
                (image.to_string(), id)
            }
        };
        inner.images.insert(reference, id.clone());
        Ok(Pulled {
            repo_digest: Some(format!("{repo}@{}", fake_digest(&id))),
            id,
        })
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("create {}", spec.name))?;
        let op = format!("create container {}", spec.name);
        if let Some(message) = inner.fault(FakeOp::Create, &spec.name) {
            return Err(engine(&op, message));
        }
        if inner.containers.values().any(|c| c.info.name == spec.name) {
            return Err(engine(
                &op,
                format!(
                    "Conflict. The container name \"/{}\" is already in use",
                    spec.name
                ),
            ));
        }
        let image_id = inner
            .images
            .get(&spec.image)
            .cloned()
            .or_else(|| inner.images.values().find(|id| **id == spec.image).cloned())
            .ok_or_else(|| RuntimeError::ImageUnavailable {
                image: spec.image.clone(),
                message: "No such image (gantry pulls during pre-flight only)".into(),
            })?;
        for network in &spec.options.networks {
            if !inner.networks.contains_key(&network.name) {
                return Err(engine(&op, format!("network {} not found", network.name)));
            }
        }
        for m in &spec.options.mounts {
            match &m.source {
                MountSource::Bind(path) if inner.missing_paths.contains(path) => {
                    return Err(engine(
                        &op,
                        format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {path}"
                        ),
                    ));
                }
                MountSource::Bind(_) => {}
                // The engine creates a named volume a container needs (without labels).
                MountSource::Volume(v) => {
                    inner.volumes.entry(v.clone()).or_default();
                }
            }
        }
        let isolated = matches!(
            spec.options.network_mode,
            NetworkMode::Host | NetworkMode::None
        );
        let host_port = match (spec.port, spec.host_port) {
            (Some(_), None) if inner.ports_chosen_at_start => None,
            (Some(_), None) if !isolated => Some(inner.free_port()),
            (Some(_), fixed) if !isolated => fixed,
            _ => None,
        };
        let shown_image = match &spec.image_ref {
            Some(r) if inner.images.get(r) == Some(&image_id) => r.clone(),
            _ => image_id.clone(),
        };
        let mut labels = spec.labels.clone();
        if let Some(p) = host_port {
            labels.insert(crate::ports::labels::HOST_PORT.to_string(), p.to_string());
        }
        inner.next_id += 1;
        let id = format!("{:064x}", inner.next_id);
        inner.containers.insert(
            id.clone(),
            Container {
                info: ContainerInfo {
                    id: id.clone(),
                    name: spec.name.clone(),
                    labels,
                    state: ContainerState::Created,
                    host_port: None,
                    image_id,
                    health: None,
                    settings: None,
                },
                spec: spec.clone(),
                host_port,
                shown_image,
                restarts: 0,
            },
        );
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        let name = inner.name_of(id);
        inner.check(format!("start {name}"))?;
        let op = format!("start container {id}");
        let key = inner
            .find(id)
            .ok_or_else(|| engine(&op, format!("No such container: {id}")))?;
        if let Some(message) = inner.fault(FakeOp::Start, &name) {
            return Err(engine(&op, message));
        }
        if inner.containers[&key].info.state == ContainerState::Running {
            return Ok(());
        }
        let spec = inner.containers[&key].spec.clone();
        if inner.ports_chosen_at_start
            && spec.port.is_some()
            && spec.host_port.is_none()
            && spec.options.network_mode == NetworkMode::Project
        {
            let p = inner.free_port();
            inner
                .containers
                .get_mut(&key)
                .expect("found above")
                .host_port = Some(p);
        }
        let host_port = inner.containers[&key].host_port;
        let network_mode = spec.options.network_mode;
        for p in inner.containers[&key].host_ports() {
            let taken = inner.containers.values().any(|c| {
                c.info.id != key
                    && c.info.state == ContainerState::Running
                    && c.host_ports().contains(&p)
            });
            if taken {
                return Err(RuntimeError::PortInUse {
                    port: p,
                    message: format!(
                        "Bind for {}:{p} failed: port is already allocated",
                        spec.host_ip
                    ),
                });
            }
        }
        // On the host's network stack the container port is the host's.
        let host_port = match network_mode {
            NetworkMode::Host => spec.port,
            _ => host_port,
        };
        let exits = inner.exits_at_start(&name);
        // A health command passes at once, unless scripted to fail.
        let health = spec
            .options
            .healthcheck
            .as_ref()
            .map(|_| match inner.unhealthy(&name) {
                Some(output) => Health {
                    status: HealthStatus::Unhealthy,
                    last_output: Some(output),
                },
                None => Health {
                    status: HealthStatus::Healthy,
                    last_output: None,
                },
            });
        let c = inner.containers.get_mut(&key).expect("found above");
        match exits {
            Some(code) => {
                c.info.state = ContainerState::Exited(code);
                c.info.host_port = None;
                c.info.health = None;
            }
            None => {
                c.info.state = ContainerState::Running;
                c.info.host_port = host_port;
                c.info.health = health;
            }
        }
        Ok(())
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        let name = inner.name_of(id);
        inner.check(format!("stop {name}"))?;
        if let Some(message) = inner.fault(FakeOp::Stop, &name) {
            return Err(engine(&format!("stop container {id}"), message));
        }
        let killed = inner.ignores_sigterm(&name);
        let Some(key) = inner.find(id) else {
            return Ok(());
        };
        let c = inner.containers.get_mut(&key).expect("found above");
        if c.info.state == ContainerState::Running {
            c.info.state = ContainerState::Exited(if killed { 137 } else { 0 });
        }
        c.info.host_port = None;
        c.info.health = None;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        let name = inner.name_of(id);
        inner.check(format!("remove {name}"))?;
        if let Some(message) = inner.fault(FakeOp::Remove, &name) {
            return Err(engine(&format!("remove container {id}"), message));
        }
        if let Some(key) = inner.find(id) {
            inner.containers.remove(&key);
        }
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        let mut inner = self.lock();
        let name = inner.name_of(id);
        inner.check(format!("inspect {name}"))?;
        Ok(inner.find(id).map(|key| {
            let c = &inner.containers[&key];
            ContainerInfo {
                settings: Some(c.settings()),
                ..c.info.clone()
            }
        }))
    }

    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut inner = self.lock();
        inner.check("list".into())?;
        let mut out: Vec<ContainerInfo> = inner
            .containers
            .values()
            .filter(|c| {
                labels
                    .iter()
                    .all(|(k, v)| c.info.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|c| c.info.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove_image(&self, id: &str) -> Result<bool, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("remove_image {id}"))?;
        let in_use = inner.containers.values().any(|c| c.info.image_id == id);
        let known = inner.images.values().any(|i| i == id);
        if in_use || !known {
            return Ok(false);
        }
        inner.images.retain(|_, i| i != id);
        Ok(true)
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, RuntimeError> {
        let mut inner = self.lock();
        let name = inner.name_of(id);
        inner.check(format!("logs {name}"))?;
        let all = inner.logs.get(&name).cloned().unwrap_or_default();
        let skip = all.len().saturating_sub(lines);
        Ok(all[skip..].to_vec())
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        let mut inner = self.lock();
        let name = inner.name_of(id);
        let argv = cmd.join(" ");
        inner.check(format!("exec {name}: {argv}"))?;
        let Some(key) = inner.find(id) else {
            return Err(engine(
                &format!("exec `{argv}` in {id}"),
                format!("No such container: {id}"),
            ));
        };
        if inner.containers[&key].info.state != ContainerState::Running {
            return Err(engine(
                &format!("exec `{argv}` in {id}"),
                format!("Container {id} is not running"),
            ));
        }
        let scripted = inner.faults.iter().find_map(|f| match f {
            Fault::Exec {
                name: n,
                cmd: c,
                code,
                output,
            } if name.contains(n.as_str()) && argv.contains(c.as_str()) => {
                Some((*code, output.clone()))
            }
            _ => None,
        });
        let (exit_code, output) = scripted.unwrap_or((0, Vec::new()));
        Ok(ExecOutput { exit_code, output })
    }

    async fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("ensure_network {name}"))?;
        inner
            .networks
            .entry(name.to_string())
            .or_insert_with(|| labels.clone());
        Ok(())
    }

    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("network_exists {name}"))?;
        Ok(inner.networks.contains_key(name))
    }

    async fn remove_network(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<bool, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("remove_network {name}"))?;
        let ours = inner.networks.get(name).is_some_and(|l| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        });
        let in_use = inner
            .containers
            .values()
            .any(|c| c.spec.options.networks.iter().any(|n| n.name == name));
        if !ours || in_use {
            return Ok(false);
        }
        Ok(inner.networks.remove(name).is_some())
    }

    async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("ensure_volume {name}"))?;
        inner
            .volumes
            .entry(name.to_string())
            .or_insert_with(|| labels.clone());
        Ok(())
    }

    async fn list_volumes(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, RuntimeError> {
        let mut inner = self.lock();
        inner.check("list_volumes".into())?;
        Ok(inner
            .volumes
            .iter()
            .filter(|(_, l)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<bool, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("remove_volume {name}"))?;
        let in_use = inner.containers.values().any(|c| {
            c.spec
                .options
                .mounts
                .iter()
                .any(|m| m.volume() == Some(name))
        });
        if in_use {
            return Ok(false);
        }
        Ok(inner.volumes.remove(name).is_some())
    }

    async fn set_restart(&self, id: &str, restart: Restart) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        let name = inner.name_of(id);
        inner.check(format!("set_restart {name} {restart}"))?;
        let key = inner.find(id).ok_or_else(|| {
            engine(
                &format!("update container {id}"),
                format!("No such container: {id}"),
            )
        })?;
        if let Some(c) = inner.containers.get_mut(&key) {
            c.spec.options.restart = restart;
        }
        Ok(())
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<i64>, RuntimeError> {
        {
            let mut inner = self.lock();
            let name = inner.name_of(id);
            inner.check(format!("wait {name}"))?;
            let key = inner.find(id).ok_or_else(|| {
                engine(
                    &format!("wait for container {id}"),
                    format!("No such container: {id}"),
                )
            })?;
            match inner.containers[&key].info.state {
                ContainerState::Exited(code) => return Ok(Some(code)),
                ContainerState::Running => {}
                _ => return Ok(Some(0)),
            }
        }
        // Runs until stopped, crashed or killed by the test: here, until the timeout.
        tokio::time::sleep(timeout).await;
        let inner = self.lock();
        Ok(
            match inner.find(id).map(|k| inner.containers[&k].info.state) {
                Some(ContainerState::Exited(code)) => Some(code),
                _ => None,
            },
        )
    }

    async fn missing_paths(
        &self,
        _image: &str,
        paths: &[String],
    ) -> Result<Vec<String>, RuntimeError> {
        let mut inner = self.lock();
        inner.check("missing_paths".into())?;
        Ok(paths
            .iter()
            .filter(|p| inner.missing_paths.contains(*p))
            .cloned()
            .collect())
    }
}
