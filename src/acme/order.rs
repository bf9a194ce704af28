//! The order procedure: one certificate, from `newOrder` to the downloaded chain
//! ([`issue`]).
//!
//! For each authorization the requested challenge is picked and handed to a
//! [`ChallengeSolver`] (the actor: publish in the snapshot, a Secret or a DNS TXT record); once
//! every answer is presented the server is told to validate them; authorizations and then the order are polled with
//! [`Backoff`](crate::pace::Backoff) until a deadline; the order is finalized with a CSR for a
//! new ECDSA P-256 key; the chain is downloaded and checked. Every presented answer is cleaned
//! up on every path: success, failure and timeout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::answers::{ChallengeAnswer, ChallengeKind};
use super::client::{
    Account, AcmeError, AuthStatus, Authorization, ChallengeType, Identifier, Order, OrderStatus,
    Problem,
};
use super::keys;
use crate::pace::Backoff;

/// A boxed future, as [`ChallengeSolver`] methods return (so the trait is dyn-usable).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a solver could not present or clean up an answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SolverError(pub String);

/// Presents challenge answers where the CA will look, and removes them afterwards.
///
/// `present` returns once the answer can be seen by the CA (for DNS-01: the change is in
/// sync; for replicas: the answers Secret is written). `cleanup` is called once for every
/// answer `present` was called for, whatever happened to the order.
pub trait ChallengeSolver: Send + Sync {
    /// Makes `answer` visible to the CA.
    fn present<'a>(&'a self, answer: &'a ChallengeAnswer)
    -> BoxFuture<'a, Result<(), SolverError>>;
    /// Removes `answer`.
    fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer)
    -> BoxFuture<'a, Result<(), SolverError>>;
}

/// What to order: one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRequest {
    /// The names (the first is the common name); wildcards as `*.example.com`.
    pub hosts: Vec<String>,
    /// The challenge to answer for every authorization.
    pub challenge: ChallengeKind,
}

/// Timing of one order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrderOptions {
    /// The whole procedure (validation, polling, finalization) must end within this; then it
    /// fails with [`OrderError::Timeout`] (answers are still cleaned up).
    pub deadline: Duration,
    /// Polling of authorizations and the order.
    pub poll: Backoff,
}

impl Default for OrderOptions {
    fn default() -> Self {
        OrderOptions {
            deadline: Duration::from_secs(300),
            poll: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
        }
    }
}

/// An issued certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The names it was ordered for, as requested.
    pub hosts: Vec<String>,
    /// The chain, PEM, leaf first.
    pub chain_pem: String,
    /// Its new private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf's `notBefore`, Unix seconds.
    pub not_before: i64,
    /// The leaf's `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// Why an order failed. Every variant that concerns a name names it.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// A request to the ACME server failed (see [`AcmeError::is_retryable`]).
    #[error("{hosts}: {source}", hosts = .hosts.join(", "))]
    Acme {
        /// The names of the order.
        hosts: Vec<String>,
        /// The request error.
        #[source]
        source: AcmeError,
    },
    /// The CA could not validate a name: the challenge's problem.
    #[error("{host}: {challenge} validation failed: {problem}")]
    Validation {
        /// The name.
        host: String,
        /// The challenge type.
        challenge: ChallengeKind,
        /// The CA's problem (`type` and `detail`).
        problem: Problem,
    },
    /// An authorization ended in another state than valid, with no challenge problem.
    #[error("{host}: authorization is {status}")]
    Authorization {
        /// The name.
        host: String,
        /// Its status (`invalid`, `revoked`, `expired`, `deactivated`).
        status: String,
    },
    /// The CA offers no challenge of the requested type for a name.
    #[error("{host}: the ACME server offers no {wanted} challenge (offered: {offered})", offered = .offered.join(", "))]
    NoChallenge {
        /// The name.
        host: String,
        /// The requested type.
        wanted: ChallengeKind,
        /// What it offers.
        offered: Vec<String>,
    },
    /// The solver could not present an answer.
    #[error("{host}: presenting the {challenge} answer failed: {error}")]
    Present {
        /// The name.
        host: String,
        /// The challenge type.
        challenge: ChallengeKind,
        /// The solver's error.
        error: String,
    },
    /// The order became invalid.
    #[error("{hosts}: the order is invalid{}", .problem.as_ref().map(|p| format!(": {p}")).unwrap_or_default(), hosts = .hosts.join(", "))]
    OrderInvalid {
        /// The names.
        hosts: Vec<String>,
        /// The order's problem, if the server gave one.
        problem: Option<Problem>,
    },
    /// The deadline passed.
    #[error("{hosts}: no certificate within {after:?} (waiting for {waiting})", hosts = .hosts.join(", "))]
    Timeout {
        /// The names.
        hosts: Vec<String>,
        /// The deadline.
        after: Duration,
        /// What was still awaited.
        waiting: String,
    },
    /// The request itself is unusable (no names).
    #[error("nothing to order: {0}")]
    BadRequest(String),
    /// Local failure: key or CSR generation, or the downloaded chain does not parse or does
    /// not match the key.
    #[error("{hosts}: {detail}", hosts = .hosts.join(", "))]
    Certificate {
        /// The names.
        hosts: Vec<String>,
        /// What failed.
        detail: String,
    },
}

