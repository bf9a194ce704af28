//! The ACME client: rustls-acme's low-level `acme` module behind a wrapper that
//!
//! - trusts the webpki roots plus extra roots from a PEM file (Pebble, a private CA), through a
//!   rustls [`ClientConfig`] built here with the aws-lc-rs provider;
//! - retries a request the server refused with `badNonce` (up to [`BAD_NONCE_RETRIES`] times;
//!   every attempt fetches a fresh nonce) and counts those retries;
//! - bounds every request with a timeout;
//! - turns failures into [`AcmeError`], which keeps the server's problem document (`type`,
//!   `detail`, `subproblems`) and says whether retrying may help.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls_acme::acme::{
    self as lib, LETS_ENCRYPT_PRODUCTION_DIRECTORY, LETS_ENCRYPT_STAGING_DIRECTORY,
};
use rustls_acme::futures_rustls::rustls::sign::CertifiedKey;
use serde::Deserialize;

use super::keys;

/// How many times a request refused with `badNonce` is sent again.
pub const BAD_NONCE_RETRIES: u32 = 3;
/// Default bound on one ACME request (connect, TLS, request, response).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of the ACME error types of RFC 8555 section 6.7.
pub const ERROR_PREFIX: &str = "urn:ietf:params:acme:error:";

/// Resolves `--acme-server`: `letsencrypt` (production), `letsencrypt-staging`, or a directory
/// URL (`https://...`; `http://` is refused, ACME requires TLS).
pub fn directory_url(server: &str) -> Result<String, ClientError> {
    match server.trim() {
        "" | "letsencrypt" | "letsencrypt-production" => {
            Ok(LETS_ENCRYPT_PRODUCTION_DIRECTORY.to_string())
        }
        "letsencrypt-staging" => Ok(LETS_ENCRYPT_STAGING_DIRECTORY.to_string()),
        url if url.starts_with("https://") && url.len() > "https://".len() => Ok(url.to_string()),
        other => Err(ClientError::Directory(other.to_string())),
    }
}

/// Why the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--acme-server` is neither a short name nor an https URL.
    #[error(
        "ACME server {0:?} is not letsencrypt, letsencrypt-staging or an https:// directory URL"
    )]
    Directory(String),
    /// The extra roots file holds no certificate or one rustls cannot use.
    #[error("ACME CA file: {0}")]
    Roots(String),
    /// rustls refused the configuration.
    #[error("configuring TLS for the ACME client: {0}")]
    Tls(#[source] rustls::Error),
}

