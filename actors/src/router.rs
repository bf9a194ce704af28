//! The router actor: translates each source state, compiles the routing table, publishes it to
//! the data plane and the translation to the desired topic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sluice::routing::RoutingTable;
use sluice::source::manifests::Loaded;
use sluice::translate;

use crate::messages::{Desired, RouterMsg, TaskGuard, forward};
use crate::run::Shared;

/// The router actor.
#[derive(Debug)]
pub struct Router;

/// Its state.
#[derive(Debug)]
pub struct RouterState {
    shared: Arc<Shared>,
    reported: HashSet<String>,
    _subscription: TaskGuard,
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<RouterMsg>,
        shared: Arc<Shared>,
    ) -> Result<RouterState, ActorProcessingErr> {
        // Subscribing yields the watcher's current state at once: a restarted router rebuilds
        // the table from it.
        let sub = forward(shared.source.subscribe(), myself, RouterMsg::State);
        Ok(RouterState {
            shared,
            reported: HashSet::new(),
            _subscription: sub,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        msg: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::State(loaded) => {
                apply(&state.shared, loaded, &mut state.reported);
                Ok(())
            }
            RouterMsg::Crash => panic!("chaos: crash requested for router"),
        }
    }
}

/// Translates, compiles and publishes one state; logs each diagnostic once, when it appears.
fn apply(shared: &Shared, loaded: Arc<Loaded>, reported: &mut HashSet<String>) {
    let started = Instant::now();
    let translation = translate::translate(&loaded.state, &shared.classes);
    let table = RoutingTable::compile(&translation.model);
    let routes = table.routes().len();
    let generation = shared.proxy.publish(table);

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
    shared.desired.send_replace(Some(Arc::new(Desired {
        loaded,
        translation,
    })));
    shared.readiness.set_config_live();
    shared.reloads.send_modify(|n| *n += 1);
    metrics::counter!("sluice_config_reloads_total").increment(1);
    metrics::gauge!("sluice_config_last_reload_success").set(if errors == 0 { 1.0 } else { 0.0 });
    #[allow(clippy::cast_precision_loss, reason = "a count of errors")]
    metrics::gauge!("sluice_config_errors").set(errors as f64);
    metrics::histogram!("sluice_config_apply_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(target: "sluice::config", generation, routes, errors, "configuration published");
}
