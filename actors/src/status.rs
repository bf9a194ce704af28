//! The status actor: while this replica is the leader (see [`crate::leader`]), it publishes
//! our address in `status.loadBalancer.ingress` of every Ingress we own and turns each
//! diagnostic about an Ingress into a Kubernetes Event on it. Followers write nothing.
//!
//! **Status.** The address comes from `--publish-address` (repeatable; an IP becomes `{ip}`,
//! anything else `{hostname}`) or from `--publish-service NAMESPACE/NAME` (that Service's
//! `.status.loadBalancer.ingress`, followed as it changes: read from the source state when its
//! namespace is watched, else fetched from the API on every change and every
//! [`RESYNC`]). Every Ingress in the model (ours by class) gets it; an Ingress we no longer own
//! (class changed) is cleared if we wrote it, or if its status is exactly our address (what a
//! restarted actor finds after a class change it did not witness); an Ingress of another
//! class is otherwise never touched. A write happens only when the value differs from the
//! Ingress's current status (as the source last saw it, or as we last wrote it while the
//! watch has not caught up). Writes are JSON merge patches of the status subresource.
//!
//! **Events.** Each diagnostic whose object is an Ingress (from the translation and the
//! certificate actor) becomes one events.k8s.io/v1 Event (type Warning, reason as the
//! diagnostic's, note `field: message`), the API kube-runtime's `Recorder` uses. An Event is
//! sent once while its diagnostic persists (deduplicated on Ingress, reason and note) and sent
//! again only if the diagnostic goes away and comes back. At most [`EVENTS_PER_SECOND`] are sent
//! (bursts of [`EVENT_BURST`]); the rest wait. Counted in `sluice_kube_events_total{reason}`.
//! After a restart of this actor or a change of leader, the current diagnostics are sent once
//! more (the memory of what was sent is per process).
//!
//! **Failures.** API errors are logged, counted (`sluice_kube_status_errors_total{op}`) and
//! retried with backoff; the actor never crashes on them. A crashed actor's task ends with it;
//! the restarted one rebuilds everything from the desired, certificate-diagnostics and leader
//! topics. Every write checks the leader topic first, so a lost Lease stops writes at once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use sluice::model::{Diagnostic, Kind, ObjectRef};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::messages::{Desired, TaskGuard};
use crate::run::{KubeSource, Shared};
use crate::supervisor::Crashable;

/// How often the leader re-checks everything (and re-reads a published Service that is not in
/// the watched namespaces) without a change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Events sent per second, overall.
pub const EVENTS_PER_SECOND: f64 = 10.0;
/// Events that may be sent at once after a quiet period.
pub const EVENT_BURST: f64 = 20.0;
/// Each API call's time limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff after API errors.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Status actor messages (the work runs in a task owned by the actor's state).
#[derive(Debug)]
pub enum StatusMsg {
    /// Panic (chaos testing).
    Crash,
}

impl Crashable for StatusMsg {
    fn crash() -> Self {
        StatusMsg::Crash
    }
}

/// The status actor.
#[derive(Debug)]
pub struct Status;

/// Its state: the publishing task (none in standalone mode).
#[derive(Debug)]
pub struct StatusState {
    _task: Option<TaskGuard>,
}

impl Actor for Status {
    type Msg = StatusMsg;
    type State = StatusState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<StatusMsg>,
        shared: Arc<Shared>,
    ) -> Result<StatusState, ActorProcessingErr> {
        let task = match (&shared.kube_client, &shared.kube) {
            (Some(client), Some(kube)) => {
                let publisher = Publisher::new(shared.clone(), client.clone(), kube);
                Some(TaskGuard(tokio::spawn(publisher.run())))
            }
            _ => None,
        };
        Ok(StatusState { _task: task })
    }

    async fn handle(
        &self,
        _myself: ActorRef<StatusMsg>,
        msg: StatusMsg,
        _state: &mut StatusState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StatusMsg::Crash => panic!("chaos: crash requested for status"),
        }
    }
}

