//! Per-Ingress backend settings, from `sluice.io/*` annotations (see docs/annotations.md).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Cidr;

/// How requests are spread over a backend's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LoadBalancer {
    /// Each endpoint in turn (the default).
    #[default]
    RoundRobin,
    /// Power of two random choices, the one with fewer outstanding requests wins.
    LeastRequest,
}

/// The protocol spoken to the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with pooled keep-alive connections (the default).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over cleartext (gRPC backends).
    H2c,
    /// HTTP/1.1 over TLS (`HTTPS`), with pooled keep-alive connections.
    Https,
    /// HTTP/2 over TLS, negotiated by ALPN (`GRPCS`).
    H2,
}

impl UpstreamProtocol {
    /// Whether the upstream speaks HTTP/2.
    pub fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2c | UpstreamProtocol::H2)
    }

    /// Whether connections to the upstream are TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamProtocol::Https | UpstreamProtocol::H2)
    }
}

/// When a failed request is tried again on another endpoint (ingress-nginx's
/// `proxy-next-upstream`, `-tries` and `-timeout`). Only requests without a body are retried:
/// sluice streams bodies instead of buffering them, so one already sent cannot be sent again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at most the backend's endpoints).
    pub attempts: u32,
    /// On a refused, reset or broken connection, before the response head (`error`,
    /// `invalid_header`).
    pub on_error: bool,
    /// On a connect or response-head timeout (`timeout`).
    pub on_timeout: bool,
    /// On these upstream statuses (`http_502`...).
    pub statuses: Vec<u16>,
    /// Methods that are not idempotent (POST, PATCH) too (`non_idempotent`).
    pub non_idempotent: bool,
    /// No new try once this long has passed since the first (`proxy-next-upstream-timeout`).
    pub total: Option<Duration>,
}

impl Default for RetryPolicy {
    /// sluice's default: one more try on another endpoint after a connection error.
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            on_error: true,
            on_timeout: false,
            statuses: Vec::new(),
            non_idempotent: false,
            total: None,
        }
    }
}

/// A client certificate chain and its key, PEM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientCert {
    /// `tls.crt`.
    pub chain: Arc<[u8]>,
    /// `tls.key`.
    pub key: Arc<[u8]>,
}

/// How sluice talks TLS to an `HTTPS` or `GRPCS` backend (ingress-nginx's `proxy-ssl-*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// The Secret of `proxy-ssl-secret`, if any.
    pub secret: Option<super::ObjectRef>,
    /// Its `ca.crt` (PEM): the certificate authorities the backend's certificate must chain
    /// to. `None`: no CA given.
    pub ca: Option<Arc<[u8]>>,
    /// Its `tls.crt` and `tls.key` (PEM), sent as the client certificate when both are there.
    pub client_cert: Option<ClientCert>,
    /// Whether the backend's certificate is verified: on when a CA is given, unless
    /// `proxy-ssl-verify: "off"`; on without a CA verifies against the public web roots.
    pub verify: bool,
    /// The name verified and sent as SNI (`proxy-ssl-name`); `None`: the Service's DNS name,
    /// `<service>.<namespace>.svc`.
    pub name: Option<String>,
    /// Whether SNI is sent (`proxy-ssl-server-name`, off by default as in ingress-nginx).
    pub sni: bool,
}

/// External authentication, as ingress-nginx's `auth-url` does it (nginx's `auth_request`):
/// before a request is forwarded, a request with its headers (no body) goes to `url`; a 2xx
/// answer lets it through with `response_headers` copied from the answer, 401 and 403 are
/// returned to the client (401 as a redirect to `signin` when set), anything else is 500.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ForwardAuth {
    /// The authentication service (`http://`).
    pub url: http::Uri,
    /// The method of the authentication request (`auth-method`, default GET).
    pub method: http::Method,
    /// Where a 401 is redirected (`auth-signin`), with the original URL in `signin_param`.
    pub signin: Option<String>,
    /// The query parameter that carries the original URL (`auth-signin-redirect-param`,
    /// default `rd`).
    pub signin_param: String,
    /// Headers of the authentication answer set on the forwarded request
    /// (`auth-response-headers`); a client's own values of these are always removed.
    pub response_headers: Vec<http::HeaderName>,
    /// `X-Auth-Request-Redirect` sent to the service (`auth-request-redirect`; default the
    /// original request URI).
    pub request_redirect: Option<String>,
}

