//! The live routing table as JSON for the admin API (`GET /api/routes`), bounded and streamed.
//!
//! A table can hold a hundred thousand routes; building the whole document at once took tens
//! of megabytes per call. [`routes_response`] answers one page (at most [`MAX_LIMIT`] routes,
//! [`DEFAULT_LIMIT`] unless `limit` says otherwise), optionally only the routes of one rule
//! host, and writes the JSON as the body is read, a route at a time into frames of about
//! [`FRAME_BYTES`]: the memory a call holds is one frame and the snapshot it reads (which the
//! data plane holds anyway).
//!
//! Query parameters: `host` (a rule host as written in the Ingress, `*.example.com` for a
//! wildcard, `*` for rules without a host; case-insensitive), `limit` (1 to [`MAX_LIMIT`]),
//! `continue` (the token of the previous page). The document:
//!
//! ```json
//! {"generation": 7, "routes": [{"host": "...", "path": "/", "pathType": "Prefix",
//!   "ingress": "ns/name", "field": "spec.rules[0].http.paths[0]", "backend": "ns/svc:80",
//!   "endpoints": [{"address": "10.0.0.1:8080", "ready": true}], "redirectToHttps": false}],
//!  "defaultBackend": null, "continue": "7.500"}
//! ```
//!
//! A route with a canary also has `"canary": {"ingress", "backend", "rule", "endpoints"}`.
//! `continue` is `null` on the last page. A token from an older table (another generation)
//! is refused with 410 Gone, as the Kubernetes API does for an expired continue token: the
//! client starts again.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;

use super::Snapshot;
use crate::model::{Backend, HostMatch, Route};

/// Routes in a page when the query does not say.
pub const DEFAULT_LIMIT: usize = 500;
/// Most routes in one page.
pub const MAX_LIMIT: usize = 5_000;
/// A body frame is flushed once it holds this much JSON.
pub const FRAME_BYTES: usize = 32 * 1024;

/// A parsed `/api/routes` query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutesQuery {
    /// Only routes whose rule host is this (lower-case).
    pub host: Option<String>,
    /// Routes in the page.
    pub limit: usize,
    /// Resume at this generation and route index.
    pub from: Option<(u64, usize)>,
}

