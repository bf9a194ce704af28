//! DNS sync benchmark: 10 000 hosts into a Route53 zone served by moto on 127.0.0.1, through
//! `Route53Provider` at its default request budget (5 requests per second).
//!
//! `cargo bench --bench dns_sync` (installs moto into the test virtualenv on first run). It
//! prints, for a first sync (everything created), a change of every target (everything
//! upserted) and a resync with nothing to do: the API calls by operation and the time to
//! converge, next to ExternalDNS's formula (changes / 1000 per ChangeResourceRecordSets call,
//! one call per `--aws-batch-change-interval`, 1 s by default, after its 1 min `--interval`).
//! `DNS_BENCH_HOSTS=N` changes the number of hosts.

#![allow(dead_code, reason = "the bench uses part of the test support")]

#[path = "../tests/support/moto.rs"]
mod moto;
#[path = "../tests/support/peers.rs"]
mod peers;

use std::time::{Duration, Instant};

use moto::{moto, options_for};
use sluice::dns::provider::operation;
use sluice::dns::{
    Filters, Policy, Record, RecordType, Registry, RegistryOptions, Route53Provider, SyncOptions,
    SyncReport, SyncState, Zone, sync,
};

fn hosts(n: usize, zone: &str, ip: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            name: format!("host-{i:05}.{zone}"),
            rtype: RecordType::A,
            ttl: None,
            targets: vec![ip.to_string()],
            alias: None,
            resource: format!("ingress/bench/host-{i:05}"),
        })
        .collect()
}

fn row(what: &str, r: &SyncReport, took: Duration, externaldns: Option<(usize, f64)>) {
    let change = r.calls.get(operation::CHANGE).copied().unwrap_or(0);
    let total: u64 = r.calls.values().sum();
    let ext = match externaldns {
        Some((calls, secs)) => {
            format!("{calls:>5} calls, >= {secs:>5.0} s (+ up to 60 s interval)")
        }
        None => "    -".to_string(),
    };
    println!(
        "{what:<28} {:>7} {:>6} {:>7} {:>7.1} s   | {ext}",
        r.applied.total(),
        change,
        total,
        took.as_secs_f64(),
    );
}

/// ExternalDNS: at most 1000 changes per call (its `--aws-batch-change-size`), one call per
/// second (`--aws-batch-change-interval`), the first after its sync interval.
fn externaldns(changes: usize) -> (usize, f64) {
    let calls = changes.div_ceil(1000);
    (calls, calls.saturating_sub(1) as f64)
}

fn main() {
    let n: usize = std::env::var("DNS_BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let m = moto();
        let setup = m.provider(100.0).await;
        let zone_name = format!("bench-{}.example", std::process::id());
        let zone: Zone = m.create_zone(&setup, &zone_name, false).await;
        // The default budget: 5 requests per second.
        let p = Route53Provider::new(options_for(&m.url())).await;
        let mut o = SyncOptions::new(
            Registry::new(&RegistryOptions {
                owner_id: "bench".into(),
                ..Default::default()
            })
            .unwrap(),
        );
        o.policy = Policy::Sync;
        o.filters = Filters {
            zone_id_filter: vec![zone.id.clone()],
            ..Default::default()
        };
        let mut state = SyncState::new();
        println!("DNS sync, {n} hosts (A record + ownership TXT each), moto, 5 requests/s budget");
        println!(
            "{:<28} {:>7} {:>6} {:>7} {:>9}   | ExternalDNS formula",
            "", "changes", "change", "calls", "time"
        );
        let first = hosts(n, &zone_name, "192.0.2.1");
        let t = Instant::now();
        let r = sync(&p, &first, &o, &mut state).await.expect("sync");
        assert!(r.converged(), "{:?}", r.failures);
        row(
            "create all",
            &r,
            t.elapsed(),
            Some(externaldns(r.applied.total())),
        );

        let moved = hosts(n, &zone_name, "192.0.2.2");
        let t = Instant::now();
        let r = sync(&p, &moved, &o, &mut state).await.expect("sync");
        assert!(r.converged());
        // ExternalDNS upserts each record and its TXT record.
        row(
            "move every target",
            &r,
            t.elapsed(),
            Some(externaldns(2 * n)),
        );

        let t = Instant::now();
        let r = sync(&p, &moved, &o, &mut state).await.expect("sync");
        assert_eq!(r.applied.total(), 0);
        row("resync, nothing to do", &r, t.elapsed(), None);
        println!("calls by operation in the last sync: {:?}", r.calls);
    });
}
