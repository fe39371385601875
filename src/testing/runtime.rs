//! An in-memory container engine: containers with states, names, labels, images and ports,
//! behaving as Docker does where the executor depends on it (an engine-chosen host port is
//! chosen again at every start and is gone while the container is stopped; stop and remove
//! of what is gone succeed; an image in use is not removed), plus scripted faults.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::ports::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, Health, HealthStatus, Restart,
    RuntimeError,
};

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
}

#[derive(Debug, Clone)]
struct Container {
    info: ContainerInfo,
    spec: ContainerSpec,
}

#[derive(Debug, Default)]
struct Inner {
    /// Image reference (or ID) -> image ID: what is on the host.
    images: BTreeMap<String, String>,
    /// Image reference -> image ID: what a pull would fetch.
    registry: BTreeMap<String, String>,
    containers: BTreeMap<String, Container>,
    faults: Vec<Fault>,
    next_id: u64,
    /// The next engine-chosen host port.
    next_port: u16,
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

    /// The next engine-chosen port (Docker starts at 32768).
    pub fn set_next_port(&self, port: u16) {
        self.lock().next_port = port;
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

    /// Stops a container behind gantry's back (a crash): exit code `code`.
    pub fn crash(&self, name: &str, code: i64) {
        let mut inner = self.lock();
        if let Some(c) = inner.containers.values_mut().find(|c| c.info.name == name) {
            c.info.state = ContainerState::Exited(code);
            c.info.host_port = None;
        }
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

    async fn pull(&self, image: &str) -> Result<String, RuntimeError> {
        let mut inner = self.lock();
        inner.check(format!("pull {image}"))?;
        let id =
            inner
                .registry
                .get(image)
                .cloned()
                .ok_or_else(|| RuntimeError::ImageUnavailable {
                    image: image.to_string(),
                    message: "not in the fake registry".into(),
                })?;
        inner.images.insert(image.to_string(), id.clone());
        Ok(id)
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
        inner.next_id += 1;
        let id = format!("{:064x}", inner.next_id);
        inner.containers.insert(
            id.clone(),
            Container {
                info: ContainerInfo {
                    id: id.clone(),
                    name: spec.name.clone(),
                    labels: spec.labels.clone(),
                    state: ContainerState::Created,
                    host_port: None,
                    image_id,
                    health: None,
                },
                spec: spec.clone(),
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
        let host_port = match (spec.port, spec.host_port) {
            (None, _) => None,
            (Some(_), Some(p)) => {
                let taken = inner.containers.values().any(|c| {
                    c.info.id != key
                        && c.info.state == ContainerState::Running
                        && c.info.host_port == Some(p)
                });
                if taken {
                    return Err(engine(
                        &op,
                        format!(
                            "Bind for {}:{p} failed: port is already allocated",
                            spec.host_ip
                        ),
                    ));
                }
                Some(p)
            }
            // The engine chooses a port again at every start.
            (Some(_), None) => {
                let p = inner.next_port;
                inner.next_port = inner.next_port.wrapping_add(1).max(32768);
                Some(p)
            }
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
        Ok(inner
            .find(id)
            .map(|key| inner.containers[&key].info.clone()))
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
