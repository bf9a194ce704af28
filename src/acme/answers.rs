//! Challenge answers: what an order presents ([`ChallengeAnswer`]), the form every replica
//! shares ([`SharedAnswer`], kept in a Secret), and the immutable snapshot the data plane
//! reads ([`Challenges`], through an `Arc<ArcSwap<Challenges>>`: the proxy answers HTTP-01
//! requests from it and the TLS resolver TLS-ALPN-01 handshakes, never waiting on an actor).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

/// The three challenge types of RFC 8555 (section 8.3, 8.4) and RFC 8737.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum ChallengeKind {
    /// `http-01`: a file under `/.well-known/acme-challenge/` on port 80.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// `tls-alpn-01`: a self-signed certificate served to ALPN `acme-tls/1` on port 443.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// `dns-01`: a TXT record at `_acme-challenge.<name>`; the only one for wildcards.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl ChallengeKind {
    /// The ACME name (`http-01`, `tls-alpn-01`, `dns-01`), also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChallengeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http-01" | "http01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" | "tlsalpn01" => Ok(ChallengeKind::TlsAlpn01),
            "dns-01" | "dns01" => Ok(ChallengeKind::Dns01),
            _ => Err(format!(
                "{s:?} is not a challenge type: expected http-01, tls-alpn-01 or dns-01"
            )),
        }
    }
}

/// What an order asks a [`ChallengeSolver`](super::ChallengeSolver) to present (and later
/// clean up) for one authorization.
#[derive(Clone)]
pub enum ChallengeAnswer {
    /// Answer `GET http://<host>/.well-known/acme-challenge/<token>` with `key_authorization`.
    Http01 {
        /// The name being validated.
        host: String,
        /// The challenge token (the last path segment).
        token: String,
        /// The response body.
        key_authorization: String,
    },
    /// Answer a TLS handshake for SNI `host` with ALPN `acme-tls/1` with `certificate`.
    TlsAlpn01 {
        /// The name being validated.
        host: String,
        /// The key authorization (what other replicas need to build their own certificate).
        key_authorization: String,
        /// The challenge certificate (RFC 8737), from rustls-acme's helper.
        certificate: Arc<CertifiedKey>,
    },
    /// Publish a TXT record.
    Dns01 {
        /// The name being validated (for a wildcard, the name without `*.`).
        host: String,
        /// The record name, `_acme-challenge.<host>`.
        record: String,
        /// The TXT value.
        value: String,
    },
}

impl fmt::Debug for ChallengeAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChallengeAnswer::Http01 { host, token, .. } => f
                .debug_struct("Http01")
                .field("host", host)
                .field("token", token)
                .finish_non_exhaustive(),
            ChallengeAnswer::TlsAlpn01 { host, .. } => f
                .debug_struct("TlsAlpn01")
                .field("host", host)
                .finish_non_exhaustive(),
            ChallengeAnswer::Dns01 {
                host,
                record,
                value,
            } => f
                .debug_struct("Dns01")
                .field("host", host)
                .field("record", record)
                .field("value", value)
                .finish(),
        }
    }
}

impl ChallengeAnswer {
    /// The challenge type.
    pub fn kind(&self) -> ChallengeKind {
        match self {
            ChallengeAnswer::Http01 { .. } => ChallengeKind::Http01,
            ChallengeAnswer::TlsAlpn01 { .. } => ChallengeKind::TlsAlpn01,
            ChallengeAnswer::Dns01 { .. } => ChallengeKind::Dns01,
        }
    }

    /// The name being validated.
    pub fn host(&self) -> &str {
        match self {
            ChallengeAnswer::Http01 { host, .. }
            | ChallengeAnswer::TlsAlpn01 { host, .. }
            | ChallengeAnswer::Dns01 { host, .. } => host,
        }
    }

    /// The form replicas share (HTTP-01 and TLS-ALPN-01; DNS-01 lives in DNS, not in the
    /// data plane).
    pub fn shared(&self) -> Option<SharedAnswer> {
        match self {
            ChallengeAnswer::Http01 {
                host,
                token,
                key_authorization,
            } => Some(SharedAnswer {
                kind: ChallengeKind::Http01,
                host: host.clone(),
                token: token.clone(),
                key_authorization: key_authorization.clone(),
            }),
            ChallengeAnswer::TlsAlpn01 {
                host,
                key_authorization,
                ..
            } => Some(SharedAnswer {
                kind: ChallengeKind::TlsAlpn01,
                host: host.clone(),
                token: String::new(),
                key_authorization: key_authorization.clone(),
            }),
            ChallengeAnswer::Dns01 { .. } => None,
        }
    }
}

