//! Tests of the planner: ownership, adoption of ExternalDNS records, policies, filters, zone
//! choice, TXT formats, conflicts; and property tests (idempotence, never touching what is not
//! ours, Route53-valid groups, batches within limits).

use proptest::prelude::*;

use super::*;
use crate::dns::batch::{BatchLimits, pack};
use crate::dns::provider::apply_to_records;
use crate::dns::record::{Alias, AliasTarget};
use crate::dns::registry::RegistryOptions;

const ELB: &str = "k8s-web-1.us-east-1.elb.amazonaws.com";
const ELB_ZONE: &str = "Z35SXDOTRQ7X7K";

fn registry(owner: &str) -> Registry {
    Registry::new(&RegistryOptions {
        owner_id: owner.into(),
        ..Default::default()
    })
    .unwrap()
}

fn zone() -> Zone {
    Zone::new("/hostedzone/ZPUB", "example.com.", false)
}

fn want(name: &str, rtype: RecordType, targets: &[&str], resource: &str) -> Record {
    Record {
        name: name.into(),
        rtype,
        ttl: None,
        targets: targets.iter().map(ToString::to_string).collect(),
        alias: None,
        resource: resource.into(),
    }
}

fn want_alias(name: &str, rtype: RecordType, resource: &str) -> Record {
    Record {
        alias: Some(Alias {
            hosted_zone_id: ELB_ZONE.into(),
            evaluate_target_health: true,
        }),
        ..want(name, rtype, &[ELB], resource)
    }
}

fn a(name: &str, ip: &str) -> RecordSet {
    RecordSet::new(name, RecordType::A, 300, vec![ip.into()])
}

fn txt(name: &str, value: &str) -> RecordSet {
    RecordSet::new(name, RecordType::Txt, 300, vec![value.into()])
}

fn owned(owner: &str, resource: &str) -> String {
    format!("\"heritage=external-dns,external-dns/owner={owner},external-dns/resource={resource}\"")
}

fn run(desired: &[Record], records: Vec<RecordSet>, policy: Policy) -> Plan {
    plan(
        desired,
        &[ZoneRecords {
            zone: zone(),
            records,
        }],
        &registry("sluice"),
        policy,
        &Filters::default(),
    )
}

/// `ACTION name TYPE values` per change, group after group.
fn changes(p: &Plan) -> Vec<String> {
    p.groups()
        .flat_map(|(_, g)| g.changes.iter())
        .map(|c| {
            let v = match &c.record.alias {
                Some(al) => format!("alias:{}", al.dns_name),
                None => c.record.values.join(","),
            };
            format!("{} {} {} {}", c.action, c.record.name, c.record.rtype, v)
        })
        .collect()
}

const WEB: &str = "ingress/default/web";

#[test]
fn a_new_record_and_its_txt_are_one_group() {
    let p = run(
        &[want("www.example.com", RecordType::A, &["192.0.2.1"], WEB)],
        vec![],
        Policy::UpsertOnly,
    );
    assert_eq!(
        changes(&p),
        vec![
            "CREATE www.example.com A 192.0.2.1".to_string(),
            format!("CREATE a-www.example.com TXT {}", owned("sluice", WEB)),
        ]
    );
    let (_, g) = p.groups().next().unwrap();
    assert_eq!(g.zone_id, "ZPUB");
    assert_eq!(g.resources, vec![WEB.to_string()]);
    assert_eq!(g.changes[0].record.ttl, Some(300));
}

