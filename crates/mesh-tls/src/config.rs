//! rustls server and client configs as Envoy's `DownstreamTlsContext` / `UpstreamTlsContext` need them.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

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

/// Everything a server config needs besides its certificate.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub client_auth: ClientAuth,
    /// ALPN protocols in preference order, e.g. `[b"h2", b"http/1.1"]`; empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
    pub versions: TlsVersions,
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
}

impl ClientOptions {
    /// No client certificate, no ALPN, TLS 1.2–1.3.
    pub fn new(verify: Verify) -> Self {
        ClientOptions {
            verify,
            identity: None,
            alpn: Vec::new(),
            versions: TlsVersions::default(),
        }
    }
}

/// The crypto provider every config here uses: rustls' ring provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config presenting `identity`.
pub fn server_config(
    identity: &Identity,
    opts: &ServerOptions,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = crypto_provider();
    let versions = opts.versions.rustls()?;
    let verifier: Arc<dyn ClientCertVerifier> = match &opts.client_auth {
        ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::Optional(v) => client_verifier(v, false, &provider)?,
        ClientAuth::Required(v) => client_verifier(v, true, &provider)?,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            identity.cert_chain().to_vec(),
            identity.private_key().clone_key(),
        )?;
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
    let provider = crypto_provider();
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
