//! Serving one accepted connection: plain HTTP (HTTP/1.1 or h2c) or TLS (handshake, then
//! HTTP/1.1 or HTTP/2 by ALPN), until it closes, times out (see `activity`), is evicted by the
//! connection limit, or shutdown completes it. A connection from a peer listed in
//! `ProxyConfig::proxy_protocol` first gives its PROXY protocol header (`proxy_protocol`),
//! whose client replaces the TCP peer.
//!
//! The connection's bytes pass through [`Watched`], which runs the HTTP/1.1 framing pre-parse
//! (`prescan`) as they are read: it tells the connection's [`Activity`] when a request head
//! starts arriving (for the header timeout) and which request carried both `Content-Length`
//! and `Transfer-Encoding` (answered 400).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use http::{Request, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::UpgradeableConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Proxy;
use super::activity::{Activity, Expiry, RequestGuard, Timeouts, Wake};
use super::body::{ClientBody, ProxyBody};
use super::config::Http1Engine;
use super::conn::{ConnGuard, ConnInfo, ConnTracker, Entrypoint};
use super::error::ProxyError;
use super::h1::server::{self as h1, Asked, Next, Shared, Transport};
use super::passthrough::{self, Recorded};
use super::prescan::HeadScanner;
use super::proxy_protocol::{self, Header};
use super::streams::{StreamExec, WithStreams};

/// How a TLS connection's handshake ended: terminated by sluice, or to be passed through to
/// the backend at this index (with the ClientHello's bytes recorded).
#[expect(
    clippy::large_enum_variant,
    reason = "lives only from the handshake to the match below; boxing would cost every TLS connection an allocation"
)]
enum Handshake {
    Terminated(tokio_rustls::server::TlsStream<Recorded<TcpStream>>),
    Passthrough(usize, Recorded<TcpStream>),
}

/// Marks a request whose head carried both `Content-Length` and `Transfer-Encoding` (seen by
/// the pre-parse; hyper has removed the length by then).
#[derive(Clone, Copy, Debug)]
pub(super) struct AmbiguousFraming;

impl Proxy {
    /// Serves one accepted plain-HTTP connection (HTTP/1.1, or h2c with prior knowledge) until
    /// it closes or shutdown completes it.
    pub async fn serve_http(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let entered = tracker.enter_client(Entrypoint::Http, "http");
        self.serve_http_entered(tracker, stream, peer, None, entered)
            .await;
    }

