//! TLS termination: certificates from `kubernetes.io/tls` Secrets, chosen by SNI.
//!
//! - [`CertStore::build`] turns the model's [`TlsHost`](crate::model::TlsHost)s and the Secrets
//!   into an immutable SNI lookup, with a [`Diagnostic`](crate::model::Diagnostic) for every
//!   Secret it cannot use (those hosts get the default certificate);
//! - [`default_certificate`] makes the self-signed certificate served for unknown names;
//! - [`SniResolver`] plugs a swappable [`CertStore`] into rustls (one atomic load per
//!   handshake), and [`server_config`] builds the listener's [`rustls::ServerConfig`].
//!
//! Everything uses the aws-lc-rs crypto provider explicitly.

pub mod der;
pub mod policy;
mod store;
#[cfg(test)]
mod tests;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

pub use policy::{MinVersion, PolicyError, TlsPolicy};
pub use store::{CertStore, DefaultChoice, ParsedSecrets};

/// ALPN protocol id of HTTP/2, offered first.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// ALPN protocol id of TLS-ALPN-01 challenge handshakes (RFC 8737): offered last, answered
/// only with a challenge certificate, and such a connection is closed after the handshake.
pub const ALPN_ACME_TLS: &[u8] = rustls_acme::acme::ACME_TLS_ALPN_NAME;
/// How many TLS 1.2 sessions the server-side session-id cache keeps (TLS 1.3 and ticket-capable
/// TLS 1.2 clients resume from stateless tickets instead).
pub const SESSION_CACHE_SIZE: usize = 4096;

/// Why a certificate or key could not be used, or TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.crt` has no `CERTIFICATE` PEM section.
    #[error("tls.crt holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// `tls.crt` is not valid PEM.
    #[error("tls.crt is not valid PEM: {0}")]
    CertPem(#[source] pem::Error),
    /// A certificate in `tls.crt` is not a readable X.509 certificate.
    #[error("certificate {} in tls.crt is not a valid X.509 certificate: {source}", .index + 1)]
    BadCertificate {
        /// Position in `tls.crt`, from 0.
        index: usize,
        /// What the DER reader found.
        #[source]
        source: der::DerError,
    },
    /// Certificate `index` was not issued by certificate `index + 1`.
    #[error(
        "certificate {} in tls.crt was not issued by certificate {}: list the leaf certificate \
         first, then each issuer in order",
        .index + 1,
        .index + 2
    )]
    ChainOrder {
        /// Position in `tls.crt` of the certificate whose issuer does not follow it, from 0.
        index: usize,
    },
    /// `tls.key` has no private key PEM section.
    #[error("tls.key holds no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")]
    NoKey,
    /// `tls.key` is not valid PEM.
    #[error("tls.key is not valid PEM: {0}")]
    KeyPem(#[source] pem::Error),
    /// The private key is of an unsupported type or malformed.
    #[error(
        "tls.key is not a usable private key (supported: RSA, ECDSA P-256/P-384/P-521, Ed25519): \
         {0}"
    )]
    UnsupportedKey(#[source] rustls::Error),
    /// The private key does not belong to the leaf (first) certificate.
    #[error("the private key in tls.key does not belong to the first certificate in tls.crt")]
    KeyMismatch,
    /// rustls could not read the leaf certificate.
    #[error("the first certificate in tls.crt cannot be used: {0}")]
    LeafRejected(#[source] rustls::Error),
    /// Generating the default certificate failed.
    #[error("generating the default certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Building the rustls configuration failed.
    #[error("configuring TLS: {0}")]
    Config(#[source] rustls::Error),
    /// The TLS policy (`--tls-min-version`, `--tls-cipher-suites`) cannot be used.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl TlsError {
    /// The Secret field the problem is in (`data[tls.crt]` or `data[tls.key]`), if any.
    pub fn secret_field(&self) -> Option<&'static str> {
        match self {
            TlsError::NoCertificate
            | TlsError::CertPem(_)
            | TlsError::BadCertificate { .. }
            | TlsError::ChainOrder { .. }
            | TlsError::LeafRejected(_) => Some("data[tls.crt]"),
            TlsError::NoKey
            | TlsError::KeyPem(_)
            | TlsError::UnsupportedKey(_)
            | TlsError::KeyMismatch => Some("data[tls.key]"),
            TlsError::Generate(_) | TlsError::Config(_) | TlsError::Policy(_) => None,
        }
    }
}

/// A certificate chain with its key, checked and ready to serve.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    /// Chain and signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf certificate, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// A TLS Secret as parsed once per configuration change: the certificate to serve, or why it
/// cannot be used. Shared by the translation (which must know whether to redirect to HTTPS)
/// and the certificate store (which serves it).
pub type ParsedCert = Result<LoadedCert, Arc<TlsError>>;

/// Parses the `tls.crt` and `tls.key` of a Secret (missing keys read as empty).
pub fn parse_tls_secret(secret: &k8s_openapi::api::core::v1::Secret) -> ParsedCert {
    let data = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map_or(&[][..], |v| v.0.as_slice())
    };
    load_pem(data("tls.crt"), data("tls.key")).map_err(Arc::new)
}

