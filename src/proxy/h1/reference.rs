//! What hyper's HTTP/1 server (configured as sluice configures it) decides for a request head
//! and a chunked body, and what hyper's HTTP/1 client reads from an upstream's answer: the
//! references the lean path's parser ([`head::parse_request`]), chunked decoder and upstream
//! client must agree with. Used by tests/h1_head.rs and the differential fuzz targets; not on
//! any serving path.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body::Body as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::head::{self, Framing, HeadError};

/// A decision about a request head, comparable between the two parsers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Served: method, target, HTTP/1.1 or not, the headers (lower-case names, in order,
    /// repeated `Content-Length` lines once), the framing.
    Accepted {
        /// The method.
        method: String,
        /// The request target.
        target: http::Uri,
        /// HTTP/1.1 (else HTTP/1.0).
        http11: bool,
        /// The headers.
        headers: Vec<(String, Vec<u8>)>,
        /// The body's framing.
        framing: Framing,
    },
    /// Refused with this status.
    Refused(u16),
    /// Both `Content-Length` and `Transfer-Encoding`: sluice refuses it (400, the prescan in
    /// front of hyper today), hyper alone serves it chunked without the length.
    Ambiguous,
    /// Neither: hyper closed the connection without answering, or did not decide in time.
    Undecided,
}

/// The decision of [`head::parse_request`] for a whole head in `raw` (bytes after the head
/// are ignored).
pub fn ours(raw: &[u8], max_head_bytes: usize) -> Decision {
    match head::parse_request(raw, max_head_bytes, &mut Vec::new()) {
        Ok(Some(h)) => {
            let mut headers = Vec::new();
            let mut seen_length = false;
            for (name, value) in &h.headers {
                let name = String::from_utf8_lossy(name.of(raw)).to_ascii_lowercase();
                if name == "content-length" {
                    if seen_length {
                        continue;
                    }
                    seen_length = true;
                }
                headers.push((name, value.of(raw).to_vec()));
            }
            Decision::Accepted {
                method: String::from_utf8_lossy(h.method.of(raw)).into_owned(),
                target: http::Uri::try_from(h.target.of(raw)).expect("checked by the parser"),
                http11: h.http11,
                headers,
                framing: h.framing,
            }
        }
        Ok(None) => Decision::Undecided,
        Err(HeadError::Ambiguous) => Decision::Ambiguous,
        Err(e) => Decision::Refused(e.status()),
    }
}

/// What hyper's server decides for `raw` sent on a connection that then half-closes, with
/// `max_buf_size` as sluice sets it. Runs on the current tokio runtime.
pub async fn hyper(raw: &[u8], max_buf_size: usize) -> Decision {
    let (mut client, server) = tokio::io::duplex(raw.len() + 64 * 1024);
    let seen: Arc<Mutex<Option<Decision>>> = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let framing = if req.body().is_end_stream() {
            Framing::Empty
        } else {
            match req.body().size_hint().exact() {
                Some(n) => Framing::Length(n),
                None => Framing::Chunked,
            }
        };
        let mut headers = Vec::new();
        for (name, value) in req.headers() {
            headers.push((name.as_str().to_string(), value.as_bytes().to_vec()));
        }
        let decision = Decision::Accepted {
            method: req.method().as_str().to_string(),
            target: req.uri().clone(),
            http11: req.version() == http::Version::HTTP_11,
            headers,
            framing,
        };
        record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(decision);
        async {
            Ok::<_, Infallible>(http::Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
        }
    });
    let conn = tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_buf_size(max_buf_size.max(8192));
        let _ = builder
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc)
            .await;
    });
    let _ = client.write_all(raw).await;
    let _ = client.shutdown().await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
    conn.abort();
    if let Some(d) = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return d;
    }
    if read.is_err() {
        return Decision::Undecided;
    }
    match answer
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|rest| std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok())
    {
        Some(status) => Decision::Refused(status),
        None => Decision::Undecided,
    }
}

/// `d` with its headers' lines of one name together, names in order of first appearance
/// (how hyper's `HeaderMap` iterates them).
fn grouped(d: Decision) -> Decision {
    let Decision::Accepted {
        method,
        target,
        http11,
        headers,
        framing,
    } = d
    else {
        return d;
    };
    let mut names: Vec<&String> = Vec::new();
    for (n, _) in &headers {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let headers = names
        .iter()
        .flat_map(|n| headers.iter().filter(move |(m, _)| m == *n).cloned())
        .collect();
    Decision::Accepted {
        method,
        target,
        http11,
        headers,
        framing,
    }
}

/// Runs `f` to its end on one current-thread runtime shared by every call (for the fuzz
/// targets, which call the async references once per input).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
    .block_on(f)
}

/// Both decisions, ours with its headers grouped as hyper's are, for comparison.
pub async fn both(raw: &[u8], max_head_bytes: usize) -> (Decision, Decision) {
    let ours = grouped(ours(raw, max_head_bytes));
    let hyper = match hyper(raw, max_head_bytes).await {
        // What sluice adds in front of hyper: a chunked request that also had a length.
        Decision::Accepted {
            framing: Framing::Chunked,
            ..
        } if ours == Decision::Ambiguous => Decision::Ambiguous,
        other => other,
    };
    (ours, hyper)
}

/// What a chunked request body decoder makes of `body` (the bytes after the head; the client
/// closes after them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyDecision {
    /// The body, decoded.
    Body(Vec<u8>),
    /// The body failed (malformed, over a limit, or cut short).
    Failed,
}