    /// [`Proxy::serve_http`] for a connection already counted by the accept loop, which
    /// passes the listener's address as `local` (else it is asked of the socket).
    ///
    /// Not an `async fn`: the returned future is the connection task's, and its size (its
    /// largest state) is held for the connection's whole life. The common case (no PROXY
    /// protocol header, sluice's HTTP/1.1 server) is set up here and returns the server's
    /// future itself; the other cases are boxed.
    pub(super) fn serve_http_entered(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        stream: TcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        (guard, activity): (ConnGuard, Arc<Activity>),
    ) -> impl Future<Output = ()> + Send + 'static {
        let local = local_addr(local, &stream, peer);
        let _ = stream.set_nodelay(true);
        if self.expects_proxy_header(peer) || self.config.http1 != Http1Engine::Sluice {
            let general = self.serve_http_general(tracker, stream, peer, local, guard, activity);
            return Either::Left(Box::pin(general));
        }
        let info = plain_info(&tracker, peer, local);
        let shared = Arc::new(Shared::new(stream));
        // Boxed: the task then holds a pointer, and tokio's moves of the task's future (into
        // its cell as it is spawned, and of the cell's stage as the task ends: eight copies)
        // copy that rather than the whole future.
        Either::Right(Box::pin(
            self.serve_h1(tracker, shared, info, activity, guard),
        ))
    }

    /// [`Proxy::serve_http_entered`] with a PROXY protocol header to read first, or on
    /// hyper's HTTP/1.1 server.
    async fn serve_http_general(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        mut stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        guard: ConnGuard,
        activity: Arc<Activity>,
    ) {
        let Some((peer, local)) = self
            .proxied(&mut stream, peer, local, Entrypoint::Http, &activity)
            .await
        else {
            return;
        };
        let info = plain_info(&tracker, peer, local);
        if self.config.http1 == Http1Engine::Sluice {
            let shared = Arc::new(Shared::new(stream));
            self.serve_h1(tracker, shared, info, activity, guard).await;
        } else {
            self.serve_io(tracker, stream, info, activity, false).await;
            drop(guard);
        }
    }

    /// Serves one accepted TLS connection: handshake (bounded by the handshake timeout and
    /// the client header timeout), then HTTP/1.1 or HTTP/2 as negotiated by ALPN.
    pub async fn serve_tls(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let entered = tracker.enter_client(Entrypoint::Https, "tls");
        self.serve_tls_entered(tracker, acceptor, stream, peer, None, entered)
            .await;
    }

    /// [`Proxy::serve_tls`] for a connection already counted by the accept loop (`local`: as
    /// for [`Proxy::serve_http_entered`]).
    pub(super) async fn serve_tls_entered(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        acceptor: tokio_rustls::TlsAcceptor,
        mut stream: TcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        (guard, activity): (ConnGuard, Arc<Activity>),
    ) {
        let local = local_addr(local, &stream, peer);
        let _ = stream.set_nodelay(true);
        let (peer, local) = if self.expects_proxy_header(peer) {
            let proxied =
                Box::pin(self.proxied(&mut stream, peer, local, Entrypoint::Https, &activity));
            match proxied.await {
                Some(addrs) => addrs,
                None => return,
            }
        } else {
            (peer, local)
        };
        let limit = self
            .config
            .tls_handshake_timeout
            .min(self.config.client_header_timeout);
        // With a passthrough backend in the table, the ClientHello is read first (and kept)
        // to decide between splicing and terminating; both halves share one deadline.
        let snapshot = self.snapshot.load_full();
        let lazy = snapshot.passthrough;
        let io = Recorded::new(stream, lazy);
        let handshake = tokio::time::timeout(limit, async {
            if !lazy {
                return acceptor.accept(io).await.map(Handshake::Terminated);
            }
            let mut start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
                    .await?;
            if let Some(index) = passthrough::target(&snapshot, &start.client_hello()) {
                return Ok(Handshake::Passthrough(index, start.io));
            }
            start.io.stop_recording();
            start
                .into_stream(acceptor.config().clone())
                .await
                .map(Handshake::Terminated)
        });
        let handshake = tokio::select! {
            done = handshake => match done {
                Ok(Ok(done)) => done,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    metrics::counter!("sluice_tls_handshake_errors_total", "reason" => "error")
                        .increment(1);
                    return;
                }
                Err(_) => {
                    metrics::counter!("sluice_tls_handshake_errors_total", "reason" => "timeout")
                        .increment(1);
                    return;
                }
            },
            () = activity.evicted() => {
                count_closed(Entrypoint::Https, Expiry::Evicted);
                return;
            }
        };
        let tls = match handshake {
            Handshake::Terminated(tls) => tls,
            Handshake::Passthrough(index, client) => {
                return self
                    .splice(passthrough::Splice {
                        snapshot,
                        index,
                        client,
                        peer,
                        tracker,
                        activity,
                        guard,
                    })
                    .await;
            }
        };
        drop(snapshot);
        if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_ACME_TLS) {
            // A TLS-ALPN-01 validation: the handshake was the answer; never serve HTTP on it.
            metrics::counter!("sluice_acme_challenges_answered_total", "type" => "tls-alpn-01")
                .increment(1);
            let mut tls = tls;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            return;
        }
        let (_, session) = tls.get_ref();
        let sni = session.server_name().map(str::to_ascii_lowercase);
        let h2 = session.alpn_protocol() == Some(crate::tls::ALPN_H2);
        if h2 {
            activity.set_h2();
        }
        let info = Arc::new(ConnInfo::new(
            peer,
            local,
            Entrypoint::Https,
            sni,
            tracker.clone(),
        ));
        if !h2 && self.config.http1 == Http1Engine::Sluice {
            let shared = Arc::new(Shared::new(tls));
            self.serve_h1(tracker, shared, info, activity, guard).await;
        } else {
            let hyper = Box::pin(self.serve_io(tracker, tls, info, activity, h2));
            hyper.await;
            drop(guard);
        }
    }

    /// Whether a connection from `peer` starts with a PROXY protocol header.
    fn expects_proxy_header(&self, peer: SocketAddr) -> bool {
        self.config
            .proxy_protocol
            .iter()
            .any(|c| c.contains(peer.ip()))
    }

    /// The connection's client and the address it connected to: from the PROXY protocol
    /// header when the TCP peer is one of [`ProxyConfig::proxy_protocol`](super::ProxyConfig)
    /// (read exactly, within the TLS handshake timeout and the client header timeout), else
    /// the TCP peer and local address. `None` when the header is missing, invalid or late, or
    /// the connection is evicted meanwhile: the caller closes the connection.
    async fn proxied(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        entrypoint: Entrypoint,
        activity: &Activity,
    ) -> Option<(SocketAddr, SocketAddr)> {
        if !self.expects_proxy_header(peer) {
            return Some((peer, local));
        }
        let limit = self
            .config
            .tls_handshake_timeout
            .min(self.config.client_header_timeout);
        let read = tokio::time::timeout(limit, proxy_protocol::read_header(stream));
        let error = tokio::select! {
            read = read => match read {
                Ok(Ok(Header::Proxied { source, destination })) => {
                    tracing::trace!(%peer, client = %source, "PROXY protocol header");
                    return Some((source, destination));
                }
                Ok(Ok(Header::Unproxied)) => return Some((peer, local)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, entrypoint = entrypoint.as_str(), error = %e, "PROXY protocol header refused: closing");
                    e.reason()
                }
                Err(_) => {
                    tracing::debug!(%peer, entrypoint = entrypoint.as_str(), "no PROXY protocol header in time: closing");
                    "timeout"
                }
            },
            () = activity.evicted() => {
                count_closed(entrypoint, Expiry::Evicted);
                return None;
            }
        };
        metrics::counter!("sluice_proxy_protocol_errors_total", "entrypoint" => entrypoint.as_str(), "reason" => error)
            .increment(1);
        None
    }

    /// Runs hyper over `io` with the connection's timeouts. `h2`: HTTP/2 from the start (by
    /// ALPN, or h2c's preface read by sluice's server); otherwise
    /// the HTTP/1.1 framing pre-parse runs over the bytes read (h2c is still recognised).
    async fn serve_io<I>(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        io: I,
        info: Arc<ConnInfo>,
        activity: Arc<Activity>,
        h2: bool,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let entrypoint = info.entrypoint;
        let io = TokioIo::new(Watched {
            inner: io,
            scanner: (!h2).then(HeadScanner::new),
            activity: activity.clone(),
        });
        let proxy = self.clone();
        let svc_activity = activity.clone();
        // The service's future is held inline: in the connection's future for HTTP/1.1, in
        // the stream's (boxed once by `streams`) for HTTP/2. Boxing it as well, which paid
        // when each stream was a task moved through the task's stages, measured the same
        // on the connection's task (60 407 against 60 185 instructions per request, one
        // allocation more, no wall-clock difference).
        let svc = service_fn(move |req: Request<Incoming>| {
            let (proxy, info, guard, req) = started(&proxy, &info, &svc_activity, req);
            respond(proxy, info, guard, req)
        });
        if h2 {
            // The streams run on this task, not one task each (`streams`).
            let exec = StreamExec::default();
            let conn = pin!(self.h2_server(exec.clone()).serve_connection(io, svc));
            let conn = pin!(WithStreams::new(
                conn,
                hyper::server::conn::http2::Connection::graceful_shutdown,
                exec,
            ));
            self.drive(
                conn,
                WithStreams::graceful_shutdown,
                &tracker,
                &activity,
                entrypoint,
            )
            .await;
        } else {
            let conn = pin!(self.server.serve_connection_with_upgrades(io, svc));
            self.drive(
                conn,
                UpgradeableConnection::graceful_shutdown,
                &tracker,
                &activity,
                entrypoint,
            )
            .await;
        }
    }

    /// Serves an HTTP/1.1 connection with sluice's own server (`h1::server`), under the same
    /// timeouts, connection limit and shutdown as hyper's; what it leaves to hyper (upgrades,
    /// `Expect: 100-continue`, h2c) continues on hyper with the bytes already read.
    async fn serve_h1<I: Transport>(
        self: Arc<Self>,
        tracker: Arc<ConnTracker>,
        shared: Arc<Shared<I>>,
        info: Arc<ConnInfo>,
        activity: Arc<Activity>,
        guard: ConnGuard,
    ) {
        let entrypoint = info.entrypoint;
        let closing = AtomicBool::new(false);
        let timeouts = Timeouts {
            header: self.config.client_header_timeout,
            idle: self.config.idle_timeout,
        };
        // Timeouts and shutdown come through the activity (the tracker's sweep), not a timer
        // and a signal receiver of this connection's own: both would take room in its task
        // for its whole life.
        tracker.sweep_timeouts(&activity, timeouts);
        let hand_off = {
            let mut conn = pin!(self.h1_requests(&shared, &info, &activity, &closing));
            // Serving, until the connection ends or something asks it to stop.
            let mut grace = None;
            let mut ended = None;
            tokio::select! {
                // The wake first: a connection accepted as shutdown began serves nothing.
                biased;
                woken = activity.woken() => match woken {
                    Wake::Shutdown => {}
                    Wake::Expired(why) => {
                        count_closed(entrypoint, why);
                        match why {
                            // Dropping the connection closes it.
                            Expiry::FirstRequest | Expiry::Header => ended = Some(false),
                            // The request in progress finishes first (bounded).
                            Expiry::Idle | Expiry::Evicted => {
                                grace = Some(timeouts.header.min(Duration::from_secs(5)));
                            }
                        }
                    }
                },
                hand_off = conn.as_mut() => ended = Some(hand_off),
            }
            match ended {
                Some(hand_off) => hand_off,
                None => {
                    // Stopping: an idle connection closes now; a request in progress
                    // finishes first (the connection closes after it).
                    closing.store(true, Ordering::Relaxed);
                    if activity.state().active > 0 {
                        // Boxed: rare, and its timers would otherwise take room in the
                        // connection's future for its whole life.
                        let finish = Box::pin(async {
                            tokio::select! {
                                _ = conn.as_mut() => {}
                                () = tokio::time::sleep(grace.unwrap_or(Duration::MAX)) => {}
                                () = tracker.forced() => {}
                            }
                        });
                        finish.await;
                    }
                    false
                }
            }
        };
        if hand_off && let Some(io) = shared.hand_off() {
            // h2c by prior knowledge is served as HTTP/2 from the start (its streams on this
            // task), as a connection that chose h2 by ALPN is.
            let h2c = io.is_h2();
            if h2c {
                activity.set_h2();
            }
            let hyper = Box::pin(self.serve_io(tracker, io, info, activity, h2c));
            hyper.await;
        } else {
            shared.close().await;
        }
        drop(guard);
    }

    /// The requests of one lean HTTP/1.1 connection, in turn. `true`: the connection is for
    /// hyper from here on.
    async fn h1_requests<I: Transport>(
        &self,
        shared: &Arc<Shared<I>>,
        info: &ConnInfo,
        activity: &Arc<Activity>,
        closing: &AtomicBool,
    ) -> bool {
        let max_head = self.config.max_header_bytes.max(8192);
        let mut spans = h1::KeptSpans::new();
        let mut first = true;
        loop {
            // The exchange (or the refusal) is boxed, and the request it is built from is
            // scoped to this block: this future, held for the connection's whole life, keeps
            // only what waiting for the next head needs.
            let (exchange, served) = {
                let next = h1::next_request(shared, max_head, &mut spans, first, || {
                    activity.set_head_arriving(true);
                })
                .await;
                first = false;
                match next {
                    Next::Request(req, asked) => {
                        activity.heads_completed(1, false);
                        activity.request_started();
                        let guard = RequestGuard(activity.clone());
                        let exchange: Exchange<'_> = Box::pin(async move {
                            let resp = self.handle(info, req).await;
                            let keep = h1::write_response(shared, resp, asked, closing).await;
                            drop(guard);
                            keep
                        });
                        (exchange, true)
                    }
                    Next::HandOff => return true,
                    Next::Closed => return false,
                    Next::Refused(e, method) => (
                        self.h1_refused(shared, info, activity, closing, e, method),
                        false,
                    ),
                }
            };
            let keep = exchange.await;
            if !served || !keep || closing.load(Ordering::Relaxed) || !h1::body_done(shared) {
                return false;
            }
        }
    }

    /// The answer to a refused HTTP/1.1 head; the connection closes after it.
    fn h1_refused<'a, I: Transport>(
        &'a self,
        shared: &'a Arc<Shared<I>>,
        info: &'a ConnInfo,
        activity: &'a Arc<Activity>,
        closing: &'a AtomicBool,
        e: super::h1::head::HeadError,
        method: Option<http::Method>,
    ) -> Exchange<'a> {
        tracing::debug!(peer = %info.peer, error = ?e, "HTTP/1.1 request head refused");
        if e != super::h1::head::HeadError::Ambiguous {
            return Box::pin(async move {
                h1::refuse(shared, e).await;
                false
            });
        }
        // As hyper's path answers it (the pre-parse's rule), counted as a request.
        activity.heads_completed(1, true);
        activity.request_started();
        let guard = RequestGuard(activity.clone());
        let error = ProxyError::BadRequest("both Content-Length and Transfer-Encoding");
        if let Some(method) = method {
            // Counted as hyper's path counts it (a request no backend answered).
            self.record(
                info,
                &method,
                &self.unrouted,
                Some(error.label()),
                http::StatusCode::BAD_REQUEST,
                std::time::Instant::now(),
            );
        }
        let resp = error.into_response();
        let asked = Asked {
            head: false,
            http11: true,
            keep_alive: false,
            trailers: false,
        };
        Box::pin(async move {
            h1::write_response(shared, resp, asked, closing).await;
            drop(guard);
            false
        })
    }

    /// Drives one connection (`graceful` starts its graceful shutdown) until it ends, times
    /// out, or shutdown completes it.
    async fn drive<C, E>(
        &self,
        mut conn: Pin<&mut C>,
        graceful: fn(Pin<&mut C>),
        tracker: &ConnTracker,
        activity: &Activity,
        entrypoint: Entrypoint,
    ) where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let timeouts = Timeouts {
            header: self.config.client_header_timeout,
            idle: self.config.idle_timeout,
        };
        let mut shutdown = tracker.shutdown_signal();
        if *shutdown.borrow_and_update() {
            graceful(conn.as_mut());
        }
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection error");
                }
                return;
            }
            _ = shutdown.changed() => graceful(conn.as_mut()),
            why = activity.expired(timeouts) => {
                count_closed(entrypoint, why);
                match why {
                    // Dropping the connection closes it.
                    Expiry::FirstRequest | Expiry::Header => return,
                    // No request in progress: HTTP/1.1 closes at once, HTTP/2 sends GOAWAY
                    // and closes when the client has seen it (bounded below).
                    Expiry::Idle | Expiry::Evicted => graceful(conn.as_mut()),
                }
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = tokio::time::sleep(timeouts.header.min(Duration::from_secs(5))) => {}
                    () = tracker.forced() => {}
                }
                return;
            }
        }
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection error during shutdown");
                }
            }
            // Grace period over: dropping the connection closes it.
            () = tracker.forced() => {}
        }
    }
}

