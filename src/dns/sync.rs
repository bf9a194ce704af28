//! One sync: read zones and records, plan, apply in batches, isolate rejected groups.
//!
//! [`sync`] is generic over [`DnsProvider`] and holds no state of its own: everything that
//! must survive from one sync to the next (which groups Route53 rejected, and when to try each
//! again) lives in a [`SyncState`] the caller owns. Every sync reads the zones before writing,
//! so a restarted caller (a new `SyncState`) simply converges from what is there: a change
//! that landed before a crash is not planned again, one that did not is.
//!
//! **Rejections.** Route53 applies a batch atomically, so one bad change (a CREATE that
//! collides with a record made behind sluice's back, say) fails every change in it. A rejected
//! batch is split in two halves of its groups and each half is sent again, down to the single
//! group that still fails (about `2 log2(groups)` extra calls for one bad group, instead of
//! one call per group). That group is reported and remembered in the [`SyncState`]: later
//! syncs skip it until its backoff expires, then send it alone, while every other group
//! converges. A group whose changes differ from the rejected ones (the Ingress was fixed) is
//! not held back.
//!
//! **Throttling and transient errors.** A call that is throttled or fails transiently is
//! retried with [`Backoff`] (after the provider drained its request budget) up to
//! [`SyncOptions::call_attempts`] times; then the sync stops and reports the error in
//! [`SyncReport::incomplete`] (what was applied stays applied; the next sync re-reads).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use super::batch::{Batch, BatchLimits, pack, split};
use super::plan::{ChangeCounts, Filters, Group, Plan, Policy, ZoneRecords, plan, resource_object};
use super::provider::{CallCounts, ChangeStatus, DnsProvider, ProviderError, calls_since};
use super::record::{Change, Record, Zone};
use super::registry::Registry;
use crate::model::{Diagnostic, Reason};
use crate::pace::Backoff;

/// Everything [`sync`] needs besides the provider and the desired records.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncOptions {
    /// Owner id and TXT naming.
    pub registry: Registry,
    /// `--dns-policy`.
    pub policy: Policy,
    /// Domain and zone filters.
    pub filters: Filters,
    /// Per-call limits (Route53's by default).
    pub limits: BatchLimits,
    /// `--dns-dry-run`: plan only, write nothing.
    pub dry_run: bool,
    /// Pause between attempts of a throttled or transiently failing call (default 1 s
    /// doubling to 30 s, half of it random).
    pub call_backoff: Backoff,
    /// Attempts of one call before the sync gives up (default 6).
    pub call_attempts: u32,
    /// Pause before a rejected group is retried alone (default 10 s doubling to 10 min).
    pub group_backoff: Backoff,
}

impl SyncOptions {
    /// Defaults around `registry`: upsert-only, no filters, Route53's limits.
    pub fn new(registry: Registry) -> SyncOptions {
        SyncOptions {
            registry,
            policy: Policy::default(),
            filters: Filters::default(),
            limits: BatchLimits::default(),
            dry_run: false,
            call_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            call_attempts: 6,
            group_backoff: Backoff::new(Duration::from_secs(10), Duration::from_secs(600)),
        }
    }
}

/// A group Route53 rejected, waiting to be retried alone.
#[derive(Clone, Debug)]
struct Failing {
    zone: Zone,
    changes: Vec<Change>,
    resources: Vec<String>,
    error: String,
    failures: u32,
    backoff: Backoff,
    next: Instant,
}

/// What survives from one sync to the next: the rejected groups and their backoff. Owned by
/// the caller; a fresh one is a clean start.
#[derive(Clone, Debug, Default)]
pub struct SyncState {
    failing: HashMap<(String, String), Failing>,
}

impl SyncState {
    /// No rejected groups.
    pub fn new() -> SyncState {
        SyncState::default()
    }

    /// The rejected groups, by zone and name, with the time left before their next attempt.
    pub fn failing(&self, now: Instant) -> Vec<GroupFailure> {
        let mut out: Vec<GroupFailure> = self
            .failing
            .iter()
            .map(|((_, name), f)| failure(name, f, now))
            .collect();
        out.sort_by(|a, b| (&a.zone.name, &a.name).cmp(&(&b.zone.name, &b.name)));
        out
    }
}

/// One group that could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFailure {
    /// The zone.
    pub zone: Zone,
    /// The record name.
    pub name: String,
    /// The objects whose records are in the group (`ingress/<ns>/<name>`).
    pub resources: Vec<String>,
    /// The provider's message.
    pub error: String,
    /// Consecutive rejections.
    pub failures: u32,
    /// Time until the next attempt.
    pub retry_in: Duration,
}

