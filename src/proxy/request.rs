//! Request handling, phase by phase: [`Proxy::handle`] runs
//!
//! 1. **resolve**: the request's framing (400 for both `Content-Length` and
//!    `Transfer-Encoding`), its host (400 unless exactly one valid host: duplicate `Host`,
//!    `:authority` and `Host` differing, a name that is not a DNS name or IP address) and
//!    normalised path, looked up in the table (404), and the target rewritten when the route
//!    says so (`rewrite-target`). An absolute-form request target's
//!    authority is the host (RFC 9112 section 3.2.2), and is what goes upstream as `Host`;
//! 2. **admit**: answers that need no upstream: 421 for a TLS connection whose certificate
//!    does not cover the host, 308 to HTTPS, 413 for a declared body over the limit;
//! 3. **prepare**: the request as it goes upstream: hop-by-hop headers stripped, an untrusted
//!    peer's claims removed, our `X-Forwarded-*` and request id set, HTTP/2 cookies joined,
//!    the forwarded target and body with its framing (see `forward`);
//! 4. **forward** and **respond** (`forward.rs`);
//! 5. **record**: metrics and the access log.

use std::borrow::Cow;
use std::time::Instant;

use super::body::ClientBody;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::upgrade::OnUpgrade;

use super::Proxy;
use super::access;
use super::auth;
use super::body::{self, ProxyBody};
use super::conn::{ConnInfo, Entrypoint};
use super::error::ProxyError;
use super::forward::Outgoing;
use super::grpc;
use super::headers;
use super::serve::AmbiguousFraming;
use super::snapshot::{Snapshot, Upstream};
use super::stats::RequestStats;
use crate::model::UpstreamProtocol;
use crate::model::host::host_without_port;
use crate::model::host::is_valid_request_host;
use crate::routing::{RouteMatch, normalize_request_path};

/// What the request was routed to, and the values routing used.
pub(super) struct Routed<'s> {
    /// The host as a header value: a clone of the received one shares its bytes.
    host_value: HeaderValue,
    /// The request target: the normalised path and the query.
    target: PathAndQuery,
    /// The target sent upstream when the route rewrites it (`rewrite-target`).
    rewritten: Option<PathAndQuery>,
    /// The route (or default backend) matched.
    matched: RouteMatch<'s>,
}

/// What an error page of `custom-http-errors` needs from the original request.
struct ErrorPage {
    /// The `default-backend` upstream.
    fallback: usize,
    /// The backend the request was routed to (for the `X-Namespace`... headers).
    backend: Option<std::sync::Arc<crate::model::Backend>>,
    accept: Option<HeaderValue>,
    uri: Option<PathAndQuery>,
    host: HeaderValue,
}

/// Labels of one request's metrics, filled in as the phases learn them.
#[derive(Default)]
struct RequestLabels {
    /// The index of the backend the request was routed to.
    upstream: Option<usize>,
    error: Option<&'static str>,
}

impl Proxy {
    /// Handles one request. Never fails: errors become responses.
    pub async fn handle(&self, conn: &ConnInfo, req: Request<ClientBody>) -> Response<ProxyBody> {
        let start = Instant::now();
        let method = req.method().clone();
        let access = self.config.access_log.then(|| access::Started::of(&req));
        if conn.entrypoint == Entrypoint::Http
            && let Some(resp) = self.acme_http01(&req)
        {
            self.record(conn, &method, &self.unrouted, None, resp.status(), start);
            return match access {
                Some(a) => a.finish(conn, &method, &self.unrouted, None, resp, start),
                None => resp,
            };
        }
        // gRPC runs over HTTP/2 only: HTTP/1.1 requests skip the header lookup.
        let grpc = req.version() == Version::HTTP_2 && grpc::is_grpc(req.headers());
        let snap = self.snapshot.load_full();
        let mut labels = RequestLabels::default();
        let resp = match self.route(&snap, conn, req, &mut labels).await {
            Ok(resp) => resp,
            Err(e) => {
                labels.error = Some(e.label());
                if grpc {
                    e.into_grpc_response()
                } else {
                    e.into_response()
                }
            }
        };
        let stats = labels
            .upstream
            .map_or(&self.unrouted, |i| &snap.upstreams[i].stats);
        self.record(conn, &method, stats, labels.error, resp.status(), start);
        match access {
            Some(a) => a.finish(conn, &method, stats, labels.error, resp, start),
            None => resp,
        }
    }

