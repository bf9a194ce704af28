//! An in-memory DNS provider (`--dns-provider memory`): standalone trials and tests.
//!
//! It enforces the Route53 rules the planner depends on: a batch is atomic; a CREATE of an
//! existing record set fails the batch; a DELETE must match the current record set exactly; a
//! CNAME cannot share its name with another type; names must be inside the zone; the batch
//! limits of [`BatchLimits`] hold.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::{
    CallCounter, CallCounts, ChangeInfo, ChangeStatus, DnsProvider, ProviderError, operation,
};
use crate::dns::batch::BatchLimits;
use crate::dns::name::{in_zone, normalize};
use crate::dns::record::{Action, Change, RecordSet, RecordType, Zone};

#[derive(Debug, Default)]
struct State {
    zones: BTreeMap<String, (Zone, Vec<RecordSet>)>,
    next_zone: u64,
    next_change: u64,
}

/// Hosted zones and their record sets in memory.
#[derive(Debug, Default)]
pub struct MemoryProvider {
    state: Mutex<State>,
    calls: CallCounter,
    limits: BatchLimits,
}

impl MemoryProvider {
    /// No zones, Route53's batch limits.
    pub fn new() -> MemoryProvider {
        MemoryProvider::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a hosted zone (`example.com`) and returns it (ids are `MEM1`, `MEM2`...).
    pub fn add_zone(&self, name: &str, private: bool) -> Zone {
        let mut s = self.lock();
        s.next_zone += 1;
        let zone = Zone::new(&format!("MEM{}", s.next_zone), name, private);
        s.zones.insert(zone.id.clone(), (zone.clone(), Vec::new()));
        zone
    }

    /// The record sets of a zone (empty for an unknown zone).
    pub fn records(&self, zone_id: &str) -> Vec<RecordSet> {
        self.lock()
            .zones
            .get(zone_id)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    }

    /// Puts a record set into a zone without any check, replacing one of the same name, type
    /// and set identifier (for tests: "someone else wrote this").
    pub fn insert(&self, zone_id: &str, record: RecordSet) {
        let mut s = self.lock();
        if let Some((_, records)) = s.zones.get_mut(zone_id) {
            records.retain(|r| key(r) != key(&record));
            records.push(record);
            records.sort_by_key(key);
        }
    }
}

type Key = (String, RecordType, Option<String>);

fn key(r: &RecordSet) -> Key {
    (r.name.clone(), r.rtype.clone(), r.set_identifier.clone())
}

fn describe(r: &RecordSet) -> String {
    format!("[name='{}.', type='{}']", r.name, r.rtype)
}

fn same_values(a: &RecordSet, b: &RecordSet) -> bool {
    let mut x = a.values.clone();
    let mut y = b.values.clone();
    x.sort();
    y.sort();
    a.ttl == b.ttl && x == y && a.alias == b.alias
}

/// Applies `changes` to `records` (one zone's record sets) with Route53's semantics, all or
/// nothing; the error is Route53-like text naming the change at fault. Pure: the planner's
/// property tests use it as the model of a zone.
pub fn apply_to_records(
    zone: &Zone,
    records: &mut Vec<RecordSet>,
    changes: &[Change],
    limits: BatchLimits,
) -> Result<(), String> {
    let (n, c) = changes
        .iter()
        .map(Change::weight)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if n > limits.max_records {
        return Err(format!(
            "the batch has {n} ResourceRecord elements (UPSERT counts twice); the limit is {}",
            limits.max_records
        ));
    }
    if c > limits.max_chars {
        return Err(format!(
            "the batch has {c} characters of values (UPSERT counts twice); the limit is {}",
            limits.max_chars
        ));
    }
    let mut work: BTreeMap<Key, RecordSet> = records.iter().map(|r| (key(r), r.clone())).collect();
    for ch in changes {
        let mut rs = ch.record.clone();
        rs.name = normalize(&rs.name);
        if !in_zone(&rs.name, &zone.name) {
            return Err(format!(
                "RRSet with DNS name {}. is not permitted in zone {}.",
                rs.name, zone.name
            ));
        }
        if rs.alias.is_none() && (rs.values.is_empty() || rs.ttl.is_none()) {
            return Err(format!("{} has no values or no TTL", describe(&rs)));
        }
        if rs.alias.is_some() && (!rs.values.is_empty() || rs.ttl.is_some()) {
            return Err(format!(
                "{} is an ALIAS with values or a TTL",
                describe(&rs)
            ));
        }
        if rs.rtype == RecordType::Cname && rs.values.len() > 1 {
            return Err(format!("{} has more than one value", describe(&rs)));
        }
        let k = key(&rs);
        match ch.action {
            Action::Create | Action::Upsert => {
                if ch.action == Action::Create && work.contains_key(&k) {
                    return Err(format!(
                        "Tried to create resource record set {} but it already exists",
                        describe(&rs)
                    ));
                }
                let clash = work.keys().any(|(n, t, _)| {
                    n == &rs.name
                        && t != &rs.rtype
                        && (*t == RecordType::Cname || rs.rtype == RecordType::Cname)
                });
                if clash {
                    return Err(format!(
                        "RRSet of type CNAME with DNS name {}. is not permitted as it conflicts \
                         with other records with the same DNS name",
                        rs.name
                    ));
                }
                work.insert(k, rs);
            }
            Action::Delete => match work.get(&k) {
                None => {
                    return Err(format!(
                        "Tried to delete resource record set {} but it was not found",
                        describe(&rs)
                    ));
                }
                Some(cur) if !same_values(cur, &rs) => {
                    return Err(format!(
                        "Tried to delete resource record set {} but the values provided do not \
                         match the current values",
                        describe(&rs)
                    ));
                }
                Some(_) => {
                    work.remove(&k);
                }
            },
        }
    }
    *records = work.into_values().collect();
    Ok(())
}

impl DnsProvider for MemoryProvider {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn list_zones(&self) -> BoxFuture<'_, Result<Vec<Zone>, ProviderError>> {
        self.calls.count(operation::LIST_ZONES);
        let zones = self.lock().zones.values().map(|(z, _)| z.clone()).collect();
        Box::pin(async move { Ok(zones) })
    }

