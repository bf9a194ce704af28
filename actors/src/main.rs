//! The `sluice` binary: command-line parsing and the composition root.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use sluice::proxy::Http1Engine;
use sluice::proxy::{Cidr, ProxyConfig};
use sluice_actors::run::{self, RunOptions};
use sluice_actors::telemetry::{self, LogFormat};

/// mimalloc rather than the C library's malloc: fewer instructions per request and per
/// connection (docs/benchmarks.md, "The allocator"), through `sluice-alloc`, which asks for
/// aligned blocks only when the alignment needs it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: sluice_alloc::Mimalloc = sluice_alloc::Mimalloc;

/// `--http1-engine`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Http1EngineArg {
    /// sluice's own HTTP/1.1 server and upstream client.
    Sluice,
    /// hyper's HTTP/1 server and client.
    Hyper,
}

/// sluice: a Kubernetes ingress controller (routing, TLS, ACME and DNS in one supervised binary).
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing would only add noise"
)]
enum Command {
    /// Load a folder of Kubernetes manifests, print the routes they compile to and every
    /// diagnostic; exit 1 if there is an error.
    Check {
        /// Folder of *.yaml, *.yml and *.json manifests (searched recursively).
        dir: PathBuf,
        #[command(flatten)]
        classes: ClassArgs,
        /// Also check the certificates sluice issued in standalone mode (the --acme-storage
        /// folder of `sluice run`). Certificates expiring within 14 days are warnings.
        #[arg(long)]
        acme_storage: Option<PathBuf>,
        /// With --dns-provider memory: the targets of Ingresses without load-balancer status
        /// (repeatable).
        #[arg(long = "publish-address")]
        publish_addresses: Vec<String>,
        #[command(flatten)]
        dns: DnsFlags,
        /// Also check the Secret (NAMESPACE/NAME) that `sluice run --default-certificate`
        /// would serve: missing or unusable is an error.
        #[arg(long, value_parser = namespaced_name)]
        default_certificate: Option<String>,
    },
    /// Serve Ingress traffic from a folder of manifests (standalone mode) or from the
    /// Kubernetes API (--kube).
    Run {
        /// Folder of *.yaml, *.yml and *.json manifests, watched for changes.
        #[arg(long, required_unless_present = "kube", conflicts_with = "kube")]
        manifests: Option<PathBuf>,
        /// Watch the Kubernetes API (in-cluster configuration, KUBECONFIG or --kubeconfig).
        #[arg(long)]
        kube: bool,
        /// Kubeconfig file for --kube.
        #[arg(long, requires = "kube")]
        kubeconfig: Option<PathBuf>,
        /// Namespace to watch with --kube (repeatable); default: every namespace.
        #[arg(long = "watch-namespace", requires = "kube")]
        watch_namespaces: Vec<String>,
        /// Publish this Service's LoadBalancer addresses (NAMESPACE/NAME) in the status of
        /// every Ingress we own, following it as it changes (the leader writes it).
        #[arg(long, requires = "kube", value_parser = namespaced_name, conflicts_with = "publish_addresses")]
        publish_service: Option<String>,
        /// This replica's public IP or host name (repeatable). With --kube it is published in
        /// the status of every Ingress we own; with --dns-provider (both modes) it is the
        /// target of the DNS records of Ingresses that have no load-balancer status.
        #[arg(long = "publish-address")]
        publish_addresses: Vec<String>,
        /// Namespace of the leader-election Lease (default: the pod's namespace, from
        /// POD_NAMESPACE or the service account, else "default").
        #[arg(long, requires = "kube")]
        leader_election_namespace: Option<String>,
        /// Name of the leader-election Lease.
        #[arg(long, requires = "kube", default_value = "sluice-leader")]
        leader_election_id: String,
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        classes: ClassArgs,
        #[command(flatten)]
        acme: AcmeFlags,
        #[command(flatten)]
        dns: DnsFlags,
        #[command(flatten)]
        dns_run: DnsRunFlags,
        #[command(flatten)]
        tls: TlsFlags,
    },
    /// Explain where a URL goes and why: the route that takes it (or the nearest miss and the
    /// field to change), every other candidate and why it lost, the backend and its endpoints,
    /// the certificate for https, and the filters of the route. Exit 0 when a rule routes the
    /// URL, 1 when the default backend or nothing (404) takes it, 2 when the URL or the source
    /// cannot be used. See docs/explain.md.
    Explain {
        /// The URL: http://HOST/PATH or https://HOST/PATH (https: TLS with SNI = HOST).
        url: String,
        /// Explain against a folder of manifests (as `sluice check` reads it).
        #[arg(long, required_unless_present_any = ["kube", "server"], conflicts_with_all = ["kube", "server"])]
        manifests: Option<PathBuf>,
        /// Explain against the cluster: one list of Ingresses, IngressClasses, Services,
        /// EndpointSlices and TLS Secrets (in-cluster configuration, KUBECONFIG or
        /// --kubeconfig).
        #[arg(long, conflicts_with = "server")]
        kube: bool,
        /// Kubeconfig file for --kube.
        #[arg(long, requires = "kube")]
        kubeconfig: Option<PathBuf>,
        /// Namespace to list with --kube (repeatable); default: every namespace.
        #[arg(long = "watch-namespace", requires = "kube")]
        watch_namespaces: Vec<String>,
        /// Ask a running sluice (its --admin-addr, e.g. 127.0.0.1:9090): its live state, its
        /// own class options, and also its DNS records and ACME certificate states.
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        classes: ClassArgs,
        /// Print JSON (the fields are listed in docs/explain.md).
        #[arg(long)]
        json: bool,
    },
    /// Start built-in echo backends and the proxy in front of them, and print curl lines to try.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
    },
}

