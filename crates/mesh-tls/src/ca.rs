//! The mesh CA: a signing certificate and key that issue SPIFFE workload certificates as istiod does.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, string::Ia5String,
};
use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{Signer, SigningKey};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pem::{INLINE_ORIGIN, parse_certs, parse_key};
use crate::{Error, Identity, SpiffeId};

/// Validity of a generated root, as Istio's self-signed CA (`CITADEL_SELF_SIGNED_CA_CERT_TTL`, 10 years).
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest validity accepted for a generated root.
pub const MAX_CA_VALIDITY: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
/// Istio's default workload certificate lifetime (`DEFAULT_WORKLOAD_CERT_TTL`, 24 hours).
pub const DEFAULT_WORKLOAD_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Istio's default cap on requested workload certificate lifetimes (`MAX_WORKLOAD_CERT_TTL`, 90 days).
pub const MAX_WORKLOAD_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// How far `not_before` is backdated, to tolerate clock skew between peers.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// A certificate chain and key issued by the [`CertificateAuthority`], in PEM.
#[derive(Clone)]
pub struct WorkloadCert {
    /// The leaf first, then any intermediate CA certificates (never the root).
    pub cert_chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// When the leaf expires (whole seconds, as encoded in the certificate).
    pub not_after: SystemTime,
}

impl WorkloadCert {
    /// The chain and key decoded, ready for [`server_config`](crate::server_config) /
    /// [`client_config`](crate::client_config).
    pub fn identity(&self) -> Result<Identity, Error> {
        Identity::from_pem(self.cert_chain_pem.as_bytes(), self.key_pem.as_bytes())
    }
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The mesh certificate authority.
///
/// Either a generated self-signed root ([`generate`](Self::generate)) or a loaded signing certificate
/// and key ([`load`](Self::load), Istio's "plug-in CA": `ca-cert.pem` optionally followed by its
/// chain up to the root, and `ca-key.pem`).
pub struct CertificateAuthority {
    issuer: Issuer<'static, CaKey>,
    /// The signing certificate first, then its chain; the last one is treated as the root.
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
    not_after: SystemTime,
}

impl CertificateAuthority {
    /// Generates a self-signed ECDSA P-256 root for `trust_domain`, valid for [`DEFAULT_CA_VALIDITY`].
    pub fn generate(trust_domain: &str) -> Result<Self, Error> {
        Self::generate_with_validity(trust_domain, DEFAULT_CA_VALIDITY)
    }

    /// Generates a self-signed ECDSA P-256 root valid for `validity` (at most [`MAX_CA_VALIDITY`]).
    ///
    /// Like Istio's self-signed CA, the subject is `O=<trust domain>`.
    pub fn generate_with_validity(trust_domain: &str, validity: Duration) -> Result<Self, Error> {
        crate::spiffe::validate_trust_domain(trust_domain)?;
        let (not_before, not_after) = validity_window(validity, MAX_CA_VALIDITY)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Self::from_der(vec![cert.der().clone()], key_pem, INLINE_ORIGIN)
    }

    /// Loads a CA from its PEM signing certificate (optionally followed by intermediates and the root)
    /// and its PEM private key (PKCS#8, SEC1 or PKCS#1; ECDSA, RSA or Ed25519).
    ///
    /// Checks that the certificate is a CA, is valid now, and matches the key.
    pub fn load(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = parse_certs("CA certificate", INLINE_ORIGIN, cert_pem)?;
        let key_pem = String::from_utf8(key_pem.to_vec()).map_err(|_| Error::UnsupportedKey {
            origin: INLINE_ORIGIN.to_owned(),
            reason: "the PEM is not UTF-8 text".to_owned(),
        })?;
        Self::from_der(chain, key_pem, INLINE_ORIGIN)
    }

