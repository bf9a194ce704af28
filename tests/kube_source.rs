//! The Kubernetes source (`sluice::source::kube`) against the in-process fake API server: real
//! list and watch requests over HTTP on 127.0.0.1.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sluice::source::ClusterState;
use sluice::source::SourceWatch;
use sluice::source::kube::{self as kube_source, BackoffPolicy, Options};
use sluice::source::manifests::Loaded;
use support::fake_apiserver::FakeApiServer;
use support::{DEADLINE, eventually};

/// Every namespaced kind the source watches, by plural.
const NAMESPACED: [&str; 4] = ["ingresses", "services", "endpointslices", "secrets"];
/// Every kind the source watches, by plural.
const ALL: [&str; 5] = [
    "ingresses",
    "ingressclasses",
    "services",
    "endpointslices",
    "secrets",
];

fn ingress(ns: &str, name: &str, host: &str, service: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "ingressClassName": "sluice",
            "rules": [{
                "host": host,
                "http": { "paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": { "service": { "name": service, "port": { "number": 80 } } },
                }]},
            }],
        },
    })
}

fn ingress_class(name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": { "name": name },
        "spec": { "controller": "sluice.io/ingress-controller" },
    })
}

fn service(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "ports": [{ "port": 80, "targetPort": 8080 }] },
    })
}

fn endpoint_slice(ns: &str, service: &str, ip: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-abc"),
            "namespace": ns,
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": [ip], "conditions": { "ready": ready } }],
        "ports": [{ "port": 8080, "protocol": "TCP" }],
    })
}

fn secret(ns: &str, name: &str, type_: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": ns },
        "type": type_,
        "data": { "tls.crt": "", "tls.key": "" },
    })
}

/// One object of every kind in `ns`, plus an Opaque Secret that must never be seen.
fn populate(fake: &FakeApiServer, ns: &str) {
    fake.apply(ingress(ns, "web", &format!("{ns}.example.com"), "web"));
    fake.apply(service(ns, "web"));
    fake.apply(endpoint_slice(ns, "web", "10.0.0.1", true));
    fake.apply(secret(ns, "web-tls", "kubernetes.io/tls"));
    fake.apply(secret(ns, "db-password", "Opaque"));
}

/// The fake with a class and one namespace populated.
async fn fake_with_objects() -> FakeApiServer {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let fake = FakeApiServer::start().await;
    fake.apply(ingress_class("sluice"));
    populate(&fake, "default");
    fake
}

/// Fast retries, so that tests of outages do not wait for kube's 0.8 s..30 s.
fn options(namespaces: &[&str]) -> Options {
    Options {
        namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
        debounce: Duration::from_millis(30),
        backoff: BackoffPolicy {
            min: Duration::from_millis(50),
            max: Duration::from_millis(400),
        },
    }
}

fn start(fake: &FakeApiServer, options: Options) -> SourceWatch {
    let client = kube_source::client_from_config(fake.kube_config()).expect("client");
    kube_source::watch(client, options)
}

/// Receives states until one satisfies `pred`, failing after `deadline`.
async fn recv_until(
    watch: &mut SourceWatch,
    deadline: Duration,
    what: &str,
    pred: impl Fn(&ClusterState) -> bool,
) -> Loaded {
    let result = tokio::time::timeout(deadline, async {
        loop {
            match watch.next().await {
                Some(loaded) if pred(&loaded.state) => return loaded,
                Some(_) => {}
                None => panic!("the source stopped while waiting for: {what}"),
            }
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
}

fn names<K: kube::Resource>(objects: &[K]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            let m = o.meta();
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            )
        })
        .collect()
}

fn first_host(state: &ClusterState, name: &str) -> Option<String> {
    let ing = state
        .ingresses
        .iter()
        .find(|i| i.metadata.name.as_deref() == Some(name))?;
    ing.spec.as_ref()?.rules.as_ref()?.first()?.host.clone()
}