/// The HTTPS entrypoint's default certificate and TLS policy (`sluice run`).
#[derive(Args, Debug, Clone)]
struct TlsFlags {
    /// A kubernetes.io/tls Secret (NAMESPACE/NAME) served when no Secret covers the requested
    /// name or the client sends no SNI, instead of the generated self-signed certificate.
    /// Watched like the others: a change is picked up without restart. While it is missing or
    /// unusable, the generated certificate is served and a diagnostic says why. With
    /// --watch-namespace, its namespace must be one of them.
    #[arg(long, value_parser = namespaced_name)]
    default_certificate: Option<String>,
    /// Lowest TLS version of the HTTPS entrypoint: 1.2 or 1.3.
    #[arg(long, default_value = "1.2")]
    tls_min_version: sluice::tls::MinVersion,
    /// Cipher suites of the HTTPS entrypoint, comma-separated rustls names in order of
    /// preference (TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256,
    /// TLS13_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    /// TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    /// TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256); empty: rustls's defaults.
    #[arg(long, default_value = "")]
    tls_cipher_suites: String,
}

/// A NAMESPACE/NAME flag (checked by [`namespaced_name`]) as an object reference.
fn object_ref(flag: Option<&str>) -> Option<sluice::model::ObjectRef> {
    let (ns, name) = flag?.split_once('/')?;
    Some(sluice::model::ObjectRef::new(ns, name))
}

impl TlsFlags {
    /// The TLS policy, checked (unknown suite names, no suite usable with the minimum version).
    fn policy(&self) -> anyhow::Result<sluice::tls::TlsPolicy> {
        let policy = sluice::tls::TlsPolicy {
            min_version: self.tls_min_version,
            cipher_suites: sluice::tls::policy::parse_cipher_suites(&self.tls_cipher_suites)?,
        };
        policy.provider()?;
        Ok(policy)
    }
}

/// Which Ingresses are ours.
#[derive(Args, Debug, Clone)]
struct ClassArgs {
    /// IngressClasses whose spec.controller is this are ours.
    #[arg(long, default_value = sluice::translate::DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
    /// Ingresses naming this class are ours even if no IngressClass object of that name exists.
    #[arg(long, default_value = "sluice")]
    ingress_class: String,
    /// Also serve Ingresses that name no class at all.
    #[arg(long)]
    watch_ingress_without_class: bool,
}

impl ClassArgs {
    fn options(&self) -> sluice::translate::Options {
        sluice::translate::Options {
            controller_name: self.controller_name.clone(),
            ingress_class: self.ingress_class.clone(),
            watch_without_class: self.watch_ingress_without_class,
        }
    }
}

