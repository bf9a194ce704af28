//! The ACME engine against Pebble with real validation: a real `sluice::proxy::Proxy` serves
//! the HTTP and HTTPS entrypoints on 127.0.0.1 with the challenges snapshot wired in, and Pebble
//! validates HTTP-01 and TLS-ALPN-01 against those ports (names resolve to 127.0.0.1 through
//! the test DNS responder). No actors: the test plays the certificate actor's part (a
//! `ChallengeSolver` that publishes answers in the snapshot).
//!
//! Pebble (Debian) and dnslib (PyPI, in the test virtualenv) are installed on first use.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sluice::acme::{
    self, AcmeClient, BoxFuture, ChallengeAnswer, ChallengeKind, ChallengeSolver, Challenges,
    ChallengesHandle, OrderError, OrderOptions, OrderRequest, SolverError,
};
use sluice::pace::Backoff;
use sluice::proxy::{ConnTracker, Proxy, ProxyConfig};
use sluice::routing::RoutingTable;
use sluice::tls::{CertStore, SniResolver};
use support::pebble::{DnsResponder, Pebble, PebbleOptions};
use support::peers::free_port;

// ---------------------------------------------------------------------------------------------
// The data plane under test, and the test's challenge solver
// ---------------------------------------------------------------------------------------------

/// A proxy serving HTTP and HTTPS on 127.0.0.1 (tiny accept loops, as the listener actors run).
struct DataPlane {
    http: SocketAddr,
    https: SocketAddr,
    proxy: Arc<Proxy>,
    certs: Arc<ArcSwap<CertStore>>,
    challenges: ChallengesHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DataPlane {
    async fn start() -> DataPlane {
        sluice_actors::telemetry::install_crypto_provider();
        let default = sluice::tls::default_certificate().expect("default certificate");
        let certs = Arc::new(ArcSwap::from_pointee(CertStore::empty(default)));
        let challenges = acme::challenges_handle();
        let proxy = Proxy::with_challenges(
            ProxyConfig {
                https_redirect_port: 8443,
                ..ProxyConfig::default()
            },
            certs.clone(),
            challenges.clone(),
        );
        assert!(Arc::ptr_eq(proxy.challenges(), &challenges));
        let resolver = SniResolver::new(certs.clone()).with_challenges(challenges.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(
            sluice::tls::server_config(Arc::new(resolver), &Default::default())
                .expect("server config"),
        );
        let tracker = Arc::new(ConnTracker::default());
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http_addr, https_addr) = (http.local_addr().unwrap(), https.local_addr().unwrap());
        let (p1, t1) = (proxy.clone(), tracker.clone());
        let http_loop = tokio::spawn(async move {
            while let Ok((s, peer)) = http.accept().await {
                tokio::spawn(p1.clone().serve_http(t1.clone(), s, peer));
            }
        });
        let (p2, t2) = (proxy.clone(), tracker.clone());
        let https_loop = tokio::spawn(async move {
            while let Ok((s, peer)) = https.accept().await {
                tokio::spawn(p2.clone().serve_tls(t2.clone(), acceptor.clone(), s, peer));
            }
        });
        DataPlane {
            http: http_addr,
            https: https_addr,
            proxy,
            certs,
            challenges,
            tasks: vec![http_loop, https_loop],
        }
    }

    /// Serves `state` as the router would: translate (knowing ACME), compile, publish, and
    /// build the certificate snapshot.
    fn serve(&self, state: &sluice::source::ClusterState) -> sluice::translate::Translation {
        let t = sluice::translate::translate_with_acme(
            state,
            &sluice::translate::Options::default(),
            Some(&acme::AcmeOptions::default()),
        );
        self.proxy.publish(RoutingTable::compile(&t.model));
        let default = self.certs.load().default_cert().clone();
        let (store, diags) = CertStore::build(&t.model.tls, &state.secrets, default);
        assert!(diags.is_empty(), "{diags:#?}");
        self.certs.store(Arc::new(store));
        t
    }
}

/// Publishes answers in the snapshot, as the actor does; counts calls. With `corrupt`, every
/// HTTP-01 answer is wrong (a failed validation).
struct Publisher {
    challenges: ChallengesHandle,
    corrupt: bool,
    presented: AtomicUsize,
    cleaned: AtomicUsize,
}

impl Publisher {
    fn new(challenges: &ChallengesHandle, corrupt: bool) -> Publisher {
        Publisher {
            challenges: challenges.clone(),
            corrupt,
            presented: AtomicUsize::new(0),
            cleaned: AtomicUsize::new(0),
        }
    }
}

impl ChallengeSolver for Publisher {
    fn present<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            let answer = match answer {
                ChallengeAnswer::Http01 { host, token, .. } if self.corrupt => {
                    ChallengeAnswer::Http01 {
                        host: host.clone(),
                        token: token.clone(),
                        key_authorization: format!("{token}.not-the-account-thumbprint"),
                    }
                }
                other => other.clone(),
            };
            self.challenges.rcu(|c| {
                let mut c = Challenges::clone(c);
                c.insert(&answer);
                c
            });
            self.presented.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn cleanup<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            self.challenges.rcu(|c| {
                let mut c = Challenges::clone(c);
                c.remove(answer);
                c
            });
            self.cleaned.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

struct Acme {
    plane: DataPlane,
    pebble: Pebble,
    _dns: DnsResponder,
    client: AcmeClient,
}

/// Pebble validating against a fresh data plane. `nonce_reject: None` keeps Pebble's default
/// badNonce rate (5%).
async fn start(nonce_reject: Option<u32>) -> Acme {
    let plane = DataPlane::start().await;
    let dns = DnsResponder::start(None).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: plane.http.port(),
        tls_port: plane.https.port(),
        dns_port: dns.port,
        validity_secs: None,
        nonce_reject,
    })
    .await;
    let client = AcmeClient::new(pebble.directory_url(), pebble.client_tls());
    Acme {
        plane,
        pebble,
        _dns: dns,
        client,
    }
}

