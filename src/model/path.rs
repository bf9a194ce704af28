//! Ingress paths: the rule side (validated `Exact`/`Prefix` paths) and the request side
//! (normalisation of the request path before matching and forwarding).
//!
//! ## Request path normalisation
//! The path a route matched is the path forwarded (Traefik CVE-2025-32431 came from matching
//! one path and forwarding another). [`normalize_request_path`] runs once per request, before
//! lookup, and its output is both matched and sent upstream:
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
//!    escape is kept with upper-case hex (RFC 3986 §6.2.2);
//! 2. escapes that would change the path structure or reach a backend as something dangerous
//!    (`%2F` `/`, `%5C` `\`, `%00`) and malformed escapes are rejected: 400;
//! 3. runs of `/` are merged into one (as nginx's `merge_slashes on`);
//! 4. dot segments (`.`, `..`, including ones spelled `%2E`) are removed (RFC 3986 §5.2.4);
//!    `..` above the root stays at the root.

use std::borrow::Cow;
use std::fmt;

/// How a path rule compares with the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// The request path equals the rule path (case-sensitive).
    Exact,
    /// The rule path is an element-wise prefix of the request path.
    Prefix,
    /// The rule path is a regular expression matched case-insensitively from the start of the
    /// request path (ingress-nginx's `use-regex` and `rewrite-target`: nginx's `location ~*
    /// "^path"`).
    Regex,
}

impl PathKind {
    /// `Exact` or `Prefix`.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::Regex => "Regex",
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated path rule.
///
/// For [`PathKind::Prefix`] the stored path has trailing slashes removed (`/foo/` and `/foo`
/// are the same rule), except for the root `/`. Percent-escapes are normalised the same way as
/// request paths, so `/caf%c3%a9` matches a request for `/caf%C3%A9`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathMatch {
    /// Exact or Prefix (ImplementationSpecific is Prefix), or Regex (`use-regex`).
    pub kind: PathKind,
    /// The normalised rule path.
    pub path: String,
}

/// Why a rule path was rejected. The messages follow the API server's validation where it has
/// one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRuleError {
    /// Does not start with `/`.
    #[error("must be an absolute path (start with '/')")]
    NotAbsolute,
    /// Contains one of `//`, `/./`, `/../`, `%2f`, `%2F`.
    #[error("must not contain '{0}'")]
    BadSequence(&'static str),
    /// Ends with `/..` or `/.`.
    #[error("cannot end with '{0}'")]
    BadSuffix(&'static str),
    /// A segment that is `.` or `..` once percent-decoded (`%2e%2e`): it would widen the rule.
    #[error("must not contain a percent-encoded dot segment ('%2e' or '%2e%2e')")]
    EncodedDotSegment,
    /// Contains a character that is never part of a request path.
    #[error(
        "must not contain {0:?} (query strings, fragments, whitespace and control characters are not part of a path)"
    )]
    BadChar(char),
    /// A malformed or forbidden percent-escape.
    #[error("{0}")]
    Escape(RequestPathError),
    /// A regular-expression path (`use-regex`) that does not compile.
    #[error("not a valid regular expression: {0}")]
    Regex(String),
}

const BAD_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const BAD_SUFFIXES: [&str; 2] = ["/..", "/."];

impl PathMatch {
    /// Validates and normalises a rule path of the given kind.
    pub fn new(kind: PathKind, path: &str) -> Result<PathMatch, PathRuleError> {
        if !path.starts_with('/') {
            return Err(PathRuleError::NotAbsolute);
        }
        for seq in BAD_SEQUENCES {
            if path.contains(seq) {
                return Err(PathRuleError::BadSequence(seq));
            }
        }
        for suffix in BAD_SUFFIXES {
            if path.ends_with(suffix) {
                return Err(PathRuleError::BadSuffix(suffix));
            }
        }
        let decoded_dots = |seg: &str| seg.to_ascii_lowercase().replace("%2e", ".");
        if path
            .split('/')
            .any(|seg| seg.contains('%') && matches!(decoded_dots(seg).as_str(), "." | ".."))
        {
            return Err(PathRuleError::EncodedDotSegment);
        }
        if let Some(c) = path
            .chars()
            .find(|c| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control())
        {
            return Err(PathRuleError::BadChar(c));
        }
        let normalized = normalize_request_path(path).map_err(PathRuleError::Escape)?;
        let mut path = normalized.into_owned();
        if kind == PathKind::Prefix {
            while path.len() > 1 && path.ends_with('/') {
                path.pop();
            }
        }
        Ok(PathMatch { kind, path })
    }

