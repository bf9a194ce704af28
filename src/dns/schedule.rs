//! When the next DNS sync runs: a pure function of what happened and `now`.
//!
//! The `dns` actor syncs on three occasions:
//! - **after a change** of the desired records, once the changes have settled: `debounce`
//!   after the last change (so a burst of edits is one sync), but never later than
//!   `max_wait` after the first change of a burst (so a stream of edits cannot starve the
//!   sync);
//! - **periodically**, `interval` after the last pass, to repair drift (records changed
//!   behind sluice's back);
//! - **on a retry**: after a pass that failed (the zones could not be read, or the writes
//!   stopped early because the provider kept throttling or failing) with [`Backoff`], and at
//!   the earliest time a rejected group may be retried alone (the engine's quarantine).
//!
//! [`Schedule::request`] asks for a pass at once (start, or this replica became the leader).

use std::time::{Duration, Instant};

use crate::pace::Backoff;

/// How one pass ended, as far as scheduling is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// The pass could not read the zones, or stopped applying early: retry with backoff.
    pub failed: bool,
    /// The time until the earliest rejected group may be retried alone.
    pub retry_group_in: Option<Duration>,
}

/// The sync schedule (see the module documentation).
#[derive(Clone, Debug)]
pub struct Schedule {
    debounce: Duration,
    max_wait: Duration,
    interval: Duration,
    backoff: Backoff,
    /// First and last change of the current burst.
    burst: Option<(Instant, Instant)>,
    asap: Option<Instant>,
    resync_at: Option<Instant>,
    retry_at: Option<Instant>,
    group_at: Option<Instant>,
}

impl Schedule {
    /// A schedule with a first pass due at `now`. `max_wait` is raised to at least
    /// `debounce`.
    pub fn new(
        debounce: Duration,
        max_wait: Duration,
        interval: Duration,
        backoff: Backoff,
        now: Instant,
    ) -> Schedule {
        let mut backoff = backoff;
        backoff.reset();
        Schedule {
            debounce,
            max_wait: max_wait.max(debounce),
            interval,
            backoff,
            burst: None,
            asap: Some(now),
            resync_at: None,
            retry_at: None,
            group_at: None,
        }
    }

    /// The desired records changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.burst = Some(match self.burst {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// A pass is wanted at once (`now`).
    pub fn request(&mut self, now: Instant) {
        self.asap = Some(self.asap.map_or(now, |a| a.min(now)));
    }

    /// When the next pass is due (`None`: nothing scheduled).
    pub fn next_at(&self) -> Option<Instant> {
        let burst = self
            .burst
            .map(|(first, last)| (last + self.debounce).min(first + self.max_wait));
        [
            self.asap,
            burst,
            self.resync_at,
            self.retry_at,
            self.group_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True when a pass is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_at().is_some_and(|at| at <= now)
    }

    /// The time left until the next pass (zero when due; `None`: nothing scheduled).
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.next_at().map(|at| at.saturating_duration_since(now))
    }

    /// A pass started at `started` (every change seen before it is in it) and ended at `now`
    /// with `outcome`; `random` in [0, 1) draws the jitter of a failure's backoff.
    pub fn passed(&mut self, started: Instant, now: Instant, outcome: PassOutcome, random: f64) {
        // Changes seen after the pass started are not in it: keep them.
        if self.burst.is_some_and(|(_, last)| last <= started) {
            self.burst = None;
        }
        if self.asap.is_some_and(|a| a <= started) {
            self.asap = None;
        }
        self.resync_at = Some(now + self.interval);
        self.retry_at = if outcome.failed {
            Some(now + self.backoff.next_with(random))
        } else {
            self.backoff.reset();
            None
        };
        self.group_at = outcome.retry_group_in.map(|d| now + d);
    }

