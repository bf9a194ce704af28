//! Arbitrary text as the values of the annotations whose parsers are not covered by
//! `request_head`: a regular-expression path (`use-regex`), a `rewrite-target`, and a request
//! path to rewrite, separated by newlines; the whole text also as an htpasswd file (every
//! user's hash checked against the first line), an `Authorization` header, a header list
//! (`request-headers`) and an `upstream-hash-by` key. Nothing may panic; a path expression that is
//! accepted compiles into a routing table that looks it up; a rewrite that applies gives a
//! normalised absolute path (no `//`, no dot segment) that is a valid request target.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::model::PathMatch;
use sluice::routing::{Rewrite, normalize_request_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (users, _errors) = sluice::model::htpasswd::parse_file(text);
    for hash in users.values() {
        // bcrypt is slow by design (the cost is capped at parse time); check the cheap ones.
        if !hash.is_slow() {
            let _ = hash.verify(text.lines().next().unwrap_or_default().as_bytes());
        }
    }
    let _ = sluice::model::htpasswd::basic_credentials(data);
    if let Ok(headers) = sluice::translate::annotations::parse_header_list(text) {
        assert!(!headers.is_empty());
    }
    let _ = sluice::translate::annotations::parse_hash_by(text);
    let mut parts = text.splitn(3, '\n');
    let pattern = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let request = parts.next().unwrap_or_default();
    // Only targets a client can send (the proxy's HTTP parser refuses the others).
    let Ok(path) = normalize_request_path(request) else {
        return;
    };
    if http::uri::PathAndQuery::try_from(&*path).is_err() {
        return;
    }
    if let Ok(rule) = PathMatch::regex(pattern) {
        let _ = rule.matches(&path);
    }
    let Ok(rewrite) = Rewrite::new(pattern, target) else {
        return;
    };
    let Ok(Some(out)) = rewrite.apply(&path, Some("q=1")) else {
        return;
    };
    let (new_path, _query) = out.split_once('?').unwrap_or((&out, ""));
    assert!(new_path.starts_with('/'), "{out:?}");
    assert!(!new_path.contains("//"), "{out:?}");
    assert!(
        !new_path.split('/').any(|s| s == "." || s == ".."),
        "{out:?}: dot segment"
    );
    assert!(
        http::uri::PathAndQuery::try_from(out.as_str()).is_ok(),
        "{out:?}: not a request target"
    );
});
