//! gantry: declarative planner and deployer for container services.
//!
//! The layers, and the only direction the arrows go:
//!
//! ```text
//! cli      clap commands and exit codes (src/cli)          ──┐
//! ops      one file per verb: validate, plan, graph ...    ──┤ I/O lives here and below it in drivers
//! render   text / markdown / json views of a Plan          ──┘
//! plan     pure diff(model, state) -> Plan                  ─┐
//! state    state file format (lineage, serial, replicas)     │ the core: no I/O, no clock,
//! graph    petgraph DAG, waves, cycles                       │ deterministic
//! model    validated domain types, validation               │
//! config   Toml* serde types, span-keeping parser          ─┘
//! ```
//!
//! The core never touches the file system, the network or the clock: what it needs to know
//! about the world comes in as arguments (`model::FileFacts`, a parsed state file).

pub mod cli;
pub mod config;
pub mod diag;
pub mod drivers;
pub mod engine;
pub mod exit;
pub mod graph;
pub mod model;
pub mod ops;
pub mod plan;
pub mod ports;
pub mod render;
pub mod schema;
pub mod state;
#[doc(hidden)]
pub mod testing;
