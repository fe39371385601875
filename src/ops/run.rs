//! `gantry run SERVICE -- CMD...` and `gantry run-task NAME`: a one-off container made from
//! what a service runs now (the recorded spec of its live revision and the image ID its
//! replicas run: nothing is pulled), on the host of one of its running replicas, with its
//! network, volumes and environment (secrets read from gantry's environment, as apply does).
//! Its output is streamed as it comes, it is removed when it ends (or on Ctrl-C), and the
//! command's exit code becomes gantry's. No lock and no state change: like `exec`, it
//! changes nothing gantry manages. `run-task` runs a `[task.NAME]`'s command with its
//! timeout, its output masked of the service's secrets as during an apply.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;

use super::outcome::Outcome;
use super::session::{Session, engine};
use super::{Common, Error, emit, load};
use crate::drivers::docker_attach::{LogQuery, log_lines};
use crate::engine::{Placement, mask, replica_container, secret_values, task_container};
use crate::ports::ContainerRuntime;
use crate::state::ReplicaStatus;

/// How long `gantry run` lets a command run: as long as it takes.
const NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub service: String,
    /// The `[[host]]` to run on (default: the first with a running replica).
    pub host: Option<String>,
    pub command: Vec<String>,
}

/// `gantry run`.
pub fn run(
    common: &Common,
    opts: &RunOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    one_off(
        common,
        &loaded.model,
        &opts.service,
        opts.host.as_deref(),
        OneOff {
            label: "run",
            command: &opts.command,
            timeout: NO_TIMEOUT,
            masked: false,
        },
        out,
        err,
    )
}

/// `gantry run-task`.
pub fn run_task(
    common: &Common,
    name: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let Some(task) = loaded.model.tasks.get(name) else {
        let known: Vec<&str> = loaded.model.tasks.keys().map(String::as_str).collect();
        return Err(Error::Message(format!(
            "no task `{name}` in the configuration ({})",
            if known.is_empty() {
                "it has no [task.NAME] table".to_string()
            } else {
                format!("the tasks are: {}", known.join(", "))
            }
        )));
    };
    one_off(
        common,
        &loaded.model,
        &task.service,
        None,
        OneOff {
            label: name,
            command: &task.command,
            timeout: task.timeout.0,
            masked: true,
        },
        out,
        err,
    )
}

struct OneOff<'a> {
    /// The task's name, or `run`: the container's `dev.gantry.task` label and name part.
    label: &'a str,
    command: &'a [String],
    timeout: Duration,
    /// The service's secret values are masked in the output.
    masked: bool,
}

fn one_off(
    common: &Common,
    model: &crate::model::Model,
    service: &str,
    host: Option<&str>,
    what: OneOff<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let session = Session::new(common)?;
    let state = session.state_dir().read()?.ok_or_else(|| {
        Error::Message(format!(
            "nothing was applied with this state directory: `gantry {}` runs from what service `{service}` runs now; `gantry apply` first",
            if what.label == "run" { "run" } else { "run-task" }
        ))
    })?;
    let Some(s) = state.services.get(service) else {
        let known: Vec<&str> = state.services.keys().map(String::as_str).collect();
        return Err(Error::Message(format!(
            "service `{service}` is not running (the services applied are: {})",
            known.join(", ")
        )));
    };
    if let Some(h) = host
        && !model.hosts.iter().any(|x| x.name == h)
    {
        let hosts: Vec<&str> = model.hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(Error::Message(format!(
            "unknown host `{h}`; the hosts are: {}",
            hosts.join(", ")
        )));
    }
    // A running replica of the live revision: its host, and the image ID it runs.
    let live = s
        .replicas
        .iter()
        .filter(|r| r.status == ReplicaStatus::Running && r.revision == s.revision)
        .find(|r| host.is_none_or(|h| r.host == h))
        .ok_or_else(|| {
            Error::Message(format!(
                "service `{service}` has no running replica{}: nothing to run from",
                host.map_or(String::new(), |h| format!(" on host `{h}`"))
            ))
        })?;
    let h = model
        .hosts
        .iter()
        .find(|x| x.name == live.host)
        .ok_or_else(|| {
            Error::Message(format!(
                "host `{}` of service `{service}` is not in the configuration",
                live.host
            ))
        })?;
    let spec = &s.spec;
    let env =
        super::preflight::service_env(&common.config_dir(), &format!("service.{service}"), spec)?;
    let secrets = if what.masked {
        secret_values(spec, &env)
    } else {
        Vec::new()
    };
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let placement = Placement {
        project: &model.project,
        revision: s.revision,
        host: &h.name,
        host_ip: &h.address,
        image: live.image_id.clone().unwrap_or_else(|| spec.image.clone()),
        env,
    };
    let container = task_container(
        replica_container(&placement, service, spec, 0, None),
        &format!("{}-{}-{service}-{stamp}", model.project, what.label),
        what.label,
        what.command,
    );
    let name = container.name.clone();
    session.block_on(async {
        let rt = engine(h).await?;
        let id = rt
            .create(&container)
            .await
            .map_err(|e| Error::Message(format!("{name}: {e}")))?;
        let started = std::time::Instant::now();
        let ran = async {
            rt.start(&id).await?;
            let mut lines = log_lines(
                rt.client(),
                &id,
                LogQuery {
                    follow: true,
                    ..Default::default()
                },
            );
            let output = async {
                while let Some(batch) = lines.next().await {
                    for l in batch? {
                        let text = mask(&l.text, &secrets);
                        let to: &mut dyn Write = if l.stderr { &mut *err } else { &mut *out };
                        let _ = writeln!(to, "{text}");
                        let _ = to.flush();
                    }
                }
                Ok::<(), crate::ports::RuntimeError>(())
            };
            match tokio::time::timeout(what.timeout, output).await {
                Ok(r) => r?,
                Err(_) => return Ok(None),
            }
            rt.wait(&id, Duration::from_secs(30)).await
        };
        let result = tokio::select! {
            r = ran => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        };
        // Removed whatever happened (stopped first if it still runs).
        let _ = rt.stop(&id, spec.stop_grace_period.0).await;
        let removed = rt.remove(&id).await;
        let took = started.elapsed().as_secs_f64();
        if let Err(e) = removed {
            emit(err, &format!("warning: {name} could not be removed: {e}\n"))?;
        }
        match result {
            None => Err(Error::Message(format!(
                "interrupted: {name} was stopped and removed"
            ))),
            Some(Err(e)) => Err(Error::Message(format!("{name}: {e}"))),
            Some(Ok(None)) => Err(Error::Message(format!(
                "{name} did not finish within {:?}; it was stopped and removed",
                what.timeout
            ))),
            Some(Ok(Some(code))) => {
                if what.masked {
                    emit(
                        err,
                        &format!("task.{}: exit {code} after {took:.1}s\n", what.label),
                    )?;
                }
                Ok(Outcome::Exited {
                    code: i32::try_from(code).unwrap_or(255),
                })
            }
        }
    })?
}
