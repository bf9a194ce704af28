//! The planner: `plan(desired, current, registry, policy, filters) -> Plan`, pure.
//!
//! It follows ExternalDNS's planner and TXT registry:
//! - **Ownership first.** A record is ours when its ownership TXT (see
//!   [`crate::dns::registry`]) names our owner id. The planner never updates or deletes a record
//!   that is not ours, and never creates a record on a name that holds an A, AAAA or CNAME
//!   record that is not ours (ExternalDNS's rule), nor a type whose ownership TXT names
//!   another owner, nor one whose TXT name is taken by someone else's TXT. Records of an
//!   ExternalDNS with the same owner id are ours: taking over from it changes nothing.
//! - **One winner per name and type.** When several objects want the same name and type the
//!   one that owns the current record keeps it; otherwise the one with the fewest, then lowest
//!   targets wins (ExternalDNS's `PerResource` resolver), then the lowest resource name. A
//!   CNAME wanted beside an A or AAAA is dropped.
//! - **Changes.** New records are CREATEs, changed ones UPSERTs (only when targets, a
//!   configured TTL or the ALIAS differ), removed ones DELETEs carrying the exact current values.
//!   Turning an A record into an A ALIAS (or back) is a DELETE and a CREATE, as ExternalDNS
//!   does. Each record's TXT moves with it, in the same [`Group`]: every change of one name in
//!   one zone is one group, and groups are never split across batches.
//! - **Policy.** `sync` applies everything; `upsert-only` (the default) never deletes, except
//!   a record replaced by another type on the same name; `create-only` only creates.
//! - **Zones.** A record goes to the most specific public zone holding its name, and to the
//!   most specific private zone holding it (split horizon), among the zones the filters keep.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::name::in_zone;
use super::record::{
    Action, Change, Record, RecordSet, RecordType, Zone, compare_targets, normalize_target,
};
use super::registry::{Claim, Ownership, Registry, TxtFormat};
use crate::model::{Diagnostic, Kind, ObjectRef, Reason};

/// `--dns-policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// Create, update and delete.
    Sync,
    /// Create and update, never delete (the default, as in ExternalDNS's chart).
    #[default]
    UpsertOnly,
    /// Only create.
    CreateOnly,
}

impl Policy {
    /// Parses `sync`, `upsert-only` or `create-only`.
    pub fn parse(s: &str) -> Result<Policy, String> {
        match s.trim() {
            "sync" => Ok(Policy::Sync),
            "upsert-only" => Ok(Policy::UpsertOnly),
            "create-only" => Ok(Policy::CreateOnly),
            other => Err(format!(
                "unknown DNS policy {other:?}: expected sync, upsert-only or create-only"
            )),
        }
    }

    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Sync => "sync",
            Policy::UpsertOnly => "upsert-only",
            Policy::CreateOnly => "create-only",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--aws-zone-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneType {
    /// Public hosted zones only.
    Public,
    /// Private (VPC) hosted zones only.
    Private,
}

impl ZoneType {
    /// Parses `public` or `private` (an empty string is no filter: `None`).
    pub fn parse(s: &str) -> Result<Option<ZoneType>, String> {
        match s.trim() {
            "" => Ok(None),
            "public" => Ok(Some(ZoneType::Public)),
            "private" => Ok(Some(ZoneType::Private)),
            other => Err(format!(
                "unknown zone type {other:?}: expected public or private"
            )),
        }
    }
}

/// Which names and zones sluice may touch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// `--domain-filter` (repeatable): `x` matches `x` and its subdomains, `.x` only its
    /// subdomains. Empty: every name.
    pub domain_filter: Vec<String>,
    /// `--exclude-domains` (repeatable), same matching; wins over the domain filter.
    pub exclude_domains: Vec<String>,
    /// `--zone-id-filter` (repeatable): zones whose id ends with one of these. Empty: all.
    pub zone_id_filter: Vec<String>,
    /// `--aws-zone-type`.
    pub zone_type: Option<ZoneType>,
}

fn prepare(filter: &str) -> String {
    let f = filter.trim().to_ascii_lowercase();
    f.strip_suffix('.').map(str::to_string).unwrap_or(f)
}

