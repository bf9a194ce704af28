//! OTP-style supervision on ractor, written once and used by every supervisor in sluice.
//!
//! ractor links actors and delivers [`SupervisionEvent`]s but leaves restart policy to the
//! application. [`Supervisor`] adds it:
//! - children ([`ChildSpec`]) start in order and stop in reverse order; a supervisor has
//!   started when all its children have, and a child that fails to start makes the
//!   supervisor's own start fail with that child's error (so `run::start` returns it);
//! - each child is [`Restart::Permanent`] (always restarted), [`Restart::Transient`] (restarted
//!   only after a failure) or [`Restart::Temporary`] (never restarted);
//! - [`Strategy::OneForOne`] restarts the failed child, [`Strategy::RestForOne`] also the
//!   children started after it, [`Strategy::OneForAll`] every child;
//! - restart intensity ([`RestartWindow`]): more than `max_restarts` restarts within `period`
//!   and the supervisor stops its remaining children and fails, which its own supervisor sees
//!   as a child failure (escalation). The root giving up ends the process (see `run.rs`);
//! - a restart that fails (the child's start returns an error or panics) counts toward the
//!   intensity and is retried with the backoff, instead of failing the supervisor at once;
//! - restart backoff: the first restart in a window is immediate, later ones wait
//!   `base * 2^(n-2)`, capped (`sluice::pace::Backoff`, no jitter);
//! - shutdown: each child has a shutdown time (default [`DEFAULT_SHUTDOWN`]; a nested
//!   supervisor gets the sum of its children's); a child that has not stopped by then is
//!   killed (its work aborted).
//!
//! Children are [`Worker`]s run by [`Supervised`], which owns their background tasks (see
//! `worker.rs`). Every supervisor reports its children into a shared [`ActorTree`], which the
//! admin API shows as `/api/actors` and which can crash any actor for chaos tests.

mod tree;
mod window;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use sluice::pace::Backoff;
use tokio::time::Instant;

pub use tree::{ActorTree, CrashFn, CrashPoint, Crashed};
pub use window::{Exceeded, Intensity, RestartWindow};

use crate::worker::{Start, Supervised, TaskChaos, Worker, crash_points};

/// How long a child may take to stop before it is killed, unless its spec says otherwise.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only when it failed (panicked or returned an error), not when it stopped normally.
    Transient,
    /// Never.
    Temporary,
}

/// Which children a failure restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Only the failed child.
    OneForOne,
    /// The failed child and every child started after it.
    RestForOne,
    /// Every child.
    OneForAll,
}

impl Strategy {
    fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::RestForOne => "rest_for_one",
            Strategy::OneForAll => "one_for_all",
        }
    }
}

/// The default restart backoff: 50 ms doubling to 2 s, no jitter.
pub fn default_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(2)).with_jitter(0.0)
}

/// The delay before restart number `n` (1-based) within the current window: the first is
/// immediate, then `backoff.delay_for(n - 2)`.
pub fn restart_delay(backoff: &Backoff, n: usize) -> Duration {
    if n <= 1 {
        Duration::ZERO
    } else {
        backoff.delay_for(u32::try_from(n - 2).unwrap_or(u32::MAX))
    }
}

/// What starting a child produced.
pub struct Started {
    /// The child's cell.
    pub cell: ActorCell,
    /// Makes the child panic in its handler.
    pub crash_handler: CrashFn,
    /// Makes the child's background tasks panic (none for a supervisor).
    pub crash_task: Option<CrashFn>,
}

/// Future returned by a [`ChildSpec`]'s start function.
pub type StartFuture = Pin<Box<dyn Future<Output = Result<Started, SpawnErr>> + Send>>;

/// A child: its name, restart policy, shutdown time and how to start it linked to a
/// supervisor.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique name, as shown in `/api/actors`.
    pub name: String,
    /// Restart policy.
    pub restart: Restart,
    /// How long it may take to stop before it is killed.
    pub shutdown: Duration,
    start: Arc<dyn Fn(ActorCell) -> StartFuture + Send + Sync>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

