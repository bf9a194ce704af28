//! sluice's own HTTP/1.1 upstream client (the lean path's other half): the exchange runs in
//! the request's own task, on a pooled plain-TCP connection ([`ConnPool`]), with no
//! connection task, no channel hand-off and no buffer held while the connection idles.
//!
//! The request goes out with hyper's client framing rules ([`encode_head`]): no body when the
//! body is already at its end, `Content-Length` when the request or the body's exact size
//! says it, otherwise chunked (no body at all for a GET, HEAD or CONNECT of unknown length).
//! Request trailers are not sent (sluice's server reads and drops them).
//!
//! While the request body streams, the response head is read: an upstream that answers
//! early (a 413 for an upload, say) is answered at once, the rest of the body is not sent and
//! the connection is not reused. Interim 1xx responses are skipped, as hyper's client does.
//!
//! The response is framed as hyper's client frames it (RFC 9112 section 6.3): no body for
//! HEAD, 204 and 304; chunked when `Transfer-Encoding` ends in `chunked` (kept trailers go on
//! as a trailers frame); close-delimited for another `Transfer-Encoding` or neither header;
//! `Content-Length` otherwise, where differing or invalid values are a protocol error, as is
//! `Transfer-Encoding` on an HTTP/1.0 response and a head over hyper's size limit.
//!
//! The connection goes back to its endpoint's pool when the response body ends cleanly, the
//! response allowed keep-alive and the upstream sent nothing more; its read buffer goes to the
//! thread's spares then (`spare`), and the next response read on the thread takes it. A
//! pooled connection is checked before reuse (a closed socket, or bytes the upstream sent
//! while it idled, close it). An idempotent request without a body whose reused
//! connection ends before any response byte (the upstream closed it as it was taken) is sent
//! again on a new connection (RFC 9112 section 9.3.1).
//!
//! Requests that ask for an upgrade, and TLS upstreams, stay on hyper's client.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

use super::BodyError;
use super::head::Length;
use super::server::Chunked;
use crate::proxy::body::{BoxError, ProxyBody};
use crate::proxy::error::ProxyError;
use crate::proxy::headers::Added;
use crate::proxy::pool::ConnPool;

use super::spare::READ;

/// The largest response head (hyper's client limit: its default read buffer limit).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The most header lines in a response head (hyper's default).
const MAX_HEADERS: usize = 100;

/// Header lines of a response head whose byte ranges are kept on the stack while it is
/// parsed (see `parse_head`); the rest go to a vector.
const INLINE_RANGES: usize = 24;
/// Request body bytes gathered before they are written (a small body goes with its head).
const WRITE_GATHER: usize = 16 * 1024;

/// An upstream connection of this client: the socket and the bytes read but not consumed
/// (no allocation while the connection idles).
#[derive(Debug)]
pub(crate) struct Conn {
    io: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Whether an idle connection can carry a request: not closed by the upstream, and
    /// nothing unasked-for arrived on it.
    pub(crate) fn is_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// How a request body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encode {
    /// This many bytes (0: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// How a response body is framed.
#[derive(Debug)]
enum Reading {
    /// This many bytes left.
    Length(u64),
    /// Chunked, with its decoder.
    Chunked(Box<Chunked>),
    /// Until the upstream closes the connection.
    Close,
    /// The body has ended.
    Done,
}

/// A response head read from the upstream.
struct Parsed {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    reading: Reading,
    keep_alive: bool,
    /// The headers hold no hop-by-hop field (see [`ResponseBody::head_stripped`]).
    stripped: bool,
}

/// Why an exchange failed.
struct Failure {
    error: ProxyError,
    /// Nothing of a response arrived and the connection ended (closed or reset): the
    /// request can go again on a new connection if it is idempotent and had no body.
    unanswered: bool,
}

impl Failure {
    fn protocol() -> Failure {
        Failure {
            error: ProxyError::UpstreamProtocol,
            unanswered: false,
        }
    }
}

/// Sends `req` to the pool's endpoint on an idle connection of this client, or on a new one.
/// The error says whether it was a connect error (nothing sent).
///
/// The head is written out before the exchange begins, so the future keeps its bytes and the
/// body, not the request (a future's arguments stay in it for its whole life).
pub(crate) fn send<'a>(
    pool: &'a Arc<ConnPool>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    req: Request<ProxyBody>,
    added: Option<&Added>,
    now: Instant,
) -> impl Future<Output = Result<Response<ResponseBody>, (ProxyError, bool)>> + Send + use<'a> {
    let (mut parts, body) = req.into_parts();
    let encode = encode_head(&parts.method, &mut parts.headers, &body);
    let head = write_head(&parts, encode, added);
    // Written out: the map can serve another message.
    super::spare::give(std::mem::take(&mut parts.headers));
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let resendable = idempotent && encode == Encode::Length(0);
    let timeouts = (connect_timeout, idle_timeout, now);
    send_head(pool, timeouts, head, parts.method, body, encode, resendable)
}

