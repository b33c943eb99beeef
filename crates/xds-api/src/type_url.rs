//! Type URLs of the xDS resources and of the extensions a proxy config names in `typed_config`.

macro_rules! urls {
    ($($(#[$doc:meta])* $name:ident = $full:literal;)*) => {
        $($(#[$doc])* pub const $name: &str = concat!("type.googleapis.com/", $full);)*
        /// Every constant in this module.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

urls! {
    // xDS resources.
    /// LDS.
    LISTENER = "envoy.config.listener.v3.Listener";
    /// CDS.
    CLUSTER = "envoy.config.cluster.v3.Cluster";
    /// RDS.
    ROUTE_CONFIGURATION = "envoy.config.route.v3.RouteConfiguration";
    /// SRDS.
    SCOPED_ROUTE_CONFIGURATION = "envoy.config.route.v3.ScopedRouteConfiguration";
    /// VHDS.
    VIRTUAL_HOST = "envoy.config.route.v3.VirtualHost";
    /// EDS.
    CLUSTER_LOAD_ASSIGNMENT = "envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// SDS.
    SECRET = "envoy.extensions.transport_sockets.tls.v3.Secret";
    /// RTDS.
    RUNTIME = "envoy.service.runtime.v3.Runtime";
    /// ECDS.
    TYPED_EXTENSION_CONFIG = "envoy.config.core.v3.TypedExtensionConfig";

    // Network filters.
    HTTP_CONNECTION_MANAGER =
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    TCP_PROXY = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

    // HTTP filters and their per-route configs.
    ROUTER = "envoy.extensions.filters.http.router.v3.Router";
    FAULT = "envoy.extensions.filters.http.fault.v3.HTTPFault";
    CORS = "envoy.extensions.filters.http.cors.v3.Cors";
    CORS_POLICY = "envoy.extensions.filters.http.cors.v3.CorsPolicy";
    LOCAL_RATELIMIT = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
    RBAC = "envoy.extensions.filters.http.rbac.v3.RBAC";
    RBAC_PER_ROUTE = "envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

    // Listener filters.
    ORIGINAL_DST = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst";
    TLS_INSPECTOR = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
    HTTP_INSPECTOR = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";

    // Transport sockets.
    UPSTREAM_TLS_CONTEXT = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
    DOWNSTREAM_TLS_CONTEXT = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
    RAW_BUFFER = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

    // Access loggers.
    FILE_ACCESS_LOG = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
    STDOUT_ACCESS_LOG = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
    STDERR_ACCESS_LOG = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

    // Cluster extension protocol options.
    HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

    // Untyped configs (envoy-types has no Rust type for these; `any::unpack` reads them).
    TYPED_STRUCT = "xds.type.v3.TypedStruct";
    UDPA_TYPED_STRUCT = "udpa.type.v1.TypedStruct";
}

#[cfg(test)]
mod tests {
    use prost::Name;

    use super::*;
    use crate::pb::envoy::config;
    use crate::pb::envoy::extensions::{access_loggers, filters, transport_sockets, upstreams};
    use crate::pb::envoy::service::runtime::v3::Runtime;

    #[test]
    fn match_envoy_types() {
        let pairs = [
            (LISTENER, config::listener::v3::Listener::type_url()),
            (CLUSTER, config::cluster::v3::Cluster::type_url()),
            (
                ROUTE_CONFIGURATION,
                config::route::v3::RouteConfiguration::type_url(),
            ),
            (
                SCOPED_ROUTE_CONFIGURATION,
                config::route::v3::ScopedRouteConfiguration::type_url(),
            ),
            (VIRTUAL_HOST, config::route::v3::VirtualHost::type_url()),
            (
                CLUSTER_LOAD_ASSIGNMENT,
                config::endpoint::v3::ClusterLoadAssignment::type_url(),
            ),
            (SECRET, transport_sockets::tls::v3::Secret::type_url()),
            (RUNTIME, Runtime::type_url()),
            (
                TYPED_EXTENSION_CONFIG,
                config::core::v3::TypedExtensionConfig::type_url(),
            ),
            (
                HTTP_CONNECTION_MANAGER,
                filters::network::http_connection_manager::v3::HttpConnectionManager::type_url(),
            ),
            (
                TCP_PROXY,
                filters::network::tcp_proxy::v3::TcpProxy::type_url(),
            ),
            (ROUTER, filters::http::router::v3::Router::type_url()),
            (FAULT, filters::http::fault::v3::HttpFault::type_url()),
            (CORS, filters::http::cors::v3::Cors::type_url()),
            (CORS_POLICY, filters::http::cors::v3::CorsPolicy::type_url()),
            (
                LOCAL_RATELIMIT,
                filters::http::local_ratelimit::v3::LocalRateLimit::type_url(),
            ),
            (RBAC, filters::http::rbac::v3::Rbac::type_url()),
            (
                RBAC_PER_ROUTE,
                filters::http::rbac::v3::RbacPerRoute::type_url(),
            ),
            (
                ORIGINAL_DST,
                filters::listener::original_dst::v3::OriginalDst::type_url(),
            ),
            (
                TLS_INSPECTOR,
                filters::listener::tls_inspector::v3::TlsInspector::type_url(),
            ),
            (
                HTTP_INSPECTOR,
                filters::listener::http_inspector::v3::HttpInspector::type_url(),
            ),
            (
                UPSTREAM_TLS_CONTEXT,
                transport_sockets::tls::v3::UpstreamTlsContext::type_url(),
            ),
            (
                DOWNSTREAM_TLS_CONTEXT,
                transport_sockets::tls::v3::DownstreamTlsContext::type_url(),
            ),
            (
                RAW_BUFFER,
                transport_sockets::raw_buffer::v3::RawBuffer::type_url(),
            ),
            (
                FILE_ACCESS_LOG,
                access_loggers::file::v3::FileAccessLog::type_url(),
            ),
            (
                STDOUT_ACCESS_LOG,
                access_loggers::stream::v3::StdoutAccessLog::type_url(),
            ),
            (
                STDERR_ACCESS_LOG,
                access_loggers::stream::v3::StderrAccessLog::type_url(),
            ),
            (
                HTTP_PROTOCOL_OPTIONS,
                upstreams::http::v3::HttpProtocolOptions::type_url(),
            ),
        ];
        for (constant, from_type) in pairs {
            assert_eq!(constant, from_type);
        }
    }

    #[test]
    fn all_in_descriptor_pool() {
        for url in ALL {
            assert!(crate::descriptor::message(url).is_some(), "{url}");
        }
    }
}
