//! `gantry rollback [--to REVISION]`: back to a recorded revision, through the same rolling
//! steps, probes and load-balancer membership as apply, running exactly the image IDs that
//! revision recorded (a tag may have moved since), never pulling.

use std::collections::BTreeMap;
use std::io::Write;

use super::execute::{Execution, execute};
use super::outcome::{self, Verb};
use super::session::Session;
use super::{Common, Error, emit, load};
use crate::engine::recover::Recovered;
use crate::engine::report::ProgressFormat;
use crate::model::Model;
use crate::state::{Origin, Outcome};

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub to: Option<u64>,
    pub yes: bool,
    pub progress: ProgressFormat,
    /// Create new containers even where kept ones could be started again.
    pub recreate: bool,
}

pub fn rollback(
    common: &Common,
    opts: &RollbackOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<outcome::Outcome, Error> {
    let loaded = load(common)?;
    let session = Session::new(common)?;
    session.warn_if_readable(err)?;
    session.upload_kept_copies("rollback", err)?;
    let state_dir = session.state_dir();
    let pending = match session.pending()? {
        Some(j) => Some(j),
        None => session.held()?,
    };
    if let Some(journal) = pending {
        // A run died half way, or a release is held at its preview: rolling back starts by
        // undoing it.
        let was_rollback = journal
            .unfinished()
            .is_some_and(|u| matches!(u.origin, Origin::Rollback { .. }));
        match super::recover::undo_confirmed(
            &session,
            &loaded.model,
            &journal,
            "Rolling back starts by undoing it.\n",
            (opts.yes, opts.progress),
            out,
            err,
        )? {
            Recovered::Undone { revision }
                if !was_rollback && opts.to.is_none_or(|n| n == revision) =>
            {
                return Ok(outcome::Outcome::Undone { revision });
            }
            // Undone, and the rollback goes on from there.
            Recovered::Undone { revision } => emit(
                out,
                &outcome::human(&Ok(outcome::Outcome::Undone { revision })).1,
            )?,
            _ => {}
        }
    }
    let state = state_dir.read()?.ok_or_else(|| {
        Error::Message("nothing to roll back: nothing was applied with this state directory".into())
    })?;
    let succeeded: Vec<u64> = state
        .history
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .map(|r| r.revision)
        .collect();
    let target = match opts.to {
        Some(n) if n == state.revision => {
            return Err(Error::Message(format!(
                "revision {n} is the one running now"
            )));
        }
        Some(n) => n,
        // The newest successful revision before the current one that no rollback has left
        // (rolling back twice must not bring the bad revision back).
        None => *succeeded
            .iter()
            .rev()
            .filter(|r| **r < state.revision)
            .find(|r| {
                !state.history.iter().any(|h| {
                    h.outcome == Outcome::Succeeded
                        && matches!(h.origin, Origin::Rollback { from, .. } if from == **r)
                })
            })
            .ok_or_else(|| {
                Error::Message(format!(
                    "no earlier successful revision than {} to roll back to",
                    state.revision
                ))
            })?,
    };
    let record = state
        .history
        .iter()
        .find(|r| r.revision == target && r.outcome == Outcome::Succeeded)
        .ok_or_else(|| {
            let list: Vec<String> = succeeded.iter().map(u64::to_string).collect();
            Error::Message(format!(
                "revision {target} is not a successful revision of the history (those are: {})",
                list.join(", ")
            ))
        })?;
    // The revision's services; the load balancers as they are now; the hosts of the config.
    let model = Model {
        project: state.project.clone(),
        keep_previous: loaded.model.keep_previous,
        state: loaded.model.state.clone(),
        labels: loaded.model.labels.clone(),
        hosts: loaded.model.hosts.clone(),
        services: record
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.spec.clone()))
            .collect(),
        lbs: state
            .lbs
            .iter()
            .map(|(n, l)| (n.clone(), l.spec.clone()))
            .collect(),
        lb_hosts: loaded.model.lb_hosts.clone(),
        // Migrations only go forward: a rollback runs no task.
        tasks: BTreeMap::new(),
        hooks: loaded.model.hooks.clone(),
        registries: loaded.model.registries.clone(),
    };
    let pinned: BTreeMap<String, (String, String)> = record
        .services
        .values()
        .filter_map(|s| {
            Some((
                s.spec.image.clone(),
                (s.image_id.clone()?, format!("revision {target}")),
            ))
        })
        .collect();
    let mut plan = crate::plan::plan(&model, Some(&state), &loaded.sha256);
    crate::plan::for_rollback(&mut plan, &state, target, !opts.recreate);
    let run = Execution {
        verb: Verb::RollBack,
        model: &model,
        config_sha256: &loaded.sha256,
        origin: Origin::Rollback {
            to: target,
            from: state.revision,
        },
        pinned,
        confirmed: opts.yes,
        hold: crate::engine::Hold::No,
        promote: None,
        hook_origin: super::hooks::HookOrigin::Rollback,
        secrets: super::hooks::secret_names(&loaded.model, None),
    };
    execute(&session, &plan, &run, opts.progress, out, err)
}
