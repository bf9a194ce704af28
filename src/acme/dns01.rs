//! DNS-01 through a DNS provider: a [`ChallengeSolver`] that publishes each answer as a value
//! of the TXT record `_acme-challenge.<name>` in the most specific hosted zone that contains
//! it, waits until the change is in sync, and removes the value afterwards.
//!
//! One TXT name can carry several answers at once: `example.com` and `*.example.com` are both
//! validated at `_acme-challenge.example.com`. So the solver adds and removes *values*: it
//! reads the record set, writes it back with the value added (or removed: the record set is
//! deleted with exactly its current values once the last value goes), and never replaces
//! values that are not its own. Its own read-modify-write steps are serialized; the provider
//! applies each change atomically.
//!
//! Private zones are never used: the CA resolves names through public DNS.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::answers::ChallengeAnswer;
use super::order::{BoxFuture, ChallengeSolver, SolverError};
use crate::dns::name::{in_zone, normalize};
use crate::dns::provider::{ChangeStatus, DnsProvider};
use crate::dns::record::{Action, Change, RecordSet, RecordType, Zone};
use crate::dns::wait_insync;
use crate::pace::Backoff;

/// The TTL of a challenge record the solver creates (an existing record keeps its TTL).
pub const CHALLENGE_TTL: u32 = 60;

/// How the solver waits for changes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dns01Options {
    /// TTL of a created record set.
    pub ttl: u32,
    /// The longest wait for a change to be in sync (Route53: usually within 60 s).
    pub insync_timeout: Duration,
    /// Polling of the change status.
    pub poll: Backoff,
}

impl Default for Dns01Options {
    fn default() -> Self {
        Dns01Options {
            ttl: CHALLENGE_TTL,
            insync_timeout: Duration::from_secs(120),
            poll: Backoff::new(Duration::from_secs(2), Duration::from_secs(10)),
        }
    }
}

/// DNS-01 answers as TXT values through `provider` (see the module documentation).
pub struct Dns01Solver {
    provider: Arc<dyn DnsProvider>,
    options: Dns01Options,
    /// Serializes read-modify-write of record sets.
    writes: Mutex<()>,
}

impl Dns01Solver {
    /// A solver writing through `provider`.
    pub fn new(provider: Arc<dyn DnsProvider>, options: Dns01Options) -> Dns01Solver {
        Dns01Solver {
            provider,
            options,
            writes: Mutex::new(()),
        }
    }

    /// The zone `record` is written in.
    async fn zone_for(&self, record: &str) -> Result<Zone, SolverError> {
        let zones = self
            .provider
            .list_zones()
            .await
            .map_err(|e| SolverError(format!("listing the hosted zones for {record}: {e}")))?;
        most_specific_zone(&zones, record).cloned().ok_or_else(|| {
            SolverError(format!(
                "no public hosted zone of the {} provider contains {record}",
                self.provider.name()
            ))
        })
    }

    /// The TXT record set `record` of `zone`, if any.
    async fn current(&self, zone: &Zone, record: &str) -> Result<Option<RecordSet>, SolverError> {
        let records = self
            .provider
            .list_records(zone)
            .await
            .map_err(|e| SolverError(format!("listing the records of zone {zone}: {e}")))?;
        Ok(records
            .into_iter()
            .find(|r| r.name == record && r.rtype == RecordType::Txt && r.set_identifier.is_none()))
    }

    /// Applies `changes` to `zone` and waits until they are in sync.
    async fn apply(&self, zone: &Zone, changes: &[Change]) -> Result<(), SolverError> {
        let what = changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let info = self
            .provider
            .apply(zone, changes)
            .await
            .map_err(|e| SolverError(format!("{what} in zone {zone}: {e}")))?;
        if info.status == ChangeStatus::InSync {
            return Ok(());
        }
        wait_insync(
            &*self.provider,
            &info.id,
            self.options.insync_timeout,
            self.options.poll,
        )
        .await
        .map_err(|e| SolverError(format!("{what} in zone {zone}: {e}")))
    }
}

