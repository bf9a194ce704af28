//! Request and response header rewriting: hop-by-hop stripping, untrusted client claims,
//! `X-Forwarded-*`, request ids.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1), plus the
/// non-standard ones proxies commonly strip and HTTP/2's upgrade settings. A `static`: a
/// `const` array would be built and dropped at each use (`HeaderName` has drop glue), once
/// per header in the loop below.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Headers by which a client claims something about the original request (its address,
/// scheme, host or path) that applications and frameworks believe. From a peer outside
/// `--trusted-proxies` they are removed before sluice sets its own `X-Forwarded-For`,
/// `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port` and `X-Real-IP`. Every other
/// `X-Forwarded-*` header ([`UNTRUSTED_PREFIX`]) goes too.
pub const UNTRUSTED: [&str; 7] = [
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
];

/// Every header whose name starts with this is removed from an untrusted peer's request
/// (`X-Forwarded-Prefix`, `X-Forwarded-Server`, `X-Forwarded-Ssl`...).
pub const UNTRUSTED_PREFIX: &str = "x-forwarded-";

fn is_untrusted(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with(UNTRUSTED_PREFIX) || UNTRUSTED.contains(&n)
}

/// Removes the [`UNTRUSTED`] headers and every `X-Forwarded-*` header (a request from a peer
/// that is not a trusted proxy).
pub fn strip_untrusted(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names, and no list unless needed.
    if !headers.keys().any(is_untrusted) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_untrusted(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Joins the `cookie` fields of an HTTP/2 request into one, separated by `"; "`, as an
/// HTTP/1.1 message must carry them (RFC 9113 section 8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(header::COOKIE, v);
    }
}

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
/// upgrade` and `Upgrade` are put back. Returns whether `Connection` named other headers
/// (they are gone too).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> bool {
    let upgrade = if keep_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    // One pass over the fields, rather than a hash lookup for each hop-by-hop name (most
    // messages carry none or one of them), reading `Connection` on the way: most only say
    // keep-alive or close, so there is nothing more to strip and no list to build.
    let mut present = 0u16;
    let mut names_others = false;
    for (name, value) in headers.iter() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
            if i == CONNECTION_INDEX {
                names_others |= connection_tokens(value.as_bytes()).names_others;
            }
        }
    }
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
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    names_others
}

/// What every forwarded response loses: `Content-Length` when `Transfer-Encoding` is there
/// too (the chunked framing was used, the length is wrong: RFC 9112 section 6.3), repeated
/// or listed lengths ([`one_content_length`]), and the hop-by-hop headers
/// ([`strip_hop_by_hop`]). sluice's HTTP/1.1 client applies the same rules as it reads a
/// head (`h1::client`).
pub fn strip_response(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    } else {
        one_content_length(headers);
    }
    strip_hop_by_hop(headers, false);
}

/// A response's `Content-Length` fields as one plain number: repeated equal fields, or a
/// list of equal numbers (`5, 5`), become one field (RFC 9110 section 8.6); lengths that
/// differ, or a value that is not a length, are removed. Only answers without a body (to a
/// HEAD, a 204, a 304) get here with those (both upstream clients refuse any other answer
/// whose lengths disagree, as hyper's client does), so no length frames anything. hyper's
/// server, which serves the answer on its engine, closes the connection without answering a
/// response that still carries them.
pub fn one_content_length(headers: &mut HeaderMap) {
    use super::h1::head::{Length, digits};
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return;
    };
    if values.next().is_none() && digits(first.as_bytes()).is_some() {
        // The usual: one number.
        return;
    }
    let mut length = Length::Absent;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        length.add(value.as_bytes());
    }
    match length.agreed() {
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// Whether `name` is one of the hop-by-hop fields every forwarded message loses. The
/// lengths are compared first: most names have none of theirs, and a length is cheaper to
/// compare than a name.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop_index(name).is_some()
}

/// [`HOP_BY_HOP`] as text (a standard `HeaderName`'s text is looked up in a table each time).
const HOP_BY_HOP_NAMES: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// `connection`'s place in [`HOP_BY_HOP`].
const CONNECTION_INDEX: usize = 0;

