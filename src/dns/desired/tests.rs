//! Tests of [`desired`]: hosts, targets, record types, ALIAS, TTL formats, both annotation
//! prefixes, Services, conflicts and every diagnostic.

use serde_json::{Value, json};

use super::*;
use crate::model::Severity;

fn ingress(v: Value) -> Ingress {
    serde_json::from_value(v).expect("valid Ingress JSON")
}

fn service(v: Value) -> Service {
    serde_json::from_value(v).expect("valid Service JSON")
}

fn ing(name: &str, hosts: &[&str], annotations: Value, status_ips: &[&str]) -> Ingress {
    let rules: Vec<Value> = hosts.iter().map(|h| json!({ "host": h })).collect();
    let lb: Vec<Value> = status_ips
        .iter()
        .map(|t| {
            if t.parse::<IpAddr>().is_ok() {
                json!({ "ip": t })
            } else {
                json!({ "hostname": t })
            }
        })
        .collect();
    ingress(json!({
        "metadata": { "namespace": "default", "name": name, "annotations": annotations },
        "spec": { "rules": rules },
        "status": { "loadBalancer": { "ingress": lb } }
    }))
}

fn run(ingresses: Vec<Ingress>, services: Vec<Service>, options: &DesiredOptions) -> Desired {
    let ours: Vec<ObjectRef> = ingresses.iter().map(|i| object_ref(&i.metadata)).collect();
    let state = ClusterState {
        ingresses,
        services,
        ..Default::default()
    };
    desired(&state, &ours, options)
}

fn rows(d: &Desired) -> Vec<String> {
    d.records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} ttl={} alias={} {}",
                r.name,
                r.rtype,
                r.targets.join(","),
                r.ttl.map(|t| t.to_string()).unwrap_or("-".into()),
                r.alias
                    .as_ref()
                    .map(|a| a.hosted_zone_id.as_str())
                    .unwrap_or("-"),
                r.resource
            )
        })
        .collect()
}

#[test]
fn rule_and_tls_hosts_point_at_status_addresses() {
    let mut i = ing(
        "web",
        &["www.example.com"],
        json!({}),
        &["192.0.2.10", "2001:db8::1"],
    );
    i.spec.as_mut().unwrap().tls = Some(vec![
        serde_json::from_value(json!({ "hosts": ["secure.example.com", "www.example.com"] }))
            .unwrap(),
    ]);
    let d = run(vec![i], vec![], &DesiredOptions::default());
    assert_eq!(
        rows(&d),
        vec![
            "secure.example.com A 192.0.2.10 ttl=- alias=- ingress/default/web",
            "secure.example.com AAAA 2001:db8::1 ttl=- alias=- ingress/default/web",
            "www.example.com A 192.0.2.10 ttl=- alias=- ingress/default/web",
            "www.example.com AAAA 2001:db8::1 ttl=- alias=- ingress/default/web",
        ]
    );
    assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
}

#[test]
fn only_our_ingresses_count() {
    let state = ClusterState {
        ingresses: vec![
            ing("ours", &["a.example.com"], json!({}), &["192.0.2.1"]),
            ing("theirs", &["b.example.com"], json!({}), &["192.0.2.1"]),
        ],
        ..Default::default()
    };
    let d = desired(
        &state,
        &[ObjectRef::new("default", "ours")],
        &DesiredOptions::default(),
    );
    assert_eq!(d.records.len(), 1);
    assert_eq!(d.records[0].name, "a.example.com");
}

#[test]
fn target_annotation_wins_over_status_and_publish_is_the_last_resort() {
    let opts = DesiredOptions {
        publish: vec!["198.51.100.7".into(), "not a target!".into()],
        ..Default::default()
    };
    let d = run(
        vec![
            ing(
                "annotated",
                &["a.example.com"],
                json!({ "external-dns.alpha.kubernetes.io/target": "203.0.113.5, 203.0.113.4." }),
                &["192.0.2.1"],
            ),
            ing("status", &["b.example.com"], json!({}), &["192.0.2.1"]),
            ing("bare", &["c.example.com"], json!({}), &[]),
        ],
        vec![],
        &opts,
    );
    assert_eq!(
        rows(&d),
        vec![
            "a.example.com A 203.0.113.4,203.0.113.5 ttl=- alias=- ingress/default/annotated",
            "b.example.com A 192.0.2.1 ttl=- alias=- ingress/default/status",
            "c.example.com A 198.51.100.7 ttl=- alias=- ingress/default/bare",
        ]
    );
}

