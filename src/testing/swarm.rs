//! An in-memory Swarm manager: services with versions, a previous spec, an update status and
//! tasks, reported in Swarm's own types so that the executor reads them as it reads a real
//! manager's. An update converges at once unless a script says Swarm rolls it back, pauses
//! it, or never gets there.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bollard::models::{
    ContainerStatus, EndpointPortConfig, ObjectVersion, Service, ServiceEndpoint, ServiceSpec,
    ServiceUpdateStatus, ServiceUpdateStatusStateEnum as UpdateState, Task, TaskState, TaskStatus,
};

use crate::ports::{BoxFuture, SwarmApi};

/// What Swarm makes of the next update of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeUpdate {
    /// Every replica runs the new spec.
    Converges,
    /// The new tasks fail and Swarm rolls back to the previous spec (`failure_action =
    /// rollback`).
    RollsBack,
    /// The new tasks fail and Swarm pauses the update (`failure_action = pause`).
    Pauses,
    /// The update stays `updating`, no new task ever runs.
    Hangs,
}

#[derive(Debug, Clone)]
struct FakeService {
    id: String,
    version: u64,
    spec: ServiceSpec,
    previous: Option<ServiceSpec>,
    status: Option<ServiceUpdateStatus>,
    tasks: Vec<Task>,
    published: Option<(i64, i64)>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Registry host -> the user name of the credentials given for it.
    registry_auths: BTreeMap<String, String>,
    services: BTreeMap<String, FakeService>,
    scripts: BTreeMap<String, FakeUpdate>,
    digests: BTreeMap<String, String>,
    health: BTreeMap<String, String>,
    /// Networks: name -> (scope, labels).
    networks: BTreeMap<String, (String, BTreeMap<String, String>)>,
    not_manager: bool,
    next: u64,
    calls: Vec<String>,
}

/// Cloning shares the manager.
#[derive(Debug, Clone, Default)]
pub struct FakeSwarm {
    inner: Arc<Mutex<Inner>>,
}

impl FakeSwarm {
    /// A manager with the engine's own local networks (`bridge`, `host`).
    pub fn new() -> Self {
        let s = Self::default();
        for n in ["bridge", "host"] {
            s.add_network(n, "local");
        }
        s
    }

    /// Registry host -> the user name of the credentials pre-flight gave the manager.
    pub fn registry_auths(&self) -> BTreeMap<String, String> {
        self.lock().registry_auths.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What Swarm makes of the updates of service `name` from now on.
    pub fn on_update(&self, name: &str, what: FakeUpdate) {
        self.lock().scripts.insert(name.to_string(), what);
    }

    /// The registry digest `pinned_image` gives for `image_id`.
    pub fn set_digest(&self, image_id: &str, digest: &str) {
        self.lock()
            .digests
            .insert(image_id.to_string(), digest.to_string());
    }

    /// The engine is not a Swarm manager.
    pub fn set_not_manager(&self) {
        self.lock().not_manager = true;
    }

    /// Every call so far (`create NAME`, `update NAME v3`, `rollback NAME`, `remove NAME`).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// A network of the manager (`scope`: `swarm` or `local`).
    pub fn add_network(&self, name: &str, scope: &str) {
        self.lock()
            .networks
            .insert(name.to_string(), (scope.to_string(), BTreeMap::new()));
    }

    /// The labels of network `name`, when it exists.
    pub fn network_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.lock().networks.get(name).map(|(_, l)| l.clone())
    }

    /// Names of the services, sorted.
    pub fn services(&self) -> Vec<String> {
        self.lock().services.keys().cloned().collect()
    }

    /// The spec service `name` carries now.
    pub fn spec_of(&self, name: &str) -> Option<ServiceSpec> {
        self.lock().services.get(name).map(|s| s.spec.clone())
    }
}

fn replicas_of(spec: &ServiceSpec) -> i64 {
    spec.mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(1)
}

impl Inner {
    fn stamp(&mut self) -> String {
        self.next += 1;
        format!("2026-01-01T00:00:{:02}.{:06}Z", self.next % 60, self.next)
    }

    fn find(&self, name_or_id: &str) -> Option<String> {
        if self.services.contains_key(name_or_id) {
            return Some(name_or_id.to_string());
        }
        self.services
            .iter()
            .find(|(_, s)| s.id == name_or_id)
            .map(|(n, _)| n.clone())
    }

