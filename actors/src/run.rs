//! `sluice run`: the composition root. Binds the listening sockets, builds the shared state
//! (data-plane snapshots, topics, metrics) and starts the supervision tree:
//!
//! ```text
//! root (one_for_one)
//! |- control (rest_for_one): watcher -> router -> status
//! |- certificate
//! |- leader
//! |- listeners (one_for_one): listener-http, listener-https, admin
//! ```
//!
//! [`start`] returns a [`Running`] handle with the bound addresses, so tests start the whole
//! runtime in-process on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorRef;
use sluice::proxy::{ConnTracker, Entrypoint, Proxy, ProxyConfig};
use sluice::source::kube as kube_source;
use sluice::tls::{CertStore, SniResolver};
use sluice::translate::Options;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::admin::{Admin, Readiness};
use crate::certificate::Certificate;
use crate::leader::{self, Leader, LeaderElection};
use crate::listener::Listener;
use crate::messages::{CertDiagnosticsTopic, DesiredTopic, SourceTopic};
use crate::router::Router;
use crate::status::Status;
use crate::supervisor::{
    ActorTree, Backoff, ChildSpec, Intensity, Restart, RootExit, Strategy, SupervisorMsg,
    SupervisorSpec, spawn_root,
};
use crate::telemetry;
use crate::watcher::Watcher;

/// Everything `sluice run` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The manifests folder.
    pub manifests: PathBuf,
    /// Plain-HTTP listener.
    pub http_addr: SocketAddr,
    /// HTTPS listener.
    pub https_addr: SocketAddr,
    /// Admin listener (health, readiness, metrics, API).
    pub admin_addr: SocketAddr,
    /// Which Ingresses are ours.
    pub classes: Options,
    /// Proxy settings.
    pub proxy: ProxyConfig,
    /// Debounce for manifest changes.
    pub debounce: Duration,
    /// Enable `POST /debug/crash/{actor}` on the admin API (chaos testing).
    pub chaos: bool,
    /// Restart intensity of every supervisor.
    pub intensity: Intensity,
    /// Read the configuration from the Kubernetes API instead of the manifests folder.
    pub kube: Option<KubeSource>,
}

/// Where the Kubernetes API is and what to watch (`sluice run --kube`).
#[derive(Clone, Debug, Default)]
pub struct KubeSource {
    /// `--kubeconfig`; else in-cluster configuration or `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// `--watch-namespace` (repeatable); empty: every namespace.
    pub namespaces: Vec<String>,
    /// An explicit client configuration (tests point it at a fake API server).
    pub config: Option<kube::Config>,
    /// `--publish-service NAMESPACE/NAME`: publish that Service's LoadBalancer addresses in
    /// the status of every Ingress we own.
    pub publish_service: Option<String>,
    /// `--publish-address` (repeatable): publish these IPs or hostnames instead.
    pub publish_addresses: Vec<String>,
    /// Leader election (the leader writes Ingress status and Events).
    pub leader_election: LeaderElection,
}

impl RunOptions {
    /// Defaults for `manifests`: every listener on 127.0.0.1 with an OS-chosen port, default
    /// classes and proxy settings, 50 ms debounce, no chaos, default restart intensity.
    pub fn new(manifests: impl Into<PathBuf>) -> RunOptions {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        RunOptions {
            manifests: manifests.into(),
            http_addr: any,
            https_addr: any,
            admin_addr: any,
            classes: Options::default(),
            proxy: ProxyConfig::default(),
            debounce: Duration::from_millis(50),
            chaos: false,
            intensity: Intensity::default(),
            kube: None,
        }
    }
}

