//! Packing and unpacking `google.protobuf.Any` (envoy-types' own `Any`, not prost-types').
//!
//! [`unpack`] also opens an Any holding a `TypedStruct` (`xds.type.v3` or the older `udpa.type.v1`),
//! the form control planes use for configs they cannot link against: the struct is read as the JSON form
//! of the message its `type_url` names.

use prost::{Message, Name};
use prost_reflect::{DynamicMessage, Value};

use crate::descriptor;
use crate::pb::google::protobuf::Any;
use crate::type_url;

/// Why an `Any` did not unpack to the requested type.
#[derive(Debug, thiserror::Error)]
pub enum AnyError {
    #[error("expected an Any holding {expected}, found {found}")]
    TypeMismatch { expected: String, found: String },
    #[error("invalid {type_name} in Any: {source}")]
    Decode {
        type_name: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("invalid TypedStruct for {type_name}: {message}")]
    TypedStruct { type_name: String, message: String },
}

/// The full message name in a type URL: what follows the last `/`.
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, n)| n)
}

/// Packs `msg` with its `type.googleapis.com/` type URL.
pub fn pack<T: Message + Name>(msg: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// Unpacks `any` as a `T`, checking the type URL; a `TypedStruct` naming `T` is converted.
pub fn unpack<T: Message + Name + Default>(any: &Any) -> Result<T, AnyError> {
    let expected = T::full_name();
    let found = type_name(&any.type_url);
    if found == expected {
        return T::decode(&any.value[..]).map_err(|source| AnyError::Decode {
            type_name: expected,
            source,
        });
    }
    if found == type_name(type_url::TYPED_STRUCT) || found == type_name(type_url::UDPA_TYPED_STRUCT)
    {
        return from_typed_struct(found, &any.value, &expected);
    }
    Err(AnyError::TypeMismatch {
        expected,
        found: found.to_owned(),
    })
}

/// Whether `any` holds a `T` (directly, not through a `TypedStruct`).
pub fn is<T: Name>(any: &Any) -> bool {
    type_name(&any.type_url) == T::full_name()
}

fn from_typed_struct<T: Message + Default>(
    struct_type: &str,
    bytes: &[u8],
    expected: &str,
) -> Result<T, AnyError> {
    let err = |message: String| AnyError::TypedStruct {
        type_name: expected.to_owned(),
        message,
    };
    let desc = descriptor::message(struct_type)
        .ok_or_else(|| err(format!("no descriptor for {struct_type}")))?;
    let typed = DynamicMessage::decode(desc, bytes).map_err(|e| err(e.to_string()))?;
    let inner_url = match typed.get_field_by_name("type_url").as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if type_name(&inner_url) != expected {
        return Err(AnyError::TypeMismatch {
            expected: expected.to_owned(),
            found: format!("{struct_type} of {}", type_name(&inner_url)),
        });
    }
    let json = match typed.get_field_by_name("value").as_deref() {
        Some(Value::Message(s)) => {
            serde_json::to_value(s).map_err(|e| err(format!("struct to JSON: {e}")))?
        }
        _ => serde_json::Value::Object(Default::default()),
    };
    let inner_desc = descriptor::message(expected)
        .ok_or_else(|| err(format!("no descriptor for {expected}")))?;
    let inner = DynamicMessage::deserialize(inner_desc, json).map_err(|e| err(e.to_string()))?;
    T::decode(&inner.encode_to_vec()[..]).map_err(|source| AnyError::Decode {
        type_name: expected.to_owned(),
        source,
    })
}
