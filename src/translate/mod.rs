//! Kubernetes objects -> [`Model`], with a [`Diagnostic`] for every field that was rejected.
//!
//! [`translate`] is a pure function: the same [`ClusterState`] and [`Options`] always give the
//! same [`Translation`]. It never fails as a whole: a bad field drops only what it describes (a
//! path, a rule, a TLS entry) and the rest of the object, and every other object, is served.
//!
//! Semantics follow the Ingress v1 API reference:
//! - An Ingress is ours when its class (`spec.ingressClassName`, else the legacy annotation
//!   `kubernetes.io/ingress.class`) names an IngressClass whose `spec.controller` is ours, or
//!   names [`Options::ingress_class`] and no IngressClass of that name exists; a class-less one is
//!   ours when one of our classes is annotated as the default class or
//!   [`Options::watch_without_class`] is set.
//! - Conflicts (the same host, path type and normalised path in two places) go to the oldest
//!   Ingress (`creationTimestamp`, then namespace/name); the loser gets a [`Reason::PathConflict`].
//! - `ImplementationSpecific` means `Prefix` in sluice, except on an Ingress with `use-regex` or
//!   `rewrite-target`, where every path (of any type) is a regular expression
//!   ([`PathKind::Regex`]), as in ingress-nginx.
//! - Endpoints: ready endpoints (`ready` unset counts as ready); when there is none, the serving
//!   but terminating ones; when there is none of those either the route still exists and answers
//!   503.

pub mod annotations;
mod backend;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::cluster::ClusterState;
use crate::cluster::age_key;
pub use crate::cluster::object_ref;
use crate::model::{
    Diagnostic, HostMatch, Kind, Model, ObjectRef, PathKind, PathMatch, Reason, Route, RouteSource,
    TlsHost,
};

use backend::Resolver;
pub use backend::SERVICE_NAME_LABEL;

/// The controller name sluice claims IngressClasses for by default.
pub const DEFAULT_CONTROLLER_NAME: &str = "sluice.io/ingress-controller";
/// The legacy annotation naming an Ingress's class.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation marking an IngressClass as the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Which Ingresses are ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// IngressClasses with this `spec.controller` are ours.
    pub controller_name: String,
    /// A class name that is ours even when no IngressClass object of that name exists (the
    /// common case in a folder of manifests).
    pub ingress_class: String,
    /// Also take Ingresses that have no class at all.
    pub watch_without_class: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_name: DEFAULT_CONTROLLER_NAME.to_string(),
            ingress_class: "sluice".to_string(),
            watch_without_class: false,
        }
    }
}

/// The result of [`translate`].
#[derive(Clone, Debug, Default)]
pub struct Translation {
    /// What to serve.
    pub model: Model,
    /// Everything that was rejected or looks wrong, in object order.
    pub diagnostics: Vec<Diagnostic>,
    /// The TLS Secrets referenced by owned Ingresses, parsed once (for
    /// [`CertStore::build_parsed`](crate::tls::CertStore::build_parsed)).
    pub certs: crate::tls::ParsedSecrets,
}

