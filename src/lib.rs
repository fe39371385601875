//! gantry: declarative planner and deployer for container services.
//!
//! The layers, and the only direction the arrows go:
//!
//! ```text
//! cli      clap commands, usage errors (src/cli)            ──┐
//! ops      one file per verb; session, execute, preflight,   │ I/O lives here and below it
//!          outcome (typed outcomes, exit_status)              │ in drivers
//! engine   the executor: runs a Plan through the ports       │
//! drivers  real adapters of the ports (bollard, nginx ...)  ──┘
//! ports    the traits the engine needs                       ── testing: fakes + conformance
//! render   text / markdown / json views of a Plan           ─┐
//! plan     pure diff(model, state) -> Plan                   │
//! state    state file format (lineage, serial, Origin)       │ the core: no I/O, no clock,
//! graph    petgraph DAG, waves, cycles                       │ deterministic
//! model    validated domain types, validation                │
//! config   Toml* serde types, span-keeping parser           ─┘
//! ```
//!
//! Arrows point down: `cli -> ops -> {render, engine, drivers}`, `engine -> {plan, state,
//! ports}`, `drivers -> ports`, `plan -> {model, graph, state}`. docs/architecture.md says
//! where each kind of change lands.
//!
//! The core never touches the file system, the network or the clock: what it needs to know
//! about the world comes in as arguments (`model::FileFacts`, a parsed state file).
//!
//! The tools hold it to that: clippy.toml lists the file system, environment, process,
//! clock, tokio and bollard entry points, denied here for the whole library and allowed on
//! the modules whose job is I/O. Output goes through the writers `cli::run` is given, never
//! `print!`/`eprint!`, so tests see everything a user sees.

#![deny(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // I/O lives here: see clippy.toml
pub mod cli;
pub mod compose;
pub mod config;
pub mod diag;
#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // I/O lives here: see clippy.toml
pub mod drivers;
#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // I/O lives here: see clippy.toml
pub mod engine;
pub mod exit;
pub mod graph;
pub mod model;
#[allow(clippy::disallowed_methods, clippy::disallowed_types)] // I/O lives here: see clippy.toml
pub mod ops;
pub mod plan;
pub mod ports;
pub mod render;
pub mod schema;
pub mod state;
#[doc(hidden)]
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
// fakes run on tokio's (paused) clock
pub mod testing;
