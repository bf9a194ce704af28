//! `sluice explain URL`: why a URL reaches (or does not reach) a Service.
//!
//! [`explain`] is a pure function of the cluster state, the class options, the translation of
//! that state and a URL (and `now`, for certificate expiry). It asks the compiled
//! [`RoutingTable`] which route wins, exactly as the proxy does, and then accounts for every
//! other rule path that could have taken the request: another class, another host, a path that
//! does not match, one that lost on precedence, or one the translation dropped (with its
//! diagnostic). It also describes the backend and its endpoints, the certificate chosen for
//! the SNI, and the filters (annotations) that apply to the route.
//!
//! The runtime only does I/O around it: the CLI loads the state (a folder, the Kubernetes
//! API) and the admin API explains against the live state, adding the DNS and ACME states it
//! has ([`Explanation::dns`], [`Explanation::certificate`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

use k8s_openapi::api::networking::v1::Ingress;
use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterState, object_ref};
use crate::model::host::{is_valid_request_host, normalize_request_host};
use crate::model::{
    Backend, BackendSettings, Diagnostic, HostMatch, Kind, ObjectRef, PathKind, PathMatch, Reason,
    Route,
};
use crate::routing::{RoutingTable, normalize_request_path};
use crate::translate::annotations::{self, present_key};
use crate::translate::{Options, Translation, class_of, is_owned};

/// At most this many other candidates are listed (the rest are counted).
pub const MAX_CANDIDATES: usize = 50;

/// Why a URL cannot be explained: it is not a URL sluice could receive.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// The URL does not parse, or names a host no client could send.
    #[error("{url:?} is not a URL sluice can explain: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How the request ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A rule of an Ingress takes it.
    Route,
    /// No rule matches; the default backend (`spec.defaultBackend`) takes it.
    DefaultBackend,
    /// No rule matches and there is no default backend: 404.
    NoRoute,
}

/// Which host tier a rule is in, for this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// The rule's host equals the request host.
    Exact,
    /// The rule's wildcard host (`*.example.com`) covers the request host.
    Wildcard,
    /// The rule has no host.
    NoHost,
    /// The rule is for another host.
    OtherHost,
}

impl Tier {
    fn of(host: &HostMatch, request: Option<&str>) -> Tier {
        match (host, request) {
            (HostMatch::Any, _) => Tier::NoHost,
            (HostMatch::Exact(_), Some(r)) if host.matches(r) => Tier::Exact,
            (HostMatch::Wildcard(_), Some(r)) if host.matches(r) => Tier::Wildcard,
            _ => Tier::OtherHost,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Tier::Exact => "exact host",
            Tier::Wildcard => "wildcard host",
            Tier::NoHost => "rule without host",
            Tier::OtherHost => "another host",
        }
    }
}

/// The request as the proxy matches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    /// The URL as given.
    pub url: String,
    /// `http` or `https`: the listener the request arrives on.
    pub entrypoint: String,
    /// The host, lower case without port or trailing dot (`None`: an IP literal, which only
    /// rules without host match).
    pub host: Option<String>,
    /// The port of the URL, if written.
    pub port: Option<u16>,
    /// The normalised path.
    pub path: String,
    /// The query, without `?`.
    pub query: Option<String>,
    /// The TLS server name a client sends (https only).
    pub sni: Option<String>,
}

/// The rule path (or default backend) that takes the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WinnerView {
    /// The Ingress.
    pub ingress: String,
    /// The host tier it matched in (`None` for the default backend).
    pub tier: Option<Tier>,
    /// The rule's host (`*` for a rule without host).
    pub host: String,
    /// Index into `spec.rules` (`None` for the default backend).
    pub rule: Option<usize>,
    /// Index into `spec.rules[rule].http.paths`.
    pub path_index: Option<usize>,
    /// The field: `spec.rules[0].http.paths[1]` or `spec.defaultBackend`.
    pub field: String,
    /// The `pathType` as written.
    pub path_type: Option<String>,
    /// How the path is matched: Exact, Prefix or Regex.
    pub matching: Option<String>,
    /// The path (normalised; an expression as written).
    pub path: Option<String>,
}

/// Why a rule path did not take the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The Ingress is of a class that is not ours.
    OtherClass,
    /// The rule is for another host.
    HostMismatch,
    /// The path does not match.
    PathMismatch,
    /// The regular expression does not match.
    RegexMismatch,
    /// A rule of a more specific host tier matched first.
    HigherTierWon,
    /// A longer path matched.
    LongerPathWon,
    /// An Exact path of the same length matched.
    ExactWon,
    /// An entry earlier in precedence order (regular expressions: longest as written first)
    /// matched.
    EarlierMatchWon,
    /// The translation dropped it (see the diagnostic).
    Dropped,
}

/// A diagnostic, as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticView {
    /// `error` or `warning`.
    pub severity: String,
    /// The reason (`PathConflict`, `ServiceNotFound`...).
    pub reason: String,
    /// The object (`namespace/name`; other kinds than Ingress prefixed with their kind).
    pub object: String,
    /// The field.
    pub field: String,
    /// The message.
    pub message: String,
}

impl From<&Diagnostic> for DiagnosticView {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticView {
            severity: d.severity.as_str().to_string(),
            reason: d.reason.as_str().to_string(),
            object: if d.kind == Kind::Ingress {
                d.object.to_string()
            } else {
                format!("{} {}", d.kind, d.object)
            },
            field: d.field.clone(),
            message: d.message.clone(),
        }
    }
}

/// Another rule path that could have taken the request, and why it did not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The Ingress.
    pub ingress: String,
    /// `spec.rules[r].http.paths[p]`.
    pub field: String,
    /// The rule's host as written (`*`: none).
    pub host: String,
    /// Its tier for this request.
    pub tier: Tier,
    /// `pathType` as written.
    pub path_type: String,
    /// `path` as written.
    pub path: String,
    /// Why it did not win.
    pub verdict: Verdict,
    /// The same, in words.
    pub reason: String,
    /// The diagnostic that dropped it, for [`Verdict::Dropped`].
    pub diagnostic: Option<DiagnosticView>,
}

/// For a request no rule takes: the candidate closest to taking it, and what to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Closest {
    /// The Ingress.
    pub ingress: String,
    /// The rule path (`spec.rules[r].http.paths[p]`).
    pub field: String,
    /// Why it is not taking the request.
    pub reason: String,
    /// The field to change: `namespace/name spec.rules[0].host`.
    pub change: String,
}

/// One endpoint of the backend's Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    /// `ip:port` when used, else the IP.
    pub address: String,
    /// The EndpointSlice conditions (unset `ready` and `serving` count as true).
    pub ready: bool,
    /// `serving`.
    pub serving: bool,
    /// `terminating`.
    pub terminating: bool,
    /// Requests are sent to it.
    pub used: bool,
}

