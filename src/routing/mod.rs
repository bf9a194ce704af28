//! The routing table: Kubernetes Ingress matching semantics, compiled for fast lookup.
//!
//! Precedence, for a request `(host, path)`:
//! 1. rules whose host equals the request host, then rules whose wildcard covers it, then rules
//!    with no host, each tier tried in turn until one has a matching path;
//! 2. within a tier, the longest matching (normalised) rule path wins; on equal length `Exact`
//!    beats `Prefix`;
//! 3. then the default backend; else no match (404).
//!
//! The host is compared case-insensitively with its port and a trailing dot stripped. The path
//! must already be normalised ([`normalize_request_path`]); anything from `?` on is ignored.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::host::normalize_request_host;
use crate::model::{Backend, HostMatch, Model, PathKind, Route};

pub use crate::model::path::{RequestPathError, normalize_request_path};

/// A compiled, immutable routing table. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct RoutingTable {
    routes: Vec<Route>,
    /// Distinct backends (by identity); `route_backend[i]` indexes it for route `i`, and
    /// `default_index` for the default backend.
    backends: Vec<Arc<Backend>>,
    route_backend: Vec<usize>,
    default_index: usize,
    exact: HashMap<Box<str>, HostRoutes>,
    wildcard: HashMap<Box<str>, HostRoutes>,
    any: HostRoutes,
    default_backend: Option<Arc<Backend>>,
}

/// The routes of one host tier, in precedence order: longest path first, Exact before Prefix.
#[derive(Debug, Default)]
struct HostRoutes {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    kind: PathKind,
    path: Box<str>,
    route: usize,
}

impl HostRoutes {
    fn push(&mut self, kind: PathKind, path: &str, route: usize) {
        self.entries.push(Entry {
            kind,
            path: path.into(),
            route,
        });
    }

    fn sort(&mut self) {
        self.entries
            .sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.kind.cmp(&b.kind)));
    }

    #[inline]
    fn find(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| match e.kind {
                PathKind::Exact => *e.path == *path,
                PathKind::Prefix => crate::model::path::prefix_matches(&e.path, path),
            })
            .map(|e| e.route)
    }
}

/// The outcome of a successful lookup.
#[derive(Clone, Copy, Debug)]
pub struct RouteMatch<'a> {
    /// The matched route, or `None` when the default backend caught the request.
    pub route: Option<&'a Route>,
    /// Where to send the request.
    pub backend: &'a Arc<Backend>,
    /// Index of `backend` in [`RoutingTable::backends`], for per-backend state kept beside the
    /// table (balancer counters).
    pub backend_index: usize,
}

impl RoutingTable {
    /// Compiles a model. Routes the translation already de-duplicated are taken as they are.
    pub fn compile(model: &Model) -> RoutingTable {
        let mut t = RoutingTable {
            routes: model.routes.clone(),
            default_backend: model.default_backend.clone(),
            ..RoutingTable::default()
        };
        let mut seen: HashMap<*const Backend, usize> = HashMap::new();
        let mut index_of = |b: &Arc<Backend>, backends: &mut Vec<Arc<Backend>>| {
            *seen.entry(Arc::as_ptr(b)).or_insert_with(|| {
                backends.push(b.clone());
                backends.len() - 1
            })
        };
        for r in &t.routes {
            let i = index_of(&r.backend, &mut t.backends);
            t.route_backend.push(i);
        }
        if let Some(b) = &t.default_backend {
            t.default_index = index_of(b, &mut t.backends);
        }
        for (i, r) in t.routes.iter().enumerate() {
            let tier = match &r.host {
                HostMatch::Exact(h) => t.exact.entry(h.as_str().into()).or_default(),
                HostMatch::Wildcard(s) => t.wildcard.entry(s.as_str().into()).or_default(),
                HostMatch::Any => &mut t.any,
            };
            tier.push(r.path.kind, &r.path.path, i);
        }
        t.exact.values_mut().for_each(HostRoutes::sort);
        t.wildcard.values_mut().for_each(HostRoutes::sort);
        t.any.sort();
        t
    }

    /// Finds the route for a request. `host` is the Host header or `:authority` as received;
    /// `path` is the normalised request path.
    pub fn lookup(&self, host: &str, path: &str) -> Option<RouteMatch<'_>> {
        let path = match path.find('?') {
            Some(i) => &path[..i],
            None => path,
        };
        let path = if path.is_empty() { "/" } else { path };
        let mut buf = [0u8; 253];
        let host = normalize_request_host(host, &mut buf)
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok());
        let hit = host
            .and_then(|h| {
                self.exact.get(h).and_then(|r| r.find(path)).or_else(|| {
                    let (first, parent) = h.split_once('.')?;
                    if first.is_empty() {
                        return None;
                    }
                    self.wildcard.get(parent)?.find(path)
                })
            })
            .or_else(|| self.any.find(path));
        match hit {
            Some(i) => {
                let route = &self.routes[i];
                Some(RouteMatch {
                    route: Some(route),
                    backend: &route.backend,
                    backend_index: self.route_backend[i],
                })
            }
            None => self.default_backend.as_ref().map(|backend| RouteMatch {
                route: None,
                backend,
                backend_index: self.default_index,
            }),
        }
    }

    /// Every route, in compile order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Distinct backends; [`RouteMatch::backend_index`] indexes this.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The default backend, if any.
    pub fn default_backend(&self) -> Option<&Arc<Backend>> {
        self.default_backend.as_ref()
    }

    /// Number of distinct exact and wildcard hosts.
    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

#[cfg(test)]
mod tests;
