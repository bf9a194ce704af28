//! State shared between actors as topics: `tokio::sync::watch` channels owned by the runtime,
//! above every actor. A publisher replaces the value; a (re)started subscriber reads the
//! current value at once and then every change, so "ask the peer for the full state on start"
//! needs no request/response and cannot race with the peer's own restart, and a slow
//! subscriber only ever sees the newest state.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use std::time::Duration;

use sluice::acme::{ManagedCert, WantedCert};
use sluice::dns::{CallCounts, Change, ChangeCounts, GroupFailure, Policy, RecordView, Zone};
use sluice::model::Diagnostic;
use sluice::source::manifests::Loaded;
use sluice::translate::Translation;
use tokio::sync::watch;

use crate::worker::Ctx;

/// The latest state of the configuration source (watcher -> router).
pub type SourceTopic = watch::Sender<Option<Arc<Loaded>>>;

/// What the router derived from one source state.
#[derive(Debug)]
pub struct Desired {
    /// The source state it was built from.
    pub loaded: Arc<Loaded>,
    /// The translation (model and diagnostics).
    pub translation: Translation,
}

/// The latest translation (router -> certificate, status, admin).
pub type DesiredTopic = watch::Sender<Option<Arc<Desired>>>;

/// Diagnostics about certificates, published by the certificate actor.
pub type CertDiagnosticsTopic = watch::Sender<Arc<Vec<Diagnostic>>>;

/// True while this replica holds the leader Lease (leader -> status, DNS, ACME).
pub type LeaderTopic = watch::Sender<bool>;

/// One managed certificate, as `/api/certificates` shows it.
#[derive(Clone, Debug)]
pub struct CertReport {
    /// What is wanted.
    pub wanted: WantedCert,
    /// Its state.
    pub managed: ManagedCert,
}

/// What the ACME actor publishes: the certificates it manages, their diagnostics, the account.
#[derive(Clone, Debug, Default)]
pub struct AcmeReport {
    /// The ACME directory URL.
    pub directory_url: String,
    /// The account URL, once known.
    pub account: Option<String>,
    /// Every managed certificate, by Secret.
    pub certificates: Vec<CertReport>,
    /// Requests that cannot be served and failed orders (about Ingresses: they become Events).
    pub diagnostics: Vec<Diagnostic>,
}

/// The latest [`AcmeReport`].
pub type AcmeReportTopic = watch::Sender<Arc<AcmeReport>>;
/// Certificates issued in standalone mode (Secrets the router adds to the source state).
pub type IssuedTopic = watch::Sender<Arc<Vec<Secret>>>;

/// How the last sync ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResult {
    /// Everything planned was applied.
    Converged,
    /// Applied, except groups the provider rejected (quarantined, retried alone).
    Partial,
    /// `--dns-dry-run`: planned only.
    DryRun,
    /// Writing stopped early (throttled or failing for every attempt, or the leadership was
    /// lost); what was applied stays applied.
    Incomplete(String),
    /// The zones could not be read: nothing was planned.
    Failed(String),
}

