//! The leader actor: leader election on a coordination.k8s.io/v1 Lease, so that exactly one
//! replica writes to the API server (Ingress status and Events, DNS changes, ACME orders).
//! Every replica serves traffic regardless. Started in Kubernetes mode only.
//!
//! The decisions are client-go's and live in the engine ([`sluice::lease`]): every
//! `retry_period` the actor reads the Lease (namespace `--leader-election-namespace`, else the
//! pod's; name `--leader-election-id`, default `sluice-leader`), asks the observer what to do,
//! and writes with the `resourceVersion` it read, so that of two racing replicas the API
//! server lets one win (409 Conflict for the other). Expiry is judged on this replica's clock
//! from when it last saw the Lease change, never from the holder's timestamps. The leader
//! renews every `retry_period`; a conflict or another holder ends its leadership at once; if
//! renewals fail for `renew_deadline` (shorter than the lease) it steps down before anyone
//! else may take over. On a clean stop it releases the Lease so that the next replica takes
//! over at its next retry instead of after expiry.
//!
//! Leadership is the `leader` topic; writers check it before every write. The election task
//! sets it to false when it ends for any reason (a drop guard), so a crashed actor never
//! leaves a stale `true`. API errors never crash the actor: they are logged, counted
//! (`sluice_leader_election_errors_total`) and retried with backoff. `sluice_leader{identity}`
//! is 1 while this replica leads. The identity (pod name plus a random suffix) is made once per
//! process, so a restarted leader actor recognises and renews its own Lease.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use ractor::ActorProcessingErr;
use sluice::lease::{Decision, LeaseRecord, Observer, still_leading};
use sluice::pace::Backoff;
use tokio::time::Instant;

use crate::topics::LeaderTopic;
use crate::worker::{Ctx, NoMsg, Worker};

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

/// What the leader actor uses.
#[derive(Clone)]
pub struct LeaderArgs {
    /// The process's Kubernetes client.
    pub client: kube::Client,
    /// Lease name, namespace and durations.
    pub election: LeaderElection,
    /// This replica's identity.
    pub identity: String,
    /// Where leadership is published.
    pub topic: LeaderTopic,
}

/// The leader actor.
#[derive(Debug)]
pub struct Leader;

impl Worker for Leader {
    type Msg = NoMsg;
    type State = LeaderArgs;
    type Args = LeaderArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<NoMsg>,
        args: LeaderArgs,
    ) -> Result<LeaderArgs, ActorProcessingErr> {
        let api = Api::namespaced(args.client.clone(), &args.election.namespace());
        ctx.spawn("election", elect(args.clone(), api));
        Ok(args)
    }

    async fn stop(&self, args: &mut LeaderArgs) {
        // Step down first (writers stop at once), then hand the Lease over.
        set_leader(&args.topic, &args.identity, false);
        let api: Api<Lease> = Api::namespaced(args.client.clone(), &args.election.namespace());
        let release = release(&api, &args.election.name, &args.identity);
        match tokio::time::timeout(Duration::from_secs(1), release).await {
            Ok(Ok(true)) => tracing::info!(lease = %args.election.name, "leader lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not release the leader lease; it will expire");
            }
            Err(_) => tracing::debug!("releasing the leader lease timed out; it will expire"),
        }
    }
}

/// Publishes a leadership change (topic, gauge, log).
fn set_leader(topic: &LeaderTopic, identity: &str, leader: bool) {
    let changed = topic.send_if_modified(|now| {
        let changed = *now != leader;
        *now = leader;
        changed
    });
    metrics::gauge!("sluice_leader", "identity" => identity.to_owned()).set(if leader {
        1.0
    } else {
        0.0
    });
    if changed {
        if leader {
            tracing::info!(%identity, "became the leader: writing status, Events, DNS and certificates");
        } else {
            tracing::info!(%identity, "no longer the leader: writes stopped");
        }
    }
}

/// Sets the topic to false when the election task ends (aborted with a crashed actor): a
/// replica that no longer renews never keeps writing.
struct StepDownOnDrop(LeaderTopic, String);

impl Drop for StepDownOnDrop {
    fn drop(&mut self) {
        set_leader(&self.0, &self.1, false);
    }
}

/// What one attempt found.
enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Leading,
    /// Someone else holds it, or our write lost a race (409 Conflict).
    Follower(String),
}

