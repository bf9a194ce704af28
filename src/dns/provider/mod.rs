//! DNS providers: the one seam between the engine and a DNS API.
//!
//! [`DnsProvider`] is object safe (`Arc<dyn DnsProvider>`): methods return boxed futures.
//! Implementations: [`Route53Provider`] (aws-sdk-route53) and [`MemoryProvider`] (in memory,
//! with the Route53 semantics the planner relies on).

mod memory;
mod route53;

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

pub use memory::{MemoryProvider, apply_to_records};
pub use route53::{Route53Options, Route53Provider, StaticCredentials};

use super::record::{Change, RecordSet, Zone};

/// Operation names used for call counts and metrics (`operation` label).
pub mod operation {
    /// ListHostedZones.
    pub const LIST_ZONES: &str = "ListHostedZones";
    /// ListResourceRecordSets (one per page).
    pub const LIST_RECORDS: &str = "ListResourceRecordSets";
    /// ChangeResourceRecordSets.
    pub const CHANGE: &str = "ChangeResourceRecordSets";
    /// GetChange.
    pub const GET_CHANGE: &str = "GetChange";
}

/// Why a provider call failed, and whether trying again helps.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The API asked us to slow down (`Throttling`, `PriorRequestNotComplete`). Retry after a
    /// pause.
    #[error("{operation} throttled ({code}): {message}; retrying after a pause helps")]
    Throttled {
        /// The call.
        operation: &'static str,
        /// The error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The change batch was refused as a whole (`InvalidChangeBatch`, `InvalidInput`): sending
    /// it again as it is fails again. Split it to find the change at fault.
    #[error("change batch rejected ({code}): {message}")]
    Rejected {
        /// The error code.
        code: String,
        /// The API's message(s), joined.
        message: String,
    },
    /// Anything else: network, server errors (retryable), or access denied, missing zone,
    /// configuration (not retryable as is).
    #[error("{operation} failed: {message}{}", if *retryable { " (transient; retrying may help)" } else { "" })]
    Other {
        /// The call.
        operation: &'static str,
        /// What happened.
        message: String,
        /// True when the same call may succeed later without any change (network, 5xx).
        retryable: bool,
    },
}

impl ProviderError {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Throttled { .. } => true,
            ProviderError::Rejected { .. } => false,
            ProviderError::Other { retryable, .. } => *retryable,
        }
    }

    /// A short label for metrics (`reason`): `throttled`, `rejected`, `transient` or `error`.
    pub fn label(&self) -> &'static str {
        match self {
            ProviderError::Throttled { .. } => "throttled",
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::Other {
                retryable: true, ..
            } => "transient",
            ProviderError::Other { .. } => "error",
        }
    }
}

/// The state of an applied change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeStatus {
    /// Not yet on every authoritative server.
    Pending,
    /// On every authoritative server.
    InSync,
}

/// What [`DnsProvider::apply`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeInfo {
    /// Id to poll with [`DnsProvider::change_status`].
    pub id: String,
    /// Status when applied.
    pub status: ChangeStatus,
}

/// API calls made, by operation (see [`operation`]); retries count.
pub type CallCounts = BTreeMap<&'static str, u64>;

/// A DNS API.
pub trait DnsProvider: Send + Sync {
    /// A short name for logs (`route53`, `memory`).
    fn name(&self) -> &'static str;

    /// Every hosted zone (all pages).
    fn list_zones(&self) -> BoxFuture<'_, Result<Vec<Zone>, ProviderError>>;

    /// Every record set of `zone` (all pages), names in internal form.
    fn list_records<'a>(
        &'a self,
        zone: &'a Zone,
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, ProviderError>>;

    /// Applies `changes` to `zone` atomically (all or none).
    fn apply<'a>(
        &'a self,
        zone: &'a Zone,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ChangeInfo, ProviderError>>;

    /// The status of an applied change.
    fn change_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeStatus, ProviderError>>;

    /// Calls made so far, by operation. Providers that do not count return an empty map.
    fn calls(&self) -> CallCounts {
        CallCounts::new()
    }
}

/// A thread-safe call counter for providers.
#[derive(Debug, Default)]
pub struct CallCounter(Mutex<CallCounts>);

impl CallCounter {
    /// Counts one call of `operation`.
    pub fn count(&self, operation: &'static str) {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(operation).or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> CallCounts {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// `after - before`, per operation.
pub fn calls_since(before: &CallCounts, after: &CallCounts) -> CallCounts {
    after
        .iter()
        .map(|(op, n)| (*op, n - before.get(op).copied().unwrap_or(0).min(*n)))
        .filter(|(_, n)| *n > 0)
        .collect()
}