fn failure(name: &str, f: &Failing, now: Instant) -> GroupFailure {
    GroupFailure {
        zone: f.zone.clone(),
        name: name.to_string(),
        resources: f.resources.clone(),
        error: f.error.clone(),
        failures: f.failures,
        retry_in: f.next.saturating_duration_since(now),
    }
}

/// What one sync did.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    /// The plan computed from what was read.
    pub plan: Plan,
    /// Changes applied, by action (none in a dry run).
    pub applied: ChangeCounts,
    /// API calls made during this sync, by operation (retries included).
    pub calls: CallCounts,
    /// ChangeResourceRecordSets calls that succeeded.
    pub batches: usize,
    /// Groups rejected during this sync (or too large for one call).
    pub failures: Vec<GroupFailure>,
    /// Groups rejected earlier and skipped this time, waiting for their backoff.
    pub quarantined: Vec<GroupFailure>,
    /// Record sets per zone in scope, as read.
    pub records_per_zone: Vec<(Zone, usize)>,
    /// The zones in scope with their record sets, as read before applying (for inspection:
    /// [`crate::dns::records_view`]).
    pub current: Vec<ZoneRecords>,
    /// Set when the sync stopped applying early (throttled or failing for every attempt).
    pub incomplete: Option<ProviderError>,
    /// True when nothing was written on purpose.
    pub dry_run: bool,
}

impl SyncReport {
    /// True when everything planned was applied.
    pub fn converged(&self) -> bool {
        self.incomplete.is_none()
            && self.failures.is_empty()
            && self.quarantined.is_empty()
            && !self.dry_run
    }