impl SyncResult {
    /// `converged`, `partial`, `dry-run`, `incomplete` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncResult::Converged => "converged",
            SyncResult::Partial => "partial",
            SyncResult::DryRun => "dry-run",
            SyncResult::Incomplete(_) => "incomplete",
            SyncResult::Failed(_) => "failed",
        }
    }

    /// The error, for `incomplete` and `failed`.
    pub fn error(&self) -> Option<&str> {
        match self {
            SyncResult::Incomplete(e) | SyncResult::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// One sync, as `/api/dns` shows it.
#[derive(Clone, Debug)]
pub struct LastSync {
    /// When it ended (Unix seconds).
    pub at: f64,
    /// How long it took.
    pub duration: Duration,
    /// How it ended.
    pub result: SyncResult,
    /// Changes applied.
    pub applied: ChangeCounts,
    /// API calls made, by operation.
    pub calls: CallCounts,
    /// ChangeResourceRecordSets calls that succeeded.
    pub batches: usize,
}

/// A zone in scope, as last read.
#[derive(Clone, Debug)]
pub struct ZoneSummary {
    /// The zone.
    pub zone: Zone,
    /// Record sets in it.
    pub records: usize,
    /// A, AAAA and CNAME record sets owned by us.
    pub owned: usize,
    /// A, AAAA and CNAME record sets that are not ours.
    pub foreign: usize,
}

/// A group the provider rejected, retried alone with backoff.
#[derive(Clone, Debug)]
pub struct Quarantined {
    /// The failure.
    pub failure: GroupFailure,
    /// When it is retried (Unix seconds).
    pub retry_at: f64,
}

/// What the DNS actor publishes.
#[derive(Clone, Debug, Default)]
pub struct DnsReport {
    /// False when DNS is off (`--dns-provider none`).
    pub enabled: bool,
    /// The provider's name.
    pub provider: String,
    /// `--txt-owner-id`.
    pub owner_id: String,
    /// `--dns-policy`.
    pub policy: Policy,
    /// `--dns-dry-run`.
    pub dry_run: bool,
    /// True while this replica may write (the leader, or standalone).
    pub leader: bool,
    /// Desired records (all objects).
    pub desired: usize,
    /// Zones in scope, as last read.
    pub zones: Vec<ZoneSummary>,
    /// Every record, desired against current (see `sluice::dns::inspect::records_view`).
    pub records: Arc<Vec<RecordView>>,
    /// Changes of the last plan (applied, unless this was a dry run or they failed).
    pub planned: ChangeCounts,
    /// Changes still to make: the last plan's, minus what was applied.
    pub pending: Vec<Change>,
    /// Rejected groups.
    pub quarantined: Vec<Quarantined>,
    /// The last sync.
    pub last_sync: Option<LastSync>,
    /// When the next sync is due (Unix seconds), while this replica writes.
    pub next_sync_at: Option<f64>,
    /// Bad annotations, conflicts, records not written, rejected groups.
    pub diagnostics: Vec<Diagnostic>,
}

/// The latest [`DnsReport`].
pub type DnsReportTopic = watch::Sender<Arc<DnsReport>>;

/// Every topic, created once by the runtime.
#[derive(Debug)]
pub struct Topics {
    /// See [`SourceTopic`].
    pub source: SourceTopic,
    /// See [`DesiredTopic`].
    pub desired: DesiredTopic,
    /// See [`CertDiagnosticsTopic`].
    pub cert_diagnostics: CertDiagnosticsTopic,
    /// See [`LeaderTopic`].
    pub leader: LeaderTopic,
    /// Number of configurations published (router -> tests, demo).
    pub reloads: watch::Sender<u64>,
    /// See [`AcmeReportTopic`] (acme -> status, admin).
    pub acme: AcmeReportTopic,
    /// Certificates issued in standalone mode (acme -> router).
    pub acme_issued: IssuedTopic,
    /// See [`DnsReportTopic`] (dns -> status, admin).
    pub dns: DnsReportTopic,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            source: watch::channel(None).0,
            desired: watch::channel(None).0,
            cert_diagnostics: watch::channel(Arc::new(Vec::new())).0,
            leader: watch::channel(false).0,
            reloads: watch::channel(0).0,
            acme: watch::channel(Arc::default()).0,
            acme_issued: watch::channel(Arc::default()).0,
            dns: watch::channel(Arc::default()).0,
        }
    }
}

/// Forwards every value of a topic (the current one first) to the actor of `ctx` as a
/// message, as a task of that actor.
pub fn forward<T, M>(ctx: &mut Ctx<M>, rx: watch::Receiver<Option<T>>, wrap: fn(T) -> M)
where
    T: Clone + Send + Sync + 'static,
    M: Send + 'static,
{
    forward_map(ctx, "subscription", rx, move |v| v.map(wrap));
}

/// Forwards every value of a topic (the current one first) for which `message` gives a
/// message, as the task `task` of the actor of `ctx` (an actor may follow several topics).
pub fn forward_map<T, M>(
    ctx: &mut Ctx<M>,
    task: &str,
    mut rx: watch::Receiver<T>,
    message: impl Fn(T) -> Option<M> + Send + 'static,
) where
    T: Clone + Send + Sync + 'static,
    M: Send + 'static,
{
    let mailbox = ctx.mailbox();
    ctx.spawn(task, async move {
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(m) = message(current)
                && !mailbox.send(m)
            {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}