    fn list_records<'a>(
        &'a self,
        zone: &'a Zone,
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, ProviderError>> {
        self.calls.count(operation::LIST_RECORDS);
        let r = match self.lock().zones.get(&zone.id) {
            Some((_, records)) => Ok(records.clone()),
            None => Err(ProviderError::Other {
                operation: operation::LIST_RECORDS,
                message: format!("no hosted zone {}", zone.id),
                retryable: false,
            }),
        };
        Box::pin(async move { r })
    }

    fn apply<'a>(
        &'a self,
        zone: &'a Zone,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ChangeInfo, ProviderError>> {
        self.calls.count(operation::CHANGE);
        let mut s = self.lock();
        s.next_change += 1;
        let id = format!("C{}", s.next_change);
        let limits = self.limits;
        let r = match s.zones.get_mut(&zone.id) {
            None => Err(ProviderError::Other {
                operation: operation::CHANGE,
                message: format!("no hosted zone {}", zone.id),
                retryable: false,
            }),
            Some((z, records)) => apply_to_records(z, records, changes, limits)
                .map(|()| ChangeInfo {
                    id,
                    status: ChangeStatus::InSync,
                })
                .map_err(|message| ProviderError::Rejected {
                    code: "InvalidChangeBatch".into(),
                    message,
                }),
        };
        drop(s);
        Box::pin(async move { r })
    }

    fn change_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeStatus, ProviderError>> {
        self.calls.count(operation::GET_CHANGE);
        let known = id
            .strip_prefix('C')
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1 && n <= self.lock().next_change);
        Box::pin(async move {
            if known {
                Ok(ChangeStatus::InSync)
            } else {
                Err(ProviderError::Other {
                    operation: operation::GET_CHANGE,
                    message: format!("no change {id}"),
                    retryable: false,
                })
            }
        })
    }

    fn calls(&self) -> CallCounts {
        self.calls.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, ip: &str) -> RecordSet {
        RecordSet::new(name, RecordType::A, 300, vec![ip.into()])
    }

    fn ch(action: Action, record: RecordSet) -> Change {
        Change { action, record }
    }

    #[tokio::test]
    async fn create_of_an_existing_record_fails_the_whole_batch() {
        let p = MemoryProvider::new();
        let z = p.add_zone("example.com", false);
        p.insert(&z.id, a("taken.example.com", "9.9.9.9"));
        let err = p
            .apply(
                &z,
                &[
                    ch(Action::Create, a("new.example.com", "1.1.1.1")),
                    ch(Action::Create, a("taken.example.com", "1.1.1.1")),
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Rejected { .. }), "{err}");
        assert!(err.to_string().contains("already exists"));
        assert_eq!(p.records(&z.id).len(), 1, "nothing of the batch applied");
    }

    #[tokio::test]
    async fn delete_must_match_exactly() {
        let p = MemoryProvider::new();
        let z = p.add_zone("example.com", false);
        p.insert(&z.id, a("x.example.com", "1.1.1.1"));
        let wrong = p
            .apply(&z, &[ch(Action::Delete, a("x.example.com", "2.2.2.2"))])
            .await;
        assert!(wrong.unwrap_err().to_string().contains("do not match"));
        let mut other_ttl = a("x.example.com", "1.1.1.1");
        other_ttl.ttl = Some(60);
        assert!(p.apply(&z, &[ch(Action::Delete, other_ttl)]).await.is_err());
        p.apply(&z, &[ch(Action::Delete, a("x.example.com", "1.1.1.1"))])
            .await
            .unwrap();
        assert!(p.records(&z.id).is_empty());
    }

    #[tokio::test]
    async fn cname_cannot_share_a_name_and_names_stay_in_the_zone() {
        let p = MemoryProvider::new();
        let z = p.add_zone("example.com", false);
        p.insert(&z.id, a("x.example.com", "1.1.1.1"));
        let cname = RecordSet::new("x.example.com", RecordType::Cname, 300, vec!["y.z".into()]);
        assert!(p.apply(&z, &[ch(Action::Create, cname)]).await.is_err());
        let outside = a("x.example.org", "1.1.1.1");
        assert!(p.apply(&z, &[ch(Action::Create, outside)]).await.is_err());
        let calls = p.calls();
        assert_eq!(calls.get(operation::CHANGE), Some(&2));
    }

    #[tokio::test]
    async fn upsert_replaces_and_limits_hold() {
        let p = MemoryProvider::new();
        let z = p.add_zone("example.com", false);
        p.apply(&z, &[ch(Action::Upsert, a("x.example.com", "1.1.1.1"))])
            .await
            .unwrap();
        p.apply(&z, &[ch(Action::Upsert, a("x.example.com", "2.2.2.2"))])
            .await
            .unwrap();
        assert_eq!(p.records(&z.id)[0].values, vec!["2.2.2.2".to_string()]);
        let many: Vec<Change> = (0..501)
            .map(|i| ch(Action::Upsert, a(&format!("h{i}.example.com"), "1.1.1.1")))
            .collect();
        let err = p.apply(&z, &many).await.unwrap_err();
        assert!(err.to_string().contains("1002"), "{err}");
        let id = p
            .apply(&z, &many[..500])
            .await
            .expect("1000 counted elements fit")
            .id;
        assert_eq!(p.change_status(&id).await, Ok(ChangeStatus::InSync));
    }
}
