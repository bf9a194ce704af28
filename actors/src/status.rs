//! The status actor: while this replica is the leader (see [`crate::leader`]), it publishes
//! our address in `status.loadBalancer.ingress` of every Ingress we own and turns each
//! diagnostic about an Ingress into a Kubernetes Event on it. Followers write nothing. Started
//! in Kubernetes mode only.
//!
//! What to write is planned in the engine ([`sluice::status`]); this actor gathers the inputs,
//! performs the writes and tells the plan's memories what succeeded.
//!
//! **Address.** From `--publish-address` (repeatable; an IP becomes `{ip}`, anything else
//! `{hostname}`) or from `--publish-service NAMESPACE/NAME` (that Service's
//! `.status.loadBalancer.ingress`, followed as it changes: read from the source state when its
//! namespace is watched, else fetched from the API on every change and every [`RESYNC`]).
//! Writes are JSON merge patches of the status subresource.
//!
//! **Events** use events.k8s.io/v1, the API kube-runtime's `Recorder` uses, but are created
//! directly: the `Recorder` keys its series on object+reason, so two different problems with
//! one reason on one Ingress would be folded into one Event. At most [`EVENTS_PER_SECOND`] are
//! sent (bursts of [`EVENT_BURST`], `sluice::pace::TokenBucket`); the rest wait. Counted in
//! `sluice_kube_events_total{reason}`. After a restart of this actor or a change of leader, the
//! current diagnostics are sent once more (the memory of what was sent is per process).
//!
//! **Failures.** API errors are logged, counted (`sluice_kube_status_errors_total{op}`) and
//! retried with backoff; the actor never crashes on them. The work runs in one task of the
//! actor that reconciles whenever the desired, certificate-diagnostics or leader topic changes
//! (plus retries and a [`RESYNC`]); a newer state supersedes an older one, so a slow API server
//! never builds a queue. Every write checks the leader topic first, so a lost Lease stops
//! writes at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ractor::ActorProcessingErr;
use serde_json::json;
use sluice::model::{Diagnostic, ObjectRef};
use sluice::pace::{Backoff, TokenBucket};
use sluice::status::{
    Address, EventKey, EventMemory, StatusMemory, StatusWrite, fixed_addresses, service_addresses,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::topics::Desired;
use crate::worker::{Ctx, NoMsg, Worker};

/// How often the leader re-checks everything (and re-reads a published Service that is not in
/// the watched namespaces) without a change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Events sent per second, overall.
pub const EVENTS_PER_SECOND: f64 = 10.0;
/// Events that may be sent at once after a quiet period.
pub const EVENT_BURST: f64 = 20.0;
/// Each API call's time limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the published address comes from.
#[derive(Clone, Debug)]
pub enum Publish {
    /// Nothing configured: no status is written.
    Nothing,
    /// `--publish-address`.
    Fixed(Vec<Address>),
    /// `--publish-service`.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Whether the source watches that namespace (else it is read from the API).
        watched: bool,
    },
}

impl Publish {
    /// From the flags: `--publish-address` values win over `--publish-service`.
    pub fn from_flags(addresses: &[String], service: Option<&str>, namespaces: &[String]) -> Self {
        if !addresses.is_empty() {
            return Publish::Fixed(fixed_addresses(addresses));
        }
        match service.and_then(|s| s.split_once('/')) {
            Some((ns, name)) => Publish::Service {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                watched: namespaces.is_empty() || namespaces.iter().any(|n| n == ns),
            },
            None => Publish::Nothing,
        }
    }
}

/// What the status actor uses.
#[derive(Clone)]
pub struct StatusArgs {
    /// The process's Kubernetes client.
    pub client: kube::Client,
    /// Where the address comes from.
    pub publish: Publish,
    /// `reportingController` of Events (the controller name).
    pub controller: String,
    /// This replica's identity (`reportingInstance`).
    pub identity: String,
    /// The desired topic.
    pub desired: watch::Receiver<Option<Arc<Desired>>>,
    /// The certificate-diagnostics topic.
    pub cert_diagnostics: watch::Receiver<Arc<Vec<Diagnostic>>>,
    /// The leader topic.
    pub leader: watch::Receiver<bool>,
    /// The ACME report (its diagnostics become Events too).
    pub acme: watch::Receiver<Arc<crate::topics::AcmeReport>>,
    /// The DNS report (its diagnostics become Events too).
    pub dns: watch::Receiver<Arc<crate::topics::DnsReport>>,
}

/// The status actor.
#[derive(Debug)]
pub struct Status;

