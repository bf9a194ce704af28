//! Per-client request budgets for [`RateLimit`]: a token bucket per (Ingress, client
//! address), kept across configuration changes while the limit stays the same. Decisions take
//! `now`, so they are tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{ObjectRef, RateLimit};
use crate::pace::TokenBucket;

/// Client addresses tracked at most; past it, idle entries are dropped, and when none is idle
/// a new client is refused (as nginx does when a `limit_req` zone is full).
pub const MAX_CLIENTS: usize = 200_000;
/// An entry unused for this long may be dropped (its bucket would be full again anyway for
/// any rate of at least one request per minute with a burst multiplier of at least 1).
const IDLE: Duration = Duration::from_secs(120);

struct Entry {
    rps: Option<u32>,
    rpm: Option<u32>,
    multiplier: u32,
    per_second: Option<TokenBucket>,
    per_minute: Option<TokenBucket>,
    used: Instant,
}

impl Entry {
    fn new(limit: &RateLimit, now: Instant) -> Entry {
        let burst = |rate: u32| f64::from(rate) * f64::from(limit.burst_multiplier.max(1));
        Entry {
            rps: limit.rps,
            rpm: limit.rpm,
            multiplier: limit.burst_multiplier,
            per_second: limit
                .rps
                .map(|r| TokenBucket::new(f64::from(r), burst(r), now)),
            per_minute: limit
                .rpm
                .map(|r| TokenBucket::new(f64::from(r) / 60.0, burst(r), now)),
            used: now,
        }
    }

    fn same_limit(&self, limit: &RateLimit) -> bool {
        (self.rps, self.rpm, self.multiplier) == (limit.rps, limit.rpm, limit.burst_multiplier)
    }
}

