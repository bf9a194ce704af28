//! Arbitrary bytes as a request head, to the lean HTTP/1.1 path's parser
//! (`sluice::proxy::h1::head`) and to hyper's HTTP/1 server (the one sluice serves with
//! today): when hyper decides, both must decide the same (refused with the same status, or
//! accepted with the same method, target, version, headers and body framing).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::proxy::h1::reference::{Decision, block_on, both};

fuzz_target!(|data: &[u8]| {
    let (ours, hyper) = block_on(both(data, 32 * 1024));
    // hyper waits for more of an incomplete head; a head it did not decide is not compared.
    if hyper != Decision::Undecided && ours != Decision::Undecided {
        assert_eq!(ours, hyper);
    }
});
