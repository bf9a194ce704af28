//! The ownership registry: ExternalDNS's TXT registry, format for format.
//!
//! Every record sluice (or ExternalDNS) manages has a TXT record beside it saying who owns it:
//!
//! - **name**: the record's first label prefixed with its lower-cased type and a dash
//!   (`a-www.example.com` for the A record of `www.example.com`, `cname-...`, `aaaa-...`);
//!   with `--txt-prefix`/`--txt-suffix` the affix goes before/after that first label
//!   (`txt-a-www.example.com`), and when the affix contains `%{record_type}` the type goes
//!   there instead of in front. A wildcard keeps its `*` (`a-*.example.com`, which Route53
//!   stores as `a-\052.example.com`) unless `--txt-wildcard-replacement` names a label to use
//!   instead.
//! - **value**: `"heritage=external-dns,external-dns/owner=<id>,external-dns/resource=ingress/<ns>/<name>"`,
//!   quotes included, as Route53 stores TXT values.
//!
//! Older formats are read too: the bare record name (ExternalDNS before 0.12, one TXT for
//! every type but AAAA), and `cname-<name>` for an A ALIAS (ExternalDNS before the type of
//! ALIAS records was fixed). They are only read and, when the records they own go away,
//! deleted; new TXT records always use the current format.
//!
//! Encrypted TXT values (`--txt-encrypt-enabled`) are not supported: such a value has no
//! readable heritage, so its record counts as foreign and is never touched.

use std::collections::{BTreeMap, HashMap};

use super::record::{RecordSet, RecordType};

/// ExternalDNS's heritage value: a TXT without it is not an ownership record.
pub const HERITAGE: &str = "external-dns";

/// The template ExternalDNS accepts inside `--txt-prefix` and `--txt-suffix`.
pub const RECORD_TYPE_TEMPLATE: &str = "%{record_type}";

/// The record types ExternalDNS's mapper recognises in a TXT name, in its order.
const MAPPER_TYPES: &[&str] = &[
    "A", "AAAA", "CNAME", "NS", "MX", "PTR", "SRV", "NAPTR", "TXT", "DNAME",
];

/// How the ownership TXT records are named (`--txt-owner-id`, `--txt-prefix`, `--txt-suffix`,
/// `--txt-wildcard-replacement`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// `--txt-owner-id`: this installation's id. Use ExternalDNS's value to take over its
    /// records.
    pub owner_id: String,
    /// `--txt-prefix` (may contain `%{record_type}`).
    pub txt_prefix: String,
    /// `--txt-suffix` (may contain `%{record_type}`); exclusive with the prefix.
    pub txt_suffix: String,
    /// `--txt-wildcard-replacement`: a label used instead of `*` in TXT names.
    pub txt_wildcard_replacement: String,
}

/// Why registry options were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No owner id.
    #[error("the TXT owner id must not be empty")]
    EmptyOwner,
    /// An owner id that would break the TXT value's `key=value,...` format.
    #[error("the TXT owner id {0:?} must not contain ',', '=', '\"' or white space")]
    BadOwner(String),
    /// Both affixes.
    #[error("--txt-prefix and --txt-suffix are mutually exclusive")]
    PrefixAndSuffix,
}

/// The labels of an ownership TXT value (the `external-dns/` keys, without the prefix).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    /// Every `external-dns/<key>=<value>`, by key.
    pub map: BTreeMap<String, String>,
}

impl Labels {
    /// The `owner` label.
    pub fn owner(&self) -> Option<&str> {
        self.map.get("owner").map(String::as_str)
    }

    /// The `resource` label (`ingress/<ns>/<name>`).
    pub fn resource(&self) -> Option<&str> {
        self.map.get("resource").map(String::as_str)
    }

