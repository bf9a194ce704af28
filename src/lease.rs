//! Leader election on a coordination.k8s.io/v1 Lease: client-go's decisions as pure functions.
//!
//! The runtime's leader actor reads the Lease, asks [`Observer::decide`] what to do, performs
//! the write (carrying the `resourceVersion` it read, so that of two racing replicas the API
//! server lets one win with 409 Conflict for the other) and tells the observer what it wrote.
//!
//! **Expiry is measured on this replica's own clock**, as client-go does: the observer
//! remembers when (local monotonic time) it last saw the Lease record change, and the holder
//! has lost the Lease when the record has not changed for `leaseDurationSeconds` since then.
//! The holder's `renewTime` is never compared with our wall clock, so replicas whose clocks
//! disagree (skew in either direction) neither steal a live Lease nor wait for a dead
//! holder's future timestamp.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

/// The fields of a Lease that leader election reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The holder's identity; empty or `None` when released.
    pub holder: Option<String>,
    /// How long the Lease is valid after each renewal, in seconds.
    pub duration_seconds: i32,
    /// When the holder acquired it (its wall clock).
    pub acquire_time: Option<Timestamp>,
    /// When the holder last renewed it (its wall clock).
    pub renew_time: Option<Timestamp>,
    /// How many times the holder changed.
    pub transitions: i32,
}

impl LeaseRecord {
    /// The record in a Lease's spec.
    pub fn from_spec(spec: &LeaseSpec) -> LeaseRecord {
        LeaseRecord {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// Writes the record into a Lease's spec (other fields kept).
    pub fn apply_to(&self, spec: &mut LeaseSpec) {
        spec.holder_identity = self.holder.clone();
        spec.lease_duration_seconds = Some(self.duration_seconds);
        spec.acquire_time = self.acquire_time.map(MicroTime);
        spec.renew_time = self.renew_time.map(MicroTime);
        spec.lease_transitions = Some(self.transitions);
    }

    fn held_by(&self, identity: &str) -> bool {
        self.holder.as_deref() == Some(identity)
    }
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it with this record (we hold it).
    Create(LeaseRecord),
    /// Write this record (acquire an expired or released Lease, or renew ours).
    Update(LeaseRecord),
    /// Another replica holds a valid Lease.
    Follow {
        /// Its identity.
        holder: String,
    },
}

/// What this replica has observed of the Lease (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Observer {
    record: Option<LeaseRecord>,
    changed_at: Option<Instant>,
}

impl Observer {
    /// Decides, from the Lease read at local time `now` (`None`: it does not exist), what
    /// `identity` does. `duration` is the lease duration we write; `wall` our wall clock,
    /// only used as the timestamps we write.
    pub fn decide(
        &mut self,
        read: Option<&LeaseRecord>,
        identity: &str,
        duration: Duration,
        now: Instant,
        wall: Timestamp,
    ) -> Decision {
        let seconds = i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(current) = read else {
            return Decision::Create(LeaseRecord {
                holder: Some(identity.to_owned()),
                duration_seconds: seconds,
                acquire_time: Some(wall),
                renew_time: Some(wall),
                transitions: 0,
            });
        };
        self.observe(current, now);
        let ours = current.held_by(identity);
        if let Some(holder) = &current.holder
            && !ours
            && self.valid(now)
        {
            return Decision::Follow {
                holder: holder.clone(),
            };
        }
        let mut next = current.clone();
        if !ours {
            next.holder = Some(identity.to_owned());
            next.acquire_time = Some(wall);
            next.transitions = current.transitions.saturating_add(1);
        }
        next.renew_time = Some(wall);
        next.duration_seconds = seconds;
        Decision::Update(next)
    }

    /// Records our own successful write at `now`.
    pub fn wrote(&mut self, record: LeaseRecord, now: Instant) {
        self.record = Some(record);
        self.changed_at = Some(now);
    }

    /// The record we release the Lease with (holder emptied, 1 s duration so that others
    /// take it at once), or `None` when `current` is not ours.
    pub fn release(current: &LeaseRecord, identity: &str, wall: Timestamp) -> Option<LeaseRecord> {
        current.held_by(identity).then(|| LeaseRecord {
            holder: None,
            duration_seconds: 1,
            renew_time: Some(wall),
            ..current.clone()
        })
    }

    fn observe(&mut self, current: &LeaseRecord, now: Instant) {
        if self.record.as_ref() != Some(current) {
            self.record = Some(current.clone());
            self.changed_at = Some(now);
        }
    }

