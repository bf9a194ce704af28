//! Request metrics with their handles cached per backend.
//!
//! `metrics::counter!` with labels looks the series up in the recorder's registry on every
//! call, which builds (allocates) a key each time. A backend sees a handful of
//! (entrypoint, method, code) combinations, so it keeps the handles it has used in a small
//! copy-on-write list: a request reads it lock-free and only the first request of a new
//! combination goes through the registry.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Method, StatusCode};
use metrics::{Counter, Histogram, SharedString};

use super::conn::Entrypoint;

/// How many (entrypoint, method, code) combinations one backend caches; the rest go through
/// the registry on every request (correct, only slower).
const MAX_CACHED: usize = 64;

/// `sluice_requests_total` and `sluice_request_duration_seconds` for one backend (or for the
/// requests no backend answered).
#[derive(Debug)]
pub(super) struct RequestStats {
    /// `namespace/name` of the Ingress, or empty.
    pub ingress: SharedString,
    /// `namespace/name:port` of the Service, or empty.
    pub service: SharedString,
    counters: ArcSwap<Vec<(u32, Counter)>>,
    durations: [OnceLock<Histogram>; 2],
}

impl RequestStats {
    pub fn new(ingress: SharedString, service: SharedString) -> RequestStats {
        RequestStats {
            ingress,
            service,
            counters: ArcSwap::from_pointee(Vec::new()),
            durations: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// Counts one answered request and records its duration.
    pub fn record(
        &self,
        entrypoint: Entrypoint,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let (ep, method_index) = (entrypoint_index(entrypoint), method_index(method));
        let key = (ep << 15) | (method_index << 10) | u32::from(status.as_u16() & 0x3ff);
        let cached = self.counters.load();
        if let Some((_, c)) = cached.iter().find(|(k, _)| *k == key) {
            c.increment(1);
        } else {
            let c = metrics::counter!(
                "sluice_requests_total",
                "entrypoint" => entrypoint.as_str(),
                "ingress" => self.ingress.clone(),
                "service" => self.service.clone(),
                "method" => method_label(method),
                "code" => status_label(status),
            );
            c.increment(1);
            if cached.len() < MAX_CACHED {
                self.counters.rcu(|list| {
                    let mut list = Vec::clone(list);
                    if !list.iter().any(|(k, _)| *k == key) {
                        list.push((key, c.clone()));
                    }
                    Arc::new(list)
                });
            }
        }
        self.durations[ep as usize]
            .get_or_init(|| {
                metrics::histogram!(
                    "sluice_request_duration_seconds",
                    "entrypoint" => entrypoint.as_str(),
                    "ingress" => self.ingress.clone(),
                    "service" => self.service.clone(),
                )
            })
            .record(elapsed.as_secs_f64());
    }
}

fn entrypoint_index(e: Entrypoint) -> u32 {
    match e {
        Entrypoint::Http => 0,
        Entrypoint::Https => 1,
    }
}

fn method_index(m: &Method) -> u32 {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// `method` labels, indexed by [`method_index`].
const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// The `method` label: the standard methods, or `OTHER` (a client cannot create series).
pub(super) fn method_label(m: &Method) -> &'static str {
    METHOD_LABELS[method_index(m) as usize]
}

/// The `code` label without allocating for the common status codes.
fn status_label(status: StatusCode) -> SharedString {
    let s: &'static str = match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        421 => "421",
        429 => "429",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return SharedString::from(status.as_str().to_owned()),
    };
    SharedString::const_str(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_per_combination() {
        let stats = RequestStats::new("d/i".into(), "d/s:80".into());
        let codes = [200u16, 404, 503, 599, 999];
        let methods = [
            Method::GET,
            Method::POST,
            Method::from_bytes(b"PURGE").unwrap(),
        ];
        for ep in [Entrypoint::Http, Entrypoint::Https] {
            for m in &methods {
                for c in codes {
                    stats.record(ep, m, StatusCode::from_u16(c).unwrap(), Duration::ZERO);
                }
            }
        }
        let n = 2 * methods.len() * codes.len();
        assert_eq!(
            stats.counters.load().len(),
            n,
            "one cached handle per combination"
        );
        // Recording again reuses the handles.
        stats.record(
            Entrypoint::Http,
            &Method::GET,
            StatusCode::OK,
            Duration::ZERO,
        );
        assert_eq!(stats.counters.load().len(), n);
    }

    #[test]
    fn cache_is_bounded() {
        let stats = RequestStats::new("".into(), "".into());
        for c in 100..400u16 {
            stats.record(
                Entrypoint::Http,
                &Method::GET,
                StatusCode::from_u16(c).unwrap(),
                Duration::ZERO,
            );
        }
        assert_eq!(stats.counters.load().len(), MAX_CACHED);
    }
}
