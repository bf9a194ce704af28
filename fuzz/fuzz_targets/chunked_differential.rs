//! Arbitrary bytes as a chunked request body, to the lean HTTP/1.1 server's decoder
//! (`sluice::proxy::h1::server`) and to hyper's HTTP/1 server: both must accept the same
//! bodies with the same bytes, and fail the same ones (the client closes after the bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::proxy::h1::reference::{block_on, hyper_chunked, ours_chunked};

fuzz_target!(|data: &[u8]| {
    // A body hyper did not decide in time is not compared.
    if let Some(hyper) = block_on(hyper_chunked(data)) {
        assert_eq!(ours_chunked(data), hyper);
    }
});
