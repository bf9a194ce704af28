//! Property tests for the routing table: [`RoutingTable::lookup`] against a slow reference
//! matcher written from the Kubernetes Ingress rules, plus properties of
//! [`normalize_request_path`].

use std::collections::HashSet;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;

use sluice::model::{
    Backend, BackendSettings, HostMatch, Model, ObjectRef, PathKind, PathMatch, Route, RouteSource,
    ServicePort,
};
use sluice::routing::{RoutingTable, normalize_request_path};

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Ports appended to request hosts.
const PORTS: &[&str] = &["", ":80", ":8443"];

const SEGMENTS: &[&str] = &["a", "b", "aa", "ab"];
/// Request segments: the rule alphabet plus ones no rule uses.
const REQUEST_SEGMENTS: &[&str] = &["a", "b", "aa", "ab", "c", "A", "a.b"];

/// Rule hosts: exact names at several depths, wildcards over them, and no host.
fn rule_hosts() -> Vec<HostMatch> {
    vec![
        HostMatch::Exact("a.com".into()),
        HostMatch::Exact("b.a.com".into()),
        HostMatch::Exact("x.b.a.com".into()),
        HostMatch::Exact("b.com".into()),
        HostMatch::Wildcard("a.com".into()),
        HostMatch::Wildcard("b.a.com".into()),
        HostMatch::Wildcard("com".into()),
        HostMatch::Any,
    ]
}

/// Request host bases: `(as sent, canonical name)`. `None` means the host can never match a
/// rule host (no host, or an IP literal in brackets).
const REQUEST_HOSTS: &[(&str, Option<&str>)] = &[
    ("a.com", Some("a.com")),
    ("b.a.com", Some("b.a.com")),
    ("c.a.com", Some("c.a.com")),
    ("x.b.a.com", Some("x.b.a.com")),
    ("y.b.a.com", Some("y.b.a.com")),
    ("z.y.b.a.com", Some("z.y.b.a.com")),
    ("b.com", Some("b.com")),
    ("com", Some("com")),
    ("a", Some("a")),
    ("other.org", Some("other.org")),
    ("10.0.0.1", Some("10.0.0.1")),
    ("", None),
    ("[::1]", None),
    ("[2001:db8::a]", None),
];

#[derive(Clone, Debug)]
struct GenRule {
    host: HostMatch,
    kind: PathKind,
    segments: Vec<&'static str>,
    trailing_slash: bool,
    /// Below [`POOL`]: one of the backends shared between routes; else a backend of its own.
    backend: usize,
}

impl GenRule {
    /// The path as written in the Ingress.
    fn raw_path(&self) -> String {
        join(&self.segments, self.trailing_slash)
    }

    /// The rule path as the reference understands it: Prefix paths lose their trailing slash
    /// (except the root), Exact paths are kept as written.
    fn normalised_path(&self) -> String {
        match self.kind {
            PathKind::Exact | PathKind::Regex => self.raw_path(),
            PathKind::Prefix => join(&self.segments, false),
        }
    }
}

fn join(segments: &[&str], trailing_slash: bool) -> String {
    let mut p = String::new();
    for s in segments {
        p.push('/');
        p.push_str(s);
    }
    if trailing_slash || p.is_empty() {
        p.push('/');
    }
    p
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        select(rule_hosts()),
        prop_oneof![
            Just(PathKind::Exact),
            Just(PathKind::Prefix),
            Just(PathKind::Regex)
        ],
        prop::collection::vec(select(SEGMENTS), 0..=3),
        any::<bool>(),
        0..POOL * 2,
    )
        .prop_map(|(host, kind, segments, trailing_slash, backend)| GenRule {
            host,
            kind,
            segments,
            trailing_slash,
            backend,
        })
}

