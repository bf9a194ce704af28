//! sluice's own HTTP/1.1 server connection (the lean path): request heads parsed in place by
//! [`head`], bodies decoded here, responses written here.
//!
//! Memory: the connection's read buffer is freed whenever no bytes of a request are
//! buffered. On plain TCP the connection then waits for readability without any buffer, so
//! an idle keep-alive connection holds its socket, its task and a few small shared records.
//! (A TLS connection cannot wait that way: rustls may hold decrypted bytes, so its read
//! waits with a buffer, and rustls keeps its own.)
//!
//! Sharing: the request body is read by the upstream exchange (another task, for HTTP/1.1
//! upstreams) while this task writes the response, so the transport and the read buffer sit
//! behind one [`Mutex`], locked only inside `poll` calls, never across an await. A body is
//! tied to its request by a sequence number: a body object that outlives its request never
//! reads the next request's bytes.
//!
//! What this server leaves to hyper, by handing it the connection with the bytes already
//! read: a request asking for an upgrade (WebSocket, CONNECT), one with
//! `Expect: 100-continue`, and the HTTP/2 prior-knowledge preface (h2c). Request trailers of
//! a chunked body are read and dropped.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::BodyError;
use super::head::{self, Framing, HeadError, Length, RequestHead};
use crate::proxy::body::{self, BoxError, ClientBody, ProxyBody};

/// How many bytes a read of a request body asks for at a time.
const BODY_READ: usize = 16 * 1024;
/// Chunk extensions one body may carry, in bytes (hyper's limit: it refuses at this count).
const MAX_CHUNK_EXTENSIONS: u64 = 16 * 1024;
/// Trailer bytes one chunked body may carry (hyper's limit: it refuses at this length).
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Trailer lines one chunked body may carry (hyper's default header count).
const MAX_TRAILER_LINES: usize = 100;
/// Response bytes gathered before they are written (small bodies go out with their head).
const WRITE_GATHER: usize = 16 * 1024;

/// Headers the proxy adds to a request on its way upstream, reserved for when the request's
/// header map is built.
const ADDED_HEADERS: usize = 8;

/// The HTTP/2 prior-knowledge preface's first line: such a connection is handed to hyper.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A client connection's transport.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when bytes can be read, without a buffer. A transport that cannot tell is
    /// always ready (its reads then wait with a buffer).
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Transport for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport
    for tokio_rustls::server::TlsStream<T>
{
    fn poll_readable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A connection's transport and read buffer, shared by the connection's task and the body
/// of its current request.
pub struct Shared<I> {
    inner: Mutex<Inner<I>>,
}

struct Inner<I> {
    /// `None` once the connection is closed (or handed to hyper).
    io: Option<I>,
    /// Bytes read and not yet consumed (empty with no allocation while idle).
    buf: BytesMut,
    /// The current request's body.
    body: BodyState,
    /// The sequence number of the current request's body.
    seq: u64,
    /// The decoder of the current body, when it is chunked (boxed: rare, and this record
    /// lives as long as the connection).
    chunked: Option<Box<Chunked>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    /// No body, or the body has been read to its end.
    Done,
    /// This many bytes of a `Content-Length` body are left.
    Length(u64),
    /// A chunked body (its decoder is `Inner::chunked`).
    Chunked,
    /// The body failed (malformed framing, or the client went away).
    Failed,
}

/// Where a chunked body's decoder is: the states of hyper's decoder, which this one follows
/// byte for byte (the `chunked_differential` fuzz target and tests/h1_head.rs compare them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Chunk {
    /// The first hex digit of a chunk-size line.
    #[default]
    Start,
    /// In a chunk-size line's hex digits, value `size` so far.
    Size { size: u64 },
    /// Whitespace after the size.
    SizeSpace { size: u64 },
    /// A chunk extension, up to the line's end.
    Extension { size: u64 },
    /// The size line's LF.
    SizeLf { size: u64 },
    /// This many data bytes left in the chunk.
    Data(u64),
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// After the last chunk: a CR (the end) or the first byte of a trailer line.
    EndCr,
    /// In a trailer line.
    Trailer,
    /// A trailer line's LF.
    TrailerLf,
    /// The final LF.
    EndLf,
    /// The body has ended.
    End,
}

/// A chunked body's decoder: its state and what it has counted over the whole body. The
/// upstream client (`h1::client`) decodes response bodies with it too, keeping their trailers.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: Chunk,
    /// Keep the trailers (as a header map, taken with [`Chunked::take_trailers`]) instead of
    /// dropping them once checked.
    keep_trailers: bool,
    /// The checked trailers, when kept (boxed: the decoder is small without them).
    kept: Option<Box<HeaderMap>>,
    /// Chunk-extension bytes so far.
    extension_bytes: u64,
    /// The trailer section as received (checked as header lines at the end, then dropped).
    trailers: Option<Vec<u8>>,
    /// Trailer lines so far.
    trailer_lines: usize,
}

