//! TLS terminated by a gateway server or a Sidecar ingress listener: the `DownstreamTlsContext` of a
//! server's `tls` settings, with the certificate from files or, for a gateway, from the secret its
//! `credentialName` names, served over SDS as istiod serves it (`kubernetes://NAME`; for `MUTUAL`,
//! the client CA as `kubernetes://NAME-cacert`).

use mesh_api::secret::CredentialSecret;
use mesh_api::types::gateway::{ServerTlsMode, ServerTlsSettings, TlsProtocol};
use xds_api::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use xds_api::pb::envoy::config::core::v3::{DataSource, TransportSocket, data_source::Specifier};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, TlsParameters,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    secret,
    subject_alt_name_matcher::SanType,
    tls_parameters::TlsProtocol as EnvoyTlsProtocol,
};
use xds_api::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use xds_api::pb::google::protobuf::BoolValue;

use crate::generate::cluster::{ads_config_source, ads_secret_source, file};
use crate::identity::{ROOT_SECRET, WORKLOAD_SECRET};
use crate::index::Index;

/// How a server's connections arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerTls {
    /// In plain text (no `tls`, or only `httpsRedirect`).
    Plain,
    /// Over TLS, terminated with this context.
    Terminated(Box<DownstreamTlsContext>),
}

/// SDS name of the certificate and key in secret `name` (istiod's).
pub fn certificate_secret_name(name: &str) -> String {
    format!("kubernetes://{name}")
}

/// SDS name of the client CA that goes with credential `name` (istiod's).
pub fn ca_secret_name(name: &str) -> String {
    format!("kubernetes://{name}-cacert")
}

/// The TLS a gateway server in `namespace` (the gateway workload's: where its `credentialName`
/// secrets are) terminates, adding the SDS secrets it needs to `secrets`; `Err` says why the
/// server cannot be served.
pub fn gateway_server_tls(
    index: &Index,
    namespace: &str,
    tls: Option<&ServerTlsSettings>,
    secrets: &mut Vec<Secret>,
) -> Result<ServerTls, String> {
    let Some(tls) = tls else {
        return Ok(ServerTls::Plain);
    };
    let mutual = match tls.mode {
        Some(ServerTlsMode::Simple) => false,
        Some(ServerTlsMode::Mutual) => true,
        // A redirecting server is plain HTTP; validation allows no other mode without one.
        _ if tls.https_redirect.unwrap_or(false) => return Ok(ServerTls::Plain),
        mode => return Err(format!("TLS mode {mode:?} is not supported yet")),
    };
    // `credentialName`, or each of `credentialNames` (an RSA and an ECDSA certificate, say: the
    // proxy serves each client the one it takes); a MUTUAL server's client CA is the first's.
    let credentials: Vec<&str> = match &tls.credential_name {
        Some(name) => vec![name.as_str()],
        None => tls.credential_names.iter().map(String::as_str).collect(),
    };
    let Some(&credential) = credentials.first() else {
        return terminated_with_files(tls, mutual).map(|c| ServerTls::Terminated(Box::new(c)));
    };
    let find = |name: &str| {
        index
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| format!("credentialName {name}: no Secret {namespace}/{name}"))
    };
    for &name in &credentials {
        let secret = find(name)?;
        let (Some(chain), Some(key)) = (&secret.cert_chain, &secret.private_key) else {
            return Err(format!(
                "Secret {namespace}/{name} has no certificate and key (tls.crt and tls.key, or cert and key)"
            ));
        };
        // Checked here, so that a broken secret is named in the control plane's log rather than
        // refused by every gateway that would be sent it.
        mesh_tls::Identity::from_pem(chain, key)
            .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
        add_secret(
            secrets,
            certificate_secret_name(name),
            secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(chain)),
                private_key: Some(inline(key)),
                ..Default::default()
            }),
        );
    }
    let secret = find(credential)?;
    let mut context = CommonTlsContext {
        tls_certificate_sds_secret_configs: credentials
            .iter()
            .map(|name| credential_sds(certificate_secret_name(name)))
            .collect(),
        tls_params: tls_params(tls),
        ..Default::default()
    };
    if mutual {
        let ca = client_ca(tls, credential, secret, &find)?;
        mesh_tls::RootStore::from_pem(&ca)
            .map_err(|e| format!("the client CA of credential {credential}: {e}"))?;
        add_secret(
            secrets,
            ca_secret_name(credential),
            secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(&ca)),
                ..Default::default()
            }),
        );
        context.validation_context_type =
            Some(ValidationContextType::ValidationContextSdsSecretConfig(
                credential_sds(ca_secret_name(credential)),
            ));
    }
    Ok(ServerTls::Terminated(Box::new(downstream(context, mutual))))
}

