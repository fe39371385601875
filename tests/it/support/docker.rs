//! Docker helpers for integration tests, through the `docker` CLI.
//!
//! ```ignore
//! use crate::support;
//! use support::docker::{self, DockerTestGuard};
//!
//! #[test]
//! fn my_test() {
//!     if !docker::require_docker("my_test") {
//!         return; // skipped locally; panics instead when CI=true
//!     }
//!     let guard = DockerTestGuard::new(); // before creating anything
//!     let image = docker::build_testapp_image_once(&docker::run_tag("v1"));
//!     let id = guard.run(&["-p", "127.0.0.1::8080", "-e", "VERSION=v1"], &image);
//!     let addr = docker::published_addr(&id, 8080);
//!     // ... everything labelled by the guard is removed when it drops, even on panic.
//! }
//! ```
//!
//! Labels: everything a test creates carries `gantry.test-run=<run id>` (one id per test
//! process) and `gantry.test-scope=<run id>-<n>` (one per guard). A guard's drop removes the
//! containers, networks and volumes of its scope, and those gantry made for the projects made
//! with it (`project::Project::new` tells the guard; gantry labels what it creates with
//! `dev.gantry.project=<name>`, and project names are unique in the process); the drop of the
//! last live guard of the process also removes everything else carrying the run label, images
//! included (the next
//! `build_testapp_image_once`, `debian::debian_image` or `stack::stack_images` rebuilds them
//! if a later test needs them). Resources of runs
//! older than [`STALE_AFTER`] (killed test processes) are removed when the first guard of a
//! process is created.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use super::process::run_with_timeout;

/// Label key carrying the run id of the test process that created a resource.
pub const RUN_LABEL_KEY: &str = "gantry.test-run";
/// Label key carrying the scope of the guard that created a resource.
pub const SCOPE_LABEL_KEY: &str = "gantry.test-scope";
/// Resources of runs older than this are removed as leftovers of killed test processes.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * 3600);
/// Default time limit of one `docker` CLI call.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a Docker daemon answers (checked once per process).
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let mut cmd = Command::new("docker");
        cmd.args(["version", "--format", "{{.Server.Version}}"]);
        matches!(run_with_timeout(cmd, Duration::from_secs(20)),
                 Ok(o) if o.status.success() && !o.stdout.trim_ascii().is_empty())
    })
}

/// `true` when Docker is usable. Otherwise prints `SKIPPED: <test>: docker not available` and
/// returns `false`, except under `CI=true`, where it panics: CI must fail, not skip.
pub fn require_docker(test: &str) -> bool {
    if docker_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: docker not available, and CI=true: Docker tests must run in CI");
    }
    // Straight to stdout: the test harness captures `println!` of passing tests.
    let _ = writeln!(io::stdout(), "SKIPPED: {test}: docker not available");
    false
}

/// The id of this test process: `gantry-test-<pid>-<nanos since epoch>`.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("gantry-test-{}-{}", std::process::id(), epoch_nanos()))
}

/// `gantry.test-run=<run id>`.
pub fn run_label() -> String {
    format!("{RUN_LABEL_KEY}={}", run_id())
}

/// An image tag (or name) unique to this test process: `<run id>-<name>`.
pub fn run_tag(name: &str) -> String {
    format!("{}-{name}", run_id())
}

