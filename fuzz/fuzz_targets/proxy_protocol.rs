//! Arbitrary bytes as the start of a connection from a PROXY protocol peer:
//! `proxy::proxy_protocol::parse` and `bytes_wanted` never panic; a complete header is at most
//! the input, parses the same from exactly its own bytes, and every shorter prefix of it needs
//! more bytes; reading as `read_header` does (`bytes_wanted` bytes at a time) never reads past
//! the header and reaches the same answer as parsing the whole input at once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::proxy::proxy_protocol::{bytes_wanted, parse};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Some((header, len))) = whole {
        assert!(
            len <= data.len(),
            "a header of {len} bytes in {} bytes",
            data.len()
        );
        assert_eq!(parse(&data[..len]), Ok(Some((header, len))));
        for i in 0..len {
            assert_eq!(parse(&data[..i]), Ok(None), "prefix of {i} bytes");
        }
    }
    // Read as `read_header` does: never past the header, and the same answer.
    let mut read = 0;
    loop {
        match parse(&data[..read]) {
            Ok(None) => {}
            done => {
                if whole.is_ok() || done.is_ok() {
                    assert_eq!(done, whole, "after reading {read} bytes");
                }
                break;
            }
        }
        let want = bytes_wanted(&data[..read]);
        assert!(want >= 1);
        if let Ok(Some((_, len))) = whole {
            assert!(
                read + want <= len,
                "reads {want} after {read} of a {len}-byte header"
            );
        }
        if read + want > data.len() {
            break;
        }
        read += want;
    }
});
