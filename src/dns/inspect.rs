//! What `/api/dns` shows: every managed record (A, AAAA, CNAME) of the zones in scope and
//! every wanted record, side by side: what is wanted, what is there, who owns it, what the
//! plan changes and why a wanted record is not written. Pure: built from what a sync read
//! and planned.

use std::collections::BTreeMap;

use super::plan::{BlockReason, Filters, Plan, ZoneRecords, zones_for};
use super::record::{Action, Record, RecordType, Zone};
use super::registry::Registry;

/// Who owns a current record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOwner {
    /// Our owner id (we may change and delete it).
    Ours,
    /// Another owner id's ownership TXT.
    Other(String),
    /// No ownership TXT (or a routing-policy record): never touched.
    Unowned,
}

impl RecordOwner {
    /// `ours`, `other` or `unowned`.
    pub fn label(&self) -> &'static str {
        match self {
            RecordOwner::Ours => "ours",
            RecordOwner::Other(_) => "other",
            RecordOwner::Unowned => "unowned",
        }
    }
}

/// One record: wanted, current, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    /// The zone it belongs to (`None`: wanted, but no zone in scope holds it or it is outside
    /// the domain filter).
    pub zone: Option<Zone>,
    /// Name (internal form).
    pub name: String,
    /// Type.
    pub rtype: RecordType,
    /// The wanted targets (empty: not wanted).
    pub desired: Vec<String>,
    /// The objects that want it (`ingress/<ns>/<name>`), the chosen one first.
    pub resources: Vec<String>,
    /// The current targets (`None`: absent).
    pub current: Option<Vec<String>>,
    /// The current record's owner (`None`: absent).
    pub owner: Option<RecordOwner>,
    /// The object named in the current record's ownership TXT.
    pub owner_resource: Option<String>,
    /// Changes the plan makes to it (a DELETE and a CREATE when an ALIAS replaces a plain
    /// record).
    pub pending: Vec<Action>,
    /// Why it is wanted but not written.
    pub blocked: Option<BlockReason>,
}

type Key = (Option<String>, String, RecordType);

fn key(zone: Option<&Zone>, name: &str, rtype: &RecordType) -> Key {
    (zone.map(|z| z.id.clone()), name.to_string(), rtype.clone())
}

fn entry<'a>(
    rows: &'a mut BTreeMap<Key, RecordView>,
    zone: Option<&Zone>,
    name: &str,
    rtype: &RecordType,
) -> &'a mut RecordView {
    rows.entry(key(zone, name, rtype))
        .or_insert_with(|| RecordView {
            zone: zone.cloned(),
            name: name.to_string(),
            rtype: rtype.clone(),
            desired: Vec::new(),
            resources: Vec::new(),
            current: None,
            owner: None,
            owner_resource: None,
            pending: Vec::new(),
            blocked: None,
        })
}

