//! Configuration changes while traffic flows: reloads under load, in-flight requests to removed
//! endpoints, EndpointSlice readiness, and a bad Ingress next to a good one.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use support::*;

/// Which echo service answered (`service: NAME` line of the built-in echo backend).
fn echo_service(body: &str) -> Option<&str> {
    body.lines().find_map(|l| l.strip_prefix("service: "))
}

fn a_test(service_name: &str) -> String {
    ingress(
        "a",
        "a.test",
        &[
            ("/", "Prefix", service_name, 80),
            ("/ws", "Prefix", "ws", 80),
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_lose_no_request_and_keep_connections() {
    let blue = echo([127, 0, 0, 1], "blue").await;
    let green = echo([127, 0, 0, 1], "green").await;
    let ws = upgrade_echo_backend().await;
    let services = [
        service("blue", &[(blue, true)]),
        service("green", &[(green, true)]),
        service("ws", &[(ws, true)]),
    ]
    .join("---\n");
    let h = Harness::start(&[("a.yaml", a_test("blue")), ("services.yaml", services)]).await;
    let proxy = h.running.http_addr;

    // Opened before the churn: an idle keep-alive connection with one request made, and a tunnel.
    let mut idle = http1_connect(proxy).await;
    let (status, _, body) = get_on(&mut idle, "a.test", "/idle")
        .await
        .expect("first request on the idle connection");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo_service(&body), Some("blue"));
    let mut tunnel = open_tunnel(proxy, "a.test", "/ws").await;
    echo_through(&mut tunnel, b"before the churn").await;

    // Four keep-alive clients, each about 100 requests per second.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut send = http1_connect(proxy).await;
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut failures = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                match get_on(&mut send, "a.test", &format!("/load/{c}/{n}")).await {
                    Ok((StatusCode::OK, _, body)) => match echo_service(&body) {
                        Some(s @ ("blue" | "green")) => {
                            *seen.entry(s.to_string()).or_default() += 1;
                        }
                        _ => failures.push(format!(
                            "client {c} request {n}: 200 from an unexpected backend: {body}"
                        )),
                    },
                    Ok((status, _, body)) => {
                        failures.push(format!("client {c} request {n}: {status}: {body}"));
                    }
                    Err(e) => {
                        failures.push(format!("client {c} request {n}: {e}"));
                        // The connection is gone: carry on with a new one so that the count of
                        // failures stays meaningful.
                        send = http1_connect(proxy).await;
                    }
                }
            }
            (n, seen, failures)
        }));
    }

    // The churn: every 100 ms, flip a.test/ between the two backends and add or remove an
    // unrelated Ingress; 20 rewrites over 2 s, ending on "blue".
    let reloads_before = h.running.reloads();
    let extra = h.dir.path().join("extra.yaml");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..20 {
        tick.tick().await;
        write_atomic(
            &h.dir.path().join("a.yaml"),
            &a_test(if i % 2 == 0 { "green" } else { "blue" }),
        );
        match i % 4 {
            0 => write_atomic(
                &extra,
                &ingress("extra", "extra.test", &[("/", "Prefix", "green", 80)], &[]),
            ),
            2 => std::fs::remove_file(&extra).expect("remove extra.yaml"),
            _ => {}
        }
    }
    // Wait for the final state (a.test/ -> blue, no extra.test), which only the last write
    // produces; no reload can change it afterwards.
    let proxy_state = h.running.proxy.clone();
    eventually("the last rewrite to be published", move || {
        let snap = proxy_state.snapshot();
        snap.table
            .lookup("a.test", "/")
            .is_some_and(|m| m.backend.service.name == "blue")
            && snap.table.lookup("extra.test", "/").is_none()
    })
    .await;
    let marker = h.running.reloads();
    stop.store(true, Ordering::SeqCst);

    let mut total = 0;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut failures = Vec::new();
    for c in clients {
        let (n, s, f) = tokio::time::timeout(DEADLINE, c)
            .await
            .expect("client ends")
            .expect("client task");
        total += n;
        for (k, v) in s {
            *seen.entry(k).or_default() += v;
        }
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 200, "only {total} requests were made in 2 s");
    assert!(
        seen.get("blue").copied().unwrap_or(0) > 0 && seen.get("green").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    assert!(
        marker - reloads_before >= 5,
        "the churn should have caused many reloads, got {}",
        marker - reloads_before
    );

    // The idle connection opened before the churn still works, and sees the final table.
    let (status, _, body) = get_on(&mut idle, "a.test", "/idle-again")
        .await
        .expect("the idle keep-alive connection survived the reloads");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo_service(&body), Some("blue"), "{body}");
    // The tunnel opened before the churn still echoes.
    echo_through(&mut tunnel, b"after the churn").await;
}

