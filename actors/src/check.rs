//! `sluice check DIR`: load a folder of manifests, print the compiled routes and every
//! diagnostic, and warn about certificates that expire within [`EXPIRY_WARNING`] (those of the
//! folder's TLS Secrets and, with `--acme-storage`, the ones sluice issued in standalone mode);
//! with `--dns-provider memory --txt-owner-id X`, also the DNS records a first sync would create
//! (planned against empty in-memory zones: the `--dns-memory-zone`s, else one per domain of the
//! wanted names).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sluice::cluster::object_ref;
use sluice::dns::{Change, ZoneRecords};
use sluice::model::{HostMatch, ObjectRef, Route};
use sluice::routing::RoutingTable;
use sluice::source::manifests::{Loaded, load_dir};
use sluice::translate::{Options, Translation, translate};

/// Certificates that expire within this (14 days) are warned about. Renewal at two thirds of
/// the lifetime renews a 90-day certificate 30 days before expiry, so a certificate this close
/// to expiry is one whose renewal keeps failing, or one nobody renews.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// A certificate that expires soon, or has expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiring {
    /// The Secret that holds it.
    pub secret: ObjectRef,
    /// Its leaf's `notAfter`, Unix seconds.
    pub not_after: i64,
    /// `now` it was checked at.
    pub now: i64,
}

impl std::fmt::Display for Expiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = sluice::tls::der::format_unix(self.not_after);
        let left = self.not_after - self.now;
        if left <= 0 {
            write!(
                f,
                "Secret {}: the certificate expired {} ago ({at})",
                self.secret,
                span(-left)
            )
        } else {
            write!(
                f,
                "Secret {}: the certificate expires in {} ({at})",
                self.secret,
                span(left)
            )
        }
    }
}

