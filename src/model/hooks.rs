//! `[hooks]`: the user's commands gantry runs on its own machine around a run. They are not
//! resources: they are not in plans, not recorded in the state, and changing them alone is
//! no change. `ops::hooks` runs them; what they get is documented there and in
//! docs/configuration.md.

use super::Duration;

/// Time limit of a hook when `[hooks] timeout` is not given.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// The validated `[hooks]` table (all empty when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    pub before_apply: Option<Vec<String>>,
    pub after_apply: Option<Vec<String>>,
    pub on_failure: Option<Vec<String>>,
    pub after_rollback: Option<Vec<String>>,
    /// Time limit of each hook.
    pub timeout: Duration,
    /// Names of service secrets the hooks get all the same, sorted.
    pub secret_env: Vec<String>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            before_apply: None,
            after_apply: None,
            on_failure: None,
            after_rollback: None,
            timeout: DEFAULT_HOOK_TIMEOUT,
            secret_env: Vec::new(),
        }
    }
}

/// Where in a run a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    BeforeApply,
    AfterApply,
    OnFailure,
    AfterRollback,
}

impl HookPoint {
    /// The key of `[hooks]`.
    pub fn key(self) -> &'static str {
        match self {
            HookPoint::BeforeApply => "before_apply",
            HookPoint::AfterApply => "after_apply",
            HookPoint::OnFailure => "on_failure",
            HookPoint::AfterRollback => "after_rollback",
        }
    }
}

impl Hooks {
    /// The command configured at `point`, if any.
    pub fn command(&self, point: HookPoint) -> Option<&[String]> {
        match point {
            HookPoint::BeforeApply => self.before_apply.as_deref(),
            HookPoint::AfterApply => self.after_apply.as_deref(),
            HookPoint::OnFailure => self.on_failure.as_deref(),
            HookPoint::AfterRollback => self.after_rollback.as_deref(),
        }
    }
}
