//! rustls server and client configs as Envoy's `DownstreamTlsContext` / `UpstreamTlsContext` need them.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use crate::select::CertificateChoice;
use crate::verify::{InsecureServerVerifier, SanClientVerifier, SanServerVerifier};
use crate::{Error, Identity, RootStore, SanMatcher};

/// A TLS protocol version rustls implements (Envoy's `TLSv1_2` / `TLSv1_3`; older ones are not
/// supported and should be rejected when converting config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The allowed version range, inclusive (Envoy's `tls_minimum_protocol_version` /
/// `tls_maximum_protocol_version`). Defaults to TLS 1.2 through 1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersions {
    pub min: TlsVersion,
    pub max: TlsVersion,
}

impl Default for TlsVersions {
    fn default() -> Self {
        TlsVersions {
            min: TlsVersion::Tls12,
            max: TlsVersion::Tls13,
        }
    }
}

impl TlsVersions {
    fn rustls(self) -> Result<Vec<&'static SupportedProtocolVersion>, Error> {
        if self.min > self.max {
            return Err(Error::VersionRange {
                min: self.min,
                max: self.max,
            });
        }
        let mut out = Vec::with_capacity(2);
        // Preference order: newest first.
        if self.max >= TlsVersion::Tls13 {
            out.push(&rustls::version::TLS13);
        }
        if self.min <= TlsVersion::Tls12 {
            out.push(&rustls::version::TLS12);
        }
        Ok(out)
    }
}

/// How to validate a peer's certificate: chain to these roots, then (if any matchers are given)
/// at least one SAN must match one matcher. Envoy's `CertificateValidationContext` with
/// `trusted_ca` and `match_typed_subject_alt_names`.
#[derive(Debug, Clone)]
pub struct PeerValidation {
    pub roots: RootStore,
    /// Empty: chain validation only, as Envoy does with `trusted_ca` and no SAN matchers.
    pub san_matchers: Vec<SanMatcher>,
}

impl PeerValidation {
    /// Chain validation against `roots` only.
    pub fn new(roots: RootStore) -> Self {
        PeerValidation {
            roots,
            san_matchers: Vec::new(),
        }
    }

    /// Also require one of the SANs to match one of `matchers`.
    pub fn with_san_matchers(mut self, matchers: Vec<SanMatcher>) -> Self {
        self.san_matchers = matchers;
        self
    }
}

impl From<RootStore> for PeerValidation {
    fn from(roots: RootStore) -> Self {
        PeerValidation::new(roots)
    }
}

/// Whether a server asks for client certificates (Envoy's `require_client_certificate` plus a
/// validation context).
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// No client certificate requested.
    #[default]
    None,
    /// Requested; a client without one is let in, a client with a bad one is refused.
    Optional(PeerValidation),
    /// Required: Istio's STRICT mTLS.
    Required(PeerValidation),
}

/// How a client validates the server.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Chain to the roots and the certificate valid for the SNI server name (webpki's default).
    Full(RootStore),
    /// Chain to the roots, then SAN matchers instead of the server name; no matchers: chain only.
    /// This is how Istio's sidecars check `spiffe://…/ns/x/sa/y` upstream identities.
    SanMatch(PeerValidation),
    /// Accept any certificate (Envoy's upstream TLS without a validation context). The server must
    /// still prove possession of its key.
    InsecureSkipVerify,
}

/// The TLS 1.2 cipher suites a side offers or accepts, in preference order: Envoy's `cipher_suites`,
/// by OpenSSL/BoringSSL name. TLS 1.3's suites are not chosen (BoringSSL fixes them, so Envoy's
/// list does not apply to them either). Empty: all of rustls' suites.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tls12Ciphers(Vec<SupportedCipherSuite>);

impl Tls12Ciphers {
    /// Envoy's list: names, or `[A|B]` groups of equally preferred ones (kept in their order). A
    /// name bosun does not speak (CBC, static RSA, PSK, 3DES, …) is an error naming it.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Tls12Ciphers, Error> {
        use rustls::crypto::ring::cipher_suite as c;
        let mut out = Vec::new();
        for entry in names {
            let entry = entry.as_ref().trim();
            let group = entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or(entry);
            for name in group.split('|').map(str::trim) {
                let suite = match name {
                    "ECDHE-ECDSA-AES128-GCM-SHA256" => c::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                    "ECDHE-RSA-AES128-GCM-SHA256" => c::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                    "ECDHE-ECDSA-AES256-GCM-SHA384" => c::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    "ECDHE-RSA-AES256-GCM-SHA384" => c::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                    "ECDHE-ECDSA-CHACHA20-POLY1305" => {
                        c::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    }
                    "ECDHE-RSA-CHACHA20-POLY1305" => c::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                    _ => {
                        return Err(Error::CipherSuite {
                            name: name.to_owned(),
                        });
                    }
                };
                if !out.contains(&suite) {
                    out.push(suite);
                }
            }
        }
        Ok(Tls12Ciphers(out))
    }

    /// Whether no list was given (rustls' defaults apply).
    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

