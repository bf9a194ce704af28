//! ACME issuance latency: how long from an Ingress asking for a certificate to that
//! certificate being served, against Pebble on 127.0.0.1 with real validation.
//!
//! Starts the whole runtime in-process in standalone mode (debounce 50 ms, as `sluice run`
//! uses) with ACME on, Pebble validating against its HTTP and HTTPS entrypoints (no validation
//! sleep, no authorization reuse, no badNonce), names resolved to 127.0.0.1 by the test DNS
//! responder. Then, for each challenge type, `ACME_BENCH_ROUNDS` times (default 10): writes a
//! new Ingress file (a fresh host, `kubernetes.io/tls-acme: "true"`) and polls the HTTPS
//! entrypoint (a TLS handshake with that SNI about every 10 ms) until the certificate served
//! verifies against Pebble's issuing root. Prints p50, p90 and max.
//!
//! Run: `cargo bench --bench acme_issue` (installs Pebble and dnslib on first run).
//! `ACME_BENCH_POLL_MS=N` starts the polling of authorizations and orders at N ms instead of
//! the default 500 ms (`OrderOptions::poll`), to see what the polling costs.

#![allow(dead_code, reason = "the bench uses part of the test support")]

#[path = "../tests/support/pebble.rs"]
mod pebble;
#[path = "../tests/support/peers.rs"]
mod peers;
#[path = "../tests/support/tls_client.rs"]
mod tls_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pebble::{DnsResponder, Pebble, PebbleOptions};
use peers::free_port;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sluice_actors::run::{self, AcmeSettings, RunOptions};

fn ingress(name: &str, host: &str, challenge: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    kubernetes.io/tls-acme: \"true\"\n    sluice.io/acme-challenge: {challenge}\nspec:\n  ingressClassName: sluice\n  tls:\n  - hosts: [{host}]\n    secretName: {name}-tls\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: echo\n            port:\n              number: 80\n"
    )
}

fn service(backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: default\nspec:\n  ports:\n  - port: 80\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: echo\naddressType: IPv4\nports:\n- port: {}\nendpoints:\n- addresses: [\"{}\"]\n",
        backend.port(),
        backend.ip()
    )
}

fn write_atomic(dir: &std::path::Path, name: &str, contents: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

/// True when `https` serves, for `host`, a chain that verifies against `root`.
async fn served(https: SocketAddr, host: &str, root: &rustls::RootCertStore) -> bool {
    let config = tls_client::insecure_client(&[b"http/1.1"]);
    let Ok(tls) = tls_client::connect(https, host, config).await else {
        return false;
    };
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    if chain.is_empty() {
        return false;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(root.clone()),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .expect("verifier");
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(host.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .is_ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rounds: usize = std::env::var("ACME_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        sluice_actors::telemetry::install_crypto_provider();
        let (http, https) = (free_port(), free_port());
        let dns = DnsResponder::start(None).await;
        let pebble = Pebble::start(PebbleOptions {
            http_port: http,
            tls_port: https,
            dns_port: dns.port,
            validity_secs: None,
            nonce_reject: Some(0),
        })
        .await;
        let work = tempfile::tempdir().expect("work dir");
        let manifests = work.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        let ca = work.path().join("pebble-ca.pem");
        std::fs::write(&ca, &pebble.listener_ca_pem).unwrap();
        let (echo, _task) =
            sluice_actors::demo::spawn_echo(SocketAddr::from(([127, 0, 0, 1], 0)), "echo")
                .await
                .expect("echo backend");
        write_atomic(&manifests, "svc.yaml", &service(echo));

        let mut opts = RunOptions::new(&manifests);
        opts.http_addr = SocketAddr::from(([127, 0, 0, 1], http));
        opts.https_addr = SocketAddr::from(([127, 0, 0, 1], https));
        let mut acme = AcmeSettings {
            server: pebble.directory_url(),
            ca_file: Some(ca),
            storage: work.path().join("acme"),
            ..AcmeSettings::new("bench@acme.test")
        };
        if let Some(ms) = std::env::var("ACME_BENCH_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            acme.order.poll.min = Duration::from_millis(ms);
        }
        let poll = acme.order.poll.min;
        opts.acme = Some(acme);
        let running = run::start(opts).await.expect("sluice starts");
        running
            .wait_reload(0, Duration::from_secs(10))
            .await
            .expect("first configuration");
        let mut root = rustls::RootCertStore::empty();
        root.add(CertificateDer::from_pem_slice(pebble.issuing_root().await.as_bytes()).unwrap())
            .unwrap();

        println!(
            "Ingress written -> Pebble certificate served ({rounds} rounds each, standalone mode, debounce 50 ms, first poll after {poll:?})"
        );
        println!("| challenge | p50 | p90 | max | min |");
        println!("| --- | --- | --- | --- | --- |");
        for challenge in ["http-01", "tls-alpn-01"] {
            let mut times = Vec::with_capacity(rounds);
            for i in 0..rounds {
                let name = format!("{}-{i}", challenge.replace('-', ""));
                let host = format!("{name}.bench.test");
                let started = Instant::now();
                write_atomic(
                    &manifests,
                    &format!("{name}.yaml"),
                    &ingress(&name, &host, challenge),
                );
                let deadline = started + Duration::from_secs(120);
                while !served(running.https_addr, &host, &root).await {
                    assert!(
                        Instant::now() < deadline,
                        "no certificate for {host} within 120 s"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                times.push(started.elapsed());
            }
            times.sort();
            println!(
                "| {challenge} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                percentile(&times, 0.5).as_secs_f64() * 1000.0,
                percentile(&times, 0.9).as_secs_f64() * 1000.0,
                times[times.len() - 1].as_secs_f64() * 1000.0,
                times[0].as_secs_f64() * 1000.0,
            );
        }
        running.shutdown(Duration::from_secs(5)).await;
    });
}
