//! `[hooks]`: the user's commands, run on the machine running gantry around a run that
//! changes something (never for `plan`, nor for an apply with nothing to change).
//!
//! - `before_apply` runs once the run is confirmed, locked and through pre-flight, before
//!   anything changes, for an apply, a promote and an `apply --resume`. A failure (non-zero
//!   exit, timeout, a program that cannot start) stops the run: exit 1, nothing changed.
//! - `after_apply` runs when such a run succeeded (or was held at its preview), `on_failure`
//!   when it failed, restored or not; `after_rollback` after a `gantry rollback` (a
//!   switch-back included) or an `apply --undo`, whatever its outcome. A failure of these is
//!   reported and changes neither the outcome nor the exit code. They run after the lock is
//!   released, so they may call gantry themselves.
//!
//! A hook runs with the configuration file's directory as its working directory (a program
//! written with a `/` is relative to it), in a process group of its own that is killed when
//! `[hooks] timeout` is over. Its output (stdout and stderr, interleaved) is written to
//! gantry's stderr as it comes, each line prefixed `hook NAME | `. Its environment is
//! gantry's, minus every variable a service names in `secret_env` and every registry's
//! `password_env` (unless `[hooks] secret_env` names it too), plus `GANTRY_PROJECT`, `GANTRY_REVISION`, `GANTRY_ORIGIN`,
//! `GANTRY_OUTCOME`, `GANTRY_SERVICES`, `GANTRY_HOOK` and `GANTRY_PLAN` (a JSON plan in a
//! temporary file, removed when the hook ends).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::outcome::{Halt, Outcome};
use super::{Error, emit};
use crate::graph::ResourceKind;
use crate::model::{HookPoint, Hooks, Model};
use crate::plan::{Action, Plan};
use crate::state::State;

/// What started the run, as hooks see it in `GANTRY_ORIGIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOrigin {
    Apply,
    Promote,
    /// `apply --resume`.
    Resume,
    Rollback,
    /// `apply --undo`.
    Undo,
}

impl HookOrigin {
    pub fn word(self) -> &'static str {
        match self {
            HookOrigin::Apply => "apply",
            HookOrigin::Promote => "promote",
            HookOrigin::Resume => "resume",
            HookOrigin::Rollback => "rollback",
            HookOrigin::Undo => "undo",
        }
    }

    /// Runs that move a release forward get `before_apply`, `after_apply` and `on_failure`;
    /// the others `after_rollback`.
    fn forward(self) -> bool {
        matches!(
            self,
            HookOrigin::Apply | HookOrigin::Promote | HookOrigin::Resume
        )
    }
}

/// Every variable a service names in `secret_env`, in the configuration, in the state and in
/// its history, and every registry's `password_env`: what hooks never get unless `[hooks]
/// secret_env` names it.
pub fn secret_names(model: &Model, state: Option<&State>) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = model
        .services
        .values()
        .flat_map(|s| s.secret_env.iter().cloned())
        .chain(model.registries.values().map(|r| r.password_env.clone()))
        .collect();
    if let Some(state) = state {
        let recorded = state.services.values().map(|s| &s.spec).chain(
            state
                .history
                .iter()
                .flat_map(|r| r.services.values().map(|s| &s.spec)),
        );
        names.extend(recorded.flat_map(|s| s.secret_env.iter().cloned()));
    }
    names
}

/// The services a plan changes, sorted.
pub fn changed_services(plan: &Plan) -> Vec<String> {
    let mut services: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.address.kind == ResourceKind::Service && c.action != Action::NoOp)
        .map(|c| c.address.name.clone())
        .collect();
    services.sort();
    services.dedup();
    services
}

/// One run's hooks: what they are told, and where they run.
pub struct HookRun<'a> {
    pub hooks: &'a Hooks,
    pub config_dir: PathBuf,
    pub project: String,
    pub revision: u64,
    pub origin: HookOrigin,
    pub services: Vec<String>,
    /// The plan `GANTRY_PLAN` points at (absent after `apply --undo`, which has none).
    pub plan: Option<&'a Plan>,
    pub secrets: BTreeSet<String>,
}

