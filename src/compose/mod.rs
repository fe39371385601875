//! `gantry import`: a Compose file (version 2, 3 or the Compose specification, `deploy:`
//! included) as a gantry configuration, and the list of what could not be mapped.
//!
//! Why a module of the core: importing is a pure function of the Compose text, the
//! variables Compose would see, and what is known of the env files. The op
//! (`ops::import`) reads those and writes the result; everything here is testable without
//! a file system.
//!
//! The layers, each in its own file:
//! - [`yaml`]: the YAML tree with a line and column on every node;
//! - [`interpolate`]: `${VAR}` the way Compose resolves it;
//! - [`map`]: Compose keys to gantry keys, and an [`Unmapped`] entry with a reason for
//!   everything else, so that nothing is dropped silently;
//! - [`write`](mod@write): the TOML text, each line commented with the Compose line it came from.
//!
//! The written configuration is checked with gantry's own parser and validator before it
//! is returned: a value that gantry refuses (a capability it does not know, a duration it
//! cannot read) is taken out again and listed, with gantry's reason.

pub mod interpolate;
pub mod map;
pub mod write;
pub mod yaml;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use crate::model::FileFacts;

/// What the import reads, passed in by the caller.
pub struct Input<'a> {
    /// The Compose file's text.
    pub source: &'a str,
    /// The file's name as comments and reports show it (`docker-compose.yaml`).
    pub file: &'a str,
    /// The Compose file's directory, absolute: relative paths in it are relative to this.
    pub compose_dir: PathBuf,
    /// Whether the output is written in `compose_dir`: relative env file paths are then
    /// kept as written, else made absolute.
    pub same_dir: bool,
    /// Variables as Compose sees them: the environment, then the `.env` file.
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Env files, by the path written into the output (relative to its directory).
    pub files: &'a dyn FileFacts,
    /// `--project-name`, when given.
    pub project_name: Option<&'a str>,
}

/// The result of an import.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// The gantry configuration, TOML.
    #[serde(skip)]
    pub toml: String,
    pub project: String,
    /// The services written, by gantry name.
    pub services: Vec<String>,
    /// The tasks written, by gantry name.
    pub tasks: Vec<String>,
    /// What is not in the output, each with its line and why.
    pub unmapped: Vec<Unmapped>,
    /// What is in the output but needs a look (secrets to provide, names changed, ...).
    pub notes: Vec<Note>,
}

/// The version of [`Report`]'s JSON form (`schemas/import.schema.json`).
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// `gantry import --format json`: what was written and what was not.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(title = "gantry import report (gantry import --format json)")]
pub struct Report {
    pub format_version: u32,
    /// The Compose file, as given.
    pub file: String,
    /// Where the configuration was written (`-` for stdout).
    pub output: String,
    /// The gantry project name written.
    pub project: String,
    /// The services written, by gantry name.
    pub services: Vec<String>,
    /// The `[task.NAME]`s written (services that ran to completion before another).
    pub tasks: Vec<String>,
    /// What is not in the written configuration, each with its line and why.
    pub unmapped: Vec<Unmapped>,
    /// What is in it but needs a look: secrets to export, names changed, moving tags.
    pub notes: Vec<Note>,
}

/// A Compose key (or value) that is not in the written configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Unmapped {
    /// 1-based line in the Compose file.
    pub line: usize,
    /// 1-based column; 0 when only the line is known.
    pub column: usize,
    /// Dotted Compose path: `services.app.deploy.resources.reservations.cpus`.
    pub key: String,
    pub reason: String,
}

/// Something mapped that the user must know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Note {
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// The Compose file cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Imports a Compose file. `Err` only when the file cannot be read as Compose at all (YAML
/// syntax, not a mapping, a `${VAR:?message}` whose variable is unset).
pub fn import(input: &Input<'_>) -> Result<Imported, ImportError> {
    let mut tree = yaml::parse(input.source).map_err(|e| {
        let mut message = e.message;
        if message.contains("anchor") {
            // `image: ****:****` (a masked value) reads as an alias in YAML.
            message.push_str(" (a plain value cannot start with `*`, YAML's alias sign: quote it)");
        }
        ImportError {
            line: e.line,
            column: e.col,
            message,
        }
    })?;
    let mut mapper = map::Mapper::new(input);
    mapper.interpolate(&mut tree)?;
    let mut doc = mapper.map(&tree)?;
    // Whatever gantry's own validation refuses comes out again, with its reason. Each
    // round takes out at least one entry, so this ends.
    let mut text;
    loop {
        let (rendered, positions) = write::render(&doc, input.file);
        text = rendered;
        let raw = crate::config::parse(&text);
        let Err(diags) = crate::model::validate(raw, input.files) else {
            break;
        };
        let mut hits: Vec<(usize, usize, String)> = Vec::new();
        for d in &diags {
            let Some(span) = &d.span else { continue };
            if let Some((_, (t, e))) = positions.iter().find(|(r, _)| r.contains(&span.start)) {
                let mut reason = format!("gantry refuses it: {}", d.message);
                if let Some(help) = &d.help {
                    reason.push_str(&format!(" ({help})"));
                }
                if !hits.iter().any(|(ht, he, _)| ht == t && he == e) {
                    hits.push((*t, *e, reason));
                }
            }
        }
        if hits.is_empty() {
            break; // not an entry's fault: the caller validates again and reports it
        }
        hits.sort_by_key(|b| std::cmp::Reverse((b.0, b.1)));
        for (t, e, reason) in hits {
            let entry = doc.tables[t].entries.remove(e);
            mapper.unmapped_entry(&entry, reason, &mut doc.tables[t]);
        }
    }
    Ok(mapper.finish(text))
}

#[cfg(test)]
mod tests;
