//! Certificate verifiers: chain validation against the roots, then the peer checked by SAN matchers
//! instead of the hostname (Envoy's `match_typed_subject_alt_names`).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::san::{SanMatcher, SubjectAltName, any_san_matches, subject_alt_names};

/// The peer's certificate chained to a trusted root, but none of its SANs matched.
///
/// Carried inside `rustls::Error::InvalidCertificate(CertificateError::Other(..))`; the handshake
/// fails with a `bad_certificate` alert.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "peer certificate SANs [{}] match none of the expected [{}]",
    join(presented),
    join(expected)
)]
pub struct SanMismatch {
    /// What the peer's leaf certificate holds.
    pub presented: Vec<SubjectAltName>,
    /// The matchers, rendered (`URI exact "spiffe://…"`).
    pub expected: Vec<String>,
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the leaf against the matchers; no matchers means no check (chain validation only).
fn check_sans(matchers: &[SanMatcher], leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    if matchers.is_empty() {
        return Ok(());
    }
    let presented = subject_alt_names(leaf).map_err(|e| {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    })?;
    if any_san_matches(matchers, &presented) {
        return Ok(());
    }
    let mismatch = SanMismatch {
        presented,
        expected: matchers.iter().map(ToString::to_string).collect(),
    };
    Err(rustls::Error::InvalidCertificate(CertificateError::Other(
        OtherError(Arc::new(mismatch)),
    )))
}

// === impl SanServerVerifier ===

/// Client side: validates the server's chain against the roots, then matches its SANs instead of
/// checking the server name.
pub(crate) struct SanServerVerifier {
    roots: Arc<RootCertStore>,
    matchers: Vec<SanMatcher>,
    algs: WebPkiSupportedAlgorithms,
}

impl SanServerVerifier {
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        matchers: Vec<SanMatcher>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        SanServerVerifier {
            roots,
            matchers,
            algs,
        }
    }
}

impl fmt::Debug for SanServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanServerVerifier")
            .field("roots", &self.roots.len())
            .field("matchers", &self.matchers)
            .finish()
    }
}

impl ServerCertVerifier for SanServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        check_sans(&self.matchers, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

// === impl InsecureServerVerifier ===

/// Client side: accepts any server certificate (Envoy's upstream TLS without a validation
/// context). Handshake signatures are still checked, so the peer must hold the key.
pub(crate) struct InsecureServerVerifier {
    algs: WebPkiSupportedAlgorithms,
}

impl InsecureServerVerifier {
    pub(crate) fn new(algs: WebPkiSupportedAlgorithms) -> Self {
        InsecureServerVerifier { algs }
    }
}

impl fmt::Debug for InsecureServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InsecureServerVerifier")
    }
}

impl ServerCertVerifier for InsecureServerVerifier {
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
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

// === impl SanClientVerifier ===

/// Server side: rustls' webpki client verifier (chain validation, optional or required), then the
/// client's SANs matched.
pub(crate) struct SanClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    matchers: Vec<SanMatcher>,
}

impl SanClientVerifier {
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>, matchers: Vec<SanMatcher>) -> Self {
        SanClientVerifier { inner, matchers }
    }
}

impl fmt::Debug for SanClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanClientVerifier")
            .field("inner", &self.inner)
            .field("matchers", &self.matchers)
            .finish()
    }
}

impl ClientCertVerifier for SanClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_sans(&self.matchers, end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
