//! `sluice run`: bind the listeners, follow the configuration source, serve traffic, and shut
//! down gracefully.
//!
//! [`start`] returns a [`Running`] handle with the bound addresses, so tests start the whole
//! runtime in-process on port 0.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use sluice::proxy::{ConnTracker, Proxy, ProxyConfig};
use sluice::routing::RoutingTable;
use sluice::source::manifests::{self, Loaded};
use sluice::tls::{CertStore, SniResolver};
use sluice::translate::{self, Options};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Readiness};
use crate::telemetry;

/// Everything `sluice run` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The manifests folder.
    pub manifests: PathBuf,
    /// Plain-HTTP listener.
    pub http_addr: SocketAddr,
    /// HTTPS listener.
    pub https_addr: SocketAddr,
    /// Admin listener (health, readiness, metrics).
    pub admin_addr: SocketAddr,
    /// Which Ingresses are ours.
    pub classes: Options,
    /// Proxy settings.
    pub proxy: ProxyConfig,
    /// Debounce for manifest changes.
    pub debounce: Duration,
}

/// A running instance.
#[derive(Debug)]
pub struct Running {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound HTTPS address.
    pub https_addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: SocketAddr,
    /// The proxy (for tests: the live snapshot).
    pub proxy: Arc<Proxy>,
    /// Readiness flags.
    pub readiness: Arc<Readiness>,
    tracker: Arc<ConnTracker>,
    stop_accepting: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    reloads: watch::Receiver<u64>,
}

