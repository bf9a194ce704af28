//! Desired records: which names sluice wants in DNS, pointing where, for which object.
//!
//! As ExternalDNS's `ingress` and `service` sources do:
//! - **Ingresses of ours** (the translation's `model.ingresses`): every `spec.rules[].host`,
//!   every `spec.tls[].hosts[]`, and the comma-separated `hostname` annotation (the
//!   `ingress-hostname-source` annotation may keep only `defined-hosts-only` or
//!   `annotation-only`). Targets: the `target` annotation, else the Ingress's
//!   `status.loadBalancer.ingress` (ip and hostname), else the configured publish addresses.
//! - **Services of type LoadBalancer** carrying the `hostname` annotation. Targets: the `target`
//!   annotation, else `spec.externalIPs`, else the Service's load-balancer status.
//! - Objects whose `controller` annotation names another controller than `dns-controller`
//!   are skipped, as ExternalDNS skips them.
//!
//! Annotations are read under `external-dns.kubernetes.io/` (ExternalDNS 0.22+) and
//! `external-dns.alpha.kubernetes.io/`. When both are set, the `external-dns.kubernetes.io/`
//! one wins (it is the one ExternalDNS reads today) and a warning names both.
//!
//! Targets become records per host: IPv4 addresses an A record, IPv6 addresses an AAAA record,
//! a name a CNAME, or, when the name is an AWS load balancer, CloudFront or other canonical
//! AWS target, an A and an AAAA ALIAS (no TTL). A CNAME holds one name: with several, the
//! first in sorted order is used and a warning says so. When a target list has both addresses
//! and names the names are dropped (ExternalDNS drops the CNAME in that case too).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use super::aws::canonical_hosted_zone;
use super::record::{Alias, Record, RecordType};
use crate::cluster::ClusterState;
use crate::cluster::object_ref;
use crate::model::{Diagnostic, HostMatch, Kind, ObjectRef, Reason};

/// The annotation prefix ExternalDNS reads since 0.22.
pub const PREFIX: &str = "external-dns.kubernetes.io/";
/// The older annotation prefix, still in most manifests.
pub const ALPHA_PREFIX: &str = "external-dns.alpha.kubernetes.io/";

/// `hostname`: comma-separated extra names.
pub const HOSTNAME: &str = "hostname";
/// `target`: comma-separated addresses or names the records point at.
pub const TARGET: &str = "target";
/// `ttl`: seconds (`60`) or a Go duration (`1m`, `1h30m`).
pub const TTL: &str = "ttl";
/// `ingress-hostname-source`: `defined-hosts-only` or `annotation-only`.
pub const INGRESS_HOSTNAME_SOURCE: &str = "ingress-hostname-source";
/// `controller`: objects naming another controller than `dns-controller` are skipped.
pub const CONTROLLER: &str = "controller";

/// The largest TTL accepted (ExternalDNS's bound, 2^31 - 1).
pub const MAX_TTL: u32 = i32::MAX as u32;

/// Which kinds of object produce records (`--dns-source ingress,service`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sources {
    /// Ingresses of ours.
    pub ingress: bool,
    /// Services of type LoadBalancer with the hostname annotation.
    pub service: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            ingress: true,
            service: true,
        }
    }
}

impl Sources {
    /// Parses `ingress,service` (either, both, any order).
    pub fn parse(s: &str) -> Result<Sources, String> {
        let mut out = Sources {
            ingress: false,
            service: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "ingress" => out.ingress = true,
                "service" => out.service = true,
                other => {
                    return Err(format!(
                        "unknown DNS source {other:?}: expected ingress, service or both"
                    ));
                }
            }
        }
        if !out.ingress && !out.service {
            return Err("no DNS source given: expected ingress, service or both".into());
        }
        Ok(out)
    }
}

