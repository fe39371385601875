//! A clock that says what the test sets: timestamps in the state and the journal are
//! predictable, and a due time can be reached by moving the clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::ports::Clock;

/// Cloning shares the time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<Mutex<SystemTime>>,
}

impl FakeClock {
    /// Starts at `rfc3339` (e.g. `2026-01-01T00:00:00Z`).
    pub fn at(rfc3339: &str) -> Self {
        let t = humantime::parse_rfc3339(rfc3339).expect("an RFC 3339 time");
        FakeClock {
            now: Arc::new(Mutex::new(t)),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock::at("2026-01-01T00:00:00Z")
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
