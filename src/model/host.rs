//! Ingress hosts: exact names and `*.` wildcards, validated as the API server does.

use std::fmt;

/// Which request hosts a rule answers for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// Exactly this (lower-case) name.
    Exact(String),
    /// `*.suffix`: any name made of exactly one non-empty label followed by `.suffix`.
    /// Holds the suffix without the leading `*.`.
    Wildcard(String),
    /// A rule with no host: every request.
    Any,
}

/// Why a host was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Longer than 253 characters.
    #[error("must be no more than 253 characters")]
    TooLong,
    /// A label is empty, longer than 63 characters, or uses characters outside `[a-z0-9-]`.
    #[error(
        "label {0:?} is not valid: labels are 1 to 63 lower-case letters, digits or '-', and \
         start and end with a letter or digit"
    )]
    BadLabel(String),
    /// `*` somewhere other than as the whole first label.
    #[error("a wildcard must be the whole first label, as in '*.example.com'")]
    BadWildcard,
    /// An IP address.
    #[error("must be a DNS name, not an IP address")]
    IpAddress,
}

impl HostMatch {
    /// Parses an Ingress host (`spec.rules[].host` or `spec.tls[].hosts[]`). An empty string is
    /// [`HostMatch::Any`].
    pub fn parse(host: &str) -> Result<HostMatch, HostError> {
        if host.is_empty() {
            return Ok(HostMatch::Any);
        }
        if host.len() > 253 {
            return Err(HostError::TooLong);
        }
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Err(HostError::IpAddress);
        }
        let (wild, rest) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if rest.contains('*') {
            return Err(HostError::BadWildcard);
        }
        for label in rest.split('.') {
            if !valid_label(label) {
                return Err(HostError::BadLabel(label.to_string()));
            }
        }
        Ok(if wild {
            HostMatch::Wildcard(rest.to_string())
        } else {
            HostMatch::Exact(rest.to_string())
        })
    }

    /// Does this rule host cover `host` (already lower-case, without port or trailing dot)?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => match host.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest == suffix,
                None => false,
            },
            HostMatch::Any => true,
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Wildcard(s) => write!(f, "*.{s}"),
            HostMatch::Any => f.write_str("*"),
        }
    }
}

fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Normalises a request `Host` header or `:authority` for matching: strips the port and a
/// trailing dot and lower-cases. Returns `None` for hosts that can never match a rule host
/// (IP literals in brackets, empty, over 253 bytes), which then fall through to host-less rules.
pub fn normalize_request_host(host: &str, buf: &mut [u8; 253]) -> Option<usize> {
    let host = if host.starts_with('[') {
        return None;
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let n = host.len();
    if n == 0 || n > buf.len() {
        return None;
    }
    for (dst, src) in buf.iter_mut().zip(host.bytes()) {
        *dst = src.to_ascii_lowercase();
    }
    Some(n)
}

/// A request host's name: without its `:port` and one trailing dot, as received (case kept);
/// an IPv6 literal keeps its brackets (`[::1]:80` is `[::1]`).
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    let h = host.rsplit_once(':').map_or(host, |(h, _)| h);
    h.strip_suffix('.').unwrap_or(h)
}

/// Whether a request `Host` header or `:authority` is a host sluice answers for: a DNS name
/// of RFC 1123 labels (letters, digits and `-`, any case, 1 to 63 characters each, not
/// starting or ending with `-`; a trailing dot allowed; 253 characters at most), or an IPv4
/// address, or an IPv6 address in brackets; then an optional `:port` of at most five digits
/// (at most 65535). Anything else (userinfo, `?`, `/`, `_`, spaces...) is answered 400 before
/// routing, so that nothing (a redirect's `Location`, a log line) is ever built from it.
pub fn is_valid_request_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port.as_bytes())),
                None => return false,
            },
        }
    } else {
        let b = host.as_bytes();
        match b.iter().position(|&c| c == b':') {
            Some(i) => (Some(&b[..i]), Some(&b[i + 1..])),
            None => (Some(b), None),
        }
    };
    if let Some(port) = port
        && !port.is_empty()
        && (port.len() > 5
            || !port.iter().all(u8::is_ascii_digit)
            || port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) > 65_535)
    {
        return false;
    }
    let Some(name) = name else {
        return true;
    };
    is_valid_name(name)
}

