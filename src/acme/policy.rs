//! When to order: renewal time, failure backoff and the per-certificate state the actor keeps.
//! Pure: every function takes `now` (Unix seconds) and, where there is jitter, the random
//! number.
//!
//! - A certificate is renewed at two thirds of its lifetime (30 days before expiry for a
//!   90-day certificate), and at once when the hosts of its tls entry change.
//! - A failed order is retried after [`failure_delay`]: 5 minutes doubling to 4 hours (half of
//!   each delay random), and never sooner than [`VALIDATION_PAUSE`] after the
//!   [`VALIDATION_FAILURES_BEFORE_PAUSE`]th failed validation within an hour (Let's Encrypt
//!   allows 5 failed validations per account and name per hour), nor sooner than an hour after
//!   a `rateLimited` answer. An error retrying cannot fix waits the longest delay. No failure
//!   is retried sooner than half of [`FAILURE_BACKOFF_MIN`] (the jitter), so there is never a
//!   tight loop; only a change of the wanted hosts (a user's edit) retries at once.

use std::time::Duration;

use super::client::Problem;
use super::order::{Issued, OrderError};
use crate::pace::Backoff;

/// First retry delay after a failed order.
pub const FAILURE_BACKOFF_MIN: Duration = Duration::from_secs(5 * 60);
/// Longest retry delay.
pub const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(4 * 3600);
/// Failed validations (of one certificate's names) within [`VALIDATION_WINDOW`] after which
/// the next attempt waits at least [`VALIDATION_PAUSE`].
pub const VALIDATION_FAILURES_BEFORE_PAUSE: usize = 3;
/// The window failed validations are counted in.
pub const VALIDATION_WINDOW: Duration = Duration::from_secs(3600);
/// The pause after too many failed validations, or after `rateLimited`.
pub const VALIDATION_PAUSE: Duration = Duration::from_secs(3600);

/// When to renew a certificate valid from `not_before` to `not_after` (Unix seconds): two
/// thirds into its lifetime.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    not_before.saturating_add(lifetime / 3 * 2 + (lifetime % 3) * 2 / 3)
}

/// The delay before retrying after `consecutive_failures` (1 for the first failure) failed
/// orders, `random` in `[0, 1)`: [`FAILURE_BACKOFF_MIN`] doubling to [`FAILURE_BACKOFF_MAX`],
/// with [`Backoff`]'s jitter.
pub fn failure_delay(consecutive_failures: u32, random: f64) -> Duration {
    RetryPolicy::default().delay(consecutive_failures, random)
}

/// How failed orders are retried. The defaults suit Let's Encrypt (see the module
/// documentation); tests and private CAs may shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First retry delay.
    pub min: Duration,
    /// Longest retry delay (also the wait after an error retrying cannot fix).
    pub max: Duration,
    /// The least wait after too many failed validations or a `rateLimited` answer.
    pub validation_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min: FAILURE_BACKOFF_MIN,
            max: FAILURE_BACKOFF_MAX,
            validation_pause: VALIDATION_PAUSE,
        }
    }
}

impl RetryPolicy {
    /// The delay before retrying after `consecutive_failures` (1 for the first) failed orders,
    /// `random` in `[0, 1)`: `min` doubling to `max`, with [`Backoff`]'s jitter, at least half
    /// of `min`.
    pub fn delay(&self, consecutive_failures: u32, random: f64) -> Duration {
        let backoff = Backoff::new(self.min, self.max);
        let n = consecutive_failures.clamp(1, 32) - 1;
        let full = backoff.delay_for(n);
        full.mul_f64(1.0 - backoff.jitter * random.clamp(0.0, 1.0))
            .max(self.min / 2)
    }
}

