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
}
