//! TLS transport sockets: Envoy's `envoy.transport_sockets.tls` with a `DownstreamTlsContext` (listener
//! filter chains) or an `UpstreamTlsContext` (clusters), turned into ready rustls configs.
//!
//! This is the one place the model reads files: the certificates and keys a context names, as Envoy
//! does when it loads the config, so a missing or bad PEM is a config error with its field path rather
//! than a failed handshake later. Certificates and validation contexts may also come as named secrets
//! (`tls_certificate_sds_secret_configs`, `validation_context_sds_secret_config`): from the
//! bootstrap's `static_resources.secrets` (no `sds_config`) or over ADS (`sds_config: {ads: {}}`),
//! looked up in [`Secrets`]. Private key providers, CRLs, SPKI/hash pins and cipher or curve lists
//! would change behaviour and are refused by field path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_tls::rustls::pki_types::ServerName;
use mesh_tls::rustls::{ClientConfig, ServerConfig};
use mesh_tls::{
    ClientAuth, ClientOptions, EcdhCurves, Identity, PeerValidation, RootStore, SanMatcher,
    SanType, ServerOptions, StringMatcher, Tls12Ciphers, TlsVersion, TlsVersions, Verify,
};
use xds_api::pb::envoy::config::core::v3 as core;
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use xds_api::pb::envoy::r#type::matcher::v3 as matcher;

use crate::error::{At, ModelError};
use crate::unpack;

pub use xds_api::secrets::SecretSource;

/// The secrets TLS contexts may name, by name.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub statics: HashMap<String, Arc<tls::Secret>>,
    pub ads: HashMap<String, Arc<tls::Secret>>,
}

impl Secrets {
    fn get(&self, source: SecretSource, name: &str) -> Option<&tls::Secret> {
        match source {
            SecretSource::Static => self.statics.get(name),
            SecretSource::Ads => self.ads.get(name),
            SecretSource::Other => None,
        }
        .map(|s| s.as_ref())
    }
}

/// Where an `SdsSecretConfig` takes its secret from; other config sources are refused.
fn secret_source(c: &tls::SdsSecretConfig, at: &At) -> Result<SecretSource, ModelError> {
    match SecretSource::of(c) {
        SecretSource::Other => Err(at.key("sds_config").unsupported(
            "secrets from other sources than ADS (sds_config: {ads: {}}) or static_resources.secrets (no sds_config)",
        )),
        source => Ok(source),
    }
}

/// The secret an `SdsSecretConfig` names, which must be there.
fn secret<'s>(
    c: &tls::SdsSecretConfig,
    at: &At,
    secrets: &'s Secrets,
) -> Result<&'s tls::Secret, ModelError> {
    if c.name.is_empty() {
        return Err(at.key("name").error("a secret reference needs a name"));
    }
    let source = secret_source(c, at)?;
    secrets.get(source, &c.name).ok_or_else(|| match source {
        SecretSource::Static => at.key("name").error(format!(
            "no secret {:?} in static_resources.secrets",
            c.name
        )),
        SecretSource::Ads | SecretSource::Other => at
            .key("name")
            .error(format!("the secret {:?} has not arrived over ADS", c.name)),
    })
}

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
const RAW_BUFFER: &str = "envoy.transport_sockets.raw_buffer";
const RAW_BUFFER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

/// A listener filter chain's TLS termination (`DownstreamTlsContext`).
#[derive(Debug, Clone)]
pub struct DownstreamTls {
    /// The server config, with the chain's ALPN protocols.
    pub config: Arc<ServerConfig>,
    /// The same without ALPN: Envoy (BoringSSL) goes on without ALPN when the client offers none of
    /// the chain's protocols, where rustls would fail the handshake.
    pub config_without_alpn: Arc<ServerConfig>,
    pub alpn: Vec<Vec<u8>>,
    pub require_client_certificate: bool,
    /// The URI names of the (first) certificate this side presents: the `By` of the
    /// `x-forwarded-client-cert` element it writes.
    pub local_uris: Vec<String>,
}

impl DownstreamTls {
    /// The config for a client that offered `offered` ALPN protocols.
    pub fn config_for(&self, offered: &[Vec<u8>]) -> Arc<ServerConfig> {
        if self.alpn.iter().any(|p| offered.contains(p)) {
            self.config.clone()
        } else {
            self.config_without_alpn.clone()
        }
    }
}

