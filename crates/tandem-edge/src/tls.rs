//! TLS termination: certificates per domain chosen by SNI (exact names before wildcards),
//! TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, and certificate reload without a restart.
//!
//! The certificate set is a snapshot behind an `ArcSwap`: a handshake reads it without a lock,
//! a reload builds a new set and swaps it in. Connections that are already up keep the
//! certificate they were made with; new handshakes get the new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::EdgeError;

/// Where a certificate comes from: PEM files, or PEM text held in memory (the lab's).
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files on disk, checked for changes.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// PEM text.
    Pem {
        /// Certificate chain, leaf first.
        cert: String,
        /// Private key.
        key: String,
    },
}

/// A certificate and the names it is served for.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Exact names and `*.` wildcards, lower case.
    pub domains: Vec<String>,
    /// Where the PEM comes from.
    pub source: CertSource,
}

impl CertSpec {
    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        match &self.source {
            CertSource::Files { cert, key } => vec![mtime(cert), mtime(key)],
            CertSource::Pem { .. } => Vec::new(),
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The certificates, indexed for SNI lookup.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// The files' modification times when loaded, to notice changes.
    stamps: Vec<Vec<Option<SystemTime>>>,
}

impl CertStore {
    /// Load every certificate; fails on the first unreadable or mismatched one, naming it.
    pub fn load(specs: &[CertSpec]) -> Result<CertStore, EdgeError> {
        let mut store = CertStore::default();
        for spec in specs {
            let stamps = spec.mtimes();
            let ck = Arc::new(load_certified_key(&spec.source)?);
            for d in &spec.domains {
                match d.strip_prefix("*.") {
                    Some(suffix) => store.wildcard.insert(suffix.to_string(), ck.clone()),
                    None => store.exact.insert(d.clone(), ck.clone()),
                };
            }
            if store.default.is_none() {
                store.default = Some(ck);
            }
            store.stamps.push(stamps);
        }
        Ok(store)
    }

    /// The certificate for a server name: the exact name, else the wildcard one label up,
    /// else (no SNI, or an unknown name) the first configured certificate.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return Some(c.clone());
        }
        // A wildcard covers exactly one label (RFC 6125 6.4.3).
        if let Some((_, parent)) = name.split_once('.')
            && let Some(c) = self.wildcard.get(parent)
        {
            return Some(c.clone());
        }
        self.default.clone()
    }

    /// Whether any file changed since this store was loaded.
    fn changed(&self, specs: &[CertSpec]) -> bool {
        specs.len() != self.stamps.len()
            || specs
                .iter()
                .zip(&self.stamps)
                .any(|(s, stamp)| &s.mtimes() != stamp)
    }

    /// How many certificates are loaded.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Whether no certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }
}

fn load_certified_key(src: &CertSource) -> Result<CertifiedKey, EdgeError> {
    let (what, certs, key) = match src {
        CertSource::Files { cert, key } => {
            let what = cert.display().to_string();
            let certs: Result<Vec<CertificateDer<'static>>, _> =
                CertificateDer::pem_file_iter(cert)
                    .map_err(|e| EdgeError::Certificate {
                        what: what.clone(),
                        reason: e.to_string(),
                    })?
                    .collect();
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| EdgeError::Certificate {
                what: key.display().to_string(),
                reason: e.to_string(),
            })?;
            (what, certs, key)
        }
        CertSource::Pem { cert, key } => {
            let what = "in-memory certificate".to_string();
            let certs: Result<Vec<CertificateDer<'static>>, _> =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                EdgeError::Certificate {
                    what: what.clone(),
                    reason: e.to_string(),
                }
            })?;
            (what, certs, key)
        }
    };
    let certs = certs.map_err(|e| EdgeError::Certificate {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(EdgeError::Certificate {
            what,
            reason: "no certificate found in the PEM".into(),
        });
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let ck = CertifiedKey::from_der(certs, key, &provider).map_err(|e| EdgeError::Certificate {
        what: what.clone(),
        reason: format!("{e} (does the key belong to the certificate?)"),
    })?;
    Ok(ck)
}

/// The SNI resolver rustls calls on every handshake.
#[derive(Debug)]
pub struct SniResolver {
    store: ArcSwap<CertStore>,
    specs: ArcSwap<Vec<CertSpec>>,
}

impl SniResolver {
    /// A resolver serving `store`, loaded from `specs`.
    pub fn new(store: CertStore, specs: Vec<CertSpec>) -> Self {
        SniResolver {
            store: ArcSwap::from_pointee(store),
            specs: ArcSwap::from_pointee(specs),
        }
    }

    /// Reload from new specs (config reload); on error the old certificates stay.
    pub fn replace(&self, specs: Vec<CertSpec>) -> Result<(), EdgeError> {
        let store = CertStore::load(&specs)?;
        self.store.store(Arc::new(store));
        self.specs.store(Arc::new(specs));
        Ok(())
    }

    /// Reload when a file changed. `Ok(true)` if a new set was swapped in; on error the old
    /// certificates stay in service.
    pub fn reload_if_changed(&self) -> Result<bool, EdgeError> {
        let specs = self.specs.load_full();
        if !self.store.load().changed(&specs) {
            return Ok(false);
        }
        let store = CertStore::load(&specs)?;
        self.store.store(Arc::new(store));
        Ok(true)
    }

    /// How many certificates are served.
    pub fn len(&self) -> usize {
        self.store.load().len()
    }

    /// Whether no certificate is served.
    pub fn is_empty(&self) -> bool {
        self.store.load().is_empty()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.load().lookup(hello.server_name())
    }
}

/// The server TLS config: TLS 1.3 and 1.2 only, ALPN h2 then http/1.1.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, EdgeError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| EdgeError::Certificate {
            what: "TLS configuration".into(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Returning clients resume instead of paying a full handshake: stateless tickets (keys
    // rotated by rustls every 6 hours; TLS 1.2 and 1.3) and a larger session cache than the
    // default 256 entries for clients that do not take tickets.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(t) => cfg.ticketer = t,
        Err(e) => tracing::warn!(error = %e, "TLS session tickets are off"),
    }
    Ok(Arc::new(cfg))
}
