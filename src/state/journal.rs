//! The journal: what an apply or rollback is doing, one JSON line per event, written (and
//! fsynced) BEFORE each change is made and after each step ends. The state file says what
//! is; the journal says what was in flight. After a crash (kill -9, power loss, an engine
//! restart) the next command reads it to report the interrupted run and to undo it
//! (every `intent` carries its own undo) or resume it. Like Pulumi's `pending_operations`.
//!
//! This module is the format only; `drivers::journal` appends and reads the file.

use serde::{Deserialize, Serialize};

use crate::model::ServiceSpec;
use crate::state::{Member, Origin, Outcome, State};

pub const JOURNAL_FILE_NAME: &str = "journal.jsonl";

/// How to reverse one change. Every undo is idempotent, so that a recovery can run the
/// undo of a change that may or may not have happened before the crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// Put a load balancer's members back.
    Members { lb: String, previous: Vec<Member> },
    /// Remove a container this run created (`id` may be its name: the intent is written
    /// before the engine has given it an ID).
    Created {
        host: String,
        id: String,
        #[serde(with = "millis")]
        grace: std::time::Duration,
    },
    /// Start again a container this run stopped, and wait until it is healthy.
    Stopped {
        host: String,
        id: String,
        spec: Box<ServiceSpec>,
        port: Option<u16>,
    },
    /// Stop again a kept container this run started (rollback fast path).
    Restarted {
        host: String,
        id: String,
        #[serde(with = "millis")]
        grace: std::time::Duration,
    },
    /// Put a Swarm service back as it was before this run set it: remove it when this run
    /// created it, else have Swarm roll it back to its previous spec. Only done while the
    /// service still carries this run's `revision` label (so it is done once).
    Swarm {
        host: String,
        name: String,
        revision: u64,
        created: bool,
    },
    /// Exec `command` in the container again (blue-green: the old colour's `resume_command`
    /// after it was sent idle, its `idle_command` after it was resumed). The user's commands
    /// are expected to be idempotent, as every undo is.
    Exec {
        host: String,
        id: String,
        command: Vec<String>,
    },
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    /// A run starts: who, what, and the state it started from (what an undo goes back to).
    Begin {
        revision: u64,
        origin: Origin,
        pid: u32,
        host: String,
        at: String,
        prior: Box<State>,
    },
    StepStarted {
        resource: String,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        at: String,
    },
    StepFinished {
        resource: String,
        step: String,
        at: String,
    },
    StepFailed {
        resource: String,
        step: String,
        reason: String,
        at: String,
    },
    /// About to change something; `undo` reverses it.
    Intent { undo: Undo },
    /// About to change a load balancer's members from `previous` to `next`.
    Members {
        lb: String,
        previous: Vec<Member>,
        next: Vec<Member>,
    },
    /// A step failed and the run restores what it changed.
    Restoring { at: String },
    /// First interrupt (Ctrl-C, SIGTERM): the step in flight finished, the run stopped.
    Interrupted { at: String },
    /// Second interrupt: stopped at once, in the middle of a step.
    Aborted { at: String },
    /// A blue-green release stopped at its preview: `plan` and where each resource goes on
    /// (`positions`: resource -> next step) for `gantry promote`.
    Held {
        at: String,
        plan: Box<crate::plan::Plan>,
        positions: std::collections::BTreeMap<String, usize>,
        /// Image reference -> the image ID the release runs (the rest of it runs the same).
        image_ids: std::collections::BTreeMap<String, String>,
    },
    /// `gantry promote` continues the held release.
    Promoted { at: String },
    /// The run is over (an apply's clean-up of old containers may follow: safe to
    /// interrupt); nothing to recover.
    End { outcome: Outcome, at: String },
}

/// A journal as read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journal {
    pub entries: Vec<Entry>,
    /// A last line cut short by a crash while it was written (ignored).
    pub torn_tail: bool,
}

/// A release held at its preview.
pub struct Held<'a> {
    pub plan: &'a crate::plan::Plan,
    pub positions: &'a std::collections::BTreeMap<String, usize>,
    pub image_ids: &'a std::collections::BTreeMap<String, String>,
}

/// What an unfinished run was doing when it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished<'a> {
    pub revision: u64,
    pub origin: &'a Origin,
    pub pid: u32,
    pub host: &'a str,
    pub started_at: &'a str,
    pub prior: &'a State,
    /// `(resource, step)` started and neither finished nor failed.
    pub in_flight: Option<(&'a str, &'a str)>,
    /// The last step that finished.
    pub last_finished: Option<(&'a str, &'a str)>,
    pub steps_finished: usize,
    /// Stopped by an interrupt (`Interrupted`/`Aborted`) rather than killed.
    pub how: &'static str,
    /// Held on purpose at a blue-green preview (not a crash).
    pub held: bool,
}