#[test]
fn externaldns_records_with_our_owner_id_change_nothing() {
    let mut alias_a = a("lb.example.com", "x");
    alias_a.values.clear();
    alias_a.ttl = None;
    alias_a.alias = Some(AliasTarget {
        dns_name: format!("{ELB}."),
        hosted_zone_id: ELB_ZONE.into(),
        evaluate_target_health: true,
    });
    let mut alias_aaaa = alias_a.clone();
    alias_aaaa.rtype = RecordType::Aaaa;
    let zone_records = vec![
        a("www.example.com", "192.0.2.1"),
        txt("a-www.example.com", &owned("sluice", WEB)),
        RecordSet::new(
            "cn.example.com",
            RecordType::Cname,
            60,
            vec!["Target.Example.net.".into()],
        ),
        txt("cname-cn.example.com", &owned("sluice", WEB)),
        alias_a,
        txt("a-lb.example.com", &owned("sluice", WEB)),
        alias_aaaa,
        txt("aaaa-lb.example.com", &owned("sluice", WEB)),
        RecordSet::new(
            "*.example.com",
            RecordType::A,
            300,
            vec!["192.0.2.2".into()],
        ),
        txt("a-\\052.example.com.", &owned("sluice", WEB)),
    ];
    let desired = [
        want("www.example.com", RecordType::A, &["192.0.2.1"], WEB),
        want(
            "cn.example.com",
            RecordType::Cname,
            &["target.example.net"],
            WEB,
        ),
        want_alias("lb.example.com", RecordType::A, WEB),
        want_alias("lb.example.com", RecordType::Aaaa, WEB),
        want("*.example.com", RecordType::A, &["192.0.2.2"], WEB),
    ];
    for policy in [Policy::Sync, Policy::UpsertOnly, Policy::CreateOnly] {
        let p = run(&desired, zone_records.clone(), policy);
        assert!(p.is_empty(), "{policy}: {:?}", changes(&p));
        assert!(p.blocked.is_empty(), "{:?}", p.blocked);
        assert_eq!(p.zones[0].owned, 5);
        assert_eq!(p.zones[0].foreign, 0);
    }
}

#[test]
fn foreign_records_are_never_touched() {
    let zone_records = vec![
        a("nobody.example.com", "192.0.2.50"),
        a("other.example.com", "192.0.2.51"),
        txt(
            "a-other.example.com",
            &owned("other-cluster", "ingress/x/y"),
        ),
    ];
    // Wanted with other targets: blocked, not updated.
    let p = run(
        &[
            want("nobody.example.com", RecordType::A, &["192.0.2.1"], WEB),
            want("other.example.com", RecordType::A, &["192.0.2.1"], WEB),
        ],
        zone_records.clone(),
        Policy::Sync,
    );
    assert!(p.is_empty(), "{:?}", changes(&p));
    let reasons: Vec<&BlockReason> = p.blocked.iter().map(|b| &b.reason).collect();
    assert_eq!(
        reasons,
        vec![
            &BlockReason::Foreign,
            &BlockReason::OwnedBy("other-cluster".into())
        ]
    );
    // Not wanted under sync: not deleted either.
    let p = run(&[], zone_records, Policy::Sync);
    assert!(p.is_empty());
    assert_eq!(p.zones[0].foreign, 2);
    let diags = run(
        &[want(
            "nobody.example.com",
            RecordType::A,
            &["192.0.2.1"],
            WEB,
        )],
        vec![a("nobody.example.com", "192.0.2.50")],
        Policy::Sync,
    )
    .diagnostics();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].reason, Reason::DnsNotWritten);
    assert_eq!(diags[0].object, ObjectRef::new("default", "web"));
    assert_eq!(diags[0].field, "nobody.example.com");
}

#[test]
fn no_new_type_beside_a_record_that_is_not_ours() {
    let p = run(
        &[want("www.example.com", RecordType::A, &["192.0.2.1"], WEB)],
        vec![RecordSet::new(
            "www.example.com",
            RecordType::Aaaa,
            300,
            vec!["2001:db8::9".into()],
        )],
        Policy::Sync,
    );
    assert!(p.is_empty());
    assert_eq!(p.blocked[0].reason, BlockReason::Foreign);
    // Nor where another owner's TXT claims the type, or someone's TXT holds the TXT name.
    let p = run(
        &[
            want("claimed.example.com", RecordType::A, &["192.0.2.1"], WEB),
            want("spf.example.com", RecordType::A, &["192.0.2.1"], WEB),
        ],
        vec![
            txt("a-claimed.example.com", &owned("other", "ingress/a/b")),
            txt("a-spf.example.com", "\"v=spf1 -all\""),
        ],
        Policy::Sync,
    );
    assert!(p.is_empty());
    let reasons: Vec<&BlockReason> = p.blocked.iter().map(|b| &b.reason).collect();
    assert_eq!(
        reasons,
        vec![
            &BlockReason::OwnedBy("other".into()),
            &BlockReason::TxtTaken("a-spf.example.com".into())
        ]
    );
}

