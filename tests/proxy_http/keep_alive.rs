//! Client keep-alive and upstream connection reuse.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let backend = hyper_backend(
        Proto::Http1,
        handler(|req: Request<Incoming>| async move {
            text(StatusCode::OK, req.uri().path().to_string())
        }),
    )
    .await;
    let h = harness_for(backend.addr).await;
    let mut send = h1_connect::<Empty<Bytes>>(h.running.http_addr).await;
    for i in 0..10 {
        tokio::time::timeout(DEADLINE, send.ready())
            .await
            .unwrap()
            .expect("the connection stays open");
        let resp = send
            .send_request(get_req("web.test", &format!("/req/{i}")))
            .await
            .expect("response on the same connection");
        let r = read_reply(resp).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, format!("/req/{i}").as_str())
        );
        assert_eq!(h.running.open_connections(), 1, "one client connection");
    }
    // Upstream connections are pooled too.
    let upstream = backend.accepted.load(Ordering::SeqCst);
    assert!(
        upstream < 10,
        "{upstream} upstream connections for 10 sequential requests"
    );
}