/// One request's exchange on a lean HTTP/1.1 connection, boxed: `true` when the connection
/// can carry another request.
type Exchange<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// A request's start on its connection: counted in progress (until the guard drops with the
/// response body), and marked when its HTTP/1.1 head had ambiguous framing.
fn started(
    proxy: &Arc<Proxy>,
    info: &Arc<ConnInfo>,
    activity: &Arc<Activity>,
    mut req: Request<Incoming>,
) -> (Arc<Proxy>, Arc<ConnInfo>, RequestGuard, Request<Incoming>) {
    let index = activity.request_started();
    let guard = RequestGuard(activity.clone());
    if req.version() == Version::HTTP_2 {
        activity.set_h2();
    } else if activity.is_ambiguous(index) {
        req.extensions_mut().insert(AmbiguousFraming);
    }
    (proxy.clone(), info.clone(), guard, req)
}

/// The response to one request, its body holding the request's guard.
async fn respond(
    proxy: Arc<Proxy>,
    info: Arc<ConnInfo>,
    guard: RequestGuard,
    req: Request<Incoming>,
) -> Result<http::Response<Guarded>, Infallible> {
    let resp = proxy.handle(&info, req.map(ClientBody::Hyper)).await;
    Ok(resp.map(|body| Guarded {
        inner: body,
        _guard: guard,
    }))
}