#[tokio::test]
async fn delivers_every_kind_once_all_are_listed() {
    let fake = fake_with_objects().await;
    let mut watch = start(&fake, options(&[]));
    let loaded = recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    let s = &loaded.state;
    assert_eq!(names(&s.ingresses), ["default/web"]);
    assert_eq!(names(&s.ingress_classes), ["/sluice"]);
    assert_eq!(names(&s.services), ["default/web"]);
    assert_eq!(names(&s.endpoint_slices), ["default/web-abc"]);
    assert_eq!(names(&s.secrets), ["default/web-tls"]);
    assert_eq!(first_host(s, "web").as_deref(), Some("default.example.com"));
    assert!(loaded.errors.is_empty());
    // kube-runtime lists in pages of 500, then watches from the list's resourceVersion with
    // bookmarks.
    let requests = fake.requests();
    for plural in ALL {
        let list = requests
            .iter()
            .find(|r| r.is_list_of(plural))
            .unwrap_or_else(|| panic!("no list of {plural}"));
        assert_eq!(list.param("limit"), Some("500"), "{list:?}");
    }
    eventually("a watch of every kind", || {
        let requests = fake.requests();
        ALL.iter().all(|p| {
            requests.iter().any(|r| {
                r.is_watch_of(p)
                    && r.param("allowWatchBookmarks") == Some("true")
                    && r.param("resourceVersion").is_some_and(|v| !v.is_empty())
            })
        })
    })
    .await;
}

#[tokio::test]
async fn nothing_is_delivered_until_every_kind_has_listed() {
    let fake = fake_with_objects().await;
    fake.fail_lists("endpointslices", true);
    let mut watch = start(&fake, options(&[]));
    // Every other kind listed and is watching; EndpointSlice lists failed (and were retried).
    eventually("other kinds watching, endpointslices failing", || {
        let requests = fake.requests();
        let failed = requests
            .iter()
            .filter(|r| r.is_list_of("endpointslices") && r.status == 500)
            .count();
        failed >= 3
            && ["ingresses", "ingressclasses", "services", "secrets"]
                .iter()
                .all(|p| requests.iter().any(|r| r.is_watch_of(p)))
    })
    .await;
    // Changes to the listed kinds meanwhile do not leak a half-built state either.
    fake.apply(service("default", "other"));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.next())
            .await
            .is_err(),
        "a state was delivered before every kind had listed"
    );
    fake.fail_lists("endpointslices", false);
    let loaded = recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    assert_eq!(names(&loaded.state.endpoint_slices), ["default/web-abc"]);
    assert_eq!(
        names(&loaded.state.services),
        ["default/other", "default/web"]
    );
}

#[tokio::test]
async fn updates_and_deletes_arrive() {
    let fake = fake_with_objects().await;
    let mut watch = start(&fake, options(&[]));
    recv_until(&mut watch, DEADLINE, "first state", |_| true).await;

    fake.apply(ingress("default", "web", "new.example.com", "web"));
    let loaded = recv_until(&mut watch, DEADLINE, "updated host", |s| {
        first_host(s, "web").as_deref() == Some("new.example.com")
    })
    .await;
    assert_eq!(loaded.state.ingresses.len(), 1);

    assert!(fake.delete("Service", "default", "web"));
    assert!(fake.delete("IngressClass", "", "sluice"));
    let loaded = recv_until(&mut watch, DEADLINE, "service and class gone", |s| {
        s.services.is_empty() && s.ingress_classes.is_empty()
    })
    .await;
    assert_eq!(names(&loaded.state.ingresses), ["default/web"]);

    // A burst of changes is debounced into (at most) a few states, the last one complete.
    for i in 0..20 {
        fake.apply(service("default", &format!("svc-{i:02}")));
    }
    let loaded = recv_until(&mut watch, DEADLINE, "the whole burst", |s| {
        s.services.len() == 20
    })
    .await;
    assert_eq!(names(&loaded.state.services)[0], "default/svc-00");
}

