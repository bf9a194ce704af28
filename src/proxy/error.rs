//! Proxy errors and the responses they become.

use std::io;

use http::{Response, StatusCode, header};

use super::body::{self, ProxyBody};
use crate::routing::RequestPathError;

/// Why a request was not forwarded, or failed upstream.
#[derive(Debug)]
pub(crate) enum ProxyError {
    /// 400: malformed request.
    BadRequest(&'static str),
    /// 400: the path could not be normalised.
    BadPath(RequestPathError),
    /// 408: the client stopped sending its request body.
    ClientTimeout,
    /// 404: no route and no default backend.
    NoRoute,
    /// 421: a TLS connection used for a host its certificate does not cover.
    Misdirected,
    /// 413: body larger than `sluice.io/proxy-body-size`.
    BodyTooLarge,
    /// 503: the backend has no ready endpoint.
    NoEndpoints,
    /// 503: the Ingress asks for a protection sluice does not implement (fail closed).
    Closed,
    /// 403: the client is outside the Ingress's source ranges.
    Forbidden,
    /// 503: the client is over the Ingress's request rate (ingress-nginx's status for it).
    RateLimited,
    /// 500: the external authentication service failed, could not be reached, or did not
    /// answer in time (the request is not forwarded).
    AuthUnavailable,
    /// 502: connection refused or reset, or the upstream broke the protocol.
    UpstreamRefused(String),
    /// 502: the upstream broke HTTP: a malformed or truncated response head, or a 101 to a
    /// request that did not ask for an upgrade.
    UpstreamProtocol,
    /// 504: connect or response-head timeout.
    UpstreamTimeout,
    /// 502: the TLS handshake with the upstream failed (its certificate was not accepted, or
    /// no common protocol).
    UpstreamTls(String),
}

impl ProxyError {
    /// Classifies an upstream error (the legacy client's, hyper's, or a connect error):
    /// walks the error and its sources.
    pub(crate) fn from_upstream_error(e: &(dyn std::error::Error + 'static)) -> ProxyError {
        let mut chain = vec![e];
        let mut source = e.source();
        while let Some(s) = source {
            chain.push(s);
            source = s.source();
        }
        if chain.iter().any(|s| {
            s.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
        }) {
            return ProxyError::BodyTooLarge;
        }
        if chain
            .iter()
            .any(|s| s.downcast_ref::<super::body::ClientBodyStalled>().is_some())
        {
            return ProxyError::ClientTimeout;
        }
        if let Some(tls) = chain.iter().find_map(|s| {
            s.downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<super::connect::TlsFailed>())
        }) {
            return ProxyError::UpstreamTls(tls.0.clone());
        }
        if chain.iter().any(|s| {
            s.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        }) {
            return ProxyError::UpstreamTimeout;
        }
        // The outermost hyper error is the exchange's own; the client's errors (in our request
        // body) sit below it.
        if let Some(h) = chain.iter().find_map(|s| s.downcast_ref::<hyper::Error>()) {
            // The request body we were streaming upstream failed: the client sent a
            // malformed body (a bad chunk size, say) or went away. Not the upstream's fault.
            if h.is_user() {
                return ProxyError::BadRequest("malformed or incomplete request body");
            }
            // The upstream's response head did not parse, or the connection ended before it
            // was complete.
            if h.is_parse() || h.is_incomplete_message() {
                return ProxyError::UpstreamProtocol;
            }
        }
        let mut msg = e.to_string();
        if let Some(s) = e.source() {
            msg = format!("{msg}: {s}");
        }
        ProxyError::UpstreamRefused(msg)
    }

    /// The metric label (`reason`).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadPath(_) => "bad_request",
            ProxyError::NoRoute => "no_route",
            ProxyError::ClientTimeout => "client_timeout",
            ProxyError::Misdirected => "misdirected",
            ProxyError::BodyTooLarge => "body_too_large",
            ProxyError::NoEndpoints => "no_endpoints",
            ProxyError::Closed => "closed",
            ProxyError::Forbidden => "forbidden",
            ProxyError::RateLimited => "rate_limited",
            ProxyError::AuthUnavailable => "auth_error",
            ProxyError::UpstreamRefused(_) => "upstream_error",
            ProxyError::UpstreamTls(_) => "upstream_tls",
            ProxyError::UpstreamProtocol => "upstream_protocol",
            ProxyError::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoEndpoints | ProxyError::Closed | ProxyError::RateLimited => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::AuthUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::UpstreamRefused(_)
            | ProxyError::UpstreamProtocol
            | ProxyError::UpstreamTls(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short text response.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let text = self.text();
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }

    /// The answer to a gRPC request: a gRPC status with the same text as its message.
    pub(crate) fn into_grpc_response(self) -> Response<ProxyBody> {
        let text = self.text();
        super::grpc::status_response(super::grpc::code(&self), text.trim_end())
    }

    /// What the response says.
    fn text(&self) -> String {
        match self {
            ProxyError::BadRequest(why) => format!("bad request: {why}\n"),
            ProxyError::BadPath(e) => format!("bad request: {e}\n"),
            ProxyError::NoRoute => "no route for this host and path\n".to_string(),
            ProxyError::ClientTimeout => {
                "request timeout: the request body stopped arriving\n".to_string()
            }
            ProxyError::Misdirected => {
                "misdirected request: this connection's certificate does not cover this host\n"
                    .to_string()
            }
            ProxyError::BodyTooLarge => "request body too large\n".to_string(),
            ProxyError::NoEndpoints => "no ready endpoint for this service\n".to_string(),
            ProxyError::Forbidden => "forbidden\n".to_string(),
            ProxyError::RateLimited => "service unavailable: too many requests\n".to_string(),
            ProxyError::AuthUnavailable => {
                "internal server error: the authentication service failed\n".to_string()
            }
            ProxyError::Closed => {
                "service unavailable: this route is closed until its configuration is fixed\n"
                    .to_string()
            }
            ProxyError::UpstreamRefused(e) => {
                tracing::debug!(error = %e, "upstream error");
                "bad gateway: the upstream refused or reset the connection\n".to_string()
            }
            ProxyError::UpstreamProtocol => {
                "bad gateway: the upstream broke the protocol\n".to_string()
            }
            ProxyError::UpstreamTls(e) => {
                tracing::debug!(error = %e, "upstream TLS handshake failed");
                "bad gateway: the TLS handshake with the upstream failed (its certificate was not accepted)\n".to_string()
            }
            ProxyError::UpstreamTimeout => {
                "gateway timeout: the upstream did not answer in time\n".to_string()
            }
        }
    }
}
