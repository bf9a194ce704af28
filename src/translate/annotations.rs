//! Ingress annotations -> [`BackendSettings`], with a diagnostic per bad value, and what
//! sluice does with the annotations of other controllers.
//!
//! Annotations are parsed into typed settings here, once, and never spliced into any text
//! configuration: there is no template to inject into.
//!
//! Annotations under `nginx.ingress.kubernetes.io/`, `traefik.ingress.kubernetes.io/` and
//! `sluice.io/` are all accounted for ([`support`]): the ones sluice implements are read
//! (ingress-nginx's under their own names, a `sluice.io/` one of the same meaning winning);
//! snippets reject the Ingress; a protection sluice does not implement closes the Ingress's
//! routes (503); anything else is a warning. Nothing is ignored silently.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use crate::model::{
    BackendSettings, Cidr, Cors, Diagnostic, ForwardAuth, HostMatch, Kind, LoadBalancer, ObjectRef,
    RateLimit, Reason, Redirect, UpstreamProtocol,
};

/// `round-robin` (default) or `least-request`.
pub const LOAD_BALANCER: &str = "sluice.io/load-balancer";
/// `http` (default), `h2c` or `grpc` (same as h2c).
pub const BACKEND_PROTOCOL: &str = "sluice.io/backend-protocol";
/// A duration: `5s`, `500ms`, `1m`, or plain seconds.
pub const PROXY_CONNECT_TIMEOUT: &str = "sluice.io/proxy-connect-timeout";
/// A duration: `5s`, `500ms`, `1m`, or plain seconds.
pub const PROXY_READ_TIMEOUT: &str = "sluice.io/proxy-read-timeout";
/// A size: `8m`, `512k`, `1g`, plain bytes; `0` means unlimited.
pub const PROXY_BODY_SIZE: &str = "sluice.io/proxy-body-size";
/// `true` (default) or `false`.
pub const SSL_REDIRECT: &str = "sluice.io/ssl-redirect";
/// Comma-separated CIDRs or addresses: only clients in them are served (others get 403).
pub const ALLOW_SOURCE_RANGE: &str = "sluice.io/allow-source-range";
/// Comma-separated CIDRs or addresses: clients in them get 403.
pub const DENY_SOURCE_RANGE: &str = "sluice.io/deny-source-range";
/// `http://` URL of an external authentication service (see [`ForwardAuth`]).
pub const AUTH_URL: &str = "sluice.io/auth-url";
/// Method of the authentication request (default `GET`).
pub const AUTH_METHOD: &str = "sluice.io/auth-method";
/// Where a 401 from the authentication service is redirected (`$host`, `$http_host`,
/// `$scheme`, `$request_uri` and `$escaped_request_uri` are replaced).
pub const AUTH_SIGNIN: &str = "sluice.io/auth-signin";
/// The query parameter of the sign-in redirect that carries the original URL (default `rd`).
pub const AUTH_SIGNIN_REDIRECT_PARAM: &str = "sluice.io/auth-signin-redirect-param";
/// Comma-separated headers of the authentication answer set on the forwarded request.
pub const AUTH_RESPONSE_HEADERS: &str = "sluice.io/auth-response-headers";
/// `X-Auth-Request-Redirect` sent to the authentication service.
pub const AUTH_REQUEST_REDIRECT: &str = "sluice.io/auth-request-redirect";
/// `true`: redirect plain HTTP to HTTPS even without TLS for the host in this Ingress.
pub const FORCE_SSL_REDIRECT: &str = "sluice.io/force-ssl-redirect";
/// Answer every request with a 301 to this URL (see [`Redirect`]).
pub const PERMANENT_REDIRECT: &str = "sluice.io/permanent-redirect";
/// The status of [`PERMANENT_REDIRECT`] (default 301).
pub const PERMANENT_REDIRECT_CODE: &str = "sluice.io/permanent-redirect-code";
/// Answer every request with a 302 to this URL (wins over [`PERMANENT_REDIRECT`]).
pub const TEMPORAL_REDIRECT: &str = "sluice.io/temporal-redirect";
/// The status of [`TEMPORAL_REDIRECT`] (default 302).
pub const TEMPORAL_REDIRECT_CODE: &str = "sluice.io/temporal-redirect-code";
/// Redirect (302) requests for `/` to this path.
pub const APP_ROOT: &str = "sluice.io/app-root";
/// `true`: answer CORS (see [`Cors`]).
pub const ENABLE_CORS: &str = "sluice.io/enable-cors";
/// Comma-separated allowed origins, `*.` wildcards allowed (default `*`).
pub const CORS_ALLOW_ORIGIN: &str = "sluice.io/cors-allow-origin";
/// `Access-Control-Allow-Methods`.
pub const CORS_ALLOW_METHODS: &str = "sluice.io/cors-allow-methods";
/// `Access-Control-Allow-Headers`.
pub const CORS_ALLOW_HEADERS: &str = "sluice.io/cors-allow-headers";
/// `Access-Control-Expose-Headers`.
pub const CORS_EXPOSE_HEADERS: &str = "sluice.io/cors-expose-headers";
/// `true` (default) or `false`.
pub const CORS_ALLOW_CREDENTIALS: &str = "sluice.io/cors-allow-credentials";
/// Seconds (default 1728000).
pub const CORS_MAX_AGE: &str = "sluice.io/cors-max-age";
/// The Host header sent upstream.
pub const UPSTREAM_VHOST: &str = "sluice.io/upstream-vhost";
/// An `X-Forwarded-Prefix` header sent upstream.
pub const X_FORWARDED_PREFIX: &str = "sluice.io/x-forwarded-prefix";
/// Requests per second per client address (see [`RateLimit`]).
pub const LIMIT_RPS: &str = "sluice.io/limit-rps";
/// Requests per minute per client address.
pub const LIMIT_RPM: &str = "sluice.io/limit-rpm";
/// Burst allowance as a multiple of the rate (default 5).
pub const LIMIT_BURST_MULTIPLIER: &str = "sluice.io/limit-burst-multiplier";
/// Comma-separated client networks the rate limits do not apply to.
pub const LIMIT_EXEMPT_RANGE: &str = "sluice.io/limit-exempt-range";

/// ingress-nginx's annotation prefix.
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";
/// Traefik's annotation prefix (its Kubernetes Ingress provider).
pub const TRAEFIK: &str = "traefik.ingress.kubernetes.io/";
/// sluice's annotation prefix.
pub const SLUICE: &str = "sluice.io/";

/// `sluice.io/rewrite-target`: the path sent upstream, with `$1`..`$9` from the path's
/// expression (ingress-nginx's `rewrite-target`; makes the Ingress's paths regular expressions).
pub const REWRITE_TARGET: &str = "sluice.io/rewrite-target";
/// `sluice.io/auth-type`: `basic` asks for basic authentication (ingress-nginx's).
pub const AUTH_TYPE: &str = "sluice.io/auth-type";
/// `sluice.io/auth-secret`: the Secret with the users (`name`, or `namespace/name` of the
/// Ingress's own namespace).
pub const AUTH_SECRET: &str = "sluice.io/auth-secret";
/// `sluice.io/auth-secret-type`: `auth-file` (an htpasswd file under the key `auth`, the
/// default) or `auth-map` (one key per user, the hash as value).
pub const AUTH_SECRET_TYPE: &str = "sluice.io/auth-secret-type";
/// `sluice.io/auth-realm`: the realm of the 401 answer.
pub const AUTH_REALM: &str = "sluice.io/auth-realm";
/// `sluice.io/canary`: `"true"` makes this Ingress the canary of the main Ingress with the
/// same host and path (ingress-nginx's).
pub const CANARY: &str = "sluice.io/canary";
/// `sluice.io/canary-by-header`: the request header that sends a request to the canary.
pub const CANARY_BY_HEADER: &str = "sluice.io/canary-by-header";
/// `sluice.io/canary-by-header-value`: the header value that means canary.
pub const CANARY_BY_HEADER_VALUE: &str = "sluice.io/canary-by-header-value";
/// `sluice.io/canary-by-cookie`: the cookie (`always`/`never`) that decides.
pub const CANARY_BY_COOKIE: &str = "sluice.io/canary-by-cookie";
/// `sluice.io/canary-weight`: the share of the other requests sent to the canary.
pub const CANARY_WEIGHT: &str = "sluice.io/canary-weight";
/// `sluice.io/canary-weight-total`: what the weight is out of (default 100).
pub const CANARY_WEIGHT_TOTAL: &str = "sluice.io/canary-weight-total";
/// `sluice.io/affinity`: `cookie` pins a client to an endpoint with a cookie.
pub const AFFINITY: &str = "sluice.io/affinity";
/// `sluice.io/affinity-mode`: `balanced` or `persistent` (both keep the endpoint while it
/// exists).
pub const AFFINITY_MODE: &str = "sluice.io/affinity-mode";
/// `sluice.io/session-cookie-name` (default `INGRESSCOOKIE`).
pub const SESSION_COOKIE_NAME: &str = "sluice.io/session-cookie-name";
/// `sluice.io/session-cookie-path`.
pub const SESSION_COOKIE_PATH: &str = "sluice.io/session-cookie-path";
/// `sluice.io/session-cookie-max-age`, seconds.
pub const SESSION_COOKIE_MAX_AGE: &str = "sluice.io/session-cookie-max-age";
/// `sluice.io/session-cookie-expires`, seconds (sent as `Max-Age`).
pub const SESSION_COOKIE_EXPIRES: &str = "sluice.io/session-cookie-expires";
/// `sluice.io/session-cookie-secure`.
pub const SESSION_COOKIE_SECURE: &str = "sluice.io/session-cookie-secure";
/// `sluice.io/session-cookie-samesite`: `None`, `Lax` or `Strict`.
pub const SESSION_COOKIE_SAMESITE: &str = "sluice.io/session-cookie-samesite";
/// `sluice.io/session-cookie-domain`.
pub const SESSION_COOKIE_DOMAIN: &str = "sluice.io/session-cookie-domain";
/// `sluice.io/session-cookie-change-on-failure`: accepted; a cookie naming an endpoint that
/// is gone or marked down is always replaced.
pub const SESSION_COOKIE_CHANGE_ON_FAILURE: &str = "sluice.io/session-cookie-change-on-failure";
/// `sluice.io/upstream-hash-by`: the key (nginx variables and text) that picks the endpoint.
pub const UPSTREAM_HASH_BY: &str = "sluice.io/upstream-hash-by";
/// `sluice.io/default-backend`: a Service of the Ingress's namespace that answers when a
/// route's Service has no endpoint, and serves `custom-http-errors` pages.
pub const DEFAULT_BACKEND: &str = "sluice.io/default-backend";
/// `sluice.io/custom-http-errors`: comma-separated statuses whose upstream answers are
/// replaced by the `default-backend` Service's.
pub const CUSTOM_HTTP_ERRORS: &str = "sluice.io/custom-http-errors";
/// `sluice.io/limit-connections`: requests in progress per client address.
pub const LIMIT_CONNECTIONS: &str = "sluice.io/limit-connections";
/// `sluice.io/request-headers`: `Name: value` lines set on the request sent upstream.
pub const REQUEST_HEADERS: &str = "sluice.io/request-headers";
/// `sluice.io/response-headers`: `Name: value` lines set on the response.
pub const RESPONSE_HEADERS: &str = "sluice.io/response-headers";
/// `sluice.io/strip-prefix`: `"true"` removes the matched Prefix path from the path sent
/// upstream (Traefik's `StripPrefix` middleware).
pub const STRIP_PREFIX: &str = "sluice.io/strip-prefix";
/// `sluice.io/hsts`: the `Strict-Transport-Security` value of responses over HTTPS.
pub const HSTS: &str = "sluice.io/hsts";
/// `sluice.io/proxy-send-timeout`: the longest wait for the upstream to take more of the
/// request body.
pub const PROXY_SEND_TIMEOUT: &str = "sluice.io/proxy-send-timeout";
/// `sluice.io/server-alias`: more host names served with the rules of this Ingress's hosts.
pub const SERVER_ALIAS: &str = "sluice.io/server-alias";
/// `sluice.io/use-regex`: the Ingress's paths are regular expressions (ingress-nginx's).
pub const USE_REGEX: &str = "sluice.io/use-regex";
/// `sluice.io/proxy-next-upstream`: when a request is tried again on another endpoint, as
/// space-separated conditions (`error`, `timeout`, `invalid_header`, `http_500`, `http_502`,
/// `http_503`, `http_504`, `http_403`, `http_404`, `http_429`, `non_idempotent`, `off`).
pub const PROXY_NEXT_UPSTREAM: &str = "sluice.io/proxy-next-upstream";
/// `sluice.io/proxy-next-upstream-tries`: tries in all (0: one per endpoint).
pub const PROXY_NEXT_UPSTREAM_TRIES: &str = "sluice.io/proxy-next-upstream-tries";
/// `sluice.io/proxy-next-upstream-timeout`: no new try after this long (0: no limit).
pub const PROXY_NEXT_UPSTREAM_TIMEOUT: &str = "sluice.io/proxy-next-upstream-timeout";
/// `sluice.io/proxy-ssl-secret`: `[namespace/]name` of a Secret with `ca.crt` (the CAs an
/// `HTTPS`/`GRPCS` backend's certificate must chain to) and optionally `tls.crt` and `tls.key`
/// (the client certificate sluice presents).
pub const PROXY_SSL_SECRET: &str = "sluice.io/proxy-ssl-secret";
/// `sluice.io/proxy-ssl-verify`: `on` or `off`; on by default when the Secret has a CA.
pub const PROXY_SSL_VERIFY: &str = "sluice.io/proxy-ssl-verify";
/// `sluice.io/proxy-ssl-name`: the name verified and sent as SNI.
pub const PROXY_SSL_NAME: &str = "sluice.io/proxy-ssl-name";
/// `sluice.io/proxy-ssl-server-name`: `on` sends SNI to the backend (off by default).
pub const PROXY_SSL_SERVER_NAME: &str = "sluice.io/proxy-ssl-server-name";
/// `sluice.io/ssl-passthrough`: `"true"` passes TLS connections for the Ingress's hosts to the
/// backend of path `/` without terminating them (see [`BackendSettings::ssl_passthrough`]).
pub const SSL_PASSTHROUGH: &str = "sluice.io/ssl-passthrough";