#[derive(Clone, Debug)]
struct GenRequest {
    /// The Host header as sent.
    host: String,
    /// The host the reference matches with (lower-case, no port, no trailing dot).
    canonical: Option<String>,
    /// The request path (already normal: no dot segments, no escapes).
    path: String,
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    (
        select(REQUEST_HOSTS),
        any::<u64>(),
        any::<bool>(),
        select(PORTS),
        prop::collection::vec(select(REQUEST_SEGMENTS), 0..=4),
        any::<bool>(),
    )
        .prop_map(
            |((base, canonical), case_mask, trailing_dot, port, segments, trailing_slash)| {
                // Upper-case some letters, chosen by the bits of `case_mask`.
                let mut host: String = base
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if (case_mask >> (i % 64)) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                if trailing_dot && !host.is_empty() {
                    host.push('.');
                }
                host.push_str(port);
                GenRequest {
                    host,
                    canonical: canonical.map(str::to_string),
                    path: join(&segments, trailing_slash),
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Reference matcher
// ---------------------------------------------------------------------------------------------

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn reference_path_matches(rule: &GenRule, req_path: &str) -> bool {
    match rule.kind {
        PathKind::Exact => rule.normalised_path() == req_path,
        PathKind::Prefix => {
            // Generated segments are never empty, so they are the rule's segments as they are.
            let rule_segs = &rule.segments;
            let req_segs = segments(req_path);
            req_segs.len() >= rule_segs.len()
                && rule_segs.iter().zip(&req_segs).all(|(a, b)| a == b)
        }
        // Generated expressions are literal text (lower-case letters and `/`): `(?i)^text`.
        PathKind::Regex => req_path.to_ascii_lowercase().starts_with(&rule.raw_path()),
    }
}

/// Which host tier `rule_host` is in for the request host `host` (0 exact, 1 wildcard, 2 no
/// host), or `None` when it does not cover the request host.
fn reference_tier(rule_host: &HostMatch, host: Option<&str>) -> Option<u8> {
    match (rule_host, host) {
        (HostMatch::Any, _) => Some(2),
        (HostMatch::Exact(h), Some(req)) => (h == req).then_some(0),
        (HostMatch::Wildcard(suffix), Some(req)) => {
            let labels: Vec<&str> = req.split('.').collect();
            let suffix_labels: Vec<&str> = suffix.split('.').collect();
            // Exactly one non-empty label more than the suffix, and the rest equal.
            let covers = labels.len() == suffix_labels.len() + 1
                && !labels[0].is_empty()
                && labels[1..] == suffix_labels[..];
            covers.then_some(1)
        }
        (_, None) => None,
    }
}

/// The index of the winning rule, or `None` for "no route" (default backend or 404).
fn reference_lookup(rules: &[GenRule], host: Option<&str>, path: &str) -> Option<usize> {
    for tier in 0..=2u8 {
        let best = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| reference_tier(&r.host, host) == Some(tier))
            .filter(|(_, r)| reference_path_matches(r, path))
            // Longest first; on equal length Exact, then Prefix, then Regex (ingress-nginx's
            // order of regex locations, by length as written).
            .max_by_key(|(_, r)| {
                let rank = match r.kind {
                    PathKind::Exact => 2,
                    PathKind::Prefix => 1,
                    PathKind::Regex => 0,
                };
                (r.normalised_path().len(), rank)
            });
        if let Some((i, _)) = best {
            return Some(i);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The model under test
// ---------------------------------------------------------------------------------------------

fn backend(name: &str) -> Arc<Backend> {
    Arc::new(Backend {
        ingress: ObjectRef::new("ns", "ing"),
        service: ObjectRef::new("ns", name),
        port: ServicePort::Number(80),
        endpoints: Vec::new(),
        settings: BackendSettings::default(),
    })
}

/// Drops rules whose (host, kind, normalised path) an earlier rule already has, as translation
/// does.
fn dedupe(rules: Vec<GenRule>) -> Vec<GenRule> {
    let mut seen = HashSet::new();
    rules
        .into_iter()
        .filter(|r| seen.insert((r.host.clone(), r.kind, r.normalised_path())))
        .collect()
}

/// Number of backends shared between routes (as the routes of one Ingress naming the same
/// Service port share one).
const POOL: usize = 3;

/// The model: route `i` has `RouteSource.path == i`. `default_backend` below [`POOL`] shares a
/// pooled backend (possibly with routes), otherwise it is a backend of its own.
fn model(rules: &[GenRule], default_backend: Option<usize>) -> Result<Model, TestCaseError> {
    let pool: Vec<Arc<Backend>> = (0..POOL).map(|i| backend(&format!("pool-{i}"))).collect();
    let pick = |choice: usize, own: &str| pool.get(choice).cloned().unwrap_or_else(|| backend(own));
    let mut routes = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let path = match r.kind {
            PathKind::Regex => PathMatch::regex(&r.raw_path()),
            kind => PathMatch::new(kind, &r.raw_path()),
        }
        .map_err(|e| TestCaseError::fail(format!("rule {r:?} rejected: {e}")))?;
        prop_assert_eq!(
            &path.path,
            &r.normalised_path(),
            "rule path normalisation of {:?}",
            r
        );
        routes.push(Route {
            host: r.host.clone(),
            path,
            backend: pick(r.backend, &format!("route-{i}")),
            source: RouteSource {
                ingress: ObjectRef::new("ns", "ing"),
                rule: 0,
                path: i,
            },
            redirect_to_https: false,
            canary: None,
            fallback: None,
        });
    }
    Ok(Model {
        routes: routes.into(),
        default_backend: default_backend.map(|choice| pick(choice, "default")),
        ..Model::default()
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Route(usize),
    Default,
    NotFound,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// `lookup` picks the same route as the reference matcher, and `backend_index` always
    /// indexes the backend it returns.
    #[test]
    fn lookup_agrees_with_reference(
        rules in prop::collection::vec(gen_rule(), 0..12),
        default_backend in prop::option::of(0..POOL + 1),
        requests in prop::collection::vec(gen_request(), 1..16),
    ) {
        let rules = dedupe(rules);
        let model = model(&rules, default_backend)?;
        let table = RoutingTable::compile(&model);

        // `backends()` holds every backend of the model exactly once (by identity).
        let backends = table.backends();
        for (i, b) in backends.iter().enumerate() {
            prop_assert!(!backends[..i].iter().any(|o| Arc::ptr_eq(o, b)), "backend {} twice", i);
        }
        for b in model.routes.iter().map(|r| &r.backend).chain(model.default_backend.iter()) {
            prop_assert!(backends.iter().any(|o| Arc::ptr_eq(o, b)), "{} missing", b.label());
        }
        for req in &requests {
            let path = normalize_request_path(&req.path)
                .map_err(|e| TestCaseError::fail(format!("{:?}: {e}", req.path)))?;
            prop_assert_eq!(&*path, req.path.as_str(), "generated request paths are normal");

            let m = table.lookup(&req.host, &path);
            if let Some(m) = &m {
                prop_assert!(
                    backends.get(m.backend_index).is_some_and(|b| Arc::ptr_eq(b, m.backend)),
                    "backend_index {} does not index {} (host {:?} path {:?})",
                    m.backend_index,
                    m.backend.label(),
                    req.host,
                    req.path
                );
            }
            let got = match m {
                Some(m) => match m.route {
                    Some(route) => {
                        prop_assert!(Arc::ptr_eq(&route.backend, m.backend));
                        Outcome::Route(route.source.path)
                    }
                    None => {
                        let default = model.default_backend.as_ref();
                        prop_assert!(default.is_some_and(|d| Arc::ptr_eq(d, m.backend)));
                        Outcome::Default
                    }
                },
                None => Outcome::NotFound,
            };
            let want = match reference_lookup(&rules, req.canonical.as_deref(), &req.path) {
                Some(i) => Outcome::Route(i),
                None if default_backend.is_some() => Outcome::Default,
                None => Outcome::NotFound,
            };
            prop_assert_eq!(
                &got,
                &want,
                "host {:?} path {:?}; rules: {:?}",
                req.host,
                req.path,
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| format!("#{i} {} {} {}", r.host, r.kind, r.raw_path()))
                    .collect::<Vec<_>>()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request path normalisation
// ---------------------------------------------------------------------------------------------

const PATH_TOKENS: &[&str] = &[
    "/", "/", "/", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%41", "%7e", "%7E", "%25", "%c3%a9",
    "%20", "a", "b", "~", "-", "%", "%2f", "%5C", "%00", "%4", "?", "#", "//",
];

fn token_path() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(select(PATH_TOKENS), 0..16),
    )
        .prop_map(|(slash, tokens)| {
            let mut p = if slash {
                String::from("/")
            } else {
                String::new()
            };
            p.extend(tokens);
            p
        })
}

/// The properties every successful normalisation must have.
fn check_normal_form(input: &str, out: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        out.starts_with('/'),
        "{:?} -> {:?}: not absolute",
        input,
        out
    );
    for bad in ["//", "/./", "/../"] {
        prop_assert!(
            !out.contains(bad),
            "{:?} -> {:?}: contains {:?}",
            input,
            out,
            bad
        );
    }
    for bad in ["/.", "/.."] {
        prop_assert!(
            !out.ends_with(bad),
            "{:?} -> {:?}: ends with {:?}",
            input,
            out,
            bad
        );
    }
    prop_assert!(
        !out.contains(['?', '#']),
        "{:?} -> {:?}: query or fragment kept",
        input,
        out
    );
    // No escape of an unreserved character is left, and kept escapes use upper-case hex.
    let b = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
        prop_assert!(
            v.is_some(),
            "{:?} -> {:?}: malformed escape kept",
            input,
            out
        );
        let v = v.unwrap_or_default();
        let unreserved = v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~');
        prop_assert!(
            !unreserved,
            "{:?} -> {:?}: %{:02X} left encoded",
            input,
            out,
            v
        );
        prop_assert!(
            hex.is_some_and(|h| !h.bytes().any(|c| c.is_ascii_lowercase())),
            "{:?} -> {:?}: lower-case hex",
            input,
            out
        );
    }
    let again = normalize_request_path(out).map_err(|e| {
        TestCaseError::fail(format!("{input:?} -> {out:?}: renormalising fails: {e}"))
    })?;
    prop_assert_eq!(&*again, out, "not idempotent for {:?}", input);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Paths built from slashes, dots, escapes and letters: every accepted path comes out in
    /// normal form, and normalising it again changes nothing.
    #[test]
    fn normalisation_is_idempotent_and_canonical(input in token_path()) {
        if let Ok(out) = normalize_request_path(&input) {
            check_normal_form(&input, &out)?;
        }
    }

    /// Escapes that would change the path structure are always refused.
    #[test]
    fn structural_escapes_are_refused(input in token_path()) {
        let before_query = input.split(['?', '#']).next().unwrap_or("");
        let lower = before_query.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            prop_assert!(normalize_request_path(&input).is_err(), "{:?} accepted", input);
        }
    }

    /// Arbitrary strings: no panic, and anything accepted is in normal form.
    #[test]
    fn normalisation_never_panics(input in any::<String>()) {
        if let Ok(out) = normalize_request_path(&input) {
            check_normal_form(&input, &out)?;
        }
    }

    /// Arbitrary path-like strings (mostly starting with '/'), for more accepted inputs.
    #[test]
    fn normalisation_of_path_like_strings(input in "/[a-c./%0-9A-Fa-f~?#-]{0,24}") {
        if let Ok(out) = normalize_request_path(&input) {
            check_normal_form(&input, &out)?;
        }
    }

    /// `lookup` never panics, whatever the Host header and path.
    #[test]
    fn lookup_never_panics(host in any::<String>(), path in any::<String>()) {
        let rules = [
            ("a.com", PathKind::Prefix, "/a"),
            ("*.a.com", PathKind::Exact, "/b/"),
            ("", PathKind::Prefix, "/"),
        ];
        let routes: Vec<Route> = rules
            .iter()
            .enumerate()
            .map(|(i, &(h, kind, p))| Route {
                host: HostMatch::parse(h).expect("valid host"),
                path: PathMatch::new(kind, p).expect("valid path"),
                backend: backend(&format!("route-{i}")),
                source: RouteSource { ingress: ObjectRef::new("ns", "ing"), rule: 0, path: i },
                redirect_to_https: false,
                canary: None,
                fallback: None,
            })
            .collect();
        let table = RoutingTable::compile(&Model { routes: routes.into(), ..Model::default() });
        let _ = table.lookup(&host, &path);
        if let Ok(p) = normalize_request_path(&path) {
            // With a host-less Prefix "/" rule, every normalised path has a route.
            prop_assert!(table.lookup(&host, &p).is_some_and(|m| m.route.is_some()));
        }
    }
}
