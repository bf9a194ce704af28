//! Standalone last-known-good: a live manifest file that stops parsing, or is caught
//! half-written, keeps serving its last good objects.
//!
//! One test runs both cases in turn: the reload gauge is process-wide, and another instance
//! reloading at the same time would set it.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::*;

/// Which echo service answered.
fn echo_service(body: &str) -> Option<&str> {
    body.lines().find_map(|l| l.strip_prefix("service: "))
}

#[tokio::test]
async fn last_known_good_manifests() {
    a_typo_in_a_live_file_keeps_its_old_routes_and_is_reported().await;
    a_half_written_file_is_not_applied().await;
}

/// Polls `path` on the admin endpoint until its body satisfies `accept`; fails after the
/// deadline. Returns the body.
async fn admin_until(h: &Harness, path: &str, what: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, _, body) = fetch(h.running.admin_addr, "admin", path).await;
        if accept(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last {path}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn a_typo_in_a_live_file_keeps_its_old_routes_and_is_reported() {
    let web = echo([127, 0, 0, 1], "web").await;
    let good = ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]);
    let h = Harness::start(&[
        ("web.yaml", good.clone()),
        ("svc.yaml", service("web", &[(web, true)])),
    ])
    .await;
    assert_eq!(fetch(h.running.http_addr, "web.test", "/").await.0, 200);

    // `secretName` mis-indented under a TLS entry: the file no longer parses.
    let typo = good.replace(
        "spec:\n",
        "spec:\n  tls:\n  - hosts: [web.test]\n   secretName: web-tls\n",
    );
    h.write("web.yaml", &typo).await;
    let diagnostics = admin_until(&h, "/api/diagnostics", "the parse error", |b| {
        b.contains("web.yaml") && b.contains("serving the last version of this file")
    })
    .await;
    assert!(diagnostics.contains("ParseError"), "{diagnostics}");
    let (status, _, body) = fetch(h.running.http_addr, "web.test", "/").await;
    assert_eq!(
        (status, echo_service(&body)),
        (StatusCode::OK, Some("web")),
        "the old routes still serve"
    );
    let metrics = admin_until(&h, "/metrics", "the reload gauge at 0", |m| {
        gauge(m, "sluice_config_last_reload_successful") == Some(0.0)
    })
    .await;
    assert!(
        metrics.contains("sluice_config_last_reload_successful 0"),
        "{metrics}"
    );

    // Fixed (and changed): applied, the gauge back at 1, no diagnostic left.
    let fixed = ingress("web", "web.test", &[("/v2", "Prefix", "web", 80)], &[]);
    h.write("web.yaml", &fixed).await;
    admin_until(&h, "/metrics", "the reload gauge at 1", |m| {
        gauge(m, "sluice_config_last_reload_successful") == Some(1.0)
    })
    .await;
    admin_until(&h, "/api/diagnostics", "no diagnostics", |b| {
        b.trim() == "[]"
    })
    .await;
    assert_eq!(fetch(h.running.http_addr, "web.test", "/").await.0, 404);
    assert_eq!(fetch(h.running.http_addr, "web.test", "/v2").await.0, 200);
    h.running.shutdown(Duration::from_secs(1)).await;
}

async fn a_half_written_file_is_not_applied() {
    let web = echo([127, 0, 0, 1], "web").await;
    let web2 = echo([127, 0, 0, 1], "web2").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yaml");
    let good = ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]);
    std::fs::write(&path, &good).unwrap();
    std::fs::write(
        dir.path().join("svc.yaml"),
        [
            service("web", &[(web, true)]),
            service("web2", &[(web2, true)]),
        ]
        .join("---\n"),
    )
    .unwrap();
    // A long debounce: the second read of a suspicious file comes 3 s after the first.
    let mut opts = sluice_actors::run::RunOptions::new(dir.path());
    opts.debounce = Duration::from_secs(3);
    let running = sluice_actors::run::start(opts)
        .await
        .expect("sluice starts");
    running.wait_reload(0, DEADLINE).await.unwrap();
    assert_eq!(fetch(running.http_addr, "web.test", "/").await.0, 200);

    // Written in place and cut short mid-line: what arrived so far is a valid Ingress for
    // web.test without paths, which would answer 404 if applied.
    let cut_at = good.find("    http:").expect("the rule's http");
    let seen = running.reloads();
    std::fs::write(&path, good[..cut_at].trim_end()).unwrap();
    running.wait_reload(seen, DEADLINE).await.unwrap();
    let (status, _, body) = fetch(running.http_addr, "web.test", "/").await;
    assert_eq!(
        (status, echo_service(&body)),
        (StatusCode::OK, Some("web")),
        "the half-written file was applied"
    );

    // The rest arrives (now pointing at web2): applied.
    std::fs::write(&path, good.replace("name: web\n", "name: web2\n")).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, _, body) = fetch(running.http_addr, "web.test", "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if echo_service(&body) == Some("web2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the complete file was not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown(Duration::from_secs(1)).await;
}