    /// Parses a TXT value; `None` unless it carries `heritage=external-dns` (and no other
    /// heritage), as ExternalDNS requires. Surrounding quotes are ignored.
    pub fn parse(value: &str) -> Option<Labels> {
        let text = value.trim_matches('"');
        let mut map = BTreeMap::new();
        let mut heritage = false;
        for token in text.split(',') {
            let Some((key, val)) = token.split_once('=') else {
                continue;
            };
            if key == "heritage" {
                if val != HERITAGE {
                    return None;
                }
                heritage = true;
                continue;
            }
            if key.starts_with(HERITAGE) {
                let key = key.strip_prefix("external-dns/").unwrap_or(key);
                map.insert(key.to_string(), val.to_string());
            }
        }
        heritage.then_some(Labels { map })
    }

    /// The TXT value, quoted, keys in sorted order after the heritage (ExternalDNS's
    /// serialisation).
    pub fn serialize(&self) -> String {
        let mut out = format!("\"heritage={HERITAGE}");
        for (k, v) in &self.map {
            out.push_str(&format!(",{HERITAGE}/{k}={v}"));
        }
        out.push('"');
        out
    }
}

/// Which TXT format an ownership came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxtFormat {
    /// `a-www.example.com` (ExternalDNS 0.12 and later, and sluice).
    Current,
    /// `www.example.com` (before 0.12): owns every type of the name but AAAA.
    LegacyBare,
    /// `cname-www.example.com` owning an A ALIAS (before ExternalDNS keyed ALIAS TXT records
    /// on their real type).
    LegacyCnameAlias,
}

/// One ownership TXT record set, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The TXT record set as listed (its exact values are needed to delete it).
    pub txt: RecordSet,
    /// Its labels.
    pub labels: Labels,
}

/// Who owns what in one zone, read from its TXT records.
#[derive(Clone, Debug, Default)]
pub struct Ownership {
    /// Ownership TXT records by the (endpoint name, type) they claim; the type is `None` for a
    /// bare (pre-0.12) TXT. Endpoint names have the wildcard replacement applied, as
    /// ExternalDNS keys them.
    pub claims: HashMap<(String, Option<RecordType>), Claim>,
    /// Every TXT record set name that is not an ownership record (someone else's TXT).
    pub foreign_txt: HashMap<String, RecordSet>,
}

/// The registry: names and values of ownership records for one owner id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    owner_id: String,
    prefix: String,
    suffix: String,
    wildcard_replacement: String,
}

impl Registry {
    /// Checks and lower-cases the options (ExternalDNS lower-cases the affixes).
    pub fn new(options: &RegistryOptions) -> Result<Registry, RegistryError> {
        let owner = options.owner_id.trim();
        if owner.is_empty() {
            return Err(RegistryError::EmptyOwner);
        }
        if owner
            .chars()
            .any(|c| c == ',' || c == '=' || c == '"' || c.is_whitespace())
        {
            return Err(RegistryError::BadOwner(owner.to_string()));
        }
        if !options.txt_prefix.is_empty() && !options.txt_suffix.is_empty() {
            return Err(RegistryError::PrefixAndSuffix);
        }
        Ok(Registry {
            owner_id: owner.to_string(),
            prefix: options.txt_prefix.to_lowercase(),
            suffix: options.txt_suffix.to_lowercase(),
            wildcard_replacement: options.txt_wildcard_replacement.to_lowercase(),
        })
    }

    /// The owner id.
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    fn type_in_affix(&self) -> bool {
        self.prefix.contains(RECORD_TYPE_TEMPLATE) || self.suffix.contains(RECORD_TYPE_TEMPLATE)
    }

