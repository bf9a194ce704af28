//! Annotations of other controllers through the running proxy: ingress-nginx's settings read
//! under their own names, source ranges (with and without trusted proxies), external
//! authentication (allowed, refused, sign-in redirect, service down), rate limits,
//! redirects, CORS, an unimplemented
//! protection closing its Ingress (503, nothing forwarded), a snippet keeping its Ingress from
//! being served; each reported by name.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use serde_json::Value;

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

/// The `/api/diagnostics` entries of `reason`, as `object field`.
async fn diagnostics(h: &Harness, reason: &str) -> Vec<String> {
    let (status, body) = request(h.running.admin_addr, "GET", "admin", "/api/diagnostics")
        .await
        .expect("admin answers");
    assert_eq!(status, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|d| d["reason"] == reason)
        .map(|d| {
            format!(
                "{} {}",
                d["object"].as_str().unwrap(),
                d["field"].as_str().unwrap()
            )
        })
        .collect()
}

fn post(host: &str, len: usize) -> Request<Full<Bytes>> {
    Request::post("/upload")
        .header(header::HOST, host)
        .body(Full::new(Bytes::from(vec![b'x'; len])))
        .unwrap()
}

#[tokio::test]
async fn an_unimplemented_client_certificate_check_answers_503_and_forwards_nothing() {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "private.yaml",
            ingress(
                "private",
                "private.test",
                &[("/", "Prefix", "web", 80)],
                &[("nginx.ingress.kubernetes.io/auth-tls-verify-client", "on")],
            ),
        ),
        (
            "public.yaml",
            ingress("public", "public.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;
    let r = get(&h, "private.test", "/secret").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.body,
        "service unavailable: this route is closed until its configuration is fixed\n"
    );
    assert_eq!(
        raw.with(|l| l.requests.len()),
        0,
        "nothing reached the backend"
    );
    // The other Ingress on the same Service keeps serving.
    let r = get(&h, "public.test", "/").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
    assert_eq!(raw.with(|l| l.requests.len()), 1);
    assert_eq!(
        diagnostics(&h, "UnsupportedAnnotation").await,
        [
            "default/private metadata.annotations[nginx.ingress.kubernetes.io/auth-tls-verify-client]"
        ]
    );
    let (_, metrics) = request(h.running.admin_addr, "GET", "admin", "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("sluice_proxy_errors_total{entrypoint=\"http\",reason=\"closed\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_ingress_with_a_snippet_is_not_served() {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "snippet.yaml",
            ingress(
                "snippet",
                "snippet.test",
                &[("/", "Prefix", "web", 80)],
                &[(
                    "nginx.ingress.kubernetes.io/server-snippet",
                    "location /x { return 200; }",
                )],
            ),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;
    let r = get(&h, "snippet.test", "/").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(raw.with(|l| l.requests.len()), 0);
    assert_eq!(
        diagnostics(&h, "SnippetRejected").await,
        ["default/snippet metadata.annotations[nginx.ingress.kubernetes.io/server-snippet]"]
    );
}

#[tokio::test]
async fn ingress_nginx_body_sizes_apply_with_its_1m_default() {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "sized.yaml",
            ingress(
                "sized",
                "sized.test",
                &[("/", "Prefix", "web", 80)],
                &[("nginx.ingress.kubernetes.io/proxy-body-size", "2k")],
            ),
        ),
        (
            "nginx.yaml",
            ingress(
                "nginx",
                "nginx.test",
                &[("/", "Prefix", "web", 80)],
                &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
            ),
        ),
        (
            "plain.yaml",
            ingress("plain", "plain.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;
    let addr = h.running.http_addr;
    assert_eq!(h1_send(addr, post("sized.test", 2048)).await.status, 200);
    assert_eq!(h1_send(addr, post("sized.test", 2049)).await.status, 413);
    // An Ingress written for ingress-nginx without a body size: nginx's 1m.
    assert_eq!(h1_send(addr, post("nginx.test", 1 << 20)).await.status, 200);
    assert_eq!(
        h1_send(addr, post("nginx.test", (1 << 20) + 1))
            .await
            .status,
        413
    );
    // Otherwise unlimited, as before.
    assert_eq!(h1_send(addr, post("plain.test", 2 << 20)).await.status, 200);
    assert!(diagnostics(&h, "InvalidAnnotation").await.is_empty());
}

/// A GET with `X-Forwarded-For`.
fn forwarded_get(host: &str, xff: &str) -> Request<http_body_util::Empty<Bytes>> {
    let mut req = get_req(host, "/");
    req.headers_mut()
        .insert("x-forwarded-for", xff.parse().unwrap());
    req
}

#[tokio::test]
async fn source_ranges_admit_and_refuse_by_client_address() {
    let raw = RawBackend::start(true).await;
    let ranged = |name: &str, key: &str, value: &str| {
        (
            format!("{name}.yaml"),
            ingress(
                name,
                &format!("{name}.test"),
                &[("/", "Prefix", "web", 80)],
                &[(key, value)],
            ),
        )
    };
    let files = [
        ranged(
            "loopback",
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "127.0.0.0/8",
        ),
        ranged(
            "office",
            "nginx.ingress.kubernetes.io/allowlist-source-range",
            "10.0.0.0/8",
        ),
        ranged(
            "denied",
            "nginx.ingress.kubernetes.io/denylist-source-range",
            "127.0.0.1",
        ),
        ranged("broken", "sluice.io/allow-source-range", "10.0.0.0/99"),
        ("svc.yaml".to_string(), service("web", &[(raw.addr, true)])),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(n, y)| (n.as_str(), y.clone())).collect();
    let h = Harness::start(&files).await;
    let addr = h.running.http_addr;
    assert_eq!(get(&h, "loopback.test", "/").await.status, 200);
    let r = get(&h, "office.test", "/").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (403, "forbidden\n"));
    assert_eq!(get(&h, "denied.test", "/").await.status, 403);
    assert_eq!(
        get(&h, "broken.test", "/").await.status,
        503,
        "fails closed"
    );
    // No trusted proxies: a client cannot claim another address.
    let r = h1_send(addr, forwarded_get("office.test", "10.1.2.3")).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        raw.with(|l| l.requests.len()),
        1,
        "only the admitted request"
    );
    assert_eq!(
        diagnostics(&h, "InvalidAnnotation").await,
        ["default/broken metadata.annotations[sluice.io/allow-source-range]"]
    );

    // Behind a trusted proxy (the loopback peer): the right-most untrusted address counts.
    let h = Harness::start_options(&files, |o| {
        o.proxy.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let addr = h.running.http_addr;
    let r = h1_send(addr, forwarded_get("office.test", "10.1.2.3")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = h1_send(addr, forwarded_get("office.test", "10.1.2.3, 203.0.113.9")).await;
    assert_eq!(r.status, 403, "the client is the last untrusted hop");
    let r = h1_send(addr, forwarded_get("office.test", "garbage")).await;
    assert_eq!(r.status, 403, "an unknown client is refused");
    let r = h1_send(addr, forwarded_get("loopback.test", "203.0.113.9")).await;
    assert_eq!(r.status, 403);
}

/// An authentication service: `Bearer good` is alice (200 with `X-Auth-Request-User`),
/// `Bearer banned` is 403, `Bearer broken` is 500, anything else 401 with a challenge. Records
/// the headers of every request it gets.
async fn auth_service() -> (
    SocketAddr,
    Arc<Mutex<Vec<(http::Method, http::HeaderMap, String)>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let backend = hyper_backend(
        Proto::Http1,
        handler(move |req: Request<hyper::body::Incoming>| {
            let log = log.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = http_body_util::BodyExt::collect(body)
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
                let auth = parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                log.lock()
                    .unwrap()
                    .push((parts.method.clone(), parts.headers.clone(), body));
                match auth.as_str() {
                    "Bearer good" => {
                        let mut r = text(http::StatusCode::OK, "");
                        r.headers_mut()
                            .insert("x-auth-request-user", "alice".parse().unwrap());
                        r.headers_mut()
                            .insert("x-not-listed", "secret".parse().unwrap());
                        r
                    }
                    "Bearer banned" => text(http::StatusCode::FORBIDDEN, "no"),
                    "Bearer broken" => text(http::StatusCode::INTERNAL_SERVER_ERROR, "oops"),
                    _ => {
                        let mut r = text(http::StatusCode::UNAUTHORIZED, "who?");
                        r.headers_mut()
                            .insert("www-authenticate", "Bearer realm=\"test\"".parse().unwrap());
                        r
                    }
                }
            }
        }),
    )
    .await;
    (backend.addr, seen)
}

/// A request to `host` with `Authorization: Bearer <token>` (none when empty) and a
/// client-supplied `X-Auth-Request-User`.
fn bearer(host: &str, path: &str, token: &str) -> Request<http_body_util::Empty<Bytes>> {
    let mut req = get_req(host, path);
    if !token.is_empty() {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req.headers_mut()
        .insert("x-auth-request-user", "mallory".parse().unwrap());
    req
}

#[tokio::test]
async fn external_authentication_decides_before_anything_is_forwarded() {
    let (auth, seen) = auth_service().await;
    let echo = echo([127, 0, 0, 1], "app").await;
    let url = format!("http://{auth}/check");
    let app = |name: &str, extra: &[(&'static str, &'static str)]| {
        let mut ann = vec![
            ("nginx.ingress.kubernetes.io/auth-url", url.as_str()),
            (
                "nginx.ingress.kubernetes.io/auth-response-headers",
                "X-Auth-Request-User",
            ),
        ];
        ann.extend_from_slice(extra);
        ingress(
            name,
            &format!("{name}.test"),
            &[("/", "Prefix", "app", 80)],
            &ann,
        )
    };
    let h = Harness::start(&[
        ("plain.yaml", app("plain", &[])),
        (
            "signin.yaml",
            app(
                "signin",
                &[(
                    "nginx.ingress.kubernetes.io/auth-signin",
                    "https://login.test/start",
                )],
            ),
        ),
        (
            "down.yaml",
            ingress(
                "down",
                "down.test",
                &[("/", "Prefix", "app", 80)],
                &[("sluice.io/auth-url", "http://127.0.0.1:9/check")],
            ),
        ),
        ("svc.yaml", service("app", &[(echo, true)])),
    ])
    .await;
    let addr = h.running.http_addr;

    // Allowed: forwarded with the listed answer header, the client's own value replaced.
    let r = h1_send(addr, bearer("plain.test", "/docs?page=2", "good")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.body.to_ascii_lowercase();
    assert!(body.contains("x-auth-request-user: alice"), "{body}");
    assert!(!body.contains("mallory"), "{body}");
    assert!(!body.contains("x-not-listed"), "{body}");
    {
        let seen = seen.lock().unwrap();
        let (method, headers, body) = seen.last().unwrap();
        assert_eq!(method, http::Method::GET);
        assert!(body.is_empty());
        assert_eq!(headers["x-original-url"], "http://plain.test/docs?page=2");
        assert_eq!(headers["x-original-method"], "GET");
        assert_eq!(headers["x-auth-request-redirect"], "/docs?page=2");
        assert_eq!(headers["x-forwarded-host"], "plain.test");
        assert_eq!(headers["authorization"], "Bearer good");
    }

    // Refused: the service's answer, and nothing forwarded.
    let r = h1_send(addr, bearer("plain.test", "/", "")).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (401, "unauthorized\n")
    );
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"test\""));
    let r = h1_send(addr, bearer("plain.test", "/", "banned")).await;
    assert_eq!(r.status, 403);
    let r = h1_send(addr, bearer("plain.test", "/", "broken")).await;
    assert_eq!(
        r.status, 500,
        "a failing service never lets a request through"
    );

    // With a sign-in page, 401 becomes a redirect carrying the original URL.
    let r = h1_send(addr, bearer("signin.test", "/a?b=c", "")).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://login.test/start?rd=http%3A%2F%2Fsignin.test%2Fa%3Fb%3Dc")
    );

    // The service cannot be reached: 500, counted.
    let r = h1_send(addr, bearer("down.test", "/", "good")).await;
    assert_eq!(r.status, 500, "{}", r.body);
    let (_, metrics) = request(h.running.admin_addr, "GET", "admin", "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("sluice_proxy_errors_total{entrypoint=\"http\",reason=\"auth_error\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(diagnostics(&h, "UnsupportedAnnotation").await.is_empty());
    assert!(diagnostics(&h, "InvalidAnnotation").await.is_empty());
}

#[tokio::test]
async fn an_authentication_url_sluice_cannot_call_fails_closed() {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "tls.yaml",
            ingress(
                "tls",
                "tls.test",
                &[("/", "Prefix", "web", 80)],
                &[(
                    "nginx.ingress.kubernetes.io/auth-url",
                    "https://$host/oauth2/auth",
                )],
            ),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;
    let r = get(&h, "tls.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(raw.with(|l| l.requests.len()), 0);
    assert_eq!(
        diagnostics(&h, "InvalidAnnotation").await,
        ["default/tls metadata.annotations[nginx.ingress.kubernetes.io/auth-url]"]
    );
}

#[tokio::test]
async fn a_rate_limit_refuses_a_client_over_its_budget_and_spares_exempt_ones() {
    let raw = RawBackend::start(true).await;
    let limited = |name: &str, extra: &[(&'static str, &'static str)]| {
        // One request a minute, no burst: a second request within the minute is refused
        // however slow the machine is.
        let mut ann = vec![
            ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "1"),
        ];
        ann.extend_from_slice(extra);
        ingress(
            name,
            &format!("{name}.test"),
            &[("/", "Prefix", "web", 80), ("/other", "Prefix", "web", 80)],
            &ann,
        )
    };
    let h = Harness::start(&[
        ("limited.yaml", limited("limited", &[])),
        (
            "exempt.yaml",
            limited(
                "exempt",
                &[("nginx.ingress.kubernetes.io/limit-whitelist", "127.0.0.0/8")],
            ),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;
    assert_eq!(get(&h, "limited.test", "/").await.status, 200);
    // The Ingress's routes share the budget.
    let r = get(&h, "limited.test", "/other").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "service unavailable: too many requests\n")
    );
    assert_eq!(
        raw.with(|l| l.requests.len()),
        1,
        "the refused one is not forwarded"
    );
    for _ in 0..5 {
        assert_eq!(get(&h, "exempt.test", "/").await.status, 200);
    }
    let (_, metrics) = request(h.running.admin_addr, "GET", "admin", "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("sluice_proxy_errors_total{entrypoint=\"http\",reason=\"rate_limited\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(diagnostics(&h, "UnsupportedAnnotation").await.is_empty());
}

#[tokio::test]
async fn redirects_app_root_and_forced_https() {
    let raw = RawBackend::start(true).await;
    let app = |name: &str, ann: &[(&str, &str)]| {
        (
            format!("{name}.yaml"),
            ingress(
                name,
                &format!("{name}.test"),
                &[("/", "Prefix", "web", 80)],
                ann,
            ),
        )
    };
    let files = [
        app(
            "moved",
            &[
                (
                    "nginx.ingress.kubernetes.io/permanent-redirect",
                    "https://new.test$request_uri",
                ),
                ("nginx.ingress.kubernetes.io/permanent-redirect-code", "308"),
            ],
        ),
        app(
            "away",
            &[(
                "nginx.ingress.kubernetes.io/temporal-redirect",
                "https://maintenance.test/",
            )],
        ),
        app(
            "rooted",
            &[("nginx.ingress.kubernetes.io/app-root", "/app1")],
        ),
        app(
            "forced",
            &[("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")],
        ),
        ("svc.yaml".to_string(), service("web", &[(raw.addr, true)])),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(n, y)| (n.as_str(), y.clone())).collect();
    let h = Harness::start(&files).await;
    let r = get(&h, "moved.test", "/a/b?c=d").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://new.test/a/b?c=d"));
    let r = get(&h, "away.test", "/anything").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://maintenance.test/"));
    let r = get(&h, "rooted.test", "/").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://rooted.test/app1"));
    assert_eq!(get(&h, "rooted.test", "/app1").await.status, 200);
    // No TLS for the host, yet plain HTTP goes to HTTPS.
    let r = get(&h, "forced.test", "/x").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://forced.test/x"));
    assert_eq!(
        raw.with(|l| l.requests.len()),
        1,
        "only /app1 was forwarded"
    );
    assert!(diagnostics(&h, "InvalidAnnotation").await.is_empty());
    assert!(diagnostics(&h, "UnsupportedAnnotation").await.is_empty());
}

#[tokio::test]
async fn cors_preflights_are_answered_and_responses_carry_the_headers() {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "api.yaml",
            ingress(
                "api",
                "api.test",
                &[("/", "Prefix", "web", 80)],
                &[
                    ("nginx.ingress.kubernetes.io/enable-cors", "true"),
                    (
                        "nginx.ingress.kubernetes.io/cors-allow-origin",
                        "https://app.test, https://*.example.org",
                    ),
                    ("nginx.ingress.kubernetes.io/cors-max-age", "600"),
                ],
            ),
        ),
        ("svc.yaml", service("web", &[(raw.addr, true)])),
    ])
    .await;
    let addr = h.running.http_addr;
    let with_origin = |method: http::Method, origin: &str| {
        Request::builder()
            .method(method)
            .uri("/items")
            .header(header::HOST, "api.test")
            .header(header::ORIGIN, origin)
            .header("access-control-request-method", "PUT")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    // A preflight from an allowed origin: answered here.
    let r = h1_send(addr, with_origin(http::Method::OPTIONS, "https://app.test")).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(raw.with(|l| l.requests.len()), 0);
    // A request from a wildcard-allowed origin: forwarded, answered with the headers.
    let r = h1_send(
        addr,
        with_origin(http::Method::GET, "https://x.example.org"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://x.example.org")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    // Another origin: no CORS headers, and its OPTIONS goes to the upstream.
    let r = h1_send(addr, with_origin(http::Method::GET, "https://evil.test")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = h1_send(
        addr,
        with_origin(http::Method::OPTIONS, "https://evil.test"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(raw.with(|l| l.requests.len()), 3);
}

#[tokio::test]
async fn upstream_vhost_and_forwarded_prefix_reach_the_upstream() {
    let echo = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[("/", "Prefix", "web", 80)],
                &[
                    (
                        "nginx.ingress.kubernetes.io/upstream-vhost",
                        "internal.test",
                    ),
                    ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/shop"),
                ],
            ),
        ),
        ("svc.yaml", service("web", &[(echo, true)])),
    ])
    .await;
    let mut req = get_req("web.test", "/");
    // A client's own prefix is never forwarded; the annotation's is.
    req.headers_mut()
        .insert("x-forwarded-prefix", "/evil".parse().unwrap());
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(r.status, 200);
    let body = r.body.to_ascii_lowercase();
    assert!(body.contains("host: internal.test\n"), "{body}");
    assert!(body.contains("x-forwarded-prefix: /shop\n"), "{body}");
    assert!(!body.contains("/evil"), "{body}");
    assert!(body.contains("x-forwarded-host: web.test\n"), "{body}");
}

#[tokio::test]
async fn strip_prefix_removes_the_matched_path() {
    let web = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "api.yaml",
            ingress(
                "api",
                "api.test",
                &[
                    ("/api", "Prefix", "web", 80),
                    ("/health", "Exact", "web", 80),
                    ("/", "Prefix", "web", 80),
                ],
                &[("sluice.io/strip-prefix", "true")],
            ),
        ),
        ("svc.yaml", service("web", &[(web, true)])),
    ])
    .await;
    for (path, upstream, prefix) in [
        ("/api/users?id=1", "/users?id=1", Some("/api")),
        ("/api", "/", Some("/api")),
        ("/api/", "/", Some("/api")),
        ("/health", "/", Some("/health")),
        ("/other/x", "/other/x", None),
    ] {
        let r = get(&h, "api.test", path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            echo_request_line(&r.body),
            format!("GET {upstream} HTTP/1.1"),
            "{path}"
        );
        assert_eq!(
            echoed(&r.body, "x-forwarded-prefix").first().copied(),
            prefix,
            "{path}"
        );
    }
}
