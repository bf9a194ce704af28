//! The routing table: Kubernetes Ingress matching semantics, compiled for fast lookup.
//!
//! Precedence, for a request `(host, path)`:
//! 1. rules whose host equals the request host, then rules whose wildcard covers it, then rules
//!    with no host, each tier tried in turn until one has a matching path;
//! 2. within a tier, the longest matching (normalised) rule path wins; on equal length `Exact`
//!    beats `Prefix`. Regular-expression paths (ingress-nginx's `use-regex`, see
//!    [`PathKind::Regex`]) take part in the same order, as ingress-nginx writes its regex
//!    locations: by the length of the expression as written, longest first, the first that
//!    matches wins (ties: Exact, Prefix, Regex, then the greater string);
//! 3. then the default backend; else no match (404).
//!
//! The host is compared case-insensitively with its port and a trailing dot stripped. The path
//! must already be normalised ([`normalize_request_path`]); anything from `?` on is ignored.

use std::collections::HashMap;
use std::sync::Arc;

use std::hash::BuildHasher as _;

use hashbrown::HashTable;

use crate::model::host::{host_without_port, normalize_request_host};
use crate::model::{Backend, HostMatch, Model, PathKind, Route};

pub use crate::model::path::{RequestPathError, normalize_request_path};
pub use rewrite::Rewrite;

pub mod rewrite;

/// A compiled, immutable routing table. Cheap to share behind an `Arc`.
///
/// Layout, tuned for few cache misses per lookup at 10 000 hosts: each host tier is a
/// `HashTable` (foldhash) of [`HostRoutes`], and each `HostRoutes` keeps its host name and all its
/// paths in one string, with a precedence-sorted slice of small entries pointing into it. A
/// lookup touches the table bucket, that string and the entry slice.
#[derive(Debug, Default)]
pub struct RoutingTable {
    routes: Arc<[Route]>,
    /// Distinct backends (by identity); `route_backend[i]` indexes it for route `i`, and
    /// `default_index` for the default backend.
    backends: Vec<Arc<Backend>>,
    route_backend: Vec<usize>,
    default_index: usize,
    hasher: foldhash::fast::RandomState,
    exact: HashTable<HostRoutes>,
    wildcard: HashTable<HostRoutes>,
    any: HostRoutes,
    default_backend: Option<Arc<Backend>>,
    /// `rewrites[i]` is route `i`'s rewrite; empty when no route has one.
    rewrites: Vec<Option<Rewrite>>,
    /// `fallback_backend[i]` indexes route `i`'s `default-backend` Service in `backends`
    /// (`usize::MAX`: none); empty when no route has one.
    fallback_backend: Vec<usize>,
    /// `canary_backend[i]` indexes route `i`'s canary backend in `backends` (`usize::MAX`: no
    /// canary); empty when no route has one.
    canary_backend: Vec<usize>,
}

/// The routes of one host of one tier: the host followed by every path in `text`, and entries
/// in precedence order (longest path first, Exact before Prefix).
#[derive(Debug, Default)]
struct HostRoutes {
    text: Box<str>,
    host_len: u32,
    entries: Box<[Entry]>,
    /// The compiled expressions of `Regex` entries (their `start` indexes this).
    regexes: Box<[regex::Regex]>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    kind: PathKind,
    start: u32,
    len: u32,
    route: u32,
}

impl HostRoutes {
    fn build(host: &str, mut paths: Vec<(PathKind, &str, usize)>) -> HostRoutes {
        paths.sort_by(|a, b| {
            b.1.len()
                .cmp(&a.1.len())
                .then(a.0.cmp(&b.0))
                .then(b.1.cmp(a.1))
        });
        let mut text =
            String::with_capacity(host.len() + paths.iter().map(|p| p.1.len()).sum::<usize>());
        text.push_str(host);
        let mut regexes = Vec::new();
        let entries = paths
            .iter()
            .filter_map(|(kind, path, route)| {
                let start = if *kind == PathKind::Regex {
                    // Translation only admits expressions that compile.
                    regexes.push(crate::model::path::location_regex(path).ok()?);
                    regexes.len() - 1
                } else {
                    let start = text.len();
                    text.push_str(path);
                    start
                };
                Some(Entry {
                    kind: *kind,
                    start: u32::try_from(start).unwrap_or(u32::MAX),
                    len: u32::try_from(path.len()).unwrap_or(u32::MAX),
                    route: u32::try_from(*route).unwrap_or(u32::MAX),
                })
            })
            .collect();
        HostRoutes {
            host_len: u32::try_from(host.len()).unwrap_or(u32::MAX),
            text: text.into(),
            entries,
            regexes: regexes.into(),
        }
    }

    #[inline]
    fn host(&self) -> &str {
        self.text.get(..self.host_len as usize).unwrap_or("")
    }