/// The rows of `/api/dns`, sorted by zone name, name and type (records without a zone
/// last). `current` holds the zones in scope as read by the sync that computed `plan`.
pub fn records_view(
    desired: &[Record],
    current: &[ZoneRecords],
    registry: &Registry,
    plan: &Plan,
    filters: &Filters,
) -> Vec<RecordView> {
    let mut rows: BTreeMap<Key, RecordView> = BTreeMap::new();
    let in_scope: Vec<&ZoneRecords> = current
        .iter()
        .filter(|z| filters.matches_zone(&z.zone))
        .collect();
    for zr in &in_scope {
        let ownership = registry.ownership(&zr.records);
        for rs in zr.records.iter().filter(|r| r.rtype.is_managed()) {
            let claim = registry.owner_of(&ownership, rs);
            let owner = match claim {
                Some((c, _)) if rs.set_identifier.is_none() => match c.labels.owner() {
                    Some(o) if o == registry.owner_id() => RecordOwner::Ours,
                    Some(o) => RecordOwner::Other(o.to_string()),
                    None => RecordOwner::Unowned,
                },
                _ => RecordOwner::Unowned,
            };
            let r = entry(&mut rows, Some(&zr.zone), &rs.name, &rs.rtype);
            r.current = Some(rs.targets());
            r.owner = Some(owner);
            r.owner_resource = claim.and_then(|(c, _)| c.labels.resource().map(str::to_string));
        }
    }
    let zones: Vec<&Zone> = in_scope.iter().map(|z| &z.zone).collect();
    let chosen: BTreeMap<(&str, &RecordType), &str> = plan
        .conflicts
        .iter()
        .map(|c| ((c.name.as_str(), &c.rtype), c.chosen.as_str()))
        .collect();
    for d in desired {
        let targets = if filters.matches_name(&d.name) {
            zones_for(&d.name, &zones)
        } else {
            Vec::new()
        };
        let places: Vec<Option<&Zone>> = if targets.is_empty() {
            vec![None]
        } else {
            targets.into_iter().map(Some).collect()
        };
        for zone in places {
            let r = entry(&mut rows, zone, &d.name, &d.rtype);
            let is_chosen = chosen
                .get(&(d.name.as_str(), &d.rtype))
                .is_none_or(|c| *c == d.resource);
            if is_chosen && (r.desired.is_empty() || r.resources.first() != Some(&d.resource)) {
                r.desired = d.targets.clone();
                r.resources.insert(0, d.resource.clone());
            } else if !r.resources.contains(&d.resource) {
                r.resources.push(d.resource.clone());
            }
        }
    }
    for zp in &plan.zones {
        for g in &zp.groups {
            for c in g.changes.iter().filter(|c| c.record.rtype.is_managed()) {
                entry(&mut rows, Some(&zp.zone), &c.record.name, &c.record.rtype)
                    .pending
                    .push(c.action);
            }
        }
    }
    let by_name: BTreeMap<&str, &Zone> = zones.iter().map(|z| (z.name.as_str(), *z)).collect();
    for b in &plan.blocked {
        let zone = b.zone.as_deref().and_then(|n| by_name.get(n).copied());
        if let Some(r) = rows.get_mut(&key(zone, &b.name, &b.rtype)) {
            r.blocked.get_or_insert_with(|| b.reason.clone());
        }
    }
    let mut out: Vec<RecordView> = rows.into_values().collect();
    out.sort_by(|a, b| {
        let zone = |v: &RecordView| v.zone.as_ref().map(|z| (z.name.clone(), z.id.clone()));
        (zone(a).is_none(), zone(a), &a.name, &a.rtype).cmp(&(
            zone(b).is_none(),
            zone(b),
            &b.name,
            &b.rtype,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::plan::{Policy, plan};
    use crate::dns::record::RecordSet;
    use crate::dns::registry::RegistryOptions;

    fn registry() -> Registry {
        Registry::new(&RegistryOptions {
            owner_id: "me".into(),
            ..Default::default()
        })
        .unwrap()
    }

    fn want(name: &str, ip: &str, resource: &str) -> Record {
        Record {
            name: name.into(),
            rtype: RecordType::A,
            ttl: None,
            targets: vec![ip.into()],
            alias: None,
            resource: resource.into(),
        }
    }

    fn a(name: &str, ip: &str) -> RecordSet {
        RecordSet::new(name, RecordType::A, 300, vec![ip.into()])
    }

    fn txt(name: &str, owner: &str, resource: &str) -> RecordSet {
        RecordSet::new(
            name,
            RecordType::Txt,
            300,
            vec![format!(
                "\"heritage=external-dns,external-dns/owner={owner},external-dns/resource={resource}\""
            )],
        )
    }

    #[test]
    fn rows_show_wanted_current_owner_pending_and_blocked() {
        let zone = Zone::new("Z1", "example.com", false);
        let current = vec![ZoneRecords {
            zone: zone.clone(),
            records: vec![
                a("same.example.com", "192.0.2.1"),
                txt("a-same.example.com", "me", "ingress/default/same"),
                a("old.example.com", "192.0.2.2"),
                txt("a-old.example.com", "me", "ingress/default/old"),
                a("theirs.example.com", "192.0.2.3"),
                txt("a-theirs.example.com", "them", "ingress/x/y"),
                a("plain.example.com", "192.0.2.4"),
                txt("a-plain.example.com", "me", ""),
            ],
        }];
        let desired = vec![
            want("new.example.com", "192.0.2.9", "ingress/default/new"),
            want("same.example.com", "192.0.2.1", "ingress/default/same"),
            want("theirs.example.com", "192.0.2.9", "ingress/default/mine"),
            want("elsewhere.test", "192.0.2.9", "ingress/default/far"),
        ];
        let (reg, filters) = (registry(), Filters::default());
        let p = plan(&desired, &current, &reg, Policy::Sync, &filters);
        let rows = records_view(&desired, &current, &reg, &p, &filters);
        let get = |n: &str| rows.iter().find(|r| r.name == n).unwrap();

        let new = get("new.example.com");
        assert_eq!(new.desired, vec!["192.0.2.9"]);
        assert_eq!(new.current, None);
        assert_eq!(new.pending, vec![Action::Create]);
        assert_eq!(new.zone.as_ref().unwrap().id, "Z1");

        let same = get("same.example.com");
        assert_eq!(
            same.current.as_deref(),
            Some(&["192.0.2.1".to_string()][..])
        );
        assert_eq!(same.owner, Some(RecordOwner::Ours));
        assert_eq!(same.owner_resource.as_deref(), Some("ingress/default/same"));
        assert!(same.pending.is_empty());

        let old = get("old.example.com");
        assert!(old.desired.is_empty());
        assert_eq!(
            old.pending,
            vec![Action::Delete],
            "sync deletes what nobody wants"
        );

        let theirs = get("theirs.example.com");
        assert_eq!(theirs.owner, Some(RecordOwner::Other("them".into())));
        assert_eq!(theirs.resources, vec!["ingress/default/mine"]);
        assert!(theirs.pending.is_empty());
        assert_eq!(theirs.blocked, Some(BlockReason::OwnedBy("them".into())));

        let far = get("elsewhere.test");
        assert_eq!(far.zone, None);
        assert_eq!(far.blocked, Some(BlockReason::NoZone));
        assert_eq!(
            rows.last().unwrap().name,
            "elsewhere.test",
            "zoneless rows last"
        );
        assert_eq!(get("plain.example.com").owner, Some(RecordOwner::Ours));
        assert!(
            rows.iter().all(|r| r.rtype != RecordType::Txt),
            "TXT records are implied"
        );
    }

    #[test]
    fn a_conflict_shows_the_chosen_object_first() {
        let zone = Zone::new("Z1", "example.com", false);
        let current = vec![ZoneRecords {
            zone,
            records: Vec::new(),
        }];
        let desired = vec![
            want("www.example.com", "192.0.2.2", "ingress/default/b"),
            want("www.example.com", "192.0.2.1", "ingress/default/a"),
        ];
        let (reg, filters) = (registry(), Filters::default());
        let p = plan(&desired, &current, &reg, Policy::Sync, &filters);
        let rows = records_view(&desired, &current, &reg, &p, &filters);
        assert_eq!(rows.len(), 1);
        let chosen = &p.conflicts[0].chosen;
        assert_eq!(&rows[0].resources[0], chosen);
        assert_eq!(rows[0].resources.len(), 2);
        let winner = desired.iter().find(|d| &d.resource == chosen).unwrap();
        assert_eq!(rows[0].desired, winner.targets);
    }
}
