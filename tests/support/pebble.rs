//! Pebble, Let's Encrypt's ACME test server, and the test DNS responder it resolves names
//! with, both on 127.0.0.1 (see shared PEERS facts in docs/acme.md).
//!
//! - [`DnsResponder`] runs `dns_responder.py` (dnslib, from the test virtualenv): A 127.0.0.1
//!   for every name, empty AAAA, TXT from moto's Route53 when given its URL.
//! - [`Pebble`] makes a CA and a `127.0.0.1`/`localhost` certificate for Pebble's own listener
//!   (rcgen), writes its configuration (ACME and management listeners on free 127.0.0.1 ports,
//!   `httpPort`/`tlsPort` = the ports it validates challenges on, optional
//!   `certificateValidityPeriod`) and starts `pebble -dnsserver` with `PEBBLE_VA_NOSLEEP=1` and
//!   `PEBBLE_AUTHZREUSE=0`; `PEBBLE_WFE_NONCEREJECT` is left at Pebble's default (5% of nonces
//!   refused) unless set.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::peers::{Peer, debian_binary, free_port, port_open, venv, wait_for};

/// How long a peer may take to start.
const START: Duration = Duration::from_secs(30);

/// The test DNS responder.
pub struct DnsResponder {
    /// The process.
    pub peer: Peer,
    /// Its UDP and TCP port on 127.0.0.1.
    pub port: u16,
}

impl DnsResponder {
    /// Starts the responder; with `moto` (a moto server URL) it answers TXT queries from
    /// moto's Route53 records.
    pub async fn start(moto: Option<&str>) -> DnsResponder {
        let python = venv().join("bin/python");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/dns_responder.py"
        );
        let port = free_port();
        let port_arg = port.to_string();
        let mut args = vec![script, "--port", &port_arg];
        if let Some(url) = moto {
            args.extend(["--moto", url]);
        }
        let mut peer = Peer::spawn("dns-responder", &python, &args, &[], None);
        let log = peer.log.clone();
        wait_for(&mut peer, "the DNS responder to bind", START, || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.lines().any(|line| line == "ready"))
                    .then_some(())
            }
        })
        .await;
        DnsResponder { peer, port }
    }
}

/// What to start Pebble with.
#[derive(Clone, Debug, Default)]
pub struct PebbleOptions {
    /// The port Pebble sends HTTP-01 validations to (sluice's HTTP entrypoint).
    pub http_port: u16,
    /// The port Pebble sends TLS-ALPN-01 validations to (sluice's HTTPS entrypoint).
    pub tls_port: u16,
    /// The DNS server Pebble resolves names with.
    pub dns_port: u16,
    /// `certificateValidityPeriod` in seconds (Pebble's default: 5 years).
    pub validity_secs: Option<u64>,
    /// `PEBBLE_WFE_NONCEREJECT` (percent of nonces refused); `None` keeps Pebble's default (5).
    pub nonce_reject: Option<u32>,
}

/// A running Pebble.
pub struct Pebble {
    /// The process.
    pub peer: Peer,
    /// The ACME listener's port.
    pub acme_port: u16,
    /// The management listener's port.
    pub management_port: u16,
    /// The CA that signed Pebble's listener certificate (PEM): what `--acme-ca-file` holds.
    pub listener_ca_pem: String,
    _dir: tempfile::TempDir,
    config: PathBuf,
    options: PebbleOptions,
}

impl Pebble {
    /// Installs (Debian `pebble`) and starts Pebble; returns once its directory answers.
    pub async fn start(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, cert_pem, key_pem) = listener_certificate();
        std::fs::write(dir.path().join("cert.pem"), cert_pem).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key_pem).expect("write key");
        let acme_port = free_port();
        let management_port = free_port();
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(secs) = options.validity_secs {
            pebble["certificateValidityPeriod"] = secs.into();
        }
        let config = dir.path().join("pebble-config.json");
        std::fs::write(
            &config,
            serde_json::to_vec_pretty(&serde_json::json!({ "pebble": pebble })).unwrap(),
        )
        .expect("write config");
        let peer = spawn(&config, &options);
        let mut p = Pebble {
            peer,
            acme_port,
            management_port,
            listener_ca_pem: ca_pem,
            _dir: dir,
            config,
            options,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let port = self.acme_port;
        let mport = self.management_port;
        wait_for(&mut self.peer, "Pebble to listen", START, || async move {
            (port_open(port).await && port_open(mport).await).then_some(())
        })
        .await;
    }

    /// Stops Pebble (its ports close).
    pub fn stop(&mut self) {
        self.peer.stop();
    }

    /// Starts Pebble again with the same configuration (a new issuing root: fetch it again).
    pub async fn restart(&mut self) {
        self.peer.stop();
        self.peer = spawn(&self.config, &self.options);
        self.wait_ready().await;
    }

    /// `https://127.0.0.1:<acme>/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The client TLS configuration that trusts Pebble's listener (as `--acme-ca-file` does).
    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        sluice::acme::client_config(Some(self.listener_ca_pem.as_bytes()))
            .expect("client configuration")
    }

    /// The root that issues certificates in this run (PEM), from `/roots/0` on the management
    /// listener.
    pub async fn issuing_root(&self) -> String {
        let connector = tokio_rustls::TlsConnector::from(self.client_tls());
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.management_port))
            .await
            .expect("connect to Pebble's management listener");
        let name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let mut tls = connector.connect(name, tcp).await.expect("TLS to Pebble");
        tls.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw);
        let begin = text
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a PEM root");
        let end = text.find("-----END CERTIFICATE-----").expect("a PEM root") + 25;
        format!("{}\n", &text[begin..end])
    }
}

fn spawn(config: &std::path::Path, options: &PebbleOptions) -> Peer {
    let pebble = debian_binary("pebble", "pebble");
    let dns = format!("127.0.0.1:{}", options.dns_port);
    let reject = options.nonce_reject.map(|n| n.to_string());
    let mut envs = vec![("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_AUTHZREUSE", "0")];
    if let Some(r) = &reject {
        envs.push(("PEBBLE_WFE_NONCEREJECT", r));
    }
    Peer::spawn(
        "pebble",
        &pebble,
        &["-config", &config.to_string_lossy(), "-dnsserver", &dns],
        &envs,
        None,
    )
}

/// A CA, and a certificate it signed for `localhost` and `127.0.0.1`: (CA PEM, cert PEM, key
/// PEM).
fn listener_certificate() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sluice test CA for Pebble's listener");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("listener key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("listener certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
