//! Tests for [`wanted_certificates`] and [`selection`]: the annotations cert-manager's
//! ingress-shim reads, and every diagnostic.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::networking::v1::{IngressRule, IngressSpec, IngressTLS};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::acme::secrets::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::model::Severity;

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(pairs: &[(&str, &str)]) -> Selection {
    selection(Some(&ann(pairs)), &AcmeOptions::default())
}

#[test]
fn annotations_that_ask_for_a_certificate() {
    assert_eq!(sel(&[]), Selection::None);
    assert_eq!(sel(&[(TLS_ACME, "true")]), Selection::Ours);
    // Go's strconv.ParseBool, as cert-manager reads it.
    assert_eq!(sel(&[(TLS_ACME, "True")]), Selection::Ours);
    assert_eq!(sel(&[(TLS_ACME, "1")]), Selection::Ours);
    assert_eq!(sel(&[(TLS_ACME, "yes")]), Selection::None);
    assert_eq!(sel(&[(TLS_ACME, "false")]), Selection::None);
    assert_eq!(sel(&[(SLUICE_ACME, "true")]), Selection::Ours);
    assert_eq!(
        sel(&[(SLUICE_ACME, "false"), (TLS_ACME, "true")]),
        Selection::None
    );
    assert!(matches!(
        sel(&[(SLUICE_ACME, "yes")]),
        Selection::Invalid {
            annotation: SLUICE_ACME,
            ..
        }
    ));
    assert_eq!(sel(&[(CLUSTER_ISSUER, "sluice")]), Selection::Ours);
    assert_eq!(sel(&[(ISSUER, "sluice")]), Selection::Ours);
    assert_eq!(
        sel(&[(CLUSTER_ISSUER, "letsencrypt-prod")]),
        Selection::Foreign {
            issuer: "letsencrypt-prod".into()
        }
    );
    // Another issuer wins over tls-acme and sluice.io/acme: cert-manager's job.
    assert_eq!(
        sel(&[
            (ISSUER, "corp-ca"),
            (TLS_ACME, "true"),
            (SLUICE_ACME, "true")
        ]),
        Selection::Foreign {
            issuer: "corp-ca".into()
        }
    );
    // An external issuer's group is not ours even under our name.
    assert_eq!(
        sel(&[(ISSUER, "sluice"), (ISSUER_GROUP, "awspca.cert-manager.io")]),
        Selection::Foreign {
            issuer: "sluice".into()
        }
    );
    assert_eq!(
        sel(&[(ISSUER, "sluice"), (ISSUER_GROUP, "cert-manager.io")]),
        Selection::Ours
    );
    // cert-manager's own contradictions.
    assert!(matches!(
        sel(&[(ISSUER, "sluice"), (CLUSTER_ISSUER, "sluice")]),
        Selection::Invalid {
            annotation: CLUSTER_ISSUER,
            ..
        }
    ));
    assert!(matches!(
        sel(&[(CLUSTER_ISSUER, "sluice"), (ISSUER_KIND, "Issuer")]),
        Selection::Invalid {
            annotation: ISSUER_KIND,
            ..
        }
    ));
    assert_eq!(
        sel(&[(ISSUER, "a"), (CLUSTER_ISSUER, "b")]),
        Selection::Foreign { issuer: "b".into() },
        "not ours: not our diagnostic either"
    );
    let other_name = AcmeOptions {
        issuer_name: "le".into(),
        ..AcmeOptions::default()
    };
    assert_eq!(
        selection(Some(&ann(&[(CLUSTER_ISSUER, "le")])), &other_name),
        Selection::Ours
    );
    assert_eq!(
        selection(Some(&ann(&[(CLUSTER_ISSUER, "sluice")])), &other_name),
        Selection::Foreign {
            issuer: "sluice".into()
        }
    );
}

struct Ing(Ingress);

fn ing(id: &str, annotations: &[(&str, &str)]) -> Ing {
    let (ns, name) = id.split_once('/').unwrap();
    Ing(Ingress {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            annotations: Some(ann(annotations)),
            ..Default::default()
        },
        spec: Some(IngressSpec::default()),
        ..Default::default()
    })
}

impl Ing {
    fn rule(mut self, host: &str) -> Self {
        let spec = self.0.spec.as_mut().unwrap();
        spec.rules.get_or_insert_with(Vec::new).push(IngressRule {
            host: Some(host.into()),
            http: None,
        });
        self
    }
    fn tls(mut self, hosts: &[&str], secret: Option<&str>) -> Self {
        let spec = self.0.spec.as_mut().unwrap();
        spec.tls.get_or_insert_with(Vec::new).push(IngressTLS {
            hosts: (!hosts.is_empty()).then(|| hosts.iter().map(ToString::to_string).collect()),
            secret_name: secret.map(Into::into),
        });
        self
    }
    fn created(mut self, secs: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(Timestamp::from_second(secs).unwrap()));
        self
    }
}

