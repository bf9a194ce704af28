//! The lean HTTP/1.1 path's request head parser (`sluice::proxy::h1::head`) against hyper's
//! HTTP/1 server, the one sluice serves with today: the same bytes to both, the same decision
//! (refused with the same status, or accepted with the same method, target, version, headers
//! and body framing). Handpicked heads (request smuggling's shapes, limits, malformed lines)
//! and generated ones. The `h1_head_differential` fuzz target runs the same comparison on
//! arbitrary bytes. The chunked body decoder is compared the same way (handpicked and
//! generated bodies here, the `chunked_differential` fuzz target on arbitrary bytes). The lean
//! path's upstream client is compared with hyper's HTTP/1 client on responses (handpicked and
//! generated here, the `h1_response_differential` fuzz target on arbitrary bytes): the same
//! status, version, forwarded headers, body and trailers, or a failure for both.

use proptest::prelude::*;
use sluice::proxy::h1::reference::{
    Decision, ResponseDecision, both, both_responses, hyper_chunked, ours_chunked,
};

const MAX_HEAD: usize = 32 * 1024;

fn check(raw: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ours, hyper) = rt.block_on(both(raw, MAX_HEAD));
    // Every head here is complete: hyper must have decided (else the comparison is empty).
    assert_ne!(
        hyper,
        Decision::Undecided,
        "{:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    if ours != hyper {
        let short = |s: String| s.chars().take(300).collect::<String>();
        panic!(
            "{}\n  ours:  {}\n  hyper: {}",
            short(format!("{:?}", String::from_utf8_lossy(raw))),
            short(format!("{ours:?}")),
            short(format!("{hyper:?}")),
        );
    }
}

#[test]
fn handpicked_heads_get_hypers_decision() {
    let many: String = (0..101).map(|i| format!("x-{i}: 1\r\n")).collect();
    // hyper's limit is on its read buffer, not exact: twice over it is refused by both.
    let big = format!(
        "GET / HTTP/1.1\r\nx-big: {}\r\n\r\n",
        "a".repeat(2 * MAX_HEAD)
    );
    let cases: Vec<String> = vec![
        "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
        "GET /a/b?c=d&e HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n".into(),
        "GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n".into(),
        "GET http://a.test HTTP/1.1\r\n\r\n".into(),
        "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
        "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n".into(),
        "GET / HTTP/1.0\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".into(),
        "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".into(),
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".into(),
        "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello".into(),
        "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            .into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n".into(),
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            .into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"
            .into(),
        "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n".into(),
        "POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n\r\n".into(),
        "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n".into(),
        "GET / HTTP/1.1\r\nX: caf\u{e9}\r\n\r\n".into(),
        "GET / HTTP/1.1\nHost: a.test\n\n".into(),
        "GET  / HTTP/1.1\r\n\r\n".into(),
        "GET / HTTP/1.2\r\n\r\n".into(),
        "GET / HTTP/2.0\r\n\r\n".into(),
        "G@T / HTTP/1.1\r\n\r\n".into(),
        "GET /a\"b HTTP/1.1\r\n\r\n".into(),
        "GET /a{b} HTTP/1.1\r\n\r\n".into(),
        "GET /a#frag HTTP/1.1\r\n\r\n".into(),
        "GET a.test HTTP/1.1\r\n\r\n".into(),
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
        "GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx".into(),
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(),
        format!("GET / HTTP/1.1\r\n{many}\r\n"),
        big,
    ];
    for raw in cases {
        check(raw.as_bytes());
    }
}

/// Pieces heads are made of: request lines and header lines, ordinary and tricky.
const LINES: &[&str] = &[
    "GET / HTTP/1.1",
    "POST /upload HTTP/1.1",
    "PUT /x?y=1 HTTP/1.0",
    "GET http://a.test/p HTTP/1.1",
    "DELETE * HTTP/1.1",
    "GET /%zz HTTP/1.1",
    "GET /a b HTTP/1.1",
];
const HEADERS: &[&str] = &[
    "Host: a.test",
    "Content-Length: 4",
    "Content-Length: 04",
    "Content-Length: 5",
    "Content-Length: ",
    "Content-Length: 1,1",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: identity",
    "Transfer-Encoding: gzip, chunked",
    "transfer-encoding: CHUNKED ",
    "Connection: keep-alive",
    "Connection: close",
    "Expect: 100-continue",
    "Upgrade: h2c",
    "X-Empty:",
    "X-Tab:\tvalue\t",
    "Bad Name: 1",
    "X-Obs: caf\u{e9}",
];