#[test]
fn names_become_cnames_and_aws_load_balancers_aliases() {
    let d = run(
        vec![
            ing(
                "cn",
                &["cn.example.com"],
                json!({}),
                &["LB.Other-Cloud.example.net."],
            ),
            ing(
                "elb",
                &["elb.example.com"],
                json!({}),
                &["k8s-web-123.us-east-1.elb.amazonaws.com"],
            ),
            ing(
                "cf",
                &["cdn.example.com"],
                json!({ "external-dns.kubernetes.io/ttl": "60" }),
                &["d111111abcdef8.cloudfront.net"],
            ),
        ],
        vec![],
        &DesiredOptions::default(),
    );
    assert_eq!(
        rows(&d),
        vec![
            "cdn.example.com A d111111abcdef8.cloudfront.net ttl=- alias=Z2FDTNDATAQYW2 ingress/default/cf",
            "cdn.example.com AAAA d111111abcdef8.cloudfront.net ttl=- alias=Z2FDTNDATAQYW2 ingress/default/cf",
            "cn.example.com CNAME lb.other-cloud.example.net ttl=- alias=- ingress/default/cn",
            "elb.example.com A k8s-web-123.us-east-1.elb.amazonaws.com ttl=- alias=Z35SXDOTRQ7X7K ingress/default/elb",
            "elb.example.com AAAA k8s-web-123.us-east-1.elb.amazonaws.com ttl=- alias=Z35SXDOTRQ7X7K ingress/default/elb",
        ]
    );
    assert!(
        d.records
            .iter()
            .all(|r| r.alias.as_ref().is_none_or(|a| a.evaluate_target_health))
    );
}

#[test]
fn a_cname_has_one_target_and_addresses_win_over_names() {
    let d = run(
        vec![
            ing(
                "two",
                &["two.example.com"],
                json!({ "external-dns.kubernetes.io/target": "b.example.net,a.example.net" }),
                &[],
            ),
            ing(
                "mixed",
                &["mixed.example.com"],
                json!({}),
                &["192.0.2.9", "lb.example.net"],
            ),
        ],
        vec![],
        &DesiredOptions::default(),
    );
    assert_eq!(
        rows(&d),
        vec![
            "mixed.example.com A 192.0.2.9 ttl=- alias=- ingress/default/mixed",
            "two.example.com CNAME a.example.net ttl=- alias=- ingress/default/two",
        ]
    );
    assert_eq!(d.diagnostics.len(), 1);
    assert_eq!(d.diagnostics[0].severity, Severity::Warning);
    assert!(
        d.diagnostics[0]
            .message
            .contains("\"a.example.net\" is used")
    );
}

#[test]
fn hostname_annotation_adds_names_including_wildcards() {
    let d = run(
        vec![ing(
            "web",
            &["*.apps.example.com"],
            json!({ "external-dns.alpha.kubernetes.io/hostname": "Extra.Example.com., other.example.com , *.x.example.com" }),
            &["192.0.2.1"],
        )],
        vec![],
        &DesiredOptions::default(),
    );
    let names: Vec<&str> = d.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "*.apps.example.com",
            "*.x.example.com",
            "extra.example.com",
            "other.example.com"
        ]
    );
}

