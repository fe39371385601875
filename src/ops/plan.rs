//! `gantry plan`: diff the configuration against the recorded state, offline.

use std::io::Write;
use std::path::PathBuf;

use super::outcome::{Choices, Outcome};
use super::session::Session;
use super::{Common, Error, emit, load};
use crate::drivers::fs::write_atomic;
use crate::render::{self, Format, GITHUB_COMMENT_LIMIT};

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub format: Format,
    pub detailed_exitcode: bool,
    pub out: Option<PathBuf>,
    /// Read the engines and show the drift (online).
    pub refresh: bool,
    /// Where to append the Markdown view (`$GITHUB_STEP_SUMMARY`), if anywhere.
    pub step_summary: Option<PathBuf>,
}

pub fn plan(
    common: &Common,
    opts: &PlanOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, Error> {
    let loaded = load(common)?;
    let session = Session::new(common)?;
    session.warn_if_readable(err)?;
    let state_dir = session.state_dir();
    let state = state_dir.read()?;
    if let Some(journal) = session.pending()? {
        // Offline, plan cannot reconcile; it says the recorded state may be behind.
        emit(
            err,
            &format!(
                "warning: {}\nThis plan is computed from the recorded state, which may be behind what the engine runs.\n\n",
                Choices::error(&journal)
            ),
        )?;
    }
    if let Some(s) = &state
        && s.project != loaded.model.project
    {
        return Err(Error::WrongProject {
            state: state_dir.state_location(),
            config: super::display_path(&common.config),
            found: s.project.clone(),
            expected: loaded.model.project.clone(),
        });
    }
    let mut plan = crate::plan::plan(&loaded.model, state.as_ref(), &loaded.sha256);
    if let (true, Some(state)) = (opts.refresh, &state) {
        let engines = session.observe(&loaded.model)?;
        let drift = crate::plan::drift::detect(state, &engines);
        crate::plan::drift::apply_to_plan(&mut plan, drift, state);
    }

    if let Some(path) = &opts.out {
        write_atomic(path, plan.to_json().as_bytes())?;
    }
    if let Some(path) = &opts.step_summary {
        append(path, &render::markdown(&plan, GITHUB_COMMENT_LIMIT))?;
    }
    let shown = match opts.format {
        Format::Text => render::text(&plan, common.color),
        Format::Markdown => render::markdown(&plan, GITHUB_COMMENT_LIMIT),
        Format::Json => render::json(&plan),
    };
    emit(out, &shown)?;
    if let (Some(path), Format::Text) = (&opts.out, opts.format) {
        emit(
            out,
            &format!(
                "\nSaved the plan to {}. Apply exactly this plan with `gantry apply {}`.\n",
                path.display(),
                path.display()
            ),
        )?;
    }
    Ok(if opts.detailed_exitcode && plan.has_changes() {
        Outcome::Changes
    } else {
        Outcome::Done
    })
}

/// GitHub's step summary is appended to, not replaced: other steps write there too.
fn append(path: &std::path::Path, text: &str) -> Result<(), Error> {
    use std::fs::OpenOptions;
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")
    };
    write().map_err(|source| {
        Error::Fs(crate::drivers::fs::FsError::Write {
            path: path.to_path_buf(),
            source,
        })
    })
}
