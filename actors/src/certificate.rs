//! The certificate actor: builds the certificate snapshot from the TLS hosts of the latest
//! translation and the Secrets, and publishes it for the TLS resolver.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ractor::ActorProcessingErr;
use rustls::sign::CertifiedKey;
use sluice::model::ObjectRef;
use sluice::tls::{CertStore, DefaultChoice};
use tokio::sync::watch;

use crate::topics::{CertDiagnosticsTopic, Desired, forward};
use crate::worker::{Ctx, Worker};

/// What the certificate actor uses.
#[derive(Debug)]
pub struct CertificateArgs {
    /// The snapshot the TLS resolver reads.
    pub certs: Arc<ArcSwap<CertStore>>,
    /// Served when no certificate matches and `default_secret` cannot be served.
    pub default_cert: Arc<CertifiedKey>,
    /// `--default-certificate`: the TLS Secret served when no certificate matches.
    pub default_secret: Option<ObjectRef>,
    /// The desired topic.
    pub desired: watch::Receiver<Option<Arc<Desired>>>,
    /// Where certificate diagnostics are published.
    pub diagnostics: CertDiagnosticsTopic,
}

/// The certificate actor.
#[derive(Debug)]
pub struct Certificate;

/// Certificate actor messages.
#[derive(Debug)]
pub enum CertificateMsg {
    /// A new translation: rebuild the certificate snapshot.
    Desired(Arc<Desired>),
}

/// Its state.
#[derive(Debug)]
pub struct CertificateState {
    args: CertificateArgs,
    reported: HashSet<String>,
    /// The `--default-certificate` Secret last served, if any.
    default_served: Option<ObjectRef>,
}

impl Worker for Certificate {
    type Msg = CertificateMsg;
    type State = CertificateState;
    type Args = CertificateArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<CertificateMsg>,
        args: CertificateArgs,
    ) -> Result<CertificateState, ActorProcessingErr> {
        // The latest translation arrives at once: a restarted actor reloads from the Secrets.
        forward(ctx, args.desired.clone(), CertificateMsg::Desired);
        Ok(CertificateState {
            args,
            reported: HashSet::new(),
            default_served: None,
        })
    }

    async fn handle(
        &self,
        _ctx: &mut Ctx<CertificateMsg>,
        msg: CertificateMsg,
        state: &mut CertificateState,
    ) -> Result<(), ActorProcessingErr> {
        let CertificateMsg::Desired(desired) = msg;
        let args = &state.args;
        // The translation parsed every Secret it references: no second parse here.
        let default = DefaultChoice::choose(
            args.default_secret.as_ref(),
            &desired.loaded.state.secrets,
            &desired.translation.certs,
            &args.default_cert,
        );
        let served = default.secret.as_ref().map(|(r, _)| r.clone());
        if served != state.default_served
            && let Some(secret) = &served
        {
            tracing::info!(target: "sluice::config", "--default-certificate: serving Secret {secret} when no other certificate matches");
        }
        state.default_served = served;
        let (store, diags) = CertStore::build_with_default(
            &desired.translation.model.tls,
            &desired.translation.certs,
            &default,
        );
        args.certs.store(Arc::new(store));
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
        args.diagnostics.send_replace(Arc::new(diags));
        Ok(())
    }
}
