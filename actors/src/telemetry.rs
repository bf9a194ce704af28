//! Logs (tracing) and metrics (Prometheus) set-up, once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) for `sluice_request_duration_seconds`.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets (seconds) for `sluice_config_apply_seconds`.
const APPLY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Installs the process-wide Prometheus recorder (first call) and returns its handle.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("sluice_request_duration_seconds".into()),
                    &DURATION_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("sluice_config_apply_seconds".into()),
                        &APPLY_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (an embedding program): keep a private one so
                // that /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Every metric sluice exports, with its help text: `(name, kind, help)`. Registering
/// them up front (see [`register_metrics`]) makes `/metrics` list each family from the start,
/// so that a dashboard panel shows 0 instead of "No data". docs/metrics.md documents the same
/// list (a test compares them).
pub const METRICS: &[(&str, MetricKind, &str)] = &[
    (
        "sluice_requests_total",
        MetricKind::Counter,
        "Requests answered, by entrypoint, Ingress, Service, method and status code (errors sluice produced included).",
    ),
    (
        "sluice_request_duration_seconds",
        MetricKind::Histogram,
        "Time from request head to response head, by entrypoint, Ingress and Service.",
    ),
    (
        "sluice_proxy_errors_total",
        MetricKind::Counter,
        "Requests sluice answered itself, by entrypoint and reason.",
    ),
    (
        "sluice_upstream_connect_errors_total",
        MetricKind::Counter,
        "Failed connection attempts to endpoints, by Service.",
    ),
    (
        "sluice_upstream_body_timeouts_total",
        MetricKind::Counter,
        "Response bodies cut because the upstream sent nothing for the read timeout.",
    ),
    (
        "sluice_proxy_protocol_errors_total",
        MetricKind::Counter,
        "Connections from --proxy-protocol peers closed for a missing, invalid, cut short or late PROXY header, by entrypoint and reason.",
    ),
    (
        "sluice_passthrough_connections_total",
        MetricKind::Counter,
        "TLS connections for ssl-passthrough hosts, by Ingress, Service and result (spliced, or why they were closed).",
    ),
    (
        "sluice_passthrough_bytes_total",
        MetricKind::Counter,
        "Bytes of passed-through TLS connections, by Ingress, Service and direction (in: from clients, out: to clients).",
    ),
    (
        "sluice_upstream_retries_total",
        MetricKind::Counter,
        "Requests tried again on another endpoint, by Service and reason.",
    ),
    (
        "sluice_upstream_ejections_total",
        MetricKind::Counter,
        "Endpoints ejected by passive outlier detection.",
    ),
    (
        "sluice_open_connections",
        MetricKind::Gauge,
        "Client connections open now, by entrypoint and protocol (http, tls, upgraded).",
    ),
    (
        "sluice_tls_handshake_errors_total",
        MetricKind::Counter,
        "Failed TLS handshakes, by reason (error, timeout).",
    ),
    (
        "sluice_accept_errors_total",
        MetricKind::Counter,
        "Failed accept() calls, by reason (out_of_files, other).",
    ),
    (
        "sluice_connection_timeouts_total",
        MetricKind::Counter,
        "Client connections closed by a timeout, by entrypoint and phase.",
    ),
    (
        "sluice_connection_limit_reached_total",
        MetricKind::Counter,
        "Times a listener paused accepting at the connection limit.",
    ),
    (
        "sluice_connections_evicted_total",
        MetricKind::Counter,
        "Idle connections closed to make room at the connection limit.",
    ),
    (
        "sluice_config_reloads_total",
        MetricKind::Counter,
        "Configurations published.",
    ),
    (
        "sluice_config_last_reload_success",
        MetricKind::Gauge,
        "1 when the last configuration had no error diagnostic, else 0.",
    ),
    (
        "sluice_config_errors",
        MetricKind::Gauge,
        "Error diagnostics in the current configuration.",
    ),
    (
        "sluice_config_last_reload_successful",
        MetricKind::Gauge,
        "Standalone mode: 1 when every manifest file of the last reload loaded, else 0.",
    ),
    (
        "sluice_config_diagnostics_total",
        MetricKind::Counter,
        "Configuration diagnostics, counted once when they first appear, by reason and severity.",
    ),
    (
        "sluice_config_apply_seconds",
        MetricKind::Histogram,
        "Time to translate, compile and publish one configuration.",
    ),
    (
        "sluice_acme_orders_total",
        MetricKind::Counter,
        "ACME orders finished, by result (issued, failed).",
    ),
    (
        "sluice_acme_challenges_answered_total",
        MetricKind::Counter,
        "ACME challenges answered by this replica, by type (http-01 and tls-alpn-01: validation requests served; dns-01: TXT values published through the DNS provider).",
    ),
    (
        "sluice_acme_bad_nonce_retries_total",
        MetricKind::Counter,
        "ACME requests sent again after the CA refused their nonce.",
    ),
    (
        "sluice_kube_watch_errors_total",
        MetricKind::Counter,
        "List/watch errors of the Kubernetes source, by kind (retried with backoff).",
    ),
    (
        "sluice_leader",
        MetricKind::Gauge,
        "1 while this replica is the leader (Kubernetes mode: holds the Lease; standalone: always).",
    ),
    (
        "sluice_leader_election_errors_total",
        MetricKind::Counter,
        "Lease reads or writes that failed (retried with backoff).",
    ),
    (
        "sluice_kube_events_total",
        MetricKind::Counter,
        "Kubernetes Events sent about Ingresses, by reason.",
    ),
    (
        "sluice_kube_status_errors_total",
        MetricKind::Counter,
        "Failed Ingress status writes, Event creations and publish-Service reads, by op.",
    ),
    (
        "sluice_actor_restarts_total",
        MetricKind::Counter,
        "Restarts of each supervised actor.",
    ),
    (
        "sluice_actor_up",
        MetricKind::Gauge,
        "1 while the actor runs, 0 while it is down or restarting.",
    ),
    (
        "sluice_actor_kills_total",
        MetricKind::Counter,
        "Actors killed because they did not stop within their shutdown time.",
    ),
    (
        "sluice_supervisor_escalations_total",
        MetricKind::Counter,
        "Times a supervisor exceeded its restart intensity and gave up.",
    ),
];

