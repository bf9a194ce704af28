//! gRPC through sluice with real gRPC peers (grpcio, from the test virtualenv): a Python
//! server (`support/grpc_peer.py`, service `sluice.test.Echo`) as the upstream and a Python
//! client driver (`support/grpc_client.py`) that runs one scenario and prints the outcome as
//! JSON. Covered: unary calls with initial metadata and trailers flowing back, statuses passed
//! through, server/client/bidi streaming (bidi in lock-step, so nothing may be buffered),
//! deadlines, the statuses sluice produces itself (no route, no ready endpoint), big messages,
//! the `:authority` and deadline the upstream sees, gRPC over the HTTPS entrypoint and GRPCS
//! (h2 over TLS) upstreams verified by name.
//!
//! The gRPC servers start once per test binary (plain and TLS, in statics); each test starts
//! its own sluice from its own manifests folder, so tests run in parallel.

mod support;
use support::peers::{Peer, venv};
use support::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The host every gRPC Ingress of these tests serves.
const HOST: &str = "grpc.test";
/// How long a gRPC server gets to start (the first one may wait for the virtualenv's install,
/// which happens before this clock starts).
const SERVER_START: Duration = Duration::from_secs(60);
/// An outer bound on one run of the client driver (its calls have their own 10 s deadline).
const CLIENT_LIMIT_SECS: &str = "40";

// ---------------------------------------------------------------------------------------------
// The gRPC server peers
// ---------------------------------------------------------------------------------------------

