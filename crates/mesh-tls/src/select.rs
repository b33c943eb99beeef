//! A server's choice among several certificates (say, RSA and ECDSA for one name, or one per name),
//! made per handshake from the ClientHello the way Envoy makes it:
//!
//! - no server name: the first certificate of the key type the client prefers (ECDSA when it can
//!   take one, else RSA);
//! - a server name: the same choice among the certificates whose names match it exactly, else
//!   among those a wildcard name (`*.example.com`) matches;
//! - no name matching, or none of the matching ones of a type the client takes: the first
//!   certificate, whatever the client takes (so a client that takes only RSA, sent to an ECDSA
//!   certificate, fails its handshake, as with Envoy).
//!
//! A certificate's names are its DNS subject alternative names, or its subject's common name when
//! it has none.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{SignatureAlgorithm, SignatureScheme, SupportedCipherSuite};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::san::subject_alt_names;
use crate::{Error, Identity, SubjectAltName};

/// One certificate, with what the choice looks at.
#[derive(Debug)]
struct Candidate {
    key: Arc<CertifiedKey>,
    algorithm: SignatureAlgorithm,
    /// Lowercase DNS names; a wildcard keeps its `*.` prefix.
    names: Vec<String>,
}

impl Candidate {
    fn new(identity: &Identity, provider: &CryptoProvider) -> Result<Candidate, Error> {
        let key = CertifiedKey::from_der(
            identity.cert_chain().to_vec(),
            identity.private_key().clone_key(),
            provider,
        )?;
        let algorithm = key.key.algorithm();
        let names = match identity.cert_chain().first() {
            Some(leaf) => names_of(leaf)?,
            None => Vec::new(),
        };
        Ok(Candidate {
            key: Arc::new(key),
            algorithm,
            names,
        })
    }

    fn matches_exactly(&self, server_name: &str) -> bool {
        self.names.iter().any(|n| n == server_name)
    }

    /// `*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`.
    fn matches_wildcard(&self, server_name: &str) -> bool {
        let Some((_, parent)) = server_name.split_once('.') else {
            return false;
        };
        self.names
            .iter()
            .any(|n| n.strip_prefix("*.") == Some(parent))
    }
}

/// The leaf's DNS names, or its common name when it has none.
fn names_of(leaf: &rustls::pki_types::CertificateDer<'_>) -> Result<Vec<String>, Error> {
    let dns: Vec<String> = subject_alt_names(leaf)?
        .into_iter()
        .filter_map(|san| match san {
            SubjectAltName::Dns(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if !dns.is_empty() {
        return Ok(dns);
    }
    let Ok((_, x509)) = X509Certificate::from_der(leaf.as_ref()) else {
        return Ok(Vec::new());
    };
    Ok(x509
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect())
}

/// What key types a client can take: a signature scheme of the type, and a cipher suite this
/// server has that works with it (any TLS 1.3 suite; for TLS 1.2, ECDHE_RSA suites need an RSA
/// certificate and ECDHE_ECDSA ones an ECDSA one).
struct Takes {
    ecdsa: bool,
    rsa: bool,
}

impl Takes {
    fn of(hello: &ClientHello<'_>, suites: &[SupportedCipherSuite]) -> Takes {
        let offers_suite_for = |algorithm| {
            hello.cipher_suites().iter().any(|offered| {
                suites
                    .iter()
                    .any(|s| s.suite() == *offered && s.usable_for_signature_algorithm(algorithm))
            })
        };
        let schemes = hello.signature_schemes();
        let rsa_scheme = schemes.iter().any(|s| {
            matches!(
                s,
                SignatureScheme::RSA_PSS_SHA256
                    | SignatureScheme::RSA_PSS_SHA384
                    | SignatureScheme::RSA_PSS_SHA512
                    | SignatureScheme::RSA_PKCS1_SHA256
                    | SignatureScheme::RSA_PKCS1_SHA384
                    | SignatureScheme::RSA_PKCS1_SHA512
            )
        });
        Takes {
            ecdsa: schemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
                && offers_suite_for(SignatureAlgorithm::ECDSA),
            rsa: rsa_scheme && offers_suite_for(SignatureAlgorithm::RSA),
        }
    }

    /// The first of `candidates` of the type this client prefers: ECDSA, else RSA.
    fn pick<'a>(
        &self,
        candidates: impl Iterator<Item = &'a Candidate> + Clone,
    ) -> Option<&'a Candidate> {
        let first = |algorithm| candidates.clone().find(|c| c.algorithm == algorithm);
        let ecdsa = self
            .ecdsa
            .then(|| first(SignatureAlgorithm::ECDSA))
            .flatten();
        ecdsa.or_else(|| self.rsa.then(|| first(SignatureAlgorithm::RSA)).flatten())
    }
}

/// Chooses among a server context's certificates per handshake (see the module's doc).
#[derive(Debug)]
pub(crate) struct CertificateChoice {
    candidates: Vec<Candidate>,
    /// The server's cipher suites (TLS 1.3's only when it speaks TLS 1.3).
    suites: Vec<SupportedCipherSuite>,
}

impl CertificateChoice {
    /// The choice among `identities`, in their order, for a server that speaks TLS 1.3 or not; each
    /// must hold a key matching its certificate.
    pub(crate) fn new(
        identities: &[Identity],
        provider: &CryptoProvider,
        tls13: bool,
    ) -> Result<Self, Error> {
        let candidates = identities
            .iter()
            .map(|i| Candidate::new(i, provider))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CertificateChoice {
            candidates,
            suites: provider
                .cipher_suites
                .iter()
                .filter(|s| tls13 || !matches!(s, SupportedCipherSuite::Tls13(_)))
                .copied()
                .collect(),
        })
    }

    fn choose(&self, hello: &ClientHello<'_>) -> Option<&Candidate> {
        let takes = Takes::of(hello, &self.suites);
        let all = self.candidates.iter();
        let chosen = match hello.server_name().map(str::to_ascii_lowercase) {
            None => takes.pick(all),
            Some(name) => takes
                .pick(all.clone().filter(|c| c.matches_exactly(&name)))
                .or_else(|| takes.pick(all.filter(|c| c.matches_wildcard(&name)))),
        };
        chosen.or(self.candidates.first())
    }
}

impl ResolvesServerCert for CertificateChoice {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(&hello).map(|c| c.key.clone())
    }
}