#[test]
fn hostname_source_annotation_selects_hosts() {
    let both = json!({ "external-dns.kubernetes.io/hostname": "ann.example.com" });
    let with = |source: &str| {
        let mut a = both.clone();
        a["external-dns.kubernetes.io/ingress-hostname-source"] = json!(source);
        a
    };
    let names = |a: Value| -> Vec<String> {
        run(
            vec![ing("w", &["rule.example.com"], a, &["192.0.2.1"])],
            vec![],
            &DesiredOptions::default(),
        )
        .records
        .into_iter()
        .map(|r| r.name)
        .collect()
    };
    assert_eq!(
        names(both.clone()),
        vec!["ann.example.com", "rule.example.com"]
    );
    assert_eq!(names(with("defined-hosts-only")), vec!["rule.example.com"]);
    assert_eq!(names(with("annotation-only")), vec!["ann.example.com"]);
    let d = run(
        vec![ing(
            "w",
            &["rule.example.com"],
            with("sometimes"),
            &["192.0.2.1"],
        )],
        vec![],
        &DesiredOptions::default(),
    );
    assert!(d.records.is_empty());
    assert_eq!(d.diagnostics[0].reason, Reason::InvalidAnnotation);
    assert_eq!(
        d.diagnostics[0].field,
        "metadata.annotations[external-dns.kubernetes.io/ingress-hostname-source]"
    );
}

#[test]
fn other_controllers_are_skipped() {
    let d = run(
        vec![
            ing(
                "skip",
                &["a.example.com"],
                json!({ "external-dns.alpha.kubernetes.io/controller": "someone-else" }),
                &["192.0.2.1"],
            ),
            ing(
                "keep",
                &["b.example.com"],
                json!({ "external-dns.alpha.kubernetes.io/controller": "dns-controller" }),
                &["192.0.2.1"],
            ),
        ],
        vec![],
        &DesiredOptions::default(),
    );
    assert_eq!(rows(&d).len(), 1);
    assert_eq!(d.records[0].name, "b.example.com");
}