    /// A regular-expression rule (`use-regex`): `pattern` as written, checked to start with
    /// `/`, hold no whitespace or control character and compile within [`REGEX_SIZE_LIMIT`].
    pub fn regex(pattern: &str) -> Result<PathMatch, PathRuleError> {
        if !pattern.starts_with('/') {
            return Err(PathRuleError::NotAbsolute);
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(PathRuleError::BadChar(c));
        }
        location_regex(pattern).map_err(|e| PathRuleError::Regex(regex_error(&e)))?;
        Ok(PathMatch {
            kind: PathKind::Regex,
            path: pattern.to_string(),
        })
    }

    /// Does this rule match the normalised request path `req`? (A regex rule is compiled for
    /// each call: the routing table keeps compiled ones.)
    pub fn matches(&self, req: &str) -> bool {
        match self.kind {
            PathKind::Exact => self.path == req,
            PathKind::Prefix => prefix_matches(&self.path, req),
            PathKind::Regex => location_regex(&self.path).is_ok_and(|r| r.is_match(req)),
        }
    }
}

/// The most memory one compiled path or rewrite expression may take (the regex crate's
/// `size_limit`): a pattern over it is refused rather than compiled.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// The matcher of a [`PathKind::Regex`] rule: `(?i)^pattern`, as ingress-nginx's `location ~*
/// "^pattern"` (case-insensitive, anchored at the start only). The regex crate matches in linear
/// time; look-around and back-references, which nginx's PCRE has, are refused.
pub fn location_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})"))
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// The expression of a rewrite (`rewrite-target`) of a path: `(?i)pattern`, as ingress-nginx's
/// `rewrite "(?i)pattern" target` (case-insensitive, not anchored).
pub fn rewrite_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A regex crate error on one line (its messages draw a caret under the pattern).
pub fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(_) => {
            format!("the expression compiles to more than {REGEX_SIZE_LIMIT} bytes")
        }
        other => other
            .to_string()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .map(|l| l.trim_start_matches("error:").trim().to_string())
            .next()
            .unwrap_or_else(|| other.to_string().replace('\n', " ")),
    }
}

/// Element-wise prefix match of a normalised rule path (no trailing slash unless it is `/`).
#[inline]
pub fn prefix_matches(rule: &str, req: &str) -> bool {
    rule == "/"
        || (req.starts_with(rule) && matches!(req.as_bytes().get(rule.len()), None | Some(b'/')))
}

/// Why a request path was refused (the proxy answers 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestPathError {
    /// Not origin-form (does not start with `/`).
    #[error("the request path must start with '/'")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-escape")]
    BadEscape,
    /// An escape sluice refuses to forward: `%2F`, `%5C` or `%00`.
    #[error("the encoded character %{0:02X} is not allowed in a path")]
    ForbiddenEscape(u8),
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when `path` is already in normal form, so the common case allocates nothing: no `%`,
/// no `//`, and no segment starting with `.`.
fn is_normal(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in path {
        if b == b'%' || (prev == b'/' && (b == b'/' || b == b'.')) {
            return false;
        }
        prev = b;
    }
    true
}