impl Translation {
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Translates the cluster state into the desired state.
pub fn translate(state: &ClusterState, options: &Options) -> Translation {
    translate_with_acme(state, options, None)
}

/// [`translate`] knowing which tls entries ACME manages (`acme`: `None` when ACME is off).
///
/// A tls entry of an Ingress that asks sluice's ACME for certificates (see
/// [`crate::acme::wants`]) and whose Secret does not exist yet gets a
/// [`Reason::CertificatePending`] warning instead of the `SecretNotFound` error; as with any
/// missing Secret, its hosts are served the default certificate and plain HTTP is not
/// redirected to HTTPS, so that the CA's HTTP-01 request gets through.
pub fn translate_with_acme(
    state: &ClusterState,
    options: &Options,
    acme: Option<&crate::acme::AcmeOptions>,
) -> Translation {
    let classes = ClassIndex::new(&state.ingress_classes, options);
    let mut owned: Vec<&Ingress> = state.ingresses.iter().filter(|i| classes.owns(i)).collect();
    owned.sort_by_cached_key(|i| age_key(&i.metadata));

    let mut t = Translator {
        resolver: Resolver::new(state),
        model: Model::default(),
        routes: Vec::new(),
        diagnostics: Vec::new(),
        claimed_paths: hashbrown::HashTable::new(),
        claim_hasher: foldhash::fast::RandomState::default(),
        claimed_tls: HashMap::new(),
        default_owner: None,
        acme,
        canaries: Vec::new(),
        aliases: Vec::new(),
    };
    for ingress in owned {
        t.ingress(ingress);
    }
    t.add_aliases();
    t.attach_canaries();
    let tls_hosts: Vec<&HostMatch> = t.model.tls.iter().map(|h| &h.host).collect();
    for route in &mut t.routes {
        let settings = &route.backend.settings;
        route.redirect_to_https = settings.force_ssl_redirect
            || (settings.ssl_redirect && tls_covers(&tls_hosts, &route.host));
    }
    t.model.routes = std::mem::take(&mut t.routes).into();
    t.model.ingresses.sort();
    // An object seen through several references (an EndpointSlice used by two Ingresses) is
    // reported once.
    let mut seen = HashSet::new();
    let mut diagnostics = t.diagnostics;
    diagnostics.retain(|d| seen.insert(d.clone()));
    Translation {
        model: t.model,
        diagnostics,
        certs: t.resolver.into_parsed(),
    }
}

/// Whether `ingress` is ours under `options` and the cluster's IngressClasses, as
/// [`translate`] decides it (see the module documentation).
pub fn is_owned(classes: &[IngressClass], options: &Options, ingress: &Ingress) -> bool {
    ClassIndex::new(classes, options).owns(ingress)
}

/// The class an Ingress names: `spec.ingressClassName`, else the legacy annotation
/// `kubernetes.io/ingress.class`; `None` when it names none.
pub fn class_of(ingress: &Ingress) -> Option<&str> {
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        })
}

/// Is every host `route` answers for covered by one of the TLS hosts?
fn tls_covers(tls: &[&HostMatch], route: &HostMatch) -> bool {
    match route {
        HostMatch::Exact(h) => tls.iter().any(|t| t.matches(h)),
        HostMatch::Wildcard(_) => tls.contains(&route),
        HostMatch::Any => false,
    }
}

struct ClassIndex<'a> {
    ours: HashSet<&'a str>,
    all: HashSet<&'a str>,
    default_is_ours: bool,
    options: &'a Options,
}

impl<'a> ClassIndex<'a> {
    fn new(classes: &'a [IngressClass], options: &'a Options) -> Self {
        let mut ours = HashSet::new();
        let mut all = HashSet::new();
        let mut default_is_ours = false;
        for class in classes {
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            all.insert(name);
            let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
            if controller == Some(options.controller_name.as_str()) {
                ours.insert(name);
                let is_default = class
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true");
                default_is_ours |= is_default;
            }
        }
        ClassIndex {
            ours,
            all,
            default_is_ours,
            options,
        }
    }

    fn owns(&self, ingress: &Ingress) -> bool {
        match class_of(ingress) {
            Some(name) => {
                self.ours.contains(name)
                    || (!self.all.contains(name) && name == self.options.ingress_class)
            }
            None => self.default_is_ours || self.options.watch_without_class,
        }
    }
}

/// `spec.rules[r].http.paths[p]`, formatted only when a diagnostic needs it.
#[derive(Clone, Copy, Debug)]
struct PathField {
    rule: usize,
    path: usize,
}

impl std::fmt::Display for PathField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spec.rules[{}].http.paths[{}]", self.rule, self.path)
    }
}

