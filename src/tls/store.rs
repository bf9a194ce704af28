//! The SNI -> certificate lookup.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;

use super::{LoadedCert, ParsedCert};
use crate::cluster::object_ref;
use crate::model::host::{host_without_port, normalize_request_host};
use crate::model::{Diagnostic, HostMatch, Kind, ObjectRef, Reason, TlsHost};

/// Parsed TLS Secrets by reference.
pub type ParsedSecrets = HashMap<ObjectRef, ParsedCert>;

/// Longest DNS name, in bytes.
const MAX_NAME: usize = 253;

/// An immutable snapshot of which certificate to serve for which server name.
///
/// Built from the model's TLS hosts and the cluster's Secrets by [`CertStore::build`]; swapped
/// as a whole when either changes.
#[derive(Clone, Debug)]
pub struct CertStore {
    /// Exact (lower-case) host -> certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Wildcard suffix (`foo.com` for `*.foo.com`) -> certificate.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Served when nothing else matches.
    default: Arc<CertifiedKey>,
    /// Leaf `notAfter` of every Secret in use, sorted by Secret.
    not_after: Vec<(ObjectRef, i64)>,
}

impl CertStore {
    /// A store that serves `default` for every name (before the first model is known).
    pub fn empty(default: Arc<CertifiedKey>) -> CertStore {
        CertStore {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
            not_after: Vec::new(),
        }
    }

    /// Builds the store for `tls` from `secrets`, judging expiry against the current time.
    /// See [`CertStore::build_at`].
    pub fn build(
        tls: &[TlsHost],
        secrets: &[Secret],
        default: Arc<CertifiedKey>,
    ) -> (CertStore, Vec<Diagnostic>) {
        Self::build_at(tls, secrets, default, unix_now())
    }

    /// Builds the store for `tls` from `secrets`, with `now` in Unix seconds: parses every
    /// referenced Secret once, then [`CertStore::build_parsed_at`].
    pub fn build_at(
        tls: &[TlsHost],
        secrets: &[Secret],
        default: Arc<CertifiedKey>,
        now: i64,
    ) -> (CertStore, Vec<Diagnostic>) {
        let by_ref: HashMap<ObjectRef, &Secret> = secrets
            .iter()
            .map(|s| (object_ref(&s.metadata), s))
            .collect();
        let mut parsed = ParsedSecrets::new();
        for t in tls {
            if let Entry::Vacant(e) = parsed.entry(t.secret.clone())
                && let Some(s) = by_ref.get(&t.secret)
            {
                e.insert(super::parse_tls_secret(s));
            }
        }
        Self::build_parsed_at(tls, &parsed, default, now)
    }

    /// [`CertStore::build_parsed_at`] judging expiry against the current time.
    pub fn build_parsed(
        tls: &[TlsHost],
        parsed: &ParsedSecrets,
        default: Arc<CertifiedKey>,
    ) -> (CertStore, Vec<Diagnostic>) {
        Self::build_parsed_at(tls, parsed, default, unix_now())
    }

    /// Builds the store for `tls` from Secrets already parsed (by the translation, so each
    /// Secret is parsed once per change), with `now` in Unix seconds.
    ///
    /// A Secret that cannot be used yields an error [`Diagnostic`] (`SecretInvalid`, on the
    /// Secret's `data[tls.crt]` or `data[tls.key]`) and its hosts are served `default`. An
    /// expired leaf yields a warning and is still served. A Secret missing from `parsed` is
    /// skipped silently: translation has already reported it (`SecretNotFound`).
    pub fn build_parsed_at(
        tls: &[TlsHost],
        parsed: &ParsedSecrets,
        default: Arc<CertifiedKey>,
        now: i64,
    ) -> (CertStore, Vec<Diagnostic>) {
        let mut used: HashMap<&ObjectRef, Option<&LoadedCert>> = HashMap::new();
        let mut diagnostics = Vec::new();
        let mut store = CertStore::empty(default);

        for t in tls {
            let cert = *used.entry(&t.secret).or_insert_with(|| {
                parsed
                    .get(&t.secret)
                    .and_then(|p| check(&t.secret, p, now, &mut diagnostics))
            });
            let key = cert.map_or(&store.default, |c| &c.key);
            let (map, name) = match &t.host {
                HostMatch::Exact(h) => (&mut store.exact, h),
                HostMatch::Wildcard(s) => (&mut store.wildcard, s),
                // Translation never produces it: a TLS host must be named.
                HostMatch::Any => continue,
            };
            // Translation gives each host one Secret; should two TlsHosts share a host anyway,
            // the first one wins.
            map.entry(name.clone()).or_insert_with(|| Arc::clone(key));
        }

        store.not_after = used
            .into_iter()
            .filter_map(|(r, c)| c.map(|c| (r.clone(), c.not_after)))
            .collect();
        store.not_after.sort();
        (store, diagnostics)
    }

