//! # sluice-actors: the runtime
//!
//! The runtime around the engine (`sluice`): the command-line subcommands, the listeners and
//! the configuration loop. The engine never depends on this crate.

pub mod admin;
pub mod check;
pub mod demo;
pub mod run;
pub mod telemetry;
