//! The ACME actor: keeps the certificates that Ingresses ask for issued and renewed (the job of
//! cert-manager's ingress-shim or Traefik's ACME resolver), on top of the engine's
//! [`sluice::acme`].
//!
//! Every replica runs it; only the Lease leader orders (in standalone mode the one process
//! leads). From each translation it computes the wanted certificates
//! ([`wanted_certificates`]), keeps a [`ManagedCert`] per Secret (initialised from what the
//! Secret holds, so a restarted actor or a new leader resumes without ordering again), orders
//! what is due (missing, hosts changed, two thirds of the lifetime passed, or a failure's
//! backoff over), and stores the result:
//! - **Kubernetes mode**: the certificate in the tls entry's Secret (created, or replaced only
//!   when it carries our ownership label), which every replica already serves through its watch;
//!   the account key in an `Opaque` Secret in the controller's namespace, so a new leader uses
//!   the same account; HTTP-01 and TLS-ALPN-01 answers in a second `Opaque` Secret there that
//!   every replica watches and answers from, whichever replica the CA reaches.
//! - **Standalone mode**: the account key and the certificates (as Secret manifests) in
//!   `--acme-storage`; issued certificates are published on a topic the router merges into the
//!   source state, so they are served like any TLS Secret.
//!
//! Orders run one at a time in the actor's `orders` task. An order never disturbs serving: the
//! hosts keep their current certificate (or the default one) until the new one is stored.
//! Failures are reported (log, diagnostic and Warning Event on the Ingress,
//! `sluice_acme_orders_total{result="failed"}`) and retried by the certificate's
//! [`RetryPolicy`]; the actor never crashes on a remote error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use ractor::ActorProcessingErr;
use sluice::acme::policy::RetryPolicy;
use sluice::acme::wants::{order_failure_diagnostic, secret_not_owned_diagnostic};
use sluice::acme::{
    Account, AcmeClient, AcmeOptions, BoxFuture, CertState, ChallengeAnswer, ChallengeKind,
    ChallengeSolver, Challenges, ChallengesHandle, Dns01Options, Dns01Solver, FolderStore,
    ManagedCert, OrderError, OrderOptions, OrderRequest, SharedAnswer, SolverError, WantedCert,
    issue, secrets, wanted_certificates,
};
use sluice::cluster::object_ref;
use sluice::dns::DnsProvider;
use sluice::model::{Diagnostic, ObjectRef};
use tokio::sync::watch;

use crate::topics::{AcmeReport, AcmeReportTopic, CertReport, Desired, IssuedTopic};
use crate::worker::{Ctx, NoMsg, Worker};

/// How long a Secret write may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after our own certificate write a missing Secret is taken for "the watch has not
/// caught up" rather than "someone deleted it".
const WRITE_GRACE: Duration = Duration::from_secs(60);

/// ACME settings common to both modes (from the `--acme-*` flags).
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// `--acme-email`: the account's contact.
    pub email: String,
    /// Issuer name and default challenge.
    pub options: AcmeOptions,
    /// The client (directory URL and trust).
    pub client: AcmeClient,
    /// How failed orders are retried.
    pub retry: RetryPolicy,
    /// Deadline and polling of one order.
    pub order: OrderOptions,
    /// Kubernetes mode: after the answers Secret is written and seen by this replica's watch,
    /// how long the other replicas get to see it before the CA is asked to validate.
    pub propagation: Duration,
}

/// Where the account, the answers and the certificates live.
#[derive(Clone)]
pub enum AcmeStorage {
    /// Standalone mode: `--acme-storage`.
    Folder(FolderStore),
    /// Kubernetes mode.
    Kube {
        /// The process's client.
        client: kube::Client,
        /// The controller's namespace (account and answers Secrets).
        namespace: String,
    },
}

/// What the ACME actor uses.
#[derive(Clone)]
pub struct AcmeArgs {
    /// Settings.
    pub config: Arc<AcmeConfig>,
    /// Storage.
    pub storage: AcmeStorage,
    /// The answers the data plane serves.
    pub challenges: ChallengesHandle,
    /// The desired topic.
    pub desired: watch::Receiver<Option<Arc<Desired>>>,
    /// The leader topic (true for good in standalone mode).
    pub leader: watch::Receiver<bool>,
    /// Where the report is published.
    pub report: AcmeReportTopic,
    /// Where standalone certificates are published.
    pub issued: IssuedTopic,
    /// `--dns-provider`: DNS-01 answers are TXT values written through it (without one,
    /// DNS-01 orders fail before the CA is asked to validate).
    pub dns: Option<Arc<dyn DnsProvider>>,
}