/// A TCP port that was free on 127.0.0.1 a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Runs `docker ARGS` (with [`DOCKER_TIMEOUT`]) and returns its output, whatever its status.
pub fn docker(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_with_timeout(cmd, DOCKER_TIMEOUT)
        .unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

/// Runs `docker ARGS`, panics unless it succeeds, and returns its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    if !out.status.success() {
        panic!(
            "docker {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Live guards of this process; the lock also serialises the last guard's cleanup with the
/// creation of new guards.
static LIVE_GUARDS: Mutex<usize> = Mutex::new(0);
static NEXT_SCOPE: Mutex<u64> = Mutex::new(0);

/// How many [`DockerTestGuard`]s are alive in this process: builders of shared images
/// (which the last guard's drop removes) check there is one.
pub fn live_guards() -> usize {
    *LIVE_GUARDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes, on drop (so also on panic), what a test created with its labels.
pub struct DockerTestGuard {
    scope: String,
    /// Projects whose gantry-made containers, networks and volumes go with this guard.
    projects: Mutex<Vec<String>>,
    /// Released after the clean-up: an `alone` test waits for it (see `serial`).
    _turn: super::serial::Shared,
}

impl DockerTestGuard {
    /// Create one at the start of a test, before any container, network or image.
    pub fn new() -> DockerTestGuard {
        let turn = super::serial::shared();
        static REAPED: OnceLock<()> = OnceLock::new();
        REAPED.get_or_init(remove_stale_runs);
        let scope = {
            let mut n = NEXT_SCOPE.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            format!("{}-{}", run_id(), *n)
        };
        *LIVE_GUARDS.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        DockerTestGuard {
            scope,
            projects: Mutex::new(Vec::new()),
            _turn: turn,
        }
    }

    /// `gantry.test-scope=<scope>`.
    pub fn scope_label(&self) -> String {
        format!("{SCOPE_LABEL_KEY}={}", self.scope)
    }

    /// The labels to put on everything this test creates.
    pub fn labels(&self) -> [String; 2] {
        [run_label(), self.scope_label()]
    }

    /// `--label <run> --label <scope>`, for `docker run`, `docker network create`, ...
    pub fn label_args(&self) -> Vec<String> {
        self.labels()
            .into_iter()
            .flat_map(|l| ["--label".to_owned(), l])
            .collect()
    }

    /// Removes, on drop, what gantry made for `project` (label `dev.gantry.project=<project>`):
    /// containers, networks and volumes, also those without the test labels (a project
    /// network or volume gantry creates). `project::Project::new` calls it.
    pub fn track_project(&self, project: &str) {
        self.projects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(project.to_owned());
    }

    /// `docker run -d <labels> OPTS IMAGE`; returns the container id.
    pub fn run(&self, opts: &[&str], image: &str) -> String {
        let labels = self.label_args();
        let mut args = vec!["run", "-d"];
        args.extend(labels.iter().map(String::as_str));
        args.extend_from_slice(opts);
        args.push(image);
        docker_ok(&args)
    }
}

impl Default for DockerTestGuard {
    fn default() -> Self {
        DockerTestGuard::new()
    }
}

impl Drop for DockerTestGuard {
    fn drop(&mut self) {
        if !docker_available() {
            return;
        }
        remove_labelled(&self.scope_label(), false);
        let projects =
            std::mem::take(&mut *self.projects.lock().unwrap_or_else(|e| e.into_inner()));
        for project in projects {
            remove_labelled(
                &format!("{}={project}", super::project::PROJECT_LABEL),
                false,
            );
        }
        let mut live = LIVE_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            // Last one out: everything else of this run, the shared images included.
            remove_labelled(&run_label(), true);
            BUILT.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Removes the containers, networks and volumes (and with `images`, the images) carrying
/// `label`.
/// Best effort: failures are reported on stderr, never panic (this runs in `Drop`).
pub fn remove_labelled(label: &str, images: bool) {
    let filter = format!("label={label}");
    let containers = ids(&["ps", "-aq", "--filter", &filter]);
    remove(&["rm", "-f", "-v"], &containers);
    let networks = ids(&["network", "ls", "-q", "--filter", &filter]);
    remove(&["network", "rm"], &networks);
    let volumes = ids(&["volume", "ls", "-q", "--filter", &filter]);
    remove(&["volume", "rm", "-f"], &volumes);
    if images {
        let images = ids(&["images", "-q", "--filter", &filter]);
        remove(&["rmi", "-f"], &images);
    }
}

fn ids(args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let Ok(out) = run_with_timeout(cmd, DOCKER_TIMEOUT) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|id| seen.insert(id.to_string()))
        .map(str::to_owned)
        .collect()
}

/// Runs `docker ARGS... IDS...` when there are ids; failures are reported, never panic.
fn remove(args: &[&str], ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let mut cmd = Command::new("docker");
    cmd.args(args).args(ids);
    match run_with_timeout(cmd, DOCKER_TIMEOUT) {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "test cleanup: docker {} {}: {}",
            args.join(" "),
            ids.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("test cleanup: docker {}: {e}", args.join(" ")),
    }
}

/// Removes containers, networks, volumes and images of test runs older than [`STALE_AFTER`], judged by
/// the timestamp in their run id (`gantry-test-<pid>-<nanos>`): what killed runs left behind.
fn remove_stale_runs() {
    if !docker_available() {
        return;
    }
    let key = RUN_LABEL_KEY;
    let filter = format!("label={key}");
    let label_fmt = format!("{{{{.ID}}}}\t{{{{.Label \"{key}\"}}}}");
    let now = epoch_nanos();
    let stale = |run: &str| {
        run.rsplit('-')
            .next()
            .and_then(|n| n.parse::<u128>().ok())
            .is_some_and(|t| now.saturating_sub(t) > STALE_AFTER.as_nanos())
    };
    let pick = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(_, run)| stale(run.trim()))
            .map(|(id, _)| id.trim().to_owned())
            .collect()
    };
    let out = docker(&["ps", "-a", "--filter", &filter, "--format", &label_fmt]);
    remove(
        &["rm", "-f", "-v"],
        &pick(&String::from_utf8_lossy(&out.stdout)),
    );
    let out = docker(&["network", "ls", "--filter", &filter, "--format", &label_fmt]);
    remove(
        &["network", "rm"],
        &pick(&String::from_utf8_lossy(&out.stdout)),
    );
    let volume_fmt = format!("{{{{.Name}}}}\t{{{{.Label \"{key}\"}}}}");
    let out = docker(&["volume", "ls", "--filter", &filter, "--format", &volume_fmt]);
    remove(
        &["volume", "rm", "-f"],
        &pick(&String::from_utf8_lossy(&out.stdout)),
    );
    let images = ids(&["images", "-q", "--filter", &filter]);
    if !images.is_empty() {
        let inspect_fmt = format!("{{{{.Id}}}}\t{{{{index .Config.Labels \"{key}\"}}}}");
        let mut args = vec!["image", "inspect", "--format", &inspect_fmt];
        args.extend(images.iter().map(String::as_str));
        let out = docker(&args);
        remove(&["rmi", "-f"], &pick(&String::from_utf8_lossy(&out.stdout)));
    }
}

/// Image refs built by this process (cleared when the last guard removes them).
static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Whether this process has run the cargo build of the binary: later image builds reuse it.
static BINARY_BUILT: AtomicBool = AtomicBool::new(false);
/// Serialises builds within the process.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds `gantry-testapp:<tag>` with `testapp/build.sh` (labelled with this run's label) unless
/// this process already built it and it still exists, and returns the image ref. Parallel
/// tests build once: callers wait on a lock. Needs a live [`DockerTestGuard`] (the guard is what
/// removes the image again). Cargo runs once per process; when the last guard has removed the
/// image in between (tests run one at a time), it is rebuilt from the same binary in about a
/// second. Prefer [`run_tag`] tags, so parallel test processes do not retag each other's
/// images.
pub fn build_testapp_image_once(tag: &str) -> String {
    build_testapp_images_once(&[tag]).remove(0)
}

/// [`build_testapp_image_once`] for several tags at once (one cargo build, one `docker build`
/// per tag; each tag is a distinct image ID with the same binary).
pub fn build_testapp_images_once(tags: &[&str]) -> Vec<String> {
    assert!(
        live_guards() > 0,
        "create a DockerTestGuard before building the testapp image (it removes the image)"
    );
    let _build = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let refs: Vec<String> = tags.iter().map(|t| format!("gantry-testapp:{t}")).collect();
    let missing: Vec<&str> = {
        let built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        tags.iter()
            .zip(&refs)
            .filter(|(_, r)| !built.contains(r) || !image_exists(r))
            .map(|(t, _)| *t)
            .collect()
    };
    if missing.is_empty() {
        return refs;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testapp/build.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .args(&missing)
        .env("GANTRY_TEST_LABEL", run_label());
    if BINARY_BUILT.load(Ordering::SeqCst) {
        cmd.env("TESTAPP_SKIP_CARGO", "1");
    }
    let started = Instant::now();
    let out = run_with_timeout(cmd, Duration::from_secs(30 * 60))
        .unwrap_or_else(|e| panic!("testapp/build.sh: {e}"));
    if !out.status.success() {
        panic!(
            "testapp/build.sh {} failed ({}):\n{}\n{}",
            missing.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    BINARY_BUILT.store(true, Ordering::SeqCst);
    eprintln!(
        "built {} in {:.1}s",
        missing
            .iter()
            .map(|t| format!("gantry-testapp:{t}"))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    for t in missing {
        built.push(format!("gantry-testapp:{t}"));
    }
    refs
}

pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
        .status
        .success()
}

/// `127.0.0.1:<port>` that Docker published for the container's `port`/tcp.
pub fn published_addr(container: &str, port: u16) -> String {
    let out = docker_ok(&["port", container, &format!("{port}/tcp")]);
    let first = out.lines().next().unwrap_or_default().trim();
    first.replace("0.0.0.0:", "127.0.0.1:")
}

/// Container state: `Some(exit code)` once it has stopped, `None` while it runs.
pub fn exit_code(container: &str) -> Option<i64> {
    let out = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.Restarting}} {{.State.ExitCode}}",
        container,
    ]);
    match out.split_whitespace().collect::<Vec<_>>()[..] {
        ["false", "false", code] => code.parse().ok(),
        _ => None,
    }
}

/// Waits up to `timeout` for the container to stop; its exit code, or `None` on timeout.
pub fn wait_exit(container: &str, timeout: Duration) -> Option<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(code) = exit_code(container) {
            return Some(code);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The container's stdout and stderr, interleaved as far as `docker logs` keeps them.
pub fn logs(container: &str) -> String {
    let out = docker(&["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `docker inspect --format FORMAT TARGET`, trimmed.
pub fn inspect(target: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, target])
}

/// Labels of one object, for assertions.
pub fn labels_of(target: &str) -> HashMap<String, String> {
    inspect(
        target,
        "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}\n{{end}}",
    )
    .lines()
    .filter_map(|l| l.split_once('='))
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn epoch_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
