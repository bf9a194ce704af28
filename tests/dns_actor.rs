//! The `dns` actor through the whole runtime (`sluice run` in-process) against moto's Route53:
//! Ingress changes reach moto within a deadline, drift is repaired by the periodic resync, a
//! dry run writes nothing, a crash of the actor mid-sync loses and duplicates nothing, only the
//! Lease leader calls Route53 (two instances against the fake API server), `/api/dns` and the
//! `sluice_dns_*` metrics say what happened.
//!
//! Each test creates its own hosted zone and restricts sluice to it (zone id filter), and each
//! sluice instance reaches moto through its own [`Gate`], which logs every request it makes.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::dns::{Policy, RecordSet, RecordType, Route53Options, Route53Provider, Zone};
use sluice_actors::run::{self, DnsProviderKind, DnsSettings, KubeSource, RunOptions, Running};
use sluice_actors::supervisor::{CrashPoint, Crashed};
use support::moto::{Gate, Moto, moto, options_for};
use support::{DEADLINE, ingress, request, write_atomic};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A zone name no other test uses.
fn unique(label: &str) -> String {
    format!(
        "{label}-{}-{}.example",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// DNS through `gate`, restricted to `zone`, policy sync, owner id `sluice`.
fn settings(gate: &Gate, zone: &Zone, publish: &[&str]) -> DnsSettings {
    let mut s = DnsSettings::new(
        DnsProviderKind::Route53(Route53Options {
            api_rate: 50.0,
            api_burst: 50.0,
            ..options_for(&gate.url)
        }),
        "sluice",
    );
    s.policy = Policy::Sync;
    s.filters.zone_id_filter = vec![zone.id.clone()];
    s.desired.publish = publish.iter().map(|p| (*p).to_owned()).collect();
    s
}

/// Starts sluice in standalone mode on `dir` with `dns`.
async fn start(dir: &std::path::Path, dns: DnsSettings) -> Running {
    let mut opts = RunOptions::new(dir);
    opts.dns = Some(dns);
    opts.chaos = true;
    opts.debounce = Duration::from_millis(20);
    run::start(opts).await.expect("sluice starts")
}

/// The zone's records as `name TYPE values`, sorted, without SOA and NS.
async fn table(m: &Moto, p: &Route53Provider, zone: &Zone) -> Vec<String> {
    let mut rows: Vec<String> = m
        .records(p, zone)
        .await
        .into_iter()
        .filter(|r| !matches!(r.rtype.as_str(), "SOA" | "NS"))
        .map(|r| format!("{} {} {}", r.name, r.rtype, r.values.join(",")))
        .collect();
    rows.sort();
    rows
}

/// Polls moto every 50 ms until `check` holds for the zone's table, or panics after `within`.
async fn until_table(
    m: &Moto,
    p: &Route53Provider,
    zone: &Zone,
    within: Duration,
    what: &str,
    check: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows = table(m, p, zone).await;
        if check(&rows) {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; the zone holds {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the DNS report to satisfy `check`.
async fn until_report(
    running: &Running,
    within: Duration,
    what: &str,
    check: impl Fn(&sluice_actors::dns::DnsReport) -> bool,
) {
    let mut rx = running.dns();
    if tokio::time::timeout(within, rx.wait_for(|r| check(r)))
        .await
        .is_err()
    {
        panic!("timed out waiting for {what}: {:#?}", rx.borrow().last_sync);
    }
}

fn owned(resource: &str) -> String {
    format!("\"heritage=external-dns,external-dns/owner=sluice,external-dns/resource={resource}\"")
}

async fn get_json(running: &Running, path: &str) -> Value {
    let (status, body) = request(running.admin_addr, "GET", "admin", path)
        .await
        .expect("admin request");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

async fn metrics(running: &Running) -> String {
    let (status, body) = request(running.admin_addr, "GET", "admin", "/metrics")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    body
}

/// The value of one series in Prometheus text (the recorder is shared by every test of this
/// binary: compare counters with `>=`).
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_changes_reach_route53_and_drift_is_repaired() {
    let m = moto();
    let direct = m.provider(100.0).await;
    let name = unique("actor");
    let zone = m.create_zone(&direct, &name, false).await;
    let gate = Gate::start(m).await;
    let dir = tempfile::tempdir().unwrap();
    let mut dns = settings(&gate, &zone, &["192.0.2.10"]);
    dns.interval = Duration::from_secs(2);
    let running = start(dir.path(), dns).await;
    let host = format!("www.{name}");
    let a = |ip: &str| format!("{host} A {ip}");
    let txt = format!("a-{host} TXT {}", owned("ingress/default/web"));

    // Added: the publish address.
    let added = Instant::now();
    write_atomic(
        &dir.path().join("web.yaml"),
        &ingress("web", &host, &[("/", "Prefix", "web", 80)], &[]),
    );
    until_table(m, &direct, &zone, DEADLINE, "the new record", |rows| {
        rows == [txt.clone(), a("192.0.2.10")]
    })
    .await;
    eprintln!("Ingress added -> record in moto: {:?}", added.elapsed());

    // Changed: a target annotation.
    let changed = Instant::now();
    write_atomic(
        &dir.path().join("web.yaml"),
        &ingress(
            "web",
            &host,
            &[("/", "Prefix", "web", 80)],
            &[("external-dns.alpha.kubernetes.io/target", "192.0.2.20")],
        ),
    );
    until_table(m, &direct, &zone, DEADLINE, "the updated record", |rows| {
        rows == [txt.clone(), a("192.0.2.20")]
    })
    .await;
    eprintln!("Ingress changed -> record updated: {:?}", changed.elapsed());

    // Drift: the record deleted behind sluice's back comes back with the periodic resync.
    // (The report of the sync that wrote the change: the one before it was converged too,
    // and may still be the latest when moto already shows the write.)
    until_report(&running, DEADLINE, "a converged sync", |r| {
        r.last_sync
            .as_ref()
            .is_some_and(|s| s.result == sluice_actors::dns::SyncResult::Converged)
            && r.pending.is_empty()
            && r.records.iter().any(|v| {
                v.desired == ["192.0.2.20"]
                    && v.current.as_deref() == Some(&["192.0.2.20".to_string()][..])
            })
    })
    .await;
    let body = get_json(&running, "/api/dns").await;
    assert_eq!(body["enabled"], json!(true));
    assert_eq!(body["provider"], json!("route53"));
    assert_eq!(body["ownerId"], json!("sluice"));
    assert_eq!(body["policy"], json!("sync"));
    assert_eq!(body["writer"], json!(true));
    assert_eq!(body["zones"][0]["id"], json!(zone.id));
    assert_eq!(body["zones"][0]["owned"], json!(1));
    assert_eq!(body["zones"][0]["records"], json!(4), "SOA, NS, A, TXT");
    let items = body["records"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:#?}");
    let row = &items[0];
    assert_eq!(row["name"], json!(host));
    assert_eq!(row["type"], json!("A"));
    assert_eq!(row["desired"], json!(["192.0.2.20"]));
    assert_eq!(row["current"], json!(["192.0.2.20"]));
    assert_eq!(row["owner"], json!("ours"));
    assert_eq!(row["ownerResource"], json!("ingress/default/web"));
    assert_eq!(row["pending"], json!([]));
    assert_eq!(body["lastSync"]["result"], json!("converged"));
    assert!(body["nextSyncAt"].as_f64().unwrap() > body["lastSync"]["at"].as_f64().unwrap());
    let paged = get_json(&running, "/api/dns?limit=1&offset=1").await;
    assert_eq!(paged["records"]["total"], json!(1));
    assert_eq!(paged["records"]["items"], json!([]));
    let text = metrics(&running).await;
    assert_eq!(
        series(&text, &format!("sluice_dns_records{{zone=\"{name}\"}}")),
        Some(4.0),
        "{text}"
    );
    assert!(series(&text, "sluice_dns_changes_total{action=\"create\"}").unwrap() >= 2.0);
    assert!(series(&text, "sluice_dns_changes_total{action=\"upsert\"}").unwrap() >= 1.0);
    assert!(
        series(
            &text,
            "sluice_dns_api_calls_total{operation=\"ChangeResourceRecordSets\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert!(series(&text, "sluice_dns_api_calls_total{operation=\"GetChange\"}").is_some());
    assert!(series(&text, "sluice_dns_errors_total{reason=\"rejected\"}").is_some());
    let last = series(&text, "sluice_dns_last_sync_timestamp_seconds").unwrap();
    assert!(last > 1.7e9, "{last}");

    let current = m.records(&direct, &zone).await;
    let ours: Vec<RecordSet> = current
        .into_iter()
        .filter(|r| r.rtype == RecordType::A)
        .collect();
    m.delete(&direct, &zone, &ours).await;
    assert_eq!(table(m, &direct, &zone).await, vec![txt.clone()]);
    until_table(
        m,
        &direct,
        &zone,
        DEADLINE,
        "the deleted record restored by the resync",
        |rows| rows == [txt.clone(), a("192.0.2.20")],
    )
    .await;

    // Removed: policy sync deletes the record and its TXT.
    let removed = Instant::now();
    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    until_table(m, &direct, &zone, DEADLINE, "the records deleted", |rows| {
        rows.is_empty()
    })
    .await;
    eprintln!(
        "Ingress removed -> records deleted: {:?}",
        removed.elapsed()
    );
    // Every request went through this instance's gate and none was refused.
    let changes = gate.changes();
    assert!(changes.iter().all(|c| c.status == 200), "{changes:#?}");
    let text = metrics(&running).await;
    assert!(series(&text, "sluice_dns_changes_total{action=\"delete\"}").unwrap() >= 2.0);
    assert_eq!(running.tree.restarts("dns"), 0);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_and_writes_nothing() {
    let m = moto();
    let direct = m.provider(100.0).await;
    let name = unique("dry");
    let zone = m.create_zone(&direct, &name, false).await;
    let gate = Gate::start(m).await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_atomic(
            &dir.path().join(format!("h{i}.yaml")),
            &ingress(
                &format!("h{i}"),
                &format!("h{i}.{name}"),
                &[("/", "Prefix", "web", 80)],
                &[],
            ),
        );
    }
    let mut dns = settings(&gate, &zone, &["192.0.2.10"]);
    dns.dry_run = true;
    let running = start(dir.path(), dns).await;
    until_report(&running, DEADLINE, "a dry-run sync", |r| {
        r.last_sync
            .as_ref()
            .is_some_and(|s| s.result == sluice_actors::dns::SyncResult::DryRun)
            && r.planned.create == 6
    })
    .await;
    let body = get_json(&running, "/api/dns").await;
    assert_eq!(body["dryRun"], json!(true));
    assert_eq!(body["pendingTotal"], json!(6), "3 records and their TXT");
    assert_eq!(body["lastSync"]["applied"]["create"], json!(0));
    let items = body["records"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["pending"] == json!(["CREATE"])));
    assert!(table(m, &direct, &zone).await.is_empty(), "nothing written");
    assert!(
        gate.changes().is_empty(),
        "no ChangeResourceRecordSets call"
    );
    assert!(!gate.requests().is_empty(), "the zones were read");
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_record_is_quarantined_reported_and_the_rest_lands() {
    let m = moto();
    let direct = m.provider(100.0).await;
    let name = unique("reject");
    let zone = m.create_zone(&direct, &name, false).await;
    let gate = Gate::start(m).await;
    // The first write waits while another writer creates the very record sluice is about to
    // create (moto, unlike Route53, only rejects a CREATE of an identical record set).
    gate.hold_change_before(1);
    let dir = tempfile::tempdir().unwrap();
    for h in ["good", "bad"] {
        write_atomic(
            &dir.path().join(format!("{h}.yaml")),
            &ingress(
                h,
                &format!("{h}.{name}"),
                &[("/", "Prefix", "web", 80)],
                &[],
            ),
        );
    }
    let running = start(dir.path(), settings(&gate, &zone, &["192.0.2.10"])).await;
    gate.wait_held(DEADLINE).await;
    let bad = format!("bad.{name}");
    m.put(
        &direct,
        &zone,
        &[RecordSet::new(
            &bad,
            RecordType::A,
            300,
            vec!["192.0.2.10".into()],
        )],
    )
    .await;
    gate.release();
    until_report(&running, DEADLINE, "a quarantined group", |r| {
        !r.quarantined.is_empty()
    })
    .await;
    let rows = table(m, &direct, &zone).await;
    assert!(
        rows.contains(&format!("good.{name} A 192.0.2.10")),
        "{rows:#?}"
    );
    assert!(rows.contains(&format!(
        "a-good.{name} TXT {}",
        owned("ingress/default/good")
    )));
    assert!(!rows.iter().any(|r| r.starts_with(&format!("a-bad.{name}"))));
    let body = get_json(&running, "/api/dns").await;
    assert_eq!(body["lastSync"]["result"], json!("partial"), "{body:#}");
    assert_eq!(body["lastSync"]["applied"]["create"], json!(2));
    let q = &body["quarantined"][0];
    assert_eq!(q["name"], json!(bad));
    assert_eq!(q["resources"], json!(["ingress/default/bad"]));
    assert_eq!(q["failures"], json!(1));
    assert!(
        q["error"].as_str().unwrap().contains("already exists"),
        "{q}"
    );
    assert!(q["retryAt"].as_f64().unwrap() > body["lastSync"]["at"].as_f64().unwrap());
    assert_eq!(body["pendingTotal"], json!(2), "the bad record and its TXT");
    let rejected =
        |d: &Value| d["reason"] == json!("DnsRejected") && d["object"] == json!("default/bad");
    assert!(
        body["diagnostics"].as_array().unwrap().iter().any(rejected),
        "{body:#}"
    );
    let diags = get_json(&running, "/api/diagnostics").await;
    assert!(diags.as_array().unwrap().iter().any(rejected), "{diags:#}");
    let text = metrics(&running).await;
    assert!(series(&text, "sluice_dns_errors_total{reason=\"rejected\"}").unwrap() >= 1.0);
    // One call for both, then the halves: the good group alone, the bad one alone.
    let changes = gate.changes();
    assert_eq!(changes.len(), 3, "{changes:#?}");
    assert_ne!(changes[0].status, 200);
    assert_eq!(running.tree.restarts("dns"), 0, "a rejection is no crash");
    running.shutdown(Duration::from_secs(5)).await;
}

/// An Ingress with `hosts` rules (all to Service `web`).
fn bulk_ingress(name: &str, hosts: &[String]) -> String {
    let mut y = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ingressClassName: sluice\n  rules:\n"
    );
    for h in hosts {
        y.push_str(&format!(
            "  - host: {h}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n"
        ));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_sync_loses_and_duplicates_nothing() {
    const INGRESSES: usize = 10;
    const HOSTS: usize = 70;
    let m = moto();
    let direct = m.provider(100.0).await;
    let name = unique("chaos");
    let zone = m.create_zone(&direct, &name, false).await;
    let gate = Gate::start(m).await;
    // 700 hosts need three calls (32 000 characters each); the second call lands at moto, but
    // its answer is held and the dns actor's task crashes while it waits for it.
    gate.hold_change(2);
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), settings(&gate, &zone, &["192.0.2.10"])).await;
    let mut manifests = String::new();
    for i in 0..INGRESSES {
        let hosts: Vec<String> = (0..HOSTS).map(|j| format!("h{i}-{j}.{name}")).collect();
        manifests.push_str(&bulk_ingress(&format!("bulk{i}"), &hosts));
        manifests.push_str("---\n");
    }
    write_atomic(&dir.path().join("bulk.yaml"), &manifests);
    gate.wait_held(Duration::from_secs(30)).await;
    let before = running.tree.restarts("dns");
    assert_eq!(running.tree.crash("dns", CrashPoint::Task), Crashed::Yes);
    support::eventually("the dns actor restarted", || {
        running.tree.restarts("dns") > before && running.tree.status("dns") == Some("running")
    })
    .await;
    gate.release();

    let total = INGRESSES * HOSTS;
    let rows = until_table(
        m,
        &direct,
        &zone,
        Duration::from_secs(30),
        "every record",
        |rows| rows.len() == 2 * total,
    )
    .await;
    for i in 0..INGRESSES {
        for j in 0..HOSTS {
            let host = format!("h{i}-{j}.{name}");
            assert!(rows.contains(&format!("{host} A 192.0.2.10")), "{host}");
            assert!(rows.contains(&format!(
                "a-{host} TXT {}",
                owned(&format!("ingress/default/bulk{i}"))
            )));
        }
    }
    until_report(
        &running,
        DEADLINE,
        "a converged sync after the restart",
        |r| {
            r.last_sync
                .as_ref()
                .is_some_and(|s| s.result == sluice_actors::dns::SyncResult::Converged)
                && r.pending.is_empty()
                && r.quarantined.is_empty()
        },
    )
    .await;
    // Every record was created exactly once: no call was refused (a CREATE sent twice would
    // be), and the CREATEs of all calls add up to the records.
    let changes = gate.changes();
    assert!(changes.iter().all(|c| c.status == 200), "{changes:#?}");
    let creates: usize = changes.iter().map(|c| c.actions("CREATE")).sum();
    assert_eq!(creates, 2 * total, "{} calls", changes.len());
    assert!(
        changes
            .iter()
            .all(|c| c.actions("UPSERT") + c.actions("DELETE") == 0)
    );
    assert_eq!(
        changes.len(),
        3,
        "the restart re-read and sent only the third call"
    );
    assert_eq!(running.tree.restarts("dns"), before + 1);
    running.shutdown(Duration::from_secs(5)).await;
}

// ---- Kubernetes mode: two instances, one leader ----

use support::fake_apiserver::FakeApiServer;

fn short_election() -> sluice_actors::leader::LeaderElection {
    sluice_actors::leader::LeaderElection {
        namespace: Some("sluice-system".to_owned()),
        name: "sluice-leader".to_owned(),
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(500),
        retry_period: Duration::from_millis(200),
    }
}

fn kube_ingress(name: &str, host: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "ingressClassName": "sluice",
            "rules": [{ "host": host, "http": { "paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": "web", "port": { "number": 80 } } },
            }]}}],
        },
    })
}

