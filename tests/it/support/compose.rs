//! docker-compose (the Debian package, v1.29) for the `gantry adopt` tests: a project brought
//! up from a Compose file the test writes, taken down on drop (`docker-compose down`, pass
//! or fail), its containers and network labelled with the test's labels so that the guard
//! removes whatever `down` left.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::docker::DockerTestGuard;
use super::process::run_with_timeout;

pub fn compose_available() -> bool {
    Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `true` when docker-compose is installed. Otherwise prints `SKIPPED: ...` and returns
/// `false`, except under `CI=true`, where it panics (CI installs it).
pub fn require_compose(test: &str) -> bool {
    if compose_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: docker-compose not installed, and CI=true: Compose tests must run in CI");
    }
    println!("SKIPPED: {test}: docker-compose not installed");
    false
}

/// The guard's labels as a Compose `labels:` mapping body, indented by `indent` spaces.
pub fn labels_yaml(guard: &DockerTestGuard, indent: usize) -> String {
    guard
        .labels()
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            format!("{}{k}: \"{v}\"\n", " ".repeat(indent))
        })
        .collect()
}

/// A Compose project that is up; `down` on drop.
pub struct ComposeProject {
    pub name: String,
    pub file: PathBuf,
}

impl ComposeProject {
    /// `docker-compose -p NAME -f FILE up -d`; panics with the output when it fails (the
    /// drop still takes down what started).
    pub fn up(name: &str, file: &Path) -> ComposeProject {
        let p = ComposeProject {
            name: name.to_string(),
            file: file.to_path_buf(),
        };
        let o = p.run(&["up", "-d"]);
        assert!(
            o.status.success(),
            "docker-compose up failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .args(args);
        run_with_timeout(cmd, Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("docker-compose {}: {e}", args.join(" ")))
    }

    /// The project's containers (stopped ones too): `name state` lines, sorted by name.
    pub fn containers(&self) -> Vec<(String, String)> {
        super::project::containers(
            &[&format!("label=com.docker.compose.project={}", self.name)],
            "{{.Names}} {{.State}}",
        )
        .into_iter()
        .filter_map(|l| {
            let (n, s) = l.split_once(' ')?;
            Some((n.to_string(), s.to_string()))
        })
        .collect()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .args(["down", "-v", "--timeout", "2"]);
        match run_with_timeout(cmd, Duration::from_secs(120)) {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "docker-compose down ({}): {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("docker-compose down ({}): {e}", self.name),
        }
    }
}