/// The election loop (see the module documentation). Never returns on its own.
async fn elect(args: LeaderArgs, api: Api<Lease>) {
    let LeaderArgs {
        election: config,
        identity,
        topic,
        ..
    } = args;
    let _step_down = StepDownOnDrop(topic.clone(), identity.clone());
    set_leader(&topic, &identity, false);
    let attempt_timeout = (config.renew_deadline / 2).max(Duration::from_secs(1));
    let mut observer = Observer::default();
    let mut last_renewal: Option<Instant> = None;
    let mut backoff = Backoff::new(
        config.retry_period,
        config.lease_duration.max(config.retry_period),
    );
    let mut last_holder = String::new();
    loop {
        let attempt = tokio::time::timeout(
            attempt_timeout,
            try_acquire_or_renew(&api, &config, &identity, &mut observer),
        )
        .await
        .unwrap_or_else(|_| Err("the API server did not answer in time".to_owned()));
        let wait = match attempt {
            Ok(Attempt::Leading) => {
                last_renewal = Some(Instant::now());
                set_leader(&topic, &identity, true);
                backoff.reset();
                config.retry_period
            }
            Ok(Attempt::Follower(holder)) => {
                last_renewal = None;
                set_leader(&topic, &identity, false);
                if holder != last_holder {
                    tracing::info!(%holder, lease = %config.name, "another replica leads");
                    last_holder = holder;
                }
                backoff.reset();
                config.retry_period
            }
            Err(error) => {
                metrics::counter!("sluice_leader_election_errors_total").increment(1);
                tracing::warn!(lease = %config.name, %error, "leader election: API error; retrying");
                // A leader keeps trying every retry period until its deadline; a follower
                // backs off.
                let delay = backoff.next_delay();
                if last_renewal.is_some() {
                    config.retry_period
                } else {
                    delay
                }
            }
        };
        // A leader whose renewals keep failing steps down at its deadline, not later.
        let wake = match last_renewal {
            Some(at) => (Instant::now() + wait).min(at + config.renew_deadline),
            None => Instant::now() + wait,
        };
        tokio::time::sleep_until(wake).await;
        if last_renewal.is_some()
            && !still_leading(last_renewal, Instant::now(), config.renew_deadline)
        {
            tracing::warn!(lease = %config.name, "could not renew the leader lease before the deadline; stepping down");
            last_renewal = None;
            set_leader(&topic, &identity, false);
        }
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// One read, one decision, at most one write.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaderElection,
    identity: &str,
    observer: &mut Observer,
) -> Result<Attempt, String> {
    let lease = api.get_opt(&config.name).await.map_err(|e| e.to_string())?;
    let read = lease
        .as_ref()
        .map(|l| LeaseRecord::from_spec(&l.spec.clone().unwrap_or_default()));
    let decision = observer.decide(
        read.as_ref(),
        identity,
        config.lease_duration,
        Instant::now(),
        Timestamp::now(),
    );
    let (result, record) = match decision {
        Decision::Follow { holder } => return Ok(Attempt::Follower(holder)),
        Decision::Create(record) => {
            let mut spec = LeaseSpec::default();
            record.apply_to(&mut spec);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            (api.create(&PostParams::default(), &lease).await, record)
        }
        Decision::Update(record) => {
            let mut lease = lease.unwrap_or_default();
            let mut spec = lease.spec.take().unwrap_or_default();
            record.apply_to(&mut spec);
            lease.spec = Some(spec);
            // The update carries the resourceVersion we read: a concurrent writer makes it
            // conflict.
            (
                api.replace(&config.name, &PostParams::default(), &lease)
                    .await,
                record,
            )
        }
    };
    match result {
        Ok(_) => {
            observer.wrote(record, Instant::now());
            Ok(Attempt::Leading)
        }
        Err(e) if is_conflict(&e) => {
            if read.as_ref().and_then(|r| r.holder.as_deref()) == Some(identity) {
                tracing::warn!(lease = %config.name, "leader lease update conflicted; stepping down");
            }
            let holder = read.and_then(|r| r.holder).unwrap_or_default();
            Ok(Attempt::Follower(holder))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Empties the holder of a Lease we hold, so that another replica takes it at once.
async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let mut spec = lease.spec.take().unwrap_or_default();
    let Some(record) =
        Observer::release(&LeaseRecord::from_spec(&spec), identity, Timestamp::now())
    else {
        return Ok(false);
    };
    record.apply_to(&mut spec);
    lease.spec = Some(spec);
    api.replace(name, &PostParams::default(), &lease).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ() {
        assert_ne!(identity(), identity());
    }
}
