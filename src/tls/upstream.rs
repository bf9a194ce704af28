//! TLS to `HTTPS` and `GRPCS` backends: the rustls client configuration of an
//! [`UpstreamTls`] (ingress-nginx's `proxy-ssl-*` annotations).
//!
//! With verification on, the backend's certificate must chain to the `ca.crt` of
//! `proxy-ssl-secret` (or, without one, to the public web roots) and name the verified name.
//! With it off (ingress-nginx's default, and sluice's when no CA is given) the connection is
//! encrypted but the backend is not authenticated: any certificate is taken, but its
//! handshake signature is still checked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::model::UpstreamTls;

/// The client configuration for `tls`, offering `h2` (GRPCS) or `http/1.1` (HTTPS) by ALPN.
/// The error says what in the Secret cannot be used.
pub fn client_config(tls: &UpstreamTls, h2: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.verify {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(pem) => {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("ca.crt is not PEM: {e}"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err("ca.crt holds no usable certificate".to_string());
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(
                provider.signature_verification_algorithms,
            )))
    };
    let mut config = match &tls.client_cert {
        Some(client) => {
            let chain = CertificateDer::pem_slice_iter(&client.chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls.crt is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&client.key)
                .map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls.crt and tls.key cannot be used: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = tls.sni;
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(Arc::new(config))
}

/// The name verified (and sent as SNI) for a backend Service: `proxy-ssl-name`, else the
/// Service's cluster DNS name. `None` when the name is not a valid server name.
pub fn server_name(
    tls: &UpstreamTls,
    service: &crate::model::ObjectRef,
) -> Option<ServerName<'static>> {
    let name = match &tls.name {
        Some(n) => n.clone(),
        None => format!("{}.{}.svc", service.name, service.namespace),
    };
    ServerName::try_from(name).ok()
}

/// Takes any certificate (verification off); handshake signatures are still checked, so the
/// peer holds the key of the certificate it sent.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