#[tokio::test]
async fn in_flight_request_to_removed_service_completes() {
    let held = held_backend().await;
    let h = Harness::start(&[
        (
            "ing.yaml",
            ingress("b", "b.test", &[("/", "Prefix", "hold", 80)], &[]),
        ),
        ("svc.yaml", service("hold", &[(held.addr, true)])),
    ])
    .await;
    let proxy = h.running.http_addr;
    let inflight = tokio::spawn(async move { fetch(proxy, "b.test", "/slow").await });
    let probe = held.clone();
    eventually("the backend to receive the request", || {
        probe.started() == 1
    })
    .await;

    // Remove the Service and its EndpointSlice.
    h.remove("svc.yaml").await;
    let (status, _, body) = fetch(proxy, "b.test", "/new").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        held.started(),
        1,
        "no new request reaches the removed endpoint"
    );
    assert!(
        !inflight.is_finished(),
        "the in-flight request is still held by the backend"
    );

    held.release();
    let (status, _, body) = tokio::time::timeout(DEADLINE, inflight)
        .await
        .expect("in-flight request finishes")
        .expect("client task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body.len(),
        HeldBackend::BODY_LEN,
        "the whole response body arrives"
    );
}

#[tokio::test]
async fn endpoint_readiness_flip_moves_traffic() {
    let (one, _t1) = sluice_actors::demo::spawn_echo("127.0.0.2:0".parse().unwrap(), "pair")
        .await
        .expect("echo on 127.0.0.2");
    let (two, _t2) =
        sluice_actors::demo::spawn_echo(SocketAddr::from(([127, 0, 0, 3], one.port())), "pair")
            .await
            .expect("echo on 127.0.0.3, same port");
    let h = Harness::start(&[
        (
            "ing.yaml",
            ingress("c", "c.test", &[("/", "Prefix", "pair", 80)], &[]),
        ),
        ("svc.yaml", service("pair", &[(one, true), (two, true)])),
    ])
    .await;
    let proxy = h.running.http_addr;

    let mut send = http1_connect(proxy).await;
    fn hits(endpoints: &mut HashMap<String, usize>, resp: FullResponse) {
        assert_eq!(resp.0, StatusCode::OK, "{}", resp.2);
        let ep = resp
            .1
            .get("x-echo-endpoint")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        *endpoints.entry(ep).or_default() += 1;
    }
    let mut before = HashMap::new();
    for _ in 0..20 {
        hits(
            &mut before,
            get_on(&mut send, "c.test", "/").await.expect("request"),
        );
    }
    assert_eq!(
        before.len(),
        2,
        "both ready endpoints get traffic: {before:?}"
    );

    h.write("svc.yaml", &service("pair", &[(one, true), (two, false)]))
        .await;
    let mut after = HashMap::new();
    for _ in 0..20 {
        hits(
            &mut after,
            get_on(&mut send, "c.test", "/").await.expect("request"),
        );
    }
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        [&one.to_string()],
        "only the ready endpoint gets traffic: {after:?}"
    );
}

#[tokio::test]
async fn bad_ingress_does_not_break_a_good_one_and_serves_once_fixed() {
    let backend = echo([127, 0, 0, 1], "web").await;
    let good = ingress("good", "good.test", &[("/", "Prefix", "web", 80)], &[]);
    let bad = ingress("bad", "bad.test", &[("/", "Sometimes", "web", 80)], &[]);
    let fixed = ingress("bad", "bad.test", &[("/", "Prefix", "web", 80)], &[]);
    let h = Harness::start(&[
        ("ingresses.yaml", format!("{good}---\n{bad}")),
        ("svc.yaml", service("web", &[(backend, true)])),
    ])
    .await;
    let proxy = h.running.http_addr;

    let (status, _, body) = fetch(proxy, "good.test", "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = fetch(proxy, "bad.test", "/").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the bad Ingress's only path is rejected"
    );

    h.write("ingresses.yaml", &format!("{good}---\n{fixed}"))
        .await;
    let (status, _, body) = fetch(proxy, "bad.test", "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(echo_service(&body), Some("web"));
    let (status, _, _) = fetch(proxy, "good.test", "/").await;
    assert_eq!(status, StatusCode::OK);
}
