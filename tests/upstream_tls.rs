//! HTTPS, GRPCS (h2 over TLS) and h2c upstreams over real sockets: verification against the
//! `ca.crt` of `proxy-ssl-secret`, the verified name and SNI (`proxy-ssl-name`,
//! `proxy-ssl-server-name`), a wrong name refused, verification off by default, a Secret that
//! cannot be used closing the route, and what an HTTP/2 upstream receives: one authority (the
//! Ingress host as `:authority`, no `host` header) and `te: trailers`.

mod support;
use support::pki::{Pki, pki};
use support::*;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the backend answers: what it saw, one `name: value` line each.
fn describe(req: &Request<Incoming>, sni: &str, tls: bool) -> String {
    let h = |n: &str| {
        req.headers()
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "version: {:?}\ntls: {tls}\nsni: {sni}\nauthority: {}\nhost: {}\nte: {}\npath: {}\n",
        req.version(),
        req.uri().authority().map_or("", |a| a.as_str()),
        h("host"),
        h("te"),
        req.uri().path(),
    )
}

/// A backend on 127.0.0.1 that answers every request with [`describe`]: TLS with `pki`'s leaf
/// (ALPN h2 and http/1.1) when given, else cleartext HTTP/1.1 and h2c with prior knowledge.
async fn backend(pki: Option<&Pki>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let acceptor = pki.map(|p| p.acceptor(&[b"h2", b"http/1.1"]));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                        let svc = hyper::service::service_fn(move |req| {
                            let text = describe(&req, &sni, true);
                            async move {
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                            }
                        });
                        let _ = server.serve_connection(TokioIo::new(tls), svc).await;
                    }
                    None => {
                        let svc = hyper::service::service_fn(|req| {
                            let text = describe(&req, "", false);
                            async move {
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                            }
                        });
                        let _ = server.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    addr
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// An Opaque Secret in `default` with `ca.crt`.
fn ca_secret(name: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: Opaque\nstringData:\n  ca.crt: |\n{}",
        indent(ca_pem)
    )
}

/// `GET /x` for `host` through sluice's HTTP entrypoint, with `TE: trailers`.
async fn get(h: &Harness, host: &str) -> (u16, String) {
    use http_body_util::BodyExt as _;
    let mut send = http1_connect(h.running.http_addr).await;
    let req = Request::get("/x")
        .header("host", host)
        .header("te", "trailers")
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_grpcs_upstreams_verify_the_backend_against_the_given_ca() {
    let pki = pki(&["echo.default.svc"]);
    let addr = backend(Some(&pki)).await;
    let route = |name: &str, host: &str, annotations: &[(&str, &str)]| {
        ingress(name, host, &[("/", "Prefix", "echo", 80)], annotations)
    };
    let h = Harness::start(&[
        ("svc.yaml", service("echo", &[(addr, true)])),
        ("ca.yaml", ca_secret("upstream-ca", &pki.ca_pem)),
        // Verified against the CA, the Service's DNS name by default, no SNI (ingress-nginx's
        // default).
        (
            "https.yaml",
            route(
                "https",
                "https.test",
                &[
                    ("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"),
                    (
                        "nginx.ingress.kubernetes.io/proxy-ssl-secret",
                        "default/upstream-ca",
                    ),
                ],
            ),
        ),
        // h2 over TLS, the name given, SNI on.
        (
            "grpcs.yaml",
            route(
                "grpcs",
                "grpcs.test",
                &[
                    ("sluice.io/backend-protocol", "grpcs"),
                    ("sluice.io/proxy-ssl-secret", "upstream-ca"),
                    ("sluice.io/proxy-ssl-name", "echo.default.svc"),
                    ("sluice.io/proxy-ssl-server-name", "on"),
                ],
            ),
        ),
        // A name the certificate does not carry: refused.
        (
            "wrong.yaml",
            route(
                "wrong",
                "wrong.test",
                &[
                    ("sluice.io/backend-protocol", "https"),
                    ("sluice.io/proxy-ssl-secret", "upstream-ca"),
                    ("sluice.io/proxy-ssl-name", "other.default.svc"),
                ],
            ),
        ),
        // No proxy-ssl settings: encrypted, not verified.
        (
            "plain.yaml",
            route(
                "unverified",
                "unverified.test",
                &[("sluice.io/backend-protocol", "https")],
            ),
        ),
        // A Secret that does not exist: the route is closed, never served unverified.
        (
            "missing.yaml",
            route(
                "missing",
                "missing.test",
                &[
                    ("sluice.io/backend-protocol", "https"),
                    ("sluice.io/proxy-ssl-secret", "no-such-secret"),
                ],
            ),
        ),
    ])
    .await;

    let (status, body) = get(&h, "https.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("version: HTTP/1.1\ntls: true\nsni: \n"),
        "{body}"
    );
    assert!(body.contains("host: https.test\n"), "{body}");
    // HTTP/1.1 upstream: `TE` is hop-by-hop.
    assert!(body.contains("te: \n"), "{body}");

    let (status, body) = get(&h, "grpcs.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("version: HTTP/2.0\ntls: true\nsni: echo.default.svc\n"),
        "{body}"
    );
    // One authority: the Ingress host as `:authority`, no `host` beside it.
    assert!(body.contains("authority: grpcs.test\nhost: \n"), "{body}");
    assert!(body.contains("te: trailers\n"), "{body}");

    let (status, body) = get(&h, "wrong.test").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("TLS handshake with the upstream failed"),
        "{body}"
    );

    let (status, body) = get(&h, "unverified.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tls: true"), "{body}");

    let (status, body) = get(&h, "missing.test").await;
    assert_eq!(status, 503, "{body}");
    let (_, diags) = request(h.running.admin_addr, "GET", "admin", "/api/diagnostics")
        .await
        .expect("diagnostics");
    assert!(
        diags.contains("sluice.io/proxy-ssl-secret") && diags.contains("no-such-secret"),
        "{diags}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upstream_gets_one_authority_and_te_trailers() {
    let addr = backend(None).await;
    let h = Harness::start(&[
        ("svc.yaml", service("echo", &[(addr, true)])),
        (
            "h2c.yaml",
            ingress(
                "h2c",
                "h2c.test",
                &[("/", "Prefix", "echo", 80)],
                &[("sluice.io/backend-protocol", "h2c")],
            ),
        ),
        (
            "vhost.yaml",
            ingress(
                "vhost",
                "vhost.test",
                &[("/", "Prefix", "echo", 80)],
                &[
                    ("sluice.io/backend-protocol", "grpc"),
                    ("sluice.io/upstream-vhost", "inner.svc.local"),
                ],
            ),
        ),
    ])
    .await;
    let (status, body) = get(&h, "h2c.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("version: HTTP/2.0\ntls: false\n"), "{body}");
    assert!(body.contains("authority: h2c.test\nhost: \n"), "{body}");
    assert!(body.contains("te: trailers\n"), "{body}");
    // `upstream-vhost` is the authority.
    let (status, body) = get(&h, "vhost.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("authority: inner.svc.local\nhost: \n"),
        "{body}"
    );
}