/// A cluster's TLS origination (`UpstreamTlsContext`).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `sni` as the name to connect with; `None`: no server name is sent (the connection uses the
    /// peer's IP address, for which rustls sends no SNI).
    pub server_name: Option<ServerName<'static>>,
    /// For the TCP proxy: the context's ALPN as configured.
    pub raw: Arc<ClientConfig>,
    /// For HTTP/1.1 and HTTP/2 connection pools: when the context lists no ALPN protocols, Envoy's
    /// pools offer their own (`http/1.1`, `h2`).
    pub http1: Arc<ClientConfig>,
    pub http2: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// Whether `a` and `b` are the very same origination (one built config, shared by pointer), or
    /// both plaintext.
    pub fn same(a: Option<&UpstreamTls>, b: Option<&UpstreamTls>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(&a.raw, &b.raw),
            _ => false,
        }
    }
}

/// Whether a transport socket is plaintext (`None`) or TLS, checking it is one Bosun runs.
fn tls_any<'a>(
    ts: &'a core::TransportSocket,
    at: &At,
) -> Result<Option<&'a xds_api::pb::google::protobuf::Any>, ModelError> {
    let any = ts
        .config_type
        .as_ref()
        .map(|core::transport_socket::ConfigType::TypedConfig(any)| any);
    if ts.name == RAW_BUFFER || any.is_some_and(|a| a.type_url == RAW_BUFFER_TYPE) {
        return Ok(None);
    }
    match any {
        Some(any) if any.type_url.ends_with(".tls.v3.DownstreamTlsContext")
            || any.type_url.ends_with(".tls.v3.UpstreamTlsContext") =>
        {
            Ok(Some(any))
        }
        None if ts.name == TLS_SOCKET => Err(at
            .key("typed_config")
            .error("the TLS transport socket needs a typed_config (a DownstreamTlsContext or UpstreamTlsContext)")),
        _ => Err(at.unsupported(format!(
            "the transport socket {:?} ({})",
            ts.name,
            any.map(|a| a.type_url.as_str()).unwrap_or_default()
        ))),
    }
}

/// A listener filter chain's `transport_socket`.
pub fn downstream(
    ts: &core::TransportSocket,
    at: &At,
    secrets: &Secrets,
) -> Result<Option<DownstreamTls>, ModelError> {
    let Some(any) = tls_any(ts, at)? else {
        return Ok(None);
    };
    let at = at.key("typed_config");
    let p: tls::DownstreamTlsContext = unpack(any, &at)?;
    if p.require_sni.as_ref().is_some_and(|b| b.value) {
        return Err(at.key("require_sni").unsupported("require_sni"));
    }
    if let Some(
        tls::downstream_tls_context::SessionTicketKeysType::SessionTicketKeysSdsSecretConfig(_),
    ) = &p.session_ticket_keys_type
    {
        return Err(at
            .key("session_ticket_keys_sds_secret_config")
            .unsupported("session ticket keys from SDS"));
    }
    let cat = at.key("common_tls_context");
    let common = p.common_tls_context.clone().unwrap_or_default();
    let c = common_context(&common, &cat, secrets)?;
    if c.identities.is_empty() {
        return Err(cat
            .key("tls_certificates")
            .error("a listener's TLS context needs a certificate (tls_certificates)"));
    }
    let require = p
        .require_client_certificate
        .as_ref()
        .is_some_and(|b| b.value);
    let client_auth = match (c.validation, require) {
        (Some(v), true) => ClientAuth::Required(v),
        (Some(v), false) => ClientAuth::Optional(v),
        (None, false) => ClientAuth::None,
        (None, true) => {
            return Err(cat.key("validation_context").error(
                "require_client_certificate needs a validation_context with trusted_ca to check client certificates against",
            ));
        }
    };
    let mut options = ServerOptions {
        client_auth,
        alpn: c.alpn.clone(),
        versions: c.versions.unwrap_or_default(),
        tls12_ciphers: c.ciphers.clone(),
        ecdh_curves: c.curves.clone(),
    };
    let build = |o: &ServerOptions| {
        mesh_tls::server_config_choosing(&c.identities, o).map_err(|e| cat.error(e.to_string()))
    };
    let config = build(&options)?;
    options.alpn.clear();
    let config_without_alpn = build(&options)?;
    let local_uris = c
        .identities
        .first()
        .and_then(|i| i.cert_chain().first())
        .map(mesh_tls::uri_names)
        .unwrap_or_default();
    Ok(Some(DownstreamTls {
        config,
        config_without_alpn,
        alpn: c.alpn,
        require_client_certificate: require,
        local_uris,
    }))
}

