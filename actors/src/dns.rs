//! The DNS actor: keeps a record in the DNS provider (Route53, or in-memory zones) for every
//! host sluice serves, owned the way ExternalDNS owns records (the ExternalDNS job), on top of
//! the engine's [`sluice::dns`].
//!
//! It follows the desired topic: every translation gives the desired records
//! ([`sluice::dns::desired`]); when they differ from the previous ones a sync is scheduled one
//! debounce (1 s) after the last change, so a changed Ingress is in DNS within about two
//! seconds. A periodic full resync (`--dns-interval`, default 1 min) repairs drift. Each sync
//! reads the zones, plans and applies ([`sluice::dns::sync`]); the [`SyncState`] (groups the
//! provider rejected, with their backoff) is kept across syncs, and the next sync is scheduled
//! ([`Schedule`]) at the earliest of: the debounce, the resync, a failure's backoff, and the
//! time a rejected group may be retried alone.
//!
//! **Writes.** In Kubernetes mode only the Lease leader reads and writes DNS (followers make no
//! call at all); every write checks the leader topic right before it is sent, so a lost Lease
//! stops writes at once. In standalone mode the one process writes. `--dns-dry-run` plans and
//! logs the plan, and writes nothing.
//!
//! **Failures.** A remote error never crashes the actor: throttling and transient errors are
//! retried by the engine with backoff, a rejected batch is split down to the group at fault,
//! which is quarantined and retried alone; a sync that cannot read the zones is retried with
//! [`Backoff`]. A crash (of the actor or its task) loses only the [`SyncState`]: the restarted
//! actor syncs at once, and since every sync re-reads the zones before writing, changes that
//! landed are not sent again and changes that did not land are.
//!
//! **Visible.** The [`DnsReport`] topic (zones, desired against current records, pending
//! changes, quarantined groups, last sync, diagnostics) feeds `/api/dns` and
//! `/api/diagnostics`, and the status actor turns its diagnostics into Warning Events; new
//! diagnostics are logged once; metrics `sluice_dns_*` (see [`describe_metrics`]).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use ractor::ActorProcessingErr;
use sluice::dns::provider::{apply_to_records, operation};
use sluice::dns::{
    BatchLimits, CallCounts, Change, ChangeCounts, ChangeInfo, ChangeStatus, DesiredOptions,
    DnsProvider, PassOutcome, ProviderError, Record, RecordSet, RecordView, Schedule, SyncOptions,
    SyncReport, SyncState, Zone, ZoneRecords, records_view, sync,
};
use sluice::model::Diagnostic;
use sluice::pace::Backoff;
use tokio::sync::watch;

use crate::topics::Desired;
pub use crate::topics::{
    DnsReport, DnsReportTopic, LastSync, Quarantined, SyncResult, ZoneSummary,
};
use crate::worker::{Ctx, NoMsg, Worker};

/// Debounce after a change of the desired records.
pub const DEBOUNCE: Duration = Duration::from_secs(1);
/// A stream of changes delays a sync by at most this much.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// Dry run: at most this many planned changes are logged per plan.
const LOGGED_CHANGES: usize = 100;

/// Everything the DNS actor needs besides the provider (from the `--dns-*` flags).
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Which objects give records, and the publish addresses.
    pub desired: DesiredOptions,
    /// Owner id, policy, filters, limits, dry run, the engine's retries.
    pub sync: SyncOptions,
    /// `--dns-interval`: the periodic full resync.
    pub interval: Duration,
    /// Debounce after a change ([`DEBOUNCE`]).
    pub debounce: Duration,
    /// Longest delay of a sync by a stream of changes ([`MAX_WAIT`]).
    pub max_wait: Duration,
    /// Backoff of syncs that fail (zones unreadable, writes stopped early).
    pub retry: Backoff,
}

impl DnsConfig {
    /// Defaults around `sync`: 1 min resync, [`DEBOUNCE`], [`MAX_WAIT`], retries from 5 s
    /// doubling to 5 min.
    pub fn new(desired: DesiredOptions, sync: SyncOptions) -> DnsConfig {
        DnsConfig {
            desired,
            sync,
            interval: Duration::from_secs(60),
            debounce: DEBOUNCE,
            max_wait: MAX_WAIT,
            retry: Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
        }
    }
}

