//! The admin endpoint: `/healthz`, `/readyz` and `/metrics` (Prometheus text).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// Readiness: the first configuration is live and the listeners are bound, and we are not
/// shutting down.
#[derive(Debug, Default)]
pub struct Readiness {
    config_live: AtomicBool,
    listening: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// The first configuration was published.
    pub fn set_config_live(&self) {
        self.config_live.store(true, Ordering::SeqCst);
    }
    /// The traffic listeners are bound.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }
    /// Shutdown started: report not ready so that load balancers stop sending.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.config_live.load(Ordering::SeqCst)
            && self.listening.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
    }
}

/// Serves the admin endpoint on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, readiness: Arc<Readiness>, metrics: PrometheusHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, readiness.clone(), metrics.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    readiness: Arc<Readiness>,
    metrics: PrometheusHandle,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if readiness.is_ready() => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n".to_string()),
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found: try /healthz, /readyz or /metrics\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    Ok(resp)
}