/// ACME certificates (the cert-manager job): off unless --acme-email is given.
#[derive(Args, Debug, Clone)]
struct AcmeFlags {
    /// Turn on ACME certificates for Ingresses that ask for them (kubernetes.io/tls-acme,
    /// cert-manager.io/cluster-issuer or issuer naming --acme-issuer-name, sluice.io/acme), with
    /// this contact e-mail for the account.
    #[arg(long)]
    acme_email: Option<String>,
    /// ACME directory: letsencrypt, letsencrypt-staging, or an https:// directory URL.
    #[arg(long, default_value = "letsencrypt", requires = "acme_email")]
    acme_server: String,
    /// PEM file of extra roots to trust the ACME server with (Pebble, a private CA).
    #[arg(long, requires = "acme_email")]
    acme_ca_file: Option<PathBuf>,
    /// Default challenge: http-01, tls-alpn-01 or dns-01 (annotation sluice.io/acme-challenge).
    #[arg(long, default_value = "http-01", requires = "acme_email")]
    acme_challenge: sluice::acme::ChallengeKind,
    /// The issuer name cert-manager.io/cluster-issuer or cert-manager.io/issuer must name.
    #[arg(long, default_value = "sluice", requires = "acme_email")]
    acme_issuer_name: String,
    /// Standalone mode: where the account key and the certificates are kept.
    #[arg(long, default_value = sluice::acme::store::DEFAULT_STORAGE, requires = "acme_email")]
    acme_storage: PathBuf,
    /// Kubernetes mode: namespace of the ACME account and challenge-answers Secrets (default:
    /// the leader-election namespace).
    #[arg(long, requires = "acme_email")]
    acme_namespace: Option<String>,
}

impl AcmeFlags {
    fn settings(&self) -> Option<run::AcmeSettings> {
        let email = self.acme_email.clone()?;
        Some(run::AcmeSettings {
            server: self.acme_server.clone(),
            ca_file: self.acme_ca_file.clone(),
            challenge: self.acme_challenge,
            issuer_name: self.acme_issuer_name.clone(),
            storage: self.acme_storage.clone(),
            namespace: self.acme_namespace.clone(),
            ..run::AcmeSettings::new(email)
        })
    }
}

/// DNS records for the hosts of our Ingresses (the ExternalDNS job): off unless
/// --dns-provider is route53 or memory. Flag names and meanings are ExternalDNS's.
#[derive(Args, Debug, Clone)]
struct DnsFlags {
    /// DNS provider: none (DNS off), route53 (the standard AWS configuration chain:
    /// environment, profile, IRSA web identity, instance metadata; AWS_ENDPOINT_URL works),
    /// or memory (zones in this process, from --dns-memory-zone: for trials).
    #[arg(long, default_value = "none", value_parser = ["none", "route53", "memory"])]
    dns_provider: String,
    /// Which objects get records: ingress, service, or both (LoadBalancer Services with the
    /// external-dns hostname annotation).
    #[arg(long, default_value = "ingress,service", value_parser = sources, requires = "dns_provider")]
    dns_source: sluice::dns::Sources,
    /// The owner id written in ownership TXT records; required with a DNS provider. Use
    /// ExternalDNS's --txt-owner-id to take its records over without a change.
    #[arg(long, requires = "dns_provider")]
    txt_owner_id: Option<String>,
    /// Prefix of ownership TXT record names (may contain %{record_type}).
    #[arg(long, default_value = "", requires = "dns_provider")]
    txt_prefix: String,
    /// Suffix of ownership TXT record names, after the first label (may contain
    /// %{record_type}).
    #[arg(long, default_value = "", requires = "dns_provider")]
    txt_suffix: String,
    /// Label that replaces "*" in the ownership TXT names of wildcard records.
    #[arg(long, default_value = "", requires = "dns_provider")]
    txt_wildcard_replacement: String,
    /// sync (create, update, delete), upsert-only (never delete) or create-only.
    #[arg(long, default_value = "upsert-only", value_parser = policy, requires = "dns_provider")]
    dns_policy: sluice::dns::Policy,
    /// Only names in this domain (and its subdomains; ".x" for subdomains only); repeatable.
    #[arg(long = "domain-filter", requires = "dns_provider")]
    domain_filters: Vec<String>,
    /// Never names in this domain (wins over --domain-filter); repeatable.
    #[arg(long = "exclude-domains", requires = "dns_provider")]
    exclude_domains: Vec<String>,
    /// Only hosted zones whose id ends with this; repeatable.
    #[arg(long = "zone-id-filter", requires = "dns_provider")]
    zone_id_filters: Vec<String>,
    /// Only public or only private hosted zones (default: both).
    #[arg(long, value_parser = ["public", "private"], requires = "dns_provider")]
    aws_zone_type: Option<String>,
    /// With --dns-provider memory: a hosted zone to create in memory (repeatable).
    #[arg(long = "dns-memory-zone", requires = "dns_provider")]
    dns_memory_zones: Vec<String>,
}