/// The key exchange groups a side offers or accepts, in preference order: Envoy's `ecdh_curves`, by
/// BoringSSL name. Empty: rustls' groups (X25519, P-256, P-384).
#[derive(Debug, Clone, Default)]
pub struct EcdhCurves(Vec<&'static dyn SupportedKxGroup>);

impl PartialEq for EcdhCurves {
    fn eq(&self, other: &EcdhCurves) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.name() == b.name())
    }
}

impl EcdhCurves {
    /// Envoy's list. A group bosun does not speak (P-521, the post-quantum hybrids) is an error
    /// naming it.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<EcdhCurves, Error> {
        use rustls::crypto::ring::kx_group as kx;
        let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in names {
            let group = match name.as_ref().trim() {
                "X25519" => kx::X25519,
                "P-256" | "prime256v1" | "secp256r1" => kx::SECP256R1,
                "P-384" | "secp384r1" => kx::SECP384R1,
                other => {
                    return Err(Error::EcdhCurve {
                        name: other.to_owned(),
                    });
                }
            };
            if !out.iter().any(|g| g.name() == group.name()) {
                out.push(group);
            }
        }
        Ok(EcdhCurves(out))
    }

    /// Envoy's groups when its list is empty: X25519 and P-256 (not P-384, which rustls would
    /// also take).
    pub fn envoy_default() -> EcdhCurves {
        use rustls::crypto::ring::kx_group as kx;
        EcdhCurves(vec![kx::X25519, kx::SECP256R1])
    }

    /// Whether no list was given (rustls' defaults apply).
    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

/// Everything a server config needs besides its certificate.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub client_auth: ClientAuth,
    /// ALPN protocols in preference order, e.g. `[b"h2", b"http/1.1"]`; empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
    pub versions: TlsVersions,
    pub tls12_ciphers: Tls12Ciphers,
    pub ecdh_curves: EcdhCurves,
}

/// Everything a client config needs. The server name (SNI) is given per connection by the caller.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub verify: Verify,
    /// The client certificate for mTLS, if any.
    pub identity: Option<Identity>,
    /// ALPN protocols in preference order; empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
    pub versions: TlsVersions,
    pub tls12_ciphers: Tls12Ciphers,
    pub ecdh_curves: EcdhCurves,
}

impl ClientOptions {
    /// No client certificate, no ALPN, TLS 1.2–1.3.
    pub fn new(verify: Verify) -> Self {
        ClientOptions {
            verify,
            identity: None,
            alpn: Vec::new(),
            versions: TlsVersions::default(),
            tls12_ciphers: Tls12Ciphers::default(),
            ecdh_curves: EcdhCurves::default(),
        }
    }
}

/// The crypto provider every config here uses: rustls' ring provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// [`crypto_provider`] with its TLS 1.2 suites narrowed to `ciphers` (TLS 1.3's kept) and its key
/// exchange groups to `curves`.
fn provider_with(ciphers: &Tls12Ciphers, curves: &EcdhCurves) -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !ciphers.is_default() {
        provider
            .cipher_suites
            .retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)));
        provider.cipher_suites.extend(ciphers.0.iter().copied());
    }
    if !curves.is_default() {
        provider.kx_groups = curves.0.clone();
    }
    Arc::new(provider)
}

/// A server config presenting `identity`.
pub fn server_config(
    identity: &Identity,
    opts: &ServerOptions,
) -> Result<Arc<ServerConfig>, Error> {
    server_config_choosing(std::slice::from_ref(identity), opts)
}

