//! gRPC over the proxy: recognising a gRPC request, its deadline (`grpc-timeout`), and the
//! answers sluice itself gives one as gRPC statuses (a trailers-only response: HTTP 200,
//! `content-type: application/grpc`, `grpc-status` and `grpc-message`), which gRPC clients
//! read as the call's status, where an HTTP error status would reach the application as an
//! `UNKNOWN` or `UNAVAILABLE` with no message.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::body::{self, BoxError, ProxyBody};
use super::error::ProxyError;

/// `grpc-status`.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC status codes sluice answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// 1.
    Cancelled = 1,
    /// 4.
    DeadlineExceeded = 4,
    /// 7.
    PermissionDenied = 7,
    /// 8.
    ResourceExhausted = 8,
    /// 12.
    Unimplemented = 12,
    /// 13.
    Internal = 13,
    /// 14.
    Unavailable = 14,
}

/// Whether a request is gRPC (`content-type: application/grpc` or `application/grpc+...`;
/// gRPC-Web's `application/grpc-web` is not: its status travels in the body).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|ct| {
            ct.strip_prefix(b"application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
        })
}

/// The deadline a `grpc-timeout` value gives (`1-8 digits` and a unit: `H`, `M`, `S`, `m`,
/// `u`, `n`); `None` when it is absent or malformed (then no deadline, as gRPC servers do).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status for an error sluice answers itself (gRPC's own HTTP-to-status mapping,
/// with `DEADLINE_EXCEEDED` for an upstream that did not answer in time).
pub(crate) fn code(e: &ProxyError) -> Code {
    match e {
        ProxyError::BadRequest(_) | ProxyError::BadPath(_) => Code::Internal,
        ProxyError::NoRoute => Code::Unimplemented,
        ProxyError::BodyTooLarge => Code::ResourceExhausted,
        ProxyError::Forbidden => Code::PermissionDenied,
        ProxyError::UpstreamTimeout => Code::DeadlineExceeded,
        ProxyError::ClientTimeout => Code::Cancelled,
        ProxyError::Misdirected
        | ProxyError::NoEndpoints
        | ProxyError::Closed
        | ProxyError::RateLimited
        | ProxyError::AuthUnavailable
        | ProxyError::UpstreamRefused(_)
        | ProxyError::UpstreamTls(_)
        | ProxyError::UpstreamProtocol => Code::Unavailable,
    }
}

/// A trailers-only gRPC response with `code` and `message` (percent-encoded as gRPC wants).
pub fn status_response(code: Code, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS.clone(), HeaderValue::from(code as u16));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert(GRPC_MESSAGE.clone(), v);
    }
    resp
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A gRPC response body cut at the call's deadline: when it has not ended by then, it ends
/// with `grpc-status: 4` trailers (and the upstream stream is dropped, which cancels it).
pub fn with_deadline(inner: ProxyBody, deadline: tokio::time::Instant) -> ProxyBody {
    Deadline {
        inner: Some(inner),
        sleep: Box::pin(tokio::time::sleep_until(deadline)),
    }
    .boxed()
}

struct Deadline {
    inner: Option<ProxyBody>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn boxed(self) -> ProxyBody {
        http_body_util::BodyExt::boxed_unsync(self)
    }
}

impl Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.inner = None;
            let mut trailers = HeaderMap::new();
            trailers.insert(
                GRPC_STATUS.clone(),
                HeaderValue::from(Code::DeadlineExceeded as u16),
            );
            trailers.insert(
                GRPC_MESSAGE.clone(),
                HeaderValue::from_static("deadline exceeded (grpc-timeout) at the proxy"),
            );
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn grpc_requests_by_content_type() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&headers(&[(
            "content-type",
            "application/grpc-web"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert!(!is_grpc(&headers(&[])));
    }

    #[test]
    fn grpc_timeouts() {
        let t = |v: &str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("300m"), Some(Duration::from_millis(300)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5M"), Some(Duration::from_secs(300)));
        assert_eq!(t("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(t("10n"), Some(Duration::from_nanos(10)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", " 1S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(timeout(&headers(&[])), None);
    }

    #[test]
    fn statuses_are_trailers_only_responses() {
        let r = status_response(Code::Unimplemented, "no route for grpc.test/x 100%");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(
            r.headers()["grpc-message"],
            "no route for grpc.test/x 100%25"
        );
        assert!(r.body().is_end_stream());
        assert_eq!(percent_encode("é\n"), "%C3%A9%0A");
    }

    #[test]
    fn proxy_errors_map_to_grpc_codes() {
        assert_eq!(code(&ProxyError::NoRoute), Code::Unimplemented);
        assert_eq!(code(&ProxyError::NoEndpoints), Code::Unavailable);
        assert_eq!(code(&ProxyError::UpstreamTimeout), Code::DeadlineExceeded);
        assert_eq!(code(&ProxyError::Forbidden), Code::PermissionDenied);
        assert_eq!(code(&ProxyError::BodyTooLarge), Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_body_past_its_deadline_ends_with_deadline_exceeded() {
        use futures::StreamExt;
        use http_body_util::BodyExt;
        // One piece, then nothing, ever.
        let stalled =
            futures::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"first")))])
                .chain(futures::stream::pending());
        let body = with_deadline(
            body::boxed(http_body_util::StreamBody::new(stalled)),
            tokio::time::Instant::now() + Duration::from_millis(50),
        );
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "4");
        assert_eq!(&collected.to_bytes()[..], b"first");
    }
}
