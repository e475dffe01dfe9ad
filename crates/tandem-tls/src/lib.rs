//! TLS material for Tandem.
//!
//! This crate owns turning files and settings into rustls objects: loading PEM certificate
//! chains and keys with errors that name the file, building client configurations for probes
//! and replication links (system-independent Mozilla roots, extra CA files, or no
//! verification where the operator asked for it), and the lab's certificate authority, which
//! `tandem up` creates at first start and reuses afterwards so `curl --cacert` keeps working.
//!
//! It does not own listeners or SNI selection; the edge and registry build their server
//! configurations from the [`CertifiedKey`]s loaded here.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use rustls;

/// Why TLS material could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}; check that the directory is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error(
        "{path}: {what}; it must be PEM (-----BEGIN CERTIFICATE----- / -----BEGIN PRIVATE KEY-----)"
    )]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the material (e.g. a key that does not match the certificate).
    #[error("{path}: {source}")]
    Rustls {
        /// The file.
        path: PathBuf,
        /// The rustls error.
        source: rustls::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider Tandem uses everywhere (aws-lc-rs, rustls' default).
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Load a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.into(),
            what: format!("bad certificate PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.into(),
            what: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Load a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| TlsError::Pem {
        path: path.into(),
        what: format!("no usable private key ({e})"),
    })
}

/// Load a certificate chain and its key into a [`CertifiedKey`] for a server, checking that
/// they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let ck =
        CertifiedKey::from_der(chain, key_der, &provider()).map_err(|source| TlsError::Rustls {
            path: key.into(),
            source,
        })?;
    Ok(Arc::new(ck))
}

/// How a client checks the servers it connects to.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// Verify the server's certificate (default true).
    pub insecure: bool,
    /// Extra CA certificates to trust, in addition to the Mozilla roots.
    pub ca_files: Vec<PathBuf>,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
}

/// Build a rustls client configuration.
pub fn client_config(opts: &ClientTls) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            path: PathBuf::new(),
            source,
        })?;
    let mut cfg = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for f in &opts.ca_files {
            for c in load_certs(f)? {
                roots.add(c).map_err(|source| TlsError::Rustls {
                    path: f.clone(),
                    source,
                })?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = opts.alpn.clone();
    Ok(Arc::new(cfg))
}

/// Accepts any server certificate (signatures are still checked, so the handshake is real).
/// Used only when the operator set `tls_verify = false`, as Traffic Manager's probes do.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The lab's certificate authority: created at first start in a directory, reused after.
pub struct LabCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa").field("dir", &self.dir).finish()
    }
}

/// A certificate and key issued by the lab CA, written to files.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate chain (leaf, then CA) in PEM.
    pub cert_path: PathBuf,
    /// The private key in PEM.
    pub key_path: PathBuf,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Tandem Lab CA");
    dn.push(DnType::OrganizationName, "Tandem lab (local testing only)");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2044, 1, 1);
    p
}

fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(|source| TlsError::Write {
        path: tmp.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600));
    }
    fs::rename(&tmp, path).map_err(|source| TlsError::Write {
        path: path.into(),
        source,
    })
}

impl LabCa {
    /// Load the CA from `dir`, or create it there if it does not exist yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.into(),
            source,
        })?;
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.pem");
        let key = if key_path.exists() && cert_path.exists() {
            let pem = fs::read_to_string(&key_path).map_err(|source| TlsError::Read {
                path: key_path.clone(),
                source,
            })?;
            KeyPair::from_pem(&pem).map_err(|e| TlsError::Pem {
                path: key_path.clone(),
                what: format!("bad CA key ({e}); delete the lab directory to make a new CA"),
            })?
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_private(&key_path, &key.serialize_pem())?;
            write_private(&cert_path, &cert.pem())?;
            key
        };
        Ok(LabCa {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA certificate file, for `curl --cacert`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issue a server certificate for `names` (DNS names or IP addresses) and write it as
    /// `<dir>/<file_stem>.pem` and `.key`. A fresh key and certificate are made every call.
    pub fn issue(&self, file_stem: &str, names: &[&str]) -> Result<IssuedCert, TlsError> {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("tandem"),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(90 * 86400)).into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let ca_pem = fs::read_to_string(self.ca_cert_path()).map_err(|source| TlsError::Read {
            path: self.ca_cert_path(),
            source,
        })?;
        let certs_dir = self.dir.join("certs");
        fs::create_dir_all(&certs_dir).map_err(|source| TlsError::Write {
            path: certs_dir.clone(),
            source,
        })?;
        let cert_path = certs_dir.join(format!("{file_stem}.pem"));
        let key_path = certs_dir.join(format!("{file_stem}.key"));
        write_private(&key_path, &key.serialize_pem())?;
        write_private(&cert_path, &format!("{}{}", cert.pem(), ca_pem))?;
        Ok(IssuedCert {
            cert_path,
            key_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_ca_is_reused_and_issues_certs_that_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = LabCa::load_or_create(dir.path()).expect("create");
        let first = fs::read_to_string(ca.ca_cert_path()).expect("ca");
        let issued = ca
            .issue("app", &["app.tandem.test", "127.0.0.1"])
            .expect("issue");
        load_certified_key(&issued.cert_path, &issued.key_path).expect("loads");
        let again = LabCa::load_or_create(dir.path()).expect("reload");
        assert_eq!(fs::read_to_string(again.ca_cert_path()).expect("ca"), first);
        again
            .issue("other", &["x.tandem.test"])
            .expect("issue after reload");
    }

    #[test]
    fn bad_pem_says_which_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("junk.pem");
        fs::write(&p, "not pem").expect("write");
        let e = load_certs(&p).expect_err("junk");
        assert!(e.to_string().contains("junk.pem"), "{e}");
        assert!(load_key(&p).is_err());
        assert!(load_certs(&dir.path().join("missing.pem")).is_err());
    }

    #[tokio::test]
    async fn issued_cert_verifies_against_the_lab_ca() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = LabCa::load_or_create(dir.path()).expect("create");
        let issued = ca.issue("srv", &["app.tandem.test"]).expect("issue");
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                load_certs(&issued.cert_path).expect("certs"),
                load_key(&issued.key_path).expect("key"),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            for _ in 0..2 {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                if let Ok(mut tls) = acceptor.accept(s).await {
                    tls.write_all(b"hi").await.ok();
                    tls.shutdown().await.ok();
                }
            }
        });
        let client = client_config(&ClientTls {
            ca_files: vec![ca.ca_cert_path()],
            ..Default::default()
        })
        .expect("client");
        let conn = tokio_rustls::TlsConnector::from(client);
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut tls = conn
            .connect(ServerName::try_from("app.tandem.test").expect("name"), tcp)
            .await
            .expect("verified handshake");
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.ok();
        assert_eq!(buf, b"hi");
        // Without the lab CA the same server is refused.
        let strict =
            tokio_rustls::TlsConnector::from(client_config(&ClientTls::default()).expect("client"));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        assert!(
            strict
                .connect(ServerName::try_from("app.tandem.test").expect("name"), tcp)
                .await
                .is_err()
        );
    }
}