/// The rustls client configuration for talking to the ACME server: aws-lc-rs, TLS 1.3 and
/// 1.2, the webpki roots, plus every certificate in `extra_roots_pem` (the contents of
/// `--acme-ca-file`).
pub fn client_config(extra_roots_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Roots(format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Roots(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClientError::Roots(format!("unusable root certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An ACME problem document (RFC 7807, RFC 8555 section 6.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// The error type, e.g. `urn:ietf:params:acme:error:unauthorized`.
    #[serde(rename = "type", default)]
    pub typ: String,
    /// The human-readable detail.
    #[serde(default)]
    pub detail: String,
    /// HTTP status the server answered with, when the problem came as a response.
    #[serde(skip)]
    pub status: Option<u16>,
    /// Per-identifier problems (RFC 8555 section 6.7.1).
    #[serde(default)]
    pub subproblems: Vec<Subproblem>,
}

/// A problem about one identifier of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Subproblem {
    /// The error type.
    #[serde(rename = "type", default)]
    pub typ: String,
    /// The human-readable detail.
    #[serde(default)]
    pub detail: String,
    /// The identifier the problem is about.
    #[serde(default)]
    pub identifier: Option<SubproblemIdentifier>,
}

/// The identifier of a [`Subproblem`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SubproblemIdentifier {
    /// `dns`.
    #[serde(rename = "type", default)]
    pub typ: String,
    /// The name.
    #[serde(default)]
    pub value: String,
}

impl Problem {
    /// The error type without the `urn:ietf:params:acme:error:` prefix (`badNonce`,
    /// `unauthorized`, `rateLimited`...).
    pub fn short_type(&self) -> &str {
        self.typ.strip_prefix(ERROR_PREFIX).unwrap_or(&self.typ)
    }

    /// True for `badNonce`.
    pub fn is_bad_nonce(&self) -> bool {
        self.short_type() == "badNonce"
    }

    /// Whether trying again later may succeed: server errors, rate limits, the transient
    /// kinds of RFC 8555 (`badNonce`, `serverInternal`, `connection`, `dns`), and
    /// `accountDoesNotExist` (the CA forgot the account, e.g. a test CA restarted: the next
    /// attempt registers the same key again, as the certificate actor does after a failure).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.short_type(),
            "badNonce"
                | "serverInternal"
                | "rateLimited"
                | "connection"
                | "dns"
                | "accountDoesNotExist"
        ) || self.status.is_some_and(|s| s >= 500 || s == 429)
    }

    fn from_lib(p: &lib::Problem) -> Problem {
        Problem {
            typ: p.typ.clone().unwrap_or_default(),
            detail: p.detail.clone().unwrap_or_default(),
            status: None,
            subproblems: Vec::new(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let typ = if self.typ.is_empty() {
            "unknown"
        } else {
            self.short_type()
        };
        write!(f, "{typ}: {}", self.detail)?;
        for sub in &self.subproblems {
            let who = sub.identifier.as_ref().map_or("", |i| i.value.as_str());
            let t = sub.typ.strip_prefix(ERROR_PREFIX).unwrap_or(&sub.typ);
            write!(f, "; {who}: {t}: {}", sub.detail)?;
        }
        Ok(())
    }
}

/// A failed ACME request.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The server answered with an error status and a problem document.
    #[error("{what}: the ACME server refused: {problem}")]
    Problem {
        /// The request (`newOrder`, `finalize`...).
        what: &'static str,
        /// What the server said.
        problem: Problem,
    },
    /// The server could not be reached, or the connection failed (retryable).
    #[error("{what}: cannot reach the ACME server: {detail}")]
    Unreachable {
        /// The request.
        what: &'static str,
        /// The connection error.
        detail: String,
    },
    /// No complete answer within the request timeout (retryable).
    #[error("{what}: no answer from the ACME server within {after:?}")]
    Timeout {
        /// The request.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The server answered something that is not ACME (bad JSON, a missing header, an error
    /// status without a problem document).
    #[error("{what}: unexpected answer from the ACME server: {detail}")]
    Protocol {
        /// The request.
        what: &'static str,
        /// What was wrong, with the status when there was one.
        detail: String,
        /// The HTTP status, if the answer had an error status.
        status: Option<u16>,
    },
    /// The account key cannot be used.
    #[error("the ACME account key cannot be used: {0}")]
    AccountKey(String),
    /// A local failure (generating a key or a challenge certificate).
    #[error("{0}")]
    Local(String),
}

impl AcmeError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AcmeError::Problem { problem, .. } => problem.is_retryable(),
            AcmeError::Unreachable { .. } | AcmeError::Timeout { .. } => true,
            AcmeError::Protocol { status, .. } => status.is_none_or(|s| s >= 500 || s == 429),
            AcmeError::AccountKey(_) | AcmeError::Local(_) => false,
        }
    }

    /// The server's problem document, if the server sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AcmeError::Problem { problem, .. } => Some(problem),
            _ => None,
        }
    }

    fn is_bad_nonce(&self) -> bool {
        self.problem().is_some_and(Problem::is_bad_nonce)
    }

    /// Classifies an error of rustls-acme.
    ///
    /// rustls-acme keeps the type of its HTTP errors private (`https_helper` is not a public
    /// module), so an error status is recognised from its message, which is
    /// `non 2xx http status: <code> <body as a Rust debug string>`; the body is then read as a
    /// problem document. tests/acme_pebble.rs proves this against a real server (badNonce
    /// retries and validation errors), so a change of that message in a new rustls-acme
    /// version fails the tests.
    fn from_lib(what: &'static str, e: lib::AcmeError) -> AcmeError {
        match e {
            lib::AcmeError::HttpRequest(inner) => {
                let text = inner.to_string();
                match parse_status_message(&text) {
                    Some((status, body)) => Self::from_status(what, status, &body),
                    None => AcmeError::Unreachable { what, detail: text },
                }
            }
            lib::AcmeError::Io(e) => AcmeError::Unreachable {
                what,
                detail: e.to_string(),
            },
            lib::AcmeError::KeyRejected(e) => AcmeError::AccountKey(e.to_string()),
            lib::AcmeError::Rcgen(e) => AcmeError::Local(e.to_string()),
            e => AcmeError::Protocol {
                what,
                detail: e.to_string(),
                status: None,
            },
        }
    }

    /// An error status with its body: a problem document, or a protocol error.
    fn from_status(what: &'static str, status: u16, body: &str) -> AcmeError {
        match serde_json::from_str::<Problem>(body) {
            Ok(mut problem) if !problem.typ.is_empty() => {
                problem.status = Some(status);
                AcmeError::Problem { what, problem }
            }
            _ => AcmeError::Protocol {
                what,
                detail: format!(
                    "HTTP status {status}: {}",
                    body.chars().take(200).collect::<String>()
                ),
                status: Some(status),
            },
        }
    }
}