#[tokio::test]
async fn watch_error_410_makes_it_relist_and_converge() {
    let fake = fake_with_objects().await;
    let mut watch = start(&fake, options(&[]));
    recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    eventually("every kind watching", || {
        ALL.iter().all(|p| fake.count(|r| r.is_watch_of(p)) >= 1)
    })
    .await;

    fake.expire_watches();
    eventually("every kind relisted after 410", || {
        ALL.iter().all(|p| fake.count(|r| r.is_list_of(p)) >= 2)
    })
    .await;
    assert!(fake.count(|r| r.is_watch() && r.gone) >= ALL.len());

    // The relist found nothing new, so no identical state was delivered; the next change is.
    fake.apply(ingress("default", "web", "after-410.example.com", "web"));
    let loaded = recv_until(&mut watch, DEADLINE, "change after relist", |_| true).await;
    assert_eq!(
        first_host(&loaded.state, "web").as_deref(),
        Some("after-410.example.com")
    );
}

#[tokio::test]
async fn api_server_away_then_back_with_compacted_history() {
    let fake = fake_with_objects().await;
    let mut watch = start(&fake, options(&[]));
    recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    eventually("every kind watching", || {
        ALL.iter().all(|p| fake.count(|r| r.is_watch_of(p)) >= 1)
    })
    .await;

    fake.pause().await;
    // Meanwhile the cluster changes and etcd compacts the history the watchers would resume
    // from: they must get 410 Gone and relist.
    fake.apply(ingress("default", "web", "while-away.example.com", "web"));
    assert!(fake.delete("Service", "default", "web"));
    fake.compact();
    let before = fake.requests().len();
    fake.resume().await;

    let loaded = recv_until(&mut watch, DEADLINE, "changes made while away", |s| {
        first_host(s, "web").as_deref() == Some("while-away.example.com") && s.services.is_empty()
    })
    .await;
    assert_eq!(names(&loaded.state.secrets), ["default/web-tls"]);
    let after = &fake.requests()[before..];
    assert!(
        after.iter().any(|r| r.is_watch() && r.gone),
        "no watch resumed into 410 Gone: {after:?}"
    );
    assert!(
        after
            .iter()
            .any(|r| r.is_list_of("ingresses") && r.status == 200)
    );
}

#[tokio::test]
async fn api_server_away_for_seconds_then_changes_arrive() {
    let fake = fake_with_objects().await;
    let mut watch = start(&fake, options(&[]));
    recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    eventually("every kind watching", || {
        ALL.iter().all(|p| fake.count(|r| r.is_watch_of(p)) >= 1)
    })
    .await;

    fake.pause().await;
    fake.apply(endpoint_slice("default", "web", "10.0.0.1", false));
    fake.apply(ingress("default", "late", "late.example.com", "web"));
    // The outage itself: the source keeps retrying (with backoff) against a closed port.
    assert!(
        tokio::time::timeout(Duration::from_secs(3), watch.next())
            .await
            .is_err(),
        "nothing can change while the API server is away"
    );
    let before = fake.requests().len();
    fake.resume().await;

    let loaded = recv_until(&mut watch, DEADLINE, "changes made while away", |s| {
        s.ingresses.len() == 2
            && s.endpoint_slices.first().is_some_and(|e| {
                e.endpoints
                    .as_ref()
                    .and_then(|v| v.first())
                    .and_then(|ep| ep.conditions.as_ref()?.ready)
                    == Some(false)
            })
    })
    .await;
    assert_eq!(
        names(&loaded.state.ingresses),
        ["default/late", "default/web"]
    );
    // History was kept, so the watchers resumed from their resourceVersion without a relist.
    let after = &fake.requests()[before..];
    assert!(after.iter().all(|r| !r.gone), "{after:?}");
    assert!(
        after
            .iter()
            .any(|r| r.is_watch_of("ingresses") && r.param("resourceVersion") != Some("0")),
        "{after:?}"
    );
}