/// Basic authentication (ingress-nginx's `auth-type: basic`, nginx's `auth_basic`): a
/// request without an `Authorization: Basic` header naming one of `users` with its password
/// gets 401 with `WWW-Authenticate: Basic realm="<realm>"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BasicAuth {
    /// The realm shown by browsers (`auth-realm`).
    pub realm: String,
    /// The Secret the users came from (`auth-secret`).
    pub secret: super::ObjectRef,
    /// User name to stored hash.
    pub users: std::collections::BTreeMap<String, super::htpasswd::PasswordHash>,
}

/// Session affinity by cookie (ingress-nginx's `affinity: cookie`): the first response sets a
/// cookie naming the endpoint that answered, and later requests carrying it go to that
/// endpoint while it exists and is not marked down.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Affinity {
    /// `session-cookie-name` (default `INGRESSCOOKIE`).
    pub cookie: String,
    /// `session-cookie-path` (default: the route's path; `/` for a regular expression).
    pub path: Option<String>,
    /// `session-cookie-max-age` (or `session-cookie-expires`), seconds; none: a session cookie.
    pub max_age: Option<u64>,
    /// `session-cookie-secure`: always `Secure` (it is on HTTPS requests anyway).
    pub secure: bool,
    /// `session-cookie-samesite`: `None`, `Lax` or `Strict`.
    pub samesite: Option<String>,
    /// `session-cookie-domain`.
    pub domain: Option<String>,
}

/// One piece of an `upstream-hash-by` key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashPart {
    /// Text as written.
    Literal(String),
    /// `$request_uri`: path and query as received.
    RequestUri,
    /// `$uri`: the normalised path.
    Uri,
    /// `$host`: the request host without its port.
    Host,
    /// `$remote_addr` / `$binary_remote_addr`: the client address (as source ranges see it).
    RemoteAddr,
    /// `$http_<name>`: a request header (`_` read as `-`).
    Header(http::HeaderName),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`: a query parameter.
    Arg(String),
}

/// Request rate limits per client address, as ingress-nginx's `limit-rps` and `limit-rpm`
/// (nginx's `limit_req` with `nodelay`): each client address gets a bucket of `rate x
/// burst_multiplier` requests refilled at `rate`; a request over it is refused (503).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// The Ingress: its routes share one budget per client address.
    pub zone: super::ObjectRef,
    /// Requests per second.
    pub rps: Option<u32>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Burst allowance, as a multiple of the rate (`limit-burst-multiplier`, default 5).
    pub burst_multiplier: u32,
    /// Client networks the limits do not apply to (`limit-whitelist`).
    pub exempt: Vec<Cidr>,
}

/// Concurrent requests per client address, as ingress-nginx's `limit-connections` (nginx's
/// `limit_conn`): a request over `max` in progress from one address is refused (503).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnLimit {
    /// The Ingress: its routes share the count.
    pub zone: super::ObjectRef,
    /// Requests in progress allowed per client address.
    pub max: u32,
    /// Client networks the limit does not apply to (`limit-whitelist`).
    pub exempt: Vec<Cidr>,
}

/// A redirect answered instead of forwarding (ingress-nginx's `permanent-redirect` and
/// `temporal-redirect`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// The target; `$scheme`, `$host`, `$http_host`, `$request_uri` and `$uri` are replaced per
    /// request.
    pub url: String,
    /// 301 (permanent) or 302 (temporal) unless set (300 to 308).
    pub code: u16,
}

