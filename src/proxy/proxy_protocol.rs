//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer that does not
//! terminate TCP (AWS NLB, HAProxy in TCP mode, ...) sends first on each connection to say
//! which client it carries.
//!
//! [`parse`] is a pure function over the bytes read so far: a complete header with its length,
//! "need more bytes", or an error. [`bytes_wanted`] says how many bytes may be read next without
//! reading past the header, so that [`read_header`] reads exactly the header and the bytes after
//! it (a TLS ClientHello, an HTTP request) stay in the socket for whoever reads next.
//!
//! Version 1 is one text line of at most 107 bytes, `PROXY TCP4|TCP6|UNKNOWN ...\r\n`.
//! Version 2 is binary: the 12-byte signature `\r\n\r\n\0\r\nQUIT\n`, a version/command byte
//! (version 2; command LOCAL or PROXY), a family/transport byte, a 16-bit length, then the
//! addresses and TLVs (skipped). `LOCAL`, `UNKNOWN` and the families without an IP address
//! (`AF_UNSPEC`, `AF_UNIX`) carry no client: the connection keeps its TCP peer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest version 1 header, CRLF included (the specification's bound).
pub const MAX_V1_LEN: usize = 107;

/// The longest version 2 header accepted: the 16 fixed bytes and at most this many bytes of
/// addresses and TLVs (a Unix address block is 216 bytes; AWS NLB adds a TLV of a few dozen).
pub const MAX_V2_PAYLOAD: usize = 2048;

/// The version 2 signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The shortest header of either version: `PROXY UNKNOWN\r\n` (version 2 has 16 fixed bytes).
const MIN_LEN: usize = 15;

/// What a PROXY header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// The connection carries a client: its address and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (the load balancer's listener).
        destination: SocketAddr,
    },
    /// No client address (v1 `UNKNOWN`, v2 `LOCAL`, v2 `AF_UNSPEC` or `AF_UNIX`): keep the TCP
    /// peer.
    Unproxied,
}

/// Why bytes are not a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes start with neither the version 1 nor the version 2 signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// A version 1 line without CRLF within 107 bytes, or a version 2 length over the bound.
    #[error("PROXY protocol header too long")]
    TooLong,
    /// The signature is there but the rest is not a valid header.
    #[error("malformed PROXY protocol header")]
    Malformed,
    /// A version 2 header of another version, command, family or transport.
    #[error("unsupported PROXY protocol version, command or family")]
    Unsupported,
}

impl Error {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Error::Missing => "missing",
            Error::TooLong => "too_long",
            Error::Malformed => "malformed",
            Error::Unsupported => "unsupported",
        }
    }
}

/// Parses a PROXY header at the start of `buf`: `Ok(Some((header, length)))` when complete
/// (the header is `buf[..length]`; what follows is not looked at), `Ok(None)` when the bytes
/// so far are a valid beginning and more are needed, or the error. Never panics.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    match buf.first() {
        None => Ok(None),
        Some(b'\r') => parse_v2(buf),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err(Error::Missing),
    }
}

/// How many bytes may be read after `buf` (a beginning [`parse`] answered `Ok(None)` for)
/// without reading past the header: at least 1.
pub fn bytes_wanted(buf: &[u8]) -> usize {
    if buf.len() < MIN_LEN {
        return MIN_LEN - buf.len();
    }
    if buf.first() == Some(&b'\r') {
        if buf.len() < 16 {
            return 16 - buf.len();
        }
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        return total.saturating_sub(buf.len()).max(1);
    }
    // Version 1 ends at CRLF: at most 2 bytes are certainly the header's, 1 after a CR.
    if buf.last() == Some(&b'\r') { 1 } else { 2 }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let prefix = buf.len().min(V1_PREFIX.len());
    if buf[..prefix] != V1_PREFIX[..prefix] {
        return Err(Error::Missing);
    }
    let window = &buf[..buf.len().min(MAX_V1_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= MAX_V1_LEN {
            return Err(Error::TooLong);
        }
        // A CR or LF anywhere but as the last byte cannot start the CRLF any more.
        if window[..window.len() - 1].contains(&b'\r') || window.contains(&b'\n') {
            return Err(Error::Malformed);
        }
        return Ok(None);
    };
    // No CR or LF inside the line (nor in an UNKNOWN line's ignored rest): a stray one would
    // be refused by the check above had the line arrived in pieces.
    if end < V1_PREFIX.len() || buf[..end].contains(&b'\r') || buf[..end].contains(&b'\n') {
        return Err(Error::Malformed);
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| Error::Malformed)?;
    let mut fields = line.split(' ');
    let header = match fields.next() {
        // The rest of an UNKNOWN line is ignored (the specification's rule).
        Some("UNKNOWN") => Header::Unproxied,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let v4 = proto == "TCP4";
            let ip = |s: Option<&str>| -> Result<IpAddr, Error> {
                let s = s.ok_or(Error::Malformed)?;
                if v4 {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                }
                .map_err(|_| Error::Malformed)
            };
            let (src, dst) = (ip(fields.next())?, ip(fields.next())?);
            let (sport, dport) = (port(fields.next())?, port(fields.next())?);
            if fields.next().is_some() {
                return Err(Error::Malformed);
            }
            Header::Proxied {
                source: SocketAddr::new(src, sport),
                destination: SocketAddr::new(dst, dport),
            }
        }
        _ => return Err(Error::Malformed),
    };
    Ok(Some((header, end + 2)))
}

