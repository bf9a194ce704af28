//! The Secrets ACME reads and writes, as pure encode/decode functions (the actor does the
//! API calls and the watching):
//!
//! - the certificate Secret ([`certificate_secret`]): `kubernetes.io/tls`, labelled
//!   `app.kubernetes.io/managed-by: sluice` (what [`is_ours`] checks: a Secret without it is
//!   never overwritten), with cert-manager's familiar annotations (`cert-manager.io/alt-names`,
//!   `common-name`, `issuer-name`, `issuer-kind`, `issuer-group`, `ip-sans`, `uri-sans`);
//! - the account key Secret ([`account_secret`]): `Opaque`, `data[account.key]` is the PKCS#8
//!   PEM key;
//! - the challenge-answers Secret ([`challenge_answers_secret`]): `Opaque`,
//!   `data[answers.json]` is the JSON list of [`SharedAnswer`]s every replica serves.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::answers::SharedAnswer;
use super::order::Issued;
use super::policy::ExistingCert;
use crate::model::ObjectRef;

/// The label that marks a Secret as sluice's.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "sluice";
/// cert-manager's annotation: the DNS names, comma-separated.
pub const ALT_NAMES: &str = "cert-manager.io/alt-names";
/// cert-manager's annotation: the common name.
pub const COMMON_NAME: &str = "cert-manager.io/common-name";
/// cert-manager's annotation: the issuer's name.
pub const ISSUER_NAME: &str = "cert-manager.io/issuer-name";
/// cert-manager's annotation: the issuer's kind.
pub const ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
/// cert-manager's annotation: the issuer's API group.
pub const ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
/// cert-manager's annotation: IP SANs (always empty here).
pub const IP_SANS: &str = "cert-manager.io/ip-sans";
/// cert-manager's annotation: URI SANs (always empty here).
pub const URI_SANS: &str = "cert-manager.io/uri-sans";
/// Our annotation: the ACME directory URL that issued the certificate.
pub const ACME_SERVER: &str = "sluice.io/acme-server";
/// The issuer kind written in [`ISSUER_KIND`].
pub const OUR_ISSUER_KIND: &str = "ClusterIssuer";
/// The issuer group written in [`ISSUER_GROUP`].
pub const OUR_ISSUER_GROUP: &str = "sluice.io";
/// Default name of the account key Secret (in the controller's namespace).
pub const DEFAULT_ACCOUNT_SECRET: &str = "sluice-acme-account";
/// Default name of the challenge-answers Secret (in the controller's namespace).
pub const DEFAULT_CHALLENGES_SECRET: &str = "sluice-acme-challenges";
/// The data key of the account key.
pub const ACCOUNT_KEY: &str = "account.key";
/// The data key of the challenge answers.
pub const ANSWERS_KEY: &str = "answers.json";

/// A Secret that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A data key is missing or empty.
    #[error("Secret {secret}: data[{key}] is missing or empty")]
    Missing {
        /// The Secret.
        secret: ObjectRef,
        /// The key.
        key: &'static str,
    },
    /// A data key holds something unusable.
    #[error("Secret {secret}: data[{key}]: {detail}")]
    Invalid {
        /// The Secret.
        secret: ObjectRef,
        /// The key.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())])
}

fn meta(name: &ObjectRef, annotations: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.name.clone()),
        namespace: Some(name.namespace.clone()),
        labels: Some(labels()),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    }
}

fn data(key: &str, value: impl Into<Vec<u8>>) -> (String, ByteString) {
    (key.to_string(), ByteString(value.into()))
}

