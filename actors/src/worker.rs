//! The shape of every sluice actor: a [`Worker`] (start, handle messages, stop) run inside a
//! generic ractor actor, [`Supervised`], that also owns the worker's background tasks.
//!
//! **A task is part of its actor.** A worker starts long-running work (an accept loop, a
//! watch, an election loop) with [`Ctx::spawn`]. The task is aborted when the actor stops or
//! fails, and the task ending for any reason (a panic, an unexpected return) fails the actor:
//! a monitor turns the end into a message, the handler returns the error, ractor reports
//! `ActorFailed`, and the supervisor restarts the actor by its policy. So nothing long-running
//! escapes supervision, and `/api/actors` shows the failure as soon as it happens.
//!
//! **Chaos goes through the wrapper**, not through a `Crash` variant in every production
//! message type: [`Envelope::Crash`] panics in the handler, and every owned task carries a
//! chaos signal that makes it panic inside the task (`POST /debug/crash/{actor}?in=task`).
//! Production messages stay what the actor needs, and every actor gets both crash points for
//! free, including actors added later.

use std::future::Future;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// An actor's behaviour. [`Supervised`] runs it.
pub trait Worker: Sized + Send + Sync + 'static {
    /// Its own messages (an uninhabited enum such as [`NoMsg`] when it has none).
    type Msg: Send + 'static;
    /// Its state.
    type State: Send + 'static;
    /// What it is started with: exactly what it uses.
    type Args: Send + 'static;

    /// Builds the state and starts background tasks with [`Ctx::spawn`]. An error here makes
    /// the start fail (the supervisor retries with backoff).
    fn start(
        &self,
        ctx: &mut Ctx<Self::Msg>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::State, ActorProcessingErr>> + Send;

    /// Handles one message. An error fails the actor.
    fn handle(
        &self,
        ctx: &mut Ctx<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        let _ = (ctx, msg, state);
        async { Ok(()) }
    }

    /// Runs when the actor stops cleanly (not when it fails or is killed), after its tasks
    /// were aborted.
    fn stop(&self, state: &mut Self::State) -> impl Future<Output = ()> + Send {
        let _ = state;
        async {}
    }
}

/// The message type of a worker that receives none.
#[derive(Debug)]
pub enum NoMsg {}

/// What [`Supervised`] receives: the worker's messages and the runtime's own.
#[derive(Debug)]
pub enum Envelope<M> {
    /// A message for the worker.
    Msg(M),
    /// An owned task ended: fail the actor with this cause.
    TaskEnded(String),
    /// Panic in the handler (chaos testing).
    Crash,
}

/// Sends a worker messages (cheap to clone).
#[derive(Debug)]
pub struct Mailbox<M: Send + 'static>(ActorRef<Envelope<M>>);

impl<M: Send + 'static> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Mailbox(self.0.clone())
    }
}

impl<M: Send + 'static> Mailbox<M> {
    /// Sends `msg`; false when the actor is gone.
    pub fn send(&self, msg: M) -> bool {
        self.0.cast(Envelope::Msg(msg)).is_ok()
    }
}

/// Makes an actor's tasks panic (chaos testing). One per actor instance.
#[derive(Debug, Default)]
pub struct TaskChaos {
    crash: watch::Sender<u64>,
}

impl TaskChaos {
    /// Asks every task of the actor to panic; false when it has no task.
    pub fn crash(&self) -> bool {
        if self.crash.receiver_count() == 0 {
            return false;
        }
        self.crash.send_modify(|n| *n += 1);
        true
    }
}

/// A task owned by an actor: aborted (with its monitor) when dropped.
#[derive(Debug)]
struct OwnedTask {
    task: AbortHandle,
    monitor: AbortHandle,
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.monitor.abort();
        self.task.abort();
    }
}

/// What a worker can do besides handling its state: send itself messages, own tasks.
#[derive(Debug)]
pub struct Ctx<M: Send + 'static> {
    myself: ActorRef<Envelope<M>>,
    name: String,
    tasks: Vec<OwnedTask>,
    chaos: Arc<TaskChaos>,
}

