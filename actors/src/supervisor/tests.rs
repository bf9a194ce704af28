//! Unit tests of the supervisor: start/stop order, strategies, restart policies, intensity,
//! escalation, backoff and the tree's JSON. No network; a small worker actor logs its
//! lifecycle into a shared event log.

use super::*;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::worker::{Ctx, Mailbox};
use std::sync::atomic::{AtomicU64, Ordering};

use ractor::RpcReplyPort;

/// Instance ids, unique across the whole test binary.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// How long any wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(5);

type Log = Arc<Mutex<Vec<String>>>;
type Refs = Arc<Mutex<HashMap<String, Mailbox<WorkerMsg>>>>;

enum WorkerMsg {
    /// Stops normally.
    Stop,
    /// Replies with the instance id.
    Ping(RpcReplyPort<u64>),
}

/// How a test worker behaves.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Its `stop` never returns (to test the kill after the shutdown time).
    hang_on_stop: bool,
    /// It owns a background task.
    task: bool,
}

struct TestWorker {
    behaviour: Behaviour,
}

struct WorkerArgs {
    name: String,
    log: Log,
    refs: Refs,
}

struct WorkerState {
    name: String,
    id: u64,
    log: Log,
    hang_on_stop: bool,
}

impl Worker for TestWorker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Args = WorkerArgs;

    async fn start(
        &self,
        ctx: &mut Ctx<WorkerMsg>,
        args: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let id = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        args.refs
            .lock()
            .unwrap()
            .insert(args.name.clone(), ctx.mailbox());
        args.log
            .lock()
            .unwrap()
            .push(format!("start:{}", args.name));
        if self.behaviour.task {
            ctx.spawn("work", std::future::pending());
        }
        Ok(WorkerState {
            name: args.name,
            id,
            log: args.log,
            hang_on_stop: self.behaviour.hang_on_stop,
        })
    }

    async fn stop(&self, state: &mut WorkerState) {
        state
            .log
            .lock()
            .unwrap()
            .push(format!("stop:{}", state.name));
        if state.hang_on_stop {
            std::future::pending::<()>().await;
        }
    }

    async fn handle(
        &self,
        ctx: &mut Ctx<WorkerMsg>,
        msg: WorkerMsg,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Stop => ctx.stop(),
            WorkerMsg::Ping(reply) => {
                let _ = reply.send(state.id);
            }
        }
        Ok(())
    }
}

/// Polls `cond` every 2 ms until it holds; fails the test after [`DEADLINE`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(DEADLINE, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting for {what}");
}

/// Waits for the root to end.
async fn wait_exit(exit: tokio::sync::oneshot::Receiver<RootExit>) -> RootExit {
    tokio::time::timeout(DEADLINE, exit)
        .await
        .expect("the root supervisor did not end in time")
        .expect("the guardian dropped the exit sender")
}