/// ingress-nginx's `proxy-body-size` default (nginx's `client_max_body_size`), applied to an
/// Ingress that carries ingress-nginx annotations and sets no body size: it was written for
/// ingress-nginx, which refused larger bodies.
pub const NGINX_DEFAULT_BODY_SIZE: u64 = 1 << 20;

/// The ingress-nginx annotations sluice reads, with the `sluice.io/` one of the same meaning
/// (when several name one setting, the first present wins).
const NGINX_MAPPED: [(&str, &str); 70] = [
    ("ssl-passthrough", SSL_PASSTHROUGH),
    ("proxy-next-upstream", PROXY_NEXT_UPSTREAM),
    ("proxy-next-upstream-tries", PROXY_NEXT_UPSTREAM_TRIES),
    ("proxy-next-upstream-timeout", PROXY_NEXT_UPSTREAM_TIMEOUT),
    ("proxy-ssl-secret", PROXY_SSL_SECRET),
    ("proxy-ssl-verify", PROXY_SSL_VERIFY),
    ("proxy-ssl-name", PROXY_SSL_NAME),
    ("proxy-ssl-server-name", PROXY_SSL_SERVER_NAME),
    ("proxy-send-timeout", PROXY_SEND_TIMEOUT),
    ("limit-connections", LIMIT_CONNECTIONS),
    ("default-backend", DEFAULT_BACKEND),
    ("custom-http-errors", CUSTOM_HTTP_ERRORS),
    ("server-alias", SERVER_ALIAS),
    ("affinity", AFFINITY),
    ("affinity-mode", AFFINITY_MODE),
    ("session-cookie-name", SESSION_COOKIE_NAME),
    ("session-cookie-path", SESSION_COOKIE_PATH),
    ("session-cookie-max-age", SESSION_COOKIE_MAX_AGE),
    ("session-cookie-expires", SESSION_COOKIE_EXPIRES),
    ("session-cookie-secure", SESSION_COOKIE_SECURE),
    ("session-cookie-samesite", SESSION_COOKIE_SAMESITE),
    ("session-cookie-domain", SESSION_COOKIE_DOMAIN),
    (
        "session-cookie-change-on-failure",
        SESSION_COOKIE_CHANGE_ON_FAILURE,
    ),
    ("upstream-hash-by", UPSTREAM_HASH_BY),
    ("canary", CANARY),
    ("canary-by-header", CANARY_BY_HEADER),
    ("canary-by-header-value", CANARY_BY_HEADER_VALUE),
    ("canary-by-cookie", CANARY_BY_COOKIE),
    ("canary-weight", CANARY_WEIGHT),
    ("canary-weight-total", CANARY_WEIGHT_TOTAL),
    ("auth-type", AUTH_TYPE),
    ("auth-secret", AUTH_SECRET),
    ("auth-secret-type", AUTH_SECRET_TYPE),
    ("auth-realm", AUTH_REALM),
    ("rewrite-target", REWRITE_TARGET),
    ("use-regex", USE_REGEX),
    ("upstream-vhost", UPSTREAM_VHOST),
    ("x-forwarded-prefix", X_FORWARDED_PREFIX),
    ("enable-cors", ENABLE_CORS),
    ("cors-allow-origin", CORS_ALLOW_ORIGIN),
    ("cors-allow-methods", CORS_ALLOW_METHODS),
    ("cors-allow-headers", CORS_ALLOW_HEADERS),
    ("cors-expose-headers", CORS_EXPOSE_HEADERS),
    ("cors-allow-credentials", CORS_ALLOW_CREDENTIALS),
    ("cors-max-age", CORS_MAX_AGE),
    ("force-ssl-redirect", FORCE_SSL_REDIRECT),
    ("permanent-redirect", PERMANENT_REDIRECT),
    ("permanent-redirect-code", PERMANENT_REDIRECT_CODE),
    ("temporal-redirect", TEMPORAL_REDIRECT),
    ("temporal-redirect-code", TEMPORAL_REDIRECT_CODE),
    ("app-root", APP_ROOT),
    ("limit-rps", LIMIT_RPS),
    ("limit-rpm", LIMIT_RPM),
    ("limit-burst-multiplier", LIMIT_BURST_MULTIPLIER),
    ("limit-whitelist", LIMIT_EXEMPT_RANGE),
    ("auth-url", AUTH_URL),
    ("auth-method", AUTH_METHOD),
    ("auth-signin", AUTH_SIGNIN),
    ("auth-signin-redirect-param", AUTH_SIGNIN_REDIRECT_PARAM),
    ("auth-response-headers", AUTH_RESPONSE_HEADERS),
    ("auth-request-redirect", AUTH_REQUEST_REDIRECT),
    ("whitelist-source-range", ALLOW_SOURCE_RANGE),
    ("allowlist-source-range", ALLOW_SOURCE_RANGE),
    ("denylist-source-range", DENY_SOURCE_RANGE),
    ("load-balance", LOAD_BALANCER),
    ("backend-protocol", BACKEND_PROTOCOL),
    ("proxy-connect-timeout", PROXY_CONNECT_TIMEOUT),
    ("proxy-read-timeout", PROXY_READ_TIMEOUT),
    ("proxy-body-size", PROXY_BODY_SIZE),
    ("ssl-redirect", SSL_REDIRECT),
];

/// `sluice.io/` annotations read elsewhere (ACME: see `acme::wants`) or with no ingress-nginx
/// counterpart.
const SLUICE_ELSEWHERE: [&str; 6] = [
    STRIP_PREFIX,
    "sluice.io/acme",
    "sluice.io/acme-challenge",
    REQUEST_HEADERS,
    RESPONSE_HEADERS,
    HSTS,
];

/// What sluice does with an annotation under one of the prefixes it accounts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented: read into the Ingress's settings (or by the ACME planner).
    Read,
    /// A configuration snippet (text for the other controller's configuration): never
    /// applied, and the Ingress is not served.
    Snippet,
    /// A protection sluice does not implement (authentication, allow/deny lists, rate limits,
    /// client certificates, a WAF, Traefik middlewares that may be any of these): the
    /// Ingress's routes answer 503 rather than serve open.
    Protection,
    /// Not implemented: ignored, with a warning.
    Ignored,
}

/// How `key` is handled; `None` for annotations outside the three prefixes (other tools',
/// e.g. ExternalDNS's or cert-manager's, which their own readers take).
pub fn support(key: &str) -> Option<Support> {
    if let Some(name) = key.strip_prefix(NGINX) {
        return Some(nginx_support(name));
    }
    if let Some(name) = key.strip_prefix(TRAEFIK) {
        // Middlewares are named, not described: any of them may be an authentication or an
        // allow list. TLS options may require client certificates.
        return Some(match name {
            "router.middlewares" | "router.tls.options" => Support::Protection,
            _ => Support::Ignored,
        });
    }
    if key.starts_with(SLUICE) {
        let known =
            NGINX_MAPPED.iter().any(|(_, ours)| *ours == key) || SLUICE_ELSEWHERE.contains(&key);
        return Some(if known {
            Support::Read
        } else {
            Support::Ignored
        });
    }
    None
}

fn nginx_support(name: &str) -> Support {
    if NGINX_MAPPED.iter().any(|(theirs, _)| *theirs == name) {
        return Support::Read;
    }
    if name.ends_with("-snippet") {
        return Support::Snippet;
    }
    // Tuning of `auth-url` that sluice does without: authentication still applies.
    const AUTH_TUNING: [&str; 4] = [
        "auth-cache-",
        "auth-keepalive",
        "auth-proxy-set-headers",
        "auth-always-set-cookie",
    ];
    // Response bandwidth limits: not access control.
    const TUNING: [&str; 2] = ["limit-rate", "limit-rate-after"];
    if AUTH_TUNING.iter().any(|t| name.starts_with(t)) || TUNING.contains(&name) {
        return Support::Ignored;
    }
    const PROTECTIONS: [&str; 2] = ["satisfy", "enable-owasp-core-rules"];
    const PROTECTION_FAMILIES: [&str; 5] = [
        "auth-",
        "limit-",
        "global-rate-limit",
        "modsecurity",
        "enable-modsecurity",
    ];
    if PROTECTIONS.contains(&name) || PROTECTION_FAMILIES.iter().any(|f| name.starts_with(f)) {
        return Support::Protection;
    }
    Support::Ignored
}

/// Snippet annotations of an Ingress, in key order: an Ingress with any is not served.
pub fn snippets(annotations: Option<&BTreeMap<String, String>>) -> Vec<&str> {
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| support(k) == Some(Support::Snippet))
        .map(|(k, _)| k.as_str())
        .collect()
}

/// The diagnostic of a rejected Ingress's snippet annotation `key`.
pub fn snippet_diagnostic(ingress: &ObjectRef, key: &str) -> Diagnostic {
    Diagnostic::error(
        Reason::SnippetRejected,
        Kind::Ingress,
        ingress,
        format!("metadata.annotations[{key}]"),
        "configuration snippets are never applied (they inject text into the proxy's \
         configuration: the IngressNightmare class of vulnerabilities); this Ingress is not \
         served until the annotation is removed; docs/annotations.md lists what replaces it"
            .to_string(),
    )
}

/// The annotation a setting is read from on an Ingress: `ours` (a `sluice.io/` key) when
/// present, else the first ingress-nginx name of the same meaning that is present.
pub fn present_key(annotations: &BTreeMap<String, String>, ours: &str) -> Option<String> {
    if annotations.contains_key(ours) {
        return Some(ours.to_string());
    }
    NGINX_MAPPED
        .iter()
        .filter(|(_, o)| *o == ours)
        .map(|(theirs, _)| format!("{NGINX}{theirs}"))
        .find(|key| annotations.contains_key(key))
}

/// An `InvalidAnnotation` error on annotation `key` of `ingress`.
fn invalid(
    ingress: &ObjectRef,
    key: &dyn std::fmt::Display,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic::error(
        Reason::InvalidAnnotation,
        Kind::Ingress,
        ingress,
        format!("metadata.annotations[{key}]"),
        message,
    )
}

/// An `InvalidAnnotation` warning on annotation `key` of `ingress`.
fn invalid_warning(
    ingress: &ObjectRef,
    key: &dyn std::fmt::Display,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic::warning(
        Reason::InvalidAnnotation,
        Kind::Ingress,
        ingress,
        format!("metadata.annotations[{key}]"),
        message,
    )
}

/// The key and value a setting is read from (see [`present_key`]).
fn lookup<'a>(
    annotations: &'a BTreeMap<String, String>,
    ours: &str,
) -> Option<(String, &'a String)> {
    let key = present_key(annotations, ours)?;
    let value = annotations.get(&key)?;
    Some((key, value))
}

