//! DNS: the records sluice wants, who owns which record, what to change, and the APIs that
//! change them. ExternalDNS's job, compatible with its ownership records.
//!
//! The pieces, in the order a sync uses them:
//! 1. [`desired`] (pure): Ingresses of ours and LoadBalancer Services with a `hostname`
//!    annotation become [`Record`]s (A, AAAA, CNAME or Route53 ALIAS), with diagnostics for bad
//!    annotations and conflicting objects.
//! 2. [`registry`] (pure): ExternalDNS's TXT registry, the current format and the older ones:
//!    which record belongs to which owner id and object.
//! 3. [`plan`] (pure): desired against current, zone by zone: never touches a record that is
//!    not ours, adopts ExternalDNS's records of the same owner id, applies the policy and the
//!    filters; the result is a list of [`Group`]s, each one name's changes with their TXT
//!    records.
//! 4. [`batch`] (pure): groups into the fewest calls Route53's limits allow, and halving of a
//!    rejected batch.
//! 5. [`provider`]: the [`DnsProvider`] trait, Route53 and in-memory implementations.
//! 6. [`sync`]: one read-plan-apply pass over a provider, isolating rejected groups, with the
//!    state that must survive between passes in a caller-owned [`SyncState`].
//! 7. [`schedule`] (pure): when the next pass runs (debounce after changes, periodic resync,
//!    retries); [`inspect`] (pure): the record-by-record view of a pass for `/api/dns`.
//!
//! Names are kept in one internal form everywhere ([`name::normalize`]).

pub mod aws;
pub mod batch;
pub mod desired;
pub mod inspect;
pub mod name;
pub mod plan;
pub mod provider;
pub mod record;
pub mod registry;
pub mod schedule;
pub mod sync;

pub use batch::{Batch, BatchLimits, Batches};
pub use desired::{Desired, DesiredOptions, Sources, desired, parse_target, parse_ttl};
pub use inspect::{RecordOwner, RecordView, records_view};
pub use plan::{
    BlockReason, Blocked, ChangeCounts, Conflict, Filters, Group, Plan, Policy, ZonePlan,
    ZoneRecords, ZoneType, plan, resource_object,
};
pub use provider::{
    CallCounts, ChangeInfo, ChangeStatus, DnsProvider, MemoryProvider, ProviderError,
    Route53Options, Route53Provider, StaticCredentials,
};
pub use record::{
    Action, Alias, AliasTarget, Change, DEFAULT_TTL, Record, RecordSet, RecordType, Zone,
};
pub use registry::{Registry, RegistryError, RegistryOptions};
pub use schedule::{PassOutcome, Schedule};
pub use sync::{
    GroupFailure, SyncError, SyncOptions, SyncReport, SyncState, WaitError, sync, wait_insync,
};