impl HookRun<'_> {
    /// `before_apply` of a forward run; `Err` (exit 1, nothing changed) when it fails.
    pub fn before(&self, err: &mut dyn Write) -> Result<(), Error> {
        if !self.origin.forward() {
            return Ok(());
        }
        match self.run(HookPoint::BeforeApply, "pending", err) {
            Ok(()) => Ok(()),
            Err(why) => Err(Error::Message(format!(
                "the before_apply hook failed: {why}; nothing was changed"
            ))),
        }
    }

    /// The hook for how the run ended (`after_apply`, `on_failure`, `after_rollback`); a
    /// failure is reported on `err` and changes nothing. A run that never started (refused,
    /// cancelled, stopped by pre-flight or by `before_apply`) runs none.
    pub fn after(&self, result: &Result<Outcome, Error>, err: &mut dyn Write) {
        let Some(outcome) = outcome_word(result) else {
            return;
        };
        let point = match (self.origin.forward(), outcome) {
            (false, _) => HookPoint::AfterRollback,
            (true, "success" | "held") => HookPoint::AfterApply,
            (true, _) => HookPoint::OnFailure,
        };
        if let Err(why) = self.run(point, outcome, err) {
            let _ = emit(
                err,
                &format!(
                    "warning: the {} hook failed: {why} (the outcome stands)\n",
                    point.key()
                ),
            );
        }
    }

    /// Runs the hook at `point`, if there is one.
    fn run(&self, point: HookPoint, outcome: &str, err: &mut dyn Write) -> Result<(), String> {
        let Some(argv) = self.hooks.command(point) else {
            return Ok(());
        };
        let plan_file = match self.plan {
            Some(plan) => Some(PlanFile::write(plan)?),
            None => None,
        };
        let dir = std::path::absolute(&self.config_dir).unwrap_or_else(|_| self.config_dir.clone());
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let mut cmd = Command::new(program_path(program, &dir));
        cmd.args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .env("GANTRY_PROJECT", &self.project)
            .env("GANTRY_REVISION", self.revision.to_string())
            .env("GANTRY_ORIGIN", self.origin.word())
            .env("GANTRY_OUTCOME", outcome)
            .env("GANTRY_SERVICES", self.services.join(","))
            .env("GANTRY_HOOK", point.key());
        match &plan_file {
            Some(f) => cmd.env("GANTRY_PLAN", &f.path),
            None => cmd.env_remove("GANTRY_PLAN"),
        };
        for name in &self.secrets {
            if !self.hooks.secret_env.contains(name) {
                cmd.env_remove(name);
            }
        }
        let key = point.key();
        let _ = emit(err, &format!("hook {key}: running `{}`\n", argv.join(" ")));
        let started = Instant::now();
        let result = run_bounded(cmd, self.hooks.timeout.0, &mut |line| {
            let _ = emit(err, &format!("hook {key} | {line}\n"));
        });
        let took = started.elapsed().as_secs_f64();
        drop(plan_file);
        match result {
            Ok(()) => {
                let _ = emit(err, &format!("hook {key}: done in {took:.1}s\n"));
                Ok(())
            }
            Err(why) => {
                let _ = emit(
                    err,
                    &format!("hook {key}: FAILED after {took:.1}s: {why}\n"),
                );
                Err(why)
            }
        }
    }
}

/// `success`, `held`, `restored`, `failed-not-restored` or `interrupted`; `None` when the run
/// never started.
fn outcome_word(result: &Result<Outcome, Error>) -> Option<&'static str> {
    Some(match result {
        Ok(Outcome::Completed { .. } | Outcome::Undone { .. }) => "success",
        Ok(Outcome::Held { .. }) => "held",
        Err(Error::Restored { .. }) => "restored",
        Err(Error::Halted(h)) => match **h {
            Halt::Interrupted { .. } => "interrupted",
            Halt::Failed { .. } | Halt::UndoFailed { .. } => "failed-not-restored",
        },
        _ => return None,
    })
}