/// Parses the settings annotations of one Ingress, and reports the annotations sluice does
/// not implement (see [`support`]).
pub fn settings(
    ingress: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    diags: &mut Vec<Diagnostic>,
) -> BackendSettings {
    let mut s = BackendSettings::default();
    let Some(annotations) = annotations else {
        return s;
    };
    // The value of a setting: its `sluice.io/` annotation, else ingress-nginx's.
    let get = |ours: &'static str| lookup(annotations, ours);
    let mut bad = |key: &str, value: &str, expected: &str| {
        diags.push(invalid(
            ingress,
            &key,
            format!("{value:?} is not valid: expected {expected}; the default is used"),
        ));
    };
    if let Some((key, v)) = get(LOAD_BALANCER) {
        match v.trim() {
            "round-robin" | "round_robin" => s.load_balancer = LoadBalancer::RoundRobin,
            // ingress-nginx's `ewma` picks by latency; the closest here is least-request.
            "least-request" | "ewma" => s.load_balancer = LoadBalancer::LeastRequest,
            _ => bad(
                &key,
                v,
                "round-robin or least-request (nginx: round_robin or ewma)",
            ),
        }
    }
    if let Some((key, v)) = get(BACKEND_PROTOCOL) {
        match v.trim().to_ascii_lowercase().as_str() {
            "http" | "http1" => s.protocol = UpstreamProtocol::Http1,
            "h2c" | "grpc" => s.protocol = UpstreamProtocol::H2c,
            "https" => s.protocol = UpstreamProtocol::Https,
            "h2" | "grpcs" => s.protocol = UpstreamProtocol::H2,
            _ => bad(&key, v, "http, https, h2c, grpc, h2 or grpcs"),
        }
    }
    s.retry = retry_policy(&get, &mut bad);
    for (ours, slot) in [
        (PROXY_CONNECT_TIMEOUT, &mut s.connect_timeout),
        (PROXY_READ_TIMEOUT, &mut s.read_timeout),
        (PROXY_SEND_TIMEOUT, &mut s.send_timeout),
    ] {
        if let Some((key, v)) = get(ours) {
            match parse_duration(v) {
                Some(d) if !d.is_zero() => *slot = Some(d),
                _ => bad(
                    &key,
                    v,
                    "a positive duration such as 5s, 500ms, 2m or a number of seconds",
                ),
            }
        }
    }
    let nginx_in_use = annotations.keys().any(|k| k.starts_with(NGINX));
    match get(PROXY_BODY_SIZE) {
        Some((key, v)) => match parse_size(v) {
            Some(0) => s.max_body_bytes = None,
            Some(n) => s.max_body_bytes = Some(n),
            None => bad(
                &key,
                v,
                "a size such as 8m, 512k, 1g or a number of bytes (0: unlimited)",
            ),
        },
        None if nginx_in_use => s.max_body_bytes = Some(NGINX_DEFAULT_BODY_SIZE),
        None => {}
    }
    if let Some((key, v)) = get(SSL_REDIRECT) {
        match v.trim() {
            "true" => s.ssl_redirect = true,
            "false" => s.ssl_redirect = false,
            _ => bad(&key, v, "\"true\" or \"false\""),
        }
    }
    if let Some((key, v)) = get(USE_REGEX) {
        match v.trim() {
            "true" => s.use_regex = true,
            "false" => s.use_regex = false,
            _ => bad(&key, v, "\"true\" or \"false\""),
        }
    }
    for (ours, slot) in [
        (ALLOW_SOURCE_RANGE, &mut s.allow),
        (DENY_SOURCE_RANGE, &mut s.deny),
    ] {
        let Some((key, v)) = get(ours) else {
            continue;
        };
        match parse_cidrs(v) {
            Ok(list) => *slot = list,
            Err(e) => {
                // A source range that cannot be honoured fails closed.
                s.closed = true;
                diags.push(invalid(
                    ingress,
                    &key,
                    format!(
                        "{v:?} is not valid: {e}; expected comma-separated addresses or CIDRs \
                         such as 10.0.0.0/8, 192.0.2.7; every route of this Ingress answers 503 \
                         until it is fixed"
                    ),
                ));
            }
        }
    }
    match get(AUTH_URL) {
        Some((url_key, v)) => match forward_auth(&url_key, v, &get) {
            Ok((auth, problems)) => {
                s.auth = Some(Arc::new(auth));
                for (key, value, message) in problems {
                    diags.push(invalid(
                        ingress,
                        &key,
                        format!("{value:?} is not valid: {message}"),
                    ));
                }
            }
            Err((key, value, message)) => {
                s.closed = true;
                diags.push(invalid(
                    ingress,
                    &key,
                    format!(
                        "{value:?} is not valid: {message}; every route of this Ingress \
                         answers 503 until it is fixed"
                    ),
                ));
            }
        },
        None => {
            for ours in [
                AUTH_METHOD,
                AUTH_SIGNIN,
                AUTH_SIGNIN_REDIRECT_PARAM,
                AUTH_RESPONSE_HEADERS,
                AUTH_REQUEST_REDIRECT,
            ] {
                if let Some((key, _)) = get(ours) {
                    diags.push(invalid_warning(
                        ingress,
                        &key,
                        "has no effect without auth-url: ignored".to_string(),
                    ));
                }
            }
        }
    }
    if let Some((key, v)) = get(REWRITE_TARGET) {
        let target = v.trim();
        match crate::routing::rewrite::check_target(target) {
            Ok(()) => s.rewrite_target = Some(target.into()),
            Err(e) => {
                // Serving the paths un-rewritten would send requests where they were never
                // meant to go. They are still expressions, as the annotation meant, so that
                // the requests it was written for get the 503.
                s.closed = true;
                s.use_regex = true;
                diags.push(invalid(
                    ingress,
                    &key,
                    format!(
                        "{v:?} is not valid: {e}; every route of this Ingress answers 503 \
                         until it is fixed"
                    ),
                ));
            }
        }
    }
    affinity(ingress, &get, &mut s, diags);
    for (ours, slot) in [
        (REQUEST_HEADERS, &mut s.request_headers),
        (RESPONSE_HEADERS, &mut s.response_headers),
    ] {
        if let Some((key, v)) = get(ours) {
            match parse_header_list(v) {
                Ok(list) => *slot = list,
                Err(e) => diags.push(invalid(
                    ingress,
                    &key,
                    format!("{e}; none of these headers is set"),
                )),
            }
        }
    }
    if let Some((key, v)) = get(STRIP_PREFIX) {
        match v.trim() {
            "true" => s.strip_prefix = true,
            "false" => {}
            _ => diags.push(invalid(
                ingress,
                &key,
                format!("{v:?} is not valid: expected \"true\" or \"false\"; not applied"),
            )),
        }
    }
    if let Some((key, v)) = get(HSTS) {
        let value = v.trim();
        let max_age = value
            .split(';')
            .next()
            .and_then(|d| d.trim().strip_prefix("max-age="))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        match http::HeaderValue::from_str(value) {
            Ok(h) if max_age => s.hsts = Some(h),
            _ => diags.push(invalid(
                ingress,
                &key,
                format!(
                    "{v:?} is not valid: expected max-age=<seconds>, optionally followed by \
                     ; includeSubDomains and ; preload; not sent"
                ),
            )),
        }
    }
    if let Some((key, v)) = get(CUSTOM_HTTP_ERRORS) {
        let codes: Result<Vec<u16>, _> = v
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<u16>()
                    .ok()
                    .filter(|n| (400..=599).contains(n))
                    .ok_or(c)
            })
            .collect();
        match codes {
            Ok(list) if !list.is_empty() => s.custom_errors = list,
            Ok(_) => {}
            Err(c) => diags.push(invalid(
                ingress,
                &key,
                format!(
                    "{c:?} is not valid: expected comma-separated statuses from 400 to 599; \
                     upstream errors are passed through as they are"
                ),
            )),
        }
    }
    rate_limit(ingress, &get, &mut s, diags);
    redirects(ingress, &get, &mut s, diags);
    cors(ingress, &get, &mut s, diags);
    if let Some((key, v)) = get(UPSTREAM_VHOST) {
        let host = v.trim();
        if crate::model::host::is_valid_request_host(host) {
            s.upstream_vhost = Some(host.to_ascii_lowercase());
        } else {
            diags.push(invalid(
                ingress,
                &key,
                format!(
                    "{v:?} is not valid: expected a host name, optionally with a port; the \
                     client's Host is sent"
                ),
            ));
        }
    }
    if let Some((key, v)) = get(X_FORWARDED_PREFIX) {
        let prefix = v.trim();
        if prefix.starts_with('/') && http::HeaderValue::from_str(prefix).is_ok() {
            s.forwarded_prefix = Some(prefix.to_string());
        } else {
            diags.push(invalid(
                ingress,
                &key,
                format!("{v:?} is not valid: expected a path such as /app; not sent"),
            ));
        }
    }
    for key in annotations.keys() {
        let field = format!("metadata.annotations[{key}]");
        match support(key) {
            Some(Support::Protection) => {
                s.closed = true;
                diags.push(Diagnostic::error(
                    Reason::UnsupportedAnnotation,
                    Kind::Ingress,
                    ingress,
                    field,
                    "sluice does not implement this protection; rather than serve this Ingress \
                     open, every route of it answers 503 until the annotation is removed \
                     (docs/annotations.md)"
                        .to_string(),
                ));
            }
            Some(Support::Ignored) => diags.push(Diagnostic::warning(
                Reason::UnsupportedAnnotation,
                Kind::Ingress,
                ingress,
                field,
                "not implemented by sluice: ignored (docs/annotations.md lists what is)"
                    .to_string(),
            )),
            Some(Support::Read | Support::Snippet) | None => {}
        }
    }
    s
}

/// What an Ingress is for canary releases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanaryRole {
    /// An ordinary (main) Ingress.
    Main,
    /// A canary (`canary: "true"`) with its rule.
    Canary(crate::model::CanaryRule),
    /// A canary whose settings do not parse (reported): it gets no traffic.
    Invalid,
}

/// The annotation key and hosts of `server-alias` (comma-separated; exact or `*.` wildcard names). A name that is
/// not a valid host is reported and left out.
pub fn server_aliases(
    ingress: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    diags: &mut Vec<Diagnostic>,
) -> (String, Vec<HostMatch>) {
    let Some(annotations) = annotations else {
        return (String::new(), Vec::new());
    };
    let Some(key) = present_key(annotations, SERVER_ALIAS) else {
        return (String::new(), Vec::new());
    };
    let mut out = Vec::new();
    for name in annotations[&key]
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        match HostMatch::parse(name) {
            Ok(HostMatch::Any) => {}
            Ok(h) => out.push(h),
            Err(e) => diags.push(invalid(
                ingress,
                &key,
                format!("{name:?}: {e}; this alias is left out"),
            )),
        }
    }
    (key, out)
}

/// The canary rule of an Ingress marked `canary: "true"`; `Main` for a main Ingress (its
/// `canary-*` settings are reported as having no effect) and for a canary whose settings do
/// not parse, `Invalid` (reported; it then gets no traffic, the main Ingress keeps it all).
pub fn canary_rule(
    ingress: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    diags: &mut Vec<Diagnostic>,
) -> CanaryRole {
    let Some(annotations) = annotations else {
        return CanaryRole::Main;
    };
    let get = |ours: &'static str| lookup(annotations, ours);
    let settings = [
        CANARY_BY_HEADER,
        CANARY_BY_HEADER_VALUE,
        CANARY_BY_COOKIE,
        CANARY_WEIGHT,
        CANARY_WEIGHT_TOTAL,
    ];
    let is_canary = match get(CANARY) {
        None => false,
        Some((key, v)) => match v.trim() {
            "true" => true,
            "false" => false,
            _ => {
                diags.push(invalid(
                    ingress,
                    &key,
                    format!(
                        "{v:?} is not valid: expected \"true\" or \"false\"; this Ingress is \
                         not served until it is fixed (as a main Ingress it would take \
                         all of its paths' traffic)"
                    ),
                ));
                return CanaryRole::Invalid;
            }
        },
    };
    if !is_canary {
        for ours in settings {
            if let Some((key, _)) = get(ours) {
                diags.push(invalid_warning(
                    ingress,
                    &key,
                    "has no effect without canary: \"true\": ignored".to_string(),
                ));
            }
        }
        return CanaryRole::Main;
    }
    let mut problems = Vec::new();
    let header = match get(CANARY_BY_HEADER) {
        None => None,
        Some((key, v)) => match http::HeaderName::from_bytes(v.trim().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                problems.push((key, v.clone(), "expected a header name".to_string()));
                None
            }
        },
    };
    let header_value = get(CANARY_BY_HEADER_VALUE).map(|(_, v)| v.trim().to_string());
    let cookie = get(CANARY_BY_COOKIE).map(|(_, v)| v.trim().to_string());
    let mut number = |ours: &'static str, default: u32| match get(ours) {
        None => default,
        Some((key, v)) => match v.trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                problems.push((key, v.clone(), "expected a whole number".to_string()));
                0
            }
        },
    };
    let weight = number(CANARY_WEIGHT, 0);
    let total = number(CANARY_WEIGHT_TOTAL, 100);
    let key_of = |ours: &'static str| get(ours).map_or_else(|| ours.to_string(), |(k, _)| k);
    if total == 0 {
        problems.push((
            key_of(CANARY_WEIGHT_TOTAL),
            "0".into(),
            "must be at least 1".into(),
        ));
    } else if weight > total {
        problems.push((
            key_of(CANARY_WEIGHT),
            weight.to_string(),
            format!("must be at most the total ({total})"),
        ));
    }
    if !problems.is_empty() {
        for (key, value, message) in problems {
            diags.push(invalid(
                ingress,
                &key,
                format!(
                    "{value:?} is not valid: {message}; this canary gets no traffic until it \
                     is fixed (the main Ingress keeps all of it)"
                ),
            ));
        }
        return CanaryRole::Invalid;
    }
    CanaryRole::Canary(crate::model::CanaryRule {
        header,
        header_value,
        cookie,
        weight,
        total,
    })
}