/// [`send`] from the request head's bytes.
async fn send_head(
    pool: &Arc<ConnPool>,
    (connect_timeout, idle_timeout, mut now): (Duration, Duration, Instant),
    head: Vec<u8>,
    method: Method,
    mut body: ProxyBody,
    encode: Encode,
    resendable: bool,
) -> Result<Response<ResponseBody>, (ProxyError, bool)> {
    loop {
        let (mut conn, reused) = match pool.take_lean(idle_timeout, now) {
            Some(conn) => (conn, true),
            None => {
                let io = crate::proxy::connect::tcp(pool.addr(), connect_timeout)
                    .await
                    .map_err(|e| (ProxyError::from_upstream_error(&e), true))?;
                (
                    Conn {
                        io,
                        buf: BytesMut::new(),
                    },
                    false,
                )
            }
        };
        match exchange(&mut conn, &head, encode, &mut body, &method).await {
            Ok((parsed, body_left)) => {
                let Parsed {
                    status,
                    version,
                    headers,
                    reading,
                    keep_alive,
                    stripped,
                } = parsed;
                let mut resp = Response::new(ResponseBody {
                    conn: Some(conn),
                    reading,
                    keep_alive: keep_alive && !body_left,
                    stripped,
                    pool: pool.clone(),
                    idle_timeout,
                });
                *resp.status_mut() = status;
                *resp.version_mut() = version;
                *resp.headers_mut() = headers;
                resp.body_mut().release_if_done();
                return Ok(resp);
            }
            Err(f) if f.unanswered && reused && resendable => {
                tracing::debug!(upstream = %pool.addr(), "pooled connection closed as it was reused: sending again on a new one");
                // The next connection taken is checked against the time now.
                now = Instant::now();
            }
            Err(f) => return Err((f.error, false)),
        }
    }
}

/// Sets the request's framing headers as hyper's client does, and says how the body goes.
fn encode_head(method: &Method, headers: &mut HeaderMap, body: &ProxyBody) -> Encode {
    if body.is_end_stream() {
        headers.remove(header::TRANSFER_ENCODING);
        return Encode::Length(0);
    }
    // A `Transfer-Encoding` set by the proxy (a body of unknown length, on any method) is
    // respected, with `chunked` made the last coding.
    if let Some(te) = headers.get(header::TRANSFER_ENCODING) {
        let chunked = te
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if !chunked || headers.get_all(header::TRANSFER_ENCODING).iter().count() > 1 {
            let mut joined = Vec::new();
            for v in headers.get_all(header::TRANSFER_ENCODING) {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(b"chunked");
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                headers.insert(header::TRANSFER_ENCODING, v);
            }
        }
        headers.remove(header::CONTENT_LENGTH);
        return Encode::Chunked;
    }
    let declared = head_content_length(headers);
    if let Some(n) = declared {
        return Encode::Length(n);
    }
    headers.remove(header::CONTENT_LENGTH);
    if let Some(n) = body.size_hint().exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        return Encode::Length(n);
    }
    match *method {
        // GET, HEAD and CONNECT almost never have bodies: hyper sends none.
        Method::GET | Method::HEAD | Method::CONNECT => Encode::Length(0),
        _ => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            Encode::Chunked
        }
    }
}

/// The one length all `Content-Length` values (comma-separated lists included) agree on.
fn head_content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = Length::Absent;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        length.add(value.as_bytes());
    }
    length.agreed()
}

