//! An in-process fake Kubernetes API server on 127.0.0.1 that speaks the real HTTP wire protocol
//! for get, list and watch, as kube-rs (and client-go) use it:
//!
//! - `GET /api/v1/{plural}`, `/apis/{group}/{version}/{plural}` and the namespaced forms
//!   `.../namespaces/{ns}/{plural}`; `.../{plural}/{name}` gets one object.
//! - Lists answer `{"kind":"IngressList","apiVersion":..,"metadata":{"resourceVersion":"N"},
//!   "items":[..]}`, paginated with `limit` / `continue` (kube-runtime asks for pages of 500).
//!   A `continue` token (or a `resourceVersion` with `resourceVersionMatch=Exact`) older than the
//!   compacted history gets HTTP 410 Gone. Pages are cut from the current state (a real server
//!   serves them from a snapshot): good enough for a test double.
//! - `?watch=true&resourceVersion=N` streams newline-delimited `{"type":..,"object":..}` events
//!   (ADDED, MODIFIED, DELETED) of changes after N from a history with one global
//!   resourceVersion counter, BOOKMARK events every [`BOOKMARK_EVERY`], and ends after
//!   `timeoutSeconds`. No N (or "0") first sends the current objects as ADDED;
//!   `sendInitialEvents=true` (streaming lists) ends those with the
//!   `k8s.io/initial-events-end` bookmark. N older than the retained history (see
//!   [`FakeApiServer::compact`]) gets an ERROR event carrying a Status with code 410, which is
//!   what the real server sends.
//! - `fieldSelector` (`a.b=v`, `a.b==v`, `a.b!=v`, comma-separated, against the object's JSON,
//!   e.g. `type=kubernetes.io/tls`, `metadata.name=x`) and `labelSelector` (`k=v`, `k!=v`, `k`,
//!   `!k`) filter lists and watches. An object whose fields move out of a selector is not turned
//!   into a DELETED event (the selectors used here are on immutable fields).
//!
//! - Writes of every registered resource: `POST` on a collection creates (409 `AlreadyExists`
//!   for an existing name), `PUT .../{name}` replaces and `PATCH .../{name}` applies a JSON merge
//!   patch (RFC 7386; strategic merge patches are treated as merge patches); the `status`
//!   subresource (`PUT`/`PATCH .../{name}/status`) changes only `.status` and the main resource
//!   never does. A body whose `metadata.resourceVersion` is not the stored one gets 409
//!   `Conflict` with a Status body (optimistic concurrency, as for Lease updates); every write
//!   bumps the resourceVersion and records an ADDED or MODIFIED event. This covers Ingress
//!   status, coordination.k8s.io/v1 Leases and Events (core v1 and events.k8s.io/v1, the API
//!   kube-runtime's `Recorder` and sluice use).
//!
//! Objects live in one generic store keyed by (resource, namespace, name), with a registry of
//! resource types ([`RESOURCES`]).
//!
//! Tests mutate objects with [`FakeApiServer::apply`] and [`FakeApiServer::delete`], simulate an
//! API server that is away with [`FakeApiServer::pause`] / [`FakeApiServer::resume`], make a
//! resource's lists fail with [`FakeApiServer::fail_lists`], make updates conflict with
//! [`FakeApiServer::conflict_next_updates`], and assert on the request log
//! ([`FakeApiServer::requests`], which records writes with their bodies).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How often an open watch gets a BOOKMARK event.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// A kind of object the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name, as in the URL.
    pub plural: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
    }
}

/// Every resource type the fake knows.
pub const RESOURCES: &[ResourceType] = &[
    rt("networking.k8s.io", "v1", "ingresses", "Ingress", true),
    rt(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        false,
    ),
    rt("", "v1", "services", "Service", true),
    rt(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
    ),
    rt("", "v1", "secrets", "Secret", true),
    rt("", "v1", "configmaps", "ConfigMap", true),
    rt("coordination.k8s.io", "v1", "leases", "Lease", true),
    rt("", "v1", "events", "Event", true),
    rt("events.k8s.io", "v1", "events", "Event", true),
];