    /// The ownership TXT name for record `name` of type `rtype` (ExternalDNS's
    /// `ToTXTName`).
    pub fn txt_name(&self, name: &str, rtype: &RecordType) -> String {
        let t = rtype.as_str().to_ascii_lowercase();
        let prefix = self.prefix.replace(RECORD_TYPE_TEMPLATE, &t);
        let suffix = self.suffix.replace(RECORD_TYPE_TEMPLATE, &t);
        let (first, rest) = match name.split_once('.') {
            Some((f, r)) => (f, Some(r)),
            None => (name, None),
        };
        let first = if first == "*" && !self.wildcard_replacement.is_empty() {
            self.wildcard_replacement.as_str()
        } else {
            first
        };
        let first = if self.type_in_affix() {
            first.to_string()
        } else {
            format!("{t}-{first}")
        };
        match rest {
            Some(rest) => format!("{prefix}{first}{suffix}.{rest}"),
            None => format!("{prefix}{first}{suffix}"),
        }
    }

    /// The record a TXT name claims (ExternalDNS's `ToEndpointName`): the endpoint name and
    /// its type, or `None` for the type of an old-format TXT. `None` when the name does not
    /// carry this registry's affix.
    pub fn endpoint_name(&self, txt_name: &str) -> Option<(String, Option<RecordType>)> {
        let lower = txt_name.to_lowercase();
        if self.suffix.is_empty() {
            return self.drop_affix(&lower);
        }
        // Suffix: it sits after the first label and may itself contain dots.
        let dots = self.suffix.matches('.').count();
        let parts: Vec<&str> = lower.splitn(2 + dots, '.').collect();
        if parts.len() <= dots {
            return None;
        }
        let head = parts[..(1 + dots).min(parts.len())].join(".");
        let (name, rtype) = self.drop_affix(&head)?;
        if parts.len() <= 1 + dots {
            Some((name, rtype))
        } else {
            Some((format!("{name}.{}", parts[1 + dots]), rtype))
        }
    }

    fn drop_affix(&self, name: &str) -> Option<(String, Option<RecordType>)> {
        let (mut prefix, mut suffix) = (self.prefix.clone(), self.suffix.clone());
        if self.type_in_affix() {
            for t in MAPPER_TYPES {
                let lower = t.to_ascii_lowercase();
                let p = prefix.replace(RECORD_TYPE_TEMPLATE, &lower);
                let s = suffix.replace(RECORD_TYPE_TEMPLATE, &lower);
                if suffix.is_empty() {
                    if let Some(rest) = name.strip_prefix(p.as_str()) {
                        return Some((rest.to_string(), Some(RecordType::parse(t))));
                    }
                } else if let Some(rest) = name.strip_suffix(s.as_str()) {
                    return Some((rest.to_string(), Some(RecordType::parse(t))));
                }
            }
            // An old TXT written before the template was configured.
            prefix = prefix.replace(RECORD_TYPE_TEMPLATE, "");
            suffix = suffix.replace(RECORD_TYPE_TEMPLATE, "");
        }
        let rest = if suffix.is_empty() {
            name.strip_prefix(prefix.as_str())?
        } else {
            name.strip_suffix(suffix.as_str())?
        };
        Some(type_from_default_position(rest))
    }

    /// The ownership TXT value for a record of `resource` owned by this registry.
    pub fn txt_value(&self, resource: &str) -> String {
        self.labels(resource).serialize()
    }

    /// The labels this registry writes for `resource`.
    pub fn labels(&self, resource: &str) -> Labels {
        let mut map = BTreeMap::new();
        map.insert("owner".to_string(), self.owner_id.clone());
        if !resource.is_empty() {
            map.insert("resource".to_string(), resource.to_string());
        }
        Labels { map }
    }

    /// The name under which ownership of record `name` is looked up: the wildcard replacement
    /// applied to a leading `*`, as ExternalDNS does.
    pub fn lookup_name(&self, name: &str) -> String {
        match name.strip_prefix("*.") {
            Some(rest) if !self.wildcard_replacement.is_empty() => {
                format!("{}.{rest}", self.wildcard_replacement)
            }
            _ if name == "*" && !self.wildcard_replacement.is_empty() => {
                self.wildcard_replacement.clone()
            }
            _ => name.to_string(),
        }
    }

