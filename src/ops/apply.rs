//! `gantry apply [PLANFILE]`: plan (or load a saved plan), show it, confirm, lock, pre-flight,
//! then run the engine against the real Docker engine(s).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::execute::{Execution, execute};
use super::hooks::{HookOrigin, HookRun};
use super::outcome::{Choices, Outcome, Verb};
use super::session::Session;
use super::{Common, Error, emit, load};
use crate::engine::recover::{Mode, Recovered};
use crate::engine::report::ProgressFormat;
use crate::plan::Plan;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub plan_file: Option<PathBuf>,
    pub yes: bool,
    pub progress: ProgressFormat,
    /// After a run that did not finish: reconcile, then continue.
    pub resume: bool,
    /// After a run that did not finish: undo it.
    pub undo: bool,
    /// Read the engines first and repair drift (as `plan --refresh`).
    pub refresh: bool,
    /// Blue-green: stop the release at its preview (`--prepare`, `--hold-at-preview`).
    pub hold: crate::engine::Hold,
}

pub fn apply(
    common: &Common,
    opts: &ApplyOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let session = Session::new(common)?;
    session.warn_if_readable(err)?;
    session.upload_kept_copies("apply", err)?;
    let state_dir = session.state_dir();
    let mut resumed = false;
    if let Some(journal) = session.pending()? {
        if opts.undo {
            let result = super::recover::undo_confirmed(
                &session,
                &loaded.model,
                &journal,
                "",
                (opts.yes, opts.progress),
                out,
                err,
            )
            .map(|r| match r {
                Recovered::Undone { revision } => Outcome::Undone { revision },
                _ => Outcome::Done,
            });
            undo_hook(common, &loaded.model, &journal, &result, err);
            return result;
        }
        if !opts.resume {
            return Err(Choices::error(&journal));
        }
        emit(out, &format!("{}\n", Choices::header_of(&journal)))?;
        let lbs = crate::drivers::lb::drivers(
            &loaded.model,
            state_dir.read()?.as_ref(),
            &common.config_dir(),
        );
        match super::recover::recover(
            &session,
            &loaded.model,
            &journal,
            (Mode::Resume, opts.progress),
            lbs,
            out,
            err,
        )? {
            Recovered::ReadyToResume => resumed = true,
            Recovered::Undone { revision } => return Ok(Outcome::Undone { revision }),
            Recovered::Halted { .. } => return Ok(Outcome::Done),
        }
    } else if opts.undo {
        return Ok(Outcome::NothingToUndo);
    }
    if let Some(journal) = session.held()? {
        return Err(Choices::error(&journal));
    }
    let state = state_dir.read()?;

    let plan = match &opts.plan_file {
        Some(path) => {
            let text = crate::drivers::fs::read_to_string(path)?;
            let plan = Plan::from_json(&text).map_err(|e| {
                Error::Message(format!("{} is not a gantry plan file: {e}", path.display()))
            })?;
            if let Some(why) = super::preflight::stale(&plan, state.as_ref(), &loaded.sha256) {
                return Err(Error::StalePlan {
                    why,
                    plan_file: Some(path.clone()),
                });
            }
            plan
        }
        None => {
            let mut plan = crate::plan::plan(&loaded.model, state.as_ref(), &loaded.sha256);
            if let (true, Some(state)) = (opts.refresh, &state) {
                let engines = session.observe(&loaded.model)?;
                let drift = crate::plan::drift::detect(state, &engines);
                crate::plan::drift::apply_to_plan(&mut plan, drift, state);
            }
            plan
        }
    };
    let run = Execution {
        verb: Verb::Apply,
        model: &loaded.model,
        config_sha256: &loaded.sha256,
        origin: crate::state::Origin::Apply,
        pinned: BTreeMap::new(),
        confirmed: opts.yes || opts.plan_file.is_some(),
        hold: opts.hold,
        promote: None,
        hook_origin: match resumed {
            true => HookOrigin::Resume,
            false => HookOrigin::Apply,
        },
        secrets: super::hooks::secret_names(&loaded.model, None),
    };
    execute(&session, &plan, &run, opts.progress, out, err)
}

/// `after_rollback` of an `apply --undo` (origin `undo`): the revision undone, the services
/// its steps had reached, and no plan.
fn undo_hook(
    common: &Common,
    model: &crate::model::Model,
    journal: &crate::state::journal::Journal,
    result: &Result<Outcome, Error>,
    err: &mut dyn Write,
) {
    let Some(unfinished) = journal.unfinished() else {
        return;
    };
    let mut services: Vec<String> = journal
        .entries
        .iter()
        .filter_map(|e| match e {
            crate::state::journal::Entry::StepStarted { resource, .. } => {
                resource.strip_prefix("service.").map(str::to_string)
            }
            _ => None,
        })
        .collect();
    services.sort();
    services.dedup();
    HookRun {
        hooks: &model.hooks,
        config_dir: common.config_dir(),
        project: model.project.clone(),
        revision: unfinished.revision,
        origin: HookOrigin::Undo,
        services,
        plan: None,
        secrets: super::hooks::secret_names(model, Some(unfinished.prior)),
    }
    .after(result, err);
}
