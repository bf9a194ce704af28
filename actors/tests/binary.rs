//! The real `sluice` binary: `sluice run` serves, becomes ready and exits 0 on SIGTERM;
//! `sluice check` prints the route table and diagnostics with the right exit code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("sluice-binary-test-{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch folder");
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.0.join(name), contents).expect("write file");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the child if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
}

/// `GET path` with `Host: host` on a fresh connection: status and body, or the error.
async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A backend that reads one request head per connection and answers `200 done` only once
/// `release` turns true. Returns its address and how many requests arrived.
async fn held_backend(
    release: tokio::sync::watch::Receiver<bool>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind held backend");
    let addr = listener.local_addr().expect("local addr");
    let started = Arc::new(AtomicUsize::new(0));
    let count = started.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let (mut release, count) = (release.clone(), count.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut buf = [0u8; 1024];
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = release.wait_for(|r| *r).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
                    .await;
            });
        }
    });
    (addr, started)
}

fn ingress_yaml(name: &str, host: &str, path_type: &str) -> String {
    ingress_to(name, host, path_type, "web")
}

fn ingress_to(name: &str, host: &str, path_type: &str, service: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ingressClassName: sluice\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: {path_type}\n        backend:\n          service:\n            name: {service}\n            port:\n              number: 80\n"
    )
}

fn service_yaml(name: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - port: 80\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nports:\n- port: {}\nendpoints:\n- addresses: [\"{}\"]\n",
        backend.port(),
        backend.ip()
    )
}

async fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_and_exits_zero_on_sigterm() {
    let (backend, _echo) = sluice_actors::demo::spawn_echo("127.0.0.1:0".parse().unwrap(), "web")
        .await
        .expect("echo backend");
    let scratch = Scratch::new("run");
    let manifests = scratch.0.join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifests folder");
    std::fs::write(
        manifests.join("web.yaml"),
        ingress_yaml("web", "web.test", "Prefix"),
    )
    .expect("write");
    std::fs::write(manifests.join("svc.yaml"), service_yaml("web", backend)).expect("write");
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let (slow, slow_started) = held_backend(release_rx).await;
    std::fs::write(
        manifests.join("slow.yaml"),
        ingress_to("slow", "slow.test", "Prefix", "slow"),
    )
    .expect("write");
    std::fs::write(manifests.join("slow-svc.yaml"), service_yaml("slow", slow)).expect("write");
    let (http, https, admin, metrics) = (free_port(), free_port(), free_port(), free_port());
    let log_path = scratch.0.join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(SLUICE)
        .arg("run")
        .arg("--manifests")
        .arg(&manifests)
        .args([
            "--http-addr",
            &http.to_string(),
            "--https-addr",
            &https.to_string(),
            "--admin-addr",
            &admin.to_string(),
            "--metrics-addr",
            &metrics.to_string(),
        ])
        .args(["--shutdown-delay", "1s", "--shutdown-grace", "5s"])
        .args(["--idle-timeout", "30s", "--max-connections", "100"])
        .args(["--access-log", "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start sluice run");
    let mut child = Reap(child);
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _)) = get(metrics, "probe", "/readyz").await {
            break;
        }
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!("sluice run exited early with {status}:\n{}", logs());
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered 200 within 20 s:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, body) = get(http, "web.test", "/through-the-binary")
        .await
        .expect("request through sluice");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /through-the-binary"), "{body}");
    let (status, _) = get(http, "nothing.test", "/")
        .await
        .expect("request through sluice");
    assert_eq!(status, 404);
    // The access log: a JSON line per request, written once the response has been sent.
    let access_line = |path: &str| {
        logs().lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["target"] == "sluice::access" && v["path"] == path).then_some(v)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(v) = access_line("/through-the-binary") {
            break v;
        }
        assert!(Instant::now() < deadline, "no access log line:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(line["host"], "web.test", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["upstream_addr"], backend.to_string(), "{line}");
    assert_eq!(line["retries"], 0, "{line}");
    assert_eq!(line["completed"], true, "{line}");
    assert!(line["bytes_out"].as_u64().unwrap_or(0) > 0, "{line}");
    assert!(line["upstream_ms"].as_f64().is_some(), "{line}");
    assert_eq!(
        line["request_id"].as_str().map(str::len),
        Some(32),
        "sluice's request id: {line}"
    );
    assert_eq!(line["ingress"], "default/web", "{line}");
    // An unrouted request: no upstream.
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(v) = logs().lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["target"] == "sluice::access" && v["host"] == "nothing.test").then_some(v)
        }) {
            break v;
        }
        assert!(Instant::now() < deadline, "no access log line:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(line["status"], 404, "{line}");
    assert_eq!(line["upstream_addr"], "", "{line}");
    assert_eq!(line["error"], "no_route", "{line}");

    // A request the backend holds while SIGTERM arrives.
    let inflight = tokio::spawn(async move { get(http, "slow.test", "/slow").await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow_started.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow backend never got the request:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    // Draining: /readyz turns 503 while the request is held, and the process keeps running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(metrics, "probe", "/readyz").await.ok().map(|r| r.0) != Some(503) {
        assert!(
            Instant::now() < deadline,
            "/readyz never turned 503 after SIGTERM:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        get(admin, "admin", "/readyz").await.map(|r| r.0),
        Ok(503),
        "the admin listener too"
    );
    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "sluice waits for the in-flight request"
    );
    release.send_replace(true);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), inflight)
        .await
        .expect("the in-flight request finishes")
        .expect("client task")
        .expect("the in-flight request succeeds");
    assert_eq!((status, body.as_str()), (200, "done"));
    let status = wait_exit(&mut child.0, Duration::from_secs(10)).await;
    let Some(status) = status else {
        panic!("sluice did not exit within 10 s of SIGTERM:\n{}", logs())
    };
    assert!(status.success(), "exit status {status}:\n{}", logs());
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "nothing listens after exit"
    );
}

fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(SLUICE)
        .arg("check")
        .arg(dir)
        .output()
        .expect("run sluice check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_prints_the_demo_route_table() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/demo");
    let (code, out) = check(&demo);
    assert_eq!(code, 0, "{out}");
    let route = out
        .lines()
        .find(|l| l.contains("echo.sluice.test") && l.contains("/api/health"))
        .unwrap_or_else(|| panic!("no echo.sluice.test /api/health route:\n{out}"));
    assert!(route.contains("Exact"), "{route}");
    assert!(
        out.lines()
            .any(|l| l.contains("echo.sluice.test") && l.contains("/api ") && l.contains("Prefix")),
        "{out}"
    );
    assert!(out.contains("0 error(s)"), "{out}");
}

#[test]
fn check_reports_bad_ingresses_and_broken_yaml_and_exits_1() {
    let scratch = Scratch::new("check");
    scratch.write("good.yaml", &ingress_yaml("good", "good.test", "Prefix"));
    scratch.write("bad.yaml", &ingress_yaml("bad", "bad.test", "Sometimes"));
    // Line 5 is indented deeper than the mapping it belongs to.
    scratch.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   namespace: default\nspec: {}\n",
    );
    let (code, out) = check(&scratch.0);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("default/bad: spec.rules[0].http.paths[0].pathType: "),
        "{out}"
    );
    let broken = scratch.0.join("broken.yaml");
    assert!(out.contains(&format!("{}:5: ", broken.display())), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("good.test") && l.contains("default/good")),
        "the good Ingress is listed:\n{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.contains("bad.test") && l.contains("Prefix")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_without_waiting_for_the_shutdown() {
    let scratch = Scratch::new("second-signal");
    let (http, https, admin, metrics) = (free_port(), free_port(), free_port(), free_port());
    let log_path = scratch.0.join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(SLUICE)
        .arg("run")
        .arg("--manifests")
        .arg(&scratch.0)
        .args(["--http-addr", &http.to_string()])
        .args(["--https-addr", &https.to_string()])
        .args(["--admin-addr", &admin.to_string()])
        .args(["--metrics-addr", &metrics.to_string()])
        // Far longer than the test waits.
        .args(["--shutdown-delay", "10m"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start sluice run");
    let mut child = Reap(child);
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(metrics, "probe", "/readyz").await.ok().map(|r| r.0) != Some(200) {
        assert!(
            child.0.try_wait().expect("try_wait").is_none(),
            "sluice run exited early:\n{}",
            logs()
        );
        assert!(
            Instant::now() < deadline,
            "/readyz never answered 200:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.0.id().to_string();
    let signal = |sig: &str| {
        let sent = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
    };
    signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(metrics, "probe", "/readyz").await.ok().map(|r| r.0) != Some(503) {
        assert!(
            Instant::now() < deadline,
            "/readyz never turned 503 after SIGTERM:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // In the delay: still serving.
    assert_eq!(get(http, "nothing.test", "/").await.map(|r| r.0), Ok(404));
    assert!(child.0.try_wait().expect("try_wait").is_none());
    signal("-INT");
    let status = wait_exit(&mut child.0, Duration::from_secs(10)).await;
    let Some(status) = status else {
        panic!("a second signal did not end sluice:\n{}", logs())
    };
    assert!(status.success(), "exit status {status}:\n{}", logs());
    assert!(logs().contains("second signal"), "{}", logs());
}

#[test]
fn bad_connection_limits_and_durations_are_refused_by_name() {
    for (flag, value) in [
        ("--max-connections", "0"),
        ("--max-connections", "many"),
        ("--idle-timeout", "soon"),
        ("--shutdown-delay", "-1s"),
        ("--metrics-addr", "9100"),
    ] {
        let out = Command::new(SLUICE)
            .args(["run", "--manifests", "."])
            .arg(format!("{flag}={value}"))
            .output()
            .expect("run sluice");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}
