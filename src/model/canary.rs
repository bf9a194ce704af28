//! Canary releases, as ingress-nginx's `canary` annotations split traffic: a second Ingress
//! marked `canary: "true"` names the same host and path as a main Ingress and sends part of
//! its requests to another Service.

use std::sync::Arc;

use super::{Backend, ObjectRef};

/// When a request goes to the canary (ingress-nginx's `trafficShapingPolicy`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CanaryRule {
    /// `canary-by-header`: a request header that decides.
    pub header: Option<http::HeaderName>,
    /// `canary-by-header-value`: the value of `header` that means canary (without it,
    /// `always` and `never` decide).
    pub header_value: Option<String>,
    /// `canary-by-cookie`: a cookie whose value `always` or `never` decides.
    pub cookie: Option<String>,
    /// `canary-weight`: requests out of `total` sent to the canary when neither header nor
    /// cookie decided.
    pub weight: u32,
    /// `canary-weight-total` (default 100).
    pub total: u32,
}

impl CanaryRule {
    /// Whether a request with `headers` goes to the canary, in ingress-nginx's order: the
    /// header (its `canary-by-header-value`, else `always`/`never`; any other value does not
    /// decide), then the cookie (`always`/`never`), then the weight: `roll` is a uniform random
    /// number in `0..total`, and the canary gets the request when it is below `weight`.
    pub fn choose(&self, headers: &http::HeaderMap, roll: u32) -> bool {
        if let Some(name) = &self.header
            && let Some(v) = headers.get(name).and_then(|v| v.to_str().ok())
        {
            match &self.header_value {
                Some(want) => {
                    if v == want {
                        return true;
                    }
                }
                None => match v {
                    "always" => return true,
                    "never" => return false,
                    _ => {}
                },
            }
        }
        if let Some(name) = &self.cookie {
            match cookie(headers, name) {
                Some("always") => return true,
                Some("never") => return false,
                _ => {}
            }
        }
        roll < self.weight
    }
}

impl std::fmt::Display for CanaryRule {
    /// `header canary (always/never), cookie c, weight 10/100`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(h) = &self.header {
            match &self.header_value {
                Some(v) => write!(f, "header {h}={v}, ")?,
                None => write!(f, "header {h} (always/never), ")?,
            }
        }
        if let Some(c) = &self.cookie {
            write!(f, "cookie {c} (always/never), ")?;
        }
        write!(f, "weight {}/{}", self.weight, self.total)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one).
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

/// The canary of one route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    /// The canary Ingress.
    pub ingress: ObjectRef,
    /// Where canary requests go: the canary Ingress's Service, with the main Ingress's
    /// settings (as ingress-nginx, only the load balancer is the canary's own).
    pub backend: Arc<Backend>,
    /// When.
    pub rule: CanaryRule,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CanaryRule {
        CanaryRule {
            header: Some(http::HeaderName::from_static("x-canary")),
            header_value: None,
            cookie: Some("canary".into()),
            weight: 10,
            total: 100,
        }
    }

    fn headers(list: &[(&'static str, &str)]) -> http::HeaderMap {
        list.iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn header_then_cookie_then_weight() {
        let r = rule();
        let none = headers(&[]);
        assert!(r.choose(&none, 9) && !r.choose(&none, 10));
        assert!(r.choose(&headers(&[("x-canary", "always")]), 99));
        assert!(!r.choose(&headers(&[("x-canary", "never")]), 0));
        // Another value does not decide: the cookie does, then the weight.
        assert!(r.choose(
            &headers(&[("x-canary", "maybe"), ("cookie", "a=1; canary=always")]),
            99
        ));
        assert!(!r.choose(&headers(&[("cookie", "canary=never")]), 0));
        assert!(r.choose(&headers(&[("cookie", "canary=other")]), 0));
        // The header wins over the cookie.
        assert!(!r.choose(
            &headers(&[("x-canary", "never"), ("cookie", "canary=always")]),
            0
        ));
    }

    #[test]
    fn a_header_value_replaces_always_and_never() {
        let r = CanaryRule {
            header_value: Some("us-east".into()),
            weight: 0,
            ..rule()
        };
        assert!(r.choose(&headers(&[("x-canary", "us-east")]), 99));
        assert!(!r.choose(&headers(&[("x-canary", "always")]), 0));
        assert!(!r.choose(&headers(&[("x-canary", "us-west")]), 0));
    }
}