impl Journal {
    /// Parses the journal's lines. A torn last line is tolerated (the crash came while it was
    /// written: the change it announced was not begun); any other bad line is an error.
    pub fn parse(text: &str) -> Result<Journal, String> {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut journal = Journal::default();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<Entry>(line) {
                Ok(e) => journal.entries.push(e),
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => journal.torn_tail = true,
                Err(e) => return Err(format!("line {}: {e}", i + 1)),
            }
        }
        Ok(journal)
    }

    /// The run this journal describes, when it never reached its `End`.
    pub fn unfinished(&self) -> Option<Unfinished<'_>> {
        let Some(Entry::Begin {
            revision,
            origin,
            pid,
            host,
            at,
            prior,
        }) = self.entries.first()
        else {
            return None;
        };
        let mut open: Vec<(&str, &str)> = Vec::new();
        let mut last_finished = None;
        let mut steps_finished = 0;
        let mut how = "the process died (killed, crashed, or the machine went down)";
        let mut held = false;
        for e in &self.entries {
            match e {
                Entry::End { .. } => return None,
                Entry::StepStarted { resource, step, .. } => open.push((resource, step)),
                Entry::StepFinished { resource, step, .. }
                | Entry::StepFailed { resource, step, .. } => {
                    open.retain(|o| *o != (resource.as_str(), step.as_str()));
                    if matches!(e, Entry::StepFinished { .. }) {
                        steps_finished += 1;
                        last_finished = Some((resource.as_str(), step.as_str()));
                    }
                }
                Entry::Held { .. } => {
                    held = true;
                    how = "it is held at its preview (blue-green), waiting for `gantry promote`"
                }
                Entry::Promoted { .. } => {
                    held = false;
                    how = "the process died while promoting (killed, crashed, or the machine went down)"
                }
                Entry::Interrupted { .. } => how = "it was interrupted (Ctrl-C or SIGTERM)",
                Entry::Aborted { .. } => how = "it was stopped at once by a second interrupt",
                _ => {}
            }
        }
        Some(Unfinished {
            revision: *revision,
            origin,
            pid: *pid,
            host,
            started_at: at,
            prior,
            in_flight: open.last().copied(),
            last_finished,
            steps_finished,
            how,
            held,
        })
    }

    /// The plan, positions and image IDs of a release held at its preview, when it still is.
    pub fn held(&self) -> Option<Held<'_>> {
        if !self.unfinished()?.held {
            return None;
        }
        self.entries.iter().rev().find_map(|e| match e {
            Entry::Held {
                plan,
                positions,
                image_ids,
                ..
            } => Some(Held {
                plan,
                positions,
                image_ids,
            }),
            _ => None,
        })
    }

    /// The undo of every change the run announced, oldest first. Members changes whose
    /// outcome is unknown undo to their `previous` members.
    pub fn undos(&self) -> Vec<Undo> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Intent { undo } => Some(undo.clone()),
                Entry::Members { lb, previous, .. } => Some(Undo::Members {
                    lb: lb.clone(),
                    previous: previous.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Members a load balancer may have now (announced as `next` by a change whose outcome
    /// is unknown), per load balancer.
    pub fn maybe_members(&self) -> Vec<(&str, &[Member])> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Members { lb, next, .. } => Some((lb.as_str(), next.as_slice())),
                _ => None,
            })
            .collect()
    }
}

impl Unfinished<'_> {
    /// A paragraph for the user: what ran, where it stopped.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "revision {} ({}, started {} by pid {} on {}) did not finish: {}.",
            self.revision, self.origin, self.started_at, self.pid, self.host, self.how
        );
        match (self.in_flight, self.last_finished) {
            (Some((resource, step)), _) => {
                s.push_str(&format!(" In flight: {resource}: `{step}`."))
            }
            (None, Some((resource, step))) => {
                s.push_str(&format!(" Last step done: {resource}: `{step}`."))
            }
            (None, None) => s.push_str(" No step had finished."),
        }
        s.push_str(&format!(" {} step(s) had finished.", self.steps_finished));
        s
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin() -> Entry {
        Entry::Begin {
            revision: 3,
            origin: Origin::Apply,
            pid: 42,
            host: "h".into(),
            at: "t0".into(),
            prior: Box::new(State::empty("p", "l".into())),
        }
    }

    fn lines(entries: &[Entry]) -> String {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn a_torn_last_line_is_tolerated_and_a_finished_run_is_not_unfinished() {
        let step = |e: &str| Entry::StepStarted {
            resource: "service.web".into(),
            step: e.into(),
            host: None,
            at: "t".into(),
        };
        let mut text = lines(&[begin(), step("start #1")]);
        text.push_str("{\"event\":\"step_fin");
        let j = Journal::parse(&text).unwrap();
        assert!(j.torn_tail);
        let u = j.unfinished().unwrap();
        assert_eq!(u.in_flight, Some(("service.web", "start #1")));
        assert!(u.describe().contains("In flight: service.web: `start #1`"));

        let done = lines(&[
            begin(),
            Entry::End {
                outcome: Outcome::Succeeded,
                at: "t".into(),
            },
        ]);
        assert!(Journal::parse(&done).unwrap().unfinished().is_none());
        assert!(Journal::parse("{\"event\":\"nonsense\"}\n{}\n").is_err());
    }

    #[test]
    fn undos_come_from_intents_and_member_changes_in_order() {
        let m = |a: &str| Member {
            address: a.into(),
            service: "web".into(),
            replica: 1,
            host: String::new(),
        };
        let j = Journal::parse(&lines(&[
            begin(),
            Entry::Intent {
                undo: Undo::Created {
                    host: "local".into(),
                    id: "p-web-3-1".into(),
                    grace: std::time::Duration::from_secs(5),
                },
            },
            Entry::Members {
                lb: "front".into(),
                previous: vec![m("a:1")],
                next: vec![m("a:1"), m("a:2")],
            },
        ]))
        .unwrap();
        let undos = j.undos();
        assert_eq!(undos.len(), 2);
        assert!(
            matches!(&undos[0], Undo::Created { id, grace, .. } if id == "p-web-3-1" && grace.as_secs() == 5)
        );
        assert!(
            matches!(&undos[1], Undo::Members { lb, previous } if lb == "front" && previous.len() == 1)
        );
        assert_eq!(j.maybe_members()[0].1.len(), 2);
    }
}
