//! TLS termination over real sockets: certificates chosen by SNI from `kubernetes.io/tls`
//! Secrets written by the test, protocol versions and ALPN, the HTTP -> HTTPS redirect, 421 for
//! misdirected requests (HTTP/1.1 and HTTP/2), broken Secrets and certificate rotation,
//! `--default-certificate`, `--tls-min-version` and `--tls-cipher-suites`.

mod support;
use support::*;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};
use sluice::model::ObjectRef;
use sluice::proxy::ProxyConfig;
use sluice::tls::{MinVersion, TlsPolicy};
use sluice_actors::run::{self, RunOptions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------------------
// Certificates and manifests
// ---------------------------------------------------------------------------------------------

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A leaf certificate issued by a [`Ca`], as PEM (chain: leaf then CA) and DER.
struct Leaf {
    chain_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>(),
        )
        .expect("leaf params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// A `kubernetes.io/tls` Secret with `stringData`.
fn tls_secret(name: &str, crt: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        indent(key)
    )
}

fn leaf_secret(name: &str, leaf: &Leaf) -> String {
    tls_secret(name, &leaf.chain_pem, &leaf.key_pem)
}

/// An Ingress of class `sluice` with `tls` entries (hosts, Secret) and rules (host, Service:
/// path `/` Prefix, port 80).
fn tls_ingress(
    name: &str,
    tls: &[(&[&str], &str)],
    rules: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> String {
    let mut y = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n"
    );
    if !annotations.is_empty() {
        y.push_str("  annotations:\n");
        for (k, v) in annotations {
            y.push_str(&format!("    {k}: {v:?}\n"));
        }
    }
    y.push_str("spec:\n  ingressClassName: sluice\n");
    if !tls.is_empty() {
        y.push_str("  tls:\n");
        for (hosts, secret) in tls {
            let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
            y.push_str(&format!(
                "  - hosts: [{}]\n    secretName: {secret}\n",
                hosts.join(", ")
            ));
        }
    }
    y.push_str("  rules:\n");
    for (host, svc) in rules {
        y.push_str(&format!(
            "  - host: {host:?}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n"
        ));
    }
    y
}

// ---------------------------------------------------------------------------------------------
// TLS clients
// ---------------------------------------------------------------------------------------------

fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts any certificate (signatures are still checked): to look at what the server presents.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How the client checks the server certificate.
enum Trust<'a> {
    /// Verify against this CA.
    Ca(&'a Ca),
    /// Accept anything.
    Anything,
}

const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A client configuration without session resumption, so that every connection sees the
/// certificate the server picks now.
fn client_config(
    trust: &Trust<'_>,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions");
    let mut config = match trust {
        Trust::Ca(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der()).expect("CA as a root");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A TLS connection to `addr` asking for `sni` (an IP address sends no SNI).
async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    tokio::time::timeout(
        DEADLINE,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("handshake before the deadline")
}

fn presented_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .clone()
        .into_owned()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// HTTP over a connection
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn read_reply(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("body before the deadline")
        .expect("body")
        .to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// One HTTP/1.1 GET on `io`.
async fn h1_get<S>(io: S, host: &str, path: &str) -> Reply
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .expect("response before the deadline")
        .expect("response");
    read_reply(resp).await
}

/// One plain-HTTP GET.
async fn http_get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    h1_get(TcpStream::connect(addr).await.expect("connect"), host, path).await
}

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h2_handshake<S>(io: S) -> H2Sender
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

async fn h2_get(send: &mut H2Sender, uri: &str) -> Reply {
    let req = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .expect("response before the deadline")
        .expect("response");
    read_reply(resp).await
}

fn echo_service(body: &str) -> &str {
    body.lines()
        .find_map(|l| l.strip_prefix("service: "))
        .unwrap_or_else(|| panic!("not an echo response: {body:?}"))
}

fn echoed<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    body.lines()
        .skip(3)
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The common set-up: `secure.test` with a CA-issued Secret, `other.test` without TLS.
// ---------------------------------------------------------------------------------------------

struct Site {
    h: Harness,
    ca: Ca,
    leaf: Leaf,
}

/// Starts sluice with `secure.test` (TLS, a leaf from `ca`), `other.test` (no TLS) and `extra`
/// manifests, and waits until the certificates are in place: the reload signal comes from the
/// routing side, the certificate snapshot may follow it.
async fn site(config: ProxyConfig, ca: Ca, extra: Vec<(&str, String)>) -> Site {
    site_options(ca, extra, |opts| opts.proxy = config).await
}

/// [`site`] with the run options changed by `change`.
async fn site_options(
    ca: Ca,
    extra: Vec<(&str, String)>,
    change: impl FnOnce(&mut RunOptions),
) -> Site {
    let leaf = ca.leaf(&["secure.test"]);
    let secure = echo([127, 0, 0, 1], "secure").await;
    let other = echo([127, 0, 0, 1], "other").await;
    let mut files = vec![
        (
            "secure.yaml",
            tls_ingress(
                "secure",
                &[(&["secure.test"], "secure-tls")],
                &[("secure.test", "secure")],
                &[],
            ),
        ),
        (
            "other.yaml",
            ingress("other", "other.test", &[("/", "Prefix", "other", 80)], &[]),
        ),
        ("secret.yaml", leaf_secret("secure-tls", &leaf)),
        (
            "svc.yaml",
            format!(
                "{}---\n{}",
                service("secure", &[(secure, true)]),
                service("other", &[(other, true)])
            ),
        ),
    ];
    files.extend(extra);
    let h = Harness::start_options(&files, change).await;
    wait_for_leaf(h.running.https_addr, "secure.test", &leaf.der).await;
    Site { h, ca, leaf }
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until a new connection asking for `sni` is presented `want`.
async fn wait_for_leaf(addr: SocketAddr, sni: &str, want: &CertificateDer<'static>) {
    let any = client_config(&Trust::Anything, ALL_VERSIONS, &[]);
    wait_until(&format!("the certificate for {sni}"), || {
        let any = any.clone();
        async move {
            tls_connect(addr, sni, any)
                .await
                .is_ok_and(|tls| presented_leaf(&tls) == *want)
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 1. Certificates by SNI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_secret_certificate_is_served_by_sni_and_the_request_routed() {
    let s = site(
        ProxyConfig::default(),
        Ca::new("sluice test CA"),
        Vec::new(),
    )
    .await;
    let addr = s.h.running.https_addr;
    let verified = client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[b"http/1.1"]);

    for sni in ["secure.test", "SECURE.Test"] {
        let tls = tls_connect(addr, sni, verified.clone())
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(presented_leaf(&tls), s.leaf.der, "SNI {sni}");
        let r = h1_get(tls, "secure.test", "/tls?x=1").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(echo_service(&r.body), "secure");
        assert_eq!(
            echoed(&r.body, "x-forwarded-proto"),
            ["https"],
            "{}",
            r.body
        );
        assert_eq!(
            echoed(&r.body, "x-forwarded-port"),
            [addr.port().to_string().as_str()],
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn unknown_names_get_the_default_certificate() {
    let s = site(
        ProxyConfig::default(),
        Ca::new("sluice test CA"),
        Vec::new(),
    )
    .await;
    let addr = s.h.running.https_addr;

    // Verified against the test CA, `other.test` (no TLS Secret) fails on the certificate.
    let err = tls_connect(
        addr,
        "other.test",
        client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[]),
    )
    .await
    .expect_err("untrusted certificate");
    assert!(err.to_string().contains("certificate"), "{err}");

    // What is presented: the self-signed default, for an unknown name and for no SNI at all.
    let any = client_config(&Trust::Anything, ALL_VERSIONS, &[b"http/1.1"]);
    let default = presented_leaf(
        &tls_connect(addr, "unknown.test", any.clone())
            .await
            .unwrap(),
    );
    assert_ne!(default, s.leaf.der);
    assert!(
        contains(&default, b"sluice.invalid"),
        "the default certificate names sluice.invalid"
    );
    let no_sni = tls_connect(addr, "127.0.0.1", any.clone()).await.unwrap();
    assert_eq!(
        presented_leaf(&no_sni),
        default,
        "no SNI: the default certificate"
    );

    // A host with a route but no certificate is still served over HTTPS (with the default).
    let tls = tls_connect(addr, "other.test", any).await.unwrap();
    assert_eq!(presented_leaf(&tls), default);
    let r = h1_get(tls, "other.test", "/").await;
    assert_eq!((r.status, echo_service(&r.body)), (StatusCode::OK, "other"));
}

// ---------------------------------------------------------------------------------------------
// 2. Versions and ALPN
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tls12_and_tls13_both_work() {
    let s = site(
        ProxyConfig::default(),
        Ca::new("sluice test CA"),
        Vec::new(),
    )
    .await;
    for (version, want) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&Trust::Ca(&s.ca), &[version], &[b"http/1.1"]);
        let tls = tls_connect(s.h.running.https_addr, "secure.test", config)
            .await
            .unwrap_or_else(|e| panic!("{want:?}: {e}"));
        assert_eq!(tls.get_ref().1.protocol_version(), Some(want));
        assert_eq!(presented_leaf(&tls), s.leaf.der);
        let r = h1_get(tls, "secure.test", "/v").await;
        assert_eq!(
            (r.status, echo_service(&r.body)),
            (StatusCode::OK, "secure"),
            "{want:?}"
        );
    }
}

#[tokio::test]
async fn alpn_selects_http2_or_http11() {
    let s = site(
        ProxyConfig::default(),
        Ca::new("sluice test CA"),
        Vec::new(),
    )
    .await;
    let addr = s.h.running.https_addr;

    // h2 (offered first, as browsers do) wins.
    let tls = tls_connect(
        addr,
        "secure.test",
        client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut send = h2_handshake(tls).await;
    for i in 0..3 {
        let r = h2_get(&mut send, &format!("https://secure.test/h2/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.version, Version::HTTP_2);
        assert_eq!(echo_service(&r.body), "secure");
        assert!(
            r.body.contains(&format!("GET /h2/{i} HTTP/1.1")),
            "HTTP/1.1 upstream: {}",
            r.body
        );
        assert_eq!(
            echoed(&r.body, "x-forwarded-proto"),
            ["https"],
            "{}",
            r.body
        );
    }

    // http/1.1 only.
    let tls = tls_connect(
        addr,
        "secure.test",
        client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = h1_get(tls, "secure.test", "/h1").await;
    assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_11));

    // No ALPN at all: HTTP/1.1.
    let tls = tls_connect(
        addr,
        "secure.test",
        client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let r = h1_get(tls, "secure.test", "/none").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. HTTP -> HTTPS redirect
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn plain_http_to_a_tls_host_is_redirected_unless_disabled() {
    let config = ProxyConfig {
        https_redirect_port: 8443,
        ..ProxyConfig::default()
    };
    let relaxed = echo([127, 0, 0, 1], "relaxed").await;
    let extra = vec![
        ("svc-relaxed.yaml", service("relaxed", &[(relaxed, true)])),
        (
            "relaxed.yaml",
            tls_ingress(
                "relaxed",
                &[(&["relaxed.test"], "secure-tls")],
                &[("relaxed.test", "relaxed")],
                &[("sluice.io/ssl-redirect", "false")],
            ),
        ),
    ];
    let s = site(config, Ca::new("sluice test CA"), extra).await;
    let http = s.h.running.http_addr;

    for (host, target, location) in [
        ("secure.test", "/path?q", "https://secure.test:8443/path?q"),
        (
            "secure.test:80",
            "/a/../path?x=1&y=2",
            "https://secure.test:8443/path?x=1&y=2",
        ),
        ("secure.test", "/", "https://secure.test:8443/"),
    ] {
        let r = http_get(http, host, target).await;
        assert_eq!(
            r.status,
            StatusCode::PERMANENT_REDIRECT,
            "{host}{target}: {}",
            r.body
        );
        assert_eq!(r.header("location"), Some(location), "{host}{target}");
    }

    // ssl-redirect "false": served over plain HTTP.
    let r = http_get(http, "relaxed.test", "/path?q").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "relaxed"),
        "{}",
        r.body
    );
    // A host without TLS is never redirected.
    let r = http_get(http, "other.test", "/path").await;
    assert_eq!((r.status, echo_service(&r.body)), (StatusCode::OK, "other"));
    // Over HTTPS the TLS host is served, not redirected again.
    let tls = tls_connect(
        s.h.running.https_addr,
        "secure.test",
        client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[]),
    )
    .await
    .unwrap();
    let r = h1_get(tls, "secure.test", "/path?q").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );
}

#[tokio::test]
async fn the_redirect_omits_port_443() {
    let s = site(
        ProxyConfig::default(),
        Ca::new("sluice test CA"),
        Vec::new(),
    )
    .await;
    let r = http_get(s.h.running.http_addr, "secure.test", "/p?q=1").await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.header("location"), Some("https://secure.test/p?q=1"));
}

#[tokio::test]
async fn a_redirect_for_a_wildcard_host_is_only_built_from_a_valid_host() {
    let ca = Ca::new("sluice test CA");
    let wild = ca.leaf(&["*.wild.test"]);
    let w = echo([127, 0, 0, 1], "wild").await;
    let extra = vec![
        ("svc-wild.yaml", service("wild", &[(w, true)])),
        ("wild-secret.yaml", leaf_secret("wild-tls", &wild)),
        (
            "wild.yaml",
            tls_ingress(
                "wild",
                &[(&["*.wild.test"], "wild-tls")],
                &[("*.wild.test", "wild")],
                &[],
            ),
        ),
    ];
    let s = site(ProxyConfig::default(), ca, extra).await;
    let http = s.h.running.http_addr;
    let r = http_get(http, "a.wild.test", "/a").await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT, "{}", r.body);
    assert_eq!(r.header("location"), Some("https://a.wild.test/a"));
    for host in ["evil?.wild.test", "evil/x.wild.test", "e@vil.wild.test"] {
        let r = http_get(http, host, "/a").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}: {}", r.body);
        assert_eq!(r.header("location"), None, "{host}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. 421 Misdirected Request
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_tls_connection_used_for_a_host_its_certificate_does_not_cover_is_421() {
    // A wildcard certificate shared by two hosts: coalescing between them is fine.
    let ca = Ca::new("sluice test CA");
    let wild = ca.leaf(&["*.wild.test"]);
    let w = echo([127, 0, 0, 1], "wild").await;
    let extra = vec![
        ("svc-wild.yaml", service("wild", &[(w, true)])),
        ("wild-secret.yaml", leaf_secret("wild-tls", &wild)),
        (
            "wild.yaml",
            tls_ingress(
                "wild",
                &[(&["*.wild.test"], "wild-tls")],
                &[("a.wild.test", "wild"), ("b.wild.test", "wild")],
                &[],
            ),
        ),
    ];
    let s = site(ProxyConfig::default(), ca, extra).await;
    let addr = s.h.running.https_addr;
    let h2 = || client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[b"h2"]);

    let tls = tls_connect(addr, "secure.test", h2()).await.unwrap();
    let mut send = h2_handshake(tls).await;
    let r = h2_get(&mut send, "https://secure.test/").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );
    let r = h2_get(&mut send, "https://other.test/").await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{}", r.body);
    assert!(r.body.starts_with("misdirected request"), "{}", r.body);
    let r = h2_get(&mut send, "https://other.test:443/x").await;
    assert_eq!(
        r.status,
        StatusCode::MISDIRECTED_REQUEST,
        "with a port: {}",
        r.body
    );
    // The connection stays usable for its own host.
    let r = h2_get(&mut send, "https://secure.test/again").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );

    let tls = tls_connect(addr, "a.wild.test", h2()).await.unwrap();
    assert_eq!(presented_leaf(&tls), wild.der);
    let mut send = h2_handshake(tls).await;
    for host in ["a.wild.test", "b.wild.test"] {
        let r = h2_get(&mut send, &format!("https://{host}/")).await;
        assert_eq!(
            (r.status, echo_service(&r.body)),
            (StatusCode::OK, "wild"),
            "{host}: {}",
            r.body
        );
    }
    let r = h2_get(&mut send, "https://secure.test/").await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{}", r.body);

    // HTTP/1.1 too: a Host the SNI's certificate does not cover is 421, not routed.
    let h1 = || client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[b"http/1.1"]);
    let tls = tls_connect(addr, "secure.test", h1()).await.unwrap();
    let r = h1_get(tls, "other.test", "/").await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{}", r.body);
    let tls = tls_connect(addr, "secure.test", h1()).await.unwrap();
    let r = h1_get(tls, "secure.test", "/").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A broken Secret
// ---------------------------------------------------------------------------------------------

/// The sample lines of `name` on the admin endpoint.
async fn metric_lines(h: &Harness, name: &str) -> Vec<String> {
    let r = http_get(h.running.admin_addr, "admin", "/metrics").await;
    assert_eq!(r.status, 200);
    r.body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_broken_secret_falls_back_to_the_default_certificate_and_is_reported() {
    let b = echo([127, 0, 0, 1], "broken").await;
    let extra = vec![
        ("svc-broken.yaml", service("broken", &[(b, true)])),
        (
            "broken-secret.yaml",
            tls_secret("broken-tls", "garbage, not PEM\n", "more garbage\n"),
        ),
        (
            "broken.yaml",
            tls_ingress(
                "broken",
                &[(&["broken.test"], "broken-tls")],
                &[("broken.test", "broken")],
                &[],
            ),
        ),
    ];
    let s = site(ProxyConfig::default(), Ca::new("sluice test CA"), extra).await;
    let https = s.h.running.https_addr;

    let any = client_config(&Trust::Anything, ALL_VERSIONS, &[b"http/1.1"]);
    let default = presented_leaf(
        &tls_connect(https, "unknown.test", any.clone())
            .await
            .unwrap(),
    );
    let tls = tls_connect(https, "broken.test", any).await.unwrap();
    assert_eq!(
        presented_leaf(&tls),
        default,
        "the broken Secret's host gets the default certificate"
    );
    let r = h1_get(tls, "broken.test", "/").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "broken"),
        "its routes are still served over HTTPS"
    );

    // The other Secret is unaffected.
    let tls = tls_connect(
        https,
        "secure.test",
        client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[]),
    )
    .await
    .unwrap();
    assert_eq!(presented_leaf(&tls), s.leaf.der);

    // Its certificate cannot be served, so plain HTTP keeps serving instead of redirecting
    // to a certificate no client would accept.
    let r = http_get(s.h.running.http_addr, "broken.test", "/x").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "broken"),
        "{}",
        r.body
    );

    // Counted once the certificate snapshot is built, which may follow the reload signal.
    let h = &s.h;
    wait_until(
        "a SecretInvalid error in sluice_config_diagnostics_total",
        || async move {
            metric_lines(h, "sluice_config_diagnostics_total")
                .await
                .iter()
                .any(|l| {
                    l.contains("reason=\"SecretInvalid\"")
                        && l.contains("severity=\"error\"")
                        && l.rsplit(' ')
                            .next()
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(|v| v >= 1.0)
                })
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Rotation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections() {
    let s = site(
        ProxyConfig::default(),
        Ca::new("sluice test CA"),
        Vec::new(),
    )
    .await;
    let addr = s.h.running.https_addr;
    let config = || client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[b"http/1.1"]);
    let before = tls_connect(addr, "secure.test", config()).await.unwrap();
    assert_eq!(presented_leaf(&before), s.leaf.der);

    let renewed = s.ca.leaf(&["secure.test", "www.secure.test"]);
    assert_ne!(renewed.der, s.leaf.der);
    s.h.write("secret.yaml", &leaf_secret("secure-tls", &renewed))
        .await;
    wait_for_leaf(addr, "secure.test", &renewed.der).await;

    let after = tls_connect(addr, "secure.test", config()).await.unwrap();
    assert_eq!(
        presented_leaf(&after),
        renewed.der,
        "a new connection gets the new certificate"
    );
    let r = h1_get(after, "secure.test", "/new").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );
    // The connection made before the rotation keeps working.
    let r = h1_get(before, "secure.test", "/old").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );

    // A certificate from another CA: the old trust fails, as it should.
    let other_ca = Ca::new("another CA");
    let foreign = other_ca.leaf(&["secure.test"]);
    s.h.write("secret.yaml", &leaf_secret("secure-tls", &foreign))
        .await;
    wait_for_leaf(addr, "secure.test", &foreign.der).await;
    let err = tls_connect(addr, "secure.test", config())
        .await
        .expect_err("not issued by the trusted CA");
    assert!(err.to_string().contains("certificate"), "{err}");
    let fresh = tls_connect(
        addr,
        "secure.test",
        client_config(&Trust::Ca(&other_ca), ALL_VERSIONS, &[]),
    )
    .await;
    assert!(fresh.is_ok(), "{fresh:?}");
}