/// The zone that contains `name` with the longest name (the most specific), among public
/// zones.
pub fn most_specific_zone<'z>(zones: &'z [Zone], name: &str) -> Option<&'z Zone> {
    zones
        .iter()
        .filter(|z| !z.private && in_zone(name, &z.name))
        .max_by_key(|z| z.name.len())
}

/// A TXT value as providers hold it: quoted.
pub fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

/// The change that adds `value` to `current` (the record set `record`, if any); `None` when
/// it is there already.
pub fn add_value(
    record: &str,
    current: Option<&RecordSet>,
    value: &str,
    ttl: u32,
) -> Option<Change> {
    let value = quoted(value);
    match current {
        Some(rs) if rs.values.contains(&value) => None,
        Some(rs) => {
            let mut rs = rs.clone();
            rs.values.push(value);
            Some(Change {
                action: Action::Upsert,
                record: rs,
            })
        }
        None => Some(Change {
            action: Action::Create,
            record: RecordSet::new(record, RecordType::Txt, ttl, vec![value]),
        }),
    }
}

/// The change that removes `value` from `current`: the other values stay (UPSERT), and the
/// record set goes when it was the last one (DELETE with exactly the current values). `None`
/// when there is nothing to remove.
pub fn remove_value(current: Option<&RecordSet>, value: &str) -> Option<Change> {
    let value = quoted(value);
    let rs = current.filter(|rs| rs.values.contains(&value))?;
    let rest: Vec<String> = rs.values.iter().filter(|v| **v != value).cloned().collect();
    Some(if rest.is_empty() {
        Change {
            action: Action::Delete,
            record: rs.clone(),
        }
    } else {
        Change {
            action: Action::Upsert,
            record: RecordSet {
                values: rest,
                ..rs.clone()
            },
        }
    })
}

fn dns01_parts(answer: &ChallengeAnswer) -> Result<(String, &str), SolverError> {
    match answer {
        ChallengeAnswer::Dns01 { record, value, .. } => Ok((normalize(record), value.as_str())),
        other => Err(SolverError(format!(
            "the DNS-01 solver cannot present a {} answer (for {})",
            other.kind(),
            other.host()
        ))),
    }
}

