//! The Kubernetes API source: kube-rs watchers and reflector stores for every kind sluice reads.
//!
//! [`watch`] starts one `kube::runtime::watcher` per kind (Ingress, IngressClass, Service,
//! EndpointSlice, and `kubernetes.io/tls` and `Opaque` Secrets), each feeding a reflector [`Store`], and
//! delivers a [`Loaded`] built from the stores, the same type the manifests source delivers, so
//! nothing downstream knows which source runs:
//!
//! - **Nothing half-built.** Nothing is delivered until the first full list of every kind (and
//!   every namespace) has arrived. A relist (after 410 Gone) swaps a store's content at once when
//!   the list is complete, so a later state is never half-built either.
//! - **Only TLS and Opaque Secrets.** Secrets are listed and watched with the field selectors
//!   `type=kubernetes.io/tls` (certificates) and `type=Opaque` (the htpasswd files of basic
//!   authentication, `auth-secret`): service-account tokens, Helm releases, registry
//!   credentials and other types never reach this process. An Opaque Secret is delivered only
//!   while an Ingress names it in `auth-secret`; the others stay in the watcher's store.
//! - **Namespace scoping.** With [`Options::namespaces`] empty every namespace is watched;
//!   otherwise each namespaced kind gets one watcher per listed namespace (the API has no
//!   "these namespaces" selector, and one watcher per namespace is what RBAC narrowed to
//!   namespaces (Roles instead of a ClusterRole) allows). IngressClasses are cluster-scoped and
//!   always watched cluster-wide.
//! - **Recovery.** kube-runtime's watcher lists (pages of 500), then watches from the list's
//!   resourceVersion with bookmarks; a watch that ends is resumed from the last seen
//!   resourceVersion, and a 410 Gone (as a watch ERROR event) sends it back to a full relist.
//!   Errors are retried with an exponential backoff with jitter ([`BackoffPolicy`]; the default
//!   is kube-runtime's `default_backoff()`: 0.8 s doubling to 30 s), reset after a success.
//!   The last delivered state stays valid meanwhile: an API server that is away only delays
//!   changes.
//! - **Debounced.** A burst of events yields one state: delivery waits until
//!   [`Options::debounce`] has passed without a further event (at most ten times that, and at
//!   least 500 ms, under constant churn). A state equal to the last delivered one (same objects
//!   at the same resourceVersions, as after a relist that found nothing new) is not delivered
//!   again.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::manifests::Loaded;
use super::{ClusterState, SourceWatch};

/// The field selector that keeps every Secret but TLS ones on the API server's side.
pub const TLS_SECRET_SELECTOR: &str = "type=kubernetes.io/tls";

/// The field selector of the Secrets basic authentication reads (`auth-secret`).
pub const OPAQUE_SECRET_SELECTOR: &str = "type=Opaque";

/// How many states may wait in the channel; the watch waits (and coalesces) beyond that.
const CHANNEL_CAPACITY: usize = 4;

/// Why the Kubernetes source could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither an in-cluster configuration nor a kubeconfig (`KUBECONFIG`, `~/.kube/config`)
    /// could be loaded. Retrying does not help until the environment changes.
    #[error("cannot find a Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    /// The kubeconfig file given explicitly could not be read or used.
    #[error("cannot use kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client could not be built from a valid configuration (TLS or auth setup).
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Exponential backoff between attempts after a list or watch error: `min`, doubling up to
/// `max`, each delay with random jitter (between half and all of it), back to `min` after a
/// success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// kube-runtime's `default_backoff()`: 800 ms doubling up to 30 s.
    fn default() -> Self {
        BackoffPolicy {
            min: Duration::from_millis(800),
            max: Duration::from_secs(30),
        }
    }
}

/// Settings of the Kubernetes source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Namespaces to watch; empty means every namespace.
    pub namespaces: Vec<String>,
    /// Quiet time that ends a burst of events (see the [module documentation](self)).
    pub debounce: Duration,
    /// Backoff after list and watch errors.
    pub backoff: BackoffPolicy,
}