/// Where the request goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    /// The Service.
    pub service: String,
    /// Its port, as the Ingress names it.
    pub port: String,
    /// The endpoints of the Service (from its EndpointSlices).
    pub endpoints: Vec<EndpointView>,
    /// How many endpoints requests are balanced over.
    pub used: usize,
    /// Problems with the backend (Service or port missing, no ready endpoints...).
    pub diagnostics: Vec<DiagnosticView>,
}

/// The certificate for the request's SNI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsView {
    /// The server name.
    pub sni: String,
    /// The TLS host that covers it (`*.example.com`), if any.
    pub host: Option<String>,
    /// The Secret whose certificate is served (`None`: the default certificate).
    pub secret: Option<String>,
    /// The Ingress whose `spec.tls` names the Secret.
    pub ingress: Option<String>,
    /// `notAfter` of the leaf certificate, Unix seconds.
    pub not_after: Option<i64>,
    /// The same, RFC 3339.
    pub not_after_text: Option<String>,
    /// `notAfter` is before `now`.
    pub expired: bool,
    /// The default (self-signed) certificate is served.
    pub default_certificate: bool,
    /// Why, in words.
    pub message: String,
    /// Problems with TLS entries naming this host.
    pub diagnostics: Vec<DiagnosticView>,
}

/// One filter of the route, with the annotation it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterView {
    /// The setting (the `sluice.io/` name without prefix).
    pub name: String,
    /// The annotation actually present on the Ingress (`None`: a default).
    pub annotation: Option<String>,
    /// What it does to this request.
    pub effect: String,
}

/// One DNS record for the host (running instance only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsView {
    /// Record type.
    pub record_type: String,
    /// Wanted targets.
    pub desired: Vec<String>,
    /// Current targets (`None`: absent).
    pub current: Option<Vec<String>>,
    /// Owner of the current record.
    pub owner: Option<String>,
    /// Changes planned.
    pub pending: Vec<String>,
    /// Why it is not written.
    pub blocked: Option<String>,
}

/// The ACME certificate for the chosen Secret (running instance only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcmeView {
    /// The Secret.
    pub secret: String,
    /// Its names.
    pub hosts: Vec<String>,
    /// State (`valid`, `pending`, `failed`...).
    pub state: String,
    /// `notAfter` of the certificate served, Unix seconds.
    pub not_after: Option<i64>,
    /// The last error.
    pub last_error: Option<String>,
}

/// The answer to "where does this URL go, and why".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The request as matched.
    pub request: RequestView,
    /// Route, default backend or 404.
    pub outcome: Outcome,
    /// What the proxy answers, in words (`forwarded to ...`, `503: ...`, `308 to https://...`).
    pub answer: String,
    /// The rule path or default backend that takes the request.
    pub winner: Option<WinnerView>,
    /// Other rule paths that could have taken it, in precedence order, and why they did not.
    pub candidates: Vec<Candidate>,
    /// Candidates not listed (beyond [`MAX_CANDIDATES`]).
    pub more_candidates: usize,
    /// For a request no rule takes: the nearest miss and the field to change.
    pub closest: Option<Closest>,
    /// The backend.
    pub backend: Option<BackendView>,
    /// For https: the certificate.
    pub tls: Option<TlsView>,
    /// Plain-HTTP requests for this route are redirected to HTTPS (308).
    pub https_redirect: bool,
    /// Filters that apply to the route, in the order the proxy applies them.
    pub filters: Vec<FilterView>,
    /// The rewritten upstream path and query (`rewrite-target`), when it differs.
    pub upstream_path: Option<String>,
    /// DNS records of the host (`None`: not known here; a running instance fills it).
    pub dns: Option<Vec<DnsView>>,
    /// The ACME certificate of the chosen Secret (`None`: not known or not managed).
    pub certificate: Option<AcmeView>,
}

impl Explanation {
    /// The process exit code of `sluice explain`: 0 when a rule routes the request, 1 when
    /// the default backend takes it or nothing does (404).
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Route => 0,
            Outcome::DefaultBackend | Outcome::NoRoute => 1,
        }
    }
}

/// A URL split into what the proxy sees.
struct Url {
    entrypoint: &'static str,
    authority: String,
    host: Option<String>,
    port: Option<u16>,
    path: String,
    query: Option<String>,
}

fn parse_url(url: &str) -> Result<Url, ExplainError> {
    let bad = |reason: &str| ExplainError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = url.trim();
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| bad("expected http://HOST/PATH or https://HOST/PATH"))?;
    let entrypoint = match scheme.to_ascii_lowercase().as_str() {
        "http" => "http",
        "https" => "https",
        _ => return Err(bad("the scheme must be http or https")),
    };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    // User information never reaches the Host header.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.is_empty() {
        return Err(bad("the host is missing"));
    }
    if !is_valid_request_host(authority) {
        return Err(bad(&format!("{authority:?} is not a valid host[:port]")));
    }
    let port = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => p.parse().ok(),
        _ => None,
    };
    let mut buf = [0u8; 253];
    let host = normalize_request_host(authority, &mut buf)
        .and_then(|n| std::str::from_utf8(buf.get(..n)?).ok())
        .filter(|h| h.parse::<std::net::IpAddr>().is_err())
        .map(str::to_string);
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    let raw_path = if raw_path.is_empty() { "/" } else { raw_path };
    let path = normalize_request_path(raw_path)
        .map_err(|e| bad(&format!("path {raw_path:?}: {e} (the proxy answers 400)")))?
        .into_owned();
    Ok(Url {
        entrypoint,
        authority: authority.to_string(),
        host,
        port,
        path,
        query,
    })
}

/// One rule path as written in an Ingress, with what translation made of it.
struct Written<'a> {
    ingress: &'a Ingress,
    me: ObjectRef,
    rule: usize,
    index: usize,
    host_raw: &'a str,
    host: Option<HostMatch>,
    path_type: &'a str,
    path_raw: &'a str,
    owned: bool,
    route: Option<&'a Route>,
}

impl Written<'_> {
    fn field(&self) -> String {
        format!("spec.rules[{}].http.paths[{}]", self.rule, self.index)
    }

    /// How the path matches: the route's when translated, else as translation would read it
    /// (regular expressions under `use-regex` / `rewrite-target`).
    fn matcher(&self) -> Option<PathMatch> {
        if let Some(r) = self.route {
            return Some(r.path.clone());
        }
        let raw = match (self.path_raw, self.path_type) {
            ("", "ImplementationSpecific") => "/",
            (p, _) => p,
        };
        let mut scratch = Vec::new();
        let settings = annotations::settings(
            &self.me,
            self.ingress.metadata.annotations.as_ref(),
            &mut scratch,
        );
        if settings.use_regex || settings.rewrite_target.as_deref().is_some_and(|t| t != raw) {
            return PathMatch::regex(raw).ok();
        }
        let kind = match self.path_type {
            "Exact" => PathKind::Exact,
            _ => PathKind::Prefix,
        };
        PathMatch::new(kind, raw).ok()
    }
}