/// Reads `non 2xx http status: <code> "<body, debug-escaped>"`.
fn parse_status_message(text: &str) -> Option<(u16, String)> {
    let rest = text.strip_prefix("non 2xx http status: ")?;
    let (code, body) = rest.split_once(' ')?;
    Some((code.parse().ok()?, unescape_debug_str(body)?))
}

/// Undoes `format!("{:?}", s)` for a `str`: quotes, `\\`, `\"`, `\'`, `\n`, `\r`, `\t`,
/// `\0` and `\u{..}`.
fn unescape_debug_str(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let mut hex = String::new();
                loop {
                    match chars.next()? {
                        '}' => break,
                        h => hex.push(h),
                    }
                }
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// An ACME server: its directory URL and how to reach it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AcmeClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    directory_url: String,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    bad_nonce_retries: AtomicU64,
}

impl AcmeClient {
    /// A client for the directory at `directory_url` (see [`directory_url`]) over `tls` (see
    /// [`client_config`]), with [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn new(directory_url: impl Into<String>, tls: Arc<ClientConfig>) -> AcmeClient {
        Self::with_timeout(directory_url, tls, DEFAULT_REQUEST_TIMEOUT)
    }

    /// The same with another bound on each request.
    pub fn with_timeout(
        directory_url: impl Into<String>,
        tls: Arc<ClientConfig>,
        timeout: Duration,
    ) -> AcmeClient {
        AcmeClient {
            inner: Arc::new(ClientInner {
                directory_url: directory_url.into(),
                tls,
                timeout,
                bad_nonce_retries: AtomicU64::new(0),
            }),
        }
    }

    /// The directory URL.
    pub fn directory_url(&self) -> &str {
        &self.inner.directory_url
    }

    /// How many requests this client (and its accounts) sent again after a `badNonce`.
    /// Also counted in `sluice_acme_bad_nonce_retries_total`.
    pub fn bad_nonce_retries(&self) -> u64 {
        self.inner.bad_nonce_retries.load(Ordering::Relaxed)
    }

    /// The account of `key_pkcs8` (see [`generate_account_key`]): `newAccount` with that key,
    /// which creates the account or, when the key is already registered, returns the existing
    /// one (RFC 8555 section 7.3.1). Terms of service are agreed; `contact` are `mailto:` URLs
    /// or bare e-mail addresses.
    pub async fn account(
        &self,
        key_pkcs8: &[u8],
        contact: &[String],
    ) -> Result<Account, AcmeError> {
        let contact: Vec<String> = contact
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| {
                if c.contains(':') {
                    c.trim().to_string()
                } else {
                    format!("mailto:{}", c.trim())
                }
            })
            .collect();
        let thumbprint = keys::account_thumbprint(key_pkcs8)?;
        let directory = self
            .retry("directory", || {
                lib::Directory::discover(&self.inner.tls, &self.inner.directory_url)
            })
            .await?;
        let account = self
            .retry("newAccount", || {
                lib::Account::create_with_keypair(
                    &self.inner.tls,
                    directory.clone(),
                    &contact,
                    key_pkcs8,
                )
            })
            .await?;
        Ok(Account {
            client: self.clone(),
            inner: account,
            thumbprint,
        })
    }

    /// Runs `request` (which fetches its own fresh nonce), sending it again after a
    /// `badNonce`, each attempt bounded by the timeout.
    async fn retry<T, F, Fut>(&self, what: &'static str, mut request: F) -> Result<T, AcmeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, lib::AcmeError>>,
    {
        let mut attempt = 0;
        loop {
            let result = match tokio::time::timeout(self.inner.timeout, request()).await {
                Err(_) => Err(AcmeError::Timeout {
                    what,
                    after: self.inner.timeout,
                }),
                Ok(r) => r.map_err(|e| AcmeError::from_lib(what, e)),
            };
            match result {
                Err(e) if e.is_bad_nonce() && attempt < BAD_NONCE_RETRIES => {
                    attempt += 1;
                    self.inner.bad_nonce_retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("sluice_acme_bad_nonce_retries_total").increment(1);
                    tracing::debug!(request = what, attempt, "badNonce: sending again");
                }
                other => return other,
            }
        }
    }
}

