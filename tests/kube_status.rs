//! `sluice run --kube` writes: Ingress status, Events and leader election, against the
//! in-process fake API server (real HTTP, status subresource, Lease conflicts, Event creation).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sluice_actors::leader::LeaderElection;
use sluice_actors::run::{self, KubeSource, RunOptions, Running};
use support::DEADLINE;
use support::fake_apiserver::FakeApiServer;

/// Short leader-election durations, so that a failover takes about a second.
fn short_election() -> LeaderElection {
    LeaderElection {
        namespace: Some("sluice-system".to_owned()),
        name: "sluice-leader".to_owned(),
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(500),
        retry_period: Duration::from_millis(200),
    }
}

fn ingress(name: &str, class: &str, path_type: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "ingressClassName": class,
            "rules": [{ "host": format!("{name}.test"), "http": { "paths": [{
                "path": "/", "pathType": path_type,
                "backend": { "service": { "name": "web", "port": { "number": 80 } } },
            }]}}],
        },
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "ports": [{ "port": 80 }] },
    })
}

async fn start(fake: &FakeApiServer, publish: &[&str]) -> Running {
    let mut opts = RunOptions::new(std::env::temp_dir());
    opts.source = run::Source::Kube(Box::new(KubeSource {
        config: Some(fake.kube_config()),
        publish_addresses: publish.iter().map(|s| (*s).to_owned()).collect(),
        leader_election: short_election(),
        ..KubeSource::default()
    }));
    opts.debounce = Duration::from_millis(20);
    let running = run::start(opts).await.expect("sluice starts");
    running
        .wait_reload(0, DEADLINE)
        .await
        .expect("first state from the API server");
    running
}

/// The Ingress's `status.loadBalancer.ingress` in the fake (`[]` when absent).
fn lb(fake: &FakeApiServer, name: &str) -> Value {
    fake.get("ingresses", "default", name)
        .and_then(|i| i["status"]["loadBalancer"]["ingress"].as_array().cloned())
        .map_or_else(|| json!([]), Value::Array)
}

/// Polls `check` every 20 ms until it holds, or panics after `within`.
async fn until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_writes(fake: &FakeApiServer, name: &str) -> usize {
    let path = format!("/apis/networking.k8s.io/v1/namespaces/default/ingresses/{name}/status");
    fake.count(|r| r.method != "GET" && r.path == path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_published_and_cleared_when_the_class_changes() {
    let fake = FakeApiServer::start().await;
    fake.apply(service());
    fake.apply(ingress("web", "sluice", "Prefix"));
    fake.apply(ingress("theirs", "nginx", "Prefix"));
    let running = start(&fake, &["10.0.0.9", "lb.example.com"]).await;

    let want = json!([{ "ip": "10.0.0.9" }, { "hostname": "lb.example.com" }]);
    until(DEADLINE, "the published address in web's status", || {
        lb(&fake, "web") == want
    })
    .await;
    assert!(running.is_leader());
    let lease = fake
        .get("leases", "sluice-system", "sluice-leader")
        .expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], json!(running.identity()));
    assert_eq!(lease["spec"]["leaseDurationSeconds"], json!(1));

    // Written once, not again on later configuration changes with the same address. (The
    // fake records a request just after applying it: wait for the record.)
    until(DEADLINE, "web's status write in the request log", || {
        status_writes(&fake, "web") >= 1
    })
    .await;
    assert_eq!(status_writes(&fake, "web"), 1);
    let seen = running.reloads();
    fake.apply(ingress("second", "sluice", "Prefix"));
    running.wait_reload(seen, DEADLINE).await.unwrap();
    until(DEADLINE, "the second Ingress's status", || {
        lb(&fake, "second") == want
    })
    .await;
    assert_eq!(status_writes(&fake, "web"), 1, "web's status was rewritten");

    // Someone else's class: no status, ever.
    assert_eq!(lb(&fake, "theirs"), json!([]));
    assert_eq!(status_writes(&fake, "theirs"), 0);

    // Class changed (status kept by the API server): we clear what we wrote.
    let mut web = fake.get("ingresses", "default", "web").unwrap();
    web["spec"]["ingressClassName"] = json!("nginx");
    fake.apply(web);
    until(DEADLINE, "web's status cleared", || {
        lb(&fake, "web") == json!([])
    })
    .await;
    assert_eq!(status_writes(&fake, "web"), 2);
    assert_eq!(lb(&fake, "second"), want);
    assert_eq!(status_writes(&fake, "theirs"), 0);

    // And the other way round: the class comes back, the status too.
    let mut web = fake.get("ingresses", "default", "web").unwrap();
    web["spec"]["ingressClassName"] = json!("sluice");
    fake.apply(web);
    until(DEADLINE, "web's status back", || lb(&fake, "web") == want).await;
    running.shutdown(Duration::from_secs(5)).await;
}