/// The ACME actor.
#[derive(Debug)]
pub struct Acme;

impl Worker for Acme {
    type Msg = NoMsg;
    type State = ();
    type Args = AcmeArgs;

    async fn start(&self, ctx: &mut Ctx<NoMsg>, args: AcmeArgs) -> Result<(), ActorProcessingErr> {
        let solver: Arc<dyn ChallengeSolver> = match &args.storage {
            AcmeStorage::Folder(store) => {
                // Answers of an order a previous instance of this actor was running when it
                // ended (its cleanup never ran): nothing validates them any more.
                args.challenges.store(Arc::new(Challenges::default()));
                match store.load_certificates() {
                    Ok(list) => {
                        args.issued.send_replace(Arc::new(list));
                    }
                    // Reported, not fatal: orders write new files.
                    Err(e) => tracing::error!(error = %e, "cannot read the ACME certificates"),
                }
                Arc::new(LocalSolver(args.challenges.clone()))
            }
            AcmeStorage::Kube { client, namespace } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let (seen_tx, seen_rx) = watch::channel(BTreeSet::new());
                ctx.spawn(
                    "answers",
                    watch_answers(api.clone(), args.challenges.clone(), seen_tx),
                );
                Arc::new(SharedSolver {
                    api,
                    namespace: namespace.clone(),
                    current: tokio::sync::Mutex::new(BTreeSet::new()),
                    seen: seen_rx,
                    propagation: args.config.propagation,
                    leader: args.leader.clone(),
                })
            }
        };
        let solver = match &args.dns {
            Some(provider) => Arc::new(ByKind {
                dns01: Dns01Solver::new(provider.clone(), Dns01Options::default()),
                other: solver,
            }),
            None => solver,
        };
        ctx.spawn("orders", Orders::new(args, solver).run());
        Ok(())
    }
}

/// DNS-01 answers through the DNS provider, the others as `other` serves them.
struct ByKind {
    dns01: Dns01Solver,
    other: Arc<dyn ChallengeSolver>,
}

impl ByKind {
    fn solver(&self, answer: &ChallengeAnswer) -> &dyn ChallengeSolver {
        match answer.kind() {
            ChallengeKind::Dns01 => &self.dns01,
            ChallengeKind::Http01 | ChallengeKind::TlsAlpn01 => &*self.other,
        }
    }
}

impl ChallengeSolver for ByKind {
    fn present<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        if answer.kind() != ChallengeKind::Dns01 {
            return self.other.present(answer);
        }
        Box::pin(async move {
            self.dns01.present(answer).await?;
            // The data plane counts the other kinds as it answers them.
            metrics::counter!("sluice_acme_challenges_answered_total", "type" => "dns-01")
                .increment(1);
            Ok(())
        })
    }

    fn cleanup<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        self.solver(answer).cleanup(answer)
    }
}

/// Standalone: answers go straight into this process's snapshot.
struct LocalSolver(ChallengesHandle);

impl ChallengeSolver for LocalSolver {
    fn present<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            // Before the CA is asked to validate: a failed validation would count against the
            // CA's limits.
            if answer.shared().is_none() {
                return Err(SolverError(format!(
                    "{} answers need a DNS provider (--dns-provider)",
                    answer.kind()
                )));
            }
            self.0.rcu(|c| {
                let mut c = Challenges::clone(c);
                c.insert(answer);
                c
            });
            Ok(())
        })
    }

    fn cleanup<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            self.0.rcu(|c| {
                let mut c = Challenges::clone(c);
                c.remove(answer);
                c
            });
            Ok(())
        })
    }
}

/// Kubernetes mode: answers go into the shared answers Secret; every replica (this one too)
/// serves them from its watch of that Secret.
struct SharedSolver {
    api: Api<Secret>,
    namespace: String,
    current: tokio::sync::Mutex<BTreeSet<SharedAnswer>>,
    seen: watch::Receiver<BTreeSet<SharedAnswer>>,
    propagation: Duration,
    /// Writes happen only while this replica leads.
    leader: watch::Receiver<bool>,
}

