//! Records: what sluice wants ([`Record`]), what a zone holds ([`RecordSet`]), and the changes
//! between them ([`Change`]).

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use super::name;

/// The TTL written when a record does not set one (ExternalDNS's default too).
pub const DEFAULT_TTL: u32 = 300;

/// A DNS record type. sluice writes A, AAAA, CNAME and TXT; zones hold others too.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// IPv4 address (or an ALIAS answering with IPv4).
    A,
    /// IPv6 address (or an ALIAS answering with IPv6).
    Aaaa,
    /// Canonical name.
    Cname,
    /// Text (ownership records).
    Txt,
    /// Any other type, upper-case as Route53 spells it (NS, SOA, MX...). Never written.
    Other(String),
}

impl RecordType {
    /// Upper-case name, as Route53 spells it.
    pub fn as_str(&self) -> &str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
            RecordType::Other(s) => s,
        }
    }

    /// Parses a type name, any case.
    pub fn parse(s: &str) -> RecordType {
        match s.to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::Aaaa,
            "CNAME" => RecordType::Cname,
            "TXT" => RecordType::Txt,
            other => RecordType::Other(other.to_string()),
        }
    }

    /// The types sluice manages (ExternalDNS's default `--managed-record-types`).
    pub fn is_managed(&self) -> bool {
        matches!(self, RecordType::A | RecordType::Aaaa | RecordType::Cname)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Route53 ALIAS details of a desired A or AAAA record: the target (the record's single
/// target) lives in the hosted zone `hosted_zone_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Alias {
    /// The canonical hosted zone of the target (an ELB's, CloudFront's...).
    pub hosted_zone_id: String,
    /// Route53's `EvaluateTargetHealth` (ExternalDNS's default: true).
    pub evaluate_target_health: bool,
}

/// A record sluice wants, and which Kubernetes object wants it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// Internal-form name (lower-case, no trailing dot; `*.x` for wildcards).
    pub name: String,
    /// A, AAAA or CNAME.
    pub rtype: RecordType,
    /// The TTL asked for; `None` writes [`DEFAULT_TTL`] and never triggers an update by itself
    /// (as in ExternalDNS). Always `None` for an ALIAS.
    pub ttl: Option<u32>,
    /// Normalised targets (canonical IP text, or lower-case names without trailing dot), sorted
    /// and without duplicates. CNAME and ALIAS records have exactly one.
    pub targets: Vec<String>,
    /// Set for a Route53 ALIAS.
    pub alias: Option<Alias>,
    /// The owning object, as ExternalDNS names it: `ingress/<ns>/<name>` or
    /// `service/<ns>/<name>`.
    pub resource: String,
}

impl Record {
    /// The record set to write for this record.
    pub fn to_record_set(&self) -> RecordSet {
        match &self.alias {
            Some(alias) => RecordSet {
                name: self.name.clone(),
                rtype: self.rtype.clone(),
                ttl: None,
                values: Vec::new(),
                alias: Some(AliasTarget {
                    dns_name: self.targets.first().cloned().unwrap_or_default(),
                    hosted_zone_id: alias.hosted_zone_id.clone(),
                    evaluate_target_health: alias.evaluate_target_health,
                }),
                set_identifier: None,
            },
            None => RecordSet {
                name: self.name.clone(),
                rtype: self.rtype.clone(),
                ttl: Some(self.ttl.unwrap_or(DEFAULT_TTL)),
                values: self.targets.clone(),
                alias: None,
                set_identifier: None,
            },
        }
    }
}

/// The target of a Route53 ALIAS record set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AliasTarget {
    /// The target name.
    pub dns_name: String,
    /// The hosted zone the target lives in.
    pub hosted_zone_id: String,
    /// Route53's `EvaluateTargetHealth`.
    pub evaluate_target_health: bool,
}

/// One record set of a zone, as a provider lists it or as a change writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordSet {
    /// Internal-form name (see [`name::normalize`]).
    pub name: String,
    /// Type.
    pub rtype: RecordType,
    /// TTL; `None` for ALIAS record sets.
    pub ttl: Option<u32>,
    /// Values exactly as the provider holds them (TXT values with their quotes). Empty for an
    /// ALIAS.
    pub values: Vec<String>,
    /// Set for an ALIAS.
    pub alias: Option<AliasTarget>,
    /// Route53 routing-policy records (weighted, latency...) carry one; sluice never writes
    /// them and never touches them.
    pub set_identifier: Option<String>,
}

impl RecordSet {
    /// A plain record set (no ALIAS, no set identifier).
    pub fn new(name: &str, rtype: RecordType, ttl: u32, values: Vec<String>) -> RecordSet {
        RecordSet {
            name: name::normalize(name),
            rtype,
            ttl: Some(ttl),
            values,
            alias: None,
            set_identifier: None,
        }
    }

    /// The record's targets in normalised form, sorted: values for A/AAAA/CNAME, the alias
    /// target for an ALIAS.
    pub fn targets(&self) -> Vec<String> {
        let mut t: Vec<String> = match &self.alias {
            Some(a) => vec![normalize_target(&RecordType::Cname, &a.dns_name)],
            None => self
                .values
                .iter()
                .map(|v| normalize_target(&self.rtype, v))
                .collect(),
        };
        t.sort();
        t.dedup();
        t
    }