fn options() -> OrderOptions {
    OrderOptions {
        deadline: Duration::from_secs(60),
        poll: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
    }
}

/// Verifies `chain_pem` against `root_pem` for each of `names`, as a client would.
fn verify_chain(chain_pem: &str, root_pem: &str, names: &[&str]) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain PEM");
    assert!(
        chain.len() >= 2,
        "leaf and intermediate expected: {}",
        chain.len()
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("root PEM"))
        .expect("root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .expect("verifier");
    for name in names {
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("the chain does not verify for {name}: {e}"));
    }
    let other = ServerName::try_from("not-requested.acme.test").unwrap();
    assert!(
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &other, &[], UnixTime::now())
            .is_err(),
        "valid only for the requested names"
    );
}

/// A TLS client that trusts only `root_pem`, offering `alpn`.
fn tls_client(root_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("root PEM"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn http_get(addr: SocketAddr, host: &str, path: &str) -> support::FullResponse {
    let mut send = support::http1_connect(addr).await;
    support::get_on(&mut send, host, path)
        .await
        .expect("response")
}

/// An Ingress asking sluice for a certificate, its Service on an echo backend, as a cluster
/// state (the Secret is added once issued).
async fn site(host: &str, secret: &str) -> sluice::source::ClusterState {
    let echo = support::echo([127, 0, 0, 1], "site").await;
    let dir = tempfile::tempdir().unwrap();
    let mut ingress = support::ingress(
        "site",
        host,
        &[("/", "Prefix", "site", 80)],
        &[("kubernetes.io/tls-acme", "true")],
    );
    ingress.push_str(&format!(
        "  tls:\n  - hosts: [{host}]\n    secretName: {secret}\n"
    ));
    std::fs::write(dir.path().join("ingress.yaml"), ingress).unwrap();
    std::fs::write(
        dir.path().join("svc.yaml"),
        support::service("site", &[(echo, true)]),
    )
    .unwrap();
    let loaded = sluice::source::manifests::load_dir(dir.path());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.state
}

// ---------------------------------------------------------------------------------------------
// Issuing against Pebble
// ---------------------------------------------------------------------------------------------

/// HTTP-01 with Pebble's default badNonce rate: the certificate is issued through the real
/// HTTP entrypoint (which does not redirect while the certificate is pending), verifies against
/// Pebble's root, is stored as a Secret and served by SNI; the account is found again, not
/// created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_that_is_then_served() {
    let t = start(None).await;
    let host = "site.acme.test";
    let mut state = site(host, "site-tls").await;

    // Pending: no redirect, the app is served over plain HTTP, the challenge gets through.
    let translation = t.plane.serve(&state);
    assert!(
        translation
            .diagnostics
            .iter()
            .any(|d| d.reason == sluice::model::Reason::CertificatePending),
        "{:#?}",
        translation.diagnostics
    );
    let (status, _, body) = http_get(t.plane.http, host, "/").await;
    assert_eq!(status, 200, "no redirect while pending: {body}");

    let key = acme::generate_account_key();
    let account = t
        .client
        .account(&key, &["admin@acme.test".to_string()])
        .await
        .expect("account");
    let again = t.client.account(&key, &[]).await.expect("account again");
    assert_eq!(
        account.url(),
        again.url(),
        "the same key finds the same account"
    );

    let solver = Publisher::new(&t.plane.challenges, false);
    let hosts = vec![host.to_string(), "www.site.acme.test".to_string()];
    let issued = acme::issue(
        &account,
        &OrderRequest {
            hosts: hosts.clone(),
            challenge: ChallengeKind::Http01,
        },
        &solver,
        &options(),
    )
    .await
    .unwrap_or_else(|e| panic!("issue: {e}\npebble log:\n{}", t.pebble.peer.log_tail(30)));
    assert_eq!(
        solver.presented.load(Ordering::SeqCst),
        2,
        "one answer per name"
    );
    assert_eq!(
        solver.cleaned.load(Ordering::SeqCst),
        2,
        "every answer cleaned up"
    );
    assert!(t.plane.challenges.load().is_empty());
    assert_eq!(issued.hosts, hosts);
    assert!(issued.not_after > issued.not_before);

    let root = t.pebble.issuing_root().await;
    verify_chain(
        &issued.chain_pem,
        &root,
        &["site.acme.test", "www.site.acme.test"],
    );

    // Stored as sluice's Secret and served: HTTP now redirects, HTTPS serves the certificate.
    let secret = acme::secrets::certificate_secret(
        &sluice::model::ObjectRef::new("default", "site-tls"),
        &issued,
        "sluice",
        t.client.directory_url(),
    );
    assert!(acme::secrets::is_ours(&secret));
    state.secrets.push(secret);
    let translation = t.plane.serve(&state);
    assert!(
        translation.diagnostics.is_empty(),
        "{:#?}",
        translation.diagnostics
    );
    let (status, headers, _) = http_get(t.plane.http, host, "/").await;
    assert_eq!(status, 308);
    assert_eq!(headers["location"], "https://site.acme.test:8443/");

    let tcp = tokio::net::TcpStream::connect(t.plane.https).await.unwrap();
    let tls = tls_client(&root, &[b"http/1.1"])
        .connect(ServerName::try_from(host.to_string()).unwrap(), tcp)
        .await
        .expect("the issued certificate is served and trusted");
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let issued_leaf = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(served, issued_leaf);
}

/// TLS-ALPN-01: Pebble's validation handshakes (ALPN `acme-tls/1`) are answered by the HTTPS
/// entrypoint's resolver from the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_a_certificate() {
    let t = start(Some(0)).await;
    let account = t
        .client
        .account(&acme::generate_account_key(), &[])
        .await
        .expect("account");
    let solver = Publisher::new(&t.plane.challenges, false);
    let issued = acme::issue(
        &account,
        &OrderRequest {
            hosts: vec!["alpn.acme.test".to_string()],
            challenge: ChallengeKind::TlsAlpn01,
        },
        &solver,
        &options(),
    )
    .await
    .unwrap_or_else(|e| panic!("issue: {e}\npebble log:\n{}", t.pebble.peer.log_tail(30)));
    assert_eq!(solver.presented.load(Ordering::SeqCst), 1);
    assert_eq!(solver.cleaned.load(Ordering::SeqCst), 1);
    verify_chain(
        &issued.chain_pem,
        &t.pebble.issuing_root().await,
        &["alpn.acme.test"],
    );
}

