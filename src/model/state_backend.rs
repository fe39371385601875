//! `[state]`: where a project's state, lock and journal are kept. Validated here, opened by
//! `ops` through the adapters of `drivers::store`.

use super::Duration;

/// A lock whose heartbeat is older than this is stale when `[state] stale_lock_after` is not
/// given.
pub const DEFAULT_STALE_LOCK_AFTER: Duration = Duration::from_secs(120);

/// The validated `[state]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// `.gantry/` beside the configuration (or `--state-dir`).
    #[default]
    Local,
    S3(S3Backend),
}

/// `backend = "s3"`: an S3-compatible bucket shared by everyone who deploys the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Backend {
    pub bucket: String,
    /// Prefix of every object (no leading or trailing `/`).
    pub key: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub stale_lock_after: Duration,
}

impl S3Backend {
    /// `s3://bucket/key`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}
