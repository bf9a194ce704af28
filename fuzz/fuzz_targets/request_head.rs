//! Arbitrary bytes as a raw HTTP/1.1 request head: the request target goes through
//! `normalize_request_path` and, with the `Host` header, `RoutingTable::lookup` over a fixed
//! compiled table; every header value also goes through the annotation parsers
//! `parse_duration`, `parse_size` and `parse_cidrs`. Nothing may panic, and a lookup must return the route a
//! brute-force search of the table's precedence rules picks.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sluice::model::host::normalize_request_host;
use sluice::model::{
    Backend, HostMatch, Model, ObjectRef, PathKind, PathMatch, Route, RouteSource, ServicePort,
};
use sluice::routing::{RoutingTable, normalize_request_path};
use sluice::translate::annotations::{parse_cidrs, parse_duration, parse_size};

const RULES: &[(&str, PathKind, &str)] = &[
    ("a.example.com", PathKind::Prefix, "/"),
    ("a.example.com", PathKind::Prefix, "/api"),
    ("a.example.com", PathKind::Exact, "/api"),
    ("a.example.com", PathKind::Exact, "/api/v1/users"),
    ("a.example.com", PathKind::Prefix, "/caf%c3%a9"),
    ("a.example.com", PathKind::Prefix, "/a%20b/"),
    ("*.example.com", PathKind::Prefix, "/"),
    ("*.example.com", PathKind::Prefix, "/static"),
    ("*.a.example.com", PathKind::Exact, "/deep"),
    ("x", PathKind::Prefix, "/x"),
    ("", PathKind::Exact, "/healthz"),
    ("", PathKind::Prefix, "/public"),
    ("", PathKind::Prefix, "/public/admin"),
    ("r.example.com", PathKind::Regex, "/api/v[0-9]+/"),
    ("r.example.com", PathKind::Regex, "/api/.*/users"),
    ("r.example.com", PathKind::Prefix, "/api/v1/users/me"),
    ("r.example.com", PathKind::Exact, "/api/v1"),
];

fn table() -> &'static RoutingTable {
    static TABLE: OnceLock<RoutingTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let backend = Arc::new(Backend {
            ingress: ObjectRef::new("default", "fuzz"),
            service: ObjectRef::new("default", "svc"),
            port: ServicePort::Number(80),
            endpoints: Vec::new(),
            settings: Default::default(),
        });
        let routes: Vec<Route> = RULES
            .iter()
            .enumerate()
            .map(|(i, (host, kind, path))| Route {
                host: HostMatch::parse(host).expect("valid fuzz host"),
                path: match kind {
                    PathKind::Regex => PathMatch::regex(path),
                    kind => PathMatch::new(*kind, path),
                }
                .expect("valid fuzz path"),
                backend: backend.clone(),
                source: RouteSource {
                    ingress: ObjectRef::new("default", "fuzz"),
                    rule: i,
                    path: 0,
                },
                redirect_to_https: false,
                canary: None,
                fallback: None,
            })
            .collect();
        RoutingTable::compile(&Model {
            routes: routes.into(),
            ..Model::default()
        })
    })
}

/// The route the Ingress precedence rules pick, by brute force: exact host, then wildcard,
/// then no host; within a tier the longest path (a regular expression by its length as
/// written), Exact before Prefix before Regex, then the greater path string.
fn expected<'a>(table: &'a RoutingTable, host: Option<&str>, path: &str) -> Option<&'a Route> {
    let tiers: [&dyn Fn(&HostMatch) -> bool; 3] = [
        &|h| matches!(h, HostMatch::Exact(_)) && host.is_some_and(|host| h.matches(host)),
        &|h| matches!(h, HostMatch::Wildcard(_)) && host.is_some_and(|host| h.matches(host)),
        &|h| matches!(h, HostMatch::Any),
    ];
    tiers.iter().find_map(|in_tier| {
        table
            .routes()
            .iter()
            .filter(|r| in_tier(&r.host) && r.path.matches(path))
            .max_by(|a, b| {
                a.path
                    .path
                    .len()
                    .cmp(&b.path.path.len())
                    .then(b.path.kind.cmp(&a.path.kind))
                    // Equal lengths and kinds (two expressions): the greater string first.
                    .then(a.path.path.cmp(&b.path.path))
            })
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let target = request_line.split(' ').nth(1).unwrap_or(request_line);
    let mut host = "";
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            host = value;
        }
        if let Some(d) = parse_duration(value) {
            assert!(
                d <= Duration::from_secs(86_400),
                "{value:?} -> {d:?}: over a day"
            );
        }
        let _ = parse_size(value);
        if let Ok(list) = parse_cidrs(value) {
            // What parsed prints as a network that parses back to itself.
            for c in list {
                assert_eq!(c.to_string().parse::<sluice::model::Cidr>(), Ok(c), "{value:?}");
            }
        }
    }

    let table = table();
    // Raw (unnormalised) input must not panic either.
    let _ = table.lookup(host, target);
    let Ok(path) = normalize_request_path(target) else {
        return;
    };
    let got = table.lookup(host, &path).and_then(|m| m.route);
    let mut buf = [0u8; 253];
    let norm_host =
        normalize_request_host(host, &mut buf).and_then(|n| std::str::from_utf8(&buf[..n]).ok());
    let want = expected(table, norm_host, &path);
    assert_eq!(
        got.map(|r| r.source.rule),
        want.map(|r| r.source.rule),
        "host {host:?} path {path:?}: lookup and the precedence rules disagree"
    );
});
