//! The plain-HTTP data plane over real sockets: routing, header rewriting, error statuses, path
//! normalisation, request-smuggling shapes, large bodies, upgrades, HTTP/2, load balancing and
//! keep-alive.
//!
//! Every test starts the whole runtime in-process ([`Harness`]) in front of real backends on
//! 127.0.0.x: the built-in echo server (which prints what it received), small hyper servers,
//! or a raw TCP server that records every byte it is sent.

#[path = "../support/mod.rs"]
mod support;

mod backends;
mod clients;

mod annotations;
mod balancing;
mod bodies;
mod errors;
mod framing;
mod headers;
mod hosts;
mod http2;
mod keep_alive;
mod lean_h1;
mod nginx_compat;
mod paths;
mod routing;
mod upgrades;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
