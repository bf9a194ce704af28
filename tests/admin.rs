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

/// Three Ingresses (`a.test`, `b.test`, `c.test`) on one echo backend.
async fn three_hosts() -> Vec<(&'static str, String)> {
    let backend = echo([127, 0, 0, 1], "web").await;
    let mut files: Vec<(&'static str, String)> = [
        ("a.yaml", "a", "a.test"),
        ("b.yaml", "b", "b.test"),
        ("c.yaml", "c", "c.test"),
    ]
    .into_iter()
    .map(|(file, name, host)| {
        (
            file,
            ingress(name, host, &[("/", "Prefix", "web", 80)], &[]),
        )
    })
    .collect();
    files.push(("svc.yaml", service("web", &[(backend, true)])));
    files
}

#[tokio::test]
async fn the_metrics_listener_serves_probes_and_metrics_only() {
    let _serial = SERIAL.lock().await;
    let files = three_hosts().await;
    // Chaos on: even then the metrics listener has no /debug routes.
    let h = Harness::start_options(&files, |opts| opts.chaos = true).await;
    let metrics = h.running.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics, h.running.admin_addr);

    let (status, _, body) = admin(metrics, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _, body) = admin(metrics, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    let (status, ctype, body) = admin(metrics, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(
        value(&body, "sluice_config_reloads_total").is_some_and(|n| n >= 1.0),
        "the registry's metrics:\n{body}"
    );

    for path in [
        "/api/routes",
        "/api/actors",
        "/api/diagnostics",
        "/api/certificates",
        "/debug/crash/router",
        "/",
    ] {
        let (status, body) = request(metrics, "GET", "metrics", path)
            .await
            .expect("request");
        assert_eq!(status, 404, "GET {path} on the metrics listener: {body}");
        assert!(body.contains("serves only /metrics"), "{body}");
    }
    let (status, _) = request(metrics, "POST", "metrics", "/debug/crash/router")
        .await
        .expect("request");
    assert_eq!(status, 404, "no chaos on the metrics listener");
    assert_eq!(h.running.tree.restarts("router"), 0);
    let (status, _) = request(metrics, "HEAD", "metrics", "/metrics")
        .await
        .expect("request");
    assert_eq!(status, 404, "GET only");

    // The admin listener serves the API, and lists the metrics actor under `listeners`.
    let (status, body) = request(h.running.admin_addr, "GET", "admin", "/api/actors")
        .await
        .expect("request");
    assert_eq!(status, 200);
    let actors: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let entry = actors
        .as_array()
        .expect("a list")
        .iter()
        .find(|a| a["name"] == "metrics")
        .unwrap_or_else(|| panic!("the metrics actor is listed: {body}"));
    assert_eq!(entry["supervisor"], "listeners", "{entry}");
    assert_eq!(entry["status"], "running", "{entry}");
}

/// `GET /api/routes?{query}` on the admin listener: status and the parsed document (`Null`
/// when the body is not JSON).
async fn routes_page(admin: SocketAddr, query: &str) -> (u16, serde_json::Value) {
    let (status, body) = request(admin, "GET", "admin", &format!("/api/routes?{query}"))
        .await
        .expect("request");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

fn hosts(page: &serde_json::Value) -> Vec<String> {
    page["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("a routes list: {page}"))
        .iter()
        .map(|r| r["host"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn admin_routes_are_paged_and_filtered() {
    let _serial = SERIAL.lock().await;
    let files = three_hosts().await;
    let h = Harness::start(&files).await;
    let addr = h.running.admin_addr;

    let (status, all) = routes_page(addr, "").await;
    assert_eq!(status, 200);
    assert_eq!(hosts(&all), ["a.test", "b.test", "c.test"], "{all}");
    assert!(all["continue"].is_null(), "{all}");
    let route = &all["routes"][0];
    assert_eq!(route["ingress"], "default/a", "{route}");
    assert_eq!(route["field"], "spec.rules[0].http.paths[0]", "{route}");
    assert_eq!(route["endpoints"][0]["ready"], true, "{route}");

    // Two pages of two.
    let (status, first) = routes_page(addr, "limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(hosts(&first), ["a.test", "b.test"]);
    let token = first["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    let (status, second) = routes_page(addr, &format!("limit=2&continue={token}")).await;
    assert_eq!(status, 200);
    assert_eq!(hosts(&second), ["c.test"]);
    assert!(second["continue"].is_null(), "the last page: {second}");

    // One host.
    let (status, b) = routes_page(addr, "host=B.test").await;
    assert_eq!(status, 200);
    assert_eq!(hosts(&b), ["b.test"]);

    // A bad query, and a token of a table that has changed since.
    assert_eq!(routes_page(addr, "limit=0").await.0, 400);
    h.write(
        "b.yaml",
        &ingress("b", "b2.test", &[("/", "Prefix", "web", 80)], &[]),
    )
    .await;
    assert_eq!(
        routes_page(addr, &format!("limit=2&continue={token}"))
            .await
            .0,
        410
    );
}

/// Reads from `stream` until the server closes it, failing after [`DEADLINE`].
async fn closed_by_server(stream: &mut tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt as _;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_))),
        "{what}: the server closes the connection: {closed:?}"
    );
}

#[tokio::test]
async fn admin_and_metrics_listeners_close_silent_and_idle_connections() {
    use tokio::io::AsyncWriteExt as _;
    let _serial = SERIAL.lock().await;
    let files = three_hosts().await;
    let proxy = sluice::proxy::ProxyConfig {
        client_header_timeout: std::time::Duration::from_secs(1),
        idle_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let h = Harness::start_with(&files, proxy).await;
    let metrics = h.running.metrics_addr.expect("a metrics listener");
    for (what, addr) in [("admin", h.running.admin_addr), ("metrics", metrics)] {
        // Sends nothing.
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Half a request head.
        let mut partial = tokio::net::TcpStream::connect(addr).await.expect("connect");
        partial
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        // One request, then idle keep-alive.
        let mut send = http1_connect(addr).await;
        let (status, _, _) = get_on(&mut send, "x", "/healthz").await.expect("request");
        assert_eq!(status, StatusCode::OK);

        closed_by_server(&mut silent, &format!("{what}: a silent connection")).await;
        closed_by_server(&mut partial, &format!("{what}: a partial request head")).await;
        eventually(
            &format!("{what}: the idle keep-alive connection to close"),
            || send.is_closed(),
        )
        .await;
    }
}