    /// True while the observed record changed less than its duration ago (local time).
    fn valid(&self, now: Instant) -> bool {
        match (&self.record, self.changed_at) {
            (Some(r), Some(at)) => {
                let duration = Duration::from_secs(u64::try_from(r.duration_seconds).unwrap_or(0));
                now < at + duration
            }
            _ => false,
        }
    }
}

/// Whether a leader whose last successful renewal was at `last_renewal` (local time) still
/// leads at `now`: it steps down once renewals have failed for `renew_deadline`, which is
/// shorter than the lease duration, so it stops before anyone else may take over.
pub fn still_leading(
    last_renewal: Option<Instant>,
    now: Instant,
    renew_deadline: Duration,
) -> bool {
    last_renewal.is_some_and(|at| now.saturating_duration_since(at) < renew_deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    const S: Duration = Duration::from_secs(1);
    const LEASE: Duration = Duration::from_secs(15);

    fn held(holder: &str, renew: Timestamp) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.to_owned()),
            duration_seconds: 15,
            acquire_time: Some(renew),
            renew_time: Some(renew),
            transitions: 3,
        }
    }

    fn skewed(wall: Timestamp, secs: i64) -> Timestamp {
        wall.checked_add(SignedDuration::from_secs(secs)).unwrap()
    }

    #[test]
    fn no_lease_is_created_holding_us() {
        let (t0, wall) = (Instant::now(), Timestamp::now());
        let d = Observer::default().decide(None, "me", LEASE, t0, wall);
        let Decision::Create(r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(r.holder.as_deref(), Some("me"));
        assert_eq!(r.duration_seconds, 15);
        assert_eq!(r.transitions, 0);
    }

    #[test]
    fn a_live_holder_is_followed_and_a_silent_one_replaced_after_the_duration() {
        let (t0, wall) = (Instant::now(), Timestamp::now());
        let mut o = Observer::default();
        let other = held("other", wall);
        assert_eq!(
            o.decide(Some(&other), "me", LEASE, t0, wall),
            Decision::Follow {
                holder: "other".into()
            }
        );
        // Unchanged for 14 s: still valid.
        assert!(matches!(
            o.decide(Some(&other), "me", LEASE, t0 + 14 * S, wall),
            Decision::Follow { .. }
        ));
        // Unchanged for 15 s: expired; we take it, counting a transition.
        let Decision::Update(r) = o.decide(Some(&other), "me", LEASE, t0 + 15 * S, wall) else {
            panic!("expected an update")
        };
        assert_eq!(r.holder.as_deref(), Some("me"));
        assert_eq!(r.transitions, 4);
    }

    #[test]
    fn renewing_our_own_lease_keeps_acquire_time_and_transitions() {
        let (t0, wall) = (Instant::now(), Timestamp::now());
        let mut o = Observer::default();
        let ours = held("me", skewed(wall, -100));
        let Decision::Update(r) = o.decide(Some(&ours), "me", LEASE, t0, wall) else {
            panic!("expected a renewal")
        };
        assert_eq!(r.acquire_time, ours.acquire_time);
        assert_eq!(r.transitions, 3);
        assert_eq!(r.renew_time, Some(wall));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let (t0, wall) = (Instant::now(), Timestamp::now());
        let released = Observer::release(&held("other", wall), "other", wall).unwrap();
        assert_eq!(released.holder, None);
        assert!(Observer::release(&held("other", wall), "me", wall).is_none());
        let d = Observer::default().decide(Some(&released), "me", LEASE, t0, wall);
        assert!(matches!(d, Decision::Update(r) if r.holder.as_deref() == Some("me")));
    }

    /// The holder's clock is an hour behind ours: its renewTime always looks an hour old.
    /// A naive "renewTime + duration < now" would steal the Lease at every read.
    #[test]
    fn holder_clock_behind_is_not_mistaken_for_expiry() {
        let (t0, wall) = (Instant::now(), Timestamp::now());
        let mut o = Observer::default();
        for i in 0..20u32 {
            let renew = skewed(wall, -3600 + 2 * i64::from(i));
            let d = o.decide(
                Some(&held("other", renew)),
                "me",
                LEASE,
                t0 + 2 * i * S,
                wall,
            );
            assert!(matches!(d, Decision::Follow { .. }), "read {i}: {d:?}");
        }
        // The holder dies: the record stops changing; 15 s of our own time later we take it.
        let last = held("other", skewed(wall, -3600 + 38));
        let at = t0 + 38 * S;
        assert!(matches!(
            o.decide(Some(&last), "me", LEASE, at + 14 * S, wall),
            Decision::Follow { .. }
        ));
        assert!(matches!(
            o.decide(Some(&last), "me", LEASE, at + 15 * S, wall),
            Decision::Update(_)
        ));
    }

    /// The holder's clock is an hour ahead: its renewTime is in our future. A naive rule
    /// would wait an hour after the holder died; ours waits the lease duration.
    #[test]
    fn holder_clock_ahead_does_not_delay_takeover() {
        let (t0, wall) = (Instant::now(), Timestamp::now());
        let mut o = Observer::default();
        let last = held("other", skewed(wall, 3600));
        assert!(matches!(
            o.decide(Some(&last), "me", LEASE, t0, wall),
            Decision::Follow { .. }
        ));
        assert!(matches!(
            o.decide(Some(&last), "me", LEASE, t0 + 15 * S, wall),
            Decision::Update(_)
        ));
    }

    #[test]
    fn our_own_write_counts_as_an_observed_change() {
        let (t0, wall) = (Instant::now(), Timestamp::now());
        let mut o = Observer::default();
        let ours = held("me", wall);
        o.wrote(ours.clone(), t0);
        // Someone else takes it over (e.g. after we lost the API server): the change is
        // observed at once, and we follow for a full duration.
        let theirs = held("other", wall);
        assert!(matches!(
            o.decide(Some(&theirs), "me", LEASE, t0 + S, wall),
            Decision::Follow { .. }
        ));
    }

    #[test]
    fn a_leader_steps_down_at_the_renew_deadline() {
        let t0 = Instant::now();
        let deadline = Duration::from_secs(10);
        assert!(still_leading(Some(t0), t0 + 9 * S, deadline));
        assert!(!still_leading(Some(t0), t0 + 10 * S, deadline));
        assert!(!still_leading(None, t0, deadline));
    }

    #[test]
    fn records_round_trip_through_a_lease_spec() {
        let wall = Timestamp::now();
        let r = held("me", wall);
        let mut spec = LeaseSpec::default();
        r.apply_to(&mut spec);
        assert_eq!(LeaseRecord::from_spec(&spec), r);
        spec.holder_identity = Some(String::new());
        assert_eq!(LeaseRecord::from_spec(&spec).holder, None);
    }
}