/// The CA that verifies clients of a `MUTUAL` server with credential `name`, in Istio's order: the
/// secret `caCertCredentialName` names, the credential's own `ca.crt`, the secret `NAME-cacert`.
fn client_ca<'a>(
    tls: &ServerTlsSettings,
    name: &str,
    secret: &'a CredentialSecret,
    find: &impl Fn(&str) -> Result<&'a std::sync::Arc<CredentialSecret>, String>,
) -> Result<Vec<u8>, String> {
    let ca_of = |s: &CredentialSecret| s.ca_cert.clone().or_else(|| s.cert_chain.clone());
    if let Some(ca_name) = &tls.ca_cert_credential_name {
        return find(ca_name)
            .map(|s| ca_of(s))?
            .ok_or_else(|| format!("caCertCredentialName {ca_name}: the secret has no ca.crt"));
    }
    if let Some(ca) = &secret.ca_cert {
        return Ok(ca.clone());
    }
    find(&format!("{name}-cacert"))
        .ok()
        .and_then(|s| ca_of(s))
        .ok_or_else(|| {
            format!("MUTUAL needs a client CA: ca.crt in Secret {name} or a Secret {name}-cacert")
        })
}

/// `SIMPLE` with `serverCertificate` and `privateKey` files; `MUTUAL` with `caCertificates` too.
fn terminated_with_files(
    tls: &ServerTlsSettings,
    mutual: bool,
) -> Result<DownstreamTlsContext, String> {
    // `serverCertificate` and `privateKey`, or each of `tlsCertificates`; a MUTUAL server's client
    // CA is `caCertificates`, else the first of `tlsCertificates`'.
    let files: Vec<(&str, &str, Option<&str>)> = match (&tls.server_certificate, &tls.private_key) {
        (Some(cert), Some(key)) => vec![(cert, key, tls.ca_certificates.as_deref())],
        _ => tls
            .tls_certificates
            .iter()
            .filter_map(|c| {
                let (Some(cert), Some(key)) = (&c.server_certificate, &c.private_key) else {
                    return None;
                };
                Some((cert.as_str(), key.as_str(), c.ca_certificates.as_deref()))
            })
            .collect(),
    };
    if files.is_empty() {
        return Err(
            "TLS needs credentialName or certificate files (serverCertificate, privateKey)"
                .to_owned(),
        );
    }
    let mut context = CommonTlsContext {
        tls_certificates: files
            .iter()
            .map(|(cert, key, _)| TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            })
            .collect(),
        tls_params: tls_params(tls),
        ..Default::default()
    };
    if mutual {
        let ca = tls
            .ca_certificates
            .as_deref()
            .or(files[0].2)
            .ok_or("MUTUAL with certificate files needs caCertificates")?;
        context.validation_context_type = Some(ValidationContextType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(file(ca)),
                ..Default::default()
            },
        ));
    }
    Ok(downstream(context, mutual))
}

/// Server TLS a Sidecar ingress listener terminates: `mode: SIMPLE` with certificate and key files,
/// or `MUTUAL` with `caCertificates` too, which clients' certificates must chain to (Istio takes
/// only those two modes there, and no `credentialName`).
pub fn sidecar_ingress_tls(tls: &ServerTlsSettings) -> Result<TransportSocket, String> {
    let mutual = match tls.mode {
        Some(ServerTlsMode::Simple) => false,
        Some(ServerTlsMode::Mutual) => true,
        mode => {
            return Err(format!(
                "its tls mode {} is neither SIMPLE nor MUTUAL (the two Istio takes on a Sidecar ingress)",
                mode.unwrap_or_default().name()
            ));
        }
    };
    terminated_with_files(tls, mutual).map(|c| tls_socket(&c))
}