/// What a certificate's Secret holds now (see
/// [`secrets::existing_certificate`](super::secrets::existing_certificate)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingCert {
    /// The names it was issued for.
    pub hosts: Vec<String>,
    /// Leaf `notBefore`, Unix seconds.
    pub not_before: i64,
    /// Leaf `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// The state of one managed certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Not issued yet, or its hosts changed: order now.
    Pending,
    /// Issued; renew at `renew_at`.
    Valid {
        /// Leaf `notAfter`, Unix seconds.
        not_after: i64,
        /// When to renew, Unix seconds.
        renew_at: i64,
    },
    /// The last order failed; retry at `retry_at`.
    Failed {
        /// The error, as shown in diagnostics and `/api/certificates`.
        error: String,
        /// When to try again, Unix seconds.
        retry_at: i64,
        /// Failed orders in a row.
        consecutive_failures: u32,
    },
}

impl CertState {
    /// `pending`, `valid` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertState::Pending => "pending",
            CertState::Valid { .. } => "valid",
            CertState::Failed { .. } => "failed",
        }
    }
}

/// One certificate the actor manages: its names, state and recent failed validations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedCert {
    /// The names it should cover.
    pub hosts: Vec<String>,
    /// The state.
    pub state: CertState,
    /// `notAfter` of the certificate being served, if any (kept while a renewal fails).
    pub not_after: Option<i64>,
    /// When validations of its names failed (Unix seconds), within the last
    /// [`VALIDATION_WINDOW`].
    pub validation_failures: Vec<i64>,
}

impl ManagedCert {
    /// The state of a certificate wanted for `hosts` whose Secret holds `existing`: valid when
    /// it covers exactly these hosts (in any order), else pending.
    pub fn new(hosts: &[String], existing: Option<&ExistingCert>) -> ManagedCert {
        let mut cert = ManagedCert {
            hosts: hosts.to_vec(),
            state: CertState::Pending,
            not_after: existing.map(|e| e.not_after),
            validation_failures: Vec::new(),
        };
        if let Some(e) = existing
            && same_hosts(&e.hosts, hosts)
        {
            cert.state = CertState::Valid {
                not_after: e.not_after,
                renew_at: renew_at(e.not_before, e.not_after),
            };
        }
        cert
    }

    /// The wanted hosts changed (or not): a change makes the certificate due at once (a
    /// failure's wait still applies to names that failed validation: see
    /// [`ManagedCert::next_order_at`]).
    pub fn set_hosts(&mut self, hosts: &[String]) {
        if !same_hosts(&self.hosts, hosts) {
            self.hosts = hosts.to_vec();
            if !matches!(self.state, CertState::Failed { .. }) {
                self.state = CertState::Pending;
            } else if let CertState::Failed { retry_at, .. } = &mut self.state {
                // The user changed something: retry at once unless validations must pause.
                *retry_at = self
                    .validation_failures
                    .iter()
                    .copied()
                    .max()
                    .filter(|_| self.validation_failures.len() >= VALIDATION_FAILURES_BEFORE_PAUSE)
                    .map_or(0, |last| last + secs(VALIDATION_PAUSE));
            }
        }
    }

    /// When the next order should start (Unix seconds; at or before `now` means now).
    pub fn next_order_at(&self) -> i64 {
        match &self.state {
            CertState::Pending => 0,
            CertState::Valid { renew_at, .. } => *renew_at,
            CertState::Failed { retry_at, .. } => *retry_at,
        }
    }

    /// Whether an order is due at `now`.
    pub fn order_due(&self, now: i64) -> bool {
        self.next_order_at() <= now
    }

    /// What the certificate's Secret holds now (`existing`), as the watch shows it. A
    /// certificate newer than the one this state knows that covers exactly the wanted hosts
    /// was issued elsewhere (by another leader, before a restart of this one): it is adopted,
    /// so this replica neither orders it again when it leads nor reports it as pending. The
    /// certificate this state already knows changes nothing (a failing renewal keeps its
    /// backoff).
    pub fn observe(&mut self, existing: Option<&ExistingCert>) {
        let Some(e) = existing else {
            return;
        };
        let newer = self.not_after.is_none_or(|known| e.not_after > known);
        if newer && same_hosts(&e.hosts, &self.hosts) {
            self.not_after = Some(e.not_after);
            self.validation_failures.clear();
            self.state = CertState::Valid {
                not_after: e.not_after,
                renew_at: renew_at(e.not_before, e.not_after),
            };
        }
    }

