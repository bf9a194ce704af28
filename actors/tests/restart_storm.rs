//! The real binary under a restart storm: with `--chaos`, crashing the router over and over
//! makes its supervisor escalate until the root gives up, and then the process must exit
//! non-zero with a log line that names the cause. Without `--chaos` the crash route does not
//! exist.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body), or None when the
/// server is not there.
fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn start(dir: &std::path::Path, chaos: bool) -> (Child, SocketAddr) {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["run", "--manifests"]).arg(dir);
    cmd.args(["--http-addr", &format!("127.0.0.1:{}", free_port())]);
    cmd.args(["--https-addr", &format!("127.0.0.1:{}", free_port())]);
    cmd.args(["--admin-addr", &admin.to_string(), "--log-format", "json"]);
    if chaos {
        cmd.arg("--chaos");
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice");
    // (The caller drains stderr; readiness is polled over HTTP.)
    let t = Instant::now();
    while http(admin, "GET", "/readyz").map(|r| r.0) != Some(200) {
        assert!(t.elapsed() < DEADLINE, "sluice never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, admin)
}

#[test]
fn the_process_exits_non_zero_naming_the_cause_when_the_root_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, admin) = start(dir.path(), true);
    // Drain stderr as it comes, so a full pipe never blocks the child.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(t.elapsed() < DEADLINE, "the root never gave up");
        // 404 while the router is being restarted; connection errors once the process exits.
        let _ = http(admin, "POST", "/debug/crash/router");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success(), "exit status {status}");
    let stderr = reader.join().unwrap();
    let line = stderr
        .lines()
        .find(|l| l.contains("sluice is exiting"))
        .unwrap_or_else(|| panic!("no exit line naming the cause in:\n{stderr}"));
    assert!(line.contains("supervisor root gave up"), "{line}");
    assert!(line.contains("control"), "{line}");
    assert!(
        stderr.contains("CHAOS MODE"),
        "chaos mode is announced loudly"
    );
}

#[test]
fn without_chaos_the_crash_route_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, admin) = start(dir.path(), false);
    let (status, body) = http(admin, "POST", "/debug/crash/router").expect("admin answers");
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(admin, "GET", "/api/actors").expect("admin answers");
    assert_eq!(status, 200);
    assert!(body.contains("\"name\": \"router\""), "{body}");
    assert!(body.contains("\"restarts\": 0"), "{body}");
    let _ = child.kill();
    let _ = child.wait();
}