impl ChildSpec {
    /// A worker actor, built by `make` at every (re)start.
    pub fn new<W, F>(name: impl Into<String>, restart: Restart, make: F) -> ChildSpec
    where
        W: Worker,
        F: Fn() -> (W, W::Args) + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let name = name.into();
        let actor_name = name.clone();
        ChildSpec {
            name,
            restart,
            shutdown: DEFAULT_SHUTDOWN,
            start: Arc::new(move |sup: ActorCell| {
                let make = make.clone();
                let name = actor_name.clone();
                Box::pin(async move {
                    let (worker, args) = make();
                    let chaos = Arc::new(TaskChaos::default());
                    let start = Start {
                        name,
                        args,
                        chaos: chaos.clone(),
                    };
                    let (r, _join) =
                        Actor::spawn_linked(None, Supervised(worker), start, sup).await?;
                    let (crash_handler, crash_task) = crash_points(&r, &chaos);
                    Ok(Started {
                        cell: r.get_cell(),
                        crash_handler,
                        crash_task: Some(crash_task),
                    })
                })
            }),
        }
    }

    /// The same with another shutdown time.
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: Duration) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// A nested supervisor; its shutdown time is the sum of its children's.
    pub fn supervisor(spec: SupervisorSpec) -> ChildSpec {
        let name = spec.name.clone();
        let shutdown =
            spec.children.iter().map(|c| c.shutdown).sum::<Duration>() + Duration::from_millis(100);
        let spec = Arc::new(spec);
        ChildSpec {
            name,
            restart: Restart::Permanent,
            shutdown,
            start: Arc::new(move |sup: ActorCell| {
                let spec = spec.clone();
                Box::pin(async move {
                    let (r, _join) = Actor::spawn_linked(None, Supervisor, spec, sup).await?;
                    let crash = r.clone();
                    Ok(Started {
                        cell: r.get_cell(),
                        crash_handler: Arc::new(move || crash.cast(SupervisorMsg::Crash).is_ok()),
                        crash_task: None,
                    })
                })
            }),
        }
    }
}

/// A supervisor: its name, strategy, limits and children.
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    /// Unique name.
    pub name: String,
    /// Restart strategy.
    pub strategy: Strategy,
    /// Restart intensity.
    pub intensity: Intensity,
    /// Restart backoff (see [`restart_delay`]).
    pub backoff: Backoff,
    /// Children, in start order.
    pub children: Vec<ChildSpec>,
    /// Where statuses are reported.
    pub tree: Arc<ActorTree>,
}

/// Supervisor messages.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// The backoff is over: start the pending children, in order.
    Restart,
    /// Panic (chaos testing).
    Crash,
}

/// The supervisor actor. Its arguments are its spec.
#[derive(Debug)]
pub struct Supervisor;

/// Supervisor state.
pub struct SupervisorState {
    spec: Arc<SupervisorSpec>,
    cells: Vec<Option<ActorCell>>,
    window: RestartWindow,
    /// Children waiting for a (backed-off) restart; started together, in order.
    pending: std::collections::BTreeSet<usize>,
    /// A `Restart` message is on its way.
    scheduled: bool,
}

impl SupervisorState {
    fn new(spec: Arc<SupervisorSpec>) -> SupervisorState {
        let n = spec.children.len();
        SupervisorState {
            window: RestartWindow::new(spec.intensity),
            spec,
            cells: vec![None; n],
            pending: Default::default(),
            scheduled: false,
        }
    }

    /// Starts child `i`; on failure records it in the tree and returns the cause.
    async fn start_child(&mut self, myself: &ActorCell, i: usize) -> Result<(), String> {
        let spec = &self.spec.children[i];
        let tree = &self.spec.tree;
        // Registered before it starts, so a nested supervisor is listed before its children.
        tree.update(&spec.name, |e| e.supervisor = self.spec.name.clone());
        match (spec.start)(myself.clone()).await {
            Ok(started) => {
                tree.update(&spec.name, |e| {
                    e.supervisor = self.spec.name.clone();
                    e.status = "running";
                    e.crash_handler = Some(started.crash_handler);
                    e.crash_task = started.crash_task;
                });
                metrics::gauge!("sluice_actor_up", "actor" => spec.name.clone()).set(1.0);
                self.cells[i] = Some(started.cell);
                Ok(())
            }
            Err(e) => {
                let msg = format!(
                    "{}: child {} failed to start: {}",
                    self.spec.name,
                    spec.name,
                    spawn_cause(&e)
                );
                tree.update(&spec.name, |e| {
                    e.supervisor = self.spec.name.clone();
                    e.status = "failed";
                    e.last_failure = Some(msg.clone());
                    e.crash_handler = None;
                    e.crash_task = None;
                });
                Err(msg)
            }
        }
    }

