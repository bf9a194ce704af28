//! The lean HTTP/1.1 path (performance issue), piece by piece. So far: the request head parser
//! ([`head`]), checked against hyper's server by [`reference`]. Nothing on the serving path
//! uses it yet: requests are still served by hyper (see docs/architecture.md, "Next").

pub mod head;
pub mod reference;