#[tokio::test]
async fn header_annotations_and_hsts_on_https_only() {
    let ca = Ca::new("sluice test CA");
    let leaf = ca.leaf(&["headers.test"]);
    let web = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "headers.yaml",
            tls_ingress(
                "headers",
                &[(&["headers.test"], "headers-tls")],
                &[("headers.test", "web")],
                &[
                    ("sluice.io/ssl-redirect", "false"),
                    ("sluice.io/hsts", "max-age=31536000; includeSubDomains"),
                    ("sluice.io/request-headers", "X-Team: payments\nX-Env: prod"),
                    (
                        "sluice.io/response-headers",
                        "X-Frame-Options: DENY\nX-Content-Type-Options: nosniff",
                    ),
                ],
            ),
        ),
        ("secret.yaml", leaf_secret("headers-tls", &leaf)),
        ("svc.yaml", service("web", &[(web, true)])),
    ])
    .await;
    let addr = h.running.https_addr;
    wait_for_leaf(addr, "headers.test", &leaf.der).await;
    let verified = client_config(&Trust::Ca(&ca), ALL_VERSIONS, &[b"http/1.1"]);
    let tls = tls_connect(addr, "headers.test", verified).await.unwrap();
    let r = h1_get(tls, "headers.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(echoed(&r.body, "x-team"), ["payments"], "{}", r.body);
    assert_eq!(echoed(&r.body, "x-env"), ["prod"]);
    assert_eq!(
        r.headers.get("strict-transport-security").unwrap(),
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(r.headers.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
    // Plain HTTP: the same headers, but never HSTS (RFC 6797 section 7.2).
    let r = http_get(h.running.http_addr, "headers.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(echoed(&r.body, "x-team"), ["payments"]);
    assert!(r.headers.get("strict-transport-security").is_none());
    assert_eq!(r.headers.get("x-frame-options").unwrap(), "DENY");
}

// ---------------------------------------------------------------------------------------------
// 7. --default-certificate
// ---------------------------------------------------------------------------------------------

fn with_default_certificate(opts: &mut RunOptions) {
    opts.default_certificate = Some(ObjectRef::new("default", "fallback"));
}

/// `/api/diagnostics` as text.
async fn diagnostics_text(h: &Harness) -> String {
    let r = http_get(h.running.admin_addr, "admin", "/api/diagnostics").await;
    assert_eq!(r.status, 200);
    r.body
}

/// The `/api/diagnostics` entries about Secret `default/fallback` with `reason`.
async fn fallback_diagnostics(h: &Harness, reason: &str) -> Vec<serde_json::Value> {
    let body = diagnostics_text(h).await;
    let all: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    all.as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            d["kind"] == "Secret" && d["object"] == "default/fallback" && d["reason"] == reason
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_default_certificate_secret_is_served_for_unknown_names_and_no_sni_and_rotates() {
    let ca = Ca::new("sluice test CA");
    let fallback = ca.leaf(&["fallback.test"]);
    let extra = vec![("fallback.yaml", leaf_secret("fallback", &fallback))];
    let s = site_options(ca, extra, with_default_certificate).await;
    let addr = s.h.running.https_addr;

    // The snapshot with the fallback may follow the reload signal.
    wait_for_leaf(addr, "unknown.test", &fallback.der).await;
    assert!(
        metric_lines(&s.h, "sluice_tls_certs_not_after")
            .await
            .iter()
            .any(|l| l.contains("secret=\"default/fallback\"")),
        "its expiry is exported"
    );
    let any = client_config(&Trust::Anything, ALL_VERSIONS, &[b"http/1.1"]);
    let no_sni = tls_connect(addr, "127.0.0.1", any.clone()).await.unwrap();
    assert_eq!(
        presented_leaf(&no_sni),
        fallback.der,
        "no SNI: the fallback"
    );
    // A host with a route but no Secret is served the fallback too, and routed.
    let tls = tls_connect(addr, "other.test", any.clone()).await.unwrap();
    assert_eq!(presented_leaf(&tls), fallback.der);
    let r = h1_get(tls, "other.test", "/").await;
    assert_eq!((r.status, echo_service(&r.body)), (StatusCode::OK, "other"));
    // A host with its own Secret keeps it (verified against the CA).
    let verified = client_config(&Trust::Ca(&s.ca), ALL_VERSIONS, &[]);
    let tls = tls_connect(addr, "secure.test", verified.clone())
        .await
        .unwrap();
    assert_eq!(presented_leaf(&tls), s.leaf.der);
    // The fallback is a real certificate: a client asking for its name verifies it.
    let tls = tls_connect(addr, "fallback.test", verified).await.unwrap();
    assert_eq!(presented_leaf(&tls), fallback.der);

    // Rotation: new content in the same Secret is served without restart.
    let rotated = s.ca.leaf(&["fallback.test", "rotated.test"]);
    s.h.write("fallback.yaml", &leaf_secret("fallback", &rotated))
        .await;
    wait_for_leaf(addr, "unknown.test", &rotated.der).await;
    wait_for_leaf(addr, "127.0.0.1", &rotated.der).await;
    assert_eq!(
        presented_leaf(&tls_connect(addr, "secure.test", any.clone()).await.unwrap()),
        s.leaf.der
    );

    // A broken fallback: back to the generated certificate, reported on the Secret.
    s.h.write(
        "fallback.yaml",
        &tls_secret("fallback", "garbage, not PEM\n", "more garbage\n"),
    )
    .await;
    let h = &s.h;
    wait_until("the generated certificate after the fallback broke", || {
        let any = any.clone();
        async move {
            tls_connect(addr, "unknown.test", any)
                .await
                .is_ok_and(|tls| contains(&presented_leaf(&tls), b"sluice.invalid"))
        }
    })
    .await;
    wait_until(
        "a SecretInvalid diagnostic on default/fallback",
        || async move {
            let text = diagnostics_text(h).await;
            text.contains("SecretInvalid")
                && text.contains("default/fallback")
                && text.contains("--default-certificate")
        },
    )
    .await;
}

#[tokio::test]
async fn a_missing_default_certificate_secret_keeps_the_generated_one_and_is_reported() {
    let s = site_options(
        Ca::new("sluice test CA"),
        Vec::new(),
        with_default_certificate,
    )
    .await;
    let addr = s.h.running.https_addr;
    let h = &s.h;
    wait_until(
        "a SecretNotFound diagnostic naming default/fallback",
        || async move {
            fallback_diagnostics(h, "SecretNotFound")
                .await
                .iter()
                .any(|d| {
                    d["severity"] == "error"
                        && d["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("--default-certificate default/fallback"))
                })
        },
    )
    .await;
    let any = client_config(&Trust::Anything, ALL_VERSIONS, &[]);
    for sni in ["unknown.test", "127.0.0.1"] {
        let tls = tls_connect(addr, sni, any.clone()).await.unwrap();
        assert!(
            contains(&presented_leaf(&tls), b"sluice.invalid"),
            "{sni}: the generated certificate"
        );
    }
    assert_eq!(
        presented_leaf(&tls_connect(addr, "secure.test", any).await.unwrap()),
        s.leaf.der
    );

    // Once the Secret appears it is served, and the diagnostic goes away.
    let fallback = s.ca.leaf(&["fallback.test"]);
    s.h.write("fallback.yaml", &leaf_secret("fallback", &fallback))
        .await;
    wait_for_leaf(addr, "unknown.test", &fallback.der).await;
    wait_until("the SecretNotFound diagnostic to go", || async move {
        fallback_diagnostics(h, "SecretNotFound").await.is_empty()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. --tls-min-version and --tls-cipher-suites
// ---------------------------------------------------------------------------------------------

/// A client trusting `ca` that offers only `suites` (and the versions they belong to).
fn client_with_suites(ca: &Ca, suites: &[rustls::SupportedCipherSuite]) -> Arc<ClientConfig> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).expect("CA as a root");
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(ALL_VERSIONS)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[tokio::test]
async fn tls_min_version_1_3_refuses_tls12_clients() {
    let s = site_options(Ca::new("sluice test CA"), Vec::new(), |opts| {
        opts.tls = TlsPolicy {
            min_version: MinVersion::Tls13,
            cipher_suites: Vec::new(),
        };
    })
    .await;
    let addr = s.h.running.https_addr;
    let tls12 = client_config(&Trust::Ca(&s.ca), &[&rustls::version::TLS12], &[]);
    let err = tls_connect(addr, "secure.test", tls12)
        .await
        .expect_err("a TLS 1.2 client is refused");
    assert!(
        err.to_string().contains("ProtocolVersion") || err.to_string().contains("version"),
        "{err}"
    );
    let tls13 = client_config(
        &Trust::Ca(&s.ca),
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    );
    let tls = tls_connect(addr, "secure.test", tls13).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let r = h1_get(tls, "secure.test", "/").await;
    assert_eq!(
        (r.status, echo_service(&r.body)),
        (StatusCode::OK, "secure")
    );
}

#[tokio::test]
async fn only_the_configured_cipher_suites_are_negotiated() {
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384,
    };
    let s = site_options(Ca::new("sluice test CA"), Vec::new(), |opts| {
        opts.tls.cipher_suites =
            sluice::tls::policy::parse_cipher_suites("TLS13_AES_256_GCM_SHA384").unwrap();
    })
    .await;
    let addr = s.h.running.https_addr;
    let err = tls_connect(
        addr,
        "secure.test",
        client_with_suites(&s.ca, &[TLS13_AES_128_GCM_SHA256]),
    )
    .await
    .expect_err("no common cipher suite");
    assert!(
        err.to_string().contains("HandshakeFailure") || err.to_string().contains("handshake"),
        "{err}"
    );
    let tls = tls_connect(
        addr,
        "secure.test",
        client_with_suites(&s.ca, &[TLS13_AES_256_GCM_SHA384]),
    )
    .await
    .unwrap();
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().map(|c| c.suite()),
        Some(TLS13_AES_256_GCM_SHA384.suite())
    );
    assert_eq!(presented_leaf(&tls), s.leaf.der);
}

#[tokio::test]
async fn unusable_tls_settings_are_startup_errors_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = RunOptions::new(dir.path());
    opts.tls = TlsPolicy {
        min_version: MinVersion::Tls13,
        cipher_suites: sluice::tls::policy::parse_cipher_suites(
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        )
        .unwrap(),
    };
    let Err(err) = run::start(opts).await else {
        panic!("sluice must refuse to start")
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("--tls-cipher-suites") && err.contains("--tls-min-version 1.3"),
        "{err}"
    );

    // With --watch-namespace, the default certificate's namespace must be watched.
    let mut opts = RunOptions::new(dir.path()).with_kube(run::KubeSource {
        namespaces: vec!["team-a".into()],
        ..Default::default()
    });
    with_default_certificate(&mut opts);
    let Err(err) = run::start(opts).await else {
        panic!("sluice must refuse to start")
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("--default-certificate default/fallback") && err.contains("team-a"),
        "{err}"
    );
}
