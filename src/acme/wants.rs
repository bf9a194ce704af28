//! Which certificates are wanted: pure, from the cluster state and the Ingresses that are ours.
//!
//! An Ingress asks sluice for certificates, as it asks cert-manager's ingress-shim, with
//! - `kubernetes.io/tls-acme: "true"`, or
//! - `cert-manager.io/cluster-issuer` or `cert-manager.io/issuer` equal to our issuer name
//!   ([`AcmeOptions::issuer_name`], default `sluice`), or
//! - `sluice.io/acme: "true"`.
//!
//! Each `spec.tls[]` entry is one certificate for its hosts (no hosts: the hosts of the rules),
//! stored in its `secretName`. `sluice.io/acme-challenge` picks the challenge per Ingress. An
//! issuer that is not ours is left to cert-manager. Boolean values are read as Go's
//! `strconv.ParseBool` reads them (`true`, `True`, `TRUE`, `t`, `1`...), as cert-manager does;
//! setting both `cert-manager.io/issuer` and `cert-manager.io/cluster-issuer`, or
//! `cluster-issuer` with `issuer-kind`/`issuer-group`, is an error there and here.
//!
//! Differences from cert-manager, on purpose: a tls entry without hosts takes the rule hosts
//! (the same certificate the translation serves there; cert-manager skips the entry), and the
//! issuer kind (Issuer or ClusterIssuer) does not matter: there is one issuer.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;

use super::answers::ChallengeKind;
use super::order::OrderError;
use super::secrets::is_ours;
use crate::cluster::ClusterState;
use crate::cluster::object_ref;
use crate::model::{Diagnostic, HostMatch, Kind, ObjectRef, Reason};

/// `kubernetes.io/tls-acme`: `"true"` asks the default issuer (ours) for certificates.
pub const TLS_ACME: &str = "kubernetes.io/tls-acme";
/// `cert-manager.io/cluster-issuer`: the ClusterIssuer to use.
pub const CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";
/// `cert-manager.io/issuer`: the (namespaced) Issuer to use.
pub const ISSUER: &str = "cert-manager.io/issuer";
/// `cert-manager.io/issuer-kind`.
pub const ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
/// `cert-manager.io/issuer-group`: an external issuer's API group (not ours unless empty,
/// `cert-manager.io` or `sluice.io`).
pub const ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
/// `sluice.io/acme`: `"true"` asks sluice for certificates.
pub const SLUICE_ACME: &str = "sluice.io/acme";
/// `sluice.io/acme-challenge`: `http-01`, `tls-alpn-01` or `dns-01` for this Ingress.
pub const SLUICE_ACME_CHALLENGE: &str = "sluice.io/acme-challenge";

/// ACME settings that decide what is wanted (filled from `--acme-issuer-name` and
/// `--acme-challenge`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeOptions {
    /// Our issuer name, matched against `cert-manager.io/(cluster-)issuer`.
    pub issuer_name: String,
    /// The challenge used unless an Ingress sets `sluice.io/acme-challenge`.
    pub default_challenge: ChallengeKind,
}

impl Default for AcmeOptions {
    fn default() -> Self {
        AcmeOptions {
            issuer_name: "sluice".to_string(),
            default_challenge: ChallengeKind::Http01,
        }
    }
}

