//! ACME end to end through the running sluice (`sluice_actors::run::start`: the whole
//! runtime, real sockets) against Pebble with real validation: Pebble's `httpPort` and
//! `tlsPort` are sluice's entrypoint ports (chosen up front), names resolve to 127.0.0.1
//! through the test DNS responder, and certificates are checked against Pebble's issuing root.
//!
//! - standalone: HTTP-01 while Pebble is down (backoff, no tight loop) and then up; TLS-ALPN-01
//!   and HTTP-01 for Ingresses created while running (the time to a served certificate is
//!   printed); renewal at two thirds of a short lifetime with a keep-alive connection open; a
//!   Secret sluice did not create is never overwritten; the acme actor crashed mid-order
//!   completes with the same account; DNS-01 for a wildcard through `--dns-provider route53`
//!   (moto), Pebble reading the TXT answer from moto's zones;
//! - Kubernetes mode: two instances against the fake API server, the leader orders and Pebble
//!   validates against the follower; Warning Events for a failed order; Secrets not ours.
//!
//! Tests take turns (one Pebble at a time): orders and metrics are process-wide, and a busy
//! 2-core machine validates more reliably one order at a time.
//!
//! Pebble (Debian), dnslib and moto (PyPI, in the test virtualenv) are installed on first use.
//! `SLUICE_TEST_LOG=1` prints sluice's logs (with `RUST_LOG` as usual).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use sluice::acme::{OrderOptions, RetryPolicy};
use sluice::dns::RecordType;
use sluice::pace::Backoff;
use sluice_actors::leader::LeaderElection;
use sluice_actors::run::{
    self, AcmeSettings, DnsProviderKind, DnsSettings, KubeSource, RunOptions, Running,
};
use sluice_actors::supervisor::{CrashPoint, Crashed};
use support::fake_apiserver::FakeApiServer;
use support::pebble::{DnsResponder, Pebble, PebbleOptions};
use support::peers::free_port;
use tokio::io::AsyncWriteExt as _;

/// How long anything involving Pebble may take on a busy machine.
const SLOW: Duration = Duration::from_secs(60);

/// One test at a time (see the module documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/// Pebble validating against `http`/`https` on 127.0.0.1, its DNS responder, and a working
/// folder (manifests, ACME storage, Pebble's listener CA for `--acme-ca-file`).
struct World {
    pebble: Pebble,
    _dns: DnsResponder,
    http: u16,
    https: u16,
    work: tempfile::TempDir,
}

impl World {
    /// `nonce_reject: None` keeps Pebble's default badNonce rate (5% of nonces refused).
    async fn start(
        http: u16,
        https: u16,
        validity_secs: Option<u64>,
        nonce_reject: Option<u32>,
    ) -> World {
        World::start_resolving(http, https, validity_secs, nonce_reject, None).await
    }

    /// [`World::start`] whose DNS responder answers TXT queries from moto's Route53 at `moto`.
    async fn start_resolving(
        http: u16,
        https: u16,
        validity_secs: Option<u64>,
        nonce_reject: Option<u32>,
        moto: Option<&str>,
    ) -> World {
        sluice_actors::telemetry::install_crypto_provider();
        if std::env::var_os("SLUICE_TEST_LOG").is_some() {
            sluice_actors::telemetry::init_logging(sluice_actors::telemetry::LogFormat::Text);
        }
        let dns = DnsResponder::start(moto).await;
        let pebble = Pebble::start(PebbleOptions {
            http_port: http,
            tls_port: https,
            dns_port: dns.port,
            validity_secs,
            nonce_reject,
        })
        .await;
        let work = tempfile::tempdir().expect("work dir");
        std::fs::create_dir(work.path().join("manifests")).unwrap();
        std::fs::write(work.path().join("pebble-ca.pem"), &pebble.listener_ca_pem).unwrap();
        World {
            pebble,
            _dns: dns,
            http,
            https,
            work,
        }
    }

    fn manifests(&self) -> PathBuf {
        self.work.path().join("manifests")
    }

    fn storage(&self) -> PathBuf {
        self.work.path().join("acme")
    }

    /// ACME settings for this Pebble: short retries and polling for tests.
    fn settings(&self) -> AcmeSettings {
        AcmeSettings {
            server: self.pebble.directory_url(),
            ca_file: Some(self.work.path().join("pebble-ca.pem")),
            storage: self.storage(),
            retry: RetryPolicy {
                min: Duration::from_secs(2),
                max: Duration::from_secs(8),
                validation_pause: Duration::from_secs(20),
            },
            order: OrderOptions {
                deadline: SLOW,
                poll: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            },
            propagation: Duration::from_millis(500),
            ..AcmeSettings::new("admin@acme.test")
        }
    }

    /// Standalone sluice on this world's ports, reading its manifests folder.
    async fn sluice(&self, chaos: bool) -> Running {
        self.sluice_with_dns(chaos, None).await
    }

