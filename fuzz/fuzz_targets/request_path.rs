//! `normalize_request_path` never panics, and its output is a fixed point: it starts with `/`,
//! has no empty, `.` or `..` segment, and normalising it again changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::routing::normalize_request_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    check(raw);
    // Most interesting inputs are origin-form: also try the input as one.
    check(&format!("/{raw}"));
});

fn check(raw: &str) {
    let Ok(out) = normalize_request_path(raw) else {
        return;
    };
    assert!(out.starts_with('/'), "{raw:?} -> {out:?}: not absolute");
    for bad in ["//", "/./", "/../"] {
        assert!(!out.contains(bad), "{raw:?} -> {out:?}: contains {bad:?}");
    }
    for bad in ["/.", "/.."] {
        assert!(!out.ends_with(bad), "{raw:?} -> {out:?}: ends with {bad:?}");
    }
    assert!(
        !out.contains(['?', '#']),
        "{raw:?} -> {out:?}: query or fragment left in"
    );
    match normalize_request_path(&out) {
        Ok(again) => assert_eq!(again, out, "{raw:?}: normalising twice changed the result"),
        Err(e) => panic!("{raw:?} -> {out:?}: the normal form is refused: {e}"),
    }
}
