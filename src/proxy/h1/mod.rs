//! The lean HTTP/1.1 path (performance issue): the request head parser ([`head`], checked
//! against hyper's server by [`reference`]), the server connection built on it
//! ([`server`]) and the upstream client of plain-HTTP/1.1 backends (`client`), chosen by
//! [`ProxyConfig::http1`](crate::proxy::ProxyConfig). HTTP/2, TLS upstreams and upgrades
//! stay on hyper.

pub(crate) mod client;
pub mod head;
pub mod reference;
pub mod server;