/// DNS flags that only `run` has.
#[derive(Args, Debug, Clone)]
struct DnsRunFlags {
    /// Full resync period (repairs records changed behind our back); changes of Ingresses
    /// are synced about a second after they happen.
    #[arg(long, default_value = "1m", value_parser = duration, requires = "dns_provider")]
    dns_interval: Duration,
    /// Plan and log the DNS changes, write nothing.
    #[arg(long, requires = "dns_provider")]
    dns_dry_run: bool,
    /// Route53 requests per second for the whole account (the AWS budget is 5/s).
    #[arg(long, default_value_t = 5.0, requires = "dns_provider")]
    aws_api_rate: f64,
}

fn sources(s: &str) -> Result<sluice::dns::Sources, String> {
    sluice::dns::Sources::parse(s)
}

fn policy(s: &str) -> Result<sluice::dns::Policy, String> {
    sluice::dns::Policy::parse(s)
}

impl DnsFlags {
    /// The settings, or `None` with --dns-provider none; an error names the flag at fault.
    fn settings(
        &self,
        publish: &[String],
        run: Option<&DnsRunFlags>,
    ) -> anyhow::Result<Option<run::DnsSettings>> {
        let provider = match self.dns_provider.as_str() {
            "none" => return Ok(None),
            "route53" => {
                anyhow::ensure!(
                    self.dns_memory_zones.is_empty(),
                    "--dns-memory-zone is for --dns-provider memory only"
                );
                run::DnsProviderKind::Route53(sluice::dns::Route53Options {
                    api_rate: run.map_or(5.0, |r| r.aws_api_rate),
                    api_burst: run.map_or(5.0, |r| r.aws_api_rate),
                    ..Default::default()
                })
            }
            _ => run::DnsProviderKind::Memory {
                zones: self.dns_memory_zones.clone(),
            },
        };
        let Some(owner) = self.txt_owner_id.clone().filter(|o| !o.trim().is_empty()) else {
            anyhow::bail!(
                "--txt-owner-id is required with --dns-provider {}: it marks the records this \
                 sluice owns (give ExternalDNS's owner id to take over its records)",
                self.dns_provider
            );
        };
        let mut s = run::DnsSettings::new(provider, owner);
        s.desired.sources = self.dns_source;
        s.desired.publish = publish.to_vec();
        s.registry.txt_prefix = self.txt_prefix.clone();
        s.registry.txt_suffix = self.txt_suffix.clone();
        s.registry.txt_wildcard_replacement = self.txt_wildcard_replacement.clone();
        s.policy = self.dns_policy;
        s.filters = sluice::dns::Filters {
            domain_filter: self.domain_filters.clone(),
            exclude_domains: self.exclude_domains.clone(),
            zone_id_filter: self.zone_id_filters.clone(),
            zone_type: sluice::dns::ZoneType::parse(self.aws_zone_type.as_deref().unwrap_or(""))
                .map_err(anyhow::Error::msg)?,
        };
        if let Some(r) = run {
            s.interval = r.dns_interval;
            s.dry_run = r.dns_dry_run;
        }
        // Checks the owner id, the affixes and the publish addresses.
        s.config()?;
        Ok(Some(s))
    }
}

