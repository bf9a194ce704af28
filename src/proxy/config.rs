//! Proxy-wide settings ([`ProxyConfig`]) and the trusted-proxy networks ([`Cidr`]).

pub use crate::model::Cidr;
use std::time::Duration;

/// Proxy-wide settings. Per-backend annotations override the upstream timeouts and body size.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Time allowed from the accept to the first complete request head (TCP, TLS handshake,
    /// protocol sniff and head together), and on a keep-alive HTTP/1.1 connection from the
    /// first byte of a request head to its end: the slowloris bound.
    pub client_header_timeout: Duration,
    /// Time a connection may stay open with no request in progress: HTTP/1.1 keep-alive
    /// between requests; HTTP/2 with no open stream (then GOAWAY).
    pub idle_timeout: Duration,
    /// The longest wait between two reads of a request body from the client (nginx's
    /// `client_body_timeout`): a body that stalls longer gets 408.
    pub client_body_timeout: Duration,
    /// Client connections open at once (upgraded tunnels included) over every listener. At
    /// the limit the accept loops pause and the connection idle the longest is closed to make
    /// room. Default: from the process's open-file limit, see [`default_max_connections`].
    pub max_connections: usize,
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
    /// Peers (CIDRs) whose connections start with a PROXY protocol header (v1 or v2), read
    /// before TLS and HTTP on both entrypoints: the client it carries becomes the connection's
    /// peer. A connection from such a peer without a valid header is closed; connections from
    /// other peers are never parsed for one.
    pub proxy_protocol: Vec<Cidr>,
    /// The port HTTP requests are redirected to for HTTPS (omitted from the URL when 443).
    pub https_redirect_port: u16,
    /// Emit one JSON access-log line per request (tracing target `sluice::access`).
    pub access_log: bool,
    /// Passive outlier detection: when an endpoint is ejected.
    pub outlier: super::outlier::OutlierPolicy,
    /// Which server speaks HTTP/1.1 to clients, and which client to plain-HTTP/1.1 backends.
    pub http1: Http1Engine,
}

/// The HTTP/1.1 server of client connections and client of plain-HTTP/1.1 backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Http1Engine {
    /// sluice's own (`h1::server`: heads parsed in place, no buffer held while idle;
    /// `h1::client`: the exchange in the request's task, no buffer held by a pooled
    /// connection).
    #[default]
    Sluice,
    /// hyper's HTTP/1 server and client (the fallback).
    Hyper,
}

impl Http1Engine {
    /// The engine named by `SLUICE_HTTP1_ENGINE` (`hyper` or `sluice`), else the default.
    pub fn from_env() -> Http1Engine {
        match std::env::var("SLUICE_HTTP1_ENGINE").as_deref() {
            Ok("sluice") => Http1Engine::Sluice,
            Ok("hyper") => Http1Engine::Hyper,
            _ => Http1Engine::default(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            client_header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            max_header_bytes: 32 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            proxy_protocol: Vec::new(),
            https_redirect_port: 443,
            access_log: false,
            outlier: super::outlier::OutlierPolicy::default(),
            http1: Http1Engine::from_env(),
        }
    }
}

/// The default connection limit: from the soft open-file limit (`/proc/self/limits`, or 1024
/// when it cannot be read), see [`max_connections_for`].
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| soft_open_files_limit(&text))
        .unwrap_or(1024);
    max_connections_for(soft)
}

/// The connection limit for a soft open-file limit: a proxied connection holds two files (the
/// client socket and an upstream socket), and a tenth of the limit (at least 64) stays free for
/// listeners, idle pooled upstream connections, the manifests watch and the admin API. 1024
/// files give 461 connections; 1 048 576 give 471 859.
pub fn max_connections_for(open_files: u64) -> usize {
    let reserve = (open_files / 10).max(64);
    let conns = open_files.saturating_sub(reserve) / 2;
    usize::try_from(conns.max(16)).unwrap_or(usize::MAX)
}

/// The soft limit of "Max open files" in the text of `/proc/self/limits` (`None` when absent;
/// `unlimited` is `u64::MAX`).
pub fn soft_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_from_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127651               127651               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files_limit(limits), Some(1024));
        assert_eq!(
            soft_open_files_limit("Max open files  unlimited  unlimited  files\n"),
            Some(u64::MAX)
        );
        assert_eq!(soft_open_files_limit("Max processes 1 1\n"), None);
        assert_eq!(max_connections_for(1024), 461);
        assert_eq!(max_connections_for(256), 96);
        assert_eq!(max_connections_for(1_048_576), 471_859);
        assert_eq!(max_connections_for(10), 16, "a floor");
        assert!(max_connections_for(u64::MAX) > 1 << 40);
        assert!(default_max_connections() >= 16);
    }
}