impl SharedSolver {
    async fn publish(&self, set: &BTreeSet<SharedAnswer>) -> Result<(), SolverError> {
        let name = ObjectRef::new(&self.namespace, secrets::DEFAULT_CHALLENGES_SECRET);
        if !*self.leader.borrow() {
            return Err(SolverError(format!(
                "not writing Secret {name}: this replica no longer leads"
            )));
        }
        let list: Vec<SharedAnswer> = set.iter().cloned().collect();
        let wanted = secrets::challenge_answers_secret(&name, &list);
        for _ in 0..3 {
            let result = tokio::time::timeout(
                CALL_TIMEOUT,
                write_secret(&self.api, wanted.clone(), |_| true),
            )
            .await;
            match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(WriteError::Conflict)) => {}
                Ok(Err(e)) => return Err(SolverError(format!("cannot write Secret {name}: {e}"))),
                Err(_) => return Err(SolverError(format!("writing Secret {name} timed out"))),
            }
        }
        Err(SolverError(format!(
            "cannot write Secret {name}: it kept changing under us"
        )))
    }
}

impl ChallengeSolver for SharedSolver {
    fn present<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            let Some(shared) = answer.shared() else {
                return Err(SolverError(format!(
                    "{} answers need a DNS provider (--dns-provider)",
                    answer.kind()
                )));
            };
            {
                let mut current = self.current.lock().await;
                current.insert(shared.clone());
                self.publish(&current).await?;
            }
            // This replica serves it once its own watch shows it (the API server has it and
            // watches deliver it); the others get `propagation` more.
            let mut seen = self.seen.clone();
            let visible = tokio::time::timeout(
                Duration::from_secs(30),
                seen.wait_for(|s| s.contains(&shared)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            if !visible {
                return Err(SolverError(format!(
                    "the answers Secret {}/{} was written but never seen by this replica's watch",
                    self.namespace,
                    secrets::DEFAULT_CHALLENGES_SECRET
                )));
            }
            tokio::time::sleep(self.propagation).await;
            Ok(())
        })
    }

    fn cleanup<'a>(
        &'a self,
        answer: &'a ChallengeAnswer,
    ) -> BoxFuture<'a, Result<(), SolverError>> {
        Box::pin(async move {
            let Some(shared) = answer.shared() else {
                return Ok(());
            };
            let mut current = self.current.lock().await;
            current.remove(&shared);
            self.publish(&current).await
        })
    }
}

/// Why an order did not give a stored certificate.
#[derive(Debug)]
enum OrderFailure {
    /// The target Secret exists and is not ours: nothing was ordered.
    NotOwned(OrderError),
    /// The order (or storing its result) failed.
    Order(OrderError),
}

impl From<OrderError> for OrderFailure {
    fn from(e: OrderError) -> Self {
        OrderFailure::Order(e)
    }
}

/// Why a Secret write failed.
#[derive(Debug)]
enum WriteError {
    /// It changed between our read and our write (409): read and write again.
    Conflict,
    /// It exists and may not be overwritten.
    NotOurs,
    /// Anything else.
    Api(kube::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Conflict => f.write_str("conflict"),
            WriteError::NotOurs => f.write_str(
                "the Secret exists and was not created by sluice; it is never overwritten",
            ),
            WriteError::Api(e) => write!(f, "{e}"),
        }
    }
}

/// Creates `wanted`, or replaces the existing Secret when `may_replace` allows it.
async fn write_secret(
    api: &Api<Secret>,
    mut wanted: Secret,
    may_replace: impl Fn(&Secret) -> bool,
) -> Result<(), WriteError> {
    let name = wanted.metadata.name.clone().unwrap_or_default();
    let existing = api.get_opt(&name).await.map_err(WriteError::Api)?;
    let result = match existing {
        None => api.create(&PostParams::default(), &wanted).await,
        Some(current) => {
            if !may_replace(&current) {
                return Err(WriteError::NotOurs);
            }
            if current.data == wanted.data
                && current.metadata.labels == wanted.metadata.labels
                && current.metadata.annotations == wanted.metadata.annotations
            {
                return Ok(());
            }
            wanted.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &wanted).await
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(WriteError::Conflict),
        Err(e) => Err(WriteError::Api(e)),
    }
}