    /// Loads a CA from PEM files (see [`load`](Self::load)).
    pub fn load_files(
        cert_path: impl AsRef<std::path::Path>,
        key_path: impl AsRef<std::path::Path>,
    ) -> Result<Self, Error> {
        let cert_pem = crate::pem::read_file("CA certificate", cert_path.as_ref())?;
        let key_pem = crate::pem::read_file("CA private key", key_path.as_ref())?;
        Self::load(&cert_pem, &key_pem)
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key_pem: String,
        origin: &str,
    ) -> Result<Self, Error> {
        let Some(ca_der) = chain.first() else {
            return Err(Error::NotFound {
                what: "CA certificate",
                origin: origin.to_owned(),
                expected: "-----BEGIN CERTIFICATE-----",
            });
        };
        let key_der = parse_key(origin, key_pem.as_bytes())?;
        let key = CaKey::new(&key_der, origin)?;
        let (_, x509) = X509Certificate::from_der(ca_der).map_err(|e| Error::BadCertificate {
            what: "CA certificate",
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        let subject = x509.subject().to_string();
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key.as_slice() {
            return Err(Error::KeyMismatch { subject });
        }
        let is_ca = x509
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(Error::NotACa { subject });
        }
        if !x509.validity().is_valid() {
            return Err(Error::CaNotValidNow {
                subject,
                not_before: x509.validity().not_before.to_string(),
                not_after: x509.validity().not_after.to_string(),
            });
        }
        let not_after = system_time(x509.validity().not_after.timestamp());
        let issuer = Issuer::from_ca_cert_der(ca_der, key)?;
        Ok(CertificateAuthority {
            issuer,
            chain,
            key_pem,
            not_after,
        })
    }

    /// The root certificate, PEM: the trust anchor peers should use (Istio's `root-cert.pem`).
    ///
    /// For a loaded chain this is the last certificate given; for a generated CA, the CA itself.
    pub fn root_pem(&self) -> String {
        self.chain.last().map(to_pem).unwrap_or_default()
    }

    /// The signing certificate, PEM (Istio's `ca-cert.pem`).
    pub fn cert_pem(&self) -> String {
        self.chain.first().map(to_pem).unwrap_or_default()
    }

    /// The signing key, PEM, as it was given or generated (PKCS#8 when generated).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When the signing certificate expires; issued certificates never outlive it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a workload certificate for `id`, as istiod does: a fresh ECDSA P-256 key, an empty
    /// subject, the SPIFFE ID as the only (critical) URI SAN, key usage digitalSignature +
    /// keyEncipherment, extended key usage serverAuth + clientAuth, CA:FALSE.
    ///
    /// `validity` must be in `(0, MAX_WORKLOAD_VALIDITY]`; the certificate is cut short so that it
    /// does not outlive the CA.
    pub fn issue_workload(&self, id: &SpiffeId, validity: Duration) -> Result<WorkloadCert, Error> {
        let uri = Ia5String::try_from(id.to_string())?;
        self.issue(DistinguishedName::new(), vec![SanType::URI(uri)], validity)
    }

    /// Issues a server certificate with the given DNS names (and IP addresses, for names that parse
    /// as one) as SANs, for gateways and tests. The subject CN is the first name.
    pub fn issue_server(
        &self,
        dns_names: &[&str],
        validity: Duration,
    ) -> Result<WorkloadCert, Error> {
        let Some(first) = dns_names.first() else {
            return Err(Error::NoDnsNames);
        };
        let sans = dns_names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => {
                    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
                        return Err(Error::BadDnsName {
                            name: (*name).to_owned(),
                            reason: "empty, or contains whitespace or '/'".to_owned(),
                        });
                    }
                    Ia5String::try_from(*name)
                        .map(SanType::DnsName)
                        .map_err(|e| Error::BadDnsName {
                            name: (*name).to_owned(),
                            reason: e.to_string(),
                        })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, *first);
        self.issue(dn, sans, validity)
    }