    /// Reads the ownership records of one zone.
    pub fn ownership(&self, records: &[RecordSet]) -> Ownership {
        let mut out = Ownership::default();
        for rs in records.iter().filter(|r| r.rtype == RecordType::Txt) {
            let labels = rs.values.first().and_then(|v| Labels::parse(v));
            let Some(labels) = labels else {
                out.foreign_txt.insert(rs.name.clone(), rs.clone());
                continue;
            };
            let Some((name, rtype)) = self.endpoint_name(&rs.name) else {
                // Heritage, but not our affix: another registry's record; never ours.
                out.foreign_txt.insert(rs.name.clone(), rs.clone());
                continue;
            };
            out.claims.insert(
                (name, rtype),
                Claim {
                    txt: rs.clone(),
                    labels,
                },
            );
        }
        out
    }

    /// Who owns record set `rs`, and through which TXT format: the current format first, then
    /// (for an A ALIAS) the old `cname-` TXT, then (for every type but AAAA) the bare TXT.
    pub fn owner_of<'a>(
        &self,
        ownership: &'a Ownership,
        rs: &RecordSet,
    ) -> Option<(&'a Claim, TxtFormat)> {
        let name = self.lookup_name(&rs.name);
        if let Some(c) = ownership
            .claims
            .get(&(name.clone(), Some(rs.rtype.clone())))
        {
            return Some((c, TxtFormat::Current));
        }
        if rs.rtype == RecordType::A
            && rs.alias.is_some()
            && let Some(c) = ownership
                .claims
                .get(&(name.clone(), Some(RecordType::Cname)))
        {
            return Some((c, TxtFormat::LegacyCnameAlias));
        }
        if rs.rtype != RecordType::Aaaa
            && let Some(c) = ownership.claims.get(&(name, None))
        {
            return Some((c, TxtFormat::LegacyBare));
        }
        None
    }
}

