//! Key authorizations (RFC 8555 section 8.1) and the DNS-01 TXT value (section 8.4), computed
//! from the account key. rustls-acme keeps its key-authorization function private and has no
//! DNS-01 helper, so these few lines are ours; a unit test checks them against rustls-acme's
//! HTTP-01 helper for the same key.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::client::AcmeError;

/// base64url without padding, as JOSE writes it.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// The JWK thumbprint (RFC 7638) of a P-256 public key given its coordinates: base64url of the
/// SHA-256 of `{"crv":"P-256","kty":"EC","x":"..","y":".."}` (members in lexical order, no
/// whitespace).
pub fn ec_p256_thumbprint(x: &[u8], y: &[u8]) -> String {
    let jwk = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b64url(x),
        b64url(y)
    );
    b64url(digest(&SHA256, jwk.as_bytes()).as_ref())
}

/// The thumbprint of an account key (ECDSA P-256, PKCS#8 DER, as
/// [`generate_account_key`](super::generate_account_key) makes).
pub fn account_thumbprint(key_pkcs8: &[u8]) -> Result<String, AcmeError> {
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key_pkcs8)
        .map_err(|e| AcmeError::AccountKey(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
    // The uncompressed point: 0x04, x (32 bytes), y (32 bytes).
    let point = key.public_key().as_ref();
    match point {
        [0x04, xy @ ..] if xy.len() == 64 => {
            let (x, y) = xy.split_at(32);
            Ok(ec_p256_thumbprint(x, y))
        }
        _ => Err(AcmeError::AccountKey(
            "unexpected public key encoding".to_string(),
        )),
    }
}

/// The key authorization of a challenge: `token "." thumbprint` (RFC 8555 section 8.1). The
/// HTTP-01 answer is exactly this text.
pub fn key_authorization(token: &str, thumbprint: &str) -> String {
    format!("{token}.{thumbprint}")
}

/// The DNS-01 TXT record value: base64url(SHA-256(key authorization)) (RFC 8555 section 8.4).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    b64url(digest(&SHA256, key_authorization.as_bytes()).as_ref())
}

/// The DNS-01 record name for an identifier: `_acme-challenge.<name>`, the wildcard label
/// removed (a certificate for `*.example.com` is validated at `_acme-challenge.example.com`).
pub fn dns01_record_name(identifier: &str) -> String {
    let base = identifier.strip_prefix("*.").unwrap_or(identifier);
    format!("_acme-challenge.{}", base.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7517 appendix A.1's P-256 public key and RFC 8555 section 8.3's example token; the
    /// expected values were computed independently (Python's hashlib and base64).
    #[test]
    fn worked_example() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B;
        let x = B
            .decode("MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4")
            .unwrap();
        let y = B
            .decode("4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM")
            .unwrap();
        let thumb = ec_p256_thumbprint(&x, &y);
        assert_eq!(thumb, "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
        let ka = key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", &thumb);
        assert_eq!(
            ka,
            "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
        );
        assert_eq!(
            dns01_txt_value(&ka),
            "1fCS1lh6WLuBWbvkmdEhdymEvTR8MuI63XqlRVleM9Q"
        );
    }

    #[test]
    fn matches_rustls_acme_for_an_account_key() {
        use rustls_acme::acme::{Account, Challenge, ChallengeType, Directory};
        let pkcs8 = Account::generate_key_pair();
        let thumb = account_thumbprint(&pkcs8).unwrap();
        let account = Account {
            key_pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap(),
            directory: Directory {
                new_nonce: String::new(),
                new_account: String::new(),
                new_order: String::new(),
            },
            kid: String::new(),
        };
        let challenge = Challenge {
            typ: ChallengeType::Http01,
            url: String::new(),
            token: "tok-123".to_string(),
            error: None,
        };
        let (_, theirs) = account.http_01(std::slice::from_ref(&challenge)).unwrap();
        assert_eq!(key_authorization("tok-123", &thumb), theirs);
    }

    #[test]
    fn record_names() {
        assert_eq!(
            dns01_record_name("example.com"),
            "_acme-challenge.example.com"
        );
        assert_eq!(
            dns01_record_name("*.example.com"),
            "_acme-challenge.example.com"
        );
        assert_eq!(
            dns01_record_name("a.example.com."),
            "_acme-challenge.a.example.com"
        );
    }

    #[test]
    fn bad_account_keys_are_errors() {
        assert!(matches!(
            account_thumbprint(b"nope"),
            Err(AcmeError::AccountKey(_))
        ));
    }
}
