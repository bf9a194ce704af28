//! The statuses of every supervised actor, shared with the admin API (`/api/actors`) and the
//! chaos endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;

/// Makes an actor panic (chaos testing); false when it could not be asked.
pub type CrashFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// Where a crash is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// In the actor's message handler.
    Handler,
    /// Inside the actor's background task(s).
    Task,
}

/// What a crash request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crashed {
    /// The crash was injected.
    Yes,
    /// No running actor of that name.
    NoSuchActor,
    /// The actor runs but has no background task.
    NoTask,
}

/// One actor's status in the tree.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) supervisor: String,
    pub(super) status: &'static str,
    pub(super) restarts: u64,
    pub(super) last_failure: Option<String>,
    pub(super) crash_handler: Option<CrashFn>,
    pub(super) crash_task: Option<CrashFn>,
    order: usize,
}

/// Statuses of every supervised actor.
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
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn update(&self, name: &str, f: impl FnOnce(&mut Entry)) {
        let mut entries = self.lock();
        let order = entries.len();
        let e = entries.entry(name.to_string()).or_insert(Entry {
            supervisor: String::new(),
            status: "starting",
            restarts: 0,
            last_failure: None,
            crash_handler: None,
            crash_task: None,
            order,
        });
        f(e);
    }

    fn in_order(entries: &BTreeMap<String, Entry>) -> Vec<(&String, &Entry)> {
        let mut list: Vec<(&String, &Entry)> = entries.iter().collect();
        list.sort_by_key(|(_, e)| e.order);
        list
    }

    /// `[{name, supervisor, status, restarts, last_failure}]`, in start order.
    pub fn to_json(&self) -> serde_json::Value {
        let entries = self.lock();
        serde_json::Value::Array(
            Self::in_order(&entries)
                .into_iter()
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
        let entries = self.lock();
        Self::in_order(&entries)
            .into_iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `(name, supervisor)` of every actor, in start order.
    pub fn supervised(&self) -> Vec<(String, String)> {
        let entries = self.lock();
        Self::in_order(&entries)
            .into_iter()
            .map(|(n, e)| (n.clone(), e.supervisor.clone()))
            .collect()
    }

    /// Restarts of `name` so far (0 if unknown).
    pub fn restarts(&self, name: &str) -> u64 {
        self.lock().get(name).map_or(0, |e| e.restarts)
    }

    /// Status of `name` (`starting`, `running`, `restarting`, `stopped`, `failed`).
    pub fn status(&self, name: &str) -> Option<&'static str> {
        self.lock().get(name).map(|e| e.status)
    }

    /// The last failure of `name`.
    pub fn last_failure(&self, name: &str) -> Option<String> {
        self.lock().get(name).and_then(|e| e.last_failure.clone())
    }

    /// True when `name` runs and owns background tasks (chaos can crash them).
    pub fn has_task(&self, name: &str) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|e| e.crash_task.is_some())
    }

    /// Makes `name` panic at `point`.
    pub fn crash(&self, name: &str, point: CrashPoint) -> Crashed {
        let (handler, task) = {
            let entries = self.lock();
            match entries.get(name) {
                Some(e) => (e.crash_handler.clone(), e.crash_task.clone()),
                None => return Crashed::NoSuchActor,
            }
        };
        match point {
            CrashPoint::Handler => match handler {
                Some(c) if c() => Crashed::Yes,
                _ => Crashed::NoSuchActor,
            },
            CrashPoint::Task => match (handler, task) {
                (None, _) => Crashed::NoSuchActor,
                (Some(_), Some(c)) if c() => Crashed::Yes,
                (Some(_), _) => Crashed::NoTask,
            },
        }
    }
}
