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
//!
//! The modules, each depending only on the ones before it:
//! - `body` (the one body type), `pool` (idle upstream connections per endpoint),
//!   `balance` (endpoint states and load balancing; each state owns its pool);
//! - `conn` (connection facts, the tracker, tunnels), `headers`, `stats`, `error`;
//! - `proxy_protocol` (the PROXY protocol header parser);
//! - `config` ([`ProxyConfig`]), `snapshot` ([`Snapshot`], [`Proxy::publish`]);
//! - `forward` (send upstream, retry, response), `request` (the phases of one request),
//!   `serve` (one accepted connection), `passthrough` (TLS connections spliced to a backend
//!   undecrypted).

/// `AsyncWrite` for an I/O wrapper that only looks at what is read: every write call goes
/// straight to its `inner` field.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<I> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}

pub mod accept;
mod access;
mod activity;
mod auth;
pub mod balance;
mod basic;
pub mod body;
mod clock;
mod config;
mod conn;
mod connect;
pub mod drain;
mod error;
mod forward;
mod grpc;
pub mod h1;
mod h2pool;
pub mod headers;
pub mod inspect;
pub mod outlier;
mod passthrough;
mod pool;
pub mod prescan;
pub mod proxy_protocol;
pub mod ratelimit;
mod request;
mod serve;
mod snapshot;
mod stats;
mod streams;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::acme::ChallengesHandle;
use crate::tls::CertStore;

use balance::EndpointRegistry;
pub use config::{
    Cidr, Http1Engine, ProxyConfig, default_max_connections, max_connections_for,
    soft_open_files_limit,
};
pub use conn::{ConnInfo, ConnTracker, Entrypoint};
pub use serve::{Guarded, serve_with_timeouts};
pub use snapshot::Snapshot;
use stats::RequestStats;

/// The proxy: shared by every connection task.
pub struct Proxy {
    config: ProxyConfig,
    snapshot: ArcSwap<Snapshot>,
    certs: Arc<ArcSwap<CertStore>>,
    /// ACME challenge answers (HTTP-01 here, TLS-ALPN-01 in the TLS resolver).
    challenges: ChallengesHandle,
    registry: EndpointRegistry,
    /// Retry budgets per backend, carried across publishes.
    budgets: snapshot::RetryBudgets,
    /// Per-client request budgets (`limit-rps`, `limit-rpm`).
    limiters: ratelimit::Limiters,
    /// Requests in progress per client (`limit-connections`).
    conn_counts: ratelimit::ConnCounts,
    /// Remembered basic-authentication successes (`auth-type: basic`).
    basic: basic::BasicCache,
    /// The client of external authentication services (`auth-url`), made on first use.
    auth_client: std::sync::OnceLock<auth::AuthClient>,
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

/// HTTP/2 keep-alive: a PING after this long without frames from the client...
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection closes if its answer takes longer than this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

impl Proxy {
    /// The HTTP/2 server for one connection whose streams run on its task (`streams`), with
    /// the settings of `server`'s HTTP/2 side.
    fn h2_server(
        &self,
        exec: streams::StreamExec,
    ) -> hyper::server::conn::http2::Builder<streams::StreamExec> {
        let mut h2 = hyper::server::conn::http2::Builder::new(exec);
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(H2_PING_INTERVAL))
            .keep_alive_timeout(H2_PING_TIMEOUT);
        h2
    }

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
            // Our own timeouts (`activity`) are finer; hyper's header timer (which also runs
            // between keep-alive requests) only backs them up.
            .header_read_timeout(config.client_header_timeout.max(config.idle_timeout))
            .max_buf_size(config.max_header_bytes.max(8192))
            .keep_alive(true);
        server
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(H2_PING_INTERVAL))
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Arc::new(Proxy {
            config,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            certs,
            challenges,
            registry: EndpointRegistry::default(),
            budgets: snapshot::RetryBudgets::default(),
            auth_client: std::sync::OnceLock::new(),
            basic: basic::BasicCache::default(),
            conn_counts: ratelimit::ConnCounts::default(),
            limiters: ratelimit::Limiters::default(),
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
}