/// What the DNS actor uses.
#[derive(Clone)]
pub struct DnsArgs {
    /// The process's one DNS provider.
    pub provider: Arc<dyn DnsProvider>,
    /// Settings.
    pub config: Arc<DnsConfig>,
    /// The desired topic.
    pub desired: watch::Receiver<Option<Arc<Desired>>>,
    /// The leader topic (always true in standalone mode).
    pub leader: watch::Receiver<bool>,
    /// Where the report is published.
    pub report: DnsReportTopic,
    /// The provider's call counts already added to `sluice_dns_api_calls_total` (one per
    /// provider, kept across restarts of the actor).
    pub calls_exported: Arc<std::sync::Mutex<CallCounts>>,
}

/// The DNS actor.
#[derive(Debug)]
pub struct Dns;

impl Worker for Dns {
    type Msg = NoMsg;
    type State = ();
    type Args = DnsArgs;

    async fn start(&self, ctx: &mut Ctx<NoMsg>, args: DnsArgs) -> Result<(), ActorProcessingErr> {
        describe_metrics();
        ctx.spawn("sync", Syncer::new(args).run());
        Ok(())
    }
}

/// Describes the `sluice_dns_*` metrics and creates their fixed series at 0, so they exist
/// from start when DNS is on.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "sluice_dns_records",
        "Record sets per hosted zone in scope, as last read."
    );
    metrics::describe_counter!(
        "sluice_dns_changes_total",
        "DNS changes applied, by action (create, upsert, delete)."
    );
    metrics::describe_counter!(
        "sluice_dns_errors_total",
        "DNS sync errors, by reason (throttled, rejected, transient, error)."
    );
    metrics::describe_counter!(
        "sluice_dns_api_calls_total",
        "Calls to the DNS provider's API, by operation (retries included)."
    );
    metrics::describe_gauge!(
        "sluice_dns_last_sync_timestamp_seconds",
        "Unix time of the last DNS sync that read every zone and applied what it could."
    );
    for action in ["create", "upsert", "delete"] {
        metrics::counter!("sluice_dns_changes_total", "action" => action).increment(0);
    }
    for reason in ["throttled", "rejected", "transient", "error"] {
        metrics::counter!("sluice_dns_errors_total", "reason" => reason).increment(0);
    }
    for op in [
        operation::LIST_ZONES,
        operation::LIST_RECORDS,
        operation::CHANGE,
        operation::GET_CHANGE,
    ] {
        metrics::counter!("sluice_dns_api_calls_total", "operation" => op).increment(0);
    }
    // Created at 0, never reset: a restart of the actor keeps the last sync's time.
    metrics::gauge!("sluice_dns_last_sync_timestamp_seconds").increment(0.0);
}

/// The provider, with every write checked against the leader topic right before it is sent.
struct LeaderOnly<'a> {
    inner: &'a dyn DnsProvider,
    leader: &'a watch::Receiver<bool>,
}

impl DnsProvider for LeaderOnly<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn list_zones(&self) -> BoxFuture<'_, Result<Vec<Zone>, ProviderError>> {
        self.inner.list_zones()
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
        if !*self.leader.borrow() {
            return Box::pin(async {
                Err(ProviderError::Other {
                    operation: operation::CHANGE,
                    message: NOT_LEADER.to_owned(),
                    retryable: false,
                })
            });
        }
        self.inner.apply(zone, changes)
    }

    fn change_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeStatus, ProviderError>> {
        self.inner.change_status(id)
    }

    fn calls(&self) -> CallCounts {
        self.inner.calls()
    }
}

const NOT_LEADER: &str = "this replica lost the leadership; the new leader writes";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The `sync` task's state.
struct Syncer {
    provider: Arc<dyn DnsProvider>,
    config: Arc<DnsConfig>,
    desired_rx: watch::Receiver<Option<Arc<Desired>>>,
    leader_rx: watch::Receiver<bool>,
    report_tx: DnsReportTopic,
    calls_exported: Arc<std::sync::Mutex<CallCounts>>,
    state: SyncState,
    /// The desired records, once a translation arrived.
    records: Option<Vec<Record>>,
    desired_diagnostics: Vec<Diagnostic>,
    /// What the last sync that read the zones leaves to show.
    shown: Shown,
    last_sync: Option<LastSync>,
    /// Diagnostics already logged.
    reported: HashSet<String>,
    /// Zones whose record gauge was set.
    zones_seen: BTreeSet<String>,
    /// The dry-run plan last logged.
    logged_plan: Vec<Change>,
}

