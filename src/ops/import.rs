//! `gantry import FILE [-o gantry.toml]`: a Compose file as a gantry configuration.
//!
//! The op does the reading and writing around the pure `compose::import`: the Compose
//! file, the variables Compose would see (the environment, then `.env` beside the file),
//! the env files the result names, and the output. It refuses to overwrite a file unless
//! `--force`, and writes the list of what was not mapped to stderr (or a JSON report to
//! stdout with `--format json`). Exit 0 when the configuration is written, unmapped items
//! or not; 1 when the Compose file cannot be read or parsed (with `file:line:col`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Error, emit};
use crate::compose::write::comment_text as printable;
use crate::compose::{self, REPORT_FORMAT_VERSION, Report};
use crate::drivers::fs::{EnvFiles, read_to_string, write_atomic};

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Lines on stderr.
    Text,
    /// One JSON object on stdout (`schemas/import.schema.json`).
    Json,
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The Compose file.
    pub file: PathBuf,
    /// Where to write the configuration; `-` is stdout.
    pub output: PathBuf,
    /// Overwrite `output` when it exists.
    pub force: bool,
    pub format: ReportFormat,
    /// The project name (else `COMPOSE_PROJECT_NAME`, the file's `name:`, its directory).
    pub project_name: Option<String>,
}

pub fn import(opts: &ImportOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Error> {
    let to_stdout = opts.output.as_os_str() == "-";
    if to_stdout && opts.format == ReportFormat::Json {
        return Err(Error::Message(
            "`-o -` and `--format json` both write to stdout: write the configuration to a file, or take the text report from stderr".into(),
        ));
    }
    if !to_stdout && opts.output.exists() && !opts.force {
        return Err(Error::Message(format!(
            "{} exists; nothing was written (pass --force to replace it, or -o to write elsewhere)",
            opts.output.display()
        )));
    }
    let source = read_to_string(&opts.file)?;
    let compose_dir = absolute_dir(&opts.file);
    let out_dir = if to_stdout {
        absolute(Path::new("."))
    } else {
        absolute_dir(&opts.output)
    };

    // Compose's variables: the environment first, then `.env` beside the Compose file.
    let dot_env = read_dot_env(&compose_dir.join(".env"))?;
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| dot_env.get(name).cloned())
    };
    let files = EnvFiles {
        base: out_dir.clone(),
    };
    let shown = opts.file.display().to_string();
    let file_name = opts
        .file
        .file_name()
        .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
    let input = compose::Input {
        source: &source,
        file: &file_name,
        compose_dir: compose_dir.clone(),
        same_dir: compose_dir == out_dir,
        lookup: &lookup,
        files: &files,
        project_name: opts.project_name.as_deref(),
    };
    let imported = compose::import(&input).map_err(|e| {
        Error::Message(format!(
            "{shown}:{}:{}: {}; nothing was written",
            e.line, e.column, e.message
        ))
    })?;

    let output_shown = opts.output.display().to_string();
    if to_stdout {
        emit(out, &imported.toml)?;
    } else {
        write_atomic(&opts.output, imported.toml.as_bytes())?;
    }

    // The written file must be a valid configuration; if not, that is import's bug, and
    // the user should see gantry's own words for it.
    let raw = crate::config::parse(&imported.toml);
    let invalid = crate::model::validate(raw, &files).err();

    match opts.format {
        ReportFormat::Json => {
            let report = Report {
                format_version: REPORT_FORMAT_VERSION,
                file: shown.clone(),
                output: output_shown.clone(),
                project: imported.project.clone(),
                services: imported.services.clone(),
                tasks: imported.tasks.clone(),
                unmapped: imported.unmapped.clone(),
                notes: imported.notes.clone(),
            };
            let json =
                serde_json::to_string_pretty(&report).map_err(|e| Error::Message(e.to_string()))?;
            emit(out, &format!("{json}\n"))?;
        }
        ReportFormat::Text => {
            emit(
                err,
                &text_report(&imported, &file_name, &output_shown, to_stdout),
            )?;
        }
    }
    if let Some(diags) = invalid {
        let rendered =
            crate::diag::render_diagnostics(&output_shown, &imported.toml, &diags, false);
        emit(
            err,
            &format!(
                "warning: the written configuration does not validate (a bug of `gantry import`; please report it):\n{rendered}"
            ),
        )?;
    }
    Ok(())
}

fn text_report(imported: &compose::Imported, file: &str, output: &str, to_stdout: bool) -> String {
    let file = &printable(file);
    let mut s = String::new();
    let services = imported.services.join(", ");
    let plural = if imported.services.len() == 1 {
        ""
    } else {
        "s"
    };
    if to_stdout {
        s.push_str(&format!(
            "imported {file}: project `{}`, {} service{plural} ({services})\n",
            imported.project,
            imported.services.len()
        ));
    } else {
        s.push_str(&format!(
            "wrote {output}: project `{}`, {} service{plural} ({services})\n",
            imported.project,
            imported.services.len()
        ));
    }
    if !imported.tasks.is_empty() {
        s.push_str(&format!("tasks: {}\n", imported.tasks.join(", ")));
    }
    if imported.unmapped.is_empty() {
        s.push_str("everything was mapped.\n");
    } else {
        s.push_str(&format!("not mapped ({}):\n", imported.unmapped.len()));
        for u in &imported.unmapped {
            s.push_str(&format!(
                "  {file}:{}  {}: {}\n",
                u.line,
                printable(&u.key),
                printable(&u.reason)
            ));
        }
    }
    if !imported.notes.is_empty() {
        s.push_str(&format!("to look at ({}):\n", imported.notes.len()));
        for n in &imported.notes {
            s.push_str(&format!(
                "  {file}:{}  {}: {}\n",
                n.line,
                printable(&n.key),
                printable(&n.message)
            ));
        }
    }
    if !to_stdout {
        s.push_str(&format!(
            "next: gantry validate -f {output} && gantry plan -f {output}\n"
        ));
    }
    s
}

/// The `.env` beside the Compose file, as Compose reads it; absent is empty.
fn read_dot_env(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = read_to_string(path)?;
    let mut vars = BTreeMap::new();
    for (i, item) in dotenvy::from_read_iter(text.as_bytes()).enumerate() {
        match item {
            Ok((k, v)) => {
                vars.insert(k, v);
            }
            // Never echo the line: it may hold a secret.
            Err(_) => {
                return Err(Error::Message(format!(
                    "{}: entry {} is not `KEY=value`; nothing was written",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    Ok(vars)
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}

/// The absolute directory of a file path (its parent, or `.`).
fn absolute_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => absolute(p),
        _ => absolute(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compose text quoted in the report (a key, a value in a note) reaches the terminal
    /// with its control characters escaped: no escape sequence of the file's is sent.
    #[test]
    fn the_text_report_escapes_control_characters() {
        let imported = compose::Imported {
            toml: String::new(),
            project: "p".into(),
            services: vec!["web".into()],
            tasks: Vec::new(),
            unmapped: vec![compose::Unmapped {
                line: 3,
                column: 5,
                key: "services.web.x\u{1b}[2J".into(),
                reason: "`\u{1b}]0;title\u{7}`".into(),
            }],
            notes: vec![compose::Note {
                line: 4,
                key: "services.web.image".into(),
                message: "a\rb".into(),
            }],
        };
        let text = text_report(&imported, "compose.yaml", "gantry.toml", false);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("x\\u{1b}[2J"), "{text:?}");
    }
}
