//! Pacing for everything that talks to the outside world: one exponential backoff with jitter
//! and one token bucket, used by every actor (Kubernetes writes, leader election, DNS, ACME,
//! supervisor restarts).
//!
//! Both are pure: they take the random number or the current time as a parameter, so they are
//! tested without sleeping. Convenience methods that read the clock or the random generator
//! exist beside the pure ones.

use std::time::{Duration, Instant};

/// Exponential backoff: `min`, then doubling up to `max`, each delay shortened by a random
/// fraction of at most `jitter` (so replicas retrying the same thing drift apart).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Upper bound.
    pub max: Duration,
    /// Fraction of each delay that is random, in `[0, 1]`: a delay `d` becomes a value in
    /// `[d * (1 - jitter), d]`. `0` is deterministic.
    pub jitter: f64,
    /// Delays handed out since the last reset.
    attempts: u32,
}

impl Backoff {
    /// `min` doubling to `max`, with half of each delay random.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            jitter: 0.5,
            attempts: 0,
        }
    }

    /// The same with another jitter fraction (clamped to `[0, 1]`).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The delay before the next attempt, given `random` in `[0, 1)`, and counts the attempt.
    pub fn next_with(&mut self, random: f64) -> Duration {
        let full = self.delay_for(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        full.mul_f64(1.0 - self.jitter * random.clamp(0.0, 1.0))
    }

    /// [`Backoff::next_with`] with a random number from `fastrand`.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }

    /// The delay before attempt number `attempt` (0-based) without jitter: `min * 2^attempt`,
    /// at most `max`.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        self.min
            .saturating_mul(1u32 << attempt.min(31))
            .min(self.max)
    }

    /// The delay before the next attempt without jitter and without counting it.
    pub fn peek(&self) -> Duration {
        self.delay_for(self.attempts)
    }

    /// Back to `min` (after a success).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Delays handed out since the last reset (consecutive failures).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. `rate` is per second and at least a tiny positive number;
    /// `burst` is at least 1.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(1e-9),
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let added = now.duration_since(self.at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + added).min(self.burst);
            self.at = now;
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(1.0, now)
    }

    /// Takes `n` tokens if there are that many.
    pub fn try_take_n(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Time from `now` until one token is available (zero if one is).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.rate)
    }

    /// Empties the bucket at `now` (a remote said "slow down": spend the saved-up burst).
    pub fn drain(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = 0.0;
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(100 * MS, 1000 * MS).with_jitter(0.0);
        let got: Vec<u128> = (0..6).map(|_| b.next_with(0.7).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.peek(), 100 * MS);
        assert_eq!(b.next_with(0.0), 100 * MS);
    }

    #[test]
    fn jitter_shortens_by_at_most_its_fraction() {
        let mut b = Backoff::new(1000 * MS, 1000 * MS);
        assert_eq!(b.next_with(0.0), 1000 * MS);
        assert_eq!(b.next_with(0.999_999).as_millis(), 500);
        let mut c = Backoff::new(1000 * MS, 1000 * MS).with_jitter(3.0);
        assert_eq!(c.jitter, 1.0);
        assert!(c.next_with(0.5) == 500 * MS);
    }

    #[test]
    fn backoff_never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(3600));
        for _ in 0..200 {
            assert!(b.next_with(0.0) <= Duration::from_secs(3600));
        }
        assert_eq!(b.peek(), Duration::from_secs(3600));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, t0);
        let sent = (0..100).filter(|_| b.try_take(t0)).count();
        assert_eq!(sent, 20);
        assert_eq!(b.wait(t0), 100 * MS);
        assert!(!b.try_take(t0 + 50 * MS));
        assert!(b.try_take(t0 + 100 * MS));
        // One second later: ten more, not more.
        let t1 = t0 + Duration::from_millis(1100);
        assert_eq!((0..100).filter(|_| b.try_take(t1)).count(), 10);
    }

    #[test]
    fn bucket_refills_to_the_burst_only() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5.0, 3.0, t0);
        assert!(b.try_take_n(3.0, t0));
        assert!((b.available(t0 + Duration::from_secs(60)) - 3.0).abs() < 1e-9);
        b.drain(t0 + Duration::from_secs(60));
        assert!(!b.try_take(t0 + Duration::from_secs(60)));
        assert_eq!(b.wait(t0 + Duration::from_secs(60)), 200 * MS);
    }

    #[test]
    fn bucket_ignores_time_going_backwards() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1.0, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }
}
