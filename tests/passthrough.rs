//! TLS passthrough (`ssl-passthrough`) over real sockets: a TLS backend terminates the client's
//! own handshake (its certificate, the client's SNI and ALPN offer), a terminated host on the
//! same port keeps working, a request decrypted by sluice for a passthrough host gets 421, and
//! a passthrough host that cannot be served (client outside its source ranges, no endpoint
//! reachable, a closed Ingress) closes the connection; the metrics count connections and
//! bytes.

mod support;
use support::pki::{Pki, pki};
use support::*;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS backend with `pki`'s leaf that negotiates ALPN `x-passthrough` and answers one
/// HTTP/1.1-shaped request per connection with what its handshake saw.
async fn tls_backend(pki: &Pki) -> SocketAddr {
    let acceptor = pki.acceptor(&[b"x-passthrough"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let seen = format!(
                    "sni={} alpn={}",
                    session.server_name().unwrap_or(""),
                    String::from_utf8_lossy(session.alpn_protocol().unwrap_or(b""))
                );
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{seen}",
                    seen.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A client that trusts only `ca_pem` and offers ALPN `x-passthrough`.
fn client_trusting(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"x-passthrough".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `GET /` over a TLS connection to sluice's HTTPS entrypoint with `sni`: the whole answer.
async fn get_over_tls(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    tls.write_all(
        format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    // A close without close_notify is the peer's business, not the test's.
    match tls.read_to_end(&mut answer).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Whether a TLS handshake with `sni` is refused by the connection closing.
async fn closed_before_handshake(addr: SocketAddr, sni: &str) -> bool {
    let config = support::tls_client::insecure_client(&[b"http/1.1"]);
    support::tls_client::connect(addr, sni, config)
        .await
        .is_err()
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_and_terminated_hosts_share_the_https_port() {
    let pki = pki(&["pass.test"]);
    let backend = tls_backend(&pki).await;
    let plain = echo([127, 0, 0, 1], "terminated").await;
    let passthrough = |name: &str, host: &str, svc: &str, extra: &[(&str, &str)]| {
        let mut annotations = vec![("nginx.ingress.kubernetes.io/ssl-passthrough", "true")];
        annotations.extend_from_slice(extra);
        ingress(name, host, &[("/", "Prefix", svc, 80)], &annotations)
    };
    let h = Harness::start(&[
        ("pass-svc.yaml", service("pass-backend", &[(backend, true)])),
        ("echo-svc.yaml", service("echo", &[(plain, true)])),
        ("down-svc.yaml", service("down", &[(refusing_addr(), true)])),
        (
            "pass.yaml",
            passthrough("pass", "pass.test", "pass-backend", &[]),
        ),
        (
            "denied.yaml",
            passthrough(
                "denied",
                "denied.test",
                "pass-backend",
                &[(
                    "nginx.ingress.kubernetes.io/whitelist-source-range",
                    "10.0.0.0/8",
                )],
            ),
        ),
        ("down.yaml", passthrough("down", "down.test", "down", &[])),
        (
            "closed.yaml",
            passthrough(
                "closed",
                "closed.test",
                "pass-backend",
                &[(
                    "nginx.ingress.kubernetes.io/auth-url",
                    "http://auth.example/check",
                )],
            ),
        ),
        (
            "term.yaml",
            ingress("term", "term.test", &[("/", "Prefix", "echo", 80)], &[]),
        ),
    ])
    .await;
    let https = h.running.https_addr;

    // The backend completed the client's own handshake: the client verified the backend's
    // certificate (it trusts nothing else), and the backend saw the client's SNI and ALPN.
    let answer = get_over_tls(
        https,
        "pass.test",
        "pass.test",
        client_trusting(&pki.ca_pem),
    )
    .await
    .expect("passthrough handshake with the backend");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("sni=pass.test alpn=x-passthrough"),
        "{answer}"
    );
    // Upper case SNI routes as the host does.
    let answer = get_over_tls(
        https,
        "PASS.test",
        "pass.test",
        client_trusting(&pki.ca_pem),
    )
    .await
    .expect("passthrough with an upper case SNI");
    assert!(
        answer.ends_with("sni=pass.test alpn=x-passthrough"),
        "{answer}"
    );

    // A terminated host on the same port: sluice's certificate, the echo backend.
    let insecure = support::tls_client::insecure_client(&[b"http/1.1"]);
    let answer = get_over_tls(https, "term.test", "term.test", insecure.clone())
        .await
        .expect("terminated host");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("terminated"), "{answer}");
    // A host sluice does not know is terminated too (404), not passed anywhere.
    let answer = get_over_tls(https, "other.test", "other.test", insecure.clone())
        .await
        .expect("unknown host");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    // Decrypted by sluice, addressed to the passthrough host: 421.
    let answer = get_over_tls(https, "term.test", "pass.test", insecure.clone())
        .await
        .expect("misdirected request");
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");

    // Not served: the connection closes instead of being terminated by sluice.
    assert!(closed_before_handshake(https, "denied.test").await);
    assert!(closed_before_handshake(https, "down.test").await);
    assert!(closed_before_handshake(https, "closed.test").await);

    let (_, metrics) = request(
        h.running.metrics_addr.expect("metrics listener"),
        "GET",
        "metrics",
        "/metrics",
    )
    .await
    .expect("metrics");
    let connections = |ingress: &str, result: &str| {
        sample(
            &metrics,
            "sluice_passthrough_connections_total",
            &[
                &format!("ingress=\"default/{ingress}\""),
                &format!("result=\"{result}\""),
            ],
        )
    };
    assert_eq!(connections("pass", "spliced"), Some(2.0), "{metrics}");
    assert_eq!(connections("denied", "forbidden"), Some(1.0), "{metrics}");
    assert_eq!(connections("down", "connect_error"), Some(1.0), "{metrics}");
    assert_eq!(connections("closed", "closed"), Some(1.0), "{metrics}");
    for direction in ["in", "out"] {
        let bytes = sample(
            &metrics,
            "sluice_passthrough_bytes_total",
            &[
                "ingress=\"default/pass\"",
                &format!("direction=\"{direction}\""),
            ],
        )
        .unwrap_or(0.0);
        // At least a ClientHello (or a server's certificate) each way.
        assert!(bytes > 200.0, "{direction}: {bytes}\n{metrics}");
    }
    let (_, diags) = request(h.running.admin_addr, "GET", "admin", "/api/diagnostics")
        .await
        .expect("diagnostics");
    assert!(
        diags.contains("auth-url cannot be enforced on connections passed through"),
        "{diags}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_passthrough_host_connections_are_terminated_and_a_new_one_takes_effect_live() {
    let pki = pki(&["late.test"]);
    let backend = tls_backend(&pki).await;
    let plain = echo([127, 0, 0, 1], "terminated").await;
    let h = Harness::start(&[
        ("pass-svc.yaml", service("pass-backend", &[(backend, true)])),
        ("echo-svc.yaml", service("echo", &[(plain, true)])),
        (
            "late.yaml",
            ingress("late", "late.test", &[("/", "Prefix", "echo", 80)], &[]),
        ),
    ])
    .await;
    let https = h.running.https_addr;
    let insecure = support::tls_client::insecure_client(&[b"http/1.1"]);
    let answer = get_over_tls(https, "late.test", "late.test", insecure)
        .await
        .expect("terminated");
    assert!(answer.contains("terminated"), "{answer}");

    h.write(
        "late.yaml",
        &ingress(
            "late",
            "late.test",
            &[("/", "Prefix", "pass-backend", 80)],
            &[("sluice.io/ssl-passthrough", "true")],
        ),
    )
    .await;
    let answer = get_over_tls(
        https,
        "late.test",
        "late.test",
        client_trusting(&pki.ca_pem),
    )
    .await
    .expect("passed through after the change");
    assert!(
        answer.ends_with("sni=late.test alpn=x-passthrough"),
        "{answer}"
    );
}
