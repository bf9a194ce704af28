//! A pre-parse of HTTP/1.1 request framing, run over the raw bytes of a client connection as
//! they are read, before hyper parses them.
//!
//! hyper accepts a request carrying both `Content-Length` and `Transfer-Encoding` (it drops
//! the length, decodes the chunked body and closes the connection afterwards, as RFC 9112
//! section 6.3 allows), offers no setting to reject it, and removes the `Content-Length`
//! before the request reaches us. sluice answers such a request 400 instead (the issue's
//! choice, and what RFC 9112 recommends for an intermediary), so it has to see the head
//! itself: [`HeadScanner`] follows the message boundaries of the byte stream (each head, then
//! its body by `Content-Length` or chunked encoding, exactly as hyper frames them) and
//! reports, per request head, whether it was ambiguous.
//!
//! The scanner is deliberately strict and gives up ([`HeadScanner::is_stopped`]) on anything
//! hyper would reject or that it does not follow (an HTTP/2 preface, a malformed chunk, an
//! upgrade, the end of the connection's keep-alive): hyper answers or closes such
//! connections itself, and a stopped scanner only means no further verdicts (never a wrong
//! one). It keeps a constant amount of state whatever the input, and the verdicts do not
//! depend on how the stream is split into reads (the fuzz target `request_framing` checks
//! both).

/// Longest header name the scanner compares (`transfer-encoding`, 17 bytes).
const NAME_MAX: usize = 17;

/// What the scanner learned from the bytes of one read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// How many request heads completed in this read.
    pub completed: u64,
    /// The last of them carried both `Content-Length` and `Transfer-Encoding` (the scanner
    /// stops after such a head, so only the last one can).
    pub ambiguous: bool,
    /// The stream is HTTP/2 (the connection preface was read).
    pub h2: bool,
}

/// Where the scanner is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between messages: empty lines are skipped before a request line.
    Idle,
    /// In the request line; `pri` tracks a possible HTTP/2 preface.
    RequestLine { len: u32, pri: bool, cr: bool },
    /// At the start of a header line (or the empty line ending the head).
    LineStart { cr: bool },
    /// In a header name.
    Name {
        len: u8,
        buf: [u8; NAME_MAX],
        overflow: bool,
    },
    /// In a header value.
    Value { header: Header, cr: bool },
    /// `Content-Length` bytes of body left.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Given up: no more verdicts.
    Stopped,
}

/// The header whose value is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    Other,
    /// `Content-Length`: the digits so far, whether any digit was seen, trailing OWS seen.
    ContentLength {
        value: u64,
        digits: bool,
        trailing: bool,
    },
    /// `Transfer-Encoding`: how the value so far ends (see `value_byte`).
    TransferEncoding {
        tail: u8,
    },
}

/// The chunked-body states, as hyper's decoder has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

/// The framing headers of the head being read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last `Transfer-Encoding` value ended with `chunked`.
    chunked: bool,
    /// `Upgrade` or `Connection: close`-free heads keep the connection; an upgrade does not.
    upgrade: bool,
}

/// Follows HTTP/1.1 message boundaries in a client's byte stream (see the module docs).
#[derive(Clone, Debug)]
pub struct HeadScanner {
    state: State,
    framing: Framing,
    /// The request line starts with `CONNECT `.
    connect: bool,
    method_len: u8,
    method: [u8; 8],
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner::new()
    }
}

/// The index of the first CR or LF in `bytes` (its length when there is none).
fn line_end(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len())
}

/// The HTTP/2 connection preface's request line.
const H2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0";

impl HeadScanner {
    /// A scanner at the start of a connection.
    pub fn new() -> HeadScanner {
        HeadScanner {
            state: State::Idle,
            framing: Framing::default(),
            connect: false,
            method_len: 0,
            method: [0; 8],
        }
    }