/// CORS as ingress-nginx's `enable-cors` answers it: for a request whose `Origin` is allowed,
/// `OPTIONS` is answered 204 by the proxy (a preflight, never forwarded) and other responses
/// get the `Access-Control-*` headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cors {
    /// Allowed origins (`https://a.test`, `https://*.example.com`); empty: any (`*`).
    pub origins: Vec<String>,
    /// `Access-Control-Allow-Methods`.
    pub methods: String,
    /// `Access-Control-Allow-Headers`.
    pub headers: String,
    /// `Access-Control-Expose-Headers` (empty: not sent).
    pub expose: String,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Max-Age` of preflight answers, seconds.
    pub max_age: u64,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` for a request from `origin`: `*` when any origin is
    /// allowed, the origin itself when it is in the list, `None` when it is not (or absent).
    pub fn allow_origin<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        if self.origins.is_empty() {
            return Some("*");
        }
        let origin = origin?;
        let lower = origin.to_ascii_lowercase();
        self.origins
            .iter()
            .any(|o| match o.split_once("://*.") {
                Some((scheme, domain)) => lower
                    .strip_prefix(scheme)
                    .and_then(|r| r.strip_prefix("://"))
                    .is_some_and(|host| {
                        host.len() > domain.len() + 1
                            && host.ends_with(domain)
                            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                    }),
                None => *o == lower,
            })
            .then_some(origin)
    }
}

/// Settings of one backend. `None` means the proxy-wide default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendSettings {
    /// `sluice.io/load-balancer`.
    pub load_balancer: LoadBalancer,
    /// `sluice.io/backend-protocol`.
    pub protocol: UpstreamProtocol,
    /// TLS to the backend (`HTTPS` and `GRPCS` only).
    pub tls: Option<Arc<UpstreamTls>>,
    /// `sluice.io/proxy-next-upstream` and its `-tries` and `-timeout`: `None` is
    /// [`RetryPolicy::default`].
    pub retry: Option<Arc<RetryPolicy>>,
    /// `sluice.io/proxy-connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `sluice.io/proxy-read-timeout`: time allowed for the response head.
    pub read_timeout: Option<Duration>,
    /// `sluice.io/proxy-send-timeout`: the longest the upstream may go without taking more of
    /// the request body (nginx's `proxy_send_timeout`).
    pub send_timeout: Option<Duration>,
    /// `sluice.io/proxy-body-size`: maximum request body in bytes (`None`: unlimited).
    pub max_body_bytes: Option<u64>,
    /// `sluice.io/ssl-redirect` (default true).
    pub ssl_redirect: bool,
    /// `sluice.io/allow-source-range` (ingress-nginx's `whitelist-source-range` or
    /// `allowlist-source-range`): only clients in these networks are served (empty: all).
    pub allow: Vec<Cidr>,
    /// `sluice.io/deny-source-range` (ingress-nginx's `denylist-source-range`): clients in
    /// these networks get 403 (checked before `allow`).
    pub deny: Vec<Cidr>,
    /// `sluice.io/auth-url` (ingress-nginx's `auth-url` family): every request is first sent
    /// to an authentication service, which decides.
    pub auth: Option<Arc<ForwardAuth>>,
    /// `sluice.io/auth-type: basic` with `auth-secret` (ingress-nginx's): users and password
    /// hashes from an htpasswd Secret.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// `sluice.io/limit-rps` / `limit-rpm` (ingress-nginx's): requests per client address.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// `sluice.io/limit-connections` (ingress-nginx's): requests in progress per client address.
    pub conn_limit: Option<Arc<ConnLimit>>,
    /// `sluice.io/force-ssl-redirect`: redirect plain HTTP to HTTPS even for hosts without
    /// TLS in this Ingress (TLS terminated elsewhere, or by another Ingress).
    pub force_ssl_redirect: bool,
    /// `sluice.io/permanent-redirect` / `temporal-redirect`: every request is answered with
    /// this redirect instead of being forwarded.
    pub redirect: Option<Arc<Redirect>>,
    /// `sluice.io/app-root`: a request for `/` is redirected (302) to this path.
    pub app_root: Option<Arc<str>>,
    /// `sluice.io/enable-cors` and the `cors-*` settings.
    pub cors: Option<Arc<Cors>>,
    /// `sluice.io/upstream-vhost`: the Host header sent upstream instead of the client's.
    pub upstream_vhost: Option<String>,
    /// `sluice.io/strip-prefix`: the matched rule path is removed from the path sent upstream
    /// (Traefik's `StripPrefix`), and sent as `X-Forwarded-Prefix`.
    pub strip_prefix: bool,
    /// `sluice.io/x-forwarded-prefix`: an `X-Forwarded-Prefix` header sent upstream.
    pub forwarded_prefix: Option<String>,
    /// `sluice.io/affinity: cookie` and the `session-cookie-*` settings.
    pub affinity: Option<Arc<Affinity>>,
    /// `sluice.io/upstream-hash-by`: requests with the same key go to the same endpoint
    /// (rendezvous hashing, stable across replicas).
    pub hash_by: Option<Arc<[HashPart]>>,
    /// `sluice.io/custom-http-errors`: upstream answers with these statuses are replaced by
    /// the `default-backend` Service's answer (its error page).
    pub custom_errors: Vec<u16>,
    /// `sluice.io/request-headers`: set on the request sent upstream (replacing the client's).
    pub request_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `sluice.io/response-headers`: set on the response (replacing the upstream's).
    pub response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `sluice.io/hsts`: the `Strict-Transport-Security` of responses over HTTPS.
    pub hsts: Option<http::HeaderValue>,
    /// `sluice.io/use-regex` (ingress-nginx's): the Ingress's paths are regular expressions.
    pub use_regex: bool,
    /// `sluice.io/rewrite-target` (ingress-nginx's): each path of the Ingress is a regular
    /// expression and the request path is rewritten to this target (with `$1`..`$9`).
    pub rewrite_target: Option<Arc<str>>,
    /// The Ingress asks for a protection sluice does not implement (an authentication,
    /// allow/deny list, rate limit or client-certificate annotation of another controller):
    /// rather than serve it open, every route of it answers 503 (fail closed).
    pub closed: bool,
    /// `sluice.io/ssl-passthrough` (ingress-nginx's): on the HTTPS entrypoint, a TLS
    /// connection whose SNI routes (path `/`) to this backend is not terminated but spliced
    /// to an endpoint as it is; requests that reach it over terminated TLS get 421.
    pub ssl_passthrough: bool,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            load_balancer: LoadBalancer::default(),
            protocol: UpstreamProtocol::default(),
            tls: None,
            retry: None,
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
            max_body_bytes: None,
            ssl_redirect: true,
            allow: Vec::new(),
            deny: Vec::new(),
            auth: None,
            basic_auth: None,
            rate_limit: None,
            conn_limit: None,
            force_ssl_redirect: false,
            redirect: None,
            app_root: None,
            cors: None,
            upstream_vhost: None,
            strip_prefix: false,
            forwarded_prefix: None,
            affinity: None,
            hash_by: None,
            custom_errors: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            hsts: None,
            use_regex: false,
            rewrite_target: None,
            closed: false,
            ssl_passthrough: false,
        }
    }
}