/// State shared by the actors and owned above them: it survives any actor's restart.
pub struct Shared {
    /// The manifests folder (standalone mode).
    pub manifests: PathBuf,
    /// The Kubernetes source (`--kube`), used instead of the folder when set.
    pub kube: Option<KubeSource>,
    /// Debounce for manifest changes.
    pub debounce: Duration,
    /// Which Ingresses are ours.
    pub classes: Options,
    /// The data plane.
    pub proxy: Arc<Proxy>,
    /// The certificate snapshot read by the TLS resolver.
    pub certs: Arc<ArcSwap<CertStore>>,
    /// The generated default certificate.
    pub default_cert: Arc<rustls::sign::CertifiedKey>,
    /// TLS acceptor over the SNI resolver.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Open connections, for graceful shutdown.
    pub tracker: Arc<ConnTracker>,
    /// Listening sockets, owned here so that a listener actor's restart never closes them.
    pub http: Arc<TcpListener>,
    /// See `http`.
    pub https: Arc<TcpListener>,
    /// See `http`.
    pub admin: Arc<TcpListener>,
    /// Set to true to stop every accept loop.
    pub stop_accepting: watch::Sender<bool>,
    /// Latest source state (watcher -> router).
    pub source: SourceTopic,
    /// Latest translation (router -> certificate, admin).
    pub desired: DesiredTopic,
    /// Latest certificate diagnostics (certificate -> admin).
    pub cert_diagnostics: CertDiagnosticsTopic,
    /// Number of configurations published.
    pub reloads: watch::Sender<u64>,
    /// Readiness flags.
    pub readiness: Arc<Readiness>,
    /// The supervision tree's statuses.
    pub tree: Arc<ActorTree>,
    /// Prometheus handle.
    pub metrics: PrometheusHandle,
    /// Chaos routes enabled.
    pub chaos: bool,
    /// The Kubernetes client for writes (status, Events, the Lease); `None` in standalone mode.
    pub kube_client: Option<kube::Client>,
    /// This replica's leader-election identity (pod name and a random suffix), stable across
    /// actor restarts so that a restarted leader actor renews its own Lease.
    pub identity: String,
    /// True while this replica holds the leader Lease (leader -> status, later DNS and ACME).
    pub leader: watch::Sender<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("manifests", &self.manifests)
            .finish_non_exhaustive()
    }
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
    /// The supervision tree's statuses.
    pub tree: Arc<ActorTree>,
    shared: Arc<Shared>,
    root: ActorRef<SupervisorMsg>,
    exit: Option<oneshot::Receiver<RootExit>>,
    reloads: watch::Receiver<u64>,
}

impl Running {
    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.shared.tracker.open()
    }

    /// True while this instance holds the leader Lease (`--kube` only).
    pub fn is_leader(&self) -> bool {
        *self.shared.leader.borrow()
    }

    /// The leadership topic: true while this instance holds the leader Lease.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.shared.leader.subscribe()
    }

    /// This instance's leader-election identity.
    pub fn identity(&self) -> &str {
        &self.shared.identity
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

    /// Resolves when the root supervisor ends (it gave up, or it was stopped). Cancel-safe;
    /// once it has resolved, later calls return `None` at once.
    pub async fn exited(&mut self) -> Option<RootExit> {
        let rx = self.exit.as_mut()?;
        let exit = rx.await.ok();
        self.exit = None;
        exit
    }

    /// Graceful shutdown: report not ready, stop accepting, let in-flight requests finish
    /// within `grace`, close idle connections, stop the actors. Returns false when connections
    /// were still open at the deadline (they are dropped).
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.readiness.set_draining();
        self.shared.stop_accepting.send_replace(true);
        self.shared.tracker.shutdown();
        let clean = tokio::time::timeout(grace, self.shared.tracker.wait_idle())
            .await
            .is_ok();
        if !clean {
            tracing::warn!(
                open = self.shared.tracker.open(),
                "shutdown grace period over; closing remaining connections"
            );
            self.shared.tracker.force_close();
        }
        self.root.stop(Some("shutdown".into()));
        if let Some(rx) = self.exit.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        clean
    }
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).with_context(|| {
        format!("cannot bind the {what} listener to {addr}; is another process using it? (choose another with --{what}-addr)")
    })?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// The supervision tree over `shared`.
