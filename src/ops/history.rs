//! `gantry history` and `gantry force-unlock`: reading what the state records.

use std::io::Write;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use super::{Common, Error, emit};

pub fn history(common: &Common, out: &mut dyn Write) -> Result<(), Error> {
    let state_dir = common.store()?;
    let Some(state) = state_dir.read()? else {
        return emit(
            out,
            "No history: nothing has been applied with this state directory yet.\n",
        );
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "revision", "started", "finished", "origin", "images", "outcome",
    ]);
    for r in &state.history {
        let images: Vec<String> = r
            .services
            .iter()
            .map(|(n, s)| format!("{n}: {}", s.spec.image))
            .collect();
        let mut outcome = r.outcome.describe().to_string();
        if r.revision == state.revision {
            outcome.push_str(" (current)");
        }
        table.add_row([
            r.revision.to_string(),
            r.started_at.clone(),
            r.finished_at.clone().unwrap_or_else(|| "-".into()),
            r.origin.to_string(),
            images.join("\n"),
            outcome,
        ]);
    }
    emit(out, &format!("{table}\n"))
}

pub fn force_unlock(common: &Common, out: &mut dyn Write) -> Result<(), Error> {
    match super::session::Session::new(common)?
        .state_dir()
        .force_unlock()?
    {
        Some(h) => emit(
            out,
            &format!(
                "Removed the lock held by {} (pid {} on {}, {} since {}).\n",
                h.holder, h.pid, h.host, h.operation, h.started_at
            ),
        ),
        None => emit(out, "There was no lock.\n"),
    }
}
