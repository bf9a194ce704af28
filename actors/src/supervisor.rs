//! OTP-style supervision on ractor, written once and used by every supervisor in sluice.
//!
//! ractor links actors and delivers [`SupervisionEvent`]s but leaves restart policy to the
//! application. [`Supervisor`] adds it:
//! - children ([`ChildSpec`]) start in order and stop in reverse order;
//! - each child is [`Restart::Permanent`] (always restarted), [`Restart::Transient`] (restarted
//!   only after a failure) or [`Restart::Temporary`] (never restarted);
//! - [`Strategy::OneForOne`] restarts the failed child, [`Strategy::RestForOne`] also the
//!   children started after it, [`Strategy::OneForAll`] every child;
//! - restart intensity: more than `max_restarts` restarts within `period` and the supervisor
//!   stops its remaining children and fails, which its own supervisor sees as a child failure
//!   (escalation). The root giving up ends the process (see `run.rs`);
//! - restart backoff: the first restart in a window is immediate, later ones wait
//!   `base * 2^(n-2)`, capped at `max`.
//!
//! Every supervisor reports its children into a shared [`ActorTree`], which the admin API
//! shows as `/api/actors` and which knows how to crash any actor for chaos tests.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use serde_json::json;

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

/// Restart intensity: at most `max_restarts` within `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: usize,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    /// At most 5 restarts in 30 s.
    fn default() -> Self {
        Intensity {
            max_restarts: 5,
            period: Duration::from_secs(30),
        }
    }
}

/// Delay between restarts in one intensity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay of the second restart in a window (the first is immediate).
    pub base: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The delay before restart number `n` (1-based) within the current window.
    pub fn delay(&self, n: usize) -> Duration {
        if n <= 1 {
            return Duration::ZERO;
        }
        let shift = u32::try_from(n - 2).unwrap_or(u32::MAX).min(20);
        self.base.saturating_mul(1 << shift).min(self.max)
    }
}

/// Makes an actor panic inside its message handler (chaos testing).
pub type CrashFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// What starting a child produced.
pub struct Started {
    /// The child's cell.
    pub cell: ActorCell,
    /// Sends the child the message that makes it panic.
    pub crash: CrashFn,
}

/// Future returned by a [`ChildSpec`]'s start function.
pub type StartFuture = Pin<Box<dyn Future<Output = Result<Started, SpawnErr>> + Send>>;

/// A child: its name, restart policy and how to start it linked to a supervisor.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique name, as shown in `/api/actors`.
    pub name: String,
    /// Restart policy.
    pub restart: Restart,
    start: Arc<dyn Fn(ActorCell) -> StartFuture + Send + Sync>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .finish()
    }
}

/// Messages that can make an actor panic: every actor's message type has such a variant.
pub trait Crashable: ractor::Message {
    /// The message whose handling panics.
    fn crash() -> Self;
}

impl ChildSpec {
    /// A child actor built by `make` at every (re)start.
    pub fn new<A, F>(name: impl Into<String>, restart: Restart, make: F) -> ChildSpec
    where
        A: Actor,
        A::Msg: Crashable,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        ChildSpec {
            name: name.into(),
            restart,
            start: Arc::new(move |sup: ActorCell| {
                let make = make.clone();
                Box::pin(async move {
                    let (actor, args) = make();
                    let (r, _join): (ActorRef<A::Msg>, _) =
                        Actor::spawn_linked(None, actor, args, sup).await?;
                    let crash_ref = r.clone();
                    let crash: CrashFn = Arc::new(move || crash_ref.cast(A::Msg::crash()).is_ok());
                    Ok(Started {
                        cell: r.get_cell(),
                        crash,
                    })
                })
            }),
        }
    }

    /// A nested supervisor.
    pub fn supervisor(spec: SupervisorSpec) -> ChildSpec {
        let name = spec.name.clone();
        let spec = Arc::new(spec);
        ChildSpec::new(name, Restart::Permanent, move || (Supervisor, spec.clone()))
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
    /// Restart backoff.
    pub backoff: Backoff,
    /// Children, in start order.
    pub children: Vec<ChildSpec>,
    /// Where statuses are reported.
    pub tree: Arc<ActorTree>,
}