impl<M: Send + 'static> Ctx<M> {
    /// A handle that sends this actor messages.
    pub fn mailbox(&self) -> Mailbox<M> {
        Mailbox(self.myself.clone())
    }

    /// Stops the actor cleanly (after the current message); its supervisor sees it stop, not
    /// fail.
    pub fn stop(&self) {
        self.myself.stop(None);
    }

    /// The actor's name (as in `/api/actors`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` as a task of this actor (see the module documentation): aborted when the
    /// actor ends, and its end, for any reason, fails the actor. Work that is meant to finish
    /// and then stay quiet awaits `std::future::pending()`.
    pub fn spawn(&mut self, task: &str, work: impl Future<Output = ()> + Send + 'static) {
        let mut crash = self.chaos.crash.subscribe();
        let what = format!("task {task} of {}", self.name);
        let chaos_what = what.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                biased;
                Ok(()) = crash.changed() => panic!("chaos: crash requested in {chaos_what}"),
                () = work => {}
            }
        });
        let task = handle.abort_handle();
        let me = self.myself.clone();
        let monitor = tokio::spawn(async move {
            let cause = match handle.await {
                Ok(()) => format!("{what} ended"),
                Err(e) if e.is_panic() => {
                    let payload = e.into_panic();
                    let msg = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".to_owned());
                    format!("{what} panicked: {msg}")
                }
                // Aborted: the actor is stopping.
                Err(_) => return,
            };
            let _ = me.cast(Envelope::TaskEnded(cause));
        });
        self.tasks.push(OwnedTask {
            task,
            monitor: monitor.abort_handle(),
        });
    }
}

/// Runs a [`Worker`] as a ractor actor (see the module documentation).
#[derive(Debug)]
pub struct Supervised<W>(pub W);

/// [`Supervised`]'s state: the worker's state and its context (which owns the tasks).
#[derive(Debug)]
pub struct Held<W: Worker> {
    ctx: Ctx<W::Msg>,
    state: W::State,
}

/// [`Supervised`]'s arguments.
#[derive(Debug)]
pub struct Start<A> {
    /// The actor's name.
    pub name: String,
    /// The worker's arguments.
    pub args: A,
    /// The chaos handle of this instance.
    pub chaos: Arc<TaskChaos>,
}

impl<W: Worker> Actor for Supervised<W> {
    type Msg = Envelope<W::Msg>;
    type State = Held<W>;
    type Arguments = Start<W::Args>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        start: Start<W::Args>,
    ) -> Result<Held<W>, ActorProcessingErr> {
        let mut ctx = Ctx {
            myself,
            name: start.name,
            tasks: Vec::new(),
            chaos: start.chaos,
        };
        let state = self.0.start(&mut ctx, start.args).await?;
        Ok(Held { ctx, state })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        held: &mut Held<W>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Envelope::Msg(m) => self.0.handle(&mut held.ctx, m, &mut held.state).await,
            Envelope::TaskEnded(cause) => Err(cause.into()),
            Envelope::Crash => panic!("chaos: crash requested in the handler of {}", held.ctx.name),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        held: &mut Held<W>,
    ) -> Result<(), ActorProcessingErr> {
        held.ctx.tasks.clear();
        self.0.stop(&mut held.state).await;
        Ok(())
    }
}

/// Crash entry points of a running actor, for the tree.
pub(crate) fn crash_points<M: Send + 'static>(
    actor: &ActorRef<Envelope<M>>,
    chaos: &Arc<TaskChaos>,
) -> (crate::supervisor::CrashFn, crate::supervisor::CrashFn) {
    let r = actor.clone();
    let handler: crate::supervisor::CrashFn = Arc::new(move || r.cast(Envelope::Crash).is_ok());
    let chaos = chaos.clone();
    let task: crate::supervisor::CrashFn = Arc::new(move || chaos.crash());
    (handler, task)
}