/// Normalises a request path (without query) as described in the module docs. The query string
/// must already be split off (anything from `?` on is ignored if present).
pub fn normalize_request_path(raw: &str) -> Result<Cow<'_, str>, RequestPathError> {
    let raw = match raw.find(['?', '#']) {
        Some(i) => &raw[..i],
        None => raw,
    };
    if !raw.starts_with('/') {
        return Err(RequestPathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    if is_normal(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    // 1 and 2: escapes.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex_val),
                bytes.get(i + 2).copied().and_then(hex_val),
            ) else {
                return Err(RequestPathError::BadEscape);
            };
            let v = h << 4 | l;
            if matches!(v, b'/' | b'\\' | 0) {
                return Err(RequestPathError::ForbiddenEscape(v));
            }
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.push(bytes[i + 1].to_ascii_uppercase());
                decoded.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    // 3 and 4: segments. Splitting on '/' and dropping empty segments merges slashes.
    let ends_with_slash = decoded.ends_with(b"/");
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded
        .split(|&c| c == b'/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut trailing = ends_with_slash;
    for (idx, seg) in segments.iter().enumerate() {
        let last = idx + 1 == segments.len();
        match *seg {
            b"." => {
                if last {
                    trailing = true;
                }
            }
            b".." => {
                out.pop();
                if last {
                    trailing = true;
                }
            }
            s => {
                out.push(s);
                if last {
                    trailing = ends_with_slash;
                }
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        // Every byte either came from a &str or is ASCII: the segments are valid UTF-8 except
        // where an escape produced a lone ASCII byte, which is still valid.
        result.push_str(&String::from_utf8_lossy(seg));
    }
    if trailing || out.is_empty() {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_request_path(p).unwrap().into_owned()
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(
            normalize_request_path("/a/b/c.html"),
            Ok(Cow::Borrowed("/a/b/c.html"))
        ));
        assert!(matches!(
            normalize_request_path("/"),
            Ok(Cow::Borrowed("/"))
        ));
        assert!(matches!(
            normalize_request_path("/a/b?x=/../"),
            Ok(Cow::Borrowed("/a/b"))
        ));
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/a/../b"), "/b");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/b/."), "/a/b/");
        assert_eq!(n("//a///b//"), "/a/b/");
        assert_eq!(n("/a/%2e%2E/b"), "/b");
        assert_eq!(n("/a/.%2e"), "/");
        assert_eq!(n("/.well-known/acme"), "/.well-known/acme");
        assert_eq!(n("/a/..b"), "/a/..b");
    }

    #[test]
    fn escapes() {
        assert_eq!(n("/%41%62%7e"), "/Ab~");
        assert_eq!(n("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(
            normalize_request_path("/a%2Fb"),
            Err(RequestPathError::ForbiddenEscape(b'/'))
        );
        assert_eq!(
            normalize_request_path("/a%5cb"),
            Err(RequestPathError::ForbiddenEscape(b'\\'))
        );
        assert_eq!(
            normalize_request_path("/a%00"),
            Err(RequestPathError::ForbiddenEscape(0))
        );
        assert_eq!(
            normalize_request_path("/a%2"),
            Err(RequestPathError::BadEscape)
        );
        assert_eq!(
            normalize_request_path("/a%zz"),
            Err(RequestPathError::BadEscape)
        );
        assert_eq!(
            normalize_request_path("a"),
            Err(RequestPathError::NotAbsolute)
        );
    }

    #[test]
    fn normalisation_is_idempotent_on_examples() {
        for p in ["/a/../b", "//x//", "/%2e/", "/a/b/..", "/caf%c3%a9/./x"] {
            let once = n(p);
            assert_eq!(n(&once), once, "{p}");
        }
    }

    #[test]
    fn rule_paths() {
        let p = PathMatch::new(PathKind::Prefix, "/foo/").unwrap();
        assert_eq!(p.path, "/foo");
        assert_eq!(PathMatch::new(PathKind::Prefix, "/").unwrap().path, "/");
        assert_eq!(
            PathMatch::new(PathKind::Exact, "/foo/").unwrap().path,
            "/foo/"
        );
        assert_eq!(
            PathMatch::new(PathKind::Exact, "foo"),
            Err(PathRuleError::NotAbsolute)
        );
        assert_eq!(
            PathMatch::new(PathKind::Exact, "/a//b"),
            Err(PathRuleError::BadSequence("//"))
        );
        assert_eq!(
            PathMatch::new(PathKind::Exact, "/a/.."),
            Err(PathRuleError::BadSuffix("/.."))
        );
        assert_eq!(
            PathMatch::new(PathKind::Prefix, "/a?b"),
            Err(PathRuleError::BadChar('?'))
        );
        assert_eq!(
            PathMatch::new(PathKind::Prefix, "/a b"),
            Err(PathRuleError::BadChar(' '))
        );
        assert!(PathMatch::new(PathKind::Prefix, "/a%zz").is_err());
        assert_eq!(
            PathMatch::new(PathKind::Prefix, "/a/%2e%2E"),
            Err(PathRuleError::EncodedDotSegment)
        );
        assert_eq!(
            PathMatch::new(PathKind::Exact, "/%2e/b"),
            Err(PathRuleError::EncodedDotSegment)
        );
        assert_eq!(
            PathMatch::new(PathKind::Exact, "/a%2eb").unwrap().path,
            "/a.b"
        );
    }
}
