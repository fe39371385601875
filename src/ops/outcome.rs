//! How a command ended, as values rather than text written on the way: the successes a run
//! reports ([`Outcome`]), its failures as [`Error`] variants, and two views of either: the
//! text a human reads (unchanged, byte for byte) and one JSON line for `--progress json`.
//! The exit status is decided here, in [`exit_status`], and nowhere else.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::drivers::fs::{FsError, LockError};
use crate::engine::Failure;
use crate::exit::ExitStatus;
use crate::state::journal::Journal;

/// Version of the JSON outcome line's shape; bumped on any incompatible change.
pub const OUTCOME_FORMAT_VERSION: u32 = 1;

/// Errors of a command, each mapped to its exit status in one place
/// ([`exit_status`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command line clap refused, rendered by clap (exit 1: clap's own 2 would read as
    /// "changes present").
    #[error("{0}")]
    Usage(String),
    /// Already rendered diagnostics (with file:line:col and snippets).
    #[error("{rendered}")]
    Invalid { rendered: String, count: usize },
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A problem explained in one sentence.
    #[error("{0}")]
    Message(String),
    #[error(
        "the state in {state} belongs to project `{found}`, but {config} declares project `{expected}`"
    )]
    WrongProject {
        state: String,
        config: String,
        found: String,
        expected: String,
    },
    /// Another run holds the state lock.
    #[error("{0}")]
    Locked(LockError),
    /// A saved plan no longer applies (`plan_file`), or the state moved while waiting for
    /// the lock (`None`).
    #[error("{}", match plan_file {
        Some(p) => format!("the plan file {} is stale: {why}. Run `gantry plan --out {}` again.", p.display(), p.display()),
        None => format!("the state moved while waiting: {why}"),
    })]
    StalePlan {
        why: String,
        plan_file: Option<PathBuf>,
    },
    /// The user did not confirm; nothing was changed.
    #[error("cancelled; nothing was changed")]
    Cancelled,
    /// A run failed and what it changed was undone.
    #[error("{verb} failed and the previous revision was restored: {failure}")]
    Restored { verb: Verb, failure: Failure },
    /// A run failed, or was interrupted, and was not restored: a human must look.
    #[error("{}", .0.human().trim())]
    Halted(Box<Halt>),
    /// A run did not finish, or a release is held: the user chooses what happens next.
    #[error("{}", .0.human())]
    Unfinished(Choices),
}

/// What a run of the engine was started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Apply,
    RollBack,
    Promote,
}

impl Verb {
    /// As in "Do you want to roll back?" and "apply failed".
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Apply => "apply",
            Verb::RollBack => "roll back",
            Verb::Promote => "promote",
        }
    }

    /// The operation the state lock names.
    pub fn operation(self) -> &'static str {
        match self {
            Verb::Apply => "apply",
            Verb::RollBack => "rollback",
            Verb::Promote => "promote",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a command ended when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; whatever it had to say was written as it went.
    Done,
    /// `plan --detailed-exitcode`: there are changes.
    Changes,
    /// The plan of an apply, rollback or promote had nothing to change.
    NoChanges,
    /// A run of the engine completed.
    Completed {
        verb: Verb,
        origin: crate::state::Origin,
        revision: u64,
        /// The plan's summary line.
        summary: String,
        /// The scale-down timer started for a blue-green old colour, if any.
        timer: Option<String>,
    },
    /// A blue-green release held at its preview.
    Held { revision: u64 },
    /// An unfinished run was undone.
    Undone { revision: u64 },
    /// `apply --undo` with nothing unfinished.
    NothingToUndo,
    /// `exec`: the command ran and exited with `code` (gantry's exit code too).
    Exited { code: i32 },
}

/// A run that failed and was not restored: a human must look.
#[derive(Debug, Clone, PartialEq)]
pub enum Halt {
    /// A step failed and the run stopped there: `on_failure = "pause"`, or the restore
    /// failed too.
    Failed {
        verb: Verb,
        failure: Failure,
        restore_error: Option<String>,
    },
    /// Stopped safely by an interrupt, after the steps in flight.
    Interrupted {
        /// The last step that finished, if any.
        after: Option<String>,
        /// The revision left unfinished.
        unfinished: u64,
        /// The revision an undo puts back.
        prior: u64,
    },
    /// The undo of an unfinished run did not complete.
    UndoFailed { error: String },
}