impl Default for Options {
    /// Every namespace, 50 ms debounce, kube-runtime's default backoff.
    fn default() -> Self {
        Options {
            namespaces: Vec::new(),
            debounce: Duration::from_millis(50),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// A client from the environment: the in-cluster service account, else `KUBECONFIG` or
/// `~/.kube/config` (kube's `Client::try_default`).
pub async fn client_from_env() -> Result<Client, Error> {
    let config = kube::Config::infer().await.map_err(Error::Infer)?;
    client_from_config(config)
}

/// A client from an explicit kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, Error> {
    let wrap = |source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(wrap)?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(wrap)?;
    client_from_config(config)
}

/// A client from a ready configuration (tests: `kube::Config::new("http://127.0.0.1:PORT")`).
/// Must be called inside a tokio runtime.
pub fn client_from_config(config: kube::Config) -> Result<Client, Error> {
    Client::try_from(config).map_err(Error::Client)
}

/// Lists every kind sluice reads once, without watching (what `sluice explain --kube`
/// explains): Ingresses, IngressClasses, Services, EndpointSlices, `kubernetes.io/tls`
/// Secrets and the Secrets Ingresses name in `auth-secret`, in `namespaces` (empty: every namespace). The first error ends it: a state with a
/// kind missing would explain wrongly.
pub async fn list_once(
    client: &Client,
    namespaces: &[String],
) -> Result<ClusterState, kube::Error> {
    async fn list<K>(
        client: &Client,
        namespaces: &[String],
        fields: Option<&str>,
    ) -> Result<Vec<K>, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let mut params = kube::api::ListParams::default();
        if let Some(f) = fields {
            params = params.fields(f);
        }
        if namespaces.is_empty() {
            return Ok(Api::<K>::all(client.clone()).list(&params).await?.items);
        }
        let mut all = Vec::new();
        for ns in namespaces {
            all.extend(
                Api::<K>::namespaced(client.clone(), ns)
                    .list(&params)
                    .await?
                    .items,
            );
        }
        Ok(all)
    }
    let params = kube::api::ListParams::default();
    let ingresses: Vec<Ingress> = list(client, namespaces, None).await?;
    let mut secrets: Vec<Secret> = list(client, namespaces, Some(TLS_SECRET_SELECTOR)).await?;
    // The htpasswd Secrets of basic authentication: only the ones an Ingress names, by name.
    let wanted: BTreeSet<crate::model::ObjectRef> = ingresses
        .iter()
        .flat_map(crate::translate::annotations::secret_refs)
        .collect();
    for r in wanted {
        if let Some(s) = Api::<Secret>::namespaced(client.clone(), &r.namespace)
            .get_opt(&r.name)
            .await?
        {
            secrets.push(s);
        }
    }
    Ok(ClusterState {
        ingresses,
        ingress_classes: Api::<IngressClass>::all(client.clone())
            .list(&params)
            .await?
            .items,
        services: list(client, namespaces, None).await?,
        endpoint_slices: list(client, namespaces, None).await?,
        secrets,
    })
}

/// Starts the watchers (tasks owned by the returned watch) and returns the source (see the
/// [module documentation](self)). Its states are published by [`SourceWatch::next`], in the
/// caller's task. Never fails: an unreachable or refusing API server only delays the first
/// state, and is retried with backoff. The source ends (`next` returns `None`) only if a
/// watcher task ends, which kube-runtime's watchers never do on their own.
pub fn watch(client: Client, options: Options) -> SourceWatch {
    let namespaces: BTreeSet<String> = options.namespaces.iter().cloned().collect();
    let namespaces: Vec<String> = namespaces.into_iter().collect();
    let changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let spawn = Spawner {
        tasks: &mut tasks,
        changed: &changed,
        backoff: options.backoff,
    };
    let stores = spawn.all(&client, &namespaces);
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    SourceWatch::driven(
        rx,
        Box::pin(publish_loop(stores, tasks, changed, tx, options.debounce)),
    )
}

/// The reflector stores of every kind, one per watched scope.
struct Stores {
    ingresses: Vec<Store<Ingress>>,
    ingress_classes: Vec<Store<IngressClass>>,
    services: Vec<Store<Service>>,
    endpoint_slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
}

/// Identity of a state: every object's kind, namespace, name and resourceVersion.
type Fingerprint = Vec<(u8, String, String, String)>;

impl Stores {
    /// Waits until every store has its first full list. False if a watcher task died first.
    async fn ready(&self) -> bool {
        async fn all<K>(stores: &[Store<K>]) -> bool
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            for store in stores {
                if store.wait_until_ready().await.is_err() {
                    return false;
                }
            }
            true
        }
        all(&self.ingresses).await
            && all(&self.ingress_classes).await
            && all(&self.services).await
            && all(&self.endpoint_slices).await
            && all(&self.secrets).await
    }

