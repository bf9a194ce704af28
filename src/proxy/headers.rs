//! Request and response header rewriting: hop-by-hop stripping, `X-Forwarded-*`, request ids.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1), plus the
/// non-standard ones proxies commonly strip.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Port`.
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `X-Real-IP`.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes hop-by-hop headers and every header named in `Connection`. Call this *before*
/// adding the proxy's own headers, so that a client cannot make the proxy strip them
/// (Traefik CVE-2021-32813). When `keep_upgrade` is set (a WebSocket handshake), `Connection:
/// upgrade` and `Upgrade` are put back.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = if keep_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    // Most `Connection` headers only say keep-alive or close: nothing more to strip, and no
    // list to build.
    let names_others = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| !is_connection_option(t.trim()));
    if names_others {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // One pass over the names instead of a hash lookup per hop-by-hop name: most messages
    // carry none or one of them.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// `Connection` tokens that name no header to strip (or only ones stripped anyway).
fn is_connection_option(token: &str) -> bool {
    token.is_empty()
        || [
            "keep-alive",
            "close",
            "upgrade",
            "te",
            "trailer",
            "transfer-encoding",
        ]
        .iter()
        .any(|o| token.eq_ignore_ascii_case(o))
}

/// What the proxy knows about the client connection, as header values built once per
/// connection (a request only bumps their reference counts).
#[derive(Clone, Copy, Debug)]
pub struct ForwardedInfo<'a> {
    /// The peer's IP address.
    pub peer: &'a HeaderValue,
    /// Whether the peer is a trusted proxy whose `X-Forwarded-*` headers are kept.
    pub trusted: bool,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The request host as received (with port if any).
    pub host: &'a HeaderValue,
    /// The port the client connected to.
    pub port: &'a HeaderValue,
}

/// Sets `X-Forwarded-For` (appended to for trusted peers, replaced otherwise),
/// `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port` and `X-Real-IP` (kept from a
/// trusted peer when present, set otherwise).
pub fn set_forwarded(headers: &mut HeaderMap, f: &ForwardedInfo<'_>) {
    let prior = if f.trusted {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let peer = f.peer.to_str().unwrap_or_default();
        (!prior.is_empty())
            .then(|| HeaderValue::from_str(&format!("{}, {peer}", prior.join(", "))).ok())
            .flatten()
    } else {
        None
    };
    headers.insert(
        X_FORWARDED_FOR.clone(),
        prior.unwrap_or_else(|| f.peer.clone()),
    );
    let set = |headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue| {
        if !(f.trusted && headers.contains_key(name)) {
            headers.insert(name.clone(), value.clone());
        }
    };
    set(
        headers,
        &X_FORWARDED_PROTO,
        &HeaderValue::from_static(f.proto),
    );
    set(headers, &X_FORWARDED_HOST, f.host);
    set(headers, &X_FORWARDED_PORT, f.port);
    set(headers, &X_REAL_IP, f.peer);
}

/// A header value whose clones share one allocation (the first clone of a value built from a
/// `String` would otherwise allocate to promote it).
pub fn shared_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(s.as_bytes().to_vec())).ok()
}

/// Keeps a valid incoming `X-Request-Id` (1 to 128 visible ASCII characters) or sets a new
/// random one. Returns the id.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic) {
            return v.clone();
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let (hi, lo) = (fastrand::u64(..), fastrand::u64(..));
    for (i, c) in id.iter_mut().enumerate() {
        let word = if i < 16 { hi } else { lo };
        let shift = 60 - 4 * (i % 16);
        *c = HEX[usize::try_from((word >> shift) & 0xf).unwrap_or(0)];
    }
    let v = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .unwrap_or(HeaderValue::from_static("0"));
    headers.insert(X_REQUEST_ID.clone(), v.clone());
    v
}

/// Does the request ask for a protocol upgrade (WebSocket)?
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret, x-forwarded-for"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("x-keep", "yes"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
        // The proxy adds its own afterwards: a client cannot strip them.
        set_forwarded(
            &mut h,
            &ForwardedInfo {
                peer: &HeaderValue::from_static("10.0.0.9"),
                trusted: false,
                proto: "http",
                host: &HeaderValue::from_static("a.com"),
                port: &HeaderValue::from_static("80"),
            },
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
    }

    #[test]
    fn connection_options_only() {
        let mut h = map(&[
            ("connection", "Keep-Alive"),
            ("connection", "close,"),
            ("keep-alive", "timeout=5"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
        // A second Connection header naming a header still gets it stripped.
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn keeps_upgrade_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn forwarded_untrusted_replaced_trusted_appended() {
        let (peer, host, port) = (
            HeaderValue::from_static("10.0.0.9"),
            HeaderValue::from_static("a.com:8443"),
            HeaderValue::from_static("8443"),
        );
        let info = ForwardedInfo {
            peer: &peer,
            trusted: false,
            proto: "https",
            host: &host,
            port: &port,
        };
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil"),
        ]);
        set_forwarded(&mut h, &info);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.com:8443");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-real-ip"], "10.0.0.9");

        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(
            &mut h,
            &ForwardedInfo {
                trusted: true,
                proto: "http",
                ..info
            },
        );
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn request_ids() {
        let mut h = map(&[("x-request-id", "abc-123")]);
        assert_eq!(ensure_request_id(&mut h), "abc-123");
        let mut h = map(&[("x-request-id", "bad id")]);
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 32);
        assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        assert_eq!(h["x-request-id"], id);
        let other = ensure_request_id(&mut HeaderMap::new());
        assert_ne!(id, other, "ids are random");
    }

    #[test]
    fn shared_values_clone_equal() {
        let v = shared_value("10.0.0.9").unwrap();
        assert_eq!(v.clone(), "10.0.0.9");
        assert!(shared_value("a\nb").is_none());
    }
}