fn run(ingresses: Vec<Ing>, secrets: Vec<Secret>) -> (Vec<WantedCert>, Vec<Diagnostic>) {
    let state = ClusterState {
        ingresses: ingresses.into_iter().map(|i| i.0).collect(),
        secrets,
        ..Default::default()
    };
    let ours: Vec<ObjectRef> = state
        .ingresses
        .iter()
        .map(|i| object_ref(&i.metadata))
        .collect();
    wanted_certificates(&state, &ours, &AcmeOptions::default())
}

fn secret(id: &str, ours: bool) -> Secret {
    let (ns, name) = id.split_once('/').unwrap();
    Secret {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: ours.then(|| ann(&[(MANAGED_BY_LABEL, MANAGED_BY)])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([("tls.crt".into(), ByteString(vec![1]))])),
        ..Default::default()
    }
}

fn one_diag(diags: &[Diagnostic], reason: Reason, field: &str) -> Diagnostic {
    let found: Vec<&Diagnostic> = diags.iter().filter(|d| d.reason == reason).collect();
    assert_eq!(found.len(), 1, "{diags:#?}");
    assert_eq!(found[0].field, field, "{diags:#?}");
    found[0].clone()
}

#[test]
fn one_certificate_per_tls_entry() {
    let (wanted, diags) = run(
        vec![
            ing("web/site", &[(TLS_ACME, "true")])
                .rule("a.example.com")
                .tls(
                    &["a.example.com", "www.example.com", "a.example.com"],
                    Some("site-tls"),
                )
                .tls(&["api.example.com"], Some("api-tls")),
        ],
        vec![],
    );
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(wanted.len(), 2);
    assert_eq!(wanted[0].secret, ObjectRef::new("web", "site-tls"));
    assert_eq!(
        wanted[0].hosts,
        ["a.example.com", "www.example.com"],
        "deduplicated, in order"
    );
    assert_eq!(wanted[0].challenge, ChallengeKind::Http01);
    assert_eq!(wanted[0].ingress, ObjectRef::new("web", "site"));
    assert_eq!(wanted[0].field, "spec.tls[0]");
    assert_eq!(wanted[1].hosts, ["api.example.com"]);
    assert_eq!(wanted[1].field, "spec.tls[1]");
}

#[test]
fn a_tls_entry_without_hosts_covers_the_rule_hosts() {
    let (wanted, diags) = run(
        vec![
            ing("web/site", &[(SLUICE_ACME, "true")])
                .rule("a.test")
                .rule("b.test")
                .tls(&[], Some("t")),
        ],
        vec![],
    );
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(wanted[0].hosts, ["a.test", "b.test"]);
}

#[test]
fn ingresses_not_asking_or_not_ours_get_nothing() {
    let state = ClusterState {
        ingresses: vec![
            ing("web/a", &[(TLS_ACME, "true")])
                .tls(&["a.test"], Some("a"))
                .0,
            ing("web/b", &[]).tls(&["b.test"], Some("b")).0,
            ing("web/c", &[(CLUSTER_ISSUER, "letsencrypt")])
                .tls(&["c.test"], Some("c"))
                .0,
        ],
        ..Default::default()
    };
    // web/a is not ours (another class): nothing for it.
    let ours = [ObjectRef::new("web", "b"), ObjectRef::new("web", "c")];
    let (wanted, diags) = wanted_certificates(&state, &ours, &AcmeOptions::default());
    assert!(wanted.is_empty(), "{wanted:#?}");
    assert!(diags.is_empty(), "{diags:#?}");
}

#[test]
fn the_challenge_annotation_overrides_the_default() {
    let (wanted, diags) = run(
        vec![
            ing(
                "web/a",
                &[(TLS_ACME, "true"), (SLUICE_ACME_CHALLENGE, "tls-alpn-01")],
            )
            .tls(&["a.test"], Some("a")),
            ing(
                "web/b",
                &[
                    (TLS_ACME, "true"),
                    (SLUICE_ACME_CHALLENGE, "carrier-pigeon"),
                ],
            )
            .tls(&["b.test"], Some("b")),
        ],
        vec![],
    );
    assert_eq!(wanted[0].challenge, ChallengeKind::TlsAlpn01);
    assert_eq!(wanted[1].challenge, ChallengeKind::Http01, "the default");
    let d = one_diag(
        &diags,
        Reason::InvalidAnnotation,
        "metadata.annotations[sluice.io/acme-challenge]",
    );
    assert!(d.message.contains("carrier-pigeon"), "{d}");
    assert_eq!(d.object, ObjectRef::new("web", "b"));
}

