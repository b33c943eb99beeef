//! Proto3 JSON mapping, read from a positioned YAML tree into a [`DynamicMessage`].
//!
//! This walks the YAML nodes itself (rather than going through serde) so that every error knows the
//! position of the offending key or value and the field path to it. It follows the mapping the way
//! protobuf's JSON parser (which Envoy uses) does:
//!
//! - a field is named by its proto name (`route_config`) or its JSON name (`routeConfig`); an unknown
//!   name is an error, with a suggestion;
//! - `null` leaves a field unset (a `google.protobuf.Value` becomes `null_value`);
//! - two members of one `oneof` are an error;
//! - 64-bit and 32-bit integers take numbers or decimal strings; floats also take `"NaN"`,
//!   `"Infinity"`, `"-Infinity"`; bytes are base64;
//! - enums take the value's name (in any case, as Envoy's parser is set up) or its number;
//! - booleans take `true`/`false` or the strings `"true"`/`"false"`;
//! - `google.protobuf.Any` is an object with `"@type"`: the other keys are the fields of the named
//!   message, or `"value"` for a well-known type with a special JSON form;
//! - `Duration` is a string such as `"0.25s"`, wrappers are their bare value, `Struct`/`Value`/
//!   `ListValue` are any JSON, `Timestamp` is RFC 3339 and `FieldMask` is a comma-separated string.

use std::collections::HashMap;
use std::fmt::Write as _;

use kube_yaml::{Entry, Node, Pos, Value as Y};
use prost::Message as _;
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};

use crate::validate;

/// Why a YAML tree is not a valid message: where, at which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub pos: Pos,
    pub path: String,
    pub message: String,
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Decodes `node` as a message of type `desc`.
pub(crate) fn message(desc: &MessageDescriptor, node: &Node) -> Result<DynamicMessage> {
    Decoder {
        path: Vec::new(),
        validate: true,
    }
    .message(desc, node)
}

enum Seg {
    Field(String),
    Index(usize),
    Key(String),
}

struct Decoder {
    path: Vec<Seg>,
    /// Whether protoc-gen-validate rules are checked (off under `(validate.disabled)` messages and
    /// `message.skip` fields).
    validate: bool,
}

/// Longest duration protobuf allows: 10,000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

