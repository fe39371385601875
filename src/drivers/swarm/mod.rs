//! Docker Swarm through bollard's service API: the real adapter behind the `swarm_*` steps.
//!
//! Two halves. The pure half maps a gantry service to a Swarm `ServiceSpec` ([`service_spec`],
//! in `spec`) and reads what the manager reports into a [`Progress`] ([`progress()`], in
//! `progress`); both are unit tested in their files. The I/O half, here, is [`SwarmManager`],
//! the real [`SwarmApi`]: a thin wrapper over the engine calls, exercised against a real
//! swarm-mode engine by `tests/swarm.rs` and the Swarm conformance suite.
//!
//! How convergence is told apart from "not started yet": every task template carries the
//! label [`TEMPLATE_LABEL`], a digest of the template itself. The service has converged
//! when exactly `replicas` tasks are meant to run, all run, and all carry the digest of the
//! spec gantry set; an update that Swarm paused or rolled back is read from `UpdateStatus`,
//! and only an `UpdateStatus` that started after gantry's call counts (a previous update's
//! status stays on the service).

mod progress;
mod spec;

pub use progress::{Progress, failed_tasks, progress, update_started, update_state};
pub use spec::{ServiceInput, TEMPLATE_LABEL, service_spec, template_of, volume_name};

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{Service, ServiceSpec, Task};
use bollard::query_parameters::{
    InspectContainerOptions, InspectServiceOptions, ListTasksOptions, UpdateServiceOptions,
};

use crate::ports::{BoxFuture, RegistryAuth, SwarmApi};

/// A service of a stack, as `gantry adopt --stack` matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackService {
    pub id: String,
    /// `<stack>_<service>`.
    pub name: String,
    /// As its spec names it (`repo:tag@sha256:...` when the stack pinned a digest).
    pub image: String,
    /// Published TCP ports: `(container port, published port)`.
    pub ports: Vec<(u16, u16)>,
    /// Replicated mode's replica count.
    pub replicas: Option<u64>,
}

impl StackService {
    fn of(svc: &Service) -> StackService {
        let spec = svc.spec.clone().unwrap_or_default();
        let image = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let ports = svc
            .endpoint
            .as_ref()
            .and_then(|e| e.ports.as_ref())
            .into_iter()
            .flatten()
            .filter(|p| p.protocol != Some(bollard::models::EndpointPortConfigProtocolEnum::UDP))
            .filter_map(|p| {
                Some((
                    u16::try_from(p.target_port?).ok()?,
                    u16::try_from(p.published_port?).ok()?,
                ))
            })
            .collect();
        let replicas = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .and_then(|r| u64::try_from(r).ok());
        StackService {
            id: svc.id.clone().unwrap_or_default(),
            name: spec.name.clone().unwrap_or_default(),
            image,
            ports,
            replicas,
        }
    }
}

/// The manager's engine, through bollard.
pub struct SwarmManager {
    docker: Docker,
    /// Credentials by registry host, sent with each create and update of a service whose
    /// image is there (`X-Registry-Auth`, as `docker service create --with-registry-auth`).
    credentials: std::sync::Mutex<BTreeMap<String, RegistryAuth>>,
}

impl SwarmManager {
    /// From a connected engine client (the host's, with its TLS settings).
    pub fn new(docker: Docker) -> Self {
        SwarmManager {
            docker,
            credentials: Default::default(),
        }
    }

    /// The credentials for the registry of the service's image, if any were given.
    fn credentials_for(&self, spec: &ServiceSpec) -> Option<bollard::auth::DockerCredentials> {
        let image = spec
            .task_template
            .as_ref()?
            .container_spec
            .as_ref()?
            .image
            .as_deref()?;
        let registry = crate::drivers::credentials::registry_host(image);
        let map = self.credentials.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&registry)
            .map(crate::drivers::docker::docker_credentials)
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

    /// The services of the stack `namespace` (`docker stack deploy`'s label
    /// `com.docker.stack.namespace`), for `gantry adopt --stack`.
    pub async fn stack_services(&self, namespace: &str) -> Result<Vec<StackService>, String> {
        let all = self
            .docker
            .list_services(None::<bollard::query_parameters::ListServicesOptions>)
            .await
            .map_err(|e| format!("list the Swarm services of stack {namespace}: {e}"))?;
        Ok(all
            .into_iter()
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|spec| spec.labels.as_ref())
                    .and_then(|l| l.get("com.docker.stack.namespace"))
                    .is_some_and(|n| n == namespace)
            })
            .map(|s| StackService::of(&s))
            .collect())
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
        let credentials = self.credentials_for(&spec);
        self.docker
            .create_service(spec, credentials)
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
        let credentials = self.credentials_for(&spec);
        self.docker
            .update_service(id, spec, options, credentials)
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