/// A program written with a `/` is relative to the configuration file's directory; a bare
/// name is looked up in `PATH`.
fn program_path(program: &str, dir: &Path) -> PathBuf {
    let p = Path::new(program);
    if p.is_relative() && program.contains('/') {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

/// The JSON plan in a temporary file, removed when dropped.
struct PlanFile {
    path: PathBuf,
}

impl PlanFile {
    fn write(plan: &Plan) -> Result<PlanFile, String> {
        let path = std::env::temp_dir().join(format!("gantry-plan-{}.json", uuid::Uuid::new_v4()));
        let mut f = std::fs::File::create_new(&path)
            .map_err(|e| format!("cannot write the plan to {}: {e}", path.display()))?;
        f.write_all(crate::render::json(plan).as_bytes())
            .map_err(|e| format!("cannot write the plan to {}: {e}", path.display()))?;
        Ok(PlanFile { path })
    }
}

impl Drop for PlanFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// After the hook's own process ends, how long output of what it left behind (holding the
/// pipe) is still read.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Runs `cmd` in a process group of its own, its stdout and stderr in one pipe given to
/// `line` as they come; kills the group after `timeout`.
fn run_bounded(
    mut cmd: Command,
    timeout: Duration,
    line: &mut dyn FnMut(&str),
) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let pipe_error = |e: std::io::Error| format!("cannot make a pipe: {e}");
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| pipe_error(e.into()))?;
    let writer2 = writer.try_clone().map_err(pipe_error)?;
    cmd.stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", cmd.get_program().to_string_lossy()))?;
    let reader = std::fs::File::from(reader);
    // The parent's ends of the pipe go with `cmd`, so that the reader sees the end.
    drop(cmd);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(reader).split(b'\n') {
            let Ok(l) = l else { break };
            let text = String::from_utf8_lossy(&l)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut open = true;
    let status: Option<ExitStatus> = loop {
        if open {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    line(&l);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let group = rustix::process::Pid::from_child(&child);
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                let _ = child.wait();
                break None;
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let grace = Instant::now() + OUTPUT_GRACE;
    while open {
        let left = grace.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => line(&l),
            Err(_) => open = false,
        }
    }
    match status {
        None => Err(format!(
            "it did not end within {} (its process group was killed)",
            humantime::format_duration(timeout)
        )),
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(describe(s)),
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    fn run(script: &str, timeout: Duration) -> (Result<(), String>, Vec<String>) {
        let mut lines = Vec::new();
        let r = run_bounded(sh(script), timeout, &mut |l| lines.push(l.to_string()));
        (r, lines)
    }

    #[test]
    fn output_of_stdout_and_stderr_comes_in_order_and_the_exit_code_counts() {
        let (r, lines) = run(
            "echo one; echo two >&2; echo three; exit 3",
            Duration::from_secs(10),
        );
        assert_eq!(r, Err("exit code 3".to_string()));
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(run("true", Duration::from_secs(10)).0, Ok(()));
    }

    /// A hook that hangs is killed with its whole process group (the `sleep` it started
    /// too), and gantry does not wait for the output of what it left behind.
    #[test]
    fn a_hook_over_its_timeout_is_killed_with_its_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = Instant::now();
        let (r, lines) = run(
            &format!(
                "echo started; sleep 30 & echo $! > {}; wait",
                pid_file.display()
            ),
            Duration::from_millis(500),
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let e = r.unwrap_err();
        assert!(e.contains("did not end within 500ms"), "{e}");
        assert_eq!(lines, ["started"]);
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        // A killed process may linger a moment, then as a zombie until it is reaped: either
        // is not running.
        let running = || {
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .is_ok_and(|s| !s.contains(") Z ") && !s.contains(") X "))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(), "the background sleep was killed too");
    }

    #[test]
    fn registry_passwords_are_secrets_hooks_do_not_get() {
        let model = crate::testing::model(
            "[project]\nname = \"p\"\n\n[service.web]\nimage = \"r.example/web:1\"\nsecret_env = [\"DB_PASSWORD\"]\n\n[registry.\"r.example\"]\nusername = \"ci\"\npassword_env = \"REGISTRY_PASSWORD\"\n",
        );
        let names = secret_names(&model, None);
        assert!(names.contains("REGISTRY_PASSWORD") && names.contains("DB_PASSWORD"));
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error() {
        let r = run_bounded(
            Command::new("/nonexistent/hook"),
            Duration::from_secs(5),
            &mut |_| {},
        );
        assert!(r.unwrap_err().starts_with("cannot run `/nonexistent/hook`"));
    }

    #[test]
    fn relative_programs_with_a_slash_are_the_config_directory_s() {
        let dir = Path::new("/srv/deploy");
        assert_eq!(program_path("./notify", dir), dir.join("./notify"));
        assert_eq!(program_path("bin/notify", dir), dir.join("bin/notify"));
        assert_eq!(program_path("curl", dir), PathBuf::from("curl"));
        assert_eq!(
            program_path("/usr/bin/env", dir),
            PathBuf::from("/usr/bin/env")
        );
    }
}
