//! Path rewriting: ingress-nginx's `rewrite-target`, which nginx applies as `rewrite
//! "(?i)<path>" <target> break;` in the location of each path of the Ingress.
//!
//! When the path's expression matches the normalised request path (anywhere: it is not
//! anchored), the whole path is replaced by the target with `$1` to `$9` replaced by the
//! expression's groups (an unmatched group is empty). The query follows nginx's rule: a target
//! without `?` keeps the request's query; a target with `?` sets its own, followed by `&` and the
//! request's unless the target ends with `?`. The result is normalised again (no dot segment
//! or doubled slash reaches the upstream, whatever the groups held).

use crate::model::path::{RequestPathError, normalize_request_path, rewrite_regex};

/// A compiled rewrite of one route.
#[derive(Debug, Clone)]
pub struct Rewrite {
    regex: regex::Regex,
    target: Box<str>,
}

/// Why a rewrite target is refused.
pub fn check_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("must not be empty".into());
    }
    if target.starts_with("http://") || target.starts_with("https://") {
        return Err(
            "a target with a scheme is a redirect in nginx; use permanent-redirect or \
             temporal-redirect"
                .into(),
        );
    }
    if !(target.starts_with('/') || target.starts_with('$')) {
        return Err("must start with '/' or a group reference such as $1".into());
    }
    let bytes = target.as_bytes();
    let mut literal = String::with_capacity(target.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'$' {
            match bytes.get(i + 1) {
                Some(d) if d.is_ascii_digit() && *d != b'0' => i += 2,
                _ => {
                    return Err(format!(
                        "{:?} at byte {i}: only the group references $1 to $9 are supported",
                        &target[i..]
                    ));
                }
            }
            continue;
        }
        literal.push(b as char);
        i += 1;
    }
    let rooted = if literal.starts_with('/') {
        literal.clone()
    } else {
        format!("/{literal}")
    };
    if !literal.is_ascii() || http::uri::PathAndQuery::try_from(rooted.as_str()).is_err() {
        return Err(
            "contains characters that are not allowed in a URL (percent-encode them)".into(),
        );
    }
    if literal.contains('#') {
        return Err("must not contain '#'".into());
    }
    Ok(())
}

impl Rewrite {
    /// The rewrite of a route whose path (expression) is `pattern` to `target` (checked with
    /// [`check_target`]).
    pub fn new(pattern: &str, target: &str) -> Result<Rewrite, String> {
        check_target(target)?;
        let regex = rewrite_regex(pattern).map_err(|e| crate::model::path::regex_error(&e))?;
        Ok(Rewrite {
            regex,
            target: target.into(),
        })
    }

    /// The target, as written.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path and query sent upstream for a request whose normalised path is `path` and query
    /// `query`; `Ok(None)` when the expression does not match (the request goes as it came).
    pub fn apply(
        &self,
        path: &str,
        query: Option<&str>,
    ) -> Result<Option<String>, RequestPathError> {
        let Some(caps) = self.regex.captures(path) else {
            return Ok(None);
        };
        let mut out = String::with_capacity(self.target.len() + path.len());
        let bytes = self.target.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], bytes.get(i + 1)) {
                (b'$', Some(d)) if d.is_ascii_digit() => {
                    let group = usize::from(d - b'0');
                    out.push_str(caps.get(group).map_or("", |m| m.as_str()));
                    i += 2;
                }
                _ => {
                    // The target is ASCII-checked text: copy up to the next `$`.
                    let end = self.target[i + 1..]
                        .find('$')
                        .map_or(bytes.len(), |j| i + 1 + j);
                    out.push_str(&self.target[i..end]);
                    i = end;
                }
            }
        }
        let (new_path, new_query) = match out.split_once('?') {
            None => (out.as_str(), query.map(str::to_owned)),
            Some((p, "")) => (p, None),
            Some((p, q)) => (
                p,
                Some(match query {
                    Some(orig) if !orig.is_empty() => format!("{q}&{orig}"),
                    _ => q.to_owned(),
                }),
            ),
        };
        let rooted;
        let new_path = if new_path.starts_with('/') {
            new_path
        } else {
            rooted = format!("/{new_path}");
            &rooted
        };
        let normalised = normalize_request_path(new_path)?;
        Ok(Some(match new_query {
            Some(q) => format!("{normalised}?{q}"),
            None => normalised.into_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(pattern: &str, target: &str, path: &str, query: Option<&str>) -> Option<String> {
        Rewrite::new(pattern, target)
            .unwrap()
            .apply(path, query)
            .unwrap()
    }

    #[test]
    fn ingress_nginx_documentation_examples() {
        // docs/examples/rewrite: path /something(/|$)(.*), rewrite-target /$2.
        let p = "/something(/|$)(.*)";
        assert_eq!(rw(p, "/$2", "/something", None).as_deref(), Some("/"));
        assert_eq!(rw(p, "/$2", "/something/", None).as_deref(), Some("/"));
        assert_eq!(
            rw(p, "/$2", "/something/new", None).as_deref(),
            Some("/new")
        );
        // Case-insensitive, as nginx's `(?i)`.
        assert_eq!(
            rw(p, "/$2", "/SOMETHING/new", Some("a=1")).as_deref(),
            Some("/new?a=1")
        );
        // Not anchored: the whole path is replaced when the expression occurs anywhere.
        assert_eq!(
            rw(p, "/$2", "/x/something/new", None).as_deref(),
            Some("/new")
        );
        assert_eq!(rw(p, "/$2", "/other", None), None);
    }

    #[test]
    fn a_target_without_groups_replaces_the_whole_path() {
        assert_eq!(rw("/api", "/", "/api/users", None).as_deref(), Some("/"));
    }

    #[test]
    fn query_rules_follow_nginx() {
        let p = "/a/(.*)";
        assert_eq!(
            rw(p, "/b/$1?x=1", "/a/c", Some("q=2")).as_deref(),
            Some("/b/c?x=1&q=2")
        );
        assert_eq!(
            rw(p, "/b/$1?x=1", "/a/c", None).as_deref(),
            Some("/b/c?x=1")
        );
        assert_eq!(
            rw(p, "/b/$1?", "/a/c", Some("q=2")).as_deref(),
            Some("/b/c")
        );
        assert_eq!(
            rw(p, "/b/$1", "/a/c", Some("q=2")).as_deref(),
            Some("/b/c?q=2")
        );
    }

    #[test]
    fn results_are_normalised_and_rooted() {
        // Groups can assemble a dot segment that the request path did not hold.
        assert_eq!(
            rw("/(.)(.)x/(.*)", "/$1$2/$3", "/..x/etc", None).as_deref(),
            Some("/etc")
        );
        assert_eq!(rw("/a/(.*)", "$1", "/a/b", None).as_deref(), Some("/b"));
        assert_eq!(rw("/a(.*)", "/x/$1", "/a//", None).as_deref(), Some("/x/"));
        // An unmatched group is empty; $9 of a two-group expression too.
        assert_eq!(
            rw("/a(/b)?(.*)", "/$1$9$2", "/a/c", None).as_deref(),
            Some("/c")
        );
    }

    #[test]
    fn targets_are_checked() {
        assert!(check_target("/$1").is_ok());
        assert!(check_target("$1").is_ok());
        assert!(check_target("/v2/$1?x=y").is_ok());
        for bad in [
            "",
            "https://a.test/$1",
            "v2/$1",
            "/$host/$1",
            "/$0",
            "/$",
            "/a b",
            "/a#b",
        ] {
            assert!(check_target(bad).is_err(), "{bad:?}");
        }
    }
}