/// Shared state of one test: the event log, the workers' current refs and the tree.
struct Harness {
    log: Log,
    refs: Refs,
    tree: Arc<ActorTree>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            log: Log::default(),
            refs: Refs::default(),
            tree: Arc::new(ActorTree::default()),
        }
    }

    fn worker(&self, name: &str, restart: Restart) -> ChildSpec {
        self.worker_with(name, restart, Behaviour::default())
    }

    fn worker_with(&self, name: &str, restart: Restart, behaviour: Behaviour) -> ChildSpec {
        let (log, refs, n) = (self.log.clone(), self.refs.clone(), name.to_string());
        ChildSpec::new(name, restart, move || {
            (
                TestWorker { behaviour },
                WorkerArgs {
                    name: n.clone(),
                    log: log.clone(),
                    refs: refs.clone(),
                },
            )
        })
    }

    /// A supervisor spec with a fast backoff (base 1 ms).
    fn sup(
        &self,
        name: &str,
        strategy: Strategy,
        intensity: Intensity,
        children: Vec<ChildSpec>,
    ) -> SupervisorSpec {
        SupervisorSpec {
            name: name.to_string(),
            strategy,
            intensity,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(5))
                .with_jitter(0.0),
            children,
            tree: self.tree.clone(),
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn starts(&self, name: &str) -> usize {
        let entry = format!("start:{name}");
        self.log().iter().filter(|e| **e == entry).count()
    }

    fn status(&self, name: &str) -> Option<&'static str> {
        self.tree.status(name)
    }

    fn is_running(&self, name: &str) -> bool {
        self.status(name) == Some("running")
    }

    /// Running and restarted exactly `restarts` times.
    fn restarted(&self, name: &str, restarts: u64) -> bool {
        self.is_running(name) && self.tree.restarts(name) == restarts
    }

    async fn wait_running(&self, names: &[&str]) {
        wait_until(&format!("{names:?} running"), || {
            names.iter().all(|n| self.is_running(n))
        })
        .await;
    }

    async fn wait_restarted(&self, name: &str, restarts: u64) {
        wait_until(
            &format!("{name} restarted {restarts} time(s) and running"),
            || self.restarted(name, restarts),
        )
        .await;
    }

    async fn wait_status(&self, name: &str, status: &str) {
        wait_until(&format!("{name} {status}"), || {
            self.status(name) == Some(status)
        })
        .await;
    }

    fn crash(&self, name: &str) {
        assert_eq!(
            self.tree.crash(name, CrashPoint::Handler),
            Crashed::Yes,
            "{name} is not running: cannot crash it"
        );
    }

    fn worker_ref(&self, name: &str) -> Mailbox<WorkerMsg> {
        self.refs
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no worker {name}"))
    }

    fn stop(&self, name: &str) {
        assert!(self.worker_ref(name).send(WorkerMsg::Stop), "send Stop");
    }

    /// The current instance id of worker `name`.
    async fn ping(&self, name: &str) -> u64 {
        let (tx, rx) = ractor::concurrency::oneshot();
        assert!(
            self.worker_ref(name).send(WorkerMsg::Ping(tx.into())),
            "ping {name}"
        );
        tokio::time::timeout(DEADLINE, rx)
            .await
            .expect("ping in time")
            .expect("ping answered")
    }
}

fn intensity(max_restarts: usize, period: Duration) -> Intensity {
    Intensity {
        max_restarts,
        period,
    }
}

fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_in_order_and_stop_in_reverse() {
    let h = Harness::new();
    let children = vec![
        h.worker("a", Restart::Permanent),
        h.worker("b", Restart::Permanent),
        h.worker("c", Restart::Permanent),
    ];
    let (root, exit) =
        spawn_root(h.sup("root1", Strategy::OneForOne, Intensity::default(), children))
            .await
            .unwrap();
    h.wait_running(&["a", "b", "c"]).await;
    assert_eq!(h.log(), strs(&["start:a", "start:b", "start:c"]));
    assert_eq!(h.tree.names(), strs(&["a", "b", "c"]));

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
    assert_eq!(
        h.log(),
        strs(&[
            "start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"
        ])
    );
    for name in ["a", "b", "c"] {
        assert_eq!(h.status(name), Some("stopped"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_restarts_only_the_failed_child() {
    let h = Harness::new();
    let children = vec![
        h.worker("a", Restart::Permanent),
        h.worker("b", Restart::Permanent),
        h.worker("c", Restart::Permanent),
    ];
    let (root, exit) =
        spawn_root(h.sup("root2", Strategy::OneForOne, Intensity::default(), children))
            .await
            .unwrap();
    h.wait_running(&["a", "b", "c"]).await;
    let (a, b, c) = (h.ping("a").await, h.ping("b").await, h.ping("c").await);
    let before = h.log_len();

    h.crash("b");
    h.wait_restarted("b", 1).await;
    assert_eq!(h.log()[before..], strs(&["start:b"]));
    assert_eq!(h.ping("a").await, a);
    assert_ne!(h.ping("b").await, b);
    assert_eq!(h.ping("c").await, c);
    assert_eq!((h.tree.restarts("a"), h.tree.restarts("c")), (0, 0));
    assert_eq!(h.status("b"), Some("running"));

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_failed_child_and_later_ones() {
    let h = Harness::new();
    let children = vec![
        h.worker("a", Restart::Permanent),
        h.worker("b", Restart::Permanent),
        h.worker("c", Restart::Permanent),
    ];
    let (root, exit) = spawn_root(h.sup(
        "root3",
        Strategy::RestForOne,
        Intensity::default(),
        children,
    ))
    .await
    .unwrap();
    h.wait_running(&["a", "b", "c"]).await;
    let a = h.ping("a").await;
    let before = h.log_len();

    h.crash("b");
    h.wait_restarted("b", 1).await;
    h.wait_restarted("c", 1).await;
    assert_eq!(h.log()[before..], strs(&["stop:c", "start:b", "start:c"]));
    assert_eq!(h.ping("a").await, a);
    assert_eq!(h.tree.restarts("a"), 0);

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_child() {
    let h = Harness::new();
    let children = vec![
        h.worker("a", Restart::Permanent),
        h.worker("b", Restart::Permanent),
        h.worker("c", Restart::Permanent),
    ];
    let (root, exit) =
        spawn_root(h.sup("root4", Strategy::OneForAll, Intensity::default(), children))
            .await
            .unwrap();
    h.wait_running(&["a", "b", "c"]).await;
    let a = h.ping("a").await;
    let before = h.log_len();

    h.crash("b");
    for name in ["a", "b", "c"] {
        h.wait_restarted(name, 1).await;
    }
    assert_eq!(
        h.log()[before..],
        strs(&["stop:c", "stop:a", "start:a", "start:b", "start:c"])
    );
    assert_ne!(h.ping("a").await, a);

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies() {
    let h = Harness::new();
    let children = vec![
        h.worker("transient", Restart::Transient),
        h.worker("temp_crash", Restart::Temporary),
        h.worker("temp_stop", Restart::Temporary),
        h.worker("permanent", Restart::Permanent),
    ];
    let (root, exit) = spawn_root(h.sup(
        "root5",
        Strategy::OneForOne,
        intensity(10, Duration::from_secs(10)),
        children,
    ))
    .await
    .unwrap();
    h.wait_running(&["transient", "temp_crash", "temp_stop", "permanent"])
        .await;

    // Transient: restarted after a crash...
    h.crash("transient");
    h.wait_restarted("transient", 1).await;
    // ...but not after a normal stop.
    h.stop("transient");
    h.wait_status("transient", "stopped").await;
    // Temporary: never restarted.
    h.crash("temp_crash");
    h.wait_status("temp_crash", "failed").await;
    h.stop("temp_stop");
    h.wait_status("temp_stop", "stopped").await;
    // Permanent: restarted after a normal stop. The supervisor handles events one at a time,
    // so once this restart is visible, the decisions above have all been taken.
    h.stop("permanent");
    h.wait_restarted("permanent", 1).await;

    assert_eq!(
        (h.status("transient"), h.tree.restarts("transient")),
        (Some("stopped"), 1)
    );
    assert_eq!(
        (h.status("temp_crash"), h.tree.restarts("temp_crash")),
        (Some("failed"), 0)
    );
    assert_eq!(
        (h.status("temp_stop"), h.tree.restarts("temp_stop")),
        (Some("stopped"), 0)
    );
    assert_eq!(h.starts("transient"), 2);
    assert_eq!(h.starts("temp_crash"), 1);
    assert_eq!(h.starts("temp_stop"), 1);
    assert_eq!(h.starts("permanent"), 2);
    assert_eq!(
        h.tree.crash("transient", CrashPoint::Handler),
        Crashed::NoSuchActor,
        "a stopped child has no crash hook"
    );

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intensity_overflow_makes_the_root_give_up() {
    let h = Harness::new();
    let children = vec![
        h.worker("x", Restart::Permanent),
        h.worker("y", Restart::Permanent),
    ];
    let (_root, exit) = spawn_root(h.sup(
        "root6",
        Strategy::OneForOne,
        intensity(2, Duration::from_secs(10)),
        children,
    ))
    .await
    .unwrap();
    h.wait_running(&["x", "y"]).await;

    h.crash("x");
    h.wait_restarted("x", 1).await;
    h.crash("x");
    h.wait_restarted("x", 2).await;
    h.crash("x");

    let RootExit::Failed(cause) = wait_exit(exit).await else {
        panic!("the root stopped instead of failing");
    };
    assert!(cause.contains("root6"), "cause: {cause}");
    assert!(cause.contains("gave up"), "cause: {cause}");
    assert!(
        cause.contains("crash requested in the handler of x"),
        "cause: {cause}"
    );
    // Every child was stopped: y normally (post_stop ran), x as it crashed.
    assert_eq!(h.log().last().map(String::as_str), Some("stop:y"));
    assert_eq!(h.starts("x"), 3);
    assert_eq!(h.status("x"), Some("failed"));
    assert_eq!(h.status("y"), Some("stopped"));
    assert_eq!(h.tree.restarts("x"), 2);
}

/// On the paused clock: sleeping advances the fake time instantly.
#[tokio::test(start_paused = true)]
async fn restarts_outside_the_intensity_window_do_not_count() {
    let h = Harness::new();
    let period = Duration::from_millis(200);
    let children = vec![h.worker("x", Restart::Permanent)];
    let (root, mut exit) =
        spawn_root(h.sup("root7", Strategy::OneForOne, intensity(2, period), children))
            .await
            .unwrap();
    h.wait_running(&["x"]).await;

    for n in 1..=3 {
        h.crash("x");
        h.wait_restarted("x", n).await;
        // Let the previous restart leave the window (fake time).
        tokio::time::sleep(period + Duration::from_millis(1)).await;
    }
    assert_eq!(h.status("x"), Some("running"));
    assert_eq!(h.tree.restarts("x"), 3);
    assert!(matches!(
        exit.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty)
    ));

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_through_a_nested_supervisor() {
    let h = Harness::new();
    let one_in_10s = intensity(1, Duration::from_secs(10));
    let mid = h.sup(
        "mid",
        Strategy::OneForOne,
        one_in_10s,
        vec![h.worker("w", Restart::Permanent)],
    );
    let (_root, exit) = spawn_root(h.sup(
        "root8",
        Strategy::OneForOne,
        one_in_10s,
        vec![ChildSpec::supervisor(mid)],
    ))
    .await
    .unwrap();
    h.wait_running(&["mid", "w"]).await;
    assert_eq!(h.tree.names(), strs(&["mid", "w"]));
    let w0 = h.ping("w").await;

    // First crash: mid restarts w.
    h.crash("w");
    h.wait_restarted("w", 1).await;
    let w1 = h.ping("w").await;
    assert_ne!(w1, w0);
    // Second crash within 10 s: mid gives up, root restarts mid, which starts a new w.
    h.crash("w");
    wait_until("mid restarted by root and w running", || {
        h.restarted("mid", 1) && h.is_running("w")
    })
    .await;
    let w2 = h.ping("w").await;
    assert_ne!(w2, w1);
    let json = h.tree.to_json();
    let mid_entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "mid")
        .unwrap();
    assert_eq!(mid_entry["supervisor"], "root8");
    let mid_failure = mid_entry["last_failure"].as_str().unwrap();
    assert!(
        mid_failure.contains("supervisor mid gave up"),
        "{mid_failure}"
    );

    // Twice more: the new mid gives up too, and root exceeds its own intensity.
    h.crash("w");
    h.wait_restarted("w", 2).await;
    h.crash("w");
    let RootExit::Failed(cause) = wait_exit(exit).await else {
        panic!("the root stopped instead of failing");
    };
    assert!(cause.contains("supervisor root8 gave up"), "cause: {cause}");
    assert!(cause.contains("mid"), "cause: {cause}");
    assert_eq!(h.tree.restarts("mid"), 1);
    assert_eq!(h.status("mid"), Some("failed"));
    assert_eq!(h.starts("w"), 4);
}

#[test]
fn backoff_delays() {
    let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(35)).with_jitter(0.0);
    assert_eq!(restart_delay(&b, 0), Duration::ZERO);
    assert_eq!(restart_delay(&b, 1), Duration::ZERO);
    assert_eq!(restart_delay(&b, 2), Duration::from_millis(10));
    assert_eq!(restart_delay(&b, 3), Duration::from_millis(20));
    assert_eq!(restart_delay(&b, 4), Duration::from_millis(35));
    assert_eq!(restart_delay(&b, 64), Duration::from_millis(35));
    assert_eq!(restart_delay(&b, usize::MAX), Duration::from_millis(35));
    let wide = Backoff::new(Duration::from_secs(1), Duration::MAX);
    assert_eq!(restart_delay(&wide, 5), Duration::from_secs(8));
    assert_eq!(
        restart_delay(&default_backoff(), 2),
        Duration::from_millis(50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_restart_in_a_window_waits_for_the_backoff() {
    let h = Harness::new();
    let mut spec = h.sup(
        "root9",
        Strategy::OneForOne,
        intensity(5, Duration::from_secs(30)),
        vec![h.worker("x", Restart::Permanent)],
    );
    spec.backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let (root, exit) = spawn_root(spec).await.unwrap();
    h.wait_running(&["x"]).await;

    // The first restart in the window is immediate.
    h.crash("x");
    h.wait_restarted("x", 1).await;
    // The second waits `base`.
    let crashed = Instant::now();
    h.crash("x");
    h.wait_restarted("x", 2).await;
    let took = crashed.elapsed();
    assert!(
        took >= Duration::from_millis(90),
        "second restart after {took:?}"
    );

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_json_shape() {
    let h = Harness::new();
    let children = vec![
        h.worker("a", Restart::Permanent),
        h.worker("b", Restart::Permanent),
    ];
    let (root, exit) = spawn_root(h.sup(
        "root10",
        Strategy::OneForOne,
        Intensity::default(),
        children,
    ))
    .await
    .unwrap();
    h.wait_running(&["a", "b"]).await;
    h.crash("b");
    h.wait_restarted("b", 1).await;

    let json = h.tree.to_json();
    let list = json.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    for entry in list {
        let obj = entry.as_object().expect("an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["last_failure", "name", "restarts", "status", "supervisor"]
        );
        assert_eq!(obj["supervisor"], "root10");
        assert_eq!(obj["status"], "running");
    }
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[0]["restarts"], 0);
    assert!(list[0]["last_failure"].is_null());
    assert_eq!(list[1]["name"], "b");
    assert_eq!(list[1]["restarts"], 1);
    let failure = list[1]["last_failure"].as_str().expect("a failure string");
    assert!(
        failure.contains("crash requested in the handler of b"),
        "last_failure: {failure}"
    );

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_restart_never_restarts_temporary_children() {
    let h = Harness::new();
    let children = vec![
        h.worker("a", Restart::Permanent),
        h.worker("tmp_exited", Restart::Temporary),
        h.worker("tmp_running", Restart::Temporary),
    ];
    let (root, exit) = spawn_root(h.sup(
        "root11",
        Strategy::OneForAll,
        Intensity::default(),
        children,
    ))
    .await
    .unwrap();
    h.wait_running(&["a", "tmp_exited", "tmp_running"]).await;

    h.stop("tmp_exited");
    h.wait_status("tmp_exited", "stopped").await;
    let before = h.log_len();
    h.crash("a");
    h.wait_restarted("a", 1).await;

    // "Temporary: never restarted", also not as a sibling of a failed child (as in OTP): an
    // exited one stays down, a running one is stopped and stays down.
    assert_eq!(h.log()[before..], strs(&["stop:tmp_running", "start:a"]));
    for name in ["tmp_exited", "tmp_running"] {
        assert_eq!(h.starts(name), 1, "{name}");
        assert_eq!(h.status(name), Some("stopped"), "{name}");
        assert_eq!(h.tree.restarts(name), 0, "{name}");
    }

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_with_backoff_restarts_in_order() {
    let h = Harness::new();
    let children = vec![
        h.worker("a", Restart::Permanent),
        h.worker("b", Restart::Permanent),
        h.worker("c", Restart::Permanent),
    ];
    let mut spec = h.sup(
        "root12",
        Strategy::RestForOne,
        intensity(10, Duration::from_secs(30)),
        children,
    );
    spec.backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
    let (root, exit) = spawn_root(spec).await.unwrap();
    h.wait_running(&["a", "b", "c"]).await;

    // Restart 1 of the window: immediate.
    h.crash("b");
    h.wait_restarted("c", 1).await;
    h.wait_restarted("b", 1).await;
    let before = h.log_len();
    // Restart 2: b and c wait 200 ms. While they wait, a fails (restart 3: 400 ms).
    h.crash("b");
    h.wait_status("b", "restarting").await;
    h.crash("a");
    // b and c were already waiting for their restart: a's failure restarts a (and keeps b and c
    // pending), so the counts are a 1, b and c 2.
    for (name, n) in [("a", 1), ("b", 2), ("c", 2)] {
        h.wait_restarted(name, n).await;
    }
    wait_until("4 log entries", || h.log_len() >= before + 4).await;
    // rest_for_one: b and c depend on a, so they must not run while a is down.
    assert_eq!(
        h.log()[before..],
        strs(&["stop:c", "start:a", "start:b", "start:c"])
    );

    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

/// A worker whose start fails the next `n` times once `armed` is set.
struct Flaky {
    armed: Arc<std::sync::atomic::AtomicBool>,
    failures_left: Arc<AtomicU64>,
    log: Log,
}

impl Worker for Flaky {
    type Msg = crate::worker::NoMsg;
    type State = ();
    type Args = ();

    async fn start(
        &self,
        _ctx: &mut Ctx<crate::worker::NoMsg>,
        (): (),
    ) -> Result<(), ActorProcessingErr> {
        if self.armed.load(Ordering::SeqCst)
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.log.lock().unwrap().push("failstart".into());
            return Err("not yet".into());
        }
        self.log.lock().unwrap().push("start".into());
        Ok(())
    }
}

fn flaky(h: &Harness, failures: u64) -> (ChildSpec, Arc<std::sync::atomic::AtomicBool>) {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures_left = Arc::new(AtomicU64::new(failures));
    let (a, log) = (armed.clone(), h.log.clone());
    let spec = ChildSpec::new("flaky", Restart::Permanent, move || {
        (
            Flaky {
                armed: a.clone(),
                failures_left: failures_left.clone(),
                log: log.clone(),
            },
            (),
        )
    });
    (spec, armed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_that_fail_are_retried_until_one_succeeds() {
    let h = Harness::new();
    let (spec, armed) = flaky(&h, 2);
    let (root, exit) = spawn_root(h.sup(
        "root22",
        Strategy::OneForOne,
        intensity(5, Duration::from_secs(30)),
        vec![spec],
    ))
    .await
    .unwrap();
    h.wait_running(&["flaky"]).await;
    armed.store(true, Ordering::SeqCst);
    h.crash("flaky");
    // One restart for the crash, two more for the failed attempts.
    h.wait_restarted("flaky", 3).await;
    assert_eq!(h.log(), strs(&["start", "failstart", "failstart", "start"]));
    let failure = h.tree.last_failure("flaky").unwrap();
    assert!(failure.contains("not yet"), "{failure}");
    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restarts_count_toward_the_intensity() {
    let h = Harness::new();
    let (spec, armed) = flaky(&h, 100);
    let (_root, exit) = spawn_root(h.sup(
        "root23",
        Strategy::OneForOne,
        intensity(3, Duration::from_secs(30)),
        vec![spec],
    ))
    .await
    .unwrap();
    h.wait_running(&["flaky"]).await;
    armed.store(true, Ordering::SeqCst);
    h.crash("flaky");
    let RootExit::Failed(cause) = wait_exit(exit).await else {
        panic!("the root should give up")
    };
    assert!(cause.contains("gave up"), "{cause}");
    assert!(cause.contains("not yet"), "{cause}");
    // The crash and two failed attempts fit in 3; the third failed attempt does not.
    assert_eq!(
        h.log(),
        strs(&["start", "failstart", "failstart", "failstart"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_cannot_start_fails_the_whole_start_with_its_error() {
    let h = Harness::new();
    let (spec, armed) = flaky(&h, 1);
    armed.store(true, Ordering::SeqCst);
    let inner = h.sup(
        "inner",
        Strategy::OneForOne,
        Intensity::default(),
        vec![h.worker("a", Restart::Permanent), spec],
    );
    let result = spawn_root(h.sup(
        "root24",
        Strategy::OneForOne,
        Intensity::default(),
        vec![ChildSpec::supervisor(inner)],
    ))
    .await;
    let Err(cause) = result else {
        panic!("the start should fail")
    };
    assert!(cause.contains("child flaky failed to start"), "{cause}");
    assert!(cause.contains("not yet"), "{cause}");
    assert!(!cause.contains("panicked during startup"), "{cause}");
    // The sibling that had started was stopped again.
    wait_until("a stopped", || h.log().contains(&"stop:a".to_owned())).await;
}

#[tokio::test(start_paused = true)]
async fn a_child_that_does_not_stop_in_its_shutdown_time_is_killed() {
    let h = Harness::new();
    let hanging = h
        .worker_with(
            "hang",
            Restart::Permanent,
            Behaviour {
                hang_on_stop: true,
                task: true,
            },
        )
        .with_shutdown(Duration::from_secs(3));
    let inner = h.sup(
        "inner25",
        Strategy::OneForOne,
        Intensity::default(),
        vec![hanging, h.worker("b", Restart::Permanent)],
    );
    let nested = ChildSpec::supervisor(inner);
    assert_eq!(
        nested.shutdown,
        Duration::from_secs(3) + DEFAULT_SHUTDOWN + Duration::from_millis(100),
        "a nested supervisor gets the sum of its children's shutdown times"
    );
    let (root, exit) = spawn_root(h.sup(
        "root25",
        Strategy::OneForOne,
        Intensity::default(),
        vec![nested],
    ))
    .await
    .unwrap();
    h.wait_running(&["hang", "b"]).await;
    let before = Instant::now();
    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
    // On the paused clock: `hang` was given exactly its 3 s, then killed.
    let took = before.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(
        h.log(),
        strs(&["start:hang", "start:b", "stop:b", "stop:hang"])
    );
    assert_eq!(h.status("hang"), Some("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_ends_fails_its_actor_and_chaos_reaches_it() {
    let h = Harness::new();
    let with_task = h.worker_with(
        "t",
        Restart::Permanent,
        Behaviour {
            task: true,
            ..Behaviour::default()
        },
    );
    let (root, exit) = spawn_root(h.sup(
        "root26",
        Strategy::OneForOne,
        Intensity::default(),
        vec![with_task, h.worker("plain", Restart::Permanent)],
    ))
    .await
    .unwrap();
    h.wait_running(&["t", "plain"]).await;
    assert_eq!(h.tree.crash("plain", CrashPoint::Task), Crashed::NoTask);
    assert_eq!(
        h.tree.crash("nobody", CrashPoint::Task),
        Crashed::NoSuchActor
    );
    assert_eq!(h.tree.crash("t", CrashPoint::Task), Crashed::Yes);
    h.wait_restarted("t", 1).await;
    let failure = h.tree.last_failure("t").unwrap();
    assert!(failure.contains("task work of t panicked"), "{failure}");
    assert_eq!(h.tree.restarts("plain"), 0);
    root.stop(None);
    assert!(matches!(wait_exit(exit).await, RootExit::Stopped));
}
