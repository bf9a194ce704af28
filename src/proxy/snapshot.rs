//! What one request reads ([`Snapshot`]) and how a new routing table becomes one
//! ([`Proxy::publish`]).
//!
//! A snapshot is the compiled [`RoutingTable`] plus, per distinct backend, everything a request
//! to it needs: a [`Balancer`] over endpoint states carried across publishes, the backend's
//! settings, its metric handles and, for a backend that is not plain HTTP/1.1, how its
//! connections are made ([`Transport`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Proxy;
use super::balance::{Balancer, Transport};
use super::connect::TlsTarget;
use super::stats::RequestStats;
use crate::model::{Backend, BackendSettings, UpstreamProtocol, UpstreamTls};
use crate::routing::RoutingTable;

/// What one request reads: the compiled table and a balancer per backend.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The routing table.
    pub table: RoutingTable,
    pub(super) upstreams: Vec<Upstream>,
    /// Increases with every publish.
    pub generation: u64,
    /// Some backend is a TLS passthrough backend: the HTTPS entrypoint reads each ClientHello
    /// before deciding to terminate (see `passthrough`).
    pub(super) passthrough: bool,
}

/// One backend of the table, ready to forward to.
#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) balancer: Balancer,
    /// How connections are made: `None` for plain HTTP/1.1 (each endpoint's own pool).
    pub(super) transport: Option<Arc<Transport>>,
    pub(super) connect_timeout: Duration,
    pub(super) settings: BackendSettings,
    /// No request filter (see [`BackendSettings::has_request_filters`]): requests take the
    /// short path.
    pub(super) plain: bool,
    /// Request metrics, with labels built and handles cached per backend.
    pub(super) stats: RequestStats,
    /// Keeps retries to about a fifth of the backend's requests; carried across publishes
    /// (see [`RetryBudgets`]).
    pub(super) retry_budget: Arc<super::outlier::RetryBudget>,
}

impl Proxy {
    /// Publishes a new routing table: requests that start after this call use it; requests in
    /// flight finish on the table they started with. Never blocks on the data plane.
    pub fn publish(&self, table: RoutingTable) -> u64 {
        let balancers = self.registry.balancers(table.backends());
        let budgets = self.budgets.for_backends(table.backends());
        let upstreams = table
            .backends()
            .iter()
            .zip(balancers)
            .zip(budgets)
            .map(|((b, balancer), retry_budget)| {
                let connect = b
                    .settings
                    .connect_timeout
                    .unwrap_or(self.config.connect_timeout);
                let mut settings = b.settings.clone();
                let transport = match transport(b) {
                    Ok(t) => t,
                    Err(e) => {
                        // Checked when the annotations were read; fail closed if it still
                        // cannot be built.
                        tracing::error!(ingress = %b.ingress, service = %b.service, "cannot set up TLS to the backend: {e}; its routes answer 503");
                        settings.closed = true;
                        None
                    }
                };
                Upstream {
                    balancer,
                    transport,
                    connect_timeout: connect,
                    plain: !settings.has_request_filters(),
                    settings,
                    retry_budget,
                    stats: RequestStats::new(
                        metrics::SharedString::from(b.ingress.to_string()),
                        metrics::SharedString::from(b.service.to_string()),
                    ),
                }
            })
            .collect();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let passthrough = table.backends().iter().any(|b| b.settings.ssl_passthrough);
        self.snapshot.store(Arc::new(Snapshot {
            table,
            upstreams,
            generation,
            passthrough,
        }));
        generation
    }

    /// The snapshot requests currently read.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}

/// The retry budget of each backend, by its Ingress, Service and port, carried from one
/// publish to the next: endpoint changes (pods failing and being replaced, the moment retries
/// matter) publish often, and a budget per publish would refill at each one.
#[derive(Debug, Default)]
pub(super) struct RetryBudgets {
    by_backend: std::sync::Mutex<
        std::collections::HashMap<
            (
                crate::model::ObjectRef,
                crate::model::ObjectRef,
                crate::model::ServicePort,
            ),
            Arc<super::outlier::RetryBudget>,
        >,
    >,
}

impl RetryBudgets {
    /// The budgets of `backends` (in order): known ones kept, new ones full; the budgets of
    /// backends no longer published are forgotten.
    pub(super) fn for_backends(
        &self,
        backends: &[Arc<Backend>],
    ) -> Vec<Arc<super::outlier::RetryBudget>> {
        let mut known = self
            .by_backend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = std::collections::HashMap::with_capacity(backends.len());
        let out = backends
            .iter()
            .map(|b| {
                let key = (b.ingress.clone(), b.service.clone(), b.port.clone());
                let budget = known
                    .remove(&key)
                    .or_else(|| next.get(&key).cloned())
                    .unwrap_or_default();
                next.insert(key, budget.clone());
                budget
            })
            .collect();
        *known = next;
        out
    }
}

/// How connections to `b` are made (`None`: plain HTTP/1.1).
fn transport(b: &Backend) -> Result<Option<Arc<Transport>>, String> {
    let protocol = b.settings.protocol;
    if protocol == UpstreamProtocol::Http1 {
        return Ok(None);
    }
    let (tls, settings) = if protocol.is_tls() {
        // Without `proxy-ssl-*` annotations: encrypted, not verified (ingress-nginx's default).
        let settings = b.settings.tls.clone().unwrap_or_else(|| {
            Arc::new(UpstreamTls {
                secret: None,
                ca: None,
                client_cert: None,
                verify: false,
                name: None,
                sni: false,
            })
        });
        let config = crate::tls::upstream::client_config(&settings, protocol.is_h2())?;
        let name = crate::tls::upstream::server_name(&settings, &b.service)
            .ok_or_else(|| format!("no valid server name for {}", b.service))?;
        (Some(TlsTarget::new(config, name)), Some(settings))
    } else {
        (None, None)
    };
    let name = tls.as_ref().map(|t| t.name.to_str().into_owned());
    Ok(Some(Arc::new(Transport {
        protocol,
        tls,
        key: (protocol, settings, name),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectRef, ServicePort};

    fn backend(service: &str) -> Arc<Backend> {
        Arc::new(Backend {
            ingress: ObjectRef::new("ns", "ing"),
            service: ObjectRef::new("ns", service),
            port: ServicePort::Number(80),
            endpoints: Vec::new(),
            settings: BackendSettings::default(),
        })
    }

    #[test]
    fn a_backends_retry_budget_outlives_a_publish() {
        let budgets = RetryBudgets::default();
        let first = budgets.for_backends(&[backend("a"), backend("b")]);
        while first[0].withdraw() {}
        // The same backends again (new objects, as each publish makes): same budgets.
        let second = budgets.for_backends(&[backend("b"), backend("a")]);
        assert!(Arc::ptr_eq(&first[0], &second[1]));
        assert!(Arc::ptr_eq(&first[1], &second[0]));
        assert!(!second[1].withdraw(), "spent, not refilled");
        // A backend that goes away and comes back starts full.
        budgets.for_backends(&[backend("b")]);
        let back = budgets.for_backends(&[backend("a")]);
        assert!(back[0].withdraw());
    }
}
