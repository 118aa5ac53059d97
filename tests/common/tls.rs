//! Throw-away certificates for TLS tests, made with rcgen: a CA, a server certificate for
//! 127.0.0.1 and `localhost` signed by it, and a client certificate signed by it, each
//! written as PEM into a temporary directory that lives as long as the value.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of a small PKI, removed when dropped.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`.
    pub ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// The certificate of another CA, which signed nothing here: a wrong trust anchor.
    pub other_ca_file: PathBuf,
    pub dir: tempfile::TempDir,
}

fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn leaf(
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("plimsoll-pki")
            .tempdir()
            .unwrap();
        let (ca, ca_key) = new_ca("plimsoll test CA");
        let (server_cert_pem, server_key_pem) = leaf(
            &["127.0.0.1", "localhost"],
            "127.0.0.1",
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
            &ca_key,
        );
        let (client_pem, client_key_pem) = leaf(
            &["plimsoll"],
            "plimsoll",
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca,
            &ca_key,
        );
        let (other, _) = new_ca("some other CA");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        TestPki {
            ca_file: write("ca.pem", &ca.pem()),
            server_cert_file: write("server.pem", &server_cert_pem),
            server_key_file: write("server.key", &server_key_pem),
            client_cert_file: write("client.pem", &client_pem),
            client_key_file: write("client.key", &client_key_pem),
            other_ca_file: write("other-ca.pem", &other.pem()),
            ca_pem: ca.pem(),
            server_cert_pem,
            server_key_pem,
            dir,
        }
    }
}
