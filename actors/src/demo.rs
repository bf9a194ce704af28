//! `sluice demo`: built-in echo backends, manifests written for them, and the proxy in front.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The host the demo Ingress serves.
pub const DEMO_HOST: &str = "echo.sluice.test";

/// Starts an echo server on `addr` that answers every request with a text description of it
/// (service name, its own address, method, path, headers, body size).
pub async fn spawn_echo(
    addr: SocketAddr,
    service: &'static str,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind echo backend on {addr}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req| echo(req, service, local));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

async fn echo(
    req: Request<Incoming>,
    service: &str,
    local: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "service: {service}\nendpoint: {local}\n{} {} {:?}",
        req.method(),
        req.uri(),
        req.version()
    );
    for (k, v) in req.headers() {
        let _ = writeln!(out, "{k}: {}", v.to_str().unwrap_or("<binary>"));
    }
    let size = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let _ = writeln!(out, "body: {size} bytes");
    let mut resp = Response::new(Full::new(Bytes::from(out)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-echo-endpoint",
        header::HeaderValue::from_str(&local.to_string())
            .unwrap_or(header::HeaderValue::from_static("?")),
    );
    Ok(resp)
}

/// Writes the demo manifests into `dir`: an IngressClass, one Ingress with TLS, Services
/// `echo` (one endpoint) and `api` (two endpoints) with EndpointSlices pointing at the given
/// addresses, and a freshly generated self-signed TLS Secret.
pub fn write_manifests(dir: &Path, echo: SocketAddr, api: [SocketAddr; 2]) -> anyhow::Result<()> {
    let cert = rcgen::generate_simple_self_signed(vec![DEMO_HOST.to_string()])
        .context("cannot generate the demo certificate")?;
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let ingress = format!(
        r#"# The sluice demo. Edit this file while `sluice demo` runs: changes are live within ~100 ms.
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: sluice
spec:
  controller: sluice.io/ingress-controller
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: demo
  namespace: default
spec:
  ingressClassName: sluice
  tls:
    - hosts: [{DEMO_HOST}]
      secretName: demo-tls
  rules:
    - host: {DEMO_HOST}
      http:
        paths:
          - {{ path: /, pathType: Prefix, backend: {{ service: {{ name: echo, port: {{ name: http }} }} }} }}
          - {{ path: /api, pathType: Prefix, backend: {{ service: {{ name: api, port: {{ number: 80 }} }} }} }}
"#
    );
    let slice = |name: &str, svc: &str, port_name: Option<&str>, addrs: &[SocketAddr]| {
        let port_line = port_name
            .map(|n| format!("name: {n}, "))
            .unwrap_or_default();
        let eps: String = addrs
            .iter()
            .map(|a| format!("  - addresses: [\"{}\"]\n", a.ip()))
            .collect();
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {svc}\naddressType: IPv4\nports:\n  - {{ {port_line}port: {} }}\nendpoints:\n{eps}",
            addrs[0].port()
        )
    };
    let services = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: default\nspec:\n  ports:\n  - {{ name: http, port: 80 }}\n---\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: default\nspec:\n  ports:\n  - {{ port: 80 }}\n---\n{}",
        slice("echo-1", "echo", Some("http"), &[echo]),
        slice("api-1", "api", None, &api),
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: demo-tls\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.cert.pem()),
        indent(&cert.key_pair.serialize_pem())
    );
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ingress.yaml"), ingress)?;
    std::fs::write(dir.join("services.yaml"), services)?;
    std::fs::write(dir.join("tls-secret.yaml"), secret)?;
    Ok(())
}

/// The lines printed for a newcomer.
pub fn instructions(http: SocketAddr, https: SocketAddr, admin: SocketAddr, dir: &Path) -> String {
    let (hp, sp) = (http.port(), https.port());
    format!(
        "\nsluice demo is running. Try:\n\n  \
         # plain HTTP is redirected to HTTPS (308), because the host has TLS:\n  \
         curl -i http://127.0.0.1:{hp}/ -H 'Host: {DEMO_HOST}'\n\n  \
         # TLS by SNI (self-signed certificate, hence -k):\n  \
         curl -k --resolve {DEMO_HOST}:{sp}:127.0.0.1 https://{DEMO_HOST}:{sp}/hello\n\n  \
         # HTTP/2:\n  \
         curl -k --http2 --resolve {DEMO_HOST}:{sp}:127.0.0.1 https://{DEMO_HOST}:{sp}/ -o /dev/null -w '%{{http_version}}\\n'\n\n  \
         # load-balanced over two endpoints (watch 'endpoint:' alternate):\n  \
         for i in 1 2 3 4; do curl -sk --resolve {DEMO_HOST}:{sp}:127.0.0.1 https://{DEMO_HOST}:{sp}/api/items | grep endpoint; done\n\n  \
         # a host with no route: 404\n  \
         curl -i http://127.0.0.1:{hp}/ -H 'Host: nothing.example'\n\n  \
         # health, readiness and Prometheus metrics:\n  \
         curl http://{admin}/readyz; curl -s http://{admin}/metrics | grep sluice_requests_total\n\n\
         The manifests are in {}: edit them and the change is live at once.\n\
         Ctrl-C stops everything.\n",
        dir.display()
    )
}