    /// Records an issued certificate.
    pub fn on_issued(&mut self, issued: &Issued) {
        self.not_after = Some(issued.not_after);
        self.validation_failures.clear();
        self.state = CertState::Valid {
            not_after: issued.not_after,
            renew_at: renew_at(issued.not_before, issued.not_after),
        };
    }

    /// Records a failed order at `now` and schedules the retry (`random` in `[0, 1)`) with the
    /// default [`RetryPolicy`].
    pub fn on_failure(&mut self, error: &OrderError, now: i64, random: f64) {
        self.on_failure_with(&RetryPolicy::default(), error, now, random);
    }

    /// Records a failed order at `now` and schedules the retry by `policy`.
    pub fn on_failure_with(
        &mut self,
        policy: &RetryPolicy,
        error: &OrderError,
        now: i64,
        random: f64,
    ) {
        let window = secs(VALIDATION_WINDOW);
        self.validation_failures.retain(|t| now - t < window);
        for _ in error.failed_validations() {
            self.validation_failures.push(now);
        }
        let consecutive_failures = match &self.state {
            CertState::Failed {
                consecutive_failures,
                ..
            } => consecutive_failures.saturating_add(1),
            _ => 1,
        };
        let mut delay = if error.is_retryable() {
            policy.delay(consecutive_failures, random)
        } else {
            policy.max
        };
        if self.validation_failures.len() >= VALIDATION_FAILURES_BEFORE_PAUSE
            || error.problem().is_some_and(is_rate_limited)
        {
            delay = delay.max(policy.validation_pause);
        }
        self.state = CertState::Failed {
            error: error.to_string(),
            retry_at: now + secs(delay),
            consecutive_failures,
        };
    }
}