impl Running {
    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.tracker.open()
    }

    /// The number of configurations published so far.
    pub fn reloads(&self) -> u64 {
        *self.reloads.borrow()
    }

    /// Waits until more than `seen` configurations have been published, or `timeout` passes.
    pub async fn wait_reload(&self, seen: u64, timeout: Duration) -> anyhow::Result<u64> {
        let mut rx = self.reloads.clone();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > seen))
            .await
            .context("no configuration reload before the deadline")?
            .map(|n| *n)
            .context("the configuration loop ended")
    }

    /// Graceful shutdown: report not ready, stop accepting, let in-flight requests finish
    /// within `grace`, close idle connections. Returns false when connections were still open
    /// at the deadline (they are dropped).
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.readiness.set_draining();
        self.stop_accepting.send_replace(true);
        self.tracker.shutdown();
        let clean = tokio::time::timeout(grace, self.tracker.wait_idle()).await.is_ok();
        if !clean {
            tracing::warn!(open = self.tracker.open(), "shutdown grace period over; closing remaining connections");
        }
        for t in &self.tasks {
            t.abort();
        }
        clean
    }
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind the {what} listener to {addr}; is another process using it? (choose another with --{what}-addr)"))?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// Binds every listener, starts following the manifests folder and serving. Returns once the
/// listeners are bound (the first configuration may still be loading: see [`Readiness`]).
pub async fn start(opts: RunOptions) -> anyhow::Result<Running> {
    telemetry::install_crypto_provider();
    let metrics = telemetry::metrics();
    let default_cert = sluice::tls::default_certificate().context("cannot generate the default certificate")?;
    let certs = Arc::new(ArcSwap::from_pointee(CertStore::empty(default_cert.clone())));
    let tls_config = sluice::tls::server_config(Arc::new(SniResolver::new(certs.clone())))
        .context("cannot build the TLS configuration")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let proxy = Proxy::new(opts.proxy.clone(), certs.clone());
    let readiness = Arc::new(Readiness::default());
    let tracker = Arc::new(ConnTracker::default());

    let http = bind(opts.http_addr, "http")?;
    let https = bind(opts.https_addr, "https")?;
    let admin_listener = bind(opts.admin_addr, "admin")?;
    let (http_addr, https_addr, admin_addr) = (http.local_addr()?, https.local_addr()?, admin_listener.local_addr()?);

    let watch = manifests::watch(opts.manifests.clone(), opts.debounce)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot watch the manifests folder")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reload_tx, reload_rx) = watch::channel(0u64);

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(admin::serve(admin_listener, readiness.clone(), metrics)));
    tasks.push(tokio::spawn(config_loop(watch, opts.classes.clone(), proxy.clone(), certs, default_cert, readiness.clone(), reload_tx)));
    {
        let (proxy, tracker, mut stop) = (proxy.clone(), tracker.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = http.accept() => match accepted {
                        Ok((stream, peer)) => { tokio::spawn(proxy.clone().serve_http(tracker.clone(), stream, peer)); }
                        Err(e) => accept_error(&e).await,
                    },
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    {
        let (proxy, tracker, mut stop) = (proxy.clone(), tracker.clone(), stop_rx);
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = https.accept() => match accepted {
                        Ok((stream, peer)) => {
                            tokio::spawn(proxy.clone().serve_tls(tracker.clone(), acceptor.clone(), stream, peer));
                        }
                        Err(e) => accept_error(&e).await,
                    },
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    readiness.set_listening();
    tracing::info!(%http_addr, %https_addr, %admin_addr, manifests = %opts.manifests.display(), "sluice is listening");
    Ok(Running {
        http_addr,
        https_addr,
        admin_addr,
        proxy,
        readiness,
        tracker,
        stop_accepting: stop_tx,
        tasks,
        reloads: reload_rx,
    })
}

/// Accept errors (EMFILE and the like) are transient: log, count, back off briefly.
async fn accept_error(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    metrics::counter!("sluice_accept_errors_total").increment(1);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Follows the manifests folder: every delivered state is translated, compiled and published.
async fn config_loop(
    mut watch: manifests::ManifestWatch,
    classes: Options,
    proxy: Arc<Proxy>,
    certs: Arc<ArcSwap<CertStore>>,
    default_cert: Arc<rustls::sign::CertifiedKey>,
    readiness: Arc<Readiness>,
    reloads: watch::Sender<u64>,
) {
    let mut reported: HashSet<String> = HashSet::new();
    while let Some(loaded) = watch.rx.recv().await {
        let started = Instant::now();
        apply(&loaded, &classes, &proxy, &certs, &default_cert, &mut reported);
        readiness.set_config_live();
        reloads.send_modify(|n| *n += 1);
        metrics::histogram!("sluice_config_apply_seconds").record(started.elapsed().as_secs_f64());
    }
}

/// Translates, compiles and publishes one state; logs new diagnostics once.
pub fn apply(
    loaded: &Loaded,
    classes: &Options,
    proxy: &Proxy,
    certs: &ArcSwap<CertStore>,
    default_cert: &Arc<rustls::sign::CertifiedKey>,
    reported: &mut HashSet<String>,
) {
    let translation = translate::translate(&loaded.state, classes);
    let (store, cert_diags) = CertStore::build(&translation.model.tls, &loaded.state.secrets, default_cert.clone());
    for (secret, not_after) in store.not_after() {
        #[allow(clippy::cast_precision_loss, reason = "Unix seconds fit f64 exactly until year 285 million")]
        metrics::gauge!("sluice_tls_certs_not_after", "secret" => secret.to_string()).set(not_after as f64);
    }
    certs.store(Arc::new(store));
    let table = RoutingTable::compile(&translation.model);
    let routes = table.routes().len();
    let generation = proxy.publish(table);

    let mut now: HashSet<String> = HashSet::new();
    let mut errors = 0usize;
    for e in &loaded.errors {
        let line = format!("{e}");
        errors += 1;
        if !reported.contains(&line) {
            tracing::error!(target: "sluice::config", "{line}");
        }
        now.insert(line);
    }
    for d in translation.diagnostics.iter().chain(&cert_diags) {
        let line = d.to_string();
        if d.is_error() {
            errors += 1;
        }
        if !reported.contains(&line) {
            if d.is_error() {
                tracing::error!(target: "sluice::config", reason = d.reason.as_str(), "{line}");
            } else {
                tracing::warn!(target: "sluice::config", reason = d.reason.as_str(), "{line}");
            }
            metrics::counter!("sluice_config_diagnostics_total", "reason" => d.reason.as_str(), "severity" => d.severity.as_str()).increment(1);
        }
        now.insert(line);
    }
    *reported = now;
    metrics::counter!("sluice_config_reloads_total").increment(1);
    metrics::gauge!("sluice_config_last_reload_success").set(if errors == 0 { 1.0 } else { 0.0 });
    #[allow(clippy::cast_precision_loss, reason = "a count of errors")]
    metrics::gauge!("sluice_config_errors").set(errors as f64);
    tracing::info!(target: "sluice::config", generation, routes, errors, "configuration published");
}
