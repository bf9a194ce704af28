//! `sluice run`: the composition root. Binds the listening sockets, builds the runtime's
//! shared pieces (data-plane snapshots, topics, metrics), gives each actor exactly the
//! arguments it uses, and starts the supervision tree:
//!
//! ```text
//! root (one_for_one)
//! |- control (one_for_one): watcher, router, status (Kubernetes mode)
//! |- certificate
//! |- dns                    (--dns-provider route53|memory)
//! |- acme                   (--acme-email)
//! |- leader                 (Kubernetes mode)
//! |- listeners (one_for_one): listener-http, listener-https, admin, metrics (--metrics-addr)
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
use sluice::model::ObjectRef;
use sluice::proxy::drain::{self, Drain};
use sluice::proxy::{ConnTracker, Entrypoint, Proxy, ProxyConfig};
use sluice::source::kube as kube_source;
use sluice::tls::{CertStore, SniResolver, TlsPolicy};
use sluice::translate::Options;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::acme::{Acme, AcmeArgs, AcmeConfig, AcmeStorage};
use crate::admin::{Admin, AdminArgs, HttpTimeouts};
use crate::certificate::{Certificate, CertificateArgs};
use crate::dns::{Dns, DnsArgs, DnsConfig};
use crate::leader::{self, Leader, LeaderArgs, LeaderElection};
use crate::listener::{Listener, ListenerArgs};
use crate::metrics_listener::{Metrics, MetricsArgs};
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
    /// Admin listener (health, readiness, metrics, API). Keep it on loopback: the API has no
    /// authentication.
    pub admin_addr: SocketAddr,
    /// Metrics listener (`/metrics`, `/healthz`, `/readyz` only), for Prometheus and probes
    /// from outside the host; `None`: none.
    pub metrics_addr: Option<SocketAddr>,
    /// On shutdown, how long to go on serving after readiness turns 503, before the
    /// listening sockets close (`--shutdown-delay`).
    pub shutdown_delay: Duration,
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
    /// DNS records (`--dns-provider route53|memory` turns them on).
    pub dns: Option<DnsSettings>,
    /// `--default-certificate`: the `kubernetes.io/tls` Secret served when no other
    /// certificate matches (`None`: the generated self-signed one).
    pub default_certificate: Option<ObjectRef>,
    /// `--tls-min-version`, `--tls-cipher-suites`: the HTTPS entrypoint's TLS policy.
    pub tls: TlsPolicy,
}

/// Which DNS API (`--dns-provider`; `none` is `RunOptions::dns = None`).
#[derive(Clone, Debug, PartialEq)]
pub enum DnsProviderKind {
    /// Route53 through the standard AWS configuration chain, with these options.
    Route53(sluice::dns::Route53Options),
    /// Zones in this process's memory (`--dns-memory-zone`, repeatable): standalone trials.
    Memory {
        /// The zones' names.
        zones: Vec<String>,
    },
}

/// DNS settings (`--dns-*`, `--txt-*`, `--domain-filter`...).
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// The provider.
    pub provider: DnsProviderKind,
    /// `--dns-source`, `--publish-address` (targets of Ingresses without load-balancer
    /// status, in both modes).
    pub desired: sluice::dns::DesiredOptions,
    /// `--txt-owner-id`, `--txt-prefix`, `--txt-suffix`, `--txt-wildcard-replacement`.
    pub registry: sluice::dns::RegistryOptions,
    /// `--dns-policy`.
    pub policy: sluice::dns::Policy,
    /// `--domain-filter`, `--exclude-domains`, `--zone-id-filter`, `--aws-zone-type`.
    pub filters: sluice::dns::Filters,
    /// `--dns-interval`: the periodic full resync.
    pub interval: Duration,
    /// Debounce after a change of the desired records.
    pub debounce: Duration,
    /// `--dns-dry-run`.
    pub dry_run: bool,
}

