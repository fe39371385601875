//! The Docker engine through bollard: the real [`ContainerRuntime`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

use crate::ports::{ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, RuntimeError};

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
}

impl DockerRuntime {
    /// Connects to `endpoint` (`unix:///path` or `tcp://host:port`) and negotiates the API
    /// version with the engine (old engines refuse newer clients).
    pub async fn connect(endpoint: &str) -> Result<Self, RuntimeError> {
        let unreachable = |message: String| RuntimeError::Unreachable {
            endpoint: endpoint.to_string(),
            message,
        };
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(endpoint, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(unreachable(
                "unsupported endpoint scheme (use unix:// or tcp://)".into(),
            ));
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(DockerRuntime {
            docker,
            endpoint: endpoint.to_string(),
            pull_backoff: PULL_BACKOFF,
        })
    }

    /// Shorter back-off, for tests of the retry path.
    pub fn with_pull_backoff(mut self, backoff: Duration) -> Self {
        self.pull_backoff = backoff;
        self
    }

    fn engine_error(&self, op: &str, e: bollard::errors::Error) -> RuntimeError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError { message, .. } => RuntimeError::Engine {
                op: op.to_string(),
                message,
            },
            E::IOError { .. } | E::HyperResponseError { .. } | E::RequestTimeoutError => {
                RuntimeError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    message: e.to_string(),
                }
            }
            other => RuntimeError::Engine {
                op: op.to_string(),
                message: other.to_string(),
            },
        }
    }
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

fn port_key(port: u16) -> String {
    format!("{port}/tcp")
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

    async fn pull(&self, image: &str) -> Result<String, RuntimeError> {
        let mut backoff = self.pull_backoff;
        let mut last = String::new();
        for attempt in 1..=PULL_ATTEMPTS {
            let options = CreateImageOptions {
                from_image: Some(image.to_string()),
                ..Default::default()
            };
            let mut stream = self.docker.create_image(Some(options), None, None);
            let mut failed = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => {
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
            match failed {
                None => {
                    return self.image_id(image).await?.ok_or_else(|| {
                        RuntimeError::ImageUnavailable {
                            image: image.to_string(),
                            message: "the pull finished but the image is not on the host".into(),
                        }
                    });
                }
                Some(e) => last = format!("attempt {attempt}/{PULL_ATTEMPTS}: {e}"),
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
        let mut port_bindings = HashMap::new();
        let mut exposed = HashMap::new();
        if let Some(port) = spec.port {
            exposed.insert(port_key(port), HashMap::new());
            port_bindings.insert(
                port_key(port),
                Some(vec![PortBinding {
                    host_ip: Some(spec.host_ip.clone()),
                    host_port: Some(spec.host_port.map(|p| p.to_string()).unwrap_or_default()),
                }]),
            );
        }
        let mut log_config = HashMap::new();
        if let Some(size) = &spec.log_max_size {
            log_config.insert("max-size".to_string(), size.clone());
        }
        if let Some(files) = spec.log_max_files {
            log_config.insert("max-file".to_string(), files.to_string());
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            stop_timeout: Some(spec.stop_grace.as_secs() as i64),
            host_config: Some(HostConfig {
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                memory: spec.memory_bytes.map(|m| m as i64),
                nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".to_string()),
                    config: (!log_config.is_empty()).then_some(log_config),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match self.docker.create_container(Some(options), body).await {
            Ok(r) => Ok(r.id),
            Err(e) if is_not_found(&e) => Err(RuntimeError::ImageUnavailable {
                image: spec.image.clone(),
                message: "not on the host".into(),
            }),
            Err(e) => Err(self.engine_error(&format!("create container {}", spec.name), e)),
        }
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
            Err(e) => Err(self.engine_error(&format!("start container {id}"), e)),
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
        let host_port = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|ports| {
                ports
                    .values()
                    .flatten()
                    .flatten()
                    .find_map(|b| b.host_port.as_ref()?.parse().ok())
            });
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
                ContainerInfo {
                    id: s.id.unwrap_or_default(),
                    name: s
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    labels: s.labels.unwrap_or_default().into_iter().collect(),
                    state,
                    host_port: s
                        .ports
                        .and_then(|p| p.into_iter().find_map(|p| p.public_port)),
                    image_id: s.image_id.unwrap_or_default(),
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
}
