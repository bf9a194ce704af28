//! Annotations of other controllers through the running proxy: ingress-nginx's settings read
//! under their own names, an unimplemented protection closing its Ingress (503, nothing
//! forwarded), a snippet keeping its Ingress from being served; each reported by name.

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
async fn an_unimplemented_allow_list_answers_503_and_forwards_nothing() {
    let raw = RawBackend::start(true).await;
    let h = Harness::start(&[
        (
            "private.yaml",
            ingress(
                "private",
                "private.test",
                &[("/", "Prefix", "web", 80)],
                &[(
                    "nginx.ingress.kubernetes.io/whitelist-source-range",
                    "10.0.0.0/8",
                )],
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
            "default/private metadata.annotations[nginx.ingress.kubernetes.io/whitelist-source-range]"
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
