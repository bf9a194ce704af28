//! Tests of the sync step over the in-memory provider: convergence, call counts, isolation of
//! a rejected group with backoff, dry runs, retries of throttled calls.

use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;

use super::*;
use crate::dns::provider::{ChangeInfo, MemoryProvider, operation};
use crate::dns::record::{RecordSet, RecordType};
use crate::dns::registry::RegistryOptions;

fn options() -> SyncOptions {
    let mut o = SyncOptions::new(
        Registry::new(&RegistryOptions {
            owner_id: "sluice".into(),
            ..Default::default()
        })
        .unwrap(),
    );
    o.policy = Policy::Sync;
    o.call_backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
    o.group_backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
    o
}

fn host(i: usize, ip: &str) -> Record {
    Record {
        name: format!("h{i}.example.com"),
        rtype: RecordType::A,
        ttl: None,
        targets: vec![ip.into()],
        alias: None,
        resource: format!("ingress/default/h{i}"),
    }
}

fn bad_cname() -> Record {
    Record {
        name: "bad.example.com".into(),
        rtype: RecordType::Cname,
        ttl: None,
        targets: vec!["a.example.net".into(), "b.example.net".into()],
        alias: None,
        resource: "ingress/default/bad".into(),
    }
}

fn change_calls(r: &SyncReport) -> u64 {
    r.calls.get(operation::CHANGE).copied().unwrap_or(0)
}

#[tokio::test]
async fn converges_in_one_call_then_does_nothing() {
    let p = MemoryProvider::new();
    let z = p.add_zone("example.com", false);
    let desired: Vec<Record> = (0..3).map(|i| host(i, "192.0.2.1")).collect();
    let mut state = SyncState::new();
    let r = sync(&p, &desired, &options(), &mut state).await.unwrap();
    assert!(r.converged());
    assert_eq!(r.applied.create, 6, "three records and their TXT");
    assert_eq!(r.batches, 1);
    assert_eq!(r.calls.get(operation::LIST_ZONES), Some(&1));
    assert_eq!(r.calls.get(operation::LIST_RECORDS), Some(&1));
    assert_eq!(change_calls(&r), 1);
    assert_eq!(p.records(&z.id).len(), 6);
    let again = sync(&p, &desired, &options(), &mut state).await.unwrap();
    assert!(again.plan.is_empty());
    assert_eq!(change_calls(&again), 0);
    assert_eq!(again.records_per_zone, vec![(z, 6)]);
}

#[tokio::test]
async fn a_rejected_group_is_isolated_and_the_rest_lands() {
    let p = MemoryProvider::new();
    let z = p.add_zone("example.com", false);
    let mut desired: Vec<Record> = (0..15).map(|i| host(i, "192.0.2.1")).collect();
    desired.push(bad_cname());
    let mut state = SyncState::new();
    let r = sync(&p, &desired, &options(), &mut state).await.unwrap();
    assert_eq!(r.applied.create, 30, "every good record and its TXT");
    assert_eq!(r.failures.len(), 1);
    let f = &r.failures[0];
    assert_eq!(f.name, "bad.example.com");
    assert_eq!(f.resources, vec!["ingress/default/bad".to_string()]);
    assert!(f.error.contains("more than one value"), "{}", f.error);
    // 16 groups: 1 call, then halving down to the bad group: at most 2 calls per level.
    assert!(change_calls(&r) <= 1 + 2 * 4, "{:?}", r.calls);
    assert!(!r.converged());
    let diags = r.diagnostics();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].reason, Reason::DnsRejected);
    assert_eq!(diags[0].field, "bad.example.com");
    assert_eq!(p.records(&z.id).len(), 30);

    // The next sync leaves it alone until its backoff expires: no call at all.
    let r = sync(&p, &desired, &options(), &mut state).await.unwrap();
    assert_eq!(change_calls(&r), 0);
    assert_eq!(r.quarantined.len(), 1);
    assert!(
        r.quarantined[0].retry_in > Duration::from_secs(1000),
        "half an hour at least, with jitter"
    );
    assert_eq!(state.failing(Instant::now()).len(), 1);

    // Once due, it is sent alone, and fails alone.
    let mut due = options();
    due.group_backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
    let mut due_state = SyncState::new();
    sync(&p, &desired, &due, &mut due_state).await.unwrap();
    let r = sync(&p, &desired, &due, &mut due_state).await.unwrap();
    assert_eq!(change_calls(&r), 1, "the failing group alone");
    assert_eq!(r.failures[0].failures, 2);

    // Fixed: the group's changes differ, so it goes out at once and the failure is forgotten.
    desired.pop();
    let mut fixed = bad_cname();
    fixed.targets.pop();
    desired.push(fixed);
    let r = sync(&p, &desired, &options(), &mut state).await.unwrap();
    assert!(r.converged(), "{:?}", r.failures);
    assert_eq!(r.applied.create, 2);
    assert!(state.failing(Instant::now()).is_empty());
}