/// With Pebble's default rate (5% of nonces refused), requests refused with badNonce are sent
/// again: every lookup succeeds, and the counter shows retries happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nonces_are_retried_at_the_default_rate() {
    let t = start(None).await;
    let key = acme::generate_account_key();
    let first = t.client.account(&key, &[]).await.expect("account");
    // Each lookup is two nonce-checked requests (directory and nonce are not); 400 lookups
    // without a single refusal would happen with probability 0.95^400 (about 1e-9).
    for i in 0..400 {
        let again = t
            .client
            .account(&key, &[])
            .await
            .unwrap_or_else(|e| panic!("lookup {i} failed: {e}"));
        assert_eq!(again.url(), first.url());
        if t.client.bad_nonce_retries() > 0 {
            break;
        }
    }
    assert!(
        t.client.bad_nonce_retries() > 0,
        "no badNonce was retried:\n{}",
        t.pebble.peer.log_tail(20)
    );
}

/// A wrong answer: Pebble's validation fails, and the error names the host, the ACME error type
/// and its detail; the answer is cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_names_the_host_type_and_detail() {
    let t = start(Some(0)).await;
    let account = t
        .client
        .account(&acme::generate_account_key(), &[])
        .await
        .expect("account");
    let solver = Publisher::new(&t.plane.challenges, true);
    let err = acme::issue(
        &account,
        &OrderRequest {
            hosts: vec!["wrong.acme.test".to_string()],
            challenge: ChallengeKind::Http01,
        },
        &solver,
        &options(),
    )
    .await
    .expect_err("validation must fail");
    let OrderError::Validation {
        host,
        challenge,
        problem,
    } = &err
    else {
        panic!("a validation error expected, got {err}");
    };
    assert_eq!(host, "wrong.acme.test");
    assert_eq!(*challenge, ChallengeKind::Http01);
    assert_eq!(problem.short_type(), "unauthorized", "{problem:?}");
    assert!(!problem.detail.is_empty());
    let text = err.to_string();
    assert!(
        text.contains("wrong.acme.test")
            && text.contains("unauthorized")
            && text.contains(&problem.detail),
        "{text}"
    );
    assert_eq!(err.failed_validations(), ["wrong.acme.test"]);
    assert_eq!(solver.cleaned.load(Ordering::SeqCst), 1);
    assert!(t.plane.challenges.load().is_empty());
}