async fn start_kube(fake: &FakeApiServer, gate: &Gate, zone: &Zone) -> Running {
    let mut opts = RunOptions::new(std::env::temp_dir());
    opts.source = run::Source::Kube(Box::new(KubeSource {
        config: Some(fake.kube_config()),
        publish_addresses: vec!["192.0.2.10".to_owned()],
        leader_election: short_election(),
        ..KubeSource::default()
    }));
    opts.debounce = Duration::from_millis(20);
    opts.dns = Some(settings(gate, zone, &["192.0.2.10"]));
    let running = run::start(opts).await.expect("sluice starts");
    running
        .wait_reload(0, DEADLINE)
        .await
        .expect("first state from the API server");
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_calls_route53_and_the_other_takes_over() {
    let m = moto();
    let direct = m.provider(100.0).await;
    let name = unique("leader");
    let zone = m.create_zone(&direct, &name, false).await;
    // A record someone else made: the Ingress that wants it gets a Warning Event.
    m.put(
        &direct,
        &zone,
        &[RecordSet::new(
            &format!("taken.{name}"),
            RecordType::A,
            300,
            vec!["198.51.100.1".into()],
        )],
    )
    .await;
    let fake = FakeApiServer::start().await;
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "ports": [{ "port": 80 }] },
    }));
    fake.apply(kube_ingress("web", &format!("web.{name}")));
    fake.apply(kube_ingress("taken", &format!("taken.{name}")));
    let (gate_a, gate_b) = (Gate::start(m).await, Gate::start(m).await);
    let a = start_kube(&fake, &gate_a, &zone).await;
    let b = start_kube(&fake, &gate_b, &zone).await;
    support::eventually("a leader", || a.is_leader() || b.is_leader()).await;
    let web = format!("web.{name} A 192.0.2.10");
    until_table(m, &direct, &zone, DEADLINE, "web's record", |rows| {
        rows.contains(&web)
    })
    .await;
    let (leader, follower, leader_gate, follower_gate) = if a.is_leader() {
        (a, b, gate_a, gate_b)
    } else {
        (b, a, gate_b, gate_a)
    };
    assert!(!follower.is_leader());
    assert!(!leader_gate.changes().is_empty());
    assert!(
        follower_gate.requests().is_empty(),
        "the follower called Route53: {:#?}",
        follower_gate.requests()
    );
    let body = get_json(&follower, "/api/dns").await;
    assert_eq!(body["writer"], json!(false));
    assert_eq!(body["lastSync"], Value::Null);

    // The record that is not ours: reported on the Ingress (Event, /api/diagnostics), left
    // alone in Route53.
    let not_written = |e: &Value| {
        e["regarding"]["name"] == json!("taken") && e["reason"] == json!("DnsNotWritten")
    };
    support::eventually("a DnsNotWritten Event on Ingress taken", || {
        fake.list("events", Some("default")).iter().any(not_written)
    })
    .await;
    let events: Vec<Value> = fake
        .list("events", Some("default"))
        .into_iter()
        .filter(not_written)
        .collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    let note = events[0]["note"].as_str().unwrap();
    assert!(note.starts_with(&format!("taken.{name}: ")), "{note}");
    assert!(note.contains("without an ownership TXT"), "{note}");
    assert_eq!(events[0]["reportingInstance"], json!(leader.identity()));
    let diags = get_json(&leader, "/api/diagnostics").await;
    assert!(
        diags
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["reason"] == json!("DnsNotWritten") && d["object"] == json!("default/taken")),
        "{diags:#}"
    );
    assert!(
        table(m, &direct, &zone)
            .await
            .contains(&format!("taken.{name} A 198.51.100.1"))
    );

    // The leader stops: the other takes the Lease and writes a new Ingress's record.
    let leader_calls = leader_gate.requests().len();
    leader.shutdown(Duration::from_secs(5)).await;
    support::eventually("the follower to take over", || follower.is_leader()).await;
    fake.apply(kube_ingress("second", &format!("second.{name}")));
    let second = format!("second.{name} A 192.0.2.10");
    until_table(
        m,
        &direct,
        &zone,
        Duration::from_secs(20),
        "the new leader's record",
        |rows| rows.contains(&second) && rows.contains(&web),
    )
    .await;
    assert!(!follower_gate.changes().is_empty());
    assert_eq!(
        leader_gate.requests().len(),
        leader_calls,
        "the stopped leader made no call"
    );
    assert!(
        follower_gate
            .changes()
            .iter()
            .all(|c| c.status == 200 && c.actions("DELETE") == 0),
        "the new leader took over what was written without rewriting it"
    );
    follower.shutdown(Duration::from_secs(5)).await;
}
