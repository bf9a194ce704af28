//! # sluice: the engine
//!
//! sluice is a Kubernetes ingress controller. This crate is its engine: pure functions and
//! data structures, with no actors and no global state. The runtime (`sluice-actors`) owns
//! state, restarts and I/O scheduling, and calls into this crate.
//!
//! The pipeline:
//! 1. a [`source`] yields a [`cluster::ClusterState`] (Kubernetes objects), from the API server
//!    or from a folder of manifests;
//! 2. [`translate::translate`] turns it into a [`model::Model`] plus diagnostics naming the
//!    object and field of everything it rejected;
//! 3. [`routing::RoutingTable::compile`] turns the model into an immutable lookup structure that
//!    the data plane ([`proxy`], [`tls`]) reads through one atomic snapshot load per request;
//! 4. [`dns::desired`] turns the same state into DNS records, and [`dns::sync`] keeps a DNS
//!    provider (Route53) in line with them, owning records the way ExternalDNS does.
//!
//! Beside the pipeline, the decisions the runtime's actors act on are pure functions of their
//! inputs and the current time, tested without sockets or clocks: leader election on a Lease
//! ([`lease`]), Ingress status and Events ([`status`]), ACME orders, renewals and the
//! certificates wanted ([`acme`]), and the one backoff and token bucket every actor paces its
//! calls with ([`pace`]).

pub mod acme;
pub mod cluster;
pub mod dns;
pub mod explain;
pub mod lease;
pub mod model;
pub mod pace;
pub mod proxy;
pub mod routing;
pub mod source;
pub mod status;
pub mod tls;
pub mod translate;