/// The Prometheus type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

/// Kinds of objects the Kubernetes source watches (the `kind` label of
/// `sluice_kube_watch_errors_total`).
const WATCHED_KINDS: [&str; 5] = [
    "Ingress",
    "IngressClass",
    "Service",
    "EndpointSlice",
    "Secret",
];

/// Describes every metric of [`METRICS`] and creates its series that have a known label set,
/// at 0 (or, for `sluice_leader`, at this process's value: 1 in standalone mode, which always
/// leads; 0 in Kubernetes mode until the Lease is won). Called once per start, before the
/// actors start. Series whose labels only exist with data (a Service, a Secret, a reason a
/// diagnostic carries) appear with their first value; requests start with the series of
/// requests that matched no route (`ingress=""`, `service=""`, `GET`, `404`), so that sums
/// over them read 0 instead of nothing.
pub fn register_metrics(identity: &str, standalone: bool) {
    for (name, kind, help) in METRICS {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(*name, *help),
            MetricKind::Gauge => metrics::describe_gauge!(*name, *help),
            MetricKind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
    metrics::counter!("sluice_upstream_body_timeouts_total").increment(0);
    metrics::counter!("sluice_upstream_ejections_total").increment(0);
    for ep in ["http", "https"] {
        metrics::counter!("sluice_requests_total", "entrypoint" => ep, "ingress" => "", "service" => "", "method" => "GET", "code" => "404").increment(0);
        let _ = metrics::histogram!("sluice_request_duration_seconds", "entrypoint" => ep, "ingress" => "", "service" => "");
        for reason in [
            "no_route",
            "no_endpoints",
            "closed",
            "forbidden",
            "auth_error",
            "rate_limited",
            "bad_request",
            "client_timeout",
            "misdirected",
            "body_too_large",
            "upstream_error",
            "upstream_protocol",
            "upstream_tls",
            "upstream_timeout",
        ] {
            metrics::counter!("sluice_proxy_errors_total", "entrypoint" => ep, "reason" => reason)
                .increment(0);
        }
        let protocol = if ep == "http" { "http" } else { "tls" };
        for protocol in [protocol, "upgraded"] {
            metrics::gauge!("sluice_open_connections", "entrypoint" => ep, "protocol" => protocol)
                .increment(0.0);
        }
        for phase in ["first_request", "header", "idle"] {
            metrics::counter!("sluice_connection_timeouts_total", "entrypoint" => ep, "phase" => phase)
                .increment(0);
        }
        metrics::counter!("sluice_connection_limit_reached_total", "entrypoint" => ep).increment(0);
        metrics::counter!("sluice_connections_evicted_total", "entrypoint" => ep).increment(0);
    }
    for reason in ["error", "timeout"] {
        metrics::counter!("sluice_tls_handshake_errors_total", "reason" => reason).increment(0);
    }
    for reason in ["out_of_files", "other"] {
        metrics::counter!("sluice_accept_errors_total", "reason" => reason).increment(0);
    }
    metrics::counter!("sluice_config_reloads_total").increment(0);
    metrics::gauge!("sluice_config_errors").increment(0.0);
    let _ = metrics::histogram!("sluice_config_apply_seconds");
    for result in ["issued", "failed"] {
        metrics::counter!("sluice_acme_orders_total", "result" => result).increment(0);
    }
    for kind in ["http-01", "tls-alpn-01", "dns-01"] {
        metrics::counter!("sluice_acme_challenges_answered_total", "type" => kind).increment(0);
    }
    metrics::counter!("sluice_acme_bad_nonce_retries_total").increment(0);
    for kind in WATCHED_KINDS {
        metrics::counter!("sluice_kube_watch_errors_total", "kind" => kind).increment(0);
    }
    for op in ["status", "event", "service"] {
        metrics::counter!("sluice_kube_status_errors_total", "op" => op).increment(0);
    }
    metrics::counter!("sluice_leader_election_errors_total").increment(0);
    metrics::gauge!("sluice_leader", "identity" => identity.to_owned()).set(if standalone {
        1.0
    } else {
        0.0
    });
}

/// Creates the per-actor and per-supervisor series of the supervision tree at 0
/// (`sluice_actor_restarts_total`, `sluice_actor_kills_total`,
/// `sluice_supervisor_escalations_total`), once the tree has started. `actors` are
/// `(name, supervisor)` pairs as `/api/actors` lists them.
pub fn register_tree_metrics(actors: &[(String, String)]) {
    let mut supervisors = std::collections::BTreeSet::new();
    for (actor, supervisor) in actors {
        metrics::counter!("sluice_actor_restarts_total", "actor" => actor.clone()).increment(0);
        metrics::counter!("sluice_actor_kills_total", "actor" => actor.clone()).increment(0);
        supervisors.insert(supervisor.clone());
    }
    for supervisor in supervisors {
        metrics::counter!("sluice_supervisor_escalations_total", "supervisor" => supervisor)
            .increment(0);
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the tracing subscriber. `RUST_LOG` overrides the default filter
/// (`info`, with the access log at info when enabled). Release builds have no trace level
/// (`tracing`'s `release_max_level_debug`, see docs/operations.md).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hyper=warn,h2=warn,rustls=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Installs aws-lc-rs as the process-wide rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Logs panics as one error line (thread, message, location) through tracing instead of a
/// multi-line backtrace on stderr: a panicking actor is an event the supervisor handles, and
/// log pipelines want one JSON line per event. `RUST_BACKTRACE=1` adds the backtrace.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            let bt = std::backtrace::Backtrace::force_capture();
            tracing::error!(target: "sluice::panic", %thread, %location, backtrace = %bt, "panic: {msg}");
        } else {
            tracing::error!(target: "sluice::panic", %thread, %location, "panic: {msg}");
        }
    }));
}