#[test]
fn updates_only_when_something_differs() {
    let ours = |ip: &str, ttl: u32| {
        let mut r = a("www.example.com", ip);
        r.ttl = Some(ttl);
        vec![r, txt("a-www.example.com", &owned("sluice", WEB))]
    };
    let same = want("www.example.com", RecordType::A, &["192.0.2.1"], WEB);
    // An unset TTL never triggers an update by itself.
    assert!(
        run(
            std::slice::from_ref(&same),
            ours("192.0.2.1", 60),
            Policy::UpsertOnly
        )
        .is_empty()
    );
    let ttl = Record {
        ttl: Some(60),
        ..same.clone()
    };
    assert!(
        run(
            std::slice::from_ref(&ttl),
            ours("192.0.2.1", 60),
            Policy::UpsertOnly
        )
        .is_empty()
    );
    assert_eq!(
        changes(&run(&[ttl], ours("192.0.2.1", 300), Policy::UpsertOnly)),
        vec!["UPSERT www.example.com A 192.0.2.1"]
    );
    assert_eq!(
        changes(&run(&[same], ours("192.0.2.9", 300), Policy::UpsertOnly)),
        vec!["UPSERT www.example.com A 192.0.2.1"],
        "the TXT is unchanged, so only the record moves"
    );
}

#[test]
fn policies_decide_deletes_and_updates() {
    let current = vec![
        a("gone.example.com", "192.0.2.1"),
        txt("a-gone.example.com", &owned("sluice", WEB)),
        a("moved.example.com", "192.0.2.1"),
        txt("a-moved.example.com", &owned("sluice", WEB)),
    ];
    let desired = [
        want("moved.example.com", RecordType::A, &["192.0.2.2"], WEB),
        want("new.example.com", RecordType::A, &["192.0.2.3"], WEB),
    ];
    let sync = changes(&run(&desired, current.clone(), Policy::Sync));
    assert_eq!(
        sync,
        vec![
            "DELETE gone.example.com A 192.0.2.1".to_string(),
            format!("DELETE a-gone.example.com TXT {}", owned("sluice", WEB)),
            "UPSERT moved.example.com A 192.0.2.2".to_string(),
            "CREATE new.example.com A 192.0.2.3".to_string(),
            format!("CREATE a-new.example.com TXT {}", owned("sluice", WEB)),
        ]
    );
    let upsert = changes(&run(&desired, current.clone(), Policy::UpsertOnly));
    assert_eq!(upsert, sync[2..].to_vec());
    let create = changes(&run(&desired, current, Policy::CreateOnly));
    assert_eq!(create, sync[3..].to_vec());
}

#[test]
fn a_type_change_replaces_the_record_even_under_upsert_only() {
    let current = vec![
        a("www.example.com", "192.0.2.1"),
        txt("a-www.example.com", &owned("sluice", WEB)),
    ];
    let desired = [want(
        "www.example.com",
        RecordType::Cname,
        &["lb.example.net"],
        WEB,
    )];
    let p = run(&desired, current.clone(), Policy::UpsertOnly);
    assert_eq!(
        changes(&p),
        vec![
            "DELETE www.example.com A 192.0.2.1".to_string(),
            format!("DELETE a-www.example.com TXT {}", owned("sluice", WEB)),
            "CREATE www.example.com CNAME lb.example.net".to_string(),
            format!("CREATE cname-www.example.com TXT {}", owned("sluice", WEB)),
        ]
    );
    assert_eq!(p.groups().count(), 1, "one name, one group");
    let p = run(&desired, current, Policy::CreateOnly);
    assert!(p.is_empty());
    assert_eq!(p.blocked[0].reason, BlockReason::Policy(Policy::CreateOnly));
}

