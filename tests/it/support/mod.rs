//! Helpers of the integration tests (`crate::support`).
//!
//! `project`: the one project fixture (temporary directory, unique name, the guard's labels,
//! `gantry.toml`) and running the gantry binary, always under a deadline. `process`: deadlines
//! and kill-on-drop guards for every process a test starts. `fixtures`: the offline tests'
//! files and in-memory configurations. `docker`: availability, per-process run id and labels,
//! a cleanup guard, the test-app image, free ports. `debian`: real images from Debian bookworm
//! packages with no registry (`mmdebstrap | docker import`, cached per process by the package
//! list; images adding programs to them, `docker create`, `cp`, `commit`); `stack`: the application-stack images made that way
//! (redis, the Python web app of `testapp/stack/`, its unhealthy release, an agent on UDP
//! 8125 / TCP 8126) and their health commands. `extra_engine`: a real dockerd of its own
//! beside the main engine, what `second_engine` (own bridge, TLS endpoint; multi-host tests),
//! `swarm_engine` (swarm mode; Docker Swarm tests) and `private_engine` (one test's own,
//! which it may restart) are made of. `nginx`, `haproxy`: real load balancers on loopback,
//! stopped on drop. `http`: a small HTTP/1.1 client (keep-alive, Content-Length and
//! chunked); `load`: a steady load through it. `sshd`: a real OpenSSH server on loopback and
//! the client side gantry's `ssh` uses. `serial`: which tests run alone.
#![allow(dead_code)]

pub mod compose;
pub mod debian;
pub mod docker;
pub mod extra_engine;
pub mod fixtures;
pub mod haproxy;
pub mod http;
pub mod load;
pub mod moto;
pub mod nginx;
pub mod private_engine;
pub mod process;
pub mod project;
pub mod second_engine;
pub mod serial;
pub mod sshd;
pub mod stack;
pub mod swarm_engine;