/// An ACME account on one server, with the requests of RFC 8555 section 7 (each retried on
/// `badNonce`).
pub struct Account {
    client: AcmeClient,
    inner: lib::Account,
    thumbprint: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("kid", &self.inner.kid)
            .finish_non_exhaustive()
    }
}

/// An authorization as the server describes it.
pub use lib::Auth as Authorization;
/// The status of an authorization.
pub use lib::AuthStatus;
/// A challenge offered in an authorization.
pub use lib::Challenge;
/// The type of a challenge.
pub use lib::ChallengeType;
/// The identifier of an authorization.
pub use lib::Identifier;
/// An order as the server describes it.
pub use lib::Order;
/// The state of an order (RFC 8555 section 7.1.6).
pub use lib::OrderStatus;

impl Account {
    /// The account URL (the `kid` of every request).
    pub fn url(&self) -> &str {
        &self.inner.kid
    }

    /// The client this account talks through.
    pub fn client(&self) -> &AcmeClient {
        &self.client
    }

    /// The account key's JWK thumbprint (RFC 7638), base64url: the second half of every key
    /// authorization.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The key authorization of a challenge `token`: `token.thumbprint` (RFC 8555 section 8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        keys::key_authorization(token, &self.thumbprint)
    }

    /// `newOrder` for `hosts`: the order URL and the order.
    pub async fn new_order(&self, hosts: &[String]) -> Result<(String, Order), AcmeError> {
        let tls = &self.client.inner.tls;
        self.client
            .retry("newOrder", || self.inner.new_order(tls, hosts.to_vec()))
            .await
    }

    /// Fetches an authorization.
    pub async fn authorization(&self, url: &str) -> Result<Authorization, AcmeError> {
        let tls = &self.client.inner.tls;
        self.client
            .retry("authorization", || self.inner.auth(tls, url))
            .await
    }

    /// Tells the server a challenge is ready to be validated.
    pub async fn validate(&self, challenge_url: &str) -> Result<(), AcmeError> {
        let tls = &self.client.inner.tls;
        self.client
            .retry("challenge", || self.inner.challenge(tls, challenge_url))
            .await
    }

    /// Fetches an order.
    pub async fn order(&self, url: &str) -> Result<Order, AcmeError> {
        let tls = &self.client.inner.tls;
        self.client
            .retry("order", || self.inner.order(tls, url))
            .await
    }

    /// Finalizes an order with a DER certificate signing request.
    pub async fn finalize(&self, finalize_url: &str, csr_der: &[u8]) -> Result<Order, AcmeError> {
        let tls = &self.client.inner.tls;
        self.client
            .retry("finalize", || {
                self.inner.finalize(tls, finalize_url, csr_der)
            })
            .await
    }

    /// Downloads the certificate chain (PEM, leaf first).
    pub async fn certificate(&self, url: &str) -> Result<String, AcmeError> {
        let tls = &self.client.inner.tls;
        self.client
            .retry("certificate", || self.inner.certificate(tls, url))
            .await
    }

    /// rustls-acme's TLS-ALPN-01 helper: the `tls-alpn-01` challenge among `challenges` and
    /// the self-signed certificate for `host` that answers it (RFC 8737).
    pub fn tls_alpn_01<'a>(
        &self,
        challenges: &'a [Challenge],
        host: &str,
    ) -> Result<(&'a Challenge, Arc<CertifiedKey>), AcmeError> {
        self.inner
            .tls_alpn_01(challenges, host.to_string())
            .map(|(c, k)| (c, Arc::new(k)))
            .map_err(|e| AcmeError::from_lib("tls-alpn-01", e))
    }

    /// The problem of a challenge, as our [`Problem`] (rustls-acme keeps type and detail).
    pub fn challenge_problem(challenge: &Challenge) -> Option<Problem> {
        challenge.error.as_ref().map(Problem::from_lib)
    }

    /// The problem of an order, as our [`Problem`].
    pub fn order_problem(order: &Order) -> Option<Problem> {
        order.error.as_ref().map(Problem::from_lib)
    }
}