/// The lengths of [`HOP_BY_HOP_NAMES`], one bit each: a name of none of them (most names)
/// is not one, without a comparison.
const HOP_BY_HOP_LENGTHS: u64 = {
    let mut bits = 0;
    let mut i = 0;
    while i < HOP_BY_HOP_NAMES.len() {
        bits |= 1 << HOP_BY_HOP_NAMES[i].len();
        i += 1;
    }
    bits
};

/// `name`'s place in [`HOP_BY_HOP`].
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let n = name.as_str().as_bytes();
    if n.len() >= 64 || HOP_BY_HOP_LENGTHS & (1 << n.len()) == 0 {
        return None;
    }
    // The first byte before the rest: names of the same length mostly differ there.
    HOP_BY_HOP_NAMES
        .iter()
        .position(|h| h.len() == n.len() && h.as_bytes()[0] == n[0] && h.as_bytes() == n)
}

/// What a `Connection` value says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionTokens {
    /// `close`.
    pub close: bool,
    /// `keep-alive`.
    pub keep_alive: bool,
    /// Fields other than the hop-by-hop ones, which [`strip_hop_by_hop`] then removes too.
    pub names_others: bool,
}

/// What a `Connection` value says, in one pass over its tokens. A value that is not visible
/// ASCII says nothing, as `strip_hop_by_hop` and the servers read it.
pub fn connection_tokens(value: &[u8]) -> ConnectionTokens {
    let mut said = ConnectionTokens::default();
    // Most values are one of these two, whole: no split, no trim, no other checks.
    if value.eq_ignore_ascii_case(b"keep-alive") {
        said.keep_alive = true;
        return said;
    }
    if value.eq_ignore_ascii_case(b"close") {
        said.close = true;
        return said;
    }
    if !super::h1::head::is_text(value) {
        return said;
    }
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            said.close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            said.keep_alive = true;
        } else if !is_connection_option(std::str::from_utf8(token).unwrap_or("")) {
            said.names_others = true;
        }
    }
    said
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

/// The client's address for source-range checks: the peer's, unless the peer is a trusted
/// proxy; then the right-most `X-Forwarded-For` address that is not a trusted proxy (the
/// left-most when all are), as ingress-nginx's real-IP handling with `proxy-real-ip-cidr` and
/// recursion does. `None` when a trusted peer sends an `X-Forwarded-For` that does not parse:
/// the client is unknown. A port (`1.2.3.4:5678`, `[::1]:80`) is ignored.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[crate::model::Cidr],
) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut hops = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        for item in value.to_str().ok()?.split(',') {
            hops.push(parse_hop(item.trim())?);
        }
    }
    let Some(&first) = hops.first() else {
        return Some(peer);
    };
    Some(
        hops.iter()
            .rev()
            .copied()
            .find(|ip| !is_trusted(*ip))
            .unwrap_or(first),
    )
}

/// An `X-Forwarded-For` element: an address, optionally with a port.
fn parse_hop(item: &str) -> Option<IpAddr> {
    if let Ok(ip) = item.parse() {
        return Some(ip);
    }
    if let Ok(sa) = item.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    let (host, port) = item.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A header value whose clones share one allocation (the first clone of a value built from a
/// `String` would otherwise allocate to promote it).
pub fn shared_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(s.as_bytes().to_vec())).ok()
}

/// Whether the request's `TE` header lists `trailers`.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Keeps a valid incoming `X-Request-Id` (1 to 128 visible ASCII characters) or sets a new
/// random one. Returns the id.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = valid_request_id(headers) {
        return v;
    }
    let v = new_request_id();
    headers.insert(X_REQUEST_ID.clone(), v.clone());
    v
}

/// The request's `X-Request-Id`, if it is valid (1 to 128 visible ASCII characters).
pub fn valid_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(&X_REQUEST_ID)?;
    let b = v.as_bytes();
    (!b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)).then(|| v.clone())
}

/// Request ids cut from one block, made at once on a thread (see [`new_request_id`]).
const IDS_PER_BLOCK: usize = 64;

/// The length of a request id: 32 lower-case hex digits (128 random bits).
const ID_LEN: usize = 32;

