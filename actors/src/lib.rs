//! # sluice-actors: the runtime
//!
//! The runtime around the engine (`sluice`): the supervision tree of actors that own state and
//! I/O, the command-line subcommands, and the composition root ([`run`]). The engine never
//! depends on this crate; actor handlers decode a message, call the engine, perform the
//! effect and publish.
//!
//! Every actor is a [`worker::Worker`] run under [`supervisor::Supervisor`]s; it receives
//! exactly the arguments it uses (built in [`run`]), owns its background tasks (their end
//! fails the actor), and shares state with its peers only through [`topics`].

pub mod acme;
pub mod admin;
pub mod certificate;
pub mod check;
pub mod demo;
pub mod dns;
pub mod explain;
pub mod leader;
pub mod listener;
pub mod metrics_listener;
pub mod readiness;
pub mod router;
pub mod run;
pub mod status;
pub mod supervisor;
pub mod telemetry;
pub mod topics;
pub mod watcher;
pub mod worker;
