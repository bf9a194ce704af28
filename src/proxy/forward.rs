//! Forwarding: pick an endpoint, send the prepared request (retrying it on another endpoint
//! as its retry policy says: a request without a body, or with a small body read whole
//! first), and turn the
//! upstream response into ours: a WebSocket tunnel for a 101, else the response with its
//! hop-by-hop headers stripped and a body that releases the endpoint and its pooled
//! connection when it ends ([`Tracked`]).

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::Proxy;
use super::balance::{Conns, EndpointState, InFlight};
use super::body::{self, ProxyBody};
use super::conn::{self, ConnInfo};
use super::error::ProxyError;
use super::headers;
use super::pool::{self, Checkout};
use super::snapshot::Upstream;
use crate::model::RetryPolicy;

/// The largest request body (by `Content-Length`) read whole before forwarding so that the
/// request can be tried again on another endpoint; larger bodies stream and are not retried.
pub(super) const RETRY_BODY_LIMIT: u64 = 64 * 1024;

/// The retry policy of a route without `proxy-next-upstream` annotations.
static DEFAULT_RETRY: std::sync::LazyLock<RetryPolicy> =
    std::sync::LazyLock::new(RetryPolicy::default);

/// A request ready to go upstream (built by the prepare phase).
pub(super) struct Outgoing {
    pub(super) method: Method,
    /// The request target (origin form).
    pub(super) path_and_query: PathAndQuery,
    /// The rewritten headers.
    pub(super) headers: HeaderMap,
    /// The body; taken by the first attempt.
    pub(super) body: Option<ProxyBody>,
    /// `X-Request-Id`, copied onto the response.
    pub(super) request_id: HeaderValue,
    /// Headers the proxy adds that are not in `headers`: sluice's HTTP/1.1 client writes
    /// them (another client gets them inserted).
    pub(super) added: Option<headers::Added>,
    /// The client side of a WebSocket upgrade, when the request asks for one.
    pub(super) client_upgrade: Option<OnUpgrade>,
    /// Whether a second attempt on another endpoint is allowed (no body, or a buffered one).
    pub(super) retryable: bool,
    /// The body is small and of declared length: read it whole before the first attempt so
    /// that another attempt can resend it.
    pub(super) buffer_body: bool,
    /// How the endpoint is chosen when not by the balancer alone.
    pub(super) sticky: Sticky,
    /// Request body bytes sent (counted for the access log only).
    pub(super) bytes_in: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// Endpoint choice bound to the request (`affinity: cookie`, `upstream-hash-by`).
pub(super) enum Sticky {
    /// The balancer decides.
    None,
    /// Rendezvous hashing of this key.
    Hash(u64),
    /// The endpoint the affinity cookie names, if usable; a response from another endpoint
    /// sets the cookie.
    Cookie {
        affinity: std::sync::Arc<crate::model::Affinity>,
        /// The cookie's value in the request.
        current: Option<String>,
        /// `Path` of the cookie.
        path: String,
        /// Send it `Secure`.
        secure: bool,
    },
}

impl Sticky {
    /// The `Set-Cookie` to add when `endpoint` answered, if the client's cookie does not
    /// already name it.
    fn set_cookie(&self, endpoint: &EndpointState) -> Option<HeaderValue> {
        let Sticky::Cookie {
            affinity: a,
            current,
            path,
            secure,
        } = self
        else {
            return None;
        };
        let value = format!("{:016x}", endpoint.key());
        if current.as_deref() == Some(value.as_str()) {
            return None;
        }
        let mut c = format!("{}={value}; Path={path}; HttpOnly", a.cookie);
        if let Some(age) = a.max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if let Some(d) = &a.domain {
            c.push_str(&format!("; Domain={d}"));
        }
        if *secure || a.samesite.as_deref() == Some("None") {
            c.push_str("; Secure");
        }
        if let Some(s) = &a.samesite {
            c.push_str(&format!("; SameSite={s}"));
        }
        HeaderValue::from_str(&c).ok()
    }
}

impl Proxy {
    /// Sends `out` to an endpoint of `upstream` and returns the response to send back.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of `out` in its future (see the body)"
    )]
    pub(super) fn forward(
        &self,
        conn: &ConnInfo,
        upstream: &Upstream,
        mut out: Outgoing,
    ) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send {
        // An async block rather than an async fn: an async fn moves its arguments into
        // locals, so `out` (about 500 bytes) had two slots in the future, which every
        // future around it carries and copies.
        async move {
            let version = if upstream.settings.protocol.is_h2() {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            let body_timeout = upstream
                .settings
                .read_timeout
                .unwrap_or(self.config.read_timeout);
            let mut read_timeout = body_timeout;
            // A gRPC call's `grpc-timeout` is its deadline here too: for the response head, and
            // then for the whole response (cut with DEADLINE_EXCEEDED trailers).
            let grpc_deadline = if version == Version::HTTP_2 {
                super::grpc::timeout(&out.headers).map(|t| {
                    read_timeout = read_timeout.min(t);
                    tokio::time::Instant::now() + t
                })
            } else {
                None
            };
            let policy = upstream.settings.retry.as_deref().unwrap_or(&DEFAULT_RETRY);
            let attempts = if out.retryable {
                usize::try_from(policy.attempts)
                    .unwrap_or(usize::MAX)
                    .min(upstream.balancer.endpoints().len())
                    .max(1)
            } else {
                1
            };
            // A small body of a retryable request is read whole first, to be resent.
            let replay = if out.buffer_body {
                let taken = out.body.take().unwrap_or_else(body::empty);
                Some(Box::pin(read_whole(taken)).await?)
            } else {
                None
            };
            upstream.retry_budget.deposit();
            // Read only when there is a time limit (a clock read per request otherwise).
            let first_at = policy.total.map(|t| (std::time::Instant::now(), t));
            // Whether one more try may follow this one: tries left, the time limit, the budget.
            let may_retry = |attempt: usize| {
                attempt + 1 < attempts
                    && first_at.is_none_or(|(at, t)| at.elapsed() < t)
                    && upstream.retry_budget.withdraw()
            };
            let mut avoid = None;
            let mut last_error = None;
            let mut attempt = 0;
            let (endpoint, inflight, resp, checkout, sent_at) = loop {
                let chosen = match &out.sticky {
                    Sticky::Cookie {
                        current: Some(v), ..
                    } => upstream
                        .balancer
                        .by_cookie(v, avoid)
                        .or_else(|| upstream.balancer.pick(avoid)),
                    Sticky::Hash(key) => upstream.balancer.pick_hashed(*key, avoid),
                    _ => upstream.balancer.pick(avoid),
                };
                let Some(endpoint) = chosen else {
                    // No other endpoint to retry on: answer with what the last try got.
                    return Err(last_error.unwrap_or(ProxyError::NoEndpoints));
                };
                let last = attempt + 1 >= attempts;
                if let Some(bytes) = &replay {
                    out.body = Some(body::full(bytes.clone()));
                }
                let mut upreq = upstream_request(upstream, endpoint, &mut out, version, last)?;
                let inflight = endpoint.start();
                let sent_at = self.config.access_log.then(std::time::Instant::now);
                // `proxy-send-timeout`: the upstream must keep taking the request body.
                let progress = match upstream.settings.send_timeout {
                    Some(limit) if !upreq.body().is_end_stream() => {
                        let taken = std::mem::replace(upreq.body_mut(), body::empty());
                        let (watched, progress) = body::watched(taken, super::clock::now_ms);
                        *upreq.body_mut() = watched;
                        Some((progress, limit))
                    }
                    _ => None,
                };
                // One clock read for the attempt: the response's deadline and the pool's idle
                // check both start from it.
                let at = tokio::time::Instant::now();
                // One exchange future, pinned where it is and polled through references (an
                // exchange moved into a `select!` or a second await point would take its room
                // twice in this future, which every request moves and copies).
                let send = pin!(self.send_upstream(
                    upstream,
                    endpoint,
                    upreq,
                    out.added.as_ref(),
                    at.into_std()
                ));
                let stall = pin!(async {
                    match &progress {
                        Some((progress, limit)) => stalled(progress, *limit).await,
                        None => std::future::pending().await,
                    }
                });
                let sent = tokio::time::timeout_at(at + read_timeout, async {
                    match futures::future::select(send, stall).await {
                        futures::future::Either::Left((sent, _)) => sent,
                        futures::future::Either::Right(((), _)) => {
                            Err((ProxyError::UpstreamTimeout, false))
                        }
                    }
                })
                .await;
                let err = match sent {
                    Ok(Ok((resp, checkout))) => {
                        let status = resp.status();
                        if status.is_server_error() {
                            endpoint.record_failure(&self.config.outlier);
                        } else {
                            endpoint.record_success();
                        }
                        // `proxy-next-upstream: http_5xx...`: this answer is dropped (its
                        // connection with it) and the request tried on another endpoint.
                        if policy.statuses.contains(&status.as_u16()) && may_retry(attempt) {
                            self.count_retry(upstream, "status");
                            avoid = Some(endpoint.addr);
                            out.body = Some(body::empty());
                            last_error = Some(ProxyError::UpstreamRefused(format!(
                                "{} answered {status}",
                                endpoint.addr
                            )));
                            attempt += 1;
                            continue;
                        }
                        break (endpoint, inflight, resp, checkout, sent_at);
                    }
                    Err(_) => ProxyError::UpstreamTimeout,
                    Ok(Err((err, is_connect))) => {
                        if is_connect {
                            metrics::counter!("sluice_upstream_connect_errors_total", "service" => upstream.stats.service.clone()).increment(1);
                            if matches!(err, ProxyError::UpstreamRefused(_)) {
                                endpoint.mark_down();
                            }
                        }
                        err
                    }
                };
                let (counts, retry) = match &err {
                    // The client's request body failed, or was too large: not the endpoint's
                    // doing, and nothing to try again.
                    ProxyError::BadRequest(_)
                    | ProxyError::BodyTooLarge
                    | ProxyError::ClientTimeout => (false, false),
                    ProxyError::UpstreamTimeout => (true, policy.on_timeout),
                    _ => (true, policy.on_error),
                };
                if counts {
                    endpoint.record_failure(&self.config.outlier);
                }
                if retry && may_retry(attempt) {
                    self.count_retry(upstream, err.label());
                    avoid = Some(endpoint.addr);
                    out.body = Some(body::empty());
                    last_error = Some(err);
                    attempt += 1;
                    continue;
                }
                return Err(err);
            };
            endpoint.mark_up();
            let cookie = out.sticky.set_cookie(endpoint);
            let logged = sent_at.map(|at| super::access::UpstreamInfo {
                addr: endpoint.addr,
                head_time: at.elapsed(),
                retries: u32::try_from(attempt).unwrap_or(u32::MAX),
                bytes_in: out.bytes_in.clone(),
            });
            let mut resp = respond(conn, out, resp, inflight, checkout, body_timeout)?;
            if let Some(c) = cookie {
                resp.headers_mut().append(http::header::SET_COOKIE, c);
            }
            if let Some(at) = grpc_deadline {
                resp = resp.map(|b| super::grpc::with_deadline(b, at));
            }
            if let Some(info) = logged {
                resp.extensions_mut().insert(info);
            }
            Ok(resp)
        }
    }

    /// Counts a retry (`sluice_upstream_retries_total`).
    fn count_retry(&self, upstream: &Upstream, reason: &'static str) {
        metrics::counter!("sluice_upstream_retries_total", "service" => upstream.stats.service.clone(), "reason" => reason).increment(1);
    }

    /// One exchange with one endpoint: the response, and the pooled HTTP/1.1 connection that
    /// carries its body (hyper's client). The error says whether it was a connect error
    /// (nothing sent). A plain-HTTP/1.1 request on sluice's client is that client's future
    /// itself; the others (hyper's engine, TLS, HTTP/2, upgrades) are boxed, so that their
    /// larger states are not part of (and moved with) every request's future.
    fn send_upstream<'a>(
        &'a self,
        upstream: &'a Upstream,
        endpoint: &'a Arc<EndpointState>,
        mut req: Request<ProxyBody>,
        added: Option<&'a headers::Added>,
        now: std::time::Instant,
    ) -> impl Future<Output = SendResult> + Send + 'a {
        use futures::FutureExt as _;
        if upstream.transport.is_none()
            && self.config.http1 == super::Http1Engine::Sluice
            && !req.headers().contains_key(http::header::UPGRADE)
        {
            let send = super::h1::client::send(
                endpoint.pool(),
                upstream.connect_timeout,
                self.config.upstream_idle_timeout,
                req,
                added,
                now,
            );
            return futures::future::Either::Left(
                send.map(|sent| sent.map(|resp| (resp.map(UpstreamBody::Lean), None))),
            );
        }
        if let Some(added) = added {
            added.insert_into(req.headers_mut());
        }
        futures::future::Either::Right(Box::pin(self.send_upstream_hyper(upstream, endpoint, req)))
    }

    /// [`Proxy::send_upstream`] on hyper's clients.
    async fn send_upstream_hyper(
        &self,
        upstream: &Upstream,
        endpoint: &Arc<EndpointState>,
        req: Request<ProxyBody>,
    ) -> SendResult {
        let conns = upstream.transport.as_ref().map(|t| endpoint.conns(t));
        // This future is boxed as a whole (see `send_upstream`): its arms need no boxes of
        // their own.
        let sent = match &conns {
            None => {
                pool::send(
                    endpoint.pool(),
                    upstream.connect_timeout,
                    self.config.upstream_idle_timeout,
                    req,
                )
                .await
            }
            Some(Conns::H1(pool)) => {
                pool::send(
                    pool,
                    upstream.connect_timeout,
                    self.config.upstream_idle_timeout,
                    req,
                )
                .await
            }
            Some(Conns::H2(h2)) => {
                return match h2
                    .send(
                        upstream.connect_timeout,
                        self.config.upstream_idle_timeout,
                        req,
                    )
                    .await
                {
                    Ok(resp) => Ok((resp.map(UpstreamBody::Hyper), None)),
                    Err(pool::SendError::Connect(e)) => {
                        Err((ProxyError::from_upstream_error(&e), true))
                    }
                    Err(pool::SendError::Http(e)) => {
                        Err((ProxyError::from_upstream_error(&e), false))
                    }
                };
            }
        };
        match sent {
            Ok((resp, checkout)) => Ok((resp.map(UpstreamBody::Hyper), Some(checkout))),
            Err(pool::SendError::Connect(e)) => Err((ProxyError::from_upstream_error(&e), true)),
            Err(pool::SendError::Http(e)) => Err((ProxyError::from_upstream_error(&e), false)),
        }
    }
}