/// A challenge answer in the form every replica can serve from: kept (as JSON) in the shared
/// challenge-answers Secret. A TLS-ALPN-01 answer carries the key authorization only; each
/// replica builds its own certificate from it ([`tls_alpn01_certificate`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SharedAnswer {
    /// `http-01` or `tls-alpn-01`.
    pub kind: ChallengeKind,
    /// The name being validated.
    pub host: String,
    /// The HTTP-01 token (empty for TLS-ALPN-01).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// The key authorization.
    pub key_authorization: String,
}

/// Builds a TLS-ALPN-01 challenge certificate (RFC 8737 section 3): self-signed for `host`,
/// with the critical `acmeIdentifier` extension holding SHA-256 of the key authorization, and
/// a fresh P-256 key.
pub fn tls_alpn01_certificate(
    host: &str,
    key_authorization: &str,
) -> Result<Arc<CertifiedKey>, rcgen::Error> {
    let hash = digest(&SHA256, key_authorization.as_bytes());
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(hash.as_ref())];
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|_| rcgen::Error::KeyGenerationUnavailable)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

#[derive(Clone, Debug)]
struct Http01 {
    host: String,
    key_authorization: Arc<str>,
}

/// The challenge answers the data plane serves: an immutable snapshot, replaced as a whole.
#[derive(Clone, Default)]
pub struct Challenges {
    /// HTTP-01 token -> (host, key authorization).
    http01: HashMap<String, Http01>,
    /// Lower-case host -> TLS-ALPN-01 certificate.
    tls_alpn01: HashMap<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for Challenges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenges")
            .field("http01", &self.http01.len())
            .field("tls_alpn01", &self.tls_alpn01.len())
            .finish()
    }
}

/// The swappable snapshot shared by the proxy, the TLS resolver and whoever publishes answers.
pub type ChallengesHandle = Arc<ArcSwap<Challenges>>;

/// A new, empty [`ChallengesHandle`].
pub fn challenges_handle() -> ChallengesHandle {
    Arc::new(ArcSwap::from_pointee(Challenges::default()))
}

impl crate::tls::AlpnChallenges for ArcSwap<Challenges> {
    fn challenge_cert(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        self.load().tls_alpn01(sni)
    }
}

impl Challenges {
    /// Answers from their shared form (what a replica reads from the challenge-answers
    /// Secret), building a TLS-ALPN-01 certificate for each TLS-ALPN-01 answer.
    pub fn from_shared(answers: &[SharedAnswer]) -> Result<Challenges, rcgen::Error> {
        let mut c = Challenges::default();
        for a in answers {
            match a.kind {
                ChallengeKind::Http01 => c.insert_http01(&a.host, &a.token, &a.key_authorization),
                ChallengeKind::TlsAlpn01 => {
                    let cert = tls_alpn01_certificate(&a.host, &a.key_authorization)?;
                    c.insert_tls_alpn01(&a.host, cert);
                }
                ChallengeKind::Dns01 => {}
            }
        }
        Ok(c)
    }

    /// Adds an answer (DNS-01 answers are not served here and are ignored).
    pub fn insert(&mut self, answer: &ChallengeAnswer) {
        match answer {
            ChallengeAnswer::Http01 {
                host,
                token,
                key_authorization,
            } => self.insert_http01(host, token, key_authorization),
            ChallengeAnswer::TlsAlpn01 {
                host, certificate, ..
            } => self.insert_tls_alpn01(host, certificate.clone()),
            ChallengeAnswer::Dns01 { .. } => {}
        }
    }

    /// Removes an answer.
    pub fn remove(&mut self, answer: &ChallengeAnswer) {
        match answer {
            ChallengeAnswer::Http01 { token, .. } => {
                self.http01.remove(token);
            }
            ChallengeAnswer::TlsAlpn01 { host, .. } => {
                self.tls_alpn01.remove(&normalize(host));
            }
            ChallengeAnswer::Dns01 { .. } => {}
        }
    }