#[test]
fn plain_to_alias_is_delete_and_create() {
    let current = vec![
        a("www.example.com", "192.0.2.1"),
        txt("a-www.example.com", &owned("sluice", WEB)),
    ];
    let desired = [
        want_alias("www.example.com", RecordType::A, WEB),
        want_alias("www.example.com", RecordType::Aaaa, WEB),
    ];
    let p = run(&desired, current, Policy::UpsertOnly);
    assert_eq!(
        changes(&p),
        vec![
            "DELETE www.example.com A 192.0.2.1".to_string(),
            format!("CREATE www.example.com A alias:{ELB}"),
            format!("CREATE www.example.com AAAA alias:{ELB}"),
            format!("CREATE aaaa-www.example.com TXT {}", owned("sluice", WEB)),
        ]
    );
}

#[test]
fn legacy_txt_formats_are_read_then_upgraded() {
    // Before ExternalDNS 0.12: the TXT has the record's own name.
    let current = vec![
        a("old.example.com", "192.0.2.1"),
        txt("old.example.com", &owned("sluice", WEB)),
    ];
    let keep = [want("old.example.com", RecordType::A, &["192.0.2.1"], WEB)];
    assert_eq!(
        changes(&run(&keep, current.clone(), Policy::UpsertOnly)),
        vec![format!(
            "CREATE a-old.example.com TXT {}",
            owned("sluice", WEB)
        )],
        "ownership kept; the current-format TXT is added, the old one left"
    );
    assert_eq!(
        changes(&run(&[], current, Policy::Sync)),
        vec![
            "DELETE old.example.com A 192.0.2.1".to_string(),
            format!("DELETE old.example.com TXT {}", owned("sluice", WEB)),
        ]
    );
    // The old `cname-` TXT of an A ALIAS.
    let mut alias = a("lb.example.com", "x");
    alias.values.clear();
    alias.ttl = None;
    alias.alias = Some(AliasTarget {
        dns_name: ELB.into(),
        hosted_zone_id: ELB_ZONE.into(),
        evaluate_target_health: true,
    });
    let current = vec![alias, txt("cname-lb.example.com", &owned("sluice", WEB))];
    let p = run(
        &[want_alias("lb.example.com", RecordType::A, WEB)],
        current.clone(),
        Policy::UpsertOnly,
    );
    assert_eq!(
        changes(&p),
        vec![format!(
            "CREATE a-lb.example.com TXT {}",
            owned("sluice", WEB)
        )]
    );
    let p = run(&[], current, Policy::Sync);
    assert_eq!(changes(&p).len(), 2, "the ALIAS and its old TXT go");
}

#[test]
fn a_new_owner_object_updates_only_the_txt() {
    let current = vec![
        a("www.example.com", "192.0.2.1"),
        txt("a-www.example.com", &owned("sluice", "ingress/default/old")),
    ];
    let p = run(
        &[want("www.example.com", RecordType::A, &["192.0.2.1"], WEB)],
        current,
        Policy::UpsertOnly,
    );
    assert_eq!(
        changes(&p),
        vec![format!(
            "UPSERT a-www.example.com TXT {}",
            owned("sluice", WEB)
        )]
    );
}

#[test]
fn conflicts_keep_the_owner_else_the_lowest_targets() {
    let one = want(
        "shared.example.com",
        RecordType::A,
        &["192.0.2.9"],
        "ingress/a/one",
    );
    let two = want(
        "shared.example.com",
        RecordType::A,
        &["192.0.2.10"],
        "ingress/b/two",
    );
    let p = run(&[one.clone(), two.clone()], vec![], Policy::Sync);
    assert_eq!(changes(&p)[0], "CREATE shared.example.com A 192.0.2.9");
    assert_eq!(
        p.conflicts,
        vec![Conflict {
            name: "shared.example.com".into(),
            rtype: RecordType::A,
            chosen: "ingress/a/one".into(),
            others: vec!["ingress/b/two".into()],
        }]
    );
    // `two` owns the current record: it keeps it.
    let current = vec![
        a("shared.example.com", "192.0.2.10"),
        txt("a-shared.example.com", &owned("sluice", "ingress/b/two")),
    ];
    let p = run(&[one, two], current, Policy::Sync);
    assert!(p.is_empty(), "{:?}", changes(&p));
    assert_eq!(p.conflicts[0].chosen, "ingress/b/two");
    assert!(p.diagnostics().is_empty(), "desired() reports conflicts");
}