    /// [`CertStore::build_parsed`] serving `default` (see [`DefaultChoice`]) when nothing
    /// else matches: its diagnostics come first, and its Secret, when served, is listed in
    /// [`CertStore::not_after`].
    pub fn build_with_default(
        tls: &[TlsHost],
        parsed: &ParsedSecrets,
        default: &DefaultChoice,
    ) -> (CertStore, Vec<Diagnostic>) {
        Self::build_with_default_at(tls, parsed, default, unix_now())
    }

    /// [`CertStore::build_with_default`] with `now` in Unix seconds.
    pub fn build_with_default_at(
        tls: &[TlsHost],
        parsed: &ParsedSecrets,
        default: &DefaultChoice,
        now: i64,
    ) -> (CertStore, Vec<Diagnostic>) {
        let (mut store, diags) = Self::build_parsed_at(tls, parsed, Arc::clone(&default.key), now);
        if let Some((secret, not_after)) = &default.secret
            && !store.not_after.iter().any(|(r, _)| r == secret)
        {
            store.not_after.push((secret.clone(), *not_after));
            store.not_after.sort();
        }
        let mut all = default.diagnostics.clone();
        all.extend(diags);
        (store, all)
    }

    /// The certificate for a TLS handshake that asked for `sni` (none: the default).
    ///
    /// The name is compared lower-case with one trailing dot stripped: an exact host first,
    /// then a wildcard covering exactly one more label, else the default certificate.
    pub fn resolve(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        Arc::clone(self.pick(sni))
    }

    /// Whether a connection whose handshake asked for `sni` is valid for requests to `host`
    /// (a `Host` header or `:authority`, port allowed): true when the certificate chosen for
    /// `host` is the very one chosen for `sni`. When false, an HTTP/2 connection reused for
    /// another host should be answered 421 Misdirected Request.
    pub fn covers(&self, sni: Option<&str>, host: &str) -> bool {
        // The usual request names the host its handshake named. `pick` depends only on the
        // name with ASCII case ignored (and `normalize_request_host` below only drops the
        // port and one trailing dot, as `host_without_port` does), so the same name picks
        // the same certificate: no copy and no lookup (two hashed lookups per request on
        // HTTPS otherwise). An IPv6 literal, which `normalize_request_host` refuses, is
        // left to the lookups.
        if let Some(sni) = sni
            && !host.starts_with('[')
            && sni.eq_ignore_ascii_case(host_without_port(host))
        {
            return true;
        }
        let mut buf = [0u8; MAX_NAME];
        let host = normalize_request_host(host, &mut buf)
            .and_then(|n| buf.get(..n))
            .and_then(|b| std::str::from_utf8(b).ok());
        Arc::ptr_eq(self.pick(sni), self.pick(host))
    }

    /// `notAfter` of the leaf certificate of every Secret in use, in Unix seconds, sorted by
    /// Secret: the `sluice_tls_certs_not_after{secret}` metric.
    pub fn not_after(&self) -> Vec<(ObjectRef, i64)> {
        self.not_after.clone()
    }

    /// The certificate served when nothing else matches.
    pub fn default_cert(&self) -> &Arc<CertifiedKey> {
        &self.default
    }

    fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > MAX_NAME {
            return &self.default;
        }
        let mut buf = [0u8; MAX_NAME];
        let lower = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            for (dst, src) in buf.iter_mut().zip(name.bytes()) {
                *dst = src.to_ascii_lowercase();
            }
            // ASCII lower-casing keeps UTF-8 valid; the fallback is never taken.
            match buf
                .get(..name.len())
                .and_then(|b| std::str::from_utf8(b).ok())
            {
                Some(s) => s,
                None => return &self.default,
            }
        } else {
            name
        };
        if let Some(key) = self.exact.get(lower) {
            return key;
        }
        if let Some((first, rest)) = lower.split_once('.')
            && !first.is_empty()
            && let Some(key) = self.wildcard.get(rest)
        {
            return key;
        }
        &self.default
    }
}

/// The certificate served when no Secret covers the requested name (and when the client sends
/// no SNI): the Secret named by `--default-certificate` when it exists and can be used, else the
/// generated self-signed one. Chosen by [`DefaultChoice::choose_at`], a pure function of the
/// Secrets, so every change or rotation of that Secret is picked up with the next snapshot.
#[derive(Clone, Debug)]
pub struct DefaultChoice {
    /// The certificate to serve by default.
    pub key: Arc<CertifiedKey>,
    /// The `--default-certificate` Secret when it is the one served, with its leaf `notAfter`
    /// (Unix seconds).
    pub secret: Option<(ObjectRef, i64)>,
    /// Why the wanted Secret is not served, or that it has expired.
    pub diagnostics: Vec<Diagnostic>,
}

