//! DNS names as Route53 stores them and as sluice compares them.
//!
//! Route53 returns names fully qualified (`www.example.com.`) and escapes every character
//! outside `a-z0-9-_.` as a three-digit octal code: a wildcard comes back as
//! `\052.example.com.`. sluice keeps names in one form everywhere: escapes decoded, ASCII
//! lower-cased, no trailing dot (`*.example.com`). [`normalize`] is the one function that
//! makes that form; writes add the trailing dot back with [`fqdn`].

/// The internal form of a name: Route53 octal escapes decoded (`\052` -> `*`), ASCII
/// lower-cased, one trailing dot removed.
pub fn normalize(name: &str) -> String {
    let mut out = unescape_octal(name);
    out.make_ascii_lowercase();
    if out.ends_with('.') {
        out.pop();
    }
    out
}

/// Decodes Route53's `\ddd` escapes (three octal digits, at most `\377`). A backslash not
/// followed by such a code is kept as it is; bytes that do not form UTF-8 become U+FFFD.
pub fn unescape_octal(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && (b'0'..=b'7').contains(&b[i + 2])
            && (b'0'..=b'7').contains(&b[i + 3])
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name` with a trailing dot, as written to Route53.
pub fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A hosted zone id without the `/hostedzone/` prefix Route53 puts on it in some answers.
pub fn clean_zone_id(id: &str) -> &str {
    id.strip_prefix("/hostedzone/").unwrap_or(id)
}

/// True when `name` is `zone` itself or a name under it (both in the internal form).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route53_wildcard_escape_is_decoded() {
        assert_eq!(normalize("\\052.example.com."), "*.example.com");
        assert_eq!(normalize("a-\\052.Example.COM."), "a-*.example.com");
    }

    #[test]
    fn other_octal_escapes_are_decoded() {
        // \100 is '@', \040 a space, \134 a backslash.
        assert_eq!(normalize("a\\100b.example.com."), "a@b.example.com");
        assert_eq!(unescape_octal("x\\040y"), "x y");
        assert_eq!(unescape_octal("x\\134y"), "x\\y");
    }

    #[test]
    fn incomplete_or_out_of_range_escapes_are_kept() {
        assert_eq!(unescape_octal("a\\05"), "a\\05");
        assert_eq!(unescape_octal("a\\400b"), "a\\400b");
        assert_eq!(unescape_octal("a\\0x9"), "a\\0x9");
        assert_eq!(unescape_octal("trailing\\"), "trailing\\");
        assert_eq!(unescape_octal("\\052"), "*");
    }

    #[test]
    fn normalize_lowercases_and_drops_one_trailing_dot() {
        assert_eq!(normalize("WWW.Example.com."), "www.example.com");
        assert_eq!(normalize("www.example.com"), "www.example.com");
        assert_eq!(normalize("*.example.com"), "*.example.com");
    }

    #[test]
    fn fqdn_adds_the_dot_once() {
        assert_eq!(fqdn("a.example.com"), "a.example.com.");
        assert_eq!(fqdn("a.example.com."), "a.example.com.");
    }

    #[test]
    fn zone_ids_lose_their_prefix() {
        assert_eq!(clean_zone_id("/hostedzone/Z123"), "Z123");
        assert_eq!(clean_zone_id("Z123"), "Z123");
    }

    #[test]
    fn in_zone_needs_a_label_boundary() {
        assert!(in_zone("example.com", "example.com"));
        assert!(in_zone("www.example.com", "example.com"));
        assert!(in_zone("*.example.com", "example.com"));
        assert!(!in_zone("badexample.com", "example.com"));
        assert!(!in_zone("com", "example.com"));
    }
}