    /// The answer to an ACME HTTP-01 request (`GET /.well-known/acme-challenge/<token>`) for a
    /// token and host (port ignored) in the challenges snapshot; `None` for anything else, so
    /// that an unknown token falls through to normal routing (an app may serve its own).
    /// Checked before routing and before the HTTPS redirect.
    fn acme_http01(&self, req: &Request<ClientBody>) -> Option<Response<ProxyBody>> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return None;
        }
        let token = crate::acme::answers::http01_token(req.uri().path())?;
        let host = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => req.headers().get(header::HOST)?.to_str().ok()?,
        };
        let key_authorization = self.challenges.load().http01(host, token)?;
        metrics::counter!("sluice_acme_challenges_answered_total", "type" => "http-01")
            .increment(1);
        let mut resp = Response::new(body::full(Bytes::copy_from_slice(
            key_authorization.as_bytes(),
        )));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Some(resp)
    }

    /// The phases from the received request to the response.
    async fn route(
        &self,
        snap: &Snapshot,
        conn: &ConnInfo,
        req: Request<ClientBody>,
        labels: &mut RequestLabels,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (parts, body) = req.into_parts();
        let routed = resolve(snap, &parts)?;
        labels.upstream = Some(routed.matched.backend_index);
        let upstream = &snap.upstreams[routed.matched.backend_index];
        if let Some(answer) = self.admit(conn, &routed, upstream, &parts)? {
            return Ok(answer);
        }
        if upstream.plain && routed.matched.canary.is_none() && routed.matched.fallback.is_none() {
            // The short path: nothing but routing. Its future stays small, which every
            // request pays for in moves; the filters' state is boxed below.
            let outgoing = self.prepare(conn, upstream, routed, parts, body, true)?;
            return self.forward(conn, upstream, outgoing).await;
        }
        Box::pin(self.filtered(snap, conn, routed, parts, body, labels)).await
    }

    /// The rest of [`Proxy::route`] for a route with filters (authentication, limits, CORS,
    /// canary, affinity, error pages).
    async fn filtered(
        &self,
        snap: &Snapshot,
        conn: &ConnInfo,
        routed: Routed<'_>,
        parts: http::request::Parts,
        body: ClientBody,
        labels: &mut RequestLabels,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let upstream = &snap.upstreams[routed.matched.backend_index];
        // `limit-connections`: counted from here until the answer has streamed.
        let permit = match &upstream.settings.conn_limit {
            None => None,
            Some(limit) => {
                let client = headers::client_ip(
                    conn.peer.ip(),
                    &parts.headers,
                    &self.config.trusted_proxies,
                )
                .unwrap_or(conn.peer.ip());
                self.conn_counts
                    .enter(limit, client)
                    .ok_or(ProxyError::RateLimited)?
            }
        };
        if let Some(basic) = &upstream.settings.basic_auth
            && !self
                .basic
                .check(basic, parts.headers.get(header::AUTHORIZATION))
                .await
        {
            return Ok(super::basic::challenge(basic));
        }
        let granted = match &upstream.settings.auth {
            None => None,
            Some(auth) => {
                let original = auth::Original {
                    headers: &parts.headers,
                    method: &parts.method,
                    host: routed
                        .host_value
                        .to_str()
                        .map_err(|_| ProxyError::BadRequest("missing Host header"))?,
                    target: &routed.target,
                };
                match self.authorize(conn, auth, &original).await? {
                    auth::Decision::Allowed(set) => Some((auth, set)),
                    auth::Decision::Denied(answer) => return Ok(answer),
                }
            }
        };
        let cors = upstream.settings.cors.as_ref().and_then(|cors| {
            let origin = parts.headers.get(header::ORIGIN)?.to_str().ok();
            Some((cors, cors.allow_origin(origin)?.to_owned()))
        });
        // A canary takes its share only once the main route's checks have passed: it inherits
        // them (as in ingress-nginx).
        let mut upstream = match routed.matched.canary {
            Some((canary, index))
                if canary
                    .rule
                    .choose(&parts.headers, fastrand::u32(0..canary.rule.total.max(1))) =>
            {
                labels.upstream = Some(index);
                &snap.upstreams[index]
            }
            _ => upstream,
        };
        // `default-backend`: it answers for a Service with no endpoint, and serves the error
        // pages of `custom-http-errors`.
        let fallback = routed.matched.fallback;
        if let Some(fb) = fallback
            && upstream.balancer.endpoints().is_empty()
        {
            labels.upstream = Some(fb);
            upstream = &snap.upstreams[fb];
        }
        let error_page = match fallback {
            // Not when the default backend itself answers (its errors are its pages).
            Some(fb)
                if !upstream.settings.custom_errors.is_empty() && labels.upstream != Some(fb) =>
            {
                Some(Box::new(ErrorPage {
                    fallback: fb,
                    backend: labels
                        .upstream
                        .and_then(|i| snap.table.backends().get(i).cloned()),
                    accept: parts.headers.get(header::ACCEPT).cloned(),
                    uri: parts.uri.path_and_query().cloned(),
                    host: routed.host_value.clone(),
                }))
            }
            _ => None,
        };
        let sticky = self.sticky(conn, upstream, &routed, &parts);
        let mut outgoing = self.prepare(conn, upstream, routed, parts, body, false)?;
        outgoing.sticky = sticky;
        for (name, value) in &upstream.settings.request_headers {
            outgoing.headers.insert(name.clone(), value.clone());
        }
        let request_id = error_page.as_ref().map(|_| outgoing.request_id.clone());
        if let Some((auth, set)) = granted {
            // The client's own values of these never reach the upstream.
            for name in &auth.response_headers {
                outgoing.headers.remove(name);
            }
            for (name, value) in set {
                outgoing.headers.append(name, value);
            }
        }
        let result = self.forward(conn, upstream, outgoing).await;
        let status = match &result {
            Ok(r) => r.status(),
            Err(e) => e.status(),
        };
        let mut resp = match (error_page, request_id) {
            (Some(page), Some(id))
                if upstream.settings.custom_errors.contains(&status.as_u16()) =>
            {
                labels.upstream = Some(page.fallback);
                match self.error_page(conn, snap, &page, status, id).await {
                    Some(r) => r,
                    None => result?,
                }
            }
            _ => result?,
        };
        if let Some((cors, origin)) = cors {
            cors_headers(resp.headers_mut(), cors, &origin);
        }
        for (name, value) in &upstream.settings.response_headers {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        if let Some(hsts) = &upstream.settings.hsts
            && conn.entrypoint == Entrypoint::Https
        {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if let Some(permit) = permit {
            resp = resp.map(|b| body::hold(b, permit));
        }
        Ok(resp)
    }

    /// Answers that need no upstream: 421 (a TLS connection used for a host the certificate
    /// chosen for its SNI does not cover, HTTP/1.1 as HTTP/2, or for a passthrough host), 503
    /// (a route closed by an unimplemented protection annotation), 403 (a client outside the
    /// source ranges), 503 (a client over the rate limit), 308 to HTTPS, 413 (declared body
    /// over the limit).
    fn admit(
        &self,
        conn: &ConnInfo,
        routed: &Routed<'_>,
        upstream: &Upstream,
        parts: &http::request::Parts,
    ) -> Result<Option<Response<ProxyBody>>, ProxyError> {
        let host = routed
            .host_value
            .to_str()
            .map_err(|_| ProxyError::BadRequest("missing Host header"))?;
        if conn.entrypoint == Entrypoint::Https {
            let bare = host_without_port(host);
            // A passthrough backend speaks TLS itself: a request sluice decrypted (a
            // connection whose SNI named another host, or none) is not for it.
            if upstream.settings.ssl_passthrough
                || !self.certs.load().covers(conn.sni.as_deref(), bare)
            {
                return Err(ProxyError::Misdirected);
            }
        }
        if upstream.settings.closed {
            return Err(ProxyError::Closed);
        }
        let settings = &upstream.settings;
        if let Some(redirect) = &settings.redirect {
            return Ok(Some(redirect_to(
                &expand(&redirect.url, conn, host, parts, &routed.target),
                redirect.code,
            )));
        }
        if let Some(root) = &settings.app_root
            && routed.target.path() == "/"
        {
            let location = format!("{}://{host}{root}", conn.entrypoint.scheme());
            return Ok(Some(redirect_to(&location, 302)));
        }
        if let Some(cors) = &settings.cors
            && parts.method == Method::OPTIONS
        {
            let origin = parts
                .headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            if let Some(allowed) = cors.allow_origin(origin) {
                // A preflight: answered here, before authentication (it carries no
                // credentials), as ingress-nginx does.
                let mut resp = Response::new(body::empty());
                *resp.status_mut() = StatusCode::NO_CONTENT;
                cors_headers(resp.headers_mut(), cors, allowed);
                if let Ok(v) = HeaderValue::from_str(&cors.max_age.to_string()) {
                    resp.headers_mut().insert(header::ACCESS_CONTROL_MAX_AGE, v);
                }
                return Ok(Some(resp));
            }
        }
        let ranged = !(settings.allow.is_empty() && settings.deny.is_empty());
        if ranged || settings.rate_limit.is_some() {
            let client =
                headers::client_ip(conn.peer.ip(), &parts.headers, &self.config.trusted_proxies);
            if ranged && !settings.admits(client) {
                return Err(ProxyError::Forbidden);
            }
            if let Some(limit) = &settings.rate_limit {
                let client = client.unwrap_or(conn.peer.ip());
                if !self
                    .limiters
                    .admit(limit, client, std::time::Instant::now())
                {
                    return Err(ProxyError::RateLimited);
                }
            }
        }
        if conn.entrypoint == Entrypoint::Http
            && routed.matched.route.is_some_and(|r| r.redirect_to_https)
        {
            return Ok(Some(self.redirect(host, &routed.target)));
        }
        if let Some(limit) = upstream.settings.max_body_bytes {
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(ProxyError::BodyTooLarge);
            }
        }
        Ok(None)
    }

    /// The request as it goes upstream: target, headers rewritten, body wrapped. `short`:
    /// no filters ran on the request and none will (the short path), so its headers are as
    /// received, and nothing but the upstream client reads them after this: the ones the
    /// proxy adds may go beside the map ([`headers::Added`]).
    fn prepare(
        &self,
        conn: &ConnInfo,
        upstream: &Upstream,
        routed: Routed<'_>,
        mut parts: http::request::Parts,
        body: ClientBody,
        short: bool,
    ) -> Result<Outgoing, ProxyError> {
        let Routed {
            host_value,
            target,
            rewritten,
            matched,
        } = routed;
        let upgrade =
            parts.version == Version::HTTP_11 && headers::is_upgrade_request(&parts.headers);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        let body_empty = body.is_end_stream();
        // `te: trailers` is end to end for HTTP/2 (gRPC servers require it); any other `TE`
        // is hop-by-hop.
        let te_trailers =
            upstream.settings.protocol.is_h2() && headers::accepts_trailers(&parts.headers);
        let named_stripped = headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        if te_trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let trusted = self
            .config
            .trusted_proxies
            .iter()
            .any(|c| c.contains(conn.peer.ip()));
        if !trusted {
            headers::strip_untrusted(&mut parts.headers);
        }
        if parts.version == Version::HTTP_2 {
            headers::join_cookies(&mut parts.headers);
        }
        let port = conn.port_header();
        let forwarded = headers::ForwardedInfo {
            peer: &conn.peer_header,
            trusted,
            proto: conn.entrypoint.scheme(),
            host: &host_value,
            port: &port,
        };
        // sluice's HTTP/1.1 client writes an untrusted peer's added headers itself (see
        // `headers::Added`); the map gets them otherwise.
        let direct = short
            && !trusted
            && upstream.transport.is_none()
            && self.config.http1 == super::Http1Engine::Sluice;
        let (request_id, added) = match headers::valid_request_id(&parts.headers) {
            Some(id) if direct => (id, Some(headers::Added::new(&forwarded, None))),
            Some(id) => {
                headers::set_forwarded(&mut parts.headers, &forwarded);
                (id, None)
            }
            None if direct => {
                // An invalid one is not forwarded.
                parts.headers.remove(&headers::X_REQUEST_ID);
                let id = headers::new_request_id();
                (id.clone(), Some(headers::Added::new(&forwarded, Some(id))))
            }
            None => {
                headers::set_forwarded(&mut parts.headers, &forwarded);
                (headers::ensure_request_id(&mut parts.headers), None)
            }
        };
        // The host the request was routed by: an absolute-form target's authority replaces
        // the received Host; HTTP/2's `:authority` becomes Host. An origin-form target's is
        // the received one (`request_host`), still in the map on the short path unless
        // `Connection` named it.
        if !(short && parts.uri.authority().is_none() && !named_stripped) {
            parts.headers.insert(header::HOST, host_value);
        }
        let settings = &upstream.settings;
        if let Some(v) = settings
            .upstream_vhost
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
        let prefix = settings.forwarded_prefix.as_deref().or_else(|| {
            matched
                .route
                .filter(|r| {
                    settings.strip_prefix
                        && r.path.kind != crate::model::PathKind::Regex
                        && r.path.path != "/"
                })
                .map(|r| r.path.path.as_str())
        });
        if let Some(v) = prefix.and_then(|p| HeaderValue::from_str(p).ok()) {
            parts
                .headers
                .insert(http::HeaderName::from_static("x-forwarded-prefix"), v);
        }
        // A body of unknown length keeps its chunked framing on any method (hyper's client
        // would send a GET, HEAD or CONNECT body of unknown length as no body at all).
        if !body_empty
            && settings.protocol == UpstreamProtocol::Http1
            && !parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            parts.headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        // A body-less request sends nothing upstream (and allocates no box for it).
        let body = match (body_empty, settings.max_body_bytes) {
            (true, _) => body::empty(),
            (false, Some(limit)) => body::boxed(http_body_util::Limited::new(
                body,
                usize::try_from(limit).unwrap_or(usize::MAX),
            )),
            (false, None) => body::boxed(body),
        };
        // `client_body_timeout`: a client that stops sending its body gets 408.
        let body = if body_empty {
            body
        } else {
            body::client_timeout(body, self.config.client_body_timeout)
        };
        let (body, bytes_in) = if self.config.access_log && !body_empty {
            let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            (access::counted(body, counter.clone()), Some(counter))
        } else {
            (body, None)
        };
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        // A request to a backend with another endpoint can be tried again (idempotent
        // methods only, unless the retry policy allows the others) when it has no body, or a
        // small one of declared length to an HTTP/1.1 backend, which is read whole first
        // (nginx buffers request bodies too) and resent; only then do the headers need a copy
        // for the next attempt.
        let may_retry = upstream.balancer.endpoints().len() > 1
            && match &settings.retry {
                None => idempotent,
                Some(r) => r.attempts > 1 && (idempotent || r.non_idempotent),
            };
        let buffer_body = may_retry
            && !body_empty
            && client_upgrade.is_none()
            && !settings.protocol.is_h2()
            && parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n <= super::forward::RETRY_BODY_LIMIT);
        let retryable = may_retry && (body_empty || buffer_body);
        Ok(Outgoing {
            method: parts.method,
            path_and_query: rewritten.unwrap_or(target),
            headers: parts.headers,
            body: Some(body),
            request_id,
            added,
            client_upgrade,
            retryable,
            buffer_body,
            sticky: super::forward::Sticky::None,
            bytes_in,
        })
    }

    /// The error page of `custom-http-errors`: a GET for the original URI to the
    /// `default-backend` Service with ingress-nginx's headers (`X-Code`, `X-Format`,
    /// `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`,
    /// `X-Request-ID`); its answer replaces the upstream's. `None` when it fails (the
    /// original answer is returned).
    async fn error_page(
        &self,
        conn: &ConnInfo,
        snap: &Snapshot,
        page: &ErrorPage,
        status: StatusCode,
        request_id: HeaderValue,
    ) -> Option<Response<ProxyBody>> {
        let upstream = snap.upstreams.get(page.fallback)?;
        let mut headers = http::HeaderMap::new();
        headers.insert(header::HOST, page.host.clone());
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(http::HeaderName::from_static(name), v);
            }
        };
        set("x-code", status.as_str());
        set(
            "x-format",
            page.accept
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/html"),
        );
        set(
            "x-original-uri",
            page.uri.as_ref().map_or("/", PathAndQuery::as_str),
        );
        if let Some(b) = &page.backend {
            set("x-namespace", &b.ingress.namespace);
            set("x-ingress-name", &b.ingress.name);
            set("x-service-name", &b.service.name);
            set("x-service-port", &b.port.to_string());
        }
        headers.insert(headers::X_REQUEST_ID.clone(), request_id.clone());
        let out = Outgoing {
            method: Method::GET,
            path_and_query: page
                .uri
                .clone()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            headers,
            body: Some(body::empty()),
            request_id,
            added: None,
            client_upgrade: None,
            retryable: upstream.balancer.endpoints().len() > 1,
            buffer_body: false,
            sticky: super::forward::Sticky::None,
            bytes_in: None,
        };
        self.forward(conn, upstream, out).await.ok()
    }

    /// How the endpoint of this request is bound: the affinity cookie, else the
    /// `upstream-hash-by` key, else not at all.
    fn sticky(
        &self,
        conn: &ConnInfo,
        upstream: &Upstream,
        routed: &Routed<'_>,
        parts: &http::request::Parts,
    ) -> super::forward::Sticky {
        use super::forward::Sticky;
        let settings = &upstream.settings;
        if let Some(a) = &settings.affinity {
            let path = a.path.clone().unwrap_or_else(|| {
                routed
                    .matched
                    .route
                    .filter(|r| r.path.kind != crate::model::PathKind::Regex)
                    .map_or_else(|| "/".to_string(), |r| r.path.path.clone())
            });
            return Sticky::Cookie {
                current: crate::model::cookie(&parts.headers, &a.cookie).map(str::to_owned),
                affinity: a.clone(),
                path,
                secure: a.secure || conn.entrypoint == Entrypoint::Https,
            };
        }
        let Some(parts_of_key) = &settings.hash_by else {
            return Sticky::None;
        };
        let host = routed.host_value.to_str().unwrap_or_default();
        let mut key = Vec::with_capacity(64);
        for part in parts_of_key.iter() {
            use crate::model::HashPart;
            match part {
                HashPart::Literal(t) => key.extend_from_slice(t.as_bytes()),
                HashPart::RequestUri => key.extend_from_slice(
                    parts
                        .uri
                        .path_and_query()
                        .map_or("/", PathAndQuery::as_str)
                        .as_bytes(),
                ),
                HashPart::Uri => key.extend_from_slice(routed.target.path().as_bytes()),
                HashPart::Host => key.extend_from_slice(host_without_port(host).as_bytes()),
                HashPart::RemoteAddr => {
                    let ip = headers::client_ip(
                        conn.peer.ip(),
                        &parts.headers,
                        &self.config.trusted_proxies,
                    )
                    .unwrap_or(conn.peer.ip());
                    key.extend_from_slice(ip.to_string().as_bytes());
                }
                HashPart::Header(name) => {
                    if let Some(v) = parts.headers.get(name) {
                        key.extend_from_slice(v.as_bytes());
                    }
                }
                HashPart::Cookie(name) => {
                    if let Some(v) = crate::model::cookie(&parts.headers, name) {
                        key.extend_from_slice(v.as_bytes());
                    }
                }
                HashPart::Arg(name) => {
                    let value = routed.target.query().and_then(|q| {
                        q.split('&').find_map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                            (k == name).then_some(v)
                        })
                    });
                    if let Some(v) = value {
                        key.extend_from_slice(v.as_bytes());
                    }
                }
            }
        }
        Sticky::Hash(super::balance::stable_hash(&key))
    }

    /// 308 to the same host (without its port) on the HTTPS port, same path and query.
    fn redirect(&self, host: &str, target: &PathAndQuery) -> Response<ProxyBody> {
        let bare = host_without_port(host);
        let port = match self.config.https_redirect_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let location = format!("https://{bare}{port}{target}");
        let mut resp = Response::new(body::full(Bytes::from(format!(
            "redirecting to {location}\n"
        ))));
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }

    pub(super) fn record(
        &self,
        conn: &ConnInfo,
        method: &Method,
        stats: &RequestStats,
        error: Option<&'static str>,
        status: StatusCode,
        start: Instant,
    ) {
        let elapsed = start.elapsed();
        let entrypoint = conn.entrypoint;
        stats.record(entrypoint, method, status, elapsed);
        if let Some(err) = error {
            metrics::counter!("sluice_proxy_errors_total", "entrypoint" => entrypoint.as_str(), "reason" => err).increment(1);
        }
    }
}