    /// [`World::sluice`] with DNS settings.
    async fn sluice_with_dns(&self, chaos: bool, dns: Option<DnsSettings>) -> Running {
        let mut opts = RunOptions::new(self.manifests());
        opts.dns = dns;
        opts.http_addr = SocketAddr::from(([127, 0, 0, 1], self.http));
        opts.https_addr = SocketAddr::from(([127, 0, 0, 1], self.https));
        opts.proxy.https_redirect_port = self.https;
        opts.debounce = Duration::from_millis(20);
        opts.chaos = chaos;
        opts.acme = Some(self.settings());
        let running = run::start(opts).await.expect("sluice starts");
        running
            .wait_reload(0, support::DEADLINE)
            .await
            .expect("first configuration");
        running
    }

    fn write(&self, name: &str, yaml: &str) {
        support::write_atomic(&self.manifests().join(name), yaml);
    }
}

/// An Ingress of ours for `host` asking sluice for a certificate in Secret `secret`, with
/// extra annotations.
fn acme_ingress(name: &str, host: &str, secret: &str, annotations: &[(&str, &str)]) -> String {
    let mut all = vec![("kubernetes.io/tls-acme", "true")];
    all.extend_from_slice(annotations);
    let mut y = support::ingress(name, host, &[("/", "Prefix", "site", 80)], &all);
    y.push_str(&format!(
        "  tls:\n  - hosts: [{host}]\n    secretName: {secret}\n"
    ));
    y
}

/// The Service `site` on an echo backend.
async fn site_service() -> String {
    let echo = support::echo([127, 0, 0, 1], "site").await;
    support::service("site", &[(echo, true)])
}

// ---------------------------------------------------------------------------------------------
// Observing
// ---------------------------------------------------------------------------------------------

