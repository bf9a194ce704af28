//! Test support: start the whole runtime in-process on loopback ports, write manifests, run
//! real backends.
#![allow(
    dead_code,
    reason = "each integration test binary uses a different subset"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sluice::proxy::ProxyConfig;
use sluice_actors::run::{self, RunOptions, Running};

/// How long tests wait for anything before failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running sluice with its manifests folder.
pub struct Harness {
    /// The watched folder.
    pub dir: tempfile::TempDir,
    /// The runtime.
    pub running: Running,
}

impl Harness {
    /// Starts sluice on 127.0.0.1 port 0 with `files` (name, YAML) in its folder and waits for
    /// the first configuration to be live.
    pub async fn start(files: &[(&str, String)]) -> Harness {
        Self::start_with(files, ProxyConfig::default()).await
    }

    /// [`Harness::start`] with proxy settings.
    pub async fn start_with(files: &[(&str, String)], proxy: ProxyConfig) -> Harness {
        Self::start_options(files, |opts| opts.proxy = proxy).await
    }

    /// [`Harness::start`] with the run options changed by `change` (every listener on
    /// 127.0.0.1 port 0, the metrics listener included, no shutdown delay, 20 ms debounce
    /// before it).
    pub async fn start_options(
        files: &[(&str, String)],
        change: impl FnOnce(&mut RunOptions),
    ) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, yaml) in files {
            std::fs::write(dir.path().join(name), yaml).expect("write manifest");
        }
        let mut opts = RunOptions {
            source: run::Source::Manifests(dir.path().to_path_buf()),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            https_addr: "127.0.0.1:0".parse().unwrap(),
            admin_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            shutdown_delay: Duration::ZERO,
            classes: sluice::translate::Options::default(),
            proxy: ProxyConfig::default(),
            debounce: Duration::from_millis(20),
            chaos: false,
            intensity: Default::default(),
            acme: None,
            dns: None,
            default_certificate: None,
            tls: Default::default(),
        };
        change(&mut opts);
        let running = run::start(opts).await.expect("sluice starts");
        running
            .wait_reload(0, DEADLINE)
            .await
            .expect("first configuration");
        Harness { dir, running }
    }

    /// Writes (or replaces) a manifest file and waits until the change is published.
    pub async fn write(&self, name: &str, yaml: &str) {
        let seen = self.running.reloads();
        write_atomic(&self.dir.path().join(name), yaml);
        self.running
            .wait_reload(seen, DEADLINE)
            .await
            .expect("reload after write");
    }

    /// Removes a manifest file and waits until the change is published.
    pub async fn remove(&self, name: &str) {
        let seen = self.running.reloads();
        std::fs::remove_file(self.dir.path().join(name)).expect("remove manifest");
        self.running
            .wait_reload(seen, DEADLINE)
            .await
            .expect("reload after remove");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.running.http_addr)
    }
}

/// Writes via a temp file and rename, as editors and `kubectl` tooling do.
pub fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, contents).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// One Ingress path: (path, pathType, service, port number).
pub type PathSpec<'a> = (&'a str, &'a str, &'a str, u16);

/// An Ingress of class `sluice` in namespace `default` with one rule for `host` ("" for none).
pub fn ingress(
    name: &str,
    host: &str,
    paths: &[PathSpec<'_>],
    annotations: &[(&str, &str)],
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
    y.push_str("spec:\n  ingressClassName: sluice\n  rules:\n  - ");
    if !host.is_empty() {
        y.push_str(&format!("host: {host}\n    "));
    }
    y.push_str("http:\n      paths:\n");
    for (p, t, svc, port) in paths {
        y.push_str(&format!(
            "      - path: {p}\n        pathType: {t}\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: {port}\n"
        ));
    }
    y
}

/// A Service `name` (port 80, unnamed) and one EndpointSlice listing `endpoints`
/// (`(address, ready)`; all must share one port).
pub fn service(name: &str, endpoints: &[(SocketAddr, bool)]) -> String {
    let port = endpoints.first().map_or(1, |(a, _)| a.port());
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - port: 80\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nports:\n- port: {port}\nendpoints:\n"
    );
    if endpoints.is_empty() {
        y.push_str("  []\n");
    }
    for (a, ready) in endpoints {
        y.push_str(&format!(
            "- addresses: [\"{}\"]\n  conditions:\n    ready: {ready}\n",
            a.ip()
        ));
    }
    y
}

/// Starts the built-in echo backend on `ip` (port chosen by the OS).
pub async fn echo(ip: [u8; 4], name: &'static str) -> SocketAddr {
    let (addr, _task) = sluice_actors::demo::spawn_echo(SocketAddr::from((ip, 0)), name)
        .await
        .expect("echo backend");
    addr
}

/// Waits for `cond` to become true, polling every 10 ms, failing after [`DEADLINE`].
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Helpers for config_changes, shutdown and admin tests ----

/// A keep-alive HTTP/1.1 client connection to `addr` (its driver runs on a spawned task).
pub async fn http1_connect(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    send
}

/// A response read in full: status, headers, body as text.
pub type FullResponse = (http::StatusCode, http::HeaderMap, String);

