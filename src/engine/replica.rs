//! Replica steps: a container started, started again, probed, warmed up, watched through a
//! soak, stopped (kept for rollback), or adopted by a new revision without a restart.

use std::time::Duration;

use tokio::time::Instant;

use super::report::Event;
use super::run::Run;
use super::{StepError, Target, ids, service_spec, spec_hash};
use crate::drivers::probe;
use crate::model::ServiceSpec;
use crate::plan::steps::Generation;
use crate::plan::{ResourceChange, Step, StepOp};
use crate::ports::{
    ContainerRuntime, ContainerSpec, ContainerState, HealthStatus, Prober, Restart, RuntimeError,
    labels,
};
use crate::state::journal::Undo;
use crate::state::{Replica, ReplicaStatus};

/// How many times a replica is created when its engine-chosen host port is taken at start.
const START_ATTEMPTS: u32 = 3;

/// Whether a start failed because a host port it publishes is taken: the driver's
/// `PortInUse`, or the engine's own words should a driver pass them through.
fn port_in_use(e: &RuntimeError) -> bool {
    match e {
        RuntimeError::PortInUse { .. } => true,
        RuntimeError::Engine { message, .. } => message.contains("port is already allocated"),
        _ => false,
    }
}

impl<R: ContainerRuntime> Run<'_, R> {
    /// Runs a replica step: start, restart, health, warm-up, stop, adopt, soak.
    pub(super) async fn replica_step(
        &self,
        service: &str,
        change: &ResourceChange,
        step: &Step,
    ) -> Result<Option<String>, StepError> {
        let after = service_spec(&change.after);
        let before = service_spec(&change.before);
        let host = step.host.clone().unwrap_or_default();
        match &step.op {
            StepOp::Start { replicas } => {
                let spec = after
                    .ok_or_else(|| StepError::new("start without a desired spec"))?
                    .clone();
                // Ports are chosen before any container exists, so that replicas started
                // side by side never pick the same one.
                let target = self.target(&step.host).map_err(StepError::new)?;
                let mut ports: Vec<Option<u16>> = Vec::new();
                for _ in replicas {
                    let port = match spec.host_ports {
                        None => None,
                        Some(range) => {
                            let taken: Vec<u16> = ports.iter().flatten().copied().collect();
                            Some(self.free_port(service, range, &target.address, &taken)?)
                        }
                    };
                    ports.push(port);
                }
                // The project network and the volumes, before the first container here.
                self.prepare_host(&host).await?;
                let spec = &spec;
                let host = &host;
                every_replica(
                    replicas,
                    Settle::All,
                    replicas.iter().zip(ports).map(|(&index, port)| async move {
                        self.start_replica(service, host, spec, index, port).await
                    }),
                )
                .await?;
                Ok(None)
            }
            StepOp::Restart { replicas, revision } => {
                let host = &host;
                every_replica(
                    replicas,
                    Settle::All,
                    replicas.iter().map(|&index| async move {
                        self.restart_replica(service, host, index, *revision, after)
                            .await
                    }),
                )
                .await?;
                Ok(Some("no image pull, no create".into()))
            }
            StepOp::WaitHealthy { replicas } => {
                let spec = after
                    .ok_or_else(|| StepError::new("health without a desired spec"))?
                    .clone();
                let (spec, host) = (&spec, &host);
                let details = every_replica(
                    replicas,
                    Settle::FirstFailure,
                    replicas.iter().map(|&index| async move {
                        let replica = self
                            .replica(service, host, index, Generation::New)
                            .ok_or_else(|| StepError::new("it was not started"))?;
                        self.wait_healthy(host, spec, &replica).await
                    }),
                )
                .await?;
                Ok(Some(details.join("; ")))
            }
            StepOp::Warmup { replicas } => {
                let spec = after.ok_or_else(|| StepError::new("warm-up without a desired spec"))?;
                let Some(warmup) = &spec.warmup else {
                    return Ok(None);
                };
                let target = self.target(&step.host).map_err(StepError::new)?;
                let host = &host;
                let details = every_replica(
                    replicas,
                    Settle::FirstFailure,
                    replicas.iter().map(|&index| async move {
                        let replica = self
                            .replica(service, host, index, Generation::New)
                            .ok_or_else(|| StepError::new("it was not started"))?;
                        let address = format!(
                            "{}:{}",
                            target.address,
                            replica.host_port.unwrap_or_default()
                        );
                        match probe::warm_up(self.env.prober, warmup, &address).await {
                            Ok(report) => Ok(format!("#{index}: {report}")),
                            Err(e) => Err(StepError::with_logs(
                                e.to_string(),
                                self.logs(host, &replica.container_id).await,
                            )),
                        }
                    }),
                )
                .await?;
                Ok(Some(details.join("; ")))
            }
            StepOp::Stop {
                generation,
                replicas,
                grace,
            } => {
                let spec = before
                    .or(after)
                    .cloned()
                    .ok_or_else(|| StepError::new("stop without a spec"))?;
                let stopped: Vec<Replica> = replicas
                    .iter()
                    .flat_map(|&index| self.replicas(service, &host, index, *generation))
                    .collect();
                self.stop_replicas(service, &host, &spec, &stopped, grace.0)
                    .await
                    .map(|killed| {
                        Some(format!(
                            "{} stopped, kept for rollback{killed}",
                            ids(replicas)
                        ))
                    })
            }
            StepOp::Adopt { replicas, revision } => {
                // The old colour is told to resume before any load balancer sends to it.
                let resumed = self
                    .resume_old_colour(service, &host, after, replicas, *revision)
                    .await?;
                let mut state = self.st();
                let s = state
                    .services
                    .get_mut(service)
                    .ok_or_else(|| StepError::new("service missing from state"))?;
                for &index in replicas {
                    let r = s
                        .replicas
                        .iter_mut()
                        .find(|r| {
                            r.index == index
                                && r.host == host
                                && r.revision == *revision
                                && r.status == ReplicaStatus::Running
                        })
                        .ok_or_else(|| {
                            StepError::new(format!(
                                "#{index} of revision {revision} no longer runs; roll back with --recreate"
                            ))
                        })?;
                    r.revision = self.revision;
                }
                s.old_colour = None;
                Ok(Some(match resumed {
                    Some(r) => format!("no container started; {r}"),
                    None => "no container started".into(),
                }))
            }
            StepOp::Soak { duration } => {
                let spec = after
                    .cloned()
                    .ok_or_else(|| StepError::new("soak without a desired spec"))?;
                self.soak(service, &host, &spec, duration.0)
                    .await
                    .map(|_| None)
            }
            other => Err(StepError::new(format!("{other:?} is not a replica step"))),
        }
    }

    /// Stops `replicas` (kept for rollback, each announced in the journal first); returns
    /// what was killed after the grace period, as a sentence tail.
    pub(super) async fn stop_replicas(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        replicas: &[Replica],
        grace: Duration,
    ) -> Result<String, StepError> {
        let target = self
            .target(&Some(host.to_string()))
            .map_err(StepError::new)?;
        let mut killed = Vec::new();
        for replica in replicas {
            let undo = Undo::Stopped {
                host: host.to_string(),
                id: replica.container_id.clone(),
                spec: Box::new(spec.clone()),
                port: replica.host_port,
            };
            self.intent(undo.clone())?;
            // Kept stopped, also when the engine restarts (with `always` it would start it
            // again): its policy comes back when it is started again (rollback, restore).
            if let Err(e) = target
                .runtime
                .set_restart(&replica.container_id, Restart::No)
                .await
            {
                match target.runtime.inspect(&replica.container_id).await {
                    // Gone behind gantry's back: nothing to keep.
                    Ok(None) => {
                        self.mark(&replica.container_id, None);
                        continue;
                    }
                    _ => return Err(StepError::new(e.to_string())),
                }
            }
            target
                .runtime
                .stop(&replica.container_id, grace)
                .await
                .map_err(|e| StepError::new(e.to_string()))?;
            match target.runtime.inspect(&replica.container_id).await {
                Ok(Some(info)) if info.state == ContainerState::Exited(137) => {
                    killed.push(format!("#{}", replica.index))
                }
                // Gone behind gantry's back: nothing to keep.
                Ok(None) => {
                    self.mark(&replica.container_id, None);
                    continue;
                }
                _ => {}
            }
            self.set_status(service, &replica.container_id, ReplicaStatus::Stopped);
            self.push_undo(undo);
        }
        Ok(if killed.is_empty() {
            String::new()
        } else {
            format!(
                "; {} did not exit within the {} grace period and were killed",
                killed.join(","),
                crate::model::Duration(grace)
            )
        })
    }

    /// `host:port` of this run's running replicas of `service` on `host`.
    pub(super) fn new_addresses(&self, service: &str, host: &str) -> Result<Vec<String>, String> {
        let target = self.target(&Some(host.to_string()))?;
        Ok(self
            .running_on(service, host, |r| r.revision == self.revision)
            .into_iter()
            .filter_map(|r| r.host_port.map(|p| format!("{}:{p}", target.address)))
            .collect())
    }

    /// The running replicas of `service` on `host` that `keep` selects.
    pub(super) fn running_on(
        &self,
        service: &str,
        host: &str,
        keep: impl Fn(&Replica) -> bool,
    ) -> Vec<Replica> {
        self.st()
            .services
            .get(service)
            .map(|s| {
                s.replicas
                    .iter()
                    .filter(|r| r.host == host && r.status == ReplicaStatus::Running && keep(r))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The container of replica `index` of `service` on `host`, as the engine is asked to
    /// create it (tasks start from it too).
    pub(super) fn replica_container(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        index: u32,
        host_port: Option<u16>,
    ) -> Result<ContainerSpec, StepError> {
        let target = self
            .target(&Some(host.to_string()))
            .map_err(StepError::new)?;
        let placement = Placement {
            project: self.env.project,
            revision: self.revision,
            host,
            host_ip: &target.address,
            // The image ID resolved by pre-flight: every replica runs the same image even if
            // the tag moves during the rollout, and a rollback runs exactly what was recorded.
            image: self
                .inputs
                .image_ids
                .get(&spec.image)
                .cloned()
                .unwrap_or_else(|| spec.image.clone()),
            env: self.inputs.env.get(service).cloned().unwrap_or_default(),
        };
        Ok(replica_container(
            &placement, service, spec, index, host_port,
        ))
    }

    pub(super) async fn start_replica(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        index: u32,
        host_port: Option<u16>,
    ) -> Result<(), StepError> {
        let container = self.replica_container(service, host, spec, index, host_port)?;
        let name = container.name.clone();
        // A host port the engine chose at create may be taken by someone else before the
        // start: the container is removed and created again, and the engine picks another.
        let mut attempt = 1;
        loop {
            let id = self
                .create_replica(service, host, spec, index, &container)
                .await?;
            let target = self
                .target(&Some(host.to_string()))
                .map_err(StepError::new)?;
            match target.runtime.start(&id).await {
                Ok(()) => {
                    break self
                        .record_started(target, service, &id)
                        .await
                        .map_err(StepError::new);
                }
                Err(e) if host_port.is_none() && port_in_use(&e) && attempt < START_ATTEMPTS => {
                    self.env.reporter.event(Event::Note {
                        message: format!(
                            "{name}: {e}; created again for another host port (attempt {} of {START_ATTEMPTS})",
                            attempt + 1
                        ),
                    });
                    target.runtime.remove(&id).await.map_err(|e| {
                        StepError::new(format!("removing {name} to create it again: {e}"))
                    })?;
                    self.mark(&id, None);
                    let _ = self.save();
                    attempt += 1;
                }
                Err(e) => {
                    return Err(StepError::with_logs(
                        e.to_string(),
                        self.logs(host, &id).await,
                    ));
                }
            }
        }
    }

    /// Creates one replica's container, announced in the journal first and recorded (not
    /// yet running) as soon as it exists; returns its ID.
    async fn create_replica(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        index: u32,
        container: &ContainerSpec,
    ) -> Result<String, StepError> {
        let target = self
            .target(&Some(host.to_string()))
            .map_err(StepError::new)?;
        // Announced by name: the engine gives the ID only once it exists.
        self.intent(Undo::Created {
            host: host.to_string(),
            id: container.name.clone(),
            grace: spec.stop_grace_period.0,
        })?;
        let id = target
            .runtime
            .create(container)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        self.push_undo(Undo::Created {
            host: host.to_string(),
            id: id.clone(),
            grace: spec.stop_grace_period.0,
        });
        // Recorded as soon as it exists, so that no container gantry created is ever
        // missing from the state, whatever happens next.
        self.st()
            .services
            .get_mut(service)
            .ok_or_else(|| StepError::new("service missing from state"))?
            .replicas
            .push(Replica {
                index,
                host: host.to_string(),
                name: container.name.clone(),
                container_id: id.clone(),
                image_id: None,
                revision: self.revision,
                host_port: container.host_port,
                status: ReplicaStatus::Stopped,
            });
        let _ = self.save();
        Ok(id)
    }

    /// After a container started, what the engine says goes into its record, now running and
    /// part of this revision: its host port (an engine-chosen one is chosen again at every
    /// start) and its image.
    pub(super) async fn record_started(
        &self,
        target: &Target<R>,
        service: &str,
        id: &str,
    ) -> Result<(), String> {
        let info = target
            .runtime
            .inspect(id)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(r) = self
            .st()
            .services
            .get_mut(service)
            .and_then(|s| s.replicas.iter_mut().find(|r| r.container_id == id))
        {
            r.status = ReplicaStatus::Running;
            r.revision = self.revision;
            if let Some(info) = info {
                r.host_port = info.host_port.or(r.host_port);
                r.image_id = Some(info.image_id);
            }
        }
        Ok(())
    }

    /// Starts a kept replica of `revision` again; from now on it belongs to this revision.
    pub(super) async fn restart_replica(
        &self,
        service: &str,
        host: &str,
        index: u32,
        revision: u64,
        spec: Option<&ServiceSpec>,
    ) -> Result<(), StepError> {
        let grace = spec.map_or(Duration::from_secs(10), |s| s.stop_grace_period.0);
        let restart = spec.map_or(Restart::default(), |s| s.restart);
        let id = self
            .st()
            .services
            .get(service)
            .and_then(|s| {
                s.replicas
                    .iter()
                    .find(|r| {
                        r.index == index
                            && r.host == host
                            && r.revision == revision
                            && r.status == ReplicaStatus::Stopped
                    })
                    .map(|r| r.container_id.clone())
            })
            .ok_or_else(|| {
                StepError::new(format!(
                    "no kept replica #{index} of revision {revision} on host {host}"
                ))
            })?;
        let target = self
            .target(&Some(host.to_string()))
            .map_err(StepError::new)?;
        let undo = Undo::Restarted {
            host: host.to_string(),
            id: id.clone(),
            grace,
        };
        self.intent(undo.clone())?;
        // Kept with the policy `no`; running again, it gets its service's back.
        target
            .runtime
            .set_restart(&id, restart)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        if let Err(e) = target.runtime.start(&id).await {
            // Its host port, fixed when it was created, is someone else's now: the kept
            // replica stays kept (stopped, policy `no`), and a new one is created in its
            // place from the same image, on another port.
            return match spec {
                Some(spec) if spec.host_ports.is_none() && port_in_use(&e) => {
                    let _ = target.runtime.set_restart(&id, Restart::No).await;
                    self.env.reporter.event(Event::Note {
                        message: format!(
                            "service.{service} #{index}: the kept replica cannot start again ({e}); a new one is created instead"
                        ),
                    });
                    self.prepare_host(host).await?;
                    self.start_replica(service, host, spec, index, None).await
                }
                _ => Err(StepError::new(e.to_string())),
            };
        }
        self.push_undo(undo);
        self.record_started(target, service, &id)
            .await
            .map_err(StepError::new)?;
        let _ = self.save();
        Ok(())
    }

    /// The lowest port of `range` that no replica of this service uses (running or kept),
    /// that is not `taken` by a sibling about to start, and that can be bound now.
    pub(super) fn free_port(
        &self,
        service: &str,
        range: crate::model::PortRange,
        address: &str,
        taken: &[u16],
    ) -> Result<u16, StepError> {
        let mut used: Vec<u16> = self
            .st()
            .services
            .get(service)
            .map(|s| s.replicas.iter().filter_map(|r| r.host_port).collect())
            .unwrap_or_default();
        used.extend_from_slice(taken);
        (range.start..=range.end)
            .find(|p| {
                let local = address
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
                !used.contains(p) && (!local || std::net::TcpListener::bind((address, *p)).is_ok())
            })
            .ok_or_else(|| {
                StepError::new(format!("no free host port left in {range} on {address}"))
            })
    }

    pub(super) fn replica(
        &self,
        service: &str,
        host: &str,
        index: u32,
        generation: Generation,
    ) -> Option<Replica> {
        self.replicas(service, host, index, generation)
            .into_iter()
            .next()
    }

    /// Running replicas of `index` on `host`: those this apply started (new), or any other
    /// (current; after an interrupted run there can be more than one).
    pub(super) fn replicas(
        &self,
        service: &str,
        host: &str,
        index: u32,
        generation: Generation,
    ) -> Vec<Replica> {
        let state = self.st();
        let Some(s) = state.services.get(service) else {
            return Vec::new();
        };
        s.replicas
            .iter()
            .filter(|r| r.host == host && r.index == index && r.status == ReplicaStatus::Running)
            .filter(|r| match generation {
                Generation::New => r.revision == self.revision,
                Generation::Current => r.revision != self.revision,
            })
            .cloned()
            .collect()
    }

    pub(super) fn set_status(&self, service: &str, id: &str, status: ReplicaStatus) {
        if let Some(r) = self
            .st()
            .services
            .get_mut(service)
            .and_then(|s| s.replicas.iter_mut().find(|r| r.container_id == id))
        {
            r.status = status;
        }
    }

    pub(super) async fn logs(&self, host: &str, id: &str) -> Vec<String> {
        match self.target(&Some(host.to_string())) {
            Ok(t) => t.runtime.logs_tail(id, 10).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    pub(super) async fn wait_healthy(
        &self,
        host: &str,
        spec: &ServiceSpec,
        replica: &Replica,
    ) -> Result<String, StepError> {
        wait_healthy(
            self.env.prober,
            self.target(&Some(host.to_string()))
                .map_err(StepError::new)?,
            spec,
            replica,
        )
        .await
    }

    /// Real traffic for `duration`, the new replicas watched: one that stops or turns
    /// unhealthy fails the step.
    pub(super) async fn soak(
        &self,
        service: &str,
        host: &str,
        spec: &ServiceSpec,
        duration: Duration,
    ) -> Result<(), StepError> {
        let target = self
            .target(&Some(host.to_string()))
            .map_err(StepError::new)?;
        let deadline = Instant::now() + duration;
        let every = spec
            .health
            .as_ref()
            .map_or(Duration::from_secs(1), |h| h.interval.0)
            .min(duration.max(Duration::from_millis(100)));
        while Instant::now() < deadline {
            tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
            for r in self.running_on(service, host, |r| r.revision == self.revision) {
                match target.runtime.inspect(&r.container_id).await {
                    Ok(Some(info))
                        if info
                            .health
                            .as_ref()
                            .is_some_and(|h| h.status == HealthStatus::Unhealthy) =>
                    {
                        let output = info.health.and_then(|h| h.last_output);
                        return Err(StepError::with_logs(
                            format!(
                                "#{} turned unhealthy during soak; the last output of its health command: {}",
                                r.index,
                                describe_output(&output)
                            ),
                            self.logs(host, &r.container_id).await,
                        ));
                    }
                    Ok(Some(info)) if info.state == ContainerState::Running => {}
                    Ok(Some(info)) => {
                        return Err(StepError::with_logs(
                            format!("#{} stopped during soak ({:?})", r.index, info.state),
                            self.logs(host, &r.container_id).await,
                        ));
                    }
                    Ok(None) => {
                        return Err(StepError::new(format!(
                            "#{} disappeared during soak",
                            r.index
                        )));
                    }
                    Err(e) => return Err(StepError::new(e.to_string())),
                }
                if let (Some(h), Some(path), Some(port)) = (
                    &spec.health,
                    spec.health.as_ref().and_then(|h| h.http.as_ref()),
                    r.host_port,
                ) {
                    let probe = self
                        .env
                        .prober
                        .get(&format!("{}:{port}", target.address), path, h.timeout.0)
                        .await;
                    if !probe.is_2xx() {
                        return Err(StepError::with_logs(
                            format!(
                                "#{} failed its health check during soak: {:?}",
                                r.index, probe.outcome
                            ),
                            self.logs(host, &r.container_id).await,
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Health of one replica: the HTTP probe when configured, else "still running after a
/// moment" (a container that crashes at start is caught either way).
pub(super) async fn wait_healthy<R: ContainerRuntime>(
    prober: &dyn Prober,
    target: &Target<R>,
    spec: &ServiceSpec,
    replica: &Replica,
) -> Result<String, StepError> {
    let id = replica.container_id.clone();
    let still_running = || {
        let id = id.clone();
        async move {
            match target.runtime.inspect(&id).await {
                Ok(Some(i)) if i.state == ContainerState::Running => Ok(()),
                Ok(Some(i)) => Err(match i.state {
                    ContainerState::Exited(code) => {
                        format!("the container exited with code {code}")
                    }
                    other => format!("the container is {other:?}"),
                }),
                Ok(None) => Err("the container is gone".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let result = match (
        &spec.health,
        spec.health.as_ref().and_then(|h| h.http.as_ref()),
    ) {
        (Some(h), Some(_)) => {
            let address = format!(
                "{}:{}",
                target.address,
                replica.host_port.unwrap_or_default()
            );
            probe::wait_healthy(prober, h, &address, still_running)
                .await
                .map(|r| {
                    format!(
                        "healthy after {} probe(s), {:.1}s",
                        r.probes,
                        r.elapsed.as_secs_f64()
                    )
                })
                .map_err(|e| e.to_string())
        }
        (Some(h), None) if h.command.is_some() => {
            return wait_health_command(target, h, &replica.container_id).await;
        }
        _ => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            still_running()
                .await
                .map(|_| "running (no health check configured)".to_string())
        }
    };
    match result {
        Ok(s) => Ok(s),
        Err(e) => Err(StepError::with_logs(
            e,
            target
                .runtime
                .logs_tail(&replica.container_id, 10)
                .await
                .unwrap_or_default(),
        )),
    }
}

/// Waits until the engine says the container's health command passes (Docker's
/// HEALTHCHECK): a quick first look, then one at most every `interval`. Unhealthy fails with
/// the command's last output, an exit fails at once, and the wait ends after the time the
/// engine itself needs to decide: `start_period + (retries + 1) * (interval + timeout)`, plus
/// a margin.
async fn wait_health_command<R: ContainerRuntime>(
    target: &Target<R>,
    health: &crate::model::HealthSpec,
    id: &str,
) -> Result<String, StepError> {
    let started = Instant::now();
    let (interval, timeout) = (health.interval.0, health.timeout.0);
    let deadline = started
        + health.start_period.0
        + (interval + timeout) * (health.retries + 1)
        + HEALTH_COMMAND_MARGIN;
    let every = interval.clamp(Duration::from_millis(10), Duration::from_secs(1));
    let logs = || async { target.runtime.logs_tail(id, 10).await.unwrap_or_default() };
    let mut wait = every.min(Duration::from_millis(100));
    let mut last_output: Option<String> = None;
    loop {
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
        wait = every;
        let info = match target.runtime.inspect(id).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(StepError::new("the container is gone")),
            Err(e) => return Err(StepError::new(e.to_string())),
        };
        match info.state {
            ContainerState::Running => {}
            ContainerState::Exited(code) => {
                return Err(StepError::with_logs(
                    format!("the container exited with code {code}"),
                    logs().await,
                ));
            }
            other => {
                return Err(StepError::with_logs(
                    format!("the container is {other:?}"),
                    logs().await,
                ));
            }
        }
        if let Some(h) = &info.health {
            if h.last_output.is_some() {
                last_output = h.last_output.clone();
            }
            match h.status {
                HealthStatus::Healthy => {
                    return Ok(format!(
                        "healthy (health command) after {:.1}s",
                        started.elapsed().as_secs_f64()
                    ));
                }
                HealthStatus::Unhealthy => {
                    return Err(StepError::with_logs(
                        format!(
                            "the health command failed {} time(s) in a row; its last output: {}",
                            health.retries,
                            describe_output(&last_output)
                        ),
                        logs().await,
                    ));
                }
                HealthStatus::Starting => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(StepError::with_logs(
                format!(
                    "not healthy within {:.1}s (start_period + (retries + 1) x (interval + timeout)): the engine still reports its health command as starting; its last output: {}",
                    started.elapsed().as_secs_f64(),
                    describe_output(&last_output)
                ),
                logs().await,
            ));
        }
    }
}

/// Time given beyond what the engine needs to decide a health command (its own delays).
const HEALTH_COMMAND_MARGIN: Duration = Duration::from_secs(5);

fn describe_output(output: &Option<String>) -> String {
    match output.as_deref().map(str::trim) {
        Some(o) if !o.is_empty() => format!("`{o}`"),
        _ => "(none)".to_string(),
    }
}

/// How the replicas of one step settle when one of them fails.
#[derive(Clone, Copy)]
enum Settle {
    /// Every replica's change runs to its end: each one the engine makes must be recorded
    /// (and undone on failure), so none is abandoned half way.
    All,
    /// The first failure ends the step: the others only probe, and waiting for them would
    /// delay the restore.
    FirstFailure,
}

/// Runs one future per replica of a step concurrently: a batch takes as long as its slowest
/// replica, not the sum of them. Each failure is named by its replica (`#2: ...`); the logs
/// shown are the first failing replica's.
async fn every_replica<T>(
    replicas: &[u32],
    settle: Settle,
    each: impl IntoIterator<Item = impl std::future::Future<Output = Result<T, StepError>>>,
) -> Result<Vec<T>, StepError> {
    let named = |index: u32, e: StepError| StepError {
        reason: format!("#{index}: {}", e.reason),
        logs: e.logs,
    };
    let each = replicas
        .iter()
        .zip(each)
        .map(|(&index, f)| async move { f.await.map_err(|e| named(index, e)) });
    match settle {
        Settle::FirstFailure => futures_util::future::try_join_all(each).await,
        Settle::All => {
            let mut done = Vec::new();
            let mut failed: Option<StepError> = None;
            for result in futures_util::future::join_all(each).await {
                match (result, &mut failed) {
                    (Ok(t), _) => done.push(t),
                    (Err(e), None) => failed = Some(e),
                    (Err(e), Some(first)) => {
                        first.reason = format!("{}; {}", first.reason, e.reason)
                    }
                }
            }
            failed.map_or(Ok(done), Err)
        }
    }
}

/// Where, and from what, a service's container is made.
pub struct Placement<'a> {
    pub project: &'a str,
    pub revision: u64,
    pub host: &'a str,
    /// The address its published ports are bound to.
    pub host_ip: &'a str,
    /// The image ID it runs.
    pub image: String,
    /// `KEY=value`, secrets included.
    pub env: Vec<String>,
}

/// The container of replica `index` of `service`, as the engine is asked to create it.
pub fn replica_container(
    at: &Placement<'_>,
    service: &str,
    spec: &ServiceSpec,
    index: u32,
    host_port: Option<u16>,
) -> ContainerSpec {
    let name = format!("{}-{service}-{}-{index}", at.project, at.revision);
    let mut container_labels = spec.labels.clone();
    container_labels.insert(labels::PROJECT.into(), at.project.into());
    container_labels.insert(labels::SERVICE.into(), service.into());
    container_labels.insert(labels::REVISION.into(), at.revision.to_string());
    container_labels.insert(labels::REPLICA.into(), index.to_string());
    container_labels.insert(labels::HOST.into(), at.host.into());
    container_labels.insert(labels::SPEC_HASH.into(), spec_hash(spec));
    if let Some(port) = spec.port {
        container_labels.insert(labels::PORT.into(), port.to_string());
    }
    ContainerSpec {
        name,
        image: at.image.clone(),
        command: spec.command.clone(),
        env: at.env.clone(),
        labels: container_labels,
        port: spec.port,
        host_port,
        host_ip: at.host_ip.to_string(),
        memory_bytes: spec.resources.memory.map(|m| m.0),
        cpus: spec.resources.cpus,
        log_max_size: spec.log.max_size.map(|s| s.to_string()),
        log_max_files: spec.log.max_files,
        stop_grace: spec.stop_grace_period.0,
        // What `docker ps` shows; the container runs `image`, the ID.
        image_ref: Some(spec.image.clone()),
        options: super::container_options(at.project, service, spec),
    }
}