/// Dot-separated RFC 1123 labels, a trailing dot allowed (see [`is_valid_request_host`]),
/// checked in one pass over the bytes: every request's host goes through it.
fn is_valid_name(name: &[u8]) -> bool {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    // The length of the label so far, and its last byte.
    let (mut label, mut last) = (0usize, b'.');
    for &c in name {
        if c == b'.' {
            if label == 0 || last == b'-' {
                return false;
            }
            label = 0;
        } else if c.is_ascii_alphanumeric() || (c == b'-' && label > 0) {
            label += 1;
            if label > 63 {
                return false;
            }
        } else {
            return false;
        }
        last = c;
    }
    label > 0 && last != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_without_port() {
        assert_eq!(host_without_port("a.com:8443"), "a.com");
        assert_eq!(host_without_port("a.com."), "a.com");
        assert_eq!(host_without_port("A.com.:80"), "A.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("a.com"), "a.com");
    }

    #[test]
    fn parses_hosts() {
        assert_eq!(
            HostMatch::parse("foo.bar.com"),
            Ok(HostMatch::Exact("foo.bar.com".into()))
        );
        assert_eq!(
            HostMatch::parse("*.foo.com"),
            Ok(HostMatch::Wildcard("foo.com".into()))
        );
        assert_eq!(HostMatch::parse(""), Ok(HostMatch::Any));
        assert_eq!(HostMatch::parse("10.0.0.1"), Err(HostError::IpAddress));
        assert_eq!(HostMatch::parse("::1"), Err(HostError::IpAddress));
        assert_eq!(HostMatch::parse("foo.*.com"), Err(HostError::BadWildcard));
        assert_eq!(HostMatch::parse("*"), Err(HostError::BadWildcard));
        assert_eq!(
            HostMatch::parse("Foo.com"),
            Err(HostError::BadLabel("Foo".into()))
        );
        assert_eq!(
            HostMatch::parse("-a.com"),
            Err(HostError::BadLabel("-a".into()))
        );
        assert_eq!(
            HostMatch::parse("a..com"),
            Err(HostError::BadLabel(String::new()))
        );
        assert_eq!(HostMatch::parse(&"a".repeat(254)), Err(HostError::TooLong));
        assert!(HostMatch::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let w = HostMatch::Wildcard("foo.com".into());
        assert!(w.matches("bar.foo.com"));
        assert!(!w.matches("baz.bar.foo.com"));
        assert!(!w.matches("foo.com"));
        assert!(!w.matches(".foo.com"));
    }

    #[test]
    fn valid_request_hosts() {
        for ok in [
            "a.com",
            "A.Example.COM",
            "a.com.",
            "a.com:8443",
            "a.com:",
            "localhost",
            "10.0.0.1",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "xn--caf-dma.example",
            "a-b.c",
        ] {
            assert!(is_valid_request_host(ok), "{ok:?} is valid");
        }
        for bad in [
            "",
            "evil?.wild.test",
            "a/b",
            "user@a.com",
            "a_b.com",
            "a..com",
            "-a.com",
            "a-.com",
            ".",
            "a.com:80:80",
            "a.com:99999",
            "a.com:+80",
            "a.com:123456",
            "[::1",
            "[nope]",
            "[::1]x",
            "a com",
            "a.com\t",
            "é.com",
        ] {
            assert!(!is_valid_request_host(bad), "{bad:?} is not valid");
        }
        assert!(is_valid_request_host(&format!("{}.com", "a".repeat(63))));
        assert!(!is_valid_request_host(&format!("{}.com", "a".repeat(64))));
        let long = vec!["a".repeat(50); 5].join(".");
        assert!(!is_valid_request_host(&long), "over 253");
    }

    #[test]
    fn request_host_normalisation() {
        let mut buf = [0u8; 253];
        let n = normalize_request_host("Foo.Example.COM.:8443", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"foo.example.com");
        assert_eq!(normalize_request_host("[::1]:80", &mut buf), None);
        assert_eq!(normalize_request_host("", &mut buf), None);
        assert_eq!(normalize_request_host(":80", &mut buf), None);
    }
}