/// A decimal port: 1 to 5 digits, at most 65535.
fn port(s: Option<&str>) -> Result<u16, Error> {
    let s = s.ok_or(Error::Malformed)?;
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed);
    }
    s.parse().map_err(|_| Error::Malformed)
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let sig = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig] != V2_SIGNATURE[..sig] {
        return Err(Error::Missing);
    }
    let Some(&[ver_cmd, fam, hi, lo]) = buf.get(12..16) else {
        // Check what has arrived of the fixed part.
        if let Some(&ver_cmd) = buf.get(12) {
            check_version_command(ver_cmd)?;
        }
        return Ok(None);
    };
    let local = check_version_command(ver_cmd)?;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2_PAYLOAD {
        return Err(Error::TooLong);
    }
    let total = 16 + len;
    let Some(payload) = buf.get(16..total) else {
        return Ok(None);
    };
    if local {
        // LOCAL: the address block is ignored whatever its family.
        return Ok(Some((Header::Unproxied, total)));
    }
    let header = match fam {
        // AF_UNSPEC: no address (the sender's own health checks, for example).
        0x00 => Header::Unproxied,
        // AF_INET over STREAM.
        0x11 => {
            let a = payload.get(..12).ok_or(Error::Malformed)?;
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            Header::Proxied {
                source: SocketAddr::new(ip(&a[0..4]), u16::from_be_bytes([a[8], a[9]])),
                destination: SocketAddr::new(ip(&a[4..8]), u16::from_be_bytes([a[10], a[11]])),
            }
        }
        // AF_INET6 over STREAM.
        0x21 => {
            let a = payload.get(..36).ok_or(Error::Malformed)?;
            let ip = |b: &[u8]| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Header::Proxied {
                source: SocketAddr::new(ip(&a[0..16]), u16::from_be_bytes([a[32], a[33]])),
                destination: SocketAddr::new(ip(&a[16..32]), u16::from_be_bytes([a[34], a[35]])),
            }
        }
        // AF_UNIX over STREAM: no IP address to use.
        0x31 => {
            if payload.len() < 216 {
                return Err(Error::Malformed);
            }
            Header::Unproxied
        }
        _ => return Err(Error::Unsupported),
    };
    Ok(Some((header, total)))
}

/// Version 2 and command LOCAL (true) or PROXY (false).
fn check_version_command(ver_cmd: u8) -> Result<bool, Error> {
    match ver_cmd {
        0x20 => Ok(true),
        0x21 => Ok(false),
        _ => Err(Error::Unsupported),
    }
}

/// Why [`read_header`] found no header.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a header.
    #[error(transparent)]
    Invalid(#[from] Error),
    /// The connection ended before the header did.
    #[error("connection closed before the end of the PROXY protocol header")]
    Closed,
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::Error),
}

impl ReadError {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::Invalid(e) => e.reason(),
            ReadError::Closed => "closed",
            ReadError::Io(_) => "io",
        }
    }
}

