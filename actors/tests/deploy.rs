//! The manifests in deploy/kubernetes agree with the binary: the admin API stays on loopback,
//! only the metrics listener is exposed (probes on it), the kubelet waits longer than the
//! shutdown takes, and `sluice run` accepts the Deployment's arguments.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Probe, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn container() -> Container {
    let deployment: Deployment =
        serde_saphyr::from_str(&read("40-deployment.yaml")).expect("a Deployment");
    let spec = deployment.spec.template.spec.expect("pod spec");
    let mut containers = spec.containers;
    assert_eq!(containers.len(), 1);
    containers.remove(0)
}

/// `--name=value` arguments of the container.
fn flags(c: &Container) -> BTreeMap<String, String> {
    c.args
        .iter()
        .flatten()
        .filter_map(|a| {
            let (k, v) = a.strip_prefix("--")?.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn duration(flags: &BTreeMap<String, String>, name: &str, default: &str) -> Duration {
    let text = flags.get(name).map_or(default, String::as_str);
    sluice::translate::annotations::parse_duration(text)
        .unwrap_or_else(|| panic!("--{name}={text} is not a duration"))
}

/// The container port a probe or Service port names (by name or number).
fn port_number(c: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

fn probe_port(c: &Container, probe: Option<&Probe>, what: &str) -> i32 {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .unwrap_or_else(|| panic!("an HTTP {what} probe"));
    port_number(c, &get.port)
}

#[test]
fn the_admin_api_stays_on_loopback_and_only_metrics_are_exposed() {
    let c = container();
    let flags = flags(&c);
    let admin: SocketAddr = flags["admin-addr"].parse().expect("--admin-addr");
    assert!(admin.ip().is_loopback(), "--admin-addr {admin}");
    let metrics: SocketAddr = flags
        .get("metrics-addr")
        .expect("--metrics-addr")
        .parse()
        .expect("--metrics-addr");
    let metrics_port = i32::from(metrics.port());

    let ports: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    assert!(
        !ports.contains(&i32::from(admin.port())),
        "the admin port is not a container port: {ports:?}"
    );
    assert!(ports.contains(&metrics_port), "{ports:?}");
    assert_eq!(
        probe_port(&c, c.readiness_probe.as_ref(), "readiness"),
        metrics_port
    );
    assert_eq!(
        probe_port(&c, c.liveness_probe.as_ref(), "liveness"),
        metrics_port
    );

    // No Service reaches the admin port; the LoadBalancer one carries traffic only.
    for (file, only) in [
        ("50-service.yaml", vec!["http", "https"]),
        ("51-service-metrics.yaml", vec!["metrics"]),
    ] {
        let service: Service = serde_saphyr::from_str(&read(file)).expect("a Service");
        for p in service.spec.expect("spec").ports.into_iter().flatten() {
            let target = p.target_port.expect("targetPort");
            assert_ne!(port_number(&c, &target), i32::from(admin.port()), "{file}");
            match &target {
                IntOrString::String(name) => {
                    assert!(only.contains(&name.as_str()), "{file}: {name}");
                }
                IntOrString::Int(n) => panic!("{file}: name the target port, not {n}"),
            }
        }
    }
}

#[test]
fn the_kubelet_waits_longer_than_the_shutdown_takes() {
    let deployment: Deployment =
        serde_saphyr::from_str(&read("40-deployment.yaml")).expect("a Deployment");
    let spec = deployment.spec.template.spec.expect("pod spec");
    let grace_period = Duration::from_secs(
        u64::try_from(spec.termination_grace_period_seconds.unwrap_or(30)).expect("positive"),
    );
    let flags = flags(&spec.containers[0]);
    let shutdown =
        duration(&flags, "shutdown-delay", "5s") + duration(&flags, "shutdown-grace", "30s");
    assert!(
        grace_period > shutdown,
        "terminationGracePeriodSeconds {grace_period:?} must exceed --shutdown-delay + --shutdown-grace ({shutdown:?})"
    );
}

#[test]
fn sluice_run_accepts_the_deployments_arguments() {
    let c = container();
    let args: Vec<String> = c
        .args
        .iter()
        .flatten()
        .map(|a| a.replace("$(POD_NAMESPACE)", "sluice-system"))
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    // `--help` comes last: clap has checked every argument before it by then.
    let out = Command::new(SLUICE)
        .args(&args)
        .arg("--help")
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