impl OrderError {
    /// Whether trying again (after the policy's backoff) may succeed. Validation failures
    /// count as retryable too (DNS or the Ingress may be fixed meanwhile) but are rate limited
    /// by the CA: see [`OrderError::failed_validations`].
    pub fn is_retryable(&self) -> bool {
        match self {
            OrderError::Acme { source, .. } => source.is_retryable(),
            OrderError::BadRequest(_) => false,
            _ => true,
        }
    }

    /// The names whose validation failed (Let's Encrypt limits failed validations per name
    /// and account: 5 per hour).
    pub fn failed_validations(&self) -> Vec<&str> {
        match self {
            OrderError::Validation { host, .. } | OrderError::Authorization { host, .. } => {
                vec![host.as_str()]
            }
            _ => Vec::new(),
        }
    }

    /// The ACME problem, if the CA gave one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            OrderError::Acme { source, .. } => source.problem(),
            OrderError::Validation { problem, .. } => Some(problem),
            OrderError::OrderInvalid { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// The name the error is about, when it is about one name.
    pub fn host(&self) -> Option<&str> {
        match self {
            OrderError::Validation { host, .. }
            | OrderError::Authorization { host, .. }
            | OrderError::NoChallenge { host, .. }
            | OrderError::Present { host, .. } => Some(host),
            _ => None,
        }
    }

    /// A short label for metrics and logs: `validation`, `acme`, `timeout`...
    pub fn label(&self) -> &'static str {
        match self {
            OrderError::Acme { .. } => "acme",
            OrderError::Validation { .. } | OrderError::Authorization { .. } => "validation",
            OrderError::NoChallenge { .. } => "no_challenge",
            OrderError::Present { .. } => "present",
            OrderError::OrderInvalid { .. } => "invalid",
            OrderError::Timeout { .. } => "timeout",
            OrderError::BadRequest(_) => "bad_request",
            OrderError::Certificate { .. } => "certificate",
        }
    }
}

/// Orders one certificate for `request.hosts` with `account`, answering every authorization
/// with `request.challenge` through `solver`. See the module documentation.
pub async fn issue(
    account: &Account,
    request: &OrderRequest,
    solver: &dyn ChallengeSolver,
    options: &OrderOptions,
) -> Result<Issued, OrderError> {
    if request.hosts.is_empty() {
        return Err(OrderError::BadRequest("no host names".to_string()));
    }
    let mut presented: Vec<ChallengeAnswer> = Vec::new();
    let mut progress = Progress::default();
    let result = tokio::time::timeout(
        options.deadline,
        run(
            account,
            request,
            solver,
            options,
            &mut presented,
            &mut progress,
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err(OrderError::Timeout {
            hosts: request.hosts.clone(),
            after: options.deadline,
            waiting: progress.waiting.clone(),
        })
    });
    for answer in &presented {
        if let Err(e) = solver.cleanup(answer).await {
            tracing::warn!(host = answer.host(), challenge = %answer.kind(), error = %e, "cleaning up a challenge answer failed");
        }
    }
    result
}

#[derive(Default)]
struct Progress {
    waiting: String,
}

