//! A real single-node Docker Swarm for the Swarm tests: an
//! [`extra_engine`](super::extra_engine) (its own `dockerd` beside the main engine, which
//! other tests use and which is never put in swarm mode), made a manager with
//! `docker swarm init`.
//!
//! ```ignore
//! use crate::support;
//! use support::swarm_engine;
//!
//! #[test]
//! fn my_test() {
//!     let Some(swarm) = swarm_engine::require_swarm_engine("my_test") else {
//!         return; // skipped locally; panics instead when CI=true
//!     };
//!     swarm.load_images(&[&image]);          // docker save | docker -H <swarm> load
//!     swarm.docker_ok(&["service", "ls"]);    // the manager, through its unix socket
//! }
//! ```
//!
//! One engine per test process, shared by the tests that run at the same time (the first
//! caller starts it, the drop of the last `Arc` stops it and removes everything). How it
//! stays out of the main engine's way is `extra_engine`'s (own config file, data root, exec
//! root, pid file, unix socket, containerd, `--storage-driver vfs`, its own bridge
//! `gsw<pid>x<n>` on a free `10.124.X.1/24`, `--iptables=false`, `--ip-forward=false`); what
//! Swarm adds:
//! - Swarm's `docker_gwbridge` network is created before `swarm init` with a bridge of its
//!   own name (`gsg<pid>x<n>`) on another free `10.124.Y.0/24` (the default name and subnet
//!   would be chosen from what the main engine uses);
//! - `swarm init` listens on `127.0.0.1:<free port>` (not 2377) with a free data-path
//!   (VXLAN) port, so that two test processes, or another swarm, do not collide.
//!
//! Without iptables, Swarm's routing mesh does not answer on published ports: the tests
//! observe Swarm through the engine (`docker service ps`, `service inspect`), not by HTTP.
#![allow(dead_code)]

use std::ops::Deref;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::docker::free_port;
use super::extra_engine::{self, ExtraEngine, Kind};

static KIND: Kind = Kind {
    what: "swarm",
    dir_prefix: "gantry-sw-",
    bridge_prefix: "gsw",
    more_bridges: &["gsg"],
    subnet_prefix: "10.124",
    tools: &[],
    needs_root: "a second dockerd (for swarm mode) needs root",
    tests: "the Swarm tests",
};

/// A running swarm-mode `dockerd`; [`ExtraEngine`]'s methods and fields (`socket`: what
/// gantry's `[[host]] docker` is given, `docker_ok`, `load_images`, ...) through `Deref`.
/// Left, stopped, its bridges and directory removed on drop.
pub struct SwarmEngine {
    engine: ExtraEngine,
    /// The bridge of Swarm's `docker_gwbridge` network.
    pub gw_bridge: String,
}

impl Deref for SwarmEngine {
    type Target = ExtraEngine;

    fn deref(&self) -> &ExtraEngine {
        &self.engine
    }
}

static CURRENT: Mutex<Weak<SwarmEngine>> = Mutex::new(Weak::new());

/// Why a swarm engine cannot run here, or `None`.
pub fn unavailable_reason() -> Option<String> {
    extra_engine::unavailable_reason(&KIND)
}

/// The swarm engine, started if this process has none running. When one cannot run here,
/// prints `SKIPPED: <test>: <why>` and returns `None`, except under `CI=true`, where it
/// panics. When it could run but does not start, panics with what failed.
pub fn require_swarm_engine(test: &str) -> Option<Arc<SwarmEngine>> {
    extra_engine::shared(&KIND, test, &CURRENT, SwarmEngine::start)
}

impl SwarmEngine {
    fn start() -> SwarmEngine {
        let started = Instant::now();
        let (engine, ()) = ExtraEngine::start(&KIND, |_| (Vec::new(), ()));
        let engine = SwarmEngine {
            gw_bridge: engine.more_bridges[0].clone(),
            engine,
        };
        // Swarm's gateway bridge, under a name and on a subnet of its own.
        let gw_subnet = engine.free_subnet();
        engine.docker_ok(&[
            "network",
            "create",
            "--driver=bridge",
            &format!("--subnet={gw_subnet}"),
            &format!("--opt=com.docker.network.bridge.name={}", engine.gw_bridge),
            "--opt=com.docker.network.bridge.enable_icc=false",
            "--opt=com.docker.network.bridge.enable_ip_masquerade=false",
            "docker_gwbridge",
        ]);
        let port = free_port();
        let data_port = free_udp_port();
        engine.docker_ok(&[
            "swarm",
            "init",
            &format!("--advertise-addr=127.0.0.1:{port}"),
            &format!("--listen-addr=127.0.0.1:{port}"),
            "--data-path-addr=127.0.0.1",
            &format!("--data-path-port={data_port}"),
        ]);
        eprintln!(
            "swarm engine in swarm mode {:.1}s after the start: gateway bridge {} {gw_subnet}, swarm on 127.0.0.1:{port}",
            started.elapsed().as_secs_f64(),
            engine.gw_bridge,
        );
        engine
    }
}

impl Drop for SwarmEngine {
    /// Services first (their tasks stop with them), then the swarm; the engine itself after
    /// this (the drop of [`ExtraEngine`]).
    fn drop(&mut self) {
        let services =
            String::from_utf8_lossy(&self.docker(&["service", "ls", "-q"]).stdout).to_string();
        let services: Vec<&str> = services.split_whitespace().collect();
        if !services.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(services);
            let _ = self.docker(&args);
        }
        let _ = self.docker(&["swarm", "leave", "--force"]);
    }
}

/// A UDP port free a moment ago, in the range Swarm accepts for its data path (1024-49151).
fn free_udp_port() -> u16 {
    let seed = std::process::id() % 20000;
    (0..20000)
        .map(|i| 20000 + ((seed + i) % 20000) as u16)
        .find(|p| std::net::UdpSocket::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free UDP port in 20000-39999")
}