/// A running `grpc_peer.py`.
struct GrpcServer {
    addr: SocketAddr,
    _peer: Mutex<Peer>,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

fn python() -> PathBuf {
    venv().join("bin/python")
}

/// Starts `grpc_peer.py` on an OS-chosen port (with `tls`: the PEM chain and key files, read
/// at start) and waits for its `READY <port>` line.
fn start_grpc_server(name: &str, tls: Option<(&Path, &Path)>) -> GrpcServer {
    let python = python();
    let script = script("grpc_peer.py");
    let mut args = vec![script.display().to_string(), "0".to_string()];
    if let Some((cert, key)) = tls {
        args.push("--tls".into());
        args.push(cert.display().to_string());
        args.push(key.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut peer = Peer::spawn(name, &python, &args, &[], None);
    let deadline = Instant::now() + SERVER_START;
    let port = loop {
        let log = std::fs::read_to_string(&peer.log).unwrap_or_default();
        if let Some(port) = log
            .lines()
            .find_map(|l| l.strip_prefix("READY "))
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            break port;
        }
        assert!(
            peer.is_running(),
            "{name} exited before it was ready:\n{}",
            peer.log_tail(40)
        );
        assert!(
            Instant::now() < deadline,
            "{name} was not ready within {SERVER_START:?}:\n{}",
            peer.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    GrpcServer {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _peer: Mutex::new(peer),
    }
}

/// The plaintext (h2c) gRPC server of this test binary.
fn h2c_server() -> &'static GrpcServer {
    static SERVER: OnceLock<GrpcServer> = OnceLock::new();
    SERVER.get_or_init(|| start_grpc_server("grpc-h2c", None))
}

/// The name in the GRPCS upstream's certificate.
const UPSTREAM_NAME: &str = "echo.default.svc";

/// The TLS gRPC server of this test binary (a certificate for [`UPSTREAM_NAME`]) and the PEM
/// of the CA that signed it.
struct TlsUpstream {
    server: GrpcServer,
    ca_pem: String,
}

fn tls_server() -> &'static TlsUpstream {
    static SERVER: OnceLock<TlsUpstream> = OnceLock::new();
    SERVER.get_or_init(|| {
        let ca = Ca::new("sluice upstream test CA");
        let leaf = ca.leaf(&[UPSTREAM_NAME]);
        // The server reads its files at start; they go away once it is ready.
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &leaf.chain_pem).expect("write the upstream certificate");
        std::fs::write(&key, &leaf.key_pem).expect("write the upstream key");
        let server = start_grpc_server("grpc-tls", Some((&cert, &key)));
        TlsUpstream {
            server,
            ca_pem: ca.cert.pem(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The client driver
// ---------------------------------------------------------------------------------------------

/// What `grpc_client.py` printed for one scenario.
#[derive(Debug, serde::Deserialize)]
struct Outcome {
    /// A `grpc.StatusCode` name: `OK`, `UNAVAILABLE`...
    code: String,
    details: Option<String>,
    /// Messages received (UTF-8; `<N bytes>` for long ones).
    #[serde(default)]
    responses: Vec<String>,
    #[serde(default)]
    response_sizes: Vec<usize>,
    #[serde(default)]
    initial_metadata: HashMap<String, String>,
    #[serde(default)]
    trailing_metadata: HashMap<String, String>,
    #[serde(default)]
    elapsed_ms: u64,
    /// `bidi`: every message's echo came back before the next message was sent.
    lockstep: Option<bool>,
    /// `big`: the echo was exactly `echo:` and the 1 MiB message.
    echo_matches: Option<bool>,
}

/// How the client reaches its target.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// h2c with prior knowledge (an insecure channel), `:authority` given.
    Plain { authority: &'a str },
    /// TLS trusting the CA in the PEM file, SNI and `:authority` given.
    Tls { authority: &'a str, ca: &'a Path },
}

/// Runs `scenario` of `grpc_client.py` against `target` and returns its outcome.
async fn grpc_call(target: SocketAddr, via: Via<'_>, scenario: &str) -> Outcome {
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg(CLIENT_LIMIT_SECS)
        .arg(python())
        .arg(script("grpc_client.py"))
        .arg(target.to_string())
        .arg(scenario);
    match via {
        Via::Plain { authority } => {
            cmd.args(["--authority", authority]);
        }
        Via::Tls { authority, ca } => {
            cmd.args(["--authority", authority]).arg("--ca").arg(ca);
        }
    }
    // The client blocks; sluice runs on this test's runtime, so it must keep running.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the client task")
        .expect("run grpc_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let outcome: Outcome = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "grpc_client.py {scenario} printed no outcome ({e}), exit {}:\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // Shown with --nocapture, and for a failing test.
    eprintln!("{scenario} via {target}: {line}");
    outcome
}

// ---------------------------------------------------------------------------------------------
// What each scenario should give
// ---------------------------------------------------------------------------------------------

fn assert_code(o: &Outcome, code: &str, what: &str) {
    assert_eq!(o.code, code, "{what}: {o:#?}");
}

/// A status sluice produced itself: `code` with a `grpc-message`, not one grpcio made up from
/// a bare HTTP error status ("Received http2 header with status: 502").
fn assert_sluice_status(o: &Outcome, code: &str, what: &str) {
    assert_code(o, code, what);
    let details = o.details.as_deref().unwrap_or_default();
    assert!(
        !details.is_empty() && !details.starts_with("Received http2 header with status"),
        "{what}: sluice answers with a gRPC status and message, not an HTTP error: {o:#?}"
    );
}

/// A unary `hello`: echoed, with `x-initial: yes` first and `x-trailer: seen` in the trailers.
fn assert_unary_echo(o: &Outcome) {
    assert_code(o, "OK", "unary call");
    assert_eq!(o.responses, ["echo:hello"], "{o:#?}");
    assert_eq!(
        o.initial_metadata.get("x-initial").map(String::as_str),
        Some("yes"),
        "initial metadata reaches the client: {o:#?}"
    );
    assert_eq!(
        o.trailing_metadata.get("x-trailer").map(String::as_str),
        Some("seen"),
        "trailers reach the client: {o:#?}"
    );
}

fn assert_status_passes(o: &Outcome) {
    // Status 7.
    assert_code(o, "PERMISSION_DENIED", "the upstream's status");
    assert_eq!(o.details.as_deref(), Some("asked for 7"), "{o:#?}");
}

fn assert_server_stream(o: &Outcome) {
    assert_code(o, "OK", "server streaming");
    assert_eq!(o.responses, ["0", "1", "2", "3", "4"], "{o:#?}");
}

fn assert_client_stream(o: &Outcome) {
    assert_code(o, "OK", "client streaming");
    assert_eq!(o.responses, ["a,b,c"], "{o:#?}");
}

fn assert_bidi_lockstep(o: &Outcome) {
    assert_code(o, "OK", "bidi streaming");
    assert_eq!(
        o.responses,
        ["bidi:m0", "bidi:m1", "bidi:m2", "bidi:m3", "bidi:m4"],
        "{o:#?}"
    );
    assert_eq!(
        o.lockstep,
        Some(true),
        "each echo came back before the next message was sent: {o:#?}"
    );
}

fn assert_deadline(o: &Outcome) {
    assert_code(o, "DEADLINE_EXCEEDED", "a 300 ms deadline on a 3 s call");
    // A correctness bound (the call must not run to its 3 s end), not a performance one.
    assert!(o.elapsed_ms < 2500, "the deadline ended the call: {o:#?}");
}

fn assert_big(o: &Outcome) {
    assert_code(o, "OK", "a 1 MiB message");
    assert_eq!(o.response_sizes, [1024 * 1024 + 5], "{o:#?}");
    assert_eq!(o.echo_matches, Some(true), "{o:#?}");
}

// ---------------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------------

/// An Ingress of class `sluice` routing `host` (path `/`, Prefix) to Service `svc` port 80,
/// with `annotations` and, with `tls_secret`, a `tls` entry for the host.
fn grpc_ingress(
    name: &str,
    host: &str,
    svc: &str,
    annotations: &[(&str, &str)],
    tls_secret: Option<&str>,
) -> String {
    let mut y = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n"
    );
    if !annotations.is_empty() {
        y.push_str("  annotations:\n");
        for (k, v) in annotations {
            y.push_str(&format!("    {k}: {v:?}\n"));
        }
    }
    y.push_str("spec:\n  ingressClassName: sluice\n");
    if let Some(secret) = tls_secret {
        y.push_str(&format!(
            "  tls:\n  - hosts: [{host:?}]\n    secretName: {secret}\n"
        ));
    }
    y.push_str(&format!(
        "  rules:\n  - host: {host:?}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n"
    ));
    y
}

const GRPC: (&str, &str) = ("sluice.io/backend-protocol", "grpc");

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// A `kubernetes.io/tls` Secret.
fn tls_secret(name: &str, leaf: &Leaf) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&leaf.chain_pem),
        indent(&leaf.key_pem)
    )
}

/// An Opaque Secret with `ca.crt` (base64 `data`), as `proxy-ssl-secret` reads.
fn ca_secret(name: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: Opaque\ndata:\n  ca.crt: {}\n",
        base64::engine::general_purpose::STANDARD.encode(ca_pem)
    )
}

/// Sluice with `grpc.test` -> Service `echo` (the h2c server, `backend-protocol: grpc`) and
/// `down.grpc.test` -> Service `down` (its only endpoint not ready).
async fn h2c_harness() -> Harness {
    let server = h2c_server();
    Harness::start(&[
        (
            "echo.yaml",
            grpc_ingress("echo", HOST, "echo", &[GRPC], None),
        ),
        ("echo-svc.yaml", service("echo", &[(server.addr, true)])),
        (
            "down.yaml",
            grpc_ingress("down", "down.grpc.test", "down", &[GRPC], None),
        ),
        ("down-svc.yaml", service("down", &[(server.addr, false)])),
    ])
    .await
}

async fn via_sluice(h: &Harness, scenario: &str) -> Outcome {
    grpc_call(
        h.running.http_addr,
        Via::Plain { authority: HOST },
        scenario,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------------------------

/// Every scenario against the gRPC servers without sluice in between gives what the tests
/// through sluice expect: the peers and the driver are sound.
#[tokio::test]
async fn the_harness_talks_to_the_server_directly() {
    let plain = h2c_server().addr;
    let via = Via::Plain { authority: HOST };
    assert_unary_echo(&grpc_call(plain, via, "unary").await);
    assert_status_passes(&grpc_call(plain, via, "status").await);
    assert_server_stream(&grpc_call(plain, via, "server_stream").await);
    assert_client_stream(&grpc_call(plain, via, "client_stream").await);
    assert_bidi_lockstep(&grpc_call(plain, via, "bidi").await);
    assert_deadline(&grpc_call(plain, via, "deadline").await);
    assert_big(&grpc_call(plain, via, "big").await);
    let authority = grpc_call(plain, via, "authority").await;
    assert_code(&authority, "OK", "authority");
    assert_eq!(authority.responses, [HOST], "{authority:#?}");
    let left = grpc_call(plain, via, "deadline_left").await;
    let ms: u64 = left.responses[0].parse().expect("milliseconds");
    assert!(ms > 0 && ms <= DEADLINE_LEFT_MAX_MS, "{left:#?}");

    let upstream = tls_server();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &upstream.ca_pem).expect("write the CA");
    let tls = |authority: &'static str| Via::Tls { authority, ca: &ca };
    assert_unary_echo(&grpc_call(upstream.server.addr, tls(UPSTREAM_NAME), "unary").await);
    let wrong = grpc_call(upstream.server.addr, tls("wrong.name"), "unary").await;
    assert_code(&wrong, "UNAVAILABLE", "a name not in the certificate");
}

// ---------------------------------------------------------------------------------------------
// h2c upstreams (`backend-protocol: grpc`) through the HTTP entrypoint
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_unary_call_gets_its_echo_initial_metadata_and_trailers() {
    let h = h2c_harness().await;
    assert_unary_echo(&via_sluice(&h, "unary").await);
}

#[tokio::test]
async fn a_status_from_the_upstream_reaches_the_client() {
    let h = h2c_harness().await;
    assert_status_passes(&via_sluice(&h, "status").await);
}

#[tokio::test]
async fn server_streaming_delivers_every_message() {
    let h = h2c_harness().await;
    assert_server_stream(&via_sluice(&h, "server_stream").await);
}

#[tokio::test]
async fn client_streaming_delivers_every_message() {
    let h = h2c_harness().await;
    assert_client_stream(&via_sluice(&h, "client_stream").await);
}

/// Each message is sent only once the previous one's echo is back: any buffering in either
/// direction stalls the call until its deadline.
#[tokio::test]
async fn bidi_streaming_is_not_buffered() {
    let h = h2c_harness().await;
    assert_bidi_lockstep(&via_sluice(&h, "bidi").await);
}

#[tokio::test]
async fn the_client_deadline_ends_a_slow_call() {
    let h = h2c_harness().await;
    assert_deadline(&via_sluice(&h, "deadline").await);
}

#[tokio::test]
async fn a_one_mib_message_round_trips() {
    let h = h2c_harness().await;
    assert_big(&via_sluice(&h, "big").await);
}

/// The upstream sees the client's `:authority` (sluice keeps the host, as for HTTP/1.1
/// upstreams, and sends it as the one `:authority`).
#[tokio::test]
async fn the_upstream_sees_the_clients_authority() {
    let h = h2c_harness().await;
    let o = via_sluice(&h, "authority").await;
    assert_code(&o, "OK", "authority");
    assert_eq!(o.responses, [HOST], "{o:#?}");
}

/// The client's deadline (`grpc-timeout`, 10 s) reaches the upstream as a deadline.
#[tokio::test]
async fn the_upstream_gets_the_clients_deadline() {
    let h = h2c_harness().await;
    let o = via_sluice(&h, "deadline_left").await;
    assert_code(&o, "OK", "deadline_left");
    let ms: u64 = o.responses[0]
        .parse()
        .unwrap_or_else(|_| panic!("the upstream saw a deadline: {o:#?}"));
    assert!(ms > 0 && ms <= DEADLINE_LEFT_MAX_MS, "{o:#?}");
}

/// The most milliseconds the upstream may see left of the client's 10 s deadline. The
/// deadline's trip through `grpc-timeout` and grpcio's clocks is not exact to the millisecond:
/// on a loaded machine the server, called directly, once saw 10 098 ms left. The bound allows
/// 5%; a deadline lost or not passed on fails it either way (no value, or far more).
const DEADLINE_LEFT_MAX_MS: u64 = 10_500;

/// A call for an authority sluice has no route for gets a gRPC status, not a bare HTTP error.
#[tokio::test]
async fn an_unrouted_call_is_unimplemented() {
    let h = h2c_harness().await;
    let o = grpc_call(
        h.running.http_addr,
        Via::Plain {
            authority: "nowhere.test",
        },
        "unrouted",
    )
    .await;
    assert_sluice_status(&o, "UNIMPLEMENTED", "no route");
    let details = o.details.clone().unwrap_or_default().to_lowercase();
    assert!(details.contains("route"), "grpc-message says why: {o:#?}");
}

#[tokio::test]
async fn a_service_without_ready_endpoints_is_unavailable() {
    let h = h2c_harness().await;
    let o = grpc_call(
        h.running.http_addr,
        Via::Plain {
            authority: "down.grpc.test",
        },
        "unary",
    )
    .await;
    assert_sluice_status(&o, "UNAVAILABLE", "no ready endpoint");
}

/// Sluice itself ends a call at its `grpc-timeout` (a raw HTTP/2 client that sends
/// `grpc-timeout: 300m` and never cancels): the answer is DEADLINE_EXCEEDED, well before the
/// upstream's 3 s sleep ends.
#[tokio::test]
async fn grpc_timeout_bounds_the_call_without_the_clients_help() {
    let h = h2c_harness().await;
    let started = Instant::now();
    let answer = raw_unary(h.running.http_addr, HOST, b"sleep:3000", Some("300m")).await;
    let elapsed = started.elapsed();
    assert_eq!(
        answer.grpc_status.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED: {answer:#?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "the deadline ended the call after {elapsed:?}: {answer:#?}"
    );
}

/// The trailers of a plain unary call over a raw HTTP/2 client: `grpc-status: 0` arrives as a
/// trailer after the message, with `x-trailer`.
#[tokio::test]
async fn trailers_arrive_after_the_message_over_raw_http2() {
    let h = h2c_harness().await;
    let answer = raw_unary(h.running.http_addr, HOST, b"hello", None).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert!(
        answer
            .headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")),
        "{answer:#?}"
    );
    assert_eq!(answer.messages, [b"echo:hello".to_vec()], "{answer:#?}");
    let trailers = answer.trailers.as_ref().expect("trailers");
    assert_eq!(
        trailers.get("grpc-status").map(http::HeaderValue::as_bytes),
        Some(&b"0"[..]),
        "{answer:#?}"
    );
    assert_eq!(
        trailers.get("x-trailer").map(http::HeaderValue::as_bytes),
        Some(&b"seen"[..]),
        "{answer:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS: the HTTPS entrypoint, and GRPCS upstreams
// ---------------------------------------------------------------------------------------------

/// gRPC over sluice's HTTPS entrypoint (certificate from a `kubernetes.io/tls` Secret, ALPN
/// h2) to the h2c upstream.
#[tokio::test]
async fn grpc_over_the_https_entrypoint() {
    let server = h2c_server();
    let ca = Ca::new("sluice entrypoint test CA");
    let leaf = ca.leaf(&[HOST]);
    let h = Harness::start(&[
        (
            "echo.yaml",
            grpc_ingress("echo", HOST, "echo", &[GRPC], Some("grpc-tls")),
        ),
        ("echo-svc.yaml", service("echo", &[(server.addr, true)])),
        ("grpc-tls.yaml", tls_secret("grpc-tls", &leaf)),
    ])
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert.pem()).expect("write the CA");
    let via = Via::Tls {
        authority: HOST,
        ca: &ca_file,
    };
    assert_unary_echo(&grpc_call(h.running.https_addr, via, "unary").await);
    assert_bidi_lockstep(&grpc_call(h.running.https_addr, via, "bidi").await);
}

/// Sluice with two Ingresses to the TLS gRPC server (`backend-protocol: grpcs`, CA from an
/// Opaque Secret, verification on): `grpc.test` verifies [`UPSTREAM_NAME`] (in the
/// certificate), `wrong.grpc.test` verifies `wrong.name` (not in it).
async fn grpcs_harness() -> Harness {
    let upstream = tls_server();
    let grpcs = |name| {
        [
            ("sluice.io/backend-protocol", "grpcs"),
            ("sluice.io/proxy-ssl-secret", "default/upstream-ca"),
            ("sluice.io/proxy-ssl-verify", "on"),
            ("sluice.io/proxy-ssl-name", name),
        ]
    };
    Harness::start(&[
        (
            "right.yaml",
            grpc_ingress("right", HOST, "echo", &grpcs(UPSTREAM_NAME), None),
        ),
        (
            "wrong.yaml",
            grpc_ingress(
                "wrong",
                "wrong.grpc.test",
                "echo",
                &grpcs("wrong.name"),
                None,
            ),
        ),
        (
            "echo-svc.yaml",
            service("echo", &[(upstream.server.addr, true)]),
        ),
        (
            "upstream-ca.yaml",
            ca_secret("upstream-ca", &upstream.ca_pem),
        ),
    ])
    .await
}

#[tokio::test]
async fn a_grpcs_upstream_verified_by_name_answers() {
    let h = grpcs_harness().await;
    assert_unary_echo(&via_sluice(&h, "unary").await);
    assert_server_stream(&via_sluice(&h, "server_stream").await);
}

#[tokio::test]
async fn a_grpcs_upstream_failing_name_verification_is_unavailable() {
    let h = grpcs_harness().await;
    // The same upstream answers under the name in its certificate...
    assert_unary_echo(&via_sluice(&h, "unary").await);
    // ...and not under another one.
    let o = grpc_call(
        h.running.http_addr,
        Via::Plain {
            authority: "wrong.grpc.test",
        },
        "unary",
    )
    .await;
    assert_sluice_status(
        &o,
        "UNAVAILABLE",
        "the upstream's certificate is not for wrong.name",
    );
    assert!(
        o.details
            .as_deref()
            .is_some_and(|d| d.contains("TLS handshake with the upstream failed")),
        "the message says why: {o:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/2 gRPC client (for what grpcio's client hides: its own deadline, trailer framing)
// ---------------------------------------------------------------------------------------------

/// A unary answer as received on the wire.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    headers: http::HeaderMap,
    /// The length-prefixed messages of the body.
    messages: Vec<Vec<u8>>,
    trailers: Option<http::HeaderMap>,
    /// `grpc-status`, from the trailers or (trailers-only) the headers.
    grpc_status: Option<String>,
}

/// `POST /sluice.test.Echo/Unary` with `message` over h2c with prior knowledge to `addr`
/// (`:authority` `authority`, `te: trailers`, optional `grpc-timeout`), read in full.
async fn raw_unary(
    addr: SocketAddr,
    authority: &str,
    message: &[u8],
    grpc_timeout: Option<&str>,
) -> RawAnswer {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    let mut req = http::Request::post(format!("http://{authority}/sluice.test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = grpc_timeout {
        req = req.header("grpc-timeout", t);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .expect("request");
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .expect("an answer before the deadline")
        .expect("the request is answered");
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("the body ends before the deadline")
        .expect("the body");
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    let mut messages = Vec::new();
    let mut rest = &body[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let end = (5 + len).min(rest.len());
        messages.push(rest[5..end].to_vec());
        rest = &rest[end..];
    }
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    RawAnswer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        messages,
        trailers,
        grpc_status,
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A leaf certificate issued by a [`Ca`], as PEM (chain: leaf then CA).
struct Leaf {
    chain_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>(),
        )
        .expect("leaf params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}