/// Every replica: follows the answers Secret and serves what it holds.
async fn watch_answers(
    api: Api<Secret>,
    handle: ChallengesHandle,
    seen: watch::Sender<BTreeSet<SharedAnswer>>,
) {
    use futures::StreamExt as _;
    use kube::runtime::WatchStreamExt as _;
    let config = watcher::Config::default().fields(&format!(
        "metadata.name={}",
        secrets::DEFAULT_CHALLENGES_SECRET
    ));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listing: Option<Secret> = None;
    let apply = |secret: Option<&Secret>| {
        let answers = match secret.map(secrets::challenge_answers_from_secret) {
            None => Vec::new(),
            Some(Ok(list)) => list,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the ACME answers Secret cannot be read; answering none");
                Vec::new()
            }
        };
        match Challenges::from_shared(&answers) {
            Ok(c) => handle.store(Arc::new(c)),
            Err(e) => tracing::warn!(error = %e, "cannot build the TLS-ALPN-01 answers"),
        }
        seen.send_replace(answers.into_iter().collect());
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = None,
            Ok(watcher::Event::InitApply(s)) => listing = Some(s),
            Ok(watcher::Event::InitDone) => apply(listing.as_ref()),
            Ok(watcher::Event::Apply(s)) => apply(Some(&s)),
            Ok(watcher::Event::Delete(_)) => apply(None),
            Err(error) => {
                metrics::counter!("sluice_kube_watch_errors_total", "kind" => "Secret")
                    .increment(1);
                tracing::warn!(%error, "watch of the ACME answers Secret failed; retrying with backoff");
            }
        }
    }
}

