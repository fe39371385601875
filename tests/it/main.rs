//! The integration tests: one binary, a module per area, sharing `support`. One binary links
//! the crate once and runs every test in one process, in parallel threads; what must not
//! overlap says so through `support::serial`.
//!
//! Adding an area: put its tests in `tests/it/AREA.rs` (or `AREA/mod.rs` with files per
//! theme once it passes ~800 lines), add `mod AREA;` below, and write `use crate::support;`
//! instead of `mod support;`. Fixtures live in `tests/fixtures/`, snapshots in
//! `tests/snapshots/` (see `plan_scenarios::settings`). Run one area with
//! `cargo test --test it AREA::`.

mod support;

mod adopt;
mod apply_docker;
mod blue_green;
mod cli;
mod conformance;
mod crash_safety;
mod docs;
mod engine_restart;
mod examples;
mod hooks;
mod import;
mod lb_haproxy;
mod lb_nginx;
mod markdown_limit;
mod multi_host;
mod ops_commands;
mod plan_scenarios;
mod registry;
mod schemas;
mod shared_state;
mod ssh;
mod stack;
mod stack_images;
mod swarm;
mod testapp_image;
mod validate_errors;