    /// New tasks of `spec`, one per slot, in `state` (desired: running unless failed).
    fn tasks(&mut self, service_id: &str, spec: &ServiceSpec, state: TaskState) -> Vec<Task> {
        let failed = state == TaskState::FAILED;
        (1..=replicas_of(spec))
            .map(|slot| {
                let stamp = self.stamp();
                self.next += 1;
                let container = format!("{:064x}", self.next);
                Task {
                    id: Some(format!("task{:020}", self.next)),
                    service_id: Some(service_id.to_string()),
                    slot: Some(slot),
                    updated_at: Some(stamp),
                    desired_state: Some(if failed {
                        TaskState::SHUTDOWN
                    } else {
                        TaskState::RUNNING
                    }),
                    status: Some(TaskStatus {
                        state: Some(state),
                        message: Some(if failed { "started" } else { "running" }.into()),
                        err: failed.then(|| "task: non-zero exit (1)".to_string()),
                        container_status: Some(ContainerStatus {
                            container_id: Some(container),
                            pid: None,
                            exit_code: failed.then_some(1),
                        }),
                        ..Default::default()
                    }),
                    spec: spec.task_template.clone(),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn status(&mut self, state: UpdateState, message: &str) -> Option<ServiceUpdateStatus> {
        Some(ServiceUpdateStatus {
            state: Some(state),
            started_at: Some(self.stamp()),
            completed_at: None,
            message: Some(message.to_string()),
        })
    }
}

fn shut_down(tasks: &mut [Task]) {
    for t in tasks {
        if t.desired_state == Some(TaskState::RUNNING) {
            t.desired_state = Some(TaskState::SHUTDOWN);
            if let Some(s) = t.status.as_mut() {
                s.state = Some(TaskState::SHUTDOWN);
            }
        }
    }
}

fn published(spec: &ServiceSpec, next: i64) -> Option<(i64, i64)> {
    let port = spec
        .endpoint_spec
        .as_ref()?
        .ports
        .as_ref()?
        .first()?
        .clone();
    Some((
        port.target_port?,
        port.published_port.unwrap_or(30000 + next),
    ))
}

impl FakeService {
    fn view(&self) -> Service {
        Service {
            id: Some(self.id.clone()),
            version: Some(ObjectVersion {
                index: Some(self.version),
            }),
            spec: Some(self.spec.clone()),
            endpoint: self.published.map(|(target, published)| ServiceEndpoint {
                ports: Some(vec![EndpointPortConfig {
                    target_port: Some(target),
                    published_port: Some(published),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            update_status: self.status.clone(),
            ..Default::default()
        }
    }
}

impl SwarmApi for FakeSwarm {
    fn use_registry_auth(&self, registry: &str, auth: &crate::ports::RegistryAuth) {
        self.lock()
            .registry_auths
            .insert(registry.to_string(), auth.username.clone());
    }

    fn check_manager(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.lock().not_manager {
                return Err("its engine is not a Swarm manager (swarm: inactive); run `docker swarm init` there, or name a manager in `hosts`".into());
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Service>, String>> {
        Box::pin(async move {
            let inner = self.lock();
            Ok(inner
                .find(name)
                .and_then(|n| inner.services.get(&n))
                .map(FakeService::view))
        })
    }

    fn create(&self, spec: ServiceSpec) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let name = spec.name.clone().unwrap_or_default();
            inner.calls.push(format!("create {name}"));
            if inner.services.contains_key(&name) {
                return Err(format!(
                    "create Swarm service {name}: name conflicts with an existing object"
                ));
            }
            inner.next += 1;
            let id = format!("svc{:022}", inner.next);
            let hangs = inner.scripts.get(&name) == Some(&FakeUpdate::Hangs);
            let tasks = if hangs {
                Vec::new()
            } else {
                inner.tasks(&id, &spec, TaskState::RUNNING)
            };
            let port = published(&spec, inner.next as i64);
            inner.services.insert(
                name,
                FakeService {
                    id: id.clone(),
                    version: 1,
                    spec,
                    previous: None,
                    status: None,
                    tasks,
                    published: port,
                },
            );
            Ok(id)
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        spec: ServiceSpec,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let name = inner
                .find(id)
                .ok_or_else(|| format!("update Swarm service {id}: service {id} not found"))?;
            inner.calls.push(format!("update {name} v{version}"));
            let current = inner.services[&name].clone();
            if current.version != version {
                return Err(format!(
                    "update Swarm service {id}: update out of sequence (version {version}, the service is at {})",
                    current.version
                ));
            }
            let what = inner
                .scripts
                .get(&name)
                .cloned()
                .unwrap_or(FakeUpdate::Converges);
            let mut s = current;
            s.version += 1;
            s.previous = Some(s.spec.clone());
            s.spec = spec;
            match what {
                FakeUpdate::Converges => {
                    shut_down(&mut s.tasks);
                    let new = inner.tasks(&s.id, &s.spec, TaskState::RUNNING);
                    s.tasks.extend(new);
                    s.status = inner.status(UpdateState::COMPLETED, "update completed");
                }
                FakeUpdate::RollsBack => {
                    let failed = inner.tasks(&s.id, &s.spec, TaskState::FAILED);
                    s.tasks.extend(failed);
                    // Swarm puts the previous spec back, and keeps the failed one as previous.
                    let previous = s.previous.take().unwrap_or_default();
                    s.previous = Some(std::mem::replace(&mut s.spec, previous));
                    s.version += 1;
                    s.status = inner.status(UpdateState::ROLLBACK_COMPLETED, "rollback completed");
                }
                FakeUpdate::Pauses => {
                    let failed = inner.tasks(&s.id, &s.spec, TaskState::FAILED);
                    s.tasks.extend(failed);
                    s.status = inner.status(
                        UpdateState::PAUSED,
                        "update paused due to failure or early termination of task",
                    );
                }
                FakeUpdate::Hangs => {
                    s.status = inner.status(UpdateState::UPDATING, "update in progress");
                }
            }
            inner.services.insert(name, s);
            Ok(())
        })
    }

    fn rollback<'a>(&'a self, service: &'a Service) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut inner = self.lock();
            let id = service.id.clone().unwrap_or_default();
            let name = inner
                .find(&id)
                .ok_or_else(|| format!("update Swarm service {id}: service {id} not found"))?;
            inner.calls.push(format!("rollback {name}"));
            let mut s = inner.services[&name].clone();
            let version = service.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            if s.version != version {
                return Err(format!("update Swarm service {id}: update out of sequence"));
            }
            let Some(previous) = s.previous.take() else {
                return Err(format!(
                    "update Swarm service {id}: service {id} does not have a previous spec"
                ));
            };
            s.previous = Some(std::mem::replace(&mut s.spec, previous));
            s.version += 1;
            shut_down(&mut s.tasks);
            let back = inner.tasks(&s.id, &s.spec, TaskState::RUNNING);
            s.tasks.extend(back);
            s.status = inner.status(UpdateState::ROLLBACK_COMPLETED, "rollback completed");
            inner.services.insert(name, s);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.calls.push(format!("remove {name}"));
            if let Some(n) = inner.find(name) {
                inner.services.remove(&n);
            }
            Ok(())
        })
    }

    fn tasks<'a>(&'a self, service_id: &'a str) -> BoxFuture<'a, Result<Vec<Task>, String>> {
        Box::pin(async move {
            let inner = self.lock();
            Ok(inner
                .find(service_id)
                .and_then(|n| inner.services.get(&n))
                .map(|s| s.tasks.clone())
                .unwrap_or_default())
        })
    }

    fn pinned_image<'a>(&'a self, _reference: &'a str, image_id: &'a str) -> BoxFuture<'a, String> {
        Box::pin(async move {
            self.lock()
                .digests
                .get(image_id)
                .cloned()
                .unwrap_or_else(|| image_id.to_string())
        })
    }

    fn health_output<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.lock().health.get(container).cloned() })
    }

    fn network_scope<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { Ok(self.lock().networks.get(name).map(|(s, _)| s.clone())) })
    }

    fn ensure_overlay<'a>(
        &'a self,
        name: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let mut inner = self.lock();
            match inner.networks.get(name) {
                Some((scope, _)) if scope == "swarm" => Ok(false),
                Some((scope, _)) => Err(format!(
                    "network {name} exists with scope `{scope}`: Swarm services join swarm-scoped (overlay) networks only"
                )),
                None => {
                    inner.calls.push(format!("create network {name}"));
                    inner
                        .networks
                        .insert(name.to_string(), ("swarm".to_string(), labels.clone()));
                    Ok(true)
                }
            }
        })
    }
}

/// Labels of a service's spec (for assertions).
pub fn spec_labels(spec: &ServiceSpec) -> HashMap<String, String> {
    spec.labels.clone().unwrap_or_default()
}
