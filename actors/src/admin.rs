//! The admin actor and its HTTP endpoint: `/healthz`, `/readyz`, `/metrics` (Prometheus text),
//! and a JSON API: `/api/routes` (the live table, paged and streamed by
//! [`sluice::proxy::inspect::routes_response`]), `/api/actors` (the supervision tree),
//! `/api/diagnostics`, `/api/certificates`, `/api/dns` (zones, records, last sync; records
//! paged with `?limit=&offset=`), `/api/explain?url=URL` (see docs/explain.md). With `--chaos`, `POST /debug/crash/{actor}` makes
//! that actor panic in its message handler, and `POST /debug/crash/{actor}?in=task` inside its
//! background task.
//!
//! The admin listener binds loopback by default (`--admin-addr`): the API names every
//! Ingress, Service and Secret and has no authentication. The probes and metrics that must be
//! reachable from outside the pod are served by the metrics listener
//! ([`crate::metrics_listener`]), which answers nothing else. Both serve each connection with
//! the proxy's connection timeouts ([`serve_listener`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorProcessingErr;
use serde_json::json;
use sluice::model::Diagnostic;
use sluice::pace::Backoff;
use sluice::proxy::{Proxy, ProxyConfig, inspect, serve_with_timeouts};
use sluice::tls::CertStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::readiness::Readiness;
use crate::supervisor::{ActorTree, CrashPoint, Crashed};
use crate::topics::Desired;
use crate::worker::{Ctx, NoMsg, Worker};

/// The response body of the admin and metrics listeners: small documents in one piece,
/// `/api/routes` streamed.
pub type AdminBody = BoxBody<Bytes, Infallible>;

/// The connection timeouts of the admin and metrics listeners: the proxy's (see
/// docs/limits.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// From the accept to the first complete request head, and for each later head
    /// (`--client-header-timeout`).
    pub client_header: Duration,
    /// With no request in progress (`--idle-timeout`).
    pub idle: Duration,
}

impl HttpTimeouts {
    /// The timeouts of the proxy's client connections.
    pub fn of(config: &ProxyConfig) -> HttpTimeouts {
        HttpTimeouts {
            client_header: config.client_header_timeout,
            idle: config.idle_timeout,
        }
    }
}

/// What the admin endpoint uses.
#[derive(Clone, Debug)]
pub struct AdminArgs {
    /// The listening socket (owned by the runtime).
    pub socket: Arc<TcpListener>,
    /// Connection timeouts.
    pub timeouts: HttpTimeouts,
    /// `/readyz`.
    pub readiness: Arc<Readiness>,
    /// `/api/actors` and the chaos endpoint.
    pub tree: Arc<ActorTree>,
    /// `/metrics`.
    pub metrics: PrometheusHandle,
    /// `/api/routes`.
    pub proxy: Arc<Proxy>,
    /// Certificate expiry gauges, rendered from the live snapshot.
    pub certs: Arc<ArcSwap<CertStore>>,
    /// `/api/diagnostics`.
    pub desired: watch::Receiver<Option<Arc<Desired>>>,
    /// `/api/diagnostics`.
    pub cert_diagnostics: watch::Receiver<Arc<Vec<Diagnostic>>>,
    /// `/api/certificates` and `/api/diagnostics`.
    pub acme: watch::Receiver<Arc<crate::topics::AcmeReport>>,
    /// `/api/dns` and `/api/diagnostics`.
    pub dns: watch::Receiver<Arc<crate::topics::DnsReport>>,
    /// Which Ingresses are ours (`/api/explain` explains other classes by them).
    pub classes: sluice::translate::Options,
    /// Chaos routes enabled.
    pub chaos: bool,
}

/// The admin actor.
#[derive(Debug)]
pub struct Admin;

impl Worker for Admin {
    type Msg = NoMsg;
    type State = ();
    type Args = AdminArgs;