/// One actor's status in the tree.
#[derive(Clone)]
struct Entry {
    supervisor: String,
    status: &'static str,
    restarts: u64,
    last_failure: Option<String>,
    crash: Option<CrashFn>,
    order: usize,
}

/// Statuses of every supervised actor, shared with the admin API.
#[derive(Default)]
pub struct ActorTree {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl std::fmt::Debug for ActorTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActorTree")
    }
}

impl ActorTree {
    fn update(&self, name: &str, f: impl FnOnce(&mut Entry)) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let order = entries.len();
        let e = entries.entry(name.to_string()).or_insert(Entry {
            supervisor: String::new(),
            status: "starting",
            restarts: 0,
            last_failure: None,
            crash: None,
            order,
        });
        f(e);
    }

    /// `[{name, supervisor, status, restarts, last_failure}]`, in start order.
    pub fn to_json(&self) -> serde_json::Value {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut list: Vec<(&String, &Entry)> = entries.iter().collect();
        list.sort_by_key(|(_, e)| e.order);
        serde_json::Value::Array(
            list.into_iter()
                .map(|(name, e)| {
                    json!({
                        "name": name,
                        "supervisor": e.supervisor,
                        "status": e.status,
                        "restarts": e.restarts,
                        "last_failure": e.last_failure,
                    })
                })
                .collect(),
        )
    }

    /// Names of every actor, in start order.
    pub fn names(&self) -> Vec<String> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut list: Vec<(&String, &Entry)> = entries.iter().collect();
        list.sort_by_key(|(_, e)| e.order);
        list.into_iter().map(|(n, _)| n.clone()).collect()
    }

    /// Restarts of `name` so far (0 if unknown).
    pub fn restarts(&self, name: &str) -> u64 {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(name).map_or(0, |e| e.restarts)
    }

    /// Status of `name` (`running`, `restarting`, `stopped`, `failed`).
    pub fn status(&self, name: &str) -> Option<&'static str> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(name).map(|e| e.status)
    }

    /// Makes `name` panic in its message handler. False when there is no such running actor.
    pub fn crash(&self, name: &str) -> bool {
        let crash = {
            let entries = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            entries.get(name).and_then(|e| e.crash.clone())
        };
        crash.is_some_and(|c| c())
    }
}

/// Supervisor messages.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// The backoff is over: start the pending children, in order.
    Restart,
    /// Panic (chaos testing).
    Crash,
}

impl Crashable for SupervisorMsg {
    fn crash() -> Self {
        SupervisorMsg::Crash
    }
}

/// The supervisor actor. Its arguments are its spec.
#[derive(Debug)]
pub struct Supervisor;

/// Supervisor state.
pub struct SupervisorState {
    spec: Arc<SupervisorSpec>,
    cells: Vec<Option<ActorCell>>,
    restarts: VecDeque<Instant>,
    /// Children waiting for a (backed-off) restart; they start together, in order.
    pending: std::collections::BTreeSet<usize>,
    /// A `Restart` message is on its way.
    scheduled: bool,
}

impl SupervisorState {
    async fn start_child(
        &mut self,
        myself: &ActorCell,
        i: usize,
    ) -> Result<(), ActorProcessingErr> {
        let spec = &self.spec.children[i];
        let tree = &self.spec.tree;
        match (spec.start)(myself.clone()).await {
            Ok(started) => {
                tree.update(&spec.name, |e| {
                    e.supervisor = self.spec.name.clone();
                    e.status = "running";
                    e.crash = Some(started.crash);
                });
                metrics::gauge!("sluice_actor_up", "actor" => spec.name.clone()).set(1.0);
                self.cells[i] = Some(started.cell);
                Ok(())
            }
            Err(e) => {
                let msg = format!(
                    "{}: child {} failed to start: {e}",
                    self.spec.name, spec.name
                );
                tree.update(&spec.name, |e| {
                    e.status = "failed";
                    e.last_failure = Some(msg.clone());
                });
                Err(msg.into())
            }
        }
    }

