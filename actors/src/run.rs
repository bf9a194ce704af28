//! `sluice run`: the composition root. Binds the listening sockets, builds the runtime's
//! shared pieces (data-plane snapshots, topics, metrics), gives each actor exactly the
//! arguments it uses, and starts the supervision tree:
//!
//! ```text
//! root (one_for_one)
//! |- control (one_for_one): watcher, router, status (Kubernetes mode)
//! |- certificate
//! |- leader                 (Kubernetes mode)
//! |- listeners (one_for_one): listener-http, listener-https, admin
//! ```
//!
//! [`start`] returns a [`Running`] handle with the bound addresses once every actor has
//! started (or the error of the one that did not), so tests start the whole runtime
//! in-process on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorRef;
use rustls::sign::CertifiedKey;
use sluice::proxy::{ConnTracker, Entrypoint, Proxy, ProxyConfig};
use sluice::source::kube as kube_source;
use sluice::tls::{CertStore, SniResolver};
use sluice::translate::Options;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::acme::{Acme, AcmeArgs, AcmeConfig, AcmeStorage};
use crate::admin::{Admin, AdminArgs};
use crate::certificate::{Certificate, CertificateArgs};
use crate::leader::{self, Leader, LeaderArgs, LeaderElection};
use crate::listener::{Listener, ListenerArgs};
use crate::readiness::Readiness;
use crate::router::{Router, RouterArgs};
use crate::status::{Publish, Status, StatusArgs};
use crate::supervisor::{
    ActorTree, ChildSpec, Intensity, Restart, RootExit, Strategy, SupervisorMsg, SupervisorSpec,
    default_backoff, spawn_root,
};
use crate::telemetry;
use crate::topics::Topics;
use crate::watcher::{SourceConfig, Watcher, WatcherArgs};

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A folder of manifests, watched for changes (standalone mode).
    Manifests(PathBuf),
    /// The Kubernetes API (`--kube`).
    Kube(Box<KubeSource>),
}

/// Everything `sluice run` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where the configuration comes from.
    pub source: Source,
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
    /// Debounce for configuration changes.
    pub debounce: Duration,
    /// Enable `POST /debug/crash/{actor}` on the admin API (chaos testing).
    pub chaos: bool,
    /// Restart intensity of every supervisor.
    pub intensity: Intensity,
    /// ACME certificates (`--acme-email` turns them on).
    pub acme: Option<AcmeSettings>,
}

/// ACME settings (`--acme-*`).
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// `--acme-email`: the account's contact.
    pub email: String,
    /// `--acme-server`: `letsencrypt`, `letsencrypt-staging` or a directory URL.
    pub server: String,
    /// `--acme-ca-file`: extra roots to trust the ACME server (Pebble, a private CA).
    pub ca_file: Option<PathBuf>,
    /// `--acme-challenge`: the default challenge.
    pub challenge: sluice::acme::ChallengeKind,
    /// `--acme-issuer-name`: the name `cert-manager.io/(cluster-)issuer` must carry.
    pub issuer_name: String,
    /// `--acme-storage`: account and certificates in standalone mode.
    pub storage: PathBuf,
    /// How failed orders are retried.
    pub retry: sluice::acme::RetryPolicy,
    /// Deadline and polling of one order.
    pub order: sluice::acme::OrderOptions,
    /// Kubernetes mode: time for the other replicas to see new challenge answers.
    pub propagation: Duration,
    /// Kubernetes mode: the namespace of the account and answers Secrets (default: the
    /// leader-election namespace, i.e. the pod's).
    pub namespace: Option<String>,
}

