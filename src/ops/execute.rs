//! Where apply, rollback and promote meet once their plan is made: show the plan, confirm,
//! lock, pre-flight, journal, run the engine, and turn its outcome into the command's. What
//! differs between the three is an [`Execution`].

use std::collections::BTreeMap;
use std::io::Write;

use super::outcome::{Choices, Halt, Outcome, Verb};
use super::preflight::{preflight, stale};
use super::session::{Session, confirm, connect, now};
use super::{Error, emit};
use crate::drivers::fs::hostname;
use crate::engine::report::ProgressFormat;
use crate::engine::{self, ApplyInputs, ApplyOutcome};
use crate::plan::Plan;
use crate::state::journal::{Entry, Journal};
use crate::state::{Origin, State};

/// What differs between an apply, a rollback and a promote once the plan is made.
pub struct Execution<'a> {
    pub verb: Verb,
    /// Hosts, project and load balancers to drive.
    pub model: &'a crate::model::Model,
    pub config_sha256: &'a str,
    /// What starts the revision: an apply or a rollback (a promote keeps the held run's).
    pub origin: Origin,
    /// Image reference -> the image ID it must run (a rollback runs exactly what was
    /// recorded, never pulls); recorded as `(image ID, where it was recorded)`.
    pub pinned: BTreeMap<String, (String, String)>,
    /// No confirmation needed (`--yes`, or a saved plan file).
    pub confirmed: bool,
    /// Where a blue-green release stops (`--prepare`, `--hold-at-preview`).
    pub hold: crate::engine::Hold,
    /// `gantry promote`: the journal of the held release this continues.
    pub promote: Option<Journal>,
    /// What the run is to `[hooks]` (`GANTRY_ORIGIN`).
    pub hook_origin: super::hooks::HookOrigin,
    /// Secret variable names hooks must not get, beyond those of `model` and the state
    /// (the configuration's, when `model` is a recorded revision's).
    pub secrets: std::collections::BTreeSet<String>,
}

