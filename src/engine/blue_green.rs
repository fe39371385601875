//! Blue-green steps: the preview check against the new colour before any user traffic moves,
//! and the old colour's scale-down after the switch (now, or kept for switch-back until a
//! deadline that `gantry scale-down` honours). The old colour's own commands are exec'ed in
//! its replicas: `idle_command` once a release has switched away from it (a failure is a
//! warning: the release stands), `resume_command` before a switch-back gives it traffic again
//! (a failure fails the switch-back). Each journals the other as its undo.

use std::time::Duration;

use tokio::time::Instant;

use super::report::Event;
use super::run::Run;
use super::{StepError, service_spec};
use crate::model::{BlueGreenSpec, ServiceSpec};
use crate::plan::{ResourceChange, Step, StepOp};
use crate::ports::ContainerRuntime;
use crate::state::Replica;
use crate::state::journal::Undo;

/// How long a blue-green preview check may run.
const PREVIEW_CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a failing preview check is tried again.
const PREVIEW_CHECK_RETRIES: Duration = Duration::from_secs(5);
/// How long an `idle_command` or `resume_command` may run in one replica.
pub(super) const OLD_COLOUR_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Execs `command` in the container `id`, bounded by [`OLD_COLOUR_COMMAND_TIMEOUT`]; `Err`
/// says how it failed (exit code and last output lines, or the engine's error).
pub(super) async fn exec_bounded<R: ContainerRuntime>(
    runtime: &R,
    id: &str,
    command: &[String],
) -> Result<(), String> {
    match tokio::time::timeout(OLD_COLOUR_COMMAND_TIMEOUT, runtime.exec(id, command)).await {
        Err(_) => Err(format!(
            "it did not end within {}s",
            OLD_COLOUR_COMMAND_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(o)) if o.success() => Ok(()),
        Ok(Ok(o)) => Err(o.describe()),
    }
}

fn blue_green(spec: Option<&ServiceSpec>) -> Option<&BlueGreenSpec> {
    spec.and_then(|s| s.rollout.blue_green.as_ref())
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

impl<R: ContainerRuntime> Run<'_, R> {
    /// Runs a blue-green step: the preview check, the old colour's scale-down.
    pub(super) async fn blue_green_step(
        &self,
        service: &str,
        change: &ResourceChange,
        step: &Step,
    ) -> Result<Option<String>, StepError> {
        let after = service_spec(&change.after);
        let before = service_spec(&change.before);
        let host = step.host.clone().unwrap_or_default();
        match &step.op {
            StepOp::PreviewCheck { command } => {
                let addresses = self.new_addresses(service, &host).map_err(StepError::new)?;
                let env = [
                    ("GANTRY_PREVIEW_ADDRESSES".to_string(), addresses.join(",")),
                    ("GANTRY_SERVICE".to_string(), service.to_string()),
                    ("GANTRY_REVISION".to_string(), self.revision.to_string()),
                ];
                // Load balancers reload asynchronously (nginx's old workers answer for a
                // moment): a failing check is tried again for a few seconds.
                let started = Instant::now();
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match self
                        .env
                        .commands
                        .run(command, &env, PREVIEW_CHECK_TIMEOUT)
                        .await
                    {
                        Ok(()) => {
                            break Ok(Some(format!(
                                "passed against {} (attempt {attempts})",
                                addresses.join(", ")
                            )));
                        }
                        Err(e) if started.elapsed() >= PREVIEW_CHECK_RETRIES => {
                            break Err(StepError::new(format!(
                                "the preview check failed ({attempts} attempts over {:.1}s): {e}; no user traffic was moved",
                                started.elapsed().as_secs_f64()
                            )));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
            StepOp::ScaleDownOld { delay, keep } => {
                let spec = before
                    .or(after)
                    .cloned()
                    .ok_or_else(|| StepError::new("scale-down without a spec"))?;
                let old = self.running_on(service, &host, |r| r.revision != self.revision);
                let Some(live) = old.iter().map(|r| r.revision).max() else {
                    return Ok(Some("no old colour runs".into()));
                };
                // Older leftovers go now; the colour that was live goes after `delay`.
                let (colour, leftovers): (Vec<Replica>, Vec<Replica>) =
                    old.into_iter().partition(|r| r.revision == live);
                self.stop_replicas(service, &host, &spec, &leftovers, spec.stop_grace_period.0)
                    .await?;
                if delay.is_zero() {
                    let (kept, beyond): (Vec<Replica>, Vec<Replica>) =
                        colour.into_iter().partition(|r| r.index <= *keep);
                    self.stop_replicas(service, &host, &spec, &beyond, spec.stop_grace_period.0)
                        .await?;
                    let idled = self.idle_old_colour(service, &host, before, &kept).await?;
                    self.set_old_colour(
                        service,
                        (*keep > 0).then_some(crate::state::OldColour {
                            revision: live,
                            scale_down_at: None,
                            keep: *keep,
                        }),
                    );
                    return Ok(Some(format!(
                        "old colour (revision {live}) down to {keep} running{idled}"
                    )));
                }
                let idled = self
                    .idle_old_colour(service, &host, before, &colour)
                    .await?;
                let at =
                    humantime::format_rfc3339_seconds(self.env.clock.now() + delay.0).to_string();
                self.set_old_colour(
                    service,
                    Some(crate::state::OldColour {
                        revision: live,
                        scale_down_at: Some(at.clone()),
                        keep: *keep,
                    }),
                );
                Ok(Some(format!(
                    "old colour (revision {live}) keeps running for switch-back until {at}, then `gantry scale-down` takes it down to {keep}{idled}"
                )))
            }
            other => Err(StepError::new(format!(
                "{other:?} is not a blue-green step"
            ))),
        }
    }

    /// Execs the old colour's `idle_command` (of `spec`, the colour's own) in each of
    /// `replicas`, which have left the load balancers. A failure is reported as a warning and
    /// the release stands. Returns a tail for the step's detail (empty without a command).
    async fn idle_old_colour(
        &self,
        service: &str,
        host: &str,
        spec: Option<&ServiceSpec>,
        replicas: &[Replica],
    ) -> Result<String, StepError> {
        let bg = blue_green(spec);
        let Some(idle) = bg.and_then(|b| b.idle_command.as_ref()) else {
            return Ok(String::new());
        };
        if replicas.is_empty() {
            return Ok(String::new());
        }
        let failures = self
            .exec_in(
                host,
                replicas,
                idle,
                bg.and_then(|b| b.resume_command.clone()),
            )
            .await?;
        if failures.is_empty() {
            return Ok(format!("; idle_command ran in {}", list_replicas(replicas)));
        }
        let warning = format!(
            "idle_command `{}` failed in {}; the release stands, but the old colour may not be idle",
            idle.join(" "),
            failures.join("; ")
        );
        self.env.reporter.event(Event::Note {
            message: format!("warning: service.{service}: {warning}"),
        });
        Ok(format!("; warning: {warning}"))
    }

    /// Execs the old colour's `resume_command` (of `spec`, the colour's own recorded spec) in
    /// its running replicas `indices` of `revision`, before a switch-back gives them traffic.
    /// A failure fails the step (the usual restore follows).
    pub(super) async fn resume_old_colour(
        &self,
        service: &str,
        host: &str,
        spec: Option<&ServiceSpec>,
        indices: &[u32],
        revision: u64,
    ) -> Result<Option<String>, StepError> {
        let bg = blue_green(spec);
        let Some(resume) = bg.and_then(|b| b.resume_command.as_ref()) else {
            return Ok(None);
        };
        let replicas = self.running_on(service, host, |r| {
            r.revision == revision && indices.contains(&r.index)
        });
        if replicas.is_empty() {
            return Ok(None);
        }
        let failures = self
            .exec_in(
                host,
                &replicas,
                resume,
                bg.and_then(|b| b.idle_command.clone()),
            )
            .await?;
        if failures.is_empty() {
            return Ok(Some(format!(
                "resume_command ran in {}",
                list_replicas(&replicas)
            )));
        }
        Err(StepError::new(format!(
            "resume_command `{}` failed in {}; no traffic was moved to the old colour",
            command_text(resume),
            failures.join("; ")
        )))
    }

    /// Execs `command` in every replica at once; each is journalled first with `undo` (the
    /// command that reverses it) when there is one. Returns the failures, one phrase each.
    async fn exec_in(
        &self,
        host: &str,
        replicas: &[Replica],
        command: &[String],
        undo: Option<Vec<String>>,
    ) -> Result<Vec<String>, StepError> {
        let target = self
            .target(&Some(host.to_string()))
            .map_err(StepError::new)?;
        let undos: Vec<Undo> = match &undo {
            Some(undo) => replicas
                .iter()
                .map(|r| Undo::Exec {
                    host: host.to_string(),
                    id: r.container_id.clone(),
                    command: undo.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        for u in &undos {
            self.intent(u.clone())?;
        }
        let runs = replicas
            .iter()
            .map(|r| exec_bounded(&target.runtime, &r.container_id, command));
        let results = futures_util::future::join_all(runs).await;
        for u in undos {
            self.push_undo(u);
        }
        Ok(replicas
            .iter()
            .zip(results)
            .filter_map(|(r, result)| {
                result
                    .err()
                    .map(|e| format!("#{} ({}): {e}", r.index, short(&r.container_id)))
            })
            .collect())
    }

    pub(super) fn set_old_colour(&self, service: &str, colour: Option<crate::state::OldColour>) {
        if let Some(s) = self.st().services.get_mut(service) {
            s.old_colour = colour;
        }
    }
}

fn list_replicas(replicas: &[Replica]) -> String {
    let indices: Vec<u32> = replicas.iter().map(|r| r.index).collect();
    super::ids(&indices)
}

fn command_text(command: &[String]) -> String {
    command.join(" ")
}