/// Inputs of [`desired`] besides the cluster state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredOptions {
    /// `--dns-source`.
    pub sources: Sources,
    /// `--publish-address` values (IP addresses or names): the targets of Ingresses that
    /// have neither a `target` annotation nor load-balancer status. Invalid entries are
    /// skipped (check them with [`parse_target`] when reading flags).
    pub publish: Vec<String>,
    /// `EvaluateTargetHealth` of ALIAS records (ExternalDNS's `--aws-evaluate-target-health`,
    /// default true).
    pub evaluate_target_health: bool,
}

impl Default for DesiredOptions {
    fn default() -> Self {
        DesiredOptions {
            sources: Sources::default(),
            publish: Vec::new(),
            evaluate_target_health: true,
        }
    }
}

/// The result of [`desired`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Records, sorted by name, type and resource. Several objects may want the same name and
    /// type; the planner picks one (see [`crate::dns::plan`]).
    pub records: Vec<Record>,
    /// Bad annotations, and conflicts between objects.
    pub diagnostics: Vec<Diagnostic>,
}

/// A record target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// An address: A or AAAA.
    Ip(IpAddr),
    /// A name (lower case, no trailing dot): CNAME or ALIAS.
    Name(String),
}

/// Parses one target: an IP address or a DNS name (a trailing dot is allowed).
pub fn parse_target(s: &str) -> Result<Target, String> {
    let s = s.trim().trim_end_matches('.');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Target::Ip(ip));
    }
    let lower = s.to_ascii_lowercase();
    match HostMatch::parse(&lower) {
        Ok(HostMatch::Exact(n)) => Ok(Target::Name(n)),
        Ok(HostMatch::Wildcard(_)) => Err("a target cannot be a wildcard".into()),
        Ok(HostMatch::Any) => Err("empty target".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a TTL as ExternalDNS does: a Go duration (`90s`, `10m`, `1h30m`, `1.5h`; fractions
/// of a second are dropped) or a plain number of seconds, from 1 to 2^31 - 1.
pub fn parse_ttl(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let seconds = match go_duration_seconds(s) {
        Some(v) => v,
        None => s
            .parse::<i64>()
            .map_err(|_| format!("{s:?} is neither seconds nor a duration such as 5m or 1h30m"))?,
    };
    if seconds < 1 || seconds > i64::from(MAX_TTL) {
        return Err(format!(
            "{s:?} is out of range: a TTL is 1 to {MAX_TTL} seconds"
        ));
    }
    Ok(seconds as u32)
}

/// Go's `time.ParseDuration`, truncated to whole seconds; `None` when `s` is not one.
fn go_duration_seconds(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        nanos += value * unit;
    }
    if nanos > 9.3e18 {
        return None; // Go's duration overflows
    }
    let secs = (nanos / 1e9).trunc() as i64;
    Some(if neg { -secs } else { secs })
}

/// Reads annotation `key` under both prefixes (see the module documentation).
struct Annotations<'a> {
    map: Option<&'a BTreeMap<String, String>>,
    kind: Kind,
    object: &'a ObjectRef,
}

impl<'a> Annotations<'a> {
    /// The value and the full key it was read from.
    fn get(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<(String, &'a str)> {
        let map = self.map?;
        let new_key = format!("{PREFIX}{key}");
        let old_key = format!("{ALPHA_PREFIX}{key}");
        match (map.get(&new_key), map.get(&old_key)) {
            (Some(new), Some(old)) => {
                if new != old {
                    diags.push(Diagnostic::warning(
                        Reason::InvalidAnnotation,
                        self.kind,
                        self.object,
                        format!("metadata.annotations[{old_key}]"),
                        format!(
                            "{old:?} differs from {new_key}={new:?}; the {PREFIX} value is used"
                        ),
                    ));
                }
                Some((new_key, new.as_str()))
            }
            (Some(new), None) => Some((new_key, new.as_str())),
            (None, Some(old)) => Some((old_key, old.as_str())),
            (None, None) => None,
        }
    }
}

/// Per-object inputs, shared by Ingresses and Services.
struct Wanted<'a> {
    kind: Kind,
    object: &'a ObjectRef,
    resource: String,
    hosts: BTreeSet<String>,
    targets: Vec<Target>,
    ttl: Option<u32>,
}

/// Computes the desired records.
///
/// `ours` lists the Ingresses sluice serves (the translation's `model.ingresses`); other
/// Ingresses are ignored. Services are read from `state` when `options.sources.service` is set.
pub fn desired(state: &ClusterState, ours: &[ObjectRef], options: &DesiredOptions) -> Desired {
    let mut diags = Vec::new();
    let mut wanted = Vec::new();
    let publish: Vec<Target> = options
        .publish
        .iter()
        .filter_map(|p| parse_target(p).ok())
        .collect();
    let ours: BTreeSet<&ObjectRef> = ours.iter().collect();
    let ingress_refs: Vec<(usize, ObjectRef)> = if options.sources.ingress {
        state
            .ingresses
            .iter()
            .enumerate()
            .map(|(i, ing)| (i, object_ref(&ing.metadata)))
            .filter(|(_, r)| ours.contains(r))
            .collect()
    } else {
        Vec::new()
    };
    let service_refs: Vec<ObjectRef> = if options.sources.service {
        state
            .services
            .iter()
            .map(|svc| object_ref(&svc.metadata))
            .collect()
    } else {
        Vec::new()
    };
    for (i, r) in &ingress_refs {
        if let Some(w) = ingress_wants(&state.ingresses[*i], r, &publish, &mut diags) {
            wanted.push(w);
        }
    }
    for (svc, r) in state.services.iter().zip(&service_refs) {
        if let Some(w) = service_wants(svc, r, &mut diags) {
            wanted.push(w);
        }
    }
    let mut records = Vec::new();
    for w in &wanted {
        records_for(w, options, &mut records, &mut diags);
    }
    records.sort_by(|a, b| (&a.name, &a.rtype, &a.resource).cmp(&(&b.name, &b.rtype, &b.resource)));
    records.dedup_by(|a, b| a.name == b.name && a.rtype == b.rtype && a.resource == b.resource);
    conflicts(&records, &wanted, &mut diags);
    Desired {
        records,
        diagnostics: diags,
    }
}

fn skipped_by_controller(a: &Annotations<'_>, diags: &mut Vec<Diagnostic>) -> bool {
    matches!(a.get(CONTROLLER, diags), Some((_, v)) if v != "dns-controller")
}

fn ingress_wants<'a>(
    ing: &Ingress,
    object: &'a ObjectRef,
    publish: &[Target],
    diags: &mut Vec<Diagnostic>,
) -> Option<Wanted<'a>> {
    let a = Annotations {
        map: ing.metadata.annotations.as_ref(),
        kind: Kind::Ingress,
        object,
    };
    if skipped_by_controller(&a, diags) {
        return None;
    }
    let mut defined = BTreeSet::new();
    if let Some(spec) = &ing.spec {
        for rule in spec.rules.iter().flatten() {
            if let Some(h) = rule.host.as_deref().and_then(rule_host) {
                defined.insert(h);
            }
        }
        for tls in spec.tls.iter().flatten() {
            for h in tls.hosts.iter().flatten() {
                if let Some(h) = rule_host(h) {
                    defined.insert(h);
                }
            }
        }
    }
    let annotated = annotation_hosts(&a, diags);
    let hosts = match a.get(INGRESS_HOSTNAME_SOURCE, diags) {
        None => defined.into_iter().chain(annotated).collect(),
        Some((key, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "defined-hosts-only" => defined,
            "annotation-only" => annotated,
            _ => {
                diags.push(Diagnostic::error(
                    Reason::InvalidAnnotation,
                    Kind::Ingress,
                    object,
                    format!("metadata.annotations[{key}]"),
                    format!(
                        "{v:?} is not valid: expected defined-hosts-only or annotation-only; \
                         this Ingress gets no DNS records"
                    ),
                ));
                BTreeSet::new()
            }
        },
    };
    let mut targets = annotation_targets(&a, diags);
    if targets.is_empty() {
        let status = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for e in status.into_iter().flatten() {
            push_status_target(e.ip.as_deref(), e.hostname.as_deref(), &mut targets);
        }
    }
    if targets.is_empty() {
        targets = publish.to_vec();
    }
    Some(Wanted {
        kind: Kind::Ingress,
        object,
        resource: format!("ingress/{}/{}", object.namespace, object.name),
        hosts,
        targets,
        ttl: annotation_ttl(&a, diags),
    })
}