/// The `kubernetes.io/tls` Secret `secret` holding `issued`, issued by our issuer
/// `issuer_name` from the ACME server `directory_url`.
pub fn certificate_secret(
    secret: &ObjectRef,
    issued: &Issued,
    issuer_name: &str,
    directory_url: &str,
) -> Secret {
    let annotations = BTreeMap::from([
        (ALT_NAMES.to_string(), issued.hosts.join(",")),
        (
            COMMON_NAME.to_string(),
            issued.hosts.first().cloned().unwrap_or_default(),
        ),
        (ISSUER_NAME.to_string(), issuer_name.to_string()),
        (ISSUER_KIND.to_string(), OUR_ISSUER_KIND.to_string()),
        (ISSUER_GROUP.to_string(), OUR_ISSUER_GROUP.to_string()),
        (IP_SANS.to_string(), String::new()),
        (URI_SANS.to_string(), String::new()),
        (ACME_SERVER.to_string(), directory_url.to_string()),
    ]);
    Secret {
        metadata: meta(secret, annotations),
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            data("tls.crt", issued.chain_pem.clone()),
            data("tls.key", issued.key_pem.clone()),
        ])),
        ..Default::default()
    }
}

/// True when sluice created `secret` (it carries `app.kubernetes.io/managed-by: sluice`).
pub fn is_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

/// What one of our certificate Secrets holds: its names (from [`ALT_NAMES`]) and the leaf's
/// validity. `None` for a Secret that is not ours or whose certificate cannot be read (it is
/// then re-issued).
pub fn existing_certificate(secret: &Secret) -> Option<ExistingCert> {
    if !is_ours(secret) {
        return None;
    }
    let hosts: Vec<String> = secret
        .metadata
        .annotations
        .as_ref()?
        .get(ALT_NAMES)?
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    let crt = secret.data.as_ref()?.get("tls.crt")?;
    let leaf = CertificateDer::pem_slice_iter(&crt.0).next()?.ok()?;
    let fields = crate::tls::der::parse_certificate(&leaf).ok()?;
    Some(ExistingCert {
        hosts,
        not_before: fields.not_before,
        not_after: fields.not_after,
    })
}

/// The account key Secret `name` holding `key_pkcs8` (DER) as PEM in `data[account.key]`.
pub fn account_secret(name: &ObjectRef, key_pkcs8: &[u8]) -> Secret {
    Secret {
        metadata: meta(name, BTreeMap::new()),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([data(ACCOUNT_KEY, pkcs8_pem(key_pkcs8))])),
        ..Default::default()
    }
}

/// The account key (PKCS#8 DER) in an account key Secret.
pub fn account_key_from_secret(secret: &Secret) -> Result<Vec<u8>, SecretError> {
    let me = crate::cluster::object_ref(&secret.metadata);
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get(ACCOUNT_KEY))
        .filter(|v| !v.0.is_empty())
        .ok_or(SecretError::Missing {
            secret: me.clone(),
            key: ACCOUNT_KEY,
        })?;
    pkcs8_from_pem(&pem.0).map_err(|detail| SecretError::Invalid {
        secret: me,
        key: ACCOUNT_KEY,
        detail,
    })
}

/// PKCS#8 DER as PEM (`-----BEGIN PRIVATE KEY-----`).
pub fn pkcs8_pem(key_pkcs8: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key_pkcs8);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// PKCS#8 DER from PEM, checked to be an ECDSA P-256 account key.
pub fn pkcs8_from_pem(pem: &[u8]) -> Result<Vec<u8>, String> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map_err(|e| format!("not a PEM PKCS#8 private key: {e}"))?;
    let der = der.secret_pkcs8_der().to_vec();
    super::keys::account_thumbprint(&der).map_err(|e| e.to_string())?;
    Ok(der)
}

/// The challenge-answers Secret `name` holding `answers` (sorted, so that equal sets give
/// equal Secrets and the actor can skip writes that change nothing).
pub fn challenge_answers_secret(name: &ObjectRef, answers: &[SharedAnswer]) -> Secret {
    let mut sorted = answers.to_vec();
    sorted.sort();
    sorted.dedup();
    let json = serde_json::to_vec(&sorted).unwrap_or_else(|_| b"[]".to_vec());
    Secret {
        metadata: meta(name, BTreeMap::new()),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([data(ANSWERS_KEY, json)])),
        ..Default::default()
    }
}