/// Sends `GET path` with `Host: host` on an existing connection and reads the whole response.
pub async fn get_on(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    host: &str,
    path: &str,
) -> Result<FullResponse, hyper::Error> {
    use http_body_util::BodyExt as _;
    send.ready().await?;
    let req = http::Request::get(path)
        .header("host", host)
        .body(http_body_util::Empty::new())
        .expect("request");
    let resp = send.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// `GET path` with `Host: host` on a fresh connection to `addr`.
pub async fn fetch(addr: SocketAddr, host: &str, path: &str) -> FullResponse {
    let mut send = http1_connect(addr).await;
    get_on(&mut send, host, path)
        .await
        .expect("request succeeds")
}

/// A backend that answers every request 200 with [`HeldBackend::BODY_LEN`] bytes, but only once
/// [`HeldBackend::release`] is called (never, if it is not).
#[derive(Clone)]
pub struct HeldBackend {
    /// Its address.
    pub addr: SocketAddr,
    started: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldBackend {
    /// Size of the response body.
    pub const BODY_LEN: usize = 100_000;

    /// Requests received so far (each is held until [`HeldBackend::release`]).
    pub fn started(&self) -> usize {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets every held request, and every later one, answer.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// Starts a [`HeldBackend`] on 127.0.0.1.
pub async fn held_backend() -> HeldBackend {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind held backend");
    let addr = listener.local_addr().expect("local addr");
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (release, _) = tokio::sync::watch::channel(false);
    let backend = HeldBackend {
        addr,
        started: started.clone(),
        release: release.clone(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (started, release) = (started.clone(), release.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: http::Request<hyper::body::Incoming>| {
                        let mut rx = release.subscribe();
                        started.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let _ = rx.wait_for(|released| *released).await;
                            let body = http_body_util::Full::new(bytes::Bytes::from(
                                vec![b'x'; HeldBackend::BODY_LEN],
                            ));
                            Ok::<_, std::convert::Infallible>(http::Response::new(body))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    backend
}

/// An address on 127.0.0.1 where nothing listens (connections are refused).
pub fn refusing_addr() -> SocketAddr {
    // Below the ephemeral range: no `bind(0)` elsewhere in the run can start listening there.
    SocketAddr::from(([127, 0, 0, 1], peers::free_port()))
}

/// A backend that answers an `Upgrade` request with 101 and then echoes raw bytes back
/// (WebSocket-style; anything else gets 400).
pub async fn upgrade_echo_backend() -> SocketAddr {
    use http::{StatusCode, header};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upgrade backend");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |mut req: http::Request<hyper::body::Incoming>| async move {
                        let mut resp =
                            http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                        if !req.headers().contains_key(header::UPGRADE) {
                            *resp.status_mut() = StatusCode::BAD_REQUEST;
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        let on_upgrade = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let Ok(upgraded) = on_upgrade.await else {
                                return;
                            };
                            let mut io = hyper_util::rt::TokioIo::new(upgraded);
                            let mut buf = [0u8; 1024];
                            loop {
                                match io.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => {
                                        if io.write_all(&buf[..n]).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                            }
                        });
                        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                        resp.headers_mut().insert(
                            header::CONNECTION,
                            header::HeaderValue::from_static("upgrade"),
                        );
                        resp.headers_mut()
                            .insert(header::UPGRADE, header::HeaderValue::from_static("echo"));
                        Ok(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A raw byte stream upgraded through the proxy.
pub type Tunnel = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// Opens a connection to `proxy` and upgrades it (`GET path`, `Host: host`) to the raw echo
/// protocol of [`upgrade_echo_backend`].
pub async fn open_tunnel(proxy: SocketAddr, host: &str, path: &str) -> Tunnel {
    use http::header;
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn.with_upgrades());
    let req = http::Request::get(path)
        .header(header::HOST, host)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "echo")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("upgrade request");
    assert_eq!(
        resp.status(),
        http::StatusCode::SWITCHING_PROTOCOLS,
        "the upgrade is accepted through the proxy"
    );
    hyper_util::rt::TokioIo::new(hyper::upgrade::on(resp).await.expect("upgraded"))
}

/// Writes `msg` on the tunnel and expects it echoed back before [`DEADLINE`].
pub async fn echo_through(io: &mut Tunnel, msg: &[u8]) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    io.write_all(msg).await.expect("write on the tunnel");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(DEADLINE, io.read_exact(&mut back))
        .await
        .expect("the echo comes back before the deadline")
        .expect("read on the tunnel");
    assert_eq!(back, msg);
}
pub mod fake_apiserver;
pub mod moto;
pub mod pebble;
pub mod peers;
pub mod pki;
pub mod tls_client;

/// Starts sluice with chaos testing enabled (`POST /debug/crash/{actor}`) and the given restart
/// intensity, with `files` in its manifests folder; waits for the first configuration.
pub async fn start_chaos(
    intensity: sluice_actors::supervisor::Intensity,
    files: &[(&str, String)],
) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    for (name, yaml) in files {
        std::fs::write(dir.path().join(name), yaml).unwrap();
    }
    let mut opts = RunOptions::new(dir.path());
    opts.chaos = true;
    opts.intensity = intensity;
    opts.debounce = Duration::from_millis(20);
    let running = run::start(opts).await.expect("sluice starts");
    running.wait_reload(0, DEADLINE).await.unwrap();
    (dir, running)
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    Ok((status, body))
}
