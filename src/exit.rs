//! Exit codes: the contract scripts and CI branch on. Which one a command ends with is
//! decided from its outcome in one place, `ops::outcome::exit_status`.

/// The exit status of every gantry command (see README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Success (for `plan --detailed-exitcode`: success and no changes).
    Success,
    /// Error before anything changed: configuration, pre-flight, usage.
    Error,
    /// `plan --detailed-exitcode`: there are changes.
    Changes,
    /// apply/rollback failed and the previous revision was restored.
    FailedRestored,
    /// apply/rollback failed and was NOT fully restored: a human must look.
    FailedHalted,
    /// Another run holds the lock.
    Locked,
    /// The plan file is stale.
    StalePlan,
    /// `exec`: the exit code of the command gantry ran for the user, passed on.
    Command(i32),
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Error => 1,
            ExitStatus::Changes => 2,
            ExitStatus::FailedRestored => 3,
            ExitStatus::FailedHalted => 4,
            ExitStatus::Locked => 5,
            ExitStatus::StalePlan => 6,
            ExitStatus::Command(code) => code,
        }
    }
}
