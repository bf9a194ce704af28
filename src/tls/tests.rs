use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::SignatureAlgorithm;
use rustls::sign::CertifiedKey;

use super::*;
use crate::model::{HostMatch, Kind, ObjectRef, Reason, Severity, TlsHost};

const RSA_PKCS1: &str = include_str!("testdata/rsa2048.pkcs1.pem");
const RSA_PKCS8: &str = include_str!("testdata/rsa2048.pkcs8.pem");
const P256_SEC1: &str = include_str!("testdata/p256.sec1.pem");
const P256_PKCS8: &str = include_str!("testdata/p256.pkcs8.pem");

/// A certificate and the key it certifies.
struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Issued {
    fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn ec_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ca(name: &str, issuer: Option<&Issued>) -> Issued {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = ec_key();
    let cert = match issuer {
        Some(i) => params.signed_by(&key, &i.cert, &i.key).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Issued { cert, key }
}

fn leaf_with(
    names: &[&str],
    key: KeyPair,
    issuer: &Issued,
    edit: impl FnOnce(&mut CertificateParams),
) -> Issued {
    let mut params =
        CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    edit(&mut params);
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

fn leaf(names: &[&str], issuer: &Issued) -> Issued {
    leaf_with(names, ec_key(), issuer, |_| {})
}

fn secret(ns: &str, name: &str, crt: &str, key: &str) -> Secret {
    let mut data = BTreeMap::new();
    data.insert("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec()));
    data.insert("tls.key".to_string(), ByteString(key.as_bytes().to_vec()));
    Secret {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data),
        ..Default::default()
    }
}

fn host(h: &str, ns: &str, secret: &str) -> TlsHost {
    TlsHost {
        host: HostMatch::parse(h).unwrap(),
        secret: ObjectRef::new(ns, secret),
        ingress: ObjectRef::new(ns, "ing"),
    }
}

fn default_cert() -> Arc<CertifiedKey> {
    default_certificate().unwrap()
}

fn leaf_der(k: &CertifiedKey) -> &[u8] {
    k.end_entity_cert().unwrap()
}

const NOW: i64 = 1_800_000_000; // 2027-01-15

#[test]
fn resolves_exact_then_wildcard_then_default() {
    let root = ca("root", None);
    let inter = ca("intermediate", Some(&root));
    let foo = leaf(&["foo.example.com", "bar.example.com"], &inter);
    let wild = leaf(&["*.wild.example.com"], &root);
    let secrets = vec![
        secret(
            "team-a",
            "foo-tls",
            &(foo.pem() + &inter.pem() + &root.pem()),
            &foo.key.serialize_pem(),
        ),
        secret("team-b", "wild-tls", &wild.pem(), &wild.key.serialize_pem()),
        secret("team-b", "unused", "garbage", "garbage"),
    ];
    let tls = vec![
        host("foo.example.com", "team-a", "foo-tls"),
        host("bar.example.com", "team-a", "foo-tls"),
        host("*.wild.example.com", "team-b", "wild-tls"),
    ];
    let default = default_cert();
    let (store, diags) = CertStore::build_at(&tls, &secrets, default.clone(), NOW);
    assert_eq!(diags, vec![], "unreferenced Secrets are not read");

    let foo_key = store.resolve(Some("foo.example.com"));
    assert_eq!(leaf_der(&foo_key), foo.cert.der().as_ref());
    assert_eq!(foo_key.cert.len(), 3, "the whole chain is served");
    for sni in ["FOO.Example.COM", "foo.example.com.", "bar.example.com"] {
        assert!(
            Arc::ptr_eq(&store.resolve(Some(sni)), &foo_key),
            "{sni}: parsed once, shared"
        );
    }
    for sni in ["a.wild.example.com", "B.WILD.example.com."] {
        assert_eq!(
            leaf_der(&store.resolve(Some(sni))),
            wild.cert.der().as_ref(),
            "{sni}"
        );
    }
    for sni in [
        None,
        Some("wild.example.com"),
        Some("a.b.wild.example.com"),
        Some(".wild.example.com"),
        Some("example.com"),
        Some("unknown.org"),
        Some(""),
        Some("."),
    ] {
        assert!(Arc::ptr_eq(&store.resolve(sni), &default), "{sni:?}");
    }
    let long = "a".repeat(300);
    assert!(Arc::ptr_eq(&store.resolve(Some(&long)), &default));

    assert!(store.covers(Some("foo.example.com"), "bar.example.com:443"));
    assert!(store.covers(Some("foo.example.com"), "FOO.example.com."));
    assert!(store.covers(Some("a.wild.example.com"), "b.wild.example.com"));
    assert!(!store.covers(Some("foo.example.com"), "a.wild.example.com"));
    assert!(!store.covers(Some("foo.example.com"), "unknown.org"));
    assert!(!store.covers(None, "foo.example.com"));
    assert!(store.covers(None, "unknown.org"));
    assert!(store.covers(Some("unknown.net"), "[::1]:8443"));
    // The same name as the handshake's, in any case, with a port or a trailing dot.
    for (sni, host) in [
        ("FOO.example.com", "foo.EXAMPLE.com:8443"),
        ("foo.example.com.", "foo.example.com"),
        ("foo.example.com", "foo.example.com.:443"),
        ("a.WILD.example.com", "a.wild.example.com"),
        ("unknown.org", "Unknown.org"),
    ] {
        assert!(store.covers(Some(sni), host), "{sni} {host}");
    }
    assert!(!store.covers(Some("a.wild.example.com"), "wild.example.com"));
    assert!(!store.covers(Some("unknown.org"), "bar.example.com"));
    assert!(!store.covers(Some("foo.example.com"), "zzz.example.com:443"));

    let expected_not_after = foo.cert.params().not_after.unix_timestamp();
    assert_eq!(
        store.not_after(),
        vec![
            (ObjectRef::new("team-a", "foo-tls"), expected_not_after),
            (
                ObjectRef::new("team-b", "wild-tls"),
                wild.cert.params().not_after.unix_timestamp()
            ),
        ]
    );
}

#[test]
fn exact_host_beats_wildcard() {
    let root = ca("root", None);
    let exact = leaf(&["a.example.com"], &root);
    let wild = leaf(&["*.example.com"], &root);
    let secrets = vec![
        secret("ns", "wild", &wild.pem(), &wild.key.serialize_pem()),
        secret("ns", "exact", &exact.pem(), &exact.key.serialize_pem()),
    ];
    let tls = vec![
        host("*.example.com", "ns", "wild"),
        host("a.example.com", "ns", "exact"),
    ];
    let (store, diags) = CertStore::build_at(&tls, &secrets, default_cert(), NOW);
    assert!(diags.is_empty());
    assert_eq!(
        leaf_der(&store.resolve(Some("a.example.com"))),
        exact.cert.der().as_ref()
    );
    assert_eq!(
        leaf_der(&store.resolve(Some("b.example.com"))),
        wild.cert.der().as_ref()
    );
    assert!(!store.covers(Some("a.example.com"), "b.example.com"));
}

#[test]
fn not_after_is_the_leaf_expiry() {
    let root = ca("root", None);
    let l = leaf_with(&["t.example.com"], ec_key(), &root, |p| {
        p.not_after = rcgen::date_time_ymd(2030, 6, 15);
    });
    let secrets = vec![secret(
        "ns",
        "t",
        &(l.pem() + &root.pem()),
        &l.key.serialize_pem(),
    )];
    let (store, diags) = CertStore::build_at(
        &[host("t.example.com", "ns", "t")],
        &secrets,
        default_cert(),
        NOW,
    );
    assert!(diags.is_empty());
    assert_eq!(
        store.not_after(),
        vec![(ObjectRef::new("ns", "t"), 1_907_712_000)]
    );
}

#[test]
fn expired_leaf_is_a_warning_and_still_served() {
    let root = ca("root", None);
    let l = leaf_with(&["old.example.com"], ec_key(), &root, |p| {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    });
    let secrets = vec![secret("ns", "old", &l.pem(), &l.key.serialize_pem())];
    let tls = [
        host("old.example.com", "ns", "old"),
        host("old2.example.com", "ns", "old"),
    ];
    let (store, diags) = CertStore::build_at(&tls, &secrets, default_cert(), NOW);
    assert_eq!(
        diags.len(),
        1,
        "one warning per Secret, not per host: {diags:?}"
    );
    let d = &diags[0];
    assert_eq!(
        (d.severity, d.reason, d.kind),
        (Severity::Warning, Reason::SecretInvalid, Kind::Secret)
    );
    assert_eq!(d.field, "data[tls.crt]");
    assert!(
        d.message.contains("expired at 2020-01-01T00:00:00Z"),
        "{}",
        d.message
    );
    assert_eq!(
        leaf_der(&store.resolve(Some("old.example.com"))),
        l.cert.der().as_ref()
    );
    assert_eq!(
        store.not_after(),
        vec![(ObjectRef::new("ns", "old"), 1_577_836_800)]
    );
    // Not expired yet at an earlier `now`.
    let (_, diags) = CertStore::build_at(&tls, &secrets, default_cert(), 1_577_836_799);
    assert!(diags.is_empty());
}

/// Builds a store from one Secret for `h.example.com`; returns the only diagnostic and checks
/// the host falls back to the default certificate.
fn single_error(crt: &str, key: &str) -> crate::model::Diagnostic {
    let secrets = vec![secret("team-a", "web-tls", crt, key)];
    let tls = [
        host("h.example.com", "team-a", "web-tls"),
        host("*.example.com", "team-a", "web-tls"),
    ];
    let default = default_cert();
    let (store, mut diags) = CertStore::build_at(&tls, &secrets, default.clone(), NOW);
    assert!(Arc::ptr_eq(&store.resolve(Some("h.example.com")), &default));
    assert!(Arc::ptr_eq(&store.resolve(Some("x.example.com")), &default));
    assert!(store.not_after().is_empty());
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = diags.remove(0);
    assert_eq!(
        (d.severity, d.reason, d.kind),
        (Severity::Error, Reason::SecretInvalid, Kind::Secret)
    );
    assert_eq!(d.object, ObjectRef::new("team-a", "web-tls"));
    assert!(
        d.to_string()
            .starts_with("Secret team-a/web-tls: data[tls."),
        "{d}"
    );
    assert!(
        d.message.contains("served with the default certificate"),
        "{}",
        d.message
    );
    d
}

#[test]
fn wrong_chain_order_is_reported() {
    let root = ca("root", None);
    let inter = ca("intermediate", Some(&root));
    let l = leaf(&["h.example.com"], &inter);
    let d = single_error(&(inter.pem() + &l.pem()), &l.key.serialize_pem());
    assert_eq!(d.field, "data[tls.crt]");
    assert!(
        d.message
            .contains("certificate 1 in tls.crt was not issued by certificate 2"),
        "{d}"
    );

    // Leaf, root, intermediate: the second link is wrong.
    let d = single_error(
        &(l.pem() + &root.pem() + &inter.pem()),
        &l.key.serialize_pem(),
    );
    assert!(
        d.message
            .contains("certificate 1 in tls.crt was not issued by certificate 2"),
        "{d}"
    );
    let d = single_error(
        &(l.pem() + &inter.pem() + &inter.pem()),
        &l.key.serialize_pem(),
    );
    assert!(
        d.message
            .contains("certificate 2 in tls.crt was not issued by certificate 3"),
        "{d}"
    );
}

#[test]
fn mismatched_key_is_reported() {
    let root = ca("root", None);
    let l = leaf(&["h.example.com"], &root);
    let d = single_error(&l.pem(), &ec_key().serialize_pem());
    assert_eq!(d.field, "data[tls.key]");
    assert!(
        d.message
            .contains("does not belong to the first certificate"),
        "{d}"
    );
    // An RSA key for an ECDSA certificate.
    let d = single_error(&l.pem(), RSA_PKCS1);
    assert_eq!(d.field, "data[tls.key]");
    assert!(d.message.contains("does not belong"), "{d}");
}

#[test]
fn garbage_is_reported_without_panicking() {
    let root = ca("root", None);
    let l = leaf(&["h.example.com"], &root);
    let key = l.key.serialize_pem();
    let pem_of =
        |label: &str, b64: &str| format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n");

    let cases: Vec<(String, String, &str, &str)> = vec![
        (
            "not pem at all".into(),
            key.clone(),
            "data[tls.crt]",
            "no PEM certificate",
        ),
        (
            String::new(),
            key.clone(),
            "data[tls.crt]",
            "no PEM certificate",
        ),
        (
            key.clone(),
            key.clone(),
            "data[tls.crt]",
            "no PEM certificate",
        ),
        (
            pem_of("CERTIFICATE", "!!!!"),
            key.clone(),
            "data[tls.crt]",
            "not valid PEM",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nMIIB\n".into(),
            key.clone(),
            "data[tls.crt]",
            "not valid PEM",
        ),
        (
            pem_of("CERTIFICATE", "aGVsbG8gd29ybGQ="),
            key.clone(),
            "data[tls.crt]",
            "not a valid X.509",
        ),
        (
            l.pem() + &pem_of("CERTIFICATE", "MAA="),
            key.clone(),
            "data[tls.crt]",
            "certificate 2 in tls.crt is not a valid X.509",
        ),
        (
            l.pem(),
            "garbage".into(),
            "data[tls.key]",
            "no PEM private key",
        ),
        (l.pem(), l.pem(), "data[tls.key]", "no PEM private key"),
        (
            l.pem(),
            pem_of("PRIVATE KEY", "!!!!"),
            "data[tls.key]",
            "not valid PEM",
        ),
        (
            l.pem(),
            pem_of("PRIVATE KEY", "aGVsbG8gd29ybGQ="),
            "data[tls.key]",
            "not a usable private key",
        ),
        (
            l.pem(),
            pem_of("EC PRIVATE KEY", "MAA="),
            "data[tls.key]",
            "not a usable private key",
        ),
        (
            l.pem(),
            pem_of("RSA PRIVATE KEY", "MAA="),
            "data[tls.key]",
            "not a usable private key",
        ),
    ];
    for (crt, key, field, msg) in cases {
        let d = single_error(&crt, &key);
        assert_eq!(d.field, field, "{d}");
        assert!(d.message.contains(msg), "expected {msg:?} in {d}");
    }

    // A Secret with no data at all.
    let mut s = secret("team-a", "web-tls", "", "");
    s.data = None;
    let (_, diags) = CertStore::build_at(
        &[host("h.example.com", "team-a", "web-tls")],
        &[s],
        default_cert(),
        NOW,
    );
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].field, "data[tls.crt]");

    // Every truncation of a valid chain and key, and random bytes: errors, never panics.
    let crt = l.pem() + &root.pem();
    for n in 0..crt.len() {
        let _ = load_pem(&crt.as_bytes()[..n], key.as_bytes());
    }
    // (Only the final newline may go: the END line needs no newline after it.)
    for n in 0..key.trim_end().len() {
        assert!(
            load_pem(crt.as_bytes(), &key.as_bytes()[..n]).is_err(),
            "key truncated to {n}"
        );
    }
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..500 {
        let len = rng.usize(0..600);
        let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        assert!(load_pem(&junk, &junk).is_err());
        let mut bytes = l.cert.der().to_vec();
        let i = rng.usize(0..bytes.len());
        bytes[i] = rng.u8(..);
        let b64 = base64(&bytes);
        let _ = load_pem(pem_of("CERTIFICATE", &b64).as_bytes(), key.as_bytes());
    }
}

#[test]
fn missing_secret_is_left_to_translation() {
    let default = default_cert();
    let (store, diags) = CertStore::build_at(
        &[host("h.example.com", "ns", "nope")],
        &[],
        default.clone(),
        NOW,
    );
    assert!(diags.is_empty());
    assert!(Arc::ptr_eq(&store.resolve(Some("h.example.com")), &default));
}

#[test]
fn key_formats_and_types() {
    let root = ca("root", None);
    let cases: Vec<(&str, KeyPair, String, SignatureAlgorithm)> = vec![
        (
            "p256 pkcs8",
            ec_key(),
            String::new(),
            SignatureAlgorithm::ECDSA,
        ),
        (
            "p384 pkcs8",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
            String::new(),
            SignatureAlgorithm::ECDSA,
        ),
        (
            "ed25519 pkcs8",
            KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
            String::new(),
            SignatureAlgorithm::ED25519,
        ),
        (
            "rsa pkcs8 (rcgen)",
            KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
            String::new(),
            SignatureAlgorithm::RSA,
        ),
        (
            "rsa pkcs1 (openssl)",
            KeyPair::from_pem(RSA_PKCS8).unwrap(),
            RSA_PKCS1.to_string(),
            SignatureAlgorithm::RSA,
        ),
        (
            "p256 sec1 (openssl)",
            KeyPair::from_pem(P256_PKCS8).unwrap(),
            P256_SEC1.to_string(),
            SignatureAlgorithm::ECDSA,
        ),
    ];
    for (what, key, key_pem, alg) in cases {
        let key_pem = if key_pem.is_empty() {
            key.serialize_pem()
        } else {
            key_pem
        };
        let l = leaf_with(&["k.example.com"], key, &root, |_| {});
        let loaded = load_pem(l.pem().as_bytes(), key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(loaded.key.key.algorithm(), alg, "{what}");
        assert_eq!(leaf_der(&loaded.key), l.cert.der().as_ref(), "{what}");
    }
    assert!(RSA_PKCS1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(P256_SEC1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
}

#[test]
fn default_certificate_is_self_signed_p256() {
    let d = default_cert();
    assert_eq!(d.cert.len(), 1);
    assert_eq!(d.key.algorithm(), SignatureAlgorithm::ECDSA);
    d.keys_match().unwrap();
    let f = der::parse_certificate(leaf_der(&d)).unwrap();
    assert_eq!(f.issuer, f.subject);
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(contains(f.subject, b"sluice default certificate"));
    assert!(contains(leaf_der(&d), b"sluice.invalid"));
    assert!(!Arc::ptr_eq(&d, &default_cert()), "fresh at every call");
    let store = CertStore::empty(d.clone());
    assert!(Arc::ptr_eq(
        &store.resolve(Some("anything.example.com")),
        &d
    ));
    assert!(Arc::ptr_eq(store.default_cert(), &d));
}

/// Standard base64 with padding, for building PEM in tests.
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn test_base64_matches_pem_encoding() {
    // The rcgen PEM of a certificate is the base64 of its DER, in 64-column lines.
    let root = ca("root", None);
    let pem: String = root
        .pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(base64(root.cert.der()), pem);
}

mod socket {
    use rustls::pki_types::ServerName;
    use rustls::{HandshakeKind, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    struct Handshake {
        leaf: Vec<u8>,
        chain_len: usize,
        alpn: Option<Vec<u8>>,
        version: Option<ProtocolVersion>,
        kind: Option<HandshakeKind>,
    }

    async fn connect(
        addr: std::net::SocketAddr,
        client: &Arc<rustls::ClientConfig>,
        sni: &str,
    ) -> Handshake {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut tls = TlsConnector::from(client.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let mut body = Vec::new();
        tls.read_to_end(&mut body).await.unwrap();
        assert_eq!(body, b"ok");
        let (_, conn) = tls.get_ref();
        Handshake {
            leaf: conn.peer_certificates().unwrap()[0].to_vec(),
            chain_len: conn.peer_certificates().unwrap().len(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version(),
            kind: conn.handshake_kind(),
        }
    }

    fn client(
        roots: &RootCertStore,
        version: &'static SupportedProtocolVersion,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }

    #[tokio::test]
    async fn real_handshakes_tls12_and_tls13() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let root = ca("test root", None);
        let inter = ca("test intermediate", Some(&root));
        let ec = leaf(&["foo.example.com"], &inter);
        let rsa = leaf_with(
            &["rsa.example.com"],
            KeyPair::from_pem(RSA_PKCS8).unwrap(),
            &root,
            |_| {},
        );
        let wild = leaf_with(
            &["*.wild.example.com"],
            KeyPair::from_pem(P256_PKCS8).unwrap(),
            &root,
            |_| {},
        );
        let secrets = vec![
            secret(
                "ns",
                "ec",
                &(ec.pem() + &inter.pem()),
                &ec.key.serialize_pem(),
            ),
            secret("ns", "rsa", &rsa.pem(), RSA_PKCS1),
            secret("ns", "wild", &wild.pem(), P256_SEC1),
        ];
        let tls = [
            host("foo.example.com", "ns", "ec"),
            host("rsa.example.com", "ns", "rsa"),
            host("*.wild.example.com", "ns", "wild"),
        ];
        let (store, diags) = CertStore::build(&tls, &secrets, default_cert());
        assert!(diags.is_empty(), "{diags:?}");
        let store = Arc::new(ArcSwap::from_pointee(store));
        let config = server_config(
            Arc::new(SniResolver::new(store.clone())),
            &TlsPolicy::default(),
        )
        .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(config);
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });

        let mut roots = RootCertStore::empty();
        roots.add(root.cert.der().clone()).unwrap();
        let both: &[&[u8]] = &[b"h2", b"http/1.1"];
        for (version, expected) in [
            (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
            (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        ] {
            let c = client(&roots, version, both);
            let h = connect(addr, &c, "foo.example.com").await;
            assert_eq!(h.leaf, ec.cert.der().as_ref(), "{expected:?}");
            assert_eq!(h.chain_len, 2, "leaf and intermediate");
            assert_eq!(h.alpn.as_deref(), Some(&b"h2"[..]), "{expected:?}");
            assert_eq!(h.version, Some(expected));
            assert_eq!(h.kind, Some(HandshakeKind::Full));

            // The second connection resumes (tickets in 1.3; ticket or session id in 1.2).
            let h = connect(addr, &c, "foo.example.com").await;
            assert_eq!(h.kind, Some(HandshakeKind::Resumed), "{expected:?}");
            assert_eq!(h.alpn.as_deref(), Some(&b"h2"[..]));

            let h = connect(
                addr,
                &client(&roots, version, &[b"http/1.1"]),
                "FOO.example.com",
            )
            .await;
            assert_eq!(h.alpn.as_deref(), Some(&b"http/1.1"[..]));
            assert_eq!(h.leaf, ec.cert.der().as_ref());

            let h = connect(addr, &client(&roots, version, &[]), "rsa.example.com").await;
            assert_eq!(
                h.leaf,
                rsa.cert.der().as_ref(),
                "PKCS#1 RSA key, {expected:?}"
            );
            assert_eq!(h.alpn, None);

            let h = connect(addr, &client(&roots, version, both), "a.wild.example.com").await;
            assert_eq!(
                h.leaf,
                wild.cert.der().as_ref(),
                "SEC1 EC key, {expected:?}"
            );
        }

        // Swapping the store changes the certificate for new handshakes.
        let l2 = leaf(&["foo.example.com"], &root);
        let secrets = vec![secret("ns", "ec", &l2.pem(), &l2.key.serialize_pem())];
        let (next, _) = CertStore::build(&tls[..1], &secrets, default_cert());
        store.store(Arc::new(next));
        let c = client(&roots, &rustls::version::TLS13, both);
        let h = connect(addr, &c, "foo.example.com").await;
        assert_eq!(h.leaf, l2.cert.der().as_ref());

        server.abort();
    }
}

// --default-certificate: which certificate is the default (DefaultChoice).

fn fallback_secret(names: &[&str]) -> (Secret, Issued) {
    let root = ca("root", None);
    let l = leaf(names, &root);
    (
        secret("default", "fallback", &l.pem(), &l.key.serialize_pem()),
        l,
    )
}

#[test]
fn default_choice_without_flag_is_the_generated_certificate() {
    let generated = default_cert();
    let (s, _) = fallback_secret(&["fallback.test"]);
    let c = DefaultChoice::choose_at(None, &[s], &ParsedSecrets::new(), &generated, NOW);
    assert!(Arc::ptr_eq(&c.key, &generated));
    assert!(c.secret.is_none());
    assert!(c.diagnostics.is_empty());
}

#[test]
fn default_choice_serves_the_named_secret_for_unknown_names_and_no_sni() {
    let generated = default_cert();
    let (fallback, l) = fallback_secret(&["fallback.test"]);
    let root = ca("root", None);
    let own = leaf(&["own.test"], &root);
    let secrets = vec![
        fallback,
        secret("default", "own", &own.pem(), &own.key.serialize_pem()),
    ];
    let wanted = ObjectRef::new("default", "fallback");
    let c = DefaultChoice::choose_at(
        Some(&wanted),
        &secrets,
        &ParsedSecrets::new(),
        &generated,
        NOW - 86_400 * 365,
    );
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    assert_eq!(leaf_der(&c.key), l.cert.der().as_ref());
    let tls = vec![host("own.test", "default", "own")];
    let (store, diags) = CertStore::build_with_default_at(
        &tls,
        &ParsedSecrets::from([(
            ObjectRef::new("default", "own"),
            parse_tls_secret(&secrets[1]),
        )]),
        &c,
        NOW - 86_400 * 365,
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        leaf_der(&store.resolve(Some("unknown.test"))),
        l.cert.der().as_ref()
    );
    assert_eq!(leaf_der(&store.resolve(None)), l.cert.der().as_ref());
    assert_eq!(
        leaf_der(&store.resolve(Some("own.test"))),
        own.cert.der().as_ref()
    );
    let listed: Vec<String> = store
        .not_after()
        .iter()
        .map(|(r, _)| r.to_string())
        .collect();
    assert_eq!(
        listed,
        ["default/fallback", "default/own"],
        "the metric lists it"
    );
}

#[test]
fn default_choice_reuses_the_translation_parse() {
    let generated = default_cert();
    let (s, _) = fallback_secret(&["fallback.test"]);
    let other = default_cert();
    let wanted = ObjectRef::new("default", "fallback");
    let parsed = ParsedSecrets::from([(
        wanted.clone(),
        Ok(LoadedCert {
            key: other.clone(),
            not_after: i64::MAX,
        }),
    )]);
    let c = DefaultChoice::choose_at(Some(&wanted), &[s], &parsed, &generated, NOW);
    assert!(Arc::ptr_eq(&c.key, &other));
}

#[test]
fn missing_default_secret_keeps_the_generated_certificate_with_an_error() {
    let generated = default_cert();
    let wanted = ObjectRef::new("default", "fallback");
    let c = DefaultChoice::choose_at(Some(&wanted), &[], &ParsedSecrets::new(), &generated, NOW);
    assert!(Arc::ptr_eq(&c.key, &generated));
    assert!(c.secret.is_none());
    let [d] = c.diagnostics.as_slice() else {
        panic!("one diagnostic: {:?}", c.diagnostics)
    };
    assert_eq!(
        (d.severity, d.reason, d.kind, &d.object),
        (
            Severity::Error,
            Reason::SecretNotFound,
            Kind::Secret,
            &wanted
        )
    );
    assert!(
        d.message.contains("--default-certificate default/fallback"),
        "{d}"
    );
}

#[test]
fn broken_or_mistyped_default_secret_keeps_the_generated_certificate() {
    let generated = default_cert();
    let wanted = ObjectRef::new("default", "fallback");
    let broken = secret("default", "fallback", "garbage", "garbage");
    let c = DefaultChoice::choose_at(
        Some(&wanted),
        &[broken],
        &ParsedSecrets::new(),
        &generated,
        NOW,
    );
    assert!(Arc::ptr_eq(&c.key, &generated));
    let [d] = c.diagnostics.as_slice() else {
        panic!("one diagnostic: {:?}", c.diagnostics)
    };
    assert_eq!(
        (d.reason, d.field.as_str()),
        (Reason::SecretInvalid, "data[tls.crt]")
    );
    assert!(d.message.contains("--default-certificate"), "{d}");

    let (mut opaque, _) = fallback_secret(&["fallback.test"]);
    opaque.type_ = Some("Opaque".into());
    let c = DefaultChoice::choose_at(
        Some(&wanted),
        &[opaque],
        &ParsedSecrets::new(),
        &generated,
        NOW,
    );
    assert!(Arc::ptr_eq(&c.key, &generated));
    assert_eq!(c.diagnostics[0].field, "type");
    assert_eq!(c.diagnostics[0].reason, Reason::SecretInvalid);
}

#[test]
fn expired_default_secret_is_served_with_a_warning() {
    let generated = default_cert();
    let (s, l) = fallback_secret(&["fallback.test"]);
    let wanted = ObjectRef::new("default", "fallback");
    let c = DefaultChoice::choose_at(
        Some(&wanted),
        &[s],
        &ParsedSecrets::new(),
        &generated,
        i64::MAX,
    );
    assert_eq!(leaf_der(&c.key), l.cert.der().as_ref());
    let [d] = c.diagnostics.as_slice() else {
        panic!("one diagnostic: {:?}", c.diagnostics)
    };
    assert_eq!(d.severity, Severity::Warning);
}