/// The Secrets an Ingress's annotations read (`auth-secret` and `proxy-ssl-secret`, under
/// either name, in the Ingress's namespace): the Kubernetes source delivers these Opaque
/// Secrets and no others.
pub fn secret_refs(ingress: &k8s_openapi::api::networking::v1::Ingress) -> Vec<ObjectRef> {
    let Some(annotations) = ingress.metadata.annotations.as_ref() else {
        return Vec::new();
    };
    let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
    [AUTH_SECRET, PROXY_SSL_SECRET]
        .into_iter()
        .filter_map(|ours| {
            let (_, name) = lookup(annotations, ours)?;
            same_namespace_secret(&namespace, name).ok()
        })
        .collect()
}

/// The Secret an annotation value `[namespace/]name` names. It must be in the Ingress's
/// `namespace`: sluice never reads another namespace's credentials or keys for an Ingress.
fn same_namespace_secret(namespace: &str, value: &str) -> Result<ObjectRef, String> {
    let value = value.trim();
    let name = match value.split_once('/') {
        None => value,
        Some((ns, n)) if ns == namespace => n,
        Some((ns, _)) => {
            return Err(format!(
                "{value:?}: the Secret must be in the Ingress's namespace ({namespace:?}, not \
                 {ns:?}): sluice never reads another namespace's credentials for an Ingress"
            ));
        }
    };
    if name.is_empty() {
        return Err(format!("{value:?} is not a Secret name"));
    }
    Ok(ObjectRef::new(namespace, name))
}

/// Closes the Ingress (every route answers 503) for a protection it asks for that cannot be
/// honoured, with an error naming `key`.
fn close_ingress(
    ingress: &ObjectRef,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
    key: &str,
    message: String,
) {
    s.closed = true;
    diags.push(invalid(
        ingress,
        &key,
        format!("{message}; every route of this Ingress answers 503 until it is fixed"),
    ));
}

/// The retry policy of `proxy-next-upstream`, `-tries` and `-timeout` (`None` when none is
/// set: sluice's default). When one is set, the others default as in ingress-nginx:
/// `error timeout`, 3 tries, no time limit. Bad values are reported through `bad` and their
/// default is used.
fn retry_policy<'a>(
    get: &dyn Fn(&'static str) -> Option<(String, &'a String)>,
    bad: &mut dyn FnMut(&str, &str, &str),
) -> Option<std::sync::Arc<crate::model::RetryPolicy>> {
    let (on, tries, total) = (
        get(PROXY_NEXT_UPSTREAM),
        get(PROXY_NEXT_UPSTREAM_TRIES),
        get(PROXY_NEXT_UPSTREAM_TIMEOUT),
    );
    if on.is_none() && tries.is_none() && total.is_none() {
        return None;
    }
    let mut p = crate::model::RetryPolicy {
        attempts: 3,
        on_error: true,
        on_timeout: true,
        statuses: Vec::new(),
        non_idempotent: false,
        total: None,
    };
    if let Some((key, v)) = on {
        let mut parsed = crate::model::RetryPolicy {
            attempts: p.attempts,
            on_error: false,
            on_timeout: false,
            statuses: Vec::new(),
            non_idempotent: false,
            total: None,
        };
        let mut ok = true;
        for token in v.split_whitespace() {
            match token {
                "error" | "invalid_header" => parsed.on_error = true,
                "timeout" => parsed.on_timeout = true,
                "non_idempotent" => parsed.non_idempotent = true,
                "off" => parsed.attempts = 1,
                t => match t
                    .strip_prefix("http_")
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|c| [500, 502, 503, 504, 403, 404, 429].contains(c))
                {
                    Some(code) => parsed.statuses.push(code),
                    None => {
                        bad(
                            &key,
                            v,
                            "space-separated error, timeout, invalid_header, http_500, http_502, \
                             http_503, http_504, http_403, http_404, http_429, non_idempotent or off",
                        );
                        ok = false;
                        break;
                    }
                },
            }
        }
        if ok {
            p = parsed;
        }
    }
    if let Some((key, v)) = tries {
        match v.trim().parse::<u32>() {
            // 0: one try per endpoint (the balancer's count caps it).
            Ok(0) => p.attempts = if p.attempts == 1 { 1 } else { u32::MAX },
            Ok(n) if p.attempts != 1 => p.attempts = n,
            Ok(_) => {}
            Err(_) => bad(&key, v, "a number of tries (0: one per endpoint)"),
        }
    }
    if let Some((key, v)) = total {
        match parse_duration(v) {
            Some(d) if d.is_zero() => p.total = None,
            Some(d) => p.total = Some(d),
            None => bad(
                &key,
                v,
                "a duration such as 5s, 500ms or a number of seconds (0: no limit)",
            ),
        }
    }
    Some(std::sync::Arc::new(p))
}

/// TLS to an `HTTPS` or `GRPCS` backend (`proxy-ssl-secret`, `proxy-ssl-verify`,
/// `proxy-ssl-name`, `proxy-ssl-server-name`), with the Secret looked up by `secret`. What
/// keeps verification from being honoured as asked (a missing Secret, a `ca.crt` that does
/// not parse, a Secret of another namespace, an invalid name) closes the Ingress (503) rather
/// than talk to an unverified backend. On a plain-text backend the settings are reported and
/// ignored.
pub fn upstream_tls<'s>(
    ingress: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    secret: &dyn Fn(&ObjectRef) -> Option<&'s k8s_openapi::api::core::v1::Secret>,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(annotations) = annotations else {
        return;
    };
    let get = |ours: &'static str| lookup(annotations, ours);
    let keys = [
        PROXY_SSL_SECRET,
        PROXY_SSL_VERIFY,
        PROXY_SSL_NAME,
        PROXY_SSL_SERVER_NAME,
    ];
    if !s.protocol.is_tls() {
        for ours in keys {
            if let Some((key, _)) = get(ours) {
                diags.push(invalid_warning(
                    ingress,
                    &key,
                    "has no effect unless backend-protocol is HTTPS or GRPCS: ignored".to_string(),
                ));
            }
        }
        return;
    }
    let close = |s: &mut BackendSettings, diags: &mut Vec<Diagnostic>, key: &str, message| {
        close_ingress(ingress, s, diags, key, message);
    };
    let on_off = |key: &str, v: &str, default: bool| -> Result<bool, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            "" => Ok(default),
            other => Err(format!("{key}: {other:?} is not valid: expected on or off")),
        }
    };
    let mut tls = crate::model::UpstreamTls {
        secret: None,
        ca: None,
        client_cert: None,
        verify: false,
        name: None,
        sni: false,
    };
    if let Some((key, name)) = get(PROXY_SSL_SECRET) {
        let secret_ref = match same_namespace_secret(&ingress.namespace, name) {
            Ok(r) => r,
            Err(e) => return close(s, diags, &key, e),
        };
        let Some(found) = secret(&secret_ref) else {
            return close(s, diags, &key, format!("Secret {secret_ref} not found"));
        };
        let field = |k: &str| {
            found
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .filter(|v| !v.0.is_empty())
                .map(|v| std::sync::Arc::<[u8]>::from(v.0.as_slice()))
        };
        tls.ca = field("ca.crt");
        tls.client_cert = field("tls.crt")
            .zip(field("tls.key"))
            .map(|(chain, key)| crate::model::ClientCert { chain, key });
        tls.secret = Some(secret_ref);
    }
    tls.verify = tls.ca.is_some();
    if let Some((key, v)) = get(PROXY_SSL_VERIFY) {
        match on_off(&key, v, tls.verify) {
            Ok(b) => tls.verify = b,
            Err(e) => return close(s, diags, &key, e),
        }
    }
    if let Some((key, v)) = get(PROXY_SSL_SERVER_NAME) {
        match on_off(&key, v, false) {
            Ok(b) => tls.sni = b,
            Err(e) => return close(s, diags, &key, e),
        }
    }
    if let Some((key, v)) = get(PROXY_SSL_NAME) {
        let v = v.trim();
        if rustls::pki_types::ServerName::try_from(v).is_err() {
            return close(
                s,
                diags,
                &key,
                format!("{v:?} is not a DNS name or IP address"),
            );
        }
        tls.name = Some(v.to_string());
    }
    if let Err(e) = crate::tls::upstream::client_config(&tls, s.protocol.is_h2()) {
        let key = get(PROXY_SSL_SECRET).map_or_else(|| PROXY_SSL_SECRET.to_string(), |(k, _)| k);
        return close(s, diags, &key, e);
    }
    s.tls = Some(std::sync::Arc::new(tls));
}

/// `ssl-passthrough` (after the other settings and authentication are read). `"true"` (or
/// Go's other spellings of a boolean, as ingress-nginx parses it) marks the backend for TLS
/// passthrough. What cannot be honoured closes the Ingress rather than terminate TLS its
/// author meant to reach the backend untouched: a value that is not a boolean, and
/// authentication or rate limits beside it (they need the requests, which passthrough never
/// sees; ingress-nginx silently drops them). A rule without a host, and paths other than `/`,
/// are reported: only connections whose SNI routes to the backend of path `/` are passed
/// through (as in ingress-nginx); the other paths are served over plain HTTP only.
pub fn passthrough(
    ingress: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    spec: &k8s_openapi::api::networking::v1::IngressSpec,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let Some((key, value)) = annotations.and_then(|a| lookup(a, SSL_PASSTHROUGH)) else {
        return;
    };
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => {}
        "0" | "f" | "F" | "false" | "FALSE" | "False" => return,
        _ => {
            return close_ingress(
                ingress,
                s,
                diags,
                &key,
                format!(
                    "{value:?} is not valid: expected \"true\" or \"false\"; whether TLS is to \
                     reach the backend untouched is unknown"
                ),
            );
        }
    }
    let unenforceable = [
        (s.auth.is_some(), "auth-url"),
        (s.basic_auth.is_some(), "auth-type"),
        (s.rate_limit.is_some(), "limit-rps/limit-rpm"),
        (s.conn_limit.is_some(), "limit-connections"),
    ];
    s.ssl_passthrough = true;
    if let Some((_, what)) = unenforceable.iter().find(|(set, _)| *set) {
        // Still a passthrough host: its connections are closed, never terminated.
        return close_ingress(
            ingress,
            s,
            diags,
            &key,
            format!(
                "{what} cannot be enforced on connections passed through undecrypted (sluice \
                 never sees their requests); remove one of the two"
            ),
        );
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        if rule.host.as_deref().is_none_or(str::is_empty) {
            diags.push(Diagnostic::warning(
                Reason::InvalidAnnotation,
                Kind::Ingress,
                ingress,
                format!("spec.rules[{i}].host"),
                format!(
                    "{key}: a rule without a host is never passed through (the TLS \
                     connection's SNI chooses the backend); its paths are served over plain \
                     HTTP only"
                ),
            ));
            continue;
        }
        let paths = rule
            .http
            .as_ref()
            .map(|h| h.paths.as_slice())
            .unwrap_or(&[]);
        for (j, p) in paths.iter().enumerate() {
            if p.path.as_deref().unwrap_or("/") != "/" {
                diags.push(Diagnostic::warning(
                    Reason::InvalidAnnotation,
                    Kind::Ingress,
                    ingress,
                    format!("spec.rules[{i}].http.paths[{j}].path"),
                    format!(
                        "{key}: whole TLS connections go to the backend of path /; this path \
                         is served over plain HTTP only"
                    ),
                ));
            }
        }
    }
}