    #[inline]
    fn find(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| {
                let rule = || {
                    self.text
                        .get(e.start as usize..(e.start + e.len) as usize)
                        .unwrap_or("")
                };
                match e.kind {
                    PathKind::Exact => rule() == path,
                    PathKind::Prefix => crate::model::path::prefix_matches(rule(), path),
                    PathKind::Regex => self
                        .regexes
                        .get(e.start as usize)
                        .is_some_and(|r| r.is_match(path)),
                }
            })
            .map(|e| e.route as usize)
    }
}

/// True when `host` is already lower-case with no port and no trailing dot (the common case),
/// so lookup can use it without copying.
#[inline]
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b != b':' && !b.is_ascii_uppercase() && b != b'[')
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
    /// The route's rewrite (`rewrite-target`), if it has one.
    pub rewrite: Option<&'a Rewrite>,
    /// The route's canary and the index of its backend in [`RoutingTable::backends`].
    pub canary: Option<(&'a crate::model::Canary, usize)>,
    /// The index in [`RoutingTable::backends`] of the route's `default-backend` Service.
    pub fallback: Option<usize>,
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
        for r in t.routes.iter() {
            let i = index_of(&r.backend, &mut t.backends);
            t.route_backend.push(i);
        }
        if t.routes.iter().any(|r| r.rewrite_target().is_some()) {
            t.rewrites = t
                .routes
                .iter()
                .map(|r| Rewrite::new(&r.path.path, r.rewrite_target()?).ok())
                .collect();
        }
        if let Some(b) = &t.default_backend {
            t.default_index = index_of(b, &mut t.backends);
        }
        if t.routes.iter().any(|r| r.fallback.is_some()) {
            t.fallback_backend = t
                .routes
                .iter()
                .map(|r| {
                    r.fallback
                        .as_ref()
                        .map_or(usize::MAX, |b| index_of(b, &mut t.backends))
                })
                .collect();
        }
        if t.routes.iter().any(|r| r.canary.is_some()) {
            t.canary_backend = t
                .routes
                .iter()
                .map(|r| {
                    r.canary
                        .as_ref()
                        .map_or(usize::MAX, |c| index_of(&c.backend, &mut t.backends))
                })
                .collect();
        }
        type Group<'a> = HashMap<&'a str, Vec<(PathKind, &'a str, usize)>>;
        let (mut exact, mut wildcard): (Group<'_>, Group<'_>) = (HashMap::new(), HashMap::new());
        let mut any = Vec::new();
        for (i, r) in model.routes.iter().enumerate() {
            let entry = (r.path.kind, r.path.path.as_str(), i);
            match &r.host {
                HostMatch::Exact(h) => exact.entry(h.as_str()).or_default().push(entry),
                HostMatch::Wildcard(s) => wildcard.entry(s.as_str()).or_default().push(entry),
                HostMatch::Any => any.push(entry),
            }
        }
        let hasher = t.hasher.clone();
        let fill = |group: Group<'_>, table: &mut HashTable<HostRoutes>| {
            table.reserve(group.len(), |h| hasher.hash_one(h.host()));
            for (host, paths) in group {
                let routes = HostRoutes::build(host, paths);
                table.insert_unique(hasher.hash_one(host), routes, |h| hasher.hash_one(h.host()));
            }
        };
        fill(exact, &mut t.exact);
        fill(wildcard, &mut t.wildcard);
        t.any = HostRoutes::build("", any);
        t
    }

    #[inline]
    fn tier<'a>(&'a self, table: &'a HashTable<HostRoutes>, host: &str) -> Option<&'a HostRoutes> {
        table.find(self.hasher.hash_one(host), |h| h.host() == host)
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
        // A name with a port (`:authority` on a port other than 443) is its name: no copy.
        let bare = host_without_port(host);
        let host = if is_plain_host(bare) {
            Some(bare)
        } else {
            normalize_request_host(host, &mut buf).and_then(|n| std::str::from_utf8(&buf[..n]).ok())
        };
        let hit = host
            .and_then(|h| {
                self.tier(&self.exact, h)
                    .and_then(|r| r.find(path))
                    .or_else(|| {
                        let (first, parent) = h.split_once('.')?;
                        if first.is_empty() {
                            return None;
                        }
                        self.tier(&self.wildcard, parent)?.find(path)
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
                    rewrite: self.rewrites.get(i).and_then(Option::as_ref),
                    fallback: self
                        .fallback_backend
                        .get(i)
                        .copied()
                        .filter(|&b| b != usize::MAX),
                    // `canary_backend` is empty when no route has a canary: checking it first
                    // keeps the common lookup from reading the `Route` (a cache miss at 10 000
                    // hosts) just to find `canary` is `None`.
                    canary: self
                        .canary_backend
                        .get(i)
                        .copied()
                        .filter(|&b| b != usize::MAX)
                        .and_then(|b| Some((route.canary.as_deref()?, b))),
                })
            }
            None => self.default_backend.as_ref().map(|backend| RouteMatch {
                route: None,
                backend,
                backend_index: self.default_index,
                rewrite: None,
                canary: None,
                fallback: None,
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