fn service_wants<'a>(
    svc: &Service,
    object: &'a ObjectRef,
    diags: &mut Vec<Diagnostic>,
) -> Option<Wanted<'a>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return None;
    }
    let a = Annotations {
        map: svc.metadata.annotations.as_ref(),
        kind: Kind::Service,
        object,
    };
    a.get(HOSTNAME, &mut Vec::new())?;
    if skipped_by_controller(&a, diags) {
        return None;
    }
    let hosts = annotation_hosts(&a, diags);
    let mut targets = annotation_targets(&a, diags);
    if targets.is_empty() {
        for ip in spec.external_ips.iter().flatten() {
            push_status_target(Some(ip), None, &mut targets);
        }
    }
    if targets.is_empty() {
        let status = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for e in status.into_iter().flatten() {
            push_status_target(e.ip.as_deref(), e.hostname.as_deref(), &mut targets);
        }
    }
    Some(Wanted {
        kind: Kind::Service,
        object,
        resource: format!("service/{}/{}", object.namespace, object.name),
        hosts,
        targets,
        ttl: annotation_ttl(&a, diags),
    })
}

/// A rule or TLS host as a record name; invalid ones are skipped (the translation reports
/// them).
fn rule_host(h: &str) -> Option<String> {
    match HostMatch::parse(h).ok()? {
        HostMatch::Exact(n) => Some(n),
        HostMatch::Wildcard(s) => Some(format!("*.{s}")),
        HostMatch::Any => None,
    }
}

