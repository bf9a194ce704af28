//! Protocol upgrades (WebSocket-style tunnels).

use bytes::Bytes;
use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backends::*;
use crate::support::*;

#[tokio::test]
async fn a_websocket_upgrade_tunnels_both_ways() {
    let backend = hyper_backend(
        Proto::Http1Upgrades,
        handler(|mut req: Request<Incoming>| async move {
            let h = req.headers();
            let asks = h.get(header::UPGRADE).is_some_and(|v| v == "websocket")
                && h.get(header::CONNECTION).is_some_and(|v| {
                    v.to_str()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .contains("upgrade")
                })
                && h.get("sec-websocket-key").is_some();
            if !asks {
                return text(StatusCode::BAD_REQUEST, format!("not an upgrade: {h:?}"));
            }
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on.await else { return };
                let mut io = TokioIo::new(upgraded);
                if io.write_all(b"hello from backend").await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut resp = text(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
            resp.headers_mut()
                .insert(header::CONNECTION, "upgrade".parse().unwrap());
            resp.headers_mut()
                .insert(header::UPGRADE, "websocket".parse().unwrap());
            resp
        }),
    )
    .await;
    let h = harness_for(backend.addr).await;

    let mut stream = TcpStream::connect(h.running.http_addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    // Read the response head; whatever follows it already belongs to the tunnel.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(i) = find(&got, b"\r\n\r\n") {
                return i + 4;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before the upgrade answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("upgrade answer in time");
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    let mut tunnel = got[head_end..].to_vec();

    async fn read_exact_after(stream: &mut TcpStream, pending: &mut Vec<u8>, n: usize) -> Vec<u8> {
        tokio::time::timeout(DEADLINE, async {
            let mut buf = vec![0u8; 64 * 1024];
            while pending.len() < n {
                let got = stream.read(&mut buf).await.expect("tunnel read");
                assert!(got > 0, "the tunnel closed early");
                pending.extend_from_slice(&buf[..got]);
            }
        })
        .await
        .expect("tunnel data in time");
        pending.drain(..n).collect()
    }

    let greeting = read_exact_after(&mut stream, &mut tunnel, b"hello from backend".len()).await;
    assert_eq!(greeting, b"hello from backend");
    for i in 0..5 {
        let msg = format!("message {i} from the client");
        stream.write_all(msg.as_bytes()).await.unwrap();
        let back = read_exact_after(&mut stream, &mut tunnel, msg.len()).await;
        assert_eq!(back, msg.as_bytes());
    }
    let large = pattern_bytes(256 * 1024);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&large).await.unwrap();
        wr
    });
    let mut echoed_back = std::mem::take(&mut tunnel);
    tokio::time::timeout(DEADLINE, async {
        let mut buf = vec![0u8; 64 * 1024];
        while echoed_back.len() < 256 * 1024 {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "the tunnel closed early");
            echoed_back.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("large echo in time");
    assert_eq!(echoed_back, pattern_bytes(256 * 1024));
    drop(writer.await.unwrap());
}