    /// Stops the running children among `indices`, in reverse order, and waits for them.
    async fn stop_children(&mut self, indices: impl DoubleEndedIterator<Item = usize>) {
        for i in indices.rev() {
            if let Some(cell) = self.cells[i].take() {
                let name = &self.spec.children[i].name;
                let _ = cell
                    .stop_and_wait(
                        Some("supervisor restart".into()),
                        Some(Duration::from_secs(5)),
                    )
                    .await;
                self.spec.tree.update(name, |e| {
                    e.status = "stopped";
                    e.crash = None;
                });
                metrics::gauge!("sluice_actor_up", "actor" => name.clone()).set(0.0);
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
            e.crash = None;
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

        let now = Instant::now();
        let period = self.spec.intensity.period;
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > period)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        if self.restarts.len() > self.spec.intensity.max_restarts {
            let n = self.cells.len();
            self.stop_children(0..n).await;
            metrics::counter!("sluice_supervisor_escalations_total", "supervisor" => self.spec.name.clone()).increment(1);
            let cause = format!(
                "supervisor {} gave up: more than {} restarts in {:?}; last: {} {}",
                self.spec.name,
                self.spec.intensity.max_restarts,
                period,
                child.name,
                failure.as_deref().unwrap_or("stopped"),
            );
            tracing::error!("{cause}");
            return Err(cause.into());
        }

        let n = self.cells.len();
        // Siblings restarted with the failed child: those running now (a Temporary child is
        // stopped but never started again; one that had already exited stays down).
        let affected = match self.spec.strategy {
            Strategy::OneForOne => i..i + 1,
            Strategy::RestForOne => i..n,
            Strategy::OneForAll => 0..n,
        };
        let to_start: Vec<usize> = affected
            .clone()
            .filter(|&j| {
                j == i
                    || (self.cells[j].is_some()
                        && self.spec.children[j].restart != Restart::Temporary)
            })
            .collect();
        if self.spec.strategy == Strategy::RestForOne {
            self.stop_children(i + 1..n).await;
        } else if self.spec.strategy == Strategy::OneForAll {
            self.stop_children(0..n).await;
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
        let delay = self.spec.backoff.delay(self.restarts.len());
        if delay.is_zero() && !self.scheduled {
            self.start_pending(&myself.get_cell()).await
        } else {
            if !self.scheduled {
                self.scheduled = true;
                let me = myself.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = me.cast(SupervisorMsg::Restart);
                });
            }
            Ok(())
        }
    }

    async fn start_pending(&mut self, myself: &ActorCell) -> Result<(), ActorProcessingErr> {
        while let Some(j) = self.pending.pop_first() {
            if self.cells[j].is_none() {
                self.start_child(myself, j).await?;
            }
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
        _myself: ActorRef<SupervisorMsg>,
        spec: Arc<SupervisorSpec>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let n = spec.children.len();
        Ok(SupervisorState {
            spec,
            cells: vec![None; n],
            restarts: VecDeque::new(),
            pending: Default::default(),
            scheduled: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        tracing::debug!(supervisor = %state.spec.name, strategy = state.spec.strategy.as_str(), "starting children");
        for i in 0..state.cells.len() {
            state.start_child(&myself.get_cell(), i).await?;
        }
        Ok(())
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
                state.start_pending(&myself.get_cell()).await
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

impl Actor for Guardian {
    type Msg = ();
    type State = Option<tokio::sync::oneshot::Sender<RootExit>>;
    type Arguments = (
        Arc<SupervisorSpec>,
        tokio::sync::oneshot::Sender<RootExit>,
        tokio::sync::oneshot::Sender<ActorRef<SupervisorMsg>>,
    );

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        (spec, exit, root_tx): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (root, _join) = Actor::spawn_linked(None, Supervisor, spec, myself.get_cell()).await?;
        let _ = root_tx.send(root);
        Ok(Some(exit))
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

/// Starts a root supervisor. Returns its reference and a receiver that tells how it ended.
pub async fn spawn_root(
    spec: SupervisorSpec,
) -> Result<
    (
        ActorRef<SupervisorMsg>,
        tokio::sync::oneshot::Receiver<RootExit>,
    ),
    SpawnErr,
> {
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let (root_tx, root_rx) = tokio::sync::oneshot::channel();
    Actor::spawn(None, Guardian, (Arc::new(spec), exit_tx, root_tx)).await?;
    let root = root_rx
        .await
        .map_err(|_| SpawnErr::StartupFailed("the root supervisor did not start".into()))?;
    Ok((root, exit_rx))
}

#[cfg(test)]
mod tests;