/// The `orders` task's state.
struct Orders {
    config: Arc<AcmeConfig>,
    storage: AcmeStorage,
    solver: Arc<dyn ChallengeSolver>,
    desired: watch::Receiver<Option<Arc<Desired>>>,
    leader: watch::Receiver<bool>,
    report: AcmeReportTopic,
    issued: IssuedTopic,
    /// The account, once registered or found again; dropped after a failed order (the CA
    /// may have forgotten it: a restarted test CA, a switched server).
    account: Option<Arc<Account>>,
    /// The latest account URL, for the report.
    account_url: Option<String>,
    /// By Secret: what is wanted and its state.
    managed: BTreeMap<ObjectRef, (WantedCert, ManagedCert)>,
    /// When we last wrote each certificate (see [`WRITE_GRACE`]).
    written: BTreeMap<ObjectRef, tokio::time::Instant>,
    wants_diagnostics: Vec<Diagnostic>,
    failures: BTreeMap<ObjectRef, Diagnostic>,
    /// The Secrets of the latest source state, by reference.
    secrets: BTreeMap<ObjectRef, Secret>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Orders {
    fn new(args: AcmeArgs, solver: Arc<dyn ChallengeSolver>) -> Orders {
        Orders {
            config: args.config,
            storage: args.storage,
            solver,
            desired: args.desired,
            leader: args.leader,
            report: args.report,
            issued: args.issued,
            account: None,
            account_url: None,
            managed: BTreeMap::new(),
            written: BTreeMap::new(),
            wants_diagnostics: Vec::new(),
            failures: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    async fn run(mut self) {
        let mut desired_rx = self.desired.clone();
        let mut leader_rx = self.leader.clone();
        loop {
            if let Some(d) = desired_rx.borrow_and_update().clone() {
                self.plan(&d);
            }
            self.publish();
            let leader = *leader_rx.borrow_and_update();
            if leader {
                self.order_due(&mut leader_rx).await;
                self.publish();
            }
            let wake = self
                .managed
                .values()
                .map(|(_, m)| m.next_order_at())
                .min()
                .filter(|_| leader)
                .map(|at| {
                    let secs = u64::try_from(at.saturating_sub(unix_now()).max(0)).unwrap_or(0);
                    Duration::from_secs(secs).max(Duration::from_millis(100))
                })
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                r = desired_rx.changed() => if r.is_err() { return },
                r = leader_rx.changed() => if r.is_err() { return },
                () = tokio::time::sleep(wake) => {}
            }
        }
    }

    /// Recomputes what is wanted from a translation.
    fn plan(&mut self, desired: &Desired) {
        let state = &desired.loaded.state;
        self.secrets = state
            .secrets
            .iter()
            .map(|s| (object_ref(&s.metadata), s.clone()))
            .collect();
        let (wanted, diagnostics) = wanted_certificates(
            state,
            &desired.translation.model.ingresses,
            &self.config.options,
        );
        self.wants_diagnostics = diagnostics;
        let mut next = BTreeMap::new();
        for w in wanted {
            let existing = self
                .secrets
                .get(&w.secret)
                .and_then(secrets::existing_certificate);
            let managed = match self.managed.remove(&w.secret) {
                Some((_, mut m)) => {
                    m.set_hosts(&w.hosts);
                    m.observe(existing.as_ref());
                    // Our Secret was deleted behind our back (not just not seen yet): issue again.
                    let recent = self
                        .written
                        .get(&w.secret)
                        .is_some_and(|t| t.elapsed() < WRITE_GRACE);
                    if existing.is_none()
                        && !recent
                        && matches!(self.storage, AcmeStorage::Kube { .. })
                        && matches!(m.state, CertState::Valid { .. })
                    {
                        m.state = CertState::Pending;
                    }
                    m
                }
                None => ManagedCert::new(&w.hosts, existing.as_ref()),
            };
            next.insert(w.secret.clone(), (w, managed));
        }
        self.failures.retain(|secret, _| next.contains_key(secret));
        self.managed = next;
    }

    fn publish(&self) {
        let mut diagnostics = self.wants_diagnostics.clone();
        diagnostics.extend(self.failures.values().cloned());
        let certificates = self
            .managed
            .values()
            .map(|(w, m)| CertReport {
                wanted: w.clone(),
                managed: m.clone(),
            })
            .collect();
        let report = AcmeReport {
            directory_url: self.config.client.directory_url().to_owned(),
            account: self.account_url.clone(),
            certificates,
            diagnostics,
        };
        self.report.send_replace(Arc::new(report));
    }

    /// Orders every certificate that is due, one at a time, while this replica leads.
    async fn order_due(&mut self, leader: &mut watch::Receiver<bool>) {
        let now = unix_now();
        let mut due: Vec<(i64, ObjectRef)> = self
            .managed
            .iter()
            .filter(|(_, (_, m))| m.order_due(now))
            .map(|(s, (_, m))| (m.next_order_at(), s.clone()))
            .collect();
        due.sort();
        for (_, secret) in due {
            if !*leader.borrow() {
                return;
            }
            let Some((wanted, _)) = self.managed.get(&secret).cloned() else {
                continue;
            };
            let result = self.order(&wanted).await;
            let Some((_, managed)) = self.managed.get_mut(&secret) else {
                continue;
            };
            match result {
                Ok(issued) => {
                    managed.on_issued(&issued);
                    self.failures.remove(&secret);
                    metrics::counter!("sluice_acme_orders_total", "result" => "issued")
                        .increment(1);
                    tracing::info!(secret = %secret, hosts = ?issued.hosts, not_after = issued.not_after, "ACME certificate issued");
                }
                Err(OrderFailure::NotOwned(error)) => {
                    // Nothing was ordered: the Secret is someone else's. Retried (the user
                    // may delete it) at the longest delay.
                    managed.on_failure_with(
                        &self.config.retry,
                        &error,
                        unix_now(),
                        fastrand::f64(),
                    );
                    let diagnostic =
                        secret_not_owned_diagnostic(&wanted.ingress, &wanted.field, &wanted.secret);
                    tracing::warn!(target: "sluice::config", reason = diagnostic.reason.as_str(), "{diagnostic}");
                    self.failures.insert(secret, diagnostic);
                }
                Err(OrderFailure::Order(error)) => {
                    self.account = None;
                    managed.on_failure_with(
                        &self.config.retry,
                        &error,
                        unix_now(),
                        fastrand::f64(),
                    );
                    let diagnostic = order_failure_diagnostic(&wanted, &error);
                    metrics::counter!("sluice_acme_orders_total", "result" => "failed")
                        .increment(1);
                    tracing::warn!(target: "sluice::config", reason = diagnostic.reason.as_str(), retry_at = managed.next_order_at(), "{diagnostic}");
                    self.failures.insert(secret, diagnostic);
                }
            }
            self.publish();
        }
    }

    /// One order, stored.
    async fn order(&mut self, wanted: &WantedCert) -> Result<sluice::acme::Issued, OrderFailure> {
        self.check_target(wanted).await?;
        let account = self.account().await.map_err(|source| OrderError::Acme {
            hosts: wanted.hosts.clone(),
            source,
        })?;
        let request = OrderRequest {
            hosts: wanted.hosts.clone(),
            challenge: wanted.challenge,
        };
        let issued = issue(&account, &request, &*self.solver, &self.config.order).await?;
        let secret = secrets::certificate_secret(
            &wanted.secret,
            &issued,
            &self.config.options.issuer_name,
            self.config.client.directory_url(),
        );
        self.store(&wanted.secret, secret)
            .await
            .map_err(|e| OrderError::Certificate {
                hosts: wanted.hosts.clone(),
                detail: format!(
                    "issued, but cannot be stored in Secret {}: {e}",
                    wanted.secret
                ),
            })?;
        self.written
            .insert(wanted.secret.clone(), tokio::time::Instant::now());
        Ok(issued)
    }

    /// Kubernetes mode: the source sees only `kubernetes.io/tls` Secrets, so a Secret of
    /// another type with the target's name is found here, before anything is ordered: it is
    /// never overwritten.
    async fn check_target(&self, wanted: &WantedCert) -> Result<(), OrderFailure> {
        let AcmeStorage::Kube { client, .. } = &self.storage else {
            return Ok(());
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), &wanted.secret.namespace);
        let existing = tokio::time::timeout(CALL_TIMEOUT, api.get_opt(&wanted.secret.name))
            .await
            .map_err(|_| OrderError::Certificate {
                hosts: wanted.hosts.clone(),
                detail: format!("reading Secret {} timed out", wanted.secret),
            })?
            .map_err(|e| OrderError::Certificate {
                hosts: wanted.hosts.clone(),
                detail: format!("cannot read Secret {}: {e}", wanted.secret),
            })?;
        match existing {
            Some(s) if !secrets::is_ours(&s) => {
                Err(OrderFailure::NotOwned(OrderError::BadRequest(format!(
                    "Secret {} exists and was not created by sluice; it is never overwritten",
                    wanted.secret
                ))))
            }
            _ => Ok(()),
        }
    }

    /// Stores an issued certificate where this mode keeps it.
    async fn store(&self, name: &ObjectRef, secret: Secret) -> Result<(), String> {
        match &self.storage {
            AcmeStorage::Folder(store) => {
                store.save_certificate(&secret).map_err(|e| e.to_string())?;
                let list = store.load_certificates().map_err(|e| e.to_string())?;
                self.issued.send_replace(Arc::new(list));
                Ok(())
            }
            AcmeStorage::Kube { client, .. } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), &name.namespace);
                for _ in 0..3 {
                    // Kubernetes writes only while leading (checked right before each one).
                    if !*self.leader.borrow() {
                        return Err("this replica no longer leads; the new leader orders it".into());
                    }
                    let write = write_secret(&api, secret.clone(), secrets::is_ours);
                    match tokio::time::timeout(CALL_TIMEOUT, write).await {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(WriteError::Conflict)) => {}
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(_) => return Err("the API server did not answer in time".into()),
                    }
                }
                Err("the Secret kept changing under us".into())
            }
        }
    }

    /// The ACME account: the stored key (created once, by the leader), registered or found
    /// again at the CA.
    async fn account(&mut self) -> Result<Arc<Account>, sluice::acme::AcmeError> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let key = self
            .account_key()
            .await
            .map_err(sluice::acme::AcmeError::AccountKey)?;
        let account = self
            .config
            .client
            .account(&key, std::slice::from_ref(&self.config.email))
            .await?;
        tracing::info!(
            account = account.url(),
            directory = self.config.client.directory_url(),
            "ACME account ready"
        );
        let account = Arc::new(account);
        self.account_url = Some(account.url().to_owned());
        self.account = Some(account.clone());
        // Visible at once (`/api/certificates`), not only once the order ends.
        self.publish();
        Ok(account)
    }

    async fn account_key(&self) -> Result<Vec<u8>, String> {
        match &self.storage {
            AcmeStorage::Folder(store) => store
                .load_or_create_account_key()
                .map_err(|e| e.to_string()),
            AcmeStorage::Kube { client, namespace } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let name = ObjectRef::new(namespace, secrets::DEFAULT_ACCOUNT_SECRET);
                for _ in 0..3 {
                    let existing = tokio::time::timeout(CALL_TIMEOUT, api.get_opt(&name.name))
                        .await
                        .map_err(|_| "reading the account Secret timed out".to_string())?
                        .map_err(|e| format!("cannot read Secret {name}: {e}"))?;
                    if let Some(s) = existing {
                        return secrets::account_key_from_secret(&s).map_err(|e| e.to_string());
                    }
                    let key = sluice::acme::generate_account_key();
                    let secret = secrets::account_secret(&name, &key);
                    match api.create(&PostParams::default(), &secret).await {
                        Ok(_) => {
                            tracing::info!(secret = %name, "ACME account key created");
                            return Ok(key);
                        }
                        // Another writer won the race: use theirs.
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => return Err(format!("cannot create Secret {name}: {e}")),
                    }
                }
                Err(format!("cannot read or create Secret {name}"))
            }
        }
    }
}