/// A message of a first line, header lines and a body, its lines ended by CRLF or LF alone.
fn message(line: &str, headers: &[&str], body: &str, crlf: bool) -> String {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut raw = format!("{line}{eol}");
    for h in headers {
        raw.push_str(h);
        raw.push_str(eol);
    }
    raw.push_str(eol);
    raw.push_str(body);
    raw
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn generated_heads_get_hypers_decision(
        line in prop::sample::select(LINES),
        headers in prop::collection::vec(prop::sample::select(HEADERS), 0..6),
        crlf in any::<bool>(),
    ) {
        check(message(line, &headers, "body", crlf).as_bytes());
    }
}

fn check_chunked(body: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hyper = rt.block_on(hyper_chunked(body)).unwrap_or_else(|| {
        panic!(
            "hyper decided nothing for {:?}",
            String::from_utf8_lossy(body)
        )
    });
    let ours = ours_chunked(body);
    assert_eq!(
        ours,
        hyper,
        "{:?}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
}

#[test]
fn handpicked_chunked_bodies_get_hypers_decision() {
    let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(17 * 1024));
    let long_trailer = format!("0\r\nx: {}\r\n\r\n", "v".repeat(17 * 1024));
    let many_trailers: String = std::iter::once("0\r\n".to_string())
        .chain((0..101).map(|i| format!("t{i}: 1\r\n")))
        .chain(std::iter::once("\r\n".to_string()))
        .collect();
    let bodies: Vec<&[u8]> = vec![
        b"0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n6;a=b\r\n world\r\n0\r\n\r\n",
        b"5 \t ;x\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nx-t: 1\r\ny: 2\r\n\r\n",
        b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n",
        b"ffffffffffffffff\r\nx",
        b"10000000000000000\r\nx",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloXY0\r\n\r\n",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhel",
        b"0\r\n",
        b"0\r\n\r",
        b"0\r\n\n\r\n\r\n",
        b"0\r\nno colon\r\n\r\n",
        b"0\r\nx: 1\ny: 2\r\n\r\n",
        b"0\r\nx:\x01\r\n\r\n",
        b"0\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
        long_ext.as_bytes(),
        long_trailer.as_bytes(),
        many_trailers.as_bytes(),
    ];
    for body in bodies {
        check_chunked(body);
    }
}

/// Pieces of chunked framing, valid and not.
const PIECES: &[&str] = &[
    "0", "1", "5", "a", "F", "10", "00", " ", "\t", ";", ";ext=1", "\r", "\n", "\r\n", "x",
    "hello", "x-t: 1", ":", "\u{e9}", "\x00", "-",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn generated_chunked_bodies_get_hypers_decision(
        pieces in prop::collection::vec(prop::sample::select(PIECES), 0..16),
        valid_prefix in any::<bool>(),
    ) {
        let mut body = String::new();
        if valid_prefix {
            body.push_str("3\r\nabc\r\n");
        }
        for p in pieces {
            body.push_str(p);
        }
        check_chunked(body.as_bytes());
    }
}

fn check_response(raw: &[u8], method: http::Method) -> ResponseDecision {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ours, hyper) = rt.block_on(both_responses(raw, method.clone()));
    let shown = || {
        format!(
            "{method} answered {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        )
    };
    // The upstream closes after its bytes: hyper's client always decides.
    assert_ne!(hyper, ResponseDecision::Undecided, "{}", shown());
    if ours != hyper {
        let short = |s: String| s.chars().take(600).collect::<String>();
        panic!(
            "{}\n  ours:  {}\n  hyper: {}",
            shown(),
            short(format!("{ours:?}")),
            short(format!("{hyper:?}")),
        );
    }
    ours
}