/// Basic authentication (`auth-type: basic`, `auth-secret`, `auth-secret-type`,
/// `auth-realm`), with the Secret looked up by `secret`. Anything that keeps it from being
/// honoured closes the Ingress (503): a missing or unreadable Secret, a Secret of another
/// namespace, an authentication type other than `basic`, a Secret with no usable user. Lines
/// of the file that do not parse are reported (warning) and their users cannot log in.
pub fn basic_auth<'s>(
    ingress: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    secret: &dyn Fn(&ObjectRef) -> Option<&'s k8s_openapi::api::core::v1::Secret>,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(annotations) = annotations else {
        return;
    };
    let get = |ours: &'static str| lookup(annotations, ours);
    let close = |s: &mut BackendSettings, diags: &mut Vec<Diagnostic>, key: &str, message| {
        close_ingress(ingress, s, diags, key, message);
    };
    let Some((type_key, kind)) = get(AUTH_TYPE) else {
        for ours in [AUTH_SECRET, AUTH_SECRET_TYPE, AUTH_REALM] {
            if let Some((key, _)) = get(ours) {
                diags.push(invalid_warning(
                    ingress,
                    &key,
                    "has no effect without auth-type: basic: ignored".to_string(),
                ));
            }
        }
        return;
    };
    match kind.trim() {
        "basic" => {}
        "digest" => {
            return close(
                s,
                diags,
                &type_key,
                "\"digest\": digest authentication is not implemented (use basic over HTTPS, \
                 or auth-url)"
                    .to_string(),
            );
        }
        other => {
            return close(
                s,
                diags,
                &type_key,
                format!("{other:?} is not valid: expected basic"),
            );
        }
    }
    let Some((secret_key, name)) = get(AUTH_SECRET) else {
        return close(
            s,
            diags,
            &type_key,
            "basic authentication needs auth-secret (the Secret with the users)".to_string(),
        );
    };
    let secret_ref = match same_namespace_secret(&ingress.namespace, name) {
        Ok(r) => r,
        Err(e) => return close(s, diags, &secret_key, e),
    };
    let map = match get(AUTH_SECRET_TYPE) {
        None => false,
        Some((key, v)) => match v.trim() {
            "auth-file" => false,
            "auth-map" => true,
            other => {
                return close(
                    s,
                    diags,
                    &key,
                    format!("{other:?} is not valid: expected auth-file or auth-map"),
                );
            }
        },
    };
    let Some(found) = secret(&secret_ref) else {
        return close(
            s,
            diags,
            &secret_key,
            format!("Secret {secret_ref} not found"),
        );
    };
    let data = found.data.as_ref();
    let text_of = |v: &k8s_openapi::ByteString| String::from_utf8_lossy(&v.0).into_owned();
    let (users, errors) = if map {
        let mut users = BTreeMap::new();
        let mut errors = Vec::new();
        for (user, v) in data.into_iter().flatten() {
            match crate::model::htpasswd::PasswordHash::parse(&text_of(v)) {
                Ok(h) => {
                    users.insert(user.clone(), h);
                }
                Err(message) => errors.push(crate::model::htpasswd::LineError {
                    line: 0,
                    user: Some(user.clone()),
                    message,
                }),
            }
        }
        (users, errors)
    } else {
        let Some(file) = data.and_then(|d| d.get("auth")) else {
            return close(
                s,
                diags,
                &secret_key,
                format!(
                    "Secret {secret_ref} has no key \"auth\" (the htpasswd file; with one key \
                     per user set auth-secret-type: auth-map)"
                ),
            );
        };
        crate::model::htpasswd::parse_file(&text_of(file))
    };
    for e in &errors {
        let at = match (&e.user, e.line) {
            (Some(u), 0) => format!("user {u:?}"),
            (Some(u), line) => format!("line {line} (user {u:?})"),
            (None, line) => format!("line {line}"),
        };
        diags.push(invalid_warning(
            ingress,
            &secret_key,
            format!(
                "Secret {secret_ref}: {at}: {}; that user cannot log in",
                e.message
            ),
        ));
    }
    if users.is_empty() {
        return close(
            s,
            diags,
            &secret_key,
            format!("Secret {secret_ref} holds no user sluice can check"),
        );
    }
    let realm = get(AUTH_REALM).map(|(_, v)| v.clone()).unwrap_or_default();
    s.basic_auth = Some(Arc::new(crate::model::BasicAuth {
        realm,
        secret: secret_ref,
        users,
    }));
}

/// `affinity: cookie` with its `session-cookie-*` settings, and `upstream-hash-by`. Values
/// that do not parse are reported and not applied (they choose endpoints, they protect
/// nothing): requests are then balanced as usual.
fn affinity<'a>(
    ingress: &ObjectRef,
    get: &dyn Fn(&'static str) -> Option<(String, &'a String)>,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let mut bad = |key: &str, value: &str, expected: &str| {
        diags.push(invalid(
            ingress,
            &key,
            format!("{value:?} is not valid: {expected}"),
        ));
    };
    if let Some((key, v)) = get(UPSTREAM_HASH_BY) {
        match parse_hash_by(v) {
            Ok(parts) => s.hash_by = Some(parts.into()),
            Err(e) => bad(&key, v, &format!("{e}; requests are balanced as usual")),
        }
    }
    let cookie_settings = [
        AFFINITY_MODE,
        SESSION_COOKIE_NAME,
        SESSION_COOKIE_PATH,
        SESSION_COOKIE_MAX_AGE,
        SESSION_COOKIE_EXPIRES,
        SESSION_COOKIE_SECURE,
        SESSION_COOKIE_SAMESITE,
        SESSION_COOKIE_DOMAIN,
        SESSION_COOKIE_CHANGE_ON_FAILURE,
    ];
    match get(AFFINITY) {
        None => {
            for ours in cookie_settings {
                if let Some((key, _)) = get(ours) {
                    diags.push(invalid_warning(
                        ingress,
                        &key,
                        "has no effect without affinity: cookie: ignored".to_string(),
                    ));
                }
            }
            return;
        }
        Some((_, v)) if v.trim() == "cookie" => {}
        Some((key, v)) => {
            return bad(
                &key,
                v,
                "expected cookie (the only affinity ingress-nginx has); requests are balanced \
                 as usual",
            );
        }
    }
    let token = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    let mut a = crate::model::Affinity {
        cookie: "INGRESSCOOKIE".to_string(),
        path: None,
        max_age: None,
        secure: false,
        samesite: None,
        domain: None,
    };
    if let Some((key, v)) = get(SESSION_COOKIE_NAME) {
        if token(v.trim()) {
            a.cookie = v.trim().to_string();
        } else {
            bad(&key, v, "expected a cookie name; INGRESSCOOKIE is used");
        }
    }
    if let Some((key, v)) = get(SESSION_COOKIE_PATH) {
        let p = v.trim();
        if p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
            a.path = Some(p.to_string());
        } else {
            bad(
                &key,
                v,
                "expected a path such as /app; the route's path is used",
            );
        }
    }
    for ours in [SESSION_COOKIE_MAX_AGE, SESSION_COOKIE_EXPIRES] {
        if a.max_age.is_some() {
            break;
        }
        if let Some((key, v)) = get(ours) {
            match v.trim().parse::<u64>() {
                Ok(n) => a.max_age = Some(n),
                Err(_) => bad(&key, v, "expected seconds; a session cookie is set"),
            }
        }
    }
    if let Some((key, v)) = get(SESSION_COOKIE_SECURE) {
        match v.trim() {
            "true" => a.secure = true,
            "false" => {}
            _ => bad(&key, v, "expected \"true\" or \"false\""),
        }
    }
    if let Some((key, v)) = get(SESSION_COOKIE_SAMESITE) {
        match v.trim().to_ascii_lowercase().as_str() {
            "none" => a.samesite = Some("None".into()),
            "lax" => a.samesite = Some("Lax".into()),
            "strict" => a.samesite = Some("Strict".into()),
            _ => bad(&key, v, "expected None, Lax or Strict; not sent"),
        }
    }
    if let Some((key, v)) = get(SESSION_COOKIE_DOMAIN) {
        let d = v.trim().trim_start_matches('.');
        if crate::model::host::is_valid_request_host(d) && !d.contains(':') {
            a.domain = Some(d.to_ascii_lowercase());
        } else {
            bad(&key, v, "expected a domain; not sent");
        }
    }
    for ours in [AFFINITY_MODE, SESSION_COOKIE_CHANGE_ON_FAILURE] {
        if let Some((key, v)) = get(ours) {
            let ok = match ours {
                AFFINITY_MODE => matches!(v.trim(), "balanced" | "persistent"),
                _ => matches!(v.trim(), "true" | "false"),
            };
            if !ok {
                bad(&key, v, "ignored");
            }
        }
    }
    s.affinity = Some(Arc::new(a));
}

/// Headers a header annotation may not set: framing and connection management (the proxy
/// owns them), and `Host` (see `upstream-vhost`).
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Parses a header list: one `Name: value` per line (blank lines skipped). A name that is not
/// a header name, a reserved header, or a value that cannot be a header value is an error
/// naming the line.
pub fn parse_header_list(v: &str) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    let mut out = Vec::new();
    for (i, line) in v.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: {line:?} is not Name: value", i + 1))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("line {}: {:?} is not a header name", i + 1, name.trim()))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "line {}: {name} is managed by the proxy and cannot be set",
                i + 1
            ));
        }
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("line {}: the value of {name} is not a header value", i + 1))?;
        out.push((name, value));
    }
    if out.is_empty() {
        return Err("no header in it".into());
    }
    Ok(out)
}

/// The nginx variables `upstream-hash-by` may use.
pub const HASH_BY_VARIABLES: &str = "$request_uri, $uri, $host, $remote_addr, \
    $binary_remote_addr, $http_<header>, $cookie_<name>, $arg_<name>";

/// Parses an `upstream-hash-by` key: text and nginx variables (`$request_uri`, `${host}`).
pub fn parse_hash_by(v: &str) -> Result<Vec<crate::model::HashPart>, String> {
    use crate::model::HashPart;
    let v = v.trim();
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    let mut parts = Vec::new();
    let mut rest = v;
    let mut literal = String::new();
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').ok_or("an unclosed ${")?;
            (&inner[..end], &inner[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let part = match name {
            "request_uri" => HashPart::RequestUri,
            "uri" | "document_uri" => HashPart::Uri,
            "host" => HashPart::Host,
            "remote_addr" | "binary_remote_addr" => HashPart::RemoteAddr,
            n => {
                if let Some(h) = n.strip_prefix("http_") {
                    let h = h.replace('_', "-");
                    HashPart::Header(
                        http::HeaderName::from_bytes(h.as_bytes())
                            .map_err(|_| format!("${n} is not a header variable"))?,
                    )
                } else if let Some(c) = n.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                    HashPart::Cookie(c.to_string())
                } else if let Some(a) = n.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    HashPart::Arg(a.to_string())
                } else {
                    return Err(format!(
                        "${n} is not a variable sluice knows (it knows {HASH_BY_VARIABLES})"
                    ));
                }
            }
        };
        if !literal.is_empty() {
            parts.push(HashPart::Literal(std::mem::take(&mut literal)));
        }
        parts.push(part);
        rest = after;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(HashPart::Literal(literal));
    }
    Ok(parts)
}

/// `force-ssl-redirect`, `temporal-redirect` / `permanent-redirect` (with their codes) and
/// `app-root`. A value that does not parse is reported and not applied (none of them protects
/// anything).
fn redirects<'a>(
    ingress: &ObjectRef,
    get: &dyn Fn(&'static str) -> Option<(String, &'a String)>,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let mut error = |key: &str, value: &str, message: &str| {
        diags.push(invalid(
            ingress,
            &key,
            format!("{value:?} is not valid: {message}"),
        ));
    };
    if let Some((key, v)) = get(FORCE_SSL_REDIRECT) {
        match v.trim() {
            "true" => s.force_ssl_redirect = true,
            "false" => s.force_ssl_redirect = false,
            _ => error(&key, v, "expected \"true\" or \"false\"; false is used"),
        }
    }
    for (url_key, code_key, default) in [
        (TEMPORAL_REDIRECT, TEMPORAL_REDIRECT_CODE, 302),
        (PERMANENT_REDIRECT, PERMANENT_REDIRECT_CODE, 301),
    ] {
        let Some((key, v)) = get(url_key) else {
            continue;
        };
        if s.redirect.is_some() {
            // ingress-nginx: the temporal redirect wins.
            continue;
        }
        if let Err(e) = check_url(v, &REDIRECT_VARIABLES) {
            error(&key, v, &format!("{e}; requests are forwarded as usual"));
            continue;
        }
        let code = match get(code_key) {
            None => default,
            Some((key, c)) => match c.trim().parse::<u16>() {
                Ok(n) if (300..=308).contains(&n) => n,
                _ => {
                    error(
                        &key,
                        c,
                        &format!("expected a status from 300 to 308; {default} is used"),
                    );
                    default
                }
            },
        };
        s.redirect = Some(Arc::new(Redirect {
            url: v.trim().to_string(),
            code,
        }));
    }
    if let Some((key, v)) = get(APP_ROOT) {
        let root = v.trim();
        if root.starts_with('/') && root != "/" && root.parse::<http::uri::PathAndQuery>().is_ok() {
            s.app_root = Some(Arc::from(root));
        } else {
            error(
                &key,
                v,
                "expected a path such as /app1; requests for / are forwarded as usual",
            );
        }
    }
}