/// What one exchange with one endpoint gives: the response and, for hyper's HTTP/1.1 client,
/// the pooled connection carrying its body; or the error and whether it was a connect error.
pub(super) type SendResult = Result<(Response<UpstreamBody>, Option<Checkout>), (ProxyError, bool)>;

/// A request body read whole (within its limits: the body-size limit is 413, a client that
/// stops sending is 408, anything else 400).
async fn read_whole(b: ProxyBody) -> Result<bytes::Bytes, ProxyError> {
    use http_body_util::BodyExt as _;
    match b.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(match ProxyError::from_upstream_error(&*e) {
            e @ (ProxyError::BodyTooLarge | ProxyError::ClientTimeout) => e,
            _ => ProxyError::BadRequest("malformed or incomplete request body"),
        }),
    }
}

/// Resolves when the request body has not been asked for by the upstream connection for
/// `limit` (never once it has all gone).
async fn stalled(progress: &body::Progress, limit: std::time::Duration) {
    let limit_ms = super::clock::ms(limit);
    loop {
        let Some(idle) = progress.idle_ms(super::clock::now_ms()) else {
            std::future::pending::<()>().await;
            return;
        };
        if idle >= limit_ms {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(limit_ms - idle)).await;
    }
}

/// The request for one attempt on `endpoint`. An attempt that may be followed by another
/// copies the headers (the next one needs them); the last one moves them.
fn upstream_request(
    upstream: &Upstream,
    endpoint: &EndpointState,
    out: &mut Outgoing,
    version: Version,
    last: bool,
) -> Result<Request<ProxyBody>, ProxyError> {
    let mut headers = if !last {
        out.headers.clone()
    } else {
        std::mem::take(&mut out.headers)
    };
    // HTTP/1.1 sends the origin form (`/path?query`) and `Host`. HTTP/2 sends the host as
    // `:authority` and no `host` beside it (RFC 9113 section 8.3.1): the absolute form.
    let mut target = http::uri::Parts::default();
    if version == Version::HTTP_2 {
        let tls = upstream.settings.protocol.is_tls();
        target.scheme = Some(if tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        let authority = headers
            .remove(http::header::HOST)
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
        target.authority = Some(authority.unwrap_or_else(|| endpoint.authority().clone()));
    }
    target.path_and_query = Some(out.path_and_query.clone());
    let uri = Uri::from_parts(target)
        .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
    let mut upreq = Request::new(out.body.take().unwrap_or_else(body::empty));
    *upreq.method_mut() = out.method.clone();
    *upreq.uri_mut() = uri;
    *upreq.version_mut() = version;
    *upreq.headers_mut() = headers;
    Ok(upreq)
}

/// The upstream response as ours: a tunnel for a 101, else the response with hop-by-hop
/// headers stripped, the request id set and a body that releases the endpoint at its end.
fn respond(
    conn: &ConnInfo,
    out: Outgoing,
    mut resp: Response<UpstreamBody>,
    inflight: InFlight,
    checkout: Option<Checkout>,
    body_timeout: std::time::Duration,
) -> Result<Response<ProxyBody>, ProxyError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = out.client_upgrade else {
            return Err(ProxyError::UpstreamProtocol);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        // The tunnel counts as an open connection until it closes, so graceful shutdown
        // waits for it (within the grace period).
        let guard = conn.tracker.enter(conn.entrypoint, "upgraded");
        tokio::spawn(conn::tunnel(
            client_upgrade,
            upstream_upgrade,
            inflight,
            guard,
        ));
        let (rparts, _) = resp.into_parts();
        return Ok(Response::from_parts(rparts, body::empty()));
    }
    let (mut rparts, rbody) = resp.into_parts();
    // sluice's client leaves these out as it reads the head (it says when it could not).
    if !matches!(&rbody, UpstreamBody::Lean(b) if b.head_stripped()) {
        headers::strip_response(&mut rparts.headers);
    }
    // Sensitive: HTTP/2 sends it as a literal "never indexed" (RFC 7541 section 6.2.3). A value
    // new on every response would otherwise go into the connection's HPACK table each time,
    // evicting reusable entries, and the encoder's table bookkeeping for that insert and
    // eviction was 7% of an HTTP/2 request's instructions. HTTP/1.1 ignores the flag.
    let mut request_id = out.request_id;
    request_id.set_sensitive(true);
    rparts
        .headers
        .entry(headers::X_REQUEST_ID.clone())
        .or_insert(request_id);
    Ok(Response::from_parts(
        rparts,
        body::boxed(Tracked::new(rbody, inflight, checkout).read_timeout(body_timeout)),
    ))
}

