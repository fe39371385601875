//! The `swarm_*` steps of services with `runtime = "swarm"` (planned by
//! `plan::steps::swarm`), against the manager's service API (`drivers::swarm`).
//!
//! `swarm_update` is what `docker stack deploy` followed by docker-stack-wait does: set the
//! spec, then wait until Swarm says the update completed and every replica runs it. An
//! update Swarm rolled back (or paused) fails the step, naming the tasks that failed and
//! their last health check; the engine then restores the rest of the run as for any failure.
//! Every update is journalled first with its undo, so that a failure later in the run (or a
//! crash) puts the previous spec back through Swarm's own rollback.

use std::time::Duration;

use tokio::time::Instant;

use super::report::Event;
use super::{Run, StepError};
use crate::drivers::probe;
use crate::drivers::swarm::{self as driver, Progress};
use crate::model::NetworkMode;
use crate::plan::{ResourceChange, Spec, Step, StepOp};
use crate::ports::{ContainerRuntime, Member, SwarmApi, labels};
use crate::state::SwarmService;
use crate::state::journal::Undo;

/// How often the manager is asked how the update goes.
const POLL: Duration = Duration::from_millis(500);
/// The longest an undo waits for Swarm's rollback.
const UNDO_BOUND: Duration = Duration::from_secs(600);

type StepResult = Result<Option<String>, StepError>;

/// The Swarm service of a gantry service: `<project>_<service>`, as `docker stack` names them.
pub fn service_name(project: &str, service: &str) -> String {
    format!("{project}_{service}")
}

fn manager<'r, R: ContainerRuntime>(
    run: &'r Run<'_, R>,
    host: &str,
) -> Result<(&'r super::Target<R>, &'r dyn SwarmApi), String> {
    let target = run.target(&Some(host.to_string()))?;
    let manager = target
        .swarm
        .as_deref()
        .ok_or_else(|| format!("host `{host}` has no Swarm connection"))?;
    Ok((target, manager))
}

/// Checks the networks a Swarm service joins and creates the project's; says when it did.
async fn networks<R: ContainerRuntime>(
    run: &Run<'_, R>,
    manager: &dyn SwarmApi,
    host: &str,
    spec: &crate::model::ServiceSpec,
) -> Result<Option<String>, StepError> {
    if spec.network_mode != NetworkMode::Project {
        return Ok(None);
    }
    for name in &spec.networks {
        driver::check_network(manager, host, name)
            .await
            .map_err(StepError::new)?;
    }
    let name = driver::network_name(run.env.project);
    let mut net_labels = run.env.labels.clone();
    net_labels.insert(labels::PROJECT.into(), run.env.project.into());
    let created = manager
        .ensure_overlay(&name, &net_labels)
        .await
        .map_err(|e| StepError::new(format!("host `{host}`: {e}")))?;
    Ok(created.then(|| format!("created the overlay network {name}")))
}

/// Runs one Swarm step; `Ok(detail)` or `Err` with the reason and the log lines.
pub(super) async fn step<R: ContainerRuntime>(
    run: &Run<'_, R>,
    service: &str,
    change: &ResourceChange,
    step: &Step,
) -> StepResult {
    let host = step.host.clone().unwrap_or_default();
    match &step.op {
        StepOp::SwarmUpdate {
            replicas, deadline, ..
        } => update(run, service, change, step, &host, *replicas, deadline.0).await,
        StepOp::SwarmWarmup => warm_up(run, service, change, &host).await,
        StepOp::SwarmJoinLb { lb } => {
            let member = member(run, service, &host).map_err(StepError::new)?;
            let joined = member.address.clone();
            run.change_members(lb, None, |m| m.push(member))
                .await
                .map_err(StepError::new)?;
            Ok(Some(format!("lb.{lb} now sends to {joined}")))
        }
        StepOp::SwarmLeaveLb { lb } => {
            let member = member(run, service, &host).map_err(StepError::new)?;
            let left = member.address.clone();
            run.change_members(lb, None, |m| m.retain(|a| a.address != left))
                .await
                .map_err(StepError::new)?;
            run.leaving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((service.to_string(), host.clone()))
                .or_default()
                .push((lb.clone(), vec![member]));
            Ok(Some(format!("lb.{lb} no longer sends to {left}")))
        }
        StepOp::SwarmRemove => remove(run, service, change, &host).await,
        other => Err(StepError::new(format!("{other:?} is not a Swarm step"))),
    }
}

/// The published address of the service, as a load-balancer member.
fn member<R: ContainerRuntime>(
    run: &Run<'_, R>,
    service: &str,
    host: &str,
) -> Result<Member, String> {
    let target = run.target(&Some(host.to_string()))?;
    let port = run
        .st()
        .swarm
        .get(service)
        .and_then(|s| s.published_port)
        .ok_or_else(|| format!("the Swarm service of {service} publishes no port"))?;
    Ok(Member {
        address: format!("{}:{port}", target.address),
        service: service.to_string(),
        replica: 1,
        host: host.to_string(),
    })
}