impl<I: Transport> Shared<I> {
    /// Shares `io`.
    pub fn new(io: I) -> Shared<I> {
        Shared {
            inner: Mutex::new(Inner {
                io: Some(io),
                buf: BytesMut::new(),
                body: BodyState::Done,
                seq: 0,
                chunked: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<I>> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the transport and the bytes read but not consumed (to hand the connection to
    /// hyper); the connection is closed for this side.
    fn take(&self) -> Option<(I, BytesMut)> {
        let mut inner = self.lock();
        let buf = std::mem::take(&mut inner.buf);
        inner.body = BodyState::Failed;
        inner.io.take().map(|io| (io, buf))
    }

    /// Writes all of `bufs`.
    async fn write_all(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut bufs = &mut bufs[..];
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let n = poll_fn(|cx| {
                let mut inner = self.lock();
                let io = inner.io.as_mut().ok_or_else(closed)?;
                Pin::new(io).poll_write_vectored(cx, bufs)
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut inner = self.lock();
            let io = inner.io.as_mut().ok_or_else(closed)?;
            Pin::new(io).poll_flush(cx)
        })
        .await
    }

    /// Closes the connection: the response is flushed, the write side shut down (TLS:
    /// close_notify), the transport dropped.
    pub async fn close(&self) {
        let _ = poll_fn(|cx| {
            let mut inner = self.lock();
            match inner.io.as_mut() {
                Some(io) => Pin::new(io).poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            }
        })
        .await;
        let mut inner = self.lock();
        inner.io = None;
        // To this thread's spares if nothing is left in it (the next connection's head is
        // read into it without a new allocation).
        super::spare::give_head_buffer(std::mem::take(&mut inner.buf));
        inner.body = BodyState::Failed;
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl<I: Transport> Inner<I> {
    /// Reads up to `want` more bytes into the buffer: `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let io = self.io.as_mut().ok_or_else(closed)?;
        // Into the buffer's spare room, at most `want` bytes: tokio-util reads into memory
        // not yet initialised (soundly, behind its own API), so nothing is zeroed first (a
        // memset of the whole room per read, when this filled zeroed bytes).
        self.buf.reserve(want);
        let mut room = (&mut self.buf).limit(want);
        tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut room)
    }

    /// The next frame of the current body.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let fail = match self.body {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Failed => {
                    return Poll::Ready(Some(Err(BodyError::request("failed").into())));
                }
                BodyState::Length(left) => {
                    if !self.buf.is_empty() {
                        let n = usize::try_from(left)
                            .unwrap_or(usize::MAX)
                            .min(self.buf.len());
                        let data = self.buf.split_to(n).freeze();
                        let left = left - n as u64;
                        self.body = if left == 0 {
                            BodyState::Done
                        } else {
                            BodyState::Length(left)
                        };
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    None
                }
                BodyState::Chunked => match self
                    .chunked
                    .as_mut()
                    .ok_or("chunked decoder state")
                    .and_then(|c| c.decode(&mut self.buf))
                {
                    Ok(None) if self.chunked.as_ref().is_some_and(|c| c.ended()) => {
                        self.body = BodyState::Done;
                        self.chunked = None;
                        return Poll::Ready(None);
                    }
                    Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(None) => None,
                    Err(why) => Some(why),
                },
            };
            if let Some(why) = fail {
                self.body = BodyState::Failed;
                return Poll::Ready(Some(Err(BodyError::request(why).into())));
            }
            let want = match self.body {
                BodyState::Length(left) => {
                    usize::try_from(left).unwrap_or(usize::MAX).min(BODY_READ)
                }
                _ => BODY_READ,
            };
            match ready!(self.poll_fill(cx, want)) {
                Ok(0) => {
                    self.body = BodyState::Failed;
                    return Poll::Ready(Some(Err(BodyError::request(
                        "the client closed the connection before the end of the body",
                    )
                    .into())));
                }
                Ok(_) => {}
                Err(e) => {
                    self.body = BodyState::Failed;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

impl Chunked {
    /// A decoder that keeps the body's trailers.
    pub(super) fn keeping_trailers() -> Chunked {
        Chunked {
            keep_trailers: true,
            ..Chunked::default()
        }
    }

    /// Whether the body has ended.
    pub(super) fn ended(&self) -> bool {
        self.state == Chunk::End
    }

    /// The trailers of an ended body, when kept and present.
    pub(super) fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.kept.take().map(|t| *t)
    }

    /// Decodes chunked framing from the front of `buf`: the next data, if the buffer held
    /// some; `Ok(None)` with the state at `Chunk::End` when the body has ended, otherwise
    /// when more bytes are needed. Chunk extensions are dropped; trailers are checked as
    /// header lines (as hyper parses them) and dropped.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, &'static str> {
        loop {
            match self.state {
                Chunk::End => return Ok(None),
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    };
                    return Ok(Some(data));
                }
                _ => {}
            }
            let Some(&b) = buf.first() else {
                return Ok(None);
            };
            buf.advance(1);
            self.state = self.step(b)?;
            if self.state == Chunk::End {
                self.check_trailers()?;
                return Ok(None);
            }
        }
    }

    /// The state after byte `b` of the framing (not of chunk data).
    fn step(&mut self, b: u8) -> Result<Chunk, &'static str> {
        let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
        Ok(match self.state {
            Chunk::Start => match hex(b) {
                Some(d) => Chunk::Size { size: d },
                None => return Err("invalid chunk size line: missing size digit"),
            },
            Chunk::Size { size } => match (hex(b), b) {
                (Some(d), _) => Chunk::Size {
                    size: size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or("chunk size overflow")?,
                },
                (None, b'\t' | b' ') => Chunk::SizeSpace { size },
                (None, b';') => Chunk::Extension { size },
                (None, b'\r') => Chunk::SizeLf { size },
                _ => return Err("invalid chunk size"),
            },
            Chunk::SizeSpace { size } => match b {
                b'\t' | b' ' => Chunk::SizeSpace { size },
                b';' => Chunk::Extension { size },
                b'\r' => Chunk::SizeLf { size },
                _ => return Err("invalid chunk size line whitespace"),
            },
            Chunk::Extension { size } => match b {
                b'\r' => Chunk::SizeLf { size },
                b'\n' => return Err("chunk extension contains a newline"),
                _ => {
                    self.extension_bytes += 1;
                    if self.extension_bytes >= MAX_CHUNK_EXTENSIONS {
                        return Err("chunk extensions over the limit");
                    }
                    Chunk::Extension { size }
                }
            },
            Chunk::SizeLf { size } => match b {
                b'\n' if size == 0 => Chunk::EndCr,
                b'\n' => Chunk::Data(size),
                _ => return Err("invalid chunk size LF"),
            },
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return Err("invalid chunk data CR"),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Start,
                _ => return Err("invalid chunk data LF"),
            },
            Chunk::EndCr => {
                if b == b'\r' {
                    if self.trailers.is_some() {
                        self.push_trailer(b)?;
                    }
                    Chunk::EndLf
                } else {
                    self.trailers.get_or_insert_with(Vec::new);
                    self.push_trailer(b)?;
                    Chunk::Trailer
                }
            }
            Chunk::Trailer => {
                self.push_trailer(b)?;
                if b == b'\r' {
                    Chunk::TrailerLf
                } else {
                    Chunk::Trailer
                }
            }
            Chunk::TrailerLf => match b {
                b'\n' => {
                    if self.trailer_lines >= MAX_TRAILER_LINES {
                        return Err("too many trailer lines");
                    }
                    self.trailer_lines += 1;
                    self.push_trailer(b)?;
                    Chunk::EndCr
                }
                _ => return Err("invalid trailer LF"),
            },
            Chunk::EndLf => match b {
                b'\n' => {
                    if self.trailers.is_some() {
                        self.push_trailer(b)?;
                    }
                    Chunk::End
                }
                _ => return Err("invalid chunked body end LF"),
            },
            // Handled by `decode` before a byte is taken.
            Chunk::Data(_) | Chunk::End => return Err("chunked decoder state"),
        })
    }

    fn push_trailer(&mut self, b: u8) -> Result<(), &'static str> {
        let trailers = self.trailers.get_or_insert_with(Vec::new);
        trailers.push(b);
        if trailers.len() >= MAX_TRAILER_BYTES {
            return Err("trailers over the limit");
        }
        Ok(())
    }