#[test]
fn wildcards_need_dns01() {
    let (wanted, diags) = run(
        vec![
            ing("web/a", &[(TLS_ACME, "true")]).tls(&["example.com", "*.example.com"], Some("a")),
            ing(
                "web/b",
                &[(TLS_ACME, "true"), (SLUICE_ACME_CHALLENGE, "dns-01")],
            )
            .tls(&["*.example.org"], Some("b")),
        ],
        vec![],
    );
    assert_eq!(wanted.len(), 1);
    assert_eq!(wanted[0].hosts, ["*.example.org"]);
    let d = one_diag(
        &diags,
        Reason::CertificateRequestInvalid,
        "spec.tls[0].hosts[1]",
    );
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("dns-01"), "{d}");
    assert_eq!(d.object, ObjectRef::new("web", "a"));
}

#[test]
fn secrets_not_created_by_sluice_are_never_targets() {
    let (wanted, diags) = run(
        vec![
            ing("web/a", &[(TLS_ACME, "true")]).tls(&["a.test"], Some("theirs")),
            ing("web/b", &[(TLS_ACME, "true")]).tls(&["b.test"], Some("mine")),
        ],
        vec![secret("web/theirs", false), secret("web/mine", true)],
    );
    assert_eq!(wanted.len(), 1);
    assert_eq!(
        wanted[0].secret,
        ObjectRef::new("web", "mine"),
        "ours: renewed in place"
    );
    let d = one_diag(
        &diags,
        Reason::CertificateSecretNotOwned,
        "spec.tls[0].secretName",
    );
    assert!(
        d.message.contains("web/theirs") && d.message.contains("never overwritten"),
        "{d}"
    );
}

#[test]
fn a_secret_holds_one_certificate_the_oldest_ingress_wins() {
    let (wanted, diags) = run(
        vec![
            ing("web/new", &[(TLS_ACME, "true")])
                .tls(&["n.test"], Some("shared"))
                .created(200),
            ing("web/old", &[(TLS_ACME, "true")])
                .tls(&["o.test"], Some("shared"))
                .created(100),
        ],
        vec![],
    );
    assert_eq!(wanted.len(), 1);
    assert_eq!(wanted[0].ingress, ObjectRef::new("web", "old"));
    let d = one_diag(
        &diags,
        Reason::CertificateRequestInvalid,
        "spec.tls[0].secretName",
    );
    assert_eq!(d.object, ObjectRef::new("web", "new"));
    assert!(d.message.contains("web/old"), "{d}");
}

#[test]
fn entries_that_cannot_be_requested() {
    let (wanted, diags) = run(
        vec![
            ing("web/a", &[(TLS_ACME, "true")])
                .tls(&["a.test"], None)
                .tls(&[], Some("empty")),
            ing("web/b", &[(CLUSTER_ISSUER, "sluice"), (ISSUER, "sluice")])
                .tls(&["b.test"], Some("b")),
        ],
        vec![],
    );
    assert!(wanted.is_empty(), "{wanted:#?}");
    let fields_of_a: Vec<&str> = diags
        .iter()
        .filter(|d| d.object.name == "a" && d.reason == Reason::CertificateRequestInvalid)
        .map(|d| d.field.as_str())
        .collect();
    assert_eq!(fields_of_a, ["spec.tls[0].secretName", "spec.tls[1].hosts"]);
    assert!(
        diags.iter().any(|d| d.object.name == "b"
            && d.field == "metadata.annotations[cert-manager.io/cluster-issuer]"),
        "{diags:#?}"
    );
}

#[test]
fn order_failures_name_the_host_type_and_detail() {
    let cert = WantedCert {
        secret: ObjectRef::new("web", "a"),
        hosts: vec!["a.test".into()],
        challenge: ChallengeKind::Http01,
        ingress: ObjectRef::new("web", "site"),
        field: "spec.tls[0]".into(),
    };
    let error = OrderError::Validation {
        host: "a.test".into(),
        challenge: ChallengeKind::Http01,
        problem: crate::acme::Problem {
            typ: "urn:ietf:params:acme:error:unauthorized".into(),
            detail: "key authorization mismatch".into(),
            ..Default::default()
        },
    };
    let d = order_failure_diagnostic(&cert, &error);
    assert_eq!(d.reason, Reason::CertificateOrderFailed);
    assert_eq!(d.field, "spec.tls[0]");
    assert!(d.message.contains("a.test"), "{d}");
    assert!(
        d.message
            .contains("unauthorized: key authorization mismatch"),
        "{d}"
    );
}
