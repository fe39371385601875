//! The real adapters: everything that touches the file system (and, later, Docker, load
//! balancers and the network) lives here, behind small functions and traits the core
//! can be tested without.

pub mod aws_profile;
pub mod clock;
pub mod command;
pub mod credentials;
pub mod docker;
pub mod docker_attach;
pub mod fs;
pub mod haproxy;
pub mod journal;
pub mod lb;
pub mod nginx;
pub mod nginx_remote;
pub mod probe;
pub mod s3;
pub mod scoped;
pub mod sink;
pub mod ssh;
pub mod store;
pub mod swarm;