    /// `(ResourceRecord elements, characters of values)` as Route53 counts them for one
    /// change of this record set (before the UPSERT doubling). An ALIAS counts as one element
    /// with its target name's characters, as ExternalDNS counts it: Route53 documents no count
    /// for aliases, so this errs on the side of smaller batches.
    pub fn weight(&self) -> (usize, usize) {
        match &self.alias {
            Some(a) => (1, a.dns_name.chars().count()),
            None => (
                self.values.len(),
                self.values.iter().map(|v| v.chars().count()).sum(),
            ),
        }
    }
}

/// Normalises a target for comparison: canonical text for IP addresses, lower case without a
/// trailing dot for names; TXT values are kept as they are.
pub fn normalize_target(rtype: &RecordType, value: &str) -> String {
    match rtype {
        RecordType::Txt | RecordType::Other(_) => value.to_string(),
        _ => {
            let v = value.trim();
            match v.parse::<IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => name::normalize(v),
            }
        }
    }
}

/// ExternalDNS's order on target lists (`Targets.IsLess`): fewer targets first; then, target
/// by target in sorted order, IP addresses before names, addresses by value, names by text.
pub fn compare_targets(a: &[String], b: &[String]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        for (x, y) in a.iter().zip(b) {
            if x == y {
                continue;
            }
            let o = match (x.parse::<IpAddr>(), y.parse::<IpAddr>()) {
                (Ok(p), Ok(q)) => p.cmp(&q),
                (Ok(_), Err(_)) => Ordering::Less,
                (Err(_), Ok(_)) => Ordering::Greater,
                (Err(_), Err(_)) => x.cmp(y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    })
}

/// What a change does, as Route53 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Remove a record set; the values must match the current ones exactly.
    Delete,
    /// Create or replace.
    Upsert,
    /// Create; fails when the record set exists.
    Create,
}

impl Action {
    /// `CREATE`, `UPSERT` or `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "CREATE",
            Action::Upsert => "UPSERT",
            Action::Delete => "DELETE",
        }
    }

    /// Lower-case name, used as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Upsert => "upsert",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to one record set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// What to do.
    pub action: Action,
    /// The record set to create or upsert, or the exact current one to delete.
    pub record: RecordSet,
}

impl Change {
    /// `(ResourceRecord elements, characters)` this change counts for in a batch: an UPSERT
    /// counts twice (Route53 quotas, "Number of elements and characters in
    /// ChangeResourceRecordSets requests").
    pub fn weight(&self) -> (usize, usize) {
        let (n, c) = self.record.weight();
        if self.action == Action::Upsert {
            (2 * n, 2 * c)
        } else {
            (n, c)
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.action, self.record.name, self.record.rtype
        )
    }
}

/// A hosted zone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone {
    /// Id without `/hostedzone/`.
    pub id: String,
    /// Internal-form name (`example.com`).
    pub name: String,
    /// A private (VPC) zone.
    pub private: bool,
}

impl Zone {
    /// A zone, normalising the id and the name.
    pub fn new(id: &str, name: &str, private: bool) -> Zone {
        Zone {
            id: name::clean_zone_id(id).to_string(),
            name: name::normalize(name),
            private,
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn targets_compare_as_externaldns_does() {
        assert_eq!(compare_targets(&s(&["b"]), &s(&["a", "b"])), Ordering::Less);
        assert_eq!(
            compare_targets(&s(&["10.0.0.9"]), &s(&["10.0.0.10"])),
            Ordering::Less,
            "addresses by value, not text"
        );
        assert_eq!(
            compare_targets(&s(&["1-2-3-4.example.com"]), &s(&["1.2.3.4"])),
            Ordering::Greater,
            "addresses before names"
        );
        assert_eq!(compare_targets(&s(&["a.x"]), &s(&["b.x"])), Ordering::Less);
        assert_eq!(compare_targets(&s(&["a.x"]), &s(&["a.x"])), Ordering::Equal);
    }

    #[test]
    fn targets_normalise_per_type() {
        assert_eq!(
            normalize_target(&RecordType::Aaaa, "2001:DB8:0:0::1"),
            "2001:db8::1"
        );
        assert_eq!(
            normalize_target(&RecordType::Cname, "LB.Example.com."),
            "lb.example.com"
        );
        assert_eq!(normalize_target(&RecordType::Txt, "\"A\""), "\"A\"");
    }

    #[test]
    fn upsert_counts_twice() {
        let rs = RecordSet::new(
            "a.example.com",
            RecordType::Txt,
            300,
            vec!["\"abc\"".into()],
        );
        let c = Change {
            action: Action::Create,
            record: rs.clone(),
        };
        assert_eq!(c.weight(), (1, 5), "TXT quotes are characters");
        let u = Change {
            action: Action::Upsert,
            record: rs,
        };
        assert_eq!(u.weight(), (2, 10));
    }

    #[test]
    fn alias_record_sets_have_no_ttl() {
        let r = Record {
            name: "a.example.com".into(),
            rtype: RecordType::A,
            ttl: None,
            targets: vec!["lb.us-east-1.elb.amazonaws.com".into()],
            alias: Some(Alias {
                hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
                evaluate_target_health: true,
            }),
            resource: "ingress/default/web".into(),
        };
        let rs = r.to_record_set();
        assert_eq!(rs.ttl, None);
        assert!(rs.values.is_empty());
        assert_eq!(rs.targets(), r.targets);
    }
}