async fn run(
    account: &Account,
    request: &OrderRequest,
    solver: &dyn ChallengeSolver,
    options: &OrderOptions,
    presented: &mut Vec<ChallengeAnswer>,
    progress: &mut Progress,
) -> Result<Issued, OrderError> {
    let hosts = &request.hosts;
    let acme = |source: AcmeError| OrderError::Acme {
        hosts: hosts.clone(),
        source,
    };
    progress.waiting = "newOrder".to_string();
    let (order_url, order) = account.new_order(hosts).await.map_err(acme)?;
    check_order(hosts, &order)?;

    // Present every pending authorization's answer first, then ask for validation: a slow
    // solver (DNS-01 waits for the change to be in sync) is waited for once per order, and
    // the two answers of `example.com` and `*.example.com` (one TXT name) are both in place
    // before the CA looks.
    let mut pending = Vec::new();
    for auth_url in &order.authorizations {
        progress.waiting = format!("authorization {auth_url}");
        let auth = account.authorization(auth_url).await.map_err(acme)?;
        let host = identifier(&auth);
        match auth.status {
            AuthStatus::Valid => continue,
            AuthStatus::Pending => {}
            _ => return Err(authorization_failed(&auth, request.challenge)),
        }
        let (challenge_url, answer) = answer_for(account, &auth, &host, request.challenge)?;
        progress.waiting = format!("presenting the {} answer for {host}", request.challenge);
        // Pushed first: a solver that fails half-way is still asked to clean up.
        presented.push(answer);
        let answer = presented.last().expect("just pushed");
        solver
            .present(answer)
            .await
            .map_err(|e| OrderError::Present {
                host: host.clone(),
                challenge: request.challenge,
                error: e.0,
            })?;
        pending.push((auth_url.clone(), challenge_url, host));
    }
    for (_, challenge_url, host) in &pending {
        progress.waiting = format!(
            "the CA to accept the {} challenge of {host}",
            request.challenge
        );
        account.validate(challenge_url).await.map_err(acme)?;
    }

    // Poll each authorization until it is decided.
    for (auth_url, _, host) in &pending {
        progress.waiting = format!("the validation of {host}");
        let mut backoff = options.poll;
        loop {
            let auth = account.authorization(auth_url).await.map_err(acme)?;
            match auth.status {
                AuthStatus::Valid => break,
                AuthStatus::Pending => tokio::time::sleep(backoff.next_delay()).await,
                _ => return Err(authorization_failed(&auth, request.challenge)),
            }
        }
    }

    // Wait for the order to be ready, finalize, wait for the certificate.
    progress.waiting = "the order to become ready".to_string();
    let order = poll_order(account, hosts, &order_url, options, |s| {
        !matches!(s, OrderStatus::Pending)
    })
    .await?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
        OrderError::Certificate {
            hosts: hosts.clone(),
            detail: format!("generating the certificate key: {e}"),
        }
    })?;
    let order = match order.status {
        OrderStatus::Ready => {
            let csr = csr(hosts, &key)?;
            progress.waiting = "finalization".to_string();
            let finalized = account
                .finalize(&order.finalize, &csr)
                .await
                .map_err(acme)?;
            check_order(hosts, &finalized)?;
            match finalized.status {
                OrderStatus::Valid { .. } => finalized,
                _ => {
                    progress.waiting = "the certificate to be issued".to_string();
                    poll_order(account, hosts, &order_url, options, |s| {
                        !matches!(s, OrderStatus::Processing | OrderStatus::Ready)
                    })
                    .await?
                }
            }
        }
        // Valid already would mean someone else finalized it with another key: we cannot
        // use that certificate.
        _ => {
            return Err(OrderError::OrderInvalid {
                hosts: hosts.clone(),
                problem: Account::order_problem(&order),
            });
        }
    };
    let OrderStatus::Valid { certificate } = &order.status else {
        return Err(OrderError::OrderInvalid {
            hosts: hosts.clone(),
            problem: Account::order_problem(&order),
        });
    };
    progress.waiting = "the certificate download".to_string();
    let chain_pem = account.certificate(certificate).await.map_err(acme)?;
    issued(hosts, chain_pem, &key)
}

fn check_order(hosts: &[String], order: &Order) -> Result<(), OrderError> {
    if order.status == OrderStatus::Invalid {
        return Err(OrderError::OrderInvalid {
            hosts: hosts.to_vec(),
            problem: Account::order_problem(order),
        });
    }
    Ok(())
}

