//! The recorded state: what gantry last did, in a JSON file beside the config.
//!
//! This module is the file *format* only (Terraform's `statefile`, not its `statemgr`):
//! parse, check the version, serialise. Where the bytes live and how they are written
//! atomically is the drivers' business. `lineage` names one state's history (set when the
//! first apply creates it); `serial` increases with every write, so that a saved plan can
//! tell whether the state moved under it.

pub mod adopt;
pub mod journal;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{LbSpec, ServiceSpec, TaskSpec};

/// The state format this build reads and writes.
pub const STATE_FORMAT_VERSION: u32 = 1;
pub const STATE_FILE_NAME: &str = "state.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "gantry state file (.gantry/state.json)")]
pub struct State {
    pub format_version: u32,
    /// Random id given when the state is first created; never changes afterwards.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    pub project: String,
    /// The revision currently deployed (0 before the first successful apply).
    pub revision: u64,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceState>,
    #[serde(default)]
    pub lbs: BTreeMap<String, LbState>,
    /// Services with `runtime = "swarm"`: the Swarm service each runs as, by service name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub swarm: BTreeMap<String, SwarmService>,
    /// The last successful run of each task: whether the next apply runs it again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, TaskState>,
    /// Every apply and rollback attempt, oldest first.
    #[serde(default)]
    pub history: Vec<RevisionRecord>,
}

/// A task's last successful run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskState {
    pub spec: TaskSpec,
    /// Its service's image as written, which it ran from.
    pub image: String,
    /// The image ID it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The revision whose apply ran it.
    pub revision: u64,
}

/// One run of a task, in the history of the revision whose apply ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRunRecord {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// `None`: it did not exit (stopped at its timeout, or it could not start).
    pub exit_code: Option<i64>,
    pub duration_ms: u64,
    /// The last lines of its output (secret values masked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_lines: Vec<String>,
}

/// What started a revision. Written as the same text gantry always wrote (`apply`,
/// `rollback to revision 3 (from 5)`), so state files and journals of every version read
/// and write alike; text this build does not recognise is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Origin {
    Apply,
    /// `gantry adopt`: running containers gantry did not create, recorded as they run.
    Adopt,
    /// `gantry rollback`: back to revision `to`, from revision `from` (the one running then).
    Rollback {
        to: u64,
        from: u64,
    },
    /// Any other text, kept byte for byte.
    Other(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Apply => f.write_str("apply"),
            Origin::Adopt => f.write_str("adopt"),
            Origin::Rollback { to, from } => write!(f, "rollback to revision {to} (from {from})"),
            Origin::Other(s) => f.write_str(s),
        }
    }
}

impl std::str::FromStr for Origin {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rollback = || {
            let rest = s.strip_prefix("rollback to revision ")?;
            let (to, from) = rest.strip_suffix(')')?.split_once(" (from ")?;
            Some(Origin::Rollback {
                to: to.parse().ok()?,
                from: from.parse().ok()?,
            })
        };
        let parsed = match s {
            "apply" => Origin::Apply,
            "adopt" => Origin::Adopt,
            _ => rollback().unwrap_or_else(|| Origin::Other(s.to_string())),
        };
        // Only text that comes back byte for byte is recognised (`revision 03` is not).
        Ok(if parsed.to_string() == s {
            parsed
        } else {
            Origin::Other(s.to_string())
        })
    }
}

impl From<Origin> for String {
    fn from(o: Origin) -> String {
        o.to_string()
    }
}

impl From<String> for Origin {
    fn from(s: String) -> Origin {
        match s.parse() {
            Ok(o) => o,
            Err(never) => match never {},
        }
    }
}

/// One attempt to move to a new revision, and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevisionRecord {
    pub revision: u64,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// What started this revision: `apply`, `adopt`, or `rollback to revision N (from M)`. A promote
    /// keeps the origin of the release it continues.
    #[schemars(with = "String")]
    pub origin: Origin,
    pub outcome: Outcome,
    /// The resolved spec of every service in this revision and the image ID it ran.
    pub services: BTreeMap<String, RevisionService>,
    /// The tasks this apply ran, succeeded or not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, TaskRunRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevisionService {
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The registry's digest of that image (`repo@sha256:...`), when pre-flight pulled it
    /// from a registry (this revision or an earlier one with the same image ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The revision that created this service's running replicas (older than the record when
    /// the service did not change): the containers a fast rollback to this record restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_revision: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    InProgress,
    Succeeded,
    /// Failed; the previous revision was restored.
    RolledBack,
    /// Failed and left as it was (`on_failure = "pause"`) or not fully restored.
    Halted,
    /// The process stopped in the middle (killed, crashed, interrupted); the next command
    /// found it in the journal and resumed or undid it.
    Interrupted,
    /// A blue-green release held at its preview, waiting for `gantry promote`.
    Held,
}

