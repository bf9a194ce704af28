//! A throwaway certificate authority and leaf for TLS backends in tests.

/// A test certificate authority and a leaf for `names`, as PEM.
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The leaf, then the CA.
    pub chain_pem: String,
    /// The leaf's key.
    pub key_pem: String,
}

/// A new CA and a leaf it signed for `names`.
pub fn pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "upstream test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = params.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    let leaf = params.signed_by(&key, &ca, &ca_key).expect("leaf");
    Pki {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    }
}