/// Listener, runtime and proxy settings shared by `run` and `demo`.
#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Plain-HTTP listener.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// HTTPS listener.
    #[arg(long, default_value = "0.0.0.0:8443")]
    https_addr: SocketAddr,
    /// Admin listener: /healthz, /readyz, /metrics and the API (/api/*, /debug/*). The API
    /// has no authentication: keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_addr: SocketAddr,
    /// Metrics listener, serving only /metrics, /healthz and /readyz (for Prometheus and the
    /// kubelet's probes, e.g. 0.0.0.0:9100). Default: none.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Runtime worker threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// On SIGTERM/SIGINT, how long to go on serving with /readyz answering 503, so that load
    /// balancers stop sending, before the listening sockets close.
    #[arg(long, default_value = "5s", value_parser = duration)]
    shutdown_delay: Duration,
    /// On SIGTERM/SIGINT, once the listening sockets are closed, how long in-flight requests
    /// may take to finish (a second signal exits at once).
    #[arg(long, default_value = "30s", value_parser = duration)]
    shutdown_grace: Duration,
    /// Log one JSON line per request (tracing target sluice::access).
    #[arg(long)]
    access_log: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Peers (IP or CIDR, repeatable or comma-separated) whose X-Forwarded-* headers are kept.
    #[arg(long, value_delimiter = ',')]
    trusted_proxies: Vec<Cidr>,
    /// Peers (IP or CIDR, repeatable or comma-separated) whose connections to the HTTP and
    /// HTTPS listeners start with a PROXY protocol header (v1 or v2, e.g. from an AWS NLB):
    /// the client it carries is the request's client (X-Forwarded-For, source ranges, rate
    /// limits). A connection from these peers without a valid header is closed; other peers
    /// are never read for one.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    proxy_protocol: Vec<Cidr>,
    /// Port in the Location of HTTP->HTTPS redirects (default: 443, or the --https-addr port
    /// for `demo`).
    #[arg(long)]
    https_redirect_port: Option<u16>,
    /// Time from the accept to the first complete request head (TLS handshake included), and
    /// for each later request head to arrive.
    #[arg(long, default_value = "60s", value_parser = duration)]
    client_header_timeout: Duration,
    /// Time a client connection may stay open with no request in progress (HTTP/1.1
    /// keep-alive; HTTP/2 gets GOAWAY).
    #[arg(long, default_value = "60s", value_parser = duration)]
    idle_timeout: Duration,
    /// The longest wait between two reads of a request body from the client (408 after it).
    #[arg(long, default_value = "60s", value_parser = duration)]
    client_body_timeout: Duration,
    /// Client connections open at once over every listener; at the limit accepting pauses and
    /// the connection idle the longest is closed. Default: from the open-file limit,
    /// (soft RLIMIT_NOFILE - max(64, a tenth)) / 2.
    #[arg(long, value_parser = connection_count)]
    max_connections: Option<usize>,
    /// Maximum request head size in bytes (larger: 431).
    #[arg(long, default_value_t = 32 * 1024)]
    max_header_bytes: usize,
    /// Default upstream connect timeout (annotation sluice.io/proxy-connect-timeout).
    #[arg(long, default_value = "5s", value_parser = duration)]
    proxy_connect_timeout: Duration,
    /// Default upstream read timeout: for the response head, then between two reads of its
    /// body (annotation sluice.io/proxy-read-timeout).
    #[arg(long, default_value = "60s", value_parser = duration)]
    proxy_read_timeout: Duration,
    /// Passive outlier detection: failures in a row (5xx, refused or reset connections,
    /// timeouts) that eject an endpoint (0: never).
    #[arg(long, default_value_t = 5)]
    outlier_consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times it, up to 10 times.
    #[arg(long, default_value = "30s", value_parser = duration)]
    outlier_base_ejection: Duration,
    /// The HTTP/1.1 server of client connections and client of plain-HTTP/1.1 backends:
    /// `sluice` (its own: request heads parsed in place, no buffer held by an idle
    /// connection, the backend exchange run in the request's task) or `hyper` (the
    /// fallback). Default: the SLUICE_HTTP1_ENGINE environment variable, else sluice.
    #[arg(long, value_enum)]
    http1_engine: Option<Http1EngineArg>,
    /// Chaos testing: the admin API accepts POST /debug/crash/{actor}. Never in production.
    #[arg(long)]
    chaos: bool,
}