    async fn start(&self, ctx: &mut Ctx<NoMsg>, args: AdminArgs) -> Result<(), ActorProcessingErr> {
        let args = Arc::new(args);
        let (socket, timeouts) = (args.socket.clone(), args.timeouts);
        ctx.spawn(
            "server",
            serve_listener(socket, "admin", timeouts, move |req| {
                handle(req, args.clone())
            }),
        );
        Ok(())
    }
}

/// Accepts connections on `socket` and serves each on its own task with `handler` and the
/// proxy's connection timeouts ([`serve_with_timeouts`]). Runs until its task is aborted (the
/// actor stopped or is restarting); then the open connections finish their requests in
/// progress and close. An accept error (out of file descriptors) backs off, with one warning
/// per episode.
pub(crate) async fn serve_listener<H, F>(
    socket: Arc<TcpListener>,
    what: &'static str,
    timeouts: HttpTimeouts,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = Response<AdminBody>> + Send + 'static,
{
    // Dropped with this future: every connection's shutdown signal fires.
    let (_stop, stopped) = watch::channel(false);
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut failing = false;
    loop {
        let stream = match socket.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !failing {
                    failing = true;
                    tracing::warn!(listener = what, error = %e, "accept failed; backing off");
                }
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        failing = false;
        let handler = handler.clone();
        let svc = service_fn(move |req| {
            let resp = handler(req);
            async move { Ok::<_, Infallible>(resp.await) }
        });
        tokio::spawn(serve_with_timeouts(
            stream,
            svc,
            timeouts.client_header,
            timeouts.idle,
            stopped.clone(),
        ));
    }
}

pub(crate) fn reply(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<AdminBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp
}

fn json_reply(v: &serde_json::Value) -> Response<AdminBody> {
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )
}

/// `/healthz`, `/readyz` and `/metrics`: what the admin and the metrics listeners both
/// answer. `None` for any other request.
pub(crate) fn probes(
    req: &Request<Incoming>,
    readiness: &Readiness,
    metrics: &PrometheusHandle,
    certs: &ArcSwap<CertStore>,
) -> Option<Response<AdminBody>> {
    if req.method() != Method::GET {
        return None;
    }
    Some(match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if readiness.is_ready() => reply(StatusCode::OK, "text/plain", "ready\n"),
        "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n"),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            render_metrics(metrics, certs),
        ),
        _ => return None,
    })
}

async fn handle(req: Request<Incoming>, args: Arc<AdminArgs>) -> Response<AdminBody> {
    if let Some(resp) = probes(&req, &args.readiness, &args.metrics, &args.certs) {
        return resp;
    }
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/api/routes") => {
            inspect::routes_response(args.proxy.snapshot(), req.uri().query()).map(BodyExt::boxed)
        }
        (&Method::GET, "/api/actors") => json_reply(&args.tree.to_json()),
        (&Method::GET, "/api/diagnostics") => json_reply(&diagnostics(&args)),
        (&Method::GET, "/api/certificates") => json_reply(&certificates(&args)),
        (&Method::GET, "/api/explain") => explain(&args, req.uri().query()),
        (&Method::GET, "/api/dns") => match Page::from_query(req.uri().query()) {
            Ok(page) => json_reply(&dns(&args, &page)),
            Err(e) => reply(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
        },
        (&Method::POST, p) if args.chaos && p.starts_with("/debug/crash/") => {
            let name = &p["/debug/crash/".len()..];
            let point = if req.uri().query() == Some("in=task") {
                CrashPoint::Task
            } else {
                CrashPoint::Handler
            };
            match args.tree.crash(name, point) {
                Crashed::Yes => {
                    tracing::warn!(actor = name, ?point, "chaos: crash injected");
                    reply(
                        StatusCode::ACCEPTED,
                        "text/plain",
                        format!("crashing {name} ({point:?})\n"),
                    )
                }
                Crashed::NoTask => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("actor {name:?} has no background task\n"),
                ),
                Crashed::NoSuchActor => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("no running actor named {name:?}; see /api/actors\n"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz, /readyz, /metrics, /api/routes, /api/actors, /api/diagnostics, /api/certificates, /api/dns or /api/explain?url=URL\n",
        ),
    }
}

