//! Clients and readers of what the echo backend printed.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BoxError;
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) async fn read_reply(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("response body before the deadline")
        .expect("response body")
        .to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Opens an HTTP/1.1 connection to `addr`.
pub(crate) async fn h1_connect<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    send
}

/// A new h2c (HTTP/2 by prior knowledge) connection to `addr`, its connection task spawned.
pub(crate) async fn h2c_connect<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// Sends one request on a new HTTP/1.1 connection and reads the whole response.
pub(crate) async fn h1_send<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut send = h1_connect(addr).await;
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .expect("response before the deadline")
        .expect("response");
    read_reply(resp).await
}

pub(crate) fn get_req(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(header::HOST, host)
        .body(Empty::new())
        .expect("request")
}

pub(crate) async fn get(h: &Harness, host: &str, path: &str) -> Reply {
    h1_send(h.running.http_addr, get_req(host, path)).await
}

/// Writes `request` on a new raw TCP connection and reads until the server closes it (or
/// resets it), failing after [`DEADLINE`].
pub(crate) async fn raw_roundtrip(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    // The server may answer (and close) before reading everything: a failed write is fine,
    // the answer is what the test checks.
    let _ = stream.write_all(request).await;
    read_until_close(&mut stream).await
}

pub(crate) async fn read_until_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_all)
        .await
        .expect("the server closes the connection before the deadline");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of every response in a raw byte stream (lines starting with `HTTP/1.`).
pub(crate) fn raw_statuses(raw: &str) -> Vec<u16> {
    raw.split("\r\n")
        .filter_map(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect()
}

/// The body of the first response in a raw byte stream.
pub(crate) fn raw_body(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A raw `GET` with `Connection: close`: (status, whole response text).
pub(crate) async fn raw_get(addr: SocketAddr, host: &str, target: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let raw = raw_roundtrip(addr, req.as_bytes()).await;
    let status = raw_statuses(&raw)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no response to {target}: {raw:?}"));
    (status, raw)
}

// ---------------------------------------------------------------------------------------------
// What the echo backend printed
// ---------------------------------------------------------------------------------------------

/// The values of header `name` as the echo backend printed them (one per received line).
pub(crate) fn echoed<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    body.lines()
        .skip(3)
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// `service: NAME` line of an echo response.
pub(crate) fn echo_service(body: &str) -> &str {
    body.lines()
        .find_map(|l| l.strip_prefix("service: "))
        .unwrap_or_else(|| panic!("not an echo response: {body:?}"))
}

/// `endpoint: ADDR` line of an echo response.
pub(crate) fn echo_endpoint(body: &str) -> &str {
    body.lines()
        .find_map(|l| l.strip_prefix("endpoint: "))
        .unwrap_or_else(|| panic!("not an echo response: {body:?}"))
}

/// The request line the echo backend received (`GET /path HTTP/1.1`).
pub(crate) fn echo_request_line(body: &str) -> &str {
    body.lines()
        .nth(2)
        .unwrap_or_else(|| panic!("not an echo response: {body:?}"))
}

pub(crate) fn services(list: &[String]) -> String {
    list.join("---\n")
}