/// The decision of the lean server's chunked decoder (`server::decode_chunked_body`).
pub fn ours_chunked(body: &[u8]) -> BodyDecision {
    match super::server::decode_chunked_body(body) {
        Ok(bytes) => BodyDecision::Body(bytes),
        Err(_) => BodyDecision::Failed,
    }
}

/// What hyper's server makes of `body` as a chunked request body, read by a service that
/// collects it, the client half-closing after it. `None`: hyper did not decide in time.
pub async fn hyper_chunked(body: &[u8]) -> Option<BodyDecision> {
    let mut raw = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(body);
    let (mut client, server) = tokio::io::duplex(raw.len() + 64 * 1024);
    let seen: Arc<Mutex<Option<BodyDecision>>> = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let got = match http_body_util::BodyExt::collect(req.into_body()).await {
                Ok(c) => BodyDecision::Body(c.to_bytes().to_vec()),
                Err(_) => BodyDecision::Failed,
            };
            record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert(got);
            Ok::<_, Infallible>(http::Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
        }
    });
    let conn = tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The body is read to its end (or its failure) even though the client has closed.
        builder.half_close(true);
        let _ = builder
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc)
            .await;
    });
    let _ = client.write_all(&raw).await;
    let _ = client.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
    conn.abort();
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// What an HTTP/1.1 client makes of an upstream's answer, as the proxy would forward it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseDecision {
    /// Read whole: the status, HTTP/1.1 or not, the headers the proxy forwards (after
    /// `headers::strip_response`; lower-case names, sorted by name with each name's values
    /// in their order: the order of different names carries no meaning, RFC 9110 section
    /// 5.3, and a `HeaderMap` changes it when a field is removed), the body and the
    /// trailers.
    Read {
        /// The status code.
        status: u16,
        /// HTTP/1.1 (else HTTP/1.0).
        http11: bool,
        /// The forwarded headers.
        headers: Vec<(String, Vec<u8>)>,
        /// The body, decoded.
        body: Vec<u8>,
        /// The trailers (a chunked body's).
        trailers: Vec<(String, Vec<u8>)>,
    },
    /// The head was refused or the body failed (malformed, cut short).
    Failed,
    /// The client did not decide in time.
    Undecided,
}

/// Which client reads the answer.
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// The lean path's upstream client (`client::send`).
    Ours,
    /// hyper's HTTP/1 client connection.
    Hyper,
}

/// The decisions of the lean path's upstream client and of hyper's HTTP/1 client for `raw`,
/// the bytes an upstream writes (then closing the connection) in answer to a `method`
/// request for `/` with only a `Host`. Each client reads them on its own loopback
/// connection (127.0.0.1). Runs on the current tokio runtime.
pub async fn both_responses(
    raw: &[u8],
    method: http::Method,
) -> (ResponseDecision, ResponseDecision) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(_) => return (ResponseDecision::Undecided, ResponseDecision::Undecided),
    };
    let Ok(addr) = listener.local_addr() else {
        return (ResponseDecision::Undecided, ResponseDecision::Undecided);
    };
    let answer = bytes::Bytes::copy_from_slice(raw);
    let upstream = tokio::spawn(async move {
        // One connection per client, each answered with the same bytes after its request head.
        for _ in 0..2 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let ours = read_response(Reader::Ours, addr, method.clone()).await;
    let hyper = read_response(Reader::Hyper, addr, method).await;
    upstream.abort();
    (ours, hyper)
}

/// One client's decision for the answer at `addr` (see [`both_responses`]).
async fn read_response(
    reader: Reader,
    addr: std::net::SocketAddr,
    method: http::Method,
) -> ResponseDecision {
    use crate::proxy::body::ProxyBody;
    let req = || -> http::Request<ProxyBody> {
        let mut req = http::Request::new(crate::proxy::body::empty());
        *req.method_mut() = method.clone();
        *req.uri_mut() = http::Uri::from_static("/");
        req.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("x"));
        req
    };
    let read = async {
        match reader {
            Reader::Ours => {
                let pool = Arc::new(crate::proxy::pool::ConnPool::new(addr));
                let sent = super::client::send(
                    &pool,
                    Duration::from_secs(2),
                    Duration::from_secs(30),
                    req(),
                    None,
                    std::time::Instant::now(),
                )
                .await;
                match sent {
                    Ok(resp) => collected(resp).await,
                    Err(_) => ResponseDecision::Failed,
                }
            }
            Reader::Hyper => {
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    return ResponseDecision::Undecided;
                };
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                else {
                    return ResponseDecision::Undecided;
                };
                let conn = tokio::spawn(conn);
                let decision = match sender.send_request(req()).await {
                    Ok(resp) => collected(resp).await,
                    Err(_) => ResponseDecision::Failed,
                };
                conn.abort();
                decision
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or(ResponseDecision::Undecided)
}

/// `resp` read to its end, its headers as the proxy forwards them.
async fn collected<B>(resp: http::Response<B>) -> ResponseDecision
where
    B: http_body::Body<Data = bytes::Bytes>,
{
    let pairs = |h: &http::HeaderMap| -> Vec<(String, Vec<u8>)> {
        h.iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    let status = resp.status().as_u16();
    let http11 = resp.version() == http::Version::HTTP_11;
    let mut forwarded = resp.headers().clone();
    crate::proxy::headers::strip_response(&mut forwarded);
    let mut headers = pairs(&forwarded);
    // Stable: each name's values stay in order.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    match http_body_util::BodyExt::collect(resp.into_body()).await {
        Ok(c) => ResponseDecision::Read {
            status,
            http11,
            headers,
            trailers: c.trailers().map(pairs).unwrap_or_default(),
            body: c.to_bytes().to_vec(),
        },
        Err(_) => ResponseDecision::Failed,
    }
}
