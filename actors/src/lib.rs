//! # sluice-actors: the runtime
//!
//! The runtime around the engine (`sluice`): the supervision tree of actors that own state and
//! I/O, the command-line subcommands, and the composition root ([`run`]). The engine never
//! depends on this crate; actor handlers decode a message, call the engine, perform the
//! effect and publish.

pub mod admin;
pub mod certificate;
pub mod check;
pub mod demo;
pub mod leader;
pub mod listener;
pub mod messages;
pub mod router;
pub mod run;
pub mod status;
pub mod supervisor;
pub mod telemetry;
pub mod watcher;