impl Outcome {
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::InProgress => "in progress (or interrupted)",
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "failed, previous revision restored",
            Outcome::Halted => "failed, halted",
            Outcome::Interrupted => {
                "did not finish (interrupted, or held and abandoned); resumed or undone"
            }
            Outcome::Held => "held at the preview (gantry promote continues)",
        }
    }
}

/// One service as last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceState {
    /// The spec the live replicas were created from.
    pub spec: ServiceSpec,
    /// The revision that created them.
    pub revision: u64,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    /// Blue-green: the previous colour, still running beside the live one after a switch
    /// (a rollback switches back to it), until it is scaled down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_colour: Option<OldColour>,
}

/// The old colour of a blue-green service after a switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OldColour {
    /// The revision of its replicas.
    pub revision: u64,
    /// When `gantry scale-down` stops it but for `keep` replicas (RFC 3339, UTC); `None`
    /// once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_at: Option<String>,
    /// Replicas that stay running after the scale-down.
    pub keep: u32,
}

/// A container gantry created and tracks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    /// 1-based replica index within its host.
    pub index: u32,
    pub host: String,
    /// `<project>-<service>-<revision>-<index>`.
    pub name: String,
    pub container_id: String,
    /// Image ID (`sha256:...`) the container runs: what a rollback restores, whatever the tag
    /// points at by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub status: ReplicaStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    Running,
    /// Stopped and kept, so that restoring it is a `docker start`.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LbState {
    pub spec: LbSpec,
    /// The replicas currently in the load balancer, sorted by address.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// A Docker Swarm service gantry set (`runtime = "swarm"`). Swarm keeps its tasks; gantry
/// keeps what a rollback needs: which image, through which manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwarmService {
    /// The manager's host name.
    pub host: String,
    /// Swarm's service ID.
    pub id: String,
    /// `<project>_<service>`.
    pub name: String,
    /// Image ID (`sha256:...`) the service runs, pinned in its spec.
    pub image_id: String,
    /// The revision that set this spec.
    pub revision: u64,
    /// The published port of the container port (the routing mesh), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_port: Option<u16>,
}

/// One replica as a load balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// `host:port` the load balancer sends to.
    pub address: String,
    pub service: String,
    pub replica: u32,
    /// The `[[host]]` the replica runs on (for load balancers scoped to some hosts).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// Retention: running replicas stay, and the stopped replicas of the newest `keep` revisions
/// among the stopped ones; returns `(kept, beyond retention)`.
pub fn retain_kept(replicas: Vec<Replica>, keep: u32) -> (Vec<Replica>, Vec<Replica>) {
    let mut revisions: Vec<u64> = replicas
        .iter()
        .filter(|r| r.status == ReplicaStatus::Stopped)
        .map(|r| r.revision)
        .collect();
    revisions.sort_unstable_by(|a, b| b.cmp(a));
    revisions.dedup();
    revisions.truncate(keep as usize);
    replicas
        .into_iter()
        .partition(|r| r.status == ReplicaStatus::Running || revisions.contains(&r.revision))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("is not valid state JSON at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "was written by a newer gantry (state format {found}; this gantry reads up to {supported}); upgrade gantry, do not edit the file"
    )]
    NewerFormat { found: u32, supported: u32 },
}