impl Worker for Status {
    type Msg = NoMsg;
    type State = ();
    type Args = StatusArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<NoMsg>,
        args: StatusArgs,
    ) -> Result<(), ActorProcessingErr> {
        ctx.spawn("publisher", Publisher::new(args).run());
        Ok(())
    }
}

struct Publisher {
    args: StatusArgs,
    statuses: StatusMemory,
    events: EventMemory,
    /// The published Service's addresses, when read from the API, and when.
    fetched: Option<(Vec<Address>, Instant)>,
    bucket: TokenBucket,
    backoff: Backoff,
}

/// What one pass asks for.
#[derive(Debug, Default)]
struct Pass {
    /// Run again after this long (errors, rate-limited Events), else at the next change.
    retry: Option<Duration>,
    /// An API call failed.
    failed: bool,
}

impl Pass {
    fn retry_in(&mut self, d: Duration) {
        self.retry = Some(self.retry.map_or(d, |r| r.min(d)));
    }
}

impl Publisher {
    fn new(args: StatusArgs) -> Publisher {
        Publisher {
            args,
            statuses: StatusMemory::default(),
            events: EventMemory::default(),
            fetched: None,
            bucket: TokenBucket::new(EVENTS_PER_SECOND, EVENT_BURST, Instant::now().into_std()),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
        }
    }

    fn is_leader(&self) -> bool {
        *self.args.leader.borrow()
    }

    /// Reconciles at every change of the desired, certificate-diagnostics and leader topics,
    /// and on retries and resyncs.
    async fn run(mut self) {
        let mut desired_rx = self.args.desired.clone();
        let mut certs_rx = self.args.cert_diagnostics.clone();
        let mut leader_rx = self.args.leader.clone();
        let mut acme_rx = self.args.acme.clone();
        let mut dns_rx = self.args.dns.clone();
        loop {
            let leader = *leader_rx.borrow_and_update();
            let desired = desired_rx.borrow_and_update().clone();
            let mut certs: Vec<Diagnostic> = certs_rx.borrow_and_update().to_vec();
            certs.extend(acme_rx.borrow_and_update().diagnostics.iter().cloned());
            certs.extend(dns_rx.borrow_and_update().diagnostics.iter().cloned());
            let pass = match (&desired, leader) {
                (Some(d), true) => self.reconcile(d, &certs).await,
                _ => Pass::default(),
            };
            let wait = if leader {
                pass.retry.unwrap_or(RESYNC)
            } else {
                RESYNC
            };
            tokio::select! {
                r = desired_rx.changed() => if r.is_err() { return },
                r = certs_rx.changed() => if r.is_err() { return },
                r = leader_rx.changed() => if r.is_err() { return },
                r = acme_rx.changed() => if r.is_err() { return },
                r = dns_rx.changed() => if r.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn reconcile(&mut self, desired: &Desired, certs: &[Diagnostic]) -> Pass {
        let mut pass = Pass::default();
        if let Some(addresses) = self.addresses(desired, &mut pass).await {
            self.statuses(desired, &addresses, &mut pass).await;
        }
        self.events(desired, certs, &mut pass).await;
        if !pass.failed {
            self.backoff.reset();
        }
        pass
    }

    /// The addresses to publish, or `None` when nothing is configured or the Service could
    /// not be read.
    async fn addresses(&mut self, desired: &Desired, pass: &mut Pass) -> Option<Vec<Address>> {
        match self.args.publish.clone() {
            Publish::Nothing => None,
            Publish::Fixed(list) => Some(list),
            Publish::Service {
                namespace,
                name,
                watched: true,
            } => Some(
                desired
                    .loaded
                    .state
                    .services
                    .iter()
                    .find(|s| {
                        s.metadata.namespace.as_deref() == Some(namespace.as_str())
                            && s.metadata.name.as_deref() == Some(name.as_str())
                    })
                    .map(service_addresses)
                    .unwrap_or_default(),
            ),
            Publish::Service {
                namespace,
                name,
                watched: false,
            } => {
                if let Some((list, at)) = &self.fetched
                    && at.elapsed() < RESYNC
                {
                    return Some(list.clone());
                }
                let api: Api<Service> = Api::namespaced(self.args.client.clone(), &namespace);
                match tokio::time::timeout(CALL_TIMEOUT, api.get_opt(&name)).await {
                    Ok(Ok(svc)) => {
                        let list = svc.as_ref().map(service_addresses).unwrap_or_default();
                        self.fetched = Some((list.clone(), Instant::now()));
                        pass.retry_in(RESYNC);
                        Some(list)
                    }
                    Ok(Err(e)) => {
                        self.error("service", &format!("{namespace}/{name}: {e}"), pass);
                        self.fetched.as_ref().map(|(l, _)| l.clone())
                    }
                    Err(_) => {
                        self.error("service", "timed out", pass);
                        self.fetched.as_ref().map(|(l, _)| l.clone())
                    }
                }
            }
        }
    }

    fn error(&mut self, op: &'static str, error: &str, pass: &mut Pass) {
        metrics::counter!("sluice_kube_status_errors_total", "op" => op).increment(1);
        tracing::warn!(op, %error, "kubernetes write failed; retrying with backoff");
        pass.failed = true;
        pass.retry_in(self.backoff.next_delay());
    }

    async fn statuses(&mut self, desired: &Desired, addresses: &[Address], pass: &mut Pass) {
        let owned: HashSet<&ObjectRef> = desired.translation.model.ingresses.iter().collect();
        let writes = self
            .statuses
            .plan(&desired.loaded.state.ingresses, &owned, addresses);
        for w in writes {
            if !self.is_leader() {
                return;
            }
            match self.write_status(&w).await {
                Ok(()) => {
                    tracing::info!(ingress = %w.ingress, addresses = ?w.value, "ingress status written");
                    self.statuses.wrote(w);
                }
                Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 404) => {}
                Err(e) => self.error("status", &format!("{}: {e}", w.ingress), pass),
            }
        }
    }

    async fn write_status(&self, w: &StatusWrite) -> Result<(), kube::Error> {
        let api: Api<Ingress> = Api::namespaced(self.args.client.clone(), &w.ingress.namespace);
        let value = if w.value.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Array(w.value.iter().map(Address::to_json).collect())
        };
        let patch = json!({ "status": { "loadBalancer": { "ingress": value } } });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        let call = api.patch_status(&w.ingress.name, &params, &patch);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(kube::Error::Service(
                "the API server did not answer in time".into(),
            )),
        }
    }