/// Pebble not running: a retryable error; then Pebble back: the same client works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_down_is_a_retryable_error() {
    let mut t = start(Some(0)).await;
    t.pebble.stop();
    let key = acme::generate_account_key();
    let err = t
        .client
        .account(&key, &[])
        .await
        .expect_err("Pebble is down");
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, acme::AcmeError::Unreachable { .. }),
        "{err:?}"
    );
    t.pebble.restart().await;
    t.client.account(&key, &[]).await.expect("Pebble is back");

    // A server that is not there at all.
    let nowhere = AcmeClient::new(
        format!("https://127.0.0.1:{}/dir", free_port()),
        t.pebble.client_tls(),
    );
    let err = nowhere
        .account(&key, &[])
        .await
        .expect_err("nothing listens");
    assert!(err.is_retryable(), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Answering in the data plane (no Pebble)
// ---------------------------------------------------------------------------------------------

/// HTTP-01 requests are answered before routing and before the HTTPS redirect, with the Host's
/// port ignored; an unknown token or another host falls through to routing.
#[tokio::test]
async fn http01_answers_before_routing_and_redirect() {
    let plane = DataPlane::start().await;
    let host = "web.acme.test";
    let mut state = site(host, "web-tls").await;
    // A Secret that exists (not issued by sluice: served as it is) makes HTTP redirect.
    let pem = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    state.secrets.push(k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: Some("default".into()),
            name: Some("web-tls".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_string(),
                    k8s_openapi::ByteString(pem.cert.pem().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    k8s_openapi::ByteString(pem.key_pair.serialize_pem().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    });
    plane.serve(&state);
    let mut c = Challenges::default();
    c.insert(&ChallengeAnswer::Http01 {
        host: host.to_string(),
        token: "tok_1".to_string(),
        key_authorization: "tok_1.thumb".to_string(),
    });
    plane.challenges.store(Arc::new(c));

    let (status, headers, body) = http_get(
        plane.http,
        "web.acme.test:5002",
        "/.well-known/acme-challenge/tok_1",
    )
    .await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "tok_1.thumb"));
    assert_eq!(headers["content-type"], "text/plain");

    // Unknown token, or the token for another host: normal routing (here the redirect).
    let (status, _, _) = http_get(plane.http, host, "/.well-known/acme-challenge/other").await;
    assert_eq!(status, 308);
    let (status, _, _) = http_get(
        plane.http,
        "evil.acme.test",
        "/.well-known/acme-challenge/tok_1",
    )
    .await;
    assert_eq!(status, 404, "no route for that host, and no answer either");
    // Never on the HTTPS entrypoint (HTTP-01 is plain HTTP): checked by the TLS tests below.
}

/// A ClientHello offering only `acme-tls/1` gets the challenge certificate for its SNI and the
/// connection is closed after the handshake; without an answer for that name the handshake
/// fails; ordinary clients still negotiate h2 or http/1.1.
#[tokio::test]
async fn tls_alpn01_handshakes_get_the_challenge_certificate_and_no_http() {
    let plane = DataPlane::start().await;
    let cert = acme::answers::tls_alpn01_certificate("alpn.acme.test", "tok.thumb").unwrap();
    let challenge_der = cert.cert[0].clone();
    let mut c = Challenges::default();
    c.insert(&ChallengeAnswer::TlsAlpn01 {
        host: "alpn.acme.test".to_string(),
        key_authorization: "tok.thumb".to_string(),
        certificate: cert,
    });
    plane.challenges.store(Arc::new(c));

    let connector = insecure_client(&[sluice::tls::ALPN_ACME_TLS]);
    let tcp = tokio::net::TcpStream::connect(plane.https).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("alpn.acme.test").unwrap(), tcp)
        .await
        .expect("challenge handshake");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(sluice::tls::ALPN_ACME_TLS)
    );
    assert_eq!(
        tls.get_ref().1.peer_certificates().unwrap()[0],
        challenge_der
    );
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = tls
        .write_all(b"GET / HTTP/1.1\r\nHost: alpn.acme.test\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf))
        .await
        .expect("closed by the server");
    assert!(
        read.is_err() || buf.is_empty(),
        "HTTP was served: {:?}",
        String::from_utf8_lossy(&buf)
    );

    // No answer for this name: refused.
    let tcp = tokio::net::TcpStream::connect(plane.https).await.unwrap();
    assert!(
        connector
            .connect(ServerName::try_from("other.acme.test").unwrap(), tcp)
            .await
            .is_err()
    );

    // An ordinary client: h2 and the default certificate, not the challenge one.
    let tcp = tokio::net::TcpStream::connect(plane.https).await.unwrap();
    let tls = insecure_client(&[b"h2", b"http/1.1"])
        .connect(ServerName::try_from("alpn.acme.test").unwrap(), tcp)
        .await
        .expect("ordinary handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_ne!(
        tls.get_ref().1.peer_certificates().unwrap()[0],
        challenge_der
    );
}

