//! Certificates for TLS tests, generated on the spot (nothing checked in, nothing expires).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA, a server certificate for `127.0.0.1`/`localhost` and a client certificate it signed,
/// as PEM files in a temporary directory that lives as long as any clone.
///
/// Two `Pki`s have unrelated CAs: the second one's [`Pki::ca`] is "the wrong CA" for the
/// first one's server.
#[derive(Clone, Debug)]
pub struct Pki {
    /// Shared so that an [`crate::EtcdBuilder`] and the test can both hold the files.
    files: Arc<Files>,
}

#[derive(Debug)]
struct Files {
    /// Holds every file below; removed when the last clone is dropped.
    dir: tempfile::TempDir,
}

impl Pki {
    /// Generates a fresh CA (ECDSA P-256) and the two leaf certificates it signs.
    /// `name` goes into the CA's common name, to tell CAs apart in error messages.
    pub fn generate(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("test-pki-")
            .tempdir()
            .expect("create a temporary dir for certificates");

        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("volo-etcd test CA {name}"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca, ca_key);

        // etcd also dials itself with its server certificate (grpc-gateway), hence both uses.
        let server_key = KeyPair::generate().expect("generate server key");
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "etcd test server");
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("sign the server certificate");

        // Not the name of an etcd user: with `--client-cert-auth` and auth enabled, etcd takes
        // the common name as the user when no password is given.
        let client_key = KeyPair::generate().expect("generate client key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client
            .distinguished_name
            .push(DnType::CommonName, "volo-etcd-test-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client
            .signed_by(&client_key, &issuer)
            .expect("sign the client certificate");

        let write = |file: &str, pem: String| {
            std::fs::write(dir.path().join(file), pem).expect("write a PEM file");
        };
        write("ca.pem", ca_cert.pem());
        write("server.pem", server_cert.pem());
        write("server-key.pem", server_key.serialize_pem());
        write("client.pem", client_cert.pem());
        write("client-key.pem", client_key.serialize_pem());
        Pki {
            files: Arc::new(Files { dir }),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.files.dir.path().join(file)
    }

    /// The CA certificate (what clients trust).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server certificate, valid for `127.0.0.1` and `localhost`.
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.path("server-key.pem")
    }

    /// A client certificate signed by the CA.
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    /// The client certificate's private key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client-key.pem")
    }

    /// The directory holding all files.
    pub fn dir(&self) -> &Path {
        self.files.dir.path()
    }
}
