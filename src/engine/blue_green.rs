//! Blue-green steps: the preview check against the new colour before any user traffic moves,
//! and the old colour's scale-down after the switch (now, or kept for switch-back until a
//! deadline that `gantry scale-down` honours).

use std::time::Duration;

use tokio::time::Instant;

use super::run::Run;
use super::{StepError, service_spec};
use crate::plan::{ResourceChange, Step, StepOp};
use crate::ports::ContainerRuntime;
use crate::state::Replica;

/// How long a blue-green preview check may run.
const PREVIEW_CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a failing preview check is tried again.
const PREVIEW_CHECK_RETRIES: Duration = Duration::from_secs(5);

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
                    let beyond: Vec<Replica> =
                        colour.into_iter().filter(|r| r.index > *keep).collect();
                    self.stop_replicas(service, &host, &spec, &beyond, spec.stop_grace_period.0)
                        .await?;
                    self.set_old_colour(
                        service,
                        (*keep > 0).then_some(crate::state::OldColour {
                            revision: live,
                            scale_down_at: None,
                            keep: *keep,
                        }),
                    );
                    return Ok(Some(format!(
                        "old colour (revision {live}) down to {keep} running"
                    )));
                }
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
                    "old colour (revision {live}) keeps running for switch-back until {at}, then `gantry scale-down` takes it down to {keep}"
                )))
            }
            other => Err(StepError::new(format!(
                "{other:?} is not a blue-green step"
            ))),
        }
    }

    pub(super) fn set_old_colour(&self, service: &str, colour: Option<crate::state::OldColour>) {
        if let Some(s) = self.st().services.get_mut(service) {
            s.old_colour = colour;
        }
    }
}
