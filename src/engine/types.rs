//! The executor's vocabulary: where it runs (hosts, sink, environment), what a run brings,
//! and what comes of a step and of a run.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use super::report::Reporter;
use crate::plan::StepOp;
use crate::ports::{Clock, CommandRunner, LoadBalancer, Prober, SwarmApi};
use crate::state::journal::Entry;
use crate::state::{Origin, State};

/// One host: its engine and the address load balancers and probes reach it on.
pub struct Target<R> {
    pub runtime: R,
    pub address: String,
    /// The same engine's Swarm service API (services with `runtime = "swarm"`).
    pub swarm: Option<Box<dyn SwarmApi>>,
}

/// Where the executor saves the state after every step, and journals every change before
/// it makes it.
pub trait StateSink: Send + Sync {
    fn save(&self, state: &State) -> Result<(), String>;
    /// Appends to the journal, durably, before returning.
    fn journal(&self, entry: &Entry) -> Result<(), String>;
}

/// The run's environment: engines, prober, commands, clock, reporter, sink and load-balancer
/// drivers, every one a port (`crate::ports`), so that unit tests run the executor on the
/// fakes of `crate::testing`. Built once per command session; an apply, a promote and a
/// recovery all run in it.
pub struct RunEnv<'a, R> {
    pub project: &'a str,
    pub hosts: &'a BTreeMap<String, Target<R>>,
    /// Health and warm-up probes (`drivers::probe::HttpProber`).
    pub prober: &'a dyn Prober,
    /// Preview checks (`drivers::command::LocalCommands`).
    pub commands: &'a dyn CommandRunner,
    /// Timestamps of the state and the journal, and when a scale-down is due
    /// (`drivers::clock::SystemClock`). Waiting is on tokio's clock.
    pub clock: &'a dyn Clock,
    pub reporter: &'a dyn Reporter,
    pub sink: &'a dyn StateSink,
    /// A driver per load balancer gantry can drive.
    pub lbs: &'a BTreeMap<String, Box<dyn LoadBalancer>>,
    /// Revisions whose stopped containers are kept after success (`keep_previous`).
    pub keep_previous: u32,
    /// `[project] labels`: carried by the networks and volumes the run creates.
    pub labels: &'a BTreeMap<String, String>,
    /// Set by the first Ctrl-C/SIGTERM: finish the steps in flight, then stop safely.
    pub interrupt: &'a AtomicBool,
}

/// What one apply, rollback or promote brings to the run, besides the plan and the state.
pub struct ApplyInputs<'a> {
    /// Resolved environment per service (`KEY=value`, secrets included; never logged).
    pub env: &'a BTreeMap<String, Vec<String>>,
    /// Image reference -> image ID, from pre-flight.
    pub image_ids: &'a BTreeMap<String, String>,
    /// Image reference -> `repo@sha256:...`, for the images pre-flight pulled.
    pub image_digests: &'a BTreeMap<String, String>,
    /// Recorded in the revision's history entry.
    pub origin: Origin,
    /// Where a blue-green release stops for `gantry promote`.
    pub hold: Hold,
}

/// Why a step failed: the reason, and the failing container's last output lines when there
/// is one to show.
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    pub reason: String,
    pub logs: Vec<String>,
}

impl StepError {
    /// A failure with no container output to show.
    pub fn new(reason: impl Into<String>) -> Self {
        StepError {
            reason: reason.into(),
            logs: Vec::new(),
        }
    }

    pub fn with_logs(reason: impl Into<String>, logs: Vec<String>) -> Self {
        StepError {
            reason: reason.into(),
            logs,
        }
    }
}

/// Blue-green hold points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hold {
    #[default]
    No,
    /// `apply --prepare`: the new colour is up and warm; stop before the preview check.
    BeforePreview,
    /// `apply --hold-at-preview`: stop after the preview check, before the switch.
    AfterPreview,
}

impl Hold {
    pub(super) fn is_at(self, op: &StepOp) -> bool {
        match self {
            Hold::No => false,
            Hold::BeforePreview => {
                matches!(op, StepOp::PreviewCheck { .. } | StepOp::Switch { .. })
            }
            Hold::AfterPreview => matches!(op, StepOp::Switch { .. }),
        }
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub resource: String,
    pub step: String,
    pub reason: String,
    /// The failing container's last output lines.
    pub logs: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: step `{}` failed: {}",
            self.resource, self.step, self.reason
        )?;
        if !self.logs.is_empty() {
            write!(f, "\n  last log lines of the container:")?;
            for l in &self.logs {
                write!(f, "\n    | {l}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApplyOutcome {
    Succeeded {
        revision: u64,
    },
    /// Failed; everything this apply changed was undone.
    RolledBack {
        failure: Failure,
    },
    /// A task failed before this apply had changed anything (nothing to restore).
    Unchanged {
        failure: Failure,
    },
    /// Failed and left where it stopped: `on_failure = "pause"`, or the restore failed too.
    Halted {
        failure: Failure,
        restore_error: Option<String>,
    },
    /// A blue-green release held at its preview; `gantry promote` continues it.
    Held {
        revision: u64,
    },
    /// Stopped by an interrupt after the steps in flight finished; the journal keeps the run
    /// open for `--resume` or `--undo`.
    Interrupted {
        /// The last step that finished, if any.
        after: Option<String>,
    },
}