#[test]
fn a_cname_beside_addresses_is_dropped() {
    let p = run(
        &[
            want(
                "x.example.com",
                RecordType::A,
                &["192.0.2.1"],
                "ingress/a/one",
            ),
            want(
                "x.example.com",
                RecordType::Cname,
                &["lb.example.net"],
                "ingress/b/two",
            ),
        ],
        vec![],
        Policy::Sync,
    );
    assert_eq!(changes(&p).len(), 2);
    assert_eq!(p.blocked[0].reason, BlockReason::CnameBesideOtherTypes);
}

#[test]
fn apex_and_name_rules() {
    let p = run(
        &[
            want("example.com", RecordType::A, &["192.0.2.1"], WEB),
            want(
                "mx.example.com",
                RecordType::Cname,
                &["lb.example.net"],
                WEB,
            ),
        ],
        vec![RecordSet::new(
            "mx.example.com",
            RecordType::Other("MX".into()),
            300,
            vec!["10 mail".into()],
        )],
        Policy::Sync,
    );
    assert!(p.is_empty());
    let reasons: Vec<&BlockReason> = p.blocked.iter().map(|b| &b.reason).collect();
    assert_eq!(
        reasons,
        vec![
            &BlockReason::TxtOutsideZone("a-example.com".into()),
            &BlockReason::NameTaken(RecordType::Other("MX".into()))
        ]
    );
    // With a TXT prefix ending in a dot, the apex record's TXT is inside the zone.
    let prefixed = Registry::new(&RegistryOptions {
        owner_id: "sluice".into(),
        txt_prefix: "%{record_type}-owner.".into(),
        ..Default::default()
    })
    .unwrap();
    let p = plan(
        &[want("sub.example.com", RecordType::A, &["192.0.2.1"], WEB)],
        &[ZoneRecords {
            zone: Zone::new("ZSUB", "sub.example.com", false),
            records: vec![],
        }],
        &prefixed,
        Policy::Sync,
        &Filters::default(),
    );
    assert!(p.blocked.is_empty(), "{:?}", p.blocked);
    assert_eq!(
        changes(&p)[1],
        format!(
            "CREATE a-owner.sub.example.com TXT {}",
            owned("sluice", WEB)
        )
    );
}

#[test]
fn records_go_to_the_most_specific_zone_of_each_kind() {
    let zones = vec![
        ZoneRecords {
            zone: Zone::new("ZROOT", "example.com", false),
            records: vec![],
        },
        ZoneRecords {
            zone: Zone::new("ZSUB", "dev.example.com", false),
            records: vec![],
        },
        ZoneRecords {
            zone: Zone::new("ZPRIV", "example.com", true),
            records: vec![],
        },
        ZoneRecords {
            zone: Zone::new("ZOTHER", "example.org", false),
            records: vec![],
        },
    ];
    let desired = [
        want("api.dev.example.com", RecordType::A, &["192.0.2.1"], WEB),
        want("www.example.net", RecordType::A, &["192.0.2.1"], WEB),
    ];
    let zones_of = |filters: &Filters| -> Vec<String> {
        plan(&desired, &zones, &registry("sluice"), Policy::Sync, filters)
            .groups()
            .map(|(z, g)| format!("{} {}", z.id, g.name))
            .collect()
    };
    assert_eq!(
        zones_of(&Filters::default()),
        vec!["ZSUB api.dev.example.com", "ZPRIV api.dev.example.com"]
    );
    let public = Filters {
        zone_type: Some(ZoneType::Public),
        ..Default::default()
    };
    assert_eq!(zones_of(&public), vec!["ZSUB api.dev.example.com"]);
    let by_id = Filters {
        zone_id_filter: vec!["ZROOT".into()],
        ..Default::default()
    };
    assert_eq!(zones_of(&by_id), vec!["ZROOT api.dev.example.com"]);
    let p = plan(
        &desired,
        &zones,
        &registry("sluice"),
        Policy::Sync,
        &Filters::default(),
    );
    assert_eq!(p.blocked.len(), 1);
    assert_eq!(p.blocked[0].reason, BlockReason::NoZone);
}