fn match_domain(filters: &[String], name: &str) -> bool {
    filters.iter().map(|f| prepare(f)).any(|f| {
        !f.is_empty()
            && if f.starts_with('.') {
                name.ends_with(&f)
            } else {
                in_zone(name, &f)
            }
    })
}

impl Filters {
    /// True when records named `name` (internal form) may be written.
    pub fn matches_name(&self, name: &str) -> bool {
        (self.domain_filter.iter().all(|f| prepare(f).is_empty())
            || match_domain(&self.domain_filter, name))
            && !match_domain(&self.exclude_domains, name)
    }

    /// True when `zone` is in scope: its id passes the zone id filter, its type the zone type
    /// filter, and its name matches the domain filter or is a parent of one of its domains
    /// (ExternalDNS's `--zone-match-parent`, always on: records are filtered by name anyway).
    pub fn matches_zone(&self, zone: &Zone) -> bool {
        let id_ok = self.zone_id_filter.iter().all(|f| f.trim().is_empty())
            || self.zone_id_filter.iter().any(|f| {
                let f = super::name::clean_zone_id(f.trim());
                !f.is_empty() && zone.id.ends_with(f)
            });
        let type_ok = match self.zone_type {
            None => true,
            Some(ZoneType::Public) => !zone.private,
            Some(ZoneType::Private) => zone.private,
        };
        if !id_ok || !type_ok || match_domain(&self.exclude_domains, &zone.name) {
            return false;
        }
        let includes: Vec<String> = self
            .domain_filter
            .iter()
            .map(|f| prepare(f))
            .filter(|f| !f.is_empty())
            .collect();
        includes.is_empty()
            || match_domain(&includes, &zone.name)
            || includes
                .iter()
                .any(|f| !f.starts_with('.') && in_zone(f, &zone.name))
    }
}

/// The record sets of one zone, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRecords {
    /// The zone.
    pub zone: Zone,
    /// Every record set in it.
    pub records: Vec<RecordSet>,
}

/// Every change to one name in one zone: records and their ownership TXT records, applied
/// together or not at all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    /// The zone's id.
    pub zone_id: String,
    /// The record name the changes are about.
    pub name: String,
    /// The objects whose records change (`ingress/<ns>/<name>`), sorted.
    pub resources: Vec<String>,
    /// DELETEs first, then UPSERTs, then CREATEs.
    pub changes: Vec<Change>,
}

/// Why a wanted record is not written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockReason {
    /// Outside `--domain-filter`, or inside `--exclude-domains`.
    Filtered,
    /// No hosted zone in scope holds the name.
    NoZone,
    /// The name holds an A, AAAA or CNAME record that has no ownership TXT.
    Foreign,
    /// The record (or its ownership TXT) belongs to another owner id.
    OwnedBy(String),
    /// The ownership TXT name is taken by a TXT record that is not an ownership record.
    TxtTaken(String),
    /// The ownership TXT name falls outside the zone (a record at the zone apex has its TXT
    /// at `a-<apex>`, outside the zone, as in ExternalDNS; a `--txt-prefix` ending in a dot,
    /// such as `%{record_type}-owner.`, keeps apex TXT records inside).
    TxtOutsideZone(String),
    /// A CNAME cannot be at a zone apex.
    CnameAtApex,
    /// A CNAME cannot share its name with a record of another type (here: this one, which
    /// sluice does not manage, such as a TXT or MX record).
    NameTaken(RecordType),
    /// A CNAME was wanted beside an A or AAAA record for the same name; the CNAME is dropped.
    CnameBesideOtherTypes,
    /// Writing it needs a change the policy forbids (replacing another type under
    /// create-only).
    Policy(Policy),
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::Filtered => f.write_str("outside the domain filter"),
            BlockReason::NoZone => f.write_str("no hosted zone in scope holds this name"),
            BlockReason::Foreign => f.write_str(
                "the name holds a record without an ownership TXT record; it is never touched",
            ),
            BlockReason::OwnedBy(o) => write!(f, "the record belongs to owner id {o:?}"),
            BlockReason::TxtTaken(n) => {
                write!(
                    f,
                    "its ownership TXT name {n} holds someone else's TXT record"
                )
            }
            BlockReason::TxtOutsideZone(n) => write!(
                f,
                "its ownership TXT name {n} is outside the zone (for apex records, use a TXT \
                 prefix ending in a dot, such as %{{record_type}}-owner.)"
            ),
            BlockReason::CnameAtApex => f.write_str("a CNAME cannot be at the zone apex"),
            BlockReason::NameTaken(t) => {
                write!(
                    f,
                    "the name holds a {t} record, which a CNAME cannot sit beside"
                )
            }
            BlockReason::CnameBesideOtherTypes => {
                f.write_str("a CNAME cannot sit beside A or AAAA records; the CNAME is dropped")
            }
            BlockReason::Policy(p) => write!(f, "the {p} policy forbids the change it needs"),
        }
    }
}

