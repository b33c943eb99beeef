//! Istio's mesh-wide access log (MeshConfig `accessLogFile`, `accessLogEncoding`,
//! `accessLogFormat`): a file logger on every HTTP connection manager and TCP proxy a proxy gets,
//! in Istio's default text or JSON format unless the mesh gives one.

use mesh_api::registry::AccessLogEncoding;
use xds_api::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use xds_api::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use xds_api::pb::envoy::extensions::access_loggers::file::v3::{FileAccessLog, file_access_log};
use xds_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use xds_api::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use xds_api::pb::google::protobuf::{Struct, Value, value};

use crate::index::AccessLogSettings;

/// Istio's default text format (`EnvoyTextLogFormat`).
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" \
%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \
\"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% \
%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON format (`EnvoyJSONLogFormatIstio`): key, operator.
pub const ISTIO_JSON_FORMAT: [(&str, &str); 24] = [
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

/// The access log Istio puts on each filter for `settings`, and a warning when the mesh's JSON
/// format is not a JSON object of strings (Istio then uses its default, as here).
pub fn access_log(settings: &AccessLogSettings) -> (AccessLog, Option<String>) {
    let mut warning = None;
    let format = match settings.encoding {
        AccessLogEncoding::Text => {
            let text = settings.format.as_deref().unwrap_or(ISTIO_TEXT_FORMAT);
            // Istio ends a custom text format with a newline when it has none.
            let text = if text.ends_with('\n') {
                text.to_owned()
            } else {
                format!("{text}\n")
            };
            substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(text)),
                ..Default::default()
            })
        }
        AccessLogEncoding::Json => {
            let custom = settings.format.as_deref().map(json_format);
            let fields = match custom {
                Some(Ok(fields)) => fields,
                Some(Err(e)) => {
                    warning = Some(format!(
                        "accessLogFormat is not a JSON object of strings ({e}): Istio's default \
                         JSON format is used"
                    ));
                    default_json()
                }
                None => default_json(),
            };
            substitution_format_string::Format::JsonFormat(Struct { fields })
        }
    };
    let file = FileAccessLog {
        path: settings.file.clone(),
        access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(
            SubstitutionFormatString {
                format: Some(format),
                ..Default::default()
            },
        )),
    };
    let log = AccessLog {
        name: "envoy.access_loggers.file".to_owned(),
        config_type: Some(access_log::ConfigType::TypedConfig(xds_api::any::pack(
            &file,
        ))),
        ..Default::default()
    };
    (log, warning)
}

type Fields = std::collections::HashMap<String, Value>;

fn string(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.to_owned())),
    }
}

fn default_json() -> Fields {
    ISTIO_JSON_FORMAT
        .iter()
        .map(|(k, v)| ((*k).to_owned(), string(v)))
        .collect()
}

/// A custom JSON format: an object whose values are strings.
fn json_format(text: &str) -> Result<Fields, String> {
    let parsed: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(object) = parsed else {
        return Err("not an object".to_owned());
    };
    object
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, string(&s))),
            other => Err(format!("{k} is {other}, not a string")),
        })
        .collect()
}

/// Puts `log` on every HTTP connection manager and TCP proxy of `listeners`.
pub fn apply(listeners: &mut [Listener], log: &AccessLog) {
    let filters = listeners
        .iter_mut()
        .flat_map(|l| {
            l.filter_chains
                .iter_mut()
                .chain(l.default_filter_chain.as_mut())
        })
        .flat_map(|c| &mut c.filters);
    for filter in filters {
        let Some(FilterConfig::TypedConfig(any)) = &mut filter.config_type else {
            continue;
        };
        if let Ok(mut manager) = xds_api::any::unpack::<HttpConnectionManager>(any) {
            manager.access_log = vec![log.clone()];
            *any = xds_api::any::pack(&manager);
        } else if let Ok(mut proxy) = xds_api::any::unpack::<TcpProxy>(any) {
            proxy.access_log = vec![log.clone()];
            *any = xds_api::any::pack(&proxy);
        }
    }
}
