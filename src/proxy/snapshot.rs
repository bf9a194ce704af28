//! What one request reads ([`Snapshot`]) and how a new routing table becomes one
//! ([`Proxy::publish`]).
//!
//! A snapshot is the compiled [`RoutingTable`] plus, per distinct backend, everything a request
//! to it needs: a [`Balancer`] over endpoint states carried across publishes, the backend's
//! settings, its metric handles and (h2c only) a pooled hyper-util client.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Proxy;
use super::balance::Balancer;
use super::body::ProxyBody;
use super::connect::Connector;
use super::stats::RequestStats;
use crate::model::{BackendSettings, UpstreamProtocol};
use crate::routing::RoutingTable;

/// What one request reads: the compiled table and a balancer per backend.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The routing table.
    pub table: RoutingTable,
    pub(super) upstreams: Vec<Upstream>,
    /// Increases with every publish.
    pub generation: u64,
}

/// One backend of the table, ready to forward to.
#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) balancer: Balancer,
    /// hyper-util's pooled client, for h2c upstreams only; HTTP/1.1 goes through `pool`.
    pub(super) h2c: Option<Client<Connector, ProxyBody>>,
    pub(super) connect_timeout: Duration,
    pub(super) settings: BackendSettings,
    /// No request filter (see [`BackendSettings::has_request_filters`]): requests take the
    /// short path.
    pub(super) plain: bool,
    /// Request metrics, with labels built and handles cached per backend.
    pub(super) stats: RequestStats,
}

/// h2c clients are shared per (connect timeout, protocol).
pub(super) type ClientKey = (Duration, UpstreamProtocol);

impl Proxy {
    /// Publishes a new routing table: requests that start after this call use it; requests in
    /// flight finish on the table they started with. Never blocks on the data plane.
    pub fn publish(&self, table: RoutingTable) -> u64 {
        let balancers = self.registry.balancers(table.backends());
        let upstreams = table
            .backends()
            .iter()
            .zip(balancers)
            .map(|(b, balancer)| {
                let connect = b
                    .settings
                    .connect_timeout
                    .unwrap_or(self.config.connect_timeout);
                Upstream {
                    balancer,
                    h2c: (b.settings.protocol == UpstreamProtocol::H2c)
                        .then(|| self.client((connect, b.settings.protocol))),
                    connect_timeout: connect,
                    settings: b.settings.clone(),
                    plain: !b.settings.has_request_filters(),
                    stats: RequestStats::new(
                        metrics::SharedString::from(b.ingress.to_string()),
                        metrics::SharedString::from(b.service.to_string()),
                    ),
                }
            })
            .collect();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.snapshot.store(Arc::new(Snapshot {
            table,
            upstreams,
            generation,
        }));
        generation
    }

    /// The snapshot requests currently read.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The shared hyper-util client for `key`, built on first use.
    fn client(&self, key: ClientKey) -> Client<Connector, ProxyBody> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let connector = Connector::new(key.0);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.config.upstream_idle_timeout)
            .pool_max_idle_per_host(1024)
            .retry_canceled_requests(true);
        if key.1 == UpstreamProtocol::H2c {
            builder.http2_only(true);
        }
        let client = builder.build(connector);
        clients.push((key, client.clone()));
        client
    }
}