/// `3 days`, `5 hours`, `12 minutes`.
fn span(secs: i64) -> String {
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3600 {
        (secs / 3600, "hour")
    } else {
        (secs.max(0) / 60, "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The TLS Secrets of `secrets` (type `kubernetes.io/tls`, or carrying `tls.crt`) whose leaf
/// certificate expires before `now + within` (Unix seconds), in the order given. Secrets whose
/// certificate cannot be read are skipped (the translation reports them).
pub fn expiring(secrets: &[Secret], now: i64, within: Duration) -> Vec<Expiring> {
    let limit = now.saturating_add(i64::try_from(within.as_secs()).unwrap_or(i64::MAX));
    secrets
        .iter()
        .filter_map(|s| {
            let crt = s.data.as_ref()?.get("tls.crt")?;
            let leaf = CertificateDer::pem_slice_iter(&crt.0).next()?.ok()?;
            let not_after = sluice::tls::der::parse_certificate(&leaf).ok()?.not_after;
            (not_after < limit).then(|| Expiring {
                secret: object_ref(&s.metadata),
                not_after,
                now,
            })
        })
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

use crate::dns::DnsConfig;
use crate::run::{DnsProviderKind, DnsSettings};

/// Runs the check and prints the report to stdout (with `default_certificate`, also whether
/// that Secret can be served as `--default-certificate`). Exit code 1 when any file failed to parse
/// or any diagnostic is an error, 2 when the folder (or `acme_storage`) cannot be read at all
/// or the DNS settings are not usable offline.
pub fn run(
    dir: &Path,
    options: &Options,
    acme_storage: Option<&Path>,
    dns: Option<&DnsSettings>,
    default_certificate: Option<&ObjectRef>,
) -> ExitCode {
    if !dir.is_dir() {
        eprintln!(
            "sluice check: {} is not a folder; pass the folder that holds your manifests",
            dir.display()
        );
        return ExitCode::from(2);
    }
    let dns_plan = match dns.map(DnsSettings::config).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice check: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut loaded = load_dir(dir);
    if let Some(storage) = acme_storage {
        match sluice::acme::FolderStore::new(storage).load_certificates() {
            // Served beside the folder's Secrets (a Secret of the folder with the same name
            // wins), as `sluice run` serves them.
            Ok(issued) => {
                let present: std::collections::HashSet<ObjectRef> = loaded
                    .state
                    .secrets
                    .iter()
                    .map(|s| object_ref(&s.metadata))
                    .collect();
                loaded.state.secrets.extend(
                    issued
                        .into_iter()
                        .filter(|s| !present.contains(&object_ref(&s.metadata))),
                );
            }
            Err(e) => {
                eprintln!(
                    "sluice check: cannot read the ACME storage {}: {e}",
                    storage.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    let mut translation = translate(&loaded.state, options);
    if let Some(wanted) = default_certificate {
        // Reported as `sluice run --default-certificate` would report it.
        let (_, diagnostics) = sluice::tls::DefaultChoice::lookup_at(
            wanted,
            &loaded.state.secrets,
            &translation.certs,
            unix_now(),
        );
        translation.diagnostics.extend(diagnostics);
    }
    let table = RoutingTable::compile(&translation.model);
    let soon = expiring(&loaded.state.secrets, unix_now(), EXPIRY_WARNING);
    print!("{}", report(dir, &loaded, &translation, &table, &soon));
    let mut dns_errors = 0;
    if let (Some(settings), Some(config)) = (dns, &dns_plan) {
        let zones = match &settings.provider {
            DnsProviderKind::Memory { zones } => zones.clone(),
            DnsProviderKind::Route53(_) => {
                eprintln!(
                    "sluice check: plans DNS records offline only: use --dns-provider memory \
                     (with --dns-memory-zone for your zones)"
                );
                return ExitCode::from(2);
            }
        };
        let (text, errors) = dns_report(&loaded, &translation, config, &zones);
        print!("{text}");
        dns_errors = errors;
    }
    if loaded.errors.is_empty() && !translation.has_errors() && dns_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Renders the report: a summary line, the route table, TLS hosts, then diagnostics and the
/// certificates that expire soon (warnings).
pub fn report(
    dir: &Path,
    loaded: &Loaded,
    translation: &Translation,
    table: &RoutingTable,
    expiring: &[Expiring],
) -> String {
    let mut out = String::new();
    let model = &translation.model;
    let _ = writeln!(
        out,
        "{}: {} file(s), {} object(s) ({} of other kinds ignored), {} Ingress(es) of ours",
        dir.display(),
        loaded.files,
        loaded.state.len(),
        loaded.ignored,
        model.ingresses.len()
    );

    let mut routes: Vec<&Route> = table.routes().iter().collect();
    routes.sort_by(|a, b| {
        tier(&a.host)
            .cmp(&tier(&b.host))
            .then_with(|| a.host.cmp(&b.host))
            .then_with(|| b.path.path.len().cmp(&a.path.path.len()))
            .then_with(|| a.path.kind.cmp(&b.path.kind))
    });
    let mut rows: Vec<[String; 6]> = routes
        .iter()
        .map(|r| {
            [
                r.host.to_string(),
                r.path.path.clone(),
                r.path.kind.to_string(),
                r.source.ingress.to_string(),
                match &r.canary {
                    None => r.backend.label(),
                    Some(c) => format!(
                        "{} + canary {} from {} ({})",
                        r.backend.label(),
                        c.backend.label(),
                        c.ingress,
                        c.rule
                    ),
                },
                endpoints(&r.backend),
            ]
        })
        .collect();
    if let Some(b) = table.default_backend() {
        rows.push([
            "(default backend)".into(),
            "-".into(),
            "-".into(),
            b.ingress.to_string(),
            b.label(),
            endpoints(b),
        ]);
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("No routes: no Ingress of ours has a valid rule (every request gets 404).\n");
    } else {
        table_out(
            &mut out,
            ["HOST", "PATH", "TYPE", "INGRESS", "BACKEND", "ENDPOINTS"],
            &rows,
        );
    }

    if !model.tls.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 3]> = model
            .tls
            .iter()
            .map(|t| {
                [
                    t.host.to_string(),
                    t.secret.to_string(),
                    t.ingress.to_string(),
                ]
            })
            .collect();
        table_out(&mut out, ["TLS HOST", "SECRET", "INGRESS"], &rows);
    }

    let errors = loaded.errors.len()
        + translation
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .count();
    let warnings = translation.diagnostics.len() + loaded.errors.len() - errors + expiring.len();
    out.push('\n');
    for e in &loaded.errors {
        let _ = writeln!(out, "error: {e}");
    }
    for d in &translation.diagnostics {
        let _ = writeln!(out, "{}: {} [{}]", d.severity.as_str(), d, d.reason);
    }
    for e in expiring {
        let _ = writeln!(out, "warning: {e} [CertificateExpiring]");
    }
    let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
    out
}

/// The zone a name goes to when no zone is given: its last two labels (`example.com` for
/// `www.example.com`; a wildcard's star is not a label of the zone).
fn default_zone(name: &str) -> String {
    let labels: Vec<&str> = name.split('.').filter(|l| *l != "*").collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

/// The DNS section: the records a first sync would write into empty zones (the given ones,
/// else one per domain of the wanted names), and the DNS diagnostics; with the number of
/// error diagnostics.
pub fn dns_report(
    loaded: &Loaded,
    translation: &Translation,
    config: &DnsConfig,
    zones: &[String],
) -> (String, usize) {
    let mut out = String::new();
    let desired =
        sluice::dns::desired(&loaded.state, &translation.model.ingresses, &config.desired);
    let mut names: Vec<String> = zones
        .iter()
        .map(|z| sluice::dns::name::normalize(z))
        .collect();
    let given = !names.is_empty();
    if !given {
        names = desired
            .records
            .iter()
            .map(|r| default_zone(&r.name))
            .collect();
    }
    names.sort();
    names.dedup();
    let current: Vec<ZoneRecords> = names
        .iter()
        .enumerate()
        .map(|(i, n)| ZoneRecords {
            zone: sluice::dns::Zone::new(&format!("MEM{}", i + 1), n, false),
            records: Vec::new(),
        })
        .collect();
    let sync = &config.sync;
    let plan = sluice::dns::plan(
        &desired.records,
        &current,
        &sync.registry,
        sync.policy,
        &sync.filters,
    );
    let _ = writeln!(
        out,
        "\nDNS: {} record(s) wanted; owner id {:?}, policy {}; {} zone(s) {}: {}",
        desired.records.len(),
        sync.registry.owner_id(),
        sync.policy,
        names.len(),
        if given {
            "given"
        } else {
            "from the wanted names"
        },
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    );
    let rows: Vec<[String; 7]> = plan
        .groups()
        .flat_map(|(zone, g)| {
            g.changes.iter().map(move |c: &Change| {
                let r = &c.record;
                let value = match &r.alias {
                    Some(a) => format!("ALIAS {} ({})", a.dns_name, a.hosted_zone_id),
                    None => r.values.join(" "),
                };
                [
                    zone.name.clone(),
                    r.name.clone(),
                    r.rtype.to_string(),
                    r.ttl.map_or_else(|| "-".to_string(), |t| t.to_string()),
                    value,
                    c.action.to_string(),
                    g.resources.join(","),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        out.push_str("No DNS records would be created.\n");
    } else {
        table_out(
            &mut out,
            ["ZONE", "NAME", "TYPE", "TTL", "VALUE", "ACTION", "OBJECT"],
            &rows,
        );
    }
    let mut diagnostics = desired.diagnostics;
    diagnostics.extend(plan.diagnostics());
    for d in &diagnostics {
        let _ = writeln!(out, "{}: {} [{}]", d.severity.as_str(), d, d.reason);
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let _ = writeln!(
        out,
        "{errors} DNS error(s), {} DNS warning(s)",
        diagnostics.len() - errors
    );
    (out, errors)
}

fn tier(h: &HostMatch) -> u8 {
    match h {
        HostMatch::Exact(_) => 0,
        HostMatch::Wildcard(_) => 1,
        HostMatch::Any => 2,
    }
}

/// The endpoints cell: the addresses, or why requests get 503.
fn endpoints(b: &sluice::model::Backend) -> String {
    if b.settings.closed {
        return "closed (503): see the errors below".to_string();
    }
    let eps = &b.endpoints;
    if eps.is_empty() {
        return "none (503)".to_string();
    }
    let list: Vec<String> = eps
        .iter()
        .map(|e| {
            if e.ready {
                e.addr.to_string()
            } else {
                format!("{} (terminating)", e.addr)
            }
        })
        .collect();
    list.join(", ")
}

fn table_out<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut String, cells: [&str; N]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, header);
    for row in rows {
        line(out, std::array::from_fn(|i| row[i].as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    /// A `kubernetes.io/tls` Secret with a self-signed certificate valid until
    /// `year-month-day`, and that `notAfter` in Unix seconds.
    fn tls_secret(name: &str, year: i32, month: u8, day: u8) -> (Secret, i64) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![format!("{name}.test")]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let cert = params.self_signed(&key).unwrap();
        let not_after = sluice::tls::der::parse_certificate(cert.der())
            .unwrap()
            .not_after;
        let secret = Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    (
                        "tls.crt".to_string(),
                        k8s_openapi::ByteString(cert.pem().into_bytes()),
                    ),
                    (
                        "tls.key".to_string(),
                        k8s_openapi::ByteString(key.serialize_pem().into_bytes()),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        (secret, not_after)
    }

    #[test]
    fn certificates_expiring_within_14_days_are_warned_about() {
        let (soon, soon_at) = tls_secret("soon", 2030, 1, 10);
        let (later, _) = tls_secret("later", 2030, 3, 1);
        let (gone, gone_at) = tls_secret("gone", 2029, 12, 20);
        let broken = Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("broken".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(
                [(
                    "tls.crt".to_string(),
                    k8s_openapi::ByteString(b"not a certificate".to_vec()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let now = soon_at - 9 * DAY;
        let list = expiring(&[soon.clone(), later, gone, broken], now, EXPIRY_WARNING);
        assert_eq!(
            list,
            [
                Expiring {
                    secret: ObjectRef::new("default", "soon"),
                    not_after: soon_at,
                    now
                },
                Expiring {
                    secret: ObjectRef::new("default", "gone"),
                    not_after: gone_at,
                    now
                },
            ]
        );
        assert_eq!(
            list[0].to_string(),
            "Secret default/soon: the certificate expires in 9 days (2030-01-10T00:00:00Z)"
        );
        assert_eq!(
            list[1].to_string(),
            "Secret default/gone: the certificate expired 12 days ago (2029-12-20T00:00:00Z)"
        );
        // Exactly 14 days left is not "within" 14 days; a second less is.
        assert!(
            expiring(
                std::slice::from_ref(&soon),
                soon_at - 14 * DAY,
                EXPIRY_WARNING
            )
            .is_empty()
        );
        assert_eq!(
            expiring(
                std::slice::from_ref(&soon),
                soon_at - 14 * DAY + 1,
                EXPIRY_WARNING
            )
            .len(),
            1
        );
    }

    #[test]
    fn closed_and_rejected_ingresses_are_shown_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let ingress = |name: &str, annotation: &str| {
            format!(
                "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  annotations:
    {annotation}: \"x\"
spec:
  ingressClassName: sluice
  rules:
  - host: {name}.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
"
            )
        };
        std::fs::write(
            dir.path().join("a.yaml"),
            ingress(
                "locked",
                "nginx.ingress.kubernetes.io/auth-tls-verify-client",
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            ingress("snippet", "nginx.ingress.kubernetes.io/server-snippet"),
        )
        .unwrap();
        let loaded = load_dir(dir.path());
        let translation = translate(&loaded.state, &Options::default());
        let table = RoutingTable::compile(&translation.model);
        let out = report(dir.path(), &loaded, &translation, &table, &[]);
        let row = out
            .lines()
            .find(|l| l.starts_with("locked.test"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(row.contains("closed (503)"), "{out}");
        assert!(!out.lines().any(|l| l.starts_with("snippet.test")), "{out}");
        assert!(out.contains("[UnsupportedAnnotation]"), "{out}");
        assert!(out.contains("[SnippetRejected]"), "{out}");
    }

    #[test]
    fn the_report_lists_them_as_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_dir(dir.path());
        let translation = translate(&loaded.state, &Options::default());
        let table = RoutingTable::compile(&translation.model);
        let soon = [Expiring {
            secret: ObjectRef::new("web", "site-tls"),
            not_after: 10 * DAY,
            now: 10 * DAY - 3600,
        }];
        let out = report(dir.path(), &loaded, &translation, &table, &soon);
        assert!(
            out.contains(
                "warning: Secret web/site-tls: the certificate expires in 1 hour (1970-01-11T00:00:00Z) [CertificateExpiring]"
            ),
            "{out}"
        );
        assert!(out.ends_with("0 error(s), 1 warning(s)\n"), "{out}");
    }

    const WEB: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
spec:
  ingressClassName: sluice
  rules:
  - host: www.example.com
  - host: api.example.org
";

    fn check(zones: &[&str]) -> (String, usize) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
        let loaded = load_dir(dir.path());
        let translation = translate(&loaded.state, &Options::default());
        let zones: Vec<String> = zones.iter().map(|z| (*z).to_owned()).collect();
        let mut settings = DnsSettings::new(
            DnsProviderKind::Memory {
                zones: zones.clone(),
            },
            "me",
        );
        settings.desired.publish = vec!["192.0.2.10".into()];
        let config = settings.config().unwrap();
        dns_report(&loaded, &translation, &config, &zones)
    }

    #[test]
    fn dns_records_a_first_sync_would_create() {
        let (out, errors) = check(&[]);
        assert_eq!(errors, 0, "{out}");
        assert!(
            out.contains("2 zone(s) from the wanted names: example.com, example.org"),
            "{out}"
        );
        let line = |name: &str, rtype: &str, value: &str| {
            out.lines().any(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.get(1) == Some(&name)
                    && cells.get(2) == Some(&rtype)
                    && cells.get(4) == Some(&value)
                    && cells.get(5) == Some(&"CREATE")
            })
        };
        assert!(line("www.example.com", "A", "192.0.2.10"), "{out}");
        assert!(line("api.example.org", "A", "192.0.2.10"), "{out}");
        assert!(
            line(
                "a-www.example.com",
                "TXT",
                "\"heritage=external-dns,external-dns/owner=me,external-dns/resource=ingress/default/web\""
            ),
            "{out}"
        );
    }

    #[test]
    fn names_outside_the_given_zones_are_reported() {
        let (out, errors) = check(&["example.com"]);
        assert_eq!(errors, 0);
        assert!(out.contains("1 zone(s) given: example.com"), "{out}");
        assert!(out.contains("www.example.com"), "{out}");
        assert!(
            out.contains(
                "warning: default/web: api.example.org: no A record is written: no hosted zone in scope holds this name [DnsNotWritten]"
            ),
            "{out}"
        );
    }
}