    /// The trailer section, if any, must be header lines (what hyper's decoder accepts).
    fn check_trailers(&mut self) -> Result<(), &'static str> {
        let Some(trailers) = self.trailers.take() else {
            return Ok(());
        };
        let mut slots = vec![httparse::EMPTY_HEADER; self.trailer_lines];
        match httparse::parse_headers(&trailers, &mut slots) {
            Ok(httparse::Status::Complete((_, lines))) => {
                let mut kept = HeaderMap::new();
                for line in lines.iter() {
                    let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(line.name.as_bytes()),
                        HeaderValue::from_bytes(line.value),
                    ) else {
                        return Err("invalid trailer");
                    };
                    if self.keep_trailers {
                        kept.append(name, value);
                    }
                }
                if self.keep_trailers && !kept.is_empty() {
                    self.kept = Some(Box::new(kept));
                }
                Ok(())
            }
            _ => Err("invalid trailers"),
        }
    }
}

/// Decodes all of `input` as a chunked body, as the connection would (the end of `input` is
/// the client closing): the body, or why it failed. For tests and the differential fuzz
/// target.
pub fn decode_chunked_body(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut buf = BytesMut::from(input);
    let mut decoder = Chunked::default();
    let mut out = Vec::new();
    loop {
        match decoder.decode(&mut buf)? {
            Some(data) => out.extend_from_slice(&data),
            None if decoder.state == Chunk::End => return Ok(out),
            None => return Err("the client closed the connection before the end of the body"),
        }
    }
}