impl Halt {
    fn human(&self) -> String {
        match self {
            Halt::Failed {
                verb,
                failure,
                restore_error,
            } => {
                let how = match restore_error {
                    Some(e) => format!(
                        "restoring the previous revision failed too: {e}. A human must look: `gantry status` shows what runs."
                    ),
                    None => "stopped where it failed (on_failure = \"pause\"). Fix the cause and run `gantry apply` to continue.".to_string(),
                };
                format!("\nerror: {verb} failed and was NOT restored.\n{failure}\n{how}\n")
            }
            Halt::Interrupted {
                after,
                unfinished,
                prior,
            } => {
                let after = after
                    .as_ref()
                    .map_or("before any step finished".to_string(), |a| {
                        format!("after {a}")
                    });
                format!(
                    "\nStopped safely {after}: revision {unfinished} is unfinished.\n  gantry apply --resume   continue it\n  gantry apply --undo     put revision {prior} back\n"
                )
            }
            Halt::UndoFailed { error } => format!(
                "\nerror: the interrupted run could not be undone: {error}\nA human must look: `gantry status` shows what runs.\n"
            ),
        }
    }

    fn json(&self) -> (&'static str, Value) {
        match self {
            Halt::Failed {
                verb,
                failure,
                restore_error,
            } => (
                "halted",
                json!({"verb": verb.operation(), "failure": failure_json(failure), "restore_error": restore_error}),
            ),
            Halt::Interrupted {
                after,
                unfinished,
                prior,
            } => (
                "interrupted",
                json!({"after": after, "revision": unfinished, "prior_revision": prior}),
            ),
            Halt::UndoFailed { error } => ("undo_failed", json!({"error": error})),
        }
    }
}

/// What the user can do about a run that did not finish, or a release held at its preview.
#[derive(Debug, Clone, PartialEq)]
pub enum Choices {
    Unfinished {
        /// What ran and where it stopped.
        run: String,
        /// The revision an undo puts back.
        prior: u64,
    },
    Held {
        run: String,
    },
}

impl Choices {
    /// The choices `journal`'s unfinished run leaves (a held release's included).
    pub fn of(journal: &Journal) -> Option<Choices> {
        let u = journal.unfinished()?;
        Some(if u.held {
            Choices::Held { run: u.describe() }
        } else {
            Choices::Unfinished {
                run: u.describe(),
                prior: u.prior.revision,
            }
        })
    }

    /// [`Choices::header`] of `journal`'s unfinished run; empty when there is none.
    pub fn header_of(journal: &Journal) -> String {
        Choices::of(journal).map(|c| c.header()).unwrap_or_default()
    }

    /// The error that stops a command until the user has chosen.
    pub fn error(journal: &Journal) -> Error {
        match Choices::of(journal) {
            Some(c) => Error::Unfinished(c),
            None => Error::Message(String::new()),
        }
    }

    /// One line saying which run did not finish.
    pub fn header(&self) -> String {
        let (Choices::Unfinished { run, .. } | Choices::Held { run }) = self;
        format!("The last run did not finish: {run}")
    }

    /// `(command, what it does)`, in the order offered.
    pub fn commands(&self) -> Vec<(&'static str, String)> {
        match self {
            Choices::Unfinished { prior, .. } => vec![
                (
                    "gantry apply --resume",
                    "reconcile with the engine, then continue to the configuration".into(),
                ),
                (
                    "gantry apply --undo",
                    format!("put revision {prior} back as it was before that run"),
                ),
                (
                    "gantry rollback",
                    "the same undo (an incident's way out)".into(),
                ),
            ],
            Choices::Held { .. } => vec![
                (
                    "gantry promote",
                    "continue it (switch the load balancers to the new colour)".into(),
                ),
                ("gantry rollback", "abandon it".into()),
            ],
        }
    }

    /// The paragraph a human reads.
    pub fn human(&self) -> String {
        match self {
            Choices::Unfinished { run, .. } => {
                let lines: Vec<String> = self
                    .commands()
                    .into_iter()
                    .map(|(c, does)| format!("  {c:<24}{does}"))
                    .collect();
                format!(
                    "the last run did not finish: {run}\nChoose:\n{}\n`gantry status` shows what runs now.",
                    lines.join("\n")
                )
            }
            Choices::Held { .. } => {
                let lines: Vec<String> = self
                    .commands()
                    .into_iter()
                    .map(|(c, does)| format!("  {c:<18}{does}"))
                    .collect();
                format!("{}\n{}", self.header(), lines.join("\n"))
            }
        }
    }

