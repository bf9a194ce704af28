//! State shared between actors as topics: `tokio::sync::watch` channels owned by the runtime,
//! above every actor. A publisher replaces the value; a (re)started subscriber reads the
//! current value at once and then every change, so "ask the peer for the full state on start"
//! needs no request/response and cannot race with the peer's own restart, and a slow
//! subscriber only ever sees the newest state.

use std::sync::Arc;

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

/// The ACME actor's report (certificates, account, diagnostics).
pub type AcmeTopic = crate::acme::AcmeReportTopic;

/// The DNS actor's report (zones, records, last sync, diagnostics).
pub type DnsTopic = crate::dns::DnsReportTopic;

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
    /// Always true: what standalone writers (DNS, ACME) read instead of [`Topics::leader`].
    pub standalone_leader: LeaderTopic,
    /// Number of configurations published (router -> tests, demo).
    pub reloads: watch::Sender<u64>,
    /// See [`AcmeTopic`] (acme -> status, admin).
    pub acme: AcmeTopic,
    /// Certificates issued in standalone mode (acme -> router).
    pub acme_issued: crate::acme::IssuedTopic,
    /// See [`DnsTopic`] (dns -> status, admin).
    pub dns: DnsTopic,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            source: watch::channel(None).0,
            desired: watch::channel(None).0,
            cert_diagnostics: watch::channel(Arc::new(Vec::new())).0,
            leader: watch::channel(false).0,
            standalone_leader: watch::channel(true).0,
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