/// A cluster's `transport_socket`.
pub fn upstream(
    ts: &core::TransportSocket,
    at: &At,
    secrets: &Secrets,
) -> Result<Option<UpstreamTls>, ModelError> {
    let Some(any) = tls_any(ts, at)? else {
        return Ok(None);
    };
    let at = at.key("typed_config");
    let p: tls::UpstreamTlsContext = unpack(any, &at)?;
    if p.auto_host_sni {
        return Err(at.key("auto_host_sni").unsupported("auto_host_sni"));
    }
    if p.auto_sni_san_validation {
        return Err(at
            .key("auto_sni_san_validation")
            .unsupported("auto_sni_san_validation"));
    }
    let cat = at.key("common_tls_context");
    let common = p.common_tls_context.clone().unwrap_or_default();
    let c = common_context(&common, &cat, secrets)?;
    if c.identities.len() > 1 {
        let field = if common.tls_certificates.is_empty() {
            "tls_certificate_sds_secret_configs"
        } else {
            "tls_certificates"
        };
        return Err(cat.key(field).error(
            "a cluster's TLS context presents one client certificate (Envoy takes only one in \
             client contexts); keep one",
        ));
    }
    let identity = c.identities.first().cloned();
    let verify = match c.validation {
        // Envoy checks the chain and the SAN matchers, not the SNI against the certificate.
        Some(v) => Verify::SanMatch(v),
        None => Verify::InsecureSkipVerify,
    };
    // Envoy's upstream default is TLS 1.2 only.
    let versions = c.versions.unwrap_or(TlsVersions {
        min: TlsVersion::Tls12,
        max: TlsVersion::Tls12,
    });
    let build = |alpn: Vec<Vec<u8>>| {
        mesh_tls::client_config(&ClientOptions {
            verify: verify.clone(),
            identity: identity.clone(),
            alpn,
            versions,
            tls12_ciphers: c.ciphers.clone(),
            ecdh_curves: c.curves.clone(),
        })
        .map_err(|e| cat.error(e.to_string()))
    };
    let or = |fallback: &[u8]| {
        if c.alpn.is_empty() {
            vec![fallback.to_vec()]
        } else {
            c.alpn.clone()
        }
    };
    let server_name = if p.sni.is_empty() {
        None
    } else {
        Some(
            ServerName::try_from(p.sni.clone())
                .map_err(|e| at.key("sni").error(format!("invalid server name: {e}")))?,
        )
    };
    Ok(Some(UpstreamTls {
        server_name,
        raw: build(c.alpn.clone())?,
        http1: build(or(b"http/1.1"))?,
        http2: build(or(b"h2"))?,
    }))
}

/// What a `CommonTlsContext` says, checked.
struct Common {
    /// The certificates, in order (none: the side presents none).
    identities: Vec<Identity>,
    validation: Option<PeerValidation>,
    alpn: Vec<Vec<u8>>,
    /// `None`: the side's default range.
    versions: Option<TlsVersions>,
    /// `tls_params.cipher_suites` (TLS 1.2).
    ciphers: Tls12Ciphers,
    /// `tls_params.ecdh_curves`.
    curves: EcdhCurves,
}