#[test]
fn handpicked_responses_get_hypers_client_decision() {
    use http::Method;
    let many: String = (0..101).map(|i| format!("x-{i}: 1\r\n")).collect();
    let many = format!("HTTP/1.1 200 OK\r\n{many}content-length: 0\r\n\r\n");
    let big = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
        "a".repeat(500 * 1024)
    );
    let cases: Vec<(&[u8], Method)> = vec![
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\nx-b: 2\r\nx-a: 3\r\n\r\nhello", Method::GET),
        (b"HTTP/1.1 200 OK\r\nConnection: x-hop, close\r\nx-hop: 1\r\nx-keep: 2\r\ncontent-length: 2\r\n\r\nok", Method::GET),
        (b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=5\r\nproxy-connection: x\r\nupgrade: h2c\r\ncontent-length: 2\r\n\r\nok", Method::GET),
        (b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello", Method::GET),
        (b"HTTP/1.1 200 OK\r\ncontent-length:  5 \r\n\r\nhello", Method::GET),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5,\r\n\r\nhello", Method::GET),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551616\r\n\r\nhello", Method::GET),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nhello, more than asked", Method::GET),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\nraw", Method::GET),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n2\r\nok\r\n0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\n\r\nraw", Method::GET),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nconnection: x\r\ncontent-length: 9\r\n\r\n", Method::GET),
        (b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok", Method::GET),
        (b"HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok", Method::GET),
        (b"HTTP/1.1 200 OK\r\n content-length: 2\r\n\r\nok", Method::GET),
        (b"HTTP/1.1 200 OK\r\nx-empty:\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 200 OK\r\nx-nul: a\x00b\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 200 OK\r\nx-del: a\x7fb\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 201 \r\ncontent-length: 0\r\n\r\n", Method::POST),
        (b"HTTP/1.1 99 Low\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 1000 High\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", Method::GET),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", Method::HEAD),
        (b"HTTP/1.1 200 OK\r\n\r\n", Method::CONNECT),
        (b"HTTP/1.1 404 Not Found\r\n\r\nnot found, until the end", Method::CONNECT),
        (b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", Method::GET),
        (b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n", Method::GET),
        (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\netag: \"a\"\r\n\r\n", Method::GET),
        (b"HTTP/1.1  200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 200 OK\r\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"http/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET),
        (b"HTTP/1.1 200 OK", Method::GET),
        (many.as_bytes(), Method::GET),
        (big.as_bytes(), Method::GET),
    ];
    let mut read = 0;
    for (raw, method) in cases {
        read += usize::from(matches!(
            check_response(raw, method),
            ResponseDecision::Read { .. }
        ));
    }
    // Both kinds are here: answers read whole and answers refused.
    assert!((10..30).contains(&read), "{read} answers read whole");
}

/// A 101 to a request that asked for no upgrade: hyper's client hands it on (the switch is
/// the caller's to take), the lean client refuses it as a protocol error (a 502 from the
/// proxy). Requests that ask for an upgrade go to hyper's client, never to this one.
#[test]
fn an_unasked_for_switch_of_protocols_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw =
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
    let (ours, hyper) = rt.block_on(both_responses(raw, http::Method::GET));
    assert_eq!(ours, ResponseDecision::Failed);
    assert!(
        matches!(hyper, ResponseDecision::Read { status: 101, .. }),
        "{hyper:?}"
    );
}

/// Lines of response heads, valid and not.
const STATUS_LINES: &[&str] = &[
    "HTTP/1.1 200 OK",
    "HTTP/1.0 200 OK",
    "HTTP/1.1 204 No Content",
    "HTTP/1.1 304 Not Modified",
    "HTTP/1.1 100 Continue",
    "HTTP/1.1 404 ",
    "HTTP/1.1 500",
    "HTTP/1.2 200 OK",
    "HTTP/1.1 2000 OK",
];

const RESPONSE_HEADERS: &[&str] = &[
    "Content-Length: 0",
    "Content-Length: 3",
    "Content-Length: 7",
    "content-length: 3, 3",
    "Content-Length: 3,4",
    "Content-Length: x",
    "Content-Length: 99999999999999999999",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: identity",
    "Connection: close",
    "Connection: keep-alive",
    "Connection: x-a",
    "X-A: 1",
    "X-A: 2",
    "Keep-Alive: timeout=1",
    "Trailer: x-t",
    "X-Fold: a\r\n b",
    "X-Tab:\tv\t",
    "Bad Name: 1",
    "X-Obs: caf\u{e9}",
];

const RESPONSE_BODIES: &[&str] = &[
    "",
    "abc",
    "abcdefg",
    "3\r\nabc\r\n0\r\n\r\n",
    "3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n",
    "3\r\nabc\r\n",
    "z\r\n",
    "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn generated_responses_get_hypers_client_decision(
        line in prop::sample::select(STATUS_LINES),
        headers in prop::collection::vec(prop::sample::select(RESPONSE_HEADERS), 0..5),
        body in prop::sample::select(RESPONSE_BODIES),
        crlf in any::<bool>(),
        head in any::<bool>(),
    ) {
        let method = if head { http::Method::HEAD } else { http::Method::GET };
        check_response(message(line, &headers, body, crlf).as_bytes(), method);
    }
}
