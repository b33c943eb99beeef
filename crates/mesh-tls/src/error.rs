//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::spiffe::SpiffeIdError;

/// Everything that can go wrong building certificates and TLS configs.
///
/// `source` fields in the messages name where the PEM came from: a file path, or `inline PEM`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {what} from {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} in {origin} is not valid PEM: {source}")]
    Pem {
        what: &'static str,
        origin: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no {what} found in {origin} (expected a PEM block such as {expected})")]
    NotFound {
        what: &'static str,
        origin: String,
        expected: &'static str,
    },
    #[error("{what} in {origin} is not a parseable X.509 certificate: {reason}")]
    BadCertificate {
        what: &'static str,
        origin: String,
        reason: String,
    },
    #[error(
        "private key in {origin} is not supported: {reason} (use ECDSA P-256/P-384, Ed25519 or RSA; PKCS#8, SEC1 or PKCS#1 PEM)"
    )]
    UnsupportedKey { origin: String, reason: String },
    #[error("the private key does not match the public key of the certificate {subject}")]
    KeyMismatch { subject: String },
    #[error(
        "CA certificate {subject} is not a CA: it has no basicConstraints CA:TRUE; check that ca-cert.pem is the signing certificate, not a leaf"
    )]
    NotACa { subject: String },
    #[error(
        "CA certificate {subject} expired or is not yet valid (valid {not_before} to {not_after})"
    )]
    CaNotValidNow {
        subject: String,
        not_before: String,
        not_after: String,
    },
    #[error(
        "requested validity {requested:?} is invalid: it must be more than zero and at most {max:?}"
    )]
    Validity { requested: Duration, max: Duration },
    #[error("no DNS names given for the server certificate")]
    NoDnsNames,
    #[error("a server TLS config needs a certificate")]
    NoCertificate,
    #[error("invalid DNS name {name:?} for a certificate SAN: {reason}")]
    BadDnsName { name: String, reason: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid SAN regex {pattern:?}: {source}")]
    Regex {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error(
        "cipher suite {name:?} is not one bosun offers (it speaks ECDHE with AES-GCM or ChaCha20-Poly1305 over TLS 1.2: ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256, ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384, ECDHE-ECDSA-CHACHA20-POLY1305, ECDHE-RSA-CHACHA20-POLY1305)"
    )]
    CipherSuite { name: String },
    #[error(
        "ECDH curve {name:?} is not one bosun offers (it speaks X25519, P-256 and P-384; P-256 is also prime256v1 or secp256r1, P-384 secp384r1)"
    )]
    EcdhCurve { name: String },
    #[error("TLS version range is empty: min {min:?} is above max {max:?}")]
    VersionRange {
        min: crate::TlsVersion,
        max: crate::TlsVersion,
    },
    #[error("root store is empty: {origin} holds no usable CA certificate")]
    EmptyRoots { origin: String },
    #[error("rejected CA certificate in {origin}: {source}")]
    BadRoot {
        origin: String,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS configuration rejected by rustls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error(transparent)]
    Spiffe(#[from] SpiffeIdError),
}
