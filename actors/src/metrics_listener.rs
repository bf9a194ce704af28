//! The metrics actor (`metrics` in the tree): the listener that may be exposed beyond the
//! host (`--metrics-addr`, the pod IP in a cluster), serving `/metrics`, `/healthz` and
//! `/readyz` only, for Prometheus and the kubelet's probes. Everything else is 404, the admin
//! API (`/api/*`, `/debug/*`) included: that stays on the admin listener, bound to loopback by
//! default. Connections get the proxy's connection timeouts, as on the admin listener.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorProcessingErr;
use sluice::tls::CertStore;
use tokio::net::TcpListener;

use crate::admin::{HttpTimeouts, probes, reply, serve_listener};
use crate::readiness::Readiness;
use crate::worker::{Ctx, NoMsg, Worker};

/// What the metrics listener uses.
#[derive(Clone, Debug)]
pub struct MetricsArgs {
    /// The listening socket (owned by the runtime).
    pub socket: Arc<TcpListener>,
    /// Connection timeouts.
    pub timeouts: HttpTimeouts,
    /// `/readyz`.
    pub readiness: Arc<Readiness>,
    /// `/metrics`.
    pub metrics: PrometheusHandle,
    /// Certificate expiry gauges, rendered from the live snapshot.
    pub certs: Arc<ArcSwap<CertStore>>,
}

/// The metrics actor.
#[derive(Debug)]
pub struct Metrics;

impl Worker for Metrics {
    type Msg = NoMsg;
    type State = ();
    type Args = MetricsArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<NoMsg>,
        args: MetricsArgs,
    ) -> Result<(), ActorProcessingErr> {
        let args = Arc::new(args);
        let (socket, timeouts) = (args.socket.clone(), args.timeouts);
        ctx.spawn(
            "server",
            serve_listener(socket, "metrics", timeouts, move |req| {
                let resp = probes(&req, &args.readiness, &args.metrics, &args.certs)
                    .unwrap_or_else(|| {
                        reply(
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "not found: this listener serves only /metrics, /healthz and /readyz\n",
                        )
                    });
                std::future::ready(resp)
            }),
        );
        Ok(())
    }
}
