//! Helpers for integration tests that need Docker and real HTTP (`mod support;`).
//!
//! `docker`: availability, per-process run id and labels, a cleanup guard, the test-app image,
//! free ports. `extra_engine`: a real dockerd of its own beside the main engine, what
//! `second_engine` (own bridge, TLS endpoint; multi-host tests) and `swarm_engine` (swarm
//! mode; Docker Swarm tests) are made of. `project`: running the gantry binary in a test
//! project's directory and reading what it did. `http`: a small HTTP/1.1 client (keep-alive,
//! Content-Length and chunked).
#![allow(dead_code)]

pub mod docker;
pub mod extra_engine;
pub mod haproxy;
pub mod http;
pub mod load;
pub mod nginx;
pub mod project;
pub mod second_engine;
pub mod swarm_engine;