    /// Stops the running children among `indices`, in reverse order, each within its shutdown
    /// time; a child that does not stop in time is killed.
    async fn stop_children(&mut self, indices: impl DoubleEndedIterator<Item = usize>) {
        for i in indices.rev() {
            if let Some(cell) = self.cells[i].take() {
                let child = &self.spec.children[i];
                let stopped = cell
                    .stop_and_wait(Some("supervisor stop".into()), Some(child.shutdown))
                    .await;
                if matches!(stopped, Err(ractor::RactorErr::Timeout)) {
                    tracing::warn!(supervisor = %self.spec.name, actor = %child.name, shutdown = ?child.shutdown, "actor did not stop within its shutdown time; killing it");
                    metrics::counter!("sluice_actor_kills_total", "actor" => child.name.clone())
                        .increment(1);
                    let _ = cell.kill_and_wait(Some(Duration::from_secs(1))).await;
                }
                self.spec.tree.update(&child.name, |e| {
                    e.status = "stopped";
                    e.crash_handler = None;
                    e.crash_task = None;
                });
                metrics::gauge!("sluice_actor_up", "actor" => child.name.clone()).set(0.0);
            }
        }
    }

    /// Counts one restart (or failed restart attempt) at `now`; gives up when the intensity is
    /// exceeded: stops every child and returns the cause.
    async fn count_restart(&mut self, now: Instant, what: &str) -> Result<usize, String> {
        match self.window.record(now) {
            Ok(n) => Ok(n),
            Err(Exceeded) => {
                let n = self.cells.len();
                self.stop_children(0..n).await;
                metrics::counter!("sluice_supervisor_escalations_total", "supervisor" => self.spec.name.clone()).increment(1);
                let cause = format!(
                    "supervisor {} gave up: more than {} restarts in {:?}; last: {what}",
                    self.spec.name, self.spec.intensity.max_restarts, self.spec.intensity.period,
                );
                tracing::error!("{cause}");
                Err(cause)
            }
        }
    }

    async fn on_child_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        cell: &ActorCell,
        failure: Option<String>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(i) = self
            .cells
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.get_id() == cell.get_id()))
        else {
            // A child we stopped on purpose, or one from an earlier generation.
            return Ok(());
        };
        self.cells[i] = None;
        let child = self.spec.children[i].clone();
        let tree = self.spec.tree.clone();
        metrics::gauge!("sluice_actor_up", "actor" => child.name.clone()).set(0.0);
        tree.update(&child.name, |e| {
            e.status = if failure.is_some() {
                "failed"
            } else {
                "stopped"
            };
            e.crash_handler = None;
            e.crash_task = None;
            if let Some(f) = &failure {
                e.last_failure = Some(f.clone());
            }
        });
        let restart = match child.restart {
            Restart::Permanent => true,
            Restart::Transient => failure.is_some(),
            Restart::Temporary => false,
        };
        if !restart {
            return Ok(());
        }
        if let Some(f) = &failure {
            tracing::warn!(supervisor = %self.spec.name, actor = %child.name, "actor failed: {f}");
        }
        let what = format!("{} {}", child.name, failure.as_deref().unwrap_or("stopped"));
        let count = self.count_restart(Instant::now(), &what).await?;

        let n = self.cells.len();
        // Siblings restarted with the failed child: those running now (a Temporary child is
        // stopped but never started again; one that had already exited stays down).
        let affected = match self.spec.strategy {
            Strategy::OneForOne => i..i + 1,
            Strategy::RestForOne => i..n,
            Strategy::OneForAll => 0..n,
        };
        let to_start: Vec<usize> = affected
            .filter(|&j| {
                j == i
                    || (self.cells[j].is_some()
                        && self.spec.children[j].restart != Restart::Temporary)
            })
            .collect();
        match self.spec.strategy {
            Strategy::OneForOne => {}
            Strategy::RestForOne => self.stop_children(i + 1..n).await,
            Strategy::OneForAll => self.stop_children(0..n).await,
        }
        for &j in &to_start {
            let name = self.spec.children[j].name.clone();
            tree.update(&name, |e| {
                e.status = "restarting";
                e.restarts += 1;
            });
            metrics::counter!("sluice_actor_restarts_total", "actor" => name).increment(1);
        }
        // Restarts are merged into one pending set and always started in child order, so a
        // later child never runs while an earlier one it depends on is still down.
        self.pending.extend(to_start);
        self.schedule(myself, count).await
    }

    /// Starts the pending children now (first restart in the window) or after the backoff.
    async fn schedule(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        count: usize,
    ) -> Result<(), ActorProcessingErr> {
        let delay = restart_delay(&self.spec.backoff, count);
        if self.scheduled {
            return Ok(());
        }
        if delay.is_zero() {
            return self.start_pending(myself).await;
        }
        self.scheduled = true;
        let me = myself.clone();
        // A timer, not work: it only sends the supervisor a message (and does nothing if the
        // supervisor is gone by then).
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(SupervisorMsg::Restart);
        });
        Ok(())
    }

    /// Starts the pending children in order. A child that fails to start counts as a restart
    /// and is retried after the backoff; under rest_for_one and one_for_all the children after
    /// it wait for it.
    async fn start_pending(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let pending: Vec<usize> = std::mem::take(&mut self.pending).into_iter().collect();
        let mut failed: Option<(usize, String)> = None;
        for j in pending {
            if self.cells[j].is_some() {
                continue;
            }
            let wait_for_earlier = failed.is_some() && self.spec.strategy != Strategy::OneForOne;
            if wait_for_earlier {
                self.pending.insert(j);
                continue;
            }
            if let Err(cause) = self.start_child(&myself.get_cell(), j).await {
                tracing::warn!(supervisor = %self.spec.name, "{cause}; retrying with backoff");
                metrics::counter!("sluice_actor_restarts_total", "actor" => self.spec.children[j].name.clone()).increment(1);
                self.spec.tree.update(&self.spec.children[j].name, |e| {
                    e.restarts += 1;
                });
                self.pending.insert(j);
                if failed.is_none() {
                    failed = Some((j, cause));
                }
            }
        }
        if let Some((_, cause)) = failed {
            let count = self.count_restart(Instant::now(), &cause).await?;
            return Box::pin(self.schedule(myself, count.max(2))).await;
        }
        Ok(())
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<SupervisorSpec>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        spec: Arc<SupervisorSpec>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        tracing::debug!(supervisor = %spec.name, strategy = spec.strategy.as_str(), "starting children");
        let mut state = SupervisorState::new(spec);
        // Children start here, not in post_start, so that a child that cannot start makes
        // this supervisor's spawn fail with the child's error, all the way up to `run::start`.
        for i in 0..state.cells.len() {
            if let Err(cause) = state.start_child(&myself.get_cell(), i).await {
                state.stop_children(0..i).await;
                return Err(cause.into());
            }
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let n = state.cells.len();
        state.stop_children(0..n).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart => {
                state.scheduled = false;
                state.start_pending(&myself).await
            }
            SupervisorMsg::Crash => {
                panic!("chaos: crash requested for supervisor {}", state.spec.name)
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                state
                    .on_child_exit(&myself, &cell, Some(err.to_string()))
                    .await
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.on_child_exit(&myself, &cell, None).await
            }
            _ => Ok(()),
        }
    }
}

