//! Arbitrary bytes as the byte stream of a client connection, through the HTTP/1.1 framing
//! pre-parse (`sluice::proxy::prescan::HeadScanner`). The first byte chooses how the rest is
//! split into reads. Nothing may panic, and the verdicts (heads completed, which were
//! ambiguous, HTTP/2 seen, stopped or not, a head in progress) must not depend on how the
//! stream was split: fed at once, byte by byte, and in the chosen pieces.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::proxy::prescan::HeadScanner;

/// Everything the scanner reported over the stream, fed in pieces of `sizes` (cycled).
fn run(stream: &[u8], sizes: &[usize]) -> (Vec<bool>, bool, bool, bool) {
    let mut s = HeadScanner::new();
    let mut verdicts = Vec::new();
    let mut h2 = false;
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        let scan = s.feed(piece);
        verdicts.extend((0..scan.completed).map(|k| scan.ambiguous && k + 1 == scan.completed));
        h2 |= scan.h2;
        rest = tail;
        i += 1;
    }
    (verdicts, h2, s.is_stopped(), s.in_head())
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = run(stream, &[usize::MAX]);
    assert_eq!(whole, run(stream, &[1]), "byte by byte");
    let sizes = [usize::from(seed % 7) + 1, usize::from(seed / 7 % 13) + 1, 3];
    assert_eq!(whole, run(stream, &sizes), "pieces of {sizes:?}");
});