/// `a-www.example.com` -> (`www.example.com`, A); a name whose first dash-separated part is
/// not a type is an old-format TXT: (name, None).
fn type_from_default_position(name: &str) -> (String, Option<RecordType>) {
    let first = name.split('-').next().unwrap_or("");
    for t in MAPPER_TYPES {
        if first == t.to_ascii_lowercase() {
            let rest = name.strip_prefix(&format!("{first}-")).unwrap_or(name);
            return (rest.to_string(), Some(RecordType::parse(t)));
        }
    }
    (name.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(prefix: &str, suffix: &str, wild: &str) -> Registry {
        Registry::new(&RegistryOptions {
            owner_id: "sluice".into(),
            txt_prefix: prefix.into(),
            txt_suffix: suffix.into(),
            txt_wildcard_replacement: wild.into(),
        })
        .unwrap()
    }

    fn txt(name: &str, value: &str) -> RecordSet {
        RecordSet::new(name, RecordType::Txt, 300, vec![value.to_string()])
    }

    #[test]
    fn current_format_names() {
        let r = reg("", "", "");
        assert_eq!(
            r.txt_name("www.example.com", &RecordType::A),
            "a-www.example.com"
        );
        assert_eq!(
            r.txt_name("www.example.com", &RecordType::Aaaa),
            "aaaa-www.example.com"
        );
        assert_eq!(
            r.txt_name("www.example.com", &RecordType::Cname),
            "cname-www.example.com"
        );
        assert_eq!(
            r.txt_name("*.example.com", &RecordType::A),
            "a-*.example.com"
        );
        assert_eq!(r.txt_name("example", &RecordType::A), "a-example");
    }

    #[test]
    fn affixes_and_templates() {
        // As in ExternalDNS's mapper tests.
        assert_eq!(
            reg("%{record_type}-", "", "").txt_name("foo.example.com", &RecordType::Aaaa),
            "aaaa-foo.example.com"
        );
        assert_eq!(
            reg("", "-%{record_type}", "").txt_name("foo.example.com", &RecordType::Cname),
            "foo-cname.example.com"
        );
        assert_eq!(
            reg("txt-", "", "wild").txt_name("*.example.com", &RecordType::A),
            "txt-a-wild.example.com"
        );
        assert_eq!(
            reg("txt.", "", "").txt_name("www.example.com", &RecordType::A),
            "txt.a-www.example.com"
        );
        assert_eq!(
            reg("", ".foo.bar", "").txt_name("example.com", &RecordType::A),
            "a-example.foo.bar.com"
        );
    }

    #[test]
    fn endpoint_names_from_txt_names() {
        let a = Some(RecordType::A);
        let cname = Some(RecordType::Cname);
        let r = reg("", "", "");
        assert_eq!(
            r.endpoint_name("a-foo.example.com"),
            Some(("foo.example.com".into(), a.clone()))
        );
        assert_eq!(
            r.endpoint_name("cname-foo.example.com"),
            Some(("foo.example.com".into(), cname.clone()))
        );
        assert_eq!(
            r.endpoint_name("foo.example.com"),
            Some(("foo.example.com".into(), None)),
            "old format"
        );
        assert_eq!(
            r.endpoint_name("mx-foo.example.com").map(|x| x.1),
            Some(Some(RecordType::Other("MX".into())))
        );
        assert_eq!(
            reg("%{record_type}-", "", "").endpoint_name("aaaa-foo.example.com"),
            Some(("foo.example.com".into(), Some(RecordType::Aaaa)))
        );
        assert_eq!(
            reg("", "-%{record_type}", "").endpoint_name("foo-a.example.com"),
            Some(("foo.example.com".into(), a.clone()))
        );
        assert_eq!(
            reg("", ".foo.bar", "").endpoint_name("a-example.foo.bar.com"),
            Some(("example.com".into(), a.clone()))
        );
        assert_eq!(
            reg("", ".foo.bar", "").endpoint_name("a-example.foo.bar"),
            Some(("example".into(), a.clone()))
        );
        assert_eq!(reg("", ".foo.bar", "").endpoint_name("a-example.foo"), None);
        assert_eq!(
            reg("txt-", "", "").endpoint_name("txt-a-foo.example.com"),
            Some(("foo.example.com".into(), a.clone()))
        );
        assert_eq!(
            reg("txt-", "", "").endpoint_name("txt-foo.example.com"),
            Some(("foo.example.com".into(), None)),
            "old format with a prefix"
        );
        assert_eq!(reg("txt-", "", "").endpoint_name("a-foo.example.com"), None);
        assert_eq!(
            reg("", "", "").endpoint_name("A-Foo.Example.com"),
            Some(("foo.example.com".into(), a))
        );
    }

    #[test]
    fn names_round_trip_for_every_affix() {
        for r in [
            reg("", "", ""),
            reg("txt-", "", ""),
            reg("txt.", "", ""),
            reg("%{record_type}.own.", "", ""),
            reg("", "-txt", ""),
            reg("", "-%{record_type}", ""),
        ] {
            for t in [RecordType::A, RecordType::Aaaa, RecordType::Cname] {
                for name in ["www.example.com", "a.b.example.com", "*.example.com"] {
                    let txt = r.txt_name(name, &t);
                    assert_eq!(
                        r.endpoint_name(&txt),
                        Some((name.to_string(), Some(t.clone()))),
                        "{r:?} {name} {t} -> {txt}"
                    );
                }
            }
        }
    }

    #[test]
    fn values_serialise_as_externaldns_does() {
        let r = reg("", "", "");
        assert_eq!(
            r.txt_value("ingress/default/web"),
            "\"heritage=external-dns,external-dns/owner=sluice,external-dns/resource=ingress/default/web\""
        );
        let l = Labels::parse(&r.txt_value("ingress/default/web")).unwrap();
        assert_eq!(l.owner(), Some("sluice"));
        assert_eq!(l.resource(), Some("ingress/default/web"));
    }

    #[test]
    fn values_without_our_heritage_are_not_ownership() {
        assert_eq!(Labels::parse("\"v=spf1 -all\""), None);
        assert_eq!(
            Labels::parse("\"heritage=other,external-dns/owner=x\""),
            None
        );
        assert_eq!(
            Labels::parse("heritage=external-dns").unwrap().owner(),
            None
        );
        let l = Labels::parse("\"heritage=external-dns,external-dns/owner=a,junk,x=y\"").unwrap();
        assert_eq!(l.owner(), Some("a"));
        assert_eq!(l.map.len(), 1);
    }

    #[test]
    fn options_are_checked() {
        let bad = |o: &str, p: &str, s: &str| {
            Registry::new(&RegistryOptions {
                owner_id: o.into(),
                txt_prefix: p.into(),
                txt_suffix: s.into(),
                txt_wildcard_replacement: String::new(),
            })
        };
        assert_eq!(bad("", "", ""), Err(RegistryError::EmptyOwner));
        assert!(matches!(
            bad("a,b", "", ""),
            Err(RegistryError::BadOwner(_))
        ));
        assert_eq!(bad("a", "p-", "-s"), Err(RegistryError::PrefixAndSuffix));
    }

    #[test]
    fn ownership_prefers_the_current_format_then_legacy_ones() {
        let r = reg("", "", "");
        let ours = r.txt_value("ingress/default/web");
        let other = "\"heritage=external-dns,external-dns/owner=other\"";
        let zone = vec![
            txt("a-new.example.com", &ours),
            txt("new.example.com", other),
            txt("old.example.com", &ours),
            txt("cname-alias.example.com", &ours),
            txt("spf.example.com", "\"v=spf1 -all\""),
        ];
        let own = r.ownership(&zone);
        assert!(own.foreign_txt.contains_key("spf.example.com"));
        let a = |n: &str| RecordSet::new(n, RecordType::A, 300, vec!["1.2.3.4".into()]);
        let aaaa = |n: &str| RecordSet::new(n, RecordType::Aaaa, 300, vec!["::1".into()]);
        let (c, f) = r.owner_of(&own, &a("new.example.com")).unwrap();
        assert_eq!((c.labels.owner(), f), (Some("sluice"), TxtFormat::Current));
        let (c, f) = r.owner_of(&own, &a("old.example.com")).unwrap();
        assert_eq!(
            (c.labels.owner(), f),
            (Some("sluice"), TxtFormat::LegacyBare)
        );
        assert!(
            r.owner_of(&own, &aaaa("old.example.com")).is_none(),
            "the bare format never owned AAAA"
        );
        assert!(
            r.owner_of(&own, &a("alias.example.com")).is_none(),
            "cname- owns only an A ALIAS"
        );
        let mut alias = a("alias.example.com");
        alias.values.clear();
        alias.ttl = None;
        alias.alias = Some(crate::dns::record::AliasTarget {
            dns_name: "x.us-east-1.elb.amazonaws.com".into(),
            hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
            evaluate_target_health: true,
        });
        let (_, f) = r.owner_of(&own, &alias).unwrap();
        assert_eq!(f, TxtFormat::LegacyCnameAlias);
    }

    #[test]
    fn wildcard_records_with_a_replacement() {
        let r = reg("", "", "wild");
        let zone = vec![txt("a-wild.example.com", &r.txt_value("ingress/x/y"))];
        let own = r.ownership(&zone);
        let rec = RecordSet::new("*.example.com", RecordType::A, 300, vec!["1.1.1.1".into()]);
        assert!(r.owner_of(&own, &rec).is_some());
        // Without a replacement the TXT keeps the star (Route53's \052 decoded on read).
        let r = reg("", "", "");
        let zone = vec![txt("a-\\052.example.com.", &r.txt_value("ingress/x/y"))];
        let own = r.ownership(&zone);
        assert!(r.owner_of(&own, &rec).is_some());
    }
}