/// One `status.loadBalancer.ingress[]` entry (ports are not published).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    /// An IP address.
    pub ip: Option<String>,
    /// A host name.
    pub hostname: Option<String>,
}

impl Address {
    /// `{ip}` for an IP address, else `{hostname}`.
    pub fn parse(s: &str) -> Address {
        let s = s.trim();
        if s.parse::<IpAddr>().is_ok() {
            Address {
                ip: Some(s.to_owned()),
                hostname: None,
            }
        } else {
            Address {
                ip: None,
                hostname: Some(s.to_owned()),
            }
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = json!({});
        if let Some(ip) = &self.ip {
            v["ip"] = json!(ip);
        }
        if let Some(h) = &self.hostname {
            v["hostname"] = json!(h);
        }
        v
    }
}

/// Equal as sets: the order of the entries does not matter.
fn same(a: &[Address], b: &[Address]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// Sorted, de-duplicated addresses from `(ip, hostname)` pairs; empty strings count as unset.
/// Entries with neither are kept only when `keep_empty` (so they show up as a difference).
fn sorted_addresses<'a>(
    pairs: impl Iterator<Item = (Option<&'a String>, Option<&'a String>)>,
    keep_empty: bool,
) -> Vec<Address> {
    let mut out: Vec<Address> = pairs
        .map(|(ip, hostname)| Address {
            ip: ip.filter(|v| !v.is_empty()).cloned(),
            hostname: hostname.filter(|v| !v.is_empty()).cloned(),
        })
        .filter(|a| keep_empty || a.ip.is_some() || a.hostname.is_some())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The addresses in an Ingress's status, sorted.
fn current_addresses(ing: &Ingress) -> Vec<Address> {
    let list = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    sorted_addresses(
        list.into_iter()
            .flatten()
            .map(|e| (e.ip.as_ref(), e.hostname.as_ref())),
        true,
    )
}

/// The addresses in a Service's LoadBalancer status, sorted.
fn service_addresses(svc: &Service) -> Vec<Address> {
    let list = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    sorted_addresses(
        list.into_iter()
            .flatten()
            .map(|e| (e.ip.as_ref(), e.hostname.as_ref())),
        false,
    )
}

/// Where the published address comes from.
#[derive(Clone, Debug)]
enum Publish {
    /// Nothing configured: no status is written.
    Nothing,
    /// `--publish-address`.
    Fixed(Vec<Address>),
    /// `--publish-service`: namespace, name, and whether the source watches that namespace.
    Service {
        namespace: String,
        name: String,
        watched: bool,
    },
}

/// A status write of ours, remembered until the watch catches up.
#[derive(Clone, Debug)]
struct Written {
    /// The Ingress's resourceVersion (as the source saw it) when we wrote.
    source_rv: Option<String>,
    /// What we wrote.
    value: Vec<Address>,
}

/// An Event we sent: Ingress, reason, note.
type EventKey = (ObjectRef, &'static str, String);

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tokens: EVENT_BURST,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let added = now.duration_since(self.at).as_secs_f64() * EVENTS_PER_SECOND;
        self.tokens = (self.tokens + added).min(EVENT_BURST);
        self.at = now;
    }

    fn take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until the next token.
    fn wait(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / EVENTS_PER_SECOND).max(Duration::from_millis(10))
    }
}