/// How an Ingress's annotations relate to sluice's ACME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// No certificate asked for.
    None,
    /// Ours to issue.
    Ours,
    /// Another issuer's (cert-manager's): left alone.
    Foreign {
        /// The issuer named.
        issuer: String,
    },
    /// Contradictory annotations naming our issuer: nothing is issued.
    Invalid {
        /// The annotation at fault.
        annotation: &'static str,
        /// Why.
        message: String,
    },
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Reads the ACME annotations of one Ingress.
pub fn selection(
    annotations: Option<&BTreeMap<String, String>>,
    options: &AcmeOptions,
) -> Selection {
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    let issuer = get(ISSUER);
    let cluster = get(CLUSTER_ISSUER);
    let names_us = |n: Option<&str>| n == Some(options.issuer_name.as_str());
    if issuer.is_some() || cluster.is_some() {
        let ours = names_us(issuer) || names_us(cluster);
        let conflict = if issuer.is_some() && cluster.is_some() {
            Some((
                CLUSTER_ISSUER,
                format!("both {ISSUER} and {CLUSTER_ISSUER} are set"),
            ))
        } else if cluster.is_some() && get(ISSUER_KIND).is_some() {
            Some((
                ISSUER_KIND,
                format!("{CLUSTER_ISSUER} and {ISSUER_KIND} may not both be set"),
            ))
        } else if cluster.is_some() && get(ISSUER_GROUP).is_some() {
            Some((
                ISSUER_GROUP,
                format!("{CLUSTER_ISSUER} and {ISSUER_GROUP} may not both be set"),
            ))
        } else {
            None
        };
        if let Some((annotation, message)) = conflict {
            return if ours {
                Selection::Invalid {
                    annotation,
                    message: format!("{message}; no certificate is issued"),
                }
            } else {
                Selection::Foreign {
                    issuer: cluster.or(issuer).unwrap_or_default().to_string(),
                }
            };
        }
        let named = cluster.or(issuer).unwrap_or_default();
        let group_ours = matches!(
            get(ISSUER_GROUP),
            None | Some("" | "cert-manager.io" | "sluice.io")
        );
        return if ours && group_ours {
            Selection::Ours
        } else {
            Selection::Foreign {
                issuer: named.to_string(),
            }
        };
    }
    if let Some(v) = get(SLUICE_ACME) {
        return match parse_bool(v.trim()) {
            Some(true) => Selection::Ours,
            Some(false) => Selection::None,
            None => Selection::Invalid {
                annotation: SLUICE_ACME,
                message: format!(
                    "{v:?} is not a boolean (true or false); no certificate is issued"
                ),
            },
        };
    }
    if get(TLS_ACME).and_then(parse_bool) == Some(true) {
        return Selection::Ours;
    }
    Selection::None
}

/// One certificate to keep issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedCert {
    /// Where it is stored: the tls entry's `secretName`, in the Ingress's namespace.
    pub secret: ObjectRef,
    /// Its names, lower case, in the order written (the first is the common name).
    pub hosts: Vec<String>,
    /// The challenge to answer.
    pub challenge: ChallengeKind,
    /// The Ingress that asked.
    pub ingress: ObjectRef,
    /// The tls entry, `spec.tls[i]`.
    pub field: String,
}

