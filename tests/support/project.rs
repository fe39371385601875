//! What the Docker tests' projects share: the guard's labels for a service's `labels = ...`,
//! running the gantry binary in the project's directory, reading its output, and listing the
//! project's containers on the main engine. Each test writes its own `gantry.toml`.
//!
//! ```ignore
//! mod support;
//! use support::project::{self, code, explain};
//!
//! let labels = project::labels_toml(&guard); // { "gantry.test-run" = "...", ... }
//! let o = project::gantry(dir.path(), &["apply", "--yes"]);
//! assert_eq!(code(&o), 0, "{}", explain(&o));
//! let names = project::containers(&[&project::label_filter(&name)], "{{.Names}}");
//! ```
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::docker::{self, DockerTestGuard};

/// The label gantry puts on every container of a project, its value the project's name.
pub const PROJECT_LABEL: &str = "dev.gantry.project";
/// How long one run of gantry may take before the test fails.
pub const GANTRY_TIMEOUT: Duration = Duration::from_secs(180);

/// The guard's labels as a TOML inline table, for a service's `labels`:
/// `{ "gantry.test-run" = "<run>", "gantry.test-scope" = "<scope>" }`.
pub fn labels_toml(guard: &DockerTestGuard) -> String {
    let pairs: Vec<String> = guard
        .labels()
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            format!("\"{k}\" = \"{v}\"")
        })
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// `gantry ARGS` in `dir`, without colours (`NO_COLOR=1`) and without stdin; not started.
pub fn gantry_command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gantry"));
    c.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// Runs `gantry ARGS` in `dir` (see [`gantry_command`]) and returns its output, whatever its
/// status; panics when it does not finish within [`GANTRY_TIMEOUT`].
pub fn gantry(dir: &Path, args: &[&str]) -> Output {
    docker::run_with_timeout(gantry_command(dir, args), GANTRY_TIMEOUT)
        .unwrap_or_else(|e| panic!("gantry {args:?}: {e}"))
}

/// The exit code, `-1` when gantry was killed by a signal.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The exit code, stdout and stderr, for assertion messages.
pub fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `label=dev.gantry.project=<project>`: the containers gantry made for `project`.
pub fn label_filter(project: &str) -> String {
    format!("label={PROJECT_LABEL}={project}")
}

/// The containers of the main engine, stopped ones included, that match every `--filter` in
/// `filters`: one line each in `format` (`docker ps --format`), sorted.
pub fn containers(filters: &[&str], format: &str) -> Vec<String> {
    let mut args = vec!["ps", "-a", "--format", format];
    for f in filters {
        args.extend(["--filter", f]);
    }
    let mut lines: Vec<String> = docker::docker_ok(&args)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}