/// An upstream response's body: from hyper's client (HTTP/2, TLS, upgrades, the hyper
/// engine) or from sluice's own (`h1::client`).
pub(crate) enum UpstreamBody {
    Hyper(Incoming),
    Lean(super::h1::client::ResponseBody),
}

impl Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, body::BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Lean(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Lean(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Lean(b) => b.size_hint(),
        }
    }
}

/// A response body that holds an [`InFlight`] guard until it ends or is dropped, hands the
/// upstream connection that carried it back to the pool once it has been read to the end, and
/// fails when the upstream sends nothing for the read timeout (`proxy-read-timeout`: the
/// longest wait between two reads, as nginx's `proxy_read_timeout`).
pub(crate) struct Tracked<B: Body> {
    inner: B,
    guard: Option<InFlight>,
    conn: Option<Checkout>,
    /// The read timeout (nothing from the upstream for that long fails the body).
    stall: Option<body::StallTimer>,
}

/// The error of a response body the upstream stopped sending.
#[derive(Debug)]
pub(crate) struct BodyStalled(std::time::Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the upstream sent nothing of the response body for {:?} (proxy-read-timeout)",
            self.0
        )
    }
}

impl std::error::Error for BodyStalled {}

impl<B: Body> Tracked<B> {
    /// Wraps `inner`, releasing `guard` (and `conn`, to the pool) at the end of the body.
    pub(crate) fn new(inner: B, guard: InFlight, conn: Option<Checkout>) -> Self {
        Tracked {
            inner,
            guard: Some(guard),
            conn,
            stall: None,
        }
    }

