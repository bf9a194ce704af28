//! The admin actor and its HTTP endpoint: `/healthz`, `/readyz`, `/metrics` (Prometheus text),
//! and a JSON API: `/api/routes` (the live table), `/api/actors` (the supervision tree),
//! `/api/diagnostics`. With `--chaos`, `POST /debug/crash/{actor}` makes that actor panic.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use sluice::model::Diagnostic;

use crate::messages::{AdminMsg, TaskGuard};
use crate::run::Shared;

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

/// The admin actor.
#[derive(Debug)]
pub struct Admin;

/// Its state: the server task.
#[derive(Debug)]
pub struct AdminState {
    _server: TaskGuard,
}

impl Actor for Admin {
    type Msg = AdminMsg;
    type State = AdminState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<AdminMsg>,
        shared: Arc<Shared>,
    ) -> Result<AdminState, ActorProcessingErr> {
        Ok(AdminState {
            _server: TaskGuard(tokio::spawn(serve(shared))),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<AdminMsg>,
        msg: AdminMsg,
        _state: &mut AdminState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AdminMsg::Crash => panic!("chaos: crash requested for admin"),
        }
    }
}

async fn serve(shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = shared.admin.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp
}

fn json_reply(v: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let resp = match (req.method(), path) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") if shared.readiness.is_ready() => {
            reply(StatusCode::OK, "text/plain", "ready\n")
        }
        (&Method::GET, "/readyz") => {
            reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        (&Method::GET, "/api/routes") => json_reply(&routes(&shared)),
        (&Method::GET, "/api/actors") => json_reply(&shared.tree.to_json()),
        (&Method::GET, "/api/diagnostics") => json_reply(&diagnostics(&shared)),
        (&Method::POST, p) if shared.chaos && p.starts_with("/debug/crash/") => {
            let name = &p["/debug/crash/".len()..];
            if shared.tree.crash(name) {
                tracing::warn!(actor = name, "chaos: crash injected");
                reply(
                    StatusCode::ACCEPTED,
                    "text/plain",
                    format!("crashing {name}\n"),
                )
            } else {
                reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("no running actor named {name:?}; see /api/actors\n"),
                )
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz, /readyz, /metrics, /api/routes, /api/actors or /api/diagnostics\n",
        ),
    };
    Ok(resp)
}

fn routes(shared: &Shared) -> serde_json::Value {
    let snap = shared.proxy.snapshot();
    let endpoints = |b: &sluice::model::Backend| -> Vec<serde_json::Value> {
        b.endpoints
            .iter()
            .map(|e| json!({"address": e.addr.to_string(), "ready": e.ready}))
            .collect()
    };
    let routes: Vec<serde_json::Value> = snap
        .table
        .routes()
        .iter()
        .map(|r| {
            json!({
                "host": r.host.to_string(),
                "path": r.path.path,
                "pathType": r.path.kind.as_str(),
                "ingress": r.source.ingress.to_string(),
                "field": format!("spec.rules[{}].http.paths[{}]", r.source.rule, r.source.path),
                "backend": r.backend.label(),
                "endpoints": endpoints(&r.backend),
                "redirectToHttps": r.redirect_to_https,
            })
        })
        .collect();
    let default = snap.table.default_backend().map(|b| json!({"ingress": b.ingress.to_string(), "backend": b.label(), "endpoints": endpoints(b)}));
    json!({"generation": snap.generation, "routes": routes, "defaultBackend": default})
}

fn diag_json(d: &Diagnostic) -> serde_json::Value {
    json!({
        "severity": d.severity.as_str(),
        "reason": d.reason.as_str(),
        "kind": d.kind.as_str(),
        "object": d.object.to_string(),
        "field": d.field,
        "message": d.message,
        "text": d.to_string(),
    })
}

fn diagnostics(shared: &Shared) -> serde_json::Value {
    let desired = shared.desired.borrow().clone();
    let mut list: Vec<serde_json::Value> = Vec::new();
    if let Some(d) = &desired {
        for e in &d.loaded.errors {
            list.push(json!({"severity": "error", "reason": "ParseError", "file": e.path.display().to_string(), "line": e.line, "message": e.message, "text": e.to_string()}));
        }
        list.extend(d.translation.diagnostics.iter().map(diag_json));
    }
    list.extend(shared.cert_diagnostics.borrow().iter().map(diag_json));
    serde_json::Value::Array(list)
}
