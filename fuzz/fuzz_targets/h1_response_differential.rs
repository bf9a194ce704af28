//! Arbitrary bytes as an upstream's answer (the first byte picks the request's method, the
//! rest is what the upstream writes before it closes), read by the lean path's upstream
//! client (`sluice::proxy::h1::client`) and by hyper's HTTP/1 client, each over its own
//! loopback connection: both must read the same status, version, forwarded headers, body and
//! trailers, or both fail.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::proxy::h1::reference::{ResponseDecision, block_on, both_responses};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let method = match pick % 3 {
        0 => http::Method::GET,
        1 => http::Method::HEAD,
        _ => http::Method::POST,
    };
    let (ours, hyper) = block_on(both_responses(raw, method));
    // A 101 to a request that asked for no upgrade: hyper's client hands it on, the lean
    // client refuses it (tests/h1_head.rs, `an_unasked_for_switch_of_protocols_is_refused`).
    let switched = matches!(hyper, ResponseDecision::Read { status: 101, .. });
    if hyper != ResponseDecision::Undecided && ours != ResponseDecision::Undecided && !switched {
        assert_eq!(ours, hyper);
    }
});