#[test]
fn domain_filters_match_names_and_subdomains() {
    let f = Filters {
        domain_filter: vec!["Example.com.".into(), ".only-subs.org".into()],
        exclude_domains: vec!["internal.example.com".into()],
        ..Default::default()
    };
    assert!(f.matches_name("example.com"));
    assert!(f.matches_name("a.b.example.com"));
    assert!(!f.matches_name("badexample.com"));
    assert!(!f.matches_name("internal.example.com"));
    assert!(!f.matches_name("x.internal.example.com"));
    assert!(!f.matches_name("only-subs.org"));
    assert!(f.matches_name("a.only-subs.org"));
    assert!(Filters::default().matches_name("anything.at.all"));
    // Zones: matching or parent of a filtered domain; excluded zones never.
    let sub = Filters {
        domain_filter: vec!["dev.example.com".into()],
        ..Default::default()
    };
    assert!(sub.matches_zone(&Zone::new("Z1", "example.com", false)));
    assert!(sub.matches_zone(&Zone::new("Z2", "x.dev.example.com", false)));
    assert!(!sub.matches_zone(&Zone::new("Z3", "example.org", false)));
    let ex = Filters {
        exclude_domains: vec!["example.com".into()],
        ..Default::default()
    };
    assert!(!ex.matches_zone(&Zone::new("Z1", "example.com", false)));
    // Records outside the filter are reported, and current ones never touched.
    let p = plan(
        &[want("www.example.org", RecordType::A, &["192.0.2.1"], WEB)],
        &[ZoneRecords {
            zone: Zone::new("Z1", "example.org", false),
            records: vec![
                a("old.example.org", "192.0.2.7"),
                txt("a-old.example.org", &owned("sluice", WEB)),
            ],
        }],
        &registry("sluice"),
        Policy::Sync,
        &Filters {
            domain_filter: vec!["example.org".into()],
            exclude_domains: vec!["www.example.org".into(), "old.example.org".into()],
            ..Default::default()
        },
    );
    assert!(p.is_empty());
    assert_eq!(p.blocked[0].reason, BlockReason::Filtered);
    assert!(
        p.diagnostics().is_empty(),
        "a filtered record is no problem"
    );
}

