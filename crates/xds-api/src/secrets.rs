//! The secrets a TLS transport socket names (`SdsSecretConfig`s in its `CommonTlsContext`): what an
//! xDS client subscribes to over SDS, and what a proxy waits for before a listener or cluster that
//! names them can run.

use crate::any;
use crate::pb::envoy::config::cluster::v3::Cluster;
use crate::pb::envoy::config::core::v3::{TransportSocket, config_source, transport_socket};
use crate::pb::envoy::config::listener::v3::Listener;
use crate::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, UpstreamTlsContext,
    common_tls_context::ValidationContextType,
};

/// Where a named secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretSource {
    /// No `sds_config`: the bootstrap's `static_resources.secrets`.
    Static,
    /// `sds_config: {ads: {}}`: the ADS stream.
    Ads,
    /// Another config source (a file, a separate SDS server, or none at all).
    Other,
}

impl SecretSource {
    /// Where `c` takes its secret from.
    pub fn of(c: &SdsSecretConfig) -> SecretSource {
        match c
            .sds_config
            .as_ref()
            .map(|s| s.config_source_specifier.as_ref())
        {
            None => SecretSource::Static,
            Some(Some(config_source::ConfigSourceSpecifier::Ads(_))) => SecretSource::Ads,
            Some(_) => SecretSource::Other,
        }
    }
}

/// The secrets (name, source) a transport socket's TLS context names, certificate first. A socket
/// that is not TLS, or does not decode, names none.
pub fn secret_references(ts: &TransportSocket) -> Vec<(String, SecretSource)> {
    sds_secret_configs(ts)
        .into_iter()
        .map(|c| {
            let source = SecretSource::of(&c);
            (c.name, source)
        })
        .collect()
}

/// The `SdsSecretConfig`s a transport socket's TLS context holds, certificate first (none for a
/// socket that is not TLS, or does not decode).
pub fn sds_secret_configs(ts: &TransportSocket) -> Vec<SdsSecretConfig> {
    let Some(transport_socket::ConfigType::TypedConfig(config)) = ts.config_type.as_ref() else {
        return Vec::new();
    };
    let common: Option<CommonTlsContext> = if config.type_url.ends_with(".DownstreamTlsContext") {
        any::unpack::<DownstreamTlsContext>(config)
            .ok()
            .and_then(|d| d.common_tls_context)
    } else if config.type_url.ends_with(".UpstreamTlsContext") {
        any::unpack::<UpstreamTlsContext>(config)
            .ok()
            .and_then(|u| u.common_tls_context)
    } else {
        None
    };
    let Some(common) = common else {
        return Vec::new();
    };
    let validation = match common.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(c)) => Some(c),
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            c.validation_context_sds_secret_config
        }
        _ => None,
    };
    common
        .tls_certificate_sds_secret_configs
        .into_iter()
        .chain(validation)
        .collect()
}

/// A cluster's transport sockets: its own and its `transport_socket_matches`'.
pub fn cluster_transport_sockets(c: &Cluster) -> impl Iterator<Item = &TransportSocket> {
    c.transport_socket.iter().chain(
        c.transport_socket_matches
            .iter()
            .filter_map(|m| m.transport_socket.as_ref()),
    )
}

/// A listener's transport sockets: its filter chains' (the default one's too).
pub fn listener_transport_sockets(l: &Listener) -> impl Iterator<Item = &TransportSocket> {
    l.filter_chains
        .iter()
        .chain(&l.default_filter_chain)
        .filter_map(|fc| fc.transport_socket.as_ref())
}

/// The secrets a cluster's transport sockets name (its own and its `transport_socket_matches`').
pub fn cluster_secrets(c: &Cluster) -> Vec<(String, SecretSource)> {
    cluster_transport_sockets(c)
        .flat_map(secret_references)
        .collect()
}

/// The secrets a listener's filter chains name.
pub fn listener_secrets(l: &Listener) -> Vec<(String, SecretSource)> {
    listener_transport_sockets(l)
        .flat_map(secret_references)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::message_from_yaml;

    #[test]
    fn certificate_and_validation_secrets_are_named_with_their_source() {
        let l: Listener = message_from_yaml(
            r#"
name: l
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificate_sds_secret_configs: [{name: default, sds_config: {ads: {}}}]
        combined_validation_context:
          default_validation_context: {}
          validation_context_sds_secret_config: {name: ROOTCA}
- transport_socket:
    name: envoy.transport_sockets.raw_buffer
"#,
            None,
        )
        .expect("listener");
        assert_eq!(
            listener_secrets(&l),
            [
                ("default".to_owned(), SecretSource::Ads),
                ("ROOTCA".to_owned(), SecretSource::Static)
            ]
        );
        let c: Cluster = message_from_yaml(
            r#"
name: c
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    common_tls_context:
      validation_context_sds_secret_config: {name: ca, sds_config: {path_config_source: {path: /x}}}
"#,
            None,
        )
        .expect("cluster");
        assert_eq!(
            cluster_secrets(&c),
            [("ca".to_owned(), SecretSource::Other)]
        );
    }

    #[test]
    fn transport_socket_matches_name_their_secrets_too() {
        let c: Cluster = message_from_yaml(
            r#"
name: c
transport_socket_matches:
- name: tlsMode-istio
  match: {tlsMode: istio}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      common_tls_context:
        tls_certificate_sds_secret_configs: [{name: default, sds_config: {ads: {}}}]
- name: tlsMode-disabled
  match: {}
  transport_socket: {name: envoy.transport_sockets.raw_buffer}
"#,
            None,
        )
        .expect("cluster");
        assert_eq!(
            cluster_secrets(&c),
            [("default".to_owned(), SecretSource::Ads)]
        );
    }
}