impl Syncer {
    fn new(args: DnsArgs) -> Syncer {
        Syncer {
            provider: args.provider,
            config: args.config,
            desired_rx: args.desired,
            leader_rx: args.leader,
            report_tx: args.report,
            calls_exported: args.calls_exported,
            state: SyncState::new(),
            records: None,
            desired_diagnostics: Vec::new(),
            shown: Shown::default(),
            last_sync: None,
            reported: HashSet::new(),
            zones_seen: BTreeSet::new(),
            logged_plan: Vec::new(),
        }
    }

    async fn run(mut self) {
        let c = &self.config;
        let mut schedule =
            Schedule::new(c.debounce, c.max_wait, c.interval, c.retry, Instant::now());
        let mut was_leader = false;
        // A closed leader topic keeps its last value (a fixed writer).
        let mut leader_open = true;
        let mut desired_changed = true;
        loop {
            let leader = *self.leader_rx.borrow_and_update();
            if leader && !was_leader {
                // Start, or a new leadership: sync at once (the state may have changed while
                // another replica wrote).
                schedule.request(Instant::now());
            }
            was_leader = leader;
            if desired_changed || self.records.is_none() {
                desired_changed = false;
                let fresh = self.desired_rx.borrow_and_update().clone();
                if let Some(d) = fresh
                    && self.update_desired(&d)
                {
                    schedule.changed(Instant::now());
                }
            }
            if leader && self.records.is_some() && schedule.due(Instant::now()) {
                self.pass(&mut schedule).await;
            }
            self.publish(&schedule);
            let wait = if leader && self.records.is_some() {
                schedule.wait(Instant::now())
            } else {
                None
            }
            .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                r = self.desired_rx.changed() => match r {
                    Ok(()) => desired_changed = true,
                    Err(_) => return,
                },
                r = self.leader_rx.changed(), if leader_open => leader_open = r.is_ok(),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Adds the provider's calls made since the last export to `sluice_dns_api_calls_total`.
    fn export_calls(&self) {
        let now = self.provider.calls();
        let mut exported = self
            .calls_exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (op, n) in sluice::dns::provider::calls_since(&exported, &now) {
            metrics::counter!("sluice_dns_api_calls_total", "operation" => op).increment(n);
        }
        *exported = now;
    }

    /// Recomputes the desired records; true when they changed.
    fn update_desired(&mut self, d: &Desired) -> bool {
        let out = sluice::dns::desired(
            &d.loaded.state,
            &d.translation.model.ingresses,
            &self.config.desired,
        );
        self.desired_diagnostics = out.diagnostics;
        if self.records.as_ref() == Some(&out.records) {
            return false;
        }
        self.records = Some(out.records);
        true
    }

    /// One sync, then metrics, logs and the schedule.
    async fn pass(&mut self, schedule: &mut Schedule) {
        let Some(records) = self.records.clone() else {
            return;
        };
        let started = Instant::now();
        let gate = LeaderOnly {
            inner: &*self.provider,
            leader: &self.leader_rx,
        };
        let result = sync(&gate, &records, &self.config.sync, &mut self.state).await;
        let now = Instant::now();
        self.export_calls();
        let (sync_result, outcome, applied, calls, batches) = match result {
            Err(e) => {
                metrics::counter!("sluice_dns_errors_total", "reason" => error_reason(&e))
                    .increment(1);
                tracing::warn!(error = %e, retryable = e.is_retryable(), "DNS sync could not read the zones; retrying with backoff");
                (
                    SyncResult::Failed(e.to_string()),
                    PassOutcome {
                        failed: true,
                        retry_group_in: None,
                    },
                    ChangeCounts::default(),
                    CallCounts::new(),
                    0,
                )
            }
            Ok(report) => {
                let lost_leadership = !*self.leader_rx.borrow();
                let result = self.after_sync(&report, &records, lost_leadership);
                let retry_group_in = self.state.failing(now).iter().map(|f| f.retry_in).min();
                let outcome = PassOutcome {
                    failed: report.incomplete.is_some() && !lost_leadership,
                    retry_group_in,
                };
                (
                    result,
                    outcome,
                    report.applied,
                    report.calls,
                    report.batches,
                )
            }
        };
        schedule.passed(started, now, outcome, fastrand::f64());
        self.last_sync = Some(LastSync {
            at: unix_now(),
            duration: now - started,
            result: sync_result,
            applied,
            calls,
            batches,
        });
    }

    /// Metrics, logs and the view of a sync that read the zones; returns how it ended.
    fn after_sync(
        &mut self,
        report: &SyncReport,
        records: &[Record],
        lost_leadership: bool,
    ) -> SyncResult {
        let a = report.applied;
        for (action, n) in [
            ("create", a.create),
            ("upsert", a.upsert),
            ("delete", a.delete),
        ] {
            metrics::counter!("sluice_dns_changes_total", "action" => action).increment(n as u64);
        }
        if !report.failures.is_empty() {
            metrics::counter!("sluice_dns_errors_total", "reason" => "rejected")
                .increment(report.failures.len() as u64);
        }
        if let Some(e) = &report.incomplete
            && !lost_leadership
        {
            metrics::counter!("sluice_dns_errors_total", "reason" => e.label()).increment(1);
            tracing::warn!(error = %e, "DNS sync stopped writing early; the rest follows with backoff");
        }
        if a.total() > 0 {
            tracing::info!(
                create = a.create,
                upsert = a.upsert,
                delete = a.delete,
                calls = report.batches,
                "DNS records written"
            );
        }
        for (zone, g) in report.plan.groups() {
            for c in &g.changes {
                tracing::debug!(zone = %zone, "DNS change: {c}");
            }
        }
        if report.dry_run {
            self.log_dry_run(report);
        }
        tracing::debug!(calls = ?report.calls, plan = ?report.plan.counts(), "DNS sync done");
        self.show(report, records);
        if report.incomplete.is_none() {
            metrics::gauge!("sluice_dns_last_sync_timestamp_seconds").set(unix_now());
        }
        match &report.incomplete {
            Some(_) if lost_leadership => SyncResult::Incomplete(NOT_LEADER.to_owned()),
            Some(e) => SyncResult::Incomplete(e.to_string()),
            None if report.dry_run => SyncResult::DryRun,
            None if report.failures.is_empty() && report.quarantined.is_empty() => {
                SyncResult::Converged
            }
            None => SyncResult::Partial,
        }
    }

    /// What a sync leaves to show: after writes, the zones as they now are (the applied
    /// groups' changes applied to what was read, checked as the provider checks them) and
    /// what is still to do; else the zones as read and the plan.
    fn show(&mut self, report: &SyncReport, records: &[Record]) {
        let sync = &self.config.sync;
        let after = after_apply(report, sync.limits);
        let replanned = after.as_ref().map(|zones| {
            sluice::dns::plan(records, zones, &sync.registry, sync.policy, &sync.filters)
        });
        let (current, plan) = match (&after, &replanned) {
            (Some(z), Some(p)) => (z, p),
            _ => (&report.current, &report.plan),
        };
        let mut zones_now = BTreeSet::new();
        for z in current {
            let label = zone_label(&z.zone);
            #[allow(clippy::cast_precision_loss, reason = "a count of records")]
            metrics::gauge!("sluice_dns_records", "zone" => label.clone())
                .set(z.records.len() as f64);
            zones_now.insert(label);
        }
        for gone in self.zones_seen.difference(&zones_now) {
            metrics::gauge!("sluice_dns_records", "zone" => gone.clone()).set(0.0);
        }
        self.zones_seen = zones_now;
        self.shown = Shown {
            zones: plan
                .zones
                .iter()
                .map(|z| ZoneSummary {
                    zone: z.zone.clone(),
                    records: z.records,
                    owned: z.owned,
                    foreign: z.foreign,
                })
                .collect(),
            view: Arc::new(records_view(
                records,
                current,
                &sync.registry,
                plan,
                &sync.filters,
            )),
            planned: report.plan.counts(),
            pending: if replanned.is_some() {
                plan.groups()
                    .flat_map(|(_, g)| g.changes.iter().cloned())
                    .collect()
            } else {
                pending_changes(report)
            },
            diagnostics: report.diagnostics(),
        };
    }

    /// Dry run: logs the plan when it differs from the one logged last.
    fn log_dry_run(&mut self, report: &SyncReport) {
        let changes: Vec<(Zone, Change)> = report
            .plan
            .groups()
            .flat_map(|(z, g)| g.changes.iter().map(move |c| (z.clone(), c.clone())))
            .collect();
        let plain: Vec<Change> = changes.iter().map(|(_, c)| c.clone()).collect();
        if plain == self.logged_plan {
            return;
        }
        self.logged_plan = plain;
        let c = report.plan.counts();
        tracing::info!(
            create = c.create,
            upsert = c.upsert,
            delete = c.delete,
            "DNS dry run: planned changes (nothing is written)"
        );
        for (zone, change) in changes.iter().take(LOGGED_CHANGES) {
            let r = &change.record;
            let values = match &r.alias {
                Some(a) => format!("ALIAS {}", a.dns_name),
                None => r.values.join(" "),
            };
            tracing::info!(zone = %zone, "DNS dry run: would {change} {values}");
        }
        if changes.len() > LOGGED_CHANGES {
            tracing::info!(
                "DNS dry run: and {} more changes (see /api/dns)",
                changes.len() - LOGGED_CHANGES
            );
        }
    }

    /// Publishes the report and logs each new diagnostic once.
    fn publish(&mut self, schedule: &Schedule) {
        let leader = *self.leader_rx.borrow();
        let mut diagnostics = self.desired_diagnostics.clone();
        diagnostics.extend(self.shown.diagnostics.iter().cloned());
        let mut now_reported = HashSet::new();
        for d in &diagnostics {
            let line = d.to_string();
            if !self.reported.contains(&line) {
                tracing::warn!(target: "sluice::config", reason = d.reason.as_str(), severity = d.severity.as_str(), "{line}");
                metrics::counter!("sluice_config_diagnostics_total", "reason" => d.reason.as_str(), "severity" => d.severity.as_str()).increment(1);
            }
            now_reported.insert(line);
        }
        self.reported = now_reported;
        let now = Instant::now();
        let unix = unix_now();
        let quarantined = self
            .state
            .failing(now)
            .into_iter()
            .map(|failure| Quarantined {
                retry_at: unix + failure.retry_in.as_secs_f64(),
                failure,
            })
            .collect();
        let next_sync_at = (leader && self.records.is_some())
            .then(|| schedule.wait(now))
            .flatten()
            .map(|w| unix + w.as_secs_f64());
        let sync = &self.config.sync;
        self.report_tx.send_replace(Arc::new(DnsReport {
            enabled: true,
            provider: self.provider.name().to_owned(),
            owner_id: sync.registry.owner_id().to_owned(),
            policy: sync.policy,
            dry_run: sync.dry_run,
            leader,
            desired: self.records.as_ref().map_or(0, Vec::len),
            zones: self.shown.zones.clone(),
            records: self.shown.view.clone(),
            planned: self.shown.planned,
            pending: self.shown.pending.clone(),
            quarantined,
            last_sync: self.last_sync.clone(),
            next_sync_at,
            diagnostics,
        }));
    }
}

/// What a sync that read the zones leaves to show.
#[derive(Debug, Default)]
struct Shown {
    zones: Vec<ZoneSummary>,
    view: Arc<Vec<RecordView>>,
    planned: ChangeCounts,
    pending: Vec<Change>,
    diagnostics: Vec<Diagnostic>,
}

/// The zones after a sync that wrote: the zones as read with the changes of every applied
/// group applied. `None` when nothing was written, or when writing stopped early (which
/// batches landed is then unknown: the next sync reads again).
fn after_apply(report: &SyncReport, limits: BatchLimits) -> Option<Vec<ZoneRecords>> {
    if report.dry_run || report.incomplete.is_some() || report.applied.total() == 0 {
        return None;
    }
    let failed: BTreeSet<(&str, &str)> = report
        .failures
        .iter()
        .chain(&report.quarantined)
        .map(|f| (f.zone.id.as_str(), f.name.as_str()))
        .collect();
    let mut zones = report.current.clone();
    for zr in &mut zones {
        let groups = report
            .plan
            .zones
            .iter()
            .filter(|z| z.zone.id == zr.zone.id)
            .flat_map(|z| &z.groups);
        for g in groups {
            if !failed.contains(&(zr.zone.id.as_str(), g.name.as_str())) {
                // Applied by the provider, so it applies here; a group that would not is left
                // out, and the next sync reads the truth.
                let _ = apply_to_records(&zr.zone, &mut zr.records, &g.changes, limits);
            }
        }
    }
    Some(zones)
}

/// The last plan's changes that were not applied: all of them in a dry run or when writing
/// stopped early, else those of the groups that failed or wait in quarantine.
fn pending_changes(r: &SyncReport) -> Vec<Change> {
    let all = || {
        r.plan
            .groups()
            .flat_map(|(_, g)| g.changes.iter().cloned())
            .collect::<Vec<_>>()
    };
    if r.dry_run || r.incomplete.is_some() {
        return all();
    }
    let failed: BTreeSet<(&str, &str)> = r
        .failures
        .iter()
        .chain(&r.quarantined)
        .map(|f| (f.zone.id.as_str(), f.name.as_str()))
        .collect();
    r.plan
        .groups()
        .filter(|(z, g)| failed.contains(&(z.id.as_str(), g.name.as_str())))
        .flat_map(|(_, g)| g.changes.iter().cloned())
        .collect()
}

/// The `zone` label: the zone's name, `(private)` appended for a private zone.
pub fn zone_label(zone: &Zone) -> String {
    if zone.private {
        format!("{} (private)", zone.name)
    } else {
        zone.name.clone()
    }
}

fn error_reason(e: &sluice::dns::SyncError) -> &'static str {
    match e {
        sluice::dns::SyncError::Zones(p) | sluice::dns::SyncError::Records { error: p, .. } => {
            p.label()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice::dns::{
        Filters, GroupFailure, Record, RecordType, Registry, RegistryOptions, SyncReport, Zone,
        ZoneRecords,
    };

    use super::{after_apply, pending_changes};

    fn want(host: &str) -> Record {
        Record {
            name: host.into(),
            rtype: RecordType::A,
            ttl: None,
            targets: vec!["192.0.2.1".into()],
            alias: None,
            resource: format!("ingress/default/{host}"),
        }
    }

    /// A report as a sync that applied everything but the `failed` host would make.
    fn report(failed: Option<&str>) -> (SyncReport, Vec<Record>, Registry) {
        let zone = Zone::new("Z1", "example.com", false);
        let current = vec![ZoneRecords {
            zone: zone.clone(),
            records: Vec::new(),
        }];
        let registry = Registry::new(&RegistryOptions {
            owner_id: "me".into(),
            ..Default::default()
        })
        .unwrap();
        let desired = vec![want("a.example.com"), want("b.example.com")];
        let plan = sluice::dns::plan(
            &desired,
            &current,
            &registry,
            sluice::dns::Policy::Sync,
            &Filters::default(),
        );
        let mut r = SyncReport {
            current,
            ..SyncReport::default()
        };
        r.applied.create = if failed.is_some() { 2 } else { 4 };
        if let Some(name) = failed {
            r.failures.push(GroupFailure {
                zone,
                name: name.into(),
                resources: vec![],
                error: "rejected".into(),
                failures: 1,
                retry_in: Duration::from_secs(10),
            });
        }
        r.plan = plan;
        (r, desired, registry)
    }

    #[test]
    fn after_a_sync_the_applied_groups_are_in_the_zones_and_only_failures_pend() {
        let (r, desired, registry) = report(Some("b.example.com"));
        let after = after_apply(&r, sluice::dns::BatchLimits::default()).unwrap();
        let names: Vec<&str> = after[0].records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a-a.example.com", "a.example.com"]);
        let replanned = sluice::dns::plan(
            &desired,
            &after,
            &registry,
            sluice::dns::Policy::Sync,
            &Filters::default(),
        );
        let left: Vec<String> = replanned.groups().map(|(_, g)| g.name.clone()).collect();
        assert_eq!(left, ["b.example.com"]);
        let pending: Vec<String> = pending_changes(&r)
            .iter()
            .map(|c| c.record.name.clone())
            .collect();
        assert_eq!(pending, ["b.example.com", "a-b.example.com"]);

        let (ok, _, _) = report(None);
        assert_eq!(
            after_apply(&ok, Default::default()).unwrap()[0]
                .records
                .len(),
            4
        );
        assert!(pending_changes(&ok).is_empty());
    }

    #[test]
    fn nothing_is_assumed_applied_after_a_dry_run_or_an_early_stop() {
        let (mut r, _, _) = report(None);
        r.dry_run = true;
        assert!(after_apply(&r, Default::default()).is_none());
        assert_eq!(pending_changes(&r).len(), 4);
        r.dry_run = false;
        r.incomplete = Some(sluice::dns::ProviderError::Throttled {
            operation: "ChangeResourceRecordSets",
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
        });
        assert!(after_apply(&r, Default::default()).is_none());
        assert_eq!(pending_changes(&r).len(), 4);
    }
}