/// Serves one connection of another HTTP service (the admin API) with the proxy's connection
/// timeouts: `client_header_timeout` from the accept to the first request and for each
/// request head, `idle_timeout` between requests (HTTP/2: GOAWAY). Returns when the
/// connection ends, times out, or `shutdown` turns true (then in-flight requests finish
/// first).
pub async fn serve_with_timeouts<S, B>(
    stream: TcpStream,
    service: S,
    client_header_timeout: Duration,
    idle_timeout: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = http::Response<B>>
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<super::body::BoxError>,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<super::body::BoxError>,
{
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let service = Arc::new(service);
    let svc_activity = activity.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        svc_activity.request_started();
        let guard = RequestGuard(svc_activity.clone());
        if req.version() == Version::HTTP_2 {
            svc_activity.set_h2();
        }
        let call = service.call(req);
        async move {
            call.await.map(|resp| {
                resp.map(|body| Guarded {
                    inner: body,
                    _guard: guard,
                })
            })
        }
    });
    let io = Watched {
        inner: stream,
        scanner: Some(HeadScanner::new()),
        activity: activity.clone(),
    };
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(client_header_timeout.max(idle_timeout));
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), svc));
    let timeouts = Timeouts {
        header: client_header_timeout,
        idle: idle_timeout,
    };
    if *shutdown.borrow_and_update() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.changed() => conn.as_mut().graceful_shutdown(),
        why = activity.expired(timeouts) => match why {
            Expiry::FirstRequest | Expiry::Header => return,
            Expiry::Idle | Expiry::Evicted => conn.as_mut().graceful_shutdown(),
        },
    }
    tokio::select! {
        _ = conn => {}
        () = tokio::time::sleep(client_header_timeout.min(Duration::from_secs(5))) => {}
    }
}