/// Reads one PROXY header from `io`, exactly: not one byte after it is consumed. (The caller
/// bounds it in time.)
pub async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<Header, ReadError> {
    let mut buf = Vec::with_capacity(MAX_V1_LEN);
    loop {
        if let Some((header, _)) = parse(&buf)? {
            return Ok(header);
        }
        let start = buf.len();
        buf.resize(start + bytes_wanted(&buf), 0);
        match io.read_exact(&mut buf[start..]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ReadError::Closed);
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(ver_cmd);
        b.push(fam);
        b.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    fn v2_inet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut p = src.to_vec();
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(tlvs);
        v2(0x21, 0x11, &p)
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    /// Every strict prefix of a complete header needs more bytes, and `bytes_wanted` never
    /// asks for more than the rest of the header.
    fn assert_prefixes_incomplete(h: &[u8], len: usize) {
        for i in 0..len {
            assert_eq!(parse(&h[..i]), Ok(None), "prefix of {i} bytes of {h:?}");
            assert!(
                bytes_wanted(&h[..i]) <= len - i,
                "wants {} after {i} of {len}",
                bytes_wanted(&h[..i])
            );
        }
    }

    #[test]
    fn v1_tcp4_carries_the_client() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let len = 45;
        assert_eq!(
            parse(h),
            Ok(Some((proxied("192.0.2.7:56324", "198.51.100.1:443"), len)))
        );
        assert_eq!(&h[len..len + 3], b"GET", "the length ends at the CRLF");
        assert_prefixes_incomplete(h, len);
    }

    #[test]
    fn v1_tcp6_carries_the_client() {
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n";
        assert_eq!(
            parse(h),
            Ok(Some((
                proxied("[2001:db8::7]:4000", "[2001:db8::1]:80"),
                h.len()
            )))
        );
        assert_prefixes_incomplete(h, h.len());
    }

    #[test]
    fn v1_unknown_keeps_the_peer() {
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Some((Header::Unproxied, 15)))
        );
        let h = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nx";
        assert_eq!(parse(h), Ok(Some((Header::Unproxied, h.len() - 1))));
        assert_eq!(parse(b"PROXY UNKNOWN a\rb\r\n"), Err(Error::Malformed));
    }

    #[test]
    fn v1_malformed_lines_are_rejected() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n",
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 \r\n",
            b"PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY \r\n",
            b"PROXY TCP4 192.0.2.7\n198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7\r198.51.100.1 1 2\r\n",
            b"PROXY TCP4 \xff 198.51.100.1 1 2\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Err(Error::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn v1_without_crlf_within_107_bytes_is_too_long() {
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(MAX_V1_LEN - 1, b'a');
        assert_eq!(parse(&h), Ok(None));
        h.push(b'a');
        assert_eq!(parse(&h), Err(Error::TooLong));
        // CRLF as the 106th and 107th bytes is still within the bound.
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(MAX_V1_LEN - 2, b'a');
        h.extend_from_slice(b"\r\n");
        assert_eq!(parse(&h), Ok(Some((Header::Unproxied, MAX_V1_LEN))));
    }

    #[test]
    fn anything_else_is_not_a_header() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::Missing));
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(Error::Missing));
        assert_eq!(parse(b"POST / HTTP/1.1\r\n"), Err(Error::Missing));
        assert_eq!(parse(b"PRI * HTTP/2.0\r\n"), Err(Error::Missing));
        assert_eq!(parse(b"\r\n\r\nX"), Err(Error::Missing));
        assert_eq!(parse(b"P"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
    }

    #[test]
    fn v2_inet_carries_the_client_and_skips_tlvs() {
        // A TLV as AWS NLB sends (PP2_TYPE_AWS, VPC endpoint id).
        let tlv = [0xea, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e'];
        let mut h = v2_inet([192, 0, 2, 7], [198, 51, 100, 1], 56324, 443, &tlv);
        let len = h.len();
        assert_eq!(len, 16 + 12 + tlv.len());
        h.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&h),
            Ok(Some((proxied("192.0.2.7:56324", "198.51.100.1:443"), len)))
        );
        assert_prefixes_incomplete(&h, len);
    }

    #[test]
    fn v2_inet6_carries_the_client() {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut p = src.octets().to_vec();
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&4000u16.to_be_bytes());
        p.extend_from_slice(&80u16.to_be_bytes());
        let h = v2(0x21, 0x21, &p);
        assert_eq!(
            parse(&h),
            Ok(Some((
                proxied("[2001:db8::7]:4000", "[2001:db8::1]:80"),
                52
            )))
        );
        assert_prefixes_incomplete(&h, 52);
    }

    #[test]
    fn v2_local_and_unspec_keep_the_peer() {
        assert_eq!(
            parse(&v2(0x20, 0x00, &[])),
            Ok(Some((Header::Unproxied, 16)))
        );
        // LOCAL ignores an address block.
        let h = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[]);
        let mut local = h.clone();
        local[12] = 0x20;
        assert_eq!(parse(&local), Ok(Some((Header::Unproxied, h.len()))));
        assert_eq!(
            parse(&v2(0x21, 0x00, &[])),
            Ok(Some((Header::Unproxied, 16)))
        );
        assert_eq!(
            parse(&v2(0x21, 0x31, &[0; 216])),
            Ok(Some((Header::Unproxied, 16 + 216)))
        );
    }

    #[test]
    fn v2_unsupported_and_malformed_headers_are_rejected() {
        let ok = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[]);
        for ver_cmd in [0x10, 0x22, 0x2f, 0x31, 0x00] {
            let mut h = ok.clone();
            h[12] = ver_cmd;
            assert_eq!(parse(&h), Err(Error::Unsupported), "{ver_cmd:#x}");
            assert_eq!(parse(&h[..13]), Err(Error::Unsupported), "seen early");
        }
        for fam in [0x12, 0x22, 0x32, 0x10, 0x41, 0xff] {
            let mut h = ok.clone();
            h[13] = fam;
            assert_eq!(parse(&h), Err(Error::Unsupported), "{fam:#x}");
        }
        // Address block shorter than the family's addresses.
        assert_eq!(parse(&v2(0x21, 0x11, &[0; 11])), Err(Error::Malformed));
        assert_eq!(parse(&v2(0x21, 0x21, &[0; 35])), Err(Error::Malformed));
        assert_eq!(parse(&v2(0x21, 0x31, &[0; 215])), Err(Error::Malformed));
        // A broken signature.
        let mut h = ok.clone();
        h[11] = b'X';
        assert_eq!(parse(&h), Err(Error::Missing));
    }

    #[test]
    fn v2_length_is_bounded() {
        let mut h = v2(0x21, 0x11, &[]);
        h[14..16].copy_from_slice(&u16::try_from(MAX_V2_PAYLOAD + 1).unwrap().to_be_bytes());
        assert_eq!(parse(&h), Err(Error::TooLong), "before the payload arrives");
        h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&h), Err(Error::TooLong));
        let h = v2_inet(
            [1, 2, 3, 4],
            [5, 6, 7, 8],
            1,
            2,
            &vec![0; MAX_V2_PAYLOAD - 12],
        );
        assert!(matches!(parse(&h), Ok(Some((_, n))) if n == 16 + MAX_V2_PAYLOAD));
    }

    #[test]
    fn bytes_wanted_never_reads_past_the_shortest_header() {
        assert_eq!(bytes_wanted(b""), 15);
        assert_eq!(bytes_wanted(b"PROXY UNKNOWN\r"), 1);
        assert_eq!(bytes_wanted(b"PROXY TCP4 1.2.3.4"), 2);
        let h = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[]);
        assert_eq!(bytes_wanted(&h[..15]), 1);
        assert_eq!(bytes_wanted(&h[..16]), 12);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep (the fuzz target `proxy_protocol` goes further).
        let seeds: [&[u8]; 3] = [
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            &v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[1, 2, 3]),
            b"PROXY TCP6 ::1 ::1 1 2\r\n",
        ];
        for seed in seeds {
            for i in 0..seed.len() {
                for b in [0u8, b'\r', b'\n', b' ', b'P', 0x21, 0xff] {
                    let mut m = seed.to_vec();
                    m[i] = b;
                    let whole = parse(&m);
                    if let Ok(Some((_, n))) = whole {
                        assert!(n <= m.len());
                    }
                    // Read as `read_header` does: the same answer, never past the header.
                    let mut read = 0;
                    while read <= m.len() {
                        match parse(&m[..read]) {
                            Ok(None) => read += bytes_wanted(&m[..read]),
                            done => {
                                if whole.is_ok() || done.is_ok() {
                                    assert_eq!(done, whole, "{m:?} after {read} bytes");
                                }
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn read_header_reads_exactly_the_header() {
        for (header, want) in [
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec(),
                proxied("192.0.2.7:56324", "198.51.100.1:443"),
            ),
            (
                v2_inet(
                    [192, 0, 2, 7],
                    [198, 51, 100, 1],
                    56324,
                    443,
                    &[0xea, 0, 1, 9],
                ),
                proxied("192.0.2.7:56324", "198.51.100.1:443"),
            ),
            (v2(0x20, 0x00, &[]), Header::Unproxied),
            (b"PROXY UNKNOWN\r\n".to_vec(), Header::Unproxied),
        ] {
            let mut input = header.clone();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let mut io = &input[..];
            assert_eq!(read_header(&mut io).await.unwrap(), want);
            assert_eq!(
                io, b"GET / HTTP/1.1\r\n\r\n",
                "nothing after the header read"
            );
        }
    }

    #[tokio::test]
    async fn read_header_reports_garbage_and_truncation() {
        let mut io = &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..];
        let e = read_header(&mut io).await.unwrap_err();
        assert_eq!(e.reason(), "missing");
        let mut io = &b"PROXY TCP4 1.2.3.4"[..];
        assert_eq!(read_header(&mut io).await.unwrap_err().reason(), "closed");
        let mut io = &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"[..];
        assert_eq!(
            read_header(&mut io).await.unwrap_err().reason(),
            "malformed"
        );
    }
}
