//! `sluice explain URL`: the I/O around [`sluice::explain::explain`]. The state comes from a
//! folder of manifests (read as `sluice check` reads it), from one list of the Kubernetes API,
//! or from a running instance's admin API (`GET /api/explain?url=...`, which also knows the
//! DNS and ACME states). Exit codes: 0 a rule routes the URL, 1 it falls to the default
//! backend or to 404, 2 the URL or the source cannot be used.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use sluice::explain::{Explanation, explain, render};
use sluice::source::manifests::load_dir;
use sluice::translate::{Options, translate};

/// Where the state to explain against comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A folder of manifests.
    Manifests(PathBuf),
    /// One list of the Kubernetes API.
    Kube {
        /// Kubeconfig file (default: in-cluster, KUBECONFIG, ~/.kube/config).
        kubeconfig: Option<PathBuf>,
        /// Namespaces to list (empty: every namespace).
        namespaces: Vec<String>,
    },
    /// A running instance's admin address (`127.0.0.1:9090`).
    Server(String),
}

/// Why explaining failed before any explanation: exit code 2.
#[derive(Debug)]
pub struct Failed(pub String);

/// Explains `url` against the manifests in `dir`. Files that fail to parse are reported on
/// stderr and the rest is explained.
pub fn from_manifests(
    dir: &Path,
    options: &Options,
    url: &str,
    now: i64,
) -> Result<Explanation, Failed> {
    if !dir.is_dir() {
        return Err(Failed(format!(
            "{} is not a folder; pass the folder that holds your manifests",
            dir.display()
        )));
    }
    let loaded = load_dir(dir);
    for e in &loaded.errors {
        eprintln!("sluice explain: skipped: {e}");
    }
    let translation = translate(&loaded.state, options);
    explain(&loaded.state, options, &translation, url, now).map_err(|e| Failed(e.to_string()))
}

async fn from_kube(
    kubeconfig: Option<&Path>,
    namespaces: &[String],
    options: &Options,
    url: &str,
    now: i64,
) -> anyhow::Result<Result<Explanation, Failed>> {
    use sluice::source::kube;
    let client = match kubeconfig {
        Some(path) => kube::client_from_kubeconfig(path).await?,
        None => kube::client_from_env().await?,
    };
    let state = kube::list_once(&client, namespaces)
        .await
        .context("listing Ingresses, IngressClasses, Services, EndpointSlices and TLS Secrets")?;
    let translation = translate(&state, options);
    Ok(explain(&state, options, &translation, url, now).map_err(|e| Failed(e.to_string())))
}

/// `url` percent-encoded for a query value.
pub fn encode_query_value(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asks the admin API at `addr` (`GET /api/explain`); `Err(Failed)` when it refuses the URL.
pub async fn from_server(addr: &str, url: &str) -> anyhow::Result<Result<Explanation, Failed>> {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the admin API at {addr} (--admin-addr)"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("/api/explain?url={}", encode_query_value(url)))
        .header(http::header::HOST, addr)
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status == http::StatusCode::BAD_REQUEST {
        return Ok(Err(Failed(
            String::from_utf8_lossy(&body).trim_end().to_string(),
        )));
    }
    anyhow::ensure!(
        status.is_success(),
        "{addr} answered {status} to /api/explain (an older sluice?): {}",
        String::from_utf8_lossy(&body).trim_end()
    );
    Ok(Ok(serde_json::from_slice(&body).with_context(|| {
        format!("{addr} answered /api/explain with something that is not an explanation")
    })?))
}

/// The output: the human form, or pretty JSON.
pub fn output(e: &Explanation, json: bool) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(e).unwrap_or_default();
        s.push('\n');
        s
    } else {
        render(e)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Runs `sluice explain` and prints the explanation to stdout (errors to stderr).
pub fn run(source: &Source, options: &Options, url: &str, json: bool) -> ExitCode {
    let now = unix_now();
    let result = match source {
        Source::Manifests(dir) => Ok(from_manifests(dir, options, url, now)),
        Source::Kube {
            kubeconfig,
            namespaces,
        } => block_on(from_kube(
            kubeconfig.as_deref(),
            namespaces,
            options,
            url,
            now,
        )),
        Source::Server(addr) => block_on(from_server(addr, url)),
    };
    match result {
        Ok(Ok(e)) => {
            print!("{}", output(&e, json));
            ExitCode::from(e.exit_code())
        }
        Ok(Err(Failed(msg))) => {
            eprintln!("sluice explain: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("sluice explain: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}