#[test]
fn policies_and_zone_types_parse() {
    assert_eq!(Policy::parse("sync"), Ok(Policy::Sync));
    assert_eq!(Policy::parse("upsert-only"), Ok(Policy::UpsertOnly));
    assert_eq!(Policy::parse("create-only"), Ok(Policy::CreateOnly));
    assert!(Policy::parse("delete-all").is_err());
    assert_eq!(Policy::default(), Policy::UpsertOnly);
    assert_eq!(ZoneType::parse("private"), Ok(Some(ZoneType::Private)));
    assert_eq!(ZoneType::parse(""), Ok(None));
    assert!(ZoneType::parse("secret").is_err());
    assert_eq!(
        resource_object("service/ns/name"),
        Some((Kind::Service, ObjectRef::new("ns", "name")))
    );
    assert_eq!(resource_object("pod/ns/name"), None);
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

/// Names that never look like ownership TXT names (a record named `a-x` beside a record `x`
/// would put a TXT and another record on one name, which this model does not cover).
const NAMES: &[&str] = &[
    "example.com",
    "www.example.com",
    "api.example.com",
    "*.example.com",
    "deep.api.example.com",
    "shop.example.com",
];
const V4: &[&str] = &["192.0.2.1", "192.0.2.2", "198.51.100.3"];
const V6: &[&str] = &["2001:db8::1", "2001:db8::2"];
const HOSTS: &[&str] = &["lb1.example.net", "lb2.example.net"];
const RESOURCES: &[&str] = &["ingress/default/a", "ingress/default/b", "service/x/c"];

/// 0 v4, 1 v6, 2 cname, 3 alias (A + AAAA)
fn records_of(name: &str, kind: u8, t: usize, resource: &str, ttl: Option<u32>) -> Vec<Record> {
    let base = |rtype, target: &str| Record {
        name: name.into(),
        rtype,
        ttl,
        targets: vec![target.to_string()],
        alias: None,
        resource: resource.into(),
    };
    match kind {
        0 => vec![base(RecordType::A, V4[t % V4.len()])],
        1 => vec![base(RecordType::Aaaa, V6[t % V6.len()])],
        2 => vec![base(RecordType::Cname, HOSTS[t % HOSTS.len()])],
        _ => [RecordType::A, RecordType::Aaaa]
            .into_iter()
            .map(|rt| Record {
                ttl: None,
                alias: Some(Alias {
                    hosted_zone_id: ELB_ZONE.into(),
                    evaluate_target_health: t.is_multiple_of(2),
                }),
                ..base(rt, ELB)
            })
            .collect(),
    }
}

/// (name, kind, target, resource, ttl)
fn desired_strategy() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(
        (
            0..NAMES.len(),
            0u8..4,
            0usize..3,
            0..RESOURCES.len(),
            prop::option::of(prop::sample::select(vec![60u32, 300])),
        ),
        0..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .flat_map(|(n, k, t, r, ttl)| records_of(NAMES[n], k, t, RESOURCES[r], ttl))
            .collect()
    })
}

/// A valid zone: records with ownership 0 none, 1 ours, 2 another owner, 3 ours in the bare
/// old format; plus foreign TXT records.
fn zone_strategy() -> impl Strategy<Value = Vec<RecordSet>> {
    (
        prop::collection::vec(
            (
                0..NAMES.len(),
                0u8..4,
                0usize..3,
                0u8..4,
                0..RESOURCES.len(),
                prop::sample::select(vec![60u32, 300]),
            ),
            0..8,
        ),
        prop::collection::vec((0..NAMES.len(), 0u8..3), 0..3),
    )
        .prop_map(|(recs, foreign_txt)| {
            let reg = registry("sluice");
            let mut zone: Vec<RecordSet> = Vec::new();
            let free = |zone: &Vec<RecordSet>, rs: &RecordSet| {
                !zone.iter().any(|z| {
                    z.name == rs.name
                        && (z.rtype == rs.rtype
                            || z.rtype == RecordType::Cname
                            || rs.rtype == RecordType::Cname)
                })
            };
            for (n, k, t, own, r, ttl) in recs {
                for rec in records_of(NAMES[n], k, t, RESOURCES[r], Some(ttl)) {
                    let mut rs = rec.to_record_set();
                    if rs.alias.is_some() {
                        rs.ttl = None;
                    }
                    if !free(&zone, &rs) {
                        continue;
                    }
                    let txt_rs = match own {
                        1 | 2 => {
                            let owner = if own == 1 { "sluice" } else { "other" };
                            let name = reg.txt_name(&rs.name, &rs.rtype);
                            Some(txt(&name, &owned(owner, RESOURCES[r])))
                        }
                        3 if rs.rtype != RecordType::Cname => {
                            Some(txt(&rs.name, &owned("sluice", RESOURCES[r])))
                        }
                        _ => None,
                    };
                    if let Some(t) = &txt_rs
                        && (!in_zone(&t.name, "example.com")
                            || !free(&zone, t)
                            || (rs.rtype == RecordType::Cname && t.name == rs.name))
                    {
                        continue;
                    }
                    zone.push(rs);
                    zone.extend(txt_rs);
                }
            }
            for (n, which) in foreign_txt {
                let name = match which {
                    0 => NAMES[n].to_string(),
                    _ => reg.txt_name(NAMES[n], &RecordType::A),
                };
                let t = txt(&name, "\"v=spf1 -all\"");
                if in_zone(&t.name, "example.com") && free(&zone, &t) {
                    zone.push(t);
                }
            }
            zone
        })
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    prop::sample::select(vec![Policy::Sync, Policy::UpsertOnly, Policy::CreateOnly])
}