struct Publisher {
    shared: Arc<Shared>,
    client: kube::Client,
    publish: Publish,
    reporting_controller: String,
    leader: watch::Receiver<bool>,
    written: HashMap<ObjectRef, Written>,
    /// The published Service's addresses, when read from the API, and when.
    fetched: Option<(Vec<Address>, Instant)>,
    events_sent: HashSet<EventKey>,
    bucket: Bucket,
    backoff: Duration,
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
    fn new(shared: Arc<Shared>, client: kube::Client, kube: &KubeSource) -> Publisher {
        let publish = if !kube.publish_addresses.is_empty() {
            // In the order given (what `kubectl get ingress` shows), without repeats.
            let mut list: Vec<Address> = Vec::new();
            for a in kube.publish_addresses.iter().map(|a| Address::parse(a)) {
                if !list.contains(&a) {
                    list.push(a);
                }
            }
            Publish::Fixed(list)
        } else if let Some((ns, name)) = kube
            .publish_service
            .as_deref()
            .and_then(|s| s.split_once('/'))
        {
            Publish::Service {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                watched: kube.namespaces.is_empty() || kube.namespaces.iter().any(|n| n == ns),
            }
        } else {
            Publish::Nothing
        };
        let leader = shared.leader.subscribe();
        Publisher {
            reporting_controller: shared.classes.controller_name.clone(),
            shared,
            client,
            publish,
            leader,
            written: HashMap::new(),
            fetched: None,
            events_sent: HashSet::new(),
            bucket: Bucket::new(),
            backoff: BACKOFF_MIN,
        }
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Reconciles at every change of the desired, certificate-diagnostics and leader topics,
    /// and on retries and resyncs.
    async fn run(mut self) {
        let mut desired_rx = self.shared.desired.subscribe();
        let mut certs_rx = self.shared.cert_diagnostics.subscribe();
        let mut leader_rx = self.shared.leader.subscribe();
        loop {
            let leader = *leader_rx.borrow_and_update();
            let desired = desired_rx.borrow_and_update().clone();
            let certs = certs_rx.borrow_and_update().clone();
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
            self.backoff = BACKOFF_MIN;
        }
        pass
    }

    /// The addresses to publish, or `None` when nothing is configured or the Service could
    /// not be read.
    async fn addresses(&mut self, desired: &Desired, pass: &mut Pass) -> Option<Vec<Address>> {
        match &self.publish {
            Publish::Nothing => None,
            Publish::Fixed(list) => Some(list.clone()),
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
                let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
                let got = tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name)).await;
                match got {
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
        pass.retry_in(self.backoff);
        self.backoff = self.backoff.saturating_mul(2).min(BACKOFF_MAX);
    }

    async fn statuses(&mut self, desired: &Desired, addresses: &[Address], pass: &mut Pass) {
        let owned: BTreeSet<&ObjectRef> = desired.translation.model.ingresses.iter().collect();
        let mut seen: HashSet<ObjectRef> = HashSet::new();
        for ing in &desired.loaded.state.ingresses {
            let r = ObjectRef::new(
                ing.metadata.namespace.clone().unwrap_or_default(),
                ing.metadata.name.clone().unwrap_or_default(),
            );
            let rv = ing.metadata.resource_version.clone();
            let current = match self.written.get(&r) {
                Some(w) if w.source_rv == rv => w.value.clone(),
                _ => current_addresses(ing),
            };
            let want = if owned.contains(&r) {
                addresses.to_vec()
            } else if !current.is_empty()
                && (self.written.contains_key(&r) || same(&current, addresses))
            {
                // No longer ours: clear what we published.
                Vec::new()
            } else {
                // Not ours and nothing of ours in it: forget it once the watch has caught up
                // with our last write.
                seen.insert(r.clone());
                if self.written.get(&r).is_some_and(|w| w.source_rv != rv) {
                    self.written.remove(&r);
                }
                continue;
            };
            seen.insert(r.clone());
            if same(&want, &current) {
                continue;
            }
            if !self.is_leader() {
                return;
            }
            match self.write_status(&r, &want).await {
                Ok(()) => {
                    tracing::info!(ingress = %r, addresses = ?want, "ingress status written");
                    // Remembered: until the watch shows the write, it is the current value;
                    // and an Ingress we wrote to is cleared when it stops being ours.
                    self.written.insert(
                        r,
                        Written {
                            source_rv: rv,
                            value: want,
                        },
                    );
                }
                Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 404) => {}
                Err(e) => self.error("status", &format!("{r}: {e}"), pass),
            }
        }
        // Forget Ingresses that are gone.
        self.written.retain(|r, _| seen.contains(r));
    }