/// The registry's metrics, plus the certificate expiry gauges computed from the live
/// certificate snapshot, so a Secret that is no longer used has no series.
fn render_metrics(metrics: &PrometheusHandle, certs: &ArcSwap<CertStore>) -> String {
    let mut out = metrics.render();
    let store = certs.load();
    let not_after = store.not_after();
    for (name, help) in [
        (
            "sluice_tls_certs_not_after",
            "Expiry (notAfter, Unix seconds) of the leaf certificate of each TLS Secret in use.",
        ),
        (
            "sluice_certificate_expiry_timestamp_seconds",
            "Expiry (notAfter, Unix seconds) of each certificate served, by Secret (cert-manager's name for it).",
        ),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (secret, t) in &not_after {
            out.push_str(&format!(
                "{name}{{secret=\"{}\"}} {t}\n",
                escape_label(&secret.to_string())
            ));
        }
    }
    out
}

/// `/api/certificates`: every certificate served (by Secret, with its expiry) and, for those
/// ACME manages, hosts, issuer, challenge, state, next order and last error.
fn certificates(args: &AdminArgs) -> serde_json::Value {
    use sluice::acme::CertState;
    let store = args.certs.load();
    let acme = args.acme.borrow().clone();
    let mut managed = std::collections::HashSet::new();
    let mut list: Vec<serde_json::Value> = acme
        .certificates
        .iter()
        .map(|c| {
            managed.insert(c.wanted.secret.clone());
            let m = &c.managed;
            let (error, retry_at) = match &m.state {
                CertState::Failed {
                    error, retry_at, ..
                } => (Some(error.clone()), Some(*retry_at)),
                _ => (None, None),
            };
            json!({
                "secret": c.wanted.secret.to_string(),
                "ingress": c.wanted.ingress.to_string(),
                "field": c.wanted.field,
                "hosts": c.wanted.hosts,
                "issuer": "acme",
                "challenge": c.wanted.challenge.as_str(),
                "state": m.state.as_str(),
                "notAfter": m.not_after,
                "nextOrderAt": m.next_order_at(),
                "retryAt": retry_at,
                "lastError": error,
            })
        })
        .collect();
    for (secret, not_after) in store.not_after() {
        if !managed.contains(&secret) {
            list.push(json!({
                "secret": secret.to_string(),
                "issuer": "secret",
                "state": "served",
                "notAfter": not_after,
            }));
        }
    }
    json!({
        "acme": {
            "directory": (!acme.directory_url.is_empty()).then_some(acme.directory_url.clone()),
            "account": acme.account,
        },
        "certificates": list,
    })
}

