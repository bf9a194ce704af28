//! Which TLS versions and cipher suites the HTTPS entrypoint accepts (`--tls-min-version`,
//! `--tls-cipher-suites`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::SupportedCipherSuite;
use rustls::SupportedProtocolVersion;
use rustls::crypto::{CryptoProvider, aws_lc_rs};

/// The lowest TLS version the HTTPS entrypoint accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl MinVersion {
    /// The versions rustls offers, newest first.
    pub fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS12_AND_13: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => &TLS12_AND_13,
            MinVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

impl fmt::Display for MinVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MinVersion::Tls12 => "1.2",
            MinVersion::Tls13 => "1.3",
        })
    }
}

impl FromStr for MinVersion {
    type Err = PolicyError;

    /// `1.2` or `1.3`.
    fn from_str(s: &str) -> Result<MinVersion, PolicyError> {
        match s.trim() {
            "1.2" => Ok(MinVersion::Tls12),
            "1.3" => Ok(MinVersion::Tls13),
            other => Err(PolicyError::UnknownVersion(other.to_string())),
        }
    }
}

/// What is wrong with `--tls-min-version` or `--tls-cipher-suites`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `--tls-min-version` is neither `1.2` nor `1.3`.
    #[error("--tls-min-version: unknown TLS version {0:?} (expected 1.2 or 1.3)")]
    UnknownVersion(String),
    /// A name in `--tls-cipher-suites` is not a suite of the aws-lc-rs provider.
    #[error("--tls-cipher-suites: unknown cipher suite {name:?} (known: {known})")]
    UnknownSuite {
        /// The name as given.
        name: String,
        /// The names that are known, comma-separated.
        known: String,
    },
    /// No configured cipher suite can be used with the allowed versions.
    #[error(
        "--tls-cipher-suites {suites} has no suite usable with --tls-min-version {min}: \
         add a TLS13_* suite or allow TLS 1.2"
    )]
    NoUsableSuite {
        /// The configured suites, comma-separated.
        suites: String,
        /// The minimum version.
        min: MinVersion,
    },
}

/// The TLS policy of the HTTPS entrypoint: minimum version and cipher suites.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsPolicy {
    /// The lowest version accepted.
    pub min_version: MinVersion,
    /// The cipher suites offered, in order of preference; empty: rustls's defaults.
    pub cipher_suites: Vec<SupportedCipherSuite>,
}

impl TlsPolicy {
    /// Checks the combination and builds the crypto provider: aws-lc-rs with the configured
    /// suites (or its defaults) that the allowed versions can use.
    pub fn provider(&self) -> Result<Arc<CryptoProvider>, PolicyError> {
        let base = aws_lc_rs::default_provider();
        let wanted = if self.cipher_suites.is_empty() {
            base.cipher_suites.clone()
        } else {
            self.cipher_suites.clone()
        };
        let versions = self.min_version.versions();
        let usable: Vec<SupportedCipherSuite> = wanted
            .iter()
            .copied()
            .filter(|s| versions.iter().any(|v| v.version == s.version().version))
            .collect();
        if usable.is_empty() {
            return Err(PolicyError::NoUsableSuite {
                suites: names(&wanted),
                min: self.min_version,
            });
        }
        Ok(Arc::new(CryptoProvider {
            cipher_suites: usable,
            ..base
        }))
    }
}

/// The rustls name of a cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
pub fn suite_name(suite: SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// Parses `--tls-cipher-suites`: comma-separated rustls names (case-insensitive, blanks
/// around names ignored), in order of preference. An empty value is an empty list (rustls's
/// defaults); a repeated name counts once.
pub fn parse_cipher_suites(value: &str) -> Result<Vec<SupportedCipherSuite>, PolicyError> {
    let mut suites: Vec<SupportedCipherSuite> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let suite = aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .copied()
            .find(|s| suite_name(*s).eq_ignore_ascii_case(name))
            .ok_or_else(|| PolicyError::UnknownSuite {
                name: name.to_string(),
                known: names(aws_lc_rs::ALL_CIPHER_SUITES),
            })?;
        if !suites.iter().any(|s| s.suite() == suite.suite()) {
            suites.push(suite);
        }
    }
    Ok(suites)
}

fn names(suites: &[SupportedCipherSuite]) -> String {
    suites
        .iter()
        .map(|s| suite_name(*s))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_version_parses_1_2_and_1_3_only() {
        assert_eq!("1.2".parse(), Ok(MinVersion::Tls12));
        assert_eq!("1.3".parse(), Ok(MinVersion::Tls13));
        let err = "1.1".parse::<MinVersion>().unwrap_err();
        assert_eq!(err, PolicyError::UnknownVersion("1.1".into()));
        assert!(err.to_string().contains("--tls-min-version"), "{err}");
        assert!(err.to_string().contains("\"1.1\""), "{err}");
    }

    #[test]
    fn cipher_suites_parse_rustls_names_in_order() {
        let s = parse_cipher_suites(
            "TLS13_AES_256_GCM_SHA384, tls_ecdhe_ecdsa_with_aes_128_gcm_sha256,TLS13_AES_256_GCM_SHA384",
        )
        .unwrap();
        let names: Vec<String> = s.iter().map(|s| suite_name(*s)).collect();
        assert_eq!(
            names,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        assert!(parse_cipher_suites("").unwrap().is_empty());
        assert!(parse_cipher_suites(" , ").unwrap().is_empty());
    }

    #[test]
    fn unknown_cipher_suite_is_an_error_naming_flag_and_value() {
        let err = parse_cipher_suites("TLS13_AES_128_GCM_SHA256,RC4_MD5").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--tls-cipher-suites"), "{text}");
        assert!(text.contains("\"RC4_MD5\""), "{text}");
        assert!(
            text.contains("TLS13_AES_128_GCM_SHA256"),
            "lists known names: {text}"
        );
    }

    #[test]
    fn tls12_suites_with_min_version_1_3_are_refused() {
        let policy = TlsPolicy {
            min_version: MinVersion::Tls13,
            cipher_suites: parse_cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").unwrap(),
        };
        let err = policy.provider().unwrap_err();
        assert!(matches!(err, PolicyError::NoUsableSuite { .. }), "{err:?}");
        assert!(err.to_string().contains("--tls-min-version 1.3"), "{err}");
    }

    #[test]
    fn provider_keeps_only_suites_of_allowed_versions() {
        let policy = TlsPolicy {
            min_version: MinVersion::Tls13,
            cipher_suites: parse_cipher_suites(
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS13_AES_256_GCM_SHA384",
            )
            .unwrap(),
        };
        let p = policy.provider().unwrap();
        let names: Vec<String> = p.cipher_suites.iter().map(|s| suite_name(*s)).collect();
        assert_eq!(names, ["TLS13_AES_256_GCM_SHA384"]);
        let default = TlsPolicy::default().provider().unwrap();
        assert_eq!(
            default.cipher_suites.len(),
            aws_lc_rs::default_provider().cipher_suites.len()
        );
    }
}