fn namespaced_name(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(s.to_owned())
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

fn connection_count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a number of connections (1 or more)"))
}

fn duration(s: &str) -> Result<Duration, String> {
    sluice::translate::annotations::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration like 30s, 500ms or 2m"))
}

impl ServeArgs {
    fn proxy_config(&self, default_redirect_port: u16) -> ProxyConfig {
        ProxyConfig {
            client_header_timeout: self.client_header_timeout,
            idle_timeout: self.idle_timeout,
            client_body_timeout: self.client_body_timeout,
            max_connections: self
                .max_connections
                .unwrap_or_else(sluice::proxy::default_max_connections),
            max_header_bytes: self.max_header_bytes,
            connect_timeout: self.proxy_connect_timeout,
            read_timeout: self.proxy_read_timeout,
            trusted_proxies: self.trusted_proxies.clone(),
            proxy_protocol: self.proxy_protocol.clone(),
            https_redirect_port: self.https_redirect_port.unwrap_or(default_redirect_port),
            access_log: self.access_log,
            http1: match self.http1_engine {
                Some(Http1EngineArg::Hyper) => Http1Engine::Hyper,
                Some(Http1EngineArg::Sluice) => Http1Engine::Sluice,
                None => Http1Engine::from_env(),
            },
            outlier: sluice::proxy::outlier::OutlierPolicy {
                consecutive: self.outlier_consecutive_failures,
                base: self.outlier_base_ejection,
                max: self.outlier_base_ejection * 10,
            },
            ..ProxyConfig::default()
        }
    }