    fn insert_http01(&mut self, host: &str, token: &str, key_authorization: &str) {
        self.http01.insert(
            token.to_string(),
            Http01 {
                host: normalize(host),
                key_authorization: Arc::from(key_authorization),
            },
        );
    }

    fn insert_tls_alpn01(&mut self, host: &str, cert: Arc<CertifiedKey>) {
        self.tls_alpn01.insert(normalize(host), cert);
    }

    /// The key authorization for an HTTP-01 request for `token` whose `Host` is `host` (a
    /// port, upper case and a trailing dot are ignored: Pebble sends `name:port`).
    pub fn http01(&self, host: &str, token: &str) -> Option<Arc<str>> {
        let answer = self.http01.get(token)?;
        (normalize(strip_port(host)) == answer.host).then(|| answer.key_authorization.clone())
    }

    /// The TLS-ALPN-01 certificate for SNI `sni`.
    pub fn tls_alpn01(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn01.get(&normalize(sni)).cloned()
    }

    /// True when there is nothing to answer.
    pub fn is_empty(&self) -> bool {
        self.http01.is_empty() && self.tls_alpn01.is_empty()
    }

    /// Number of answers.
    pub fn len(&self) -> usize {
        self.http01.len() + self.tls_alpn01.len()
    }
}

/// The path prefix of HTTP-01 requests.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The token of an HTTP-01 request path, if it is one.
pub fn http01_token(path: &str) -> Option<&str> {
    path.strip_prefix(HTTP01_PREFIX)
        .filter(|t| !t.is_empty() && !t.contains('/'))
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_matches_host_without_port_and_token() {
        let mut c = Challenges::default();
        c.insert(&ChallengeAnswer::Http01 {
            host: "A.example.com".into(),
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
        });
        assert_eq!(
            c.http01("a.example.com:5002", "tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(
            c.http01("a.EXAMPLE.com.", "tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(c.http01("b.example.com", "tok"), None, "another host");
        assert_eq!(c.http01("a.example.com", "other"), None, "unknown token");
        c.remove(&ChallengeAnswer::Http01 {
            host: "a.example.com".into(),
            token: "tok".into(),
            key_authorization: String::new(),
        });
        assert!(c.is_empty());
    }

    #[test]
    fn tokens_from_paths() {
        assert_eq!(
            http01_token("/.well-known/acme-challenge/abc_-1"),
            Some("abc_-1")
        );
        assert_eq!(http01_token("/.well-known/acme-challenge/"), None);
        assert_eq!(http01_token("/.well-known/acme-challenge/a/b"), None);
        assert_eq!(http01_token("/other"), None);
    }

    #[test]
    fn shared_answers_rebuild_tls_alpn_certificates() {
        let shared = vec![
            SharedAnswer {
                kind: ChallengeKind::TlsAlpn01,
                host: "t.example.com".into(),
                token: String::new(),
                key_authorization: "tok.thumb".into(),
            },
            SharedAnswer {
                kind: ChallengeKind::Http01,
                host: "h.example.com".into(),
                token: "tok2".into(),
                key_authorization: "tok2.thumb".into(),
            },
        ];
        let c = Challenges::from_shared(&shared).unwrap();
        assert_eq!(c.len(), 2);
        let cert = c.tls_alpn01("T.example.com").expect("certificate");
        let der = cert.cert[0].as_ref();
        // The acmeIdentifier extension (1.3.6.1.5.5.7.1.31) carries SHA-256 of the key
        // authorization.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(
            der.windows(oid.len()).any(|w| w == oid),
            "acmeIdentifier present"
        );
        let hash = digest(&SHA256, b"tok.thumb");
        assert!(der.windows(32).any(|w| w == hash.as_ref()), "hash present");
        assert_eq!(
            c.http01("h.example.com", "tok2").as_deref(),
            Some("tok2.thumb")
        );
    }

    #[test]
    fn challenge_kinds_parse() {
        assert_eq!(
            "HTTP-01".parse::<ChallengeKind>(),
            Ok(ChallengeKind::Http01)
        );
        assert_eq!(
            "tls-alpn-01".parse::<ChallengeKind>(),
            Ok(ChallengeKind::TlsAlpn01)
        );
        assert_eq!("dns-01".parse::<ChallengeKind>(), Ok(ChallengeKind::Dns01));
        assert!("dns".parse::<ChallengeKind>().is_err());
    }
}