/// The body of one request on a lean connection.
struct RequestBody<I> {
    shared: Arc<Shared<I>>,
    seq: u64,
}

impl<I: Transport> Body for RequestBody<I> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut inner = self.shared.lock();
        if inner.seq != self.seq {
            return Poll::Ready(Some(Err(
                BodyError::request("the connection moved on").into()
            )));
        }
        inner.poll_body(cx)
    }

    fn is_end_stream(&self) -> bool {
        let inner = self.shared.lock();
        inner.seq != self.seq || inner.body == BodyState::Done
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.shared.lock();
        match inner.body {
            BodyState::Length(n) if inner.seq == self.seq => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// What the request said that the response's framing depends on.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    /// The method was HEAD.
    pub head: bool,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    /// The client would keep the connection open.
    pub keep_alive: bool,
    /// `TE: trailers`.
    pub trailers: bool,
}

/// The header ranges of a head (their allocation is kept between requests).
pub type Spans = Vec<(head::Span, head::Span)>;

/// A connection's [`Spans`], taken from this thread's spares and given back to them when the
/// connection ends (a new connection's first head then needs no allocation for its ranges).
#[derive(Debug)]
pub struct KeptSpans(Spans);

impl KeptSpans {
    /// Spare spans of this thread, else new ones.
    pub fn new() -> KeptSpans {
        KeptSpans(super::spare::spans())
    }
}

impl Default for KeptSpans {
    fn default() -> KeptSpans {
        KeptSpans::new()
    }
}

impl std::ops::Deref for KeptSpans {
    type Target = Spans;

    fn deref(&self) -> &Spans {
        &self.0
    }
}

impl std::ops::DerefMut for KeptSpans {
    fn deref_mut(&mut self) -> &mut Spans {
        &mut self.0
    }
}

impl Drop for KeptSpans {
    fn drop(&mut self) {
        super::spare::give_spans(std::mem::take(&mut self.0));
    }
}

/// What became of the head being read.
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per request and taken apart at once; boxing would cost every request an allocation"
)]
pub enum Next {
    /// A request to serve.
    Request(Request<ClientBody>, Asked),
    /// A head refused with this error (and its method, when the request line parsed).
    Refused(HeadError, Option<Method>),
    /// A connection for hyper to serve, from the head just read.
    HandOff,
    /// The connection ended (closed by the client, or a read failed).
    Closed,
}