    /// The current content of every store, each kind sorted by namespace and name.
    fn snapshot(&self) -> ClusterState {
        let ingresses = collect(&self.ingresses);
        let wanted: BTreeSet<crate::model::ObjectRef> = ingresses
            .iter()
            .flat_map(crate::translate::annotations::secret_refs)
            .collect();
        let mut secrets: Vec<Secret> = collect(&self.secrets);
        secrets.retain(|s| {
            s.type_.as_deref() == Some("kubernetes.io/tls")
                || wanted.contains(&crate::cluster::object_ref(&s.metadata))
        });
        ClusterState {
            ingresses,
            ingress_classes: collect(&self.ingress_classes),
            services: collect(&self.services),
            endpoint_slices: collect(&self.endpoint_slices),
            secrets,
        }
    }
}

fn collect<K>(stores: &[Store<K>]) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut all: Vec<K> = stores
        .iter()
        .flat_map(Store::state)
        .map(|obj| (*obj).clone())
        .collect();
    all.sort_by_key(|o| (o.namespace(), o.name_any()));
    all
}

fn fingerprint(state: &ClusterState) -> Fingerprint {
    fn add<K: Resource>(out: &mut Fingerprint, tag: u8, objects: &[K]) {
        out.extend(objects.iter().map(|o| {
            let meta = o.meta();
            (
                tag,
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
                meta.resource_version.clone().unwrap_or_default(),
            )
        }));
    }
    let mut out = Vec::with_capacity(state.len());
    add(&mut out, 0, &state.ingresses);
    add(&mut out, 1, &state.ingress_classes);
    add(&mut out, 2, &state.services);
    add(&mut out, 3, &state.endpoint_slices);
    add(&mut out, 4, &state.secrets);
    out
}

/// Waits for every kind's first list, then delivers a state after every burst of changes,
/// until the receiver is dropped. Owns the watcher tasks: they end with it.
async fn publish_loop(
    stores: Stores,
    mut tasks: JoinSet<()>,
    changed: Arc<Notify>,
    tx: mpsc::Sender<Loaded>,
    debounce: Duration,
) {
    tokio::select! {
        ready = stores.ready() => if !ready { return },
        () = tx.closed() => return,
        Some(ended) = tasks.join_next() => return watcher_ended(ended),
    }
    // Bounded so that no setting can overflow the clock arithmetic below.
    let debounce = debounce.min(Duration::from_secs(60));
    let max_delay = debounce.saturating_mul(10).max(Duration::from_millis(500));
    let mut last: Option<Fingerprint> = None;
    loop {
        let state = stores.snapshot();
        let print = fingerprint(&state);
        if last.as_ref() != Some(&print) {
            let loaded = Loaded {
                state,
                ..Loaded::default()
            };
            if tx.send(loaded).await.is_err() {
                return;
            }
            last = Some(print);
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tx.closed() => return,
            Some(ended) = tasks.join_next() => return watcher_ended(ended),
        }
        // Debounce: until `debounce` passes without a change, or `max_delay` in all.
        let hard = tokio::time::Instant::now() + max_delay;
        loop {
            let quiet = (tokio::time::Instant::now() + debounce).min(hard);
            tokio::select! {
                () = changed.notified() => {
                    if tokio::time::Instant::now() >= hard {
                        break;
                    }
                }
                () = tokio::time::sleep_until(quiet) => break,
            }
        }
    }
}

/// A watcher task ended (it never does on its own): the source cannot go on.
fn watcher_ended(ended: Result<(), tokio::task::JoinError>) {
    match ended {
        Err(e) if e.is_panic() => {
            tracing::error!("a Kubernetes watcher task panicked; the source ends");
        }
        _ => tracing::error!("a Kubernetes watcher task ended; the source ends"),
    }
}