/// Where a backend is written: a rule path's `backend`, or `spec.defaultBackend`.
#[derive(Clone, Copy, Debug)]
enum BackendField {
    Path(PathField),
    Default,
}

impl std::fmt::Display for BackendField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendField::Path(p) => write!(f, "{p}.backend"),
            BackendField::Default => f.write_str("spec.defaultBackend"),
        }
    }
}

/// Who holds a TLS host: the Ingress and the field.
#[derive(Clone)]
struct Claim {
    ingress: ObjectRef,
    field: String,
}

struct Translator<'a> {
    resolver: Resolver<'a>,
    model: Model,
    routes: Vec<Route>,
    diagnostics: Vec<Diagnostic>,
    /// (host, path type, path) -> index of the route that holds it.
    claimed_paths: hashbrown::HashTable<usize>,
    claim_hasher: foldhash::fast::RandomState,
    claimed_tls: HashMap<HostMatch, (ObjectRef, Claim)>,
    default_owner: Option<ObjectRef>,
    acme: Option<&'a crate::acme::AcmeOptions>,
    /// Paths of canary Ingresses, attached to their main routes once every Ingress is read.
    canaries: Vec<PendingCanary>,
    /// Routes for `server-alias` hosts, added once every Ingress is read (a host some
    /// Ingress has a rule for is never an alias).
    aliases: Vec<(HostMatch, std::rc::Rc<str>, Route)>,
}

/// One path of a canary Ingress, waiting for its main route.
struct PendingCanary {
    ingress: ObjectRef,
    field: PathField,
    host: HostMatch,
    path: PathMatch,
    backend: std::sync::Arc<crate::model::Backend>,
    rule: crate::model::CanaryRule,
}