/// Waits for the next request, reads its head and builds the request (the body is read
/// from the connection as it is polled). `spans` is the allocation for the head's header
/// ranges, kept between requests (and given back once the request is built). `first`: the
/// connection's first request (h2c is recognised then).
pub async fn next_request<I: Transport>(
    shared: &Arc<Shared<I>>,
    max_head_bytes: usize,
    spans: &mut Spans,
    first: bool,
    head_arriving: impl Fn(),
) -> Next {
    let idle = shared.lock().buf.is_empty();
    if idle {
        // Nothing buffered: give the buffer up (to this thread's spares) and wait for bytes
        // without one.
        super::spare::give_head_buffer(std::mem::take(&mut shared.lock().buf));
        let ready = poll_fn(|cx| {
            let inner = shared.lock();
            match inner.io.as_ref() {
                Some(io) => io.poll_readable(cx),
                None => Poll::Ready(Err(closed())),
            }
        })
        .await;
        if ready.is_err() {
            return Next::Closed;
        }
    }
    let head = loop {
        {
            let inner = shared.lock();
            if !inner.buf.is_empty() {
                head_arriving();
                let parsed = head::parse_request(&inner.buf, max_head_bytes, spans);
                if first && inner.buf.starts_with(H2_PREFACE) {
                    return Next::HandOff;
                }
                match parsed {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(e) => {
                        let method = inner.buf[..]
                            .split(|&b| b == b' ')
                            .next()
                            .and_then(|m| Method::from_bytes(m).ok());
                        return Next::Refused(e, method);
                    }
                }
            }
        }
        let fill = poll_fn(|cx| {
            let mut inner = shared.lock();
            if inner.buf.capacity() == 0 {
                inner.buf = super::spare::head_buffer();
            }
            inner.poll_fill(cx, super::spare::HEAD)
        });
        match fill.await {
            Ok(0) | Err(_) => return Next::Closed,
            Ok(_) => {}
        }
    };
    if head.wants_upgrade || head.expect_continue {
        return Next::HandOff;
    }
    match build(shared, head) {
        Ok((req, asked, kept)) => {
            *spans = kept;
            Next::Request(req, asked)
        }
        Err(e) => Next::Refused(e, None),
    }
}

/// The request of `head` (at the front of the buffer), its body tied to the connection.
fn build<I: Transport>(
    shared: &Arc<Shared<I>>,
    mut head: RequestHead,
) -> Result<(Request<ClientBody>, Asked, Spans), HeadError> {
    let mut inner = shared.lock();
    let bytes = inner.buf.split_to(head.len).freeze();
    let method = Method::from_bytes(head.method.of(&bytes)).map_err(|_| HeadError::Malformed)?;
    let uri = head.uri(&bytes).ok_or(HeadError::Malformed)?;
    // Room for the headers the proxy adds (X-Forwarded-*, X-Real-IP, X-Request-ID): a map
    // that grows rehashes every entry.
    let mut headers = super::spare::take(head.headers.len() + ADDED_HEADERS);
    let mut trailers = false;
    let mut seen_length = false;
    let mut names = super::names::requests();
    for (i, (name, value)) in head.headers.iter().enumerate() {
        let name = names
            .name(i, name.of(&bytes))
            .map_err(|_| HeadError::Malformed)?;
        if name == header::CONTENT_LENGTH {
            // Repeated equal lengths (the parser refused unequal ones) are kept once.
            if seen_length {
                continue;
            }
            seen_length = true;
        }
        let value = value.of(&bytes);
        if name == header::TE && value.eq_ignore_ascii_case(b"trailers") {
            trailers = true;
        }
        let value = HeaderValue::from_maybe_shared(bytes.slice_ref(value))
            .map_err(|_| HeadError::Malformed)?;
        headers.append(name, value);
    }
    let asked = Asked {
        head: method == Method::HEAD,
        http11: head.http11,
        keep_alive: head.keep_alive,
        trailers,
    };
    inner.seq += 1;
    let body = match head.framing {
        Framing::Empty => {
            inner.body = BodyState::Done;
            ClientBody::Boxed(body::empty())
        }
        Framing::Length(n) => {
            inner.body = BodyState::Length(n);
            ClientBody::Boxed(body::boxed(RequestBody {
                shared: shared.clone(),
                seq: inner.seq,
            }))
        }
        Framing::Chunked => {
            inner.body = BodyState::Chunked;
            inner.chunked = Some(Box::default());
            ClientBody::Boxed(body::boxed(RequestBody {
                shared: shared.clone(),
                seq: inner.seq,
            }))
        }
    };
    drop(inner);
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = if head.http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *req.headers_mut() = headers;
    Ok((req, asked, head.headers))
}