fn common_context(
    p: &tls::CommonTlsContext,
    at: &At,
    secrets: &Secrets,
) -> Result<Common, ModelError> {
    use tls::common_tls_context::ValidationContextType as V;
    use tls::secret::Type as SecretType;
    if p.tls_certificate_provider_instance.is_some()
        || p.tls_certificate_certificate_provider.is_some()
        || p.tls_certificate_certificate_provider_instance.is_some()
    {
        return Err(at
            .key("tls_certificate_provider_instance")
            .unsupported("certificate providers"));
    }
    if p.custom_tls_certificate_selector.is_some() {
        return Err(at
            .key("custom_tls_certificate_selector")
            .unsupported("custom certificate selectors"));
    }
    if p.custom_handshaker.is_some() {
        return Err(at
            .key("custom_handshaker")
            .unsupported("custom handshakers"));
    }
    if p.key_log.is_some() {
        return Err(at.key("key_log").unsupported("TLS key logging"));
    }
    // As in Envoy, `tls_certificates` when it has any, else the secrets; a server chooses among
    // several per handshake (RSA and ECDSA, or by name), a client context takes one.
    let identities = if p.tls_certificates.is_empty() {
        let mut identities = Vec::new();
        for (i, c) in p.tls_certificate_sds_secret_configs.iter().enumerate() {
            let sat = at.key("tls_certificate_sds_secret_configs").index(i);
            match &secret(c, &sat, secrets)?.r#type {
                Some(SecretType::TlsCertificate(t)) => {
                    identities.push(certificate(t, &sat.key("(secret)").key("tls_certificate"))?)
                }
                _ => {
                    return Err(
                        sat.error(format!("the secret {:?} is not a tls_certificate", c.name))
                    );
                }
            }
        }
        identities
    } else {
        p.tls_certificates
            .iter()
            .enumerate()
            .map(|(i, c)| certificate(c, &at.key("tls_certificates").index(i)))
            .collect::<Result<Vec<_>, _>>()?
    };
    // A validation context from a secret, checked to be one.
    let validation_secret =
        |c: &tls::SdsSecretConfig, sat: &At| match &secret(c, sat, secrets)?.r#type {
            Some(SecretType::ValidationContext(v)) => Ok(v.clone()),
            _ => Err(sat.error(format!(
                "the secret {:?} is not a validation_context",
                c.name
            ))),
        };
    let validation = match &p.validation_context_type {
        None => None,
        Some(V::ValidationContext(v)) => Some(validation(v, &at.key("validation_context"))?),
        Some(V::ValidationContextSdsSecretConfig(c)) => {
            let sat = at.key("validation_context_sds_secret_config");
            let v = validation_secret(c, &sat)?;
            Some(validation(
                &v,
                &sat.key("(secret)").key("validation_context"),
            )?)
        }
        Some(V::CombinedValidationContext(c)) => {
            let cat = at.key("combined_validation_context");
            if c.validation_context_certificate_provider.is_some()
                || c.validation_context_certificate_provider_instance.is_some()
            {
                return Err(cat
                    .key("validation_context_certificate_provider_instance")
                    .unsupported("certificate providers"));
            }
            let dynamic = match &c.validation_context_sds_secret_config {
                Some(s) => Some(validation_secret(
                    s,
                    &cat.key("validation_context_sds_secret_config"),
                )?),
                None => None,
            };
            // As Envoy: the default context with the secret's merged over it (protobuf merge: the
            // secret's set fields win, lists are joined), e.g. Istio's SAN matchers plus the root CA.
            let combined = match (&c.default_validation_context, dynamic) {
                (Some(d), Some(s)) => {
                    let mut merged = d.clone();
                    prost::Message::merge(
                        &mut merged,
                        prost::Message::encode_to_vec(&s).as_slice(),
                    )
                    .map_err(|e| cat.error(format!("cannot merge the validation contexts: {e}")))?;
                    Some(merged)
                }
                (Some(d), None) => Some(d.clone()),
                (None, s) => s,
            };
            match &combined {
                Some(v) => Some(validation(v, &cat.key("default_validation_context"))?),
                None => None,
            }
        }
        Some(V::ValidationContextCertificateProvider(_))
        | Some(V::ValidationContextCertificateProviderInstance(_)) => {
            return Err(at
                .key("validation_context_certificate_provider_instance")
                .unsupported("certificate providers"));
        }
    };
    let TlsParams {
        versions,
        ciphers,
        curves,
    } = match &p.tls_params {
        Some(params) => tls_params(params, &at.key("tls_params"))?,
        None => TlsParams::default(),
    };
    Ok(Common {
        identities,
        validation,
        alpn: p
            .alpn_protocols
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        versions,
        ciphers,
        curves,
    })
}

/// What `tls_params` says.
struct TlsParams {
    /// `None`: the side's default range.
    versions: Option<TlsVersions>,
    ciphers: Tls12Ciphers,
    /// Envoy's default groups unless it lists others.
    curves: EcdhCurves,
}

impl Default for TlsParams {
    fn default() -> TlsParams {
        TlsParams {
            versions: None,
            ciphers: Tls12Ciphers::default(),
            curves: EcdhCurves::envoy_default(),
        }
    }
}

