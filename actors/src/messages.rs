//! Typed messages between actors, and the shared "topics" that carry state between them.
//!
//! Commands are actor messages. State that a restarted actor must rebuild from is kept in
//! `tokio::sync::watch` topics owned by the runtime (above every actor): the watcher publishes
//! the latest source state, the router the latest translation. A (re)started subscriber reads
//! the current value at once and then every change, so "ask the peer for the full state on
//! start" needs no request/response and cannot race with the peer's own restart.

use std::sync::Arc;

use sluice::model::Diagnostic;
use sluice::source::manifests::Loaded;
use sluice::translate::Translation;
use tokio::sync::watch;

use crate::supervisor::Crashable;

/// The latest state of the configuration source.
pub type SourceTopic = watch::Sender<Option<Arc<Loaded>>>;

/// What the router derived from one source state.
#[derive(Debug)]
pub struct Desired {
    /// The source state it was built from.
    pub loaded: Arc<Loaded>,
    /// The translation (model and diagnostics).
    pub translation: Translation,
}

/// The latest translation.
pub type DesiredTopic = watch::Sender<Option<Arc<Desired>>>;

/// Diagnostics about certificates (Secrets), published by the certificate actor.
pub type CertDiagnosticsTopic = watch::Sender<Arc<Vec<Diagnostic>>>;

/// Watcher messages.
#[derive(Debug)]
pub enum WatcherMsg {
    /// The source delivered a new state.
    Loaded(Box<Loaded>),
    /// Panic (chaos testing).
    Crash,
}

/// Router messages.
#[derive(Debug)]
pub enum RouterMsg {
    /// A new source state to translate, compile and publish.
    State(Arc<Loaded>),
    /// Panic (chaos testing).
    Crash,
}

/// Certificate actor messages.
#[derive(Debug)]
pub enum CertificateMsg {
    /// A new translation: rebuild the certificate snapshot.
    Desired(Arc<Desired>),
    /// Panic (chaos testing).
    Crash,
}

/// Listener messages (the accept loop runs in a task owned by the actor's state).
#[derive(Debug)]
pub enum ListenerMsg {
    /// Panic (chaos testing).
    Crash,
}

/// Admin actor messages.
#[derive(Debug)]
pub enum AdminMsg {
    /// Panic (chaos testing).
    Crash,
}

macro_rules! crashable {
    ($($t:ty),*) => {$(
        impl Crashable for $t {
            fn crash() -> Self {
                <$t>::Crash
            }
        }
    )*};
}
crashable!(WatcherMsg, RouterMsg, CertificateMsg, ListenerMsg, AdminMsg);

/// Aborts a task when dropped: actor state owns its background tasks through this, so that a
/// crashed actor's tasks end with it (ractor drops the state of a failed actor).
#[derive(Debug)]
pub struct TaskGuard(pub tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forwards every value of a topic (the current one first) to an actor as a message, until the
/// actor is gone. Returns the guard that stops the forwarding.
pub fn forward<T, M>(
    mut rx: watch::Receiver<Option<T>>,
    to: ractor::ActorRef<M>,
    wrap: impl Fn(T) -> M + Send + 'static,
) -> TaskGuard
where
    T: Clone + Send + Sync + 'static,
    M: ractor::Message,
{
    TaskGuard(tokio::spawn(async move {
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(v) = current
                && to.cast(wrap(v)).is_err()
            {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }))
}
