//! A task's step: one container of its service's new spec (image, env and secrets,
//! networks, volumes, user...) runs the task's command to completion on the step's host. Exit
//! 0 within the timeout, or the step fails. Its exit code, duration and last output lines are
//! reported and recorded in the revision's history (secret values masked), and the container
//! is removed whatever happened. The task's container is announced in the journal before it
//! is created (a crash leaves it to the undo, or to the next reconcile, which removes every
//! task container), but it is not a change the restore undoes: a migration only goes forward.

use tokio::time::Instant;

use super::StepError;
use super::report::Event;
use super::run::Run;
use crate::model::{Restart, ServiceSpec, TaskSpec};
use crate::plan::{ResourceChange, Spec, Step, StepOp};
use crate::ports::{ContainerRuntime, ContainerSpec, labels};
use crate::state::journal::Undo;
use crate::state::{TaskRunRecord, TaskState};

/// Output lines of a task kept in the history and shown.
const TASK_LINES: usize = 20;

impl<R: ContainerRuntime> Run<'_, R> {
    pub(super) async fn task_step(
        &self,
        task_name: &str,
        change: &ResourceChange,
        step: &Step,
    ) -> Result<Option<String>, StepError> {
        let (Some(Spec::Task(task)), StepOp::RunTask { .. }) = (&change.after, &step.op) else {
            return Err(StepError::new("not a task step"));
        };
        let host = step.host.clone().unwrap_or_default();
        let spec = self.service_spec_of(&task.service).ok_or_else(|| {
            StepError::new(format!("service `{}` is not in the plan", task.service))
        })?;
        self.prepare_host(&host).await?;
        let container = task_container(
            self.replica_container(&task.service, &host, &spec, 0, None)?,
            &format!("{}-task-{task_name}-{}", self.env.project, self.revision),
            task_name,
            &task.command,
        );
        let secrets = secret_values(
            &spec,
            self.inputs
                .env
                .get(&task.service)
                .map_or(&[][..], Vec::as_slice),
        );
        let target = self.target(&Some(host.clone())).map_err(StepError::new)?;
        self.intent(Undo::Created {
            host: host.clone(),
            id: container.name.clone(),
            grace: spec.stop_grace_period.0,
        })?;
        let started = Instant::now();
        let id = target
            .runtime
            .create(&container)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        let exit = match target.runtime.start(&id).await {
            Ok(()) => target.runtime.wait(&id, task.timeout.0).await,
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed();
        if let Ok(None) = exit {
            // Past its timeout: stopped before it is removed, so that its output is complete.
            let _ = target.runtime.stop(&id, spec.stop_grace_period.0).await;
        }
        let lines: Vec<String> = target
            .runtime
            .logs_tail(&id, TASK_LINES)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|l| mask(&l, &secrets))
            .collect();
        let removed = target.runtime.remove(&id).await;
        let image_id = self.inputs.image_ids.get(&spec.image).cloned();
        let code = exit.as_ref().ok().copied().flatten();
        if let Some(record) = self
            .st()
            .history
            .iter_mut()
            .rev()
            .find(|r| r.revision == self.revision)
        {
            record.tasks.insert(
                task_name.to_string(),
                TaskRunRecord {
                    host: host.clone(),
                    image_id: image_id.clone(),
                    exit_code: code,
                    duration_ms: elapsed.as_millis() as u64,
                    last_lines: lines.clone(),
                },
            );
        }
        let took = format!("{:.1}s", elapsed.as_secs_f64());
        let mut output = String::new();
        for l in &lines {
            output.push_str(&format!("\n    | {l}"));
        }
        self.env.reporter.event(Event::Note {
            message: format!(
                "task.{task_name}: {} after {took}{}{output}",
                match &exit {
                    Ok(Some(c)) => format!("exit {c}"),
                    Ok(None) => format!("did not finish within {}", task.timeout),
                    Err(_) => "could not run".to_string(),
                },
                if lines.is_empty() {
                    ""
                } else {
                    "; its last output:"
                }
            ),
        });
        if let Err(e) = &removed {
            self.env.reporter.event(Event::Note {
                message: format!(
                    "warning: task.{task_name}: its container {} could not be removed: {e}",
                    container.name
                ),
            });
        }
        match exit {
            Ok(Some(0)) => {
                self.st().tasks.insert(
                    task_name.to_string(),
                    TaskState {
                        spec: TaskSpec::clone(task),
                        image: spec.image.clone(),
                        image_id,
                        revision: self.revision,
                    },
                );
                Ok(Some(format!("exit 0 after {took}")))
            }
            Ok(Some(c)) => Err(StepError::with_logs(
                format!("task.{task_name} exited with code {c} after {took}"),
                lines,
            )),
            Ok(None) => Err(StepError::with_logs(
                format!(
                    "task.{task_name} did not finish within its timeout of {}; stopped",
                    task.timeout
                ),
                lines,
            )),
            Err(e) => Err(StepError::with_logs(e.to_string(), lines)),
        }
    }
}

/// A one-off container of a service: `replica` (a replica's container, as the engine creates
/// it) named `name`, running `command`, labelled with the task's name instead of a service
/// and replica, with no port, no fixed ports, no DNS alias of the service, no health command,
/// and never restarted. Tasks and `gantry run` use it.
pub fn task_container(
    mut replica: ContainerSpec,
    name: &str,
    task: &str,
    command: &[String],
) -> ContainerSpec {
    replica.name = name.to_string();
    replica.command = Some(command.to_vec());
    for key in [
        labels::SERVICE,
        labels::REPLICA,
        labels::SPEC_HASH,
        labels::PORT,
    ] {
        replica.labels.remove(key);
    }
    replica.labels.insert(labels::TASK.into(), task.into());
    replica.port = None;
    replica.host_port = None;
    replica.options.publish.clear();
    replica.options.healthcheck = None;
    replica.options.restart = Restart::No;
    for n in &mut replica.options.networks {
        n.aliases.clear();
    }
    replica
}

/// The values a service's containers get that must never be shown: those of its
/// `secret_env` and of its env file's variables, out of `env` (`KEY=value`).
pub fn secret_values(spec: &ServiceSpec, env: &[String]) -> Vec<String> {
    let secret_keys: Vec<&str> = spec
        .secret_env
        .iter()
        .map(String::as_str)
        .chain(
            spec.env_file
                .iter()
                .flat_map(|f| f.keys.iter().map(String::as_str)),
        )
        .collect();
    env.iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, v)| secret_keys.contains(k) && !v.is_empty())
        .map(|(_, v)| v.to_string())
        .collect()
}

/// `line` with every secret value replaced by `***`.
pub fn mask(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_values_are_masked_in_task_output() {
        let secrets = vec!["hunter2".to_string(), "s3cr3t-token".to_string()];
        assert_eq!(
            super::mask("connecting with hunter2 and s3cr3t-token", &secrets),
            "connecting with *** and ***"
        );
        assert_eq!(super::mask("nothing here", &secrets), "nothing here");
    }
}
