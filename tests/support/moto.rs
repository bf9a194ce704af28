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

/// One request that went through a [`Gate`].
#[derive(Clone, Debug)]
pub struct Logged {
    /// `GET`, `POST`...
    pub method: String,
    /// The request path.
    pub path: String,
    /// The request body.
    pub body: String,
    /// moto's status code.
    pub status: u16,
}

impl Logged {
    /// True for a ChangeResourceRecordSets call.
    pub fn is_change(&self) -> bool {
        self.method == "POST" && self.path.contains("/rrset")
    }

    /// The number of changes with this action (`CREATE`, `UPSERT`, `DELETE`) in its body.
    pub fn actions(&self, action: &str) -> usize {
        self.body
            .matches(&format!("<Action>{action}</Action>"))
            .count()
    }
}

#[derive(Debug, Default)]
struct GateState {
    log: Vec<Logged>,
    changes: usize,
    /// Hold this change request (1-based): its response once moto has applied it, or (with
    /// `hold_before`) the request before moto sees it.
    hold_at: Option<usize>,
    hold_before: bool,
    held: bool,
    released: bool,
}

/// A proxy in front of moto (one per sluice instance under test): logs every request with
/// its body and moto's status, and can hold the response of one ChangeResourceRecordSets call
/// after moto applied it (the caller then never learns that it landed).
#[derive(Clone)]
pub struct Gate {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: std::sync::Arc<std::sync::Mutex<GateState>>,
    wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Gate {
    /// Starts a gate in front of moto on 127.0.0.1.
    pub async fn start(m: &Moto) -> Gate {
        use http_body_util::{BodyExt as _, Full};
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let upstream = m.port;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let gate = Gate {
            url,
            state: std::sync::Arc::default(),
            wake: std::sync::Arc::default(),
        };
        let g = gate.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let g = g.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let is_change = parts.method == http::Method::POST
                                && parts.uri.path().contains("/rrset");
                            let hold_first = {
                                let mut s = g.state.lock().unwrap();
                                let hold =
                                    is_change && s.hold_before && s.hold_at == Some(s.changes + 1);
                                if hold {
                                    s.held = true;
                                }
                                hold
                            };
                            if hold_first {
                                g.wake.notify_waiters();
                                g.wait_release().await;
                            }
                            let up = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                                .await
                                .expect("connect to moto");
                            let (mut send, conn) =
                                hyper::client::conn::http1::handshake(TokioIo::new(up)).await?;
                            tokio::spawn(conn);
                            let forwarded =
                                http::Request::from_parts(parts.clone(), Full::new(body.clone()));
                            let resp = send.send_request(forwarded).await?;
                            let (rparts, rbody) = resp.into_parts();
                            let rbody = rbody.collect().await?.to_bytes();
                            let logged = Logged {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                body: String::from_utf8_lossy(&body).into_owned(),
                                status: rparts.status.as_u16(),
                            };
                            let hold = {
                                let mut s = g.state.lock().unwrap();
                                let hold = logged.is_change() && {
                                    s.changes += 1;
                                    !s.hold_before && s.hold_at == Some(s.changes)
                                };
                                s.log.push(logged);
                                if hold {
                                    s.held = true;
                                }
                                hold
                            };
                            g.wake.notify_waiters();
                            if hold {
                                g.wait_release().await;
                            }
                            Ok::<_, hyper::Error>(http::Response::from_parts(
                                rparts,
                                Full::new(rbody),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        gate
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// The ChangeResourceRecordSets calls so far.
    pub fn changes(&self) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(Logged::is_change)
            .collect()
    }

    /// Holds the response of the `n`-th change request (1-based) once moto has applied it,
    /// until [`Gate::release`].
    pub fn hold_change(&self, n: usize) {
        self.state.lock().unwrap().hold_at = Some(n);
    }

    /// Holds the `n`-th change request (1-based) before moto sees it, until [`Gate::release`].
    pub fn hold_change_before(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.hold_at = Some(n);
        s.hold_before = true;
    }

    async fn wait_release(&self) {
        loop {
            let notified = self.wake.notified();
            if self.state.lock().unwrap().released {
                return;
            }
            notified.await;
        }
    }

    /// Waits until a request or response is held, at most `within`.
    pub async fn wait_held(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.wake.notified();
            if self.state.lock().unwrap().held {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, notified).await.is_ok()
                    || self.state.lock().unwrap().held,
                "no change request was held within {within:?}"
            );
        }
    }

    /// Lets the held response (and every later one) go.
    pub fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.wake.notify_waiters();
    }
}

impl Moto {
    /// Deletes record sets (exact current values) straight through the SDK: a change behind
    /// sluice's back.
    pub async fn delete(&self, p: &Route53Provider, zone: &Zone, records: &[RecordSet]) {
        let changes: Vec<sluice::dns::Change> = records
            .iter()
            .map(|r| sluice::dns::Change {
                action: sluice::dns::Action::Delete,
                record: r.clone(),
            })
            .collect();
        p.apply(zone, &changes)
            .await
            .expect("delete records behind sluice's back");
    }
}