impl RoutesQuery {
    /// Parses a query string (`None`: no query). Unknown parameters are ignored.
    pub fn parse(query: Option<&str>) -> Result<RoutesQuery, String> {
        let mut q = RoutesQuery {
            limit: DEFAULT_LIMIT,
            ..RoutesQuery::default()
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "host" => q.host = Some(percent_decode(value)?.to_ascii_lowercase()),
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!("limit must be a number from 1 to {MAX_LIMIT}, got {value:?}")
                        })?;
                }
                "continue" => {
                    let parsed = value
                        .split_once('.')
                        .and_then(|(g, i)| Some((g.parse().ok()?, i.parse().ok()?)));
                    q.from = Some(parsed.ok_or_else(|| {
                        format!("continue must be a token from a previous page, got {value:?}")
                    })?);
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

/// The answer to `GET /api/routes?{query}` over `snapshot`: 200 with the streamed page, 400
/// for a bad query, 410 for a continue token of another generation.
pub fn routes_response(snapshot: Arc<Snapshot>, query: Option<&str>) -> Response<RoutesBody> {
    let query = match RoutesQuery::parse(query) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad query: {e}\n")),
    };
    let start = match query.from {
        None => 0,
        Some((generation, index)) if generation == snapshot.generation => index,
        Some(_) => {
            return text(
                StatusCode::GONE,
                "the routing table changed since that page: start again without continue\n"
                    .to_string(),
            );
        }
    };
    let mut resp = Response::new(RoutesBody {
        snapshot,
        host: query.host,
        limit: query.limit,
        next: start,
        emitted: 0,
        stage: Stage::Head,
    });
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: String) -> Response<RoutesBody> {
    let mut resp = Response::new(RoutesBody::text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[derive(Debug)]
enum Stage {
    Head,
    Routes,
    Done,
    Text(Option<Bytes>),
}

/// A page of the routing table as JSON, written while it is read (see the module docs).
#[derive(Debug)]
pub struct RoutesBody {
    snapshot: Arc<Snapshot>,
    host: Option<String>,
    limit: usize,
    /// The index of the next route to look at.
    next: usize,
    emitted: usize,
    stage: Stage,
}

impl RoutesBody {
    fn text(body: String) -> RoutesBody {
        RoutesBody {
            snapshot: Arc::new(Snapshot::default()),
            host: None,
            limit: 0,
            next: 0,
            emitted: 0,
            stage: Stage::Text(Some(Bytes::from(body))),
        }
    }

    /// The next frame of JSON, `None` at the end.
    fn next_frame(&mut self) -> Option<Bytes> {
        let mut buf = Vec::with_capacity(FRAME_BYTES + 1024);
        loop {
            match &mut self.stage {
                Stage::Text(text) => return text.take(),
                Stage::Done => return None,
                Stage::Head => {
                    buf.extend_from_slice(b"{\"generation\":");
                    buf.extend_from_slice(self.snapshot.generation.to_string().as_bytes());
                    buf.extend_from_slice(b",\"routes\":[");
                    self.stage = Stage::Routes;
                }
                Stage::Routes => {
                    let routes = self.snapshot.table.routes();
                    while self.emitted < self.limit && self.next < routes.len() {
                        let route = &routes[self.next];
                        self.next += 1;
                        if !wanted(self.host.as_deref(), route) {
                            continue;
                        }
                        if self.emitted > 0 {
                            buf.push(b',');
                        }
                        self.emitted += 1;
                        // Serializing plain data into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut buf, &RouteJson::new(route));
                        if buf.len() >= FRAME_BYTES {
                            return Some(Bytes::from(buf));
                        }
                    }
                    // The page is full or the table ends: is there more after it?
                    let host = self.host.as_deref();
                    let more = routes[self.next..].iter().any(|r| wanted(host, r));
                    buf.extend_from_slice(b"],\"defaultBackend\":");
                    let default = self.snapshot.table.default_backend().map(|b| DefaultJson {
                        ingress: b.ingress.to_string(),
                        backend: b.label(),
                        endpoints: endpoints(b),
                    });
                    let _ = serde_json::to_writer(&mut buf, &default);
                    buf.extend_from_slice(b",\"continue\":");
                    if more {
                        let token = format!("\"{}.{}\"", self.snapshot.generation, self.next);
                        buf.extend_from_slice(token.as_bytes());
                    } else {
                        buf.extend_from_slice(b"null");
                    }
                    buf.extend_from_slice(b"}\n");
                    self.stage = Stage::Done;
                    return Some(Bytes::from(buf));
                }
            }
        }
    }
}

/// Whether `route` is in a listing filtered by rule host `host` (compared without building
/// the host's text).
fn wanted(host: Option<&str>, route: &Route) -> bool {
    let Some(h) = host else {
        return true;
    };
    match &route.host {
        HostMatch::Exact(name) => name.eq_ignore_ascii_case(h),
        HostMatch::Wildcard(suffix) => h
            .strip_prefix("*.")
            .is_some_and(|s| s.eq_ignore_ascii_case(suffix)),
        HostMatch::Any => h == "*",
    }
}

impl Body for RoutesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().next_frame().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.stage, Stage::Done | Stage::Text(None))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[derive(Serialize)]
struct EndpointJson {
    address: String,
    ready: bool,
}

fn endpoints(b: &Backend) -> Vec<EndpointJson> {
    b.endpoints
        .iter()
        .map(|e| EndpointJson {
            address: e.addr.to_string(),
            ready: e.ready,
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteJson<'a> {
    host: String,
    path: &'a str,
    path_type: &'static str,
    ingress: String,
    field: String,
    backend: String,
    endpoints: Vec<EndpointJson>,
    redirect_to_https: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<CanaryJson>,
}

#[derive(Serialize)]
struct CanaryJson {
    ingress: String,
    backend: String,
    rule: String,
    endpoints: Vec<EndpointJson>,
}

impl<'a> RouteJson<'a> {
    fn new(r: &'a Route) -> RouteJson<'a> {
        RouteJson {
            host: r.host.to_string(),
            path: &r.path.path,
            path_type: r.path.kind.as_str(),
            ingress: r.source.ingress.to_string(),
            field: format!(
                "spec.rules[{}].http.paths[{}]",
                r.source.rule, r.source.path
            ),
            backend: r.backend.label(),
            endpoints: endpoints(&r.backend),
            redirect_to_https: r.redirect_to_https,
            canary: r.canary.as_ref().map(|c| CanaryJson {
                ingress: c.ingress.to_string(),
                backend: c.backend.label(),
                rule: c.rule.to_string(),
                endpoints: endpoints(&c.backend),
            }),
        }
    }
}

#[derive(Serialize)]
struct DefaultJson {
    ingress: String,
    backend: String,
    endpoints: Vec<EndpointJson>,
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::model::{Endpoint, Model, ObjectRef, PathKind, PathMatch, RouteSource, ServicePort};
    use crate::routing::RoutingTable;

    /// A snapshot of `n` routes: hosts h0.test, h1.test... with two paths each.
    fn snapshot(n: usize, generation: u64) -> Arc<Snapshot> {
        let backend = Arc::new(Backend {
            ingress: ObjectRef::new("ns", "ing"),
            service: ObjectRef::new("ns", "svc"),
            port: ServicePort::Number(80),
            endpoints: vec![Endpoint {
                addr: ([10, 0, 0, 1], 8080).into(),
                ready: true,
            }],
            settings: Default::default(),
        });
        let routes: Vec<Route> = (0..n)
            .map(|i| Route {
                host: HostMatch::parse(&format!("h{}.test", i / 2)).unwrap(),
                path: PathMatch::new(PathKind::Prefix, if i % 2 == 0 { "/" } else { "/api" })
                    .unwrap(),
                backend: backend.clone(),
                source: RouteSource {
                    ingress: ObjectRef::new("ns", "ing"),
                    rule: i / 2,
                    path: i % 2,
                },
                redirect_to_https: false,
                canary: None,
                fallback: None,
            })
            .collect();
        let table = RoutingTable::compile(&Model {
            routes: routes.into(),
            ..Model::default()
        });
        Arc::new(Snapshot {
            table,
            upstreams: Vec::new(),
            generation,
            passthrough: false,
        })
    }

    async fn page(snap: &Arc<Snapshot>, query: &str) -> (StatusCode, serde_json::Value, usize) {
        let resp = routes_response(snap.clone(), Some(query));
        let status = resp.status();
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(
                data.len() < FRAME_BYTES + 4096,
                "a frame of {} bytes",
                data.len()
            );
            bytes.extend_from_slice(&data);
            frames += 1;
        }
        let value = if status == StatusCode::OK {
            serde_json::from_slice(&bytes).expect("valid JSON")
        } else {
            serde_json::Value::String(String::from_utf8(bytes).unwrap())
        };
        (status, value, frames)
    }

    #[tokio::test]
    async fn pages_cover_every_route_once() {
        let snap = snapshot(1_203, 7);
        let mut seen = Vec::new();
        let mut query = "limit=500".to_string();
        loop {
            let (status, v, _) = page(&snap, &query).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(v["generation"], 7);
            for r in v["routes"].as_array().unwrap() {
                seen.push(format!("{} {}", r["host"], r["path"]));
            }
            match v["continue"].as_str() {
                Some(token) => query = format!("limit=500&continue={token}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 1_203);
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 1_203);
    }

    #[tokio::test]
    async fn a_default_page_is_bounded_and_streamed_in_frames() {
        let snap = snapshot(20_000, 1);
        let (status, v, frames) = page(&snap, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["routes"].as_array().unwrap().len(), DEFAULT_LIMIT);
        assert!(v["continue"].is_string());
        let (_, v, frames_max) = page(&snap, "limit=5000").await;
        assert_eq!(v["routes"].as_array().unwrap().len(), MAX_LIMIT);
        assert!(frames_max > frames, "{frames_max} frames for 5000 routes");
        let r = &v["routes"][0];
        assert_eq!(r["pathType"], "Prefix");
        assert_eq!(r["endpoints"][0]["address"], "10.0.0.1:8080");
        assert_eq!(r["field"], "spec.rules[0].http.paths[0]");
    }

    #[tokio::test]
    async fn filtered_by_host() {
        let snap = snapshot(1_000, 3);
        let (status, v, _) = page(&snap, "host=H42.test").await;
        assert_eq!(status, StatusCode::OK);
        let routes = v["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        assert!(routes.iter().all(|r| r["host"] == "h42.test"));
        assert!(v["continue"].is_null());
        let (_, v, _) = page(&snap, "host=h42.test&limit=1").await;
        let token = v["continue"].as_str().unwrap().to_string();
        let (_, v, _) = page(&snap, &format!("host=h42.test&limit=1&continue={token}")).await;
        assert_eq!(v["routes"].as_array().unwrap().len(), 1);
        assert!(v["continue"].is_null());
    }

    #[tokio::test]
    async fn bad_queries_and_stale_tokens() {
        let snap = snapshot(10, 5);
        for q in [
            "limit=0",
            "limit=5001",
            "limit=x",
            "continue=abc",
            "host=%zz",
        ] {
            assert_eq!(page(&snap, q).await.0, StatusCode::BAD_REQUEST, "{q}");
        }
        let (status, body, _) = page(&snap, "continue=4.2").await;
        assert_eq!(status, StatusCode::GONE, "{body}");
        assert_eq!(
            page(&snap, "continue=5.2&unknown=1").await.0,
            StatusCode::OK
        );
    }
}