/// A wanted record that is not written, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blocked {
    /// Record name.
    pub name: String,
    /// Record type.
    pub rtype: RecordType,
    /// The object that wants it.
    pub resource: String,
    /// The zone it was meant for (`None` when no zone was chosen: filtered, or no zone).
    pub zone: Option<String>,
    /// Why it is not written.
    pub reason: BlockReason,
}

/// Several objects wanting different records for one name and type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conflict {
    /// Record name.
    pub name: String,
    /// Record type.
    pub rtype: RecordType,
    /// The object whose record is written.
    pub chosen: String,
    /// The others.
    pub others: Vec<String>,
}

/// The plan for one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZonePlan {
    /// The zone.
    pub zone: Zone,
    /// Its change groups, by name.
    pub groups: Vec<Group>,
    /// Record sets in the zone as read.
    pub records: usize,
    /// A, AAAA and CNAME record sets owned by us.
    pub owned: usize,
    /// A, AAAA and CNAME record sets that are not ours (no ownership TXT, or another owner).
    pub foreign: usize,
}

/// Changes by action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// CREATEs.
    pub create: usize,
    /// UPSERTs.
    pub upsert: usize,
    /// DELETEs.
    pub delete: usize,
}

impl ChangeCounts {
    /// Adds one change.
    pub fn add(&mut self, action: Action, n: usize) {
        match action {
            Action::Create => self.create += n,
            Action::Upsert => self.upsert += n,
            Action::Delete => self.delete += n,
        }
    }

    /// All changes.
    pub fn total(&self) -> usize {
        self.create + self.upsert + self.delete
    }
}

/// What a sync would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Per zone in scope, sorted by zone name then id.
    pub zones: Vec<ZonePlan>,
    /// Names wanted by several objects differently.
    pub conflicts: Vec<Conflict>,
    /// Wanted records that are not written.
    pub blocked: Vec<Blocked>,
}

impl Plan {
    /// Every group with its zone.
    pub fn groups(&self) -> impl Iterator<Item = (&Zone, &Group)> {
        self.zones
            .iter()
            .flat_map(|z| z.groups.iter().map(move |g| (&z.zone, g)))
    }

    /// Every change, by action.
    pub fn counts(&self) -> ChangeCounts {
        let mut c = ChangeCounts::default();
        for (_, g) in self.groups() {
            for ch in &g.changes {
                c.add(ch.action, 1);
            }
        }
        c
    }

    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.zones.iter().all(|z| z.groups.is_empty())
    }

    /// Warnings for wanted records that are not written (none for records outside the domain
    /// filter: that is configuration, not a problem). The diagnostic's field is the record
    /// name. Conflicts between objects are reported by [`crate::dns::desired`] already (the
    /// winner is in [`Plan::conflicts`]).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for b in &self.blocked {
            if b.reason == BlockReason::Filtered {
                continue;
            }
            if let Some((kind, obj)) = resource_object(&b.resource) {
                out.push(Diagnostic::warning(
                    Reason::DnsNotWritten,
                    kind,
                    &obj,
                    b.name.clone(),
                    match &b.zone {
                        Some(z) => {
                            format!("no {} record is written in zone {z}: {}", b.rtype, b.reason)
                        }
                        None => format!("no {} record is written: {}", b.rtype, b.reason),
                    },
                ));
            }
        }
        out
    }
}

/// The object behind a resource label: `ingress/<ns>/<name>` or `service/<ns>/<name>`.
pub fn resource_object(resource: &str) -> Option<(Kind, ObjectRef)> {
    let mut parts = resource.splitn(3, '/');
    let kind = match parts.next()? {
        "ingress" => Kind::Ingress,
        "service" => Kind::Service,
        _ => return None,
    };
    let ns = parts.next()?;
    let name = parts.next()?;
    Some((kind, ObjectRef::new(ns, name)))
}