impl DefaultChoice {
    /// [`DefaultChoice::choose_at`] judging expiry against the current time.
    pub fn choose(
        wanted: Option<&ObjectRef>,
        secrets: &[Secret],
        parsed: &ParsedSecrets,
        generated: &Arc<CertifiedKey>,
    ) -> DefaultChoice {
        Self::choose_at(wanted, secrets, parsed, generated, unix_now())
    }

    /// Chooses the default certificate: `generated` when `wanted` is `None`; otherwise the
    /// `kubernetes.io/tls` Secret `wanted` from `secrets` (parsed with `parsed`'s result when
    /// the translation already parsed it, else parsed here), with `now` in Unix seconds.
    ///
    /// A missing Secret (`SecretNotFound`) or one of another type or that cannot be used
    /// (`SecretInvalid`) yields an error [`Diagnostic`] on the Secret naming
    /// `--default-certificate`, and `generated` is served; an expired one yields a warning and
    /// is still served.
    pub fn choose_at(
        wanted: Option<&ObjectRef>,
        secrets: &[Secret],
        parsed: &ParsedSecrets,
        generated: &Arc<CertifiedKey>,
        now: i64,
    ) -> DefaultChoice {
        let (cert, diagnostics) = match wanted {
            Some(wanted) => Self::lookup_at(wanted, secrets, parsed, now),
            None => (None, Vec::new()),
        };
        DefaultChoice {
            key: cert
                .as_ref()
                .map_or_else(|| Arc::clone(generated), |c| Arc::clone(&c.key)),
            secret: wanted.zip(cert).map(|(r, c)| (r.clone(), c.not_after)),
            diagnostics,
        }
    }

    /// The certificate of the `--default-certificate` Secret `wanted`, or `None` with an error
    /// diagnostic saying why it cannot be served (see [`DefaultChoice::choose_at`]); `sluice
    /// check` reports these diagnostics without serving anything.
    pub fn lookup_at(
        wanted: &ObjectRef,
        secrets: &[Secret],
        parsed: &ParsedSecrets,
        now: i64,
    ) -> (Option<LoadedCert>, Vec<Diagnostic>) {
        let refuse = |reason, field: &str, problem: String| {
            let d = Diagnostic::error(
                reason,
                Kind::Secret,
                wanted,
                field,
                format!(
                    "{problem}; --default-certificate {wanted} cannot be served, the generated \
                     self-signed certificate is served instead until the Secret is fixed"
                ),
            );
            (None, vec![d])
        };
        let Some(secret) = secrets.iter().find(|s| object_ref(&s.metadata) == *wanted) else {
            return refuse(
                Reason::SecretNotFound,
                "metadata.name",
                "the Secret does not exist or is not visible to sluice (in Kubernetes mode its \
                 namespace must be watched)"
                    .to_string(),
            );
        };
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        if type_ != "kubernetes.io/tls" {
            return refuse(
                Reason::SecretInvalid,
                "type",
                format!("the Secret has type {type_:?}, not \"kubernetes.io/tls\""),
            );
        }
        let own;
        let result = match parsed.get(wanted) {
            Some(p) => p,
            None => {
                own = super::parse_tls_secret(secret);
                &own
            }
        };
        let cert = match result {
            Err(e) => {
                return refuse(
                    Reason::SecretInvalid,
                    e.secret_field().unwrap_or("data"),
                    e.to_string(),
                );
            }
            Ok(cert) => cert.clone(),
        };
        let mut diagnostics = Vec::new();
        if cert.not_after < now {
            diagnostics.push(Diagnostic::warning(
                Reason::SecretInvalid,
                Kind::Secret,
                wanted,
                "data[tls.crt]",
                format!(
                    "the --default-certificate certificate expired at {}; it is still served, \
                     but clients will reject it: renew it",
                    super::der::format_unix(cert.not_after)
                ),
            ));
        }
        (Some(cert), diagnostics)
    }
}

/// The current time in Unix seconds.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The certificate of one parsed Secret, pushing a diagnostic when it cannot be used or has
/// expired.
fn check<'p>(
    secret: &ObjectRef,
    parsed: &'p ParsedCert,
    now: i64,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<&'p LoadedCert> {
    match parsed {
        Ok(cert) => {
            if cert.not_after < now {
                diagnostics.push(Diagnostic::warning(
                    Reason::SecretInvalid,
                    Kind::Secret,
                    secret,
                    "data[tls.crt]",
                    format!(
                        "the certificate expired at {}; it is still served, but clients will \
                         reject it: renew it",
                        super::der::format_unix(cert.not_after)
                    ),
                ));
            }
            Some(cert)
        }
        Err(e) => {
            diagnostics.push(Diagnostic::error(
                Reason::SecretInvalid,
                Kind::Secret,
                secret,
                e.secret_field().unwrap_or("data"),
                format!(
                    "{e}; its hosts are served with the default certificate until the Secret is \
                     fixed"
                ),
            ));
            None
        }
    }
}