/// Whether the request's body was read to its end (the connection can carry another
/// request).
pub fn body_done<I: Transport>(shared: &Shared<I>) -> bool {
    shared.lock().body == BodyState::Done
}

/// How a response body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, length unknown).
    Close,
}

/// Writes `resp` to the client. Returns whether the connection can carry another request
/// (the response was complete, and neither side asked to close).
pub async fn write_response<I: Transport>(
    shared: &Shared<I>,
    resp: Response<ProxyBody>,
    asked: Asked,
    closing: &AtomicBool,
) -> bool {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut keep = asked.keep_alive && !closing.load(Ordering::Relaxed);
    // One walk over the fields rather than a lookup (a hash and a probe) for each of these.
    let (mut length, mut dated) = (Length::Absent, false);
    // Whether the first `Content-Length` is a plain number (written as it is); otherwise the
    // one number a list says (`5, 5`), if any, is written in its place. A HEAD's answer is
    // read whatever its lengths say (hyper's client rule): lengths that disagree are not
    // passed on.
    let mut plain_length = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            if length == Length::Absent {
                plain_length = head::digits(value.as_bytes()).is_some();
            }
            length.add(value.as_bytes());
        } else if name == header::CONNECTION {
            if head::list_has(value.as_bytes(), b"close") {
                keep = false;
            }
        } else if name == header::DATE {
            dated = true;
        }
    }
    let declared = length.agreed();
    plain_length &= declared.is_some();
    let encoding = if asked.head || status < 200 || status == 204 || status == 304 {
        Encoding::None
    } else if let Some(n) = declared {
        Encoding::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        Encoding::Length(n)
    } else if asked.http11 {
        Encoding::Chunked
    } else {
        keep = false;
        Encoding::Close
    };
    // The head, and a small body with it: one allocation, one write.
    let small_body = body
        .size_hint()
        .exact()
        .filter(|&n| n <= 4096)
        .map_or(0, |n| n as usize);
    let mut out = Vec::with_capacity(512 + parts.headers.len() * 32 + small_body);
    if parts.status == http::StatusCode::OK {
        // Most responses: one copy of the whole line.
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // No `Content-Length` on a 1xx, 204 or 304, as hyper's server writes them (RFC 9110
    // section 8.6 forbids it on the first two; a 304's would only repeat a 200's).
    let lengthless = status < 200 || status == 204 || status == 304;
    let mut length_written = false;
    for (name, value) in &parts.headers {
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            // One line (an upstream's repeated equal lines are one length), and none where
            // the framing or the status has no place for it.
            if length_written
                || !plain_length
                || lengthless
                || matches!(encoding, Encoding::Chunked | Encoding::Close)
            {
                continue;
            }
            length_written = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // The length, when no plain field said it: the body's, or the one number a list said
    // (`5, 5`: RFC 9110 section 8.6). A HEAD's too: the length a GET's body would have had
    // (sluice's own answers know it), as hyper's server writes it; never an implied 0.
    let written_length = match encoding {
        Encoding::Length(n) => Some(n),
        Encoding::None if !lengthless => {
            declared.or_else(|| body.size_hint().exact().filter(|&n| n > 0))
        }
        _ => None,
    };
    match written_length {
        Some(n) if !plain_length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    if encoding == Encoding::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date::with(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    } else if !asked.http11 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // Written out: the map can serve another message.
    super::spare::give(parts.headers);
    if encoding == Encoding::None {
        drop(body);
        return shared.write_all(&mut [IoSlice::new(&out)]).await.is_ok()
            && shared.flush().await.is_ok()
            && keep;
    }
    let mut written = 0u64;
    let mut trailers: Option<HeaderMap> = None;
    let complete = loop {
        if let Encoding::Length(n) = encoding
            && written == n
            && body.is_end_stream()
        {
            break true;
        }
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing more yet: what is gathered goes out now.
                if !out.is_empty() {
                    if shared.write_all(&mut [IoSlice::new(&out)]).await.is_err() {
                        return false;
                    }
                    out.clear();
                }
                if shared.flush().await.is_err() {
                    return false;
                }
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break true,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed: closing the connection");
                break false;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                    continue;
                }
            },
        };
        if data.is_empty() {
            continue;
        }
        let len = data.len() as u64;
        let mut size_line = [0u8; 20];
        let size_line: &[u8] = match encoding {
            Encoding::Length(n) => {
                if written + len > n {
                    tracing::debug!("response body longer than its Content-Length: closing");
                    break false;
                }
                &[]
            }
            Encoding::Chunked => chunk_size_line(&mut size_line, data.len()),
            _ => &[],
        };
        written += len;
        let crlf: &[u8] = if encoding == Encoding::Chunked {
            b"\r\n"
        } else {
            b""
        };
        if out.len() + data.len() <= WRITE_GATHER {
            out.extend_from_slice(size_line);
            out.extend_from_slice(&data);
            out.extend_from_slice(crlf);
        } else {
            let mut bufs = [
                IoSlice::new(&out),
                IoSlice::new(size_line),
                IoSlice::new(&data),
                IoSlice::new(crlf),
            ];
            if shared.write_all(&mut bufs).await.is_err() {
                return false;
            }
            out.clear();
        }
    };
    let complete = complete
        && match encoding {
            Encoding::Length(n) => written == n,
            _ => true,
        };
    if complete && encoding == Encoding::Chunked {
        out.extend_from_slice(b"0\r\n");
        if let (Some(trailers), true) = (trailers, asked.trailers) {
            for (name, value) in &trailers {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    let sent = (out.is_empty() || shared.write_all(&mut [IoSlice::new(&out)]).await.is_ok())
        && shared.flush().await.is_ok();
    sent && complete && keep && encoding != Encoding::Close
}

/// Writes the answer to a refused head (the connection closes after it).
pub async fn refuse<I: Transport>(shared: &Shared<I>, error: HeadError) {
    let status =
        http::StatusCode::from_u16(error.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    let asked = Asked {
        head: false,
        http11: true,
        keep_alive: false,
        trailers: false,
    };
    write_response(shared, resp, asked, &AtomicBool::new(true)).await;
}

/// `{size:x}\r\n` into `buf`.
fn chunk_size_line(buf: &mut [u8; 20], size: usize) -> &[u8] {
    let mut digits = [0u8; 16];
    let mut n = size;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    buf[..len].copy_from_slice(&digits[i..]);
    buf[len..len + 2].copy_from_slice(b"\r\n");
    &buf[..len + 2]
}

/// The `Date` header's value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }

    /// Calls `f` with the current date as an IMF-fixdate.
    pub(super) fn with(f: impl FnOnce(&[u8])) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                let text = httpdate::fmt_http_date(now);
                if text.len() == 29 {
                    c.1.copy_from_slice(text.as_bytes());
                    c.0 = secs;
                }
            }
            f(&c.1);
        });
    }
}

