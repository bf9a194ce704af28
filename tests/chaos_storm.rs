//! A restart storm: crashing the router past its supervisor's intensity escalates to the root,
//! which gives up. In its own test binary (process) because the root giving up sets the
//! process-wide `sluice_actor_up` gauges, which tests/chaos.rs asserts on.

mod support;

use std::time::Duration;

use sluice_actors::supervisor::{Intensity, RootExit};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_storm_escalates_to_the_root_which_gives_up() {
    let a = echo([127, 0, 0, 1], "a").await;
    let intensity = Intensity {
        max_restarts: 2,
        period: Duration::from_secs(30),
    };
    let (_dir, mut running) = start_chaos(
        intensity,
        &[
            (
                "ing.yaml",
                ingress("chaos", "chaos.test", &[("/", "Prefix", "web", 80)], &[]),
            ),
            ("svc.yaml", service("web", &[(a, true)])),
        ],
    )
    .await;
    let tree = running.tree.clone();
    let mut escalations = 0;
    let exit = loop {
        // Crash the router whenever it runs, until the root gives up.
        // The counts are read before the crash: the restart can be booked before `crash`
        // returns.
        let control_before = tree.restarts("control");
        let router_before = tree.restarts("router");
        let crashed = tree.crash("router", sluice_actors::supervisor::CrashPoint::Handler)
            == sluice_actors::supervisor::Crashed::Yes;
        if crashed {
            let t = tree.clone();
            let done = tokio::time::timeout(DEADLINE, async {
                loop {
                    if t.restarts("control") > control_before {
                        return true;
                    }
                    if t.restarts("router") > router_before && t.status("router") == Some("running")
                    {
                        return false;
                    }
                    if t.status("control") != Some("running")
                        && t.status("control") != Some("restarting")
                    {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            if done == Ok(true) {
                escalations += 1;
            }
        }
        if let Ok(exit) = tokio::time::timeout(Duration::from_millis(20), running.exited()).await {
            break exit;
        }
        // Traffic keeps flowing while only the control subtree restarts (before the root has
        // seen enough escalations to give up).
        if escalations < 2 {
            let resp = tokio::time::timeout(
                DEADLINE,
                request(running.http_addr, "GET", "chaos.test", "/"),
            )
            .await;
            assert!(matches!(resp, Ok(Ok((200, _)))), "{resp:?}");
        }
        assert!(escalations < 20, "the root never gave up");
    };
    match exit {
        Some(RootExit::Failed(cause)) => {
            assert!(cause.contains("supervisor root gave up"), "{cause}");
            assert!(cause.contains("control"), "{cause}");
        }
        other => panic!("expected the root to fail, got {other:?}"),
    }
    assert!(escalations >= 3, "control escalated {escalations} times");
}
