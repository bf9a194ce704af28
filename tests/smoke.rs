//! The smallest end-to-end check: a manifest folder, an echo backend, one request.

mod support;

use support::*;

#[tokio::test]
async fn routes_a_request_to_an_echo_backend() {
    let backend = echo([127, 0, 0, 1], "web").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend, true)])),
    ])
    .await;
    let stream = tokio::net::TcpStream::connect(h.running.http_addr)
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/hello?x=1")
        .header("host", "web.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(body.contains("GET /hello?x=1"), "{body}");
    assert!(body.contains(&format!("endpoint: {backend}")), "{body}");
    // A quiet run restarts nothing: every actor's tasks keep running.
    h.write("extra.yaml", &service("other", &[])).await;
    for name in h.running.tree.names() {
        assert_eq!(h.running.tree.restarts(&name), 0, "{name} restarted");
        assert_eq!(h.running.tree.status(&name), Some("running"), "{name}");
    }
}

/// The peer harness stops what it started: a peer (here Python's HTTP server) listens after
/// start and is gone after drop.
#[tokio::test]
async fn a_peer_starts_and_stops_with_its_handle() {
    use support::peers::{Peer, free_port, port_open, wait_for};
    let port = free_port();
    let mut peer = Peer::spawn(
        "http-server",
        "python3",
        &[
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ],
        &[],
        None,
    );
    wait_for(&mut peer, "listening", DEADLINE, || async {
        port_open(port).await.then_some(())
    })
    .await;
    drop(peer);
    let deadline = std::time::Instant::now() + DEADLINE;
    while port_open(port).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the peer still listens after drop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
