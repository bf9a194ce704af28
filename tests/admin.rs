//! The admin listener: health, readiness, unknown paths, and the Prometheus metrics.
//!
//! The Prometheus recorder is process-global: every test in this binary shares it, so the
//! tests take [`SERIAL`] and assert with `contains` rather than exact counts.

mod support;

use std::net::SocketAddr;

use http::StatusCode;
use support::*;

/// Serialises the tests of this binary: gauges such as `sluice_config_last_reload_success` are
/// shared by every runtime in the process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `GET path` on the admin listener: status, content type, body.
async fn admin(addr: SocketAddr, path: &str) -> (StatusCode, String, String) {
    let (status, headers, body) = fetch(addr, "admin", path).await;
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ctype, body)
}

/// The value of an unlabelled metric line `name VALUE`.
fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The first line of `metrics` for `name{...}` that has every one of `labels`.
fn series<'a>(metrics: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
}

fn tls_files(host: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: secure-tls\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.cert.pem()),
        indent(&cert.key_pair.serialize_pem())
    );
    let ingress = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: secure\n  namespace: default\nspec:\n  ingressClassName: sluice\n  tls:\n  - hosts: [{host}]\n    secretName: secure-tls\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n"
    );
    (ingress, secret)
}

#[tokio::test]
async fn health_readiness_and_unknown_paths() {
    let _serial = SERIAL.lock().await;
    let backend = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend, true)])),
    ])
    .await;
    let addr = h.running.admin_addr;
    let (status, _, body) = admin(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _, body) = admin(addr, "/readyz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "ready once the first configuration is live: {body}"
    );
    let (status, _, _) = admin(addr, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = admin(addr, "/healthz/extra").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ctype, _) = admin(addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
}

#[tokio::test]
async fn metrics_cover_requests_connections_reloads_upstreams_and_certificates() {
    let _serial = SERIAL.lock().await;
    let backend = echo([127, 0, 0, 1], "web").await;
    let (secure, secret) = tls_files("secure.test");
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        (
            "refuse.yaml",
            ingress(
                "refuse",
                "refuse.test",
                &[("/", "Prefix", "refuse", 80)],
                &[],
            ),
        ),
        ("secure.yaml", secure),
        ("secret.yaml", secret),
        (
            "svc.yaml",
            format!(
                "{}---\n{}",
                service("web", &[(backend, true)]),
                service("refuse", &[(refusing_addr(), true)])
            ),
        ),
    ])
    .await;
    let (proxy, addr) = (h.running.http_addr, h.running.admin_addr);

    let mut send = http1_connect(proxy).await;
    for _ in 0..3 {
        let (status, _, _) = get_on(&mut send, "web.test", "/m").await.expect("request");
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = fetch(proxy, "refuse.test", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);

    let (_, _, m) = admin(addr, "/metrics").await;
    let requests = series(
        &m,
        "sluice_requests_total",
        &[
            "entrypoint=\"http\"",
            "ingress=\"default/web\"",
            "service=\"default/web\"",
            "method=\"GET\"",
            "code=\"200\"",
        ],
    );
    let requests =
        requests.unwrap_or_else(|| panic!("sluice_requests_total with every label:\n{m}"));
    assert!(
        requests.ends_with(" 3"),
        "three requests counted on one series (cached handles keep counting): {requests}"
    );
    assert!(
        series(
            &m,
            "sluice_requests_total",
            &[
                "ingress=\"default/refuse\"",
                "service=\"default/refuse\"",
                "code=\"502\""
            ]
        )
        .is_some(),
        "the failed request is counted:\n{m}"
    );
    assert!(
        series(
            &m,
            "sluice_request_duration_seconds_bucket",
            &["service=\"default/web\"", "le=\""]
        )
        .is_some(),
        "request duration histogram:\n{m}"
    );
    let open = series(
        &m,
        "sluice_open_connections",
        &["entrypoint=\"http\"", "protocol=\"http\""],
    )
    .expect("sluice_open_connections");
    let open: f64 = open
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("gauge value");
    assert!(open >= 1.0, "the keep-alive connection is open: {open}");
    assert!(
        value(&m, "sluice_config_reloads_total").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "sluice_config_last_reload_success"),
        Some(1.0),
        "{m}"
    );
    assert!(
        series(
            &m,
            "sluice_upstream_connect_errors_total",
            &["service=\"default/refuse\""]
        )
        .is_some(),
        "connect errors to the refusing endpoint:\n{m}"
    );
    let not_after = series(
        &m,
        "sluice_tls_certs_not_after",
        &["secret=\"default/secure-tls\""],
    )
    .expect("certificate expiry gauge");
    let not_after: f64 = not_after
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("gauge value");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        not_after > now,
        "the certificate is still valid: not_after {not_after}, now {now}"
    );

    // A configuration error shows in sluice_config_last_reload_success, and clears when fixed.
    h.write(
        "broken.yaml",
        &ingress(
            "broken",
            "broken.test",
            &[("/", "Sometimes", "web", 80)],
            &[],
        ),
    )
    .await;
    let (_, _, m) = admin(addr, "/metrics").await;
    assert_eq!(
        value(&m, "sluice_config_last_reload_success"),
        Some(0.0),
        "{m}"
    );
    h.write(
        "broken.yaml",
        &ingress("broken", "broken.test", &[("/", "Prefix", "web", 80)], &[]),
    )
    .await;
    let (_, _, m) = admin(addr, "/metrics").await;
    assert_eq!(
        value(&m, "sluice_config_last_reload_success"),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_refusing_endpoint_answers_502() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start(&[
        (
            "refuse.yaml",
            ingress(
                "refuse",
                "refuse.test",
                &[("/", "Prefix", "refuse", 80)],
                &[],
            ),
        ),
        ("svc.yaml", service("refuse", &[(refusing_addr(), true)])),
    ])
    .await;
    // docs/annotations.md: "upstream TCP connect; timeout gets 504, refused gets 502". GET is
    // retried once on another endpoint, but there is none: the refusal must still be a 502.
    let (status, _, body) = fetch(h.running.http_addr, "refuse.test", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let (status, _, body) = fetch(h.running.http_addr, "refuse.test", "/again").await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "also while the endpoint is marked down: {body}"
    );
}