thread_local! {
    /// This thread's block of request ids, and how many of them were handed out.
    static ID_BLOCK: std::cell::RefCell<(bytes::Bytes, usize)> =
        const { std::cell::RefCell::new((bytes::Bytes::new(), IDS_PER_BLOCK)) };
}

/// A new random request id: 32 lower-case hex digits.
///
/// Each thread makes 64 at once into one block and hands out slices of it, so a request's id
/// shares an allocation with 63 others instead of taking one of its own (an allocation and
/// a free per request, the ids being kept in header values). A block is freed once all its
/// ids are.
pub fn new_request_id() -> HeaderValue {
    let id = ID_BLOCK
        .try_with(|block| {
            let mut block = block.try_borrow_mut().ok()?;
            if block.1 == IDS_PER_BLOCK {
                *block = (id_block(IDS_PER_BLOCK), 0);
            }
            let i = block.1;
            block.1 += 1;
            Some(block.0.slice(i * ID_LEN..(i + 1) * ID_LEN))
        })
        .ok()
        .flatten()
        // During the thread's teardown: one of its own.
        .unwrap_or_else(|| id_block(1));
    HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("0"))
}

/// `count` random request ids, one after the other.
fn id_block(count: usize) -> bytes::Bytes {
    let mut block = Vec::with_capacity(count * ID_LEN);
    for _ in 0..count {
        block.extend_from_slice(&hex16(fastrand::u64(..)));
        block.extend_from_slice(&hex16(fastrand::u64(..)));
    }
    bytes::Bytes::from(block)
}

/// The 16 lower-case hex digits of `x`, most significant first, computed on all of them at
/// once (a table lookup and a push per digit cost about five times as much).
fn hex16(x: u64) -> [u8; 16] {
    const fn bytes(b: u8) -> u128 {
        u128::from_ne_bytes([b; 16])
    }
    let x = u128::from(x);
    // Spread the nibbles apart, halving the group size each step, until every nibble has a
    // byte of its own (the most significant nibble in the most significant byte).
    let x = ((x & 0xFFFF_FFFF_0000_0000) << 32) | (x & 0xFFFF_FFFF);
    let x = ((x & 0x0000_0000_FFFF_0000_0000_0000_FFFF_0000) << 16)
        | (x & 0x0000_0000_0000_FFFF_0000_0000_0000_FFFF);
    let x = ((x & 0x0000_FF00_0000_FF00_0000_FF00_0000_FF00) << 8)
        | (x & 0x0000_00FF_0000_00FF_0000_00FF_0000_00FF);
    let x = ((x & 0x00F0_00F0_00F0_00F0_00F0_00F0_00F0_00F0) << 4)
        | (x & 0x000F_000F_000F_000F_000F_000F_000F_000F);
    // Each byte is a nibble n: '0' + n, and 'a' - '0' - 10 more where n > 9 (n + 6 reaches
    // 16). No byte carries into the next: n + 6 < 256, '0' + 15 + 39 < 256.
    let above_nine = ((x + bytes(6)) >> 4) & bytes(1);
    (x + bytes(b'0') + above_nine * u128::from(b'a' - b'0' - 10)).to_be_bytes()
}

/// The headers the proxy adds to a request from a peer that is not a trusted proxy
/// (`X-Forwarded-For`, `-Proto`, `-Host`, `-Port`, `X-Real-IP`, and a new `X-Request-Id`),
/// kept beside the request's map rather than inserted into it when sluice's HTTP/1.1
/// client sends the request: that client writes them straight into the request head. Each
/// insert into a map hashes the name and probes the table; the names are known absent
/// (an untrusted peer's were stripped, an invalid request id removed), so nothing needs
/// looking up.
#[derive(Clone, Debug)]
pub struct Added {
    peer: HeaderValue,
    proto: &'static str,
    host: HeaderValue,
    port: HeaderValue,
    request_id: Option<HeaderValue>,
}

impl Added {
    /// What [`set_forwarded`] sets for an untrusted peer, and `request_id` when it is new.
    pub fn new(f: &ForwardedInfo<'_>, request_id: Option<HeaderValue>) -> Added {
        Added {
            peer: f.peer.clone(),
            proto: f.proto,
            host: f.host.clone(),
            port: f.port.clone(),
            request_id,
        }
    }

