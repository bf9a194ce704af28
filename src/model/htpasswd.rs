//! htpasswd files, as nginx's `auth_basic_user_file` reads them (ingress-nginx's `auth-type:
//! basic` with an `auth-secret`): one `user:hash` per line, `#` comments and blank lines
//! skipped. Hash schemes understood:
//!
//! - bcrypt, `$2y$`, `$2a$`, `$2b$`, `$2x$` (`htpasswd -B`);
//! - Apache's MD5 `$apr1$` (`htpasswd -m`, the default of older `htpasswd`) and the MD5-crypt
//!   `$1$` it derives from (`openssl passwd -1`);
//! - `{SHA}`: base64 of the password's SHA-1 (`htpasswd -s`);
//! - `{PLAIN}`: the password itself (nginx's plain scheme; for tests only).
//!
//! DES crypt (13 characters, `htpasswd -d`) and the SHA-crypt `$5$`/`$6$` schemes are refused
//! by name: that user cannot log in (fail closed), and the rest of the file applies.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use md5::Digest as _;

/// The highest bcrypt cost accepted: 2^14 rounds, around a second of CPU per check here.
/// Higher costs (up to 31, days per check) would let whoever writes the Secret stall logins.
pub const MAX_BCRYPT_COST: u32 = 14;

/// A stored password hash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PasswordHash {
    /// A bcrypt hash as written (`$2y$10$...`).
    Bcrypt(String),
    /// MD5-crypt: `magic` is `$apr1$` or `$1$`, then the salt (at most 8 characters) and the
    /// 22-character digest.
    Md5Crypt {
        /// `$apr1$` or `$1$`.
        magic: &'static str,
        /// The salt.
        salt: String,
        /// The encoded digest.
        digest: String,
    },
    /// `{SHA}`: SHA-1 of the password.
    Sha1([u8; 20]),
    /// `{PLAIN}`: the password.
    Plain(String),
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print hashes (or plain passwords) into logs or diagnostics.
        f.write_str(self.scheme())
    }
}