async fn admin_json(running: &Running, path: &str) -> Value {
    let (status, body) = support::request(running.admin_addr, "GET", "admin", path)
        .await
        .expect("admin API answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The `/api/certificates` entry of Secret `secret` (`namespace/name`).
async fn certificate(running: &Running, secret: &str) -> Value {
    let all = admin_json(running, "/api/certificates").await;
    all["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["secret"] == json!(secret))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn account_url(running: &Running) -> Value {
    admin_json(running, "/api/certificates").await["acme"]["account"].clone()
}

/// The diagnostics of `/api/diagnostics` with `reason`.
async fn diagnostics(running: &Running, reason: &str) -> Vec<Value> {
    admin_json(running, "/api/diagnostics")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"] == json!(reason))
        .cloned()
        .collect()
}

/// The value of the sample `series` (`name{labels}` as rendered) in `/metrics`, if present.
async fn metric(running: &Running, series: &str) -> Option<f64> {
    let (_, body) = support::request(running.admin_addr, "GET", "admin", "/metrics")
        .await
        .expect("metrics");
    sample(&body, series)
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The process-wide value of `sluice_acme_orders_total{result}` (0 before the first).
fn orders(result: &str) -> f64 {
    let text = sluice_actors::telemetry::metrics().render();
    sample(
        &text,
        &format!("sluice_acme_orders_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within`.
async fn until<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The certificate chain served on `https` for SNI `host` (any certificate accepted).
async fn served_chain(https: SocketAddr, host: &str) -> Vec<CertificateDer<'static>> {
    let config = support::tls_client::insecure_client(&[b"http/1.1"]);
    let tls = support::tls_client::connect(https, host, config)
        .await
        .expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap().to_vec()
}

/// True when `chain` verifies for `name` against `root_pem`.
fn verifies(chain: &[CertificateDer<'static>], root_pem: &str, name: &str) -> Result<(), String> {
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
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Waits until `https` serves, for `host`, a chain that verifies against Pebble's root.
async fn until_issued_and_served(
    world: &World,
    https: SocketAddr,
    host: &str,
) -> Vec<CertificateDer<'static>> {
    let root = world.pebble.issuing_root().await;
    until(
        SLOW,
        &format!("a Pebble certificate served for {host}"),
        || {
            let root = root.clone();
            async move {
                let chain = served_chain(https, host).await;
                verifies(&chain, &root, host).is_ok().then_some(chain)
            }
        },
    )
    .await
}

fn leaf_not_before_after(der: &CertificateDer<'_>) -> (i64, i64) {
    let f = sluice::tls::der::parse_certificate(der).expect("leaf parses");
    (f.not_before, f.not_after)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// The leaf of the `tls.crt` of a Secret as JSON (the fake's, or a storage file).
fn secret_leaf(secret: &Value) -> CertificateDer<'static> {
    use base64::Engine as _;
    let crt = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().expect("tls.crt"))
        .expect("base64");
    CertificateDer::pem_slice_iter(&crt)
        .next()
        .expect("a certificate")
        .expect("PEM")
        .into_owned()
}

// ---------------------------------------------------------------------------------------------
// Standalone
// ---------------------------------------------------------------------------------------------

/// HTTP-01 in standalone mode with Pebble's default badNonce rate. Pebble is down at first:
/// the host is served over plain HTTP (no redirect) with the default certificate, orders fail
/// and back off (a handful of attempts, not a tight loop), the failure is visible. Pebble
/// comes up: the next attempt issues, the Pebble-issued chain is served for the host, HTTP
/// redirects, and `--acme-storage` holds the account key and the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_waits_for_pebble_with_backoff_then_issues_serves_and_stores() {
    let _serial = SERIAL.lock().await;
    let (http, https) = (free_port(), free_port());
    let mut world = World::start(http, https, None, None).await;
    world.pebble.stop();
    world.write("svc.yaml", &site_service().await);
    let host = "site.acme.test";
    world.write("ingress.yaml", &acme_ingress("site", host, "site-tls", &[]));
    let failed_before = orders("failed");
    let running = world.sluice(false).await;
    let https_addr = running.https_addr;

    // Pending: plain HTTP to the app, the default certificate.
    let (status, body) = support::request(running.http_addr, "GET", host, "/")
        .await
        .unwrap();
    assert_eq!(status, 200, "no redirect while pending: {body}");
    assert_eq!(
        served_chain(https_addr, host).await,
        served_chain(https_addr, "unknown.acme.test").await,
        "the default certificate"
    );
    let pending = diagnostics(&running, "CertificatePending").await;
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["object"], json!("default/site"));

    // Orders fail while Pebble is down, reported and backed off.
    let failed = until(SLOW, "a failed order reported", || async {
        let c = certificate(&running, "default/site-tls").await;
        (c["state"] == json!("failed")).then_some(c)
    })
    .await;
    let error = failed["lastError"].as_str().unwrap();
    assert!(error.contains(host), "{error}");
    assert!(
        failed["retryAt"].as_i64().unwrap() >= unix_now(),
        "{failed}"
    );
    let events = diagnostics(&running, "CertificateOrderFailed").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["field"], json!("spec.tls[0]"));
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = orders("failed") - failed_before;
    let took = window.elapsed();
    // 2 s doubling to 8 s (each shortened by up to half): at most 6 attempts in the first
    // 10 s and then some; a tight loop would make hundreds.
    assert!(
        (2.0..=8.0).contains(&attempts),
        "{attempts} failed orders in {took:?} (+ the first)"
    );
    assert_eq!(
        served_chain(https_addr, host).await,
        served_chain(https_addr, "unknown.acme.test").await,
        "a failed order does not disturb serving"
    );

    // Pebble up: issued at the next attempt.
    let issued_before = orders("issued");
    world.pebble.restart().await;
    let chain = until_issued_and_served(&world, https_addr, host).await;
    assert!(orders("issued") > issued_before);
    let (status, _) = support::request(running.http_addr, "GET", host, "/")
        .await
        .unwrap();
    assert_eq!(status, 308, "HTTP redirects once the certificate is served");
    let (status, body) = support::request(
        running.http_addr,
        "GET",
        host,
        "/.well-known/acme-challenge/none",
    )
    .await
    .unwrap();
    assert_eq!(status, 308, "an unknown token is routed: {body}");

    // Stored: the account key and the certificate, as the Secret manifest served.
    let storage = world.storage();
    let key = std::fs::read_to_string(storage.join("account.key")).expect("account.key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    let file = storage.join("certificates/default_site-tls.json");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("certificate file")).unwrap();
    assert_eq!(stored["type"], json!("kubernetes.io/tls"));
    assert_eq!(
        stored["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        json!("sluice")
    );
    assert_eq!(
        stored["metadata"]["annotations"]["cert-manager.io/alt-names"],
        json!(host)
    );
    assert_eq!(
        secret_leaf(&stored),
        chain[0],
        "the stored certificate is served"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Visible: /api/certificates, metrics, no diagnostics left.
    let (_, not_after) = leaf_not_before_after(&chain[0]);
    let c = certificate(&running, "default/site-tls").await;
    assert_eq!(c["state"], json!("valid"), "{c}");
    assert_eq!(c["hosts"], json!([host]));
    assert_eq!(c["ingress"], json!("default/site"));
    assert_eq!(c["challenge"], json!("http-01"));
    assert_eq!(c["notAfter"], json!(not_after));
    assert!(c["nextOrderAt"].as_i64().unwrap() < not_after);
    assert_eq!(c["lastError"], Value::Null);
    let account = account_url(&running).await;
    assert!(
        account.as_str().is_some_and(|a| a.contains("127.0.0.1")),
        "{account}"
    );
    assert_eq!(
        metric(
            &running,
            "sluice_certificate_expiry_timestamp_seconds{secret=\"default/site-tls\"}"
        )
        .await,
        Some(not_after as f64)
    );
    assert!(
        metric(&running, "sluice_acme_orders_total{result=\"issued\"}")
            .await
            .is_some()
    );
    assert!(
        metric(
            &running,
            "sluice_acme_challenges_answered_total{type=\"http-01\"}"
        )
        .await
        .is_some()
    );
    until(support::DEADLINE, "the diagnostics cleared", || async {
        (diagnostics(&running, "CertificatePending").await.is_empty()
            && diagnostics(&running, "CertificateOrderFailed")
                .await
                .is_empty())
        .then_some(())
    })
    .await;
    let retries = sluice_actors::telemetry::metrics().render();
    eprintln!(
        "badNonce retries so far: {:?}",
        sample(&retries, "sluice_acme_bad_nonce_retries_total")
    );
    running.shutdown(Duration::from_secs(5)).await;
}

/// Ingresses created while sluice runs: one validated with HTTP-01, one with TLS-ALPN-01
/// (`sluice.io/acme-challenge`), each served within the deadline (the time from the Ingress
/// file written to the Pebble certificate served is printed; benches/acme_issue measures it).
/// DNS-01 without a DNS provider fails clearly, before any validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingresses_created_while_running_get_certificates_by_http01_and_tls_alpn01_not_dns01() {
    let _serial = SERIAL.lock().await;
    let (http, https) = (free_port(), free_port());
    let world = World::start(http, https, None, Some(0)).await;
    world.write("svc.yaml", &site_service().await);
    let running = world.sluice(false).await;
    let root = world.pebble.issuing_root().await;
    let mut times = Vec::new();
    for (name, challenge) in [("web", "http-01"), ("alpn", "tls-alpn-01")] {
        let host = format!("{name}.acme.test");
        let secret = format!("{name}-tls");
        let started = Instant::now();
        world.write(
            &format!("{name}.yaml"),
            &acme_ingress(
                name,
                &host,
                &secret,
                &[("sluice.io/acme-challenge", challenge)],
            ),
        );
        let chain = until_issued_and_served(&world, running.https_addr, &host).await;
        let took = started.elapsed();
        times.push((challenge, took));
        verifies(&chain, &root, &host).unwrap();
        let c = certificate(&running, &format!("default/{secret}")).await;
        assert_eq!(c["challenge"], json!(challenge));
        assert_eq!(c["state"], json!("valid"));
    }
    assert!(
        metric(
            &running,
            "sluice_acme_challenges_answered_total{type=\"tls-alpn-01\"}"
        )
        .await
        .is_some()
    );
    eprintln!("Ingress written -> Pebble certificate served: {times:?}");

    // DNS-01 without a DNS provider: a clear failure before the CA is asked to validate.
    world.write(
        "dns.yaml",
        &acme_ingress(
            "dns",
            "dns.acme.test",
            "dns-tls",
            &[("sluice.io/acme-challenge", "dns-01")],
        ),
    );
    let failed = until(SLOW, "the dns-01 order to fail", || async {
        diagnostics(&running, "CertificateOrderFailed")
            .await
            .into_iter()
            .find(|d| d["object"] == json!("default/dns"))
    })
    .await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("dns.acme.test") && message.contains("DNS provider"),
        "{message}"
    );
    running.shutdown(Duration::from_secs(5)).await;
}

/// DNS-01 through the runtime: `--dns-provider route53` (moto) gives the ACME actor its DNS
/// provider; Pebble resolves `_acme-challenge` TXT records from moto's zones (the test DNS
/// responder reads them at query time). A wildcard certificate is issued and served, the TXT
/// value is gone afterwards, and the DNS actor's own records stand beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_the_dns_provider_issues_a_wildcard_certificate() {
    let _serial = SERIAL.lock().await;
    let moto = support::moto::moto();
    let route53 = moto.provider(50.0).await;
    let zone = moto.create_zone(&route53, "wild.acme.test", false).await;
    let (http, https) = (free_port(), free_port());
    let world = World::start_resolving(http, https, None, Some(0), Some(&moto.url())).await;
    world.write("svc.yaml", &site_service().await);
    let mut dns = DnsSettings::new(
        DnsProviderKind::Route53(support::moto::options_for(&moto.url())),
        "acme-e2e",
    );
    dns.desired.publish = vec!["127.0.0.1".to_owned()];
    dns.debounce = Duration::from_millis(50);
    let running = world.sluice_with_dns(false, Some(dns)).await;
    let answered = metric(
        &running,
        "sluice_acme_challenges_answered_total{type=\"dns-01\"}",
    )
    .await
    .unwrap_or(0.0);
    let started = Instant::now();
    // Quoted: a YAML value may not start with `*`.
    world.write(
        "wild.yaml",
        &acme_ingress(
            "wild",
            "\"*.wild.acme.test\"",
            "wild-tls",
            &[("sluice.io/acme-challenge", "dns-01")],
        ),
    );
    let host = "app.wild.acme.test";
    let chain = until_issued_and_served(&world, running.https_addr, host).await;
    eprintln!(
        "Ingress written -> wildcard certificate served by DNS-01 through moto: {:?}",
        started.elapsed()
    );
    let root = world.pebble.issuing_root().await;
    verifies(&chain, &root, "other.wild.acme.test").expect("the wildcard covers any label");
    let c = certificate(&running, "default/wild-tls").await;
    assert_eq!(c["challenge"], json!("dns-01"), "{c:#}");
    assert_eq!(c["state"], json!("valid"), "{c:#}");
    assert!(
        metric(
            &running,
            "sluice_acme_challenges_answered_total{type=\"dns-01\"}"
        )
        .await
        .is_some_and(|n| n > answered),
        "the DNS-01 answer is counted"
    );
    // The answer is removed after the order; the DNS actor's records for the host stay.
    let records = until(SLOW, "the TXT answer removed, the A record written", || {
        let (moto, route53, zone) = (moto, &route53, &zone);
        async move {
            let records = moto.records(route53, zone).await;
            let challenge = records
                .iter()
                .any(|r| r.name.starts_with("_acme-challenge."));
            let a = records
                .iter()
                .any(|r| r.name.contains("wild.acme.test") && r.rtype == RecordType::A);
            (!challenge && a).then_some(records)
        }
    })
    .await;
    assert!(
        records
            .iter()
            .any(|r| r.rtype == RecordType::Txt
                && r.values.iter().any(|v| v.contains("owner=acme-e2e"))),
        "the DNS actor's ownership record: {records:#?}"
    );
    running.shutdown(Duration::from_secs(5)).await;
}

/// Renewal with a 30 s lifetime: the certificate is renewed at two thirds of it and the new
/// one is served; an HTTPS keep-alive connection opened before the renewal keeps working.
/// Pebble is restarted in between (it forgets every account): the renewal's first attempt
/// fails on the unknown account, the next one registers the key again and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_at_two_thirds_serves_the_new_certificate_without_dropping_connections() {
    let _serial = SERIAL.lock().await;
    let (http, https) = (free_port(), free_port());
    let mut world = World::start(http, https, Some(30), Some(0)).await;
    world.write("svc.yaml", &site_service().await);
    let host = "renew.acme.test";
    world.write(
        "ingress.yaml",
        &acme_ingress("renew", host, "renew-tls", &[]),
    );
    let running = world.sluice(false).await;
    let first = until_issued_and_served(&world, running.https_addr, host).await;
    let (not_before, not_after) = leaf_not_before_after(&first[0]);
    let lifetime = not_after - not_before;
    assert!((25..=31).contains(&lifetime), "{lifetime}");
    let renew_at = sluice::acme::policy::renew_at(not_before, not_after);
    let c = certificate(&running, "default/renew-tls").await;
    assert_eq!(c["nextOrderAt"], json!(renew_at), "{c}");

    // A keep-alive connection over the first certificate.
    let tls = support::tls_client::connect(
        running.https_addr,
        host,
        support::tls_client::insecure_client(&[b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], first[0]);
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (status, _, _) = support::get_on(&mut send, host, "/").await.unwrap();
    assert_eq!(status, 200);

    // A new Pebble (same ports and listener certificate): a new issuing root, no accounts.
    let first_account = account_url(&running).await;
    let failed_before = orders("failed");
    world.pebble.restart().await;

    // Renewed: a new certificate, ordered at two thirds of the first one's lifetime.
    let second = until(SLOW, "the renewed certificate served", || async {
        let chain = served_chain(running.https_addr, host).await;
        (chain[0] != first[0]).then_some(chain)
    })
    .await;
    verifies(&second, &world.pebble.issuing_root().await, host).unwrap();
    let (renewed_from, _) = leaf_not_before_after(&second[0]);
    assert!(
        renewed_from >= renew_at - 1,
        "renewed at {renewed_from}, before two thirds ({renew_at})"
    );
    assert!(renewed_from < not_after, "renewed before expiry");
    assert!(
        orders("failed") > failed_before,
        "the first attempt used the account the new Pebble does not know"
    );
    let account = account_url(&running).await;
    assert!(account.is_string() && account != first_account, "{account}");
    for i in 0..3 {
        let (status, _, _) = support::get_on(&mut send, host, "/")
            .await
            .unwrap_or_else(|e| panic!("request {i} on the connection opened before: {e}"));
        assert_eq!(status, 200);
    }
    running.shutdown(Duration::from_secs(5)).await;
}

/// A self-signed certificate for `host` as a `kubernetes.io/tls` Secret manifest without
/// sluice's label (someone else's).
fn foreign_secret_yaml(name: &str, host: &str) -> (String, CertificateDer<'static>) {
    use base64::Engine as _;
    let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(c.cert.pem()),
        b64(c.key_pair.serialize_pem())
    );
    (yaml, c.cert.der().clone())
}

/// A Secret in the manifests folder that sluice did not create is served as it is, never
/// overwritten, with the `CertificateSecretNotOwned` diagnostic; another Ingress's certificate
/// is issued meanwhile (the actor is working).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_not_created_by_sluice_is_never_overwritten() {
    let _serial = SERIAL.lock().await;
    let (http, https) = (free_port(), free_port());
    let world = World::start(http, https, None, Some(0)).await;
    world.write("svc.yaml", &site_service().await);
    let (secret, theirs) = foreign_secret_yaml("theirs-tls", "theirs.acme.test");
    world.write("secret.yaml", &secret);
    world.write(
        "theirs.yaml",
        &acme_ingress("theirs", "theirs.acme.test", "theirs-tls", &[]),
    );
    world.write(
        "ours.yaml",
        &acme_ingress("ours", "ours.acme.test", "ours-tls", &[]),
    );
    let running = world.sluice(false).await;
    until_issued_and_served(&world, running.https_addr, "ours.acme.test").await;

    let not_owned = diagnostics(&running, "CertificateSecretNotOwned").await;
    assert_eq!(not_owned.len(), 1, "{not_owned:#?}");
    assert_eq!(not_owned[0]["object"], json!("default/theirs"));
    assert_eq!(not_owned[0]["field"], json!("spec.tls[0].secretName"));
    assert!(
        not_owned[0]["message"]
            .as_str()
            .unwrap()
            .contains("never overwritten")
    );
    assert_eq!(
        served_chain(running.https_addr, "theirs.acme.test").await[0],
        theirs
    );
    let c = certificate(&running, "default/theirs-tls").await;
    assert_eq!(c["issuer"], json!("secret"), "not managed by ACME: {c}");
    assert!(
        !world
            .storage()
            .join("certificates/default_theirs-tls.json")
            .exists()
    );
    assert!(
        world
            .storage()
            .join("certificates/default_ours-tls.json")
            .exists()
    );
    let (status, _) = support::request(running.http_addr, "GET", "theirs.acme.test", "/")
        .await
        .unwrap();
    assert_eq!(
        status, 308,
        "their certificate is served, so HTTP redirects"
    );
    running.shutdown(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------------
// Chaos
// ---------------------------------------------------------------------------------------------

/// A TCP forwarder to `target` that holds every connection until opened (the CA's validation
/// request stays in flight: an order is mid-way for as long as the test wants). It records the
/// path of each request it holds: one challenge token per order.
struct Gate {
    port: u16,
    paths: Arc<std::sync::Mutex<Vec<String>>>,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gate {
    async fn start(target: u16) -> Gate {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (open, _) = tokio::sync::watch::channel(false);
        let (p, o) = (paths.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (paths, mut rx) = (p.clone(), o.subscribe());
                tokio::spawn(async move {
                    // The request head, to learn its path; forwarded as it is later.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match client.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let path = String::from_utf8_lossy(&head)
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    paths.lock().unwrap().push(path);
                    if rx.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let Ok(mut upstream) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        let _ = client.shutdown().await;
                        return;
                    };
                    if upstream.write_all(&head).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Gate {
            port,
            paths,
            open,
            task,
        }
    }

    /// The distinct request paths held so far (one per challenge token), in order.
    fn tokens(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for p in self.paths.lock().unwrap().iter() {
            if !seen.contains(p) {
                seen.push(p.clone());
            }
        }
        seen
    }
}

/// The acme actor crashed mid-order, once in its handler and once in its task (`?in=task`),
/// while Pebble's validation request is held: after the restarts the order completes, with
/// the same account (no second account).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acme_actor_crashed_mid_order_completes_without_a_second_account() {
    let _serial = SERIAL.lock().await;
    let (http, https) = (free_port(), free_port());
    let dns = DnsResponder::start(None).await;
    let gate = Gate::start(http).await;
    // Pebble validates through the gate.
    let pebble = Pebble::start(PebbleOptions {
        http_port: gate.port,
        tls_port: https,
        dns_port: dns.port,
        validity_secs: None,
        nonce_reject: Some(0),
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("manifests")).unwrap();
    std::fs::write(work.path().join("pebble-ca.pem"), &pebble.listener_ca_pem).unwrap();
    let world = World {
        pebble,
        _dns: dns,
        http,
        https,
        work,
    };
    world.write("svc.yaml", &site_service().await);
    let host = "chaos.acme.test";
    world.write(
        "ingress.yaml",
        &acme_ingress("chaos", host, "chaos-tls", &[]),
    );
    let running = world.sluice(true).await;

    let first = until(SLOW, "Pebble's validation request held", || async {
        gate.tokens().first().cloned()
    })
    .await;
    assert!(first.starts_with("/.well-known/acme-challenge/"), "{first}");
    let account = account_url(&running).await;
    assert!(account.is_string(), "the account is known mid-order");

    // In the handler.
    assert_eq!(
        running.tree.crash("acme", CrashPoint::Handler),
        Crashed::Yes
    );
    until(support::DEADLINE, "the acme actor restarted", || async {
        (running.tree.restarts("acme") >= 1 && running.tree.status("acme") == Some("running"))
            .then_some(())
    })
    .await;
    // The restarted actor orders again (a new token); crash it in its task while that order is
    // validated.
    until(SLOW, "the next order's validation request held", || async {
        (gate.tokens().len() >= 2).then_some(())
    })
    .await;
    let (status, body) = support::request(
        running.admin_addr,
        "POST",
        "admin",
        "/debug/crash/acme?in=task",
    )
    .await
    .unwrap();
    assert!((200..300).contains(&status), "{status} {body}");
    until(
        support::DEADLINE,
        "the acme actor restarted again",
        || async {
            (running.tree.restarts("acme") >= 2 && running.tree.status("acme") == Some("running"))
                .then_some(())
        },
    )
    .await;

    // Validation gets through: the order of the running actor completes.
    gate.open.send_replace(true);
    until_issued_and_served(&world, running.https_addr, host).await;
    assert_eq!(
        account_url(&running).await,
        account,
        "the same account after the restarts"
    );
    assert_eq!(running.tree.restarts("acme"), 2);
    running.shutdown(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes mode
// ---------------------------------------------------------------------------------------------

/// Stable leadership on a busy machine, failover within seconds.
fn election() -> LeaderElection {
    LeaderElection {
        namespace: Some("sluice-system".to_owned()),
        name: "sluice-leader".to_owned(),
        lease_duration: Duration::from_secs(5),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(300),
    }
}

async fn kube_instance(fake: &FakeApiServer, world: &World, http: u16, https: u16) -> Running {
    let mut opts = RunOptions::new(std::env::temp_dir()).with_kube(KubeSource {
        config: Some(fake.kube_config()),
        publish_addresses: vec!["10.0.0.9".to_owned()],
        leader_election: election(),
        ..KubeSource::default()
    });
    opts.http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    opts.https_addr = SocketAddr::from(([127, 0, 0, 1], https));
    opts.proxy.https_redirect_port = https;
    opts.debounce = Duration::from_millis(20);
    opts.acme = Some(world.settings());
    let running = run::start(opts).await.expect("sluice starts");
    running
        .wait_reload(0, support::DEADLINE)
        .await
        .expect("first state");
    running
}

fn kube_ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> Value {
    let mut a = serde_json::Map::new();
    a.insert("kubernetes.io/tls-acme".into(), json!("true"));
    for (k, v) in annotations {
        a.insert((*k).into(), json!(v));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": "default", "annotations": a },
        "spec": {
            "ingressClassName": "sluice",
            "tls": [{ "hosts": [host], "secretName": format!("{name}-tls") }],
            "rules": [{ "host": host, "http": { "paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": "site", "port": { "number": 80 } } },
            }]}}],
        },
    })
}

fn kube_backend(echo: SocketAddr) -> [Value; 2] {
    [
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "site", "namespace": "default" },
            "spec": { "ports": [{ "port": 80 }] },
        }),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": "site-1", "namespace": "default",
                          "labels": { "kubernetes.io/service-name": "site" } },
            "addressType": "IPv4",
            "ports": [{ "port": echo.port() }],
            "endpoints": [{ "addresses": [echo.ip().to_string()], "conditions": { "ready": true } }],
        }),
    ]
}

