//! In-memory fakes of every port the executor uses (`crate::ports`, and the state sink), so
//! that unit tests can drive the executor without Docker, load balancers, a network or a
//! wall clock; and the conformance suites (`conformance`) that hold each fake to what its
//! real adapter does.
//!
//! Every fake is cheap to clone and clones share their state: a test hands one clone to the
//! executor and keeps another to script faults and to look at what happened.

pub mod clock;
pub mod commands;
pub mod conformance;
pub mod lb;
pub mod prober;
pub mod runtime;
pub mod sink;
pub mod store;
pub mod swarm;

pub use clock::FakeClock;
pub use commands::{CommandCall, FakeCommands};
pub use lb::{FakeLb, SetCall};
pub use prober::{FakeAnswer, FakeProber};
pub use runtime::{FakeOp, FakeRuntime};
pub use sink::MemorySink;
pub use store::MemoryStore;
pub use swarm::{FakeSwarm, FakeUpdate};

/// The model of a gantry.toml given as text (env files are refused); panics with the
/// diagnostics when it is invalid.
pub fn model(toml: &str) -> crate::model::Model {
    struct NoFiles;
    impl crate::model::FileFacts for NoFiles {
        fn env_file(&self, path: &str) -> Result<crate::model::EnvFileFacts, String> {
            Err(format!("no env files in tests ({path})"))
        }
    }
    match crate::model::validate(crate::config::parse(toml), &NoFiles) {
        Ok(m) => m,
        Err(d) => panic!("invalid test config: {d:#?}"),
    }
}

#[cfg(test)]
mod tests;