    /// The bytes [`Added::write`] writes.
    pub fn written_len(&self) -> usize {
        let fields: usize = Self::LINES
            .iter()
            .zip(self.values())
            .map(|(line, value)| line.len() + value.len())
            .sum();
        let id = self
            .request_id
            .as_ref()
            .map_or(0, |id| Self::REQUEST_ID.len() + id.len());
        fields + id + 2
    }

    /// The values of [`Added::LINES`], in their order.
    fn values(&self) -> [&[u8]; 5] {
        [
            self.peer.as_bytes(),
            self.proto.as_bytes(),
            self.host.as_bytes(),
            self.port.as_bytes(),
            self.peer.as_bytes(),
        ]
    }

    /// Each field's name with the line end before it (none before the first), in the order
    /// [`set_forwarded`] adds them: one copy per name instead of three.
    const LINES: [&'static [u8]; 5] = [
        b"x-forwarded-for: ",
        b"\r\nx-forwarded-proto: ",
        b"\r\nx-forwarded-host: ",
        b"\r\nx-forwarded-port: ",
        b"\r\nx-real-ip: ",
    ];
    /// The request id's line, after them (as [`ensure_request_id`] adds it).
    const REQUEST_ID: &'static [u8] = b"\r\nx-request-id: ";

    /// Writes the fields as head lines.
    pub fn write(&self, out: &mut Vec<u8>) {
        for (line, value) in Self::LINES.iter().zip(self.values()) {
            out.extend_from_slice(line);
            out.extend_from_slice(value);
        }
        if let Some(id) = &self.request_id {
            out.extend_from_slice(Self::REQUEST_ID);
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Inserts the fields into `headers` (a request that goes to another client after all).
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        headers.insert(X_FORWARDED_FOR.clone(), self.peer.clone());
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto),
        );
        headers.insert(X_FORWARDED_HOST.clone(), self.host.clone());
        headers.insert(X_FORWARDED_PORT.clone(), self.port.clone());
        headers.insert(X_REAL_IP.clone(), self.peer.clone());
        if let Some(id) = &self.request_id {
            headers.insert(X_REQUEST_ID.clone(), id.clone());
        }
    }
}

