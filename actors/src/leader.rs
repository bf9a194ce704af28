//! The leader actor: leader election on a coordination.k8s.io/v1 Lease, so that exactly one
//! replica writes to the API server (Ingress status and Events; later DNS and ACME). Every
//! replica serves traffic regardless.
//!
//! The algorithm is client-go's:
//! - every `retry_period` the actor reads the Lease (namespace `--leader-election-namespace`,
//!   else the pod's; name `--leader-election-id`, default `sluice-leader`);
//! - it takes the Lease when it is free (no holder) or expired (the holder's `renewTime` plus
//!   `leaseDurationSeconds` is in the past), by an update that carries the `resourceVersion`
//!   it read: of two replicas racing for it, the API server lets one win and answers the other
//!   409 Conflict;
//! - the leader renews (sets `renewTime`) every `retry_period`. A conflict, or finding another
//!   holder, ends its leadership at once; if renewals fail (API server away) for
//!   `renew_deadline`, which is shorter than the lease duration, it steps down before anyone
//!   else can take the Lease, so two replicas never both believe they lead.
//! - Leadership is published on the `leader` topic of [`Shared`] (a `watch<bool>`); writers
//!   check it before every write. On a clean stop the leader releases the Lease (empties the
//!   holder) so that another replica takes over at its next retry instead of waiting for
//!   expiry.
//!
//! API errors never crash the actor: they are logged, counted
//! (`sluice_leader_election_errors_total`) and retried with backoff. `sluice_leader{identity}`
//! is 1 while this replica leads. The identity (pod name plus a random suffix) lives in
//! [`Shared`], so a restarted leader actor recognises and renews its own Lease.

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::messages::TaskGuard;
use crate::run::Shared;
use crate::supervisor::Crashable;

/// Where the in-cluster service account's namespace is written.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Leader-election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// `--leader-election-namespace`; `None`: the pod's namespace (see [`Self::namespace`]).
    pub namespace: Option<String>,
    /// `--leader-election-id`: the Lease name.
    pub name: String,
    /// How long a Lease is valid after its last renewal (written as whole seconds, at least 1).
    pub lease_duration: Duration,
    /// The leader steps down when it could not renew for this long (less than
    /// `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews and the others try to acquire.
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    /// The pod's namespace, `sluice-leader`, 15 s lease, 10 s renew deadline, 2 s retry.
    fn default() -> Self {
        LeaderElection {
            namespace: None,
            name: "sluice-leader".to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderElection {
    /// The Lease's namespace: the configured one, else `POD_NAMESPACE`, else the in-cluster
    /// service account's namespace file, else `default`.
    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .or_else(|| {
                std::fs::read_to_string(NAMESPACE_FILE)
                    .ok()
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// This process's identity: the pod name (`POD_NAME`, else the host name) and a random suffix,
/// so that two processes never share one.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "sluice".to_owned());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    format!("{base}-{:08x}", hasher.finish() & 0xffff_ffff)
}

/// Leader actor messages (the election runs in a task owned by the actor's state).
#[derive(Debug)]
pub enum LeaderMsg {
    /// Panic (chaos testing).
    Crash,
}

impl Crashable for LeaderMsg {
    fn crash() -> Self {
        LeaderMsg::Crash
    }
}

/// The leader actor.
#[derive(Debug)]
pub struct Leader;

/// Its state: the election task (none in standalone mode, where nothing is written).
#[derive(Debug)]
pub struct LeaderState {
    shared: Arc<Shared>,
    election: Option<TaskGuard>,
}

impl Actor for Leader {
    type Msg = LeaderMsg;
    type State = LeaderState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<LeaderMsg>,
        shared: Arc<Shared>,
    ) -> Result<LeaderState, ActorProcessingErr> {
        let election = match (&shared.kube_client, &shared.kube) {
            (Some(client), Some(kube)) => {
                let config = kube.leader_election.clone();
                let api = Api::namespaced(client.clone(), &config.namespace());
                Some(TaskGuard(tokio::spawn(elect(shared.clone(), api, config))))
            }
            _ => None,
        };
        Ok(LeaderState { shared, election })
    }

    async fn handle(
        &self,
        _myself: ActorRef<LeaderMsg>,
        msg: LeaderMsg,
        _state: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LeaderMsg::Crash => panic!("chaos: crash requested for leader"),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LeaderMsg>,
        state: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        // Stop renewing (which steps down), then hand the Lease over.
        let Some(election) = state.election.take() else {
            return Ok(());
        };
        drop(election);
        set_leader(&state.shared, false);
        if let (Some(client), Some(kube)) = (&state.shared.kube_client, &state.shared.kube) {
            let config = &kube.leader_election;
            let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace());
            let release = release(&api, &config.name, &state.shared.identity);
            match tokio::time::timeout(Duration::from_secs(1), release).await {
                Ok(Ok(true)) => tracing::info!(lease = %config.name, "leader lease released"),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "could not release the leader lease; it will expire");
                }
                Err(_) => tracing::debug!("releasing the leader lease timed out; it will expire"),
            }
        }
        Ok(())
    }
}