/// The zones a name goes to: the most specific public one and the most specific private one
/// (ties: the lowest id).
pub(crate) fn zones_for<'a>(name: &str, zones: &[&'a Zone]) -> Vec<&'a Zone> {
    let mut out = Vec::new();
    for private in [false, true] {
        let best = zones
            .iter()
            .filter(|z| z.private == private && in_zone(name, &z.name))
            .min_by(|a, b| {
                b.name
                    .len()
                    .cmp(&a.name.len())
                    .then_with(|| a.id.cmp(&b.id))
            });
        out.extend(best.copied());
    }
    out
}

/// Computes the plan. `current` holds the zones listed (those outside the filters are
/// ignored) with their record sets.
pub fn plan(
    desired: &[Record],
    current: &[ZoneRecords],
    registry: &Registry,
    policy: Policy,
    filters: &Filters,
) -> Plan {
    let mut in_scope: Vec<&ZoneRecords> = current
        .iter()
        .filter(|z| filters.matches_zone(&z.zone))
        .collect();
    in_scope.sort_by(|a, b| (&a.zone.name, &a.zone.id).cmp(&(&b.zone.name, &b.zone.id)));
    let zones: Vec<&Zone> = in_scope.iter().map(|z| &z.zone).collect();
    let mut per_zone: Vec<Vec<&Record>> = vec![Vec::new(); zones.len()];
    let mut out = Plan::default();
    for d in desired {
        if !filters.matches_name(&d.name) {
            out.blocked.push(blocked(d, None, BlockReason::Filtered));
            continue;
        }
        let targets = zones_for(&d.name, &zones);
        if targets.is_empty() {
            out.blocked.push(blocked(d, None, BlockReason::NoZone));
        }
        for z in targets {
            if let Some(i) = zones.iter().position(|x| std::ptr::eq(*x, z)) {
                per_zone[i].push(d);
            }
        }
    }
    for (zr, wanted) in in_scope.iter().zip(per_zone) {
        let mut types: HashMap<&str, Vec<RecordType>> = HashMap::new();
        for r in &zr.records {
            types
                .entry(r.name.as_str())
                .or_default()
                .push(r.rtype.clone());
        }
        let ownership = registry.ownership(&zr.records);
        let our_txt = ownership
            .claims
            .values()
            .filter(|c| c.labels.owner() == Some(registry.owner_id()))
            .map(|c| c.txt.name.clone())
            .collect();
        let zp = ZonePlanner {
            zone: &zr.zone,
            registry,
            policy,
            ownership,
            types,
            our_txt,
        }
        .plan(&wanted, &zr.records, filters, &mut out);
        out.zones.push(zp);
    }
    out.blocked.sort();
    out.blocked.dedup();
    out.conflicts.sort();
    out.conflicts.dedup();
    out
}

fn blocked(d: &Record, zone: Option<&Zone>, reason: BlockReason) -> Blocked {
    Blocked {
        name: d.name.clone(),
        rtype: d.rtype.clone(),
        resource: d.resource.clone(),
        zone: zone.map(|z| z.name.clone()),
        reason,
    }
}

/// A current record set of a managed type with its ownership.
struct Current<'a> {
    rs: &'a RecordSet,
    claim: Option<(&'a Claim, TxtFormat)>,
    ours: bool,
}

struct ZonePlanner<'a> {
    zone: &'a Zone,
    registry: &'a Registry,
    policy: Policy,
    ownership: Ownership,
    /// The types of every record set in the zone, by name.
    types: HashMap<&'a str, Vec<RecordType>>,
    /// Names of the ownership TXT records that are ours.
    our_txt: BTreeSet<String>,
}