    /// True once the scanner has given up (no more verdicts will come).
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// True while a request head has started and is not complete.
    pub fn in_head(&self) -> bool {
        matches!(
            self.state,
            State::RequestLine { .. }
                | State::LineStart { .. }
                | State::Name { .. }
                | State::Value { .. }
        )
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Scan {
        let mut scan = Scan::default();
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Stopped => break,
                // Bodies are skipped in bulk.
                State::Body(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Idle
                    } else {
                        State::Body(left)
                    };
                    continue;
                }
                State::Chunked(Chunk::Data(left)) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += take;
                    let left = left - take as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                    continue;
                }
                // The value of a header the scanner does not look at, and the rest of a
                // request line past its method (and past a possible HTTP/2 preface): nothing
                // but the line end matters, found in bulk.
                State::Value {
                    header: Header::Other,
                    cr: false,
                } => {
                    i += line_end(&bytes[i..]);
                    if i == bytes.len() {
                        break;
                    }
                }
                State::RequestLine {
                    len,
                    pri: false,
                    cr: false,
                } if usize::from(self.method_len) != len as usize => {
                    let skip = line_end(&bytes[i..]);
                    self.state = State::RequestLine {
                        len: len.saturating_add(u32::try_from(skip).unwrap_or(u32::MAX)),
                        pri: false,
                        cr: false,
                    };
                    i += skip;
                    if i == bytes.len() {
                        break;
                    }
                }
                _ => {}
            }
            self.byte(bytes[i], &mut scan);
            i += 1;
        }
        scan
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
    }

    fn byte(&mut self, b: u8, scan: &mut Scan) {
        self.state = match self.state {
            State::Idle => match b {
                // httparse skips empty lines before a request line.
                b'\r' | b'\n' => State::Idle,
                _ => {
                    self.framing = Framing::default();
                    self.method_len = 0;
                    self.connect = false;
                    self.push_method(b);
                    State::RequestLine {
                        len: 1,
                        pri: b == H2_PREFACE_LINE[0],
                        cr: false,
                    }
                }
            },
            State::RequestLine { len, pri, cr } => {
                if cr && b != b'\n' {
                    return self.stop();
                }
                match b {
                    b'\r' => State::RequestLine { len, pri, cr: true },
                    b'\n' => {
                        if pri && len as usize == H2_PREFACE_LINE.len() {
                            scan.h2 = true;
                            return self.stop();
                        }
                        self.connect = &self.method[..usize::from(self.method_len)] == b"CONNECT";
                        State::LineStart { cr: false }
                    }
                    _ => {
                        if self.method_len as usize == len as usize && b != b' ' {
                            self.push_method(b);
                        }
                        let pri = pri && H2_PREFACE_LINE.get(len as usize) == Some(&b);
                        State::RequestLine {
                            len: len.saturating_add(1),
                            pri,
                            cr: false,
                        }
                    }
                }
            }
            State::LineStart { cr } => match (cr, b) {
                (false, b'\r') => State::LineStart { cr: true },
                (_, b'\n') => return self.end_of_head(scan),
                (true, _) => return self.stop(),
                // Obsolete line folding: httparse rejects it in requests.
                (false, b' ' | b'\t') => return self.stop(),
                (false, _) => {
                    let mut buf = [0u8; NAME_MAX];
                    buf[0] = b.to_ascii_lowercase();
                    State::Name {
                        len: 1,
                        buf,
                        overflow: false,
                    }
                }
            },
            State::Name {
                len,
                mut buf,
                overflow,
            } => match b {
                b':' => {
                    let name = &buf[..usize::from(len)];
                    let header = if overflow {
                        Header::Other
                    } else if name == b"content-length" {
                        Header::ContentLength {
                            value: 0,
                            digits: false,
                            trailing: false,
                        }
                    } else if name == b"transfer-encoding" {
                        self.framing.transfer_encoding = true;
                        Header::TransferEncoding { tail: 0 }
                    } else {
                        if name == b"upgrade" {
                            self.framing.upgrade = true;
                        }
                        Header::Other
                    };
                    State::Value { header, cr: false }
                }
                // A header line without a colon, or a name with whitespace: hyper rejects it.
                b'\r' | b'\n' | b' ' | b'\t' => return self.stop(),
                _ => {
                    if usize::from(len) < NAME_MAX {
                        buf[usize::from(len)] = b.to_ascii_lowercase();
                        State::Name {
                            len: len + 1,
                            buf,
                            overflow,
                        }
                    } else {
                        State::Name {
                            len,
                            buf,
                            overflow: true,
                        }
                    }
                }
            },
            State::Value { header, cr } => {
                if cr && b != b'\n' {
                    return self.stop();
                }
                match b {
                    b'\r' => State::Value { header, cr: true },
                    b'\n' => {
                        if !self.end_of_value(header) {
                            return self.stop();
                        }
                        State::LineStart { cr: false }
                    }
                    _ => match self.value_byte(header, b) {
                        Some(header) => State::Value { header, cr: false },
                        None => return self.stop(),
                    },
                }
            }
            State::Chunked(chunk) => match self.chunk_byte(chunk, b) {
                Some(Some(next)) => State::Chunked(next),
                Some(None) => State::Idle,
                None => return self.stop(),
            },
            State::Body(_) | State::Stopped => return,
        };
    }

    fn push_method(&mut self, b: u8) {
        if usize::from(self.method_len) < self.method.len() {
            self.method[usize::from(self.method_len)] = b;
            self.method_len += 1;
        }
    }

    /// The next state of a header value after byte `b` (`None`: hyper would reject it).
    fn value_byte(&mut self, header: Header, b: u8) -> Option<Header> {
        Some(match header {
            Header::Other => Header::Other,
            Header::ContentLength {
                value,
                digits,
                trailing,
            } => match b {
                b' ' | b'\t' => Header::ContentLength {
                    value,
                    digits,
                    trailing: digits,
                },
                b'0'..=b'9' if !trailing => Header::ContentLength {
                    value: value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
                    digits: true,
                    trailing: false,
                },
                _ => return None,
            },
            Header::TransferEncoding { tail } => {
                // Whether the last comma-separated token, trimmed, is `chunked` (hyper's
                // test): `tail` is 0 while only whitespace followed the last comma, 1 to 7
                // while the token so far is a prefix of `chunked`, 8 after `chunked` and
                // whitespace, 9 in any other token.
                const CHUNKED: &[u8] = b"chunked";
                let lower = b.to_ascii_lowercase();
                let tail = match (tail, lower) {
                    (_, b',') => 0,
                    (0, b' ' | b'\t') => 0,
                    (7 | 8, b' ' | b'\t') => 8,
                    (t @ 0..=6, c) if CHUNKED[usize::from(t)] == c => t + 1,
                    _ => 9,
                };
                Header::TransferEncoding { tail }
            }
        })
    }

    /// Records a complete header line; false when hyper would reject the head.
    fn end_of_value(&mut self, header: Header) -> bool {
        match header {
            Header::Other => true,
            Header::ContentLength { value, digits, .. } => {
                if !digits {
                    return false;
                }
                match self.framing.content_length {
                    Some(prev) if prev != value => false,
                    _ => {
                        self.framing.content_length = Some(value);
                        true
                    }
                }
            }
            Header::TransferEncoding { tail } => {
                self.framing.chunked = matches!(tail, 7 | 8);
                true
            }
        }
    }

    /// The empty line after the headers: a verdict, then the body.
    fn end_of_head(&mut self, scan: &mut Scan) {
        let f = self.framing;
        let ambiguous = f.transfer_encoding && f.content_length.is_some();
        scan.ambiguous = ambiguous;
        scan.completed += 1;
        self.state = if ambiguous || f.upgrade || self.connect {
            // hyper closes the connection after an ambiguous request; an upgrade or CONNECT
            // turns the rest of the stream into tunnel bytes.
            State::Stopped
        } else if f.transfer_encoding {
            if f.chunked {
                State::Chunked(Chunk::Start)
            } else {
                // Not chunked: hyper answers 400 and closes.
                State::Stopped
            }
        } else {
            match f.content_length {
                Some(0) | None => State::Idle,
                Some(n) => State::Body(n),
            }
        };
    }

    /// The next chunked state after byte `b`: `Some(None)` at the end of the body, `None` on
    /// anything hyper's decoder rejects.
    fn chunk_byte(&self, chunk: Chunk, b: u8) -> Option<Option<Chunk>> {
        let hex = |b: u8| match b {
            b'0'..=b'9' => Some(u64::from(b - b'0')),
            b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
            b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
            _ => None,
        };
        let grow = |size: u64, d: u64| size.checked_mul(16)?.checked_add(d);
        Some(Some(match chunk {
            Chunk::Start => Chunk::Size(hex(b)?),
            Chunk::Size(size) => match b {
                b' ' | b'\t' => Chunk::SizeLws(size),
                b';' => Chunk::Extension(size),
                b'\r' => Chunk::SizeLf(size),
                _ => Chunk::Size(grow(size, hex(b)?)?),
            },
            Chunk::SizeLws(size) => match b {
                b' ' | b'\t' => Chunk::SizeLws(size),
                b';' => Chunk::Extension(size),
                b'\r' => Chunk::SizeLf(size),
                _ => return None,
            },
            Chunk::Extension(size) => match b {
                b'\r' => Chunk::SizeLf(size),
                b'\n' => return None,
                _ => Chunk::Extension(size),
            },
            Chunk::SizeLf(size) => match (b, size) {
                (b'\n', 0) => Chunk::EndCr,
                (b'\n', n) => Chunk::Data(n),
                _ => return None,
            },
            // Data is skipped in bulk by `feed`.
            Chunk::Data(n) => Chunk::Data(n),
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return None,
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Start,
                _ => return None,
            },
            Chunk::EndCr => match b {
                b'\r' => Chunk::EndLf,
                _ => Chunk::Trailer,
            },
            Chunk::Trailer => match b {
                b'\r' => Chunk::TrailerLf,
                _ => Chunk::Trailer,
            },
            Chunk::TrailerLf => match b {
                b'\n' => Chunk::EndCr,
                _ => return None,
            },
            Chunk::EndLf => match b {
                b'\n' => return Some(None),
                _ => return None,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One verdict per completed head, in order.
    fn push(out: &mut Vec<bool>, scan: Scan) {
        for i in 0..scan.completed {
            out.push(scan.ambiguous && i + 1 == scan.completed);
        }
    }

    /// The verdicts of a whole stream fed at once: one bool per head.
    fn verdicts(stream: &[u8]) -> (Vec<bool>, bool) {
        let mut s = HeadScanner::new();
        let mut out = Vec::new();
        push(&mut out, s.feed(stream));
        (out, s.is_stopped())
    }

    /// The same stream fed one byte at a time.
    fn verdicts_bytewise(stream: &[u8]) -> (Vec<bool>, bool) {
        let mut s = HeadScanner::new();
        let mut out = Vec::new();
        for b in stream {
            push(&mut out, s.feed(std::slice::from_ref(b)));
        }
        (out, s.is_stopped())
    }

    fn check(stream: &[u8], want: &[bool], stopped: bool) {
        assert_eq!(verdicts(stream), (want.to_vec(), stopped), "{stream:?}");
        assert_eq!(
            verdicts_bytewise(stream),
            (want.to_vec(), stopped),
            "{stream:?} byte by byte"
        );
    }

    #[test]
    fn clean_requests_in_a_row() {
        check(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
            &[false, false, false],
            false,
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_ambiguous_in_either_order() {
        check(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[true],
            true,
        );
        check(
            b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
            &[false, true],
            true,
        );
    }

    #[test]
    fn a_chunked_body_is_skipped_with_its_trailers() {
        let body = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nCL: 9\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        check(body, &[false, true], true);
    }

    #[test]
    fn body_bytes_that_look_like_heads_are_not_heads() {
        let stream = b"POST / HTTP/1.1\r\nContent-Length: 59\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        check(stream, &[false, false], false);
    }

    #[test]
    fn what_hyper_rejects_stops_the_scanner() {
        // A bad chunk size, a Content-Length that is not a number, two different lengths, a
        // non-chunked Transfer-Encoding, obsolete line folding, a header without a colon.
        for stream in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nnocolon\r\n\r\n",
            b"GET / HTTP/1.1\rX\r\n\r\n",
        ] {
            let (_, stopped) = verdicts(stream);
            assert!(stopped, "{:?}", String::from_utf8_lossy(stream));
        }
    }

    #[test]
    fn the_http2_preface_and_upgrades_stop_it() {
        let mut s = HeadScanner::new();
        let scan = s.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(scan.h2);
        assert!(s.is_stopped());
        check(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x00garbage",
            &[false],
            true,
        );
        check(b"CONNECT a:443 HTTP/1.1\r\n\r\nxx", &[false], true);
    }

    #[test]
    fn empty_lines_before_a_request_and_bare_lf() {
        check(
            b"\r\n\nGET / HTTP/1.1\nHost: a\nContent-Length: 2\n\nokGET / HTTP/1.1\n\n",
            &[false, false],
            false,
        );
    }

    #[test]
    fn in_head_while_a_head_is_incomplete() {
        let mut s = HeadScanner::new();
        assert!(!s.in_head());
        s.feed(b"\r\n");
        assert!(!s.in_head(), "empty lines before a request are not a head");
        s.feed(b"GE");
        assert!(s.in_head());
        let done = s.feed(b"T / HTTP/1.1\r\nContent-Length: 2\r\n\r\nx");
        assert_eq!(done.completed, 1);
        assert!(!s.in_head(), "in the body");
        s.feed(b"yG");
        assert!(s.in_head(), "the next head started");
    }

    #[test]
    fn many_heads_in_one_read() {
        let stream = b"GET / HTTP/1.1\r\n\r\n".repeat(100);
        let mut want = vec![false; 100];
        check(&stream, &want, false);
        let mut stream = stream;
        stream.extend_from_slice(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        want.push(true);
        check(&stream, &want, true);
    }

    proptest::proptest! {
        /// Streams made of request pieces (clean, chunked, ambiguous, broken) give the same
        /// verdicts however they are split into reads.
        #[test]
        fn verdicts_do_not_depend_on_how_the_stream_is_split(
            pieces in proptest::collection::vec(0usize..8, 0..12),
            cuts in proptest::collection::vec(1usize..40, 1..8),
        ) {
            const PIECES: [&[u8]; 8] = [
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n",
                b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"\r\n",
                b"GET / HTTP/1.1\nX-Long-Header-Name-Beyond-Seventeen: 1\n\n",
                b"zz\r\n",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            ];
            let stream: Vec<u8> = pieces.iter().flat_map(|&i| PIECES[i].iter().copied()).collect();
            let whole = verdicts(&stream);
            let mut s = HeadScanner::new();
            let mut out = Vec::new();
            let mut rest = &stream[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = cuts[k % cuts.len()].min(rest.len());
                push(&mut out, s.feed(&rest[..n]));
                rest = &rest[n..];
                k += 1;
            }
            proptest::prop_assert_eq!(whole, (out, s.is_stopped()));
        }

        /// Arbitrary bytes (mostly from an HTTP-ish alphabet): no panic, same verdicts at
        /// once and byte by byte.
        #[test]
        fn arbitrary_bytes(
            stream in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(b"\r\n :;0123456789abcdefACEGHLNOPRSTUchunked-Transfer-Encoding".to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                0..400,
            ),
        ) {
            proptest::prop_assert_eq!(verdicts(&stream), verdicts_bytewise(&stream));
        }
    }

    #[test]
    fn chunked_token_must_end_the_value() {
        check(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            &[false],
            true,
        );
        check(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n",
            &[false],
            false,
        );
        for not_chunked in ["xchunked", "gzip chunked", "chunkedx", "chunk"] {
            let stream = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {not_chunked}\r\n\r\n");
            check(stream.as_bytes(), &[false], true);
        }
    }
}
