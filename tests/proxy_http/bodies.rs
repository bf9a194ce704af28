//! Large bodies streamed both ways.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::backends::*;
use crate::clients::*;
use crate::support::*;

const BIG: usize = 8 * 1024 * 1024;

/// Counts and checksums request bodies frame by frame; `/download` answers [`BIG`] bytes.
async fn counting_backend() -> HyperBackend {
    hyper_backend(
        Proto::Http1,
        handler(|req: Request<Incoming>| async move {
            if req.uri().path() == "/download" {
                return text(StatusCode::OK, pattern_bytes(BIG));
            }
            let mut body = req.into_body();
            let (mut n, mut sum) = (0usize, 0u64);
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            n += d.len();
                            sum = checksum(sum, d);
                        }
                    }
                    Err(e) => return text(StatusCode::BAD_REQUEST, format!("body error: {e}")),
                }
            }
            text(StatusCode::OK, format!("bytes={n} sum={sum}"))
        }),
    )
    .await
}

#[tokio::test]
async fn an_8_mib_upload_streams_through() {
    let backend = counting_backend().await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;
    let data = pattern_bytes(BIG);
    let want = format!("bytes={BIG} sum={}", checksum(0, &data));

    let req = Request::post("/upload")
        .header(header::HOST, "web.test")
        .body(Full::new(Bytes::from(data)))
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, want.as_str()),
        "with Content-Length"
    );

    let req = Request::post("/upload")
        .header(header::HOST, "web.test")
        .body(PatternBody {
            sent: 0,
            total: BIG,
        })
        .unwrap();
    let r = h1_send(h.running.http_addr, req).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, want.as_str()),
        "chunked"
    );
}

#[tokio::test]
async fn an_8_mib_download_streams_through() {
    let backend = counting_backend().await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        ("svc.yaml", service("web", &[(backend.addr, true)])),
    ])
    .await;
    let resp = h1_connect(h.running.http_addr)
        .await
        .send_request(get_req("web.test", "/download"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()),
        Some(BIG.to_string().as_str())
    );
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(body.len(), BIG);
    assert_eq!(checksum(0, &body), checksum(0, &pattern_bytes(BIG)));
}