impl AcmeSettings {
    /// Defaults for `email`: Let's Encrypt production, HTTP-01, issuer `sluice`,
    /// `./sluice-acme`, Let's Encrypt-friendly retries, 2 s propagation.
    pub fn new(email: impl Into<String>) -> AcmeSettings {
        AcmeSettings {
            email: email.into(),
            server: "letsencrypt".to_owned(),
            ca_file: None,
            challenge: sluice::acme::ChallengeKind::Http01,
            issuer_name: "sluice".to_owned(),
            storage: PathBuf::from(sluice::acme::store::DEFAULT_STORAGE),
            retry: sluice::acme::RetryPolicy::default(),
            order: sluice::acme::OrderOptions::default(),
            propagation: Duration::from_secs(2),
            namespace: None,
        }
    }
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
            source: Source::Manifests(manifests.into()),
            http_addr: any,
            https_addr: any,
            admin_addr: any,
            classes: Options::default(),
            proxy: ProxyConfig::default(),
            debounce: Duration::from_millis(50),
            chaos: false,
            intensity: Intensity::default(),
            acme: None,
        }
    }

    /// The same reading the Kubernetes API.
    #[must_use]
    pub fn with_kube(mut self, kube: KubeSource) -> RunOptions {
        self.source = Source::Kube(Box::new(kube));
        self
    }
}

/// The mode the process runs in, with what only that mode has.
#[derive(Clone)]
enum Mode {
    /// A folder of manifests.
    Standalone { manifests: PathBuf },
    /// The Kubernetes API, with the process's one client.
    Kube {
        client: kube::Client,
        source: Box<KubeSource>,
    },
}

/// The pieces the runtime owns above every actor: they survive any actor's restart.
struct Runtime {
    mode: Mode,
    acme: Option<(Arc<AcmeConfig>, AcmeStorage)>,
    challenges: sluice::acme::ChallengesHandle,
    opts: RunOptions,
    proxy: Arc<Proxy>,
    certs: Arc<ArcSwap<CertStore>>,
    default_cert: Arc<CertifiedKey>,
    acceptor: tokio_rustls::TlsAcceptor,
    tracker: Arc<ConnTracker>,
    http: Arc<TcpListener>,
    https: Arc<TcpListener>,
    admin: Arc<TcpListener>,
    stop_accepting: watch::Sender<bool>,
    topics: Arc<Topics>,
    readiness: Arc<Readiness>,
    tree: Arc<ActorTree>,
    metrics: PrometheusHandle,
    identity: String,
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
    topics: Arc<Topics>,
    tracker: Arc<ConnTracker>,
    stop_accepting: watch::Sender<bool>,
    identity: String,
    root: ActorRef<SupervisorMsg>,
    exit: Option<oneshot::Receiver<RootExit>>,
}