/// The InvalidPath Events about Ingress `name`.
fn events_about(fake: &FakeApiServer, name: &str) -> Vec<Value> {
    fake.list("events", Some("default"))
        .into_iter()
        .filter(|e| e["regarding"]["name"] == json!(name) && e["reason"] == json!("InvalidPath"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_ingress_gets_one_event_naming_the_field() {
    let fake = FakeApiServer::start().await;
    fake.apply(service());
    fake.apply(ingress("bad", "sluice", "Sometimes"));
    let running = start(&fake, &["10.0.0.9"]).await;

    until(DEADLINE, "an Event about the invalid Ingress", || {
        !events_about(&fake, "bad").is_empty()
    })
    .await;
    let events = events_about(&fake, "bad");
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["apiVersion"], json!("events.k8s.io/v1"));
    assert_eq!(event["type"], json!("Warning"));
    assert_eq!(event["reason"], json!("InvalidPath"));
    let note = event["note"].as_str().unwrap();
    assert!(
        note.starts_with("spec.rules[0].http.paths[0].pathType:"),
        "{note}"
    );
    assert!(note.contains("Sometimes"), "{note}");
    assert_eq!(event["regarding"]["kind"], json!("Ingress"));
    assert_eq!(event["regarding"]["namespace"], json!("default"));
    let uid = fake.get("ingresses", "default", "bad").unwrap()["metadata"]["uid"].clone();
    assert_eq!(event["regarding"]["uid"], uid);
    assert_eq!(event["reportingInstance"], json!(running.identity()));

    // Deduplicated: later states that still carry the diagnostic send nothing new. A second
    // invalid Ingress proves the actor has processed a later state.
    fake.apply(ingress("worse", "sluice", "Never"));
    until(DEADLINE, "the second Ingress's Event", || {
        !events_about(&fake, "worse").is_empty()
    })
    .await;
    assert_eq!(events_about(&fake, "bad").len(), 1);
    assert_eq!(events_about(&fake, "worse").len(), 1);

    // Fixed, then broken again: a new Event. A third invalid Ingress, created after the fix,
    // proves the actor has processed a state without the diagnostic.
    fake.apply(ingress("bad", "sluice", "Prefix"));
    fake.apply(ingress("probe", "sluice", "Rarely"));
    until(DEADLINE, "the probe's Event", || {
        !events_about(&fake, "probe").is_empty()
    })
    .await;
    assert_eq!(events_about(&fake, "bad").len(), 1);
    let mut bad = fake.get("ingresses", "default", "bad").unwrap();
    bad["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = json!("Sometimes");
    fake.apply(bad);
    until(
        DEADLINE,
        "a new Event after the Ingress broke again",
        || events_about(&fake, "bad").len() == 2,
    )
    .await;
    // Only the leader emits Events: nothing from anyone else.
    assert!(
        fake.list("events", None)
            .iter()
            .all(|e| e["reportingInstance"] == json!(running.identity()))
    );
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_elect_one_leader_and_fail_over() {
    let fake = FakeApiServer::start().await;
    fake.apply(service());
    fake.apply(ingress("web", "sluice", "Prefix"));
    // Different addresses per instance, so that the status says who wrote it.
    let a = start(&fake, &["10.0.0.1"]).await;
    let b = start(&fake, &["10.0.0.2"]).await;

    until(DEADLINE, "a leader", || a.is_leader() || b.is_leader()).await;
    // For several renew periods: exactly one leader, and only its address is published.
    let mut leaders = Vec::new();
    for _ in 0..20 {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders at once");
        leaders.push(a.is_leader());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        leaders.iter().all(|l| *l == leaders[0]),
        "leadership flapped"
    );
    let (leader, follower, follower_ip) = if a.is_leader() {
        (a, b, "10.0.0.2")
    } else {
        (b, a, "10.0.0.1")
    };
    let leader_ip = if follower_ip == "10.0.0.1" {
        "10.0.0.2"
    } else {
        "10.0.0.1"
    };
    until(DEADLINE, "the leader's status", || {
        lb(&fake, "web") == json!([{ "ip": leader_ip }])
    })
    .await;
    assert_eq!(status_writes(&fake, "web"), 1, "only the leader writes");
    let lease = fake
        .get("leases", "sluice-system", "sluice-leader")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], json!(leader.identity()));

    // The leader stops: the other takes the Lease well within 20 s and writes status.
    let stopped = tokio::time::Instant::now();
    leader.shutdown(Duration::from_secs(5)).await;
    until(Duration::from_secs(20), "the follower to take over", || {
        follower.is_leader()
    })
    .await;
    until(Duration::from_secs(20), "the new leader's status", || {
        lb(&fake, "web") == json!([{ "ip": follower_ip }])
    })
    .await;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(20), "failover took {took:?}");
    let lease = fake
        .get("leases", "sluice-system", "sluice-leader")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], json!(follower.identity()));
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1);
    follower.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_writes_and_conflicts_are_survived() {
    let fake = FakeApiServer::start().await;
    fake.apply(service());
    fake.apply(ingress("web", "sluice", "Prefix"));
    let running = start(&fake, &["10.0.0.9"]).await;
    let want = json!([{ "ip": "10.0.0.9" }]);
    until(DEADLINE, "status", || lb(&fake, "web") == want).await;

    // A conflicting Lease update (someone wrote between our read and our write): the leader
    // steps down at once, then renews again; no crash, no restart.
    let mut leader_rx = running.leader();
    leader_rx.borrow_and_update();
    fake.conflict_next_updates("leases", 3);
    let conflict = |r: &support::fake_apiserver::RequestRecord| {
        r.resource == Some("leases") && r.method == "PUT" && r.status == 409
    };
    tokio::time::timeout(DEADLINE, leader_rx.wait_for(|l| !*l))
        .await
        .expect("stepped down after the conflict")
        .unwrap();
    tokio::time::timeout(DEADLINE, leader_rx.wait_for(|l| *l))
        .await
        .expect("leader again after the conflicts")
        .unwrap();
    assert_eq!(fake.count(conflict), 3);
    assert_eq!(running.tree.restarts("leader"), 0);

    // Someone else takes the Lease (valid for an hour): we stop writing at once.
    fake.apply(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "sluice-leader", "namespace": "sluice-system" },
        "spec": {
            "holderIdentity": "intruder",
            "leaseDurationSeconds": 3600,
            "renewTime": "2099-01-01T00:00:00.000000Z",
        },
    }));
    tokio::time::timeout(DEADLINE, leader_rx.wait_for(|l| !*l))
        .await
        .expect("stepped down when another holder appeared")
        .unwrap();
    let writes = status_writes(&fake, "new");
    let seen = running.reloads();
    fake.apply(ingress("new", "sluice", "Prefix"));
    running.wait_reload(seen, DEADLINE).await.unwrap();
    // Let several retry periods pass: a follower never writes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!running.is_leader());
    assert_eq!(status_writes(&fake, "new"), writes);
    assert_eq!(lb(&fake, "new"), json!([]));

    // The Lease is freed: we take it and catch up.
    assert!(fake.delete("leases", "sluice-system", "sluice-leader"));
    until(
        DEADLINE,
        "the new Ingress's status after re-election",
        || lb(&fake, "new") == want,
    )
    .await;
    assert!(running.is_leader());

    // Crashing the leader and status actors: they restart, rebuild from the topics and keep
    // the Lease (same identity).
    for actor in ["leader", "status"] {
        let before = running.tree.restarts(actor);
        assert_eq!(
            running
                .tree
                .crash(actor, sluice_actors::supervisor::CrashPoint::Handler),
            sluice_actors::supervisor::Crashed::Yes,
            "crash {actor}"
        );
        until(DEADLINE, "the restart", || {
            running.tree.restarts(actor) > before && running.tree.status(actor) == Some("running")
        })
        .await;
    }
    until(DEADLINE, "leadership after the restarts", || {
        running.is_leader()
    })
    .await;
    fake.apply(ingress("after-crash", "sluice", "Prefix"));
    until(DEADLINE, "status written after the restarts", || {
        lb(&fake, "after-crash") == want
    })
    .await;
    let lease = fake
        .get("leases", "sluice-system", "sluice-leader")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], json!(running.identity()));
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_service_is_followed_as_it_changes() {
    let fake = FakeApiServer::start().await;
    fake.apply(service());
    fake.apply(ingress("web", "sluice", "Prefix"));
    let lb_service = |status: Value| {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "sluice", "namespace": "sluice-system" },
            "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
            "status": { "loadBalancer": status },
        })
    };
    fake.apply(lb_service(json!({ "ingress": [{ "ip": "203.0.113.10" }] })));
    let mut opts = RunOptions::new(std::env::temp_dir());
    opts.source = run::Source::Kube(Box::new(KubeSource {
        config: Some(fake.kube_config()),
        publish_service: Some("sluice-system/sluice".to_owned()),
        leader_election: short_election(),
        ..KubeSource::default()
    }));
    opts.debounce = Duration::from_millis(20);
    let running = run::start(opts).await.expect("sluice starts");
    until(DEADLINE, "the Service's address", || {
        lb(&fake, "web") == json!([{ "ip": "203.0.113.10" }])
    })
    .await;
    fake.apply(lb_service(
        json!({ "ingress": [{ "hostname": "lb.example.net" }] }),
    ));
    until(DEADLINE, "the Service's new address", || {
        lb(&fake, "web") == json!([{ "hostname": "lb.example.net" }])
    })
    .await;
    running.shutdown(Duration::from_secs(5)).await;
}