/// `/api/explain?url=URL` (URL percent-encoded): [`sluice::explain::explain`] against the
/// live state, with the host's DNS records and the chosen Secret's ACME state added. 400
/// names a missing or unusable URL; 503 until the first configuration is translated.
fn explain(args: &AdminArgs, query: Option<&str>) -> Response<AdminBody> {
    let url = query
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("url="))
        .and_then(percent_decode);
    let Some(url) = url else {
        return reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "/api/explain needs ?url=URL (percent-encoded), e.g. ?url=https%3A//app.example.com/api\n",
        );
    };
    let Some(desired) = args.desired.borrow().clone() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "no configuration is translated yet\n",
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut e = match sluice::explain::explain(
        &desired.loaded.state,
        &args.classes,
        &desired.translation,
        &url,
        now,
    ) {
        Ok(e) => e,
        Err(err) => return reply(StatusCode::BAD_REQUEST, "text/plain", format!("{err}\n")),
    };
    let host = e.request.host.clone().unwrap_or_default();
    let dns = args.dns.borrow().clone();
    if dns.enabled {
        e.dns = Some(
            dns.records
                .iter()
                .filter(|r| r.name == host)
                .map(|r| sluice::explain::DnsView {
                    record_type: r.rtype.as_str().to_string(),
                    desired: r.desired.clone(),
                    current: r.current.clone(),
                    owner: r.owner.as_ref().map(|o| o.label().to_string()),
                    pending: r.pending.iter().map(|a| a.as_str().to_string()).collect(),
                    blocked: r.blocked.as_ref().map(ToString::to_string),
                })
                .collect(),
        );
    }
    let secret = e.tls.as_ref().and_then(|t| t.secret.clone());
    let acme = args.acme.borrow().clone();
    e.certificate = acme
        .certificates
        .iter()
        .find(|c| {
            secret.as_deref() == Some(c.wanted.secret.to_string().as_str())
                || (secret.is_none() && c.wanted.hosts.contains(&host))
        })
        .map(|c| {
            use sluice::acme::CertState;
            sluice::explain::AcmeView {
                secret: c.wanted.secret.to_string(),
                hosts: c.wanted.hosts.clone(),
                state: c.managed.state.as_str().to_string(),
                not_after: c.managed.not_after,
                last_error: match &c.managed.state {
                    CertState::Failed { error, .. } => Some(error.clone()),
                    _ => None,
                },
            }
        });
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(&e).unwrap_or_default(),
    )
}

/// A percent-decoded query value (`None`: a malformed escape or not UTF-8).
fn percent_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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

fn diagnostics(args: &AdminArgs) -> serde_json::Value {
    let desired = args.desired.borrow().clone();
    let mut list: Vec<serde_json::Value> = Vec::new();
    if let Some(d) = &desired {
        for e in &d.loaded.errors {
            list.push(json!({"severity": "error", "reason": "ParseError", "file": e.path.display().to_string(), "line": e.line, "message": e.message, "text": e.to_string()}));
        }
        list.extend(d.translation.diagnostics.iter().map(diag_json));
    }
    list.extend(args.cert_diagnostics.borrow().iter().map(diag_json));
    list.extend(args.acme.borrow().diagnostics.iter().map(diag_json));
    list.extend(args.dns.borrow().diagnostics.iter().map(diag_json));
    serde_json::Value::Array(list)
}

/// Records per `/api/dns` page by default, and at most.
const DNS_PAGE: usize = 500;
const DNS_PAGE_MAX: usize = 5000;

/// `?limit=N&offset=M&zone=NAME`.
#[derive(Debug, PartialEq, Eq)]
struct Page {
    limit: usize,
    offset: usize,
    zone: Option<String>,
}

impl Page {
    fn from_query(query: Option<&str>) -> Result<Page, String> {
        let mut page = Page {
            limit: DNS_PAGE,
            offset: 0,
            zone: None,
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| {
                v.parse::<usize>()
                    .map_err(|_| format!("{what}={v:?} is not a number"))
            };
            match k {
                "limit" => page.limit = number("limit")?.clamp(1, DNS_PAGE_MAX),
                "offset" => page.offset = number("offset")?,
                "zone" => page.zone = Some(v.trim_end_matches('.').to_ascii_lowercase()),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: /api/dns takes limit (at most {DNS_PAGE_MAX}), offset and zone"
                    ));
                }
            }
        }
        Ok(page)
    }
}

fn counts_json(c: &sluice::dns::ChangeCounts) -> serde_json::Value {
    json!({"create": c.create, "upsert": c.upsert, "delete": c.delete})
}

fn zone_json(z: &sluice::dns::Zone) -> serde_json::Value {
    json!({"id": z.id, "name": z.name, "private": z.private})
}