fn annotation_hosts(a: &Annotations<'_>, diags: &mut Vec<Diagnostic>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some((key, value)) = a.get(HOSTNAME, diags) else {
        return out;
    };
    for h in value.split(',').map(|h| h.replace(' ', "")) {
        if h.is_empty() {
            continue;
        }
        let lower = h.trim_end_matches('.').to_ascii_lowercase();
        match HostMatch::parse(&lower) {
            Ok(HostMatch::Exact(n)) => {
                out.insert(n);
            }
            Ok(HostMatch::Wildcard(s)) => {
                out.insert(format!("*.{s}"));
            }
            Ok(HostMatch::Any) => {}
            Err(e) => diags.push(Diagnostic::error(
                Reason::InvalidAnnotation,
                a.kind,
                a.object,
                format!("metadata.annotations[{key}]"),
                format!("{h:?} is not a valid host name ({e}); no DNS record for it"),
            )),
        }
    }
    out
}

fn annotation_targets(a: &Annotations<'_>, diags: &mut Vec<Diagnostic>) -> Vec<Target> {
    let mut out = Vec::new();
    let Some((key, value)) = a.get(TARGET, diags) else {
        return out;
    };
    for t in value.split(',').map(|t| t.replace(' ', "")) {
        if t.is_empty() {
            continue;
        }
        match parse_target(&t) {
            Ok(t) => out.push(t),
            Err(e) => diags.push(Diagnostic::error(
                Reason::InvalidAnnotation,
                a.kind,
                a.object,
                format!("metadata.annotations[{key}]"),
                format!(
                    "{t:?} is not a valid target ({e}); it is ignored (with no valid target \
                     left, the load-balancer status is used)"
                ),
            )),
        }
    }
    out
}

fn annotation_ttl(a: &Annotations<'_>, diags: &mut Vec<Diagnostic>) -> Option<u32> {
    let (key, value) = a.get(TTL, diags)?;
    match parse_ttl(value) {
        Ok(t) => Some(t),
        Err(e) => {
            diags.push(Diagnostic::error(
                Reason::InvalidAnnotation,
                a.kind,
                a.object,
                format!("metadata.annotations[{key}]"),
                format!("{e}; the default TTL ({}) is used", super::DEFAULT_TTL),
            ));
            None
        }
    }
}

