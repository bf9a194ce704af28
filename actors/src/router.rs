//! The router actor: translates each source state, compiles the routing table, publishes it to
//! the data plane and the translation to the desired topic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use ractor::ActorProcessingErr;
use sluice::acme::AcmeOptions;
use sluice::cluster::object_ref;
use sluice::proxy::Proxy;
use sluice::routing::RoutingTable;
use sluice::source::manifests::Loaded;
use sluice::translate::{self, Options};
use tokio::sync::watch;

use crate::readiness::Readiness;
use crate::topics::{Desired, DesiredTopic, forward, forward_map};
use crate::worker::{Ctx, Worker};

/// What the router uses.
#[derive(Debug)]
pub struct RouterArgs {
    /// Which Ingresses are ours.
    pub classes: Options,
    /// The data plane the table is published to.
    pub proxy: Arc<Proxy>,
    /// The source topic.
    pub source: watch::Receiver<Option<Arc<Loaded>>>,
    /// Where translations are published.
    pub desired: DesiredTopic,
    /// Set once the first configuration is live.
    pub readiness: Arc<Readiness>,
    /// Counts published configurations.
    pub reloads: watch::Sender<u64>,
    /// ACME settings that change the translation (certificates pending are not redirected);
    /// `None` when ACME is off.
    pub acme: Option<AcmeOptions>,
    /// Certificates issued in standalone mode, served like Secrets of the source.
    pub issued: watch::Receiver<Arc<Vec<Secret>>>,
}

/// The router actor.
#[derive(Debug)]
pub struct Router;

/// Router messages.
#[derive(Debug)]
pub enum RouterMsg {
    /// A new source state to translate, compile and publish.
    State(Arc<Loaded>),
    /// New ACME-issued certificates (standalone mode).
    Issued(Arc<Vec<Secret>>),
}

/// Its state.
#[derive(Debug)]
pub struct RouterState {
    args: RouterArgs,
    reported: HashSet<String>,
    source: Option<Arc<Loaded>>,
    issued: Arc<Vec<Secret>>,
}

impl Worker for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Args = RouterArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<RouterMsg>,
        args: RouterArgs,
    ) -> Result<RouterState, ActorProcessingErr> {
        // Subscribing yields the watcher's current state at once: a restarted router rebuilds
        // the table from it.
        forward(ctx, args.source.clone(), RouterMsg::State);
        forward_map(ctx, "issued", args.issued.clone(), |v: Arc<Vec<Secret>>| {
            (!v.is_empty()).then_some(RouterMsg::Issued(v))
        });
        Ok(RouterState {
            args,
            reported: HashSet::new(),
            source: None,
            issued: Arc::default(),
        })
    }

    async fn handle(
        &self,
        _ctx: &mut Ctx<RouterMsg>,
        msg: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::State(loaded) => state.source = Some(loaded),
            RouterMsg::Issued(issued) => state.issued = issued,
        }
        if let Some(source) = &state.source {
            let loaded = with_issued(source, &state.issued);
            apply(&state.args, loaded, &mut state.reported);
        }
        Ok(())
    }
}

/// The source state with the ACME-issued certificates added (a Secret of the source with the
/// same name wins).
fn with_issued(source: &Arc<Loaded>, issued: &[Secret]) -> Arc<Loaded> {
    if issued.is_empty() {
        return source.clone();
    }
    let mut loaded = Loaded::clone(source);
    let present: HashSet<_> = loaded
        .state
        .secrets
        .iter()
        .map(|s| object_ref(&s.metadata))
        .collect();
    loaded.state.secrets.extend(
        issued
            .iter()
            .filter(|s| !present.contains(&object_ref(&s.metadata)))
            .cloned(),
    );
    Arc::new(loaded)
}

/// Translates, compiles and publishes one state; logs each diagnostic once, when it appears.
fn apply(args: &RouterArgs, loaded: Arc<Loaded>, reported: &mut HashSet<String>) {
    let started = Instant::now();
    let translation =
        translate::translate_with_acme(&loaded.state, &args.classes, args.acme.as_ref());
    let table = RoutingTable::compile(&translation.model);
    let routes = table.routes().len();
    let generation = args.proxy.publish(table);

    let mut now: HashSet<String> = HashSet::new();
    let mut errors = 0usize;
    for e in &loaded.errors {
        let line = e.to_string();
        errors += 1;
        if !reported.contains(&line) {
            tracing::error!(target: "sluice::config", "{line}");
            metrics::counter!("sluice_config_diagnostics_total", "reason" => "ParseError", "severity" => "error").increment(1);
        }
        now.insert(line);
    }
    for d in &translation.diagnostics {
        let line = d.to_string();
        errors += usize::from(d.is_error());
        if !reported.contains(&line) {
            if d.is_error() {
                tracing::error!(target: "sluice::config", reason = d.reason.as_str(), "{line}");
            } else {
                tracing::warn!(target: "sluice::config", reason = d.reason.as_str(), "{line}");
            }
            metrics::counter!("sluice_config_diagnostics_total", "reason" => d.reason.as_str(), "severity" => d.severity.as_str()).increment(1);
        }
        now.insert(line);
    }
    *reported = now;
    args.desired.send_replace(Some(Arc::new(Desired {
        loaded,
        translation,
    })));
    metrics::counter!("sluice_config_reloads_total").increment(1);
    metrics::gauge!("sluice_config_last_reload_success").set(if errors == 0 { 1.0 } else { 0.0 });
    #[allow(clippy::cast_precision_loss, reason = "a count of errors")]
    metrics::gauge!("sluice_config_errors").set(errors as f64);
    metrics::histogram!("sluice_config_apply_seconds").record(started.elapsed().as_secs_f64());
    // Announced last: whoever sees the reload (readiness, tests, the admin API) sees its
    // metrics too.
    args.readiness.set_config_live();
    args.reloads.send_modify(|n| *n += 1);
    tracing::info!(target: "sluice::config", generation, routes, errors, "configuration published");
}
