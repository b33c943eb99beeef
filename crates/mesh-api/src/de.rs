//! Turns a positioned YAML tree into typed specs with serde, the way the Kubernetes API server reads a
//! structural CRD: unknown fields are reported (all of them, each with a suggestion) and skipped; a value
//! of the wrong type stops the document with an error that names the field, its position and the fix.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::diag::{Finding, Severity, code, did_you_mean};
use crate::path::FieldPath;
use crate::yaml::{Entry, Node, Pos, Value};

/// A value that could not be converted: located at the innermost field that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub field: Option<String>,
    pub pos: Option<Pos>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            field: None,
            pos: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!(
            "unsupported value \"{variant}\"{}; supported values: {}",
            did_you_mean(variant, expected.iter().copied()),
            quoted_list(expected)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("invalid value {unexp}, expected {exp}"))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing required field \"{field}\""))
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deserializes `node` (found at `path`) into `T`. Unknown fields become findings in `findings`.
pub fn from_node<T: DeserializeOwned>(
    node: &Node,
    path: &FieldPath<'_>,
    key_pos: Pos,
    findings: &RefCell<Vec<Finding>>,
) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path,
        key_pos,
        findings,
    })
}

struct NodeDe<'n, 'p, 'f> {
    node: &'n Node,
    path: &'p FieldPath<'p>,
    /// The position of the key this value belongs to: where to point for errors about a whole mapping.
    key_pos: Pos,
    findings: &'f RefCell<Vec<Finding>>,
}

impl NodeDe<'_, '_, '_> {
    fn locate(&self, mut err: DeError) -> DeError {
        if err.pos.is_none() {
            let scalar = !matches!(self.node.value, Value::Map(_) | Value::Seq(_));
            err.pos = Some(if scalar { self.node.pos } else { self.key_pos });
            err.field = Some(self.path.to_string());
        }
        err
    }

    fn type_error(&self, expected: &str) -> DeError {
        let found = match &self.node.value {
            Value::Int(i) => format!("integer {i}"),
            Value::Float(f) => format!("number {f}"),
            Value::Bool(b) => format!("boolean {b}"),
            Value::String(s) => format!("string \"{s}\""),
            other => other.type_name().to_owned(),
        };
        let hint = match (&self.node.value, expected) {
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), "string") => {
                " (quote it to make it a string)"
            }
            (Value::String(s), "integer" | "number") if s.trim().parse::<f64>().is_ok() => {
                " (remove the quotes)"
            }
            _ => "",
        };
        self.locate(DeError {
            message: format!("must be of type {expected}, found {found}{hint}"),
            field: None,
            pos: None,
        })
    }

    fn visit_map<'de, V: Visitor<'de>>(
        &self,
        visitor: V,
        fields: Option<&'static [&'static str]>,
    ) -> Result<V::Value, DeError> {
        let empty: &[Entry] = &[];
        let entries = match &self.node.value {
            Value::Map(entries) => entries.as_slice(),
            Value::Null => empty,
            _ => return Err(self.type_error("object")),
        };
        let result = visitor.visit_map(MapDe {
            entries: entries.iter(),
            current: None,
            path: self.path,
            fields,
            findings: self.findings,
        });
        result.map_err(|e| self.locate(e))
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'_, '_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::String(s) => visitor.visit_str(s),
            Value::Seq(_) => return self.deserialize_seq(visitor),
            Value::Map(_) => return self.visit_map(visitor, None),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Bool(b) => visitor.visit_bool(b).map_err(|e| self.locate(e)),
            _ => Err(self.type_error("boolean")),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Int(i) => visitor.visit_i64(i).map_err(|e| self.locate(e)),
            _ => Err(self.type_error("integer")),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Int(i) => visitor.visit_f64(i as f64).map_err(|e| self.locate(e)),
            Value::Float(f) => visitor.visit_f64(f).map_err(|e| self.locate(e)),
            _ => Err(self.type_error("number")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor.visit_str(s).map_err(|e| self.locate(e)),
            _ => Err(self.type_error("string")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.type_error("null")),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let items: &[Node] = match &self.node.value {
            Value::Seq(items) => items,
            // Kubernetes treats `field: null` as the field left out.
            Value::Null => &[],
            _ => return Err(self.type_error("array")),
        };
        visitor
            .visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path: self.path,
                findings: self.findings,
            })
            .map_err(|e| self.locate(e))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_map(visitor, None)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_map(visitor, Some(fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| self.locate(e)),
            _ => Err(self.type_error("string")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }
}

struct SeqDe<'n, 'p, 'f> {
    items: std::iter::Enumerate<std::slice::Iter<'n, Node>>,
    path: &'p FieldPath<'p>,
    findings: &'f RefCell<Vec<Finding>>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_, '_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.index(i);
        seed.deserialize(NodeDe {
            node,
            path: &path,
            key_pos: node.pos,
            findings: self.findings,
        })
        .map(Some)
    }
}

struct MapDe<'n, 'p, 'f> {
    entries: std::slice::Iter<'n, Entry>,
    current: Option<&'n Entry>,
    path: &'p FieldPath<'p>,
    /// The struct's field names; `None` for a free-form map.
    fields: Option<&'static [&'static str]>,
    findings: &'f RefCell<Vec<Finding>>,
}