impl BackendSettings {
    /// Whether a request needs more than routing, the redirect to HTTPS, the body limit and
    /// the Host and prefix headers: a closed route, a redirect, CORS, source ranges,
    /// authentication, limits, affinity or error pages. Routes without any take the proxy's
    /// short path.
    pub fn has_request_filters(&self) -> bool {
        self.closed
            || self.redirect.is_some()
            || self.app_root.is_some()
            || self.cors.is_some()
            || !self.allow.is_empty()
            || !self.deny.is_empty()
            || self.auth.is_some()
            || self.basic_auth.is_some()
            || self.rate_limit.is_some()
            || self.conn_limit.is_some()
            || self.affinity.is_some()
            || self.hash_by.is_some()
            || !self.custom_errors.is_empty()
            || !self.request_headers.is_empty()
            || !self.response_headers.is_empty()
            || self.hsts.is_some()
    }

    /// Whether a client at `ip` may be served under the source ranges (`None`: the client's
    /// address is unknown, e.g. a malformed `X-Forwarded-For` from a trusted proxy, which only
    /// routes without source ranges serve).
    pub fn admits(&self, ip: Option<IpAddr>) -> bool {
        if self.allow.is_empty() && self.deny.is_empty() {
            return true;
        }
        let Some(ip) = ip else {
            return false;
        };
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }
}
