//! Rendering Envoy API messages as proto3 JSON, as Envoy's admin `/config_dump` does: proto field names
//! (snake_case), default values left out, `Any` contents expanded with `"@type"`, durations as `"1.5s"`.

use prost::{Message, Name};
use prost_reflect::{DynamicMessage, SerializeOptions};

use crate::descriptor;

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("no descriptor for message {0}")]
    UnknownMessage(String),
    #[error("cannot decode {name}: {source}")]
    Decode {
        name: String,
        #[source]
        source: prost::DecodeError,
    },
    /// Typically an `Any` whose type is not in Envoy's API (an Istio-only filter, say).
    #[error("cannot render {name} as JSON: {source}")]
    Serialize {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Renders `m` as proto3 JSON. When it cannot be rendered (an `Any` of a type Envoy's API does not
/// have), the result is `{"@type": <type URL of M>, "@error": <why>}`; use [`try_to_json`] to get the
/// error instead.
pub fn to_json<M: Message + Name>(m: &M) -> serde_json::Value {
    try_to_json(m).unwrap_or_else(|e| {
        serde_json::json!({
            "@type": M::type_url(),
            "@error": e.to_string(),
        })
    })
}

/// Renders `m` as proto3 JSON.
pub fn try_to_json<M: Message + Name>(m: &M) -> Result<serde_json::Value, JsonError> {
    encoded_to_json(&M::full_name(), &m.encode_to_vec())
}

/// Renders `m` as proto3 JSON with its scalar, repeated and map fields shown even when they hold
/// their default (Envoy's `always_print_primitive_fields`, as its `/server_info` renders).
pub fn to_json_with_defaults<M: Message + Name>(m: &M) -> Result<serde_json::Value, JsonError> {
    render(&M::full_name(), &m.encode_to_vec(), false)
}

/// Renders the encoded message `bytes` of type `name` (a full name or a type URL) as proto3 JSON; for
/// an `Any`, pass its `type_url` and `value`.
pub fn encoded_to_json(name: &str, bytes: &[u8]) -> Result<serde_json::Value, JsonError> {
    render(name, bytes, true)
}

fn render(name: &str, bytes: &[u8], skip_defaults: bool) -> Result<serde_json::Value, JsonError> {
    let desc =
        descriptor::message(name).ok_or_else(|| JsonError::UnknownMessage(name.to_owned()))?;
    let full_name = desc.full_name().to_owned();
    let dynamic = DynamicMessage::decode(desc, bytes).map_err(|source| JsonError::Decode {
        name: full_name.clone(),
        source,
    })?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(skip_defaults);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|source| JsonError::Serialize {
            name: full_name,
            source,
        })
}

/// Envoy's fields marked sensitive (private keys, their passwords, session ticket keys, generic
/// secrets), which its config dump shows as `"[redacted]"`, whatever their source.
const SENSITIVE: [&str; 5] = ["private_key", "password", "pkcs12", "keys", "secret"];

/// Replaces the content of every sensitive field of a rendered message (inline or a file's name)
/// with `"[redacted]"`, as Envoy's config dump does.
pub fn redact(v: &mut serde_json::Value) {
    fn all_strings(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = "[redacted]".to_owned(),
            serde_json::Value::Array(items) => items.iter_mut().for_each(all_strings),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(all_strings),
            _ => {}
        }
    }
    match v {
        serde_json::Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                // A DataSource (or a list of them): its inline content or file name.
                let data_source = |v: &serde_json::Value| {
                    v.as_object().is_some_and(|o| {
                        o.keys().any(|k| {
                            matches!(
                                k.as_str(),
                                "inline_string"
                                    | "inline_bytes"
                                    | "filename"
                                    | "environment_variable"
                            )
                        })
                    })
                };
                let sensitive = SENSITIVE.contains(&key.as_str())
                    && (data_source(value)
                        || value.as_array().is_some_and(|a| a.iter().all(data_source)));
                if sensitive {
                    all_strings(value);
                } else {
                    redact(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}
