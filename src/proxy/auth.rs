//! External authentication (`auth-url`, see [`ForwardAuth`]), as ingress-nginx runs nginx's
//! `auth_request`: the request's headers (no body) go to the authentication service first;
//! 2xx lets the request through with the listed answer headers, 401 (or a redirect to the
//! sign-in URL) and 403 go back to the client, anything else (5xx, an unreachable or slow
//! service) is 500. Never open on failure.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Proxy;
use super::body::{self, ProxyBody};
use super::conn::ConnInfo;
use super::error::ProxyError;
use super::headers;
use crate::model::ForwardAuth;

/// The client of authentication services: any host name (cluster DNS), pooled.
pub(super) type AuthClient = Client<HttpConnector, Empty<Bytes>>;

/// What the authentication service decided.
pub(super) enum Decision {
    /// Forward, with these headers of the answer (the listed ones it set).
    Allowed(Vec<(HeaderName, HeaderValue)>),
    /// Answer the client with this (401, a sign-in redirect, 403).
    Denied(Response<ProxyBody>),
}

/// The original request, as the authentication service is told about it.
pub(super) struct Original<'a> {
    /// The request's headers.
    pub(super) headers: &'a HeaderMap,
    /// Its method.
    pub(super) method: &'a http::Method,
    /// The Host it was routed by.
    pub(super) host: &'a str,
    /// The request target (path and query).
    pub(super) target: &'a PathAndQuery,
}

pub(super) fn client(proxy: &Proxy) -> AuthClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(proxy.config.connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(proxy.config.upstream_idle_timeout)
        .build(connector)
}

impl Proxy {
    /// Asks `auth` about the request `original` received on `conn`.
    pub(super) async fn authorize(
        &self,
        conn: &ConnInfo,
        auth: &ForwardAuth,
        original: &Original<'_>,
    ) -> Result<Decision, ProxyError> {
        let scheme = conn.entrypoint.scheme();
        let url = format!("{scheme}://{}{}", original.host, original.target);
        let req = self.auth_request(conn, auth, original, &url)?;
        let client = self.auth_client.get_or_init(|| client(self));
        let answer = tokio::time::timeout(self.config.read_timeout, client.request(req)).await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::warn!(url = %auth.url, error = %e, "the authentication service cannot be reached");
                return Err(ProxyError::AuthUnavailable);
            }
            Err(_) => {
                tracing::warn!(url = %auth.url, "the authentication service did not answer in time");
                return Err(ProxyError::AuthUnavailable);
            }
        };
        let status = answer.status();
        if status.is_success() {
            let set = auth
                .response_headers
                .iter()
                .filter_map(|name| Some((name.clone(), answer.headers().get(name)?.clone())))
                .collect();
            return Ok(Decision::Allowed(set));
        }
        match status {
            StatusCode::UNAUTHORIZED => Ok(Decision::Denied(match &auth.signin {
                Some(signin) => sign_in(&signin_url(signin, &auth.signin_param, scheme, original)),
                None => {
                    let mut resp = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
                    if let Some(v) = answer.headers().get(header::WWW_AUTHENTICATE) {
                        resp.headers_mut()
                            .insert(header::WWW_AUTHENTICATE, v.clone());
                    }
                    resp
                }
            })),
            StatusCode::FORBIDDEN => {
                Ok(Decision::Denied(text(StatusCode::FORBIDDEN, "forbidden\n")))
            }
            other => {
                tracing::warn!(url = %auth.url, status = %other, "the authentication service failed");
                Err(ProxyError::AuthUnavailable)
            }
        }
    }

    /// The authentication request: the original headers (without hop-by-hop and body
    /// framing), where the request was going, and who sent it.
    fn auth_request(
        &self,
        conn: &ConnInfo,
        auth: &ForwardAuth,
        original: &Original<'_>,
        url: &str,
    ) -> Result<Request<Empty<Bytes>>, ProxyError> {
        let mut headers = original.headers.clone();
        headers::strip_hop_by_hop(&mut headers, false);
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::HOST,
        ] {
            headers.remove(name);
        }
        let client = headers::client_ip(
            conn.peer.ip(),
            original.headers,
            &self.config.trusted_proxies,
        )
        .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let value = |v: &str| HeaderValue::from_str(v).map_err(|_| ProxyError::AuthUnavailable);
        let redirect = auth
            .request_redirect
            .as_deref()
            .unwrap_or(original.target.as_str());
        for (name, v) in [
            ("x-original-url", url),
            ("x-original-method", original.method.as_str()),
            ("x-auth-request-redirect", redirect),
            ("x-sent-from", "sluice"),
            ("x-real-ip", &client),
            ("x-forwarded-for", &client),
            ("x-forwarded-host", original.host),
            ("x-forwarded-proto", conn.entrypoint.scheme()),
        ] {
            headers.insert(HeaderName::from_static(name), value(v)?);
        }
        let mut req = Request::new(Empty::new());
        *req.method_mut() = auth.method.clone();
        *req.uri_mut() = auth.url.clone();
        *req.headers_mut() = headers;
        Ok(req)
    }
}

/// The sign-in redirect target: `signin` with its variables replaced and, unless it already
/// names `param`, `param=<the original URL>` appended.
pub(super) fn signin_url(
    signin: &str,
    param: &str,
    scheme: &str,
    original: &Original<'_>,
) -> String {
    let request_uri = original.target.as_str();
    let full = format!("{scheme}://{}{request_uri}", original.host);
    let escaped = escape(request_uri);
    let mut url = super::request::expand_vars(
        signin,
        &[
            ("$escaped_request_uri", &escaped),
            ("$request_uri", request_uri),
            ("$http_host", original.host),
            ("$host", original.host),
            ("$pass_access_scheme", scheme),
            ("$scheme", scheme),
        ],
    );
    let named = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.split('=').next() == Some(param)));
    if !named {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(param);
        url.push('=');
        url.push_str(&escape(&full));
    }
    url
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn sign_in(location: &str) -> Response<ProxyBody> {
    let mut resp = text(StatusCode::FOUND, "sign in\n");
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => text(StatusCode::UNAUTHORIZED, "unauthorized\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_urls() {
        let target = PathAndQuery::from_static("/a%20b/c?x=1&y=2");
        let headers = HeaderMap::new();
        let original = Original {
            headers: &headers,
            method: &http::Method::GET,
            host: "app.test",
            target: &target,
        };
        assert_eq!(
            signin_url("https://auth.test/start", "rd", "https", &original),
            "https://auth.test/start?rd=https%3A%2F%2Fapp.test%2Fa%2520b%2Fc%3Fx%3D1%26y%3D2"
        );
        assert_eq!(
            signin_url(
                "https://$host/oauth2/start?rd=$escaped_request_uri",
                "rd",
                "http",
                &original
            ),
            "https://app.test/oauth2/start?rd=%2Fa%2520b%2Fc%3Fx%3D1%26y%3D2"
        );
        assert_eq!(
            signin_url("/login?next=1", "return_to", "http", &original),
            "/login?next=1&return_to=http%3A%2F%2Fapp.test%2Fa%2520b%2Fc%3Fx%3D1%26y%3D2"
        );
    }
}