impl PasswordHash {
    /// Parses one stored hash.
    pub fn parse(stored: &str) -> Result<PasswordHash, String> {
        let stored = stored.trim();
        if let Some(rest) = stored.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| "{SHA}: not base64".to_string())?;
            let digest: [u8; 20] = bytes
                .try_into()
                .map_err(|_| "{SHA}: not a 20-byte SHA-1 digest".to_string())?;
            return Ok(PasswordHash::Sha1(digest));
        }
        if let Some(rest) = stored.strip_prefix("{PLAIN}") {
            return Ok(PasswordHash::Plain(rest.to_string()));
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = stored.strip_prefix(magic) {
                let (salt, digest) = rest
                    .split_once('$')
                    .ok_or_else(|| format!("{magic}: no '$' after the salt"))?;
                if salt.len() > 8 || digest.len() != 22 {
                    return Err(format!("{magic}: malformed salt or digest"));
                }
                return Ok(PasswordHash::Md5Crypt {
                    magic: if magic == "$1$" { "$1$" } else { "$apr1$" },
                    salt: salt.to_string(),
                    digest: digest.to_string(),
                });
            }
        }
        if ["$2y$", "$2a$", "$2b$", "$2x$"]
            .iter()
            .any(|p| stored.starts_with(p))
        {
            // Checked now, so that a malformed hash is reported rather than failing each
            // login.
            let parts = stored
                .parse::<bcrypt::HashParts>()
                .map_err(|e| format!("bcrypt: {e}"))?;
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(format!(
                    "bcrypt cost {} is over {MAX_BCRYPT_COST}: each login would take seconds \
                     of CPU (htpasswd -B uses 5)",
                    parts.get_cost()
                ));
            }
            return Ok(PasswordHash::Bcrypt(stored.to_string()));
        }
        if stored.starts_with("$5$") || stored.starts_with("$6$") {
            return Err("SHA-crypt ($5$, $6$) is not supported: use bcrypt (htpasswd -B)".into());
        }
        if stored.len() == 13 && !stored.starts_with('$') {
            return Err("DES crypt is not supported: use bcrypt (htpasswd -B)".into());
        }
        Err("not a hash sluice knows (bcrypt, $apr1$, $1$, {SHA}, {PLAIN})".into())
    }

    /// The scheme's name, for messages.
    pub fn scheme(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Md5Crypt { magic: "$1$", .. } => "md5-crypt",
            PasswordHash::Md5Crypt { .. } => "apr1",
            PasswordHash::Sha1(_) => "sha1",
            PasswordHash::Plain(_) => "plain",
        }
    }

    /// True for schemes slow enough (bcrypt: milliseconds) that checking must not run on an
    /// async worker thread.
    pub fn is_slow(&self) -> bool {
        matches!(self, PasswordHash::Bcrypt(_))
    }

    /// Does `password` match? Comparisons of digests take the same time whatever differs.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Md5Crypt {
                magic,
                salt,
                digest,
            } => {
                let got = md5_crypt(password, salt.as_bytes(), magic.as_bytes());
                constant_eq(got.as_bytes(), digest.as_bytes())
            }
            PasswordHash::Sha1(want) => {
                let got = aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    password,
                );
                constant_eq(got.as_ref(), want)
            }
            PasswordHash::Plain(p) => constant_eq(password, p.as_bytes()),
        }
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The MD5-crypt digest (22 characters) of `password` with `salt` and `magic` (`$1$` or
/// `$apr1$`), as Poul-Henning Kamp's algorithm and Apache's `apr_md5_encode` compute it.
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let mut alt = md5::Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = md5::Md5::new();
    ctx.update(password);
    ctx.update(magic);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();
    for round in 0..1000 {
        let mut c = md5::Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize().into();
    }
    const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(22);
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    put((b(0) << 16) | (b(6) << 8) | b(12), 4);
    put((b(1) << 16) | (b(7) << 8) | b(13), 4);
    put((b(2) << 16) | (b(8) << 8) | b(14), 4);
    put((b(3) << 16) | (b(9) << 8) | b(15), 4);
    put((b(4) << 16) | (b(10) << 8) | b(5), 4);
    put(b(11), 2);
    out
}

/// A problem on one line of an htpasswd file (1-based line number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// The line.
    pub line: usize,
    /// The user it names, when it got that far.
    pub user: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Parses an htpasswd file: the users whose lines parse, and a [`LineError`] for each line
/// that does not (its user cannot log in). A user listed twice keeps the first line, as
/// nginx does.
pub fn parse_file(text: &str) -> (BTreeMap<String, PasswordHash>, Vec<LineError>) {
    let mut users = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, stored)) = line.split_once(':') else {
            errors.push(LineError {
                line: i + 1,
                user: None,
                message: "expected user:hash".into(),
            });
            continue;
        };
        // Apache's format allows a trailing `:comment` after the hash.
        let stored = stored.split(':').next().unwrap_or_default();
        if user.is_empty() {
            errors.push(LineError {
                line: i + 1,
                user: None,
                message: "empty user name".into(),
            });
            continue;
        }
        match PasswordHash::parse(stored) {
            Ok(h) => {
                users.entry(user.to_string()).or_insert(h);
            }
            Err(message) => errors.push(LineError {
                line: i + 1,
                user: Some(user.to_string()),
                message,
            }),
        }
    }
    (users, errors)
}

