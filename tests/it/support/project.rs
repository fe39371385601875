//! The one project fixture of the tests that run gantry against an engine: a temporary
//! directory, a project name unique in the test process, the guard's labels for a service's
//! `labels = ...`, writing `gantry.toml`, running the gantry binary there (always under a
//! deadline) and reading what it did. Each test still writes its own TOML, in the test, with
//! [`Project::write_toml`]; fixtures of an area (an nginx in front, a second engine) wrap a
//! `Project` and add theirs.
//!
//! ```ignore
//! use crate::support::project::{Project, code, explain};
//!
//! let p = Project::new("t", &guard);           // name "t<pid>-<n>", labels of `guard`
//! p.write_toml(&format!(r#"[project]
//! name = "{name}"
//! [service.web]
//! image = "app:1"
//! labels = {labels}
//! "#, name = p.name, labels = p.labels));
//! let o = p.gantry(&["apply", "--yes"]);      // panics (with the output) after 180 s
//! assert_eq!(code(&o), 0, "{}", explain(&o));
//! let names = p.containers(&[], "{{.Names}}");
//! ```
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::docker::{self, DockerTestGuard};
use super::process::{Background, run_with_timeout};

/// The label gantry puts on every container of a project, its value the project's name.
pub const PROJECT_LABEL: &str = "dev.gantry.project";
/// How long one run of gantry may take before the test fails.
pub const GANTRY_TIMEOUT: Duration = Duration::from_secs(180);

/// A gantry project in a temporary directory of its own.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// `<prefix><pid>-<n>`: unique among the projects of this test process.
    pub name: String,
    /// The guard's labels as a TOML inline table (see [`labels_toml`]).
    pub labels: String,
}

impl Project {
    /// A new project named `<prefix><pid>-<n>`, labelled by `guard`; nothing written yet.
    /// What gantry makes for it (containers, project network, volumes) is removed when
    /// `guard` drops, labelled with the guard's labels or not.
    pub fn new(prefix: &str, guard: &DockerTestGuard) -> Project {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}{}-{n}", std::process::id());
        guard.track_project(&name);
        Project {
            dir: tempfile::tempdir().unwrap(),
            name,
            labels: labels_toml(guard),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the project's directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `gantry.toml`. A `[project]` table without `labels` gets the guard's, so that
    /// the networks and volumes gantry creates for the project carry them and the guard
    /// removes them with the test's containers.
    pub fn write_toml(&self, toml: &str) {
        std::fs::write(
            self.join("gantry.toml"),
            with_project_labels(toml, &self.labels),
        )
        .unwrap();
    }

    /// The current `gantry.toml`.
    pub fn toml(&self) -> String {
        std::fs::read_to_string(self.join("gantry.toml")).unwrap()
    }

    /// Rewrites `gantry.toml` through `edit`.
    pub fn edit_toml(&self, edit: impl FnOnce(String) -> String) {
        self.write_toml(&edit(self.toml()));
    }

    /// `gantry ARGS` here, to completion (see [`gantry`]).
    pub fn gantry(&self, args: &[&str]) -> Output {
        gantry(self.path(), args)
    }

    /// `gantry ARGS` here, not started (see [`gantry_command`]).
    pub fn command(&self, args: &[&str]) -> Command {
        gantry_command(self.path(), args)
    }

    /// `gantry ARGS` here in the background, stderr collected, stdout dropped; killed if the
    /// test ends before it does. Wait for it with [`Background::wait`].
    pub fn spawn(&self, args: &[&str]) -> Background {
        let mut c = self.command(args);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        Background::spawn(c, &format!("gantry {}", args.join(" ")))
    }

    /// [`Self::spawn`] with stdout and stderr appended to `log` instead.
    pub fn spawn_logged(&self, args: &[&str], log: &Path) -> Background {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap()
        };
        let mut c = self.command(args);
        c.stdout(open()).stderr(open());
        Background::spawn(c, &format!("gantry {}", args.join(" ")))
    }

    /// `.gantry/state.json`, parsed.
    pub fn state_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.join(".gantry/state.json")).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("state unreadable: {e}\n{text}"))
    }

    /// The project's containers on the main engine (labelled with its name), also matching
    /// every filter of `more`: one line each in `format`, sorted.
    pub fn containers(&self, more: &[&str], format: &str) -> Vec<String> {
        let label = label_filter(&self.name);
        let mut filters = vec![label.as_str()];
        filters.extend(more.iter().filter(|f| !f.is_empty()));
        containers(&filters, format)
    }
}

/// `toml` with `labels = LABELS` added to its `[project]` table, unless that table has
/// `labels` already (or there is no `[project]` table: a test of bad input).
pub fn with_project_labels(toml: &str, labels: &str) -> String {
    let Some(start) = toml.find("[project]\n") else {
        return toml.to_string();
    };
    let body_start = start + "[project]\n".len();
    let body_end = toml[body_start..]
        .find("\n[")
        .map_or(toml.len(), |i| body_start + i + 1);
    let has_labels = toml[body_start..body_end]
        .lines()
        .any(|l| l.trim_start().starts_with("labels"));
    if has_labels {
        return toml.to_string();
    }
    format!(
        "{}labels = {labels}\n{}",
        &toml[..body_start],
        &toml[body_start..]
    )
}

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

/// The gantry binary under test: this build's, or `GANTRY_BIN` to run the same tests against
/// another build (a before/after figure, `benches/zero_downtime.sh`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("GANTRY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gantry").to_string())
    })
}

/// `gantry ARGS` in `dir`, without colours (`NO_COLOR=1`, no `CLICOLOR_FORCE`), without the
/// CI's step summary and without stdin; not started.
pub fn gantry_command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(dir)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("CLICOLOR_FORCE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// Runs `gantry ARGS` in `dir` (see [`gantry_command`]) and returns its output, whatever its
/// status; panics, with what it printed, when it does not finish within [`GANTRY_TIMEOUT`].
pub fn gantry(dir: &Path, args: &[&str]) -> Output {
    run(gantry_command(dir, args))
}

/// Runs a gantry command built by the test (its own environment) to completion, under
/// [`GANTRY_TIMEOUT`] like [`gantry`].
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let what = format!("{:?}", cmd.borrow_mut());
    run_with_timeout(cmd, GANTRY_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The exit code, `-1` when gantry was killed by a signal.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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

#[test]
fn project_labels_are_added_to_a_project_table_without_them() {
    let labels = r#"{ "a" = "b" }"#;
    assert_eq!(
        with_project_labels(
            "[project]\nname = \"x\"\n\n[service.web]\nimage = \"i:1\"\n",
            labels
        ),
        "[project]\nlabels = { \"a\" = \"b\" }\nname = \"x\"\n\n[service.web]\nimage = \"i:1\"\n"
    );
    let own = "[project]\nname = \"x\"\nlabels = { c = \"d\" }\n";
    assert_eq!(with_project_labels(own, labels), own);
    assert_eq!(
        with_project_labels("[service.web]\n", labels),
        "[service.web]\n"
    );
}
