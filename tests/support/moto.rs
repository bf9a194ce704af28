//! moto's server as the Route53 peer: started once per test binary on 127.0.0.1 (installed
//! into the peers virtualenv on first use), with helpers to make providers, create zones and
//! put records behind sluice's back.
//!
//! Tests share the one server: each test creates its own zones (unique names) and restricts
//! its syncs to them with a zone id filter, so tests run in parallel without seeing each
//! other. [`Moto::reset`] (`POST /moto-api/reset`) clears everything; it runs once at start.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{
    Change as SdkChange, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord,
    ResourceRecordSet, RrType, Vpc, VpcRegion,
};
use sluice::dns::{
    DnsProvider, RecordSet, Route53Options, Route53Provider, StaticCredentials, Zone,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::peers::{Peer, free_port, venv};

/// The running moto server.
pub struct Moto {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _peer: std::sync::Mutex<Peer>,
}

/// The moto server of this test binary, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let venv = venv();
        let port = free_port();
        // `python -m moto.server` rather than the `moto_server` script: the script's shebang
        // names the interpreter by absolute path, which breaks when the target directory (and
        // its virtualenv) was copied from another checkout.
        let mut peer = Peer::spawn(
            "moto",
            venv.join("bin/python"),
            &[
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ],
            &[],
            None,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(peer.is_running(), "moto exited:\n{}", peer.log_tail(40));
            assert!(
                Instant::now() < deadline,
                "moto did not listen within 60 s:\n{}",
                peer.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let m = Moto {
            port,
            _peer: std::sync::Mutex::new(peer),
        };
        let status = std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(post(port, "/moto-api/reset"))
            })
            .join()
            .unwrap()
        });
        assert_eq!(status, 200, "moto reset");
        m
    })
}

/// `POST path` with an empty body to 127.0.0.1:`port`; returns the status code.
async fn post(port: u16, path: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to moto");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Options for a provider talking to `url` with moto's test credentials.
pub fn options_for(url: &str) -> Route53Options {
    Route53Options {
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.to_string()),
        credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        }),
        ..Route53Options::default()
    }
}

impl Moto {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Clears every zone and record (`POST /moto-api/reset`).
    pub async fn reset(&self) {
        assert_eq!(post(self.port, "/moto-api/reset").await, 200);
    }

    /// A Route53 provider for moto, paced at `rate` requests per second.
    pub async fn provider(&self, rate: f64) -> Route53Provider {
        Route53Provider::new(Route53Options {
            api_rate: rate,
            api_burst: rate,
            ..options_for(&self.url())
        })
        .await
    }

    /// Creates a hosted zone (`private` ones get a made-up VPC).
    pub async fn create_zone(&self, p: &Route53Provider, name: &str, private: bool) -> Zone {
        let mut req = p
            .client()
            .create_hosted_zone()
            .name(name)
            .caller_reference(format!("{name}-{}", std::process::id()));
        if private {
            req = req
                .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
                .vpc(
                    Vpc::builder()
                        .vpc_id("vpc-12345678")
                        .vpc_region(VpcRegion::UsEast1)
                        .build(),
                );
        }
        let out = req.send().await.expect("create hosted zone");
        let z = out.hosted_zone().expect("hosted zone");
        Zone::new(z.id(), z.name(), private)
    }

    /// Every record set of `zone`, read through the provider.
    pub async fn records(&self, p: &Route53Provider, zone: &Zone) -> Vec<RecordSet> {
        p.list_records(zone).await.expect("list records")
    }

    /// Writes plain record sets with CREATE, straight through the SDK (someone else's
    /// records, or ExternalDNS's).
    pub async fn put(&self, p: &Route53Provider, zone: &Zone, records: &[RecordSet]) {
        for chunk in records.chunks(400) {
            let changes: Vec<SdkChange> = chunk
                .iter()
                .map(|r| {
                    // Fully qualified, as sluice writes: moto (unlike Route53) keeps names as
                    // given, so `x.example` and `x.example.` would be two records.
                    let mut b = ResourceRecordSet::builder()
                        .name(sluice::dns::name::fqdn(&r.name))
                        .r#type(RrType::from(r.rtype.as_str()))
                        .set_ttl(r.ttl.map(i64::from));
                    for v in &r.values {
                        b = b.resource_records(ResourceRecord::builder().value(v).build().unwrap());
                    }
                    if let Some(a) = &r.alias {
                        b = b.alias_target(
                            aws_sdk_route53::types::AliasTarget::builder()
                                .dns_name(&a.dns_name)
                                .hosted_zone_id(&a.hosted_zone_id)
                                .evaluate_target_health(a.evaluate_target_health)
                                .build()
                                .unwrap(),
                        );
                    }
                    SdkChange::builder()
                        .action(ChangeAction::Create)
                        .resource_record_set(b.build().unwrap())
                        .build()
                        .unwrap()
                })
                .collect();
            p.client()
                .change_resource_record_sets()
                .hosted_zone_id(&zone.id)
                .change_batch(
                    ChangeBatch::builder()
                        .set_changes(Some(changes))
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .expect("put records behind sluice's back");
        }
    }
}