/// True when `rs` (a record set of the zone before the plan) is ours.
fn is_ours(reg: &Registry, zone: &[RecordSet], rs: &RecordSet) -> bool {
    let own = reg.ownership(zone);
    if rs.rtype == RecordType::Txt {
        return crate::dns::registry::Labels::parse(&rs.values[0])
            .is_some_and(|l| l.owner() == Some("sluice"));
    }
    reg.owner_of(&own, rs)
        .is_some_and(|(c, _)| c.labels.owner() == Some("sluice"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Applying a plan group by group with Route53's rules succeeds for every group, planning
    /// again then gives no change, and nothing that was not ours changed.
    #[test]
    fn plans_apply_cleanly_converge_and_leave_others_alone(
        desired in desired_strategy(),
        start in zone_strategy(),
        policy in policy_strategy(),
    ) {
        let reg = registry("sluice");
        let z = zone();
        let current = [ZoneRecords { zone: z.clone(), records: start.clone() }];
        let p = plan(&desired, &current, &reg, policy, &Filters::default());
        // Never a change to a record we do not own (CREATEs are checked by the apply below:
        // a CREATE of an existing record fails).
        for (_, g) in p.groups() {
            for c in &g.changes {
                if c.action != Action::Create {
                    let before = start.iter().find(|r| r.name == c.record.name && r.rtype == c.record.rtype);
                    let before = before.expect("UPSERT/DELETE of an existing record");
                    prop_assert!(is_ours(&reg, &start, before), "touches {before:?}");
                }
                if c.action == Action::Delete {
                    prop_assert!(policy == Policy::Sync || policy == Policy::UpsertOnly);
                }
            }
        }
        let mut records = start.clone();
        for (_, g) in p.groups() {
            let r = apply_to_records(&z, &mut records, &g.changes, BatchLimits::default());
            prop_assert!(r.is_ok(), "group {} rejected: {:?}\nchanges: {:?}", g.name, r, g.changes);
        }
        let again = plan(&desired, &[ZoneRecords { zone: z.clone(), records: records.clone() }], &reg, policy, &Filters::default());
        prop_assert!(again.is_empty(), "second plan: {:?}", changes(&again));
        for rs in &start {
            if !is_ours(&reg, &start, rs) {
                prop_assert!(records.contains(rs), "foreign {rs:?} changed");
            }
        }
    }

    /// Batches stay within the limits, keep every group whole, and lose none.
    #[test]
    fn batches_respect_limits_and_keep_groups_whole(
        desired in desired_strategy(),
        start in zone_strategy(),
        max_records in 2usize..12,
        max_chars in 150usize..1500,
    ) {
        let reg = registry("sluice");
        let p = plan(&desired, &[ZoneRecords { zone: zone(), records: start }], &reg, Policy::Sync, &Filters::default());
        let groups: Vec<Group> = p.groups().map(|(_, g)| g.clone()).collect();
        let limits = BatchLimits { max_records, max_chars };
        let b = pack(&zone(), groups.clone(), limits);
        let mut seen: Vec<&Group> = Vec::new();
        for batch in &b.batches {
            let (n, c) = batch.weight();
            prop_assert!(n <= max_records && c <= max_chars, "{n} {c}");
            prop_assert!(!batch.groups.is_empty());
            seen.extend(batch.groups.iter());
        }
        seen.extend(b.oversized.iter().map(|(_, g)| g));
        prop_assert_eq!(seen.len(), groups.len());
        for g in &groups {
            prop_assert!(seen.contains(&g));
        }
        for (_, g) in &b.oversized {
            let (n, c) = crate::dns::batch::group_weight(g);
            prop_assert!(n > max_records || c > max_chars);
        }
    }
}