/// Precedence key of a candidate: tier, then as [`RoutingTable`] orders the entries of a tier.
type PrecedenceKey = (
    Tier,
    std::cmp::Reverse<usize>,
    u8,
    std::cmp::Reverse<String>,
);

/// Sort key of precedence within a tier, as [`RoutingTable`] orders entries: longest path
/// first, then Exact, Prefix, Regex, then the greater string.
fn precedence(tier: Tier, m: Option<&PathMatch>) -> PrecedenceKey {
    match m {
        Some(m) => (
            tier,
            std::cmp::Reverse(m.path.len()),
            match m.kind {
                PathKind::Exact => 0,
                PathKind::Prefix => 1,
                PathKind::Regex => 2,
            },
            std::cmp::Reverse(m.path.clone()),
        ),
        None => (
            tier,
            std::cmp::Reverse(0),
            3,
            std::cmp::Reverse(String::new()),
        ),
    }
}

/// Every rule path of every Ingress in `state`, with the route translation made of it.
fn rule_paths<'a>(
    state: &'a ClusterState,
    options: &Options,
    translation: &'a Translation,
) -> Vec<Written<'a>> {
    let mut by_source: HashMap<(&ObjectRef, usize, usize), &Route> = HashMap::new();
    for r in translation.model.routes.iter() {
        by_source.insert((&r.source.ingress, r.source.rule, r.source.path), r);
    }
    let mut written = Vec::new();
    for ingress in &state.ingresses {
        let me = object_ref(&ingress.metadata);
        let owned = is_owned(&state.ingress_classes, options, ingress);
        for (ri, rule) in ingress
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .enumerate()
        {
            let host_raw = rule.host.as_deref().unwrap_or("");
            for (pi, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let route = by_source.get(&(&me, ri, pi)).copied();
                written.push(Written {
                    ingress,
                    me: me.clone(),
                    rule: ri,
                    index: pi,
                    host_raw,
                    host: HostMatch::parse(host_raw).ok(),
                    path_type: p.path_type.as_str(),
                    path_raw: p.path.as_deref().unwrap_or(""),
                    owned,
                    route,
                });
            }
        }
    }
    written
}

/// What is known for judging candidates: the request and the winner.
struct Judge<'a> {
    state: &'a ClusterState,
    options: &'a Options,
    diagnostics: &'a [Diagnostic],
    host: Option<&'a str>,
    path: &'a str,
    winner: Option<&'a Route>,
    winner_tier: Option<Tier>,
}

/// One candidate judged: its tier and matcher, why it did not win, the field that would
/// make it win (ranked: lower is nearer), and the diagnostic that dropped it.
struct Judged<'a> {
    matcher: Option<PathMatch>,
    tier: Tier,
    path_matches: bool,
    verdict: Verdict,
    reason: String,
    change: Option<(u8, String)>,
    diagnostic: Option<&'a Diagnostic>,
}