/// A new account key: ECDSA P-256, PKCS#8 DER (store it; [`AcmeClient::account`] with the
/// same key finds the same account again).
pub fn generate_account_key() -> Vec<u8> {
    lib::Account::generate_key_pair()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_short_names() {
        assert_eq!(
            directory_url("letsencrypt").unwrap(),
            "https://acme-v02.api.letsencrypt.org/directory"
        );
        assert_eq!(
            directory_url("letsencrypt-staging").unwrap(),
            "https://acme-staging-v02.api.letsencrypt.org/directory"
        );
        assert_eq!(
            directory_url("https://127.0.0.1:14000/dir").unwrap(),
            "https://127.0.0.1:14000/dir"
        );
        assert!(directory_url("http://insecure/dir").is_err());
        assert!(directory_url("letsencrypt-prod").is_err());
    }

    #[test]
    fn problems_keep_type_detail_and_subproblems() {
        let body = r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier",
            "detail":"Error creating new order :: Cannot issue for \"a.invalid\"",
            "status":400,
            "subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier",
              "detail":"Domain name is an invalid TLD","identifier":{"type":"dns","value":"a.invalid"}}]}"#;
        // As rustls-acme words it: the body debug-formatted after the status.
        let message = format!("non 2xx http status: 400 {body:?}");
        let (status, parsed) = parse_status_message(&message).expect("parses");
        assert_eq!(parsed, body);
        let e = AcmeError::from_status("newOrder", status, &parsed);
        let p = e.problem().expect("a problem");
        assert_eq!(p.short_type(), "rejectedIdentifier");
        assert_eq!(p.status, Some(400));
        assert_eq!(p.subproblems.len(), 1);
        assert_eq!(
            p.subproblems[0].identifier.as_ref().unwrap().value,
            "a.invalid"
        );
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(text.contains("newOrder"), "{text}");
        assert!(
            text.contains("a.invalid: rejectedIdentifier: Domain name is an invalid TLD"),
            "{text}"
        );
    }

    #[test]
    fn debug_strings_unescape() {
        for s in [
            "plain",
            "q\"uo\\te",
            "tab\tnl\ncr\r",
            "nul\0",
            "bell\u{7}",
            "é ü",
        ] {
            assert_eq!(unescape_debug_str(&format!("{s:?}")).as_deref(), Some(s));
        }
        assert_eq!(unescape_debug_str("no quotes"), None);
        assert_eq!(parse_status_message("io error: refused"), None);
    }

    #[test]
    fn retryable_kinds() {
        let p = |t: &str, s: u16| Problem {
            typ: format!("{ERROR_PREFIX}{t}"),
            status: Some(s),
            ..Problem::default()
        };
        assert!(p("badNonce", 400).is_bad_nonce());
        assert!(p("rateLimited", 429).is_retryable());
        assert!(p("serverInternal", 500).is_retryable());
        assert!(!p("unauthorized", 403).is_retryable());
        assert!(!p("malformed", 400).is_retryable());
        assert!(p("accountDoesNotExist", 400).is_retryable());
        let gateway = AcmeError::Protocol {
            what: "order",
            detail: "HTTP status 502".into(),
            status: Some(502),
        };
        assert!(gateway.is_retryable());
        let down = AcmeError::Unreachable {
            what: "directory",
            detail: "connection refused".into(),
        };
        assert!(down.is_retryable());
    }

    #[test]
    fn extra_roots_must_be_certificates() {
        assert!(client_config(None).is_ok());
        assert!(matches!(
            client_config(Some(b"not pem")),
            Err(ClientError::Roots(_))
        ));
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        assert!(client_config(Some(ca.cert.pem().as_bytes())).is_ok());
    }
}