fn writes_to(fake: &FakeApiServer, namespace: &str, name: &str) -> Vec<String> {
    let item = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
    let collection = format!("/api/v1/namespaces/{namespace}/secrets");
    fake.requests()
        .into_iter()
        .filter(|r| {
            r.method != "GET"
                && (r.path == item
                    || (r.path == collection
                        && r.body
                            .as_ref()
                            .is_some_and(|b| b["metadata"]["name"] == json!(name))))
        })
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect()
}

/// Two instances against the fake API server. Only the leader creates the account and
/// orders; Pebble validates HTTP-01 against the FOLLOWER's port (the answer reaches it through
/// the shared answers Secret); the certificate Secret is written with our labels and both
/// instances serve it. A failed order (TLS-ALPN-01 to a port where nothing listens) is a
/// Warning Event; Secrets sluice did not create (of type `kubernetes.io/tls`, watched, or
/// `Opaque`, not watched) are never written. The leader stops: the follower takes over and
/// orders with the same account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kube_leader_orders_follower_answers_both_serve() {
    let _serial = SERIAL.lock().await;
    let (a_http, a_https) = (free_port(), free_port());
    let (b_http, b_https) = (free_port(), free_port());
    let nowhere = free_port();
    // Pebble validates HTTP-01 on b (the follower) and TLS-ALPN-01 where nothing listens.
    let world = World::start(b_http, nowhere, None, Some(0)).await;
    let fake = FakeApiServer::start().await;
    let echo = support::echo([127, 0, 0, 1], "site").await;
    for o in kube_backend(echo) {
        fake.apply(o);
    }
    let a = kube_instance(&fake, &world, a_http, a_https).await;
    until(support::DEADLINE, "a to lead", || async {
        a.is_leader().then_some(())
    })
    .await;
    let b = kube_instance(&fake, &world, b_http, b_https).await;
    assert!(!b.is_leader());

    let host = "site.kube.test";
    fake.apply(kube_ingress("site", host, &[]));
    let secret = until(SLOW, "the certificate Secret", || async {
        fake.get("secrets", "default", "site-tls")
    })
    .await;
    assert_eq!(secret["type"], json!("kubernetes.io/tls"));
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        json!("sluice")
    );
    assert_eq!(
        secret["metadata"]["annotations"]["cert-manager.io/alt-names"],
        json!(host)
    );
    assert_eq!(
        secret["metadata"]["annotations"]["cert-manager.io/issuer-name"],
        json!("sluice")
    );
    let leaf = secret_leaf(&secret);
    let root = world.pebble.issuing_root().await;
    for (who, running) in [("leader", &a), ("follower", &b)] {
        let chain = until(
            SLOW,
            &format!("the {who} serving the certificate"),
            || async {
                let chain = served_chain(running.https_addr, host).await;
                (chain[0] == leaf).then_some(chain)
            },
        )
        .await;
        verifies(&chain, &root, host).unwrap();
        let (status, _) = support::request(running.http_addr, "GET", host, "/")
            .await
            .unwrap();
        assert_eq!(status, 308, "{who} redirects once served");
    }
    assert!(a.is_leader() && !b.is_leader(), "leadership stayed put");

    // The account: one key Secret, created once, used by the leader only.
    let account_key = fake
        .get("secrets", "sluice-system", "sluice-acme-account")
        .expect("the account key Secret");
    assert_eq!(account_key["type"], json!("Opaque"));
    assert_eq!(
        writes_to(&fake, "sluice-system", "sluice-acme-account").len(),
        1,
        "created once"
    );
    assert!(account_url(&a).await.is_string());
    assert_eq!(
        account_url(&b).await,
        Value::Null,
        "the follower never orders"
    );
    let c = until(
        support::DEADLINE,
        "the follower to see it valid",
        || async {
            let c = certificate(&b, "default/site-tls").await;
            (c["state"] == json!("valid")).then_some(c)
        },
    )
    .await;
    assert_eq!(
        c["notAfter"],
        certificate(&a, "default/site-tls").await["notAfter"]
    );
    // The answers went through the shared Secret (added, then removed).
    let answers = fake
        .get("secrets", "sluice-system", "sluice-acme-challenges")
        .expect("the answers Secret");
    use base64::Engine as _;
    let list = base64::engine::general_purpose::STANDARD
        .decode(answers["data"]["answers.json"].as_str().unwrap())
        .unwrap();
    assert_eq!(list, b"[]", "answers removed after the order");
    assert!(writes_to(&fake, "sluice-system", "sluice-acme-challenges").len() >= 2);

    // A failed order: a Warning Event on the Ingress naming host, challenge and error.
    fake.apply(kube_ingress(
        "broken",
        "broken.kube.test",
        &[("sluice.io/acme-challenge", "tls-alpn-01")],
    ));
    let event = until(SLOW, "a Warning Event for the failed order", || async {
        fake.list("events", Some("default")).into_iter().find(|e| {
            e["regarding"]["name"] == json!("broken")
                && e["reason"] == json!("CertificateOrderFailed")
        })
    })
    .await;
    assert_eq!(event["type"], json!("Warning"));
    let note = event["note"].as_str().unwrap();
    assert!(
        note.starts_with("spec.tls[0]")
            && note.contains("broken.kube.test")
            && note.contains("tls-alpn-01"),
        "{note}"
    );
    assert_eq!(event["reportingInstance"], json!(a.identity()));
    assert!(
        !diagnostics(&a, "CertificateOrderFailed").await.is_empty(),
        "in the leader's /api/diagnostics"
    );
    assert!(fake.get("secrets", "default", "broken-tls").is_none());

    // Secrets not ours: a TLS Secret (watched) and an Opaque one (found before ordering).
    let (theirs, _) = foreign_secret_yaml("theirs-tls", "theirs.kube.test");
    let theirs: Value = serde_saphyr::from_str(&theirs).unwrap();
    fake.apply(theirs);
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": { "name": "opaque-tls", "namespace": "default" },
        "data": { "note": "bm90IHlvdXJz" },
    }));
    fake.apply(kube_ingress("theirs", "theirs.kube.test", &[]));
    fake.apply(kube_ingress("opaque", "opaque.kube.test", &[]));
    let not_owned = until(SLOW, "both Secrets reported as not ours", || async {
        let d = diagnostics(&a, "CertificateSecretNotOwned").await;
        (d.len() == 2).then_some(d)
    })
    .await;
    let mut objects: Vec<&str> = not_owned
        .iter()
        .map(|d| d["object"].as_str().unwrap())
        .collect();
    objects.sort_unstable();
    assert_eq!(objects, ["default/opaque", "default/theirs"]);
    assert!(writes_to(&fake, "default", "theirs-tls").is_empty());
    assert!(writes_to(&fake, "default", "opaque-tls").is_empty());
    assert_eq!(
        fake.get("secrets", "default", "opaque-tls").unwrap()["type"],
        json!("Opaque")
    );

    // The leader goes: the follower takes over and orders with the same account (the key
    // from the account Secret), for a certificate asked for after the failover.
    let account = account_url(&a).await;
    a.shutdown(Duration::from_secs(5)).await;
    until(SLOW, "b to lead", || async { b.is_leader().then_some(()) }).await;
    fake.apply(kube_ingress("after", "after.kube.test", &[]));
    until(
        SLOW,
        "the certificate ordered by the new leader",
        || async { fake.get("secrets", "default", "after-tls") },
    )
    .await;
    assert_eq!(account_url(&b).await, account, "no second account");
    assert_eq!(
        writes_to(&fake, "sluice-system", "sluice-acme-account").len(),
        1,
        "the account key Secret was not written again"
    );
    until(SLOW, "the new leader serving it", || async {
        let chain = served_chain(b.https_addr, "after.kube.test").await;
        verifies(&chain, &root, "after.kube.test")
            .is_ok()
            .then_some(())
    })
    .await;
    b.shutdown(Duration::from_secs(5)).await;
}