impl Running {
    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.tracker.open()
    }

    /// True while this instance holds the leader Lease (`--kube` only).
    pub fn is_leader(&self) -> bool {
        *self.topics.leader.borrow()
    }

    /// The leadership topic: true while this instance holds the leader Lease.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.topics.leader.subscribe()
    }

    /// This instance's leader-election identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The number of configurations published so far.
    pub fn reloads(&self) -> u64 {
        *self.topics.reloads.borrow()
    }

    /// Waits until more than `seen` configurations have been published, or `timeout` passes.
    pub async fn wait_reload(&self, seen: u64, timeout: Duration) -> anyhow::Result<u64> {
        let mut rx = self.topics.reloads.subscribe();
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
        self.stop_accepting.send_replace(true);
        self.tracker.shutdown();
        let clean = tokio::time::timeout(grace, self.tracker.wait_idle())
            .await
            .is_ok();
        if !clean {
            tracing::warn!(
                open = self.tracker.open(),
                "shutdown grace period over; closing remaining connections"
            );
            self.tracker.force_close();
        }
        self.root.stop(Some("shutdown".into()));
        if let Some(rx) = self.exit.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
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

impl Runtime {
    fn watcher(&self) -> ChildSpec {
        let source = match &self.mode {
            Mode::Standalone { manifests } => SourceConfig::Manifests {
                dir: manifests.clone(),
                debounce: self.opts.debounce,
            },
            Mode::Kube { client, source } => SourceConfig::Kube {
                client: client.clone(),
                options: kube_source::Options {
                    namespaces: source.namespaces.clone(),
                    debounce: self.opts.debounce,
                    ..kube_source::Options::default()
                },
            },
        };
        let topics = self.topics.clone();
        ChildSpec::new("watcher", Restart::Permanent, move || {
            let args = WatcherArgs {
                source: source.clone(),
                topic: topics.source.clone(),
            };
            (Watcher, args)
        })
    }

    fn router(&self) -> ChildSpec {
        let (classes, proxy) = (self.opts.classes.clone(), self.proxy.clone());
        let acme = self.acme.as_ref().map(|(c, _)| c.options.clone());
        let (topics, readiness) = (self.topics.clone(), self.readiness.clone());
        ChildSpec::new("router", Restart::Permanent, move || {
            let args = RouterArgs {
                classes: classes.clone(),
                proxy: proxy.clone(),
                source: topics.source.subscribe(),
                desired: topics.desired.clone(),
                readiness: readiness.clone(),
                reloads: topics.reloads.clone(),
                acme: acme.clone(),
                issued: topics.acme_issued.subscribe(),
            };
            (Router, args)
        })
    }

    fn certificate(&self) -> ChildSpec {
        let (certs, default_cert) = (self.certs.clone(), self.default_cert.clone());
        let topics = self.topics.clone();
        ChildSpec::new("certificate", Restart::Permanent, move || {
            let args = CertificateArgs {
                certs: certs.clone(),
                default_cert: default_cert.clone(),
                desired: topics.desired.subscribe(),
                diagnostics: topics.cert_diagnostics.clone(),
            };
            (Certificate, args)
        })
    }

    fn status(&self, client: &kube::Client, source: &KubeSource) -> ChildSpec {
        let args = StatusArgs {
            client: client.clone(),
            publish: Publish::from_flags(
                &source.publish_addresses,
                source.publish_service.as_deref(),
                &source.namespaces,
            ),
            controller: self.opts.classes.controller_name.clone(),
            identity: self.identity.clone(),
            desired: self.topics.desired.subscribe(),
            cert_diagnostics: self.topics.cert_diagnostics.subscribe(),
            leader: self.topics.leader.subscribe(),
            acme: self.topics.acme.subscribe(),
        };
        ChildSpec::new("status", Restart::Permanent, move || (Status, args.clone()))
    }

    fn leader(&self, client: &kube::Client, source: &KubeSource) -> ChildSpec {
        let args = LeaderArgs {
            client: client.clone(),
            election: source.leader_election.clone(),
            identity: self.identity.clone(),
            topic: self.topics.leader.clone(),
        };
        ChildSpec::new("leader", Restart::Permanent, move || (Leader, args.clone()))
    }

    fn listener(&self, name: &str, entrypoint: Entrypoint) -> ChildSpec {
        let socket = match entrypoint {
            Entrypoint::Http => self.http.clone(),
            Entrypoint::Https => self.https.clone(),
        };
        let tls = (entrypoint == Entrypoint::Https).then(|| self.acceptor.clone());
        let (proxy, tracker) = (self.proxy.clone(), self.tracker.clone());
        let stop = self.stop_accepting.subscribe();
        ChildSpec::new(name, Restart::Permanent, move || {
            let args = ListenerArgs {
                socket: socket.clone(),
                entrypoint,
                proxy: proxy.clone(),
                tracker: tracker.clone(),
                tls: tls.clone(),
                stop: stop.clone(),
            };
            (Listener, args)
        })
    }

    fn acme(&self, config: &Arc<AcmeConfig>, storage: &AcmeStorage) -> ChildSpec {
        // Standalone: one process, always the leader.
        let leader = match self.mode {
            Mode::Standalone { .. } => watch::channel(true).1,
            Mode::Kube { .. } => self.topics.leader.subscribe(),
        };
        let args = AcmeArgs {
            config: config.clone(),
            storage: storage.clone(),
            challenges: self.challenges.clone(),
            desired: self.topics.desired.subscribe(),
            leader,
            report: self.topics.acme.clone(),
            issued: self.topics.acme_issued.clone(),
        };
        ChildSpec::new("acme", Restart::Permanent, move || (Acme, args.clone()))
    }

    fn admin(&self) -> ChildSpec {
        let args = AdminArgs {
            socket: self.admin.clone(),
            readiness: self.readiness.clone(),
            tree: self.tree.clone(),
            metrics: self.metrics.clone(),
            proxy: self.proxy.clone(),
            certs: self.certs.clone(),
            desired: self.topics.desired.subscribe(),
            cert_diagnostics: self.topics.cert_diagnostics.subscribe(),
            acme: self.topics.acme.subscribe(),
            chaos: self.opts.chaos,
        };
        ChildSpec::new("admin", Restart::Permanent, move || (Admin, args.clone()))
    }

    /// The supervision tree.
    fn tree_spec(&self) -> SupervisorSpec {
        let sup = |name: &str, strategy, children| SupervisorSpec {
            name: name.to_string(),
            strategy,
            intensity: self.opts.intensity,
            backoff: default_backoff(),
            children,
            tree: self.tree.clone(),
        };
        // Topics decouple the control actors: each rebuilds from the topics it reads, so a
        // crash restarts only the actor that crashed.
        let mut control = vec![self.watcher(), self.router()];
        let mut root = Vec::new();
        if let Mode::Kube { client, source } = &self.mode {
            control.push(self.status(client, source));
        }
        root.push(ChildSpec::supervisor(sup(
            "control",
            Strategy::OneForOne,
            control,
        )));
        root.push(self.certificate());
        if let Some((config, storage)) = &self.acme {
            root.push(self.acme(config, storage));
        }
        if let Mode::Kube { client, source } = &self.mode {
            root.push(self.leader(client, source));
        }
        root.push(ChildSpec::supervisor(sup(
            "listeners",
            Strategy::OneForOne,
            vec![
                self.listener("listener-http", Entrypoint::Http),
                self.listener("listener-https", Entrypoint::Https),
                self.admin(),
            ],
        )));
        sup("root", Strategy::OneForOne, root)
    }
}

/// Binds every listener and starts the supervision tree. Returns once the listeners are bound
/// and every actor has started, or the error of the actor that could not start (the first
/// configuration may still be loading: see [`Readiness`]).
pub async fn start(opts: RunOptions) -> anyhow::Result<Running> {
    telemetry::install_crypto_provider();
    let metrics = telemetry::metrics();
    let default_cert =
        sluice::tls::default_certificate().context("cannot generate the default certificate")?;
    let certs = Arc::new(ArcSwap::from_pointee(CertStore::empty(
        default_cert.clone(),
    )));
    // ACME challenge answers: published by the acme actor, answered by the proxy (HTTP-01)
    // and the SNI resolver (TLS-ALPN-01).
    let challenges = sluice::acme::challenges_handle();
    let resolver = SniResolver::new(certs.clone()).with_challenges(challenges.clone());
    let tls_config = sluice::tls::server_config(Arc::new(resolver))
        .context("cannot build the TLS configuration")?;
    let proxy = Proxy::with_challenges(opts.proxy.clone(), certs.clone(), challenges.clone());
    let mode = match &opts.source {
        Source::Manifests(dir) => {
            if !dir.is_dir() {
                anyhow::bail!(
                    "{} is not a folder: pass the folder that holds your manifests with --manifests",
                    dir.display()
                );
            }
            Mode::Standalone {
                manifests: dir.clone(),
            }
        }
        Source::Kube(k) => {
            // One client for the whole process: watches, status, Events and the Lease.
            let client = match (&k.config, &k.kubeconfig) {
                (Some(config), _) => kube_source::client_from_config(config.clone())?,
                (None, Some(path)) => kube_source::client_from_kubeconfig(path).await?,
                (None, None) => kube_source::client_from_env().await?,
            };
            Mode::Kube {
                client,
                source: k.clone(),
            }
        }
    };
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
    let topics = Arc::new(Topics::default());
    let acme = match &opts.acme {
        None => None,
        Some(settings) => Some(acme_setup(settings, &mode, &topics)?),
    };
    let runtime = Runtime {
        mode,
        acme,
        challenges,
        proxy: proxy.clone(),
        certs,
        default_cert,
        acceptor: tokio_rustls::TlsAcceptor::from(tls_config),
        tracker: Arc::new(ConnTracker::default()),
        http: Arc::new(http),
        https: Arc::new(https),
        admin: Arc::new(admin),
        stop_accepting: watch::channel(false).0,
        topics,
        readiness: Arc::new(Readiness::default()),
        tree: Arc::new(ActorTree::default()),
        metrics,
        identity: leader::identity(),
        opts,
    };
    telemetry::register_metrics(
        &runtime.identity,
        matches!(runtime.mode, Mode::Standalone { .. }),
    );
    let (root, exit) = spawn_root(runtime.tree_spec())
        .await
        .map_err(|e| anyhow::anyhow!("the supervision tree did not start: {e}"))?;
    telemetry::register_tree_metrics(&runtime.tree.supervised());
    runtime.readiness.set_listening();
    let source = match &runtime.mode {
        Mode::Standalone { manifests } => manifests.display().to_string(),
        Mode::Kube { .. } => "kubernetes".to_owned(),
    };
    tracing::info!(%http_addr, %https_addr, %admin_addr, %source, "sluice is listening");
    Ok(Running {
        http_addr,
        https_addr,
        admin_addr,
        proxy,
        readiness: runtime.readiness.clone(),
        tree: runtime.tree.clone(),
        topics: runtime.topics.clone(),
        tracker: runtime.tracker.clone(),
        stop_accepting: runtime.stop_accepting.clone(),
        identity: runtime.identity.clone(),
        root,
        exit: Some(exit),
    })
}

/// The ACME configuration and storage from the settings: the client's trust (a bad
/// `--acme-ca-file` fails the start), the storage of this mode, and (standalone) the
/// certificates already issued, published before the tree starts so they are served from the
/// first configuration on.
fn acme_setup(
    settings: &AcmeSettings,
    mode: &Mode,
    topics: &Topics,
) -> anyhow::Result<(Arc<AcmeConfig>, AcmeStorage)> {
    let directory = sluice::acme::directory_url(&settings.server)
        .with_context(|| format!("--acme-server {:?}", settings.server))?;
    let roots = match &settings.ca_file {
        None => None,
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read --acme-ca-file {}", path.display()))?,
        ),
    };
    let tls = sluice::acme::client_config(roots.as_deref()).with_context(|| {
        format!(
            "--acme-ca-file {}",
            settings
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    })?;
    let config = Arc::new(AcmeConfig {
        email: settings.email.clone(),
        options: sluice::acme::AcmeOptions {
            issuer_name: settings.issuer_name.clone(),
            default_challenge: settings.challenge,
        },
        client: sluice::acme::AcmeClient::new(directory, tls),
        retry: settings.retry,
        order: settings.order,
        propagation: settings.propagation,
    });
    let storage = match mode {
        Mode::Standalone { .. } => {
            let store = sluice::acme::FolderStore::new(&settings.storage);
            let issued = store.load_certificates().with_context(|| {
                format!(
                    "cannot read the ACME storage {}",
                    settings.storage.display()
                )
            })?;
            topics.acme_issued.send_replace(Arc::new(issued));
            AcmeStorage::Folder(store)
        }
        Mode::Kube { client, source } => AcmeStorage::Kube {
            client: client.clone(),
            namespace: settings
                .namespace
                .clone()
                .unwrap_or_else(|| source.leader_election.namespace()),
        },
    };
    Ok((config, storage))
}
