//! The data plane: accept connections, route, balance, forward, answer errors.
//!
//! The proxy never awaits anything but sockets: the routing table and balancers come from one
//! [`ArcSwap`] load per request ([`Proxy::publish`] swaps them), the certificates from another
//! per TLS handshake. Connections are plain tokio tasks.
//!
//! Per request: normalise the path (400), look up the route (404), answer 421 for an HTTP/2
//! connection reused for a host its certificate does not cover, redirect plain HTTP to HTTPS
//! (308) where the host has TLS, pick an endpoint (503 if none), rewrite headers, forward with
//! HTTP/1.1 keep-alive (or h2c), map failures to 502 (refused/reset), 504 (timeout) or 413
//! (body too large), and stream the response back.

pub mod balance;
pub mod body;
mod conn;
mod connect;
mod error;
pub mod headers;
mod pool;
mod stats;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::acme::ChallengesHandle;
use crate::model::{BackendSettings, UpstreamProtocol};
use crate::routing::{RoutingTable, normalize_request_path};
use crate::tls::CertStore;

use balance::{Balancer, EndpointRegistry};
use body::{ProxyBody, Tracked};
pub use conn::{ConnInfo, ConnTracker, Entrypoint};
use connect::Connector;
use error::ProxyError;
use stats::RequestStats;

/// Proxy-wide settings. Per-backend annotations override the upstream timeouts and body size.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Time allowed for a request head to arrive, counted on keep-alive connections from the
    /// end of the previous response: the slowloris bound and the idle keep-alive timeout.
    pub client_header_timeout: Duration,
    /// Maximum size of a request head (request line and headers), bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Time allowed to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Default upstream connect timeout.
    pub connect_timeout: Duration,
    /// Default time allowed for the upstream response head.
    pub read_timeout: Duration,
    /// How long idle upstream connections stay pooled.
    pub upstream_idle_timeout: Duration,
    /// Peers whose `X-Forwarded-*` headers are trusted (CIDRs).
    pub trusted_proxies: Vec<Cidr>,
    /// The port HTTP requests are redirected to for HTTPS (omitted from the URL when 443).
    pub https_redirect_port: u16,
    /// Emit one JSON access-log line per request (tracing target `sluice::access`).
    pub access_log: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            client_header_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            https_redirect_port: 443,
            access_log: false,
        }
    }
}

/// An IP network, for `--trusted-proxies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Does the network contain `ip`? (IPv4-mapped IPv6 addresses count as IPv4.)
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// What one request reads: the compiled table and a balancer per backend.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The routing table.
    pub table: RoutingTable,
    upstreams: Vec<Upstream>,
    /// Increases with every publish.
    pub generation: u64,
}

#[derive(Debug)]
struct Upstream {
    balancer: Balancer,
    /// hyper-util's pooled client, for h2c upstreams only; HTTP/1.1 goes through `pool`.
    h2c: Option<Client<Connector, ProxyBody>>,
    connect_timeout: Duration,
    settings: BackendSettings,
    /// Request metrics, with labels built and handles cached per backend.
    stats: RequestStats,
}

type ClientKey = (Duration, UpstreamProtocol);

/// The proxy: shared by every connection task.
pub struct Proxy {
    config: ProxyConfig,
    snapshot: ArcSwap<Snapshot>,
    certs: Arc<ArcSwap<CertStore>>,
    /// ACME challenge answers (HTTP-01 here, TLS-ALPN-01 in the TLS resolver).
    challenges: ChallengesHandle,
    registry: EndpointRegistry,
    clients: Mutex<Vec<(ClientKey, Client<Connector, ProxyBody>)>>,
    generation: AtomicU64,
    /// Metrics of requests no backend answered (400, 404).
    unrouted: RequestStats,
    server: hyper_util::server::conn::auto::Builder<TokioExecutor>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy with an empty routing table (every request 404) reading certificates from
    /// `certs`.
    pub fn new(config: ProxyConfig, certs: Arc<ArcSwap<CertStore>>) -> Arc<Proxy> {
        Self::with_challenges(config, certs, crate::acme::challenges_handle())
    }