/// The buckets of every limited client.
#[derive(Default)]
pub struct Limiters {
    entries: Mutex<HashMap<(ObjectRef, IpAddr), Entry>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

impl Limiters {
    /// Whether a request from `client` fits `limit` at `now` (taking from its budget).
    pub fn admit(&self, limit: &RateLimit, client: IpAddr, now: Instant) -> bool {
        if limit.exempt.iter().any(|c| c.contains(client)) {
            return true;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (limit.zone.clone(), client);
        if !entries.contains_key(&key) && entries.len() >= MAX_CLIENTS {
            entries.retain(|_, e| now.saturating_duration_since(e.used) < IDLE);
            if entries.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let entry = entries
            .entry(key)
            .and_modify(|e| {
                if !e.same_limit(limit) {
                    *e = Entry::new(limit, now);
                }
            })
            .or_insert_with(|| Entry::new(limit, now));
        entry.used = now;
        // Both budgets must have room; neither is charged otherwise.
        let room = |b: &mut Option<TokenBucket>| {
            b.as_mut().is_none_or(|b| {
                let mut probe = *b;
                probe.try_take(now)
            })
        };
        if !(room(&mut entry.per_second) && room(&mut entry.per_minute)) {
            return false;
        }
        for b in [&mut entry.per_second, &mut entry.per_minute]
            .into_iter()
            .flatten()
        {
            b.try_take(now);
        }
        true
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Requests in progress per (Ingress, client address), for [`ConnLimit`](crate::model::ConnLimit).
#[derive(Default)]
pub struct ConnCounts {
    counts: std::sync::Arc<Mutex<HashMap<(ObjectRef, IpAddr), u32>>>,
}

impl std::fmt::Debug for ConnCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnCounts").finish_non_exhaustive()
    }
}

/// One request in progress under a connection limit; the count goes down when it is dropped
/// (with the response body, so a streaming answer counts until it ends).
#[must_use]
pub struct ConnPermit {
    counts: std::sync::Arc<Mutex<HashMap<(ObjectRef, IpAddr), u32>>>,
    key: (ObjectRef, IpAddr),
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl ConnCounts {
    /// A permit for one more request from `client` under `limit`; `None` when the client has
    /// `limit.max` in progress already (exempt clients always get one), or when
    /// [`MAX_CLIENTS`] addresses are counted already.
    pub fn enter(
        &self,
        limit: &crate::model::ConnLimit,
        client: IpAddr,
    ) -> Option<Option<ConnPermit>> {
        if limit.exempt.iter().any(|c| c.contains(client)) {
            return Some(None);
        }
        let key = (limit.zone.clone(), client);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= MAX_CLIENTS && !counts.contains_key(&key) {
            return None;
        }
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= limit.max {
            return None;
        }
        *n += 1;
        Some(Some(ConnPermit {
            counts: self.counts.clone(),
            key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rps: Option<u32>, rpm: Option<u32>) -> RateLimit {
        RateLimit {
            zone: ObjectRef::new("default", "web"),
            rps,
            rpm,
            burst_multiplier: 5,
            exempt: vec!["10.0.0.0/8".parse().unwrap()],
        }
    }

    fn admitted(l: &Limiters, limit: &RateLimit, ip: &str, now: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| l.admit(limit, ip.parse().unwrap(), now))
            .count()
    }

    #[test]
    fn a_burst_of_rate_times_the_multiplier_then_the_rate() {
        let l = Limiters::default();
        let lim = limit(Some(2), None);
        let t0 = Instant::now();
        assert_eq!(admitted(&l, &lim, "192.0.2.1", t0, 20), 10, "burst 2 x 5");
        // Another client has its own budget.
        assert_eq!(admitted(&l, &lim, "192.0.2.2", t0, 20), 10);
        // One second later: two more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(admitted(&l, &lim, "192.0.2.1", t1, 20), 2);
        // Exempt networks are never limited.
        assert_eq!(admitted(&l, &lim, "10.1.2.3", t0, 100), 100);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn per_minute_and_per_second_together() {
        let l = Limiters::default();
        let lim = RateLimit {
            burst_multiplier: 1,
            ..limit(Some(10), Some(12))
        };
        let t0 = Instant::now();
        assert_eq!(
            admitted(&l, &lim, "192.0.2.1", t0, 100),
            10,
            "the per-second burst"
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            admitted(&l, &lim, "192.0.2.1", t1, 100),
            2,
            "the minute's 12"
        );
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(admitted(&l, &lim, "192.0.2.1", t2, 100), 1, "one per 5 s");
    }

    #[test]
    fn a_changed_limit_starts_a_new_budget() {
        let l = Limiters::default();
        let t0 = Instant::now();
        assert_eq!(admitted(&l, &limit(Some(1), None), "192.0.2.1", t0, 10), 5);
        assert_eq!(admitted(&l, &limit(Some(2), None), "192.0.2.1", t0, 20), 10);
    }

    #[test]
    fn a_full_table_drops_idle_clients_then_refuses_new_ones() {
        let l = Limiters::default();
        let lim = limit(Some(1), None);
        let t0 = Instant::now();
        {
            let mut e = l.entries.lock().unwrap();
            for i in 0..MAX_CLIENTS {
                let ip = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
                e.insert((lim.zone.clone(), ip), Entry::new(&lim, t0));
            }
        }
        let new = "203.0.113.7";
        assert_eq!(admitted(&l, &lim, new, t0 + Duration::from_secs(1), 1), 0);
        // Once the others have been idle long enough, they make room.
        assert_eq!(admitted(&l, &lim, new, t0 + IDLE, 1), 1);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn connection_permits_count_down_when_dropped() {
        let counts = ConnCounts::default();
        let limit = crate::model::ConnLimit {
            zone: ObjectRef::new("d", "i"),
            max: 2,
            exempt: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counts.enter(&limit, a).unwrap();
        let second = counts.enter(&limit, a).unwrap();
        assert!(counts.enter(&limit, a).is_none(), "a third is refused");
        assert!(counts.enter(&limit, "192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        let third = counts.enter(&limit, a).unwrap();
        drop((second, third));
        assert!(
            counts.counts.lock().unwrap().is_empty(),
            "no entry left behind"
        );
        // Exempt clients are not counted.
        for _ in 0..5 {
            assert!(matches!(
                counts.enter(&limit, "10.1.2.3".parse().unwrap()),
                Some(None)
            ));
        }
    }
}
