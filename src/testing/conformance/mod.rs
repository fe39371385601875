//! One contract suite per port, run against the in-memory fake (unit tests, here) and
//! against the real adapter (`tests/conformance.rs`), as Terraform's `statemgr.TestFull`
//! does for its state managers: what the executor relies on is written down once, and a fake
//! that drifts from its adapter fails the same assertions the adapter passes.
//!
//! Each suite panics with what broke. The real adapters' fixtures (an image, free ports, a
//! running HTTP server, a swarm-mode engine) come from the caller.

pub mod clock;
pub mod commands;
pub mod lb;
pub mod prober;
pub mod runtime;
pub mod state;
pub mod swarm;

use std::future::Future;
use std::time::Duration;

/// Polls `observe` until it gives `expected` or `within` has passed; returns the last value.
/// Real load balancers and managers apply changes asynchronously (nginx's old workers answer
/// for a moment after a reload).
pub async fn eventually<T, F, Fut>(expected: &T, within: Duration, mut observe: F) -> T
where
    T: PartialEq,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = observe().await;
        if &seen == expected || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