impl Decoder {
    fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Seg::Key(k) => {
                    let _ = write!(out, "[{k:?}]");
                }
            }
        }
        out
    }

    fn error(&self, pos: Pos, message: impl Into<String>) -> DecodeError {
        DecodeError {
            pos,
            path: self.path(),
            message: message.into(),
        }
    }

    fn mismatch(&self, node: &Node, expected: &str) -> DecodeError {
        self.error(
            node.pos,
            format!("expected {expected}, found {}", describe(node)),
        )
    }

    fn message(&mut self, desc: &MessageDescriptor, node: &Node) -> Result<DynamicMessage> {
        match desc.full_name() {
            "google.protobuf.Any" => self.any(desc, node),
            "google.protobuf.Duration" => self.duration(desc, node),
            "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue" => {
                let mut msg = DynamicMessage::new(desc.clone());
                if let Some(field) = desc.get_field(1) {
                    let value = self.scalar(&field.kind(), node)?;
                    msg.set_field(&field, value);
                }
                Ok(msg)
            }
            "google.protobuf.Timestamp"
            | "google.protobuf.FieldMask"
            | "google.protobuf.Struct"
            | "google.protobuf.Value"
            | "google.protobuf.ListValue" => self.delegate(desc, node),
            _ => {
                let mut msg = DynamicMessage::new(desc.clone());
                self.fields(desc, node, &mut msg, None)?;
                Ok(msg)
            }
        }
    }

    /// Reads the entries of an object into `msg`, skipping the key `skip` (`@type` inside an `Any`).
    fn fields(
        &mut self,
        desc: &MessageDescriptor,
        node: &Node,
        msg: &mut DynamicMessage,
        skip: Option<&str>,
    ) -> Result<()> {
        let Y::Map(entries) = &node.value else {
            return Err(self.mismatch(node, &format!("an object ({})", desc.full_name())));
        };
        let outer_validate = self.validate;
        let rules = if self.validate {
            let rules = validate::rules(desc);
            if rules.disabled {
                self.validate = false;
                None
            } else {
                Some(rules)
            }
        } else {
            None
        };
        let result = self.entries(desc, entries, msg, skip, rules.as_deref());
        self.validate = outer_validate;
        let given = result?;
        if let Some(rules) = rules {
            self.check_rules(node, msg, &rules, &given)?;
        }
        Ok(())
    }

    /// Reads the entries; returns the entry of each field that was given, by field number.
    fn entries<'n>(
        &mut self,
        desc: &MessageDescriptor,
        entries: &'n [Entry],
        msg: &mut DynamicMessage,
        skip: Option<&str>,
        rules: Option<&validate::MessageRules>,
    ) -> Result<HashMap<u32, &'n Entry>> {
        let mut seen: HashMap<u32, &'n Entry> = HashMap::new();
        let mut oneofs: HashMap<String, &str> = HashMap::new();
        for entry in entries {
            if skip == Some(entry.key.as_str()) {
                continue;
            }
            let Some(field) = desc
                .get_field_by_name(&entry.key)
                .or_else(|| desc.get_field_by_json_name(&entry.key))
            else {
                self.path.push(Seg::Field(entry.key.clone()));
                let err = self.error(entry.key_pos, unknown_field(desc, &entry.key));
                return Err(err);
            };
            self.path.push(Seg::Field(field.name().to_owned()));
            if let Some(first) = seen.insert(field.number(), entry) {
                return Err(self.error(
                    entry.key_pos,
                    format!(
                        "field `{}` is set twice (as `{}` and `{}`)",
                        field.name(),
                        first.key,
                        entry.key
                    ),
                ));
            }
            if entry.value.value == Y::Null {
                if !field.is_list()
                    && !field.is_map()
                    && matches!(field.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.Value")
                {
                    let value = self.message(&message_kind(&field), &entry.value)?;
                    msg.set_field(&field, Value::Message(value));
                }
                self.path.pop();
                continue;
            }
            if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic())
                && let Some(other) = oneofs.insert(oneof.name().to_owned(), &entry.key)
            {
                return Err(self.error(
                    entry.key_pos,
                    format!(
                        "`{other}` and `{}` are both set, but only one of oneof `{}` may be",
                        entry.key,
                        oneof.name()
                    ),
                ));
            }
            let skips = rules.is_some_and(|r| {
                r.fields
                    .iter()
                    .any(|(f, r)| *f == field && validate::skips(r))
            });
            let outer_validate = self.validate;
            if skips {
                self.validate = false;
            }
            let value = self.field(&field, entry);
            self.validate = outer_validate;
            msg.set_field(&field, value?);
            self.path.pop();
        }
        Ok(seen)
    }

    /// Checks the protoc-gen-validate rules of a decoded message's own fields (nested messages were
    /// checked as they were decoded). Scalars are checked even when absent, as Envoy does: a missing
    /// `name` with `min_len: 1` is an error.
    fn check_rules(
        &mut self,
        node: &Node,
        msg: &DynamicMessage,
        rules: &validate::MessageRules,
        given: &HashMap<u32, &Entry>,
    ) -> Result<()> {
        for (field, r) in &rules.fields {
            let entry = given.get(&field.number()).copied();
            let present = msg.has_field(field);
            // Includes proto3 `optional` fields (synthetic oneofs): checked only when present.
            let in_oneof = field.containing_oneof().is_some();
            let singular_message =
                !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(_));
            self.path.push(Seg::Field(field.name().to_owned()));
            // A oneof member's rules apply only when it is the member set (as in PGV's generated code).
            if (singular_message || in_oneof) && !present {
                if !in_oneof && validate::is_required(r) {
                    return Err(self.error(
                        node.pos,
                        format!("missing required field `{}`", field.name()),
                    ));
                }
                self.path.pop();
                continue;
            }
            let value = msg.get_field(field);
            let pos = entry.map_or(node.pos, |e| e.value.pos);
            if let Err(message) = validate::check(&field.kind(), &value, r) {
                let message = match entry {
                    Some(_) => message,
                    None => format!("missing field `{}`: {message}", field.name()),
                };
                return Err(self.error(pos, message));
            }
            if let Some(entry) = entry {
                self.check_nested(field, &value, r, &entry.value)?;
            }
            self.path.pop();
        }
        for (oneof, members) in &rules.required_oneofs {
            let set = members.iter().any(|m| {
                msg.descriptor()
                    .get_field_by_name(m)
                    .is_some_and(|f| msg.has_field(&f))
            });
            if !set {
                return Err(self.error(
                    node.pos,
                    format!(
                        "one of {} is required (oneof `{oneof}`)",
                        members
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `repeated.items`, `map.keys` and `map.values` rules, each error at its item.
    fn check_nested(
        &mut self,
        field: &FieldDescriptor,
        value: &Value,
        rules: &prost_reflect::DynamicMessage,
        node: &Node,
    ) -> Result<()> {
        match (value, &node.value) {
            (Value::List(items), Y::Seq(nodes)) => {
                let Some(item_rules) = validate::nested(rules, "items") else {
                    return Ok(());
                };
                for (i, (item, item_node)) in items.iter().zip(nodes).enumerate() {
                    if let Err(message) = validate::check(&field.kind(), item, item_rules) {
                        self.path.push(Seg::Index(i));
                        return Err(self.error(item_node.pos, message));
                    }
                }
            }
            (Value::Map(map), Y::Map(entries)) => {
                let entry_desc = message_kind(field);
                let key_kind = entry_desc.map_entry_key_field().kind();
                let value_kind = entry_desc.map_entry_value_field().kind();
                let keys = validate::nested(rules, "keys");
                let values = validate::nested(rules, "values");
                for e in entries {
                    let Ok(key) = self.map_key(&key_kind, e) else {
                        continue;
                    };
                    let checks = [
                        (keys, validate::key_value(&key), &key_kind, e.key_pos),
                        (
                            values,
                            map.get(&key).cloned().unwrap_or(Value::Bool(false)),
                            &value_kind,
                            e.value.pos,
                        ),
                    ];
                    for (r, v, kind, pos) in checks {
                        if let Some(r) = r
                            && let Err(message) = validate::check(kind, &v, r)
                        {
                            self.path.push(Seg::Key(e.key.clone()));
                            return Err(self.error(pos, message));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn field(&mut self, field: &FieldDescriptor, entry: &Entry) -> Result<Value> {
        let node = &entry.value;
        if field.is_map() {
            let Y::Map(items) = &node.value else {
                return Err(self.mismatch(node, "an object (a map)"));
            };
            let entry_desc = message_kind(field);
            let key_kind = entry_desc.map_entry_key_field().kind();
            let value_kind = entry_desc.map_entry_value_field().kind();
            let mut map = HashMap::with_capacity(items.len());
            for item in items {
                self.path.push(Seg::Key(item.key.clone()));
                let key = self.map_key(&key_kind, item)?;
                let value = self.single(&value_kind, &item.value)?;
                map.insert(key, value);
                self.path.pop();
            }
            Ok(Value::Map(map))
        } else if field.is_list() {
            let Y::Seq(items) = &node.value else {
                return Err(self.mismatch(node, "an array"));
            };
            let kind = field.kind();
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                self.path.push(Seg::Index(i));
                list.push(self.single(&kind, item)?);
                self.path.pop();
            }
            Ok(Value::List(list))
        } else {
            self.single(&field.kind(), node)
        }
    }

    /// One value of a field's kind (a list item, a map value or a singular field).
    fn single(&mut self, kind: &Kind, node: &Node) -> Result<Value> {
        match kind {
            Kind::Message(desc) => {
                if node.value == Y::Null && desc.full_name() != "google.protobuf.Value" {
                    return Err(self.mismatch(node, &format!("an object ({})", desc.full_name())));
                }
                Ok(Value::Message(self.message(desc, node)?))
            }
            kind => self.scalar(kind, node),
        }
    }

    fn scalar(&mut self, kind: &Kind, node: &Node) -> Result<Value> {
        match kind {
            Kind::Double => self.float(node, "a number").map(Value::F64),
            Kind::Float => {
                let f = self.float(node, "a 32-bit float")?;
                if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                    return Err(self.error(node.pos, format!("{f} is out of range for a float")));
                }
                Ok(Value::F32(f as f32))
            }
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                let i = self.integer(node, "a 32-bit integer")?;
                i32::try_from(i)
                    .map(Value::I32)
                    .map_err(|_| self.error(node.pos, format!("{i} is out of range for int32")))
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                let i = self.integer(node, "a 64-bit integer")?;
                i64::try_from(i)
                    .map(Value::I64)
                    .map_err(|_| self.error(node.pos, format!("{i} is out of range for int64")))
            }
            Kind::Uint32 | Kind::Fixed32 => {
                let i = self.integer(node, "an unsigned 32-bit integer")?;
                u32::try_from(i)
                    .map(Value::U32)
                    .map_err(|_| self.error(node.pos, format!("{i} is out of range for uint32")))
            }
            Kind::Uint64 | Kind::Fixed64 => {
                let i = self.integer(node, "an unsigned 64-bit integer")?;
                u64::try_from(i)
                    .map(Value::U64)
                    .map_err(|_| self.error(node.pos, format!("{i} is out of range for uint64")))
            }
            // Protobuf's parser also takes the strings "true" and "false" (quoted in YAML).
            Kind::Bool => match &node.value {
                Y::Bool(b) => Ok(Value::Bool(*b)),
                Y::String(s) if s == "true" => Ok(Value::Bool(true)),
                Y::String(s) if s == "false" => Ok(Value::Bool(false)),
                _ => Err(self.mismatch(node, "a boolean")),
            },
            Kind::String => match &node.value {
                Y::String(s) => Ok(Value::String(s.clone())),
                _ => Err(self.mismatch(node, "a string")),
            },
            Kind::Bytes => match &node.value {
                Y::String(s) => base64(s).map(|b| Value::Bytes(b.into())).ok_or_else(|| {
                    self.error(node.pos, format!("{s:?} is not valid base64 (bytes)"))
                }),
                _ => Err(self.mismatch(node, "a base64 string (bytes)")),
            },
            Kind::Enum(desc) => self.enumeration(desc, node),
            Kind::Message(desc) => Ok(Value::Message(self.message(desc, node)?)),
        }
    }

    fn integer(&self, node: &Node, expected: &str) -> Result<i128> {
        match &node.value {
            Y::Int(i) => Ok(i128::from(*i)),
            Y::Float(f) if f.fract() == 0.0 && f.abs() < 1.9e19 => Ok(*f as i128),
            Y::Float(f) => Err(self.error(node.pos, format!("expected {expected}, found {f}"))),
            Y::String(s) => s
                .trim()
                .parse::<i128>()
                .ok()
                .or_else(|| {
                    s.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 1.9e19)
                        .map(|f| f as i128)
                })
                .ok_or_else(|| self.mismatch(node, expected)),
            _ => Err(self.mismatch(node, expected)),
        }
    }

    fn float(&self, node: &Node, expected: &str) -> Result<f64> {
        match &node.value {
            Y::Int(i) => Ok(*i as f64),
            Y::Float(f) => Ok(*f),
            Y::String(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                s => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| self.mismatch(node, expected)),
            },
            _ => Err(self.mismatch(node, expected)),
        }
    }

    fn enumeration(&self, desc: &EnumDescriptor, node: &Node) -> Result<Value> {
        if desc.full_name() == "google.protobuf.NullValue" {
            return match &node.value {
                Y::Null => Ok(Value::EnumNumber(0)),
                Y::String(s) if s == "NULL_VALUE" => Ok(Value::EnumNumber(0)),
                _ => Err(self.mismatch(node, "null")),
            };
        }
        match &node.value {
            // Envoy parses enum names case-insensitively (`round_robin` is `ROUND_ROBIN`).
            Y::String(name) => match desc
                .get_value_by_name(name)
                .or_else(|| desc.values().find(|v| v.name().eq_ignore_ascii_case(name)))
            {
                Some(v) => Ok(Value::EnumNumber(v.number())),
                None => {
                    let names: Vec<String> = desc.values().map(|v| v.name().to_owned()).collect();
                    let mut message =
                        format!("unknown value {name:?} for enum {}", desc.full_name());
                    match suggest(name, names.iter().map(String::as_str)) {
                        Some(s) => {
                            let _ = write!(message, "; did you mean `{s}`?");
                        }
                        None => {
                            let _ = write!(message, "; expected one of: {}", names.join(", "));
                        }
                    }
                    Err(self.error(node.pos, message))
                }
            },
            Y::Int(i) => i32::try_from(*i)
                .map(Value::EnumNumber)
                .map_err(|_| self.error(node.pos, format!("{i} is out of range for an enum"))),
            _ => Err(self.mismatch(node, &format!("an enum name ({})", desc.full_name()))),
        }
    }

    fn map_key(&self, kind: &Kind, entry: &Entry) -> Result<MapKey> {
        let key = entry.key.as_str();
        let bad = || {
            self.error(
                entry.key_pos,
                format!(
                    "map key {key:?} is not a valid {}",
                    format!("{kind:?}").to_lowercase()
                ),
            )
        };
        Ok(match kind {
            Kind::String => MapKey::String(key.to_owned()),
            Kind::Bool => match key {
                "true" => MapKey::Bool(true),
                "false" => MapKey::Bool(false),
                _ => return Err(bad()),
            },
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                MapKey::I32(key.parse().map_err(|_| bad())?)
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                MapKey::I64(key.parse().map_err(|_| bad())?)
            }
            Kind::Uint32 | Kind::Fixed32 => MapKey::U32(key.parse().map_err(|_| bad())?),
            Kind::Uint64 | Kind::Fixed64 => MapKey::U64(key.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    }

    fn any(&mut self, desc: &MessageDescriptor, node: &Node) -> Result<DynamicMessage> {
        let Y::Map(entries) = &node.value else {
            return Err(self.mismatch(node, "an object with \"@type\" (google.protobuf.Any)"));
        };
        let Some(type_entry) = entries.iter().find(|e| e.key == "@type") else {
            return Err(self.error(
                node.pos,
                "missing \"@type\": a google.protobuf.Any names its message type, e.g. \
                 \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            ));
        };
        self.path.push(Seg::Field("@type".to_owned()));
        let Y::String(type_url) = &type_entry.value.value else {
            return Err(self.mismatch(&type_entry.value, "a type URL string"));
        };
        let Some((_, name)) = type_url.rsplit_once('/') else {
            return Err(self.error(
                type_entry.value.pos,
                format!(
                    "invalid type URL {type_url:?}: expected type.googleapis.com/<full message name>"
                ),
            ));
        };
        // The pool this message is decoded with (a bootstrap's may hold only what it names).
        let pool = desc.parent_pool();
        let Some(inner) = pool.get_message_by_name(name) else {
            let mut message = format!("unknown type {name:?} in \"@type\"");
            let names: Vec<String> = pool
                .all_messages()
                .map(|m| m.full_name().to_owned())
                .collect();
            if let Some(s) = suggest(name, names.iter().map(String::as_str)) {
                let _ = write!(message, "; did you mean `{s}`?");
            } else {
                message.push_str(" (not a message of Envoy's API)");
            }
            return Err(self.error(type_entry.value.pos, message));
        };
        self.path.pop();
        let payload = if has_special_json(inner.full_name()) {
            let value = entries.iter().find(|e| e.key == "value");
            if let Some(extra) = entries
                .iter()
                .find(|e| e.key != "@type" && e.key != "value")
            {
                self.path.push(Seg::Field(extra.key.clone()));
                return Err(self.error(
                    extra.key_pos,
                    format!(
                        "unknown field `{}`: an Any holding {} has only \"@type\" and \"value\"",
                        extra.key,
                        inner.full_name()
                    ),
                ));
            }
            match value {
                Some(value) => {
                    self.path.push(Seg::Field("value".to_owned()));
                    let msg = self.message(&inner, &value.value)?;
                    self.path.pop();
                    msg
                }
                None => DynamicMessage::new(inner),
            }
        } else {
            let mut msg = DynamicMessage::new(inner.clone());
            self.fields(&inner, node, &mut msg, Some("@type"))?;
            msg
        };
        let mut any = DynamicMessage::new(desc.clone());
        any.set_field_by_name("type_url", Value::String(type_url.clone()));
        any.set_field_by_name("value", Value::Bytes(payload.encode_to_vec().into()));
        Ok(any)
    }

    fn duration(&self, desc: &MessageDescriptor, node: &Node) -> Result<DynamicMessage> {
        let Y::String(text) = &node.value else {
            return Err(self.mismatch(node, "a duration string such as \"1.5s\""));
        };
        let (seconds, nanos) = parse_duration(text).ok_or_else(|| {
            self.error(
                node.pos,
                format!(
                    "invalid duration {text:?}: expected seconds with an `s` suffix and at most 9 \
                     decimals, such as \"0.25s\" or \"30s\""
                ),
            )
        })?;
        let mut msg = DynamicMessage::new(desc.clone());
        msg.set_field_by_name("seconds", Value::I64(seconds));
        msg.set_field_by_name("nanos", Value::I32(nanos));
        Ok(msg)
    }

    /// Well-known types whose JSON form prost-reflect reads exactly as protobuf does.
    fn delegate(&self, desc: &MessageDescriptor, node: &Node) -> Result<DynamicMessage> {
        DynamicMessage::deserialize(desc.clone(), node.to_json()).map_err(|e| {
            self.error(
                node.pos,
                format!(
                    "invalid {}: {}",
                    short_name(desc.full_name()),
                    strip_serde(&e)
                ),
            )
        })
    }
}

/// The message type of a message-typed (or map) field.
fn message_kind(field: &FieldDescriptor) -> MessageDescriptor {
    match field.kind() {
        Kind::Message(m) => m,
        // Only called for message and map fields.
        _ => unreachable!("field {} is not a message", field.full_name()),
    }
}

fn has_special_json(name: &str) -> bool {
    matches!(
        name,
        "google.protobuf.Any"
            | "google.protobuf.Duration"
            | "google.protobuf.Timestamp"
            | "google.protobuf.FieldMask"
            | "google.protobuf.Struct"
            | "google.protobuf.Value"
            | "google.protobuf.ListValue"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

fn short_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

fn strip_serde(e: &serde_json::Error) -> String {
    let s = e.to_string();
    // serde_json appends " at line 0 column 0" for errors from a `Value`; positions are ours.
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// A short description of what a node holds, for "expected X, found Y".
fn describe(node: &Node) -> String {
    match &node.value {
        Y::Null => "null".to_owned(),
        Y::Bool(b) => format!("boolean {b}"),
        Y::Int(i) => format!("integer {i}"),
        Y::Float(f) => format!("number {f}"),
        Y::String(s) if s.chars().count() > 40 => {
            let cut: String = s.chars().take(40).collect();
            format!("string \"{cut}…\"")
        }
        Y::String(s) => format!("string {s:?}"),
        Y::Seq(_) => "an array".to_owned(),
        Y::Map(_) => "an object".to_owned(),
    }
}

fn unknown_field(desc: &MessageDescriptor, key: &str) -> String {
    let camel = key.chars().any(|c| c.is_ascii_uppercase());
    let names: Vec<String> = desc
        .fields()
        .map(|f| {
            if camel {
                f.json_name().to_owned()
            } else {
                f.name().to_owned()
            }
        })
        .collect();
    let mut message = format!("unknown field `{key}` in {}", desc.full_name());
    match suggest(key, names.iter().map(String::as_str)) {
        Some(s) => {
            let _ = write!(message, "; did you mean `{s}`?");
        }
        None if names.is_empty() => message.push_str(" (it has no fields)"),
        None => {
            let _ = write!(message, "; known fields: {}", names.join(", "));
        }
    }
    message
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .map(|c| {
            let score = strsim::jaro_winkler(&lower, &c.to_ascii_lowercase());
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Parses a proto3 JSON duration: `-?\d+(\.\d{1,9})?s`.
fn parse_duration(text: &str) -> Option<(i64, i32)> {
    let body = text.strip_suffix('s')?;
    let (negative, body) = match body.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if body.contains('.') && frac.is_empty() {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    if seconds > MAX_DURATION_SECONDS {
        return None;
    }
    let nanos: i32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(if negative {
        (-seconds, -nanos)
    } else {
        (seconds, nanos)
    })
}

/// Decodes base64 as protobuf's JSON parser does: standard or URL-safe alphabet, padding optional.
fn base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing sextet cannot encode a byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0.25s"), Some((0, 250_000_000)));
        assert_eq!(parse_duration("30s"), Some((30, 0)));
        assert_eq!(parse_duration("-1.5s"), Some((-1, -500_000_000)));
        assert_eq!(parse_duration("0.000000001s"), Some((0, 1)));
        for bad in [
            "5",
            "1.s",
            ".5s",
            "1.0000000001s",
            "1ms",
            "s",
            "1 s",
            "+1s",
            "315576000001s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(base64("+/8=").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(base64("a"), None);
        assert_eq!(base64("a*"), None);
    }

    #[test]
    fn suggestions() {
        let fields = ["cluster", "cluster_header", "weighted_clusters", "timeout"];
        assert_eq!(suggest("clustr", fields.into_iter()), Some("cluster"));
        assert_eq!(suggest("timeot", fields.into_iter()), Some("timeout"));
        assert_eq!(suggest("zzz", fields.into_iter()), None);
    }
}