/// `enable-cors` and the `cors-*` settings (ingress-nginx's defaults). A value that does not
/// parse is reported and its default used.
fn cors<'a>(
    ingress: &ObjectRef,
    get: &dyn Fn(&'static str) -> Option<(String, &'a String)>,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let mut report = |key: &str, value: &str, message: &str, severity_error: bool| {
        let field = format!("metadata.annotations[{key}]");
        let message = format!("{value:?}: {message}");
        diags.push(if severity_error {
            Diagnostic::error(
                Reason::InvalidAnnotation,
                Kind::Ingress,
                ingress,
                field,
                message,
            )
        } else {
            Diagnostic::warning(
                Reason::InvalidAnnotation,
                Kind::Ingress,
                ingress,
                field,
                message,
            )
        });
    };
    let enabled = match get(ENABLE_CORS) {
        None => false,
        Some((key, v)) => match v.trim() {
            "true" => true,
            "false" => false,
            _ => {
                report(
                    &key,
                    v,
                    "expected \"true\" or \"false\"; CORS stays off",
                    true,
                );
                false
            }
        },
    };
    let companions = [
        CORS_ALLOW_ORIGIN,
        CORS_ALLOW_METHODS,
        CORS_ALLOW_HEADERS,
        CORS_EXPOSE_HEADERS,
        CORS_ALLOW_CREDENTIALS,
        CORS_MAX_AGE,
    ];
    if !enabled {
        for ours in companions {
            if let Some((key, v)) = get(ours) {
                report(
                    &key,
                    v,
                    "has no effect without enable-cors: \"true\": ignored",
                    false,
                );
            }
        }
        return;
    }
    let list = |ours: &'static str, default: &str| -> String {
        get(ours).map_or_else(|| default.to_string(), |(_, v)| v.trim().to_string())
    };
    let token_list = |v: &str| {
        v.split(',')
            .map(str::trim)
            .all(|t| !t.is_empty() && http::HeaderName::from_bytes(t.as_bytes()).is_ok())
    };
    let mut methods = list(CORS_ALLOW_METHODS, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
    if !token_list(&methods) {
        if let Some((key, v)) = get(CORS_ALLOW_METHODS) {
            report(
                &key,
                v,
                "expected comma-separated methods; the default is used",
                true,
            );
        }
        methods = "GET, PUT, POST, DELETE, PATCH, OPTIONS".to_string();
    }
    const HEADERS: &str = "DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, \
                           Cache-Control, Content-Type, Range, Authorization";
    let mut headers = list(CORS_ALLOW_HEADERS, HEADERS);
    if !token_list(&headers) {
        if let Some((key, v)) = get(CORS_ALLOW_HEADERS) {
            report(
                &key,
                v,
                "expected comma-separated header names; the default is used",
                true,
            );
        }
        headers = HEADERS.to_string();
    }
    let mut expose = list(CORS_EXPOSE_HEADERS, "");
    if !expose.is_empty() && !token_list(&expose) {
        if let Some((key, v)) = get(CORS_EXPOSE_HEADERS) {
            report(
                &key,
                v,
                "expected comma-separated header names; none are exposed",
                true,
            );
        }
        expose.clear();
    }
    let mut origins = Vec::new();
    if let Some((key, v)) = get(CORS_ALLOW_ORIGIN) {
        let items: Vec<String> = v
            .split(',')
            .map(|o| o.trim().to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if !items.iter().any(|o| o == "*") {
            let valid = |o: &String| {
                let rest = o
                    .strip_prefix("https://")
                    .or_else(|| o.strip_prefix("http://"));
                rest.is_some_and(|r| {
                    let host = r.strip_prefix("*.").unwrap_or(r);
                    !host.is_empty() && !host.contains(['/', '*', ' '])
                })
            };
            if !items.is_empty() && items.iter().all(valid) {
                origins = items;
            } else {
                // Allowing every origin is the permissive reading; none is the safe one.
                report(
                    &key,
                    v,
                    "expected * or comma-separated origins such as https://app.example.com or \
                     https://*.example.com; CORS stays off",
                    true,
                );
                return;
            }
        }
    }
    let credentials = match get(CORS_ALLOW_CREDENTIALS) {
        None => true,
        Some((key, v)) => match v.trim() {
            "true" => true,
            "false" => false,
            _ => {
                report(
                    &key,
                    v,
                    "expected \"true\" or \"false\"; false is used",
                    true,
                );
                false
            }
        },
    };
    let max_age = match get(CORS_MAX_AGE) {
        None => 1_728_000,
        Some((key, v)) => v.trim().parse().unwrap_or_else(|_| {
            report(
                &key,
                v,
                "expected a number of seconds; 1728000 is used",
                true,
            );
            1_728_000
        }),
    };
    s.cors = Some(Arc::new(Cors {
        origins,
        methods,
        headers,
        expose,
        credentials,
        max_age,
    }));
}

/// The variables a redirect URL may use.
pub const REDIRECT_VARIABLES: [&str; 5] =
    ["$request_uri", "$http_host", "$host", "$scheme", "$uri"];

/// `limit-rps`, `limit-rpm` and their companions into `s.rate_limit`. A rate that does not
/// parse fails closed; a bad multiplier or exemption list falls back to the stricter default.
fn rate_limit<'a>(
    ingress: &ObjectRef,
    get: &dyn Fn(&'static str) -> Option<(String, &'a String)>,
    s: &mut BackendSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let mut error = |key: &str, message: String| {
        diags.push(invalid(ingress, &key, message));
    };
    let mut rates = [None, None];
    for (slot, ours) in rates.iter_mut().zip([LIMIT_RPS, LIMIT_RPM]) {
        if let Some((key, v)) = get(ours) {
            match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => *slot = Some(n),
                _ => {
                    s.closed = true;
                    error(
                        &key,
                        format!(
                            "{v:?} is not valid: expected a positive number of requests; every \
                             route of this Ingress answers 503 until it is fixed"
                        ),
                    );
                }
            }
        }
    }
    let mut burst_multiplier = 5;
    if let Some((key, v)) = get(LIMIT_BURST_MULTIPLIER) {
        match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => burst_multiplier = n,
            _ => error(
                &key,
                format!("{v:?} is not valid: expected a positive integer; 5 is used"),
            ),
        }
    }
    let mut exempt = Vec::new();
    if let Some((key, v)) = get(LIMIT_EXEMPT_RANGE) {
        match parse_cidrs(v) {
            Ok(list) => exempt = list,
            Err(e) => error(
                &key,
                format!("{v:?} is not valid: {e}; no client is exempt from the rate limits"),
            ),
        }
    }
    let mut connections = None;
    if let Some((key, v)) = get(LIMIT_CONNECTIONS) {
        match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => connections = Some(n),
            _ => {
                s.closed = true;
                error(
                    &key,
                    format!(
                        "{v:?} is not valid: expected a positive number of connections; every \
                         route of this Ingress answers 503 until it is fixed"
                    ),
                );
            }
        }
    }
    if let Some(max) = connections {
        s.conn_limit = Some(Arc::new(crate::model::ConnLimit {
            zone: ingress.clone(),
            max,
            exempt: exempt.clone(),
        }));
    }
    let [rps, rpm] = rates;
    if rps.is_some() || rpm.is_some() {
        s.rate_limit = Some(Arc::new(RateLimit {
            zone: ingress.clone(),
            rps,
            rpm,
            burst_multiplier,
            exempt,
        }));
    } else if !s.closed {
        let exempt_used = s.conn_limit.is_some();
        for ours in [LIMIT_BURST_MULTIPLIER, LIMIT_EXEMPT_RANGE] {
            if ours == LIMIT_EXEMPT_RANGE && exempt_used {
                continue;
            }
            if let Some((key, _)) = get(ours) {
                diags.push(invalid_warning(
                    ingress,
                    &key,
                    "has no effect without limit-rps or limit-rpm (or, for the exempt ranges, \
                     limit-connections): ignored"
                        .to_string(),
                ));
            }
        }
    }
}

/// A problem with an annotation: its key, its value, what is wrong.
type Problem = (String, String, String);

/// The external authentication of `url` and the other `auth-*` settings `get` finds.
/// `Err`: the authentication cannot be honoured (the Ingress fails closed); `Ok` with
/// problems: settings that fell back to their default (authentication still applies).
fn forward_auth<'a>(
    url_key: &str,
    url: &str,
    get: &dyn Fn(&'static str) -> Option<(String, &'a String)>,
) -> Result<(ForwardAuth, Vec<Problem>), Problem> {
    let fail = |key: &str, value: &str, message: &str| {
        (key.to_string(), value.to_string(), message.to_string())
    };
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|_| fail(url_key, url, "expected an http:// URL"))?;
    if url.contains('$') {
        return Err(fail(
            url_key,
            url,
            "nginx variables are not expanded in the authentication URL; use the \
             authentication Service's in-cluster http:// URL",
        ));
    }
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => {}
        Some("https") => {
            return Err(fail(
                url_key,
                url,
                "TLS to the authentication service is not supported yet; use the \
                 authentication Service's in-cluster http:// URL",
            ));
        }
        _ => return Err(fail(url_key, url, "expected an http:// URL with a host")),
    }
    let method = match get(AUTH_METHOD) {
        None => http::Method::GET,
        Some((key, v)) => http::Method::from_bytes(v.trim().as_bytes())
            .map_err(|_| fail(&key, v, "expected an HTTP method such as GET or POST"))?,
    };
    let response_headers = match get(AUTH_RESPONSE_HEADERS) {
        None => Vec::new(),
        Some((key, v)) => v
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| fail(&key, v, &format!("{h:?} is not a header name")))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut problems = Vec::new();
    let signin = get(AUTH_SIGNIN).and_then(|(key, v)| match check_signin(v) {
        Ok(()) => Some(v.trim().to_string()),
        Err(e) => {
            problems.push(fail(&key, v, &format!("{e}; a 401 is returned as it is")));
            None
        }
    });
    let signin_param = match get(AUTH_SIGNIN_REDIRECT_PARAM) {
        None => "rd".to_string(),
        Some((key, v)) => {
            let p = v.trim();
            if !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                p.to_string()
            } else {
                problems.push(fail(&key, v, "expected a query parameter name; rd is used"));
                "rd".to_string()
            }
        }
    };
    let request_redirect = get(AUTH_REQUEST_REDIRECT).map(|(_, v)| v.trim().to_string());
    Ok((
        ForwardAuth {
            url: uri,
            method,
            signin,
            signin_param,
            response_headers,
            request_redirect,
        },
        problems,
    ))
}

/// The variables a sign-in URL may use.
pub const SIGNIN_VARIABLES: [&str; 6] = [
    "$escaped_request_uri",
    "$request_uri",
    "$http_host",
    "$host",
    "$pass_access_scheme",
    "$scheme",
];

/// A sign-in URL: `http(s)://` or a path, using only [`SIGNIN_VARIABLES`].
fn check_signin(v: &str) -> Result<(), String> {
    check_url(v, &SIGNIN_VARIABLES)
}

/// A URL: `http(s)://` or a path, using only the variables `vars`.
fn check_url(v: &str, vars: &[&str]) -> Result<(), String> {
    let v = v.trim();
    let mut rest = v.to_string();
    for var in vars {
        rest = rest.replace(var, "x");
    }
    if let Some(i) = rest.find('$') {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| *c == '$' || c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        return Err(format!(
            "{name} is not a variable sluice replaces (it replaces {})",
            vars.join(", ")
        ));
    }
    let absolute = rest.starts_with("http://") || rest.starts_with("https://");
    if !(absolute || rest.starts_with('/')) || rest.parse::<http::Uri>().is_err() {
        return Err("expected an http:// or https:// URL, or a path".to_string());
    }
    Ok(())
}

/// Parses a comma-separated list of addresses and CIDRs (at least one).
pub fn parse_cidrs(v: &str) -> Result<Vec<Cidr>, String> {
    let list = v
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Cidr>, String>>()?;
    if list.is_empty() {
        return Err("the list is empty".to_string());
    }
    Ok(list)
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a plain number of seconds. At most one day.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d <= Duration::from_secs(86_400)).then_some(d)
}

/// Parses `8m`, `512k`, `1g` (powers of 1024, either case) or a plain number of bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" => 1 << 10,
        "m" | "mb" | "mi" => 1 << 20,
        "g" | "gb" | "gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5 s"), None);
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("999999999999999999999h"), None);
        assert_eq!(parse_duration("2d"), None);
        assert_eq!(parse_size("8m"), Some(8 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5m"), None);
        assert_eq!(parse_size("99999999999999999999g"), None);
    }

    #[test]
    fn settings_and_diagnostics() {
        let me = ObjectRef::new("default", "web");
        let ann = BTreeMap::from([
            (LOAD_BALANCER.to_string(), "least-request".to_string()),
            (BACKEND_PROTOCOL.to_string(), "GRPC".to_string()),
            (PROXY_CONNECT_TIMEOUT.to_string(), "2s".to_string()),
            (PROXY_READ_TIMEOUT.to_string(), "soon".to_string()),
            (PROXY_BODY_SIZE.to_string(), "1m".to_string()),
            (SSL_REDIRECT.to_string(), "false".to_string()),
        ]);
        let mut diags = Vec::new();
        let s = settings(&me, Some(&ann), &mut diags);
        assert_eq!(s.load_balancer, LoadBalancer::LeastRequest);
        assert_eq!(s.protocol, UpstreamProtocol::H2c);
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.read_timeout, None);
        assert_eq!(s.max_body_bytes, Some(1 << 20));
        assert!(!s.ssl_redirect);
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags[0].to_string(),
            "default/web: metadata.annotations[sluice.io/proxy-read-timeout]: \"soon\" is not valid: \
             expected a positive duration such as 5s, 500ms, 2m or a number of seconds; the default is used"
        );
    }
}