    fn json(&self) -> Value {
        let (Choices::Unfinished { run, .. } | Choices::Held { run }) = self;
        let commands: Vec<Value> = self
            .commands()
            .into_iter()
            .map(|(command, does)| json!({"command": command, "does": does}))
            .collect();
        json!({"run": run, "choices": commands})
    }
}

/// The stream a view is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// The exit status of a command that ended with `result`: the one place it is decided.
pub fn exit_status(result: &Result<Outcome, Error>) -> ExitStatus {
    match result {
        Ok(Outcome::Changes) => ExitStatus::Changes,
        Ok(Outcome::Exited { code }) => ExitStatus::Command(*code),
        Ok(_) => ExitStatus::Success,
        Err(Error::Restored { .. }) => ExitStatus::FailedRestored,
        Err(Error::Halted(_)) => ExitStatus::FailedHalted,
        Err(Error::Locked(_)) => ExitStatus::Locked,
        Err(Error::StalePlan { .. }) => ExitStatus::StalePlan,
        Err(
            Error::Usage(_)
            | Error::Invalid { .. }
            | Error::Fs(_)
            | Error::Message(_)
            | Error::WrongProject { .. }
            | Error::Cancelled
            | Error::Unfinished(_),
        ) => ExitStatus::Error,
    }
}

/// What a human reads at the end of a command, and where.
pub fn human(result: &Result<Outcome, Error>) -> (Stream, String) {
    match result {
        Ok(o) => (Stream::Out, outcome_text(o)),
        Err(e) => error_text(e),
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Done | Outcome::Changes | Outcome::NoChanges | Outcome::Exited { .. } => {
            String::new()
        }
        Outcome::Completed {
            verb,
            origin,
            revision,
            summary,
            timer,
        } => {
            let done = match verb {
                Verb::Apply => "Apply complete".to_string(),
                // A promote finishes the held release: it names the run it completes.
                Verb::Promote => format!("Promote complete ({origin})"),
                Verb::RollBack => format!("Rollback complete ({origin})"),
            };
            let mut s = format!("\n{done}: revision {revision}. {summary}\n");
            if let Some(timer) = timer {
                s.push_str(&format!("{timer}\n"));
            }
            s
        }
        Outcome::Held { revision } => format!(
            "\nHeld at the preview: revision {revision}'s new colour runs beside the live one, which still takes all the traffic.\n  gantry promote    switch to it (one change per load balancer)\n  gantry rollback   abandon it (the new colour is removed)\n"
        ),
        Outcome::Undone { revision } => {
            format!("\nUndone: revision {revision} runs again, as before the interrupted run.\n")
        }
        Outcome::NothingToUndo => "Nothing to undo: the last run finished.\n".into(),
    }
}

fn error_text(e: &Error) -> (Stream, String) {
    let text = match e {
        Error::Cancelled => return (Stream::Out, "Cancelled; nothing was changed.\n".into()),
        Error::Usage(rendered) => rendered.clone(),
        Error::Restored { verb, failure } => {
            format!("\nerror: {verb} failed and the previous revision was restored.\n{failure}\n")
        }
        Error::Halted(halt) => halt.human(),
        other => {
            let text = other.to_string();
            let mut text = if text.starts_with("error") {
                text
            } else {
                format!("error: {text}\n")
            };
            if let Error::Invalid { count, .. } = other {
                text.push_str(&format!(
                    "{count} problem{} found.\n",
                    if *count == 1 { "" } else { "s" }
                ));
            }
            text
        }
    };
    (Stream::Err, text)
}

/// The outcome as one JSON object on one line (`--progress json` ends with it): the kind of
/// outcome, the exit code, the facts a script branches on, and the human text.
pub fn json(result: &Result<Outcome, Error>) -> String {
    let (kind, facts) = match result {
        Ok(o) => outcome_json(o),
        Err(e) => error_json(e),
    };
    let (_, text) = human(result);
    let mut v = json!({
        "event": "outcome",
        "format_version": OUTCOME_FORMAT_VERSION,
        "outcome": kind,
        "exit_code": exit_status(result).code(),
    });
    if let (Some(map), Value::Object(facts)) = (v.as_object_mut(), facts) {
        map.extend(facts);
        let text = anstream::adapter::strip_str(&text).to_string();
        map.insert("message".into(), text.trim().into());
    }
    v.to_string()
}