/// Does the request ask for a protocol upgrade (WebSocket)? An upgrade to `h2c` is not
/// forwarded (it would switch the upstream connection to HTTP/2 behind our back): such a
/// request goes upstream as a plain request.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let upgrade = headers.get_all(header::UPGRADE);
    // Most requests ask for none: one lookup says so.
    if upgrade.iter().next().is_none() {
        return false;
    }
    let h2c = upgrade
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("h2c"));
    !h2c && headers
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
        let values = forwarded_values();
        let info = forwarded_info(&values);
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
    fn untrusted_claims_are_stripped() {
        let mut h = map(&[
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-prefix", "/admin"),
            ("x-forwarded-for", "6.6.6.6"),
            ("X-Original-URL", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("true-client-ip", "1.1.1.1"),
            ("x-client-ip", "1.1.1.1"),
            ("x-cluster-client-ip", "1.1.1.1"),
            ("x-real-ip", "1.1.1.1"),
            ("x-forwardedfor", "kept: not the prefix"),
            ("cookie", "a=1"),
        ]);
        strip_untrusted(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["cookie", "x-forwardedfor"]);
        let mut none = map(&[("accept", "*/*")]);
        strip_untrusted(&mut none);
        assert_eq!(none.len(), 1);
    }

    #[test]
    fn h2_cookies_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2; c=3");
        let mut one = map(&[("cookie", "a=1")]);
        join_cookies(&mut one);
        assert_eq!(one["cookie"], "a=1");
    }

    #[test]
    fn upgrade_to_h2c_is_not_an_upgrade() {
        let h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ]);
        assert!(!is_upgrade_request(&h));
        let mut stripped = h.clone();
        strip_hop_by_hop(&mut stripped, false);
        assert!(stripped.is_empty(), "{stripped:?}");
        let ws = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&ws));
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
    fn hex_digits_as_format_writes_them() {
        let mut values = vec![
            0,
            1,
            9,
            10,
            15,
            16,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            0x9a9a_9a9a_9a9a_9a9a,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
        ];
        values.extend((0..64).map(|i| 1u64 << i));
        values.extend((0..1000).map(|_| fastrand::u64(..)));
        for x in values {
            assert_eq!(
                std::str::from_utf8(&hex16(x)).unwrap(),
                format!("{x:016x}"),
                "{x:#x}"
            );
        }
    }

    #[test]
    fn request_ids_cut_from_blocks_are_all_distinct_and_well_formed() {
        // Across three blocks of a thread, and beyond the first block of another.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * IDS_PER_BLOCK + 1 {
            let id = new_request_id();
            assert_eq!(id.len(), ID_LEN);
            assert!(
                id.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
                "{id:?}"
            );
            assert!(seen.insert(id.as_bytes().to_vec()), "{id:?} twice");
        }
        let theirs = std::thread::spawn(|| {
            (0..IDS_PER_BLOCK + 1)
                .map(|_| new_request_id().as_bytes().to_vec())
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        for id in theirs {
            assert!(seen.insert(id), "another thread's ids differ");
        }
    }

    /// The connection values of the `set_forwarded` tests: peer, host, port.
    fn forwarded_values() -> (HeaderValue, HeaderValue, HeaderValue) {
        (
            HeaderValue::from_static("10.0.0.9"),
            HeaderValue::from_static("a.com:8443"),
            HeaderValue::from_static("8443"),
        )
    }

    /// The forwarding info of an `https` connection from an untrusted peer with those values.
    fn forwarded_info(
        (peer, host, port): &(HeaderValue, HeaderValue, HeaderValue),
    ) -> ForwardedInfo<'_> {
        ForwardedInfo {
            peer,
            trusted: false,
            proto: "https",
            host,
            port,
        }
    }

    #[test]
    fn added_fields_are_what_the_map_would_get() {
        let values = forwarded_values();
        let info = forwarded_info(&values);
        for id in [None, Some(new_request_id())] {
            let mut want = HeaderMap::new();
            set_forwarded(&mut want, &info);
            if let Some(id) = &id {
                want.insert(X_REQUEST_ID.clone(), id.clone());
            }
            let added = Added::new(&info, id.clone());
            let mut got = HeaderMap::new();
            added.insert_into(&mut got);
            assert_eq!(got, want);
            let mut lines = Vec::new();
            added.write(&mut lines);
            assert_eq!(lines.len(), added.written_len());
            let mut want_lines = Vec::new();
            for (n, v) in &want {
                want_lines.extend_from_slice(format!("{n}: ").as_bytes());
                want_lines.extend_from_slice(v.as_bytes());
                want_lines.extend_from_slice(b"\r\n");
            }
            assert_eq!(
                String::from_utf8(lines).unwrap(),
                String::from_utf8(want_lines).unwrap()
            );
        }
        assert_eq!(valid_request_id(&map(&[("x-request-id", "a b")])), None);
        assert_eq!(
            valid_request_id(&map(&[("x-request-id", "ab")])).unwrap(),
            "ab"
        );
    }

    #[test]
    fn shared_values_clone_equal() {
        let v = shared_value("10.0.0.9").unwrap();
        assert_eq!(v.clone(), "10.0.0.9");
        assert!(shared_value("a\nb").is_none());
    }

    #[test]
    fn the_client_address_behind_trusted_proxies() {
        let trusted: Vec<crate::model::Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let proxy = ip("10.0.0.5");
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            client_ip(ip("203.0.113.1"), &xff(&["192.0.2.1"]), &trusted),
            Some(ip("203.0.113.1"))
        );
        // A trusted peer: the right-most untrusted hop, across repeated headers.
        assert_eq!(
            client_ip(
                proxy,
                &xff(&["192.0.2.1, 198.51.100.2", "10.0.0.9"]),
                &trusted
            ),
            Some(ip("198.51.100.2"))
        );
        // All trusted: the left-most; none: the peer.
        assert_eq!(
            client_ip(proxy, &xff(&["10.1.1.1, 10.2.2.2"]), &trusted),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(client_ip(proxy, &xff(&[]), &trusted), Some(proxy));
        // Ports are ignored; anything else makes the client unknown.
        assert_eq!(
            client_ip(proxy, &xff(&["192.0.2.1:4711"]), &trusted),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            client_ip(proxy, &xff(&["[2001:db8::1]:443"]), &trusted),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(client_ip(proxy, &xff(&["unknown"]), &trusted), None);
        assert_eq!(client_ip(proxy, &xff(&["192.0.2.1, "]), &trusted), None);
    }

    #[test]
    fn repeated_or_listed_content_lengths_become_one_or_none() {
        let one = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_str(v).unwrap());
            }
            one_content_length(&mut h);
            h.get_all(header::CONTENT_LENGTH)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let none: [&str; 0] = [];
        assert_eq!(one(&[]), none);
        // One number alone stays as it came.
        assert_eq!(one(&["5"]), ["5"]);
        assert_eq!(one(&["007"]), ["007"]);
        // Repeated or listed, and equal: one.
        assert_eq!(one(&["5", "5"]), ["5"]);
        assert_eq!(one(&["5, 5"]), ["5"]);
        assert_eq!(one(&["5", " 5 , 5"]), ["5"]);
        // Different, or not a length: none.
        for bad in [
            &["5", "6"][..],
            &["5, 6"],
            &["+5"],
            &["abc"],
            &["5", "x"],
            &[""],
        ] {
            assert_eq!(one(bad), none, "{bad:?}");
        }
        // `strip_response` does it too, and with `Transfer-Encoding` removes them all.
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        strip_response(&mut h);
        assert_eq!(h.get_all(header::CONTENT_LENGTH).iter().count(), 1);
        h.append(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        strip_response(&mut h);
        assert!(!h.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn hop_by_hop_names_and_connection_tokens() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(HOP_BY_HOP_NAMES[i], name.as_str());
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert_eq!(HOP_BY_HOP[CONNECTION_INDEX], header::CONNECTION);
        // Names of a hop-by-hop name's length (or first byte) that are not one, and one past
        // the length bits.
        let long = "x".repeat(64);
        for name in [
            "content-length",
            "host",
            "x-connection",
            "tee",
            "upgrades",
            "date",
            "user-agent",
            "ke",
            "sec-fetch-mode",
            "sec-ch-ua-mobile",
            "sec-ch-ua-platform",
            "trailed",
            long.as_str(),
        ] {
            assert!(
                !is_hop_by_hop(&HeaderName::from_bytes(name.as_bytes()).unwrap()),
                "{name}"
            );
        }
        let said = |close, keep_alive, names_others| ConnectionTokens {
            close,
            keep_alive,
            names_others,
        };
        let cases: &[(&[u8], ConnectionTokens)] = &[
            (b"keep-alive", said(false, true, false)),
            (b"KEEP-ALIVE", said(false, true, false)),
            (b"Close", said(true, false, false)),
            (b"close", said(true, false, false)),
            (b"keep-alive ", said(false, true, false)),
            (b"keep-alive,x-secret", said(false, true, true)),
            (b" close , Keep-Alive ,", said(true, true, false)),
            (b"upgrade, te, trailer", said(false, false, false)),
            (b"close, x-secret", said(true, false, true)),
            (b"X-Secret", said(false, false, true)),
            // Not visible ASCII: says nothing (as `list_has` and `strip_hop_by_hop` read it).
            (b"close, x\x80", said(false, false, false)),
            (b"", said(false, false, false)),
        ];
        for (value, want) in cases {
            assert_eq!(
                connection_tokens(value),
                *want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
            // The same answers as the general path's readings.
            assert_eq!(
                want.close,
                super::super::h1::head::list_has(value, b"close")
            );
            let mut map = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(value) {
                map.insert(header::CONNECTION, v);
                map.insert(
                    HeaderName::from_static("x-secret"),
                    HeaderValue::from_static("1"),
                );
                strip_hop_by_hop(&mut map, false);
                assert_eq!(
                    want.names_others,
                    !map.contains_key("x-secret"),
                    "{value:?}"
                );
            }
        }
    }
}