/// Publishes a leadership change (topic, gauge, log).
fn set_leader(shared: &Shared, leader: bool) {
    let changed = shared.leader.send_if_modified(|now| {
        let changed = *now != leader;
        *now = leader;
        changed
    });
    metrics::gauge!("sluice_leader", "identity" => shared.identity.clone()).set(if leader {
        1.0
    } else {
        0.0
    });
    if changed {
        if leader {
            tracing::info!(identity = %shared.identity, "became the leader: writing status and Events");
        } else {
            tracing::info!(identity = %shared.identity, "no longer the leader: writes stopped");
        }
    }
}

/// Sets the topic to false when the election task ends (aborted with a crashed actor): a
/// replica that no longer renews never keeps writing.
struct StepDownOnDrop(Arc<Shared>);

impl Drop for StepDownOnDrop {
    fn drop(&mut self) {
        set_leader(&self.0, false);
    }
}

/// What one attempt found.
enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Leading,
    /// Someone else holds it, or our update lost a race (409 Conflict).
    Follower(String),
}

/// The election loop (see the module documentation). Never returns on its own.
async fn elect(shared: Arc<Shared>, api: Api<Lease>, config: LeaderElection) {
    let _step_down = StepDownOnDrop(shared.clone());
    set_leader(&shared, false);
    let attempt_timeout = (config.renew_deadline / 2).max(Duration::from_secs(1));
    let mut last_renewal: Option<tokio::time::Instant> = None;
    let mut backoff = config.retry_period;
    let mut last_holder = String::new();
    loop {
        let attempt = tokio::time::timeout(
            attempt_timeout,
            try_acquire_or_renew(&api, &config, &shared.identity),
        )
        .await;
        let wait = match attempt {
            Ok(Ok(Attempt::Leading)) => {
                last_renewal = Some(tokio::time::Instant::now());
                set_leader(&shared, true);
                backoff = config.retry_period;
                config.retry_period
            }
            Ok(Ok(Attempt::Follower(holder))) => {
                last_renewal = None;
                set_leader(&shared, false);
                if holder != last_holder {
                    tracing::info!(%holder, lease = %config.name, "another replica leads");
                    last_holder = holder;
                }
                backoff = config.retry_period;
                config.retry_period
            }
            Ok(Err(error)) => {
                failed(&shared, &config, &mut last_renewal, &format!("{error}"));
                backoff = next_backoff(backoff, &config);
                if last_renewal.is_some() {
                    config.retry_period
                } else {
                    backoff
                }
            }
            Err(_) => {
                failed(
                    &shared,
                    &config,
                    &mut last_renewal,
                    "the API server did not answer in time",
                );
                backoff = next_backoff(backoff, &config);
                if last_renewal.is_some() {
                    config.retry_period
                } else {
                    backoff
                }
            }
        };
        // A leader whose renewals keep failing steps down at its deadline, not later.
        let wake = match last_renewal {
            Some(at) => (tokio::time::Instant::now() + wait).min(at + config.renew_deadline),
            None => tokio::time::Instant::now() + wait,
        };
        tokio::time::sleep_until(wake).await;
        if last_renewal.is_some_and(|at| at.elapsed() >= config.renew_deadline) {
            tracing::warn!(lease = %config.name, "could not renew the leader lease before the deadline; stepping down");
            last_renewal = None;
            set_leader(&shared, false);
        }
    }
}

fn failed(
    shared: &Shared,
    config: &LeaderElection,
    last_renewal: &mut Option<tokio::time::Instant>,
    error: &str,
) {
    metrics::counter!("sluice_leader_election_errors_total").increment(1);
    tracing::warn!(lease = %config.name, %error, "leader election: API error; retrying");
    if last_renewal.is_some_and(|at| at.elapsed() >= config.renew_deadline) {
        *last_renewal = None;
        set_leader(shared, false);
    }
}

fn next_backoff(current: Duration, config: &LeaderElection) -> Duration {
    let cap = config.lease_duration.max(config.retry_period);
    current.saturating_mul(2).min(cap)
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// One read-then-write of the Lease.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaderElection,
    identity: &str,
) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_owned()),
                lease_duration_seconds: Some(config.lease_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(e) if is_conflict(&e) => Ok(Attempt::Follower(String::new())),
            Err(e) => Err(e),
        };
    };
    let mut spec = lease.spec.take().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == identity;
    if !ours && !holder.is_empty() && !expired(&spec, now) {
        return Ok(Attempt::Follower(holder));
    }
    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.holder_identity = Some(identity.to_owned());
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(config.lease_seconds());
    lease.spec = Some(spec);
    // The update carries the resourceVersion we read: a concurrent writer makes it conflict.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Attempt::Leading),
        Err(e) if is_conflict(&e) => {
            if ours {
                tracing::warn!(lease = %config.name, "leader lease update conflicted; stepping down");
            }
            Ok(Attempt::Follower(holder))
        }
        Err(e) => Err(e),
    }
}

/// True when the holder's last renewal plus the lease duration is in the past.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = &spec.renew_time else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed
        .0
        .checked_add(duration)
        .is_ok_and(|until| until < now)
}

/// Empties the holder of a Lease we hold, so that another replica takes it at once.
async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(false);
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(name, &PostParams::default(), &lease).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_uses_renew_time_plus_duration() {
        let now = Timestamp::now();
        let mut spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(10))),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec, now));
        spec.renew_time = Some(MicroTime(now - SignedDuration::from_secs(16)));
        assert!(expired(&spec, now));
        spec.renew_time = None;
        assert!(expired(&spec, now));
    }

    #[test]
    fn identities_differ() {
        assert_ne!(identity(), identity());
    }
}