async fn poll_order(
    account: &Account,
    hosts: &[String],
    url: &str,
    options: &OrderOptions,
    done: impl Fn(&OrderStatus) -> bool,
) -> Result<Order, OrderError> {
    let mut backoff = options.poll;
    loop {
        let order = account
            .order(url)
            .await
            .map_err(|source| OrderError::Acme {
                hosts: hosts.to_vec(),
                source,
            })?;
        check_order(hosts, &order)?;
        if done(&order.status) {
            return Ok(order);
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn identifier(auth: &Authorization) -> String {
    match &auth.identifier {
        Identifier::Dns(name) => name.clone(),
    }
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
    }
}

fn type_name(t: &ChallengeType) -> &'static str {
    match t {
        ChallengeType::Http01 => "http-01",
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
        ChallengeType::Dns01 => "dns-01",
        ChallengeType::Unknown => "other",
    }
}

/// The URL to tell the CA about and the answer to present.
fn answer_for(
    account: &Account,
    auth: &Authorization,
    host: &str,
    kind: ChallengeKind,
) -> Result<(String, ChallengeAnswer), OrderError> {
    let wanted = challenge_type(kind);
    let Some(challenge) = auth.challenges.iter().find(|c| c.typ == wanted) else {
        return Err(OrderError::NoChallenge {
            host: host.to_string(),
            wanted: kind,
            offered: auth
                .challenges
                .iter()
                .map(|c| type_name(&c.typ).to_string())
                .collect(),
        });
    };
    let key_authorization = account.key_authorization(&challenge.token);
    let answer = match kind {
        ChallengeKind::Http01 => ChallengeAnswer::Http01 {
            host: host.to_string(),
            token: challenge.token.clone(),
            key_authorization,
        },
        ChallengeKind::TlsAlpn01 => {
            let (_, certificate) = account.tls_alpn_01(&auth.challenges, host).map_err(|e| {
                OrderError::Certificate {
                    hosts: vec![host.to_string()],
                    detail: e.to_string(),
                }
            })?;
            ChallengeAnswer::TlsAlpn01 {
                host: host.to_string(),
                key_authorization,
                certificate,
            }
        }
        ChallengeKind::Dns01 => ChallengeAnswer::Dns01 {
            host: host.to_string(),
            record: keys::dns01_record_name(host),
            value: keys::dns01_txt_value(&key_authorization),
        },
    };
    Ok((challenge.url.clone(), answer))
}

fn authorization_failed(auth: &Authorization, kind: ChallengeKind) -> OrderError {
    let host = identifier(auth);
    // The challenge that failed carries the problem; prefer the one we answered.
    let wanted = challenge_type(kind);
    let failed = auth
        .challenges
        .iter()
        .filter(|c| c.error.is_some())
        .max_by_key(|c| c.typ == wanted);
    match failed {
        Some(c) => OrderError::Validation {
            host,
            challenge: match c.typ {
                ChallengeType::Http01 => ChallengeKind::Http01,
                ChallengeType::TlsAlpn01 => ChallengeKind::TlsAlpn01,
                ChallengeType::Dns01 => ChallengeKind::Dns01,
                ChallengeType::Unknown => kind,
            },
            problem: Account::challenge_problem(c).unwrap_or_default(),
        },
        None => OrderError::Authorization {
            host,
            status: format!("{:?}", auth.status).to_ascii_lowercase(),
        },
    }
}

fn csr(hosts: &[String], key: &rcgen::KeyPair) -> Result<Vec<u8>, OrderError> {
    let err = |e: rcgen::Error| OrderError::Certificate {
        hosts: hosts.to_vec(),
        detail: format!("building the certificate request: {e}"),
    };
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(err)?;
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(first) = hosts.first() {
        dn.push(rcgen::DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    let csr = params.serialize_request(key).map_err(err)?;
    Ok(csr.der().to_vec())
}

/// Checks the downloaded chain against the key and reads its validity.
fn issued(hosts: &[String], chain_pem: String, key: &rcgen::KeyPair) -> Result<Issued, OrderError> {
    let key_pem = key.serialize_pem();
    let fail = |detail: String| OrderError::Certificate {
        hosts: hosts.to_vec(),
        detail,
    };
    let loaded = crate::tls::load_pem(chain_pem.as_bytes(), key_pem.as_bytes())
        .map_err(|e| fail(format!("the downloaded certificate cannot be served: {e}")))?;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| fail("the downloaded chain holds no certificate".to_string()))?;
    let fields = crate::tls::der::parse_certificate(&leaf)
        .map_err(|e| fail(format!("the downloaded certificate: {e}")))?;
    Ok(Issued {
        hosts: hosts.to_vec(),
        chain_pem,
        key_pem,
        not_before: fields.not_before,
        not_after: loaded.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The actor runs orders in spawned tasks: the futures must be `Send` (checked at compile
    /// time; the future is never polled).
    #[test]
    fn orders_can_run_in_spawned_tasks() {
        fn assert_send<T: Send>(_: T) {}
        async fn order(
            client: super::super::AcmeClient,
            request: OrderRequest,
            solver: std::sync::Arc<dyn ChallengeSolver>,
        ) {
            if let Ok(account) = client.account(&[], &[]).await {
                let _ = issue(
                    &account,
                    &request,
                    solver.as_ref(),
                    &OrderOptions::default(),
                )
                .await;
            }
        }
        let tls = super::super::client_config(None).unwrap();
        let client = super::super::AcmeClient::new("https://127.0.0.1:1/dir", tls);
        struct Nothing;
        impl ChallengeSolver for Nothing {
            fn present<'a>(
                &'a self,
                _: &'a ChallengeAnswer,
            ) -> BoxFuture<'a, Result<(), SolverError>> {
                Box::pin(async { Ok(()) })
            }
            fn cleanup<'a>(
                &'a self,
                _: &'a ChallengeAnswer,
            ) -> BoxFuture<'a, Result<(), SolverError>> {
                Box::pin(async { Ok(()) })
            }
        }
        assert_send(order(
            client,
            OrderRequest {
                hosts: vec!["a.test".into()],
                challenge: ChallengeKind::Http01,
            },
            std::sync::Arc::new(Nothing),
        ));
    }
}