    fn runtime(&self) -> anyhow::Result<tokio::runtime::Runtime> {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = self.workers {
            b.worker_threads(n.max(1));
        }
        b.enable_all()
            .build()
            .context("cannot start the async runtime")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            dir,
            classes,
            acme_storage,
            publish_addresses,
            dns,
            default_certificate,
        } => match dns.settings(&publish_addresses, None) {
            Ok(dns) => sluice_actors::check::run(
                &dir,
                &classes.options(),
                acme_storage.as_deref(),
                dns.as_ref(),
                object_ref(default_certificate.as_deref()).as_ref(),
            ),
            Err(e) => {
                eprintln!("sluice check: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Explain {
            url,
            manifests,
            kube,
            kubeconfig,
            watch_namespaces,
            server,
            classes,
            json,
        } => {
            use sluice_actors::explain::{Source, run};
            let source = match (manifests, server) {
                (Some(dir), _) => Source::Manifests(dir),
                (None, Some(addr)) => Source::Server(addr),
                (None, None) if kube => Source::Kube {
                    kubeconfig,
                    namespaces: watch_namespaces,
                },
                (None, None) => {
                    eprintln!("sluice explain: give --manifests DIR, --kube or --server ADDR");
                    return ExitCode::from(2);
                }
            };
            run(&source, &classes.options(), &url, json)
        }
        Command::Run {
            manifests,
            kube,
            kubeconfig,
            watch_namespaces,
            publish_service,
            publish_addresses,
            leader_election_namespace,
            leader_election_id,
            serve,
            classes,
            acme,
            dns,
            dns_run,
            tls,
        } => {
            telemetry::init_logging(serve.log_format);
            telemetry::install_panic_hook();
            let dns = match dns.settings(&publish_addresses, Some(&dns_run)) {
                Ok(d) => d,
                Err(e) => return exit(Err(e)),
            };
            let tls_policy = match tls.policy() {
                Ok(p) => p,
                Err(e) => return exit(Err(e)),
            };
            let source = if kube {
                run::Source::Kube(Box::new(run::KubeSource {
                    kubeconfig,
                    namespaces: watch_namespaces,
                    config: None,
                    publish_service,
                    publish_addresses,
                    leader_election: sluice_actors::leader::LeaderElection {
                        namespace: leader_election_namespace,
                        name: leader_election_id,
                        ..Default::default()
                    },
                }))
            } else {
                run::Source::Manifests(manifests.unwrap_or_default())
            };
            let opts = RunOptions {
                source,
                http_addr: serve.http_addr,
                https_addr: serve.https_addr,
                admin_addr: serve.admin_addr,
                metrics_addr: serve.metrics_addr,
                shutdown_delay: serve.shutdown_delay,
                classes: classes.options(),
                proxy: serve.proxy_config(443),
                debounce: Duration::from_millis(50),
                chaos: serve.chaos,
                intensity: Default::default(),
                acme: acme.settings(),
                dns,
                default_certificate: object_ref(tls.default_certificate.as_deref()),
                tls: tls_policy,
            };
            exit(
                serve.runtime().and_then(|rt| {
                    rt.block_on(serve_until_signal(opts, serve.shutdown_grace, None))
                }),
            )
        }
        Command::Demo { serve } => {
            telemetry::init_logging(serve.log_format);
            telemetry::install_panic_hook();
            let mut serve = serve;
            // The demo is for this machine only: default to loopback.
            if serve.http_addr.ip().is_unspecified() {
                serve.http_addr.set_ip([127, 0, 0, 1].into());
            }
            if serve.https_addr.ip().is_unspecified() {
                serve.https_addr.set_ip([127, 0, 0, 1].into());
            }
            if let Some(addr) = serve
                .metrics_addr
                .as_mut()
                .filter(|a| a.ip().is_unspecified())
            {
                addr.set_ip([127, 0, 0, 1].into());
            }
            exit(serve.runtime().and_then(|rt| rt.block_on(demo(serve))))
        }
    }
}

fn exit(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(serve: ServeArgs) -> anyhow::Result<()> {
    use sluice_actors::demo;
    let (echo, _t1) = demo::spawn_echo("127.0.0.1:0".parse()?, "echo").await?;
    let (api1, _t2) = demo::spawn_echo("127.0.0.2:0".parse()?, "api").await?;
    let (api2, _t3) = demo::spawn_echo(SocketAddr::new([127, 0, 0, 3].into(), api1.port()), "api")
        .await
        .context("the demo's second api endpoint (127.0.0.3) could not start")?;
    let dir = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    demo::write_manifests(&dir, echo, [api1, api2])?;
    let opts = RunOptions {
        source: run::Source::Manifests(dir.clone()),
        http_addr: serve.http_addr,
        https_addr: serve.https_addr,
        admin_addr: serve.admin_addr,
        metrics_addr: serve.metrics_addr,
        shutdown_delay: serve.shutdown_delay,
        classes: sluice::translate::Options::default(),
        proxy: serve.proxy_config(serve.https_addr.port()),
        debounce: Duration::from_millis(50),
        chaos: serve.chaos,
        intensity: Default::default(),
        acme: None,
        dns: None,
        default_certificate: None,
        tls: Default::default(),
    };
    let result = serve_until_signal(opts, serve.shutdown_grace, Some(dir.clone())).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn serve_until_signal(
    opts: RunOptions,
    grace: Duration,
    demo_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut running = run::start(opts).await?;
    if let Some(dir) = demo_dir {
        let seen = running.reloads();
        if seen == 0 {
            running.wait_reload(0, Duration::from_secs(10)).await?;
        }
        println!(
            "{}",
            sluice_actors::demo::instructions(
                running.http_addr,
                running.https_addr,
                running.admin_addr,
                &dir
            )
        );
    }
    tokio::select! {
        signal = wait_for_signal() => signal?,
        exit = running.exited() => {
            // The root supervisor gave up (or stopped): exit non-zero, naming the cause, and
            // let the kubelet restart the pod.
            let cause = match exit {
                Some(sluice_actors::supervisor::RootExit::Failed(cause)) => cause,
                Some(sluice_actors::supervisor::RootExit::Stopped) => "the root supervisor stopped".to_string(),
                None => "the root supervisor ended".to_string(),
            };
            tracing::error!("sluice is exiting: {cause}");
            anyhow::bail!("sluice is exiting: {cause}");
        }
    }
    tracing::info!(
        open = running.open_connections(),
        "signal received: shutting down"
    );
    tokio::select! {
        clean = running.shutdown(grace) => if clean {
            tracing::info!("shutdown complete");
        },
        signal = wait_for_signal() => {
            signal?;
            tracing::warn!("second signal: exiting without waiting for the shutdown to finish");
        }
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