fn is_rate_limited(p: &Problem) -> bool {
    p.short_type() == "rateLimited"
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Same names, ignoring order, case and duplicates.
pub fn same_hosts(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|h| h.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::ChallengeKind;
    use crate::acme::client::{AcmeError, ERROR_PREFIX};

    const DAY: i64 = 86_400;
    const MIN: i64 = 60;

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(ToString::to_string).collect()
    }

    fn existing(h: &[&str], not_before: i64, not_after: i64) -> ExistingCert {
        ExistingCert {
            hosts: hosts(h),
            not_before,
            not_after,
        }
    }

    #[test]
    fn a_newer_certificate_issued_elsewhere_is_adopted() {
        let now = 1_000 * DAY;
        // Pending here (a follower that never ordered); the leader's certificate appears.
        let mut m = ManagedCert::new(&hosts(&["a.test"]), None);
        m.observe(Some(&existing(&["a.test"], now, now + 90 * DAY)));
        assert_eq!(
            m.state,
            CertState::Valid {
                not_after: now + 90 * DAY,
                renew_at: now + 60 * DAY
            }
        );
        assert!(!m.order_due(now + DAY));

        // Failed here, then another leader renewed: adopted, the failure forgotten.
        let mut m = ManagedCert::new(
            &hosts(&["a.test"]),
            Some(&existing(&["a.test"], 0, 90 * DAY)),
        );
        m.on_failure(&unreachable(), 61 * DAY, 0.0);
        assert_eq!(m.state.as_str(), "failed");
        m.observe(Some(&existing(&["a.test"], 61 * DAY, 151 * DAY)));
        assert_eq!(m.state.as_str(), "valid");
        assert_eq!(m.not_after, Some(151 * DAY));
    }

    #[test]
    fn the_known_certificate_or_other_hosts_change_nothing() {
        // A renewal failing: the old certificate seen again keeps the backoff.
        let old = existing(&["a.test"], 0, 90 * DAY);
        let mut m = ManagedCert::new(&hosts(&["a.test"]), Some(&old));
        m.on_failure(&unreachable(), 61 * DAY, 0.0);
        let failed = m.clone();
        m.observe(Some(&old));
        assert_eq!(m, failed);
        m.observe(None);
        assert_eq!(m, failed);
        // A newer certificate for other names (the tls entry changed since): still pending.
        let mut m = ManagedCert::new(&hosts(&["a.test", "b.test"]), Some(&old));
        m.observe(Some(&existing(&["a.test"], DAY, 91 * DAY)));
        assert_eq!(m.state, CertState::Pending);
    }

    fn validation_error(host: &str) -> OrderError {
        OrderError::Validation {
            host: host.to_string(),
            challenge: ChallengeKind::Http01,
            problem: Problem {
                typ: format!("{ERROR_PREFIX}unauthorized"),
                detail: "wrong answer".into(),
                ..Problem::default()
            },
        }
    }

    fn unreachable() -> OrderError {
        OrderError::Acme {
            hosts: hosts(&["a.test"]),
            source: AcmeError::Unreachable {
                what: "directory",
                detail: "connection refused".into(),
            },
        }
    }

    #[test]
    fn ninety_day_certificates_renew_thirty_days_before_expiry() {
        let nb = 1_700_000_000;
        assert_eq!(renew_at(nb, nb + 90 * DAY), nb + 90 * DAY - 30 * DAY);
        // Pebble-style short certificates too: a 1-hour certificate renews after 40 minutes.
        assert_eq!(renew_at(nb, nb + 3600), nb + 2400);
        // Nonsense validity does not go backwards.
        assert_eq!(renew_at(nb, nb - 5), nb);
    }

    #[test]
    fn existing_certificates_are_valid_only_for_the_same_hosts() {
        let nb = 1_000_000;
        let existing = ExistingCert {
            hosts: hosts(&["b.test", "a.test"]),
            not_before: nb,
            not_after: nb + 90 * DAY,
        };
        let c = ManagedCert::new(&hosts(&["a.test", "B.test"]), Some(&existing));
        assert_eq!(
            c.state,
            CertState::Valid {
                not_after: nb + 90 * DAY,
                renew_at: nb + 60 * DAY
            }
        );
        assert!(!c.order_due(nb + 59 * DAY));
        assert!(c.order_due(nb + 60 * DAY));

        let changed = ManagedCert::new(&hosts(&["a.test", "c.test"]), Some(&existing));
        assert_eq!(changed.state, CertState::Pending);
        assert!(changed.order_due(0));
        assert_eq!(
            changed.not_after,
            Some(nb + 90 * DAY),
            "still served meanwhile"
        );

        let none = ManagedCert::new(&hosts(&["a.test"]), None);
        assert_eq!(none.state, CertState::Pending);
    }

    #[test]
    fn a_host_change_makes_a_valid_certificate_due() {
        let existing = ExistingCert {
            hosts: hosts(&["a.test"]),
            not_before: 0,
            not_after: 90 * DAY,
        };
        let mut c = ManagedCert::new(&hosts(&["a.test"]), Some(&existing));
        c.set_hosts(&hosts(&["A.test"]));
        assert!(!c.order_due(DAY), "same hosts, other case: nothing to do");
        c.set_hosts(&hosts(&["a.test", "www.a.test"]));
        assert!(c.order_due(DAY));
    }

    #[test]
    fn failures_back_off_from_minutes_to_hours() {
        let delays: Vec<u64> = (1..=8)
            .map(|n| failure_delay(n, 0.0).as_secs() / 60)
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 240, 240]);
        assert_eq!(failure_delay(1000, 0.0), FAILURE_BACKOFF_MAX);
        // Jitter shortens, never below the floor.
        assert!(failure_delay(1, 0.999) >= FAILURE_BACKOFF_MIN / 2);

        let now = 10_000_000;
        let mut c = ManagedCert::new(&hosts(&["a.test"]), None);
        c.on_failure(&unreachable(), now, 0.0);
        assert_eq!(c.next_order_at(), now + 5 * MIN);
        c.on_failure(&unreachable(), now + 5 * MIN, 0.0);
        assert_eq!(c.next_order_at(), now + 5 * MIN + 10 * MIN);
        let CertState::Failed {
            consecutive_failures,
            error,
            ..
        } = &c.state
        else {
            panic!("failed state expected");
        };
        assert_eq!(*consecutive_failures, 2);
        assert!(error.contains("connection refused"), "{error}");
    }

    #[test]
    fn three_failed_validations_pause_for_an_hour() {
        let now = 50_000_000;
        let mut c = ManagedCert::new(&hosts(&["a.test"]), None);
        c.on_failure(&validation_error("a.test"), now, 0.0);
        assert_eq!(c.next_order_at(), now + 5 * MIN);
        c.on_failure(&validation_error("a.test"), now + 5 * MIN, 0.0);
        assert_eq!(c.next_order_at(), now + 15 * MIN);
        c.on_failure(&validation_error("a.test"), now + 15 * MIN, 0.0);
        assert_eq!(
            c.next_order_at(),
            now + 15 * MIN + 60 * MIN,
            "third: an hour"
        );
        // A host change does not skip the pause.
        c.set_hosts(&hosts(&["a.test", "b.test"]));
        assert_eq!(c.next_order_at(), now + 15 * MIN + 60 * MIN);
        // Failures older than an hour no longer count.
        let later = now + 3 * 3600;
        c.validation_failures = vec![now];
        c.state = CertState::Pending;
        c.on_failure(&validation_error("a.test"), later, 0.0);
        assert_eq!(c.validation_failures, vec![later]);
        assert_eq!(c.next_order_at(), later + 5 * MIN);
    }

    #[test]
    fn a_host_change_retries_a_failed_certificate_at_once() {
        let now = 1_000;
        let mut c = ManagedCert::new(&hosts(&["a.test"]), None);
        c.on_failure(&unreachable(), now, 0.0);
        assert!(!c.order_due(now + 1));
        c.set_hosts(&hosts(&["b.test"]));
        assert!(c.order_due(now + 1));
    }

    #[test]
    fn rate_limits_and_hopeless_errors_wait_long() {
        let now = 0;
        let mut c = ManagedCert::new(&hosts(&["a.test"]), None);
        let limited = OrderError::Acme {
            hosts: hosts(&["a.test"]),
            source: AcmeError::Problem {
                what: "newOrder",
                problem: Problem {
                    typ: format!("{ERROR_PREFIX}rateLimited"),
                    status: Some(429),
                    ..Problem::default()
                },
            },
        };
        c.on_failure(&limited, now, 0.0);
        assert_eq!(c.next_order_at(), 3600);
        let mut d = ManagedCert::new(&hosts(&["a.test"]), None);
        d.on_failure(&OrderError::BadRequest("no names".into()), now, 0.0);
        assert_eq!(d.next_order_at(), 4 * 3600);
    }

    #[test]
    fn success_clears_failures() {
        let mut c = ManagedCert::new(&hosts(&["a.test"]), None);
        c.on_failure(&validation_error("a.test"), 0, 0.0);
        c.on_issued(&Issued {
            hosts: hosts(&["a.test"]),
            chain_pem: String::new(),
            key_pem: String::new(),
            not_before: 100,
            not_after: 100 + 90 * DAY,
        });
        assert!(c.validation_failures.is_empty());
        assert_eq!(c.next_order_at(), 100 + 60 * DAY);
        assert_eq!(c.not_after, Some(100 + 90 * DAY));
    }
}