impl ChallengeSolver for Dns01Solver {
    fn present<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            let (record, value) = dns01_parts(answer)?;
            let zone = self.zone_for(&record).await?;
            let guard = self.writes.lock().await;
            let current = self.current(&zone, &record).await?;
            let Some(change) = add_value(&record, current.as_ref(), value, self.options.ttl) else {
                return Ok(());
            };
            let applied = self.apply(&zone, &[change]).await;
            drop(guard);
            applied
        })
    }

    fn cleanup<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            let (record, value) = dns01_parts(answer)?;
            let zone = self.zone_for(&record).await?;
            let _guard = self.writes.lock().await;
            let current = self.current(&zone, &record).await?;
            match remove_value(current.as_ref(), value) {
                None => Ok(()),
                // Removal need not be waited for.
                Some(change) => self
                    .provider
                    .apply(&zone, &[change])
                    .await
                    .map(|_| ())
                    .map_err(|e| SolverError(format!("removing {record} from zone {zone}: {e}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::provider::{MemoryProvider, operation};

    fn dns01(host: &str, value: &str) -> ChallengeAnswer {
        ChallengeAnswer::Dns01 {
            host: host.to_string(),
            record: super::super::keys::dns01_record_name(host),
            value: value.to_string(),
        }
    }

    fn txt(p: &MemoryProvider, zone: &Zone, name: &str) -> Option<RecordSet> {
        p.records(&zone.id)
            .into_iter()
            .find(|r| r.name == name && r.rtype == RecordType::Txt)
    }

    fn options() -> Dns01Options {
        Dns01Options {
            poll: Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
            ..Dns01Options::default()
        }
    }

    #[test]
    fn the_most_specific_public_zone_wins() {
        let zones = vec![
            Zone::new("Z1", "example.com", false),
            Zone::new("Z2", "dev.example.com", false),
            Zone::new("Z3", "team.dev.example.com", true),
            Zone::new("Z4", "ample.com", false),
        ];
        let z = |n: &str| most_specific_zone(&zones, n).map(|z| z.id.as_str());
        assert_eq!(z("_acme-challenge.www.dev.example.com"), Some("Z2"));
        assert_eq!(z("_acme-challenge.example.com"), Some("Z1"));
        assert_eq!(
            z("_acme-challenge.team.dev.example.com"),
            Some("Z2"),
            "private zones are not seen by the CA"
        );
        assert_eq!(z("_acme-challenge.other.org"), None);
        assert_eq!(z("_acme-challenge.xample.com"), None, "label boundaries");
    }

    #[test]
    fn values_are_added_and_removed_one_by_one() {
        let name = "_acme-challenge.example.com";
        let add = add_value(name, None, "v1", 60).unwrap();
        assert_eq!(add.action, Action::Create);
        assert_eq!(add.record.values, ["\"v1\""]);
        let one = add.record;
        assert!(
            add_value(name, Some(&one), "v1", 60).is_none(),
            "already there"
        );
        let add = add_value(name, Some(&one), "v2", 60).unwrap();
        assert_eq!(add.action, Action::Upsert);
        assert_eq!(add.record.values, ["\"v1\"", "\"v2\""]);
        let two = add.record;
        let rm = remove_value(Some(&two), "v1").unwrap();
        assert_eq!(rm.action, Action::Upsert);
        assert_eq!(rm.record.values, ["\"v2\""]);
        let rm = remove_value(Some(&one), "v1").unwrap();
        assert_eq!(rm.action, Action::Delete);
        assert_eq!(rm.record, one, "DELETE names the current values exactly");
        assert!(remove_value(Some(&one), "v9").is_none());
        assert!(remove_value(None, "v1").is_none());
    }

    #[tokio::test]
    async fn a_wildcard_and_its_base_share_one_record_and_leave_others_alone() {
        let p = Arc::new(MemoryProvider::new());
        let parent = p.add_zone("example.com", false);
        let zone = p.add_zone("dev.example.com", false);
        let private = p.add_zone("dev.example.com", true);
        let name = "_acme-challenge.dev.example.com";
        // A value someone else keeps there (another ACME client validating the same name).
        p.insert(
            &zone.id,
            RecordSet::new(name, RecordType::Txt, 300, vec!["\"theirs\"".into()]),
        );
        let solver = Dns01Solver::new(p.clone(), options());
        let base = dns01("dev.example.com", "base-value");
        let wild = dns01("dev.example.com", "wildcard-value");
        solver.present(&base).await.unwrap();
        solver.present(&wild).await.unwrap();
        let rs = txt(&p, &zone, name).expect("the record");
        assert_eq!(
            rs.values,
            ["\"theirs\"", "\"base-value\"", "\"wildcard-value\""]
        );
        assert_eq!(rs.ttl, Some(300), "an existing record keeps its TTL");
        assert!(txt(&p, &parent, name).is_none(), "the most specific zone");
        assert!(p.records(&private.id).is_empty(), "never a private zone");
        // Presenting again changes nothing.
        let changes = p.calls()[operation::CHANGE];
        solver.present(&base).await.unwrap();
        assert_eq!(p.calls()[operation::CHANGE], changes);

        solver.cleanup(&base).await.unwrap();
        assert_eq!(
            txt(&p, &zone, name).unwrap().values,
            ["\"theirs\"", "\"wildcard-value\""]
        );
        solver.cleanup(&wild).await.unwrap();
        assert_eq!(txt(&p, &zone, name).unwrap().values, ["\"theirs\""]);
        // Cleaning up twice is harmless.
        solver.cleanup(&wild).await.unwrap();
    }

    #[tokio::test]
    async fn the_last_value_removes_the_record_and_a_new_record_gets_the_solver_ttl() {
        let p = Arc::new(MemoryProvider::new());
        let zone = p.add_zone("example.org", false);
        let solver = Dns01Solver::new(p.clone(), options());
        let a = dns01("www.example.org", "abc");
        solver.present(&a).await.unwrap();
        let rs = txt(&p, &zone, "_acme-challenge.www.example.org").unwrap();
        assert_eq!(rs.values, ["\"abc\""]);
        assert_eq!(rs.ttl, Some(CHALLENGE_TTL));
        solver.cleanup(&a).await.unwrap();
        assert!(txt(&p, &zone, "_acme-challenge.www.example.org").is_none());
    }

    /// A provider whose changes stay pending for `pending_polls` polls (Route53's take
    /// seconds).
    struct Slow {
        inner: MemoryProvider,
        pending_polls: usize,
        polls: std::sync::atomic::AtomicUsize,
    }

    type Fut<'a, T> = futures::future::BoxFuture<'a, Result<T, crate::dns::ProviderError>>;

    impl DnsProvider for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn list_zones(&self) -> Fut<'_, Vec<Zone>> {
            self.inner.list_zones()
        }
        fn list_records<'a>(&'a self, zone: &'a Zone) -> Fut<'a, Vec<RecordSet>> {
            self.inner.list_records(zone)
        }
        fn apply<'a>(
            &'a self,
            zone: &'a Zone,
            changes: &'a [Change],
        ) -> Fut<'a, crate::dns::ChangeInfo> {
            Box::pin(async move {
                let mut info = self.inner.apply(zone, changes).await?;
                info.status = ChangeStatus::Pending;
                Ok(info)
            })
        }
        fn change_status<'a>(&'a self, _id: &'a str) -> Fut<'a, ChangeStatus> {
            let n = self.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = if n < self.pending_polls {
                ChangeStatus::Pending
            } else {
                ChangeStatus::InSync
            };
            Box::pin(async move { Ok(status) })
        }
    }

    fn slow(pending_polls: usize) -> Slow {
        let p = Slow {
            inner: MemoryProvider::new(),
            pending_polls,
            polls: std::sync::atomic::AtomicUsize::new(0),
        };
        p.inner.add_zone("example.org", false);
        p
    }

    #[tokio::test]
    async fn present_returns_once_the_change_is_in_sync() {
        let p = Arc::new(slow(2));
        let solver = Dns01Solver::new(p.clone(), options());
        solver.present(&dns01("example.org", "v")).await.unwrap();
        assert_eq!(
            p.polls.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "polled until INSYNC"
        );
    }

    #[tokio::test]
    async fn a_change_never_in_sync_fails_present_at_the_timeout() {
        let p = Arc::new(slow(usize::MAX));
        let solver = Dns01Solver::new(
            p.clone(),
            Dns01Options {
                insync_timeout: Duration::from_millis(30),
                ..options()
            },
        );
        let err = solver
            .present(&dns01("www.example.org", "w"))
            .await
            .unwrap_err();
        assert!(
            err.0.contains("still pending") && err.0.contains("_acme-challenge.www.example.org"),
            "{err}"
        );
        assert!(p.polls.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn no_zone_and_other_challenge_types_are_clear_errors() {
        let p = Arc::new(MemoryProvider::new());
        p.add_zone("example.org", false);
        let solver = Dns01Solver::new(p.clone(), options());
        let err = solver
            .present(&dns01("www.example.net", "v"))
            .await
            .unwrap_err();
        assert!(
            err.0.contains("_acme-challenge.www.example.net") && err.0.contains("memory"),
            "{err}"
        );
        let http = ChallengeAnswer::Http01 {
            host: "www.example.org".into(),
            token: "t".into(),
            key_authorization: "t.k".into(),
        };
        let err = solver.present(&http).await.unwrap_err();
        assert!(err.0.contains("http-01"), "{err}");
    }
}