/// The certificates the Ingresses in `ours` (`Translation.model.ingresses`) ask for, and a
/// diagnostic for each request that cannot be served. A Secret that exists and was not created
/// by sluice is never a target (it keeps being served as it is).
pub fn wanted_certificates(
    state: &ClusterState,
    ours: &[ObjectRef],
    options: &AcmeOptions,
) -> (Vec<WantedCert>, Vec<Diagnostic>) {
    let ours: HashSet<&ObjectRef> = ours.iter().collect();
    let secrets: HashMap<ObjectRef, &Secret> = state
        .secrets
        .iter()
        .map(|s| (object_ref(&s.metadata), s))
        .collect();
    let mut ingresses: Vec<&Ingress> = state
        .ingresses
        .iter()
        .filter(|i| ours.contains(&object_ref(&i.metadata)))
        .collect();
    ingresses.sort_by_cached_key(|i| crate::cluster::age_key(&i.metadata));

    let mut wanted = Vec::new();
    let mut diags = Vec::new();
    let mut claimed: HashMap<ObjectRef, (ObjectRef, String)> = HashMap::new();
    for ingress in ingresses {
        let me = object_ref(&ingress.metadata);
        let annotations = ingress.metadata.annotations.as_ref();
        match selection(annotations, options) {
            Selection::Ours => {}
            Selection::Invalid {
                annotation,
                message,
            } => {
                diags.push(Diagnostic::error(
                    Reason::CertificateRequestInvalid,
                    Kind::Ingress,
                    &me,
                    format!("metadata.annotations[{annotation}]"),
                    message,
                ));
                continue;
            }
            Selection::None | Selection::Foreign { .. } => continue,
        }
        let challenge = match annotations.and_then(|a| a.get(SLUICE_ACME_CHALLENGE)) {
            None => options.default_challenge,
            Some(v) => v.parse().unwrap_or_else(|e: String| {
                diags.push(Diagnostic::error(
                    Reason::InvalidAnnotation,
                    Kind::Ingress,
                    &me,
                    format!("metadata.annotations[{SLUICE_ACME_CHALLENGE}]"),
                    format!("{e}; {} is used", options.default_challenge),
                ));
                options.default_challenge
            }),
        };
        let Some(spec) = ingress.spec.as_ref() else {
            continue;
        };
        let rule_hosts: Vec<String> = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| HostMatch::parse(r.host.as_deref().unwrap_or("")).ok())
            .filter(|h| *h != HostMatch::Any)
            .map(|h| h.to_string())
            .collect();
        for (ti, tls) in spec.tls.iter().flatten().enumerate() {
            let field = format!("spec.tls[{ti}]");
            let mut hosts: Vec<String> = Vec::new();
            let mut wildcard_field = None;
            match tls.hosts.as_deref() {
                Some(list) if !list.is_empty() => {
                    for (hi, h) in list.iter().enumerate() {
                        // Invalid hosts are reported by the translation.
                        if let Ok(m @ (HostMatch::Exact(_) | HostMatch::Wildcard(_))) =
                            HostMatch::parse(h)
                        {
                            if matches!(m, HostMatch::Wildcard(_)) && wildcard_field.is_none() {
                                wildcard_field = Some(format!("{field}.hosts[{hi}]"));
                            }
                            hosts.push(m.to_string());
                        }
                    }
                }
                _ => {
                    hosts.extend(rule_hosts.iter().cloned());
                    if rule_hosts.iter().any(|h| h.starts_with("*.")) {
                        wildcard_field = Some(format!("{field}.hosts"));
                    }
                }
            }
            let mut seen = HashSet::new();
            hosts.retain(|h| seen.insert(h.clone()));
            let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                if !hosts.is_empty() {
                    diags.push(Diagnostic::error(
                        Reason::CertificateRequestInvalid,
                        Kind::Ingress,
                        &me,
                        format!("{field}.secretName"),
                        "required for an ACME certificate (the Secret it is stored in); none is issued",
                    ));
                }
                continue;
            };
            if hosts.is_empty() {
                diags.push(Diagnostic::error(
                    Reason::CertificateRequestInvalid,
                    Kind::Ingress,
                    &me,
                    format!("{field}.hosts"),
                    "no host names (neither in this entry nor in the rules); no certificate is issued",
                ));
                continue;
            }
            if let Some(wf) = wildcard_field
                && challenge != ChallengeKind::Dns01
            {
                diags.push(Diagnostic::error(
                    Reason::CertificateRequestInvalid,
                    Kind::Ingress,
                    &me,
                    wf,
                    format!(
                        "a wildcard certificate can only be validated with dns-01, not {challenge} \
                         (set {SLUICE_ACME_CHALLENGE}: dns-01); no certificate is issued for {field}"
                    ),
                ));
                continue;
            }
            let secret = ObjectRef::new(me.namespace.clone(), secret_name);
            if let Some((owner, owner_field)) = claimed.get(&secret) {
                let who = if *owner == me {
                    "this Ingress".to_string()
                } else {
                    format!("the older Ingress {owner}")
                };
                diags.push(Diagnostic::error(
                    Reason::CertificateRequestInvalid,
                    Kind::Ingress,
                    &me,
                    format!("{field}.secretName"),
                    format!(
                        "Secret {secret} already holds the ACME certificate of {who} ({owner_field}); \
                         a Secret holds one certificate, so none is issued for this entry"
                    ),
                ));
                continue;
            }
            if let Some(existing) = secrets.get(&secret)
                && !is_ours(existing)
            {
                diags.push(secret_not_owned_diagnostic(&me, &field, &secret));
                continue;
            }
            claimed.insert(secret.clone(), (me.clone(), field.clone()));
            wanted.push(WantedCert {
                secret,
                hosts,
                challenge,
                ingress: me.clone(),
                field,
            });
        }
    }
    (wanted, diags)
}

/// `CertificateSecretNotOwned` on `ingress`'s tls entry `field` (`spec.tls[i]`): its Secret
/// exists and was not created by sluice, so it is never overwritten.
pub fn secret_not_owned_diagnostic(
    ingress: &ObjectRef,
    field: &str,
    secret: &ObjectRef,
) -> Diagnostic {
    Diagnostic::warning(
        Reason::CertificateSecretNotOwned,
        Kind::Ingress,
        ingress,
        format!("{field}.secretName"),
        format!(
            "Secret {secret} exists and was not created by sluice: it is never overwritten \
             (a kubernetes.io/tls Secret is served as it is); delete it (or name another \
             Secret) to have sluice issue the certificate"
        ),
    )
}

/// The diagnostic for a failed order of `cert`: on its Ingress's tls entry, naming the host,
/// the ACME error type and detail (the Warning Event the actor emits).
pub fn order_failure_diagnostic(cert: &WantedCert, error: &OrderError) -> Diagnostic {
    Diagnostic::warning(
        Reason::CertificateOrderFailed,
        Kind::Ingress,
        &cert.ingress,
        cert.field.clone(),
        format!(
            "ACME certificate for Secret {} not issued: {error}; retried later, and the hosts \
             keep being served meanwhile",
            cert.secret
        ),
    )
}

#[cfg(test)]
mod tests;