/// The answers in a challenge-answers Secret (none when the key is absent).
pub fn challenge_answers_from_secret(secret: &Secret) -> Result<Vec<SharedAnswer>, SecretError> {
    let Some(json) = secret.data.as_ref().and_then(|d| d.get(ANSWERS_KEY)) else {
        return Ok(Vec::new());
    };
    serde_json::from_slice(&json.0).map_err(|e| SecretError::Invalid {
        secret: crate::cluster::object_ref(&secret.metadata),
        key: ANSWERS_KEY,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::ChallengeKind;

    fn issued() -> Issued {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["a.test".to_string(), "b.test".to_string()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let fields = crate::tls::der::parse_certificate(cert.der()).unwrap();
        Issued {
            hosts: vec!["a.test".into(), "b.test".into()],
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_before: fields.not_before,
            not_after: fields.not_after,
        }
    }

    #[test]
    fn certificate_secrets_are_ours_and_familiar() {
        let issued = issued();
        let s = certificate_secret(
            &ObjectRef::new("ns", "web-tls"),
            &issued,
            "sluice",
            "https://acme.test/dir",
        );
        assert!(is_ours(&s));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let a = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[ALT_NAMES], "a.test,b.test");
        assert_eq!(a[COMMON_NAME], "a.test");
        assert_eq!(a[ISSUER_NAME], "sluice");
        assert_eq!(a[ISSUER_KIND], "ClusterIssuer");
        // The rest of sluice serves it as any TLS Secret.
        let d = s.data.as_ref().unwrap();
        crate::tls::load_pem(&d["tls.crt"].0, &d["tls.key"].0).expect("servable");
        let existing = existing_certificate(&s).unwrap();
        assert_eq!(existing.hosts, ["a.test", "b.test"]);
        assert_eq!(existing.not_after, issued.not_after);
        assert_eq!(existing.not_before, issued.not_before);
    }

    #[test]
    fn other_secrets_are_not_ours() {
        let mut s = certificate_secret(&ObjectRef::new("ns", "x"), &issued(), "sluice", "u");
        s.metadata.labels = None;
        assert!(!is_ours(&s));
        assert_eq!(existing_certificate(&s), None);
        s.metadata.labels = Some(BTreeMap::from([(
            MANAGED_BY_LABEL.to_string(),
            "cert-manager".to_string(),
        )]));
        assert!(!is_ours(&s));
    }

    #[test]
    fn account_keys_round_trip() {
        let key = crate::acme::generate_account_key();
        let s = account_secret(&ObjectRef::new("sluice", DEFAULT_ACCOUNT_SECRET), &key);
        assert_eq!(account_key_from_secret(&s).unwrap(), key);
        let mut broken = s.clone();
        broken.data = Some(BTreeMap::from([data(ACCOUNT_KEY, "junk")]));
        let e = account_key_from_secret(&broken).unwrap_err().to_string();
        assert!(
            e.contains("sluice/sluice-acme-account") && e.contains("account.key"),
            "{e}"
        );
        broken.data = None;
        assert!(matches!(
            account_key_from_secret(&broken),
            Err(SecretError::Missing { .. })
        ));
    }

    #[test]
    fn challenge_answers_round_trip() {
        let answers = vec![
            SharedAnswer {
                kind: ChallengeKind::TlsAlpn01,
                host: "b.test".into(),
                token: String::new(),
                key_authorization: "t2.x".into(),
            },
            SharedAnswer {
                kind: ChallengeKind::Http01,
                host: "a.test".into(),
                token: "t1".into(),
                key_authorization: "t1.x".into(),
            },
        ];
        let name = ObjectRef::new("sluice", DEFAULT_CHALLENGES_SECRET);
        let s = challenge_answers_secret(&name, &answers);
        let back = challenge_answers_from_secret(&s).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].kind, ChallengeKind::Http01, "sorted");
        let mut reversed = answers.clone();
        reversed.reverse();
        assert_eq!(
            challenge_answers_secret(&name, &reversed),
            s,
            "order-independent"
        );
        let json = String::from_utf8(s.data.unwrap()[ANSWERS_KEY].0.clone()).unwrap();
        assert!(json.contains("\"kind\":\"http-01\""), "{json}");
    }
}