/// How the root supervisor ended.
#[derive(Debug)]
pub enum RootExit {
    /// Stopped on request.
    Stopped,
    /// Gave up: the cause.
    Failed(String),
}

/// Watches the root supervisor: it is linked to the root, so it learns whether the root
/// stopped or failed, and reports it once.
struct Guardian;

type RootStarted = Result<ActorRef<SupervisorMsg>, String>;

impl Actor for Guardian {
    type Msg = ();
    type State = Option<tokio::sync::oneshot::Sender<RootExit>>;
    type Arguments = (
        Arc<SupervisorSpec>,
        tokio::sync::oneshot::Sender<RootExit>,
        tokio::sync::oneshot::Sender<RootStarted>,
    );

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        (spec, exit, root_tx): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        match Actor::spawn_linked(None, Supervisor, spec, myself.get_cell()).await {
            Ok((root, _join)) => {
                let _ = root_tx.send(Ok(root));
                Ok(Some(exit))
            }
            Err(e) => {
                let cause = spawn_cause(&e);
                let _ = root_tx.send(Err(cause.clone()));
                Err(cause.into())
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let exit = match evt {
            SupervisionEvent::ActorFailed(_, err) => RootExit::Failed(err.to_string()),
            SupervisionEvent::ActorTerminated(..) => RootExit::Stopped,
            _ => return Ok(()),
        };
        if let Some(tx) = state.take() {
            let _ = tx.send(exit);
        }
        myself.stop(None);
        Ok(())
    }
}

/// Why a spawn failed, without ractor's "Actor panicked during startup" wrapping: the actor's
/// own error (for a nested supervisor, its child's, and so on).
fn spawn_cause(e: &SpawnErr) -> String {
    match e {
        SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Starts a root supervisor and waits until every actor in the tree has started. Returns its
/// reference and a receiver that tells how it ended, or the error of the actor that did not
/// start.
pub async fn spawn_root(
    spec: SupervisorSpec,
) -> Result<
    (
        ActorRef<SupervisorMsg>,
        tokio::sync::oneshot::Receiver<RootExit>,
    ),
    String,
> {
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let (root_tx, root_rx) = tokio::sync::oneshot::channel();
    let spawned = Actor::spawn(None, Guardian, (Arc::new(spec), exit_tx, root_tx)).await;
    match root_rx.await {
        Ok(Ok(root)) => Ok((root, exit_rx)),
        Ok(Err(cause)) => Err(cause),
        Err(_) => Err(match spawned {
            Err(e) => e.to_string(),
            Ok(_) => "the root supervisor did not start".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