/// A transport with bytes already read in front (a connection handed to hyper).
pub struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    /// `inner`, whose reads return `prefix` first.
    pub fn new(prefix: BytesMut, inner: I) -> Prefixed<I> {
        Prefixed {
            prefix: prefix.freeze(),
            inner,
        }
    }

    /// Whether the bytes in front are HTTP/2's connection preface (h2c by prior knowledge).
    pub fn is_h2(&self) -> bool {
        self.prefix.starts_with(H2_PREFACE)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through!(Prefixed);

impl<I: Transport> Shared<I> {
    /// The transport and unconsumed bytes, for hyper to continue the connection.
    pub fn hand_off(&self) -> Option<Prefixed<I>> {
        self.take().map(|(io, buf)| Prefixed::new(buf, io))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        assert_eq!(
            decode_chunked_body(b"5\r\nhello\r\n6;name=v\r\n world\r\n0\r\n\r\n"),
            Ok(b"hello world".to_vec())
        );
        assert_eq!(
            decode_chunked_body(b"A \r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n"),
            Ok(b"0123456789".to_vec())
        );
        // Leading zeros do not count against the size (as in hyper).
        assert_eq!(
            decode_chunked_body(b"00000000000000000001\r\nx\r\n0\r\n\r\n"),
            Ok(b"x".to_vec())
        );
        // Incomplete at the client's close: failed.
        assert!(decode_chunked_body(b"5\r\nhel").is_err());
    }

    #[test]
    fn malformed_chunked_framing_is_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5;a\nb\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n\r\r",
        ] {
            assert!(
                decode_chunked_body(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunk_size_lines() {
        let mut b = [0; 20];
        assert_eq!(chunk_size_line(&mut b, 0), b"0\r\n");
        assert_eq!(chunk_size_line(&mut b, 255), b"ff\r\n");
        assert_eq!(chunk_size_line(&mut b, 0x10000), b"10000\r\n");
    }
}