#[tokio::test]
async fn only_tls_secrets_and_opaque_ones_an_ingress_names_are_delivered() {
    let fake = fake_with_objects().await;
    let mut watch = start(&fake, options(&[]));
    let loaded = recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    assert_eq!(names(&loaded.state.secrets), ["default/web-tls"]);
    eventually("secrets watched", || {
        fake.count(|r| r.is_watch_of("secrets")) >= 1
    })
    .await;
    let secrets: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.resource == Some("secrets"))
        .collect();
    assert!(secrets.len() >= 2);
    for r in &secrets {
        assert!(
            matches!(
                r.param("fieldSelector"),
                Some("type=kubernetes.io/tls" | "type=Opaque")
            ),
            "{r:?}"
        );
    }
    // A new non-TLS Secret never arrives; a TLS one does.
    fake.apply(secret("default", "token", "Opaque"));
    fake.apply(secret(
        "default",
        "registry",
        "kubernetes.io/dockerconfigjson",
    ));
    fake.apply(secret("default", "api-tls", "kubernetes.io/tls"));
    let loaded = recv_until(&mut watch, DEADLINE, "new TLS secret", |s| {
        s.secrets.len() == 2
    })
    .await;
    assert_eq!(
        names(&loaded.state.secrets),
        ["default/api-tls", "default/web-tls"]
    );
    // An Opaque Secret arrives once an Ingress names it for basic authentication.
    let mut ing = ingress("default", "private", "private.example.com", "web");
    ing["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-type": "basic",
        "nginx.ingress.kubernetes.io/auth-secret": "db-password",
    });
    fake.apply(ing);
    let loaded = recv_until(&mut watch, DEADLINE, "the named Opaque secret", |s| {
        s.secrets.len() == 3
    })
    .await;
    assert_eq!(
        names(&loaded.state.secrets),
        ["default/api-tls", "default/db-password", "default/web-tls"]
    );
}

#[tokio::test]
async fn namespace_scoping_limits_what_is_seen() {
    let fake = fake_with_objects().await;
    populate(&fake, "team-a");
    populate(&fake, "team-b");
    let mut watch = start(&fake, options(&["team-b", "team-a"]));
    let loaded = recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    let s = &loaded.state;
    assert_eq!(names(&s.ingresses), ["team-a/web", "team-b/web"]);
    assert_eq!(names(&s.services), ["team-a/web", "team-b/web"]);
    assert_eq!(
        names(&s.endpoint_slices),
        ["team-a/web-abc", "team-b/web-abc"]
    );
    assert_eq!(names(&s.secrets), ["team-a/web-tls", "team-b/web-tls"]);
    // IngressClasses are cluster-scoped: always seen.
    assert_eq!(names(&s.ingress_classes), ["/sluice"]);
    // Every namespaced request names one of the namespaces.
    for r in fake.requests() {
        if NAMESPACED.contains(&r.resource.unwrap_or("")) {
            assert!(
                r.path.starts_with("/api/v1/namespaces/team-")
                    || r.path
                        .starts_with("/apis/networking.k8s.io/v1/namespaces/team-")
                    || r.path
                        .starts_with("/apis/discovery.k8s.io/v1/namespaces/team-"),
                "{r:?}"
            );
        }
    }
    // A change in an unwatched namespace is not seen; one in a watched namespace is.
    fake.apply(service("default", "ignored"));
    fake.apply(service("team-a", "seen"));
    let loaded = recv_until(&mut watch, DEADLINE, "team-a change", |s| {
        s.services.len() == 3
    })
    .await;
    assert_eq!(
        names(&loaded.state.services),
        ["team-a/seen", "team-a/web", "team-b/web"]
    );
}

#[tokio::test]
async fn dropping_the_watch_stops_the_watchers() {
    let fake = fake_with_objects().await;
    let mut watch = start(&fake, options(&[]));
    recv_until(&mut watch, DEADLINE, "first state", |_| true).await;
    drop(watch);
    // Watch streams end when their client goes away; new requests stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = fake.requests().len();
    fake.close_watches();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.requests().len(),
        seen,
        "a watcher outlived its SourceWatch"
    );
}
