//! The lean HTTP/1.1 path (performance issue): the request head parser ([`head`], checked
//! against hyper's server by [`reference`]) and the server connection built on it
//! ([`server`]), chosen by [`ProxyConfig::http1`](crate::proxy::ProxyConfig). HTTP/2 and
//! the upstream side stay on hyper.

pub mod head;
pub mod reference;
pub mod server;