impl Translator<'_> {
    fn ingress(&mut self, ingress: &Ingress) {
        let me = object_ref(&ingress.metadata);
        // Configuration snippets: the Ingress is not served at all (no routes, TLS, status,
        // DNS records or certificates), rather than served without what the snippet did.
        let snippets = annotations::snippets(ingress.metadata.annotations.as_ref());
        if !snippets.is_empty() {
            for key in snippets {
                self.diagnostics
                    .push(annotations::snippet_diagnostic(&me, key));
            }
            return;
        }
        self.model.ingresses.push(me.clone());
        let Some(spec) = ingress.spec.as_ref() else {
            return;
        };
        let mut settings = annotations::settings(
            &me,
            ingress.metadata.annotations.as_ref(),
            &mut self.diagnostics,
        );
        let resolver = &self.resolver;
        annotations::basic_auth(
            &me,
            ingress.metadata.annotations.as_ref(),
            &|r| resolver.secret(r),
            &mut settings,
            &mut self.diagnostics,
        );
        annotations::upstream_tls(
            &me,
            ingress.metadata.annotations.as_ref(),
            &|r| resolver.secret(r),
            &mut settings,
            &mut self.diagnostics,
        );
        annotations::passthrough(
            &me,
            ingress.metadata.annotations.as_ref(),
            spec,
            &mut settings,
            &mut self.diagnostics,
        );
        // A canary's paths split their main routes' traffic instead of being routes of their
        // own; a canary whose settings do not parse gets no traffic at all.
        let canary = match annotations::canary_rule(
            &me,
            ingress.metadata.annotations.as_ref(),
            &mut self.diagnostics,
        ) {
            annotations::CanaryRole::Main => None,
            annotations::CanaryRole::Canary(rule) => Some(rule),
            annotations::CanaryRole::Invalid => return,
        };
        let mut backends: backend::BackendCache<'_> = HashMap::new();
        let fallback = self.fallback(&me, ingress.metadata.annotations.as_ref(), &settings);

        if let Some(default) = spec.default_backend.as_ref().filter(|_| {
            canary.is_none() || {
                self.diagnostics.push(Diagnostic::warning(
                    Reason::InvalidBackend,
                    Kind::Ingress,
                    &me,
                    "spec.defaultBackend",
                    "a canary Ingress only splits its main Ingress's paths: its default \
                         backend is ignored",
                ));
                false
            }
        }) {
            let field = "spec.defaultBackend";
            match &self.default_owner {
                Some(owner) => self.diagnostics.push(Diagnostic::error(
                    Reason::DefaultBackendConflict,
                    Kind::Ingress,
                    &me,
                    field,
                    format!("the default backend is already set by the older Ingress {owner}; this one is ignored"),
                )),
                None => {
                    if let Some(b) = self.resolver.backend(&me, &BackendField::Default, default, &settings, &mut backends, &mut self.diagnostics) {
                        self.model.default_backend = Some(b);
                        self.default_owner = Some(me.clone());
                    }
                }
            }
        }

        let (alias_key, aliases) = annotations::server_aliases(
            &me,
            ingress.metadata.annotations.as_ref(),
            &mut self.diagnostics,
        );
        let alias_key: std::rc::Rc<str> = alias_key.into();
        let mut rule_hosts = Vec::new();
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let host = match HostMatch::parse(rule.host.as_deref().unwrap_or("")) {
                Ok(h) => h,
                Err(e) => {
                    self.diagnostics.push(Diagnostic::error(
                        Reason::InvalidHost,
                        Kind::Ingress,
                        &me,
                        format!("spec.rules[{ri}].host"),
                        format!(
                            "{:?}: {e}; this rule is ignored",
                            rule.host.as_deref().unwrap_or("")
                        ),
                    ));
                    continue;
                }
            };
            if host != HostMatch::Any {
                rule_hosts.push(host.clone());
            }
            let Some(http) = rule.http.as_ref() else {
                continue;
            };
            for (pi, p) in http.paths.iter().enumerate() {
                let field = PathField { rule: ri, path: pi };
                let Some(path) = self.path(
                    &me,
                    field,
                    p.path_type.as_str(),
                    p.path.as_deref(),
                    &settings,
                ) else {
                    continue;
                };
                if let Some(rule) = &canary {
                    if let Some(backend) = self.resolver.backend(
                        &me,
                        &BackendField::Path(field),
                        &p.backend,
                        &settings,
                        &mut backends,
                        &mut self.diagnostics,
                    ) {
                        self.canaries.push(PendingCanary {
                            ingress: me.clone(),
                            field,
                            host: host.clone(),
                            path,
                            backend,
                            rule: rule.clone(),
                        });
                    }
                    continue;
                }
                if let Some(i) = self.claimed(&host, &path) {
                    let owner = &self.routes[i].source;
                    let owner_field = PathField {
                        rule: owner.rule,
                        path: owner.path,
                    };
                    let msg = if owner.ingress == me {
                        format!(
                            "{} {} on host {} is already defined by {owner_field} of this Ingress; this path is ignored",
                            path.kind, path.path, host
                        )
                    } else {
                        format!(
                            "{} {} on host {} is already served by the older Ingress {} ({owner_field}); this path is ignored",
                            path.kind, path.path, host, owner.ingress
                        )
                    };
                    self.diagnostics.push(Diagnostic::error(
                        Reason::PathConflict,
                        Kind::Ingress,
                        &me,
                        field.to_string(),
                        msg,
                    ));
                    continue;
                }
                let Some(backend) = self.resolver.backend(
                    &me,
                    &BackendField::Path(field),
                    &p.backend,
                    &settings,
                    &mut backends,
                    &mut self.diagnostics,
                ) else {
                    continue;
                };
                self.claim(self.routes.len(), &host, &path);
                let route = Route {
                    host: host.clone(),
                    path,
                    backend,
                    source: RouteSource {
                        ingress: me.clone(),
                        rule: ri,
                        path: pi,
                    },
                    redirect_to_https: false,
                    canary: None,
                    fallback: fallback.clone(),
                };
                if host != HostMatch::Any {
                    for alias in &aliases {
                        self.aliases.push((
                            alias.clone(),
                            alias_key.clone(),
                            Route {
                                host: alias.clone(),
                                ..route.clone()
                            },
                        ));
                    }
                }
                self.routes.push(route);
            }
        }

        let acme_managed = self.acme.is_some_and(|o| {
            crate::acme::wants::selection(ingress.metadata.annotations.as_ref(), o)
                == crate::acme::Selection::Ours
        });
        for (ti, tls) in spec.tls.iter().flatten().enumerate() {
            self.tls(&me, ti, tls, &rule_hosts, acme_managed);
        }
    }

    /// The Ingress's `default-backend` Service (port: its first), resolved as a path's backend
    /// is; `custom-http-errors` without it is reported (sluice has no global error backend).
    fn fallback(
        &mut self,
        me: &ObjectRef,
        annotations: Option<&std::collections::BTreeMap<String, String>>,
        settings: &crate::model::BackendSettings,
    ) -> Option<std::sync::Arc<crate::model::Backend>> {
        let annotations = annotations?;
        let Some(key) = annotations::present_key(annotations, annotations::DEFAULT_BACKEND) else {
            if let Some(k) = annotations::present_key(annotations, annotations::CUSTOM_HTTP_ERRORS)
            {
                self.diagnostics.push(Diagnostic::warning(
                    Reason::InvalidAnnotation,
                    Kind::Ingress,
                    me,
                    format!("metadata.annotations[{k}]"),
                    "has no effect without default-backend (the Service that serves the error \
                     pages): upstream errors are passed through",
                ));
            }
            return None;
        };
        let name = annotations[&key].trim().to_string();
        let service = ObjectRef::new(me.namespace.clone(), name.clone());
        let field = format!("metadata.annotations[{key}]");
        let Some(port) = self.resolver.first_port(&service) else {
            self.diagnostics.push(Diagnostic::error(
                Reason::ServiceNotFound,
                Kind::Ingress,
                me,
                field,
                format!("Service {service} not found (or has no port): not used"),
            ));
            return None;
        };
        let written = k8s_openapi::api::networking::v1::IngressBackend {
            service: Some(k8s_openapi::api::networking::v1::IngressServiceBackend {
                name,
                port: Some(k8s_openapi::api::networking::v1::ServiceBackendPort {
                    number: Some(port),
                    name: None,
                }),
            }),
            resource: None,
        };
        let mut cache = HashMap::new();
        self.resolver.backend(
            me,
            &field,
            &written,
            settings,
            &mut cache,
            &mut self.diagnostics,
        )
    }

    /// The index of the route that holds `(host, path type, path)`, if one does.
    fn claimed(&self, host: &HostMatch, path: &PathMatch) -> Option<usize> {
        let hash = self
            .claim_hasher
            .hash_one((host, path.kind, path.path.as_str()));
        self.claimed_paths
            .find(hash, |&i| {
                let r = &self.routes[i];
                r.path.kind == path.kind && r.path.path == path.path && r.host == *host
            })
            .copied()
    }

    /// Records that the route at `index` (pushed next) holds `(host, path type, path)`.
    fn claim(&mut self, index: usize, host: &HostMatch, path: &PathMatch) {
        let hash = self
            .claim_hasher
            .hash_one((host, path.kind, path.path.as_str()));
        let hasher = &self.claim_hasher;
        let routes = &self.routes;
        self.claimed_paths.insert_unique(hash, index, |&i| {
            let r = &routes[i];
            hasher.hash_one((&r.host, r.path.kind, r.path.path.as_str()))
        });
    }

    /// Adds the routes of `server-alias` hosts: not for a host any Ingress has a rule for (as
    /// ingress-nginx, an alias never takes over a server), nor for a path an earlier alias
    /// route already holds.
    fn add_aliases(&mut self) {
        let rule_hosts: HashSet<HostMatch> = self.routes.iter().map(|r| r.host.clone()).collect();
        let mut reported = HashSet::new();
        for (alias, key, route) in std::mem::take(&mut self.aliases) {
            if rule_hosts.contains(&alias) {
                if reported.insert((route.source.ingress.clone(), alias.clone())) {
                    self.diagnostics.push(Diagnostic::warning(
                        Reason::InvalidAnnotation,
                        Kind::Ingress,
                        &route.source.ingress,
                        format!("metadata.annotations[{key}]"),
                        format!(
                            "alias {alias} is a host of an Ingress rule: that rule serves it, \
                             the alias is not used"
                        ),
                    ));
                }
                continue;
            }
            if self.claimed(&route.host, &route.path).is_some() {
                continue;
            }
            self.claim(self.routes.len(), &route.host, &route.path);
            self.routes.push(route);
        }
    }

    /// Gives each main route the canary written for its host and path (the oldest canary
    /// Ingress, if several: ingress-nginx allows one per path).
    fn attach_canaries(&mut self) {
        for c in std::mem::take(&mut self.canaries) {
            let Some(i) = self.claimed(&c.host, &c.path) else {
                self.diagnostics.push(Diagnostic::warning(
                    Reason::InvalidBackend,
                    Kind::Ingress,
                    &c.ingress,
                    c.field.to_string(),
                    format!(
                        "canary for {} {} on host {}: no main Ingress serves this host and \
                         path, so the canary gets no traffic",
                        c.path.kind, c.path.path, c.host
                    ),
                ));
                continue;
            };
            let route = &mut self.routes[i];
            if let Some(other) = &route.canary {
                self.diagnostics.push(Diagnostic::error(
                    Reason::PathConflict,
                    Kind::Ingress,
                    &c.ingress,
                    c.field.to_string(),
                    format!(
                        "{} {} on host {} already has the canary of the older Ingress {}; this \
                         one gets no traffic",
                        c.path.kind, c.path.path, c.host, other.ingress
                    ),
                ));
                continue;
            }
            // As ingress-nginx: the canary inherits the main Ingress's settings, except its
            // own load balancing.
            let main_settings = &route.backend.settings;
            let backend = std::sync::Arc::new(crate::model::Backend {
                settings: crate::model::BackendSettings {
                    load_balancer: c.backend.settings.load_balancer,
                    ..main_settings.clone()
                },
                ..(*c.backend).clone()
            });
            route.canary = Some(std::sync::Arc::new(crate::model::Canary {
                ingress: c.ingress,
                backend,
                rule: c.rule,
            }));
        }
    }

    fn path(
        &mut self,
        me: &ObjectRef,
        field: PathField,
        path_type: &str,
        path: Option<&str>,
        settings: &crate::model::BackendSettings,
    ) -> Option<PathMatch> {
        let kind = match path_type {
            "Exact" => PathKind::Exact,
            "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
            "" => {
                self.diagnostics.push(Diagnostic::error(
                    Reason::InvalidPath,
                    Kind::Ingress,
                    me,
                    format!("{field}.pathType"),
                    "required: one of Exact, Prefix, ImplementationSpecific; this path is ignored",
                ));
                return None;
            }
            other => {
                self.diagnostics.push(Diagnostic::error(
                    Reason::InvalidPath,
                    Kind::Ingress,
                    me,
                    format!("{field}.pathType"),
                    format!("{other:?} is not one of Exact, Prefix, ImplementationSpecific; this path is ignored"),
                ));
                return None;
            }
        };
        let raw = match (path, path_type) {
            (None | Some(""), "ImplementationSpecific") => "/",
            (None | Some(""), _) => {
                self.diagnostics.push(Diagnostic::error(
                    Reason::InvalidPath,
                    Kind::Ingress,
                    me,
                    format!("{field}.path"),
                    format!("required for pathType {path_type}; this path is ignored"),
                ));
                return None;
            }
            (Some(p), _) => p,
        };
        // As ingress-nginx: `use-regex`, or a `rewrite-target` that differs from the path,
        // makes the path an expression whatever its type.
        let regex =
            settings.use_regex || settings.rewrite_target.as_deref().is_some_and(|t| t != raw);
        let parsed = if regex {
            PathMatch::regex(raw)
        } else {
            PathMatch::new(kind, raw)
        };
        match parsed {
            Ok(p) => Some(p),
            Err(e) => {
                self.diagnostics.push(Diagnostic::error(
                    Reason::InvalidPath,
                    Kind::Ingress,
                    me,
                    format!("{field}.path"),
                    format!("{raw:?}: {e}; this path is ignored"),
                ));
                None
            }
        }
    }

    fn tls(
        &mut self,
        me: &ObjectRef,
        ti: usize,
        tls: &k8s_openapi::api::networking::v1::IngressTLS,
        rule_hosts: &[HostMatch],
        acme_managed: bool,
    ) {
        let field = format!("spec.tls[{ti}]");
        let mut hosts = Vec::new();
        match tls.hosts.as_deref() {
            Some(list) if !list.is_empty() => {
                for (hi, h) in list.iter().enumerate() {
                    match HostMatch::parse(h) {
                        Ok(HostMatch::Any) | Err(_) => self.diagnostics.push(Diagnostic::error(
                            Reason::InvalidHost,
                            Kind::Ingress,
                            me,
                            format!("{field}.hosts[{hi}]"),
                            match HostMatch::parse(h) {
                                Err(e) => format!("{h:?}: {e}; this TLS host is ignored"),
                                Ok(_) => "must not be empty; this TLS host is ignored".to_string(),
                            },
                        )),
                        Ok(m) => hosts.push(m),
                    }
                }
            }
            // No hosts: the certificate covers every host of this Ingress's rules.
            _ => hosts.extend(rule_hosts.iter().cloned()),
        }
        let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            if !hosts.is_empty() {
                self.diagnostics.push(Diagnostic::warning(
                    Reason::SecretNotFound,
                    Kind::Ingress,
                    me,
                    format!("{field}.secretName"),
                    "not set: these hosts are served with the default certificate",
                ));
            }
            return;
        };
        let secret = ObjectRef::new(me.namespace.clone(), secret_name);
        if acme_managed && !hosts.is_empty() && !self.resolver.has_secret(&secret) {
            self.diagnostics.push(Diagnostic::warning(
                Reason::CertificatePending,
                Kind::Ingress,
                me,
                format!("{field}.secretName"),
                format!(
                    "the ACME certificate for Secret {secret} is not issued yet; until it is, \
                     its hosts are served with the default certificate and plain HTTP is not \
                     redirected to HTTPS"
                ),
            ));
            return;
        }
        if !self.resolver.check_tls_secret(
            me,
            &format!("{field}.secretName"),
            &secret,
            &mut self.diagnostics,
        ) {
            return;
        }
        for host in hosts {
            match self.claimed_tls.get(&host) {
                Some((other_secret, _)) if *other_secret == secret => continue,
                Some((other_secret, owner)) => {
                    self.diagnostics.push(Diagnostic::error(
                        Reason::TlsConflict,
                        Kind::Ingress,
                        me,
                        field.clone(),
                        format!(
                            "host {host} already uses Secret {other_secret} from {} ({}); Secret {secret} is not used for it",
                            if owner.ingress == *me { "this Ingress".to_string() } else { format!("the older Ingress {}", owner.ingress) },
                            owner.field
                        ),
                    ));
                }
                None => {
                    self.claimed_tls.insert(
                        host.clone(),
                        (
                            secret.clone(),
                            Claim {
                                ingress: me.clone(),
                                field: field.clone(),
                            },
                        ),
                    );
                    self.model.tls.push(TlsHost {
                        host,
                        secret: secret.clone(),
                        ingress: me.clone(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
