//! Certificates, keys and trust roots loaded from PEM (files or memory).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

pub(crate) const INLINE_ORIGIN: &str = "inline PEM";

/// A certificate chain (leaf first) and its private key: what a TLS endpoint presents.
///
/// Envoy's `TlsCertificate` (`certificate_chain` + `private_key`, from a file, inline, or SDS).
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Parses a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        Ok(Identity {
            chain: parse_certs("certificate chain", INLINE_ORIGIN, chain_pem)?,
            key: parse_key(INLINE_ORIGIN, key_pem)?,
        })
    }

    /// Reads the chain and key from PEM files, as Envoy's `filename` data sources.
    pub fn from_files(
        chain_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let (chain_path, key_path) = (chain_path.as_ref(), key_path.as_ref());
        let chain_pem = read_file("certificate chain", chain_path)?;
        let key_pem = read_file("private key", key_path)?;
        Ok(Identity {
            chain: parse_certs("certificate chain", &file_origin(chain_path), &chain_pem)?,
            key: parse_key(&file_origin(key_path), &key_pem)?,
        })
    }

    /// Wraps already-decoded DER.
    pub fn from_der(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Identity { chain, key }
    }

    /// The certificate chain, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A set of trusted CA certificates (Envoy's `validation_context.trusted_ca`).
#[derive(Clone)]
pub struct RootStore {
    store: Arc<RootCertStore>,
}

impl RootStore {
    /// Parses one or more PEM CA certificates. Every certificate must be usable as a trust anchor.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::from_certs(
            INLINE_ORIGIN,
            parse_certs("CA certificate", INLINE_ORIGIN, pem)?,
        )
    }

    /// Reads PEM CA certificates from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let pem = read_file("CA certificates", path)?;
        let origin = file_origin(path);
        let certs = parse_certs("CA certificate", &origin, &pem)?;
        Self::from_certs(&origin, certs)
    }

    /// Builds the store from DER certificates.
    pub fn from_der(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, Error> {
        Self::from_certs("DER input", certs.into_iter().collect())
    }

    fn from_certs(origin: &str, certs: Vec<CertificateDer<'static>>) -> Result<Self, Error> {
        let mut store = RootCertStore::empty();
        for cert in certs {
            store.add(cert).map_err(|source| Error::BadRoot {
                origin: origin.to_owned(),
                source,
            })?;
        }
        if store.is_empty() {
            return Err(Error::EmptyRoots {
                origin: origin.to_owned(),
            });
        }
        Ok(RootStore {
            store: Arc::new(store),
        })
    }

    /// Number of trust anchors.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether there are no trust anchors (never true for a store built by this crate).
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The rustls store, for building verifiers.
    pub fn rustls(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.store)
    }
}

impl fmt::Debug for RootStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootStore")
            .field("anchors", &self.store.len())
            .finish()
    }
}

pub(crate) fn file_origin(path: &Path) -> String {
    format!("file {}", path.display())
}

pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    })
}

/// All `CERTIFICATE` blocks in `pem`, in order; at least one.
pub(crate) fn parse_certs(
    what: &'static str,
    origin: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem {
            what,
            origin: origin.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NotFound {
            what,
            origin: origin.to_owned(),
            expected: "-----BEGIN CERTIFICATE-----",
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in `pem`.
pub(crate) fn parse_key(origin: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => Error::NotFound {
            what: "private key",
            origin: origin.to_owned(),
            expected: "-----BEGIN PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----",
        },
        source => Error::Pem {
            what: "private key",
            origin: origin.to_owned(),
            source,
        },
    })
}