#[cfg(test)]
mod foreign_tests {
    use super::*;
    use crate::model::Severity;

    fn parse(pairs: &[(&str, &str)]) -> (BackendSettings, Vec<Diagnostic>) {
        let ann: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let mut diags = Vec::new();
        let s = settings(&ObjectRef::new("default", "web"), Some(&ann), &mut diags);
        (s, diags)
    }

    #[test]
    fn header_lists_and_hsts() {
        let list = parse_header_list("X-A: 1\n\n  X-B:  two words  \n").unwrap();
        assert_eq!(
            list.iter()
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                .collect::<Vec<_>>(),
            ["x-a=1", "x-b=two words"]
        );
        for (bad, needle) in [
            ("Host: a.test", "managed by the proxy"),
            ("X-A 1", "not Name: value"),
            ("X A: 1", "not a header name"),
            ("X-A: 1\nTransfer-Encoding: chunked", "line 2"),
            ("", "no header"),
        ] {
            let e = parse_header_list(bad).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
        let (s, diags) = parse(&[
            ("sluice.io/hsts", "max-age=600; preload"),
            ("sluice.io/response-headers", "Connection: close"),
        ]);
        assert!(s.hsts.is_some() && s.response_headers.is_empty());
        assert_eq!(diags.len(), 1, "{diags:?}");
        let (s, diags) = parse(&[("sluice.io/hsts", "includeSubDomains")]);
        assert!(s.hsts.is_none());
        assert!(diags[0].message.contains("max-age"), "{}", diags[0]);
    }

    #[test]
    fn affinity_and_hash_keys() {
        use crate::model::HashPart;
        let (s, diags) = parse(&[
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/session-cookie-name", "route"),
            ("nginx.ingress.kubernetes.io/session-cookie-samesite", "lax"),
            ("nginx.ingress.kubernetes.io/session-cookie-expires", "60"),
            ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
            (
                "nginx.ingress.kubernetes.io/upstream-hash-by",
                "$host-${arg_id}$http_x_user",
            ),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        let a = s.affinity.expect("affinity");
        assert_eq!(
            (a.cookie.as_str(), a.samesite.as_deref(), a.max_age),
            ("route", Some("Lax"), Some(60))
        );
        assert_eq!(
            &*s.hash_by.expect("hash key"),
            [
                HashPart::Host,
                HashPart::Literal("-".into()),
                HashPart::Arg("id".into()),
                HashPart::Header(http::HeaderName::from_static("x-user")),
            ]
        );
        for bad in ["", "$server_name", "${uri", "$http_"] {
            assert!(parse_hash_by(bad).is_err(), "{bad:?}");
        }
        let (s, diags) = parse(&[
            ("nginx.ingress.kubernetes.io/affinity", "ip"),
            ("nginx.ingress.kubernetes.io/session-cookie-name", "x"),
        ]);
        assert!(s.affinity.is_none());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("expected cookie"), "{}", diags[0]);
        let (_, diags) = parse(&[("nginx.ingress.kubernetes.io/session-cookie-name", "x")]);
        assert!(
            diags[0].message.contains("without affinity"),
            "{}",
            diags[0]
        );
    }

    #[test]
    fn ingress_nginx_settings_are_read_under_their_own_names() {
        let (s, diags) = parse(&[
            ("nginx.ingress.kubernetes.io/load-balance", "ewma"),
            ("nginx.ingress.kubernetes.io/backend-protocol", "GRPC"),
            ("nginx.ingress.kubernetes.io/proxy-connect-timeout", "15"),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "120"),
            ("nginx.ingress.kubernetes.io/proxy-body-size", "8m"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(s.load_balancer, LoadBalancer::LeastRequest);
        assert_eq!(s.protocol, UpstreamProtocol::H2c);
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(15)));
        assert_eq!(s.read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(s.max_body_bytes, Some(8 << 20));
        assert!(!s.ssl_redirect);
        assert!(!s.closed);
    }

    #[test]
    fn sluice_names_win_and_nginx_ingresses_get_nginx_body_size_default() {
        let (s, diags) = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "120"),
            ("sluice.io/proxy-read-timeout", "5s"),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(s.read_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.max_body_bytes, Some(NGINX_DEFAULT_BODY_SIZE));
        // Without ingress-nginx annotations: unlimited, as before.
        let (s, _) = parse(&[("sluice.io/proxy-read-timeout", "5s")]);
        assert_eq!(s.max_body_bytes, None);
        // `0` is unlimited under either name.
        let (s, _) = parse(&[("nginx.ingress.kubernetes.io/proxy-body-size", "0")]);
        assert_eq!(s.max_body_bytes, None);
    }

    #[test]
    fn retry_policies_read_as_ingress_nginx_does() {
        let (s, diags) = parse(&[]);
        assert!(s.retry.is_none() && diags.is_empty());
        let (s, diags) = parse(&[(
            "nginx.ingress.kubernetes.io/proxy-next-upstream",
            "error http_503 non_idempotent",
        )]);
        assert!(diags.is_empty(), "{diags:?}");
        let r = s.retry.unwrap();
        assert_eq!(r.attempts, 3, "ingress-nginx's default tries");
        assert!(r.on_error && !r.on_timeout && r.non_idempotent);
        assert_eq!(r.statuses, [503]);
        let (s, _) = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "5"),
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout",
                "2",
            ),
        ]);
        let r = s.retry.unwrap();
        assert_eq!(r.attempts, 5);
        assert!(r.on_error && r.on_timeout, "error timeout by default");
        assert_eq!(r.total, Some(std::time::Duration::from_secs(2)));
        let (s, _) = parse(&[
            ("sluice.io/proxy-next-upstream", "off"),
            ("sluice.io/proxy-next-upstream-tries", "4"),
        ]);
        assert_eq!(s.retry.unwrap().attempts, 1, "off wins");
        let (s, diags) = parse(&[("sluice.io/proxy-next-upstream", "error sometimes")]);
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].message.contains("error sometimes"),
            "{}",
            diags[0].message
        );
        let r = s.retry.unwrap();
        assert!(r.on_error && r.on_timeout, "the default is used");
    }

    #[test]
    fn tls_backend_protocols() {
        for (v, want) in [
            ("HTTPS", UpstreamProtocol::Https),
            ("GRPCS", UpstreamProtocol::H2),
            ("h2", UpstreamProtocol::H2),
            ("GRPC", UpstreamProtocol::H2c),
        ] {
            let (s, diags) = parse(&[("nginx.ingress.kubernetes.io/backend-protocol", v)]);
            assert_eq!(s.protocol, want, "{v}");
            assert!(diags.is_empty(), "{diags:?}");
        }
    }

    /// A test Secret: namespace, name, data.
    type TestSecret<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [u8])]);

    /// `upstream_tls` over `pairs` with the Secrets `secrets`.
    fn upstream_tls_of(
        pairs: &[(&str, &str)],
        secrets: &[TestSecret<'_>],
    ) -> (BackendSettings, Vec<Diagnostic>) {
        let (mut s, mut diags) = parse(pairs);
        let secrets: Vec<(ObjectRef, k8s_openapi::api::core::v1::Secret)> = secrets
            .iter()
            .map(|(ns, name, data)| {
                let secret = k8s_openapi::api::core::v1::Secret {
                    data: Some(
                        data.iter()
                            .map(|(k, v)| ((*k).to_string(), k8s_openapi::ByteString(v.to_vec())))
                            .collect(),
                    ),
                    ..Default::default()
                };
                (ObjectRef::new(*ns, *name), secret)
            })
            .collect();
        let ann: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        upstream_tls(
            &ObjectRef::new("default", "web"),
            Some(&ann),
            &|r| secrets.iter().find(|(n, _)| n == r).map(|(_, s)| s),
            &mut s,
            &mut diags,
        );
        (s, diags)
    }

    fn test_ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn proxy_ssl_settings_verify_when_a_ca_is_given() {
        let ca = test_ca_pem();
        let (s, diags) = upstream_tls_of(
            &[
                ("nginx.ingress.kubernetes.io/backend-protocol", "GRPCS"),
                (
                    "nginx.ingress.kubernetes.io/proxy-ssl-secret",
                    "default/upstream-ca",
                ),
                (
                    "nginx.ingress.kubernetes.io/proxy-ssl-name",
                    "echo.default.svc",
                ),
                ("nginx.ingress.kubernetes.io/proxy-ssl-server-name", "on"),
            ],
            &[("default", "upstream-ca", &[("ca.crt", ca.as_bytes())])],
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert!(!s.closed);
        let tls = s.tls.expect("tls settings");
        assert!(tls.verify, "on by default with a CA");
        assert!(tls.sni);
        assert_eq!(tls.name.as_deref(), Some("echo.default.svc"));
        assert_eq!(tls.secret, Some(ObjectRef::new("default", "upstream-ca")));
        // Turned off explicitly.
        let (s, _) = upstream_tls_of(
            &[
                ("sluice.io/backend-protocol", "https"),
                ("sluice.io/proxy-ssl-secret", "upstream-ca"),
                ("sluice.io/proxy-ssl-verify", "off"),
            ],
            &[("default", "upstream-ca", &[("ca.crt", ca.as_bytes())])],
        );
        assert!(!s.tls.unwrap().verify);
        // No annotation: encrypted, not verified (the snapshot's default).
        let (s, diags) = upstream_tls_of(&[("sluice.io/backend-protocol", "https")], &[]);
        assert!(diags.is_empty() && !s.closed);
        assert!(!s.tls.unwrap().verify);
    }

    #[test]
    fn proxy_ssl_settings_that_cannot_be_honoured_close_the_ingress() {
        let ca = test_ca_pem();
        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[
                    ("sluice.io/backend-protocol", "https"),
                    ("sluice.io/proxy-ssl-secret", "missing"),
                ],
                "Secret default/missing not found",
            ),
            (
                &[
                    ("sluice.io/backend-protocol", "https"),
                    ("sluice.io/proxy-ssl-secret", "other/upstream-ca"),
                ],
                "must be in the Ingress's namespace",
            ),
            (
                &[
                    ("sluice.io/backend-protocol", "https"),
                    ("sluice.io/proxy-ssl-secret", "garbage"),
                ],
                "ca.crt",
            ),
            (
                &[
                    ("sluice.io/backend-protocol", "https"),
                    ("sluice.io/proxy-ssl-verify", "maybe"),
                ],
                "expected on or off",
            ),
            (
                &[
                    ("sluice.io/backend-protocol", "https"),
                    ("sluice.io/proxy-ssl-name", "not a name"),
                ],
                "not a DNS name",
            ),
        ];
        for (pairs, want) in cases {
            let (s, diags) = upstream_tls_of(
                pairs,
                &[
                    ("default", "upstream-ca", &[("ca.crt", ca.as_bytes())]),
                    ("default", "garbage", &[("ca.crt", b"not pem at all")]),
                ],
            );
            assert!(s.closed, "{pairs:?}");
            assert!(s.tls.is_none());
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert!(
                diags[0].message.contains(want),
                "{pairs:?}: {}",
                diags[0].message
            );
            assert!(diags[0].message.contains("503"), "{}", diags[0].message);
        }
        // On a plain-text backend the settings are reported and ignored.
        let (s, diags) = upstream_tls_of(&[("sluice.io/proxy-ssl-secret", "upstream-ca")], &[]);
        assert!(!s.closed && s.tls.is_none());
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, crate::model::Severity::Warning);
    }

    #[test]
    fn a_bad_nginx_value_names_the_nginx_annotation() {
        let (s, diags) = parse(&[("nginx.ingress.kubernetes.io/backend-protocol", "FCGI")]);
        assert_eq!(s.protocol, UpstreamProtocol::Http1);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].reason, Reason::InvalidAnnotation);
        assert_eq!(
            diags[0].field,
            "metadata.annotations[nginx.ingress.kubernetes.io/backend-protocol]"
        );
    }

    #[test]
    fn unimplemented_protections_close_the_ingress() {
        for key in [
            "nginx.ingress.kubernetes.io/auth-tls-verify-client",
            "nginx.ingress.kubernetes.io/auth-tls-secret",
            "nginx.ingress.kubernetes.io/global-rate-limit",
            "nginx.ingress.kubernetes.io/enable-modsecurity",
            "traefik.ingress.kubernetes.io/router.middlewares",
            "traefik.ingress.kubernetes.io/router.tls.options",
        ] {
            let (s, diags) = parse(&[(key, "10.0.0.0/8")]);
            assert!(s.closed, "{key}");
            assert_eq!(diags.len(), 1, "{key}: {diags:?}");
            let d = &diags[0];
            assert_eq!(
                (d.severity, d.reason),
                (Severity::Error, Reason::UnsupportedAnnotation)
            );
            assert_eq!(d.field, format!("metadata.annotations[{key}]"));
            assert!(d.message.contains("503"), "{}", d.message);
        }
    }

    #[test]
    fn other_unimplemented_annotations_are_warnings() {
        let (s, diags) = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
            (
                "traefik.ingress.kubernetes.io/router.entrypoints",
                "websecure",
            ),
            ("sluice.io/proxy-raed-timeout", "5s"),
            // Read elsewhere, or by other tools: no diagnostic here.
            ("sluice.io/acme-challenge", "dns-01"),
            ("external-dns.alpha.kubernetes.io/hostname", "a.example.com"),
            ("cert-manager.io/cluster-issuer", "letsencrypt"),
        ]);
        assert!(!s.closed);
        let fields: Vec<(&str, Severity)> = diags
            .iter()
            .map(|d| (d.field.as_str(), d.severity))
            .collect();
        assert_eq!(
            fields,
            [
                (
                    "metadata.annotations[nginx.ingress.kubernetes.io/proxy-buffering]",
                    Severity::Warning
                ),
                (
                    "metadata.annotations[sluice.io/proxy-raed-timeout]",
                    Severity::Warning
                ),
                (
                    "metadata.annotations[traefik.ingress.kubernetes.io/router.entrypoints]",
                    Severity::Warning
                ),
            ]
        );
    }

    #[test]
    fn source_ranges_under_either_name() {
        let (s, diags) = parse(&[
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8, 192.0.2.7",
            ),
            (
                "nginx.ingress.kubernetes.io/denylist-source-range",
                "10.9.0.0/16",
            ),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        assert!(!s.closed);
        let show = |l: &[Cidr]| l.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(show(&s.allow), ["10.0.0.0/8", "192.0.2.7/32"]);
        assert_eq!(show(&s.deny), ["10.9.0.0/16"]);
        assert!(s.admits(Some("10.1.2.3".parse().unwrap())));
        assert!(s.admits(Some("192.0.2.7".parse().unwrap())));
        assert!(!s.admits(Some("10.9.1.1".parse().unwrap())), "deny first");
        assert!(!s.admits(Some("203.0.113.1".parse().unwrap())));
        assert!(!s.admits(None), "an unknown client is not admitted");
        // The newer ingress-nginx name, and ours winning over it.
        let (s, _) = parse(&[
            (
                "nginx.ingress.kubernetes.io/allowlist-source-range",
                "10.0.0.0/8",
            ),
            ("sluice.io/allow-source-range", "172.16.0.0/12"),
        ]);
        assert_eq!(show(&s.allow), ["172.16.0.0/12"]);
        // No ranges: everyone, including an unknown client.
        assert!(BackendSettings::default().admits(None));
    }

    #[test]
    fn a_source_range_that_does_not_parse_fails_closed() {
        for value in ["10.0.0.0/33", "10.0.0.0/8, nope", " , "] {
            let (s, diags) =
                parse(&[("nginx.ingress.kubernetes.io/whitelist-source-range", value)]);
            assert!(s.closed, "{value:?}");
            assert!(s.allow.is_empty());
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert_eq!(diags[0].reason, Reason::InvalidAnnotation);
            assert_eq!(diags[0].severity, Severity::Error);
            assert!(diags[0].message.contains("503"), "{}", diags[0].message);
        }
    }

    #[test]
    fn external_authentication_settings() {
        let (s, diags) = parse(&[
            (
                "nginx.ingress.kubernetes.io/auth-url",
                "http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth",
            ),
            ("nginx.ingress.kubernetes.io/auth-method", "POST"),
            (
                "nginx.ingress.kubernetes.io/auth-signin",
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-response-headers",
                "X-Auth-Request-User, X-Auth-Request-Email",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-cache-key",
                "$cookie__oauth2_proxy",
            ),
        ]);
        assert!(!s.closed);
        let a = s.auth.expect("auth");
        assert_eq!(
            a.url.to_string(),
            "http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth"
        );
        assert_eq!(a.method, http::Method::POST);
        assert_eq!(
            a.signin.as_deref(),
            Some("https://$host/oauth2/start?rd=$escaped_request_uri")
        );
        assert_eq!(a.signin_param, "rd");
        assert_eq!(
            a.response_headers,
            ["x-auth-request-user", "x-auth-request-email"]
        );
        // Caching is tuning: warned about, authentication still applies.
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(
            (diags[0].severity, diags[0].reason),
            (Severity::Warning, Reason::UnsupportedAnnotation)
        );
    }

    #[test]
    fn an_authentication_that_cannot_be_honoured_fails_closed() {
        for (key, value) in [
            (
                "nginx.ingress.kubernetes.io/auth-url",
                "https://$host/oauth2/auth",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-url",
                "https://auth.example.com/check",
            ),
            ("nginx.ingress.kubernetes.io/auth-url", "not a url"),
            ("sluice.io/auth-url", "/relative"),
        ] {
            let (s, diags) = parse(&[(key, value)]);
            assert!(s.closed, "{value:?}");
            assert!(s.auth.is_none());
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert_eq!(diags[0].reason, Reason::InvalidAnnotation);
            assert!(diags[0].message.contains("503"), "{}", diags[0].message);
        }
        // A bad response header list or method cannot be honoured either.
        let (s, _) = parse(&[
            ("sluice.io/auth-url", "http://auth.test/"),
            ("sluice.io/auth-response-headers", "X-Ok, bad header"),
        ]);
        assert!(s.closed);
        // A bad sign-in URL falls back to answering 401: still protected, reported.
        let (s, diags) = parse(&[
            ("sluice.io/auth-url", "http://auth.test/"),
            ("sluice.io/auth-signin", "https://$server_name/start"),
        ]);
        assert!(!s.closed);
        assert_eq!(s.auth.unwrap().signin, None);
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].message.contains("$server_name"),
            "{}",
            diags[0].message
        );
        // Without auth-url the others do nothing, and say so.
        let (s, diags) = parse(&[("sluice.io/auth-signin", "https://login.test/")]);
        assert!(s.auth.is_none() && !s.closed);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Warning);
    }

    #[test]
    fn rate_limits_under_either_name() {
        let (s, diags) = parse(&[
            ("nginx.ingress.kubernetes.io/limit-rps", "5"),
            ("nginx.ingress.kubernetes.io/limit-rpm", "100"),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "3"),
            ("nginx.ingress.kubernetes.io/limit-whitelist", "10.0.0.0/8"),
            ("nginx.ingress.kubernetes.io/limit-rate", "1024"),
        ]);
        assert!(!s.closed);
        let l = s.rate_limit.expect("a rate limit");
        assert_eq!((l.rps, l.rpm, l.burst_multiplier), (Some(5), Some(100), 3));
        assert_eq!(l.zone, ObjectRef::new("default", "web"));
        assert_eq!(l.exempt.len(), 1);
        // `limit-rate` (bandwidth) is warned about, not a protection.
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].severity, Severity::Warning);
        // A rate that does not parse fails closed.
        let (s, diags) = parse(&[("sluice.io/limit-rps", "lots")]);
        assert!(s.closed && s.rate_limit.is_none());
        assert_eq!(diags[0].reason, Reason::InvalidAnnotation);
        // A companion alone does nothing, and says so.
        let (s, diags) = parse(&[("sluice.io/limit-burst-multiplier", "2")]);
        assert!(s.rate_limit.is_none() && !s.closed);
        assert_eq!(diags[0].severity, Severity::Warning);
    }

    #[test]
    fn redirects_and_app_root() {
        let (s, diags) = parse(&[
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://www.example.com$request_uri",
            ),
            ("nginx.ingress.kubernetes.io/permanent-redirect-code", "308"),
            ("nginx.ingress.kubernetes.io/app-root", "/app1"),
            ("nginx.ingress.kubernetes.io/force-ssl-redirect", "true"),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        let r = s.redirect.expect("a redirect");
        assert_eq!(
            (r.url.as_str(), r.code),
            ("https://www.example.com$request_uri", 308)
        );
        assert_eq!(s.app_root.as_deref(), Some("/app1"));
        assert!(s.force_ssl_redirect);
        // The temporal redirect wins, as in ingress-nginx; bad values are reported.
        let (s, diags) = parse(&[
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://a.test/",
            ),
            (
                "nginx.ingress.kubernetes.io/temporal-redirect",
                "https://b.test/",
            ),
            ("nginx.ingress.kubernetes.io/temporal-redirect-code", "200"),
            ("nginx.ingress.kubernetes.io/app-root", "app1"),
        ]);
        let r = s.redirect.expect("a redirect");
        assert_eq!((r.url.as_str(), r.code), ("https://b.test/", 302));
        assert!(s.app_root.is_none());
        assert_eq!(diags.len(), 2, "{diags:?}");
        let (s, diags) = parse(&[("sluice.io/permanent-redirect", "https://$server_name/")]);
        assert!(s.redirect.is_none());
        assert!(
            diags[0].message.contains("$server_name"),
            "{}",
            diags[0].message
        );
    }

    #[test]
    fn cors_settings_and_origins() {
        let (s, diags) = parse(&[
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            (
                "nginx.ingress.kubernetes.io/cors-allow-origin",
                "https://app.example.com, https://*.example.org",
            ),
            ("nginx.ingress.kubernetes.io/cors-expose-headers", "X-Total"),
            ("nginx.ingress.kubernetes.io/cors-max-age", "600"),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        let c = s.cors.expect("cors");
        assert_eq!(c.methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
        assert!(c.credentials);
        assert_eq!((c.expose.as_str(), c.max_age), ("X-Total", 600));
        assert_eq!(
            c.allow_origin(Some("https://app.example.com")),
            Some("https://app.example.com")
        );
        assert_eq!(
            c.allow_origin(Some("https://a.b.example.org")),
            Some("https://a.b.example.org")
        );
        assert_eq!(c.allow_origin(Some("https://example.org")), None);
        assert_eq!(c.allow_origin(Some("https://evilexample.org")), None);
        assert_eq!(c.allow_origin(Some("http://app.example.com")), None);
        assert_eq!(c.allow_origin(None), None);
        // The default: any origin.
        let (s, _) = parse(&[("sluice.io/enable-cors", "true")]);
        assert_eq!(s.cors.unwrap().allow_origin(None), Some("*"));
        // Bad origins keep CORS off; companions without enable-cors are warned about.
        let (s, diags) = parse(&[
            ("sluice.io/enable-cors", "true"),
            ("sluice.io/cors-allow-origin", "app.example.com"),
        ]);
        assert!(s.cors.is_none());
        assert_eq!(diags[0].severity, Severity::Error);
        let (s, diags) = parse(&[("sluice.io/cors-allow-origin", "*")]);
        assert!(s.cors.is_none());
        assert_eq!(diags[0].severity, Severity::Warning);
    }

    #[test]
    fn upstream_host_and_forwarded_prefix() {
        let (s, diags) = parse(&[
            (
                "nginx.ingress.kubernetes.io/upstream-vhost",
                "internal.svc:8080",
            ),
            ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/app"),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(s.upstream_vhost.as_deref(), Some("internal.svc:8080"));
        assert_eq!(s.forwarded_prefix.as_deref(), Some("/app"));
        let (s, diags) = parse(&[
            ("sluice.io/upstream-vhost", "bad host"),
            ("sluice.io/x-forwarded-prefix", "app"),
        ]);
        assert!(s.upstream_vhost.is_none() && s.forwarded_prefix.is_none());
        assert_eq!(diags.len(), 2);
    }

    #[test]
    fn snippets_are_found_by_suffix() {
        let ann: BTreeMap<String, String> = [
            "nginx.ingress.kubernetes.io/configuration-snippet",
            "nginx.ingress.kubernetes.io/server-snippet",
            "nginx.ingress.kubernetes.io/auth-snippet",
            "nginx.ingress.kubernetes.io/stream-snippet",
            "nginx.ingress.kubernetes.io/modsecurity-snippet",
            "nginx.ingress.kubernetes.io/ssl-redirect",
            "example.com/server-snippet",
        ]
        .iter()
        .map(|k| ((*k).to_string(), "x".to_string()))
        .collect();
        assert_eq!(
            snippets(Some(&ann)),
            [
                "nginx.ingress.kubernetes.io/auth-snippet",
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "nginx.ingress.kubernetes.io/modsecurity-snippet",
                "nginx.ingress.kubernetes.io/server-snippet",
                "nginx.ingress.kubernetes.io/stream-snippet",
            ]
        );
        assert!(snippets(None).is_empty());
    }
}