/// What happens to one record type of one name.
enum Decision<'a> {
    Delete(usize),
    Upsert(&'a Record),
    /// DELETE the current record and CREATE the wanted one (ALIAS <-> plain).
    Replace(usize, &'a Record),
    Create(&'a Record),
}

impl<'a> ZonePlanner<'a> {
    fn plan(
        &self,
        wanted: &[&'a Record],
        records: &'a [RecordSet],
        filters: &Filters,
        out: &mut Plan,
    ) -> ZonePlan {
        let mut current: BTreeMap<&str, Vec<Current<'_>>> = BTreeMap::new();
        let (mut owned, mut foreign) = (0, 0);
        for rs in records.iter().filter(|r| r.rtype.is_managed()) {
            let claim = self.registry.owner_of(&self.ownership, rs);
            let ours = rs.set_identifier.is_none()
                && claim.is_some_and(|(c, _)| c.labels.owner() == Some(self.registry.owner_id()));
            if ours {
                owned += 1;
            } else {
                foreign += 1;
            }
            if filters.matches_name(&rs.name) {
                current
                    .entry(rs.name.as_str())
                    .or_default()
                    .push(Current { rs, claim, ours });
            }
        }
        let mut wanted_by_name: BTreeMap<&str, Vec<&'a Record>> = BTreeMap::new();
        for d in wanted {
            wanted_by_name.entry(d.name.as_str()).or_default().push(d);
        }
        let names: BTreeSet<&str> = current
            .keys()
            .chain(wanted_by_name.keys())
            .copied()
            .collect();
        let mut groups = Vec::new();
        let empty = Vec::new();
        for name in names {
            let cur = current.get(name).unwrap_or(&empty);
            let want = wanted_by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(g) = self.plan_name(name, cur, want, out) {
                groups.push(g);
            }
        }
        ZonePlan {
            zone: self.zone.clone(),
            groups,
            records: records.len(),
            owned,
            foreign,
        }
    }

    /// Picks one record per type among the wanted ones.
    fn resolve(
        &self,
        name: &str,
        cur: &[Current<'_>],
        want: &[&'a Record],
        out: &mut Plan,
    ) -> BTreeMap<RecordType, &'a Record> {
        let mut by_type: BTreeMap<RecordType, Vec<&'a Record>> = BTreeMap::new();
        for d in want {
            by_type.entry(d.rtype.clone()).or_default().push(d);
        }
        if by_type.contains_key(&RecordType::Cname)
            && (by_type.contains_key(&RecordType::A) || by_type.contains_key(&RecordType::Aaaa))
        {
            for d in by_type.remove(&RecordType::Cname).unwrap_or_default() {
                out.blocked.push(blocked(
                    d,
                    Some(self.zone),
                    BlockReason::CnameBesideOtherTypes,
                ));
            }
        }
        let mut chosen = BTreeMap::new();
        for (t, mut cands) in by_type {
            cands.sort_by(|a, b| {
                compare_targets(&norm_targets(a), &norm_targets(b))
                    .then_with(|| a.resource.cmp(&b.resource))
            });
            let sticky = cur
                .iter()
                .find(|c| c.ours && c.rs.rtype == t && c.rs.set_identifier.is_none())
                .and_then(|c| c.claim.and_then(|(cl, _)| cl.labels.resource()));
            let pick = sticky
                .and_then(|res| cands.iter().find(|d| d.resource == res))
                .copied()
                .unwrap_or(cands[0]);
            let differing: Vec<String> = cands
                .iter()
                .filter(|d| d.resource != pick.resource && !same_shape(d, pick))
                .map(|d| d.resource.clone())
                .collect();
            if !differing.is_empty() {
                out.conflicts.push(Conflict {
                    name: name.to_string(),
                    rtype: t.clone(),
                    chosen: pick.resource.clone(),
                    others: differing,
                });
            }
            chosen.insert(t, pick);
        }
        chosen
    }

    fn plan_name(
        &self,
        name: &str,
        cur: &[Current<'_>],
        want: &[&'a Record],
        out: &mut Plan,
    ) -> Option<Group> {
        let chosen = self.resolve(name, cur, want, out);
        // At most one record set per type without a set identifier.
        let plain: BTreeMap<RecordType, usize> = cur
            .iter()
            .enumerate()
            .filter(|(_, c)| c.rs.set_identifier.is_none())
            .map(|(i, c)| (c.rs.rtype.clone(), i))
            .collect();
        let foreign_here = cur.iter().find(|c| !c.ours);
        let types: BTreeSet<RecordType> = plain.keys().chain(chosen.keys()).cloned().collect();
        let mut decisions = Vec::new();
        for t in types {
            match (plain.get(&t), chosen.get(&t)) {
                (Some(&i), None) => {
                    if cur[i].ours {
                        decisions.push(Decision::Delete(i));
                    }
                }
                (None, Some(d)) => {
                    if let Some(reason) = self.create_blocker(name, d, foreign_here) {
                        out.blocked.push(blocked(d, Some(self.zone), reason));
                    } else {
                        decisions.push(Decision::Create(d));
                    }
                }
                (Some(&i), Some(d)) => {
                    if !cur[i].ours {
                        out.blocked
                            .push(blocked(d, Some(self.zone), owner_reason(&cur[i])));
                    } else {
                        match difference(cur[i].rs, d) {
                            Difference::None => {}
                            Difference::Update => decisions.push(Decision::Upsert(d)),
                            Difference::Replace => decisions.push(Decision::Replace(i, d)),
                        }
                    }
                }
                (None, None) => {}
            }
        }
        let decisions = self.apply_policy(cur, decisions, out);
        self.group(name, cur, &chosen, decisions)
    }

    /// Why `d` may not be created on `name`, if it may not.
    fn create_blocker(
        &self,
        name: &str,
        d: &Record,
        foreign_here: Option<&Current<'_>>,
    ) -> Option<BlockReason> {
        if let Some(f) = foreign_here {
            return Some(owner_reason(f));
        }
        let lookup = self.registry.lookup_name(name);
        let own = self.registry.owner_id();
        let mut claims = vec![
            self.ownership
                .claims
                .get(&(lookup.clone(), Some(d.rtype.clone()))),
        ];
        if d.rtype != RecordType::Aaaa {
            claims.push(self.ownership.claims.get(&(lookup, None)));
        }
        for c in claims.into_iter().flatten() {
            if c.labels.owner() != Some(own) {
                return Some(BlockReason::OwnedBy(
                    c.labels.owner().unwrap_or_default().to_string(),
                ));
            }
        }
        let txt = self.registry.txt_name(name, &d.rtype);
        if !in_zone(&txt, &self.zone.name) {
            return Some(BlockReason::TxtOutsideZone(txt));
        }
        if !self.txt_free(&txt) {
            return Some(BlockReason::TxtTaken(txt));
        }
        if d.rtype == RecordType::Cname {
            if name == self.zone.name {
                return Some(BlockReason::CnameAtApex);
            }
            // Our own old-format TXT at the name goes away with the change (see `group`).
            let ours_here = self.our_txt.contains(name);
            if let Some(t) = self
                .types_at(name)
                .iter()
                .find(|t| !(t.is_managed() || (ours_here && **t == RecordType::Txt)))
            {
                return Some(BlockReason::NameTaken(t.clone()));
            }
        }
        None
    }

    fn types_at(&self, name: &str) -> &[RecordType] {
        self.types.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when an ownership TXT may be created at `txt`: no foreign TXT and no CNAME there.
    fn txt_free(&self, txt: &str) -> bool {
        !self.ownership.foreign_txt.contains_key(txt)
            && !self.types_at(txt).contains(&RecordType::Cname)
    }

    fn apply_policy(
        &self,
        cur: &[Current<'_>],
        decisions: Vec<Decision<'a>>,
        out: &mut Plan,
    ) -> Vec<Decision<'a>> {
        let creates: Vec<&RecordType> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Create(r) => Some(&r.rtype),
                _ => None,
            })
            .collect();
        let clashes = |a: &RecordType, b: &RecordType| {
            a != b && (*a == RecordType::Cname || *b == RecordType::Cname)
        };
        let mut kept = Vec::new();
        let mut remaining: Vec<RecordType> = Vec::new();
        let mut deleted: BTreeSet<RecordType> = BTreeSet::new();
        for d in decisions {
            match (&d, self.policy) {
                (Decision::Delete(i), Policy::UpsertOnly) => {
                    // Only a record another type replaces is deleted.
                    let t = &cur[*i].rs.rtype;
                    if creates.iter().any(|c| clashes(c, t)) {
                        deleted.insert(t.clone());
                        kept.push(d);
                    } else {
                        remaining.push(t.clone());
                    }
                }
                (Decision::Delete(i), Policy::CreateOnly) => {
                    remaining.push(cur[*i].rs.rtype.clone());
                }
                (Decision::Upsert(_) | Decision::Replace(..), Policy::CreateOnly) => {}
                (Decision::Delete(i), Policy::Sync) => {
                    deleted.insert(cur[*i].rs.rtype.clone());
                    kept.push(d);
                }
                _ => kept.push(d),
            }
        }
        // Records that stay (not deleted) must not clash with a created type.
        for c in cur.iter().filter(|c| c.rs.set_identifier.is_none()) {
            if !deleted.contains(&c.rs.rtype) && !remaining.contains(&c.rs.rtype) {
                remaining.push(c.rs.rtype.clone());
            }
        }
        let mut result = Vec::new();
        let mut dropped_creates = false;
        for d in kept {
            if let Decision::Create(r) = &d
                && remaining.iter().any(|t| clashes(t, &r.rtype))
            {
                out.blocked.push(blocked(
                    r,
                    Some(self.zone),
                    BlockReason::Policy(self.policy),
                ));
                dropped_creates = true;
                continue;
            }
            result.push(d);
        }
        if dropped_creates && self.policy == Policy::UpsertOnly {
            // A delete kept only for a create that is now dropped goes too.
            let creates: Vec<RecordType> = result
                .iter()
                .filter_map(|d| match d {
                    Decision::Create(r) => Some(r.rtype.clone()),
                    _ => None,
                })
                .collect();
            result.retain(|d| match d {
                Decision::Delete(i) => creates.iter().any(|c| clashes(c, &cur[*i].rs.rtype)),
                _ => true,
            });
        }
        result
    }

    /// Turns the decisions of one name into its change group, TXT records included.
    fn group(
        &self,
        name: &str,
        cur: &[Current<'_>],
        chosen: &BTreeMap<RecordType, &'a Record>,
        decisions: Vec<Decision<'a>>,
    ) -> Option<Group> {
        let own = self.registry.owner_id();
        // The records of ours on this name after the changes, with their resource (None: kept
        // as they are, TXT untouched).
        let mut after: BTreeMap<RecordType, Option<String>> = BTreeMap::new();
        for c in cur.iter().filter(|c| c.ours) {
            // Create-only never rewrites what exists, TXT records included.
            let res = chosen
                .get(&c.rs.rtype)
                .filter(|_| self.policy != Policy::CreateOnly)
                .map(|d| d.resource.clone());
            after.insert(c.rs.rtype.clone(), res);
        }
        let (mut deletes, mut upserts, mut creates) = (Vec::new(), Vec::new(), Vec::new());
        let mut resources = BTreeSet::new();
        let mut deleted_records: Vec<&Current<'_>> = Vec::new();
        for d in &decisions {
            match d {
                Decision::Delete(i) => {
                    let c = &cur[*i];
                    deletes.push(change(Action::Delete, c.rs.clone()));
                    after.remove(&c.rs.rtype);
                    deleted_records.push(c);
                    if let Some(r) = c.claim.and_then(|(cl, _)| cl.labels.resource()) {
                        resources.insert(r.to_string());
                    }
                }
                Decision::Upsert(r) => {
                    upserts.push(change(Action::Upsert, r.to_record_set()));
                    resources.insert(r.resource.clone());
                }
                Decision::Replace(i, r) => {
                    deletes.push(change(Action::Delete, cur[*i].rs.clone()));
                    creates.push(change(Action::Create, r.to_record_set()));
                    resources.insert(r.resource.clone());
                }
                Decision::Create(r) => {
                    creates.push(change(Action::Create, r.to_record_set()));
                    after.insert(r.rtype.clone(), Some(r.resource.clone()));
                    resources.insert(r.resource.clone());
                }
            }
        }
        // Ownership TXT records of the records that stay or arrive.
        let lookup = self.registry.lookup_name(name);
        for (t, res) in &after {
            let Some(res) = res else { continue };
            let want = self.registry.labels(res);
            match self
                .ownership
                .claims
                .get(&(lookup.clone(), Some(t.clone())))
            {
                Some(c) if c.labels.owner() == Some(own) => {
                    if c.labels.owner() != want.owner() || c.labels.resource() != want.resource() {
                        let mut txt = c.txt.clone();
                        txt.values = vec![want.serialize()];
                        upserts.push(change(Action::Upsert, txt));
                        resources.insert(res.clone());
                    }
                }
                Some(_) => {}
                None => {
                    let txt = self.registry.txt_name(name, t);
                    if in_zone(&txt, &self.zone.name) && self.txt_free(&txt) {
                        creates.push(change(
                            Action::Create,
                            RecordSet::new(
                                &txt,
                                RecordType::Txt,
                                super::DEFAULT_TTL,
                                vec![want.serialize()],
                            ),
                        ));
                        resources.insert(res.clone());
                    }
                }
            }
        }
        // Ownership TXT records of deleted records: the current-format one unless the same
        // type stays; the legacy ones once no record of ours is left on the name.
        let mut txt_deletes: Vec<&RecordSet> = Vec::new();
        for c in &deleted_records {
            let Some((claim, format)) = c.claim else {
                continue;
            };
            let remove = match format {
                TxtFormat::Current => !after.contains_key(&c.rs.rtype),
                TxtFormat::LegacyBare | TxtFormat::LegacyCnameAlias => after.is_empty(),
            };
            if remove && !txt_deletes.contains(&&claim.txt) {
                txt_deletes.push(&claim.txt);
            }
        }
        // A new CNAME cannot sit beside our old-format TXT at its own name: that TXT goes.
        let cname_created = decisions
            .iter()
            .any(|d| matches!(d, Decision::Create(r) if r.rtype == RecordType::Cname));
        let bare = self
            .ownership
            .claims
            .get(&(self.registry.lookup_name(name), None));
        let bare_here = bare.filter(|c| cname_created && c.txt.name == name);
        // A legacy TXT can only go once nothing of ours uses it, including records this plan
        // keeps through the same legacy TXT.
        if !after.is_empty() {
            txt_deletes.retain(|t| {
                cur.iter()
                    .filter(|c| c.ours && after.contains_key(&c.rs.rtype))
                    .all(|c| c.claim.is_none_or(|(cl, _)| &cl.txt != *t))
            });
        }
        if let Some(c) = bare_here
            && !txt_deletes.contains(&&c.txt)
        {
            txt_deletes.push(&c.txt);
        }
        for t in txt_deletes {
            deletes.push(change(Action::Delete, t.clone()));
        }
        let mut changes = deletes;
        changes.extend(upserts);
        changes.extend(creates);
        if changes.is_empty() {
            return None;
        }
        Some(Group {
            zone_id: self.zone.id.clone(),
            name: name.to_string(),
            resources: resources.into_iter().collect(),
            changes,
        })
    }
}

fn change(action: Action, record: RecordSet) -> Change {
    Change { action, record }
}

fn owner_reason(c: &Current<'_>) -> BlockReason {
    match c.claim.and_then(|(cl, _)| cl.labels.owner()) {
        Some(o) => BlockReason::OwnedBy(o.to_string()),
        None => BlockReason::Foreign,
    }
}

fn norm_targets(d: &Record) -> Vec<String> {
    let t = if d.alias.is_some() {
        RecordType::Cname
    } else {
        d.rtype.clone()
    };
    let mut v: Vec<String> = d.targets.iter().map(|x| normalize_target(&t, x)).collect();
    v.sort();
    v.dedup();
    v
}

fn same_shape(a: &Record, b: &Record) -> bool {
    a.rtype == b.rtype && a.ttl == b.ttl && a.alias == b.alias && norm_targets(a) == norm_targets(b)
}

enum Difference {
    None,
    Update,
    Replace,
}

fn difference(cur: &RecordSet, d: &Record) -> Difference {
    match (&cur.alias, &d.alias) {
        (Some(_), None) | (None, Some(_)) => Difference::Replace,
        (Some(ca), Some(da)) => {
            let same = cur.targets() == norm_targets(d)
                && ca.evaluate_target_health == da.evaluate_target_health
                && ca.hosted_zone_id.eq_ignore_ascii_case(&da.hosted_zone_id);
            if same {
                Difference::None
            } else {
                Difference::Update
            }
        }
        (None, None) => {
            let ttl_differs = d.ttl.is_some_and(|t| cur.ttl != Some(t));
            if ttl_differs || cur.targets() != norm_targets(d) {
                Difference::Update
            } else {
                Difference::None
            }
        }
    }
}

#[cfg(test)]
mod tests;