impl SwarmManager {
    pub async fn network_scope(&self, name: &str) -> Result<Option<String>, String> {
        match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            // The engine also matches an ID prefix: only the exact name counts.
            Ok(n) if n.name.as_deref() == Some(name) => Ok(Some(n.scope.unwrap_or_default())),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(format!("inspect network {name}: {e}")),
        }
    }

    pub async fn ensure_overlay(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, String> {
        match self.network_scope(name).await? {
            Some(scope) if scope == "swarm" => return Ok(false),
            Some(scope) => {
                return Err(format!(
                    "network {name} exists with scope `{scope}`: Swarm services join swarm-scoped (overlay) networks only; remove it (`docker network rm {name}`) and gantry creates the overlay network"
                ));
            }
            None => {}
        }
        let request = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".to_string()),
            // Containers (`docker run --network`, gantry's own) may join it too.
            attachable: Some(true),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(true),
            // Created meanwhile by another service of the run (409 Conflict): it is there.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(false),
            Err(e) => Err(format!("create overlay network {name}: {e}")),
        }
    }
}

/// The project's overlay network on the Swarm, `<project>_default` as `docker stack deploy`
/// names a stack's (the bridge network of the project's containers is `<project>`; a manager
/// may run both). Every Swarm service of the project joins it with its name as DNS alias.
pub fn network_name(project: &str) -> String {
    format!("{project}_default")
}

/// `Ok(())` when the network `name` exists on the manager and Swarm services can join it;
/// else what is wrong, naming the host, and what to do.
pub async fn check_network(manager: &dyn SwarmApi, host: &str, name: &str) -> Result<(), String> {
    match manager.network_scope(name).await? {
        Some(scope) if scope == "swarm" => Ok(()),
        Some(scope) => Err(format!(
            "network `{name}` on host `{host}` has scope `{scope}`: a Swarm service joins swarm-scoped networks only; create it with `docker network create --driver overlay --attachable {name}`"
        )),
        None => Err(format!(
            "host `{host}` has no network `{name}`; create it with `docker network create --driver overlay --attachable {name}`, or remove it from `networks`"
        )),
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

impl SwarmApi for SwarmManager {
    fn use_registry_auth(&self, registry: &str, auth: &RegistryAuth) {
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry.to_string(), auth.clone());
    }

    fn check_manager(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(SwarmManager::check_manager(self))
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Service>, String>> {
        Box::pin(SwarmManager::inspect(self, name))
    }

    fn create(&self, spec: ServiceSpec) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(SwarmManager::create(self, spec))
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        version: u64,
        spec: ServiceSpec,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(SwarmManager::update(self, id, version, spec))
    }

    fn rollback<'a>(&'a self, service: &'a Service) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(SwarmManager::rollback(self, service))
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(SwarmManager::remove(self, name))
    }

    fn tasks<'a>(&'a self, service_id: &'a str) -> BoxFuture<'a, Result<Vec<Task>, String>> {
        Box::pin(SwarmManager::tasks(self, service_id))
    }

    fn pinned_image<'a>(&'a self, reference: &'a str, image_id: &'a str) -> BoxFuture<'a, String> {
        Box::pin(SwarmManager::pinned_image(self, reference, image_id))
    }

    fn health_output<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(SwarmManager::health_output(self, container))
    }

    fn network_scope<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(SwarmManager::network_scope(self, name))
    }

    fn ensure_overlay<'a>(
        &'a self,
        name: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(SwarmManager::ensure_overlay(self, name, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

#[cfg(test)]
mod credential_tests {
    use super::*;
    use bollard::models::{TaskSpec, TaskSpecContainerSpec};

    fn spec(image: &str) -> ServiceSpec {
        ServiceSpec {
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// What `--with-registry-auth` sends: the credentials of the image's registry only.
    #[tokio::test]
    async fn a_service_is_sent_the_credentials_of_its_images_registry() {
        let docker =
            Docker::connect_with_http("tcp://127.0.0.1:1", 1, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let manager = SwarmManager::new(docker);
        manager.use_registry_auth(
            "registry.example",
            &RegistryAuth {
                server: "registry.example".into(),
                username: "ci".into(),
                password: "pw".into(),
                identity_token: None,
            },
        );
        let sent = manager
            .credentials_for(&spec("registry.example/app:1@sha256:ab"))
            .unwrap();
        assert_eq!(sent.username.as_deref(), Some("ci"));
        assert_eq!(sent.password.as_deref(), Some("pw"));
        assert_eq!(sent.serveraddress.as_deref(), Some("registry.example"));
        assert_eq!(manager.credentials_for(&spec("redis:7")), None);
        assert_eq!(manager.credentials_for(&ServiceSpec::default()), None);
    }
}