impl<'de> de::MapAccess<'de> for MapDe<'_, '_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for entry in self.entries.by_ref() {
            if let Some(fields) = self.fields
                && !fields.contains(&entry.key.as_str())
            {
                let path = self.path.key(&entry.key);
                let (severity, message) = match removed_field(&entry.key, fields) {
                    Some(why) => (
                        Severity::Warning,
                        format!(
                            "field \"{}\" was removed from Istio's API and is ignored: {why}",
                            entry.key
                        ),
                    ),
                    None => (Severity::Error, unknown_field_message(&entry.key, fields)),
                };
                self.findings.borrow_mut().push(Finding {
                    severity,
                    code: code::SCHEMA_VALIDATION_ERROR,
                    message,
                    field: path.to_string(),
                    pos: entry.key_pos,
                });
                continue;
            }
            self.current = Some(entry);
            return seed
                .deserialize(entry.key.as_str().into_deserializer())
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self
            .current
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without a key"))?;
        let path = self.path.key(&entry.key);
        seed.deserialize(NodeDe {
            node: &entry.value,
            path: &path,
            key_pos: entry.key_pos,
            findings: self.findings,
        })
    }
}

/// `unknown field "prots" (did you mean "ports"?)`, or the list of known fields when nothing is close.
/// Fields Istio's API once had and dropped, which old YAML (and Istio's own test configs) still carry:
/// `(field, a field of the same message, what to know)`. They get a warning, not an error.
const REMOVED_FIELDS: &[(&str, &str, &str)] = &[(
    "websocketUpgrade",
    "corsPolicy",
    "WebSocket upgrades have been allowed on every HTTP route since Istio 1.0; delete the field",
)];

fn removed_field(key: &str, fields: &[&str]) -> Option<&'static str> {
    REMOVED_FIELDS
        .iter()
        .find(|(removed, sibling, _)| *removed == key && fields.contains(sibling))
        .map(|(_, _, why)| *why)
}

pub fn unknown_field_message(key: &str, fields: &[&str]) -> String {
    let suggestion = did_you_mean(key, fields.iter().copied());
    if suggestion.is_empty() {
        format!(
            "unknown field \"{key}\"; known fields here: {}",
            fields.join(", ")
        )
    } else {
        format!("unknown field \"{key}\"{suggestion}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::yaml::parse_stream;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", default)]
    struct Port {
        number: Option<u32>,
        name: Option<String>,
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Mode {
        #[serde(rename = "ROUND_ROBIN")]
        RoundRobin,
        #[serde(rename = "RANDOM")]
        Random,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", default)]
    struct Spec {
        hosts: Vec<String>,
        ports: Vec<Port>,
        labels: BTreeMap<String, String>,
    }

    fn load(src: &str) -> (Result<Spec, DeError>, Vec<Finding>) {
        let (docs, err) = parse_stream(src);
        assert_eq!(err, None);
        let findings = RefCell::new(Vec::new());
        let spec = from_node::<Spec>(&docs[0], &FieldPath::ROOT, docs[0].pos, &findings);
        (spec, findings.into_inner())
    }

    #[test]
    fn reads_typed_values() {
        let (spec, findings) = load(
            "hosts: [a, b]\nports:\n- number: 80\n  name: http\n  mode: RANDOM\nlabels: {app: x}\n",
        );
        let spec = spec.expect("valid");
        assert!(findings.is_empty());
        assert_eq!(spec.hosts, vec!["a", "b"]);
        assert_eq!(spec.ports[0].number, Some(80));
        assert_eq!(spec.ports[0].mode, Some(Mode::Random));
        assert_eq!(spec.labels.get("app").map(String::as_str), Some("x"));
    }

    #[test]
    fn every_unknown_field_is_reported_with_a_suggestion() {
        let (spec, findings) = load("hosts: [a]\nprots:\n- number: 80\nports:\n- nmae: x\n");
        assert!(spec.is_ok());
        assert_eq!(findings.len(), 2);
        assert_eq!(
            findings[0].message,
            "unknown field \"prots\" (did you mean \"ports\"?)"
        );
        assert_eq!(findings[0].field, "prots");
        assert_eq!((findings[0].pos.line, findings[0].pos.column), (2, 1));
        assert_eq!(
            findings[1].message,
            "unknown field \"nmae\" (did you mean \"name\"?)"
        );
        assert_eq!(findings[1].field, "ports[0].nmae");
        assert_eq!((findings[1].pos.line, findings[1].pos.column), (5, 3));
    }

    #[test]
    fn wrong_types_name_the_field_and_the_fix() {
        let (spec, _) = load("ports:\n- number: \"80\"\n");
        let err = spec.expect_err("type error");
        assert_eq!(err.field.as_deref(), Some("ports[0].number"));
        assert_eq!(
            err.pos,
            Some(Pos {
                line: 2,
                column: 11
            })
        );
        assert_eq!(
            err.message,
            "must be of type integer, found string \"80\" (remove the quotes)"
        );
        let (spec, _) = load("labels:\n  version: 1\n");
        let err = spec.expect_err("type error");
        assert_eq!(err.field.as_deref(), Some("labels.version"));
        assert!(
            err.message.ends_with("(quote it to make it a string)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn enum_typos_get_suggestions() {
        let (spec, _) = load("ports:\n- mode: ROUND_ROBINN\n");
        let err = spec.expect_err("bad enum");
        assert_eq!(err.field.as_deref(), Some("ports[0].mode"));
        assert_eq!(
            err.message,
            "unsupported value \"ROUND_ROBINN\" (did you mean \"ROUND_ROBIN\"?); supported values: \"ROUND_ROBIN\", \"RANDOM\""
        );
    }

    #[test]
    fn out_of_range_integers_are_errors() {
        let (spec, _) = load("ports:\n- number: -1\n");
        let err = spec.expect_err("range");
        assert_eq!(err.field.as_deref(), Some("ports[0].number"));
        assert!(err.message.contains("-1"), "{}", err.message);
    }

    #[test]
    fn a_scalar_where_a_list_belongs() {
        let (spec, _) = load("hosts: reviews\n");
        let err = spec.expect_err("not a list");
        assert_eq!(
            err.message,
            "must be of type array, found string \"reviews\""
        );
    }
}
