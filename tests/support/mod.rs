//! Helpers for integration tests that need Docker and real HTTP (`mod support;`).
//!
//! `docker`: availability, per-process run id and labels, a cleanup guard, the test-app image,
//! free ports. `second_engine`: a second real dockerd (own bridge, TLS endpoint) for
//! multi-host tests. `swarm_engine`: a swarm-mode dockerd for the Docker Swarm tests. `http`:
//! a small HTTP/1.1 client (keep-alive, Content-Length and chunked).
#![allow(dead_code)]

pub mod docker;
pub mod haproxy;
pub mod http;
pub mod load;
pub mod nginx;
pub mod second_engine;
pub mod swarm_engine;