/// The transport socket that terminates TLS with `context`.
pub fn tls_socket(context: &DownstreamTlsContext) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(SocketConfig::TypedConfig(xds_api::any::pack(context))),
    }
}

fn downstream(common: CommonTlsContext, mutual: bool) -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: mutual.then_some(BoolValue { value: true }),
        ..Default::default()
    }
}

/// The server's protocol versions, cipher suites and curves as `tls_params` (as istiod writes them;
/// unset ones keep Envoy's defaults).
fn tls_params(tls: &ServerTlsSettings) -> Option<TlsParameters> {
    let version = |v: Option<TlsProtocol>| match v {
        None | Some(TlsProtocol::TlsAuto) => EnvoyTlsProtocol::TlsAuto,
        Some(TlsProtocol::Tlsv10) => EnvoyTlsProtocol::TlSv10,
        Some(TlsProtocol::Tlsv11) => EnvoyTlsProtocol::TlSv11,
        Some(TlsProtocol::Tlsv12) => EnvoyTlsProtocol::TlSv12,
        Some(TlsProtocol::Tlsv13) => EnvoyTlsProtocol::TlSv13,
    } as i32;
    let params = TlsParameters {
        tls_minimum_protocol_version: version(tls.min_protocol_version),
        tls_maximum_protocol_version: version(tls.max_protocol_version),
        cipher_suites: tls.cipher_suites.clone(),
        ecdh_curves: tls.ecdh_curves.clone(),
        ..Default::default()
    };
    (params != TlsParameters::default()).then_some(params)
}

/// The TLS of a connection between two proxies of the mesh (`ISTIO_MUTUAL`, either side): the
/// proxy's own certificate and the mesh's root, both over SDS.
pub fn mesh_tls_context() -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![workload_sds(WORKLOAD_SECRET.to_owned())],
        validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
            workload_sds(ROOT_SECRET.to_owned()),
        )),
        ..Default::default()
    }
}

/// [`mesh_tls_context`] for a client that checks the server is one of `identities` (SPIFFE IDs, the
/// destination's service accounts, as istiod writes them), beside being signed by the mesh's root.
pub fn mesh_tls_context_verifying(identities: &[String]) -> CommonTlsContext {
    let mut common = mesh_tls_context();
    if identities.is_empty() {
        return common;
    }
    let san = |id: &String| SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(id.clone())),
            ignore_case: false,
        }),
        ..Default::default()
    };
    common.validation_context_type = Some(ValidationContextType::CombinedValidationContext(
        CombinedCertificateValidationContext {
            default_validation_context: Some(CertificateValidationContext {
                match_typed_subject_alt_names: identities.iter().map(san).collect(),
                ..Default::default()
            }),
            validation_context_sds_secret_config: Some(workload_sds(ROOT_SECRET.to_owned())),
            ..Default::default()
        },
    ));
    common
}

/// The transport socket of a sidecar's inbound side for connections from other proxies of the mesh:
/// mutual TLS with the mesh's identities.
pub fn mesh_inbound_socket() -> TransportSocket {
    tls_socket(&downstream(mesh_tls_context(), true))
}

/// A gateway certificate (`credentialName`) over ADS: not waited for past Envoy's default.
fn credential_sds(name: String) -> SdsSecretConfig {
    SdsSecretConfig {
        name,
        sds_config: Some(ads_secret_source()),
    }
}

/// The workload's own certificate or the mesh's root over ADS: waited for, as everything else.
fn workload_sds(name: String) -> SdsSecretConfig {
    SdsSecretConfig {
        name,
        sds_config: Some(ads_config_source()),
    }
}

/// Adds a secret unless one of that name is there (several servers may share a credential).
fn add_secret(secrets: &mut Vec<Secret>, name: String, content: secret::Type) {
    if !secrets.iter().any(|s| s.name == name) {
        secrets.push(Secret {
            name,
            r#type: Some(content),
        });
    }
}

fn inline(bytes: &[u8]) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    }
}
