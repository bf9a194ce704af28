//! The lean HTTP/1.1 path (performance issue): the request head parser ([`head`], checked
//! against hyper's server by [`reference`]), the server connection built on it
//! ([`server`]) and the upstream client of plain-HTTP/1.1 backends (`client`), chosen by
//! [`ProxyConfig::http1`](crate::proxy::ProxyConfig). HTTP/2, TLS upstreams and upgrades
//! stay on hyper.

pub(crate) mod client;
pub mod head;
mod names;
pub mod reference;
pub mod server;
mod spare;

/// Why a message body failed on the lean path: which body, and what went wrong.
#[derive(Debug)]
pub(crate) struct BodyError {
    body: &'static str,
    why: &'static str,
}

impl BodyError {
    /// A client's request body.
    pub(crate) fn request(why: &'static str) -> BodyError {
        BodyError {
            body: "request body",
            why,
        }
    }

    /// An upstream's response body.
    pub(crate) fn response(why: &'static str) -> BodyError {
        BodyError {
            body: "upstream response body",
            why,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.body, self.why)
    }
}

impl std::error::Error for BodyError {}