/// Starts reflector tasks.
struct Spawner<'a> {
    tasks: &'a mut JoinSet<()>,
    changed: &'a Arc<Notify>,
    backoff: BackoffPolicy,
}

impl Spawner<'_> {
    fn all(mut self, client: &Client, namespaces: &[String]) -> Stores {
        let plain = watcher::Config::default();
        let tls = watcher::Config::default().fields(TLS_SECRET_SELECTOR);
        let opaque = watcher::Config::default().fields(OPAQUE_SECRET_SELECTOR);
        Stores {
            ingresses: self.scoped(client, namespaces, &plain),
            ingress_classes: vec![self.reflect(Api::all(client.clone()), plain.clone(), None)],
            services: self.scoped(client, namespaces, &plain),
            endpoint_slices: self.scoped(client, namespaces, &plain),
            secrets: {
                let mut stores = self.scoped(client, namespaces, &tls);
                stores.extend(self.scoped(client, namespaces, &opaque));
                stores
            },
        }
    }

    /// One reflector for every namespace, or one cluster-wide when `namespaces` is empty.
    fn scoped<K>(
        &mut self,
        client: &Client,
        namespaces: &[String],
        config: &watcher::Config,
    ) -> Vec<Store<K>>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
        K: Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        if namespaces.is_empty() {
            return vec![self.reflect(Api::all(client.clone()), config.clone(), None)];
        }
        namespaces
            .iter()
            .map(|ns| {
                let api = Api::namespaced(client.clone(), ns);
                self.reflect(api, config.clone(), Some(ns.clone()))
            })
            .collect()
    }

    /// Spawns a watcher feeding a new store; every change that reaches the store wakes the
    /// publisher.
    fn reflect<K>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
        namespace: Option<String>,
    ) -> Store<K>
    where
        K: Resource<DynamicType = ()>,
        K: Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let (reader, writer) = reflector::store();
        let changed = Arc::clone(self.changed);
        let backoff = ExpBackoff::new(self.backoff);
        self.tasks.spawn(async move {
            let kind = K::kind(&());
            let scope = namespace.as_deref().unwrap_or("*").to_owned();
            let mut events =
                std::pin::pin!(reflector::reflector(
                    writer,
                    watcher::watcher(api, config).backoff(backoff),
                ));
            while let Some(event) = events.next().await {
                match event {
                    // The store buffers a (re)list until it is complete.
                    Ok(Event::Init | Event::InitApply(_)) => {}
                    Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_)) => {
                        changed.notify_one();
                    }
                    Err(error) => {
                        metrics::counter!("sluice_kube_watch_errors_total", "kind" => kind.to_string())
                            .increment(1);
                        tracing::warn!(%kind, namespace = %scope, %error, "kubernetes watch error; retrying with backoff");
                    }
                }
            }
        });
        reader
    }
}

/// [`BackoffPolicy`] as kube-runtime's [`Backoff`]: the engine's one backoff
/// ([`crate::pace::Backoff`], half of each delay random so that replicas do not retry in step).
struct ExpBackoff(crate::pace::Backoff);

impl ExpBackoff {
    fn new(policy: BackoffPolicy) -> ExpBackoff {
        ExpBackoff(crate::pace::Backoff::new(policy.min, policy.max))
    }
}

impl Iterator for ExpBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0.next_delay())
    }
}

impl Backoff for ExpBackoff {
    fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = ExpBackoff::new(BackoffPolicy {
            min: Duration::from_millis(100),
            max: Duration::from_millis(500),
        });
        let delays: Vec<Duration> = (0..5).map(|_| b.next().unwrap()).collect();
        let bounds = [100, 200, 400, 500, 500];
        for (d, max) in delays.iter().zip(bounds) {
            assert!(*d <= Duration::from_millis(max) && *d >= Duration::from_millis(max / 2));
        }
        b.reset();
        assert!(b.next().unwrap() <= Duration::from_millis(100));
    }

    #[test]
    fn fingerprint_sees_resource_versions() {
        let mut state = ClusterState::default();
        let mut svc = Service::default();
        svc.metadata.name = Some("a".into());
        svc.metadata.resource_version = Some("1".into());
        state.services.push(svc.clone());
        let before = fingerprint(&state);
        state.services[0].metadata.resource_version = Some("2".into());
        assert_ne!(before, fingerprint(&state));
    }
}
