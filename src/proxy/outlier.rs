//! Passive outlier detection and the retry budget: pure decisions over counters and `now`,
//! tested without sockets or clocks. The endpoint state (`balance`) and the forwarding code
//! hold them and supply the time.
//!
//! An endpoint that fails `consecutive` times in a row (a 5xx answer, a refused or reset
//! connection, a timeout) is ejected: the balancer skips it for `base` times the number of
//! times it has been ejected (capped at `max`), as Envoy's outlier detection does. The count
//! of ejections is forgotten once the endpoint has gone `max` without one. Ejection never
//! takes a backend's last endpoints: the balancer ignores the marks when more than half of a
//! backend's endpoints carry one.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// When an endpoint is ejected, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Failures in a row that eject (0: never).
    pub consecutive: u32,
    /// The first ejection's length; the n-th is n times it.
    pub base: Duration,
    /// The longest ejection.
    pub max: Duration,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        OutlierPolicy {
            consecutive: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
        }
    }
}

/// One endpoint's failure history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutlierState {
    /// Failures since the last success or ejection.
    pub consecutive: u32,
    /// Ejections so far (forgotten after `max` without one).
    pub ejections: u32,
    /// When the last ejection ended (ms of the caller's clock).
    pub last_end_ms: u64,
}

impl OutlierState {
    /// Records a failure at `now_ms`: the time (ms) until which the endpoint is ejected, when
    /// this failure ejects it.
    pub fn failure(&mut self, p: &OutlierPolicy, now_ms: u64) -> Option<u64> {
        if p.consecutive == 0 {
            return None;
        }
        let max_ms = u64::try_from(p.max.as_millis()).unwrap_or(u64::MAX);
        if self.ejections > 0 && now_ms > self.last_end_ms.saturating_add(max_ms) {
            self.ejections = 0;
        }
        self.consecutive += 1;
        if self.consecutive < p.consecutive {
            return None;
        }
        self.consecutive = 0;
        self.ejections = self.ejections.saturating_add(1);
        let base_ms = u64::try_from(p.base.as_millis()).unwrap_or(u64::MAX);
        let length = base_ms
            .saturating_mul(u64::from(self.ejections))
            .min(max_ms);
        self.last_end_ms = now_ms.saturating_add(length);
        Some(self.last_end_ms)
    }

    /// Records a success: the failures in a row start again from zero.
    pub fn success(&mut self) {
        self.consecutive = 0;
    }
}

/// Retries of one backend are kept to about a fifth of its requests: each request adds a
/// fifth of a retry to the budget (up to [`RetryBudget::CAP`] retries), each retry takes one.
/// A quiet backend still has a few retries banked; a failing one cannot multiply its load.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry.
    milli: AtomicI64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            milli: AtomicI64::new(Self::CAP * 1000),
        }
    }
}

impl RetryBudget {
    /// Retries banked at most.
    pub const CAP: i64 = 10;
    /// Thousandths of a retry each request adds (a fifth).
    pub const PER_REQUEST: i64 = 200;

    /// A request was made.
    pub fn deposit(&self) {
        // At the cap (the usual case) this is a read only: no write to a shared line.
        if self.milli.load(Ordering::Relaxed) < Self::CAP * 1000 {
            self.milli.fetch_add(Self::PER_REQUEST, Ordering::Relaxed);
        }
    }

    /// Takes one retry, if the budget has one.
    pub fn withdraw(&self) -> bool {
        self.milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                (m >= 1000).then_some(m - 1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy {
            consecutive: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(25),
        }
    }

    #[test]
    fn consecutive_failures_eject_for_a_growing_time() {
        let p = policy();
        let mut s = OutlierState::default();
        assert_eq!(s.failure(&p, 0), None);
        assert_eq!(s.failure(&p, 1), None);
        assert_eq!(s.failure(&p, 2), Some(10_002), "third in a row: 10 s");
        // Back, failing again: 20 s, then capped at 25 s.
        for t in [20_000, 20_001] {
            assert_eq!(s.failure(&p, t), None);
        }
        assert_eq!(s.failure(&p, 20_002), Some(40_002));
        for t in [41_000, 41_001] {
            assert_eq!(s.failure(&p, t), None);
        }
        assert_eq!(s.failure(&p, 41_002), Some(66_002), "capped");
    }

    #[test]
    fn a_success_resets_the_run_and_ejections_are_forgotten_after_max() {
        let p = policy();
        let mut s = OutlierState::default();
        s.failure(&p, 0);
        s.failure(&p, 0);
        s.success();
        assert_eq!(s.failure(&p, 0), None, "the run started again");
        s.failure(&p, 0);
        assert_eq!(s.failure(&p, 0), Some(10_000));
        // Long after (more than `max` past the end of the last ejection): as the first time.
        let later = 10_000 + 25_001;
        s.failure(&p, later);
        s.failure(&p, later);
        assert_eq!(s.failure(&p, later), Some(later + 10_000));
    }

    #[test]
    fn zero_consecutive_never_ejects() {
        let p = OutlierPolicy {
            consecutive: 0,
            ..policy()
        };
        let mut s = OutlierState::default();
        for t in 0..100 {
            assert_eq!(s.failure(&p, t), None);
        }
    }

    #[test]
    fn retries_stay_within_a_fifth_of_requests() {
        let b = RetryBudget::default();
        // The banked retries first.
        let banked = (0..100).take_while(|_| b.withdraw()).count();
        assert_eq!(banked, 10);
        // Then one retry per five requests.
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 200);
        // Deposits stop at the cap.
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!((0..100).take_while(|_| b.withdraw()).count(), 10);
    }
}