/// What a plain-HTTP connection's requests are told about it.
/// The connection's local address: the listener's when the accept loop knows it, else the
/// socket's.
fn local_addr(known: Option<SocketAddr>, stream: &TcpStream, peer: SocketAddr) -> SocketAddr {
    known.unwrap_or_else(|| stream.local_addr().unwrap_or(peer))
}

fn plain_info(tracker: &Arc<ConnTracker>, peer: SocketAddr, local: SocketAddr) -> Arc<ConnInfo> {
    Arc::new(ConnInfo::new(
        peer,
        local,
        Entrypoint::Http,
        None,
        tracker.clone(),
    ))
}

/// Counts a connection closed by a timeout or by the connection limit.
fn count_closed(entrypoint: Entrypoint, why: Expiry) {
    if why == Expiry::Evicted {
        metrics::counter!("sluice_connections_evicted_total", "entrypoint" => entrypoint.as_str())
            .increment(1);
    } else {
        metrics::counter!("sluice_connection_timeouts_total", "entrypoint" => entrypoint.as_str(), "phase" => why.label())
            .increment(1);
    }
}

/// A response body that keeps its request counted as in progress on the connection until
/// the body has been sent (or dropped).
pub struct Guarded<B = ProxyBody> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> std::fmt::Debug for Guarded<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").finish_non_exhaustive()
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection's I/O, with the HTTP/1.1 framing pre-parse over the bytes read.
struct Watched<I> {
    inner: I,
    /// `None` for HTTP/2 (by ALPN) and once the pre-parse has stopped.
    scanner: Option<HeadScanner>,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(scanner)) = (&res, this.scanner.as_mut()) {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                let scan = scanner.feed(read);
                if scan.completed > 0 {
                    this.activity
                        .heads_completed(scan.completed, scan.ambiguous);
                }
                if scan.h2 {
                    this.activity.set_h2();
                }
                this.activity.set_head_arriving(scanner.in_head());
                if scanner.is_stopped() {
                    this.scanner = None;
                }
            }
        }
        res
    }
}

write_through!(Watched);