pub fn tree_spec(shared: &Arc<Shared>, intensity: Intensity) -> SupervisorSpec {
    let tree = shared.tree.clone();
    let sup = |name: &str, strategy, children| SupervisorSpec {
        name: name.to_string(),
        strategy,
        intensity,
        backoff: Backoff::default(),
        children,
        tree: tree.clone(),
    };
    let s = shared.clone();
    let watcher = ChildSpec::new("watcher", Restart::Permanent, move || (Watcher, s.clone()));
    let s = shared.clone();
    let router = ChildSpec::new("router", Restart::Permanent, move || (Router, s.clone()));
    let s = shared.clone();
    let status = ChildSpec::new("status", Restart::Permanent, move || (Status, s.clone()));
    let s = shared.clone();
    let leader = ChildSpec::new("leader", Restart::Permanent, move || (Leader, s.clone()));
    let s = shared.clone();
    let certificate = ChildSpec::new("certificate", Restart::Permanent, move || {
        (Certificate, s.clone())
    });
    let s = shared.clone();
    let http = ChildSpec::new("listener-http", Restart::Permanent, move || {
        (Listener, (s.clone(), Entrypoint::Http))
    });
    let s = shared.clone();
    let https = ChildSpec::new("listener-https", Restart::Permanent, move || {
        (Listener, (s.clone(), Entrypoint::Https))
    });
    let s = shared.clone();
    let admin = ChildSpec::new("admin", Restart::Permanent, move || (Admin, s.clone()));
    sup(
        "root",
        Strategy::OneForOne,
        vec![
            ChildSpec::supervisor(sup(
                "control",
                Strategy::RestForOne,
                vec![watcher, router, status],
            )),
            certificate,
            leader,
            ChildSpec::supervisor(sup(
                "listeners",
                Strategy::OneForOne,
                vec![http, https, admin],
            )),
        ],
    )
}

/// Binds every listener and starts the supervision tree. Returns once the listeners are bound
/// and every actor has started (the first configuration may still be loading: see
/// [`Readiness`]).
pub async fn start(opts: RunOptions) -> anyhow::Result<Running> {
    telemetry::install_crypto_provider();
    let metrics = telemetry::metrics();
    let default_cert =
        sluice::tls::default_certificate().context("cannot generate the default certificate")?;
    let certs = Arc::new(ArcSwap::from_pointee(CertStore::empty(
        default_cert.clone(),
    )));
    let tls_config = sluice::tls::server_config(Arc::new(SniResolver::new(certs.clone())))
        .context("cannot build the TLS configuration")?;
    let proxy = Proxy::new(opts.proxy.clone(), certs.clone());
    if opts.kube.is_none() && !opts.manifests.is_dir() {
        anyhow::bail!(
            "{} is not a folder: pass the folder that holds your manifests with --manifests",
            opts.manifests.display()
        );
    }
    let http = bind(opts.http_addr, "http")?;
    let https = bind(opts.https_addr, "https")?;
    let admin = bind(opts.admin_addr, "admin")?;
    let (http_addr, https_addr, admin_addr) =
        (http.local_addr()?, https.local_addr()?, admin.local_addr()?);
    if opts.chaos {
        tracing::warn!(
            "CHAOS MODE: POST /debug/crash/{{actor}} on the admin API makes that actor panic; never use in production"
        );
    }
    let (reloads_tx, reloads_rx) = watch::channel(0u64);
    let kube_client = match &opts.kube {
        None => None,
        Some(k) => Some(match (&k.config, &k.kubeconfig) {
            (Some(config), _) => kube_source::client_from_config(config.clone())?,
            (None, Some(path)) => kube_source::client_from_kubeconfig(path).await?,
            (None, None) => kube_source::client_from_env().await?,
        }),
    };
    let shared = Arc::new(Shared {
        manifests: opts.manifests.clone(),
        kube: opts.kube.clone(),
        debounce: opts.debounce,
        classes: opts.classes.clone(),
        proxy: proxy.clone(),
        certs,
        default_cert,
        acceptor: tokio_rustls::TlsAcceptor::from(tls_config),
        tracker: Arc::new(ConnTracker::default()),
        http: Arc::new(http),
        https: Arc::new(https),
        admin: Arc::new(admin),
        stop_accepting: watch::channel(false).0,
        source: watch::channel(None).0,
        desired: watch::channel(None).0,
        cert_diagnostics: watch::channel(Arc::new(Vec::new())).0,
        reloads: reloads_tx,
        readiness: Arc::new(Readiness::default()),
        tree: Arc::new(ActorTree::default()),
        metrics,
        chaos: opts.chaos,
        kube_client,
        identity: leader::identity(),
        leader: watch::channel(false).0,
    });
    let (root, exit) = spawn_root(tree_spec(&shared, opts.intensity))
        .await
        .map_err(|e| anyhow::anyhow!("the supervision tree did not start: {e}"))?;
    shared.readiness.set_listening();
    tracing::info!(%http_addr, %https_addr, %admin_addr, manifests = %opts.manifests.display(), "sluice is listening");
    Ok(Running {
        http_addr,
        https_addr,
        admin_addr,
        proxy,
        readiness: shared.readiness.clone(),
        tree: shared.tree.clone(),
        shared,
        root,
        exit: Some(exit),
        reloads: reloads_rx,
    })
}