fn push_status_target(ip: Option<&str>, hostname: Option<&str>, out: &mut Vec<Target>) {
    for v in [ip, hostname].into_iter().flatten() {
        if let Ok(t) = parse_target(v) {
            out.push(t);
        }
    }
}

fn records_for(
    w: &Wanted<'_>,
    options: &DesiredOptions,
    out: &mut Vec<Record>,
    diags: &mut Vec<Diagnostic>,
) {
    if w.hosts.is_empty() || w.targets.is_empty() {
        return;
    }
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    let mut names = BTreeSet::new();
    for t in &w.targets {
        match t {
            Target::Ip(IpAddr::V4(a)) => {
                v4.insert(*a);
            }
            Target::Ip(IpAddr::V6(a)) => {
                v6.insert(*a);
            }
            Target::Name(n) => {
                names.insert(n.clone());
            }
        }
    }
    let names_used = v4.is_empty() && v6.is_empty();
    let first_name = names.iter().next().cloned();
    if names_used && names.len() > 1 {
        diags.push(Diagnostic::warning(
            Reason::InvalidAnnotation,
            w.kind,
            w.object,
            "targets",
            format!(
                "a CNAME or ALIAS points at one name, not {}: {:?} is used",
                names.len(),
                first_name.as_deref().unwrap_or_default()
            ),
        ));
    }
    for host in &w.hosts {
        let record = |rtype: RecordType, targets: Vec<String>, ttl, alias| Record {
            name: host.clone(),
            rtype,
            ttl,
            targets,
            alias,
            resource: w.resource.clone(),
        };
        if !v4.is_empty() {
            out.push(record(
                RecordType::A,
                v4.iter().map(ToString::to_string).collect(),
                w.ttl,
                None,
            ));
        }
        if !v6.is_empty() {
            out.push(record(
                RecordType::Aaaa,
                v6.iter().map(ToString::to_string).collect(),
                w.ttl,
                None,
            ));
        }
        let Some(name) = first_name.as_ref().filter(|_| names_used) else {
            continue;
        };
        match canonical_hosted_zone(name) {
            Some(zone) => {
                for rtype in [RecordType::A, RecordType::Aaaa] {
                    out.push(record(
                        rtype,
                        vec![name.clone()],
                        None,
                        Some(Alias {
                            hosted_zone_id: zone.to_string(),
                            evaluate_target_health: options.evaluate_target_health,
                        }),
                    ));
                }
            }
            None => out.push(record(RecordType::Cname, vec![name.clone()], w.ttl, None)),
        }
    }
}

/// Warns every object that wants a name another object wants differently.
fn conflicts(records: &[Record], wanted: &[Wanted<'_>], diags: &mut Vec<Diagnostic>) {
    let mut by_name: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_name.entry(&r.name).or_default().push(r);
    }
    for (name, rs) in by_name {
        let resources: BTreeSet<&str> = rs.iter().map(|r| r.resource.as_str()).collect();
        if resources.len() < 2 {
            continue;
        }
        // The same records (type, targets, TTL, alias) from several objects are no conflict.
        let shape = |res: &str| -> Vec<(&RecordType, &Vec<String>, Option<u32>, bool)> {
            rs.iter()
                .filter(|r| r.resource == res)
                .map(|r| (&r.rtype, &r.targets, r.ttl, r.alias.is_some()))
                .collect()
        };
        let first = shape(resources.first().copied().unwrap_or_default());
        if resources.iter().all(|res| shape(res) == first) {
            continue;
        }
        for res in &resources {
            let Some(w) = wanted.iter().find(|w| w.resource == *res) else {
                continue;
            };
            let others: Vec<&str> = resources.iter().copied().filter(|o| o != res).collect();
            diags.push(Diagnostic::warning(
                Reason::DnsConflict,
                w.kind,
                w.object,
                name.to_string(),
                format!(
                    "also wanted with other targets by {}; one record is written: the one \
                     already owning it, else the one with the fewest and lowest targets",
                    others.join(", ")
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