#[tokio::test]
async fn dry_run_plans_and_writes_nothing() {
    let p = MemoryProvider::new();
    let z = p.add_zone("example.com", false);
    let mut o = options();
    o.dry_run = true;
    let r = sync(&p, &[host(1, "192.0.2.1")], &o, &mut SyncState::new())
        .await
        .unwrap();
    assert_eq!(r.plan.counts().create, 2);
    assert_eq!(r.applied.total(), 0);
    assert_eq!(change_calls(&r), 0);
    assert!(p.records(&z.id).is_empty());
}

#[tokio::test]
async fn changes_are_waited_for() {
    let p = MemoryProvider::new();
    let z = p.add_zone("example.com", false);
    let rs = RecordSet::new("x.example.com", RecordType::A, 60, vec!["192.0.2.1".into()]);
    let info = p
        .apply(
            &z,
            &[Change {
                action: crate::dns::record::Action::Create,
                record: rs,
            }],
        )
        .await
        .unwrap();
    let poll = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
    wait_insync(&p, &info.id, Duration::from_secs(1), poll)
        .await
        .unwrap();
    let err = wait_insync(&p, "C999", Duration::from_secs(1), poll).await;
    assert!(matches!(err, Err(WaitError::Provider { .. })));
}

/// The memory provider behind a gate that answers `Throttling` to the first `fail` calls.
struct Throttling {
    inner: MemoryProvider,
    fail: AtomicU32,
}

impl Throttling {
    fn gate(&self, op: &'static str) -> Result<(), ProviderError> {
        let left = self.fail.load(Ordering::SeqCst);
        if left > 0 {
            self.fail.store(left - 1, Ordering::SeqCst);
            return Err(ProviderError::Throttled {
                operation: op,
                code: "Throttling".into(),
                message: "Rate exceeded".into(),
            });
        }
        Ok(())
    }
}

impl DnsProvider for Throttling {
    fn name(&self) -> &'static str {
        "throttling"
    }
    fn list_zones(&self) -> BoxFuture<'_, Result<Vec<Zone>, ProviderError>> {
        match self.gate(operation::LIST_ZONES) {
            Ok(()) => self.inner.list_zones(),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
    fn list_records<'a>(
        &'a self,
        zone: &'a Zone,
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, ProviderError>> {
        self.inner.list_records(zone)
    }
    fn apply<'a>(
        &'a self,
        zone: &'a Zone,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ChangeInfo, ProviderError>> {
        match self.gate(operation::CHANGE) {
            Ok(()) => self.inner.apply(zone, changes),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
    fn change_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeStatus, ProviderError>> {
        self.inner.change_status(id)
    }
}

#[tokio::test]
async fn throttled_calls_are_retried_then_given_up() {
    let p = Throttling {
        inner: MemoryProvider::new(),
        fail: AtomicU32::new(3),
    };
    let z = p.inner.add_zone("example.com", false);
    let r = sync(
        &p,
        &[host(1, "192.0.2.1")],
        &options(),
        &mut SyncState::new(),
    )
    .await
    .unwrap();
    assert!(r.converged(), "{:?}", r.incomplete);
    assert_eq!(p.inner.records(&z.id).len(), 2);

    // More throttling than attempts: the sync stops and says why; nothing half-applied.
    p.fail.store(100, Ordering::SeqCst);
    let err = sync(
        &p,
        &[host(2, "192.0.2.1")],
        &options(),
        &mut SyncState::new(),
    )
    .await;
    assert!(matches!(
        err,
        Err(SyncError::Zones(ProviderError::Throttled { .. }))
    ));
    assert!(err.unwrap_err().is_retryable());
    assert_eq!(p.fail.load(Ordering::SeqCst), 100 - 6, "six attempts");
    p.fail.store(0, Ordering::SeqCst);
    let mut o = options();
    o.call_attempts = 2;
    // Zones listed, then the change call throttled twice.
    let gate = Throttling {
        inner: MemoryProvider::new(),
        fail: AtomicU32::new(0),
    };
    gate.inner.add_zone("example.com", false);
    let listed = gate.inner.list_zones().await.unwrap();
    assert_eq!(listed.len(), 1);
    let desired = [host(3, "192.0.2.1")];
    let current = read_zones(&gate, &o).await.unwrap();
    assert_eq!(current.len(), 1);
    gate.fail.store(2, Ordering::SeqCst);
    let plan_only = crate::dns::plan::plan(&desired, &current, &o.registry, o.policy, &o.filters);
    let mut report = SyncReport::default();
    apply_plan(&gate, &plan_only, &o, &mut SyncState::new(), &mut report).await;
    assert!(matches!(
        report.incomplete,
        Some(ProviderError::Throttled { .. })
    ));
    assert_eq!(report.applied.total(), 0);
}