/// A server config with several certificates (RSA and ECDSA ones for one name, or one per name),
/// one chosen per handshake by the client's server name and the key types it takes, as Envoy
/// chooses among a context's `tls_certificates` (see `select.rs`). One certificate is always
/// served, whatever the client asks for.
pub fn server_config_choosing(
    identities: &[Identity],
    opts: &ServerOptions,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider_with(&opts.tls12_ciphers, &opts.ecdh_curves);
    let versions = opts.versions.rustls()?;
    let verifier: Arc<dyn ClientCertVerifier> = match &opts.client_auth {
        ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::Optional(v) => client_verifier(v, false, &provider)?,
        ClientAuth::Required(v) => client_verifier(v, true, &provider)?,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)?
        .with_client_cert_verifier(verifier);
    let mut config = match identities {
        [] => return Err(Error::NoCertificate),
        [identity] => builder.with_single_cert(
            identity.cert_chain().to_vec(),
            identity.private_key().clone_key(),
        )?,
        several => {
            let tls13 = opts.versions.max >= TlsVersion::Tls13;
            let choice = CertificateChoice::new(several, &provider, tls13)?;
            builder.with_cert_resolver(Arc::new(choice))
        }
    };
    config.alpn_protocols = opts.alpn.clone();
    Ok(Arc::new(config))
}

fn client_verifier(
    v: &PeerValidation,
    mandatory: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(v.roots.rustls(), Arc::clone(provider));
    if !mandatory {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder.build()?;
    if v.san_matchers.is_empty() {
        return Ok(inner);
    }
    Ok(Arc::new(SanClientVerifier::new(
        inner,
        v.san_matchers.clone(),
    )))
}

/// A client config; the caller supplies the server name (SNI) when connecting.
pub fn client_config(opts: &ClientOptions) -> Result<Arc<ClientConfig>, Error> {
    let mut provider = provider_with(&opts.tls12_ciphers, &opts.ecdh_curves);
    if opts.versions.max < TlsVersion::Tls13 {
        // rustls would offer TLS 1.3's suites in a TLS 1.2 hello too; OpenSSL and BoringSSL (so
        // Envoy) do not, and a server reads a client's key types from its suites.
        let mut tls12_only = (*provider).clone();
        tls12_only
            .cipher_suites
            .retain(|s| !matches!(s, SupportedCipherSuite::Tls13(_)));
        provider = Arc::new(tls12_only);
    }
    let algs = provider.signature_verification_algorithms;
    let versions = opts.versions.rustls()?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)?;
    let builder = match &opts.verify {
        Verify::Full(roots) => builder.with_webpki_verifier(
            WebPkiServerVerifier::builder_with_provider(roots.rustls(), provider).build()?,
        ),
        Verify::SanMatch(v) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SanServerVerifier::new(
                v.roots.rustls(),
                v.san_matchers.clone(),
                algs,
            ))),
        Verify::InsecureSkipVerify => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(InsecureServerVerifier::new(algs))),
    };
    let mut config = match &opts.identity {
        Some(id) => {
            builder.with_client_auth_cert(id.cert_chain().to_vec(), id.private_key().clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn.clone();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_are_envoys_with_groups_and_unknown_ones_are_named() {
        let c = Tls12Ciphers::from_names(&[
            "[ECDHE-ECDSA-CHACHA20-POLY1305|ECDHE-ECDSA-AES128-GCM-SHA256]",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ])
        .expect("known names");
        let names: Vec<String> = c.0.iter().map(|s| format!("{:?}", s.suite())).collect();
        assert_eq!(
            names,
            [
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        );
        assert!(
            Tls12Ciphers::from_names::<&str>(&[])
                .expect("empty")
                .is_default()
        );
        // Istio's default inbound list has static-RSA suites rustls does not have.
        let e = Tls12Ciphers::from_names(&["ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384"])
            .expect_err("static RSA");
        assert!(e.to_string().contains("\"AES256-GCM-SHA384\""), "{e}");
    }

    #[test]
    fn curve_names_are_boringssls_and_unknown_ones_are_named() {
        let c = EcdhCurves::from_names(&["secp384r1", "X25519", "P-384", "prime256v1"])
            .expect("known names");
        let names: Vec<String> = c.0.iter().map(|g| format!("{:?}", g.name())).collect();
        assert_eq!(names, ["secp384r1", "X25519", "secp256r1"]);
        assert!(
            EcdhCurves::from_names::<&str>(&[])
                .expect("empty")
                .is_default()
        );
        assert_ne!(EcdhCurves::envoy_default(), EcdhCurves::default());
        let e = EcdhCurves::from_names(&["P-256", "P-521"]).expect_err("no P-521 in ring");
        assert!(e.to_string().contains("\"P-521\""), "{e}");
    }
}
