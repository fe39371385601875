//! An extra, real Docker engine for ONE test: an [`extra_engine`](super::extra_engine) (own
//! `dockerd`, data root, exec root, containerd, pid file and bridge `gpe<pid>x<n>` on a free
//! `10.125.X.1/24`) that no other test shares, so that the test may disturb it: restart it
//! ([`ExtraEngine::restart`], as a reboot would) and watch what comes back. gantry reaches it
//! on its unix socket, like the swarm engine.
//!
//! ```ignore
//! use crate::support::private_engine;
//!
//! #[test]
//! fn my_test() {
//!     let Some(e) = private_engine::require_private_engine("my_test") else {
//!         return; // skipped locally; panics instead when CI=true
//!     };
//!     e.load_images(&[&image]);         // docker save | docker -H <e> load
//!     let toml = e.host_toml("h");       // [[host]] on its unix socket
//!     e.restart();                       // SIGTERM, wait for all of it to exit, start again
//! }
//! ```
//!
//! Stopped, its bridges and directory removed, when the value drops (also when the test
//! panics); engines of killed test processes are reaped as `extra_engine` says. Published
//! ports are served by the userland proxy (`docker-proxy`, the default, stated explicitly)
//! on the host's addresses, as for the second engine.
#![allow(dead_code)]

use std::ops::Deref;

use super::extra_engine::{self, ExtraEngine, Kind};

static KIND: Kind = Kind {
    what: "private",
    dir_prefix: "gantry-pe-",
    bridge_prefix: "gpe",
    more_bridges: &[],
    subnet_prefix: "10.125",
    tools: &[],
    needs_root: "a private dockerd needs root",
    tests: "the engine-restart tests",
};

/// A running `dockerd` of one test; [`ExtraEngine`]'s methods and fields (`socket`,
/// `docker_ok`, `load_images`, `restart`, ...) through `Deref`.
pub struct PrivateEngine {
    engine: ExtraEngine,
}

impl Deref for PrivateEngine {
    type Target = ExtraEngine;

    fn deref(&self) -> &ExtraEngine {
        &self.engine
    }
}

/// A new engine for the calling test alone. When one cannot run here, prints
/// `SKIPPED: <test>: <why>` and returns `None`, except under `CI=true`, where it panics.
/// When it could run but does not start, panics with what failed.
pub fn require_private_engine(test: &str) -> Option<PrivateEngine> {
    extra_engine::private(&KIND, test, || {
        let (engine, ()) =
            ExtraEngine::start(&KIND, |_| (vec!["--userland-proxy=true".to_string()], ()));
        PrivateEngine { engine }
    })
}

impl PrivateEngine {
    /// A `[[host]]` table for gantry: this engine on its unix socket, replicas on 127.0.0.1.
    pub fn host_toml(&self, name: &str) -> String {
        format!(
            "[[host]]\nname = \"{name}\"\ndocker = \"{}\"\naddress = \"127.0.0.1\"\n",
            self.socket
        )
    }
}