    /// Fails the body when the upstream sends nothing for `limit`.
    pub(crate) fn read_timeout(mut self, limit: std::time::Duration) -> Self {
        self.stall = Some(body::StallTimer::new(limit));
        self
    }
}

impl<B> Body for Tracked<B>
where
    B: Body + Unpin,
    B::Error: Into<body::BoxError>,
{
    type Data = B::Data;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, body::BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => {
                self.guard = None;
                if let Some(conn) = self.conn.take() {
                    conn.release();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.guard = None;
                self.conn = None;
            }
            Poll::Ready(Some(Ok(_))) => {
                if let Some(stall) = &mut self.stall {
                    stall.progressed();
                }
            }
            Poll::Pending => {
                if let Some(stall) = &mut self.stall
                    && stall.expired(cx)
                {
                    let limit = stall.limit;
                    // Dropping the body ends the exchange: the connection is not reused.
                    self.guard = None;
                    self.conn = None;
                    self.stall = None;
                    metrics::counter!("sluice_upstream_body_timeouts_total").increment(1);
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(limit)))));
                }
            }
        }
        r.map(|f| f.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for Tracked<B> {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended (a Content-Length body after its
        // last byte, an empty body): that is a complete response too. A body dropped before
        // its end leaves the connection mid-message, and it closes with the handle.
        if let Some(conn) = self.conn.take()
            && self.inner.is_end_stream()
        {
            conn.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::model::{Backend, BackendSettings, Endpoint, ObjectRef, ServicePort};
    use crate::proxy::balance::EndpointRegistry;
    use crate::proxy::pool::{idle_count, tests::backend};

    fn endpoint(addr: std::net::SocketAddr) -> Arc<EndpointState> {
        let backend = Arc::new(Backend {
            ingress: ObjectRef::new("d", "i"),
            service: ObjectRef::new("d", "s"),
            port: ServicePort::Number(80),
            endpoints: vec![Endpoint { addr, ready: true }],
            settings: BackendSettings::default(),
        });
        EndpointRegistry::default().balancers(&[backend])[0].endpoints()[0].clone()
    }

    async fn tracked(ep: &Arc<EndpointState>) -> Tracked<Incoming> {
        let req = Request::get("/")
            .header(http::header::HOST, "x")
            .body(body::empty())
            .unwrap();
        let (resp, checkout) = pool::send(
            ep.pool(),
            Duration::from_secs(2),
            Duration::from_secs(30),
            req,
        )
        .await
        .expect("response");
        Tracked::new(resp.into_body(), ep.start(), Some(checkout))
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_releases_the_endpoint_and_its_connection() {
        let (addr, accepted) = backend(false).await;
        let ep = endpoint(addr);
        for _ in 0..3 {
            let body = tracked(&ep).await;
            assert_eq!(ep.outstanding(), 1);
            let bytes = body.collect().await.expect("body").to_bytes();
            assert_eq!(&bytes[..], b"hello");
            assert_eq!(ep.outstanding(), 0);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_the_connection() {
        let (addr, accepted) = backend(false).await;
        let ep = endpoint(addr);
        drop(tracked(&ep).await);
        assert_eq!(ep.outstanding(), 0);
        assert_eq!(idle_count(ep.pool()), 0, "not returned mid-message");
        let bytes = tracked(&ep).await.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
