//! Proxy-wide settings ([`ProxyConfig`]) and the trusted-proxy networks ([`Cidr`]).

use std::net::IpAddr;
use std::time::Duration;

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
}