/// `/api/dns`: the DNS actor's report; records paged.
fn dns(args: &AdminArgs, page: &Page) -> serde_json::Value {
    let r = args.dns.borrow().clone();
    if !r.enabled {
        return json!({"enabled": false, "message": "DNS records are off (--dns-provider none)"});
    }
    let zones: Vec<serde_json::Value> = r
        .zones
        .iter()
        .map(|z| {
            json!({
                "id": z.zone.id, "name": z.zone.name, "private": z.zone.private,
                "records": z.records, "owned": z.owned, "foreign": z.foreign,
            })
        })
        .collect();
    let matches_zone = |v: &sluice::dns::RecordView| match &page.zone {
        None => true,
        Some(want) => v
            .zone
            .as_ref()
            .is_some_and(|z| &z.name == want || &z.id == want),
    };
    let selected: Vec<&sluice::dns::RecordView> =
        r.records.iter().filter(|v| matches_zone(v)).collect();
    let items: Vec<serde_json::Value> = selected
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|v| {
            let (owner, owner_id) = match &v.owner {
                None => (None, None),
                Some(o) => (
                    Some(o.label()),
                    match o {
                        sluice::dns::RecordOwner::Other(id) => Some(id.clone()),
                        _ => None,
                    },
                ),
            };
            json!({
                "zone": v.zone.as_ref().map(zone_json),
                "name": v.name,
                "type": v.rtype.as_str(),
                "desired": v.desired,
                "resources": v.resources,
                "current": v.current,
                "owner": owner,
                "ownerId": owner_id,
                "ownerResource": v.owner_resource,
                "pending": v.pending.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                "blocked": v.blocked.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let quarantined: Vec<serde_json::Value> = r
        .quarantined
        .iter()
        .map(|q| {
            json!({
                "zone": zone_json(&q.failure.zone),
                "name": q.failure.name,
                "resources": q.failure.resources,
                "error": q.failure.error,
                "failures": q.failure.failures,
                "retryAt": q.retry_at,
            })
        })
        .collect();
    let pending: Vec<serde_json::Value> = r
        .pending
        .iter()
        .take(DNS_PAGE_MAX)
        .map(|c| {
            json!({
                "action": c.action.as_str(),
                "name": c.record.name,
                "type": c.record.rtype.as_str(),
                "values": c.record.values,
                "alias": c.record.alias.as_ref().map(|a| a.dns_name.clone()),
            })
        })
        .collect();
    let last_sync = r.last_sync.as_ref().map(|s| {
        json!({
            "at": s.at,
            "durationSeconds": s.duration.as_secs_f64(),
            "result": s.result.as_str(),
            "error": s.result.error(),
            "applied": counts_json(&s.applied),
            "calls": s.calls,
            "batches": s.batches,
        })
    });
    json!({
        "enabled": true,
        "provider": r.provider,
        "ownerId": r.owner_id,
        "policy": r.policy.as_str(),
        "dryRun": r.dry_run,
        "writer": r.leader,
        "desired": r.desired,
        "zones": zones,
        "planned": counts_json(&r.planned),
        "pending": pending,
        "pendingTotal": r.pending.len(),
        "quarantined": quarantined,
        "lastSync": last_sync,
        "nextSyncAt": r.next_sync_at,
        "records": {
            "total": selected.len(),
            "offset": page.offset,
            "limit": page.limit,
            "items": items,
        },
        "diagnostics": r.diagnostics.iter().map(diag_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_pages_are_bounded_and_parameters_checked() {
        assert_eq!(
            Page::from_query(None),
            Ok(Page {
                limit: DNS_PAGE,
                offset: 0,
                zone: None
            })
        );
        assert_eq!(
            Page::from_query(Some("limit=99999&offset=20&zone=Example.COM.")),
            Ok(Page {
                limit: DNS_PAGE_MAX,
                offset: 20,
                zone: Some("example.com".into())
            })
        );
        assert_eq!(Page::from_query(Some("limit=0")).unwrap().limit, 1);
        assert!(
            Page::from_query(Some("limit=ten"))
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            Page::from_query(Some("sort=name"))
                .unwrap_err()
                .contains("sort")
        );
    }
}