fn tls_params(p: &tls::TlsParameters, at: &At) -> Result<TlsParams, ModelError> {
    use tls::tls_parameters::TlsProtocol as P;
    let ciphers = Tls12Ciphers::from_names(&p.cipher_suites)
        .map_err(|e| at.key("cipher_suites").error(e.to_string()))?;
    let curves = if p.ecdh_curves.is_empty() {
        EcdhCurves::envoy_default()
    } else {
        EcdhCurves::from_names(&p.ecdh_curves)
            .map_err(|e| at.key("ecdh_curves").error(e.to_string()))?
    };
    for (field, set) in [
        ("signature_algorithms", !p.signature_algorithms.is_empty()),
        ("compliance_policies", !p.compliance_policies.is_empty()),
    ] {
        if set {
            return Err(at.key(field).unsupported(field));
        }
    }
    let version = |v: i32, field: &str| -> Result<Option<TlsVersion>, ModelError> {
        match P::try_from(v) {
            Ok(P::TlsAuto) => Ok(None),
            Ok(P::TlSv12) => Ok(Some(TlsVersion::Tls12)),
            Ok(P::TlSv13) => Ok(Some(TlsVersion::Tls13)),
            Ok(P::TlSv10 | P::TlSv11) => Err(at
                .key(field)
                .unsupported("TLS 1.0 and 1.1 (rustls speaks TLS 1.2 and 1.3)")),
            Err(_) => Err(at.key(field).error(format!("unknown TLS version {v}"))),
        }
    };
    let min = version(
        p.tls_minimum_protocol_version,
        "tls_minimum_protocol_version",
    )?;
    let max = version(
        p.tls_maximum_protocol_version,
        "tls_maximum_protocol_version",
    )?;
    if min.is_none() && max.is_none() {
        return Ok(TlsParams {
            versions: None,
            ciphers,
            curves,
        });
    }
    let versions = TlsVersions {
        min: min.unwrap_or(TlsVersion::Tls12),
        max: max.unwrap_or(TlsVersion::Tls13),
    };
    if versions.min > versions.max {
        return Err(at.error(format!(
            "tls_minimum_protocol_version {:?} is above tls_maximum_protocol_version {:?}",
            versions.min, versions.max
        )));
    }
    Ok(TlsParams {
        versions: Some(versions),
        ciphers,
        curves,
    })
}

fn certificate(p: &tls::TlsCertificate, at: &At) -> Result<Identity, ModelError> {
    if p.private_key_provider.is_some() {
        return Err(at
            .key("private_key_provider")
            .unsupported("private key providers"));
    }
    if p.password.is_some() {
        return Err(at.key("password").unsupported("encrypted private keys"));
    }
    if p.ocsp_staple.is_some() {
        return Err(at.key("ocsp_staple").unsupported("OCSP stapling"));
    }
    if !p.signed_certificate_timestamp.is_empty() {
        return Err(at
            .key("signed_certificate_timestamp")
            .unsupported("signed certificate timestamps"));
    }
    if p.watched_directory.is_some() {
        return Err(at
            .key("watched_directory")
            .unsupported("reloading certificates from a watched directory"));
    }
    let chain = data_source(p.certificate_chain.as_ref(), &at.key("certificate_chain"))?;
    let key = data_source(p.private_key.as_ref(), &at.key("private_key"))?;
    Identity::from_pem(&chain, &key).map_err(|e| at.error(e.to_string()))
}