impl DnsSettings {
    /// Defaults for `provider` and `owner_id`: both sources, upsert-only, no filters, 1 min
    /// resync, 1 s debounce.
    pub fn new(provider: DnsProviderKind, owner_id: impl Into<String>) -> DnsSettings {
        DnsSettings {
            provider,
            desired: sluice::dns::DesiredOptions::default(),
            registry: sluice::dns::RegistryOptions {
                owner_id: owner_id.into(),
                ..Default::default()
            },
            policy: sluice::dns::Policy::default(),
            filters: sluice::dns::Filters::default(),
            interval: Duration::from_secs(60),
            debounce: crate::dns::DEBOUNCE,
            dry_run: false,
        }
    }

    /// The actor's configuration; an error names the flag at fault.
    pub fn config(&self) -> anyhow::Result<DnsConfig> {
        let registry = sluice::dns::Registry::new(&self.registry).map_err(|e| {
            anyhow::anyhow!(
                "DNS ownership records (--txt-owner-id, --txt-prefix, --txt-suffix): {e}"
            )
        })?;
        for p in &self.desired.publish {
            sluice::dns::parse_target(p).map_err(|e| {
                anyhow::anyhow!("--publish-address {p:?} is not an IP address or host name: {e}")
            })?;
        }
        anyhow::ensure!(
            !self.interval.is_zero(),
            "--dns-interval must be longer than zero"
        );
        let mut sync = sluice::dns::SyncOptions::new(registry);
        sync.policy = self.policy;
        sync.filters = self.filters.clone();
        sync.dry_run = self.dry_run;
        let mut config = DnsConfig::new(self.desired.clone(), sync);
        config.interval = self.interval;
        config.debounce = self.debounce;
        config.max_wait = crate::dns::MAX_WAIT.max(self.debounce);
        Ok(config)
    }
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
    /// Defaults for `manifests`: every listener (metrics included) on 127.0.0.1 with an
    /// OS-chosen port, no shutdown delay, default classes and proxy settings, 50 ms debounce,
    /// no chaos, default restart intensity.
    pub fn new(manifests: impl Into<PathBuf>) -> RunOptions {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        RunOptions {
            source: Source::Manifests(manifests.into()),
            http_addr: any,
            https_addr: any,
            admin_addr: any,
            metrics_addr: Some(any),
            shutdown_delay: Duration::ZERO,
            classes: Options::default(),
            proxy: ProxyConfig::default(),
            debounce: Duration::from_millis(50),
            chaos: false,
            intensity: Intensity::default(),
            acme: None,
            dns: None,
            default_certificate: None,
            tls: TlsPolicy::default(),
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
    /// The process's one DNS provider (`--dns-provider`), for every actor that needs one.
    dns_provider: Option<Arc<dyn sluice::dns::DnsProvider>>,
    /// The DNS actor's settings.
    dns: Option<Arc<DnsConfig>>,
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
    metrics_socket: Option<Arc<TcpListener>>,
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
    /// Bound metrics address (`None`: no metrics listener).
    pub metrics_addr: Option<SocketAddr>,
    /// The proxy (for tests: the live snapshot).
    pub proxy: Arc<Proxy>,
    /// Readiness flags.
    pub readiness: Arc<Readiness>,
    /// The supervision tree's statuses.
    pub tree: Arc<ActorTree>,
    topics: Arc<Topics>,
    tracker: Arc<ConnTracker>,
    stop_accepting: watch::Sender<bool>,
    /// The traffic listeners, closed by the shutdown after its delay.
    traffic: [Arc<TcpListener>; 2],
    shutdown_delay: Duration,
    identity: String,
    root: ActorRef<SupervisorMsg>,
    exit: Option<oneshot::Receiver<RootExit>>,
}

impl Running {
    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.tracker.open()
    }

    /// True while this instance holds the leader Lease (always, in standalone mode: the one
    /// process is the only writer).
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

    /// The DNS actor's report (`enabled` is false without `--dns-provider`).
    pub fn dns(&self) -> watch::Receiver<Arc<crate::topics::DnsReport>> {
        self.topics.dns.subscribe()
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

    /// Graceful shutdown ([`sluice::proxy::drain::drain`]): readiness turns 503, traffic is
    /// served on for the shutdown delay (so that load balancers notice), then the HTTP and
    /// HTTPS listening sockets close (new connections are refused, not queued), idle
    /// connections close, in-flight requests get `grace` to finish and the rest are closed;
    /// then the actors stop. The admin and metrics listeners answer until then (`/readyz`:
    /// 503). Returns false when connections were still open at the deadline (they are
    /// dropped).
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        let readiness = self.readiness.clone();
        let not_ready = move || readiness.set_draining();
        let [http, https] = &self.traffic;
        let listeners = [&**http, &**https];
        let drained = drain::drain(Drain {
            not_ready: &not_ready,
            delay: self.shutdown_delay,
            stop_accepting: &self.stop_accepting,
            listeners: &listeners,
            tracker: &self.tracker,
            grace,
        })
        .await;
        self.root.stop(Some("shutdown".into()));
        if let Some(rx) = self.exit.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
        }
        drained.clean
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
        let default_secret = self.opts.default_certificate.clone();
        let topics = self.topics.clone();
        ChildSpec::new("certificate", Restart::Permanent, move || {
            let args = CertificateArgs {
                certs: certs.clone(),
                default_cert: default_cert.clone(),
                default_secret: default_secret.clone(),
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
            dns: self.topics.dns.subscribe(),
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
        let leader = self.topics.leader.subscribe();
        let args = AcmeArgs {
            config: config.clone(),
            storage: storage.clone(),
            challenges: self.challenges.clone(),
            desired: self.topics.desired.subscribe(),
            leader,
            report: self.topics.acme.clone(),
            issued: self.topics.acme_issued.clone(),
            dns: self.dns_provider.clone(),
        };
        ChildSpec::new("acme", Restart::Permanent, move || (Acme, args.clone()))
    }

    fn dns(
        &self,
        provider: &Arc<dyn sluice::dns::DnsProvider>,
        config: &Arc<DnsConfig>,
    ) -> ChildSpec {
        let leader = self.topics.leader.subscribe();
        let args = DnsArgs {
            provider: provider.clone(),
            config: config.clone(),
            desired: self.topics.desired.subscribe(),
            leader,
            report: self.topics.dns.clone(),
            calls_exported: Arc::default(),
        };
        ChildSpec::new("dns", Restart::Permanent, move || (Dns, args.clone()))
    }

    fn admin(&self) -> ChildSpec {
        let args = AdminArgs {
            socket: self.admin.clone(),
            timeouts: HttpTimeouts::of(&self.opts.proxy),
            readiness: self.readiness.clone(),
            tree: self.tree.clone(),
            metrics: self.metrics.clone(),
            proxy: self.proxy.clone(),
            certs: self.certs.clone(),
            desired: self.topics.desired.subscribe(),
            cert_diagnostics: self.topics.cert_diagnostics.subscribe(),
            acme: self.topics.acme.subscribe(),
            dns: self.topics.dns.subscribe(),
            classes: self.opts.classes.clone(),
            chaos: self.opts.chaos,
        };
        ChildSpec::new("admin", Restart::Permanent, move || (Admin, args.clone()))
    }

    fn metrics(&self, socket: &Arc<TcpListener>) -> ChildSpec {
        let args = MetricsArgs {
            socket: socket.clone(),
            timeouts: HttpTimeouts::of(&self.opts.proxy),
            readiness: self.readiness.clone(),
            metrics: self.metrics.clone(),
            certs: self.certs.clone(),
        };
        ChildSpec::new("metrics", Restart::Permanent, move || {
            (Metrics, args.clone())
        })
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
        if let (Some(provider), Some(config)) = (&self.dns_provider, &self.dns) {
            root.push(self.dns(provider, config));
        }
        if let Some((config, storage)) = &self.acme {
            root.push(self.acme(config, storage));
        }
        if let Mode::Kube { client, source } = &self.mode {
            root.push(self.leader(client, source));
        }
        let mut listeners = vec![
            self.listener("listener-http", Entrypoint::Http),
            self.listener("listener-https", Entrypoint::Https),
            self.admin(),
        ];
        if let Some(socket) = &self.metrics_socket {
            listeners.push(self.metrics(socket));
        }
        root.push(ChildSpec::supervisor(sup(
            "listeners",
            Strategy::OneForOne,
            listeners,
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
    let tls_config = sluice::tls::server_config(Arc::new(resolver), &opts.tls)
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
            if let Some(secret) = &opts.default_certificate
                && !k.namespaces.is_empty()
                && !k.namespaces.contains(&secret.namespace)
            {
                anyhow::bail!(
                    "--default-certificate {secret}: namespace {} is not watched (--watch-namespace {}): \
                     sluice would never see the Secret; add --watch-namespace {}",
                    secret.namespace,
                    k.namespaces.join(","),
                    secret.namespace
                );
            }
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
    let metrics_socket = match opts.metrics_addr {
        Some(addr) => Some(Arc::new(bind(addr, "metrics")?)),
        None => None,
    };
    let (http_addr, https_addr, admin_addr) =
        (http.local_addr()?, https.local_addr()?, admin.local_addr()?);
    let metrics_addr = match &metrics_socket {
        Some(socket) => Some(socket.local_addr()?),
        None => None,
    };
    if opts.chaos {
        tracing::warn!(
            "CHAOS MODE: POST /debug/crash/{{actor}} on the admin API makes that actor panic; never use in production"
        );
    }
    let topics = Arc::new(Topics::default());
    if let Mode::Standalone { .. } = mode {
        // One process, no Lease: it is the only writer (ACME, DNS) and leads for good.
        topics.leader.send_replace(true);
    }
    let acme = match &opts.acme {
        None => None,
        Some(settings) => Some(acme_setup(settings, &mode, &topics)?),
    };
    let (dns_provider, dns) = match &opts.dns {
        None => (None, None),
        Some(settings) => {
            let (provider, config) = dns_setup(settings).await?;
            (Some(provider), Some(config))
        }
    };
    let runtime = Runtime {
        mode,
        acme,
        dns_provider,
        dns,
        challenges,
        proxy: proxy.clone(),
        certs,
        default_cert,
        acceptor: tokio_rustls::TlsAcceptor::from(tls_config),
        tracker: Arc::new(ConnTracker::default()),
        http: Arc::new(http),
        https: Arc::new(https),
        admin: Arc::new(admin),
        metrics_socket,
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
    let metrics_at = metrics_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(%http_addr, %https_addr, %admin_addr, metrics_addr = %metrics_at, %source, "sluice is listening");
    Ok(Running {
        http_addr,
        https_addr,
        admin_addr,
        metrics_addr,
        proxy,
        readiness: runtime.readiness.clone(),
        tree: runtime.tree.clone(),
        topics: runtime.topics.clone(),
        tracker: runtime.tracker.clone(),
        stop_accepting: runtime.stop_accepting.clone(),
        traffic: [runtime.http.clone(), runtime.https.clone()],
        shutdown_delay: runtime.opts.shutdown_delay,
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

/// The DNS provider (built once for the process) and the DNS actor's configuration. Building
/// the Route53 client reads the AWS configuration chain but makes no request.
async fn dns_setup(
    settings: &DnsSettings,
) -> anyhow::Result<(Arc<dyn sluice::dns::DnsProvider>, Arc<DnsConfig>)> {
    let config = settings.config()?;
    let provider: Arc<dyn sluice::dns::DnsProvider> = match &settings.provider {
        DnsProviderKind::Route53(options) => {
            anyhow::ensure!(
                options.api_rate.is_finite() && options.api_rate > 0.0,
                "--aws-api-rate must be a positive number of requests per second"
            );
            Arc::new(sluice::dns::Route53Provider::new(options.clone()).await)
        }
        DnsProviderKind::Memory { zones } => {
            let memory = sluice::dns::MemoryProvider::new();
            for zone in zones {
                let name = sluice::dns::name::normalize(zone);
                anyhow::ensure!(
                    sluice::model::HostMatch::parse(&name)
                        .is_ok_and(|h| matches!(h, sluice::model::HostMatch::Exact(_))),
                    "--dns-memory-zone {zone:?} is not a DNS name"
                );
                memory.add_zone(&name, false);
            }
            Arc::new(memory)
        }
    };
    tracing::info!(
        provider = provider.name(),
        owner_id = config.sync.registry.owner_id(),
        policy = %config.sync.policy,
        dry_run = config.sync.dry_run,
        "DNS records on"
    );
    Ok((provider, Arc::new(config)))
}