impl State {
    /// A fresh, empty state (the first apply creates one with a new lineage).
    pub fn empty(project: &str, lineage: String) -> Self {
        State {
            format_version: STATE_FORMAT_VERSION,
            lineage,
            serial: 0,
            project: project.to_string(),
            revision: 0,
            services: BTreeMap::new(),
            lbs: BTreeMap::new(),
            swarm: BTreeMap::new(),
            tasks: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// Parses a state file, checking the format version before anything else so that a
    /// newer file is reported as such rather than as "unknown field".
    pub fn from_json(text: &str) -> Result<State, StateError> {
        #[derive(Deserialize)]
        struct Probe {
            format_version: Option<u32>,
        }
        let malformed = |e: serde_json::Error| StateError::Malformed {
            line: e.line(),
            column: e.column(),
            message: e
                .to_string()
                .split(" at line")
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let probe: Probe = serde_json::from_str(text).map_err(malformed)?;
        match probe.format_version {
            Some(found) if found > STATE_FORMAT_VERSION => {
                return Err(StateError::NewerFormat {
                    found,
                    supported: STATE_FORMAT_VERSION,
                });
            }
            _ => {}
        }
        serde_json::from_str(text).map_err(malformed)
    }

    /// The number the next attempt gets: one more than any attempt recorded.
    pub fn next_revision(&self) -> u64 {
        self.history
            .iter()
            .map(|r| r.revision)
            .max()
            .unwrap_or(self.revision)
            .max(self.revision)
            + 1
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("state serialises");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_format_is_named_as_such() {
        let err = State::from_json(r#"{"format_version": 99, "whatever": true}"#).unwrap_err();
        assert_eq!(
            err,
            StateError::NewerFormat {
                found: 99,
                supported: STATE_FORMAT_VERSION
            }
        );
    }

    #[test]
    fn truncated_file_reports_position() {
        let full = State::empty("p", "abc".into()).to_json();
        let err = State::from_json(&full[..full.len() / 2]).unwrap_err();
        assert!(matches!(err, StateError::Malformed { .. }), "{err}");
    }

    #[test]
    fn retention_keeps_the_newest_stopped_revisions() {
        let r = |rev: u64, status: ReplicaStatus| Replica {
            index: 1,
            host: "h".into(),
            name: format!("p-s-{rev}-1"),
            container_id: format!("c{rev}"),
            image_id: None,
            revision: rev,
            host_port: None,
            status,
        };
        let all = vec![
            r(1, ReplicaStatus::Stopped),
            r(2, ReplicaStatus::Stopped),
            r(3, ReplicaStatus::Stopped),
            r(4, ReplicaStatus::Running),
        ];
        let (kept, gone) = retain_kept(all.clone(), 2);
        assert_eq!(
            kept.iter().map(|r| r.revision).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(gone.iter().map(|r| r.revision).collect::<Vec<_>>(), [1]);
        let (kept, _) = retain_kept(all, 0);
        assert_eq!(kept.iter().map(|r| r.revision).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn round_trips() {
        let s = State::empty("p", "abc".into());
        assert_eq!(State::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn origin_parses_and_displays_every_form() {
        let cases = [
            ("apply", Origin::Apply),
            ("adopt", Origin::Adopt),
            (
                "rollback to revision 3 (from 5)",
                Origin::Rollback { to: 3, from: 5 },
            ),
            ("", Origin::Other(String::new())),
            ("rollback of 3", Origin::Other("rollback of 3".into())),
            (
                "rollback to revision 03 (from 5)",
                Origin::Other("rollback to revision 03 (from 5)".into()),
            ),
            (
                "rollback to revision 3 (from x)",
                Origin::Other("rollback to revision 3 (from x)".into()),
            ),
        ];
        for (text, origin) in cases {
            assert_eq!(text.parse::<Origin>().unwrap(), origin, "{text}");
            assert_eq!(origin.to_string(), text);
        }
    }

    #[test]
    fn state_with_todays_origins_round_trips_byte_for_byte() {
        let record = |revision: u64, origin: &str| {
            format!(
                r#"{{"revision":{revision},"started_at":"t","finished_at":"t","origin":"{origin}","outcome":"succeeded","services":{{}}}}"#
            )
        };
        let text = format!(
            r#"{{"format_version":1,"lineage":"l","serial":4,"project":"p","revision":3,"services":{{}},"lbs":{{}},"history":[{},{},{}]}}"#,
            record(1, "apply"),
            record(2, "rollback to revision 1 (from 1)"),
            record(3, "something older"),
        );
        let state: State = serde_json::from_str(&text).unwrap();
        assert_eq!(state.history[0].origin, Origin::Apply);
        assert_eq!(state.history[1].origin, Origin::Rollback { to: 1, from: 1 });
        assert_eq!(
            state.history[2].origin,
            Origin::Other("something older".into())
        );
        assert_eq!(serde_json::to_string(&state).unwrap(), text);
        assert_eq!(State::from_json(&state.to_json()).unwrap(), state);
    }
}
