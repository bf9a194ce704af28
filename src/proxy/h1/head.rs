//! An HTTP/1.1 request head parsed in place: the method, target and headers are byte ranges
//! ([`Span`]s) into the connection's buffer, nothing is copied or hashed, and the framing
//! decisions (body length, keep-alive, `Expect: 100-continue`, upgrade) are made while the
//! headers are walked once.
//!
//! The first piece of the lean HTTP/1.1 path (the performance issue): it decides exactly as
//! the server it will replace does, hyper 1.x's HTTP/1 server (on the same `httparse`), plus
//! the one rule sluice adds in front of hyper (`prescan`): a request with both
//! `Content-Length` and `Transfer-Encoding` is refused (400), not served with the length
//! dropped. tests/h1_head.rs feeds the same bytes to this parser and to hyper's server and
//! compares the decisions; so does the `h1_head_differential` fuzz target.

/// A byte range of the head (heads are at most 64 KiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u16,
    end: u16,
}

impl Span {
    /// The bytes of this span in `buf` (the buffer the head was parsed from).
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.range()]
    }

    /// This span as a range of indices.
    pub fn range(&self) -> std::ops::Range<usize> {
        usize::from(self.start)..usize::from(self.end)
    }

    fn within(buf: &[u8], part: &[u8]) -> Span {
        // `part` is a subslice of `buf` (httparse returns slices of its input).
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        let end = start + part.len();
        Span {
            start: u16::try_from(start).unwrap_or(u16::MAX),
            end: u16::try_from(end).unwrap_or(u16::MAX),
        }
    }
}

/// How the request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head; its spans index the buffer it was parsed from.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Bytes of the head, the blank line included: the body starts there.
    pub len: usize,
    /// The method token.
    pub method: Span,
    /// The request target as sent.
    pub target: Span,
    /// The request target, parsed (as hyper's server parses it) when it had to be copied to
    /// be checked; `None` for a plain origin-form target (`plain_origin_form`), which
    /// [`RequestHead::uri`] makes from the head's own bytes.
    pub uri: Option<http::Uri>,
    /// HTTP/1.1 (else HTTP/1.0).
    pub http11: bool,
    /// (name, value) of each header line, in order.
    pub headers: Vec<(Span, Span)>,
    /// The body's framing.
    pub framing: Framing,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An `Upgrade` header (HTTP/1.1) or a CONNECT.
    pub wants_upgrade: bool,
}

