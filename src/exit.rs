//! Exit codes: the contract scripts and CI branch on. Which one a command ends with is
//! decided from its outcome in one place, `ops::outcome::exit_status`.

/// The exit status of every gantry command (see README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Success (for `plan --detailed-exitcode`: success and no changes).
    Success = 0,
    /// Error before anything changed: configuration, pre-flight, usage.
    Error = 1,
    /// `plan --detailed-exitcode`: there are changes.
    Changes = 2,
    /// apply/rollback failed and the previous revision was restored.
    FailedRestored = 3,
    /// apply/rollback failed and was NOT fully restored: a human must look.
    FailedHalted = 4,
    /// Another run holds the lock.
    Locked = 5,
    /// The plan file is stale.
    StalePlan = 6,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        self as i32
    }
}
