//! The DNS engine against a real Route53 peer: moto's server on 127.0.0.1, reached with
//! aws-sdk-route53 through `Route53Provider`.
//!
//! Every test creates its own hosted zones and restricts its syncs to them (zone id filter),
//! so the tests share one moto without seeing each other.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::{Value, json};
use sluice::dns::provider::operation;
use sluice::dns::{
    Action, BlockReason, Change, ChangeInfo, ChangeStatus, DesiredOptions, DnsProvider, Filters,
    Policy, ProviderError, Record, RecordSet, RecordType, Registry, RegistryOptions,
    Route53Provider, SyncOptions, SyncReport, SyncState, Zone, desired, sync, wait_insync,
};
use sluice::model::ObjectRef;
use sluice::pace::Backoff;
use sluice::source::ClusterState;
use support::moto::{Moto, moto, options_for};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A zone name no other test uses.
fn unique(label: &str) -> String {
    format!(
        "{label}-{}-{}.example",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn registry() -> Registry {
    Registry::new(&RegistryOptions {
        owner_id: "sluice".into(),
        ..Default::default()
    })
    .unwrap()
}

fn sync_options(zones: &[&Zone], policy: Policy) -> SyncOptions {
    let mut o = SyncOptions::new(registry());
    o.policy = policy;
    o.filters = Filters {
        zone_id_filter: zones.iter().map(|z| z.id.clone()).collect(),
        ..Default::default()
    };
    o.call_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    o
}

fn owned(owner: &str, resource: &str) -> String {
    format!("\"heritage=external-dns,external-dns/owner={owner},external-dns/resource={resource}\"")
}

fn a(name: &str, ip: &str) -> RecordSet {
    RecordSet::new(name, RecordType::A, 300, vec![ip.into()])
}

fn txt(name: &str, value: &str) -> RecordSet {
    RecordSet::new(name, RecordType::Txt, 300, vec![value.into()])
}

/// The zone's records as `name TYPE values`, sorted, without SOA and NS.
async fn table(m: &Moto, p: &Route53Provider, zone: &Zone) -> Vec<String> {
    let mut rows: Vec<String> = m
        .records(p, zone)
        .await
        .into_iter()
        .filter(|r| !matches!(r.rtype.as_str(), "SOA" | "NS"))
        .map(|r| {
            let v = match &r.alias {
                Some(al) => format!(
                    "alias:{}@{}:{}",
                    al.dns_name.trim_end_matches('.'),
                    al.hosted_zone_id,
                    al.evaluate_target_health
                ),
                None => r.values.join(","),
            };
            let ttl = r.ttl.map(|t| format!(" ttl={t}")).unwrap_or_default();
            format!("{} {} {v}{ttl}", r.name, r.rtype)
        })
        .collect();
    rows.sort();
    rows
}

fn ingress(name: &str, hosts: &[&str], annotations: Value, status: &[&str]) -> Value {
    let lb: Vec<Value> = status
        .iter()
        .map(|t| {
            if t.parse::<std::net::IpAddr>().is_ok() {
                json!({ "ip": t })
            } else {
                json!({ "hostname": t })
            }
        })
        .collect();
    json!({
        "metadata": { "namespace": "default", "name": name, "annotations": annotations },
        "spec": { "rules": hosts.iter().map(|h| json!({ "host": h })).collect::<Vec<_>>() },
        "status": { "loadBalancer": { "ingress": lb } }
    })
}

/// Desired records of these Ingresses (all of them ours).
fn records_of(ingresses: &[Value]) -> Vec<Record> {
    let state = ClusterState {
        ingresses: ingresses
            .iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect(),
        ..Default::default()
    };
    let ours: Vec<ObjectRef> = state
        .ingresses
        .iter()
        .map(|i| sluice::translate::object_ref(&i.metadata))
        .collect();
    let d = desired(&state, &ours, &DesiredOptions::default());
    assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
    d.records
}

fn changes_calls(r: &SyncReport) -> u64 {
    r.calls.get(operation::CHANGE).copied().unwrap_or(0)
}

#[tokio::test]
async fn provider_lists_zones_and_pages_over_records() {
    let m = moto();
    let p = m.provider(100.0).await;
    let name = unique("paging");
    let z = m.create_zone(&p, &name, false).await;
    let private = m.create_zone(&p, &format!("internal.{name}"), true).await;
    let zones = p.list_zones().await.unwrap();
    assert!(zones.contains(&z), "{zones:?}");
    assert!(zones.contains(&private));
    assert!(private.private && !z.private);
    let many: Vec<RecordSet> = (0..350)
        .map(|i| a(&format!("h{i:03}.{name}"), "192.0.2.1"))
        .chain([a(&format!("*.wild.{name}"), "192.0.2.2")])
        .collect();
    m.put(&p, &z, &many).await;
    let before = p.calls();
    let records = m.records(&p, &z).await;
    let count = |c: &sluice::dns::CallCounts| c.get(operation::LIST_RECORDS).copied().unwrap_or(0);
    let pages = count(&p.calls()) - count(&before);
    assert_eq!(records.len(), 351 + 2, "350 + wildcard + SOA + NS");
    assert_eq!(pages, 2, "300 per page");
    assert!(records.iter().any(|r| r.name == format!("*.wild.{name}")));
    assert!(records.iter().all(|r| !r.name.ends_with('.')));
}

#[tokio::test]
async fn a_create_collision_is_a_typed_rejection_and_limits_hold() {
    let m = moto();
    let p = m.provider(100.0).await;
    let name = unique("reject");
    let z = m.create_zone(&p, &name, false).await;
    // moto rejects a CREATE only when the same record set (values included) was created
    // before; Route53 rejects any CREATE of an existing name and type.
    m.put(&p, &z, &[a(&format!("taken.{name}"), "192.0.2.1")])
        .await;
    let create = |r: RecordSet| Change {
        action: Action::Create,
        record: r,
    };
    let err = p
        .apply(
            &z,
            &[
                create(a(&format!("fine.{name}"), "192.0.2.1")),
                create(a(&format!("taken.{name}"), "192.0.2.1")),
            ],
        )
        .await
        .unwrap_err();
    match &err {
        ProviderError::Rejected { message, .. } => {
            assert!(message.contains("already exists"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(
        table(m, &p, &z).await.len(),
        1,
        "nothing of the batch applied"
    );
    let upserts: Vec<Change> = (0..501)
        .map(|i| Change {
            action: Action::Upsert,
            record: a(&format!("u{i}.{name}"), "192.0.2.1"),
        })
        .collect();
    let too_many = p.apply(&z, &upserts).await.unwrap_err();
    assert!(
        matches!(too_many, ProviderError::Rejected { .. }),
        "{too_many}"
    );
    let info = p
        .apply(&z, &upserts[..500])
        .await
        .expect("500 UPSERTs count 1000: allowed");
    wait_insync(
        &p,
        &info.id,
        Duration::from_secs(10),
        Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
    )
    .await
    .unwrap();
    assert_eq!(p.change_status(&info.id).await, Ok(ChangeStatus::InSync));
}

#[tokio::test]
async fn ingress_changes_create_update_and_delete_records() {
    let m = moto();
    let p = m.provider(100.0).await;
    let name = unique("lifecycle");
    let z = m.create_zone(&p, &name, false).await;
    let o = sync_options(&[&z], Policy::Sync);
    let mut state = SyncState::new();
    let www = format!("www.{name}");
    let api = format!("api.{name}");
    let web = |ann: Value, ip: &str| records_of(&[ingress("web", &[&www, &api], ann, &[ip])]);

    let r = sync(&p, &web(json!({}), "192.0.2.10"), &o, &mut state)
        .await
        .unwrap();
    assert!(r.converged(), "{r:?}");
    assert_eq!((r.applied.create, changes_calls(&r)), (4, 1));
    let res = owned("sluice", "ingress/default/web");
    assert_eq!(
        table(m, &p, &z).await,
        vec![
            format!("a-api.{name} TXT {res} ttl=300"),
            format!("a-www.{name} TXT {res} ttl=300"),
            format!("api.{name} A 192.0.2.10 ttl=300"),
            format!("www.{name} A 192.0.2.10 ttl=300"),
        ]
    );

    // The load balancer moves, and a TTL is set: two UPSERTs, the TXT records unchanged.
    let moved = web(
        json!({ "external-dns.kubernetes.io/ttl": "1m" }),
        "192.0.2.20",
    );
    let r = sync(&p, &moved, &o, &mut state).await.unwrap();
    assert_eq!((r.applied.upsert, r.applied.total()), (2, 2));
    assert!(
        table(m, &p, &z)
            .await
            .contains(&format!("www.{name} A 192.0.2.20 ttl=60"))
    );
    let r = sync(&p, &moved, &o, &mut state).await.unwrap();
    assert_eq!(changes_calls(&r), 0, "nothing left to do");

    // The Ingress goes away: its records and their TXT records go (sync policy).
    let r = sync(&p, &[], &o, &mut state).await.unwrap();
    assert_eq!(r.applied.delete, 4);
    assert!(table(m, &p, &z).await.is_empty());
}

#[tokio::test]
async fn foreign_records_stay_and_externaldns_records_are_adopted() {
    let m = moto();
    let p = m.provider(100.0).await;
    let name = unique("owners");
    let z = m.create_zone(&p, &name, false).await;
    let n = |h: &str| format!("{h}.{name}");
    let res = "ingress/default/web";
    // What ExternalDNS (owner id "sluice") left, someone's hand-made record, another cluster's.
    m.put(
        &p,
        &z,
        &[
            a(&n("adopted"), "192.0.2.10"),
            txt(&n("a-adopted"), &owned("sluice", res)),
            RecordSet::new(
                &n("cname"),
                RecordType::Cname,
                300,
                vec!["lb.example.net".into()],
            ),
            txt(&n("cname-cname"), &owned("sluice", res)),
            a(&n("manual"), "198.51.100.1"),
            a(&n("other"), "198.51.100.2"),
            txt(&n("a-other"), &owned("other-cluster", "ingress/x/y")),
        ],
    )
    .await;
    let before = table(m, &p, &z).await;
    let desired = [
        records_of(&[ingress(
            "web",
            &[&n("adopted"), &n("manual"), &n("other")],
            json!({}),
            &["192.0.2.10"],
        )]),
        records_of(&[ingress(
            "web",
            &[&n("cname")],
            json!({}),
            &["lb.example.net"],
        )]),
    ]
    .concat();
    let mut state = SyncState::new();
    let r = sync(&p, &desired, &sync_options(&[&z], Policy::Sync), &mut state)
        .await
        .unwrap();
    assert_eq!(
        changes_calls(&r),
        0,
        "adoption changes nothing: {:?}",
        r.plan
    );
    assert_eq!(table(m, &p, &z).await, before);
    let reasons: Vec<(String, BlockReason)> = r
        .plan
        .blocked
        .iter()
        .map(|b| (b.name.clone(), b.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (n("manual"), BlockReason::Foreign),
            (n("other"), BlockReason::OwnedBy("other-cluster".into()))
        ]
    );
    assert_eq!(r.diagnostics().len(), 2);

    // Under sync with nothing desired: ours go, the others stay.
    let r = sync(&p, &[], &sync_options(&[&z], Policy::Sync), &mut state)
        .await
        .unwrap();
    assert_eq!(r.applied.delete, 4);
    assert_eq!(
        table(m, &p, &z).await,
        vec![
            format!(
                "a-other.{name} TXT {} ttl=300",
                owned("other-cluster", "ingress/x/y")
            ),
            format!("manual.{name} A 198.51.100.1 ttl=300"),
            format!("other.{name} A 198.51.100.2 ttl=300"),
        ]
    );
}

#[tokio::test]
async fn each_policy() {
    let m = moto();
    let p = m.provider(100.0).await;
    let res = "ingress/default/web";
    for policy in [Policy::Sync, Policy::UpsertOnly, Policy::CreateOnly] {
        let name = unique(policy.as_str());
        let z = m.create_zone(&p, &name, false).await;
        m.put(
            &p,
            &z,
            &[
                a(&format!("keep.{name}"), "192.0.2.1"),
                txt(&format!("a-keep.{name}"), &owned("sluice", res)),
                a(&format!("gone.{name}"), "192.0.2.1"),
                txt(&format!("a-gone.{name}"), &owned("sluice", res)),
            ],
        )
        .await;
        let desired = records_of(&[ingress(
            "web",
            &[&format!("keep.{name}"), &format!("new.{name}")],
            json!({}),
            &["192.0.2.2"],
        )]);
        let r = sync(
            &p,
            &desired,
            &sync_options(&[&z], policy),
            &mut SyncState::new(),
        )
        .await
        .unwrap();
        assert!(r.converged());
        let names: Vec<String> = table(m, &p, &z)
            .await
            .into_iter()
            .filter(|row| row.contains(" A "))
            .collect();
        let expect: Vec<String> = match policy {
            Policy::Sync => vec![
                format!("keep.{name} A 192.0.2.2 ttl=300"),
                format!("new.{name} A 192.0.2.2 ttl=300"),
            ],
            Policy::UpsertOnly => vec![
                format!("gone.{name} A 192.0.2.1 ttl=300"),
                format!("keep.{name} A 192.0.2.2 ttl=300"),
                format!("new.{name} A 192.0.2.2 ttl=300"),
            ],
            Policy::CreateOnly => vec![
                format!("gone.{name} A 192.0.2.1 ttl=300"),
                format!("keep.{name} A 192.0.2.1 ttl=300"),
                format!("new.{name} A 192.0.2.2 ttl=300"),
            ],
        };
        assert_eq!(names, expect, "{policy}");
    }
}

#[tokio::test]
async fn domain_filters_choose_names_and_zones() {
    let m = moto();
    let p = m.provider(100.0).await;
    let base = unique("filters");
    let za = m.create_zone(&p, &format!("a.{base}"), false).await;
    let zb = m.create_zone(&p, &format!("b.{base}"), false).await;
    let desired = records_of(&[ingress(
        "web",
        &[
            &format!("www.a.{base}"),
            &format!("x.excluded.a.{base}"),
            &format!("www.b.{base}"),
        ],
        json!({}),
        &["192.0.2.1"],
    )]);
    let mut o = sync_options(&[&za, &zb], Policy::Sync);
    o.filters.domain_filter = vec![format!("a.{base}")];
    o.filters.exclude_domains = vec![format!("excluded.a.{base}")];
    let r = sync(&p, &desired, &o, &mut SyncState::new()).await.unwrap();
    assert_eq!(r.applied.create, 2);
    let a_rows = table(m, &p, &za).await;
    assert_eq!(a_rows.len(), 2);
    assert!(a_rows[1].starts_with(&format!("www.a.{base} A")));
    assert!(table(m, &p, &zb).await.is_empty());
    assert_eq!(r.records_per_zone.len(), 1, "zone b is out of scope");
}

#[tokio::test]
async fn an_elb_target_becomes_an_alias_pair() {
    let m = moto();
    let p = m.provider(100.0).await;
    let name = unique("alias");
    let z = m.create_zone(&p, &name, false).await;
    let elb = "k8s-default-web-0123456789.us-east-1.elb.amazonaws.com";
    let desired = records_of(&[ingress("web", &[&format!("www.{name}")], json!({}), &[elb])]);
    let o = sync_options(&[&z], Policy::UpsertOnly);
    let mut state = SyncState::new();
    let r = sync(&p, &desired, &o, &mut state).await.unwrap();
    assert!(r.converged());
    let res = owned("sluice", "ingress/default/web");
    assert_eq!(
        table(m, &p, &z).await,
        vec![
            format!("a-www.{name} TXT {res} ttl=300"),
            format!("aaaa-www.{name} TXT {res} ttl=300"),
            format!("www.{name} A alias:{elb}@Z35SXDOTRQ7X7K:true"),
            format!("www.{name} AAAA alias:{elb}@Z35SXDOTRQ7X7K:true"),
        ]
    );
    let r = sync(&p, &desired, &o, &mut state).await.unwrap();
    assert_eq!(changes_calls(&r), 0);
}

/// 2 500 hosts, each an A record and its TXT record: the sync takes exactly the number of
/// ChangeResourceRecordSets calls Route53's limits require, computed here independently.
#[tokio::test]
async fn many_hosts_converge_in_the_fewest_calls() {
    let m = moto();
    let p = m.provider(100.0).await;
    let name = unique("bulk");
    let z = m.create_zone(&p, &name, false).await;
    let hosts: usize = 2500;
    let desired: Vec<Record> = (0..hosts)
        .map(|i| Record {
            name: format!("h{i:04}.{name}"),
            rtype: RecordType::A,
            ttl: None,
            targets: vec!["192.0.2.1".into()],
            alias: None,
            resource: format!("ingress/bulk/h{i:04}"),
        })
        .collect();
    // Per host: 2 ResourceRecord elements; characters: the address plus the TXT value, quotes
    // included. Every host weighs the same, so the minimum is exact.
    let chars = "192.0.2.1".len() + owned("sluice", "ingress/bulk/h0000").len();
    let per_call = (1000 / 2).min(32_000 / chars);
    let fewest = hosts.div_ceil(per_call) as u64;
    let o = sync_options(&[&z], Policy::UpsertOnly);
    let mut state = SyncState::new();
    let started = Instant::now();
    let r = sync(&p, &desired, &o, &mut state).await.unwrap();
    assert!(r.converged(), "{:?}", r.failures);
    assert_eq!(changes_calls(&r), fewest, "{} chars per host", chars);
    assert_eq!(r.applied.create, 2 * hosts);
    eprintln!(
        "{hosts} hosts: {} ChangeResourceRecordSets calls (minimum {fewest}), {:?}",
        changes_calls(&r),
        started.elapsed()
    );
    assert_eq!(m.records(&p, &z).await.len(), 2 * hosts + 2);
    let r = sync(&p, &desired, &o, &mut state).await.unwrap();
    assert_eq!(changes_calls(&r), 0);
}

/// Route53 behind a gate that creates one record behind sluice's back just before the first
/// write, as another writer racing with the sync would.
struct Racing {
    inner: Route53Provider,
    moto: &'static Moto,
    collide: Mutex<Option<RecordSet>>,
}

impl DnsProvider for Racing {
    fn name(&self) -> &'static str {
        "racing"
    }
    fn list_zones(&self) -> BoxFuture<'_, Result<Vec<Zone>, ProviderError>> {
        self.inner.list_zones()
    }
    fn list_records<'a>(
        &'a self,
        zone: &'a Zone,
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, ProviderError>> {
        self.inner.list_records(zone)
    }
    fn apply<'a>(
        &'a self,
        zone: &'a Zone,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ChangeInfo, ProviderError>> {
        Box::pin(async move {
            let collide = self.collide.lock().unwrap().take();
            if let Some(r) = collide {
                self.moto.put(&self.inner, zone, &[r]).await;
            }
            self.inner.apply(zone, changes).await
        })
    }
    fn change_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeStatus, ProviderError>> {
        self.inner.change_status(id)
    }
    fn calls(&self) -> sluice::dns::CallCounts {
        self.inner.calls()
    }
}

#[tokio::test]
async fn a_rejected_batch_isolates_the_bad_group_and_the_rest_lands() {
    let m = moto();
    let name = unique("isolate");
    let racing = Racing {
        inner: m.provider(100.0).await,
        moto: m,
        // The very record sluice is about to create (moto only rejects a CREATE of a record
        // set created before with the same values; Route53 rejects any existing one).
        collide: Mutex::new(Some(a(&format!("h07.{name}"), "192.0.2.1"))),
    };
    let z = m.create_zone(&racing.inner, &name, false).await;
    let desired: Vec<Record> = (0..40)
        .flat_map(|i| {
            records_of(&[ingress(
                &format!("h{i:02}"),
                &[&format!("h{i:02}.{name}")],
                json!({}),
                &["192.0.2.1"],
            )])
        })
        .collect();
    let o = sync_options(&[&z], Policy::Sync);
    let mut state = SyncState::new();
    let r = sync(&racing, &desired, &o, &mut state).await.unwrap();
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    let f = &r.failures[0];
    assert_eq!(f.name, format!("h07.{name}"));
    assert_eq!(f.resources, vec!["ingress/default/h07".to_string()]);
    assert!(f.error.contains("already exists"), "{}", f.error);
    assert_eq!(r.applied.create, 2 * 39, "every other host landed");
    // One call, then two per halving level down to one group of 40.
    assert!(changes_calls(&r) <= 1 + 2 * 6, "{:?}", r.calls);
    let rows = table(m, &racing.inner, &z).await;
    assert!(rows.contains(&format!("h07.{name} A 192.0.2.1 ttl=300")));
    assert!(!rows.contains(&format!(
        "a-h07.{name} TXT {}",
        owned("sluice", "ingress/default/h07")
    )));
    assert_eq!(rows.len(), 2 * 39 + 1);
    let diags = r.diagnostics();
    assert!(
        diags
            .iter()
            .any(|d| d.object == ObjectRef::new("default", "h07"))
    );

    // The next sync sees the other writer's record: not ours, so it is left alone and
    // reported; nothing is retried against it.
    let r = sync(&racing, &desired, &o, &mut state).await.unwrap();
    assert_eq!(changes_calls(&r), 0);
    assert!(r.failures.is_empty() && r.quarantined.is_empty());
    assert_eq!(r.plan.blocked.len(), 1);
    assert_eq!(r.plan.blocked[0].reason, BlockReason::Foreign);
}

/// A small HTTP proxy in front of moto that answers Route53's `Throttling` error until a
/// deadline, and logs every request.
struct Throttler {
    url: String,
    log: Arc<Mutex<Vec<(Instant, bool)>>>,
}

const THROTTLING: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";

async fn throttler(upstream: u16, throttle_for: Duration) -> Throttler {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let until = Instant::now() + throttle_for;
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let now = Instant::now();
                        let throttled = now < until;
                        log.lock().unwrap().push((now, throttled));
                        if throttled {
                            let body: BoxBody<Bytes, hyper::Error> =
                                Full::new(Bytes::from(THROTTLING))
                                    .map_err(|never| match never {})
                                    .boxed();
                            return Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .status(400)
                                    .header("content-type", "text/xml")
                                    .body(body)
                                    .unwrap(),
                            );
                        }
                        let up = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                            .await
                            .unwrap();
                        let (mut send, conn) =
                            hyper::client::conn::http1::handshake(TokioIo::new(up)).await?;
                        tokio::spawn(conn);
                        let resp = send.send_request(req).await?;
                        Ok(resp.map(BodyExt::boxed))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Throttler { url, log }
}

#[tokio::test]
async fn throttling_is_waited_out_without_a_tight_loop() {
    let m = moto();
    let direct = m.provider(100.0).await;
    let name = unique("throttle");
    let z = m.create_zone(&direct, &name, false).await;
    let proxy = throttler(m.port, Duration::from_millis(2500)).await;
    // The default budget: 5 requests per second.
    let p = Route53Provider::new(options_for(&proxy.url)).await;
    let mut o = sync_options(&[&z], Policy::Sync);
    o.call_backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    o.call_attempts = 10;
    let desired: Vec<Record> = (0..20)
        .map(|i| Record {
            name: format!("h{i}.{name}"),
            rtype: RecordType::A,
            ttl: None,
            targets: vec!["192.0.2.1".into()],
            alias: None,
            resource: format!("ingress/default/h{i}"),
        })
        .collect();
    let started = Instant::now();
    let r = sync(&p, &desired, &o, &mut SyncState::new()).await.unwrap();
    assert!(r.converged(), "{:?}", r.incomplete);
    assert!(started.elapsed() >= Duration::from_millis(2500));
    assert_eq!(table(m, &direct, &z).await.len(), 40);
    let log = proxy.log.lock().unwrap().clone();
    let throttled: Vec<Instant> = log.iter().filter(|(_, t)| *t).map(|(at, _)| *at).collect();
    let passed = log.len() - throttled.len();
    assert!(!throttled.is_empty());
    // Backing off from 250 ms (doubling, jitter at most halves a pause) over 2.5 s leaves
    // room for a handful of attempts, not a loop.
    assert!(
        throttled.len() <= 8,
        "{} throttled requests",
        throttled.len()
    );
    for pair in throttled.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(120),
            "retried after {:?}",
            pair[1] - pair[0]
        );
    }
    assert_eq!(passed, 3, "zones, records, one change batch");
    assert_eq!(
        r.calls.values().sum::<u64>(),
        log.len() as u64,
        "every request is counted"
    );
}
