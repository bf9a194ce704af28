//! Batching: groups of changes into the fewest ChangeResourceRecordSets calls Route53 allows,
//! and splitting a rejected batch to find the group it rejects.
//!
//! Route53's quotas for one call: at most 1000 `ResourceRecord` elements and 32 000
//! characters in all `Value` elements, where an UPSERT counts twice for both (TXT values are
//! counted with their quotes). A [`Group`] (one name's records and their ownership TXT
//! records) is never split. Groups are packed first-fit by decreasing size, measured on the
//! limit they fill the most: with groups as small as these (a few elements, a few hundred
//! characters) every batch but the last ends up within one group of full, which is the fewest
//! calls the limits allow, give or take one call when group sizes vary.

use super::plan::{Group, Plan};
use super::record::{Change, Zone};

/// Route53's limits for one ChangeResourceRecordSets call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// `ResourceRecord` elements (an UPSERT counts twice). Route53: 1000.
    pub max_records: usize,
    /// Characters of all values (an UPSERT counts twice). Route53: 32 000.
    pub max_chars: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_records: 1000,
            max_chars: 32_000,
        }
    }
}

/// The changes of one call: whole groups of one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The zone.
    pub zone: Zone,
    /// Its groups, by name.
    pub groups: Vec<Group>,
}

impl Batch {
    /// Every change, group after group (each group's DELETEs before its CREATEs).
    pub fn changes(&self) -> Vec<Change> {
        self.groups
            .iter()
            .flat_map(|g| g.changes.iter().cloned())
            .collect()
    }

    /// `(elements, characters)` as Route53 counts them.
    pub fn weight(&self) -> (usize, usize) {
        self.groups.iter().map(group_weight).fold((0, 0), add)
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.changes.len()).sum()
    }

    /// True when there is no change.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn add(a: (usize, usize), b: (usize, usize)) -> (usize, usize) {
    (a.0 + b.0, a.1 + b.1)
}

/// `(elements, characters)` of one group.
pub fn group_weight(g: &Group) -> (usize, usize) {
    g.changes.iter().map(Change::weight).fold((0, 0), add)
}

fn fits(w: (usize, usize), limits: BatchLimits) -> bool {
    w.0 <= limits.max_records && w.1 <= limits.max_chars
}

/// The result of [`batches`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batches {
    /// Calls to make, zone by zone.
    pub batches: Vec<Batch>,
    /// Groups larger than one call allows: they can never be applied.
    pub oversized: Vec<(Zone, Group)>,
}

/// Packs every group of `plan` into batches.
pub fn batches(plan: &Plan, limits: BatchLimits) -> Batches {
    let mut out = Batches::default();
    for zp in &plan.zones {
        let packed = pack(&zp.zone, zp.groups.clone(), limits);
        out.batches.extend(packed.batches);
        out.oversized.extend(packed.oversized);
    }
    out
}

/// Packs the groups of one zone into batches (see the module documentation).
pub fn pack(zone: &Zone, groups: Vec<Group>, limits: BatchLimits) -> Batches {
    let mut out = Batches::default();
    let size = |w: (usize, usize)| -> f64 {
        let r = w.0 as f64 / limits.max_records.max(1) as f64;
        let c = w.1 as f64 / limits.max_chars.max(1) as f64;
        r.max(c)
    };
    let mut items: Vec<(f64, (usize, usize), Group)> = Vec::with_capacity(groups.len());
    for g in groups {
        let w = group_weight(&g);
        if !fits(w, limits) {
            out.oversized.push((zone.clone(), g));
        } else {
            items.push((size(w), w, g));
        }
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.name.cmp(&b.2.name)));
    let mut bins: Vec<((usize, usize), Vec<Group>)> = Vec::new();
    for (_, w, g) in items {
        match bins
            .iter_mut()
            .find(|(used, _)| fits(add(*used, w), limits))
        {
            Some((used, gs)) => {
                *used = add(*used, w);
                gs.push(g);
            }
            None => bins.push((w, vec![g])),
        }
    }
    for (_, mut gs) in bins {
        gs.sort_by(|a, b| a.name.cmp(&b.name));
        out.batches.push(Batch {
            zone: zone.clone(),
            groups: gs,
        });
    }
    out
}

/// Splits a rejected batch in two halves of its groups, so that the caller can find the
/// group Route53 rejects by trying each half; `None` for a batch of one group (that group is
/// the one rejected).
pub fn split(batch: &Batch) -> Option<(Batch, Batch)> {
    if batch.groups.len() < 2 {
        return None;
    }
    let mid = batch.groups.len() / 2;
    Some((
        Batch {
            zone: batch.zone.clone(),
            groups: batch.groups[..mid].to_vec(),
        },
        Batch {
            zone: batch.zone.clone(),
            groups: batch.groups[mid..].to_vec(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::record::{Action, RecordSet, RecordType};

    fn group(name: &str, values: usize, chars_each: usize, action: Action) -> Group {
        Group {
            zone_id: "Z1".into(),
            name: name.into(),
            resources: vec!["ingress/default/x".into()],
            changes: vec![Change {
                action,
                record: RecordSet::new(
                    name,
                    RecordType::Txt,
                    300,
                    (0..values).map(|_| "x".repeat(chars_each)).collect(),
                ),
            }],
        }
    }

    fn zone() -> Zone {
        Zone::new("Z1", "example.com", false)
    }

    #[test]
    fn elements_limit_counts_upserts_twice() {
        let groups: Vec<Group> = (0..1000)
            .map(|i| group(&format!("h{i:04}.example.com"), 1, 1, Action::Upsert))
            .collect();
        let b = pack(&zone(), groups, BatchLimits::default());
        assert_eq!(b.batches.len(), 2, "2000 counted elements need two calls");
        for batch in &b.batches {
            assert!(batch.weight().0 <= 1000);
        }
    }

    #[test]
    fn characters_limit_binds_first_for_long_values() {
        // 100 characters per group: 320 groups per call.
        let groups: Vec<Group> = (0..1000)
            .map(|i| group(&format!("h{i:04}.example.com"), 1, 100, Action::Create))
            .collect();
        let b = pack(&zone(), groups, BatchLimits::default());
        assert_eq!(b.batches.len(), 4); // ceil(1000 / 320)
        let sizes: Vec<usize> = b.batches.iter().map(|x| x.groups.len()).collect();
        assert_eq!(sizes, vec![320, 320, 320, 40]);
    }

    #[test]
    fn oversized_groups_are_reported_not_sent() {
        let b = pack(
            &zone(),
            vec![
                group("big.example.com", 1, 40_000, Action::Create),
                group("ok.example.com", 1, 10, Action::Create),
            ],
            BatchLimits::default(),
        );
        assert_eq!(b.oversized.len(), 1);
        assert_eq!(b.batches.len(), 1);
        assert_eq!(b.batches[0].groups[0].name, "ok.example.com");
    }

    #[test]
    fn split_halves_by_group_down_to_one() {
        let groups: Vec<Group> = (0..5)
            .map(|i| group(&format!("h{i}.example.com"), 1, 1, Action::Create))
            .collect();
        let batch = Batch {
            zone: zone(),
            groups,
        };
        let (a, b) = split(&batch).unwrap();
        assert_eq!((a.groups.len(), b.groups.len()), (2, 3));
        let (c, d) = split(&a).unwrap();
        assert_eq!((c.groups.len(), d.groups.len()), (1, 1));
        assert!(split(&c).is_none());
    }
}