/// The resource type of `kind` (or plural), preferring the first registered.
pub fn resource_type(kind_or_plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind_or_plural || r.plural == kind_or_plural)
}

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// HTTP status of the response.
    pub status: u16,
    /// The resource's plural name, when the path named a known resource.
    pub resource: Option<&'static str>,
    /// True when the answer was 410 Gone, as an HTTP status or as a watch ERROR event.
    pub gone: bool,
    /// The subresource named by the path (`status`), if any.
    pub subresource: Option<String>,
    /// The request body, when it was JSON (writes).
    pub body: Option<Value>,
}

impl RequestRecord {
    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// True for a watch request.
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }

    /// True for a list request (a collection GET that is not a watch).
    pub fn is_list_of(&self, plural: &str) -> bool {
        self.resource == Some(plural) && !self.is_watch() && self.path.ends_with(plural)
    }

    /// True for a watch request on `plural`.
    pub fn is_watch_of(&self, plural: &str) -> bool {
        self.resource == Some(plural) && self.is_watch()
    }

    /// True for a write (`POST`, `PUT`, `PATCH`, `DELETE`) on `plural`.
    pub fn is_write_of(&self, plural: &str) -> bool {
        self.resource == Some(plural) && self.method != "GET"
    }
}

/// A change in the history.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    kind: &'static str,
    resource: &'static ResourceType,
    namespace: String,
    object: Value,
}

/// Store key: (resource index in [`RESOURCES`], namespace, name).
type Key = (usize, String, String);

#[derive(Debug, Default)]
struct Cluster {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Watches and continue tokens from before this resourceVersion get 410 Gone.
    compacted: u64,
    failing_lists: BTreeSet<String>,
    /// Resource plural -> how many of the next updates (PUT) answer 409 Conflict.
    conflicts: BTreeMap<String, usize>,
    log: Vec<RequestRecord>,
}

/// Commands to open watch streams.
#[derive(Clone, Copy, Debug)]
enum StreamCmd {
    /// End the stream (as the server's timeout does).
    Close,
    /// Send a 410 Gone ERROR event and end the stream.
    Expire,
}