#[test]
fn ttl_formats_as_externaldns_accepts() {
    assert_eq!(parse_ttl("600"), Ok(600));
    assert_eq!(parse_ttl("10m"), Ok(600));
    assert_eq!(parse_ttl("1h30m"), Ok(5400));
    assert_eq!(parse_ttl("1.5h"), Ok(5400));
    assert_eq!(parse_ttl("90s"), Ok(90));
    assert_eq!(
        parse_ttl("1.9s"),
        Ok(1),
        "fractions of a second are dropped"
    );
    assert_eq!(parse_ttl("1500ms"), Ok(1));
    assert_eq!(parse_ttl("+60"), Ok(60));
    assert_eq!(parse_ttl("2147483647"), Ok(2_147_483_647));
    for bad in [
        "0",
        "500ms",
        "-5m",
        "-1",
        "2147483648",
        "ten",
        "5x",
        "",
        "1..5s",
        "m",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn bad_ttl_is_reported_and_the_default_used() {
    let d = run(
        vec![ing(
            "web",
            &["a.example.com"],
            json!({ "external-dns.alpha.kubernetes.io/ttl": "soon" }),
            &["192.0.2.1"],
        )],
        vec![],
        &DesiredOptions::default(),
    );
    assert_eq!(d.records[0].ttl, None);
    let diag = &d.diagnostics[0];
    assert_eq!(diag.reason, Reason::InvalidAnnotation);
    assert_eq!(diag.object, ObjectRef::new("default", "web"));
    assert_eq!(
        diag.field,
        "metadata.annotations[external-dns.alpha.kubernetes.io/ttl]"
    );
    assert!(
        diag.message.contains("default TTL (300)"),
        "{}",
        diag.message
    );
}

#[test]
fn both_prefixes_new_one_wins_with_a_warning() {
    let d = run(
        vec![ing(
            "web",
            &["a.example.com"],
            json!({
                "external-dns.kubernetes.io/ttl": "120",
                "external-dns.alpha.kubernetes.io/ttl": "60",
                "external-dns.kubernetes.io/target": "192.0.2.7",
                "external-dns.alpha.kubernetes.io/target": "192.0.2.7",
            }),
            &["192.0.2.1"],
        )],
        vec![],
        &DesiredOptions::default(),
    );
    assert_eq!(d.records[0].ttl, Some(120));
    assert_eq!(d.records[0].targets, vec!["192.0.2.7".to_string()]);
    assert_eq!(d.diagnostics.len(), 1, "equal values are no conflict");
    assert_eq!(
        d.diagnostics[0].field,
        "metadata.annotations[external-dns.alpha.kubernetes.io/ttl]"
    );
}

#[test]
fn bad_targets_and_hostnames_name_the_annotation() {
    let d = run(
        vec![ing(
            "web",
            &["a.example.com"],
            json!({
                "external-dns.kubernetes.io/target": "bad_target!, *.wild.example.com",
                "external-dns.kubernetes.io/hostname": "ok.example.com,bad_host!",
            }),
            &["192.0.2.1"],
        )],
        vec![],
        &DesiredOptions::default(),
    );
    // No valid target left: the status address is used.
    assert!(
        d.records
            .iter()
            .all(|r| r.targets == vec!["192.0.2.1".to_string()])
    );
    assert_eq!(d.records.len(), 2);
    let fields: Vec<&str> = d.diagnostics.iter().map(|x| x.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "metadata.annotations[external-dns.kubernetes.io/hostname]",
            "metadata.annotations[external-dns.kubernetes.io/target]",
            "metadata.annotations[external-dns.kubernetes.io/target]",
        ]
    );
    assert!(d.diagnostics.iter().all(Diagnostic::is_error));
}

#[test]
fn load_balancer_services_with_a_hostname() {
    let svc = |name: &str, type_: &str, ann: Value, status: Value| {
        service(json!({
            "metadata": { "namespace": "apps", "name": name, "annotations": ann },
            "spec": { "type": type_ },
            "status": { "loadBalancer": { "ingress": status } }
        }))
    };
    let services = vec![
        svc(
            "lb",
            "LoadBalancer",
            json!({ "external-dns.alpha.kubernetes.io/hostname": "db.example.com" }),
            json!([{ "hostname": "k8s-db-1.elb.eu-west-1.amazonaws.com" }]),
        ),
        svc(
            "no-annotation",
            "LoadBalancer",
            json!({}),
            json!([{ "ip": "192.0.2.1" }]),
        ),
        svc(
            "cluster-ip",
            "ClusterIP",
            json!({ "external-dns.alpha.kubernetes.io/hostname": "x.example.com" }),
            json!([]),
        ),
    ];
    let d = run(vec![], services.clone(), &DesiredOptions::default());
    assert_eq!(
        rows(&d),
        vec![
            "db.example.com A k8s-db-1.elb.eu-west-1.amazonaws.com ttl=- alias=Z2IFOLAFXWLO4F service/apps/lb",
            "db.example.com AAAA k8s-db-1.elb.eu-west-1.amazonaws.com ttl=- alias=Z2IFOLAFXWLO4F service/apps/lb",
        ]
    );
    let only_ingress = DesiredOptions {
        sources: Sources::parse("ingress").unwrap(),
        ..Default::default()
    };
    assert!(run(vec![], services, &only_ingress).records.is_empty());
}

#[test]
fn sources_parse() {
    assert_eq!(Sources::parse("ingress,service"), Ok(Sources::default()));
    assert_eq!(
        Sources::parse("service"),
        Ok(Sources {
            ingress: false,
            service: true
        })
    );
    assert!(Sources::parse("ingress,gateway").is_err());
    assert!(Sources::parse("").is_err());
}

#[test]
fn differing_records_for_one_name_warn_both_objects() {
    let d = run(
        vec![
            ing("a", &["shared.example.com"], json!({}), &["192.0.2.1"]),
            ing("b", &["shared.example.com"], json!({}), &["192.0.2.2"]),
            // Same records as `a` for another name: no conflict.
            ing("c", &["same.example.com"], json!({}), &["192.0.2.1"]),
            ing("d", &["same.example.com"], json!({}), &["192.0.2.1"]),
        ],
        vec![],
        &DesiredOptions::default(),
    );
    let conflicts: Vec<String> = d
        .diagnostics
        .iter()
        .filter(|x| x.reason == Reason::DnsConflict)
        .map(|x| format!("{} {}", x.object, x.field))
        .collect();
    assert_eq!(
        conflicts,
        vec![
            "default/a shared.example.com",
            "default/b shared.example.com"
        ]
    );
    assert_eq!(
        d.records.len(),
        4,
        "every candidate is kept for the planner"
    );
}