/// The `Access-Control-*` headers of `cors` for an allowed origin.
fn cors_headers(headers: &mut http::HeaderMap, cors: &crate::model::Cors, origin: &str) {
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    set(header::ACCESS_CONTROL_ALLOW_METHODS, &cors.methods);
    set(header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.headers);
    if !cors.expose.is_empty() {
        set(header::ACCESS_CONTROL_EXPOSE_HEADERS, &cors.expose);
    }
    if cors.credentials {
        set(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    if origin != "*" {
        // The answer depends on the request's Origin: caches must know.
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// A redirect answered by the proxy itself.
fn redirect_to(location: &str, code: u16) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(Bytes::from(format!(
        "redirecting to {location}\n"
    ))));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `template` with the redirect variables of this request replaced: `$scheme`, `$host` (no
/// port), `$http_host` (as received), `$request_uri` (path and query as received) and `$uri`
/// (the normalised path).
fn expand(
    template: &str,
    conn: &ConnInfo,
    host: &str,
    parts: &http::request::Parts,
    target: &PathAndQuery,
) -> String {
    let request_uri = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
    expand_vars(
        template,
        &[
            ("$request_uri", request_uri),
            ("$http_host", host),
            ("$host", host_without_port(host)),
            ("$scheme", conn.entrypoint.scheme()),
            ("$uri", target.path()),
        ],
    )
}

/// `template` with each `$name` of `vars` replaced in one pass (a value is never expanded
/// again). A name followed by a letter, digit or `_` is another name; other `$` text is kept.
pub(super) fn expand_vars(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let found = vars.iter().find(|(name, _)| {
            rest.starts_with(name)
                && !rest[name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
        match found {
            Some((name, value)) => {
                out.push_str(value);
                rest = &rest[name.len()..];
            }
            None => {
                out.push('$');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The host and normalised path of a request, looked up in the table.
fn resolve<'s>(snap: &'s Snapshot, parts: &http::request::Parts) -> Result<Routed<'s>, ProxyError> {
    if parts.extensions.get::<AmbiguousFraming>().is_some() {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let host_value = request_host(parts)?;
    let host = host_value
        .to_str()
        .ok()
        .filter(|h| is_valid_request_host(h))
        .ok_or(ProxyError::BadRequest("the host is not a valid host name"))?;
    let path = normalize_request_path(parts.uri.path()).map_err(ProxyError::BadPath)?;
    let matched = snap.table.lookup(host, &path).ok_or(ProxyError::NoRoute)?;
    let rewritten = match matched.rewrite {
        None => match matched.route {
            Some(r) if r.backend.settings.strip_prefix => stripped(r, &path, parts.uri.query())?,
            _ => None,
        },
        Some(rw) => match rw.apply(&path, parts.uri.query()) {
            Ok(None) => None,
            Ok(Some(pq)) => Some(PathAndQuery::from_maybe_shared(Bytes::from(pq)).map_err(
                |_| ProxyError::BadRequest("the rewritten request target cannot be forwarded"),
            )?),
            Err(e) => return Err(ProxyError::BadPath(e)),
        },
    };
    // The forwarded request target: the received one when normalisation left it alone
    // (sharing its bytes), else the normalised path with the query.
    let target = match (&path, parts.uri.path_and_query()) {
        (Cow::Borrowed(_), Some(pq)) => pq.clone(),
        _ => {
            let pq = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.into_owned(),
            };
            PathAndQuery::from_maybe_shared(Bytes::from(pq))
                .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?
        }
    };
    Ok(Routed {
        host_value,
        target,
        rewritten,
        matched,
    })
}

/// The target without the matched rule path (`strip-prefix`): a Prefix rule's path is removed
/// from the front (`/api/users` on `/api` goes as `/users`, `/api` as `/`), an Exact rule's
/// whole path becomes `/`; an expression's path is left alone (`rewrite-target` does that).
fn stripped(
    route: &crate::model::Route,
    path: &str,
    query: Option<&str>,
) -> Result<Option<PathAndQuery>, ProxyError> {
    use crate::model::PathKind;
    let rest = match route.path.kind {
        PathKind::Regex => return Ok(None),
        PathKind::Prefix if route.path.path == "/" => return Ok(None),
        PathKind::Prefix => path.get(route.path.path.len()..).unwrap_or(""),
        PathKind::Exact => "",
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    let pq = match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    PathAndQuery::from_maybe_shared(Bytes::from(pq))
        .map(Some)
        .map_err(|_| ProxyError::BadRequest("the stripped request target cannot be forwarded"))
}

/// The request host: the URI authority (HTTP/2 `:authority`, an absolute-form target) or
/// the Host header. More than one Host header, or a Host differing from HTTP/2's
/// `:authority`, is an error.
fn request_host(parts: &http::request::Parts) -> Result<HeaderValue, ProxyError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    let value = match parts.uri.authority() {
        Some(a) => {
            if parts.version == Version::HTTP_2
                && host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()))
            {
                return Err(ProxyError::BadRequest(":authority and Host differ"));
            }
            HeaderValue::from_str(a.as_str()).ok()
        }
        None => host.cloned(),
    };
    value
        .filter(|h| !h.is_empty())
        .ok_or(ProxyError::BadRequest("missing Host header"))
}

#[cfg(test)]
mod expand_tests {
    use super::expand_vars;

    #[test]
    fn variables_are_replaced_once_and_only_whole_names() {
        let vars = [
            ("$host", "a.test"),
            ("$http_host", "a.test:8080"),
            ("$uri", "/$host"),
        ];
        assert_eq!(
            expand_vars("https://$host$uri?h=$http_host&x=$hostname&$", &vars),
            "https://a.test/$host?h=a.test:8080&x=$hostname&$"
        );
    }
}