    async fn write_status(&self, r: &ObjectRef, want: &[Address]) -> Result<(), kube::Error> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &r.namespace);
        let value = if want.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Array(want.iter().map(Address::to_json).collect())
        };
        let patch = json!({ "status": { "loadBalancer": { "ingress": value } } });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        match tokio::time::timeout(CALL_TIMEOUT, api.patch_status(&r.name, &params, &patch)).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(kube::Error::Service(
                "the API server did not answer in time".into(),
            )),
        }
    }

    async fn events(&mut self, desired: &Desired, certs: &[Diagnostic], pass: &mut Pass) {
        let active: Vec<(EventKey, &Diagnostic)> = desired
            .translation
            .diagnostics
            .iter()
            .chain(certs.iter())
            .filter(|d| d.kind == Kind::Ingress)
            .map(|d| {
                let note = if d.field.is_empty() {
                    d.message.clone()
                } else {
                    format!("{}: {}", d.field, d.message)
                };
                ((d.object.clone(), d.reason.as_str(), note), d)
            })
            .collect();
        let keys: HashSet<&EventKey> = active.iter().map(|(k, _)| k).collect();
        self.events_sent.retain(|k| keys.contains(k));
        let uids: HashMap<(&str, &str), &Ingress> = desired
            .loaded
            .state
            .ingresses
            .iter()
            .map(|i| {
                (
                    (
                        i.metadata.namespace.as_deref().unwrap_or_default(),
                        i.metadata.name.as_deref().unwrap_or_default(),
                    ),
                    i,
                )
            })
            .collect();
        for (key, _) in &active {
            if self.events_sent.contains(key) {
                continue;
            }
            if !self.is_leader() {
                return;
            }
            if !self.bucket.take() {
                pass.retry_in(self.bucket.wait());
                return;
            }
            let ing = uids
                .get(&(key.0.namespace.as_str(), key.0.name.as_str()))
                .copied();
            match self.send_event(key, ing).await {
                Ok(()) => {
                    metrics::counter!("sluice_kube_events_total", "reason" => key.1).increment(1);
                    self.events_sent.insert(key.clone());
                }
                Err(e) => {
                    self.error("event", &format!("{}: {e}", key.0), pass);
                    return;
                }
            }
        }
    }

    async fn send_event(&self, key: &EventKey, ing: Option<&Ingress>) -> Result<(), kube::Error> {
        let (object, reason, note) = key;
        let now = Timestamp::now();
        let mut note = note.clone();
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", object.name, now.as_nanosecond())),
                namespace: Some(object.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Warning".to_owned()),
            reason: Some((*reason).to_owned()),
            action: Some("Translate".to_owned()),
            note: Some(note),
            reporting_controller: Some(self.reporting_controller.clone()),
            reporting_instance: Some(self.shared.identity.chars().take(128).collect()),
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
        let api: Api<Event> = Api::namespaced(self.client.clone(), &object.namespace);
        let params = PostParams::default();
        match tokio::time::timeout(CALL_TIMEOUT, api.create(&params, &event)).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(kube::Error::Service(
                "the API server did not answer in time".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_ip_or_hostname() {
        assert_eq!(Address::parse("10.0.0.1").ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(Address::parse("::1").ip.as_deref(), Some("::1"));
        assert_eq!(
            Address::parse("lb.example.com").hostname.as_deref(),
            Some("lb.example.com")
        );
    }

    #[test]
    fn bucket_limits_bursts() {
        let mut b = Bucket::new();
        let sent = (0..100).filter(|_| b.take()).count();
        assert!((20..=21).contains(&sent), "{sent}");
        assert!(b.wait() > Duration::ZERO);
    }
}
