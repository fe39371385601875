//! `gantry promote`: continue a blue-green release held at its preview (`apply --prepare` or
//! `apply --hold-at-preview`): the preview check if it did not run yet, then the switch of
//! every load balancer in one change, the drain, and the old colour's scale-down schedule.

use std::collections::BTreeMap;
use std::io::Write;

use super::execute::{Execution, execute};
use super::outcome::{Choices, Outcome, Verb};
use super::session::Session;
use super::{Common, Error, emit, load};
use crate::engine::report::ProgressFormat;

pub fn promote(
    common: &Common,
    yes: bool,
    progress: ProgressFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let session = Session::new(common)?;
    let Some(journal) = session.held()? else {
        return Err(Error::Message(
            "nothing to promote: no release is held at its preview (`gantry apply --prepare` or `--hold-at-preview` holds one)".into(),
        ));
    };
    let (plan, origin, pinned) = {
        let held = journal
            .held()
            .ok_or_else(|| Error::Message("the held release has no plan".into()))?;
        let unfinished = journal
            .unfinished()
            .ok_or_else(|| Error::Message("the held release has ended".into()))?;
        let pinned: BTreeMap<String, (String, String)> = held
            .image_ids
            .iter()
            .map(|(image, id)| {
                (
                    image.clone(),
                    (id.clone(), format!("held revision {}", unfinished.revision)),
                )
            })
            .collect();
        (held.plan.clone(), unfinished.origin.clone(), pinned)
    };
    emit(
        out,
        &format!(
            "{}\nPromoting it runs the rest of this plan from where it stopped:\n\n",
            Choices::header_of(&journal)
        ),
    )?;
    let run = Execution {
        verb: Verb::Promote,
        model: &loaded.model,
        config_sha256: &loaded.sha256,
        origin,
        pinned,
        confirmed: yes,
        hold: crate::engine::Hold::No,
        promote: Some(journal),
        hook_origin: super::hooks::HookOrigin::Promote,
        secrets: super::hooks::secret_names(&loaded.model, None),
    };
    execute(&session, &plan, &run, progress, out, err)
}