    async fn events(&mut self, desired: &Desired, certs: &[Diagnostic], pass: &mut Pass) {
        let planned = self
            .events
            .plan(desired.translation.diagnostics.iter().chain(certs.iter()));
        if planned.is_empty() {
            return;
        }
        let ingresses: HashMap<(&str, &str), &Ingress> = desired
            .loaded
            .state
            .ingresses
            .iter()
            .map(|i| {
                let ns = i.metadata.namespace.as_deref().unwrap_or_default();
                ((ns, i.metadata.name.as_deref().unwrap_or_default()), i)
            })
            .collect();
        for key in planned {
            if !self.is_leader() {
                return;
            }
            let now = Instant::now().into_std();
            if !self.bucket.try_take(now) {
                pass.retry_in(self.bucket.wait(now).max(Duration::from_millis(10)));
                return;
            }
            let ing = ingresses
                .get(&(key.object.namespace.as_str(), key.object.name.as_str()))
                .copied();
            match self.send_event(&key, ing).await {
                Ok(()) => {
                    metrics::counter!("sluice_kube_events_total", "reason" => key.reason)
                        .increment(1);
                    self.events.sent(key);
                }
                Err(e) => {
                    self.error("event", &format!("{}: {e}", key.object), pass);
                    return;
                }
            }
        }
    }

    async fn send_event(&self, key: &EventKey, ing: Option<&Ingress>) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let object = &key.object;
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", object.name, now.as_nanosecond())),
                namespace: Some(object.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Warning".to_owned()),
            reason: Some(key.reason.to_owned()),
            action: Some("Translate".to_owned()),
            note: Some(key.note.clone()),
            reporting_controller: Some(self.args.controller.clone()),
            reporting_instance: Some(self.args.identity.chars().take(128).collect()),
            regarding: Some(ObjectReference {
                api_version: Some("networking.k8s.io/v1".to_owned()),
                kind: Some("Ingress".to_owned()),
                namespace: Some(object.namespace.clone()),
                name: Some(object.name.clone()),
                uid: ing.and_then(|i| i.metadata.uid.clone()),
                resource_version: ing.and_then(|i| i.metadata.resource_version.clone()),
                ..ObjectReference::default()
            }),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.args.client.clone(), &object.namespace);
        let params = PostParams::default();
        match tokio::time::timeout(CALL_TIMEOUT, api.create(&params, &event)).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(kube::Error::Service(
                "the API server did not answer in time".into(),
            )),
        }
    }
}