/// The user and password of an `Authorization: Basic` header value; `None` when it is not
/// one (other schemes, bad base64, no `:`).
pub fn basic_credentials(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with Apache's htpasswd 2.4 and OpenSSL 3.0 (Debian 12):
    //   htpasswd -nbB -C 4 alice 'wonder land'; htpasswd -nbm bob 's3cret!';
    //   htpasswd -nbs carol 'pa:ss'; openssl passwd -1 -salt saltsalt 'md5 pass';
    //   htpasswd -nbd eve des
    const FILE: &str = "\
# team
alice:$2y$04$hWjOiOeKl3nuTmER1WHQ6.1ljvpYsD81R6acPFgiWY1LnM98rjmAq
bob:$apr1$H6AKijlz$D2DNXKmLGKL6kTDCF6D0q/

carol:{SHA}XyRLaTIb/WCdo8CuWc58gPVHl68=
frank:$1$saltsalt$W/uBYzxn7HLWgPHq7qHfe0
gina:{PLAIN}open sesame
eve:qWqBQm7Y39ZUk
broken
bob:{PLAIN}second line ignored
";

    #[test]
    fn every_scheme_verifies_what_its_tool_wrote() {
        let (users, errors) = parse_file(FILE);
        let ok = |u: &str, p: &str| users[u].verify(p.as_bytes());
        assert!(ok("alice", "wonder land"));
        assert!(!ok("alice", "wonder lane"));
        assert!(ok("bob", "s3cret!"));
        assert!(!ok("bob", "s3cret"));
        assert!(!ok("bob", "second line ignored"));
        assert!(ok("carol", "pa:ss"));
        assert!(!ok("carol", "pa"));
        assert!(ok("frank", "md5 pass"));
        assert!(ok("gina", "open sesame"));
        assert!(!ok("gina", "open"));
        assert_eq!(
            users.values().map(PasswordHash::scheme).collect::<Vec<_>>(),
            ["bcrypt", "apr1", "sha1", "md5-crypt", "plain"]
        );
        assert_eq!(
            errors
                .iter()
                .map(|e| (e.line, e.user.as_deref()))
                .collect::<Vec<_>>(),
            [(8, Some("eve")), (9, None)]
        );
        assert!(errors[0].message.contains("DES"), "{}", errors[0].message);
        assert!(!users.contains_key("eve"));
    }

    #[test]
    fn md5_crypt_matches_known_vectors() {
        // openssl passwd -apr1 -salt H6AKijlz 's3cret!'
        assert_eq!(
            md5_crypt(b"s3cret!", b"H6AKijlz", b"$apr1$"),
            "D2DNXKmLGKL6kTDCF6D0q/"
        );
        // A password longer than 16 bytes exercises the alternate-sum loop twice.
        let long = md5_crypt(b"0123456789abcdefghij", b"ab", b"$1$");
        assert_eq!(long.len(), 22);
    }

    #[test]
    fn malformed_hashes_are_named() {
        for (stored, needle) in [
            ("{SHA}!!", "base64"),
            ("{SHA}YQ==", "20-byte"),
            ("$apr1$toolongsalt$D2DNXKmLGKL6kTDCF6D0q/", "malformed"),
            ("$2y$04$short", "bcrypt"),
            ("$6$salt$hash", "SHA-crypt"),
            (
                "$2y$15$TnbsZ9ygA/gZVsC8P4zFmecAw87pICRgxgS4cSbjk48HboZYL9nk6",
                "cost 15",
            ),
            ("whatever-this-is", "not a hash"),
        ] {
            let e = PasswordHash::parse(stored).unwrap_err();
            assert!(e.contains(needle), "{stored}: {e}");
        }
    }

    #[test]
    fn basic_credentials_are_decoded() {
        assert_eq!(
            basic_credentials(b"Basic YWxpY2U6d29uZGVyIGxhbmQ="),
            Some(("alice".into(), b"wonder land".to_vec()))
        );
        assert_eq!(
            basic_credentials(b"basic   Y2Fyb2w6cGE6c3M="),
            Some(("carol".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(b"Basic YWxpY2U="), None);
    }

    #[test]
    fn debug_output_never_shows_the_hash() {
        let (users, _) = parse_file(FILE);
        let shown = format!("{users:?}");
        assert!(
            !shown.contains("open sesame") && !shown.contains("$2y$"),
            "{shown}"
        );
    }
}
