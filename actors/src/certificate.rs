//! The certificate actor: builds the certificate snapshot from the TLS hosts of the latest
//! translation and the Secrets, and publishes it for the TLS resolver.

use std::collections::HashSet;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sluice::tls::CertStore;

use crate::messages::{CertificateMsg, TaskGuard, forward};
use crate::run::Shared;

/// The certificate actor.
#[derive(Debug)]
pub struct Certificate;

/// Its state.
#[derive(Debug)]
pub struct CertificateState {
    shared: Arc<Shared>,
    reported: HashSet<String>,
    _subscription: TaskGuard,
}

impl Actor for Certificate {
    type Msg = CertificateMsg;
    type State = CertificateState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<CertificateMsg>,
        shared: Arc<Shared>,
    ) -> Result<CertificateState, ActorProcessingErr> {
        // The latest translation arrives at once: a restarted actor reloads from the Secrets.
        let sub = forward(shared.desired.subscribe(), myself, CertificateMsg::Desired);
        Ok(CertificateState {
            shared,
            reported: HashSet::new(),
            _subscription: sub,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<CertificateMsg>,
        msg: CertificateMsg,
        state: &mut CertificateState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CertificateMsg::Desired(desired) => {
                let shared = &state.shared;
                let (store, diags) = CertStore::build(
                    &desired.translation.model.tls,
                    &desired.loaded.state.secrets,
                    shared.default_cert.clone(),
                );
                for (secret, not_after) in store.not_after() {
                    #[allow(clippy::cast_precision_loss, reason = "Unix seconds fit f64 exactly")]
                    metrics::gauge!("sluice_tls_certs_not_after", "secret" => secret.to_string())
                        .set(not_after as f64);
                }
                shared.certs.store(Arc::new(store));
                let mut now = HashSet::new();
                for d in &diags {
                    let line = d.to_string();
                    if !state.reported.contains(&line) {
                        tracing::warn!(target: "sluice::config", reason = d.reason.as_str(), severity = d.severity.as_str(), "{line}");
                        metrics::counter!("sluice_config_diagnostics_total", "reason" => d.reason.as_str(), "severity" => d.severity.as_str()).increment(1);
                    }
                    now.insert(line);
                }
                state.reported = now;
                shared.cert_diagnostics.send_replace(Arc::new(diags));
                Ok(())
            }
            CertificateMsg::Crash => panic!("chaos: crash requested for certificate"),
        }
    }
}