/// Why a head is refused; [`HeadError::status`] is the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The head is larger than allowed, or has too many headers: 431.
    TooLarge,
    /// The request target is longer than 65 534 bytes: 414.
    UriTooLong,
    /// A malformed request line, header line or request target: 400.
    Malformed,
    /// `Transfer-Encoding` on HTTP/1.0, or whose last coding is not `chunked`: 400.
    TransferEncoding,
    /// An invalid `Content-Length`, or two that differ: 400.
    ContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` (request smuggling's shape): 400.
    Ambiguous,
}

impl HeadError {
    /// The status code of the answer.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::UriTooLong => 414,
            _ => 400,
        }
    }
}

/// The most headers a request may carry (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// The longest request target (hyper's limit).
const MAX_TARGET_LEN: usize = u16::MAX as usize - 1;

/// Parses the request head at the start of `buf`. `Ok(None)`: not complete yet (read more,
/// unless `buf` already holds `max_head_bytes`, which the caller answers with 431). The
/// head's headers are written into `headers` (cleared first), whose allocation the caller
/// keeps between requests.
pub fn parse_request(
    buf: &[u8],
    max_head_bytes: usize,
    headers: &mut Vec<(Span, Span)>,
) -> Result<Option<RequestHead>, HeadError> {
    // Uninitialised slots: the parser writes the ones it fills (initialising all of them
    // cost about as much as parsing a small head).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head_bytes.min(usize::from(u16::MAX)) {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > max_head_bytes || len > usize::from(u16::MAX) {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    if target.len() > MAX_TARGET_LEN {
        return Err(HeadError::UriTooLong);
    }
    // What hyper's server accepts as a request target (`http::Uri`): checked the same way,
    // except that a target known to pass (most are) is parsed later from the head's bytes
    // rather than from a copy of them.
    let uri = if plain_origin_form(target.as_bytes()) {
        None
    } else {
        match http::Uri::try_from(target.as_bytes()) {
            Ok(uri) => Some(uri),
            Err(_) => return Err(HeadError::Malformed),
        }
    };
    let http11 = version == 1;
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut framing = Framing::Empty;
    let mut content_length: Option<u64> = None;
    let (mut is_cl, mut is_te, mut te_chunked) = (false, false, false);
    let mut expect_continue = false;
    let mut wants_upgrade = method == "CONNECT";
    headers.clear();
    for h in req.headers.iter() {
        let value = h.value;
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(HeadError::TransferEncoding);
            }
            is_te = true;
            content_length = None;
            te_chunked = last_coding_is_chunked(value);
            if te_chunked {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            is_cl = true;
            if !is_te {
                let n = digits(value).ok_or(HeadError::ContentLength)?;
                match content_length {
                    Some(prev) if prev != n => return Err(HeadError::ContentLength),
                    Some(_) => {}
                    None => {
                        if n > u64::MAX - 2 {
                            return Err(HeadError::TooLarge);
                        }
                        content_length = Some(n);
                        framing = if n == 0 {
                            Framing::Empty
                        } else {
                            Framing::Length(n)
                        };
                    }
                }
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            if saw_close || list_has(value, b"close") {
                saw_close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = list_has(value, b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            wants_upgrade = http11;
        }
        headers.push((
            Span::within(buf, h.name.as_bytes()),
            Span::within(buf, value),
        ));
    }
    if is_te && !te_chunked {
        return Err(HeadError::TransferEncoding);
    }
    if is_te && is_cl {
        return Err(HeadError::Ambiguous);
    }
    Ok(Some(RequestHead {
        len,
        method: Span::within(buf, method.as_bytes()),
        target: Span::within(buf, target.as_bytes()),
        uri,
        http11,
        headers: std::mem::take(headers),
        framing,
        keep_alive,
        expect_continue,
        wants_upgrade,
    }))
}

impl RequestHead {
    /// The request target as an `http::Uri`; `head` is the buffer the head was parsed from,
    /// split off (its bytes are shared, not copied). `None` cannot happen for a head
    /// [`parse_request`] accepted (its plain targets always parse); it is refused as
    /// malformed all the same.
    pub fn uri(&mut self, head: &bytes::Bytes) -> Option<http::Uri> {
        match self.uri.take() {
            Some(uri) => Some(uri),
            None => http::Uri::from_maybe_shared(head.slice(self.target.range())).ok(),
        }
    }
}

/// Bytes `http::Uri` takes as they are both in a path and in a query (`?` too: the first
/// one starts the query, later ones are query bytes), by http 1.x's tables: visible ASCII but
/// `"`, `#`, `<`, `>`, `` ` `` (and space and controls, which are not visible).
const PLAIN_TARGET: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x5F | 0x61..=0x7E);
        b += 1;
    }
    t
};

/// Whether `target` is an origin-form target (`/` first) of [`PLAIN_TARGET`] bytes only:
/// such a target is one `http::Uri` accepts (tested against it byte by byte), so it need not
/// be copied to be checked.
fn plain_origin_form(target: &[u8]) -> bool {
    target.first() == Some(&b'/') && target.iter().all(|&b| PLAIN_TARGET[usize::from(b)])
}