    fn issue(
        &self,
        subject: DistinguishedName,
        sans: Vec<SanType>,
        validity: Duration,
    ) -> Result<WorkloadCert, Error> {
        let (not_before, mut not_after) = validity_window(validity, MAX_WORKLOAD_VALIDITY)?;
        let ca_not_after = offset_date_time(self.not_after)?;
        if not_after > ca_not_after {
            not_after = ca_not_after;
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut cert_chain_pem = cert.pem();
        // Intermediates only: the root is distributed separately (root_pem).
        if self.chain.len() > 1 {
            for ca in &self.chain[..self.chain.len() - 1] {
                cert_chain_pem.push_str(&to_pem(ca));
            }
        }
        Ok(WorkloadCert {
            cert_chain_pem,
            key_pem: key.serialize_pem(),
            not_after: system_time(not_after.unix_timestamp()),
        })
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("chain_len", &self.chain.len())
            .field("not_after", &self.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// `[now - skew, now + validity]`, whole seconds, with `validity` checked against `max`.
fn validity_window(
    validity: Duration,
    max: Duration,
) -> Result<(OffsetDateTime, OffsetDateTime), Error> {
    if validity.is_zero() || validity > max {
        return Err(Error::Validity {
            requested: validity,
            max,
        });
    }
    let now = SystemTime::now();
    let not_before = offset_date_time(now - CLOCK_SKEW_ALLOWANCE)?;
    let not_after = offset_date_time(now + validity)?;
    Ok((not_before, not_after))
}

/// Truncated to whole seconds, as X.509 times are.
fn offset_date_time(t: SystemTime) -> Result<OffsetDateTime, Error> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(Error::Generate(rcgen::Error::Time))
}

fn system_time(unix_secs: i64) -> SystemTime {
    match u64::try_from(unix_secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

fn to_pem(der: &CertificateDer<'_>) -> String {
    const LINE: usize = 64;
    let b64 = base64_encode(der.as_ref());
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(LINE) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// === impl CaKey ===

/// The CA's signing key, backed by rustls' ring signer so that any key format rustls reads
/// (PKCS#8, SEC1, PKCS#1) can sign, not only the PKCS#8 that rcgen's ring backend accepts.
struct CaKey {
    signer: Box<dyn Signer>,
    /// The subjectPublicKey bits of the key's SubjectPublicKeyInfo.
    public_key: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl CaKey {
    fn new(der: &PrivateKeyDer<'_>, origin: &str) -> Result<Self, Error> {
        let unsupported = |reason: String| Error::UnsupportedKey {
            origin: origin.to_owned(),
            reason,
        };
        let key: Arc<dyn SigningKey> = rustls::crypto::ring::sign::any_supported_type(der)
            .map_err(|e| unsupported(e.to_string()))?;
        let signer = key
            .choose_scheme(&[
                SignatureScheme::ECDSA_NISTP256_SHA256,
                SignatureScheme::ECDSA_NISTP384_SHA384,
                SignatureScheme::ED25519,
                SignatureScheme::RSA_PKCS1_SHA256,
            ])
            .ok_or_else(|| {
                unsupported(format!(
                    "no X.509 signature scheme for {:?}",
                    key.algorithm()
                ))
            })?;
        let alg = match signer.scheme() {
            SignatureScheme::ECDSA_NISTP256_SHA256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            SignatureScheme::ED25519 => &rcgen::PKCS_ED25519,
            SignatureScheme::RSA_PKCS1_SHA256 => &rcgen::PKCS_RSA_SHA256,
            other => return Err(unsupported(format!("signature scheme {other:?}"))),
        };
        let spki = key
            .public_key()
            .ok_or_else(|| unsupported("the public key cannot be derived".to_owned()))?;
        let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki.as_ref())
            .map_err(|e| unsupported(format!("bad public key encoding: {e}")))?;
        let public_key = info.subject_public_key.data.to_vec();
        Ok(CaKey {
            signer,
            public_key,
            alg,
        })
    }
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer
            .sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