/// A client that accepts any server certificate and signature (for inspecting what the
/// server sends).
fn insecure_client(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    #[derive(Debug)]
    struct AcceptAll(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAll {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            // webpki refuses to parse the challenge certificate (its acmeIdentifier extension
            // is critical and unknown to it); this client only inspects what is served.
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            // webpki refuses to parse the challenge certificate (its acmeIdentifier extension
            // is critical and unknown to it); this client only inspects what is served.
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAll(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

// ---------------------------------------------------------------------------------------------
// DNS-01 through moto's Route53 (the engine's DNS-01 solver), and the deadline
// ---------------------------------------------------------------------------------------------

/// DNS-01 with a wildcard through `sluice::acme::Dns01Solver` over the Route53 provider
/// (moto): the TXT values land in the most specific zone (`dns.acme.test`, not its parent
/// `acme.test`), beside a value someone else keeps there, and the test DNS responder serves
/// them to Pebble at query time. Both answers of the order (`dns.acme.test` and
/// `*.dns.acme.test`) share one TXT name; afterwards only the other value is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_issues_a_wildcard_certificate_through_route53() {
    use sluice::dns::{DnsProvider as _, RecordSet, RecordType};
    sluice_actors::telemetry::install_crypto_provider();
    let moto = support::moto::moto();
    let dns = DnsResponder::start(Some(&moto.url())).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port(),
        tls_port: free_port(),
        dns_port: dns.port,
        validity_secs: None,
        nonce_reject: Some(0),
    })
    .await;
    let client = AcmeClient::new(pebble.directory_url(), pebble.client_tls());
    let account = client
        .account(&acme::generate_account_key(), &[])
        .await
        .expect("account");
    let route53 = Arc::new(moto.provider(50.0).await);
    let parent = moto.create_zone(&route53, "acme.test", false).await;
    let zone = moto.create_zone(&route53, "dns.acme.test", false).await;
    let name = "_acme-challenge.dns.acme.test";
    let theirs = RecordSet::new(name, RecordType::Txt, 300, vec!["\"theirs\"".into()]);
    moto.put(&route53, &zone, std::slice::from_ref(&theirs))
        .await;

    let solver = acme::Dns01Solver::new(
        route53.clone(),
        acme::Dns01Options {
            poll: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            ..acme::Dns01Options::default()
        },
    );
    let hosts = vec!["*.dns.acme.test".to_string(), "dns.acme.test".to_string()];
    let issued = acme::issue(
        &account,
        &OrderRequest {
            hosts: hosts.clone(),
            challenge: ChallengeKind::Dns01,
        },
        &solver,
        &options(),
    )
    .await
    .unwrap_or_else(|e| panic!("issue: {e}\npebble log:\n{}", pebble.peer.log_tail(30)));
    verify_chain(
        &issued.chain_pem,
        &pebble.issuing_root().await,
        &["dns.acme.test", "any.dns.acme.test"],
    );
    let txt = |records: Vec<RecordSet>| -> Vec<RecordSet> {
        records
            .into_iter()
            .filter(|r| r.rtype == RecordType::Txt)
            .collect()
    };
    assert_eq!(
        txt(route53.list_records(&zone).await.unwrap()),
        [theirs],
        "our values removed, theirs kept"
    );
    assert!(txt(route53.list_records(&parent).await.unwrap()).is_empty());
}

/// The deadline ends an order whose answer never becomes visible, and the answer presented so
/// far is still cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_ends_an_order_and_cleans_up() {
    struct Slow(AtomicUsize, AtomicUsize);
    impl ChallengeSolver for Slow {
        fn present<'a>(&'a self, _: &'a ChallengeAnswer) -> BoxFuture<'a, Result<(), SolverError>> {
            Box::pin(async move {
                self.0.fetch_add(1, Ordering::SeqCst);
                // Never ready (a DNS change that never gets in sync).
                std::future::pending::<()>().await;
                Ok(())
            })
        }
        fn cleanup<'a>(&'a self, _: &'a ChallengeAnswer) -> BoxFuture<'a, Result<(), SolverError>> {
            Box::pin(async move {
                self.1.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }
    let t = start(Some(0)).await;
    let account = t
        .client
        .account(&acme::generate_account_key(), &[])
        .await
        .expect("account");
    let solver = Slow(AtomicUsize::new(0), AtomicUsize::new(0));
    let err = acme::issue(
        &account,
        &OrderRequest {
            hosts: vec!["slow.acme.test".to_string()],
            challenge: ChallengeKind::Http01,
        },
        &solver,
        &OrderOptions {
            deadline: Duration::from_secs(2),
            ..options()
        },
    )
    .await
    .expect_err("the deadline passes");
    assert!(matches!(err, OrderError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("slow.acme.test"), "{err}");
    assert!(err.is_retryable());
    assert_eq!(solver.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        solver.1.load(Ordering::SeqCst),
        1,
        "cleaned up after the timeout"
    );
}