async fn update<R: ContainerRuntime>(
    run: &Run<'_, R>,
    service: &str,
    change: &ResourceChange,
    step: &Step,
    host: &str,
    replicas: u32,
    deadline: Duration,
) -> StepResult {
    let Some(Spec::Service(spec)) = &change.after else {
        return Err(StepError::new("a Swarm update without a desired spec"));
    };
    let StepOp::SwarmUpdate { update, .. } = &step.op else {
        return Err(StepError::new("not a Swarm update"));
    };
    let (target, manager) = manager(run, host).map_err(StepError::new)?;
    let name = service_name(run.env.project, service);
    let image_id = run
        .inputs
        .image_ids
        .get(&spec.image)
        .cloned()
        .ok_or_else(|| {
            StepError::new(format!("pre-flight did not resolve image `{}`", spec.image))
        })?;
    let image = manager.pinned_image(&spec.image, &image_id).await;
    let env = run.inputs.env.get(service).cloned().unwrap_or_default();
    let spec_hash = super::spec_hash(spec);
    let network =
        (spec.network_mode == NetworkMode::Project).then(|| driver::network_name(run.env.project));
    let swarm_spec = driver::service_spec(&driver::ServiceInput {
        name: &name,
        project: run.env.project,
        service,
        host,
        revision: run.revision,
        spec,
        image: &image,
        env: &env,
        replicas,
        update,
        spec_hash: &spec_hash,
        network: network.as_deref(),
        project_labels: run.env.labels,
    });
    let template = driver::template_of(&swarm_spec)
        .unwrap_or_default()
        .to_string();

    let created_network = networks(run, manager, host, spec).await?;
    let existing = manager.inspect(&name).await.map_err(StepError::new)?;
    let before = existing.as_ref().and_then(driver::update_started);
    let undo = Undo::Swarm {
        host: host.to_string(),
        name: name.clone(),
        revision: run.revision,
        created: existing.is_none(),
    };
    run.intent(undo.clone())?;
    let id = match &existing {
        None => manager.create(swarm_spec).await.map_err(StepError::new)?,
        Some(s) => {
            let id = s.id.clone().unwrap_or_else(|| name.clone());
            let version = s.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            manager
                .update(&id, version, swarm_spec)
                .await
                .map_err(StepError::new)?;
            id
        }
    };
    run.push_undo(undo);

    let started = Instant::now();
    let mut said = String::new();
    loop {
        let svc = manager
            .inspect(&id)
            .await
            .map_err(StepError::new)?
            .ok_or_else(|| StepError::new(format!("the Swarm service {name} disappeared")))?;
        let tasks = manager.tasks(&id).await.map_err(StepError::new)?;
        let progress = driver::progress(&svc, before.as_deref(), &tasks, replicas, &template);
        // What Swarm says, as it changes (a rollback is worth seeing while it happens).
        if let Some(state) = driver::update_state(&svc)
            && driver::update_started(&svc) != before
            && state != said
        {
            said = state.to_string();
            run.env.reporter.event(Event::Note {
                message: format!(
                    "service.{service}: Swarm update status `{state}`{}",
                    svc.update_status
                        .as_ref()
                        .and_then(|s| s.message.as_deref())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            });
        }
        let failure = match progress {
            Progress::Converged(words) => {
                // On the host's network the process listens on the node's port itself.
                let published = match spec.network_mode {
                    NetworkMode::Host => spec.port,
                    _ => spec.port.and_then(|p| driver::published_port(&svc, p)),
                };
                run.st().swarm.insert(
                    service.to_string(),
                    SwarmService {
                        host: host.to_string(),
                        id: id.clone(),
                        name: name.clone(),
                        image_id: image_id.clone(),
                        revision: run.revision,
                        published_port: published,
                    },
                );
                let _ = run.save();
                return Ok(Some(format!(
                    "{}{words}, {:.1}s; image {}{}",
                    created_network.map_or(String::new(), |n| format!("{n}; ")),
                    started.elapsed().as_secs_f64(),
                    short(&image_id),
                    published.map_or(String::new(), |p| format!(
                        "; published on {}:{p}",
                        target.address
                    ))
                )));
            }
            Progress::RolledBack(message) => {
                format!("Swarm rolled the update back ({message}): the previous spec runs again")
            }
            Progress::Paused(message) => format!(
                "Swarm paused the update ({message}): it is left as it is (`docker service ps {name}` shows where)"
            ),
            Progress::Waiting(words) if started.elapsed() >= deadline => format!(
                "the update did not converge within {}: {words}",
                humantime::format_duration(deadline)
            ),
            Progress::Waiting(_) => {
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        return Err(explain(target, manager, failure, &tasks, &template).await);
    }
}

/// A failure message naming the tasks of the new spec that failed (with their last health
/// check), and the last log lines of the newest one.
async fn explain<R: ContainerRuntime>(
    target: &super::Target<R>,
    manager: &dyn SwarmApi,
    mut reason: String,
    tasks: &[bollard::models::Task],
    template: &str,
) -> StepError {
    let failed = driver::failed_tasks(tasks, template);
    let mut logs = Vec::new();
    for (i, (words, container)) in failed.iter().take(3).enumerate() {
        reason.push_str(if i == 0 { ". Failed: " } else { "; " });
        reason.push_str(words);
        if let Some(c) = container {
            if let Some(health) = manager.health_output(c).await {
                reason.push_str(&format!(" ({health})"));
            }
            if i == 0 {
                logs = target.runtime.logs_tail(c, 10).await.unwrap_or_default();
            }
        }
    }
    if failed.len() > 3 {
        reason.push_str(&format!("; and {} more", failed.len() - 3));
    }
    StepError::with_logs(reason, logs)
}

fn short(image_id: &str) -> &str {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    &hex[..12.min(hex.len())]
}

async fn warm_up<R: ContainerRuntime>(
    run: &Run<'_, R>,
    service: &str,
    change: &ResourceChange,
    host: &str,
) -> StepResult {
    let Some(Spec::Service(spec)) = &change.after else {
        return Err(StepError::new("a warm-up without a desired spec"));
    };
    let Some(warmup) = &spec.warmup else {
        return Ok(None);
    };
    let address = member(run, service, host).map_err(StepError::new)?.address;
    probe::warm_up(run.env.prober, warmup, &address)
        .await
        .map(|report| Some(format!("{address}: {report}")))
        .map_err(|e| StepError::new(format!("{address}: {e}")))
}

async fn remove<R: ContainerRuntime>(
    run: &Run<'_, R>,
    service: &str,
    change: &ResourceChange,
    host: &str,
) -> StepResult {
    let (_, manager) = manager(run, host).map_err(StepError::new)?;
    let name = run
        .st()
        .swarm
        .get(service)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| service_name(run.env.project, service));
    let detail = match manager.inspect(&name).await.map_err(StepError::new)? {
        None => "already gone".to_string(),
        Some(svc) => {
            let tasks = manager
                .tasks(svc.id.as_deref().unwrap_or(&name))
                .await
                .unwrap_or_default();
            let running = tasks
                .iter()
                .filter(|t| t.desired_state == Some(bollard::models::TaskState::RUNNING))
                .count();
            manager.remove(&name).await.map_err(StepError::new)?;
            format!("removed; Swarm stops its {running} task(s)")
        }
    };
    // Named volumes hold data: they outlive the service (on the nodes that ran its tasks).
    let volumes: Vec<String> = match &change.before {
        Some(Spec::Service(spec)) => spec
            .volumes
            .iter()
            .filter_map(crate::model::Mount::volume)
            .map(|v| driver::volume_name(run.env.project, v))
            .collect(),
        _ => Vec::new(),
    };
    let detail = match volumes.as_slice() {
        [] => detail,
        names => format!("{detail}; keeps the volume(s) {}", names.join(", ")),
    };
    run.st().swarm.remove(service);
    Ok(Some(detail))
}

/// Reverses one `Undo::Swarm`: only while the service still carries the spec of the run
/// that set it (an update Swarm rolled back already carries the previous one).
pub(super) async fn undo<R: ContainerRuntime>(run: &Run<'_, R>, undo: &Undo) -> Result<(), String> {
    let Undo::Swarm {
        host,
        name,
        revision,
        created,
    } = undo
    else {
        return Ok(());
    };
    let (_, manager) = manager(run, host)?;
    let Some(svc) = manager.inspect(name).await? else {
        return Ok(());
    };
    let ours = driver::label(&svc, labels::REVISION) == Some(revision.to_string().as_str());
    let note = |message: String| run.env.reporter.event(Event::Note { message });
    if !ours {
        // Swarm may still be rolling it back itself: wait for the end of that.
        if driver::update_state(&svc) == Some("rollback_started") {
            return wait_rollback(manager, name, driver::update_started(&svc), false).await;
        }
        return Ok(());
    }
    if *created {
        manager.remove(name).await?;
        note(format!("removed the Swarm service {name} this run created"));
        return Ok(());
    }
    let before = driver::update_started(&svc);
    manager.rollback(&svc).await?;
    let started = Instant::now();
    wait_rollback(manager, name, before, true).await?;
    note(format!(
        "Swarm rolled {name} back to its previous spec in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Waits until a rollback of `name` is over. `new`: the rollback is one gantry asked for, so
/// only an update status newer than `before` counts.
async fn wait_rollback(
    manager: &dyn SwarmApi,
    name: &str,
    before: Option<String>,
    new: bool,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let svc = manager
            .inspect(name)
            .await?
            .ok_or_else(|| format!("the Swarm service {name} disappeared"))?;
        let fresh = !new || driver::update_started(&svc) != before;
        match driver::update_state(&svc) {
            Some("rollback_completed") if fresh => return Ok(()),
            Some("rollback_paused") if fresh => {
                return Err(format!(
                    "Swarm paused the rollback of {name}: {}",
                    svc.update_status
                        .and_then(|s| s.message)
                        .unwrap_or_default()
                ));
            }
            _ => {}
        }
        if started.elapsed() > UNDO_BOUND {
            return Err(format!(
                "Swarm did not finish rolling {name} back within {}",
                humantime::format_duration(UNDO_BOUND)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