fn outcome_json(o: &Outcome) -> (&'static str, Value) {
    match o {
        Outcome::Done => ("done", json!({})),
        Outcome::Changes => ("changes", json!({})),
        Outcome::NoChanges => ("no_changes", json!({})),
        Outcome::Completed {
            verb,
            origin,
            revision,
            summary,
            timer,
        } => (
            "completed",
            json!({"verb": verb.operation(), "origin": origin.to_string(), "revision": revision, "summary": summary, "scale_down": timer}),
        ),
        Outcome::Held { revision } => ("held", json!({"revision": revision})),
        Outcome::Undone { revision } => ("undone", json!({"revision": revision})),
        Outcome::NothingToUndo => ("nothing_to_undo", json!({})),
        Outcome::Exited { code } => ("exited", json!({"exit_code": code})),
    }
}

fn failure_json(f: &Failure) -> Value {
    json!({"resource": f.resource, "step": f.step, "reason": f.reason, "logs": f.logs})
}

fn error_json(e: &Error) -> (&'static str, Value) {
    match e {
        Error::Restored { verb, failure } => (
            "restored",
            json!({"verb": verb.operation(), "failure": failure_json(failure)}),
        ),
        Error::Halted(halt) => halt.json(),
        Error::Locked(_) => ("locked", json!({})),
        Error::StalePlan { why, plan_file } => (
            "stale_plan",
            json!({"why": why, "plan_file": plan_file.as_ref().map(|p| p.display().to_string())}),
        ),
        Error::Cancelled => ("cancelled", json!({})),
        Error::Unfinished(choices) => ("unfinished", choices.json()),
        Error::Invalid { count, .. } => ("invalid", json!({"problems": count})),
        Error::Usage(_) => ("usage", json!({})),
        Error::Fs(_) | Error::Message(_) | Error::WrongProject { .. } => ("error", json!({})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure {
            resource: "service.web".into(),
            step: "health".into(),
            reason: "timed out".into(),
            logs: vec![],
        }
    }

    fn parse(result: &Result<Outcome, Error>) -> Value {
        let line = json(result);
        assert!(!line.contains('\n'), "one line: {line}");
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn exit_statuses_are_decided_by_the_outcome() {
        let cases: Vec<(Result<Outcome, Error>, ExitStatus)> = vec![
            (Ok(Outcome::Done), ExitStatus::Success),
            (Ok(Outcome::Changes), ExitStatus::Changes),
            (Ok(Outcome::Held { revision: 2 }), ExitStatus::Success),
            (Ok(Outcome::Exited { code: 7 }), ExitStatus::Command(7)),
            (Err(Error::Cancelled), ExitStatus::Error),
            (
                Err(Error::Restored {
                    verb: Verb::Apply,
                    failure: failure(),
                }),
                ExitStatus::FailedRestored,
            ),
            (
                Err(Error::Halted(Box::new(Halt::UndoFailed {
                    error: "x".into(),
                }))),
                ExitStatus::FailedHalted,
            ),
            (
                Err(Error::StalePlan {
                    why: "w".into(),
                    plan_file: None,
                }),
                ExitStatus::StalePlan,
            ),
            (Err(Error::Message("m".into())), ExitStatus::Error),
        ];
        for (result, status) in cases {
            assert_eq!(exit_status(&result), status, "{result:?}");
        }
    }

    #[test]
    fn a_completed_apply_reads_as_before_and_as_json() {
        let result = Ok(Outcome::Completed {
            verb: Verb::Apply,
            origin: crate::state::Origin::Apply,
            revision: 3,
            summary: "Plan: 0 to create, 1 to roll, 0 to destroy.".into(),
            timer: None,
        });
        assert_eq!(
            human(&result),
            (
                Stream::Out,
                "\nApply complete: revision 3. Plan: 0 to create, 1 to roll, 0 to destroy.\n"
                    .into()
            )
        );
        let v = parse(&result);
        assert_eq!(v["event"], "outcome");
        assert_eq!(v["format_version"], OUTCOME_FORMAT_VERSION);
        assert_eq!(v["outcome"], "completed");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["revision"], 3);
        assert_eq!(
            v["message"],
            "Apply complete: revision 3. Plan: 0 to create, 1 to roll, 0 to destroy."
        );
    }

    #[test]
    fn a_rollback_names_its_origin() {
        let result = Ok(Outcome::Completed {
            verb: Verb::RollBack,
            origin: crate::state::Origin::Rollback { to: 1, from: 2 },
            revision: 3,
            summary: "S.".into(),
            timer: Some("timer".into()),
        });
        assert_eq!(
            human(&result).1,
            "\nRollback complete (rollback to revision 1 (from 2)): revision 3. S.\ntimer\n"
        );
        assert_eq!(parse(&result)["scale_down"], "timer");
    }

    /// Pins a fix: a promote used to end with "Rollback complete (apply)".
    #[test]
    fn a_promote_says_it_promoted() {
        let result = Ok(Outcome::Completed {
            verb: Verb::Promote,
            origin: crate::state::Origin::Apply,
            revision: 4,
            summary: "S.".into(),
            timer: None,
        });
        assert_eq!(
            human(&result).1,
            "\nPromote complete (apply): revision 4. S.\n"
        );
    }

    #[test]
    fn failures_go_to_stderr_with_their_exit_code() {
        let restored = Err(Error::Restored {
            verb: Verb::RollBack,
            failure: failure(),
        });
        assert_eq!(
            human(&restored),
            (
                Stream::Err,
                "\nerror: roll back failed and the previous revision was restored.\nservice.web: step `health` failed: timed out\n".into()
            )
        );
        let v = parse(&restored);
        assert_eq!(
            (v["outcome"].clone(), v["exit_code"].clone()),
            (json!("restored"), json!(3))
        );
        assert_eq!(v["failure"]["step"], "health");

        let interrupted = Err(Error::Halted(Box::new(Halt::Interrupted {
            after: None,
            unfinished: 4,
            prior: 3,
        })));
        assert_eq!(
            human(&interrupted).1,
            "\nStopped safely before any step finished: revision 4 is unfinished.\n  gantry apply --resume   continue it\n  gantry apply --undo     put revision 3 back\n"
        );
        assert_eq!(parse(&interrupted)["exit_code"], 4);
    }

    #[test]
    fn cancelling_is_said_on_stdout() {
        assert_eq!(
            human(&Err(Error::Cancelled)),
            (Stream::Out, "Cancelled; nothing was changed.\n".into())
        );
    }

    #[test]
    fn stale_plans_name_the_file_or_the_wait() {
        let file = Err(Error::StalePlan {
            why: "serial moved".into(),
            plan_file: Some("r.plan".into()),
        });
        assert_eq!(
            human(&file).1,
            "error: the plan file r.plan is stale: serial moved. Run `gantry plan --out r.plan` again.\n"
        );
        let waited = Err(Error::StalePlan {
            why: "serial moved".into(),
            plan_file: None,
        });
        assert_eq!(
            human(&waited).1,
            "error: the state moved while waiting: serial moved\n"
        );
        assert_eq!(parse(&waited)["exit_code"], 6);
    }

    #[test]
    fn the_recovery_choices_read_as_before_and_list_the_commands() {
        let c = Choices::Unfinished {
            run: "revision 2 (...)".into(),
            prior: 1,
        };
        assert_eq!(
            c.human(),
            "the last run did not finish: revision 2 (...)\nChoose:\n  gantry apply --resume   reconcile with the engine, then continue to the configuration\n  gantry apply --undo     put revision 1 back as it was before that run\n  gantry rollback         the same undo (an incident's way out)\n`gantry status` shows what runs now."
        );
        let held = Choices::Held {
            run: "revision 2 (...)".into(),
        };
        assert_eq!(
            held.human(),
            "The last run did not finish: revision 2 (...)\n  gantry promote    continue it (switch the load balancers to the new colour)\n  gantry rollback   abandon it"
        );
        let v = parse(&Err(Error::Unfinished(c)));
        assert_eq!(v["outcome"], "unfinished");
        assert_eq!(v["choices"][1]["command"], "gantry apply --undo");
        assert_eq!(v["exit_code"], 1);
    }
}