struct Inner {
    cluster: Mutex<Cluster>,
    /// The current resourceVersion, to wake watch streams.
    changes: watch::Sender<u64>,
    cmds: broadcast::Sender<StreamCmd>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The fake API server. Dropping it stops serving.
pub struct FakeApiServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(task) = self.accept_slot().take() {
            task.abort();
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

impl FakeApiServer {
    /// Starts an empty fake on 127.0.0.1 (port chosen by the OS).
    pub async fn start() -> FakeApiServer {
        let listener = bind(([127, 0, 0, 1], 0).into()).expect("bind fake API server");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            cluster: Mutex::new(Cluster::default()),
            changes: watch::channel(0).0,
            cmds: broadcast::channel(64).0,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&inner)));
        FakeApiServer {
            addr,
            inner,
            accept: Mutex::new(Some(accept)),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client configuration pointing at the fake over plain HTTP.
    pub fn kube_config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().expect("fake URL"))
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }

    /// Creates or replaces an object (`apiVersion`, `kind` and `metadata.name` required; a
    /// namespaced object without namespace goes to `default`). Sets `resourceVersion` (and
    /// `uid` and `creationTimestamp` when new), records an ADDED or MODIFIED event and returns
    /// the stored object. Panics on an object the fake cannot store (a test bug).
    pub fn apply(&self, mut obj: Value) -> Value {
        let kind = obj["kind"].as_str().expect("object has a kind").to_owned();
        let api_version = obj["apiVersion"]
            .as_str()
            .expect("object has an apiVersion");
        let (index, resource) = RESOURCES
            .iter()
            .enumerate()
            .find(|(_, r)| r.kind == kind && r.api_version() == api_version)
            .unwrap_or_else(|| panic!("the fake does not serve {api_version} {kind}"));
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("object has metadata.name")
            .to_owned();
        let namespace = if resource.namespaced {
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            obj["metadata"]["namespace"] = json!(ns);
            ns
        } else {
            String::new()
        };
        let mut cluster = self.inner.lock();
        cluster.rv += 1;
        let rv = cluster.rv;
        let key = (index, namespace.clone(), name);
        let event = match cluster.objects.get(&key) {
            Some(old) => {
                obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                "MODIFIED"
            }
            None => {
                obj["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{rv:012}"));
                obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                "ADDED"
            }
        };
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        cluster.objects.insert(key, obj.clone());
        cluster.history.push(Change {
            rv,
            kind: event,
            resource,
            namespace,
            object: obj.clone(),
        });
        drop(cluster);
        self.inner.changes.send_replace(rv);
        obj
    }

    /// Deletes an object (`kind` is a kind or plural name; `namespace` is ignored for
    /// cluster-scoped kinds) and records a DELETED event. False if there was none.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let Some((index, resource)) = RESOURCES
            .iter()
            .enumerate()
            .find(|(_, r)| r.kind == kind || r.plural == kind)
        else {
            return false;
        };
        let namespace = if resource.namespaced { namespace } else { "" };
        let mut cluster = self.inner.lock();
        let key = (index, namespace.to_owned(), name.to_owned());
        let Some(mut obj) = cluster.objects.remove(&key) else {
            return false;
        };
        cluster.rv += 1;
        let rv = cluster.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        cluster.history.push(Change {
            rv,
            kind: "DELETED",
            resource,
            namespace: namespace.to_owned(),
            object: obj,
        });
        drop(cluster);
        self.inner.changes.send_replace(rv);
        true
    }

    /// The stored object, if any.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (index, resource) = RESOURCES
            .iter()
            .enumerate()
            .find(|(_, r)| r.kind == kind || r.plural == kind)?;
        let namespace = if resource.namespaced { namespace } else { "" };
        let key = (index, namespace.to_owned(), name.to_owned());
        self.inner.lock().objects.get(&key).cloned()
    }

    /// Forgets the event history (as etcd compaction does): a watch from an older
    /// resourceVersion, or an open watch that has not yet sent those events, gets 410 Gone.
    pub fn compact(&self) {
        let mut cluster = self.inner.lock();
        cluster.history.clear();
        cluster.compacted = cluster.rv;
    }

    /// Ends every open watch stream cleanly (as the server's `timeoutSeconds` does): clients
    /// resume from their last resourceVersion.
    pub fn close_watches(&self) {
        let _ = self.inner.cmds.send(StreamCmd::Close);
    }

    /// Sends every open watch stream an ERROR event with a 410 Gone Status and ends it (what
    /// the real server does to a watcher it can no longer serve): clients relist.
    pub fn expire_watches(&self) {
        let _ = self.inner.cmds.send(StreamCmd::Expire);
    }

    /// While `fail` is true, lists of `plural` (e.g. `"endpointslices"`) answer HTTP 500.
    pub fn fail_lists(&self, plural: &str, fail: bool) {
        let mut cluster = self.inner.lock();
        if fail {
            cluster.failing_lists.insert(plural.to_owned());
        } else {
            cluster.failing_lists.remove(plural);
        }
    }

    /// Stops serving: closes the listening socket (new connections are refused) and drops
    /// every open connection, watch streams included.
    pub async fn pause(&self) {
        let task = self.accept_slot().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same address after [`FakeApiServer::pause`].
    pub async fn resume(&self) {
        if self.accept_slot().is_some() {
            return;
        }
        let listener = bind(self.addr).expect("rebind fake API server");
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&self.inner)));
        *self.accept_slot() = Some(task);
    }

    /// The next `n` updates (`PUT`, status included) of `plural` answer 409 Conflict, as when
    /// another writer changed the object between the client's read and its write.
    pub fn conflict_next_updates(&self, plural: &str, n: usize) {
        self.inner.lock().conflicts.insert(plural.to_owned(), n);
    }

    /// Every stored object of `kind` (kind or plural; for `events`, core v1 and events.k8s.io
    /// are both returned) in `namespace` (`None`: every namespace).
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let cluster = self.inner.lock();
        cluster
            .objects
            .iter()
            .filter(|((r, ns, _), _)| {
                (RESOURCES[*r].kind == kind || RESOURCES[*r].plural == kind)
                    && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().log.clone()
    }

    /// Number of answered requests that satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&RequestRecord) -> bool) -> usize {
        self.inner.lock().log.iter().filter(|r| pred(r)).count()
    }

    fn accept_slot(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.accept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until aborted; aborting it also aborts every connection (the JoinSet
/// is dropped with it).
async fn accept_loop(listener: tokio::net::TcpListener, inner: Arc<Inner>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let inner = Arc::clone(&inner);
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let inner = Arc::clone(&inner);
                        async move { Ok::<_, Infallible>(handle(&inner, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = conns.join_next() => {}
        }
    }
}

/// What a path names.
struct Target {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` paths.
fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some((*name).to_owned()), None),
        [plural, name, sub] => (*plural, Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return None,
    };
    let resource = RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)?;
    if namespace.is_some() && !RESOURCES[resource].namespaced {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

fn decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

/// One `key op value` term of a selector.
#[derive(Clone, Debug)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

/// A parsed field or label selector.
#[derive(Clone, Debug, Default)]
struct Selectors {
    fields: Vec<Term>,
    labels: Vec<Term>,
}

fn parse_selector(s: &str) -> Vec<Term> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if let Some((k, v)) = t.split_once("!=") {
                Term::Ne(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                Term::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = t.strip_prefix('!') {
                Term::Absent(k.trim().to_owned())
            } else {
                Term::Exists(t.to_owned())
            }
        })
        .collect()
}

fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut v = obj;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn label_value(obj: &Value, key: &str) -> Option<String> {
    obj["metadata"]["labels"][key].as_str().map(str::to_owned)
}

fn term_matches(term: &Term, get: impl Fn(&str) -> Option<String>) -> bool {
    match term {
        Term::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
        Term::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
        Term::Exists(k) => get(k).is_some(),
        Term::Absent(k) => get(k).is_none(),
    }
}

impl Selectors {
    fn from_query(query: &[(String, String)]) -> Selectors {
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| parse_selector(v))
                .unwrap_or_default()
        };
        Selectors {
            fields: get("fieldSelector"),
            labels: get("labelSelector"),
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        self.fields
            .iter()
            .all(|t| term_matches(t, |k| field_value(obj, k)))
            && self
                .labels
                .iter()
                .all(|t| term_matches(t, |k| label_value(obj, k)))
    }
}

async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query());
    let target = parse_path(&path);
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        status: 200,
        resource: target.as_ref().map(|t| RESOURCES[t.resource].plural),
        gone: false,
        subresource: target.as_ref().and_then(|t| t.subresource.clone()),
        body: body.clone(),
    };
    let (response, watch) = if method == hyper::Method::GET {
        route(inner, &method, target, &query)
    } else {
        (write(inner, &method, target, body), None)
    };
    record.status = response.status().as_u16();
    record.gone = response.status() == StatusCode::GONE || watch.as_ref().is_some_and(|w| w.gone);
    let mut cluster = inner.lock();
    let index = cluster.log.len();
    cluster.log.push(record);
    drop(cluster);
    match watch {
        Some(mut stream) => {
            stream.log_index = index;
            stream.gone_logged = stream.gone;
            let body = StreamBody::new(futures::stream::unfold(stream, WatchStream::next_frame));
            let mut response = response;
            *response.body_mut() = body.boxed_unsync();
            response
        }
        None => response,
    }
}

fn route(
    inner: &Arc<Inner>,
    method: &hyper::Method,
    target: Option<Target>,
    query: &[(String, String)],
) -> (Response<Body>, Option<WatchStream>) {
    let Some(target) = target else {
        let body = status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
        return (json_response(StatusCode::NOT_FOUND, &body), None);
    };
    if method != hyper::Method::GET
        || target
            .subresource
            .as_deref()
            .is_some_and(|sub| sub != "status" || target.name.is_none())
    {
        let body = status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake API server does not support this verb yet",
        );
        return (json_response(StatusCode::METHOD_NOT_ALLOWED, &body), None);
    }
    let resource = &RESOURCES[target.resource];
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(name) = &target.name {
        let key = (
            target.resource,
            target.namespace.clone().unwrap_or_default(),
            name.clone(),
        );
        return match inner.lock().objects.get(&key) {
            Some(obj) => (json_response(StatusCode::OK, obj), None),
            None => {
                let msg = format!("{} \"{name}\" not found", resource.plural);
                let body = status(StatusCode::NOT_FOUND, "NotFound", &msg);
                (json_response(StatusCode::NOT_FOUND, &body), None)
            }
        };
    }
    let selectors = Selectors::from_query(query);
    if matches!(param("watch"), Some("true" | "1")) {
        return watch(inner, target, selectors, query);
    }
    (list(inner, &target, &selectors, query), None)
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in fields {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn error(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status(code, reason, message))
}

/// `POST` (create), `PUT` (replace, also of the `status` subresource) and `PATCH` (JSON merge
/// patch, also of `status`) of any registered resource, with optimistic concurrency: a body
/// whose `metadata.resourceVersion` is not the stored one gets 409 Conflict.
fn write(
    inner: &Arc<Inner>,
    method: &hyper::Method,
    target: Option<Target>,
    body: Option<Value>,
) -> Response<Body> {
    let Some(target) = target else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let resource = &RESOURCES[target.resource];
    let status_sub = match target.subresource.as_deref() {
        None => false,
        Some("status") => true,
        Some(_) => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the fake API server does not support this subresource",
            );
        }
    };
    let Some(body) = body.filter(Value::is_object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the request body is not a JSON object",
        );
    };
    let namespace = if resource.namespaced {
        match &target.namespace {
            Some(ns) => ns.clone(),
            None => {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "writes of namespaced objects need a namespace in the path",
                );
            }
        }
    } else {
        String::new()
    };
    let mut cluster = inner.lock();
    let (code, event, obj) = match (method.as_str(), &target.name, status_sub) {
        ("POST", None, false) => {
            let mut obj = body;
            let name = match obj["metadata"]["name"].as_str() {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => match obj["metadata"]["generateName"].as_str() {
                    Some(prefix) => format!("{prefix}{:05x}", cluster.rv + 1),
                    None => {
                        return error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            "metadata.name: Required value",
                        );
                    }
                },
            };
            let key = (target.resource, namespace.clone(), name.clone());
            if cluster.objects.contains_key(&key) {
                let msg = format!("{} \"{name}\" already exists", resource.plural);
                return error(StatusCode::CONFLICT, "AlreadyExists", &msg);
            }
            obj["apiVersion"] = json!(resource.api_version());
            obj["kind"] = json!(resource.kind);
            obj["metadata"]["name"] = json!(name);
            if resource.namespaced {
                obj["metadata"]["namespace"] = json!(namespace);
            }
            obj["metadata"]["uid"] =
                json!(format!("00000000-0000-0000-0000-{:012}", cluster.rv + 1));
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            (StatusCode::CREATED, "ADDED", obj)
        }
        ("PUT" | "PATCH", Some(name), _) => {
            let key = (target.resource, namespace.clone(), name.clone());
            let Some(stored) = cluster.objects.get(&key).cloned() else {
                let msg = format!("{} \"{name}\" not found", resource.plural);
                return error(StatusCode::NOT_FOUND, "NotFound", &msg);
            };
            let conflict_injected = method == hyper::Method::PUT
                && cluster.conflicts.get_mut(resource.plural).is_some_and(|n| {
                    let hit = *n > 0;
                    *n = n.saturating_sub(1);
                    hit
                });
            let stale = body["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|rv| {
                    rv != stored["metadata"]["resourceVersion"].as_str().unwrap_or("")
                });
            if conflict_injected || stale {
                let msg = format!(
                    "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.plural, resource.group
                );
                return error(StatusCode::CONFLICT, "Conflict", &msg);
            }
            let mut obj = stored.clone();
            match (method.as_str(), status_sub) {
                ("PUT", true) => obj["status"] = body["status"].clone(),
                ("PUT", false) => {
                    obj = body;
                    // Updates of the main resource never change the status.
                    match stored.get("status") {
                        Some(st) => obj["status"] = st.clone(),
                        None => {
                            if let Value::Object(o) = &mut obj {
                                o.remove("status");
                            }
                        }
                    }
                    obj["metadata"]["uid"] = stored["metadata"]["uid"].clone();
                    obj["metadata"]["creationTimestamp"] =
                        stored["metadata"]["creationTimestamp"].clone();
                }
                (_, true) => {
                    let patch = body.get("status").cloned().unwrap_or(Value::Null);
                    if patch.is_null() {
                        if let Value::Object(o) = &mut obj {
                            o.remove("status");
                        }
                    } else {
                        let mut current = obj.get("status").cloned().unwrap_or(json!({}));
                        merge_patch(&mut current, &patch);
                        obj["status"] = current;
                    }
                }
                (_, false) => {
                    let mut patch = body;
                    if let Value::Object(o) = &mut patch {
                        o.remove("status");
                    }
                    merge_patch(&mut obj, &patch);
                }
            }
            obj["apiVersion"] = json!(resource.api_version());
            obj["kind"] = json!(resource.kind);
            obj["metadata"]["name"] = json!(name);
            if resource.namespaced {
                obj["metadata"]["namespace"] = json!(namespace);
            }
            (StatusCode::OK, "MODIFIED", obj)
        }
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the fake API server does not support this verb here",
            );
        }
    };
    let mut obj = obj;
    cluster.rv += 1;
    let rv = cluster.rv;
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    cluster
        .objects
        .insert((target.resource, namespace.clone(), name), obj.clone());
    cluster.history.push(Change {
        rv,
        kind: event,
        resource,
        namespace,
        object: obj.clone(),
    });
    drop(cluster);
    inner.changes.send_replace(rv);
    json_response(code, &obj)
}

fn in_scope(target_ns: Option<&str>, obj_ns: &str) -> bool {
    target_ns.is_none_or(|ns| ns == obj_ns)
}

fn list(
    inner: &Inner,
    target: &Target,
    selectors: &Selectors,
    query: &[(String, String)],
) -> Response<Body> {
    let resource = &RESOURCES[target.resource];
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let cluster = inner.lock();
    if cluster.failing_lists.contains(resource.plural) {
        let body = status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "lists of this resource are made to fail by the test",
        );
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, &body);
    }
    let gone =
        |msg: &str| json_response(StatusCode::GONE, &status(StatusCode::GONE, "Expired", msg));
    let (mut list_rv, mut offset) = (cluster.rv, 0usize);
    if let Some(token) = param("continue").filter(|t| !t.is_empty()) {
        let parsed = token
            .split_once('/')
            .and_then(|(rv, off)| Some((rv.parse::<u64>().ok()?, off.parse::<usize>().ok()?)));
        match parsed {
            Some((rv, _)) if rv < cluster.compacted => {
                return gone(
                    "The provided continue parameter is too old to display a consistent list result.",
                );
            }
            Some((rv, off)) => (list_rv, offset) = (rv, off),
            None => {
                let body = status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid continue token",
                );
                return json_response(StatusCode::BAD_REQUEST, &body);
            }
        }
    } else if param("resourceVersionMatch") == Some("Exact")
        && let Some(rv) = param("resourceVersion").and_then(|v| v.parse::<u64>().ok())
        && rv < cluster.compacted
    {
        return gone(&format!(
            "too old resource version: {rv} ({})",
            cluster.compacted
        ));
    }
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let matching: Vec<&Value> = cluster
        .objects
        .iter()
        .filter(|((r, ns, _), obj)| {
            *r == target.resource
                && in_scope(target.namespace.as_deref(), ns)
                && selectors.matches(obj)
        })
        .map(|(_, obj)| obj)
        .collect();
    let page: Vec<&Value> = matching.iter().skip(offset).take(limit).copied().collect();
    let next = offset.saturating_add(page.len());
    let mut metadata = json!({ "resourceVersion": list_rv.to_string() });
    if next < matching.len() {
        metadata["continue"] = json!(format!("{list_rv}/{next}"));
        metadata["remainingItemCount"] = json!(matching.len() - next);
    }
    let body = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": page,
    });
    json_response(StatusCode::OK, &body)
}

/// The state of one open watch stream.
struct WatchStream {
    inner: Arc<Inner>,
    resource: usize,
    namespace: Option<String>,
    selectors: Selectors,
    /// Every change up to this resourceVersion has been queued.
    sent_rv: u64,
    pending: VecDeque<Bytes>,
    done: bool,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    bookmark_at: tokio::time::Instant,
    changes: watch::Receiver<u64>,
    cmds: broadcast::Receiver<StreamCmd>,
    log_index: usize,
    /// A 410 Gone was queued; `gone_logged` once the request log says so.
    gone: bool,
    gone_logged: bool,
}

fn line(event: &str, object: &Value) -> Bytes {
    let mut text = json!({ "type": event, "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn watch(
    inner: &Arc<Inner>,
    target: Target,
    selectors: Selectors,
    query: &[(String, String)],
) -> (Response<Body>, Option<WatchStream>) {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let timeout = param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800)
        .min(86_400);
    let now = tokio::time::Instant::now();
    let resource = &RESOURCES[target.resource];
    let mut stream = WatchStream {
        inner: Arc::clone(inner),
        resource: target.resource,
        namespace: target.namespace.clone(),
        selectors,
        sent_rv: 0,
        pending: VecDeque::new(),
        done: false,
        deadline: now + Duration::from_secs(timeout),
        bookmarks: matches!(param("allowWatchBookmarks"), Some("true" | "1")),
        bookmark_at: now + BOOKMARK_EVERY,
        changes: inner.changes.subscribe(),
        cmds: inner.cmds.subscribe(),
        log_index: 0,
        gone: false,
        gone_logged: false,
    };
    let cluster = inner.lock();
    let from = param("resourceVersion").unwrap_or("");
    let send_initial = matches!(param("sendInitialEvents"), Some("true" | "1"));
    if from.is_empty() || from == "0" || send_initial {
        // Start with the current objects, then changes from now on.
        for ((r, ns, _), obj) in &cluster.objects {
            if *r == target.resource
                && in_scope(target.namespace.as_deref(), ns)
                && stream.selectors.matches(obj)
            {
                stream.pending.push_back(line("ADDED", obj));
            }
        }
        stream.sent_rv = cluster.rv;
        if send_initial {
            let end = json!({
                "kind": resource.kind,
                "apiVersion": resource.api_version(),
                "metadata": {
                    "resourceVersion": cluster.rv.to_string(),
                    "annotations": { "k8s.io/initial-events-end": "true" },
                },
            });
            stream.pending.push_back(line("BOOKMARK", &end));
        }
    } else {
        match from.parse::<u64>() {
            Ok(rv) => stream.sent_rv = rv,
            Err(_) => {
                let body = status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid resourceVersion",
                );
                return (json_response(StatusCode::BAD_REQUEST, &body), None);
            }
        }
    }
    stream.collect(&cluster);
    drop(cluster);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::new()).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()));
    (response, Some(stream))
}

impl WatchStream {
    /// Queues every change after `sent_rv`, or a 410 Gone if some of them were compacted away.
    fn collect(&mut self, cluster: &Cluster) {
        if self.done {
            return;
        }
        if self.sent_rv < cluster.compacted {
            self.gone(cluster.compacted);
            return;
        }
        let start = cluster.history.partition_point(|c| c.rv <= self.sent_rv);
        for change in &cluster.history[start..] {
            if RESOURCES[self.resource] == *change.resource
                && in_scope(self.namespace.as_deref(), &change.namespace)
                && self.selectors.matches(&change.object)
            {
                self.pending.push_back(line(change.kind, &change.object));
            }
        }
        self.sent_rv = self.sent_rv.max(cluster.rv);
    }

    fn gone(&mut self, compacted: u64) {
        let msg = format!("too old resource version: {} ({compacted})", self.sent_rv);
        self.pending
            .push_back(line("ERROR", &status(StatusCode::GONE, "Expired", &msg)));
        self.done = true;
        self.gone = true;
    }

    fn bookmark(&mut self) {
        let resource = &RESOURCES[self.resource];
        let object = json!({
            "kind": resource.kind,
            "apiVersion": resource.api_version(),
            "metadata": { "resourceVersion": self.sent_rv.to_string() },
        });
        self.pending.push_back(line("BOOKMARK", &object));
    }

    /// The next chunk of the response body, or None at the end of the stream.
    async fn next_frame(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, WatchStream)> {
        loop {
            if self.gone && !self.gone_logged {
                self.gone_logged = true;
                if let Some(record) = self.inner.lock().log.get_mut(self.log_index) {
                    record.gone = true;
                }
            }
            if let Some(bytes) = self.pending.pop_front() {
                return Some((Ok(Frame::data(bytes)), self));
            }
            if self.done {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep_until(self.deadline) => self.done = true,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        self.done = true;
                    } else {
                        let inner = Arc::clone(&self.inner);
                        let cluster = inner.lock();
                        self.collect(&cluster);
                    }
                }
                () = tokio::time::sleep_until(self.bookmark_at) => {
                    self.bookmark_at = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    let inner = Arc::clone(&self.inner);
                    let cluster = inner.lock();
                    self.collect(&cluster);
                    drop(cluster);
                    if self.bookmarks && !self.done {
                        self.bookmark();
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    Ok(StreamCmd::Close) | Err(broadcast::error::RecvError::Closed) => {
                        self.done = true;
                    }
                    Ok(StreamCmd::Expire) => {
                        let compacted = self.inner.lock().compacted;
                        self.gone(compacted);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
            }
        }
    }
}