fn validation(
    p: &tls::CertificateValidationContext,
    at: &At,
) -> Result<PeerValidation, ModelError> {
    let refused: [(&str, bool, &str); 11] = [
        (
            "verify_certificate_spki",
            !p.verify_certificate_spki.is_empty(),
            "SPKI pinning",
        ),
        (
            "verify_certificate_hash",
            !p.verify_certificate_hash.is_empty(),
            "certificate hash pinning",
        ),
        ("crl", p.crl.is_some(), "certificate revocation lists"),
        (
            "allow_expired_certificate",
            p.allow_expired_certificate,
            "allow_expired_certificate",
        ),
        (
            "trust_chain_verification",
            p.trust_chain_verification != 0,
            "trust_chain_verification ACCEPT_UNTRUSTED",
        ),
        (
            "custom_validator_config",
            p.custom_validator_config.is_some(),
            "custom certificate validators",
        ),
        (
            "system_root_certs",
            p.system_root_certs.is_some(),
            "the system's root certificates",
        ),
        (
            "ca_certificate_provider_instance",
            p.ca_certificate_provider_instance.is_some(),
            "certificate providers",
        ),
        (
            "watched_directory",
            p.watched_directory.is_some(),
            "reloading CAs from a watched directory",
        ),
        (
            "require_signed_certificate_timestamp",
            p.require_signed_certificate_timestamp
                .as_ref()
                .is_some_and(|b| b.value),
            "signed certificate timestamps",
        ),
        (
            "max_verify_depth",
            p.max_verify_depth.is_some(),
            "max_verify_depth",
        ),
    ];
    at.refuse_set(&refused)?;
    let Some(ca) = p.trusted_ca.as_ref() else {
        return Err(at.key("trusted_ca").unsupported(
            "a validation context without trusted_ca (SAN matching without chain validation)",
        ));
    };
    let pem = data_source(Some(ca), &at.key("trusted_ca"))?;
    let roots = RootStore::from_pem(&pem).map_err(|e| at.key("trusted_ca").error(e.to_string()))?;
    let mut san_matchers = Vec::new();
    for (i, m) in p.match_typed_subject_alt_names.iter().enumerate() {
        let mat = at.key("match_typed_subject_alt_names").index(i);
        use tls::subject_alt_name_matcher::SanType as T;
        let san_type = match T::try_from(m.san_type) {
            Ok(T::Dns) => SanType::Dns,
            Ok(T::Uri) => SanType::Uri,
            Ok(T::Email) => SanType::Email,
            Ok(T::IpAddress) => SanType::IpAddress,
            Ok(T::OtherName) => {
                return Err(mat.key("san_type").unsupported("OTHER_NAME SAN matchers"));
            }
            Ok(T::Unspecified) | Err(_) => {
                return Err(mat.key("san_type").error("san_type is required"));
            }
        };
        let sm = string_matcher(m.matcher.as_ref(), &mat.key("matcher"))?;
        san_matchers.push(SanMatcher::new(san_type, sm));
    }
    // The deprecated untyped form matches a SAN of any type.
    for (i, m) in p.match_subject_alt_names.iter().enumerate() {
        let sm = string_matcher(Some(m), &at.key("match_subject_alt_names").index(i))?;
        for t in [
            SanType::Dns,
            SanType::Uri,
            SanType::Email,
            SanType::IpAddress,
        ] {
            san_matchers.push(SanMatcher::new(t, sm.clone()));
        }
    }
    Ok(PeerValidation::new(roots).with_san_matchers(san_matchers))
}

fn string_matcher(
    p: Option<&matcher::StringMatcher>,
    at: &At,
) -> Result<StringMatcher, ModelError> {
    use matcher::string_matcher::MatchPattern as M;
    let p = p.ok_or_else(|| at.error("a matcher is required"))?;
    let m = match &p.match_pattern {
        Some(M::Exact(s)) => StringMatcher::exact(s),
        Some(M::Prefix(s)) => StringMatcher::prefix(s),
        Some(M::Suffix(s)) => StringMatcher::suffix(s),
        Some(M::Contains(s)) => StringMatcher::contains(s),
        Some(M::SafeRegex(r)) => {
            StringMatcher::regex(&r.regex).map_err(|e| at.key("safe_regex").error(e.to_string()))?
        }
        Some(M::Custom(_)) => return Err(at.key("custom").unsupported("custom string matchers")),
        None => return Err(at.error("a match pattern is required")),
    };
    Ok(m.ignore_case(p.ignore_case))
}

/// The bytes of a `DataSource`: a file, inline bytes or an inline string.
fn data_source(p: Option<&core::DataSource>, at: &At) -> Result<Vec<u8>, ModelError> {
    use core::data_source::Specifier as S;
    match p.and_then(|d| d.specifier.as_ref()) {
        Some(S::Filename(path)) => std::fs::read(path)
            .map_err(|e| at.key("filename").error(format!("cannot read {path}: {e}"))),
        Some(S::InlineBytes(b)) => Ok(b.clone()),
        Some(S::InlineString(s)) => Ok(s.as_bytes().to_vec()),
        Some(S::EnvironmentVariable(name)) => {
            std::env::var(name).map(String::into_bytes).map_err(|e| {
                at.key("environment_variable")
                    .error(format!("cannot read ${name}: {e}"))
            })
        }
        None => Err(at.error("a filename, inline_bytes or inline_string is required")),
    }
}

/// Envoy's `transport_socket_connect_timeout` on a filter chain; Bosun's default bound on a
/// downstream TLS handshake when it is unset (Envoy waits without bound).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
