//! `sluice.io/*` annotations -> [`BackendSettings`], with a diagnostic per bad value.
//!
//! Annotations are parsed into typed settings here, once, and never spliced into any text
//! configuration: there is no template to inject into.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{
    BackendSettings, Diagnostic, Kind, LoadBalancer, ObjectRef, Reason, UpstreamProtocol,
};

/// `round-robin` (default) or `least-request`.
pub const LOAD_BALANCER: &str = "sluice.io/load-balancer";
/// `http` (default), `h2c` or `grpc` (same as h2c).
pub const BACKEND_PROTOCOL: &str = "sluice.io/backend-protocol";
/// A duration: `5s`, `500ms`, `1m`, or plain seconds.
pub const PROXY_CONNECT_TIMEOUT: &str = "sluice.io/proxy-connect-timeout";
/// A duration: `5s`, `500ms`, `1m`, or plain seconds.
pub const PROXY_READ_TIMEOUT: &str = "sluice.io/proxy-read-timeout";
/// A size: `8m`, `512k`, `1g`, plain bytes; `0` means unlimited.
pub const PROXY_BODY_SIZE: &str = "sluice.io/proxy-body-size";
/// `true` (default) or `false`.
pub const SSL_REDIRECT: &str = "sluice.io/ssl-redirect";

/// Parses the settings annotations of one Ingress.
pub fn settings(
    ingress: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    diags: &mut Vec<Diagnostic>,
) -> BackendSettings {
    let mut s = BackendSettings::default();
    let Some(annotations) = annotations else {
        return s;
    };
    let mut bad = |key: &str, value: &str, expected: &str| {
        diags.push(Diagnostic::error(
            Reason::InvalidAnnotation,
            Kind::Ingress,
            ingress,
            format!("metadata.annotations[{key}]"),
            format!("{value:?} is not valid: expected {expected}; the default is used"),
        ));
    };
    if let Some(v) = annotations.get(LOAD_BALANCER) {
        match v.trim() {
            "round-robin" => s.load_balancer = LoadBalancer::RoundRobin,
            "least-request" => s.load_balancer = LoadBalancer::LeastRequest,
            _ => bad(LOAD_BALANCER, v, "round-robin or least-request"),
        }
    }
    if let Some(v) = annotations.get(BACKEND_PROTOCOL) {
        match v.trim().to_ascii_lowercase().as_str() {
            "http" | "http1" => s.protocol = UpstreamProtocol::Http1,
            "h2c" | "grpc" => s.protocol = UpstreamProtocol::H2c,
            _ => bad(BACKEND_PROTOCOL, v, "http, h2c or grpc"),
        }
    }
    for (key, slot) in [
        (PROXY_CONNECT_TIMEOUT, &mut s.connect_timeout),
        (PROXY_READ_TIMEOUT, &mut s.read_timeout),
    ] {
        if let Some(v) = annotations.get(key) {
            match parse_duration(v) {
                Some(d) if !d.is_zero() => *slot = Some(d),
                _ => bad(
                    key,
                    v,
                    "a positive duration such as 5s, 500ms, 2m or a number of seconds",
                ),
            }
        }
    }
    if let Some(v) = annotations.get(PROXY_BODY_SIZE) {
        match parse_size(v) {
            Some(0) => s.max_body_bytes = None,
            Some(n) => s.max_body_bytes = Some(n),
            None => bad(
                PROXY_BODY_SIZE,
                v,
                "a size such as 8m, 512k, 1g or a number of bytes (0: unlimited)",
            ),
        }
    }
    if let Some(v) = annotations.get(SSL_REDIRECT) {
        match v.trim() {
            "true" => s.ssl_redirect = true,
            "false" => s.ssl_redirect = false,
            _ => bad(SSL_REDIRECT, v, "\"true\" or \"false\""),
        }
    }
    s
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a plain number of seconds. At most one day.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d <= Duration::from_secs(86_400)).then_some(d)
}

/// Parses `8m`, `512k`, `1g` (powers of 1024, either case) or a plain number of bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" => 1 << 10,
        "m" | "mb" | "mi" => 1 << 20,
        "g" | "gb" | "gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5 s"), None);
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("999999999999999999999h"), None);
        assert_eq!(parse_duration("2d"), None);
        assert_eq!(parse_size("8m"), Some(8 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5m"), None);
        assert_eq!(parse_size("99999999999999999999g"), None);
    }

    #[test]
    fn settings_and_diagnostics() {
        let me = ObjectRef::new("default", "web");
        let ann = BTreeMap::from([
            (LOAD_BALANCER.to_string(), "least-request".to_string()),
            (BACKEND_PROTOCOL.to_string(), "GRPC".to_string()),
            (PROXY_CONNECT_TIMEOUT.to_string(), "2s".to_string()),
            (PROXY_READ_TIMEOUT.to_string(), "soon".to_string()),
            (PROXY_BODY_SIZE.to_string(), "1m".to_string()),
            (SSL_REDIRECT.to_string(), "false".to_string()),
        ]);
        let mut diags = Vec::new();
        let s = settings(&me, Some(&ann), &mut diags);
        assert_eq!(s.load_balancer, LoadBalancer::LeastRequest);
        assert_eq!(s.protocol, UpstreamProtocol::H2c);
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.read_timeout, None);
        assert_eq!(s.max_body_bytes, Some(1 << 20));
        assert!(!s.ssl_redirect);
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags[0].to_string(),
            "default/web: metadata.annotations[sluice.io/proxy-read-timeout]: \"soon\" is not valid: \
             expected a positive duration such as 5s, 500ms, 2m or a number of seconds; the default is used"
        );
    }
}