/// The request head's bytes.
fn write_head(parts: &http::request::Parts, encode: Encode, added: Option<&Added>) -> Vec<u8> {
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let mut out = Vec::with_capacity(
        64 + target.len() + parts.headers.len() * 48 + added.map_or(0, Added::written_len),
    );
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(added) = added {
        added.write(&mut out);
    }
    // An empty body of a method that defines one says so (as hyper's `Known(0)` does).
    if encode == Encode::Length(0)
        && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Why writing the request stopped.
enum WriteFailure {
    /// The client's request body failed (its error), or did not match its length.
    Body(Option<BoxError>),
    /// The upstream connection failed.
    Io(io::Error),
}

/// Writes the request and reads the response head; the response may come before the body has
/// all gone. Returns the head, and whether the request body was left unsent.
async fn exchange(
    conn: &mut Conn,
    head: &[u8],
    encode: Encode,
    body: &mut ProxyBody,
    method: &Method,
) -> Result<(Parsed, bool), Failure> {
    let Conn { io, buf } = conn;
    let (mut r, mut w) = io.split();
    let write = write_request(&mut w, head, encode, body);
    let read = read_head(&mut r, buf, method);
    tokio::pin!(write, read);
    let mut written = false;
    let mut write_error = None;
    loop {
        tokio::select! {
            biased;
            result = &mut write, if !written => {
                written = true;
                match result {
                    Ok(()) => {}
                    Err(WriteFailure::Body(e)) => {
                        let error = match e {
                            Some(e) => match ProxyError::from_upstream_error(&*e) {
                                e @ (ProxyError::BodyTooLarge | ProxyError::ClientTimeout) => e,
                                _ => ProxyError::BadRequest("malformed or incomplete request body"),
                            },
                            None => ProxyError::BadRequest("request body does not match its length"),
                        };
                        return Err(Failure { error, unanswered: false });
                    }
                    // The upstream may have answered and closed: the head decides.
                    Err(WriteFailure::Io(e)) => write_error = Some(e),
                }
            }
            result = &mut read => {
                return match result {
                    Ok(parsed) => Ok((parsed, !written || write_error.is_some())),
                    Err(mut f) => {
                        if let (Some(e), true) = (write_error, f.unanswered) {
                            f.error = ProxyError::from_upstream_error(&e);
                        }
                        Err(f)
                    }
                };
            }
        }
    }
}

/// Writes the head and the body (a small first piece of the body goes in the head's write).
async fn write_request(
    w: &mut WriteHalf<'_>,
    head: &[u8],
    encode: Encode,
    body: &mut ProxyBody,
) -> Result<(), WriteFailure> {
    let mut out = Vec::new();
    let mut pending: &[u8] = head;
    let mut sent = 0u64;
    if encode != Encode::Length(0) {
        loop {
            let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // Nothing more yet: what is gathered goes out now.
                    flush_out(w, &mut pending, &mut out).await?;
                    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(WriteFailure::Body(Some(e))),
                // Trailers are not sent.
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            if let Encode::Length(n) = encode
                && sent > n
            {
                return Err(WriteFailure::Body(None));
            }
            if !pending.is_empty() {
                out.extend_from_slice(pending);
                pending = &[];
            }
            if encode == Encode::Chunked {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            }
            if out.len() + data.len() <= WRITE_GATHER {
                out.extend_from_slice(&data);
                if encode == Encode::Chunked {
                    out.extend_from_slice(b"\r\n");
                }
            } else {
                let crlf: &[u8] = if encode == Encode::Chunked {
                    b"\r\n"
                } else {
                    b""
                };
                let mut bufs = [IoSlice::new(&out), IoSlice::new(&data), IoSlice::new(crlf)];
                write_all_vectored(w, &mut bufs).await?;
                out.clear();
            }
            if let Encode::Length(n) = encode
                && sent == n
                && body.is_end_stream()
            {
                break;
            }
        }
        match encode {
            Encode::Length(n) if sent != n => return Err(WriteFailure::Body(None)),
            Encode::Chunked => {
                if !pending.is_empty() {
                    out.extend_from_slice(pending);
                    pending = &[];
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Encode::Length(_) => {}
        }
    }
    flush_out(w, &mut pending, &mut out).await?;
    w.flush().await.map_err(WriteFailure::Io)
}

/// Writes what is pending (the head, if not yet gathered) and what is gathered.
async fn flush_out(
    w: &mut WriteHalf<'_>,
    pending: &mut &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WriteFailure> {
    if !pending.is_empty() {
        w.write_all(pending).await.map_err(WriteFailure::Io)?;
        *pending = &[];
    }
    if !out.is_empty() {
        w.write_all(out).await.map_err(WriteFailure::Io)?;
        out.clear();
    }
    Ok(())
}

async fn write_all_vectored(
    w: &mut WriteHalf<'_>,
    bufs: &mut [IoSlice<'_>],
) -> Result<(), WriteFailure> {
    let mut bufs = &mut bufs[..];
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = w.write_vectored(bufs).await.map_err(WriteFailure::Io)?;
        if n == 0 {
            return Err(WriteFailure::Io(io::ErrorKind::WriteZero.into()));
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Reads the response head (skipping interim 1xx responses).
async fn read_head(
    r: &mut ReadHalf<'_>,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Parsed, Failure> {
    use tokio::io::AsyncReadExt as _;
    let mut answered = false;
    loop {
        if !buf.is_empty() {
            answered = true;
            match parse_head(buf, method)? {
                Some(parsed) => return Ok(parsed),
                None if buf.len() >= MAX_HEAD => return Err(Failure::protocol()),
                None => {}
            }
        }
        if buf.capacity() == 0 {
            // A connection from the pool holds no buffer: this thread's spare, if any.
            *buf = super::spare::read_buffer();
        }
        buf.reserve(READ);
        match r.read_buf(buf).await {
            Ok(0) => {
                return Err(Failure {
                    // hyper's "connection closed before message completed".
                    error: ProxyError::UpstreamProtocol,
                    unanswered: !answered,
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Failure {
                    error: ProxyError::from_upstream_error(&e),
                    unanswered: !answered,
                });
            }
        }
    }
}

/// Parses a response head at the front of `buf`: the head (taken off the buffer), or `None`
/// when more bytes are needed. Interim responses are taken off and skipped.
fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Parsed>, Failure> {
    loop {
        // Byte ranges of each header's name and value, to build the map from shared bytes
        // once the head is split off the buffer: the first `INLINE_RANGES` here, the rest (a
        // rare head) in `more`. Room for all `MAX_HEADERS` was zeroed on every response.
        let mut ranges = [(0u32, 0u32, 0u32, 0u32); INLINE_RANGES];
        let mut more = Vec::new();
        let (len, code, minor, count) = {
            // Uninitialised slots: the parser writes the ones it fills.
            let mut slots =
                [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
            {
                // A whole head over the limit is refused too: one read can bring more than
                // the limit in.
                Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
                Ok(httparse::Status::Complete(_)) => return Err(Failure::protocol()),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(Failure::protocol()),
            };
            let base = buf.as_ptr() as usize;
            let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
            for (i, h) in resp.headers.iter().enumerate() {
                let name = offset(h.name.as_bytes());
                let value = offset(h.value);
                let range = (
                    name,
                    name + h.name.len() as u32,
                    value,
                    value + h.value.len() as u32,
                );
                match ranges.get_mut(i) {
                    Some(slot) => *slot = range,
                    None => more.push(range),
                }
            }
            (
                len,
                resp.code.unwrap_or(0),
                resp.version.unwrap_or(1),
                resp.headers.len(),
            )
        };
        let status = StatusCode::from_u16(code).map_err(|_| Failure::protocol())?;
        if status.is_informational() && code != 101 {
            buf.advance(len);
            if buf.is_empty() {
                return Ok(None);
            }
            continue;
        }
        if code == 101 {
            // This client carries no upgrades (they go to hyper's).
            return Err(Failure::protocol());
        }
        let bytes = buf.split_to(len).freeze();
        let mut headers = super::spare::take(count + 2);
        // One pass over the lines: the map gets what `headers::strip_response` would leave
        // of them (the proxy strips that from every response), and the framing is read on
        // the way.
        let mut transfer_encoding: Option<&[u8]> = None;
        let mut length = Length::Absent;
        // How many `Content-Length` fields, and whether each was one number alone.
        let (mut length_fields, mut plain_length) = (0u32, true);
        let (mut close, mut keep_alive_asked, mut stripped) = (false, false, true);
        let mut names = super::names::responses();
        let all = ranges[..count.min(INLINE_RANGES)].iter().chain(&more);
        for (i, &(ns, ne, vs, ve)) in all.enumerate() {
            let name = names
                .name(i, &bytes[ns as usize..ne as usize])
                .map_err(|_| Failure::protocol())?;
            let value = &bytes[vs as usize..ve as usize];
            if name == header::CONTENT_LENGTH {
                plain_length &= length.add(value);
                length_fields += 1;
            } else if name == header::CONNECTION {
                let said = crate::proxy::headers::connection_tokens(value);
                close |= said.close;
                keep_alive_asked |= said.keep_alive;
                if !said.names_others {
                    continue;
                }
                // It names headers to strip: kept, for the general stripping to read.
                stripped = false;
            } else if crate::proxy::headers::is_hop_by_hop(&name) {
                if name == header::TRANSFER_ENCODING {
                    transfer_encoding = Some(value);
                }
                continue;
            }
            // httparse accepted the value's bytes, the same set `HeaderValue` accepts.
            let value = HeaderValue::from_maybe_shared(bytes.slice(vs as usize..ve as usize))
                .map_err(|_| Failure::protocol())?;
            headers.append(name, value);
        }
        if transfer_encoding.is_some() {
            // `strip_response`'s other half.
            headers.remove(header::CONTENT_LENGTH);
        } else if length_fields > 1 || !plain_length {
            // Repeated or listed lengths, as `strip_response` leaves them (one, or none where
            // they differ: only an answer without a body is read with such lengths).
            crate::proxy::headers::one_content_length(&mut headers);
        }
        let http11 = minor == 1;
        let reading = reading(status, method, http11, transfer_encoding, length)
            .ok_or_else(Failure::protocol)?;
        let keep_alive =
            !matches!(reading, Reading::Close) && if http11 { !close } else { keep_alive_asked };
        return Ok(Some(Parsed {
            status,
            version: if http11 {
                Version::HTTP_11
            } else {
                Version::HTTP_10
            },
            headers,
            reading,
            keep_alive,
            stripped,
        }));
    }
}

/// How the response body is framed (hyper's client rules), from the last `Transfer-Encoding`
/// field and the `Content-Length` fields; `None` for a framing error.
fn reading(
    status: StatusCode,
    method: &Method,
    http11: bool,
    transfer_encoding: Option<&[u8]>,
    length: Length,
) -> Option<Reading> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Some(Reading::Done);
    }
    if *method == Method::HEAD || (*method == Method::CONNECT && status.is_success()) {
        return Some(Reading::Done);
    }
    if let Some(te) = transfer_encoding {
        if !http11 {
            return None;
        }
        let chunked = te
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Some(if chunked {
            Reading::Chunked(Box::new(Chunked::keeping_trailers()))
        } else {
            Reading::Close
        });
    }
    match length {
        Length::Absent => Some(Reading::Close),
        Length::Invalid => None,
        Length::Agreed(0) => Some(Reading::Done),
        Length::Agreed(n) => Some(Reading::Length(n)),
    }
}

/// A response body read from its upstream connection, which goes back to the pool when the
/// body ends cleanly.
pub(crate) struct ResponseBody {
    /// `None` once returned to the pool, or closed.
    conn: Option<Conn>,
    reading: Reading,
    /// The connection may carry another request after this response.
    keep_alive: bool,
    pool: Arc<ConnPool>,
    idle_timeout: Duration,
    /// See [`ResponseBody::head_stripped`].
    stripped: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("reading", &self.reading)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// Whether this client already left the response's hop-by-hop fields out of its
    /// headers (and `Content-Length` when `Transfer-Encoding` was there too), as the proxy
    /// strips them from every response: true unless `Connection` names other fields, which
    /// the general stripping then removes.
    pub(crate) fn head_stripped(&self) -> bool {
        self.stripped
    }

    /// At the end of the body: the connection goes back to the pool when it can carry
    /// another request (nothing more than the response arrived), else it closes.
    fn release_if_done(&mut self) {
        if !matches!(self.reading, Reading::Done) {
            return;
        }
        if let Some(mut conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            super::spare::give_read_buffer(std::mem::take(&mut conn.buf));
            self.pool.put_lean(conn, self.idle_timeout);
        }
    }

    fn fail(&mut self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.reading = Reading::Done;
        Poll::Ready(Some(Err(Box::new(BodyError::response(why)))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.reading {
                Reading::Done => {
                    this.release_if_done();
                    return Poll::Ready(None);
                }
                Reading::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            this.reading = Reading::Done;
                            this.release_if_done();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(None) if decoder.ended() => {
                        let trailers = decoder.take_trailers();
                        this.reading = Reading::Done;
                        this.release_if_done();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(None) => {}
                    Err(why) => return this.fail(why),
                },
                Reading::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            conn.buf.reserve(READ);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.io),
                cx,
                &mut conn.buf
            )) {
                Ok(0) => {
                    if matches!(this.reading, Reading::Close) {
                        this.conn = None;
                        this.reading = Reading::Done;
                        return Poll::Ready(None);
                    }
                    return this
                        .fail("the upstream closed the connection before the end of the body");
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    this.reading = Reading::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body whose end was reached without a last poll (its length said so) still
        // returns its connection; one dropped before its end closes it.
        self.release_if_done();
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;

    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::proxy::body;
    use crate::proxy::pool::idle_count;
    use crate::proxy::pool::tests::canned;

    fn hm(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn request_framing_follows_hypers_client() {
        // A `Transfer-Encoding` set by the proxy is respected (on any method).
        let stream1 = || {
            body::boxed(http_body_util::StreamBody::new(futures::stream::iter([
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
            ])))
        };
        let mut h = hm(&[("transfer-encoding", "chunked"), ("content-length", "1")]);
        assert_eq!(
            encode_head(&Method::GET, &mut h, &stream1()),
            Encode::Chunked
        );
        assert!(!h.contains_key(header::CONTENT_LENGTH));
        let mut h = hm(&[("transfer-encoding", "gzip")]);
        assert_eq!(
            encode_head(&Method::POST, &mut h, &stream1()),
            Encode::Chunked
        );
        assert_eq!(h[header::TRANSFER_ENCODING], "gzip, chunked");
        // An ended body: no body, whatever the request said of its encoding.
        let mut h = hm(&[("transfer-encoding", "chunked")]);
        assert_eq!(
            encode_head(&Method::POST, &mut h, &body::empty()),
            Encode::Length(0)
        );
        assert!(!h.contains_key(header::TRANSFER_ENCODING));
        // A known size sets the length.
        let mut h = HeaderMap::new();
        assert_eq!(
            encode_head(&Method::POST, &mut h, &body::full("abc")),
            Encode::Length(3)
        );
        assert_eq!(h[header::CONTENT_LENGTH], "3");
        // A declared length is kept.
        let mut h = hm(&[("content-length", "3, 3")]);
        assert_eq!(
            encode_head(&Method::PUT, &mut h, &body::full("abc")),
            Encode::Length(3)
        );
        // Unknown size: chunked, except for GET, HEAD and CONNECT (no body).
        let stream = || {
            body::boxed(http_body_util::StreamBody::new(futures::stream::iter([
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
            ])))
        };
        let mut h = HeaderMap::new();
        assert_eq!(
            encode_head(&Method::POST, &mut h, &stream()),
            Encode::Chunked
        );
        assert_eq!(h[header::TRANSFER_ENCODING], "chunked");
        let mut h = HeaderMap::new();
        assert_eq!(
            encode_head(&Method::GET, &mut h, &stream()),
            Encode::Length(0)
        );
        assert!(h.is_empty());
    }

    #[test]
    fn content_length_values_must_agree() {
        assert_eq!(
            head_content_length(&hm(&[("content-length", "5")])),
            Some(5)
        );
        assert_eq!(
            head_content_length(&hm(&[("content-length", "5"), ("content-length", "5, 5")])),
            Some(5)
        );
        assert_eq!(
            head_content_length(&hm(&[("content-length", "5"), ("content-length", "6")])),
            None
        );
        assert_eq!(head_content_length(&hm(&[("content-length", "+5")])), None);
        assert_eq!(head_content_length(&hm(&[("content-length", "")])), None);
        assert_eq!(head_content_length(&HeaderMap::new()), None);
    }

    #[test]
    fn heads_with_more_lines_than_kept_inline_keep_them_all_in_order() {
        // Two lines per pair, and two for the framing: heads of 22, 24 (all inline), 26 and
        // 100 lines (the parser's limit).
        for pairs in [10, 11, 12, (MAX_HEADERS - 2) / 2] {
            let mut text = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..pairs {
                // A name of its own per pair, and one repeated name whose values keep order.
                text.push_str(&format!("x-n{i}: {i}\r\nx-all: {i}\r\n"));
            }
            // The framing comes last, read from beyond the inline ranges when there are more.
            text.push_str("connection: close\r\ncontent-length: 3\r\n\r\nabc");
            let mut buf = BytesMut::from(text.as_bytes());
            let Ok(Some(parsed)) = parse_head(&mut buf, &Method::GET) else {
                panic!("a valid, complete head of {pairs} pairs");
            };
            assert_eq!(&buf[..], b"abc", "the head is taken off, the body left");
            assert!(matches!(parsed.reading, Reading::Length(3)), "{pairs}");
            assert!(!parsed.keep_alive, "connection: close was read ({pairs})");
            assert!(!parsed.headers.contains_key(header::CONNECTION));
            for i in 0..pairs {
                assert_eq!(parsed.headers[format!("x-n{i}").as_str()], i.to_string());
            }
            let all: Vec<String> = parsed
                .headers
                .get_all("x-all")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let want: Vec<String> = (0..pairs).map(|i| i.to_string()).collect();
            assert_eq!(all, want);
        }
    }

    #[test]
    fn response_heads_are_framed_as_rfc_9112_says() {
        let framing = |text: &str, method: Method| {
            let mut buf = BytesMut::from(text.as_bytes());
            match parse_head(&mut buf, &method) {
                Ok(Some(p)) => format!("{:?} keep={}", p.reading, p.keep_alive),
                Ok(None) => "partial".to_string(),
                Err(f) => f.error.label().to_string(),
            }
        };
        let get = Method::GET;
        let cases: &[(&str, Method, &str)] = &[
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                get.clone(),
                "Length(5) keep=true",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                Method::HEAD,
                "Done keep=true",
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
                get.clone(),
                "Done keep=true",
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", get.clone(), "Close keep=false"),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 5\r\n\r\n",
                get.clone(),
                "Close keep=false",
            ),
            (
                "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                get.clone(),
                "upstream_protocol",
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
                get.clone(),
                "Done keep=false",
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n",
                get.clone(),
                "Done keep=true",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                get.clone(),
                "Done keep=false",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                get.clone(),
                "upstream_protocol",
            ),
            ("HTTP/1.1 200 OK\r\ncontent-le", get.clone(), "partial"),
            // Interim responses are skipped.
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n",
                get.clone(),
                "Length(2) keep=true",
            ),
            ("HTTP/1.1 100 Continue\r\n\r\n", get.clone(), "partial"),
            // No upgrades on this client.
            (
                "HTTP/1.1 101 Switching Protocols\r\n\r\n",
                get.clone(),
                "upstream_protocol",
            ),
        ];
        for (text, method, want) in cases {
            assert_eq!(framing(text, method.clone()), *want, "{method} {text:?}");
        }
        assert!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                get
            )
            .starts_with("Chunked")
        );
    }

    /// What a client made of a response: status, headers, body and trailers, or an error.
    type Outcome = Result<(u16, Vec<(String, Vec<u8>)>, Vec<u8>, Vec<(String, Vec<u8>)>), ()>;

    fn pairs(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        h.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    async fn collect<B>(resp: Response<B>) -> Outcome
    where
        B: Body<Data = Bytes>,
    {
        let status = resp.status().as_u16();
        // As the proxy forwards them: hyper's client keeps the hop-by-hop fields, this one
        // leaves them out as it reads.
        let mut forwarded = resp.headers().clone();
        crate::proxy::headers::strip_response(&mut forwarded);
        let headers = pairs(&forwarded);
        let collected = resp.into_body().collect().await.map_err(|_| ())?;
        let trailers = collected.trailers().map(pairs).unwrap_or_default();
        Ok((status, headers, collected.to_bytes().to_vec(), trailers))
    }

    /// A request for `/` with only a `Host`, and no body.
    fn bare(method: Method) -> Request<ProxyBody> {
        Request::builder()
            .method(method)
            .uri("/")
            .header(header::HOST, "x")
            .body(body::empty())
            .unwrap()
    }

    /// [`send`] with the tests' timeouts and no added headers.
    fn send_plain(
        pool: &Arc<ConnPool>,
        req: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, (ProxyError, bool)>> + Send + '_ {
        send(
            pool,
            Duration::from_secs(2),
            Duration::from_secs(30),
            req,
            None,
            Instant::now(),
        )
    }

    async fn ours(addr: SocketAddr, method: Method) -> Outcome {
        let pool = Arc::new(ConnPool::new(addr));
        let req = bare(method);
        let resp = send_plain(&pool, req).await.map_err(|_| ())?;
        collect(resp).await
    }

    async fn hypers(addr: SocketAddr, method: Method) -> Outcome {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = bare(method);
        let resp = sender.send_request(req).await.map_err(|_| ())?;
        collect(resp).await
    }

    /// The same response bytes, read by this client and by hyper's: the same outcome.
    #[tokio::test]
    async fn responses_read_as_hypers_client_reads_them() {
        let cases: &[(&[u8], Method)] = &[
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\nx-a: 2\r\n\r\nhello", Method::GET),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello", Method::GET),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello", Method::GET),
            (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\nhello", Method::GET),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello", Method::GET),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", Method::GET),
            (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", Method::GET),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: done\r\nx-u: 2\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nz\r\nhello\r\n0\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nraw bytes", Method::GET),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Method::GET),
            (b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Method::GET),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", Method::GET),
            (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", Method::GET),
            (b"HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD),
            (b"HTTP/1.1 200 OK\r\n\r\n", Method::HEAD),
            (b"HTTP/1.1 abc OK\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\nbad header: x\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\nx-fold: a\r\n b\r\ncontent-length: 0\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\nx-bin: \x01\r\ncontent-length: 0\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200 OK\r\nx-utf8: caf\xc3\xa9\r\ncontent-length: 0\r\n\r\n", Method::GET),
            (b"HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n", Method::GET),
            (b"HTTP/1.1 599 Custom\r\ncontent-length: 0\r\n\r\n", Method::GET),
            (b"HTTP/2.0 200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET),
            (b"", Method::GET),
            (b"HTTP/1.1 200 OK\r\ncontent-len", Method::GET),
        ];
        let mut read_whole = 0;
        for (answer, method) in cases {
            let (addr, _) = canned(answer, true).await;
            let theirs = hypers(addr, method.clone()).await;
            let mine = ours(addr, method.clone()).await;
            read_whole += usize::from(mine.is_ok());
            assert_eq!(
                mine,
                theirs,
                "{method} answered {:?}",
                String::from_utf8_lossy(answer)
            );
        }
        // The cases hold both kinds: responses read whole, and broken ones refused.
        assert_eq!(read_whole, 16, "responses read whole");
    }

    #[tokio::test]
    async fn a_connection_returns_to_the_pool_only_after_a_clean_keep_alive_response() {
        let (addr, accepted) =
            canned(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false).await;
        let pool = Arc::new(ConnPool::new(addr));
        for _ in 0..3 {
            let req = Request::get("/").body(body::empty()).unwrap();
            let resp = send_plain(&pool, req).await.unwrap();
            assert_eq!(collect(resp).await.unwrap().2, b"hello");
            assert_eq!(idle_count(&pool), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");

        // A body dropped before its end closes its connection.
        let (addr, accepted) = canned(
            b"HTTP/1.1 200 OK\r\ncontent-length: 50000\r\n\r\nhello",
            false,
        )
        .await;
        let pool = Arc::new(ConnPool::new(addr));
        let req = Request::get("/").body(body::empty()).unwrap();
        let resp = send_plain(&pool, req).await.unwrap();
        drop(resp);
        assert_eq!(idle_count(&pool), 0);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // `Connection: close` and close-delimited bodies are not reused.
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\n\r\nok",
        ] {
            let (addr, _) = canned(answer, true).await;
            let pool = Arc::new(ConnPool::new(addr));
            let req = Request::get("/").body(body::empty()).unwrap();
            let resp = send_plain(&pool, req).await.unwrap();
            assert_eq!(collect(resp).await.unwrap().2, b"ok");
            assert_eq!(idle_count(&pool), 0);
        }
    }

    #[tokio::test]
    async fn a_pooled_connection_is_taken_only_within_the_idle_timeout_of_the_time_given() {
        let (addr, accepted) =
            canned(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
        let pool = Arc::new(ConnPool::new(addr));
        let idle = Duration::from_secs(30);
        let pooled = |pool: Arc<ConnPool>| async move {
            let req = Request::get("/").body(body::empty()).unwrap();
            let resp = send_plain(&pool, req).await.map_err(|_| ()).unwrap();
            assert_eq!(collect(resp).await.unwrap().2, b"ok");
            assert_eq!(idle_count(&pool), 1, "back in the pool");
        };
        pooled(pool.clone()).await;
        // Seen from a time past its idle timeout, the connection is dropped, not taken.
        let later = Instant::now() + idle + Duration::from_secs(1);
        assert!(pool.take_lean(idle, later).is_none());
        assert_eq!(idle_count(&pool), 0);
        // Within it (and from a time read before the connection went back), it is taken.
        let before = Instant::now();
        pooled(pool.clone()).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "a new connection after the drop"
        );
        assert!(pool.take_lean(idle, before).is_some());
        assert!(
            pool.take_lean(idle, Instant::now()).is_none(),
            "only one was pooled"
        );
    }

    #[tokio::test]
    async fn a_pooled_connection_the_upstream_closed_is_not_used() {
        // The backend closes after each answer, but says keep-alive.
        let (addr, accepted) =
            canned(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
        let pool = Arc::new(ConnPool::new(addr));
        for i in 1..=3 {
            let req = Request::get("/").body(body::empty()).unwrap();
            let resp = send_plain(&pool, req)
                .await
                .expect("a closed pooled connection is skipped or the request sent again");
            assert_eq!(collect(resp).await.unwrap().2, b"ok");
            assert_eq!(accepted.load(Ordering::SeqCst), i);
        }
    }

    #[tokio::test]
    async fn an_early_answer_is_taken_while_the_body_streams_and_the_connection_closes() {
        // The upstream answers 413 at the head, without reading the body.
        let (addr, _) = canned(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!",
            false,
        )
        .await;
        let pool = Arc::new(ConnPool::new(addr));
        // A body that never ends: the answer must not wait for it.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let endless = body::boxed(http_body_util::StreamBody::new(tokio_stream_like(rx)));
        let req = Request::post("/").body(endless).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), send_plain(&pool, req))
            .await
            .expect("answered before the body ends")
            .unwrap();
        assert_eq!(resp.status(), 413);
        assert_eq!(collect(resp).await.unwrap().2, b"big!");
        assert_eq!(idle_count(&pool), 0, "the rest of the body was not sent");
    }

    /// A stream of a channel's items.
    fn tokio_stream_like<T: Send + 'static>(
        rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send {
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
    }

    #[tokio::test]
    async fn request_bodies_go_out_framed_and_whole() {
        // A backend that echoes what it received, once the request's end is seen.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !(got.ends_with(b"0\r\n\r\n") || got.ends_with(b"hello world")) {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", got.len());
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&got).await;
                });
            }
        });
        let pool = Arc::new(ConnPool::new(addr));
        let pieces = || {
            body::boxed(http_body_util::StreamBody::new(futures::stream::iter([
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"hello"))),
                Ok(Frame::data(Bytes::from_static(b" world"))),
            ])))
        };
        let echo = |req: Request<ProxyBody>| {
            let pool = pool.clone();
            async move {
                let resp = send_plain(&pool, req).await.unwrap();
                String::from_utf8(collect(resp).await.unwrap().2).unwrap()
            }
        };
        assert_eq!(
            echo(Request::post("/up").body(pieces()).unwrap()).await,
            "POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        );
        let req = Request::put("/up")
            .header(header::CONTENT_LENGTH, "11")
            .body(pieces())
            .unwrap();
        assert_eq!(
            echo(req).await,
            "PUT /up HTTP/1.1\r\ncontent-length: 11\r\n\r\nhello world"
        );
        // A body longer than its declared length is the client's error, and is not sent on.
        let req = Request::put("/up")
            .header(header::CONTENT_LENGTH, "5")
            .body(pieces())
            .unwrap();
        let err = send_plain(&pool, req).await.unwrap_err();
        assert_eq!(err.0.label(), "bad_request");
    }
}