    /// Consecutive failed passes.
    pub fn failures(&self) -> u32 {
        self.backoff.attempts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn schedule(now: Instant) -> Schedule {
        Schedule::new(
            1000 * MS,
            5000 * MS,
            Duration::from_secs(60),
            Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
            now,
        )
    }

    fn ok() -> PassOutcome {
        PassOutcome::default()
    }

    #[test]
    fn the_first_pass_is_due_at_once() {
        let t = Instant::now();
        let s = schedule(t);
        assert!(s.due(t));
        assert_eq!(s.wait(t), Some(Duration::ZERO));
    }

    #[test]
    fn a_change_runs_one_debounce_after_the_last_change() {
        let t = Instant::now();
        let mut s = schedule(t);
        s.passed(t, t, ok(), 0.5);
        s.changed(t + 100 * MS);
        assert_eq!(s.next_at(), Some(t + 1100 * MS));
        s.changed(t + 600 * MS);
        assert_eq!(s.next_at(), Some(t + 1600 * MS));
        assert!(!s.due(t + 1599 * MS));
        assert!(s.due(t + 1600 * MS));
        s.passed(t + 1600 * MS, t + 1700 * MS, ok(), 0.5);
        assert_eq!(
            s.next_at(),
            Some(t + 1700 * MS + Duration::from_secs(60)),
            "then only the periodic resync"
        );
    }

    #[test]
    fn a_stream_of_changes_cannot_starve_the_sync() {
        let t = Instant::now();
        let mut s = schedule(t);
        s.passed(t, t, ok(), 0.5);
        for i in 1..=100 {
            s.changed(t + i * 200 * MS);
        }
        assert_eq!(s.next_at(), Some(t + 200 * MS + 5000 * MS));
    }

    #[test]
    fn a_change_during_a_pass_is_not_forgotten() {
        let t = Instant::now();
        let mut s = schedule(t);
        s.passed(t, t, ok(), 0.5);
        s.changed(t + 100 * MS);
        let started = t + 1100 * MS;
        s.changed(started + 300 * MS);
        s.passed(started, started + 500 * MS, ok(), 0.5);
        assert_eq!(s.next_at(), Some(started + 1300 * MS));
    }

    #[test]
    fn the_periodic_resync_repairs_drift() {
        let t = Instant::now();
        let mut s = schedule(t);
        s.passed(t, t + 2 * MS, ok(), 0.5);
        assert!(!s.due(t + Duration::from_secs(59)));
        assert!(s.due(t + 2 * MS + Duration::from_secs(60)));
    }

    #[test]
    fn failures_back_off_and_a_success_resets() {
        let t = Instant::now();
        let mut s = schedule(t);
        let failed = PassOutcome {
            failed: true,
            retry_group_in: None,
        };
        let mut now = t;
        let mut waits = Vec::new();
        for _ in 0..8 {
            s.passed(now, now, failed, 0.0);
            let w = s.wait(now).unwrap();
            waits.push(w);
            now += w;
        }
        assert_eq!(waits[0], Duration::from_secs(5));
        assert_eq!(waits[1], Duration::from_secs(10));
        assert!(waits.windows(2).all(|p| p[1] >= p[0]), "{waits:?}");
        assert_eq!(
            *waits.last().unwrap(),
            Duration::from_secs(60),
            "never later than the periodic resync"
        );
        assert_eq!(s.failures(), 8);
        s.passed(now, now, ok(), 0.0);
        assert_eq!(s.failures(), 0);
        assert_eq!(s.wait(now), Some(Duration::from_secs(60)));
        s.passed(now, now, failed, 0.0);
        assert_eq!(
            s.wait(now),
            Some(Duration::from_secs(5)),
            "backoff restarted"
        );
    }

    #[test]
    fn the_next_pass_comes_when_a_rejected_group_may_be_retried() {
        let t = Instant::now();
        let mut s = schedule(t);
        s.passed(
            t,
            t,
            PassOutcome {
                failed: false,
                retry_group_in: Some(Duration::from_secs(10)),
            },
            0.5,
        );
        assert_eq!(s.next_at(), Some(t + Duration::from_secs(10)));
        s.passed(
            t + Duration::from_secs(10),
            t + Duration::from_secs(10),
            ok(),
            0.5,
        );
        assert_eq!(s.next_at(), Some(t + Duration::from_secs(70)));
    }

    #[test]
    fn a_request_runs_at_once() {
        let t = Instant::now();
        let mut s = schedule(t);
        s.passed(t, t, ok(), 0.5);
        s.changed(t + 10 * MS);
        s.request(t + 20 * MS);
        assert!(s.due(t + 20 * MS));
        s.passed(t + 20 * MS, t + 30 * MS, ok(), 0.5);
        assert_eq!(s.next_at(), Some(t + 30 * MS + Duration::from_secs(60)));
    }
}