/// Shows the plan, confirms, locks, runs pre-flight and the engine; returns how it ended.
pub fn execute(
    session: &Session<'_>,
    plan: &Plan,
    run: &Execution<'_>,
    progress: ProgressFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let state_dir = session.state_dir();
    let config_dir = session.common().config_dir();
    let state = state_dir.read()?;
    let verb = run.verb;
    emit(out, &crate::render::text(plan, session.common().color))?;
    if !plan.has_changes() {
        return Ok(Outcome::NoChanges);
    }
    let lbs = crate::drivers::lb::drivers(run.model, state.as_ref(), &config_dir);
    for (name, lb) in &lbs {
        session.block_on(lb.preflight())?.map_err(|e| {
            Error::Message(format!("pre-flight: lb.{name}: {e}; nothing was changed"))
        })?;
    }
    let driven: Vec<String> = lbs.keys().cloned().collect();
    if let Some((resource, why)) = engine::unsupported_step(plan, &driven) {
        return Err(Error::Message(format!(
            "cannot {verb} {resource}: {why}; nothing was changed"
        )));
    }
    confirm(verb.as_str(), run.confirmed, out)?;

    let lock = session.lock(verb.operation(), err)?;
    // Re-read under the lock: another run may have finished in between. (A promote continues
    // a run that moved the state itself.)
    let state = state_dir.read()?;
    if let (Some(why), None) = (stale(plan, state.as_ref(), run.config_sha256), &run.promote) {
        return Err(Error::StalePlan {
            why,
            plan_file: None,
        });
    }
    if let Some(journal) = session.pending()? {
        return Err(Choices::error(&journal));
    }
    let state =
        state.unwrap_or_else(|| State::empty(&run.model.project, uuid::Uuid::new_v4().to_string()));
    let revision = match run.promote.as_ref().and_then(Journal::unfinished) {
        Some(held) => held.revision,
        None => state.next_revision(),
    };
    let mut secrets = super::hooks::secret_names(run.model, Some(&state));
    secrets.extend(run.secrets.iter().cloned());
    let hooks = super::hooks::HookRun {
        hooks: &run.model.hooks,
        config_dir: config_dir.clone(),
        project: run.model.project.clone(),
        revision,
        origin: run.hook_origin,
        services: super::hooks::changed_services(plan),
        plan: Some(plan),
        secrets,
    };

    let kept = kept_volumes(plan, run.model);
    let result = session.block_on(async {
        // Pre-flight: nothing is touched until every check passes.
        let mut hosts = connect(run.model).await?;
        // Per-layer progress of pre-flight's pulls on a terminal; the reporter's afterwards.
        if let Some(bars) = super::pull_bars::PullBars::for_terminal(progress) {
            for (name, t) in hosts.iter_mut() {
                t.runtime
                    .set_pull_observer(Some((name.as_str(), bars.clone())));
            }
        }
        let pulled = preflight(
            plan,
            &state,
            &hosts,
            &config_dir,
            &run.pinned,
            &run.model.registries,
        )
        .await;
        for t in hosts.values_mut() {
            t.runtime.set_pull_observer(None);
        }
        let (env, image_ids, image_digests) = pulled?;
        // The user's last word before anything changes.
        hooks.before(err)?;

        // The journal announces the run (and the state it starts from) before any change; a
        // promote appends to the held run's.
        let journal = match &run.promote {
            Some(_) => session.reopen_journal()?,
            None => session.begin_journal(&Entry::Begin {
                revision: state.next_revision(),
                origin: run.origin.clone(),
                pid: std::process::id(),
                host: hostname(),
                at: now(),
                prior: Box::new(state.clone()),
            })?,
        };
        let running = session.start(lock, journal, run.model, (hosts, lbs), progress)?;
        let inputs = ApplyInputs {
            env: &env,
            image_ids: &image_ids,
            image_digests: &image_digests,
            origin: run.origin.clone(),
            hold: run.hold,
        };
        let (outcome, state) = match &run.promote {
            Some(held) => engine::promote(held, state, &running.env(), &inputs)
                .await
                .ok_or_else(|| Error::Message("no release is held at its preview".into()))?,
            None => engine::apply(plan, state, &running.env(), &inputs).await,
        };
        // The lock goes before the outcome is told: the scale-down timer takes it.
        drop(running);
        match outcome {
            ApplyOutcome::Succeeded { revision } => Ok(Outcome::Completed {
                verb,
                origin: run.origin.clone(),
                revision,
                summary: plan.summary.line(),
                timer: super::scale_down::start_timer(session.common(), &state),
            }),
            ApplyOutcome::RolledBack { failure } => Err(Error::Restored { verb, failure }),
            ApplyOutcome::Unchanged { failure } => Err(Error::Message(format!(
                "{failure}\nNothing had changed: the services run as before."
            ))),
            ApplyOutcome::Halted {
                failure,
                restore_error,
            } => Err(Error::Halted(Box::new(Halt::Failed {
                verb,
                failure,
                restore_error,
            }))),
            ApplyOutcome::Held { revision } => Ok(Outcome::Held { revision }),
            ApplyOutcome::Interrupted { after } => {
                Err(Error::Halted(Box::new(Halt::Interrupted {
                    after,
                    unfinished: state.history.last().map_or(0, |r| r.revision),
                    prior: state.revision,
                })))
            }
        }
    })?;
    hooks.after(&result, err);
    if let Ok(Outcome::Completed { .. }) = &result {
        for line in kept {
            emit(out, &format!("{line}\n"))?;
        }
    }
    result
}

/// What an apply that destroys services says of their named volumes: kept, with how to
/// remove them (those another service still declares are not named).
fn kept_volumes(plan: &Plan, model: &crate::model::Model) -> Vec<String> {
    let project = model.project.as_str();
    let declared = engine::declared_volumes(project, model.services.values());
    let mut kept = std::collections::BTreeSet::new();
    for c in plan.changes.iter().filter(|c| {
        c.action == crate::plan::Action::Destroy
            && c.address.kind == crate::graph::ResourceKind::Service
    }) {
        if let Some(crate::plan::Spec::Service(spec)) = &c.before {
            for v in engine::declared_volumes(project, [spec.as_ref()]) {
                if !declared.contains(&v) {
                    kept.insert(format!(
                        "{}: kept volume {v} (remove with `gantry prune --volumes`)",
                        c.address
                    ));
                }
            }
        }
    }
    kept.into_iter().collect()
}