    /// [`Proxy::new`] answering ACME HTTP-01 requests from `challenges` (share it with
    /// [`SniResolver::with_challenges`](crate::tls::SniResolver::with_challenges) and with
    /// whoever publishes the answers).
    pub fn with_challenges(
        config: ProxyConfig,
        certs: Arc<ArcSwap<CertStore>>,
        challenges: ChallengesHandle,
    ) -> Arc<Proxy> {
        let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        server
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.client_header_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .keep_alive(true);
        server
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        Arc::new(Proxy {
            config,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            certs,
            challenges,
            registry: EndpointRegistry::default(),
            clients: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            unrouted: RequestStats::new(
                metrics::SharedString::const_str(""),
                metrics::SharedString::const_str(""),
            ),
            server,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The ACME challenge answers this proxy serves: store a new
    /// [`Challenges`](crate::acme::Challenges) to change them.
    pub fn challenges(&self) -> &ChallengesHandle {
        &self.challenges
    }

    /// Publishes a new routing table: requests that start after this call use it; requests in
    /// flight finish on the table they started with. Never blocks on the data plane.
    pub fn publish(&self, table: RoutingTable) -> u64 {
        let balancers = self.registry.balancers(table.backends());
        let upstreams = table
            .backends()
            .iter()
            .zip(balancers)
            .map(|(b, balancer)| {
                let connect = b
                    .settings
                    .connect_timeout
                    .unwrap_or(self.config.connect_timeout);
                Upstream {
                    balancer,
                    h2c: (b.settings.protocol == UpstreamProtocol::H2c)
                        .then(|| self.client((connect, b.settings.protocol))),
                    connect_timeout: connect,
                    settings: b.settings.clone(),
                    stats: RequestStats::new(
                        metrics::SharedString::from(b.ingress.to_string()),
                        metrics::SharedString::from(b.service.to_string()),
                    ),
                }
            })
            .collect();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.snapshot.store(Arc::new(Snapshot {
            table,
            upstreams,
            generation,
        }));
        generation
    }

    /// The snapshot requests currently read.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn client(&self, key: ClientKey) -> Client<Connector, ProxyBody> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let connector = Connector::new(key.0);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.config.upstream_idle_timeout)
            .pool_max_idle_per_host(1024)
            .retry_canceled_requests(true);
        if key.1 == UpstreamProtocol::H2c {
            builder.http2_only(true);
        }
        let client = builder.build(connector);
        clients.push((key, client.clone()));
        client
    }

    /// Handles one request. Never fails: errors become responses.
    pub async fn handle(&self, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
        let start = Instant::now();
        let method = req.method().clone();
        if conn.entrypoint == Entrypoint::Http
            && let Some(resp) = self.acme_http01(&req)
        {
            self.record(conn, &method, &self.unrouted, None, resp.status(), start);
            return resp;
        }
        let snap = self.snapshot.load_full();
        let mut labels = RequestLabels::default();
        let resp = match self.route(&snap, conn, req, &mut labels).await {
            Ok(resp) => resp,
            Err(e) => {
                labels.error = Some(e.label());
                e.into_response()
            }
        };
        let stats = labels
            .upstream
            .map_or(&self.unrouted, |i| &snap.upstreams[i].stats);
        self.record(conn, &method, stats, labels.error, resp.status(), start);
        resp
    }

    /// The answer to an ACME HTTP-01 request (`GET /.well-known/acme-challenge/<token>`) for a
    /// token and host (port ignored) in the challenges snapshot; `None` for anything else, so
    /// that an unknown token falls through to normal routing (an app may serve its own).
    /// Checked before routing and before the HTTPS redirect.
    fn acme_http01(&self, req: &Request<Incoming>) -> Option<Response<ProxyBody>> {
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

    async fn route(
        &self,
        snap: &Snapshot,
        conn: &ConnInfo,
        req: Request<Incoming>,
        labels: &mut RequestLabels,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        // The host as a header value: a clone of the received one shares its bytes.
        let host_value =
            request_host(&parts).ok_or(ProxyError::BadRequest("missing Host header"))?;
        let host = host_value
            .to_str()
            .map_err(|_| ProxyError::BadRequest("missing Host header"))?;
        let path = normalize_request_path(parts.uri.path()).map_err(ProxyError::BadPath)?;
        let m = snap.table.lookup(host, &path).ok_or(ProxyError::NoRoute)?;
        labels.upstream = Some(m.backend_index);

        if conn.entrypoint == Entrypoint::Https && parts.version == Version::HTTP_2 {
            let bare = host_without_port(host);
            if !self.certs.load().covers(conn.sni.as_deref(), bare) {
                return Err(ProxyError::Misdirected);
            }
        }
        if conn.entrypoint == Entrypoint::Http && m.route.is_some_and(|r| r.redirect_to_https) {
            return Ok(self.redirect(host, &path, &parts.uri));
        }
        let upstream = &snap.upstreams[m.backend_index];
        let settings = &upstream.settings;
        if let Some(limit) = settings.max_body_bytes {
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(ProxyError::BodyTooLarge);
            }
        }
        // The forwarded request target: the received one when normalisation left it alone
        // (sharing its bytes), else the normalised path with the query.
        let path_and_query = match (&path, parts.uri.path_and_query()) {
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

        let upgrade =
            parts.version == Version::HTTP_11 && headers::is_upgrade_request(&parts.headers);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        let body_empty = body.is_end_stream();
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        let trusted = self
            .config
            .trusted_proxies
            .iter()
            .any(|c| c.contains(conn.peer.ip()));
        headers::set_forwarded(
            &mut parts.headers,
            &headers::ForwardedInfo {
                peer: &conn.peer_header,
                trusted,
                proto: conn.entrypoint.scheme(),
                host: &host_value,
                port: &conn.port_header,
            },
        );
        let request_id = headers::ensure_request_id(&mut parts.headers);
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, host_value.clone());
        }
        // A body-less request sends nothing upstream (and allocates no box for it).
        let mut body = Some(match (body_empty, settings.max_body_bytes) {
            (true, _) => body::empty(),
            (false, Some(limit)) => body::boxed(http_body_util::Limited::new(
                body,
                usize::try_from(limit).unwrap_or(usize::MAX),
            )),
            (false, None) => body::boxed(body),
        });
        let version = match settings.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::H2c => Version::HTTP_2,
        };
        let read_timeout = settings.read_timeout.unwrap_or(self.config.read_timeout);
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        // Only a body-less idempotent request to a backend with another endpoint can be
        // retried; only then do the headers need a copy for the second attempt.
        let retryable = idempotent && body_empty && upstream.balancer.endpoints().len() > 1;

        let mut avoid = None;
        let mut last_error = None;
        for attempt in 0..2 {
            let Some(endpoint) = upstream.balancer.pick(avoid) else {
                // No other endpoint to retry on: answer with what the first attempt got.
                return Err(last_error.unwrap_or(ProxyError::NoEndpoints));
            };
            // HTTP/1.1 sends the origin form (`/path?query`); hyper-util's h2c client wants
            // the absolute form for `:authority`.
            let mut target = http::uri::Parts::default();
            if upstream.h2c.is_some() {
                target.scheme = Some(http::uri::Scheme::HTTP);
                target.authority = Some(endpoint.authority().clone());
            }
            target.path_and_query = Some(path_and_query.clone());
            let uri = Uri::from_parts(target)
                .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
            let mut upreq = Request::new(body.take().unwrap_or_else(body::empty));
            *upreq.method_mut() = parts.method.clone();
            *upreq.uri_mut() = uri;
            *upreq.version_mut() = version;
            *upreq.headers_mut() = if attempt == 0 && retryable {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let inflight = endpoint.start();
            let sent =
                tokio::time::timeout(read_timeout, self.send_upstream(upstream, endpoint, upreq))
                    .await;
            let (resp, checkout) = match sent {
                Err(_) => return Err(ProxyError::UpstreamTimeout),
                Ok(Ok(sent)) => sent,
                Ok(Err((err, is_connect))) => {
                    if is_connect {
                        metrics::counter!("sluice_upstream_connect_errors_total", "service" => upstream.stats.service.clone()).increment(1);
                        if matches!(err, ProxyError::UpstreamRefused(_)) {
                            endpoint.mark_down();
                        }
                        // Nothing was sent: an idempotent request without a body is retried
                        // once on another endpoint.
                        if attempt == 0 && retryable {
                            avoid = Some(endpoint.addr);
                            body = Some(body::empty());
                            last_error = Some(err);
                            continue;
                        }
                    }
                    return Err(err);
                }
            };
            endpoint.mark_up();
            let mut resp = resp;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                let Some(client_upgrade) = client_upgrade else {
                    return Err(ProxyError::UpstreamProtocol);
                };
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                // The tunnel counts as an open connection until it closes, so graceful
                // shutdown waits for it (within the grace period).
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
            headers::strip_hop_by_hop(&mut rparts.headers, false);
            rparts
                .headers
                .entry(headers::X_REQUEST_ID.clone())
                .or_insert(request_id);
            return Ok(Response::from_parts(
                rparts,
                body::boxed(Tracked::new(rbody, inflight, checkout)),
            ));
        }
        Err(last_error.unwrap_or(ProxyError::NoEndpoints))
    }

    /// One exchange with one endpoint: the response, and the pooled HTTP/1.1 connection that
    /// carries its body. The error says whether it was a connect error (nothing sent).
    async fn send_upstream(
        &self,
        upstream: &Upstream,
        endpoint: &Arc<balance::EndpointState>,
        req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Option<pool::Checkout>), (ProxyError, bool)> {
        if let Some(client) = &upstream.h2c {
            return match client.request(req).await {
                Ok(resp) => Ok((resp, None)),
                Err(e) => Err((ProxyError::from_upstream_error(&e), e.is_connect())),
            };
        }
        match pool::send(
            endpoint,
            upstream.connect_timeout,
            self.config.upstream_idle_timeout,
            req,
        )
        .await
        {
            Ok((resp, checkout)) => Ok((resp, Some(checkout))),
            Err(pool::SendError::Connect(e)) => Err((ProxyError::from_upstream_error(&e), true)),
            Err(pool::SendError::Http(e)) => Err((ProxyError::from_upstream_error(&e), false)),
        }
    }

    fn redirect(&self, host: &str, path: &str, uri: &Uri) -> Response<ProxyBody> {
        let bare = host_without_port(host);
        let port = match self.config.https_redirect_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let location = format!("https://{bare}{port}{path}{query}");
        let mut resp = Response::new(body::full(Bytes::from(format!(
            "redirecting to {location}\n"
        ))));
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }

    fn record(
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
        if self.config.access_log {
            tracing::info!(
                target: "sluice::access",
                peer = %conn.peer,
                entrypoint = entrypoint.as_str(),
                method = stats::method_label(method),
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                ingress = %stats.ingress,
                service = %stats.service,
                error = error.unwrap_or(""),
            );
        }
    }
}

#[derive(Default)]
struct RequestLabels {
    /// The index of the backend the request was routed to.
    upstream: Option<usize>,
    error: Option<&'static str>,
}

/// The request host: the URI authority (HTTP/2 `:authority`, absolute-form) or the Host header.
fn request_host(parts: &http::request::Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    }
    .filter(|h| !h.is_empty())
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    let h = host.rsplit_once(':').map_or(host, |(h, _)| h);
    h.strip_suffix('.').unwrap_or(h)
}

/// Adapts a handler for hyper's `service_fn`.
pub(crate) async fn service(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(proxy.handle(&conn, req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    #[test]
    fn hosts_without_port() {
        assert_eq!(host_without_port("a.com:8443"), "a.com");
        assert_eq!(host_without_port("a.com."), "a.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("a.com"), "a.com");
    }
}