impl<'a> Judge<'a> {
    fn judge(&self, w: &Written<'_>) -> Judged<'a> {
        let (state, options, host) = (self.state, self.options, self.host);
        let (winner_route, winner_tier) = (self.winner, self.winner_tier);

        let matcher = w.matcher();
        let tier = w
            .host
            .as_ref()
            .map_or(Tier::OtherHost, |h| Tier::of(h, host));
        let path_matches = matcher.as_ref().is_some_and(|m| m.matches(self.path));
        let field = w.field();
        let dropped = if w.owned && w.route.is_none() {
            Some(dropping_diagnostic(
                self.diagnostics,
                &w.me,
                w.rule,
                w.index,
            ))
        } else {
            None
        };
        let (verdict, reason) =
            if !w.owned {
                (Verdict::OtherClass, other_class(state, options, w.ingress))
            } else if let Some(d) = &dropped {
                (
                Verdict::Dropped,
                match d {
                    Some(d) => format!("dropped by translation: {}: {}", d.field, d.message),
                    None if crate::translate::annotations::present_key(
                        w.ingress.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
                        crate::translate::annotations::CANARY,
                    )
                    .is_some() =>
                    {
                        "a canary Ingress: it adds no route of its own, it splits the traffic of \
                         the main route with the same host and path (see that route's filters)"
                            .to_string()
                    }
                    None => "not served".to_string(),
                },
            )
            } else if tier == Tier::OtherHost {
                (
                    Verdict::HostMismatch,
                    format!(
                        "the rule is for host {}",
                        if w.host_raw.is_empty() {
                            "*"
                        } else {
                            w.host_raw
                        }
                    ),
                )
            } else if !path_matches {
                match matcher.as_ref().map(|m| m.kind) {
                    Some(PathKind::Regex) => (
                        Verdict::RegexMismatch,
                        format!(
                            "the expression {:?} does not match {}",
                            w.path_raw, self.path
                        ),
                    ),
                    Some(kind) => {
                        let rule = matcher.as_ref().map_or("", |m| m.path.as_str());
                        let hint = if kind == PathKind::Exact
                            && crate::model::path::prefix_matches(rule, self.path)
                        {
                            " (pathType Prefix would match)"
                        } else {
                            ""
                        };
                        (
                            Verdict::PathMismatch,
                            format!("{kind} {rule} does not match {}{hint}", self.path),
                        )
                    }
                    None => (Verdict::PathMismatch, "the path does not parse".to_string()),
                }
            } else {
                lost_to(tier, matcher.as_ref(), winner_route, winner_tier)
            };
        let change = match verdict {
            Verdict::OtherClass => Some((1, "spec.ingressClassName".to_string())),
            Verdict::Dropped => Some((
                0,
                dropped
                    .as_ref()
                    .and_then(|d| d.as_ref().map(|d| d.field.clone()))
                    .unwrap_or_else(|| field.clone()),
            )),
            Verdict::PathMismatch | Verdict::RegexMismatch => Some((2, format!("{field}.path"))),
            Verdict::HostMismatch if path_matches => {
                Some((3, format!("spec.rules[{}].host", w.rule)))
            }
            _ => None,
        };
        Judged {
            matcher,
            tier,
            path_matches,
            verdict,
            reason,
            change,
            diagnostic: dropped.flatten(),
        }
    }
}

/// Explains where `url` goes. `now` is in Unix seconds (certificate expiry).
///
/// The winner is always [`RoutingTable::lookup`]'s on the compiled `translation`, so the
/// explanation agrees with the proxy.
pub fn explain(
    state: &ClusterState,
    options: &Options,
    translation: &Translation,
    url: &str,
    now: i64,
) -> Result<Explanation, ExplainError> {
    let u = parse_url(url)?;
    let table = RoutingTable::compile(&translation.model);
    let hit = table.lookup(&u.authority, &u.path);
    let winner_route = hit.and_then(|m| m.route);
    let outcome = match hit {
        Some(m) if m.route.is_some() => Outcome::Route,
        Some(_) => Outcome::DefaultBackend,
        None => Outcome::NoRoute,
    };
    let host = u.host.as_deref();
    let written = rule_paths(state, options, translation);
    let ingresses: HashMap<ObjectRef, &Ingress> = state
        .ingresses
        .iter()
        .map(|i| (object_ref(&i.metadata), i))
        .collect();

    let winner_tier = winner_route.map(|r| Tier::of(&r.host, host));
    let judge = Judge {
        state,
        options,
        diagnostics: &translation.diagnostics,
        host,
        path: &u.path,
        winner: winner_route,
        winner_tier,
    };
    let mut listed: Vec<(Candidate, PrecedenceKey)> = Vec::new();
    let mut closest: Vec<(u8, usize, Closest)> = Vec::new();
    for w in &written {
        if let (Some(r), Some(win)) = (w.route, winner_route)
            && std::ptr::eq(r, win)
        {
            continue;
        }
        let Judged {
            matcher,
            tier,
            path_matches,
            verdict,
            reason,
            change,
            diagnostic,
        } = judge.judge(w);
        let field = w.field();
        if outcome != Outcome::Route
            && let Some((rank, change_field)) = change
        {
            // Nearer misses first: the right host and path but dropped or of another class,
            // then the right host, then the right path on another host.
            let relevant = match verdict {
                Verdict::OtherClass | Verdict::Dropped => tier != Tier::OtherHost && path_matches,
                _ => true,
            };
            let rank = if relevant { rank } else { rank + 4 };
            let score = common_prefix(
                matcher.as_ref().map_or(w.path_raw, |m| m.path.as_str()),
                &u.path,
            );
            if tier != Tier::OtherHost || path_matches {
                closest.push((
                    rank,
                    usize::MAX - score,
                    Closest {
                        ingress: w.me.to_string(),
                        field: field.clone(),
                        reason: reason.clone(),
                        change: format!("{} {change_field}", w.me),
                    },
                ));
            }
        }
        if tier == Tier::OtherHost && !path_matches {
            continue;
        }
        let key = precedence(tier, matcher.as_ref());
        listed.push((
            Candidate {
                ingress: w.me.to_string(),
                field,
                host: if w.host_raw.is_empty() {
                    "*".to_string()
                } else {
                    w.host_raw.to_string()
                },
                tier,
                path_type: w.path_type.to_string(),
                path: w.path_raw.to_string(),
                verdict,
                reason,
                diagnostic: diagnostic.map(DiagnosticView::from),
            },
            key,
        ));
    }
    listed.sort_by(|a, b| a.1.cmp(&b.1));
    let more_candidates = listed.len().saturating_sub(MAX_CANDIDATES);
    let candidates = listed
        .into_iter()
        .take(MAX_CANDIDATES)
        .map(|(c, _)| c)
        .collect();
    closest.sort_by_key(|a| (a.0, a.1));
    let closest = closest.into_iter().next().map(|(_, _, c)| c);

    let winner = match (hit, winner_route) {
        (Some(_), Some(r)) => Some(winner_view(
            r,
            host,
            ingresses.get(&r.source.ingress).copied(),
        )),
        (Some(m), None) => Some(WinnerView {
            ingress: m.backend.ingress.to_string(),
            tier: None,
            host: "*".to_string(),
            rule: None,
            path_index: None,
            field: "spec.defaultBackend".to_string(),
            path_type: None,
            matching: None,
            path: None,
        }),
        _ => None,
    };
    let backend = hit.map(|m| backend_view(state, &translation.diagnostics, m.backend));
    let tls = (u.entrypoint == "https").then(|| tls_view(state, translation, &u, now));
    let https_redirect = winner_route.is_some_and(|r| r.redirect_to_https);
    let (filters, upstream_path) = match hit {
        Some(m) => {
            let annotations = ingresses
                .get(&m.backend.ingress)
                .and_then(|i| i.metadata.annotations.as_ref());
            let upstream_path = m
                .rewrite
                .and_then(|rw| rw.apply(&u.path, u.query.as_deref()).ok().flatten());
            let mut list = filters(
                &m.backend.settings,
                annotations,
                &translation.diagnostics,
                m.backend,
                &u,
                m.rewrite.map(crate::routing::Rewrite::target),
                upstream_path.as_deref(),
            );
            if let Some((c, _)) = m.canary {
                list.push(FilterView {
                    name: "canary".to_string(),
                    annotation: Some(format!("canary on Ingress {}", c.ingress)),
                    effect: format!(
                        "split to Service {} (after the checks above): {}",
                        c.backend.label(),
                        c.rule
                    ),
                });
            }
            (list, upstream_path)
        }
        None => (Vec::new(), None),
    };
    let answer = answer(hit.map(|m| &**m.backend), &u, https_redirect, tls.as_ref());
    Ok(Explanation {
        request: RequestView {
            url: url.to_string(),
            entrypoint: u.entrypoint.to_string(),
            host: u.host.clone(),
            port: u.port,
            path: u.path.clone(),
            query: u.query.clone(),
            sni: (u.entrypoint == "https").then(|| u.host.clone()).flatten(),
        },
        outcome,
        answer,
        winner,
        candidates,
        more_candidates,
        closest,
        backend,
        tls,
        https_redirect,
        filters,
        upstream_path,
        dns: None,
        certificate: None,
    })
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Why a candidate whose host and path match lost to the winner.
fn lost_to(
    tier: Tier,
    matcher: Option<&PathMatch>,
    winner: Option<&Route>,
    winner_tier: Option<Tier>,
) -> (Verdict, String) {
    let (Some(win), Some(wt), Some(m)) = (winner, winner_tier, matcher) else {
        return (
            Verdict::EarlierMatchWon,
            "an entry earlier in precedence order matched".to_string(),
        );
    };
    let by = format!(
        "{} spec.rules[{}].http.paths[{}] ({} {})",
        win.source.ingress, win.source.rule, win.source.path, win.path.kind, win.path.path
    );
    if wt < tier {
        return (
            Verdict::HigherTierWon,
            format!(
                "matches, but the {} tier is tried first and {by} matched there",
                wt.describe()
            ),
        );
    }
    if win.path.path.len() > m.path.len() {
        return (
            Verdict::LongerPathWon,
            format!("matches, but the longer path of {by} wins"),
        );
    }
    if win.path.path.len() == m.path.len()
        && win.path.kind == PathKind::Exact
        && m.kind == PathKind::Prefix
    {
        return (
            Verdict::ExactWon,
            format!("matches, but Exact beats Prefix: {by}"),
        );
    }
    (
        Verdict::EarlierMatchWon,
        format!("matches, but {by} comes earlier in precedence order (longest as written first)"),
    )
}

/// The diagnostic that explains why a rule path of an owned Ingress is not a route: on the
/// path itself, its rule's host, or the whole Ingress (a snippet).
fn dropping_diagnostic<'d>(
    diagnostics: &'d [Diagnostic],
    me: &ObjectRef,
    rule: usize,
    path: usize,
) -> Option<&'d Diagnostic> {
    let base = format!("spec.rules[{rule}].http.paths[{path}]");
    let host = format!("spec.rules[{rule}].host");
    let mine = || {
        diagnostics
            .iter()
            .filter(move |d| d.kind == Kind::Ingress && &d.object == me && d.is_error())
    };
    mine()
        .find(|d| {
            d.field == base
                || d.field
                    .strip_prefix(base.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .or_else(|| mine().find(|d| d.field == host))
        .or_else(|| mine().find(|d| d.reason == Reason::SnippetRejected))
}

/// Why an Ingress of another class is not ours, naming both classes.
fn other_class(state: &ClusterState, options: &Options, ingress: &Ingress) -> String {
    let mut ours: Vec<String> = state
        .ingress_classes
        .iter()
        .filter(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(options.controller_name.as_str())
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    if !state
        .ingress_classes
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(options.ingress_class.as_str()))
    {
        ours.push(options.ingress_class.clone());
    }
    ours.sort();
    ours.dedup();
    let theirs = match class_of(ingress) {
        Some(c) => format!("of class {c:?}"),
        None => "of no class".to_string(),
    };
    format!(
        "the Ingress is {theirs}, not ours: sluice serves class {} (--ingress-class, \
         IngressClasses with controller {}){}",
        ours.iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(" or "),
        options.controller_name,
        if options.watch_without_class {
            " and Ingresses without class"
        } else {
            ""
        }
    )
}

fn winner_view(route: &Route, host: Option<&str>, ingress: Option<&Ingress>) -> WinnerView {
    let written = ingress
        .and_then(|i| i.spec.as_ref())
        .and_then(|s| s.rules.as_ref()?.get(route.source.rule))
        .and_then(|r| r.http.as_ref()?.paths.get(route.source.path));
    WinnerView {
        ingress: route.source.ingress.to_string(),
        tier: Some(Tier::of(&route.host, host)),
        host: route.host.to_string(),
        rule: Some(route.source.rule),
        path_index: Some(route.source.path),
        field: format!(
            "spec.rules[{}].http.paths[{}]",
            route.source.rule, route.source.path
        ),
        path_type: written.map(|p| p.path_type.clone()),
        matching: Some(route.path.kind.to_string()),
        path: Some(route.path.path.clone()),
    }
}

fn backend_view(state: &ClusterState, diagnostics: &[Diagnostic], b: &Backend) -> BackendView {
    let mut endpoints = Vec::new();
    for slice in &state.endpoint_slices {
        let meta = &slice.metadata;
        let of_service = object_ref(meta).namespace == b.service.namespace
            && meta
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::translate::SERVICE_NAME_LABEL))
                .is_some_and(|n| *n == b.service.name);
        if !of_service {
            continue;
        }
        for ep in slice.endpoints.iter().flatten() {
            let Some(addr) = ep.addresses.first() else {
                continue;
            };
            let cond = ep.conditions.as_ref();
            let used = b
                .endpoints
                .iter()
                .find(|e| e.addr.ip().to_string() == *addr);
            endpoints.push(EndpointView {
                address: used.map_or_else(|| addr.clone(), |e| e.addr.to_string()),
                ready: cond.and_then(|c| c.ready).unwrap_or(true),
                serving: cond.and_then(|c| c.serving).unwrap_or(true),
                terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
                used: used.is_some(),
            });
        }
    }
    endpoints.sort_by(|a, b| a.address.cmp(&b.address));
    endpoints.dedup();
    let service = format!("Service {}", b.service);
    let diagnostics = diagnostics
        .iter()
        .filter(|d| {
            d.object == b.ingress
                && matches!(
                    d.reason,
                    Reason::ServiceNotFound
                        | Reason::ServicePortNotFound
                        | Reason::NoReadyEndpoints
                        | Reason::UnsupportedBackend
                )
                && (d.message.starts_with(&format!("{service} "))
                    || d.message.starts_with(&format!("{service}:")))
        })
        .map(DiagnosticView::from)
        .collect();
    BackendView {
        service: b.service.to_string(),
        port: b.port.to_string(),
        endpoints,
        used: b.endpoints.len(),
        diagnostics,
    }
}

/// Does entry `ti` of the Ingress's `spec.tls` name `host` (or, with no hosts, a rule host
/// that covers it)?
fn tls_entry_names(ingress: &Ingress, ti: usize, host: &str) -> bool {
    let Some(spec) = ingress.spec.as_ref() else {
        return false;
    };
    let Some(entry) = spec.tls.as_ref().and_then(|t| t.get(ti)) else {
        return false;
    };
    let covers =
        |h: &str| HostMatch::parse(h).is_ok_and(|m| m != HostMatch::Any && m.matches(host));
    match entry.hosts.as_deref() {
        Some(list) if !list.is_empty() => list.iter().any(|h| covers(h)),
        _ => spec
            .rules
            .iter()
            .flatten()
            .any(|r| r.host.as_deref().is_some_and(covers)),
    }
}

fn tls_view(state: &ClusterState, translation: &Translation, u: &Url, now: i64) -> TlsView {
    let sni = u.host.clone().unwrap_or_default();
    // As the certificate store picks: an exact host first, then a wildcard one label up; the
    // first TLS host of each (translation gives each host one Secret).
    let tls = &translation.model.tls;
    let chosen = tls
        .iter()
        .find(|t| matches!(&t.host, HostMatch::Exact(h) if *h == sni))
        .or_else(|| {
            tls.iter()
                .find(|t| matches!(&t.host, HostMatch::Wildcard(_)) && t.host.matches(&sni))
        });
    let diagnostics: Vec<DiagnosticView> = translation
        .diagnostics
        .iter()
        .filter(|d| {
            d.kind == Kind::Ingress
                && d.field.starts_with("spec.tls[")
                && state.ingresses.iter().any(|i| {
                    object_ref(&i.metadata) == d.object
                        && d.field
                            .strip_prefix("spec.tls[")
                            .and_then(|r| r.split_once(']'))
                            .and_then(|(n, _)| n.parse().ok())
                            .is_some_and(|ti| tls_entry_names(i, ti, &sni))
                })
        })
        .map(DiagnosticView::from)
        .collect();
    let mut view = TlsView {
        sni: sni.clone(),
        host: chosen.map(|t| t.host.to_string()),
        secret: chosen.map(|t| t.secret.to_string()),
        ingress: chosen.map(|t| t.ingress.to_string()),
        not_after: None,
        not_after_text: None,
        expired: false,
        default_certificate: true,
        message: String::new(),
        diagnostics,
    };
    view.message = match chosen {
        None => format!("no certificate covers {sni}: the default certificate is served"),
        Some(t) => match translation.certs.get(&t.secret) {
            Some(Ok(cert)) => {
                view.default_certificate = false;
                view.not_after = Some(cert.not_after);
                view.not_after_text = Some(crate::tls::der::format_unix(cert.not_after));
                view.expired = cert.not_after < now;
                format!(
                    "Secret {} (spec.tls of {}) for {}{}",
                    t.secret,
                    t.ingress,
                    t.host,
                    if view.expired {
                        ": EXPIRED, still served"
                    } else {
                        ""
                    }
                )
            }
            Some(Err(e)) => format!(
                "Secret {} cannot be used ({e}): the default certificate is served",
                t.secret
            ),
            None => format!(
                "Secret {} is not available: the default certificate is served",
                t.secret
            ),
        },
    };
    view
}

/// The filters of a backend's settings, in the order the proxy applies them, each with the
/// annotation it was read from.
#[allow(
    clippy::too_many_lines,
    reason = "one short arm per setting, in the proxy's order"
)]
fn filters(
    s: &BackendSettings,
    annotations: Option<&BTreeMap<String, String>>,
    diagnostics: &[Diagnostic],
    backend: &Backend,
    u: &Url,
    rewrite_target: Option<&str>,
    upstream_path: Option<&str>,
) -> Vec<FilterView> {
    use crate::translate::annotations as a;
    let empty = BTreeMap::new();
    let annotations = annotations.unwrap_or(&empty);
    let key = |ours: &str| present_key(annotations, ours);
    let mut out = Vec::new();
    let mut push = |name: &str, annotation: Option<String>, effect: String| {
        out.push(FilterView {
            name: name.trim_start_matches(a::SLUICE).to_string(),
            annotation,
            effect,
        });
    };
    if s.closed {
        let cause = diagnostics.iter().find(|d| {
            d.object == backend.ingress
                && d.is_error()
                && d.field.starts_with("metadata.annotations[")
                && d.message.contains("503")
        });
        push(
            "closed",
            cause.and_then(|d| {
                d.field
                    .strip_prefix("metadata.annotations[")
                    .and_then(|f| f.strip_suffix(']'))
                    .map(str::to_string)
            }),
            format!(
                "every route of {} answers 503 (fail closed){}",
                backend.ingress,
                cause.map_or(String::new(), |d| format!(": {}", d.message))
            ),
        );
    }
    if let Some(r) = &s.redirect {
        let which = if key(a::PERMANENT_REDIRECT).is_some() {
            a::PERMANENT_REDIRECT
        } else {
            a::TEMPORAL_REDIRECT
        };
        push(
            which,
            key(which),
            format!("answered {} to {}", r.code, r.url),
        );
    }
    if let Some(root) = &s.app_root {
        push(
            a::APP_ROOT,
            key(a::APP_ROOT),
            if u.path == "/" {
                format!("this request for / is redirected (302) to {root}")
            } else {
                format!("a request for / is redirected (302) to {root}; not this one")
            },
        );
    }
    if let Some(c) = &s.cors {
        push(
            a::ENABLE_CORS,
            key(a::ENABLE_CORS),
            format!(
                "CORS for {}; OPTIONS preflights are answered 204 by the proxy",
                if c.origins.is_empty() {
                    "any origin".to_string()
                } else {
                    c.origins.join(", ")
                }
            ),
        );
    }
    let cidrs = |l: &[crate::model::Cidr]| {
        l.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !s.deny.is_empty() {
        push(
            a::DENY_SOURCE_RANGE,
            key(a::DENY_SOURCE_RANGE),
            format!("clients in {} get 403", cidrs(&s.deny)),
        );
    }
    if !s.allow.is_empty() {
        push(
            a::ALLOW_SOURCE_RANGE,
            key(a::ALLOW_SOURCE_RANGE),
            format!(
                "only clients in {} are served (others: 403)",
                cidrs(&s.allow)
            ),
        );
    }
    if let Some(l) = &s.rate_limit {
        let rate = match (l.rps, l.rpm) {
            (Some(r), Some(m)) => format!("{r}/s and {m}/min"),
            (Some(r), None) => format!("{r}/s"),
            (None, Some(m)) => format!("{m}/min"),
            (None, None) => "no rate".to_string(),
        };
        let which = if l.rps.is_some() {
            a::LIMIT_RPS
        } else {
            a::LIMIT_RPM
        };
        push(
            which,
            key(which),
            format!(
                "{rate} per client address, bursts x{} (over it: 503)",
                l.burst_multiplier
            ),
        );
    }
    if let Some(l) = &s.conn_limit {
        push(
            a::LIMIT_CONNECTIONS,
            key(a::LIMIT_CONNECTIONS),
            format!(
                "at most {} requests in progress per client address (over it: 503)",
                l.max
            ),
        );
    }
    if s.force_ssl_redirect {
        push(
            a::FORCE_SSL_REDIRECT,
            key(a::FORCE_SSL_REDIRECT),
            "plain HTTP is redirected to HTTPS (308)".to_string(),
        );
    }
    if !s.ssl_redirect {
        push(
            a::SSL_REDIRECT,
            key(a::SSL_REDIRECT),
            "plain HTTP is not redirected to HTTPS".to_string(),
        );
    }
    if let Some(limit) = s.max_body_bytes {
        let k = key(a::PROXY_BODY_SIZE);
        let why = if k.is_none() {
            " (ingress-nginx's default: the Ingress has ingress-nginx annotations)"
        } else {
            ""
        };
        push(
            a::PROXY_BODY_SIZE,
            k,
            format!("request bodies over {limit} bytes get 413{why}"),
        );
    }
    if let Some(aff) = &s.affinity {
        push(
            a::AFFINITY,
            key(a::AFFINITY),
            format!(
                "session affinity: cookie {:?} pins a client to the endpoint that first answered",
                aff.cookie
            ),
        );
    } else if s.hash_by.is_some() {
        push(
            a::UPSTREAM_HASH_BY,
            key(a::UPSTREAM_HASH_BY),
            "requests with the same key go to the same endpoint (rendezvous hashing)".to_string(),
        );
    }
    if s.strip_prefix {
        push(
            a::STRIP_PREFIX,
            key(a::STRIP_PREFIX),
            "the matched Prefix path is removed from the path sent upstream".to_string(),
        );
    }
    if !s.request_headers.is_empty() {
        push(
            a::REQUEST_HEADERS,
            key(a::REQUEST_HEADERS),
            format!(
                "sets {} request header(s) upstream",
                s.request_headers.len()
            ),
        );
    }
    if !s.response_headers.is_empty() || s.hsts.is_some() {
        push(
            a::RESPONSE_HEADERS,
            key(a::RESPONSE_HEADERS).or_else(|| key(a::HSTS)),
            format!(
                "sets {} response header(s){}",
                s.response_headers.len(),
                if s.hsts.is_some() {
                    ", and Strict-Transport-Security over HTTPS"
                } else {
                    ""
                }
            ),
        );
    }
    if !s.custom_errors.is_empty() {
        push(
            a::CUSTOM_HTTP_ERRORS,
            key(a::CUSTOM_HTTP_ERRORS),
            format!(
                "answers {:?} are replaced by the default-backend Service's error page",
                s.custom_errors
            ),
        );
    }
    if let Some(basic) = &s.basic_auth {
        push(
            a::AUTH_TYPE,
            key(a::AUTH_TYPE),
            format!(
                "basic authentication: {} user(s) from Secret {} (realm {:?}); without valid \
                 credentials: 401",
                basic.users.len(),
                basic.secret,
                basic.realm
            ),
        );
    }
    if let Some(auth) = &s.auth {
        push(
            a::AUTH_URL,
            key(a::AUTH_URL),
            format!(
                "each request is first sent ({}) to {}, which decides{}",
                auth.method,
                auth.url,
                auth.signin
                    .as_ref()
                    .map_or(String::new(), |s| format!("; 401 redirects to {s}"))
            ),
        );
    }
    if let Some(target) = rewrite_target {
        push(
            a::REWRITE_TARGET,
            key(a::REWRITE_TARGET),
            match upstream_path {
                Some(p) => format!("{target}: the upstream request is {p}"),
                None => format!("{target}: the expression does not rewrite this path"),
            },
        );
    } else if s.use_regex {
        push(
            a::USE_REGEX,
            key(a::USE_REGEX),
            "the paths of this Ingress are regular expressions".to_string(),
        );
    }
    if let Some(vhost) = &s.upstream_vhost {
        push(
            a::UPSTREAM_VHOST,
            key(a::UPSTREAM_VHOST),
            format!("Host: {vhost} is sent upstream"),
        );
    }
    if let Some(prefix) = &s.forwarded_prefix {
        push(
            a::X_FORWARDED_PREFIX,
            key(a::X_FORWARDED_PREFIX),
            format!("X-Forwarded-Prefix: {prefix} is sent upstream"),
        );
    }
    for (name, value) in [
        (a::PROXY_CONNECT_TIMEOUT, s.connect_timeout),
        (a::PROXY_READ_TIMEOUT, s.read_timeout),
    ] {
        if let Some(d) = value {
            push(name, key(name), format!("{}s", d.as_secs_f64()));
        }
    }
    if s.load_balancer != crate::model::LoadBalancer::default() {
        push(
            a::LOAD_BALANCER,
            key(a::LOAD_BALANCER),
            "least-request".to_string(),
        );
    }
    if s.ssl_passthrough {
        push(
            a::SSL_PASSTHROUGH,
            key(a::SSL_PASSTHROUGH),
            "TLS connections whose SNI routes here (path /) are spliced to the backend \
             undecrypted; the backend terminates TLS"
                .to_string(),
        );
    }
    if s.protocol != crate::model::UpstreamProtocol::default() {
        push(
            a::BACKEND_PROTOCOL,
            key(a::BACKEND_PROTOCOL),
            match s.protocol {
                crate::model::UpstreamProtocol::H2c => "HTTP/2 over cleartext (h2c)",
                crate::model::UpstreamProtocol::Https => "HTTP/1.1 over TLS (HTTPS)",
                crate::model::UpstreamProtocol::H2 => "HTTP/2 over TLS (GRPCS)",
                crate::model::UpstreamProtocol::Http1 => "HTTP/1.1",
            }
            .to_string(),
        );
    }
    out
}

/// What the proxy answers, in the order of its phases (see `proxy::request`): closed,
/// redirects, the app root, source ranges and rate limits (depend on the client), the HTTPS
/// redirect, then forwarding (503 without endpoints).
fn answer(
    backend: Option<&Backend>,
    u: &Url,
    https_redirect: bool,
    tls: Option<&TlsView>,
) -> String {
    let Some(b) = backend else {
        return "404 Not Found: no rule matches and there is no default backend".to_string();
    };
    let s = &b.settings;
    if s.closed {
        if u.entrypoint == "https" && s.ssl_passthrough {
            return "the TLS connection is closed (a passthrough route that is closed: fail \
                    closed, see filters)"
                .to_string();
        }
        return "503 Service Unavailable: the route is closed (fail closed, see filters)"
            .to_string();
    }
    if u.entrypoint == "https" && s.ssl_passthrough {
        return format!(
            "the TLS connection is passed through undecrypted to Service {} (its route for /); \
             a request sluice decrypted for this host gets 421",
            b.label()
        );
    }
    if let Some(r) = &s.redirect {
        return format!("{} redirect to {}", r.code, r.url);
    }
    if let Some(root) = &s.app_root
        && u.path == "/"
    {
        return format!("302 redirect to {root}");
    }
    if u.entrypoint == "http" && https_redirect {
        return format!(
            "308 redirect to https://{}{}",
            u.host.as_deref().unwrap_or(&u.authority),
            u.path
        );
    }
    if b.endpoints.is_empty() {
        return format!(
            "503 Service Unavailable: no ready endpoints for Service {}",
            b.label()
        );
    }
    let tls_note = match tls {
        Some(t) if t.default_certificate => {
            " (TLS with the default certificate: clients that check it refuse)"
        }
        _ => "",
    };
    let kind = if b.endpoints.iter().all(|e| e.ready) {
        "ready"
    } else {
        "terminating (no ready one)"
    };
    format!(
        "forwarded to Service {} ({} {kind} endpoint{}){tls_note}",
        b.label(),
        b.endpoints.len(),
        if b.endpoints.len() == 1 { "" } else { "s" }
    )
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(self))
    }
}

