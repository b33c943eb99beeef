//! Istio's mesh-wide access log (MeshConfig `accessLogFile`, `accessLogEncoding`,
//! `accessLogFormat`): a file logger on every HTTP connection manager and TCP proxy a proxy gets,
//! in Istio's default text or JSON format unless the mesh gives one.

use mesh_api::registry::{AccessLogEncoding, ISTIO_JSON_FORMAT, ISTIO_TEXT_FORMAT};
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