    /// Warnings for every rejected or quarantined group, on each object in it (the field is
    /// the record name), plus the plan's own diagnostics. The text does not change from one
    /// sync to the next while the problem stays the same (no countdown), so callers can report
    /// each once; the retry time is in [`GroupFailure::retry_in`].
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out = self.plan.diagnostics();
        for f in self.failures.iter().chain(&self.quarantined) {
            for res in &f.resources {
                if let Some((kind, obj)) = resource_object(res) {
                    out.push(Diagnostic::warning(
                        Reason::DnsRejected,
                        kind,
                        &obj,
                        f.name.clone(),
                        format!(
                            "the DNS provider rejected this record's changes ({}); they are \
                             retried alone with backoff while every other record is written",
                            f.error
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// Why a sync could not even plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Listing the hosted zones failed.
    #[error("listing hosted zones: {0}")]
    Zones(ProviderError),
    /// Listing the records of a zone failed.
    #[error("listing the records of zone {zone}: {error}")]
    Records {
        /// The zone.
        zone: Zone,
        /// The error.
        error: ProviderError,
    },
}

impl SyncError {
    /// True when trying again later may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Zones(e) | SyncError::Records { error: e, .. } => e.is_retryable(),
        }
    }
}

/// Calls `f` until it succeeds, fails for good, or `attempts` are spent; pauses with
/// `backoff` between attempts.
async fn retrying<T, F, Fut>(backoff: Backoff, attempts: u32, mut f: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut backoff = backoff;
    backoff.reset();
    let mut tried = 1;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && tried < attempts.max(1) => {
                tried += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            r => return r,
        }
    }
}

/// Reads every zone in scope with its records.
pub async fn read_zones(
    provider: &dyn DnsProvider,
    options: &SyncOptions,
) -> Result<Vec<ZoneRecords>, SyncError> {
    let zones = retrying(options.call_backoff, options.call_attempts, || {
        provider.list_zones()
    })
    .await
    .map_err(SyncError::Zones)?;
    let mut out = Vec::new();
    for zone in zones
        .into_iter()
        .filter(|z| options.filters.matches_zone(z))
    {
        let records = retrying(options.call_backoff, options.call_attempts, || {
            provider.list_records(&zone)
        })
        .await
        .map_err(|error| SyncError::Records {
            zone: zone.clone(),
            error,
        })?;
        out.push(ZoneRecords { zone, records });
    }
    Ok(out)
}

/// One sync of `desired` into the provider (see the module documentation).
pub async fn sync(
    provider: &dyn DnsProvider,
    desired: &[Record],
    options: &SyncOptions,
    state: &mut SyncState,
) -> Result<SyncReport, SyncError> {
    let calls_before = provider.calls();
    let current = read_zones(provider, options).await?;
    let plan = plan(
        desired,
        &current,
        &options.registry,
        options.policy,
        &options.filters,
    );
    let mut report = SyncReport {
        records_per_zone: plan
            .zones
            .iter()
            .map(|z| (z.zone.clone(), z.records))
            .collect(),
        dry_run: options.dry_run,
        ..SyncReport::default()
    };
    if !options.dry_run {
        apply_plan(provider, &plan, options, state, &mut report).await;
    }
    report.plan = plan;
    report.current = current;
    report.calls = calls_since(&calls_before, &provider.calls());
    Ok(report)
}

async fn apply_plan(
    provider: &dyn DnsProvider,
    plan: &Plan,
    options: &SyncOptions,
    state: &mut SyncState,
    report: &mut SyncReport,
) {
    let now = Instant::now();
    let mut normal: BTreeMap<&str, (&Zone, Vec<Group>)> = BTreeMap::new();
    let mut alone: Vec<Batch> = Vec::new();
    let mut seen = Vec::new();
    for (zone, g) in plan.groups() {
        let key = (zone.id.clone(), g.name.clone());
        seen.push(key.clone());
        match state.failing.get(&key) {
            Some(f) if f.changes == g.changes => {
                if f.next > now {
                    report.quarantined.push(failure(&g.name, f, now));
                } else {
                    alone.push(Batch {
                        zone: zone.clone(),
                        groups: vec![g.clone()],
                    });
                }
            }
            other => {
                if other.is_some() {
                    state.failing.remove(&key);
                }
                normal
                    .entry(zone.id.as_str())
                    .or_insert_with(|| (zone, Vec::new()))
                    .1
                    .push(g.clone());
            }
        }
    }
    // Groups that are no longer planned converged (or went away).
    state.failing.retain(|k, _| seen.contains(k));
    let mut work: VecDeque<Batch> = VecDeque::new();
    for (zone, groups) in normal.into_values() {
        let packed = pack(zone, groups, options.limits);
        for (z, g) in packed.oversized {
            let (n, c) = super::batch::group_weight(&g);
            report.failures.push(GroupFailure {
                zone: z,
                name: g.name.clone(),
                resources: g.resources.clone(),
                error: format!(
                    "the changes of this name ({n} elements, {c} characters) exceed one call's \
                     limits ({} elements, {} characters)",
                    options.limits.max_records, options.limits.max_chars
                ),
                failures: 1,
                retry_in: Duration::ZERO,
            });
        }
        work.extend(packed.batches);
    }
    work.extend(alone);
    while let Some(batch) = work.pop_front() {
        let changes = batch.changes();
        let result = retrying(options.call_backoff, options.call_attempts, || {
            provider.apply(&batch.zone, &changes)
        })
        .await;
        match result {
            Ok(_) => {
                report.batches += 1;
                for g in &batch.groups {
                    for c in &g.changes {
                        report.applied.add(c.action, 1);
                    }
                    state
                        .failing
                        .remove(&(batch.zone.id.clone(), g.name.clone()));
                }
            }
            Err(ProviderError::Rejected { message, .. }) => match split(&batch) {
                Some((a, b)) => {
                    work.push_front(b);
                    work.push_front(a);
                }
                None => {
                    for g in &batch.groups {
                        let key = (batch.zone.id.clone(), g.name.clone());
                        let f = state.failing.entry(key).or_insert_with(|| Failing {
                            zone: batch.zone.clone(),
                            changes: g.changes.clone(),
                            resources: g.resources.clone(),
                            error: String::new(),
                            failures: 0,
                            backoff: {
                                let mut b = options.group_backoff;
                                b.reset();
                                b
                            },
                            next: now,
                        });
                        f.changes = g.changes.clone();
                        f.resources = g.resources.clone();
                        f.error = message.clone();
                        f.failures += 1;
                        let delay = f.backoff.next_delay();
                        let at = Instant::now();
                        f.next = at + delay;
                        report.failures.push(failure(&g.name, f, at));
                    }
                }
            },
            Err(e) => {
                report.incomplete = Some(e);
                break;
            }
        }
    }
}

/// Why [`wait_insync`] gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Still PENDING at the deadline.
    #[error("change {0} still pending after {1:?}")]
    Timeout(String, Duration),
    /// Polling failed.
    #[error("polling change {id}: {error}")]
    Provider {
        /// The change.
        id: String,
        /// The error.
        error: ProviderError,
    },
}

/// Polls change `id` until it is INSYNC (Route53 propagated it to every authoritative
/// server), pausing with `poll` between polls, for at most `timeout`.
pub async fn wait_insync(
    provider: &dyn DnsProvider,
    id: &str,
    timeout: Duration,
    poll: Backoff,
) -> Result<(), WaitError> {
    let deadline = Instant::now() + timeout;
    let mut poll = poll;
    poll.reset();
    loop {
        match provider.change_status(id).await {
            Ok(ChangeStatus::InSync) => return Ok(()),
            Ok(ChangeStatus::Pending) => {}
            Err(e) if e.is_retryable() => {}
            Err(error) => {
                return Err(WaitError::Provider {
                    id: id.to_string(),
                    error,
                });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout(id.to_string(), timeout));
        }
        tokio::time::sleep(poll.next_delay().min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests;