/// A header value as `HeaderValue::to_str` accepts it (visible ASCII, space, tab).
pub(crate) fn is_text(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    is_text(value)
        && value
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether a comma-separated header value has `token` (case-insensitive).
pub(crate) fn list_has(value: &[u8], token: &[u8]) -> bool {
    is_text(value)
        && value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A `Content-Length` value: decimal digits only, no sign, no overflow.
pub(crate) fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// What a message's `Content-Length` fields say, added up one field at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Length {
    /// No `Content-Length`.
    Absent,
    /// Every value (comma-separated lists included) is this length.
    Agreed(u64),
    /// A value that is not a length, or two that differ.
    Invalid,
}

impl Length {
    /// Adds one field's value; `true` when it was one number alone (digits only).
    pub(crate) fn add(&mut self, value: &[u8]) -> bool {
        // Most values are one number, as digits alone: read without splitting or trimming.
        if let Some(n) = digits(value) {
            self.agree(Some(n));
            return true;
        }
        for part in value.split(|&b| b == b',') {
            self.agree(digits(part.trim_ascii()));
        }
        false
    }

    /// The length every value agreed on; `None` when absent or invalid.
    pub(crate) fn agreed(self) -> Option<u64> {
        match self {
            Length::Agreed(n) => Some(n),
            Length::Absent | Length::Invalid => None,
        }
    }

    /// Adds one length (`None`: a part that is not one).
    fn agree(&mut self, n: Option<u64>) {
        *self = match (*self, n) {
            (Length::Invalid, _) | (_, None) => Length::Invalid,
            (Length::Absent, Some(n)) => Length::Agreed(n),
            (Length::Agreed(l), Some(n)) if l == n => Length::Agreed(n),
            (Length::Agreed(_), Some(_)) => Length::Invalid,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(raw.as_bytes(), 32 * 1024, &mut Vec::new())
    }

    #[test]
    fn spans_point_into_the_buffer() {
        let raw = "POST /a?b=1 HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\n\r\nhello";
        let h = parse(raw).unwrap().unwrap();
        let b = raw.as_bytes();
        assert_eq!(h.method.of(b), b"POST");
        assert_eq!(h.target.of(b), b"/a?b=1");
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.headers[0].0.of(b), b"Host");
        assert_eq!(h.headers[0].1.of(b), b"x.test");
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(&b[h.len..], b"hello");
        assert!(h.http11 && h.keep_alive && !h.expect_continue && !h.wants_upgrade);
    }

    #[test]
    fn framing_and_connection_decisions() {
        let h = |raw: &str| parse(raw).unwrap().unwrap();
        assert_eq!(
            h("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(
            h("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").framing,
            Framing::Empty
        );
        assert_eq!(
            h("PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").framing,
            Framing::Length(3)
        );
        assert!(!h("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(h("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!h("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        assert!(
            !h("GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n").keep_alive
        );
        assert!(
            h("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(h("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").wants_upgrade);
        assert!(!h("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n").wants_upgrade);
        assert!(h("CONNECT x.test:443 HTTP/1.1\r\n\r\n").wants_upgrade);
    }

    #[test]
    fn refusals_and_their_statuses() {
        for (raw, err) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::Ambiguous,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n",
                HeadError::Ambiguous,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                HeadError::TransferEncoding,
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                HeadError::Malformed,
            ),
            ("GET /a b HTTP/1.1\r\n\r\n", HeadError::Malformed),
            ("GET / HTTP/2.0\r\n\r\n", HeadError::Malformed),
        ] {
            assert_eq!(parse(raw).unwrap_err(), err, "{raw:?}");
            assert_eq!(err.status(), 400);
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&raw).unwrap_err(), HeadError::TooLarge);
        assert_eq!(HeadError::TooLarge.status(), 431);
        // Incomplete: more to read, unless the limit is reached.
        assert!(parse("GET / HTTP/1.1\r\nHost: x").unwrap().is_none());
        let partial = "GET / HTTP/1.1\r\nX: ".to_string() + &"a".repeat(100);
        assert_eq!(
            parse_request(partial.as_bytes(), 64, &mut Vec::new()).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn content_length_fields_add_up() {
        let read = |values: &[&[u8]]| {
            let mut length = Length::Absent;
            for v in values {
                length.add(v);
            }
            length
        };
        // One number alone (the fast path) and the same in lists and with spaces.
        assert_eq!(read(&[b"128"]), Length::Agreed(128));
        assert_eq!(read(&[b"0"]), Length::Agreed(0));
        assert_eq!(read(&[b"007"]), Length::Agreed(7));
        assert_eq!(read(&[b"5", b"5"]), Length::Agreed(5));
        assert_eq!(read(&[b"5", b" 5 , 5"]), Length::Agreed(5));
        assert_eq!(read(&[b"5, 5", b"5"]), Length::Agreed(5));
        assert_eq!(read(&[b"18446744073709551615"]), Length::Agreed(u64::MAX));
        // Differing, not a number, or beyond u64: invalid, and it stays so.
        assert_eq!(read(&[b"5", b"6"]), Length::Invalid);
        assert_eq!(read(&[b"5, 6"]), Length::Invalid);
        assert_eq!(read(&[b"18446744073709551616"]), Length::Invalid);
        for bad in [&b""[..], b"+5", b"-5", b"5a", b"0x5", b"5,", b" "] {
            assert_eq!(read(&[bad]), Length::Invalid, "{bad:?}");
            assert_eq!(read(&[b"5", bad]), Length::Invalid, "5 then {bad:?}");
        }
        assert_eq!(read(&[b"x", b"5"]), Length::Invalid);
    }

    #[test]
    fn plain_targets_are_the_ones_http_takes_as_they_are() {
        // Every byte, in the path, after it, and in the query: where the fast path takes a
        // target, `http::Uri` accepts its copy and the shared bytes alike, unchanged.
        let mut taken = 0;
        for b in 0..=255u8 {
            for shape in [
                &[b'/', b][..],
                &[b'/', b'a', b, b'b'],
                &[b'/', b'?', b],
                &[b'/', b'a', b'?', b'x', b, b'y'],
            ] {
                let copied = http::Uri::try_from(shape);
                if !plain_origin_form(shape) {
                    continue;
                }
                taken += 1;
                let copied = copied.unwrap_or_else(|e| panic!("{shape:?}: {e}"));
                let shared =
                    http::Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(shape)).unwrap();
                assert_eq!(copied, shared, "{shape:?}");
                let pq = shared.path_and_query().unwrap().as_str();
                assert_eq!(pq.as_bytes(), shape, "nothing dropped or changed");
            }
        }
        // The 89 visible ASCII bytes the set holds, in four shapes (none loses one).
        assert_eq!(taken, 89 * 4);
        // Targets that need the full check: asterisk, absolute and authority form, and
        // bytes `http` refuses, truncates or checks as UTF-8.
        for other in [
            &b"*"[..],
            b"http://a.test/",
            b"a.test:443",
            b"/a#frag",
            b"/a b",
            b"/\"q\"",
            b"/\xc3\xa9",
            b"",
        ] {
            assert!(!plain_origin_form(other), "{other:?}");
        }
    }

    #[test]
    fn a_plain_target_is_parsed_from_the_head_bytes() {
        let raw = "GET /a/b?c=d&e HTTP/1.1\r\nHost: x.test\r\n\r\n";
        let mut h = parse(raw).unwrap().unwrap();
        assert!(h.uri.is_none(), "no copy made to check it");
        let head = bytes::Bytes::copy_from_slice(&raw.as_bytes()[..h.len]);
        let uri = h.uri(&head).unwrap();
        assert_eq!(uri.path(), "/a/b");
        assert_eq!(uri.query(), Some("c=d&e"));
        // The path's bytes are the head's own.
        let at = uri.path_and_query().unwrap().as_str().as_ptr() as usize;
        assert_eq!(at, head.as_ptr() as usize + 4);
        // Other forms are parsed (from a copy) while the head is.
        let raw = "GET http://x.test/a HTTP/1.1\r\nHost: x.test\r\n\r\n";
        let mut h = parse(raw).unwrap().unwrap();
        assert!(h.uri.is_some());
        let uri = h.uri(&bytes::Bytes::new()).unwrap();
        assert_eq!(uri.host(), Some("x.test"));
        assert_eq!(
            parse("GET /a b HTTP/1.1\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
    }
}