/// Parses and checks a PEM certificate chain (leaf first) and its PEM private key (PKCS#8,
/// SEC1 or PKCS#1), as found in the `tls.crt` and `tls.key` of a `kubernetes.io/tls` Secret.
///
/// Checks, in order: every certificate is readable, the key is readable and supported, each
/// certificate was issued by the next one (issuer Name equals the next subject Name), and the
/// key belongs to the leaf. Expiry is not checked here (see [`LoadedCert::not_after`]).
pub fn load_pem(crt: &[u8], key: &[u8]) -> Result<LoadedCert, TlsError> {
    let chain = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertPem)?;
    let mut fields = Vec::with_capacity(chain.len());
    for (index, cert) in chain.iter().enumerate() {
        let f = der::parse_certificate(cert)
            .map_err(|source| TlsError::BadCertificate { index, source })?;
        fields.push(f);
    }
    let Some(leaf) = fields.first() else {
        return Err(TlsError::NoCertificate);
    };
    let not_after = leaf.not_after;

    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey,
        e => TlsError::KeyPem(e),
    })?;
    let signing = aws_lc_rs::sign::any_supported_type(&key).map_err(TlsError::UnsupportedKey)?;

    for (index, pair) in fields.windows(2).enumerate() {
        if let [cert, issuer] = pair
            && cert.issuer != issuer.subject
        {
            return Err(TlsError::ChainOrder { index });
        }
    }

    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key that cannot tell its public key cannot be checked; rustls would serve it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err(TlsError::KeyMismatch),
        Err(e) => return Err(TlsError::LeafRejected(e)),
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
    })
}

/// Generates the certificate served when no Secret covers the requested name: self-signed,
/// ECDSA P-256, CN `sluice default certificate`, SAN `sluice.invalid`. Made fresh at every start.
pub fn default_certificate() -> Result<Arc<CertifiedKey>, TlsError> {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["sluice.invalid".to_string()])?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "sluice default certificate");
    params.distinguished_name = dn;
    let cert = params.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing = aws_lc_rs::sign::any_supported_type(&key).map_err(TlsError::Config)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// Chooses the certificate for each TLS handshake from the current [`CertStore`].
///
/// The store is swapped atomically when Secrets or Ingresses change; a handshake does one
/// atomic load and one or two hash lookups.
///
/// With [`SniResolver::with_challenges`], a ClientHello whose ALPN is exactly `acme-tls/1` (a
/// TLS-ALPN-01 validation, see rustls-acme's `is_tls_alpn_challenge`) is answered with the
/// challenge certificate for its SNI from the ACME challenges snapshot, or refused when there
/// is none; it never gets a served certificate.
#[derive(Clone, Debug)]
pub struct SniResolver {
    store: Arc<ArcSwap<CertStore>>,
    challenges: Option<Arc<dyn AlpnChallenges>>,
}

/// Where TLS-ALPN-01 challenge certificates come from: the ACME answers snapshot
/// (`acme::ChallengesHandle` implements it), kept behind a trait so that this module does not
/// depend on the ACME one.
pub trait AlpnChallenges: Send + Sync + std::fmt::Debug {
    /// The challenge certificate for a handshake naming `sni` with ALPN `acme-tls/1`, while
    /// that name is being validated.
    fn challenge_cert(&self, sni: &str) -> Option<Arc<CertifiedKey>>;
}

impl SniResolver {
    /// A resolver reading `store`.
    pub fn new(store: Arc<ArcSwap<CertStore>>) -> Self {
        SniResolver {
            store,
            challenges: None,
        }
    }

    /// Also answers TLS-ALPN-01 handshakes from `challenges` (the snapshot the proxy answers
    /// HTTP-01 from: [`Proxy::challenges`](crate::proxy::Proxy::challenges)).
    #[must_use]
    pub fn with_challenges(mut self, challenges: Arc<dyn AlpnChallenges>) -> Self {
        self.challenges = Some(challenges);
        self
    }

    /// The store this resolver reads: swap a new [`CertStore`] in to change certificates.
    pub fn store(&self) -> &Arc<ArcSwap<CertStore>> {
        &self.store
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if rustls_acme::is_tls_alpn_challenge(&client_hello) {
            let name = client_hello.server_name()?;
            return self.challenges.as_ref()?.challenge_cert(name);
        }
        Some(self.store.load().resolve(client_hello.server_name()))
    }
}

/// The listener's rustls configuration: aws-lc-rs with the versions and cipher suites of
/// `policy` (default: TLS 1.3 and 1.2, rustls's default suites), no client certificates,
/// ALPN `h2`, `http/1.1`, then `acme-tls/1` (rustls refuses a handshake whose offered ALPN has
/// no overlap with this list, so the challenge protocol must be in it), certificates from
/// `resolver`, session resumption through stateless tickets (keys rotated every 6 hours) and
/// an in-memory session-id cache ([`SESSION_CACHE_SIZE`] entries).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    policy: &TlsPolicy,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(policy.provider()?)
        .with_protocol_versions(policy.min_version.versions())
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![
        ALPN_H2.to_vec(),
        ALPN_HTTP11.to_vec(),
        ALPN_ACME_TLS.to_vec(),
    ];
    config.ticketer = aws_lc_rs::Ticketer::new().map_err(TlsError::Config)?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    Ok(Arc::new(config))
}

/// A valid self-signed certificate and key (PEM), generated once, for tests that need a
/// Secret that parses.
#[cfg(test)]
pub(crate) fn test_pem() -> &'static (String, String) {
    static PEM: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        let c =
            rcgen::generate_simple_self_signed(vec!["test.invalid".to_string()]).expect("rcgen");
        (c.cert.pem(), c.key_pair.serialize_pem())
    })
}