/// The human form of an explanation.
pub fn render(e: &Explanation) -> String {
    let mut o = String::new();
    let r = &e.request;
    let _ = writeln!(o, "request   {}", r.url);
    let _ = writeln!(
        o,
        "  entrypoint {}{}",
        r.entrypoint,
        r.sni
            .as_ref()
            .map_or(String::new(), |s| format!(" (SNI {s})"))
    );
    let _ = writeln!(
        o,
        "  host       {}",
        r.host
            .as_deref()
            .unwrap_or("(an IP address: only rules without host match)")
    );
    let _ = writeln!(
        o,
        "  path       {}{}",
        r.path,
        r.query
            .as_ref()
            .map_or(String::new(), |q| format!("  (query {q})"))
    );
    let _ = writeln!(o, "answer    {}", e.answer);
    match &e.winner {
        Some(w) if w.rule.is_some() => {
            let _ = writeln!(o, "route     {} {}", w.ingress, w.field);
            let _ = writeln!(
                o,
                "  tier       {} {}",
                w.tier.map_or("", Tier::describe),
                w.host
            );
            let _ = writeln!(
                o,
                "  path       {} {}{}",
                w.matching.as_deref().unwrap_or(""),
                w.path.as_deref().unwrap_or(""),
                match (&w.path_type, &w.matching) {
                    (Some(t), Some(m)) if t != m => format!("  (pathType {t})"),
                    _ => String::new(),
                }
            );
        }
        Some(w) => {
            let _ = writeln!(
                o,
                "route     no rule matches: the default backend of {} ({}) takes it",
                w.ingress, w.field
            );
        }
        None => {
            let _ = writeln!(o, "route     none: no rule matches (404)");
        }
    }
    if let Some(c) = &e.closest {
        let _ = writeln!(o, "closest   {} {}: {}", c.ingress, c.field, c.reason);
        let _ = writeln!(o, "  change     {}", c.change);
    }
    if !e.candidates.is_empty() {
        let _ = writeln!(o, "other candidates, in precedence order");
        for c in &e.candidates {
            let _ = writeln!(
                o,
                "  - {} {} (host {}, {} {}): {}",
                c.ingress, c.field, c.host, c.path_type, c.path, c.reason
            );
        }
        if e.more_candidates > 0 {
            let _ = writeln!(o, "  ... and {} more", e.more_candidates);
        }
    }
    if let Some(b) = &e.backend {
        let _ = writeln!(o, "backend   Service {} port {}", b.service, b.port);
        if b.endpoints.is_empty() {
            let _ = writeln!(o, "  (no endpoints in the Service's EndpointSlices)");
        }
        for ep in &b.endpoints {
            let mut state = Vec::new();
            if ep.ready {
                state.push("ready");
            }
            if ep.serving {
                state.push("serving");
            }
            if ep.terminating {
                state.push("terminating");
            }
            let _ = writeln!(
                o,
                "  {:<22} {}{}",
                ep.address,
                if state.is_empty() {
                    "not serving".to_string()
                } else {
                    state.join(", ")
                },
                if ep.used { "" } else { "  (not used)" }
            );
        }
        if b.used == 0 {
            let _ = writeln!(o, "  no ready endpoints: answers 503");
        }
        for d in &b.diagnostics {
            let _ = writeln!(
                o,
                "  {}: {} {}: {}",
                d.severity, d.object, d.field, d.message
            );
        }
    }
    if let Some(t) = &e.tls {
        let _ = writeln!(o, "tls       {}", t.message);
        if let Some(at) = &t.not_after_text {
            let _ = writeln!(
                o,
                "  notAfter   {at}{}",
                if t.expired { " (expired)" } else { "" }
            );
        }
        for d in &t.diagnostics {
            let _ = writeln!(
                o,
                "  {}: {} {}: {}",
                d.severity, d.object, d.field, d.message
            );
        }
    }
    if e.winner.as_ref().is_some_and(|w| w.rule.is_some()) {
        let _ = writeln!(
            o,
            "http      {}",
            if e.https_redirect {
                "plain HTTP is redirected to HTTPS (308)"
            } else {
                "plain HTTP is served as is (no redirect to HTTPS)"
            }
        );
    }
    if !e.filters.is_empty() {
        let _ = writeln!(o, "filters");
        for flt in &e.filters {
            let _ = writeln!(
                o,
                "  {:<20} {}{}",
                flt.name,
                flt.effect,
                flt.annotation
                    .as_ref()
                    .map_or(String::new(), |a| format!("  [{a}]"))
            );
        }
    }
    if let Some(dns) = &e.dns {
        if dns.is_empty() {
            let _ = writeln!(o, "dns       no record wanted or found for this host");
        }
        for d in dns {
            let _ = writeln!(
                o,
                "dns       {} wanted {:?}, current {}{}{}",
                d.record_type,
                d.desired,
                d.current
                    .as_ref()
                    .map_or("absent".to_string(), |c| format!("{c:?}")),
                d.owner
                    .as_ref()
                    .map_or(String::new(), |w| format!(", owner {w}")),
                d.blocked
                    .as_ref()
                    .map_or(String::new(), |b| format!(", not written: {b}"))
            );
        }
    }
    if let Some(c) = &e.certificate {
        let _ = writeln!(
            o,
            "acme      Secret {} for {}: {}{}",
            c.secret,
            c.hosts.join(", "),
            c.state,
            c.last_error
                .as_ref()
                .map_or(String::new(), |err| format!(" (last error: {err})"))
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_and_normalised_as_the_proxy_sees_them() {
        let u = parse_url("HTTPS://user@App.Example.COM.:8443/a/../b//c?x=1#frag").unwrap();
        assert_eq!(u.entrypoint, "https");
        assert_eq!(u.host.as_deref(), Some("app.example.com"));
        assert_eq!(u.port, Some(8443));
        assert_eq!(u.path, "/b/c");
        assert_eq!(u.query.as_deref(), Some("x=1"));
        let u = parse_url("http://app.test?q").unwrap();
        assert_eq!((u.path.as_str(), u.query.as_deref()), ("/", Some("q")));
        let u = parse_url("http://[::1]:8080/x").unwrap();
        assert_eq!((u.host, u.port), (None, Some(8080)));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_url_never_a_panic() {
        let state = ClusterState::default();
        let t = Translation::default();
        for url in [
            "",
            "://",
            "http://",
            "http://a b/",
            "http://app.test:99999/",
            "http://app.test/%zz",
            "http://app.test/%00",
            "mailto:x@y",
            "http://\u{e9}.test/",
            "https://[::1/",
        ] {
            let err = explain(&state, &Options::default(), &t, url, 0).unwrap_err();
            assert!(err.to_string().contains(&format!("{url:?}")), "{err}");
        }
        for url in [
            "http://a.test/\u{e9}",
            "http://a.test/%C3%A9?\u{0}",
            "http://1.2.3.4/",
        ] {
            let e = explain(&state, &Options::default(), &t, url, 0).unwrap();
            assert_eq!(e.outcome, Outcome::NoRoute);
            assert_eq!(e.exit_code(), 1);
        }
    }
}
